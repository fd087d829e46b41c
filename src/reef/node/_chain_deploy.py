"""``reef chain deploy`` as a use case: reef's contracts put on a chain the caller names, and
recorded in a home so every command run with that home uses them.

Two steps, so that everything that would fail or spend real money is refused before the first
transaction. :func:`preflight` asks the endpoint its chain, checks it against what the caller
expects (``--chain-id``, a mainnet's consent), the home's records and the ``--out`` file, picks the
sender and prices the transactions against its balance; it sends nothing and returns a
:class:`ChainDeployPlan`. :func:`deploy_on_chain` sends the plan and records it: in
``$REEF_HOME/chain/devnet.json`` (a :class:`reef.chain.DevnetInfo` with no dev accounts, where
every command already looks for a chain) and as :class:`reef.chain.Deployment` JSON (``--out``).
A failure (or Ctrl-C) after some contracts are on the chain raises :class:`ChainDeployIncomplete`,
which carries them, so nothing deployed is lost with the error.

The checks that need no chain (:func:`check_chain`, :func:`check_home_record`,
:func:`check_out_deployment`, :func:`check_balance`, :func:`chain_extras`) are pure functions.
httpx and web3.py are imported when the endpoint is asked, not with this module.

The module is longer than reef's ~600 lines on purpose: it is one use case, and most of it is
its refusals (each message says what is wrong and what to do) in the order :func:`preflight`
runs them; split apart, a reader would lose that order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from reef.chain import (
    DEFAULT_FUND_AMOUNT,
    DEFAULT_RATE_LOCK_S,
    DEPLOYED_CONTRACTS,
    MAINNET_CHAIN_IDS,
    Address,
    DeployEstimate,
    Deployment,
    DevnetInfo,
    format_amount,
    parse_address,
)
from reef.errors import ChainError, ConfigError, InputError, ReefError, RPCError
from reef.home import ReefHome

if TYPE_CHECKING:
    import httpx
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from reef.chain import Deployed, ProgressCallback, Sender

__all__ = [
    "ChainDeployIncomplete",
    "ChainDeployNotRecorded",
    "ChainDeployPlan",
    "ChainDeployRequest",
    "ChainDeployResult",
    "ChainEndpoint",
    "ChainExtras",
    "DeployedContract",
    "chain_extras",
    "check_balance",
    "check_chain",
    "check_devnet_home",
    "check_home_record",
    "check_out_deployment",
    "check_redeploy",
    "deploy_on_chain",
    "preflight",
    "probe_chain",
]

_NODE_HINT: Final = (
    "check the URL, and that the node runs (anvil, `npx hardhat node`, your RPC provider)"
)
_PROBE_TIMEOUT_S: Final = 10.0
_SERVICES: Final = ("serverless", "proofs")


# -- what is asked -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ChainExtras:
    """The contracts of reef's services deployed besides the market's (``--with``)."""

    serverless_verifier: Address | None = None
    """With serverless: the statement signer the Jobs contract trusts."""
    proofs: bool = False
    matching_engine: Address | None = None
    """With proofs: who assigns asks to provers (the deployer when ``None``)."""

    def names(self) -> tuple[str, ...]:
        """The contracts deployed, as :attr:`ChainDeployIncomplete.planned` names them."""
        names = ("serverless_jobs", "serverless_code") if self.serverless_verifier else ()
        return names + (("proof_market",) if self.proofs else ())

    def creations(self, *, placeholder: str, deployer: str) -> list[tuple[str, list[Any]]]:
        """Each creation's artifact name and constructor arguments, ``placeholder`` standing
        for the token (for :func:`reef.chain.estimate_deployment`)."""
        from reef.serverless import JobsParams

        found: list[tuple[str, list[Any]]] = []
        if self.serverless_verifier:
            args = [placeholder, self.serverless_verifier, *JobsParams().args()]
            found += [("ServerlessJobs", args), ("ServerlessCode", [])]
        if self.proofs:
            found.append(("ProofMarket", [placeholder, self.matching_engine or deployer]))
        return found

    def deploy(
        self,
        w3: Web3,
        deployer: Sender,
        *,
        token: str,
        who: Address,
        deployed: Deployed,
        progress: ProgressCallback | None = None,
    ) -> dict[str, dict[str, str]]:
        """Deploy them, paid in ``token``; their addresses by service and ``network.json``
        field (what ``reef up`` records for them)."""
        services: dict[str, dict[str, str]] = {}
        if self.serverless_verifier:
            from reef.serverless import ServerlessCodeClient, ServerlessJobsClient

            jobs = ServerlessJobsClient.deploy(
                w3, deployer, token=token, verifier=self.serverless_verifier, progress=progress
            )
            deployed("serverless_jobs", jobs.address, None)
            code = ServerlessCodeClient.deploy(w3, deployer, progress=progress)
            deployed("serverless_code", code.address, None)
            services["serverless"] = {"jobs_contract": jobs.address, "code_contract": code.address}
        if self.proofs:
            from reef.proofs import ProofMarketClient

            engine = self.matching_engine or who
            market = ProofMarketClient.deploy(
                w3, deployer, token=token, matching_engine=engine, progress=progress
            )
            deployed("proof_market", market.address, None)
            services["proofs"] = {"market": market.address, "matching_engine": engine}
        return services


def chain_extras(asked: Sequence[str], verifier: str | None, engine: str | None) -> ChainExtras:
    """What ``--with`` asks for (``"serverless,proofs"``, repeatable), checked with the address
    each service needs.

    Raises:
        InputError: an unknown service, a missing or malformed address.
    """
    names = {part.strip() for item in asked for part in item.split(",") if part.strip()}
    unknown = sorted(names - set(_SERVICES))
    if unknown:
        raise InputError(
            f"--with takes {' and '.join(_SERVICES)}, not {', '.join(unknown)}",
            hint="e.g. --with serverless,proofs",
        )
    if "serverless" in names and verifier is None:
        raise InputError(
            "--with serverless needs --serverless-verifier ADDR: the Jobs contract trusts "
            "attestation statements that address signs",
            hint="the address of your `reef verifier` key",
        )
    if verifier is not None and "serverless" not in names:
        raise InputError("--serverless-verifier is for --with serverless")
    if engine is not None and "proofs" not in names:
        raise InputError("--matching-engine is for --with proofs")
    return ChainExtras(
        serverless_verifier=(
            parse_address(verifier, name="--serverless-verifier") if verifier else None
        ),
        proofs="proofs" in names,
        matching_engine=None if engine is None else parse_address(engine, name="--matching-engine"),
    )


@dataclass(frozen=True, kw_only=True)
class ChainEndpoint:
    """What the endpoint said before anything is sent."""

    url: str
    chain_id: int
    head: int


@dataclass(frozen=True, kw_only=True)
class ChainDeployRequest:
    """What to deploy where, and from whom: ``key`` (a key file), or an account the node
    signs for (``unlocked``: its first; ``sender``: that one)."""

    rpc_url: str
    key: Path | None = None
    unlocked: bool = False
    sender: Address | None = None
    chain_id: int | None = None
    """Refuse unless the endpoint is this chain."""
    fund: tuple[Address, ...] = ()
    fund_amount: int = DEFAULT_FUND_AMOUNT
    """Token base units minted to each of ``fund``."""
    rate_lock_s: int = DEFAULT_RATE_LOCK_S
    approved_images: tuple[bytes, ...] = ()
    extras: ChainExtras = field(default_factory=ChainExtras)
    out: Path | None = None
    """The deployment file (default: ``$REEF_HOME/chain/deployment.json``)."""
    force: bool = False
    """Replace a record or ``out`` file of another chain."""
    yes_mainnet: bool = False


# -- the checks ----------------------------------------------------------------------------------


def probe_chain(url: str, *, transport: httpx.BaseTransport | None = None) -> ChainEndpoint:
    """Ask ``url`` its chain id and head block, with reef's words for every way it can fail.

    Raises:
        InputError: ``url`` is not an http(s) URL.
        RPCError: nothing answers there, or what answers is not an Ethereum JSON-RPC node.
    """
    import httpx

    if not url.startswith(("http://", "https://")):
        raise InputError(
            f"--rpc-url must be an http(s) URL, not {url!r}", hint="e.g. http://127.0.0.1:8545"
        )
    answers: list[int] = []
    with httpx.Client(transport=transport, timeout=_PROBE_TIMEOUT_S) as client:
        for method in ("eth_chainId", "eth_blockNumber"):
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": []}
            try:
                response = client.post(url, json=body)
            except httpx.HTTPError as exc:
                raise RPCError(f"nothing answers at {url} ({exc})", hint=_NODE_HINT) from exc
            try:
                answers.append(int(response.json()["result"], 16))
            except (ValueError, KeyError, TypeError) as exc:
                raise RPCError(
                    f"{url} answered {method} with HTTP {response.status_code}, but not as an "
                    f"Ethereum JSON-RPC node does: {response.text[:120]!r}",
                    hint=_NODE_HINT,
                ) from exc
    return ChainEndpoint(url=url, chain_id=answers[0], head=answers[1])


def check_chain(chain: ChainEndpoint, *, expected: int | None, yes_mainnet: bool) -> None:
    """Refuse a chain other than ``expected``, and a mainnet without consent.

    Raises:
        ConfigError: saying which.
    """
    if expected is not None and chain.chain_id != expected:
        raise ConfigError(
            f"{chain.url} is chain {chain.chain_id}, not --chain-id {expected}",
            hint="check the RPC URL (or drop --chain-id to deploy on whatever chain it is)",
        )
    name = MAINNET_CHAIN_IDS.get(chain.chain_id)
    if name is not None and not yes_mainnet:
        raise ConfigError(
            f"{chain.url} is {name} (chain id {chain.chain_id}), where gas costs real money; "
            "and the token deployed is a test token its owner mints at will, worth nothing",
            hint="deploy on a testnet or a local node; if you really mean it, add --yes-mainnet",
        )


def _devnet_state(home: ReefHome) -> Path | None:
    """What in ``home`` says a devnet (or ``reef up``'s network) lives there, if anything."""
    from reef.chain.devnet import local_chain_state
    from reef.node._network import NETWORK_FILE

    network = home.root / NETWORK_FILE
    return network if network.exists() else local_chain_state(home)


def _home_taken(home: ReefHome, what: Path) -> ConfigError:
    return ConfigError(
        f"{home.root} runs reef's own devnet or network ({what}): it cannot also record a "
        "deployment on another chain",
        hint="give the deployment a home of its own: REEF_HOME=~/.reef-NAME reef chain deploy "
        "...; or pass --out FILE to keep only the deployment file",
    )


def check_home_record(
    home: ReefHome, info: DevnetInfo | None, chain: ChainEndpoint, *, force: bool
) -> DevnetInfo | None:
    """``info``, the record ``home`` holds (``chain/devnet.json``), if a deployment on ``chain``
    may replace it: an earlier ``reef chain deploy``'s on this chain, or with ``force`` any.

    Raises:
        ConfigError: ``info`` is a devnet's (it lists dev accounts), or of another chain.
    """
    if info is None:
        return None
    if info.accounts:  # a devnet's or anvil's record: it lists the dev accounts
        raise _home_taken(home, home.chain / "devnet.json")
    if info.chain_id != chain.chain_id and not force:
        raise ConfigError(
            f"{home.root} already records a deployment on chain {info.chain_id} "
            f"(market {info.deployment.market if info.deployment else '?'} at "
            f"{info.rpc_url}); this is chain {chain.chain_id}",
            hint="use another home (REEF_HOME=DIR) for this chain, or --force to replace "
            "the record (the contracts stay on their chain)",
        )
    return info


def check_redeploy(
    home: ReefHome, previous: DevnetInfo, chain: ChainEndpoint, *, market_is_live: bool
) -> None:
    """Refuse (without ``--force``) a second deployment over a home whose recorded market still
    lives on this chain: the home would be repointed at the new market, and ``reef jobs list``
    there would stop showing the old market's jobs, which keep paying their provider. A market
    whose code is gone (the node was reset) is replaced as before.

    Raises:
        ConfigError: naming the market the home uses now.
    """
    if previous.deployment is None or not market_is_live:
        return
    raise ConfigError(
        f"{home.root} already uses reef's market {previous.deployment.market} on chain "
        f"{chain.chain_id} ({previous.rpc_url}); a second deployment would point this home at "
        "a new market, and its commands would no longer see the jobs of that one",
        hint="keep using the deployed market (reef chain info), deploy into another home "
        "(REEF_HOME=DIR), or pass --force to deploy a new set and make it this home's (the old "
        "contracts and their jobs stay on the chain)",
    )


def check_devnet_home(home: ReefHome) -> None:
    """Refuse to start a devnet over the record of ``reef chain deploy`` (no journal, no dev
    accounts): the devnet would write its own ``devnet.json`` over it.

    Raises:
        ConfigError: naming the deployment's chain.
    """
    if (home.chain / "journal.jsonl").exists():
        return
    info = _stored(home)
    if info is not None and not info.accounts:
        raise ConfigError(
            f"{home.root} records reef's contracts on chain {info.chain_id} at {info.rpc_url} "
            "(reef chain deploy); a devnet here would replace that record",
            hint="run the devnet in another home (REEF_HOME=DIR reef chain), or pass --fresh "
            "to replace the record",
        )


def _stored(home: ReefHome) -> DevnetInfo | None:
    from reef.chain import read_devnet_info

    if not (home.chain / "devnet.json").exists():
        return None
    return read_devnet_info(home)


def check_out_deployment(
    path: Path, held: Deployment, chain: ChainEndpoint, *, force: bool
) -> Deployment:
    """``held``, the deployment the ``--out`` file ``path`` holds, if a deployment on ``chain``
    may replace it (it is of this chain, or ``force``).

    Raises:
        ConfigError: ``held`` is of another chain.
    """
    if held.chain_id != chain.chain_id and not force:
        raise ConfigError(
            f"{path} holds a deployment on chain {held.chain_id} (market {held.market}); "
            f"{chain.url} is chain {chain.chain_id}",
            hint="name another --out file, or --force to overwrite it (the contracts stay on "
            "their chain)",
        )
    return held


def _check_out(path: Path, chain: ChainEndpoint, *, force: bool) -> Deployment | None:
    """The deployment ``path`` holds now (which the new one replaces), if any.

    Raises:
        ConfigError: ``path`` cannot be written, or holds something else than a deployment of
            this chain, and ``force`` is not given.
    """
    if not path.exists():
        _check_writable(path)
        return None
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory", hint="name a file")
    try:
        held = Deployment.load(path)
    except ConfigError as exc:
        if force:
            return None
        raise ConfigError(
            f"{path} exists and does not hold a deployment ({exc.message})",
            hint="name another --out file, or --force to overwrite it",
        ) from exc
    return check_out_deployment(path, held, chain, force=force)


def _check_writable(path: Path) -> None:
    """Refuse an ``--out`` whose directory cannot be made or written (before anything is sent).

    Raises:
        ConfigError: naming the directory.
    """
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write the deployment file {path}: {folder} is not a writable directory",
            hint="name another --out file",
        )


