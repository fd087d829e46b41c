"""``reef chain deploy``'s sending: each step of a checked plan (:func:`reef.node.preflight`)
sent in order, recorded as it lands (:mod:`reef.node._deploy_record`), then the whole deployment
written where every command looks for it.

A resumed plan sends only the steps the chain lacks, waits for one found pending rather than
sending it twice, and passes the addresses already on the chain to the steps that need them (the
market is made with the token's). A stop after sending began raises
:class:`ChainDeployIncomplete`, which says what is on the chain, what was sent and may still be
mined, and where the steps are recorded, so nothing paid for is lost with the error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from reef.chain import DEPLOYED_CONTRACTS, Address, DeployEstimate, Deployment, DevnetInfo
from reef.errors import ChainError, ConfigError, ReefError
from reef.node._deploy_record import (
    DeployRecord,
    Resume,
    StepRecord,
    check_inputs,
    reconcile,
    wait_mined,
)

if TYPE_CHECKING:
    from web3 import Web3

    from reef.chain import Deployed, ProgressCallback
    from reef.node._chain_deploy import ChainDeployPlan, ChainDeployRequest

__all__ = [
    "ChainDeployIncomplete",
    "ChainDeployNotRecorded",
    "ChainDeployResult",
    "DeployedContract",
    "PendingStep",
    "deploy_inputs",
    "deploy_on_chain",
    "estimate_plan",
    "plan_steps",
    "resume_from",
]


# -- the plan's steps ---------------------------------------------------------------------------


def deploy_inputs(request: ChainDeployRequest, who: Address) -> dict[str, Any]:
    """What the contracts of a deployment are made with: a resume must be asked the same."""
    extras = request.extras
    return {
        "deployer": who,
        "rate_lock_s": request.rate_lock_s,
        "fund": [str(account) for account in request.fund] if request.fund_amount else [],
        "fund_amount": request.fund_amount if request.fund else 0,
        "approved_images": ["0x" + image.hex() for image in request.approved_images],
        "serverless_verifier": extras.serverless_verifier,
        "proofs": extras.proofs,
        "matching_engine": (extras.matching_engine or who) if extras.proofs else None,
    }


def resume_from(request: ChainDeployRequest, w3: Web3, path: Path, who: Address) -> Resume | None:
    """The deployment recorded under way at ``path``, checked against the chain (``None``:
    none, or ``--start-over``).

    Raises:
        ConfigError: it was asked with other inputs, or cannot be read.
    """
    if request.start_over or not path.exists():
        return None
    record = DeployRecord.load(path)
    if not record.steps:  # stopped before its first transaction: nothing to resume
        return None
    check_inputs(path, record, deploy_inputs(request, who))
    return reconcile(w3, record, path, plan_steps(request))


def plan_steps(request: ChainDeployRequest) -> tuple[str, ...]:
    """Every step of ``request`` in order: the contracts, then a ``fund 0xADDR`` mint per
    funded account."""
    mints = request.fund if request.fund_amount else ()
    planned = (*DEPLOYED_CONTRACTS, *request.extras.names())
    return (*planned, *(f"fund {account}" for account in mints))


def estimate_plan(
    w3: Web3, request: ChainDeployRequest, who: Address, resume: Resume | None
) -> DeployEstimate:
    """Price every step, or (resuming) those still to send, with the addresses already known."""
    from reef.chain import core_creations, estimate_creations, estimate_deployment

    funded = len(request.fund) if request.fund_amount else 0
    extra = request.extras.creations(placeholder=who, deployer=who)
    if resume is None:
        return estimate_deployment(
            w3,
            who,
            rate_lock_s=request.rate_lock_s,
            fund_count=funded,
            approved_images=request.approved_images,
            extra=extra,
        )
    known = resume.addresses
    skip = {step.name for step in resume.done} | (
        {resume.pending.name} if resume.pending else set()
    )
    token = known.get("token", who)
    extra = request.extras.creations(placeholder=token, deployer=who)
    creations: list[tuple[str, tuple[str, Sequence[Any]]]] = [
        *core_creations(token, request.rate_lock_s, request.approved_images),
        *zip(request.extras.names(), ((name, args) for name, args in extra), strict=True),
    ]
    mints = sum(1 for account in request.fund if f"fund {account}" not in skip) if funded else 0
    left = [creation for name, creation in creations if name not in skip]
    return estimate_creations(w3, who, left, mints=mints)


# -- sending -------------------------------------------------------------------------------------


class DeployedContract(NamedTuple):
    """A contract on the chain: its name in :attr:`ChainDeployPlan.planned`, address, block
    (``None`` where its client does not say it)."""

    name: str
    address: Address
    block: int | None


class PendingStep(NamedTuple):
    """A step whose transaction was sent but not seen mined: it may still be."""

    name: str
    tx_hash: str


@dataclass(frozen=True, kw_only=True)
class ChainDeployResult:
    """What :func:`deploy_on_chain` deployed and where it wrote it down."""

    deployment: Deployment
    rpc_url: str
    deployer: Address
    rate_lock_s: int
    funded: tuple[Address, ...]
    """The accounts minted to (none when the amount was 0)."""
    fund_amount: int
    """Token base units each of the ``fund`` accounts asked for received (0 if none was)."""
    approved_images: tuple[bytes, ...]
    services: dict[str, dict[str, str]]
    """The extras' addresses by service and ``network.json`` field."""
    deployment_file: Path
    recorded_in: Path | None
    """The home that records the deployment (``None`` when it runs a devnet of its own)."""
    resumed: Resume | None = None
    """The deployment under way this run finished, as the chain had it."""
    sent: tuple[str, ...] = ()
    """The steps this run sent transactions for."""

    def to_json(self) -> dict[str, Any]:
        """``reef chain deploy --json``'s document; a run that resumed a deployment under way
        adds ``resumed`` (what it found on the chain) and ``sent`` (the steps it sent)."""
        document: dict[str, Any] = {
            "chain_id": self.deployment.chain_id,
            "rpc_url": self.rpc_url,
            "deployer": self.deployer,
            "token": self.deployment.token,
            "market": self.deployment.market,
            "kms_registry": self.deployment.kms_registry,
            "start_block": self.deployment.block,
            "rate_lock_s": self.rate_lock_s,
            "funded": [str(account) for account in self.funded],
            "fund_amount": self.fund_amount,
            "approved_images": ["0x" + image.hex() for image in self.approved_images],
            "deployment_file": str(self.deployment_file),
            "recorded_in": None if self.recorded_in is None else str(self.recorded_in),
            "services": self.services,
        }
        if self.resumed is not None:
            document["resumed"] = self.resumed.to_json()
            document["sent"] = list(self.sent)
        return document


