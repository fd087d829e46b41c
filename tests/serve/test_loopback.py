"""Which hosts count as loopback: the one check the KMS derive server (its bind address) and the
dashboard (its bind address and each peer's) make before they serve secrets or management."""

from __future__ import annotations

import socket

import pytest

from reef._listen import is_loopback
from reef.errors import InputError
from reef.kms import DeriveServer, EnclaveSeeds

LOOPBACK = [
    "127.0.0.1",
    "127.5.5.5",
    "127.255.255.254",
    "::1",
    "[::1]",
    "0:0:0:0:0:0:0:1",
    "::ffff:127.0.0.1",  # an IPv4 peer as a dual-stack socket reports it
    "[::ffff:127.9.9.9]",
    "localhost",
    "[localhost]",
]
NOT_LOOPBACK = [
    "0.0.0.0",
    "10.0.0.1",
    "128.0.0.1",
    "::",
    "::2",
    "fe80::1",
    "::ffff:10.0.0.1",
    "::ffff:0.0.0.0",
    "::127.0.0.1",  # IPv4-compatible (deprecated), not IPv4-mapped
    "example.com",
    "localhost.example.com",
    "LOCALHOST.",
    "",
    "127.0.0.1:80",
]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(
    "host", [h for h in LOOPBACK + NOT_LOOPBACK if ":" not in h and h[:1].isdigit()]
)
def test_ipv4_agrees_with_the_c_library(host: str) -> None:
    # An independent reading of the same addresses: 127.0.0.0/8 by their first byte.
    assert is_loopback(host) == (socket.inet_aton(host)[0] == 127)


async def _never(version: int | None) -> tuple[bytes, int]:
    raise AssertionError("a refused derive server asks for no seed")


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "::ffff:10.0.0.1", "example.com"])
def test_the_derive_server_refuses_a_host_beyond_loopback(host: str) -> None:
    with pytest.raises(InputError, match="must listen on loopback"):
        DeriveServer(EnclaveSeeds(_never), host=host, port=0)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "localhost"])
def test_the_derive_server_accepts_loopback(host: str) -> None:
    assert DeriveServer(EnclaveSeeds(_never), host=host, port=0).host == host
