"""Scallop's wire format (reference §6.4), checked against a peer built on noiseprotocol.

The peer below frames noiseprotocol's messages by hand from the reference's byte layout, so a
match shows reef's messages are what any Noise implementation plus that layout produce, size
for size: handshake 1 is 2+2+64 bytes, handshake 2 is 2+2+99, CLIENTFIN 2+3+n+16.
"""

from __future__ import annotations

import contextlib
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from noise.connection import NoiseConnection

from reef.crypto import generate_x25519
from reef.errors import ChannelBrokenError, HandshakeError, MisuseError
from reef.scallop.lowlevel import (
    HANDSHAKE1_LEN,
    HANDSHAKE2_LEN,
    MAX_ATTESTATION_LEN,
    MAX_RECORD_PLAINTEXT,
    AttestationReceived,
    ClientFinished,
    ClientHandshake,
    ClientHello,
    Established,
    NeedData,
    RecordLayer,
    ServerHandshake,
    ServerHello,
)

from .conftest import scallop_noise_peer


def u16(value: int) -> bytes:
    return struct.pack(">H", value)


def event(machine: ClientHandshake | ServerHandshake) -> object:
    result = machine.next_event()
    assert not isinstance(result, NeedData), result
    return result


def open_record(peer: NoiseConnection, frame: bytes | bytearray) -> bytes:
    (size,) = struct.unpack(">H", frame[:2])
    assert size == len(frame) - 2
    plaintext: bytes = peer.decrypt(bytes(frame[2:]))
    return plaintext


def seal_record(peer: NoiseConnection, plaintext: bytes) -> bytes:
    ciphertext: bytes = peer.encrypt(plaintext)
    return u16(len(ciphertext)) + ciphertext


@pytest.mark.parametrize("server_asks", [False, True])
@pytest.mark.parametrize("client_asks", [False, True])
def test_reef_client_against_a_noiseprotocol_server(server_asks: bool, client_asks: bool) -> None:
    client_secret, client_public = generate_x25519()
    server_secret, server_public = generate_x25519()
    client = ClientHandshake(client_secret)
    server = scallop_noise_peer(server_secret, initiator=False)

    hello = client.start()
    assert hello[:4] == b"\x00\x00" + u16(64)
    assert len(hello) == 4 + HANDSHAKE1_LEN
    assert server.read_message(hello[4:]) == b""
    assert server.noise_protocol.handshake_state.rs.public_bytes == client_public
    reply = server.write_message(b"\x00\x01" + (b"\x01" if server_asks else b"\x00"))
    assert len(reply) == HANDSHAKE2_LEN
    client.receive_data(b"\x00\x00" + u16(len(reply)) + reply)
    assert event(client) == ServerHello(
        peer_static=server_public, attestation_requested=server_asks
    )

    ours = b"client attestation" if server_asks else None
    fin = client.send_finish(request_attestation=client_asks, attestation=ours)
    plain = open_record(server, fin)
    body = ours or b""
    assert plain == (b"\x01" if client_asks else b"\x00") + u16(len(body)) + body
    assert len(fin) == 2 + 3 + len(body) + 16
    if client_asks:
        client.receive_data(seal_record(server, u16(18) + b"server attestation"))
        assert event(client) == AttestationReceived(attestation=b"server attestation")
    assert isinstance(event(client), Established)
    assert client.handshake_hash == server.get_handshake_hash()

    records = client.transport()
    assert open_record(server, records.seal(b"ping")) == b"ping"
    records.receive_data(seal_record(server, b"pong"))
    assert records.next_record() == b"pong"