class ChainDeployIncomplete(ChainError):
    """Deploying stopped after it began: a transaction failed, or Ctrl-C (``interrupted``).

    Its message and hint are the failure's. ``deployed`` are on the chain; ``pending`` was sent
    and may still be mined; ``missing`` are neither. ``record`` holds the steps, so the same
    command run again resumes (it checks each on the chain first).
    """

    def __init__(
        self,
        cause: ReefError,
        *,
        chain_id: int,
        deployed: Sequence[DeployedContract],
        planned: Sequence[str],
        interrupted: bool = False,
        pending: PendingStep | None = None,
        record: Path | None = None,
    ) -> None:
        super().__init__(cause.message, hint=cause.hint)
        self.cause = cause
        self.chain_id = chain_id
        self.deployed = tuple(deployed)
        self.planned = tuple(planned)
        self.interrupted = interrupted
        self.pending = pending
        self.record = record

    @property
    def missing(self) -> tuple[str, ...]:
        """The planned contracts neither deployed nor pending (none: every one is, minting
        stopped)."""
        done = {contract.name for contract in self.deployed}
        if self.pending is not None:
            done.add(self.pending.name)
        return tuple(name for name in self.planned if name not in done)


class ChainDeployNotRecorded(ChainError):
    """Every contract is deployed, but the deployment file or the home's record could not be
    written: ``deployment`` holds the addresses. The message is the failure's."""

    def __init__(self, deployment: Deployment, error: OSError | ReefError) -> None:
        super().__init__(str(error))
        self.deployment = deployment


