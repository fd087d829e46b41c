"""A web3.py provider that answers from a :class:`Devnet` in this process, without HTTP.

Requests are encoded to JSON-RPC exactly as ``HTTPProvider`` encodes them and answered by the
same :class:`DevnetRpc` the HTTP endpoint uses, so code tested in process behaves the same
against ``reef chain`` on 127.0.0.1:8545; only the socket is missing.
"""

from __future__ import annotations

import json
from typing import Any, cast

from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from reef.chain.devnet._engine import Chain
from reef.chain.devnet._rpc import DevnetRpc

__all__ = ["DevnetProvider"]


class DevnetProvider(JSONBaseProvider):
    """``Web3(DevnetProvider(devnet))``: web3.py over a devnet in process."""

    def __init__(self, devnet: Chain, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._devnet = devnet
        self._rpc = DevnetRpc(devnet)

    @property
    def devnet(self) -> Chain:
        return self._devnet

    def __str__(self) -> str:
        return f"DevnetProvider(chain id {self._devnet.chain_id})"

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        request = json.loads(self.encode_rpc_request(method, params))
        return cast(RPCResponse, self._rpc.handle(request))

    def make_batch_request(
        self, requests: list[tuple[RPCEndpoint, Any]]
    ) -> list[RPCResponse] | RPCResponse:
        batch = json.loads(self.encode_batch_rpc_request(requests))
        return cast(list[RPCResponse] | RPCResponse, self._rpc.handle(batch))

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True
