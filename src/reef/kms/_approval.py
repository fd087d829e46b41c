"""Does a contract approve an image? ``IKMSVerifiable.oysterKMSVerify(bytes32) -> bool`` via eth_call.

The root server's contract flavour (reference oyster_cvm.md §2.3, §2.6) hands out a contract seed
only when the contract at the requested address says the caller's image id is approved. The call
is a plain JSON-RPC ``eth_call`` over httpx rather than web3.py: the root server is asyncio, the
call is one fixed selector, and a blocking web3 provider would stall every other client.

A reverting call, or an address with no code (empty return data), is an answer — "not approved" —
not a failure; only an unreachable or misbehaving RPC endpoint is an error (the server's 500).

The contract is the requesting enclave's choice. On a local chain (reef's devnet, anvil,
hardhat: chain 31337 or 1337) the call runs with a gas budget of the root's (:data:`APPROVAL_GAS`,
some forty times what a registry lookup needs) rather than the node's whole call budget: a
contract that loops costs the node a fraction of a second, not its call timeout (5 s of the
devnet's EVM, shared with every other service of ``reef up``), and exceeding the budget is an
error that says so. On other chains the node's own call budget applies unless ``call_gas`` is
given: Arbitrum counts the L1 cost of a call in its gas, so a fixed budget would refuse honest
calls whenever L1 is expensive ("intrinsic gas too low").

The endpoint may be a public node, or answered by whoever sits on the way: its answer is read
through :mod:`reef._fetch`, within the timeout (head and body together) and
:data:`MAX_RPC_ANSWER` bytes, so it cannot hang or fill the root that serves every enclave's seeds.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Final, Literal, Protocol

import httpx

from reef._fetch import read_bounded, request_to, tls_context
from reef.crypto import keccak256
from reef.encoding import parse_bytes32
from reef.errors import ConfigError, RPCError, ServiceError
from reef.kms._derive import _IMAGE_ID_HINT

__all__ = ["APPROVAL_GAS", "OYSTER_KMS_VERIFY_SELECTOR", "ImageApproval", "RpcApproval"]

OYSTER_KMS_VERIFY_SELECTOR = keccak256(b"oysterKMSVerify(bytes32)")[:4]
APPROVAL_GAS: Final = 1_000_000
"""Gas an ``oysterKMSVerify`` call may use on a local chain (a registry lookup needs about
25 000)."""
_LOCAL_CHAINS: Final = frozenset({31337, 1337})
MAX_RPC_ANSWER: Final = 64 * 1024
"""The longest JSON-RPC answer read: an eth_call of a bool, or an error message."""
_HINT: Final = "check --rpc-url and that the chain is running"
_HEX_WORD: Final = re.compile(r"[0-9a-fA-F]{64}")


class ImageApproval(Protocol):
    """Answers whether the contract at ``address`` approves ``image_id``.

    Raises :class:`reef.errors.ChainError` when it cannot find out.
    """

    chain_id: int

    async def __call__(self, address: str, image_id: bytes) -> bool: ...


class RpcApproval:
    """:class:`ImageApproval` over an Ethereum JSON-RPC endpoint.

    Args:
        rpc_url: the JSON-RPC endpoint (``http://127.0.0.1:8545`` for the devnet).
        chain_id: the chain the contract seeds are bound to; :meth:`check_chain` confirms it.
        transport: an httpx transport (tests pass an in-process one).
        timeout: seconds per call.
        call_gas: the gas each ``oysterKMSVerify`` call may use; ``"auto"``:
            :data:`APPROVAL_GAS` on a local chain (31337, 1337), the node's own budget on others
            (see the module docstring); None: the node's own budget.
    """

    def __init__(
        self,
        rpc_url: str,
        chain_id: int,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 5.0,
        call_gas: int | Literal["auto"] | None = "auto",
    ) -> None:
        if call_gas == "auto":
            call_gas = APPROVAL_GAS if chain_id in _LOCAL_CHAINS else None
        self.call_gas = call_gas
        """The gas each call may use (None: the node's own budget)."""
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self._transport = transport
        self._timeout = timeout
        self._ids = itertools.count(1)

    async def _rpc(self, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        what = "the verification RPC"
        try:
            request = request_to("POST", self.rpc_url, what=what, hint=_HINT, json=body)
            async with httpx.AsyncClient(
                transport=self._transport, timeout=self._timeout, verify=tls_context()
            ) as http:
                answer = await read_bounded(
                    http,
                    request,
                    max_bytes=MAX_RPC_ANSWER,
                    deadline_s=self._timeout,
                    what=what,
                    hint=_HINT,
                )
            if answer.status >= 400:
                raise RPCError(
                    f"the verification RPC {self.rpc_url} answered HTTP {answer.status}",
                    hint=_HINT,
                )
            reply = answer.json(what=f"the verification RPC {self.rpc_url}'s answer")
        except ServiceError as exc:  # unreachable, out of bounds, or no JSON
            raise RPCError(exc.message, hint=_HINT) from exc
        if not isinstance(reply, dict):
            raise RPCError(f"the verification RPC {self.rpc_url} answered a non-object")
        return reply

    async def check_chain(self) -> None:
        """Confirm the endpoint serves ``chain_id``.

        Raises:
            ConfigError: when it serves another chain.
            RPCError: when it cannot be asked.
        """
        reply = await self._rpc("eth_chainId", [])
        try:
            served = int(reply["result"], 16)
        except (KeyError, TypeError, ValueError) as exc:
            raise RPCError(f"eth_chainId answered {reply!r}") from exc
        if served != self.chain_id:
            raise ConfigError(
                f"the verification RPC {self.rpc_url} serves chain {served}, "
                f"not the configured {self.chain_id}",
                hint="fix --chain-id or --rpc-url",
            )

    async def __call__(self, address: str, image_id: bytes) -> bool:
        """Call ``oysterKMSVerify(image_id)`` on ``address`` at the latest block.

        Raises:
            InputError: when the image id is not 32 bytes.
            RPCError: when the endpoint fails or answers something that is not a bool.
        """
        image_id = parse_bytes32(image_id, name="image id", hint=_IMAGE_ID_HINT)
        data = "0x" + (OYSTER_KMS_VERIFY_SELECTOR + image_id).hex()
        call = {"to": address, "data": data}
        if self.call_gas is not None:
            call["gas"] = hex(self.call_gas)
        reply = await self._rpc("eth_call", [call, "latest"])
        if "error" in reply:
            error = reply["error"]
            message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
            # Execution reverted: the contract refuses (or lacks the function). That is a "no".
            if "revert" in message.lower() or (isinstance(error, dict) and error.get("code") == 3):
                return False
            if self.call_gas is not None and _out_of_gas(message):
                raise RPCError(
                    f"oysterKMSVerify on {address} needs more than the {self.call_gas} gas this "
                    f"KMS root lets it use ({message[:120]})",
                    hint="a contract that approves images must answer within that budget",
                )
            raise RPCError(f"eth_call to {address} failed: {message[:200]}")
        result = reply.get("result")
        if not isinstance(result, str) or not result.startswith("0x"):
            raise RPCError(f"eth_call to {address} answered {result!r}")
        digits = result[2:]
        if not digits or len(digits) % 2:
            return False  # no code at the address: nothing approves anything
        # fullmatch, not bytes.fromhex: a node (or whoever answers for it) may send anything,
        # and fromhex's ValueError would escape the root's handler as a bug.
        raw = bytes.fromhex(digits) if _HEX_WORD.fullmatch(digits) else b""
        if len(raw) != 32 or raw[:31] != bytes(31) or raw[31] > 1:
            raise RPCError(f"oysterKMSVerify on {address} returned {result[:80]!r}, not a bool")
        return raw[31] == 1


def _out_of_gas(message: str) -> bool:
    """Whether an eth_call error says the call ran out of its gas (geth and anvil: "out of
    gas"; reef's devnet and hardhat: "gas required exceeds allowance")."""
    lowered = message.lower()
    return "out of gas" in lowered or "gas required exceeds" in lowered or "outofgas" in lowered