def _send_step(
    plan: ChainDeployPlan, name: str, known: dict[str, Address], progress: ProgressCallback
) -> Address | None:
    """Send step ``name`` and wait for it; the contract it created (``None`` for a mint)."""
    from reef.chain import DEPLOYED_CONTRACTS, TokenClient, deploy_core_contract

    w3, deployer, request = plan.w3, plan.deployer, plan.request
    if name in DEPLOYED_CONTRACTS:
        address, _ = deploy_core_contract(
            w3,
            deployer,
            name,
            token=known.get("token"),
            rate_lock_s=request.rate_lock_s,
            approved_images=request.approved_images,
            progress=progress,
        )
        return address
    token = known["token"]
    verifier, engine = request.extras.serverless_verifier, request.extras.matching_engine
    if name == "serverless_jobs" and verifier is not None:
        from reef.serverless import ServerlessJobsClient

        jobs = ServerlessJobsClient.deploy
        return jobs(w3, deployer, token=token, verifier=verifier, progress=progress).address
    if name == "serverless_code":
        from reef.serverless import ServerlessCodeClient

        return ServerlessCodeClient.deploy(w3, deployer, progress=progress).address
    if name == "proof_market":
        from reef.proofs import ProofMarketClient

        market = ProofMarketClient.deploy
        engine = engine or plan.who
        return market(w3, deployer, token=token, matching_engine=engine, progress=progress).address
    minter = TokenClient(w3, token, account=deployer, progress=progress)
    minter.mint(name.removeprefix("fund "), request.fund_amount)
    return None


