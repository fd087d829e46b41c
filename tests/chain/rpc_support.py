"""A JSON-RPC poster that keeps what a reader sent through it, for the tests that count a
command's chain requests (the market reader's, the dashboard's, ``reef jobs``'s)::

    from chain.rpc_support import CountingRpc
"""

from __future__ import annotations

from typing import Any

__all__ = ["CountingRpc"]


class CountingRpc:
    """An :class:`~reef.chain._reader.RpcPoster` over ``rpc`` that keeps each post (a list: a
    batch) and the logs answered, and can refuse batches as a node without them does (one error
    object for the whole batch)."""

    def __init__(self, rpc: Any, *, batches: bool = True) -> None:
        self.rpc, self.batches = rpc, batches
        self.posts: list[Any] = []
        self.logs = 0

    def post(self, what: str, payload: Any) -> Any:
        self.posts.append(payload)
        if isinstance(payload, list) and not self.batches:
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "no batch"}}
        answer = self.rpc.post(what, payload)
        messages = payload if isinstance(payload, list) else [payload]
        answers = answer if isinstance(answer, list) else [answer]
        for message, item in zip(messages, answers, strict=False):
            if message["method"] == "eth_getLogs" and isinstance(item.get("result"), list):
                self.logs += len(item["result"])
        return answer
