"""The prover service (``reef prover run``) and the input verification service (IVS).

:class:`ProverService` follows the market's events for tasks assigned to its account, and for
each: checks the ask is still assigned to it, fetches the market's circuit artifacts by hash,
proves with snarkjs in a worker thread, and submits the proof. Inputs that admit no proof
(the witness fails) go to the market's :class:`InputVerifier`, whose signature closes the ask
as invalid without slashing. Each outcome is reported as a :class:`TaskOutcome`.

Private inputs: for an ask that has them the prover opens the ACL the engine made for it (the
``SecretAssigned`` event) with its market key, opens the body logged at creation
(``AskSecret``) with the AES key inside, and proves with the public and private inputs
together as snarkjs's input object. A body that opens but holds no valid private inputs is an
invalid input like any other.

Auctions: the service also follows the auction asks of its markets and locks one (``lock``) as
soon as its price reaches the prover's own quote in that market, then proves it like any task.

Retired markets: the service takes no new work in a market its creator retired (it locks none
of its auctions), but proves the tasks it holds there, which it would otherwise be slashed for.

:class:`InputVerifier` holds the key the market names as its IVS. It signs "invalid" only after
checking for itself that no witness exists (running the circuit), so a lazy prover cannot use
it to escape a valid ask. In Kalypso it runs as an enclave; here it is an object a node wires.
For an ask with private inputs the prover hands it the ask's AES key (Kalypso re-encrypts it
to the IVS's key; here the IVS shares the prover's process); the IVS signs only if that key
opens the body on chain (AES-GCM authenticates it, so it cannot be another key) and what is
inside admits no proof.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from reef.crypto import Secp256k1PrivateKey
from reef.errors import ChainError, ContractRevertError, InvalidProofInputError, ProofError
from reef.proofs._auction import AuctionTerms
from reef.proofs._client import ProofMarketClient
from reef.proofs._events import (
    AskCancelled,
    AskExpired,
    AuctionCreated,
    MarketCreated,
    MarketRetired,
    TaskAssigned,
)
from reef.proofs._groth16 import SCALAR_FIELD, Groth16Proof, prove
from reef.proofs._loop import _step_until_stopped
from reef.proofs._market import ArtifactStore, MarketMetadata
from reef.proofs._reasons import ProofRevert
from reef.proofs._runtime import SnarkjsRuntime
from reef.proofs._secret import ecies_decrypt, open_secret, parse_private_inputs
from reef.proofs._tee import TeeWorker
from reef.proofs._types import Ask, AskState, MarketKind

__all__ = [
    "InputVerifier",
    "InvalidInputAttester",
    "ProverService",
    "TaskOutcome",
    "circuit_input",
]

log = logging.getLogger("reef.proofs.prover")

_MAX_ATTEMPTS = 50  # a task is retried while assigned and in time; this bounds a stuck node
_VERDICTS = 4096  # asks whose IVS verdict is remembered


def circuit_input(metadata: MarketMetadata, inputs: tuple[int, ...]) -> dict[str, str]:
    """The snarkjs input object for an ask: the market's public input names → decimal values.

    Raises:
        ProofError: the ask's inputs and the market's names differ in number.
        InvalidProofInputError: an input is not below BN254's scalar field. snarkjs would
            prove it reduced, but the chain checks the proof's public signals against the
            ask's inputs and its verifier refuses signals outside the field: no proof of such
            an ask is ever accepted, so it is an invalid input (or its honest prover would be
            slashed).
    """
    if len(inputs) != len(metadata.public_inputs):
        raise ProofError(
            f"the ask has {len(inputs)} inputs but the market names {len(metadata.public_inputs)}"
        )
    for name, value in zip(metadata.public_inputs, inputs, strict=True):
        if value >= SCALAR_FIELD:
            raise InvalidProofInputError(
                f"public input {name} = {value} is not below BN254's scalar field: no proof "
                "of it verifies on chain",
                hint="give each public input as a number below the field's modulus",
            )
    return {name: str(value) for name, value in zip(metadata.public_inputs, inputs, strict=True)}


def _check_signals(proof: Groth16Proof, inputs: tuple[int, ...]) -> None:
    """That ``proof``'s public signals end with the ask's inputs, as the contract requires.

    Raises:
        InvalidProofInputError: they do not. The circuit, run on the inputs as the market
            names them, makes other public signals (a public input named again among the
            private ones, say), so no proof of these inputs is ever accepted: submitting one
            would only revert until the prover is slashed.
    """
    signals = proof.public_signals
    if len(signals) < len(inputs) or (inputs and signals[-len(inputs) :] != inputs):
        raise InvalidProofInputError(
            f"the circuit's public signals for these inputs do not end with the ask's "
            f"{len(inputs)} inputs, so the chain accepts no proof of them",
            hint="a market's public inputs are its circuit's, named once, in declaration order",
        )


@dataclass(frozen=True)
class _Circuit:
    metadata: MarketMetadata
    wasm: Path
    zkey: Path


def _with_private(
    client: ProofMarketClient,
    ask_id: int,
    market_id: int,
    metadata: MarketMetadata,
    aes_key: bytes,
    signals: dict[str, str],
) -> dict[str, str]:
    """``signals`` plus the ask's private inputs, opened with ``aes_key``.

    Raises:
        ProofError: the key does not open the body.
        InvalidProofInputError: it opens, but does not hold the market's private inputs.
    """
    body = client.ask_secret(ask_id).secret
    plaintext = open_secret(body, aes_key, market_id)
    private = parse_private_inputs(plaintext, list(metadata.private_inputs), quote=False)
    return {**signals, **private}


def _circuit(store: ArtifactStore, metadata_json: str) -> _Circuit:
    """The market's circuit files, by the hashes its metadata names.

    Raises:
        ProofError: the metadata is not reef's, names no ``wasm`` or ``zkey``, or the store
            lacks a file.
    """
    metadata = MarketMetadata.from_json(metadata_json)
    missing = sorted({"wasm", "zkey"} - set(metadata.artifacts))
    if missing:
        raise ProofError(
            f"the market's metadata names no {' and no '.join(missing)} artifact",
            hint="a Groth16 market is created with its circuit's files (reef proofs market create)",
        )
    return _Circuit(
        metadata, store.get(metadata.artifacts["wasm"]), store.get(metadata.artifacts["zkey"])
    )


@dataclass(frozen=True)
class InputVerifier:
    """A market's input verification service: signs that an ask's inputs admit no proof.

    ``account`` is the key the market names as its IVS; ``store`` holds the markets' circuit
    artifacts and ``runtime`` runs snarkjs, with which it checks that no witness exists.
    """

    account: LocalAccount
    store: ArtifactStore
    runtime: SnarkjsRuntime
    _verdicts: OrderedDict[tuple[bytes, str, bytes | None], bytes | str] = field(
        default_factory=OrderedDict, init=False, repr=False, compare=False
    )
    """(the ask's ``invalidInputDigest``, its market's metadata, the key given) → the
    signature, or the refusal, for an ask already judged: its inputs and its market's circuit
    never change, so neither does the verdict, and asking again must not cost another proof
    (the most recent few thousand). The digest binds the chain id, the market contract, the ask
    id and its inputs: the market address and ask id alone come again on a fresh devnet (same
    deployer, same chain id) for an ask with other inputs, and a kept refusal then got the new
    ask's honest prover slashed."""
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def address(self) -> str:
        return str(self.account.address)

    def attest_invalid(
        self,
        client: ProofMarketClient,
        ask_id: int,
        metadata_json: str,
        secret_key: bytes | None = None,
    ) -> bytes:
        """The signature ``submitInvalidInput`` accepts, after checking the inputs are invalid.
        ``secret_key`` is the AES key of the ask's private inputs, when it has some.

        It runs the circuit only for an ask that is assigned, of a market whose IVS is this
        one (no other signature closes an ask), and once per ask: anyone may ask, and each
        proof costs seconds of CPU. One ask is judged at a time.

        Raises:
            ProofError: the inputs are valid (a proof exists), or the ask has private inputs
                and ``secret_key`` does not open them, so the IVS refuses to sign; or the ask
                is not assigned, or its market names another IVS.
        """
        ask = client.ask(ask_id)
        if ask.state != AskState.ASSIGNED:
            raise ProofError(
                f"ask {ask_id} is {ask.state.label}, not assigned: only an assigned ask can be "
                "closed as invalid",
                hint="ask again once the ask is assigned, before its deadline",
            )
        ivs = client.market(ask.market_id).ivs
        if ivs.lower() != self.address.lower():
            raise ProofError(
                f"market {ask.market_id}'s IVS is {ivs}, not this service ({self.address})",
                hint="ask the market's own input verification service",
            )
        digest = client.invalid_input_digest(ask_id)
        cached = (digest, metadata_json, secret_key)
        with self._lock:
            verdict = self._verdicts.get(cached)
            if verdict is None:
                verdict = self._judge(client, ask_id, ask, metadata_json, secret_key, digest)
                self._verdicts[cached] = verdict
                while len(self._verdicts) > _VERDICTS:
                    self._verdicts.popitem(last=False)
        if isinstance(verdict, str):
            raise ProofError(verdict, hint="prove the ask instead")
        return verdict

    def _judge(
        self,
        client: ProofMarketClient,
        ask_id: int,
        ask: Ask,
        metadata_json: str,
        secret_key: bytes | None,
        digest: bytes,
    ) -> bytes | str:
        """The signature of ``digest`` (the ask's ``invalidInputDigest``), or (as text) the
        refusal because the inputs admit a proof.

        Raises:
            ProofError: no verdict: the circuit cannot be run, or the key does not open the
                private inputs (nothing is remembered, so a later request may succeed).
        """
        circuit = _circuit(self.store, metadata_json)
        inputs = client.inputs(ask_id)
        try:
            signals = circuit_input(circuit.metadata, inputs)
            if ask.has_secret:
                if secret_key is None:
                    raise ProofError(
                        f"ask {ask_id} has private inputs; the IVS needs their key to check them"
                    )
                signals = _with_private(
                    client, ask_id, ask.market_id, circuit.metadata, secret_key, signals
                )
            _check_signals(prove(self.runtime, circuit.wasm, circuit.zkey, signals), inputs)
        except InvalidProofInputError:
            return bytes(self.account.sign_message(encode_defunct(primitive=digest)).signature)
        return f"ask {ask_id}'s inputs admit a proof; the input verification service will not sign"


