"""A ``network.json`` as ``reef up`` writes it, for tests that need a recorded network (its
services at made-up addresses) without running one::

    from node.network_support import network_json

    NetworkInfo.from_json(network_json(block=3, rate_lock_s=300, kms={"public": url})).dump(home)
"""

from __future__ import annotations

from typing import Any

__all__ = ["network_json"]


def network_json(*, block: int, **fields: Any) -> dict[str, Any]:
    """The JSON of a network on chain 31337 whose contracts were deployed at ``block``;
    ``fields`` add to it or replace what it says."""
    return {
        "rpc_url": "http://127.0.0.1:8545",
        "chain_id": 31337,
        "deployment": {
            "chain_id": 31337,
            "token": "0x" + "11" * 20,
            "market": "0x" + "22" * 20,
            "kms_registry": "0x" + "33" * 20,
            "block": block,
        },
        "provider": "0x" + "44" * 20,
        "control_plane": "http://127.0.0.1:8080",
        "image_store": "http://127.0.0.1:8090",
        **fields,
    }
