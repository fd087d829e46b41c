"""Typed clients for the test token and the KMS registry, and the base every client shares.

A client wraps one deployed contract at ``address`` behind any web3 provider. Reads are
``eth_call``; writes go through a :class:`~reef.chain._tx.Transactor` (simulate, sign, send,
wait) and return a :class:`~reef.chain._tx.TxResult`. Amounts are ints in base units, checked
to be uint256 before anything is sent.

Reading a contract's typed events is written here once for every client (market, KMS
registry, proof market, serverless): :meth:`ContractClient.events` (all of them in a block
range, optionally narrowed by indexed topics), :meth:`ContractClient.events_of` (those of one
event class or its subclasses) and :meth:`ContractClient.events_to_head` (a follower's step: the
events up to the chain's head, and where to read next); "the first event of type X a
transaction emitted" is :meth:`~reef.chain._tx.TxResult.first`.

Paying a contract is written here once too: a client whose contract is paid in a token names
the contract's view of it (:attr:`ContractClient.PAID_IN`), and every such client has
:meth:`~ContractClient.token` (a :class:`TokenClient` sending from the same account) and
:meth:`~ContractClient.ensure_allowance`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Generic, Self, TypeVar, cast, overload

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from web3 import Web3
from web3.contract import Contract
from web3.types import TxParams, TxReceipt

from reef.chain._artifacts import ContractName, load_artifact
from reef.chain._events import (
    ChainEvent,
    EventDecoder,
    KmsRegistryEvent,
    kms_registry_decoder,
)
from reef.chain._reader import LOG_CHUNK_BLOCKS, read_events
from reef.chain._reasons import hint_for
from reef.chain._tx import (
    Hints,
    ProgressCallback,
    Sender,
    Transactor,
    TxResult,
    translate_errors,
)
from reef.chain._types import Address, Amount, check_uint, parse_address
from reef.encoding import parse_bytes32
from reef.errors import ChainError, ContractRevertError, InputError, MisuseError

__all__ = [
    "LOG_CHUNK_BLOCKS",
    "KmsRegistryClient",
    "TokenClient",
    "Topic",
    "check_uint",
    "deploy_contract",
]

EventT = TypeVar("EventT", bound=ChainEvent)
_E = TypeVar("_E", bound=ChainEvent)

Topic = int | bytes | str | None
"""One indexed-topic filter: a uint (as its 32-byte word), 32 bytes, ``0x`` hex, or ``None``
(any value)."""

_KMS_BATCH = 256  # DynArray bound of approveImages / revokeImages


def deploy_contract(transactor: Transactor, name: ContractName, *args: Any) -> tuple[Address, int]:
    """Deploy contract ``name`` with constructor ``args``; returns (address, block number)."""
    artifact = load_artifact(name)
    factory = transactor.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    with translate_errors(f"deploying {name}", hints=transactor.hints):
        constructor = factory.constructor(*args)
    _, receipt = transactor.send(constructor, f"deploy {name}")
    address = receipt["contractAddress"]
    if address is None:  # pragma: no cover - a successful creation always has one
        raise ChainError(f"deploying {name} produced no contract address")
    return Address(Web3.to_checksum_address(address)), int(receipt["blockNumber"])


def _topic(value: Topic, position: int) -> str | None:
    """``value`` as ``eth_getLogs`` takes a topic (``0x`` + 64 hex), or None for any."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return "0x" + check_uint(value, f"topic {position}").to_bytes(32, "big").hex()
    if isinstance(value, bytes | bytearray | str):
        return "0x" + parse_bytes32(value, name=f"topic {position}").hex()
    raise InputError(
        f"topic {position} must be an int, 32 bytes, 0x hex or None, got {type(value).__name__}"
    )