def _sender(w3: Web3, request: ChainDeployRequest) -> LocalAccount | Address:
    """Who deploys: the key file's account, or an account the node signs for.

    Raises:
        InputError: neither or both are given, or the key file holds no key.
        ConfigError: the node signs for no account (or not for ``request.sender``).
    """
    from reef.chain import translate_errors
    from reef.node._session import load_key_file

    url = request.rpc_url
    if request.key is not None and (request.unlocked or request.sender):
        raise InputError("pass --key FILE or --unlocked, not both")
    if request.key is not None:
        return load_key_file(request.key)
    if not request.unlocked and request.sender is None:
        raise InputError(
            "who deploys? pass --key FILE (a file holding the private key as hex), or "
            "--unlocked to send from the node's first unlocked account (anvil, hardhat)"
        )
    with translate_errors(f"eth_accounts at {url}"):
        accounts = [str(a) for a in w3.eth.accounts]
    if not accounts:
        raise ConfigError(
            f"the node at {url} signs for no account (eth_accounts is empty)",
            hint="pass --key FILE; only dev nodes (anvil, hardhat) hold unlocked accounts",
        )
    if request.sender is None:
        return parse_address(accounts[0], name="unlocked account")
    if request.sender.lower() not in (a.lower() for a in accounts):
        raise ConfigError(
            f"the node at {url} does not sign for {request.sender}",
            hint=f"its unlocked accounts: {', '.join(accounts[:5])}",
        )
    return request.sender


