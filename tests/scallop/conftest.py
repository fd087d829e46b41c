"""Shared pieces for the Scallop tests: key pairs, a dev TEE authority, authers and policies, a
peer on noiseprotocol (the independent Noise implementation reef's is checked against), and a
server that completes the handshake and never answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from noise.connection import Keypair, NoiseConnection

from reef.attestation import DevAuthority, TrustedRoot
from reef.crypto import generate_x25519
from reef.errors import InputError
from reef.home import ReefHome
from reef.scallop import Auther, PeerPolicy, ScallopServer, serve_asgi
from reef.scallop.lowlevel import PROLOGUE, PROTOCOL_NAME
from reef.testing import wall_ms

PCRS_A: Mapping[int, bytes] = {0: b"\xa0" * 48, 1: b"\xa1" * 48, 2: b"\xa2" * 48}
PCRS_B: Mapping[int, bytes] = {0: b"\xb0" * 48, 1: b"\xb1" * 48, 2: b"\xb2" * 48}


def noiseprotocol_peer(
    name: str,
    *,
    initiator: bool,
    secret: bytes,
    remote: bytes | None = None,
    prologue: bytes = b"",
    psks: Sequence[bytes] = (),
) -> NoiseConnection:
    """A noiseprotocol peer of protocol ``name``, its handshake started: our static ``secret``,
    the other side's static public key when the pattern pre-shares it, and the pre-shared keys
    its psk modifiers consume."""
    peer = NoiseConnection.from_name(name.encode())
    (peer.set_as_initiator if initiator else peer.set_as_responder)()
    peer.set_keypair_from_private_bytes(Keypair.STATIC, secret)
    if remote is not None:
        peer.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote)
    peer.set_prologue(prologue)
    if psks:
        peer.set_psks(psks=list(psks))
    peer.start_handshake()
    return peer


def scallop_noise_peer(secret: bytes, *, initiator: bool) -> NoiseConnection:
    """A noiseprotocol peer of Scallop's own protocol, with Scallop's prologue."""
    return noiseprotocol_peer(PROTOCOL_NAME, initiator=initiator, secret=secret, prologue=PROLOGUE)


@dataclass
class Party:
    """One Scallop endpoint: its static key pair, the enclave it claims to run, and an auther."""

    secret: bytes
    public: bytes
    pcrs: Mapping[int, bytes]
    authority: DevAuthority

    def auther(self, *, public_key: bytes | None = None, timestamp_ms: int | None = None) -> Auther:
        """Mint a dev document for our key (or ``public_key``, to test a wrong binding)."""

        async def mint() -> bytes:
            return self.authority.mint(
                self.pcrs,
                timestamp_ms=timestamp_ms if timestamp_ms is not None else wall_ms(),
                public_key=self.public if public_key is None else public_key,
            )

        return mint

    @property
    def image_id(self) -> bytes:
        from reef.attestation import image_id

        return image_id(self.pcrs)


@pytest.fixture
def authority(tmp_path: Path) -> DevAuthority:
    return DevAuthority.load_or_create(ReefHome(tmp_path / "dev-home"))


@pytest.fixture
def dev_root(authority: DevAuthority) -> TrustedRoot:
    return authority.root


@pytest.fixture
def make_party(authority: DevAuthority) -> Callable[..., Party]:
    def make(pcrs: Mapping[int, bytes] = PCRS_A) -> Party:
        secret, public = generate_x25519()
        return Party(secret, public, pcrs, authority)

    return make


@pytest.fixture
def policy(dev_root: TrustedRoot) -> PeerPolicy:
    return PeerPolicy(roots=[dev_root])


@pytest.fixture
async def silent_server(make_party: Callable[..., Party]) -> AsyncIterator[ScallopServer]:
    """A Scallop server on loopback that completes the handshake and never answers a request."""

    async def never(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise InputError("no lifespan here")
        await asyncio.Event().wait()

    server = await serve_asgi(never, "127.0.0.1", 0, static_key=make_party().secret)
    try:
        yield server
    finally:
        await server.aclose()