@pytest.mark.parametrize("server_asks", [False, True])
@pytest.mark.parametrize("client_asks", [False, True])
def test_reef_server_against_a_noiseprotocol_client(server_asks: bool, client_asks: bool) -> None:
    client_secret, client_public = generate_x25519()
    server = ServerHandshake(generate_x25519()[0])
    client = scallop_noise_peer(client_secret, initiator=True)

    message = client.write_message(b"")
    assert len(message) == HANDSHAKE1_LEN
    server.receive_data(b"\x00\x00" + u16(len(message)) + message)
    assert event(server) == ClientHello(peer_static=client_public)

    reply = server.send_hello(request_attestation=server_asks)
    assert reply[:4] == b"\x00\x00" + u16(99)
    assert len(reply) == 4 + HANDSHAKE2_LEN
    assert client.read_message(reply[4:]) == b"\x00\x01" + (b"\x01" if server_asks else b"\x00")

    body = b"client attestation" if server_asks else b""
    server.receive_data(
        seal_record(client, (b"\x01" if client_asks else b"\x00") + u16(len(body)) + body)
    )
    assert event(server) == ClientFinished(attestation=body, attestation_requested=client_asks)
    if client_asks:
        fin = server.send_finish(b"server attestation")
        assert open_record(client, fin) == u16(18) + b"server attestation"
    assert isinstance(event(server), Established)
    assert server.handshake_hash == client.get_handshake_hash()
    records = server.transport()
    records.receive_data(seal_record(client, b"ping"))
    assert records.next_record() == b"ping"
    assert open_record(client, records.seal(b"pong")) == b"pong"


def _handshaken(
    *, server_asks: bool = False, client_asks: bool = False
) -> tuple[ClientHandshake, ServerHandshake]:
    client = ClientHandshake(generate_x25519()[0])
    server = ServerHandshake(generate_x25519()[0])
    server.receive_data(client.start())
    assert isinstance(event(server), ClientHello)
    client.receive_data(server.send_hello(request_attestation=server_asks))
    assert isinstance(event(client), ServerHello)
    return client, server


def _transports() -> tuple[RecordLayer, RecordLayer]:
    client, server = _handshaken()
    server.receive_data(client.send_finish(request_attestation=False, attestation=None))
    assert isinstance(event(server), ClientFinished)
    assert isinstance(event(client), Established)
    return client.transport(), server.transport()


# --- strict checks on every field ----------------------------------------------------------------


def test_server_refuses_negotiation_data_and_wrong_sizes_before_reading_bodies() -> None:
    server = ServerHandshake(generate_x25519()[0])
    server.receive_data(b"\x00\x05")
    with pytest.raises(HandshakeError, match="negotiation data is 5 bytes"):
        server.next_event()
    for size in (0, 63, 65, 65535):
        server = ServerHandshake(generate_x25519()[0])
        server.receive_data(b"\x00\x00" + u16(size))
        with pytest.raises(HandshakeError, match=f"handshake 1 is {size} bytes"):
            server.next_event()


def test_server_refuses_a_handshake_payload() -> None:
    # A 64-byte message cannot carry one; a longer message with a payload is refused by size.
    client = scallop_noise_peer(generate_x25519()[0], initiator=True)
    message = client.write_message(b"x")
    server = ServerHandshake(generate_x25519()[0])
    server.receive_data(b"\x00\x00" + u16(len(message)) + message)
    with pytest.raises(HandshakeError, match="handshake 1 is 65 bytes"):
        server.next_event()


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"\x00\x01\x02", "flag is 2"),
        (b"\x00\x02\x00\x00", "4-byte payload"),
        (b"\x00\x01", "2-byte payload"),
        (b"\x01\x01\x00", "payload '010100'"),
    ],
)
def test_client_checks_the_hello_payload(payload: bytes, words: str) -> None:
    client = ClientHandshake(generate_x25519()[0])
    server = scallop_noise_peer(generate_x25519()[0], initiator=False)
    server.read_message(client.start()[4:])
    reply = server.write_message(payload)
    # Sizes other than 99 are refused by the frame check before any decryption.
    client.receive_data(b"\x00\x00" + u16(len(reply)) + reply)
    with pytest.raises(HandshakeError, match=words if len(reply) == 99 else "handshake 2 is"):
        client.next_event()


def test_client_refuses_server_negotiation_data() -> None:
    client = ClientHandshake(generate_x25519()[0])
    client.start()
    client.receive_data(b"\x00\x01")
    with pytest.raises(HandshakeError, match="negotiation data is 1 bytes"):
        client.next_event()


