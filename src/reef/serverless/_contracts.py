"""Typed clients of the serverless contracts: the code contract and the Jobs contract.

Built on reef.chain's client base (:class:`reef.chain._clients.ContractClient`): reads are
``eth_call``, writes go through a ``Transactor`` (simulate, sign, send, wait) and return a
``TxResult``; reverts become :class:`~reef.errors.ContractRevertError` with the contract's
reason and, here, a hint from :mod:`reef.serverless._reasons`.

- :class:`ServerlessCodeClient` deploys a function (``saveCodeInCallData``; the transaction hash
  is its codehash) and fetches code back by codehash from the transaction's calldata, checking it
  was sent to this contract (Oyster's rule, reference §3);
- :class:`ServerlessJobsClient` registers executors (with the verifier's statement), opens jobs,
  submits signed outputs, slashes, and reads executors, jobs and their events.

Events are decoded by reef.chain's ``EventDecoder`` into the typed events of
:mod:`reef.serverless._events`, as every reef contract's are, and those events are what the
executors, the relay gateway and the CLI read: :meth:`ServerlessJobsClient.create_job` and
:meth:`~ServerlessJobsClient.requests` give :class:`~reef.serverless._events.JobCreated`,
:meth:`~ServerlessJobsClient.responses` gives :class:`~reef.serverless._events.JobResponded`.
:class:`CodeDeployment` adds what the event does not carry: the function's name, decoded from its
metadata.

One module (about 650 lines): the typed clients of the Code and Jobs contracts and the records
they return, kept beside each other because the Jobs client reads what the Code client wrote
(codehash) and both mirror one ABI each, function by function.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import rlp
from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound

from reef.attestation import VerifierStatement
from reef.chain import (
    Address,
    ChainEvent,
    ContractClient,
    ProgressCallback,
    Sender,
    TxResult,
    check_uint,
    format_amount,
    parse_address,
    quantity,
    translate_errors,
)
from reef.crypto import keccak256
from reef.encoding import parse_hex
from reef.errors import ChainError, InputError, MarketError
from reef.serverless._events import (
    CodeCreated,
    JobCreated,
    JobResponded,
    ServerlessJobsEvent,
    serverless_code_decoder,
    serverless_jobs_decoder,
)
from reef.serverless._reasons import serverless_hint
from reef.serverless._signing import SUBMIT_OUTPUT_TYPE, JobsDomain, SignedOutput, _hash32

__all__ = [
    "ENV_JAVASCRIPT",
    "CodeDeployment",
    "ExecutorRecord",
    "JobRecord",
    "JobsParams",
    "ServerlessCodeClient",
    "ServerlessJobsClient",
]

ENV_JAVASCRIPT = 1
"""Execution environment 1: JavaScript ES-module workers on workerd (Oyster's env id)."""
_SAVE_CODE = "saveCodeInCallData(string,bytes)"
_SAVE_CODE_SELECTOR = Web3.keccak(text=_SAVE_CODE)[:4]
_NOT_UTF8 = b"\xff"  # the runtime answers code 2 (not decodable) for calldata that is not code
_EventT = TypeVar("_EventT", bound=ChainEvent)


def _transaction_hash(tx: Mapping[str, Any]) -> bytes:
    """The hash of the signed transaction a node answered, rebuilt from its fields: legacy, and
    the EIP-2718 types ``type || rlp`` that exist (2930, 1559, 4844 blobs, 7702 set-code). Any
    of them can carry code: an author who deployed with one the executors cannot check would
    have every selected executor submit nothing, and collect their slashed stakes.

    Raises:
        ChainError: the answer is not such a transaction.
    """
    try:
        kind = quantity(tx.get("type", 0))
        # web3 formats some fields as HexBytes, a node may leave others hex text (nested ones,
        # such as authorizations, always): HexBytes and quantity read both.
        to = bytes(HexBytes(tx["to"])) if tx.get("to") else b""
        common = [quantity(tx["gas"]), to, quantity(tx["value"]), bytes(HexBytes(tx["input"]))]
        signature = [quantity(tx[k]) for k in ("r", "s")]
        if kind == 0:
            fields = [
                quantity(tx["nonce"]),
                quantity(tx["gasPrice"]),
                *common,
                quantity(tx["v"]),
            ]
            return keccak256(rlp.encode([*fields, *signature]))
        access = [
            [bytes(HexBytes(item["address"])), [bytes(HexBytes(k)) for k in item["storageKeys"]]]
            for item in tx.get("accessList", [])
        ]
        parity = quantity(tx.get("yParity", tx.get("v")))
        fees = ["gasPrice"] if kind == 1 else ["maxPriorityFeePerGas", "maxFeePerGas"]
        head = [quantity(tx["chainId"]), quantity(tx["nonce"]), *(quantity(tx[k]) for k in fees)]
        extra: list[Any] = []
        if kind == 3:
            hashes = [bytes(HexBytes(h)) for h in tx["blobVersionedHashes"]]
            extra = [quantity(tx["maxFeePerBlobGas"]), hashes]
        elif kind == 4:
            keys = ("chainId", "address", "nonce", "yParity", "r", "s")
            extra = [
                [
                    [quantity(a[k]) if k != "address" else bytes(HexBytes(a[k])) for k in keys]
                    for a in tx["authorizationList"]
                ]
            ]
        elif kind not in (1, 2):
            raise ChainError(
                f"the node's answer is a transaction of type {kind}, which reef cannot check",
                hint="deploy code with a legacy or an EIP-2930, 1559, 4844 or 7702 transaction",
            )
        body = rlp.encode([*head, *common, access, *extra, parity, *signature])
        return keccak256(bytes([kind]) + body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ChainError(
            f"the node's answer is not a transaction reef can check: {exc!r}",
            hint="deploy code with a legacy or an EIP-2930, 1559, 4844 or 7702 transaction",
        ) from exc


class _Client(ContractClient[_EventT]):
    """The serverless contracts' clients: their reverts carry the serverless hints (events are
    read as every client's: :meth:`~reef.chain.ContractClient.events` and ``events_of``)."""

    HINTS = serverless_hint

    def _check_typehash(self, constant: str, signed_type: str) -> None:
        """Check that the contract's public ``constant`` is the typehash of ``signed_type``, the
        type reef signs for it: a deployment from before a type changed (outputs came to bind
        their code and input) would refuse every signature, and an executor's silence there is
        slashed.

        Raises:
            ChainError: the contract checks another type.
        """
        if bytes(self._call(constant)) != keccak256(signed_type.encode()):
            raise ChainError(
                f"the {self.CONTRACT} contract at {self.address} checks signatures of another "
                f"type than reef signs ({signed_type})",
                hint="it was deployed by an older reef: deploy the serverless contracts anew "
                "(on reef's devnet, `reef up --fresh` starts a new chain with them)",
            )


@dataclass(frozen=True, kw_only=True)
class CodeDeployment:
    """One deployed function: its codehash, who deployed it, the name in its metadata."""

    codehash: str
    owner: Address
    name: str
    block_number: int


class ServerlessCodeClient(_Client[CodeCreated]):
    """The code contract: functions live in the calldata of a transaction to it."""

    CONTRACT = "ServerlessCode"
    EVENTS = serverless_code_decoder

    @classmethod
    def deploy(
        cls, w3: Web3, account: Sender, *, progress: ProgressCallback | None = None
    ) -> ServerlessCodeClient:
        return cls._deploy(w3, account, progress=progress)

    def deploy_code(self, source: bytes | str, metadata: bytes = b"") -> str:
        """Deploy a function; returns its codehash (the transaction hash, ``0x`` + 64 hex).

        Raises:
            InputError: when the source is not UTF-8 text (the contract takes a string).
        """
        text = source if isinstance(source, str) else _utf8(source)
        tx_hash, _ = self._send("saveCodeInCallData", text, bytes(metadata))
        return tx_hash.lower()

    def fetch_code(self, codehash: str | bytes) -> bytes | None:
        """The code deployed under ``codehash``, or None when there is none (error code 1).

        None also when the transaction was not sent to this contract (code deployed on another
        code contract is not this deployment's code). Calldata that is not a
        ``saveCodeInCallData`` call answers bytes the runtime rejects as not decodable (code 2).
        """
        key = HexBytes(_hash32(codehash, "codehash"))
        with translate_errors("eth_getTransactionByHash", self.address):
            try:
                tx = self.w3.eth.get_transaction(key)
            except TransactionNotFound:
                return None
        # The node is not trusted (an executor enclave's is its host's): what it answers must
        # be the transaction the codehash names, or the enclave would sign other code's answers
        # as this function's.
        if _transaction_hash(tx) != bytes(key):
            raise ChainError(
                f"the node's transaction for codehash 0x{bytes(key).hex()} does not hash to it",
                hint="the chain's node answered a forged transaction: use a node you trust",
            )
        to = tx.get("to")
        if to is None or parse_address(to) != self.address:
            return None
        data = bytes(tx.get("input", b""))
        if data[:4] != _SAVE_CODE_SELECTOR:
            return _NOT_UTF8
        try:
            code, _ = abi_decode(["bytes", "bytes"], data[4:])
        except DecodingError:
            return _NOT_UTF8
        return bytes(code)

    def deployments(
        self, from_block: int = 0, to_block: int | str = "latest"
    ) -> list[CodeDeployment]:
        """The functions deployed on this contract in the block range, in chain order."""
        out = []
        for created in self.events_of(CodeCreated, from_block, to_block):
            try:
                meta = json.loads(created.metadata)
                name = str(meta.get("name", "")) if isinstance(meta, dict) else ""
            except ValueError:
                name = ""
            out.append(
                CodeDeployment(
                    codehash=created.tx_hash.lower(),
                    owner=created.owner,
                    name=name,
                    block_number=created.block_number,
                )
            )
        return out


def _utf8(source: bytes) -> str:
    try:
        return source.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"the function's source is not UTF-8 text ({exc.reason} at byte {exc.start})",
            hint="save the file as UTF-8",
        ) from exc


@dataclass(frozen=True, kw_only=True)
class _Constants:
    """A contract's constants, fixed at deployment: uint256 fields that its constructor takes
    in the fields' order (:class:`JobsParams`, :class:`~reef.serverless.RelayParams`)."""

    def args(self) -> list[int]:
        """The constants in the constructor's order (the fields' order), checked as uint256.

        Raises:
            InputError: naming the field out of range.
        """
        return [check_uint(getattr(self, f.name), f.name) for f in fields(self)]


@dataclass(frozen=True, kw_only=True)
class JobsParams(_Constants):
    """The Jobs contract's constants (fixed at deployment).

    Attributes:
        fee_per_ms: token base units a job pays per millisecond of its deadline.
        min_stake: the least stake an executor may be selected with.
        slash_bips: the share of its stake (of 10 000) a selected executor loses per missed job.
        execution_buffer_s: seconds after a job's deadline in which outputs are still accepted;
            after it the job can be closed and its silent executors slashed. 60 s by default
            (Oyster's deploy script's value): a chain that stamps each block a second after
            the last (reef's devnet) runs its clock ahead of the wall clock under a burst of
            transactions, and an honest output must not miss its window for that.
        attestation_max_age_s: how old an attestation may be at registration.
        sign_max_age_s: how far a signature's timestamp may be from the block's.
        num_select: executors selected per job.
        min_deadline_ms, max_deadline_ms: the bounds of a job's deadline.
    """

    fee_per_ms: int = 1
    min_stake: int = 10 * 10**6
    slash_bips: int = 1000
    execution_buffer_s: int = 60
    attestation_max_age_s: int = 600
    sign_max_age_s: int = 600
    num_select: int = 3
    min_deadline_ms: int = 100
    max_deadline_ms: int = 300_000

    def output_window_s(self, deadline_ms: int) -> float:
        """Seconds from a job's start in which its outputs are accepted: its deadline plus the
        execution buffer. After it no output comes, and the job can be closed (slashing its
        silent executors); whoever waits for an output or a close adds the slack it needs."""
        return deadline_ms / 1000 + self.execution_buffer_s


@dataclass(frozen=True, kw_only=True)
class ExecutorRecord:
    """A registered executor as the Jobs contract holds it."""

    enclave: Address
    owner: Address
    stake: int
    job_capacity: int
    active_jobs: int
    env: int
    image_id: bytes
    draining: bool
    registered_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.enclave,
            "owner": self.owner,
            "stake": self.stake,
            "image_id": "0x" + self.image_id.hex(),
            "capacity": self.job_capacity,
            "active_jobs": self.active_jobs,
            "env": self.env,
            "draining": self.draining,
            "registered_at": self.registered_at,
        }