def check_balance(who: Address, balance: int, estimate: DeployEstimate, *, chain_id: int) -> None:
    """Refuse a sender whose ``balance`` (wei) cannot pay for every transaction.

    Raises:
        ConfigError: saying how much is missing.
    """
    if balance >= estimate.wei:
        return
    ether = format_amount(balance, decimals=18)
    raise ConfigError(
        f"{who} has {ether} ETH on chain {chain_id}; deploying needs up to "
        f"{format_amount(estimate.wei, decimals=18)} ETH ({estimate.transactions} transactions, "
        f"{estimate.gas} gas at {format_amount(estimate.fee_per_gas, decimals=9)} gwei)",
        hint=f"send at least {format_amount(estimate.wei - balance, decimals=18)} ETH to {who} "
        "(a testnet's faucet), then run this again; nothing was sent",
    )


# -- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ChainDeployPlan:
    """A deployment checked and priced, nothing sent yet (:func:`preflight`)."""

    request: ChainDeployRequest
    home: ReefHome
    chain: ChainEndpoint
    w3: Web3
    deployer: LocalAccount | Address
    who: Address
    """The deployer's address."""
    estimate: DeployEstimate
    balance: int
    """The deployer's wei, at least ``estimate.wei``."""
    out_path: Path
    devnet: Path | None
    """What says ``home`` runs a devnet or network (then the deployment is not recorded there)."""
    previous: DevnetInfo | None
    """The home's record the deployment replaces."""
    replaced: Deployment | None
    """The deployment ``out_path`` holds now, which the new one replaces."""

    @property
    def records(self) -> bool:
        """Whether the deployment is recorded in ``home`` (it runs no devnet)."""
        return self.devnet is None

    @property
    def planned(self) -> tuple[str, ...]:
        """The contracts deployed, in order."""
        return (*DEPLOYED_CONTRACTS, *self.request.extras.names())


