"""`reef up` as a real process, shared by the end-to-end tests of one module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import Network, start_network, stop_network

from reef.chain.devnet._anvil import find_anvil
from reef.errors import ConfigError

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `make test` runs this suite a second time with --chain anvil; a machine without npm's
    # anvil then skips it with the reason rather than failing every test at `reef up`.
    if os.environ.get("REEF_E2E_CHAIN") != "anvil":
        return
    try:
        find_anvil()
    except ConfigError as exc:
        skip = pytest.mark.skip(reason=f"--chain anvil: {exc} ({exc.hint})")
        for item in items:
            if HERE in item.path.parents:
                item.add_marker(skip)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    net = start_network(tmp_path_factory.mktemp("reef-up"))
    try:
        yield net
    finally:
        code = stop_network(net)
        left = net.cli.json("enclave", "ps", "--all")
        running = [e for e in left if e["state"] in ("starting", "running")]
        assert running == [], f"enclaves left after reef up stopped: {running}"
        assert code == 0