class InvalidInputAttester(Protocol):
    """What a prover asks for an invalid input's signature: an :class:`InputVerifier` in
    process, or :class:`~reef.proofs.RemoteInputVerifier` over HTTP."""

    def attest_invalid(
        self,
        client: ProofMarketClient,
        ask_id: int,
        metadata_json: str,
        secret_key: bytes | None = None,
    ) -> bytes: ...


@dataclass(frozen=True)
class TaskOutcome:
    """What the prover did with one task: ``proved``, ``invalid``, ``skipped`` or ``failed``
    (and ``locked`` when it took an auction ask, ``detail`` being the price)."""

    ask_id: int
    outcome: str
    detail: str = ""


class ProverService:
    """Proves the tasks the matching engine assigns to ``client``'s account.

    Args:
        client: the market, with the prover's account.
        store: where the markets' circuit artifacts are (by hash).
        runtime: the snarkjs toolchain.
        verifiers: input verification services by market id (for invalid inputs).
        from_block: the first block to look for tasks in.
        markets: prove only for these markets (default: every market it can).
        tee: the enclave worker for each TEE market it serves.
        on_outcome: called with each task's outcome (logging, status).
        encryption_key: the secp256k1 secret of the key it registered for private markets
            (default: its account's key, what ``reef prover join`` registers).
    """

    def __init__(
        self,
        client: ProofMarketClient,
        store: ArtifactStore,
        runtime: SnarkjsRuntime,
        *,
        verifiers: Mapping[int, InvalidInputAttester] | None = None,
        from_block: int = 0,
        markets: Iterable[int] | None = None,
        tee: Mapping[int, TeeWorker] | None = None,
        on_outcome: Callable[[TaskOutcome], None] | None = None,
        encryption_key: bytes | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.runtime = runtime
        self.verifiers = dict(verifiers or {})
        self.on_outcome = on_outcome
        self._next_block = from_block
        self.markets = None if markets is None else frozenset(markets)
        self.tee = dict(tee or {})
        self._metadata: dict[int, str] = {}
        self._kinds: dict[int, int] = {}
        self._queue: list[int] = []
        self._attempts: dict[int, int] = {}
        self._proofs: dict[int, Groth16Proof] = {}
        """Ask id → a proof made but not yet accepted (a retry resubmits it, not re-proves)."""
        self.outcomes: list[TaskOutcome] = []
        self.auctions: dict[int, AuctionTerms] = {}
        """Open auction asks of its markets, by ask id."""
        self.retired: set[int] = set()
        """Markets retired by their creators: no auction of theirs is locked."""
        if encryption_key is None:
            encryption_key = getattr(client.account, "key", None)
        self._key = None if encryption_key is None else Secp256k1PrivateKey(bytes(encryption_key))

    @property
    def public_key(self) -> bytes | None:
        """The public key to register for private markets (64 bytes); None without a key."""
        return None if self._key is None else self._key.public_key.raw

    def _aes_key(self, ask_id: int) -> bytes:
        if self._key is None:
            raise ProofError(f"ask {ask_id} has private inputs and this prover has no key")
        return ecies_decrypt(self._key.secret, self.client.assigned_acl(ask_id).acl)

    def poll(self) -> list[int]:
        """Read new events; returns the ask ids newly assigned to this prover."""
        events, self._next_block = self.client.events_to_head(self._next_block)
        new = []
        for event in events:
            if isinstance(event, MarketCreated):
                self._metadata[event.market_id] = event.metadata
                self._kinds[event.market_id] = event.kind
            elif isinstance(event, MarketRetired):
                self.retired.add(event.market_id)
                for ask_id in [
                    a for a, t in self.auctions.items() if t.market_id == event.market_id
                ]:
                    del self.auctions[ask_id]
            elif isinstance(event, AuctionCreated):
                if self.markets is None or event.market_id in self.markets:
                    self.auctions[event.ask_id] = AuctionTerms(
                        event.ask_id, event.market_id, event.min_price, event.max_price,
                        event.start, event.ramp_end,
                    )  # fmt: skip
            elif isinstance(event, AskExpired | AskCancelled):
                self.auctions.pop(event.ask_id, None)
            elif isinstance(event, TaskAssigned):
                self.auctions.pop(event.ask_id, None)
                if event.prover != self.client.sender:
                    continue
                if self.markets is not None and event.market_id not in self.markets:
                    continue
                new.append(event.ask_id)
        self._queue.extend(new)
        return new

    def _market_of(self, market_id: int) -> tuple[int, str]:
        """The kind and metadata of ``market_id``, from its ``MarketCreated`` event: the one
        :meth:`poll` read, or, for a market created before ``from_block``, the one found on
        the chain (once). Without this a task in such a market was skipped, and its prover
        slashed.

        Raises:
            ProofError: the market has no ``MarketCreated`` event.
        """
        if market_id not in self._kinds:
            found = self.client.events_of(MarketCreated, 0, topics=[market_id])
            if not found:
                raise ProofError(f"market {market_id} has no MarketCreated event on this chain")
            self._kinds[market_id] = found[0].kind
            self._metadata[market_id] = found[0].metadata
        return self._kinds[market_id], self._metadata[market_id]

    def work(self, ask_id: int) -> TaskOutcome:
        """Prove one task (or close it as invalid); never raises for the task's own failures."""
        try:
            outcome = self._work(ask_id)
        except (ProofError, ChainError) as exc:
            outcome = TaskOutcome(ask_id, "failed", str(exc))
        self.outcomes.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def _work(self, ask_id: int) -> TaskOutcome:
        ask = self.client.ask(ask_id)
        if ask.state != AskState.ASSIGNED or ask.prover != self.client.sender:
            return TaskOutcome(ask_id, "skipped", f"the ask is {ask.state.label}")
        kind, metadata_json = self._market_of(ask.market_id)
        worker = self.tee.get(ask.market_id)
        if kind == MarketKind.TEE and worker is not None:
            output = list(worker.compute(self.client.inputs(ask_id)))
            result = self.client.submit_tee_proof(
                ask_id, output, worker.sign(self.client, ask_id, output)
            )
            return TaskOutcome(ask_id, "proved", result.tx_hash)
        if kind != MarketKind.GROTH16:
            return TaskOutcome(ask_id, "skipped", "no prover here for this market's kind")
        circuit = _circuit(self.store, metadata_json)
        inputs = self.client.inputs(ask_id)
        aes_key = self._aes_key(ask_id) if ask.has_secret else None
        try:
            signals = circuit_input(circuit.metadata, inputs)
            if aes_key is not None:
                signals = _with_private(
                    self.client, ask_id, ask.market_id, circuit.metadata, aes_key, signals
                )
            proof = self._proofs.get(ask_id) or prove(
                self.runtime, circuit.wasm, circuit.zkey, signals
            )
            _check_signals(proof, inputs)
            self._proofs[ask_id] = proof
        except InvalidProofInputError as exc:
            verifier = self.verifiers.get(ask.market_id)
            if verifier is None:
                return TaskOutcome(ask_id, "failed", f"invalid inputs and no IVS: {exc}")
            signature = verifier.attest_invalid(self.client, ask_id, metadata_json, aes_key)
            self.client.submit_invalid_input(ask_id, signature)
            return TaskOutcome(ask_id, "invalid", json.dumps(list(inputs)))
        result = self.client.submit_proof(ask_id, proof)
        self._proofs.pop(ask_id, None)
        return TaskOutcome(ask_id, "proved", result.tx_hash)

    def bid(self) -> list[TaskOutcome]:
        """Lock each open auction ask whose price has reached this prover's quote in its
        market (at the pending block's time: the price only rises, so the lock pays at least
        that). An auction it can no longer take is forgotten; one it lacks the free compute or
        stake for is tried again later, and so are the market's others, untried this step."""
        if not self.auctions:
            return []
        # The pending block's time: what the lock would be mined at, at the earliest (a devnet
        # mines only on transactions, so the latest block's time may lag the clock by minutes).
        now = int(self.client.w3.eth.get_block("pending")["timestamp"])
        quotes: dict[int, int | None] = {}
        full: set[int] = set()  # markets where a lock was refused for want of compute or stake
        locked = []
        for ask_id, terms in sorted(self.auctions.items()):
            if terms.market_id in full:
                # The next lock would be refused the same way until a task ends: a requester's
                # flood of auctions must not cost a node round trip each, every step, ahead of
                # the prover's tasks.
                continue
            if terms.market_id not in quotes:
                offer = self.client.offer(self.client.sender, terms.market_id)
                quotes[terms.market_id] = offer.price if offer.serving else None
            price = quotes[terms.market_id]
            if price is None:
                del self.auctions[ask_id]
                continue
            if terms.price(now) < price:
                continue
            try:
                self.client.lock(ask_id)
            except ContractRevertError as exc:
                if exc.reason in (ProofRevert.LOCK_COMPUTE, ProofRevert.LOCK_STAKE):
                    full.add(terms.market_id)
                else:
                    del self.auctions[ask_id]  # taken, expired, or not for this prover
                continue
            del self.auctions[ask_id]
            outcome = TaskOutcome(ask_id, "locked", str(self.client.ask_price(ask_id)))
            locked.append(outcome)
            if self.on_outcome is not None:
                self.on_outcome(outcome)
        return locked

    def step(self) -> list[TaskOutcome]:
        """Poll for tasks, lock auctions at this prover's price, and work through the tasks,
        oldest first. A task that failed (the node timed out, a transaction was refused,
        snarkjs crashed) is tried again next step, up to a few times, while it is still
        assigned to this prover and before its deadline."""
        self.poll()
        done = self.bid()
        if done:
            self.poll()  # the locked asks' TaskAssigned events
        batch, self._queue = self._queue, []
        for ask_id in batch:
            outcome = self.work(ask_id)
            done.append(outcome)
            if outcome.outcome == "failed":
                self._attempts[ask_id] = self._attempts.get(ask_id, 0) + 1
                if self._attempts[ask_id] < _MAX_ATTEMPTS:
                    self._queue.append(ask_id)
                else:
                    self._proofs.pop(ask_id, None)
            else:
                self._proofs.pop(ask_id, None)
        return done

    async def run(self, *, interval_s: float = 0.5, stop: asyncio.Event | None = None) -> None:
        """Step until ``stop`` is set (proving runs in a worker thread)."""
        await _step_until_stopped(
            self.step,
            busy=lambda done: any(o.outcome != "failed" for o in done),
            log=log,
            what="prover",
            interval_s=interval_s,
            stop=stop,
        )