def preflight(request: ChainDeployRequest, home: ReefHome) -> ChainDeployPlan:
    """Check ``request`` against the chain, ``home`` and the sender's balance, and price it;
    nothing is sent.

    Raises:
        InputError: the URL or the sender is malformed or missing.
        RPCError: nothing answers at the URL, or not as an Ethereum node does.
        ConfigError: another chain than asked, a mainnet without consent, a record or ``out``
            file of another chain, a home that runs a devnet (without ``out``), a sender who
            cannot pay.
        ContractRevertError: a contract creation would revert.
    """
    from reef.chain import estimate_deployment, http_web3, read_devnet_info, translate_errors

    taken = _devnet_state(home)
    if taken is not None and request.out is None:
        raise _home_taken(home, taken)
    chain = probe_chain(request.rpc_url)
    check_chain(chain, expected=request.chain_id, yes_mainnet=request.yes_mainnet)
    previous = None
    if taken is None and (home.chain / "devnet.json").exists():
        previous = check_home_record(home, read_devnet_info(home), chain, force=request.force)
    out_path = request.out if request.out is not None else home.chain / "deployment.json"
    replaced = _check_out(out_path, chain, force=request.force)
    w3 = http_web3(request.rpc_url, timeout=60)
    if previous is not None and previous.deployment is not None and not request.force:
        market = previous.deployment.market
        with translate_errors(f"reading the code at {market} on {request.rpc_url}"):
            live = bool(w3.eth.get_code(market))  # type: ignore[arg-type]
        check_redeploy(home, previous, chain, market_is_live=live)
    deployer = _sender(w3, request)
    who = parse_address(deployer if isinstance(deployer, str) else deployer.address)
    funded = len(request.fund) if request.fund_amount else 0
    extra = request.extras.creations(placeholder=who, deployer=who)
    estimate = estimate_deployment(
        w3,
        who,
        rate_lock_s=request.rate_lock_s,
        fund_count=funded,
        approved_images=request.approved_images,
        extra=extra,
    )
    with translate_errors(f"reading the balance of {who} at {request.rpc_url}"):
        balance = int(w3.eth.get_balance(who))  # type: ignore[arg-type]
    check_balance(who, balance, estimate, chain_id=chain.chain_id)
    return ChainDeployPlan(
        request=request,
        home=home,
        chain=chain,
        w3=w3,
        deployer=deployer,
        who=who,
        estimate=estimate,
        balance=balance,
        out_path=out_path,
        devnet=taken,
        previous=previous,
        replaced=replaced,
    )