def deploy_on_chain(
    plan: ChainDeployPlan,
    *,
    progress: ProgressCallback | None = None,
    deployed: Deployed | None = None,
    receipt_timeout_s: float = 120.0,
) -> ChainDeployResult:
    """Send ``plan``'s transactions (those a resumed deployment lacks), recording each step in
    :attr:`~ChainDeployPlan.record_file` as it lands; then write the deployment file and the
    home's record, and remove the step record.

    ``progress`` is told of each transaction's stages, ``deployed`` of each contract once it
    is on the chain (not those a resume found there). A step a resume found pending is waited
    for up to ``receipt_timeout_s``, never sent again while the node knows it.

    Raises:
        ChainDeployIncomplete: a transaction failed, or Ctrl-C came, after sending began; or a
            pending step is still not mined.
        ChainDeployNotRecorded: everything is deployed, but not written down.
    """
    from reef.chain import TxProgress

    request, resume = plan.request, plan.resume
    record = DeployRecord(
        chain_id=plan.chain.chain_id,
        rpc_url=plan.chain.url,
        inputs=deploy_inputs(request, plan.who),
        # A pending step stays recorded: it may still be mined, and must not be sent twice.
        steps=() if resume is None else (*resume.done, *filter(None, [resume.pending])),
    )
    done = [
        DeployedContract(step.name, step.address, step.block)
        for step in (() if resume is None else resume.done)
        if step.address is not None
    ]
    blocks = {step.name: step.block for step in (resume.done if resume else ())}
    known: dict[str, Address] = {} if resume is None else resume.addresses
    sent: list[str] = []
    unmined: list[PendingStep] = []

    def save(step: StepRecord | None = None) -> None:
        """Write the record with ``step``; a write that fails stops the deployment before it
        pays for more (as a ConfigError, which the transactor's error translation lets pass)."""
        nonlocal record
        if step is not None:
            record = record.with_step(step)
        try:
            record.save(plan.record_file)
        except OSError as exc:
            raise ConfigError(
                f"cannot record the deployment's steps in {plan.record_file}: {exc}",
                hint="free the disk or fix the permissions of REEF_HOME, then run the same "
                "command again",
            ) from exc

    def incomplete(cause: ReefError, *, interrupted: bool = False) -> ChainDeployIncomplete:
        return ChainDeployIncomplete(
            cause,
            chain_id=plan.chain.chain_id,
            deployed=done,
            planned=plan.planned,
            interrupted=interrupted,
            pending=unmined[-1] if unmined else None,
            record=plan.record_file,
        )

    def landed(step: StepRecord) -> None:
        unmined.clear()
        save(step)
        blocks[step.name] = step.block
        if step.address is not None:
            known[step.name] = step.address
            done.append(DeployedContract(step.name, step.address, step.block))

    def tracking(name: str) -> ProgressCallback:
        def report(stage: TxProgress) -> None:
            if stage.stage == "sent" and stage.tx_hash:
                # Said before it is written: if the write fails, the stop still names the hash.
                unmined[:] = [PendingStep(name, stage.tx_hash)]
                save(StepRecord(name=name, tx_hash=stage.tx_hash))
            elif stage.stage == "mined" and stage.tx_hash:
                block = stage.block_number
                save(StepRecord(name=name, tx_hash=stage.tx_hash, mined=True, block=block))
            if progress is not None:
                progress(stage)

        return report

    try:
        save()
        waiting = None if resume is None else resume.pending
        if waiting is not None:
            unmined.append(PendingStep(waiting.name, waiting.tx_hash))
            found = wait_mined(plan.w3, waiting, receipt_timeout_s)
            if found is True:
                raise ChainError(
                    f"{waiting.name}'s transaction {waiting.tx_hash} is still not mined after "
                    f"{receipt_timeout_s:.0f} s",
                    hint="it was not sent again: run the same command later, once the chain "
                    "mines it (or drops it: then it is sent again)",
                )
            if isinstance(found, StepRecord):
                landed(found)
                if deployed is not None and found.address is not None:
                    deployed(found.name, found.address, found.block)
            else:
                unmined.clear()
        for name in plan.steps:
            if name in blocks:
                continue
            address = _send_step(plan, name, known, tracking(name))
            step = record.step(name) or StepRecord(name=name, tx_hash="")
            landed(replace(step, mined=True, address=address))
            sent.append(name)
            if deployed is not None and address is not None:
                deployed(name, address, blocks.get(name))
    except ReefError as exc:
        raise incomplete(exc) from exc
    except KeyboardInterrupt:
        # Ctrl-C between transactions: what is on the chain must be said, as for a failure.
        stop = ReefError("interrupted")
        raise incomplete(stop, interrupted=True) from None
    deployment = Deployment(
        chain_id=plan.chain.chain_id,
        token=known["token"],
        market=known["market"],
        kms_registry=known["kms_registry"],
        block=int(blocks.get("market") or 0),
    )
    services: dict[str, dict[str, str]] = {}
    if "serverless_jobs" in known:
        jobs, code = known["serverless_jobs"], known["serverless_code"]
        services["serverless"] = {"jobs_contract": jobs, "code_contract": code}
    if "proof_market" in known:
        engine = request.extras.matching_engine or plan.who
        services["proofs"] = {"market": known["proof_market"], "matching_engine": engine}
    try:
        deployment.dump(plan.out_path)
        if plan.records:
            _record(plan, deployment)
    except (OSError, ReefError) as exc:
        raise ChainDeployNotRecorded(deployment, exc) from exc
    plan.record_file.unlink(missing_ok=True)
    return ChainDeployResult(
        deployment=deployment,
        rpc_url=request.rpc_url,
        deployer=plan.who,
        rate_lock_s=request.rate_lock_s,
        funded=request.fund if request.fund_amount else (),
        fund_amount=request.fund_amount if request.fund else 0,
        approved_images=request.approved_images,
        services=services,
        deployment_file=plan.out_path,
        recorded_in=plan.home.root if plan.records else None,
        resumed=resume,
        sent=tuple(sent),
    )


def _record(plan: ChainDeployPlan, deployment: Deployment) -> None:
    """Record ``deployment`` in the plan's home where every command looks for the chain
    (``chain/devnet.json``, with no dev accounts)."""
    from reef.chain import translate_errors
    from reef.chain.devnet import write_devnet_info

    with translate_errors(f"reading the genesis block at {plan.chain.url}"):
        genesis = int(plan.w3.eth.get_block(0)["timestamp"])
        head = int(plan.w3.eth.block_number)
    info = DevnetInfo(
        chain_id=deployment.chain_id,
        accounts=(),
        genesis_timestamp=genesis,
        rate_lock_s=plan.request.rate_lock_s,
        deployment=deployment,
        rpc_url=plan.chain.url,
        blocks=head,
    )
    plan.home.ensure()
    write_devnet_info(plan.home, info)