class ContractClient(Generic[EventT]):
    """Shared plumbing: the contract object, the transactor, receipt and log decoding.

    ``EventT`` is the type of the contract's typed events (the union its :attr:`EVENTS`
    decoder yields): what :meth:`events` returns and what its transactions' results carry.
    """

    CONTRACT: ClassVar[ContractName]
    EVENTS: ClassVar[Callable[[], EventDecoder] | None] = None
    """Builds the decoder of the contract's typed events; ``None`` for a client without them
    (its transactions' results then carry no events)."""
    HINTS: ClassVar[Hints] = hint_for
    """What to advise for the contract's revert reasons (the market's and token's by default):
    every revert of this client's calls and transactions carries its hint."""
    PAID_IN: ClassVar[str | None] = None
    """The contract's view of the token it is paid in (``"token"``, ``"TOKEN"``); ``None`` for
    a contract paid in none (:meth:`token` and :meth:`ensure_allowance` then refuse)."""
    FOUND_AT: ClassVar[str] = ""
    """Where users find this contract's address (an option, a file), for the hint when the
    address given holds another contract (:meth:`_read_as_self`)."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        account: Sender = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.address: Address = parse_address(address, name=f"{self.CONTRACT} address")
        self.w3 = w3
        self._account = account
        self._tx = Transactor(w3, account, progress=progress, hints=type(self).HINTS)
        self.contract: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(self.address), abi=load_artifact(self.CONTRACT).abi
        )

    @classmethod
    def _deploy(
        cls, w3: Web3, account: Sender, *args: Any, progress: ProgressCallback | None = None
    ) -> Self:
        """Deploy a new ``CONTRACT`` with constructor ``args`` from ``account``; a client for it
        sending from that account."""
        transactor = Transactor(w3, account, progress=progress, hints=cls.HINTS)
        address, _ = deploy_contract(transactor, cls.CONTRACT, *args)
        return cls(w3, address, account=account, progress=progress)

    @functools.cached_property
    def _decoder(self) -> EventDecoder:
        """The decoder of this contract's typed events (built once per client)."""
        build = type(self).EVENTS
        if build is None:
            raise ChainError(f"the {self.CONTRACT} client decodes no events")
        return build()

    @property
    def account(self) -> Sender:
        """The account this client signs with (as given)."""
        return self._account

    def with_account(self, account: Sender) -> Self:
        """A client of the same contract, sending from ``account``."""
        return type(self)(self.w3, self.address, account=account, progress=self._tx.progress)

    @property
    def sender(self) -> Address:
        """The account this client sends transactions from."""
        return self._tx.sender

    @functools.cached_property
    def _token_address(self) -> Address:
        """The token's address, asked once: every reef contract fixes its token at deployment."""
        getter = type(self).PAID_IN
        if getter is None:
            raise MisuseError(
                f"the {self.CONTRACT} contract is paid in no token",
                hint="ask the token of a contract that takes payments (the market, the proof "
                "market, the serverless contracts)",
            )
        return self._call_address(getter)

    def token_address(self) -> Address:
        """The address of the token this contract is paid in.

        Raises:
            MisuseError: the contract is paid in no token.
            ChainError: the node failed.
        """
        return self._token_address

    def token(self, *, progress: ProgressCallback | None = None) -> TokenClient:
        """A client of the token this contract is paid in, sending from this client's account
        and telling ``progress`` (by default this client's) of its transactions.

        Raises:
            MisuseError: the contract is paid in no token.
            ChainError: the node failed.
        """
        return TokenClient(
            self.w3,
            self.token_address(),
            account=self._account,
            progress=progress if progress is not None else self._tx.progress,
        )

    def ensure_allowance(self, amount: int, *, progress: ProgressCallback | None = None) -> None:
        """Let this contract take ``amount`` of this account's tokens (a stake, a deposit, a
        reward): when the allowance it has is less, approve it for all of them, so that one
        approval serves every later payment.

        Args:
            progress: hears of the approval's transaction, if one is sent (by default this
                client's progress).

        Raises:
            MisuseError: the contract is paid in no token.
            ChainError: the node failed, or the approval reverted.
        """
        token = self.token(progress=progress)
        if token.allowance(self.sender, self.address) < amount:
            token.approve(self.address, 2**256 - 1)

    def _call(self, function: str, *args: Any) -> Any:
        description = f"{self.CONTRACT}.{function}"
        with translate_errors(description, self.address, hints=self._tx.hints):
            fn = self.contract.get_function_by_name(function)(*args)
        return self._tx.call(fn, description)

    def _read_as_self(self, getter: str, *args: Any) -> Any:
        """:meth:`_call` of a getter this contract answers for any argument: where it reverts,
        the address holds some other contract (a token's given as this one), so that is what
        is said, not a reasonless revert's "an argument may be out of the contract's bounds".

        Raises:
            ChainError: the getter reverted.
        """
        try:
            return self._call(getter, *args)
        except ContractRevertError as exc:
            raise ChainError(
                f"{self.address} is not a {self.CONTRACT} contract (its {getter} reverted)",
                hint=f"check the {self.CONTRACT} contract's address"
                + (f" ({self.FOUND_AT})" if self.FOUND_AT else ""),
            ) from exc

    def _call_address(self, function: str, *args: Any) -> Address:
        """:meth:`_call` of a function that returns an address, checksummed."""
        return Address(Web3.to_checksum_address(self._call(function, *args)))

    def _call_lenient(self, function: str, args: Sequence[Any], outputs: Sequence[str]) -> Any:
        """Like :meth:`_call`, decoding ``string`` outputs as UTF-8 with replacement.

        The EVM does not check that a ``string`` is UTF-8, so anyone may store bytes that
        web3's strict decoding rejects; reading them must not crash an indexer or a CLI.
        """
        description = f"{self.CONTRACT}.{function}"
        with translate_errors(description, self.address, hints=self._tx.hints):
            data = self.contract.encode_abi(function, args=list(args))
            params: TxParams = {"to": self.address, "data": data}
            if self._tx.has_sender:
                params["from"] = self._tx.sender
            raw = self.w3.eth.call(params)
        if not raw:
            raise ChainError(
                f"{description}: no contract answered at {self.address}",
                hint="check the contract address and the chain (was the devnet restarted fresh?)",
            )
        types = ["bytes" if t == "string" else t for t in outputs]
        try:
            values = abi_decode(types, bytes(raw))
        except DecodingError as exc:
            raise ChainError(f"{description}: malformed answer from {self.address}") from exc
        return tuple(
            bytes(v).decode("utf-8", errors="replace") if t == "string" else v
            for t, v in zip(outputs, values, strict=True)
        )

    def _send(self, function: str, *args: Any) -> tuple[str, TxReceipt]:
        description = f"{self.CONTRACT}.{function}"
        with translate_errors(description, self.address, hints=self._tx.hints):
            fn = self.contract.get_function_by_name(function)(*args)
        return self._tx.send(fn, description)

    def _transact(self, function: str, *args: Any) -> TxResult[EventT]:
        """Send ``function(*args)``; the result's events are the typed events it emitted (none
        for a client without :attr:`EVENTS`)."""
        tx_hash, receipt = self._send(function, *args)
        return TxResult(
            tx_hash=tx_hash,
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=() if type(self).EVENTS is None else self._decode_receipt(receipt),
        )

    def _decode_receipt(self, receipt: TxReceipt) -> tuple[Any, ...]:
        """The events this contract emitted in a transaction (not those of contracts it called)."""
        ours = (
            log
            for log in receipt["logs"]
            if str(Web3.to_checksum_address(log["address"])) == self.address
        )
        return tuple(self._events(ours))

    def _events(self, logs: Iterable[Any]) -> list[Any]:
        """The typed events of ``logs``, in order (logs of events the decoder does not know are
        skipped)."""
        decoded = (self._decoder.decode(log) for log in logs)
        return [event for event in decoded if event is not None]

    def events(
        self,
        from_block: int = 0,
        to_block: int | str = "latest",
        *,
        topics: Sequence[Topic] = (),
        chunk: int = LOG_CHUNK_BLOCKS,
    ) -> list[EventT]:
        """This contract's typed events in ``[from_block, to_block]``, in chain order.

        Args:
            from_block: the first block read.
            to_block: the last block read, or ``"latest"``.
            topics: filters on indexed topics 1, 2, ... (topic 0, the event's signature, is
                free): an int is a uint's word, ``None`` any value. A topic means a different
                field in different events: :meth:`events_of` pins the event too.
            chunk: blocks per ``eth_getLogs`` request (public endpoints refuse wide ranges).

        Raises:
            ChainError: the client decodes no events, a log is malformed, or the node failed.
            InputError: a bad block range, chunk or topic.
        """
        return self._read(None, from_block, to_block, topics, chunk)

    def events_of(
        self,
        cls: type[_E],
        from_block: int = 0,
        to_block: int | str = "latest",
        *,
        topics: Sequence[Topic] = (),
        chunk: int = LOG_CHUNK_BLOCKS,
    ) -> list[_E]:
        """This contract's events of type ``cls`` (or of its subclasses) in the block range, in
        chain order; only their logs are asked for (topic 0), and ``topics`` narrow them as in
        :meth:`events`.

        Raises:
            MisuseError: this client's decoder knows no event of type ``cls``.
            ChainError, InputError: as :meth:`events`.
        """
        known = self._decoder.classes
        classes = [c for c in known if issubclass(c, cls)]
        if not classes:
            raise MisuseError(
                f"the {self.CONTRACT} client decodes no {cls.__name__} events",
                hint=f"its events are {', '.join(c.__name__ for c in known)}",
            )
        first: str | list[str] | None = None
        if len(classes) < len(known):  # every event the decoder knows needs no topic-0 filter
            signatures = ["0x" + t.hex() for t in self._decoder.topics_of(classes)]
            first = signatures[0] if len(signatures) == 1 else signatures
        events = self._read(first, from_block, to_block, topics, chunk)
        return [event for event in events if isinstance(event, cls)]

    @overload
    def events_to_head(self, from_block: int) -> tuple[list[EventT], int]: ...

    @overload
    def events_to_head(self, from_block: int, cls: type[_E]) -> tuple[list[_E], int]: ...

    def events_to_head(
        self, from_block: int, cls: type[_E] | None = None
    ) -> tuple[list[EventT], int] | tuple[list[_E], int]:
        """This contract's events (of type ``cls`` only, if given: as :meth:`events_of`) from
        ``from_block`` to the chain's head, and the block to read from next: a follower's cursor,
        so that a follower calling it again with that block reads nothing twice and skips
        nothing. Before the head reaches ``from_block``: no events, and ``from_block`` again.

        Raises:
            ChainError: the node failed, or a log is malformed.
            MisuseError: this client's decoder knows no event of type ``cls``.
        """
        with translate_errors(
            f"eth_blockNumber for {self.CONTRACT}", self.address, hints=self._tx.hints
        ):
            head = int(self.w3.eth.block_number)
        if head < from_block:
            return [], from_block
        if cls is None:
            return self.events(from_block, head), head + 1
        return self.events_of(cls, from_block, head), head + 1

    def _read(
        self,
        first: str | list[str] | None,
        from_block: int,
        to_block: int | str,
        topics: Sequence[Topic],
        chunk: int,
    ) -> list[EventT]:
        """The typed events of the logs whose topic 0 is ``first`` (None: any) and whose indexed
        topics match ``topics``, read by :func:`~reef.chain._reader.read_events` over web3.py."""
        what = f"eth_getLogs for {self.CONTRACT}"
        with translate_errors(what, self.address, hints=self._tx.hints):
            found = read_events(
                self._decoder,
                self.address,
                lambda _, log_filter: self.w3.eth.get_logs(log_filter),  # type: ignore[arg-type]
                lambda: self.w3.eth.block_number,
                what,
                from_block=from_block,
                to_block=to_block,
                topics=[first, *(_topic(t, i) for i, t in enumerate(topics, start=1))],
                chunk=chunk,
            )
        # EVENTS builds the decoder of EventT's classes: every event it yields is an EventT.
        return cast("list[EventT]", found)


