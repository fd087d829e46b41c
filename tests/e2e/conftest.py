"""`reef up` as a real process, shared by the end-to-end tests of one module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import Network, start_network, stop_network


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