@pytest.mark.parametrize(
    ("plaintext", "words"),
    [
        (b"\x02\x00\x00", "flag is 2"),
        (b"\x00\x00\x05abc", "declares a 5-byte attestation but carries 3"),
        (b"\x00\x00\x01", "declares a 1-byte attestation but carries 0"),
        (b"\x00\x00\x03abc", "did not ask for"),
    ],
)
def test_server_checks_clientfin(plaintext: bytes, words: str) -> None:
    client = scallop_noise_peer(generate_x25519()[0], initiator=True)
    server = ServerHandshake(generate_x25519()[0])
    message = client.write_message(b"")
    server.receive_data(b"\x00\x00" + u16(len(message)) + message)
    server.next_event()
    client.read_message(server.send_hello(request_attestation=False)[4:])
    server.receive_data(seal_record(client, plaintext))
    with pytest.raises(HandshakeError, match=words):
        server.next_event()


def test_clientfin_and_serverfin_sizes_are_bounded_before_their_bodies() -> None:
    _, server = _handshaken(server_asks=True)
    server.receive_data(u16(3 + MAX_ATTESTATION_LEN + 16 + 1))
    with pytest.raises(HandshakeError, match="CLIENTFIN is 60020 bytes"):
        server.next_event()
    _, server = _handshaken()
    server.receive_data(u16(18))
    with pytest.raises(HandshakeError, match="CLIENTFIN is 18 bytes"):
        server.next_event()
    client, _ = _handshaken()
    client.send_finish(request_attestation=True, attestation=None)
    client.receive_data(u16(2 + MAX_ATTESTATION_LEN + 16 + 1))
    with pytest.raises(HandshakeError, match="SERVERFIN is 60019 bytes"):
        client.next_event()


def test_serverfin_length_field_must_match() -> None:
    client, server = _handshaken()
    server.receive_data(client.send_finish(request_attestation=True, attestation=None))
    server.next_event()
    # Forge a SERVERFIN whose inner length is off by one, with the server's real keys.
    send = server._send
    assert send is not None
    ciphertext = send.encrypt_with_ad(b"", u16(4) + b"abc")
    client.receive_data(u16(len(ciphertext)) + ciphertext)
    with pytest.raises(HandshakeError, match="declares a 4-byte attestation but carries 3"):
        client.next_event()


def test_attestations_are_limited_to_60000_bytes() -> None:
    client, _ = _handshaken(server_asks=True)
    with pytest.raises(HandshakeError, match="at most 60000"):
        client.send_finish(request_attestation=False, attestation=bytes(MAX_ATTESTATION_LEN + 1))
    client, server = _handshaken(server_asks=True)
    fin = client.send_finish(request_attestation=True, attestation=bytes(MAX_ATTESTATION_LEN))
    server.receive_data(fin)
    finished = event(server)
    assert isinstance(finished, ClientFinished)
    assert len(finished.attestation) == MAX_ATTESTATION_LEN
    with pytest.raises(HandshakeError, match="at most 60000"):
        server.send_finish(bytes(MAX_ATTESTATION_LEN + 1))


def test_a_requested_attestation_must_be_given() -> None:
    client, _ = _handshaken(server_asks=True)
    with pytest.raises(HandshakeError, match="asks for our attestation"):
        client.send_finish(request_attestation=False, attestation=None)
    client, _ = _handshaken(server_asks=False)
    with pytest.raises(MisuseError, match="did not ask"):
        client.send_finish(request_attestation=False, attestation=b"unasked")


def test_machines_refuse_out_of_order_calls() -> None:
    client = ClientHandshake(generate_x25519()[0])
    with pytest.raises(MisuseError):
        client.send_finish(request_attestation=False, attestation=None)
    client, server = _handshaken(server_asks=False)
    with pytest.raises(MisuseError, match="send_finish next"):
        client.next_event()
    with pytest.raises(MisuseError):
        client.transport()
    server.receive_data(client.send_finish(request_attestation=True, attestation=None))
    event(server)
    with pytest.raises(MisuseError, match="send_finish"):
        server.transport()


# --- records -------------------------------------------------------------------------------------