class _OwnedClient(ContractClient[EventT]):
    """A contract with one owner who may hand it over (the token, the KMS registry)."""

    def owner(self) -> Address:
        return self._call_address("owner")

    def transfer_ownership(self, new_owner: str) -> TxResult[EventT]:
        return self._transact("transferOwnership", parse_address(new_owner, name="new owner"))


class TokenClient(_OwnedClient[ChainEvent]):
    """The ERC-20 test stable token (6 decimals; the owner mints)."""

    CONTRACT = "Token"

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        account: Sender,
        *,
        name: str = "reef test USD",
        symbol: str = "rUSD",
        progress: ProgressCallback | None = None,
    ) -> TokenClient:
        """Deploy a new token owned by ``account`` and return a client for it."""
        return cls._deploy(w3, account, name, symbol, progress=progress)

    def name(self) -> str:
        return str(self._call("name"))

    def symbol(self) -> str:
        return str(self._call("symbol"))

    def decimals(self) -> int:
        return int(self._call("decimals"))

    def total_supply(self) -> Amount:
        return Amount(int(self._call("totalSupply")))

    def balance(self, address: str | None = None) -> Amount:
        """Token balance of ``address`` (default: this client's account)."""
        who = parse_address(address) if address is not None else self.sender
        return Amount(int(self._call("balanceOf", who)))

    def allowance(self, owner: str, spender: str) -> Amount:
        return Amount(
            int(
                self._call(
                    "allowance",
                    parse_address(owner, name="owner"),
                    parse_address(spender, name="spender"),
                )
            )
        )

    def approve(self, spender: str, amount: int) -> TxResult[ChainEvent]:
        """Allow ``spender`` to transfer up to ``amount`` of this account's tokens."""
        return self._transact(
            "approve", parse_address(spender, name="spender"), check_uint(amount, "amount")
        )

    def transfer(self, to: str, amount: int) -> TxResult[ChainEvent]:
        return self._transact(
            "transfer", parse_address(to, name="recipient"), check_uint(amount, "amount")
        )

    def mint(self, to: str, amount: int) -> TxResult[ChainEvent]:
        """Create ``amount`` new tokens for ``to`` (only the token's owner may)."""
        return self._transact(
            "mint", parse_address(to, name="recipient"), check_uint(amount, "amount")
        )


