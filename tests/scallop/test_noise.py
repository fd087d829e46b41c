"""The Noise core against published vectors and an independent implementation (noiseprotocol)."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from noise.connection import NoiseConnection

from reef.errors import ChannelBrokenError, HandshakeError, InputError, MisuseError
from reef.scallop.lowlevel import (
    MAX_MESSAGE_LEN,
    CipherState,
    HandshakeState,
    NoiseProtocol,
    NotSupportedError,
)

from .conftest import noiseprotocol_peer

VECTOR_FILES = ["ix_25519_chachapoly_blake2b.json", "ix_25519_chachapoly_blake2b_snow.json"]
PATTERNS = ["N", "K", "X", "NN", "NK", "NX", "KN", "KK", "KX", "XN", "XK", "XX", "IN", "IK", "IX"]
SUITES = [
    f"{dh}_{cipher}_{hash_}"
    for dh, cipher, hash_ in itertools.product(
        ["25519", "448"], ["ChaChaPoly", "AESGCM"], ["SHA256", "SHA512", "BLAKE2s", "BLAKE2b"]
    )
]
IX = "Noise_IX_25519_ChaChaPoly_BLAKE2b"


def _pair(vector: dict[str, Any]) -> tuple[HandshakeState, HandshakeState]:
    protocol = NoiseProtocol.from_name(vector["protocol_name"])

    def side(prefix: str) -> HandshakeState:
        """One side's handshake state from its ``init_*`` or ``resp_*`` fields."""

        def get(key: str) -> bytes | None:
            value = vector.get(f"{prefix}_{key}")
            return bytes.fromhex(value) if value else None

        return HandshakeState(
            protocol,
            initiator=prefix == "init",
            prologue=get("prologue") or b"",
            s=get("static"),
            e=get("ephemeral"),
            rs=get("remote_static"),
        )

    return side("init"), side("resp")


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_published_vectors_reproduce_byte_for_byte(vectors: Path, name: str) -> None:
    data = json.loads((vectors / "noise" / name).read_text())
    assert data["vectors"], "the vector file is empty"
    for vector in data["vectors"]:
        initiator, responder = _pair(vector)
        for index, message in enumerate(vector["messages"]):
            payload = bytes.fromhex(message["payload"])
            expected = bytes.fromhex(message["ciphertext"])
            sender_is_initiator = index % 2 == 0
            if not initiator.complete:
                writer, reader = (
                    (initiator, responder) if sender_is_initiator else (responder, initiator)
                )
                assert writer.write_message(payload) == expected, f"message {index}"
                assert reader.read_message(expected) == payload
            else:
                (i_send, i_recv), (r_send, r_recv) = initiator.transport(), responder.transport()
                send, recv = (i_send, r_recv) if sender_is_initiator else (r_send, i_recv)
                assert send.encrypt_with_ad(b"", payload) == expected, f"message {index}"
                assert recv.decrypt_with_ad(b"", expected) == payload
        assert initiator.handshake_hash == responder.handshake_hash
        if "handshake_hash" in vector:
            assert initiator.handshake_hash.hex() == vector["handshake_hash"]


def _keys_known(pattern: str) -> tuple[bool, bool]:
    """Whether the responder's / the initiator's static key is a pre-message of ``pattern``:
    K in second place (or a one-way pattern) pre-shares the responder's, K first the
    initiator's."""
    letters = pattern.split("psk")[0].replace("1", "")
    if len(letters) == 1:  # N, K, X: the responder's key is always known in advance
        return True, letters == "K"
    return letters[1] == "K", letters[0] == "K"


def _interop_pair(
    name: str,
    pattern: str,
    *,
    reef_initiates: bool,
    prologue: bytes = b"",
    psks: Sequence[bytes] = (),
) -> tuple[HandshakeState, NoiseConnection]:
    """reef's end and noiseprotocol's of one handshake of protocol ``name``, each given the
    other's static public key where ``pattern`` makes it a pre-message."""
    protocol = NoiseProtocol.from_name(name)
    mine, theirs = os.urandom(protocol.dhlen), os.urandom(protocol.dhlen)
    responder_known, initiator_known = _keys_known(pattern)
    my_key_known = initiator_known if reef_initiates else responder_known
    their_key_known = responder_known if reef_initiates else initiator_known
    peer = noiseprotocol_peer(
        name,
        initiator=not reef_initiates,
        secret=theirs,
        remote=protocol.public_key(mine) if my_key_known else None,
        prologue=prologue,
        psks=psks,
    )
    me = HandshakeState(
        protocol,
        initiator=reef_initiates,
        prologue=prologue,
        s=mine,
        rs=protocol.public_key(theirs) if their_key_known else None,
        psks=psks,
    )
    return me, peer


