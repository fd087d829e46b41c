"""``reef chain deploy`` as a use case: reef's contracts put on a chain the caller names, and
recorded in a home so every command run with that home uses them.

Two steps, so that everything that would fail or spend real money is refused before the first
transaction. :func:`preflight` (here) asks the endpoint its chain, checks it against what the
caller expects (``--chain-id``; consent on any chain not known as a test or dev chain), the home's
records and the ``--out`` file, picks the sender, finds a deployment stopped half way on this
chain and checks it against the chain (:mod:`reef.node._deploy_record`), and prices what is left
to send against the sender's balance; it sends nothing and returns a :class:`ChainDeployPlan`.
:func:`reef.node.deploy_on_chain` (:mod:`reef.node._chain_deploy_send`) sends the plan step by
step, recording each as it lands, then records the deployment: in ``$REEF_HOME/chain/devnet.json``
(a :class:`reef.chain.DevnetInfo` with no dev accounts, where every command already looks for a
chain) and as :class:`reef.chain.Deployment` JSON (``--out``).

The checks that need no chain (:func:`check_chain`, :func:`check_home_record`,
:func:`check_out_deployment`, :func:`check_balance`, :func:`chain_extras`) are pure functions.
httpx and web3.py are imported when the endpoint is asked, not with this module. Most of this
module is its refusals (each message says what is wrong and what to do), in the order
:func:`preflight` runs them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from reef.chain import (
    DEFAULT_FUND_AMOUNT,
    DEFAULT_RATE_LOCK_S,
    DEPLOYED_CONTRACTS,
    MAINNET_CHAIN_IDS,
    TEST_CHAIN_IDS,
    Address,
    DeployEstimate,
    Deployment,
    DevnetInfo,
    format_amount,
    parse_address,
)
from reef.errors import ConfigError, InputError, RPCError
from reef.home import ReefHome
from reef.node._chain_deploy_send import estimate_plan, plan_steps, resume_from
from reef.node._deploy_record import Resume, record_path

if TYPE_CHECKING:
    import httpx
    from eth_account.signers.local import LocalAccount
    from web3 import Web3


__all__ = [
    "ChainDeployPlan",
    "ChainDeployRequest",
    "ChainEndpoint",
    "ChainExtras",
    "chain_extras",
    "check_balance",
    "check_chain",
    "check_devnet_home",
    "check_home_record",
    "check_out_deployment",
    "check_redeploy",
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
    """Consent to a chain not known to be a test or dev chain."""
    start_over: bool = False
    """Leave a deployment recorded under way on this chain and deploy a new set."""


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
    """Refuse a chain other than ``expected``, and without consent (``yes_mainnet``) any chain
    not known to be a test or dev chain (:data:`TEST_CHAIN_IDS`).

    Raises:
        ConfigError: saying which.
    """
    if expected is not None and chain.chain_id != expected:
        raise ConfigError(
            f"{chain.url} is chain {chain.chain_id}, not --chain-id {expected}",
            hint="check the RPC URL (or drop --chain-id to deploy on whatever chain it is)",
        )
    if yes_mainnet or chain.chain_id in TEST_CHAIN_IDS:
        return
    # Fail safe: a chain not known to be a test or dev network may be a mainnet reef has never
    # heard of (a new L2), so it is asked about like a known one.
    consent = "add --yes-real-money (also spelled --yes-mainnet)"
    name = MAINNET_CHAIN_IDS.get(chain.chain_id)
    if name is not None:
        raise ConfigError(
            f"{chain.url} is {name} (chain id {chain.chain_id}), where gas costs real money; "
            "and the token deployed is a test token its owner mints at will, worth nothing",
            hint=f"deploy on a testnet or a local node; if you really mean it, {consent}",
        )
    raise ConfigError(
        f"{chain.url} is chain id {chain.chain_id}, which reef does not know as a test or dev "
        "chain (Sepolia, Holesky, Base Sepolia, anvil's 31337, ...): it may be a mainnet, where "
        "gas costs real money, and the token deployed is a test token its owner mints at will",
        hint=f"check the RPC URL; if you mean this chain (a new L2, a private network), {consent}",
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
    """What the steps still to send cost at most (all of them, unless resuming)."""
    balance: int
    """The deployer's wei, at least ``estimate.wei``."""
    out_path: Path
    devnet: Path | None
    """What says ``home`` runs a devnet or network (then the deployment is not recorded there)."""
    previous: DevnetInfo | None
    """The home's record the deployment replaces."""
    replaced: Deployment | None
    """The deployment ``out_path`` holds now, which the new one replaces."""
    resume: Resume | None = None
    """A deployment under way on this chain, checked against it: its steps are not sent again."""

    @property
    def record_file(self) -> Path:
        """Where each step is recorded as it lands (removed once the deployment is recorded)."""
        return record_path(self.home, self.chain.chain_id)

    @property
    def records(self) -> bool:
        """Whether the deployment is recorded in ``home`` (it runs no devnet)."""
        return self.devnet is None

    @property
    def planned(self) -> tuple[str, ...]:
        """The contracts deployed, in order."""
        return (*DEPLOYED_CONTRACTS, *self.request.extras.names())

    @property
    def steps(self) -> tuple[str, ...]:
        """Every step in order: the contracts, then a ``fund 0xADDR`` mint per funded account."""
        return plan_steps(self.request)

    @property
    def to_send(self) -> tuple[str, ...]:
        """The steps this run sends (all, unless resuming; not a pending one)."""
        if self.resume is None:
            return self.steps
        kept = {step.name for step in self.resume.done}
        if self.resume.pending is not None:
            kept.add(self.resume.pending.name)
        return tuple(name for name in self.steps if name not in kept)


def preflight(request: ChainDeployRequest, home: ReefHome) -> ChainDeployPlan:
    """Check ``request`` against the chain, ``home`` and the sender's balance, and price it;
    nothing is sent. A deployment recorded under way on this chain (``deploying-<id>.json``) is
    checked against the chain, and only what it lacks is priced and later sent.

    Raises:
        InputError: the URL or the sender is malformed or missing.
        RPCError: nothing answers at the URL, or not as an Ethereum node does.
        ConfigError: another chain than asked, a chain not known as a test chain without
            consent, a record or ``out`` file of another chain, a home that runs a devnet
            (without ``out``), a deployment under way asked with other inputs, a sender who
            cannot pay.
        ContractRevertError: a contract creation would revert.
    """
    from reef.chain import http_web3, read_devnet_info, translate_errors

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
    record_file = record_path(home, chain.chain_id)
    resume = resume_from(request, w3, record_file, who)
    estimate = estimate_plan(w3, request, who, resume)
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
        resume=resume,
    )
