"""Issue 11's handshake flood, replayed against a real KMS root on loopback.

An attacker keeps 1000 TCP connections open to the root's Scallop port; each sends nothing or
the first few bytes of a Noise handshake and then holds, and whatever the server closes is
opened again. Before handshake slots were shared per peer address, 300 such connections (the
limit was 256) left 0 of 4 enclaves with their seeds for as long as the attack lasted.

Every loopback peer is 127.0.0.1 unless it binds another address of 127/8 (all of it is
loopback on Linux), so the attacker binds 127.0.0.2 and up and the enclaves come from
127.0.0.1, as a crowd of hosts and a few honest ones would.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kms.kms_support import dev_root_server, dev_root_store
from reef.attestation import DevAuthority, image_id
from reef.crypto import generate_x25519
from reef.home import ReefHome
from reef.kms import KmsRoot, RootServer, fetch_enclave_seed
from reef.testing import wall_ms

pytestmark = [pytest.mark.timeout(120)]

ROOT_PCRS = {0: b"\xa0" * 48, 1: b"\xa1" * 48, 2: b"\xa2" * 48}
APP_PCRS = {0: b"\x10" * 48, 1: b"\x11" * 48, 2: b"\x12" * 48}
PARTIAL_HELLO = b"\x00\x00\x00\x40" + bytes(10)  # the start of handshake message 1, then silence


@dataclass
class Flood:
    """``count`` stalled handshakes spread over ``addresses`` source addresses, held open.

    A connection the server closes is opened again after ``reopen_after`` seconds, so the
    attacker keeps trying to hold ``count`` of them for as long as it runs.
    """

    port: int
    count: int
    addresses: list[str]
    reopen_after: float = 0.25
    opened: int = 0
    holding: int = 0
    most_held: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _all_opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def _hold(self, index: int) -> None:
        address = self.addresses[index % len(self.addresses)]
        while True:
            writer: asyncio.StreamWriter | None = None
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(address, 0)
                )
                self.opened += 1
                if self.opened >= self.count:
                    self._all_opened.set()
                self.holding += 1
                self.most_held = max(self.most_held, self.holding)
                try:
                    if index % 2:
                        writer.write(PARTIAL_HELLO)
                    await reader.read()  # returns when the server closes the connection
                finally:
                    self.holding -= 1
            except OSError:
                pass
            finally:
                if writer is not None:
                    writer.transport.abort()
            await asyncio.sleep(self.reopen_after)

    async def __aenter__(self) -> Flood:
        self._tasks = [asyncio.create_task(self._hold(i)) for i in range(self.count)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_opened.wait(), 30)
        assert self.opened >= self.count, f"the flood opened only {self.opened} connections"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def attacker_addresses(count: int) -> list[str]:
    base = int(ipaddress.IPv4Address("127.0.0.2"))
    return [str(ipaddress.IPv4Address(base + i)) for i in range(count)]


@dataclass
class Enclave:
    authority: DevAuthority

    def __post_init__(self) -> None:
        self.secret, self.public = generate_x25519()

    async def auther(self) -> bytes:
        return self.authority.mint(APP_PCRS, timestamp_ms=wall_ms(), public_key=self.public)


@pytest.fixture
def authority(tmp_path: Path) -> DevAuthority:
    return DevAuthority.load_or_create(ReefHome(tmp_path / "home"))


@pytest.fixture
async def root(tmp_path: Path, authority: DevAuthority) -> AsyncIterator[RootServer]:
    home = ReefHome(tmp_path / "home")
    store = dev_root_store(home, authority, ROOT_PCRS)
    kms = KmsRoot.open(store, attester=authority.attester(ROOT_PCRS, clock_ms=wall_ms))
    async with dev_root_server(kms, authority) as server:
        yield server


async def four_enclaves_get_their_seeds(root: RootServer, authority: DevAuthority) -> None:
    """Four enclaves of one image fetch their seed at once; each gets the image's seed."""
    enclaves = [Enclave(authority) for _ in range(4)]
    wiring = root.wiring()
    results = await asyncio.gather(
        *(
            fetch_enclave_seed(wiring, static_key=e.secret, auther=e.auther, deadline_s=5)
            for e in enclaves
        ),
        return_exceptions=True,
    )
    expected = root.root.keyring.enclave_seed(image_id(APP_PCRS))
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} of 4 enclaves got no seed: {failed[0]}"
    assert all(r == (expected, 0) for r in results)


@pytest.mark.parametrize(
    "spread",
    [pytest.param(1, id="one-address"), pytest.param(125, id="125-addresses")],
)
async def test_enclaves_get_their_seeds_while_1000_stalled_handshakes_are_held(
    root: RootServer, authority: DevAuthority, spread: int, caplog: pytest.LogCaptureFixture
) -> None:
    flood = Flood(root.scallop_port, 1000, attacker_addresses(spread))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="reef.scallop"):
        async with flood:
            for _ in range(2):  # twice: right after the flood starts, and once it has settled
                await four_enclaves_get_their_seeds(root, authority)
                await asyncio.sleep(1.0)
            # The server closed stalled connections and the attacker opened them again.
            assert flood.opened > 1000
        # After the attack, the root serves as before.
        await four_enclaves_get_their_seeds(root, authority)
    # Thousands of refusals, but the log holds about 20 lines a second and says how many more.
    lines = [r.getMessage() for r in caplog.records if r.name == "reef.scallop"]
    assert len(lines) <= 21 * (time.monotonic() - started + 1)
    assert any("were not logged" in line for line in lines)
