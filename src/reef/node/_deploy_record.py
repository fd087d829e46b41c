"""The record of a ``reef chain deploy`` under way, and how a later run resumes from it.

On a real chain each transaction costs gas, so a deployment stopped half way (Ctrl-C, a dropped
RPC, a key out of gas) must not be paid again. Each step (a contract creation, a mint) is written
to ``$REEF_HOME/chain/deploying-<chain id>.json`` as it lands: its transaction hash the moment it
is sent, its block once mined, the contract's address once known, together with the inputs the
deployment was asked with (deployer, rate lock, funded accounts, approved images, services). The
file is replaced atomically and synced at each step, so a stop at any instant leaves the last
step's state.

The next run for the same chain reads it (:func:`reconcile`), but believes the chain, not the
file: a step counts as done only if its transaction's receipt is there, succeeded, names the
recorded address, and that address holds the contract's runtime code. A transaction sent but not
yet mined is found by its hash and waited for, never sent twice; one the node does not know
(dropped, or the node was reset) is sent again, with every step after it. A record asked with
other inputs is refused (:func:`check_inputs`): the recorded contracts were made for those.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from reef.chain import Address, parse_address
from reef.errors import ConfigError, ReefError
from reef.home import ReefHome, replace_json

if TYPE_CHECKING:
    from web3 import Web3

__all__ = [
    "DeployRecord",
    "Resume",
    "StepRecord",
    "check_inputs",
    "reconcile",
    "record_path",
    "wait_mined",
]

_FORMAT: Final = "reef-chain-deploy-progress-1"

# The artifact each contract step creates (a step not here is a mint: "fund 0xADDR").
_CREATES: Final[Mapping[str, str]] = {
    "token": "Token",
    "market": "Market",
    "kms_registry": "KmsRegistry",
    "serverless_jobs": "ServerlessJobs",
    "serverless_code": "ServerlessCode",
    "proof_market": "ProofMarket",
}


def record_path(home: ReefHome, chain_id: int) -> Path:
    """Where a deployment on ``chain_id`` from ``home`` records its steps."""
    return home.chain / f"deploying-{chain_id}.json"


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One step sent: its transaction, and once mined its block and (a creation) address."""

    name: str
    tx_hash: str
    mined: bool = False
    address: Address | None = None
    block: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tx_hash": self.tx_hash,
            "mined": self.mined,
            "address": self.address,
            "block": self.block,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepRecord:
        address = data.get("address")
        block = data.get("block")
        return cls(
            name=str(data["name"]),
            tx_hash=str(data["tx_hash"]),
            mined=bool(data.get("mined", False)),
            address=None if address is None else parse_address(str(address), name="address"),
            block=None if block is None else int(block),
        )


@dataclass(frozen=True, kw_only=True)
class DeployRecord:
    """What a deployment under way has sent (its ``deploying-<chain id>.json``)."""

    chain_id: int
    rpc_url: str
    inputs: Mapping[str, Any]
    """What it was asked to deploy (:func:`deploy_inputs`): a resume must ask the same."""
    steps: tuple[StepRecord, ...] = ()

    def step(self, name: str) -> StepRecord | None:
        return next((step for step in self.steps if step.name == name), None)

    def with_step(self, step: StepRecord) -> DeployRecord:
        """This record with ``step`` replacing the one of its name (or added)."""
        kept = tuple(s for s in self.steps if s.name != step.name)
        return replace(self, steps=(*kept, step))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "chain_id": self.chain_id,
            "rpc_url": self.rpc_url,
            "inputs": dict(self.inputs),
            "steps": [step.to_json() for step in self.steps],
        }

    def save(self, path: Path) -> None:
        """Replace ``path`` atomically and durably: it is the one copy of what was paid for."""
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_json(path, self.to_json(), durable=True)

    @classmethod
    def load(cls, path: Path) -> DeployRecord:
        """Read ``path``.

        Raises:
            ConfigError: it is not such a record (with what to do about it).
        """
        hint = "move it away (its transaction hashes say what was sent) and run again"
        try:
            data = json.loads(path.read_text())
            if data.get("format") != _FORMAT:
                raise ConfigError(f"{path} is not a reef chain deploy step record", hint=hint)
            return cls(
                chain_id=int(data["chain_id"]),
                rpc_url=str(data["rpc_url"]),
                inputs=dict(data["inputs"]),
                steps=tuple(StepRecord.from_json(s) for s in data["steps"]),
            )
        except ConfigError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ReefError) as exc:
            raise ConfigError(
                f"{path} should record a reef chain deploy under way, but cannot be read ({exc})",
                hint=hint,
            ) from exc