@dataclass(frozen=True, kw_only=True)
class JobRecord:
    """A job as the Jobs contract holds it (``input_hash``: keccak256 of its input, which an
    output's signature binds beside the codehash)."""

    job_id: int
    owner: Address
    env: int
    codehash: str
    input_hash: str
    deadline_ms: int
    start_time: int
    deposit: int
    escrow: int
    execution_time_ms: int
    output_count: int
    selected: tuple[Address, ...]
    submitted_mask: int
    callback: Address
    callback_gas_limit: int
    closed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "owner": self.owner,
            "env": self.env,
            "codehash": self.codehash,
            "input_hash": self.input_hash,
            "deadline_ms": self.deadline_ms,
            "start_time": self.start_time,
            "deposit": self.deposit,
            "escrow": self.escrow,
            "execution_time_ms": self.execution_time_ms,
            "output_count": self.output_count,
            "selected": list(self.selected),
            "answered": [a for i, a in enumerate(self.selected) if self.submitted_mask & (1 << i)],
            "callback": self.callback,
            "callback_gas_limit": self.callback_gas_limit,
            "closed": self.closed,
        }


class ServerlessJobsClient(_Client[ServerlessJobsEvent]):
    """The Jobs contract: executors, jobs, outputs, slashing."""

    CONTRACT = "ServerlessJobs"
    EVENTS = serverless_jobs_decoder
    PAID_IN = "TOKEN"
    FOUND_AT = "--jobs; `reef up` writes it to network.json as services.serverless.jobs_contract"

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        account: Sender,
        *,
        token: str,
        verifier: str,
        params: JobsParams | None = None,
        progress: ProgressCallback | None = None,
    ) -> ServerlessJobsClient:
        """Deploy a Jobs contract administered by ``account``, paid in ``token``, trusting
        attestation statements signed by ``verifier`` (an address)."""
        return cls._deploy(
            w3,
            account,
            parse_address(token, name="token"),
            parse_address(verifier, name="verifier"),
            *(params or JobsParams()).args(),
            progress=progress,
        )

    # -- reads ------------------------------------------------------------------------------

    def params(self) -> JobsParams:
        """The deployment's constants.

        Raises:
            ChainError: the address holds another contract (its first getter reverts).
        """
        return JobsParams(
            fee_per_ms=int(self._read_as_self("FEE_PER_MS")),
            min_stake=int(self._call("MIN_STAKE")),
            slash_bips=int(self._call("SLASH_BIPS")),
            execution_buffer_s=int(self._call("EXECUTION_BUFFER")),
            attestation_max_age_s=int(self._call("ATTESTATION_MAX_AGE")),
            sign_max_age_s=int(self._call("SIGN_MAX_AGE")),
            num_select=int(self._call("NUM_SELECT")),
            min_deadline_ms=int(self._call("MIN_DEADLINE")),
            max_deadline_ms=int(self._call("MAX_DEADLINE")),
        )

    def require_tokens(self, owner: str, amount: int, *, taken: str, hint: str) -> None:
        """Refuse, before any approval or transaction, what ``owner`` cannot pay in this
        contract's token (the contract would revert only after the approval was mined).

        Args:
            taken: what takes ``amount``, to end the message (``"the stake is"``).

        Raises:
            MarketError: naming what ``owner`` holds and what ``taken`` takes.
        """
        held = self.token().balance(owner)
        if held < amount:
            raise MarketError(
                f"account {owner} holds {format_amount(held)} rUSD; {taken} "
                f"{format_amount(amount)} rUSD ({amount} base units)",
                hint=hint,
            )

    def verifier(self) -> Address:
        return self._call_address("verifier")

    def admin(self) -> Address:
        return self._call_address("admin")

    def domain(self) -> JobsDomain:
        """The EIP-712 domain outputs of this deployment are signed in, once the contract is
        checked to take outputs of the type reef signs (:data:`SUBMIT_OUTPUT_TYPE`).

        Raises:
            ChainError: the contract checks another output type (an older deployment).
        """
        self._check_typehash("SUBMIT_OUTPUT_TYPEHASH", SUBMIT_OUTPUT_TYPE)
        return JobsDomain(chain_id=self._tx.chain_id(), jobs_contract=self.address)

    def is_whitelisted(self, image_id: bytes) -> bool:
        return bool(self._call("images", bytes(image_id)))

    def executor(self, enclave: str) -> ExecutorRecord | None:
        """The executor whose enclave key has address ``enclave``, or None if unregistered."""
        address = parse_address(enclave, name="executor address")
        raw = self._call("executors", address)
        owner, stake, capacity, active, env, image_id, draining, registered_at = raw
        if int(registered_at) == 0:
            return None
        return ExecutorRecord(
            enclave=address,
            owner=parse_address(owner),
            stake=int(stake),
            job_capacity=int(capacity),
            active_jobs=int(active),
            env=int(env),
            image_id=bytes(image_id),
            draining=bool(draining),
            registered_at=int(registered_at),
        )

    def executor_addresses(self) -> list[Address]:
        count = int(self._read_as_self("executorCount"))
        return [self._call_address("executorList", i) for i in range(count)]

    def executors(self) -> list[ExecutorRecord]:
        """Every registered executor, in the contract's list order (the selection order)."""
        found = (self.executor(a) for a in self.executor_addresses())
        return [e for e in found if e is not None]

    def available(self, env: int = ENV_JAVASCRIPT) -> int:
        return int(self._call("availableExecutors", check_uint(env, "env", bits=8)))

    def job_count(self) -> int:
        return int(self._call("jobCount"))

    def job(self, job_id: int) -> JobRecord | None:
        """The job ``job_id``, or None when there is no such job."""
        raw = self._read_as_self("jobInfo", check_uint(job_id, "job id"))
        (
            owner,
            env,
            codehash,
            input_hash,
            deadline,
            start,
            deposit,
            escrow,
            execution,
            count,
            selected,
            mask,
            callback,
            gas_limit,
            closed,
        ) = raw
        if int(str(owner), 16) == 0:
            return None
        return JobRecord(
            job_id=job_id,
            owner=parse_address(owner),
            env=int(env),
            codehash="0x" + bytes(codehash).hex(),
            input_hash="0x" + bytes(input_hash).hex(),
            deadline_ms=int(deadline),
            start_time=int(start),
            deposit=int(deposit),
            escrow=int(escrow),
            execution_time_ms=int(execution),
            output_count=int(count),
            selected=tuple(parse_address(a) for a in selected),
            submitted_mask=int(mask),
            callback=parse_address(callback),
            callback_gas_limit=int(gas_limit),
            closed=bool(closed),
        )

    # -- administration ---------------------------------------------------------------------

    def whitelist_image(self, image_id: bytes) -> TxResult[Any]:
        return self._transact("whitelistImage", _image(image_id))

    def revoke_image(self, image_id: bytes) -> TxResult[Any]:
        return self._transact("revokeImage", _image(image_id))

    # -- executors --------------------------------------------------------------------------

    def register_executor(
        self,
        statement: VerifierStatement,
        *,
        job_capacity: int,
        env: int,
        sign_timestamp: int,
        register_signature: bytes,
        stake: int,
    ) -> TxResult[Any]:
        """Register the enclave key the verifier's ``statement`` attests, owned by this
        client's account (which pays ``stake``; approve the Jobs contract first)."""
        return self._transact(
            "registerExecutor",
            statement.signature,
            statement.image_id,
            statement.timestamp_ms,
            statement.public_key,
            statement.user_data,
            check_uint(job_capacity, "job_capacity"),
            check_uint(env, "env", bits=8),
            check_uint(sign_timestamp, "sign_timestamp"),
            bytes(register_signature),
            check_uint(stake, "stake"),
        )

    def add_stake(self, enclave: str, amount: int) -> TxResult[Any]:
        return self._transact(
            "addStake", parse_address(enclave, name="executor"), check_uint(amount, "amount")
        )

    def drain(self, enclave: str) -> TxResult[Any]:
        return self._transact("drainExecutor", parse_address(enclave, name="executor"))

    def revive(self, enclave: str) -> TxResult[Any]:
        return self._transact("reviveExecutor", parse_address(enclave, name="executor"))

    def deregister(self, enclave: str) -> TxResult[Any]:
        return self._transact("deregisterExecutor", parse_address(enclave, name="executor"))

    # -- jobs -------------------------------------------------------------------------------

    def create_job(
        self,
        codehash: str | bytes,
        codeinputs: bytes,
        deadline_ms: int,
        *,
        env: int = ENV_JAVASCRIPT,
        callback: str | None = None,
        callback_gas_limit: int = 0,
    ) -> tuple[JobCreated, TxResult[Any]]:
        """Open a job (pays ``deadline_ms x FEE_PER_MS``; approve the Jobs contract first);
        returns its ``JobCreated`` event (id, selected executors) and the transaction."""
        result = self._transact(
            "createJob",
            check_uint(env, "env", bits=8),
            *_job_terms(codehash, codeinputs, deadline_ms, callback, callback_gas_limit),
        )
        return result.first(JobCreated), result

    def submit_output(self, signed: SignedOutput) -> TxResult[Any]:
        return self._transact("submitOutput", *signed.call_args())

    def slash_on_timeout(self, job_id: int) -> TxResult[Any]:
        """Close a job past its deadline and buffer: slash its silent executors, refund."""
        return self._transact("slashOnExecutionTimeout", check_uint(job_id, "job id"))

    def signed_output(self, tx_hash: str) -> SignedOutput:
        """The signed output a ``submitOutput`` transaction carried (its calldata), with the
        job's codehash and input hash its signature binds (the contract's record of the job),
        so anyone can check the executor's signature after the fact.

        Raises:
            InputError: the transaction is not a ``submitOutput`` call, or of no job.
        """
        with translate_errors("eth_getTransactionByHash", self.address):
            tx = self.w3.eth.get_transaction(HexBytes(parse_hex(tx_hash, name="tx hash")))
            function, args = self.contract.decode_function_input(tx["input"])
        if function.fn_name != "submitOutput":
            raise InputError(f"transaction {tx_hash} is not a submitOutput call")
        job = self.job(int(args["_jobId"]))
        if job is None:
            raise InputError(f"transaction {tx_hash} submits an output for no job")
        return SignedOutput(
            job_id=int(args["_jobId"]),
            codehash=parse_hex(job.codehash, name="codehash", length=32),
            input_hash=parse_hex(job.input_hash, name="input hash", length=32),
            output=bytes(args["_output"]),
            total_time=int(args["_totalTime"]),
            error_code=int(args["_errorCode"]),
            sign_timestamp=int(args["_signTimestamp"]),
            signature=bytes(args["_signature"]),
        )

    # -- events -----------------------------------------------------------------------------

    def requests(self, from_block: int, to_block: int | str = "latest") -> list[JobCreated]:
        """``JobCreated`` events (what selected executors must run) in the block range, in
        chain order."""
        return self.events_of(JobCreated, from_block, to_block)

    def responses(
        self, from_block: int, to_block: int | str = "latest", *, job_id: int | None = None
    ) -> list[JobResponded]:
        """``JobResponded`` events (the outputs the contract accepted) in the block range, of
        one job if given, in chain order."""
        topics = () if job_id is None else (check_uint(job_id, "job id"),)
        return self.events_of(JobResponded, from_block, to_block, topics=topics)


def _job_terms(
    codehash: str | bytes,
    codeinputs: bytes,
    deadline_ms: int,
    callback: str | None,
    callback_gas_limit: int,
) -> tuple[bytes, bytes, int, Address, int]:
    """A job's terms as the Jobs contract's ``createJob`` and the Relay's ``relayJob`` both take
    them (after ``createJob``'s env), checked; no ``callback`` is the zero address."""
    return (
        _hash32(codehash, "codehash"),
        bytes(codeinputs),
        check_uint(deadline_ms, "deadline_ms"),
        parse_address(callback, name="callback") if callback else Address("0x" + "0" * 40),
        check_uint(callback_gas_limit, "callback_gas_limit"),
    )


def _image(image_id: bytes) -> bytes:
    if not isinstance(image_id, bytes | bytearray) or len(image_id) != 32:
        raise InputError("an image id is 32 bytes")
    return bytes(image_id)
