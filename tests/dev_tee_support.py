"""Helpers for tests that run local dev-TEE enclaves (tests/enclave, tests/scallop, ...).

pytest puts the tests folder on ``sys.path`` (``pythonpath`` in pyproject.toml)::

    from dev_tee_support import attested, get, running_enclave, stop_all_enclaves
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from proc_support import pids_where
from reef.attestation import (
    AttestationClient,
    Expectations,
    TrustedRoot,
    VerifiedAttestation,
)
from reef.home import ReefHome

if TYPE_CHECKING:
    from reef.enclave import EnclaveBackend, EnclaveInfo, EnclaveSpec


async def get(url: str, *, attempts: int = 50, request_timeout: float = 10.0) -> httpx.Response:
    """GET, retrying every 0.1 s while nothing listens yet (the app inside is still starting)."""
    async with httpx.AsyncClient(timeout=request_timeout) as http:
        for _ in range(attempts):
            try:
                return await http.get(url)
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        return await http.get(url)


async def attested(url: str, *, root: TrustedRoot, image_id: bytes) -> VerifiedAttestation:
    """The document an attestation endpoint serves, verified live: chain to ``root``, fresh,
    of ``image_id`` (retrying for a few seconds while the enclave's server starts)."""
    client = AttestationClient(root=root)
    return await client.averify(url, expect=Expectations(image_id=image_id), wait_s=5.0)


@asynccontextmanager
async def running_enclave(backend: EnclaveBackend, spec: EnclaveSpec) -> AsyncIterator[EnclaveInfo]:
    """An enclave ``backend`` starts from ``spec``, stopped when the block ends."""
    info = await backend.start(spec)
    try:
        yield info
    finally:
        await backend.stop(info.id)


async def stop_all_enclaves(backend: EnclaveBackend) -> None:
    """Stop every enclave of ``backend`` still starting or running: a test leaves nothing
    behind, even when one of its checks failed."""
    for info in await backend.list():
        if info.state in ("starting", "running"):
            await backend.stop(info.id)


def _isolation_missing() -> str | None:
    from reef.enclave import check_host, missing_summary

    missing = missing_summary(check_host())
    return (
        None
        if missing is None
        else f"this host cannot isolate enclaves: {missing[0]} ({missing[1]})"
    )


ISOLATION_MISSING = _isolation_missing()
# For modules that start local enclaves: skipped, with the install command, where the host lacks
# what the dev TEE needs (they would be refused), instead of erroring.
requires_isolation = pytest.mark.skipif(
    ISOLATION_MISSING is not None, reason=ISOLATION_MISSING or ""
)


class LoopbackServer:
    """A TCP server on the host (loopback by default): an enclave's outbound peer, or a host
    service it must not reach; :meth:`handle` serves each connection in turn."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError


def spare_supervisors(home: ReefHome) -> list[int]:
    """PIDs of spare supervisors loaded for ``home`` (a spare waits in its home's directory)."""

    def spare_of_home(process: Path) -> bool:
        argv = (process / "cmdline").read_bytes().split(b"\0")
        return b"--spare" in argv and os.readlink(process / "cwd") == str(home.root)

    return pids_where(spare_of_home)


async def spare_supervisors_left(home: ReefHome) -> list[int]:
    """The spares of ``home`` still there after up to 10 s (a closed spare exits once it sees
    its pipe end)."""
    deadline = time.monotonic() + 10
    while spare_supervisors(home) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return spare_supervisors(home)