def test_records_split_at_64000_bytes_and_never_send_empty_ones() -> None:
    client, server = _transports()
    data = os.urandom(2 * MAX_RECORD_PLAINTEXT + 5)
    frames = client.seal(data)
    sizes = []
    position = 0
    while position < len(frames):
        (size,) = struct.unpack_from(">H", frames, position)
        sizes.append(size)
        position += 2 + size
    assert sizes == [MAX_RECORD_PLAINTEXT + 16, MAX_RECORD_PLAINTEXT + 16, 5 + 16]
    assert client.seal(b"") == b""
    server.receive_data(frames)
    out = b""
    while not isinstance(record := server.next_record(), NeedData):
        out += record
    assert out == data


def test_oversized_short_modified_and_replayed_records_break_the_channel() -> None:
    client, server = _transports()
    server.receive_data(u16(MAX_RECORD_PLAINTEXT + 17))
    with pytest.raises(ChannelBrokenError, match="64017-byte record"):
        server.next_record()
    _, server = _transports()
    server.receive_data(u16(15) + bytes(15))
    with pytest.raises(ChannelBrokenError, match="shorter than its tag"):
        server.next_record()

    client, server = _transports()
    frame = bytearray(client.seal(b"transfer 10 tokens"))
    frame[5] ^= 0x01
    server.receive_data(frame)
    with pytest.raises(ChannelBrokenError, match="failed authentication"):
        server.next_record()

    client, server = _transports()
    first = client.seal(b"once")
    server.receive_data(first)
    assert server.next_record() == b"once"
    server.receive_data(first)
    with pytest.raises(ChannelBrokenError, match="replayed"):
        server.next_record()


def test_an_empty_record_from_the_peer_is_skipped() -> None:
    client, server = _transports()
    empty = client._send.encrypt_with_ad(b"", b"")
    server.receive_data(u16(len(empty)) + empty + client.seal(b"after"))
    assert server.next_record() == b"after"


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=300), max_size=20))
def test_any_chunking_of_the_byte_stream_gives_the_same_result(cuts: list[int]) -> None:
    """Feeding bytes in arbitrary pieces (as TCP delivers them) changes nothing."""
    client = ClientHandshake(generate_x25519()[0])
    server = ServerHandshake(generate_x25519()[0])

    def feed(machine: ClientHandshake | ServerHandshake | RecordLayer, data: bytes) -> None:
        position = 0
        for cut in cuts:
            machine.receive_data(data[position : position + cut])
            position += cut
        machine.receive_data(data[position:])

    feed(server, client.start())
    assert isinstance(server.next_event(), ClientHello)
    feed(client, server.send_hello(request_attestation=True))
    assert isinstance(client.next_event(), ServerHello)
    # CLIENTFIN and the first records travel together, as a pipelining client sends them.
    records_payload = b"pipelined application data" * 10
    fin = client.send_finish(request_attestation=True, attestation=b"doc" * 50)
    feed(server, fin)
    finished = server.next_event()
    assert isinstance(finished, ClientFinished)
    assert finished.attestation == b"doc" * 50
    feed(client, server.send_finish(b"server doc"))
    assert client.next_event() == AttestationReceived(attestation=b"server doc")
    client_records = client.transport()
    server_records = server.transport()
    feed(server_records, client_records.seal(records_payload))
    assert server_records.next_record() == records_payload


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=400))
def test_random_bytes_only_ever_raise_protocol_errors(garbage: bytes) -> None:
    """Whatever a peer sends, the machines answer NeedData or a HandshakeError/ChannelBrokenError,
    never another exception."""
    server = ServerHandshake(generate_x25519()[0])
    server.receive_data(garbage)
    with contextlib.suppress(HandshakeError):
        server.next_event()

    client = ClientHandshake(generate_x25519()[0])
    client.start()
    client.receive_data(garbage)
    with contextlib.suppress(HandshakeError):
        client.next_event()

    # A valid handshake 1 followed by garbage in place of CLIENTFIN.
    client = ClientHandshake(generate_x25519()[0])
    server = ServerHandshake(generate_x25519()[0])
    server.receive_data(client.start())
    server.next_event()
    server.send_hello(request_attestation=True)
    server.receive_data(garbage)
    with contextlib.suppress(HandshakeError):
        server.next_event()

    _, records = _transports()
    records.receive_data(garbage)
    with contextlib.suppress(ChannelBrokenError):
        while not isinstance(records.next_record(), NeedData):
            pass
