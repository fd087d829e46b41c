"""A plain anvil node for the tests that use one as an external chain, as an operator would run
it (not through reef's own ``reef up --chain anvil``)::

    from chain.anvil_support import plain_anvil

    @pytest.fixture(scope="module")
    def anvil() -> Iterator[str]:
        yield from plain_anvil("--chain-id", "84532")
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from reef.chain.devnet._anvil import _terminate, _wait_listening, find_anvil
from reef.errors import ConfigError

__all__ = ["plain_anvil"]


def plain_anvil(*args: str) -> Iterator[str]:
    """Run anvil on a free loopback port with ``args``; yield its URL, stop it after (a test
    skips, saying why, where npm's anvil is not installed)."""
    try:
        binary = find_anvil()
    except ConfigError:  # pragma: no cover - tests/js is installed wherever the suite runs
        pytest.skip("anvil is not installed (cd tests/js && npm install)")
    process = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield _wait_listening(process)
    finally:
        _terminate(process)