def check_inputs(path: Path, record: DeployRecord, inputs: Mapping[str, Any]) -> None:
    """Refuse to resume ``record`` for a deployment asked with other ``inputs``.

    Raises:
        ConfigError: naming each input that differs, recorded and now.
    """
    names = sorted(set(record.inputs) | set(inputs))
    differ = [n for n in names if record.inputs.get(n) != inputs.get(n)]
    if not differ:
        return
    said = "; ".join(
        f"{name} {_shown(record.inputs.get(name))} there, {_shown(inputs.get(name))} now"
        for name in differ
    )
    done = ", ".join(step.name for step in record.steps) or "nothing"
    raise ConfigError(
        f"{path} records a deployment on chain {record.chain_id} under way ({done} sent) with "
        f"other inputs: {said}",
        hint="run the command as it was first run to finish that deployment, or add "
        "--start-over to leave it (what it deployed stays on the chain, unused) and deploy a "
        "new set",
    )


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


# -- the chain's word ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Resume:
    """What :func:`reconcile` found on the chain of a recorded deployment."""

    record: Path
    done: tuple[StepRecord, ...]
    """Steps on the chain, checked, in plan order (a prefix of the plan)."""
    pending: StepRecord | None = None
    """The next step: sent, not yet mined (waited for, not sent again)."""
    mined_since: tuple[str, ...] = ()
    """Steps sent but unmined when the run stopped, found mined since by their receipt."""
    lost: tuple[str, ...] = ()
    """Steps recorded but not on the chain (dropped, failed, or a reset node): sent again."""

    @property
    def addresses(self) -> dict[str, Address]:
        return {step.name: step.address for step in self.done if step.address is not None}

    @property
    def started_over(self) -> bool:
        """Nothing recorded is on the chain (a node reset, or every transaction dropped)."""
        return not self.done and self.pending is None and bool(self.lost)

    def to_json(self) -> dict[str, Any]:
        return {
            "record": str(self.record),
            "on_chain": [step.name for step in self.done],
            "mined_since": list(self.mined_since),
            "pending": None if self.pending is None else self.pending.to_json(),
            "sent_again": list(self.lost),
            "started_over": self.started_over,
        }


def _on_chain(w3: Web3, step: StepRecord) -> StepRecord | bool | None:
    """``step`` as the chain has it: mined and checked (a :class:`StepRecord`), still pending
    (``True``), or not there (``None``: unknown, reverted, or not the recorded contract).

    Raises:
        RPCError: the node failed.
    """
    from web3.exceptions import TransactionNotFound

    from reef.chain import load_artifact, translate_errors

    with translate_errors(f"looking up {step.name}'s transaction {step.tx_hash}"):
        try:
            receipt = w3.eth.get_transaction_receipt(step.tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            receipt = None
        if receipt is None:
            try:
                w3.eth.get_transaction(step.tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None
            return True
        if int(receipt["status"]) != 1:
            return None
        block = int(receipt["blockNumber"])
        artifact = _CREATES.get(step.name)
        if artifact is None:  # a mint: its receipt says it all
            return replace(step, mined=True, block=block)
        created = receipt.get("contractAddress")
        if created is None:
            return None
        address = parse_address(str(created), name="contract address")
        if step.address is not None and address.lower() != step.address.lower():
            return None
        code = bytes(w3.eth.get_code(address))  # type: ignore[arg-type]
    if not code.startswith(load_artifact(artifact).deployed_bytecode):
        return None
    return replace(step, mined=True, address=address, block=block)


def reconcile(w3: Web3, record: DeployRecord, path: Path, order: Sequence[str]) -> Resume:
    """Check ``record``'s steps against the chain, in ``order`` (the plan's), up to the first
    that is not there: the rest are sent again.

    Raises:
        RPCError: the node failed.
    """
    done: list[StepRecord] = []
    pending: StepRecord | None = None
    for name in order:
        step = record.step(name)
        if step is None:
            break
        found = _on_chain(w3, step)
        if found is True:
            pending = step
            break
        if not isinstance(found, StepRecord):
            break
        done.append(found)
    kept = {step.name for step in done} | ({pending.name} if pending else set())
    unmined = {step.name for step in record.steps if not step.mined}
    return Resume(
        record=path,
        done=tuple(done),
        pending=pending,
        mined_since=tuple(step.name for step in done if step.name in unmined),
        lost=tuple(step.name for step in record.steps if step.name not in kept),
    )


def wait_mined(w3: Web3, step: StepRecord, timeout_s: float) -> StepRecord | bool | None:
    """Wait up to ``timeout_s`` for pending ``step``; then as :func:`_on_chain`."""
    from web3.exceptions import TimeExhausted

    from reef.chain import translate_errors

    with (
        translate_errors(f"waiting for {step.name}'s transaction {step.tx_hash}"),
        contextlib.suppress(TimeExhausted),
    ):
        w3.eth.wait_for_transaction_receipt(
            step.tx_hash,  # type: ignore[arg-type]
            timeout=timeout_s,
            poll_latency=0.1,
        )
    return _on_chain(w3, step)
