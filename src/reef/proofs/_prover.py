"""The prover service (``reef prover run``) and the input verification service (IVS).

:class:`ProverService` follows the market's events for tasks assigned to its account, and for
each: checks the ask is still assigned to it, fetches the market's circuit artifacts by hash,
proves with snarkjs in a worker thread, and submits the proof. Inputs that admit no proof
(the witness fails) go to the market's :class:`InputVerifier`, whose signature closes the ask
as invalid without slashing. Each outcome is reported as a :class:`TaskOutcome`.

:class:`InputVerifier` holds the key the market names as its IVS. It signs "invalid" only after
checking for itself that no witness exists (running the circuit), so a lazy prover cannot use
it to escape a valid ask. In Kalypso it runs as an enclave; here it is an object a node wires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from reef.errors import ChainError, InvalidProofInputError, ProofError
from reef.proofs._client import ProofMarketClient
from reef.proofs._events import MarketCreated, TaskAssigned
from reef.proofs._groth16 import prove
from reef.proofs._market import ArtifactStore, MarketMetadata
from reef.proofs._runtime import SnarkjsRuntime
from reef.proofs._tee import TeeWorker
from reef.proofs._types import AskState, MarketKind

__all__ = ["InputVerifier", "ProverService", "TaskOutcome", "circuit_input"]

log = logging.getLogger("reef.proofs.prover")

_MAX_ATTEMPTS = 5


def circuit_input(metadata: MarketMetadata, inputs: tuple[int, ...]) -> dict[str, str]:
    """The snarkjs input object for an ask: the market's public input names → decimal values."""
    if len(inputs) != len(metadata.public_inputs):
        raise ProofError(
            f"the ask has {len(inputs)} inputs but the market names {len(metadata.public_inputs)}"
        )
    return {name: str(value) for name, value in zip(metadata.public_inputs, inputs, strict=True)}


@dataclass(frozen=True)
class _Circuit:
    metadata: MarketMetadata
    wasm: Path
    zkey: Path


def _circuit(store: ArtifactStore, metadata_json: str) -> _Circuit:
    metadata = MarketMetadata.from_json(metadata_json)
    return _Circuit(
        metadata, store.get(metadata.artifacts["wasm"]), store.get(metadata.artifacts["zkey"])
    )


class InputVerifier:
    """A market's input verification service: signs that an ask's inputs admit no proof."""

    def __init__(
        self, account: LocalAccount, store: ArtifactStore, runtime: SnarkjsRuntime
    ) -> None:
        self.account = account
        self.store = store
        self.runtime = runtime

    @property
    def address(self) -> str:
        return str(self.account.address)

    def attest_invalid(self, client: ProofMarketClient, ask_id: int, metadata_json: str) -> bytes:
        """The signature ``submitInvalidInput`` accepts, after checking the inputs are invalid.

        Raises:
            ProofError: the inputs are valid (a proof exists), so the IVS refuses to sign.
        """
        circuit = _circuit(self.store, metadata_json)
        inputs = client.inputs(ask_id)
        try:
            prove(self.runtime, circuit.wasm, circuit.zkey, circuit_input(circuit.metadata, inputs))
        except InvalidProofInputError:
            digest = client.invalid_input_digest(ask_id)
            return bytes(self.account.sign_message(encode_defunct(primitive=digest)).signature)
        raise ProofError(
            f"ask {ask_id}'s inputs admit a proof; the input verification service will not sign",
            hint="prove the ask instead",
        )


@dataclass(frozen=True)
class TaskOutcome:
    """What the prover did with one task: ``proved``, ``invalid``, ``skipped`` or ``failed``."""

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
    """

    def __init__(
        self,
        client: ProofMarketClient,
        store: ArtifactStore,
        runtime: SnarkjsRuntime,
        *,
        verifiers: Mapping[int, InputVerifier] | None = None,
        from_block: int = 0,
        markets: Iterable[int] | None = None,
        tee: Mapping[int, TeeWorker] | None = None,
        on_outcome: Callable[[TaskOutcome], None] | None = None,
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
        self.outcomes: list[TaskOutcome] = []

    def poll(self) -> list[int]:
        """Read new events; returns the ask ids newly assigned to this prover."""
        head = self.client.w3.eth.block_number
        if head < self._next_block:
            return []
        new = []
        for event in self.client.events(self._next_block, head):
            if isinstance(event, MarketCreated):
                self._metadata[event.market_id] = event.metadata
                self._kinds[event.market_id] = event.kind
            elif isinstance(event, TaskAssigned) and event.prover == self.client.sender:
                if self.markets is not None and event.market_id not in self.markets:
                    continue
                new.append(event.ask_id)
        self._next_block = head + 1
        self._queue.extend(new)
        return new

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
        kind = self._kinds.get(ask.market_id)
        worker = self.tee.get(ask.market_id)
        if kind == MarketKind.TEE and worker is not None:
            output = list(worker.compute(self.client.inputs(ask_id)))
            result = self.client.submit_tee_proof(
                ask_id, output, worker.sign(self.client, ask_id, output)
            )
            return TaskOutcome(ask_id, "proved", result.tx_hash)
        if kind != MarketKind.GROTH16:
            return TaskOutcome(ask_id, "skipped", "no prover here for this market's kind")
        metadata_json = self._metadata[ask.market_id]
        circuit = _circuit(self.store, metadata_json)
        inputs = self.client.inputs(ask_id)
        try:
            proof = prove(
                self.runtime, circuit.wasm, circuit.zkey, circuit_input(circuit.metadata, inputs)
            )
        except InvalidProofInputError as exc:
            verifier = self.verifiers.get(ask.market_id)
            if verifier is None:
                return TaskOutcome(ask_id, "failed", f"invalid inputs and no IVS: {exc}")
            signature = verifier.attest_invalid(self.client, ask_id, metadata_json)
            self.client.submit_invalid_input(ask_id, signature)
            return TaskOutcome(ask_id, "invalid", json.dumps(list(inputs)))
        result = self.client.submit_proof(ask_id, proof)
        return TaskOutcome(ask_id, "proved", result.tx_hash)

    def step(self) -> list[TaskOutcome]:
        """Poll for tasks and work through them, oldest first. A task that failed (the node
        timed out, a transaction was refused, snarkjs crashed) is tried again next step, up to
        a few times, while it is still assigned to this prover and before its deadline."""
        self.poll()
        batch, self._queue = self._queue, []
        done = []
        for ask_id in batch:
            outcome = self.work(ask_id)
            done.append(outcome)
            if outcome.outcome == "failed":
                self._attempts[ask_id] = self._attempts.get(ask_id, 0) + 1
                if self._attempts[ask_id] < _MAX_ATTEMPTS:
                    self._queue.append(ask_id)
        return done

    async def run(self, *, interval_s: float = 0.5, stop: asyncio.Event | None = None) -> None:
        """Step until ``stop`` is set (proving runs in a worker thread)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                done = await asyncio.to_thread(self.step)
            except (ChainError, ProofError) as exc:
                log.warning("prover step failed (retrying): %s", exc)
                done = []
            if not done or all(o.outcome == "failed" for o in done):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval_s)
