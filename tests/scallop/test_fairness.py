"""Handshake slots over real loopback sockets: the heaviest address yields, one address cannot
take more than its share, and a stalled handshake is dropped early only when slots are scarce.

Loopback peers are told apart by binding other addresses of 127/8 (all loopback on Linux).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from reef.crypto import generate_x25519
from reef.errors import InputError
from reef.scallop import ScallopServer, ScallopStream, connect, serve

pytestmark = pytest.mark.timeout(30)


async def echo(stream: ScallopStream) -> None:
    async for chunk in stream:
        await stream.send(chunk)


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[ScallopServer]:
    options: dict[str, Any] = getattr(request, "param", {})
    running = await serve(echo, "127.0.0.1", 0, static_key=generate_x25519()[0], **options)
    yield running
    await running.aclose()


async def stall(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(b"\x00\x00\x00\x40" + bytes(10))  # half of handshake 1, then nothing
    await writer.drain()
    return reader, writer


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


async def served(port: int) -> bool:
    async with await connect("127.0.0.1", port, static_key=generate_x25519()[0]) as stream:
        await stream.send(b"hello")
        return await stream.readexactly(5) == b"hello"


@pytest.mark.parametrize("server", [{"max_handshakes": 4, "per_peer_handshakes": 4}], indirect=True)
async def test_a_full_server_takes_a_slot_from_the_heaviest_address(
    server: ScallopServer, caplog: pytest.LogCaptureFixture
) -> None:
    stalled = [await stall(server.port, "127.0.0.2") for _ in range(4)]
    await asyncio.sleep(0.1)
    assert server.handshaking == 4
    with caplog.at_level(logging.WARNING, logger="reef.scallop"):
        assert await served(server.port)  # 127.0.0.1 holds nothing: 127.0.0.2 yields
        assert await closed(stalled[0][0])  # the oldest stalled one made room
    assert server.evicted == 1
    assert any("to give its slot to another client" in r.getMessage() for r in caplog.records)
    for _, writer in stalled:
        writer.close()


@pytest.mark.parametrize("server", [{"max_handshakes": 8, "per_peer_handshakes": 2}], indirect=True)
async def test_one_address_cannot_take_more_than_its_share(
    server: ScallopServer, caplog: pytest.LogCaptureFixture
) -> None:
    first = [await stall(server.port, "127.0.0.2") for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="reef.scallop"):
        reader, writer = await stall(server.port, "127.0.0.2")
        assert await closed(reader)  # at once, though six slots are free
    assert any("at most 2 per address" in r.getMessage() for r in caplog.records)
    assert server.handshaking == 2
    assert await served(server.port)  # another address is not affected
    for _, stalled_writer in [*first, (reader, writer)]:
        stalled_writer.close()


@pytest.mark.parametrize(
    "server",
    [{"max_handshakes": 2, "per_peer_handshakes": 2, "busy_handshake_timeout": 0.3}],
    indirect=True,
)
async def test_stalled_handshakes_are_dropped_early_only_when_slots_are_scarce(
    server: ScallopServer,
) -> None:
    # Two addresses, one slot each: the server is full and fair, so a newcomer from one of them
    # takes the oldest handshake once it has run for busy_handshake_timeout (not the full 5 s).
    a = await stall(server.port, "127.0.0.2")
    b = await stall(server.port, "127.0.0.3")
    await asyncio.sleep(0.4)
    c = await stall(server.port, "127.0.0.3")
    assert await closed(a[0])
    assert server.evicted == 1
    assert server.handshaking == 2
    for _, writer in (a, b, c):
        writer.close()


async def test_bad_slot_limits_are_refused() -> None:
    key = generate_x25519()[0]
    with pytest.raises(InputError, match="per_peer_handshakes"):
        await serve(echo, "127.0.0.1", 0, static_key=key, per_peer_handshakes=0)
    with pytest.raises(InputError, match="busy_handshake_timeout"):
        await serve(echo, "127.0.0.1", 0, static_key=key, busy_handshake_timeout=0)