def _image_id(value: bytes | str) -> bytes:
    return parse_bytes32(
        value,
        name="image id",
        hint="an image id is 32 bytes, sha256 over the PCRs: `reef image measure` prints it",
    )


class KmsRegistryClient(_OwnedClient[KmsRegistryEvent]):
    """The registry of image ids allowed to derive keys (Oyster's KmsVerifiable)."""

    CONTRACT = "KmsRegistry"
    EVENTS = kms_registry_decoder

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        account: Sender,
        image_ids: Iterable[bytes | str] = (),
        *,
        progress: ProgressCallback | None = None,
    ) -> KmsRegistryClient:
        """Deploy a registry owned by ``account``, approving ``image_ids`` (at most 256)."""
        ids = [_image_id(i) for i in image_ids]
        if len(ids) > _KMS_BATCH:
            raise InputError(
                f"at most {_KMS_BATCH} image ids can be approved at deployment, got {len(ids)}",
                hint="deploy with fewer, then call approve_images for the rest",
            )
        return cls._deploy(w3, account, ids, progress=progress)

    def is_approved(self, image_id: bytes | str) -> bool:
        """``oysterKMSVerify(imageId)``: may enclaves of this image derive keys?"""
        return bool(self._call("oysterKMSVerify", _image_id(image_id)))

    def _batched(
        self, function: str, image_ids: Sequence[bytes | str]
    ) -> TxResult[KmsRegistryEvent]:
        ids = [_image_id(i) for i in image_ids]
        if not ids:
            raise InputError("give at least one image id")
        events: list[Any] = []
        last: tuple[str, TxReceipt] | None = None
        gas = 0
        for start in range(0, len(ids), _KMS_BATCH):
            last = self._send(function, ids[start : start + _KMS_BATCH])
            gas += int(last[1]["gasUsed"])
            events.extend(self._decode_receipt(last[1]))
        assert last is not None
        return TxResult(
            tx_hash=last[0],
            block_number=int(last[1]["blockNumber"]),
            gas_used=gas,
            events=tuple(events),
        )

    def approve_images(self, image_ids: Sequence[bytes | str]) -> TxResult[KmsRegistryEvent]:
        """Approve image ids (one transaction per 256; the result is the last one's)."""
        return self._batched("approveImages", image_ids)

    def revoke_images(self, image_ids: Sequence[bytes | str]) -> TxResult[KmsRegistryEvent]:
        """Revoke image ids (one transaction per 256; the result is the last one's)."""
        return self._batched("revokeImages", image_ids)