@pytest.mark.parametrize("reef_initiates", [True, False], ids=["reef-initiator", "reef-responder"])
@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_interoperates_with_noiseprotocol(pattern: str, suite: str, reef_initiates: bool) -> None:
    name = f"Noise_{pattern}_{suite}"
    protocol = NoiseProtocol.from_name(name)
    me, peer = _interop_pair(name, pattern, reef_initiates=reef_initiates, prologue=b"reef interop")
    turn = 0
    while not me.complete:
        payload = os.urandom(turn * 5)
        if me.is_my_turn():
            assert peer.read_message(me.write_message(payload)) == payload
        else:
            assert me.read_message(peer.write_message(payload)) == payload
        turn += 1
    assert peer.handshake_finished
    assert me.handshake_hash == peer.get_handshake_hash()
    send, recv = me.transport()
    for size in (0, 1, 1000):
        message = os.urandom(size)
        if reef_initiates or not protocol.one_way:
            assert peer.decrypt(send.encrypt_with_ad(b"", message)) == message
        if not reef_initiates or not protocol.one_way:
            assert recv.decrypt_with_ad(b"", peer.encrypt(message)) == message


PSK_PATTERNS = ["Npsk0", "Kpsk0", "Xpsk1", "NNpsk0", "NNpsk2", "NKpsk0", "XXpsk3", "IXpsk2",
                "IKpsk1", "KKpsk0+psk2", "NXpsk0+psk1+psk2"]  # fmt: skip
DEFERRED = ["NK1", "NX1", "X1N", "X1K", "XK1", "X1K1", "X1X", "XX1", "X1X1", "K1N", "K1K", "KK1",
            "K1K1", "K1X", "KX1", "K1X1", "I1N", "I1K", "IK1", "I1K1", "I1X", "IX1", "I1X1"]  # fmt: skip


@pytest.mark.parametrize("reef_initiates", [True, False], ids=["reef-initiator", "reef-responder"])
@pytest.mark.parametrize("pattern", PSK_PATTERNS)
def test_psk_patterns_interoperate_with_noiseprotocol(pattern: str, reef_initiates: bool) -> None:
    name = f"Noise_{pattern}_25519_ChaChaPoly_BLAKE2b"
    protocol = NoiseProtocol.from_name(name)
    psks = [os.urandom(32) for _ in range(protocol.psk_count)]
    me, peer = _interop_pair(name, pattern, reef_initiates=reef_initiates, psks=psks)
    while not me.complete:
        if me.is_my_turn():
            assert peer.read_message(me.write_message(b"hi")) == b"hi"
        else:
            assert me.read_message(peer.write_message(b"yo")) == b"yo"
    assert me.handshake_hash == peer.get_handshake_hash()
    send, _ = me.transport()
    if reef_initiates or not protocol.one_way:
        assert peer.decrypt(send.encrypt_with_ad(b"", b"data")) == b"data"


def test_a_wrong_psk_fails_the_handshake() -> None:
    protocol = NoiseProtocol.from_name("Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b")
    initiator = HandshakeState(protocol, initiator=True, psks=[bytes(32)])
    responder = HandshakeState(protocol, initiator=False, psks=[b"\x01" * 32])
    with pytest.raises(HandshakeError, match="failed authentication"):
        responder.read_message(initiator.write_message(b"secret"))
    with pytest.raises(MisuseError, match="needs 1 pre-shared keys"):
        HandshakeState(protocol, initiator=True)


@pytest.mark.parametrize("pattern", DEFERRED)
def test_deferred_patterns_complete_between_two_reef_parties(pattern: str) -> None:
    """Structure only (both ends are reef); the cacophony file checks the bytes (see below)."""
    protocol = NoiseProtocol.from_name(f"Noise_{pattern}_25519_ChaChaPoly_BLAKE2b")
    si, sr = os.urandom(32), os.urandom(32)
    responder_known, initiator_known = _keys_known(pattern)
    initiator = HandshakeState(
        protocol, initiator=True, s=si, rs=protocol.public_key(sr) if responder_known else None
    )
    responder = HandshakeState(
        protocol, initiator=False, s=sr, rs=protocol.public_key(si) if initiator_known else None
    )
    turn = 0
    while not initiator.complete:
        writer, reader = (initiator, responder) if turn % 2 == 0 else (responder, initiator)
        assert reader.read_message(writer.write_message(bytes([turn]))) == bytes([turn])
        turn += 1
    assert responder.complete
    # The first letter says what the initiator's static key is (N: none), the second the
    # responder's; the 1s only move DHs later.
    letters = pattern.replace("1", "")
    if letters[1] != "N":
        assert initiator.remote_static == protocol.public_key(sr)
    if letters[0] != "N":
        assert responder.remote_static == protocol.public_key(si)
    assert initiator.handshake_hash == responder.handshake_hash


def test_full_cacophony_vector_file_when_given() -> None:
    """Opt-in: ``REEF_CACOPHONY=/path/to/cacophony.txt`` (e.g. snow's tests/vectors/) runs every
    vector in the file; reef implements all 944 of cacophony's."""
    path = os.environ.get("REEF_CACOPHONY")
    if not path:
        pytest.skip("set REEF_CACOPHONY to a cacophony-format vector file to run it")
    from reef.scallop.lowlevel import run_noise_vectors

    report = run_noise_vectors(json.loads(Path(path).read_text()))
    failed = [r for r in report.results if r.status == "failed"]
    assert not failed, failed[:5]
    assert report.passed > 0