# -- sending -------------------------------------------------------------------------------------


class DeployedContract(NamedTuple):
    """A contract on the chain: its name in :attr:`ChainDeployPlan.planned`, address, block
    (``None`` where its client does not say it)."""

    name: str
    address: Address
    block: int | None


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

    def to_json(self) -> dict[str, Any]:
        """``reef chain deploy --json``'s document."""
        return {
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


class ChainDeployIncomplete(ChainError):
    """Deploying stopped after it began: a transaction failed, or Ctrl-C (``interrupted``).

    Its message and hint are the failure's. ``deployed`` are on the chain (nothing records
    them: they are said here so they are not lost); ``missing`` are not.
    """

    def __init__(
        self,
        cause: ReefError,
        *,
        chain_id: int,
        deployed: Sequence[DeployedContract],
        planned: Sequence[str],
        interrupted: bool = False,
    ) -> None:
        super().__init__(cause.message, hint=cause.hint)
        self.cause = cause
        self.chain_id = chain_id
        self.deployed = tuple(deployed)
        self.planned = tuple(planned)
        self.interrupted = interrupted

    @property
    def missing(self) -> tuple[str, ...]:
        """The planned contracts not deployed (none: every one is, minting stopped)."""
        done = {contract.name for contract in self.deployed}
        return tuple(name for name in self.planned if name not in done)


class ChainDeployNotRecorded(ChainError):
    """Every contract is deployed, but the deployment file or the home's record could not be
    written: ``deployment`` holds the addresses. The message is the failure's."""

    def __init__(self, deployment: Deployment, error: OSError | ReefError) -> None:
        super().__init__(str(error))
        self.deployment = deployment


def deploy_on_chain(
    plan: ChainDeployPlan,
    *,
    progress: ProgressCallback | None = None,
    deployed: Deployed | None = None,
) -> ChainDeployResult:
    """Send ``plan``'s transactions, then write the deployment file and the home's record.

    ``progress`` is told of each transaction's stages, ``deployed`` of each contract once it
    is on the chain.

    Raises:
        ChainDeployIncomplete: a transaction failed, or Ctrl-C came, after sending began.
        ChainDeployNotRecorded: everything is deployed, but not written down.
    """
    from reef.chain import deploy_contracts

    request = plan.request
    done: list[DeployedContract] = []

    def one(name: str, address: Address, block: int | None) -> None:
        done.append(DeployedContract(name, address, block))
        if deployed is not None:
            deployed(name, address, block)

    def incomplete(cause: ReefError, *, interrupted: bool = False) -> ChainDeployIncomplete:
        return ChainDeployIncomplete(
            cause,
            chain_id=plan.chain.chain_id,
            deployed=done,
            planned=plan.planned,
            interrupted=interrupted,
        )

    try:
        deployment = deploy_contracts(
            plan.w3,
            plan.deployer,
            rate_lock_s=request.rate_lock_s,
            fund=request.fund,
            fund_amount=request.fund_amount,
            approved_images=request.approved_images,
            progress=progress,
            deployed=one,
        )
        services = request.extras.deploy(
            plan.w3,
            plan.deployer,
            token=deployment.token,
            who=plan.who,
            deployed=one,
            progress=progress,
        )
    except ReefError as exc:
        raise incomplete(exc) from exc
    except KeyboardInterrupt:
        # Ctrl-C between transactions: what is on the chain must be said, as for a failure.
        stop = ReefError("interrupted", hint="a transaction sent may still be mined")
        raise incomplete(stop, interrupted=True) from None
    try:
        deployment.dump(plan.out_path)
        if plan.records:
            _record(plan, deployment)
    except (OSError, ReefError) as exc:
        raise ChainDeployNotRecorded(deployment, exc) from exc
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