def test_protocol_names_outside_reef_are_refused_with_a_reason() -> None:
    for name, words in [
        ("Noise_XXfallback_25519_ChaChaPoly_BLAKE2b", "pattern"),
        ("Noise_XXhfs_25519+Kyber1024_ChaChaPoly_BLAKE2b", "pattern"),
        ("Noise_XXpskX_25519_ChaChaPoly_BLAKE2b", "modifier"),
        ("Noise_XXpsk\u00b2_25519_ChaChaPoly_BLAKE2b", "modifier"),  # isdigit, not int()
        ("Noise_NNpsk3_25519_ChaChaPoly_BLAKE2b", "past the last message"),
        ("Noise_IX_P256_ChaChaPoly_BLAKE2b", "DH function"),
        ("Noise_IX_25519_Salsa_BLAKE2b", "cipher"),
        ("Noise_IX_25519_ChaChaPoly_SHA3", "hash"),
        ("NoiseIX", "not a Noise protocol name"),
    ]:
        with pytest.raises(NotSupportedError, match=words):
            NoiseProtocol.from_name(name)


def _ix_pair() -> tuple[HandshakeState, HandshakeState]:
    protocol = NoiseProtocol.from_name(IX)
    initiator = HandshakeState(protocol, initiator=True, s=os.urandom(32))
    responder = HandshakeState(protocol, initiator=False, s=os.urandom(32))
    return initiator, responder


def _complete() -> tuple[tuple[CipherState, CipherState], tuple[CipherState, CipherState]]:
    initiator, responder = _ix_pair()
    responder.read_message(initiator.write_message())
    initiator.read_message(responder.write_message())
    return initiator.transport(), responder.transport()


@settings(max_examples=50, deadline=None)
@given(
    payload=st.binary(max_size=300),
    position=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
)
def test_any_flipped_bit_of_a_handshake_message_is_refused(
    payload: bytes, position: int, bit: int
) -> None:
    initiator, responder = _ix_pair()
    responder.read_message(initiator.write_message())
    message = bytearray(responder.write_message(payload))
    # Bytes 0..31 are the responder's ephemeral in clear: changing it changes every key after.
    message[position % len(message)] ^= 1 << bit
    with pytest.raises(HandshakeError):
        initiator.read_message(bytes(message))
    with pytest.raises(MisuseError, match="failed earlier"):
        initiator.read_message(bytes(message))


@settings(max_examples=50, deadline=None)
@given(messages=st.lists(st.binary(max_size=200), min_size=1, max_size=8))
def test_transport_round_trips_and_refuses_replays(messages: list[bytes]) -> None:
    (send, _), (_, recv) = _complete()
    sealed = [send.encrypt_with_ad(b"", m) for m in messages]
    assert [recv.decrypt_with_ad(b"", c) for c in sealed] == messages
    with pytest.raises(ChannelBrokenError, match="failed authentication"):
        recv.decrypt_with_ad(b"", sealed[-1])
    # A failed decryption does not advance the nonce (spec §5.1): the next message still opens.
    assert recv.decrypt_with_ad(b"", send.encrypt_with_ad(b"", b"next")) == b"next"


def test_low_order_public_keys_are_refused() -> None:
    protocol = NoiseProtocol.from_name(IX)
    responder = HandshakeState(protocol, initiator=False, s=os.urandom(32))
    # The all-zero point is of small order: an honest peer never sends it. IX's first message
    # carries keys only; the responder meets the point in its first DH ("ee") as it answers.
    responder.read_message(bytes(32) + os.urandom(32))
    with pytest.raises(HandshakeError, match="low-order"):
        responder.write_message()


def test_nonce_exhaustion_and_rekey() -> None:
    (send, _), (_, recv) = _complete()
    send.set_nonce(2**64 - 2)
    recv.set_nonce(2**64 - 2)
    assert recv.decrypt_with_ad(b"", send.encrypt_with_ad(b"", b"last")) == b"last"
    with pytest.raises(ChannelBrokenError, match="exhausted"):
        send.encrypt_with_ad(b"", b"one too many")
    (send, _), (_, recv) = _complete()
    send.rekey()
    recv.rekey()
    assert recv.decrypt_with_ad(b"", send.encrypt_with_ad(b"", b"after rekey")) == b"after rekey"


def test_handshake_misuse_is_reported() -> None:
    initiator, responder = _ix_pair()
    with pytest.raises(MisuseError, match="not our turn"):
        responder.write_message()
    with pytest.raises(MisuseError, match="not complete"):
        initiator.transport()
    responder.read_message(initiator.write_message())
    initiator.read_message(responder.write_message())
    with pytest.raises(MisuseError, match="already complete"):
        initiator.write_message()
    fresh, _ = _ix_pair()
    with pytest.raises(InputError, match="at most 65535"):
        fresh.write_message(bytes(MAX_MESSAGE_LEN))
    with pytest.raises(MisuseError, match="static key before the handshake"):
        HandshakeState(NoiseProtocol.from_name("Noise_NK_25519_ChaChaPoly_BLAKE2b"), initiator=True)
