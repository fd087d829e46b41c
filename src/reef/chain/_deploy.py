"""Deploying reef's contracts (token, market, KMS registry), and what it will cost.

``deploy_contracts`` is what the devnet runs at start and what ``reef chain deploy`` runs against
any other chain. The resulting :class:`~reef.chain.Deployment` (:mod:`reef.chain._deployment`) is
plain data that round-trips through JSON. :func:`estimate_deployment` prices the same
transactions before one is sent, so a command can refuse a key that cannot pay for them rather
than stop half way; :data:`MAINNET_CHAIN_IDS` names the chains where real money is spent (the
token is a test token its owner mints at will, so deploying there needs the user's consent).

web3.py and the typed clients are imported when contracts are deployed or priced, not with this
module: the devnet's records import :class:`Deployment` from here, and a command reading them
must not pay for web3.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from reef.chain._deployment import DEFAULT_FUND_AMOUNT, DEFAULT_RATE_LOCK_S, Deployment
from reef.chain._types import Address, parse_address
from reef.errors import MisuseError

if TYPE_CHECKING:
    from web3 import Web3

    from reef.chain._tx import ProgressCallback, Sender

__all__ = [
    "DEFAULT_FUND_AMOUNT",
    "DEFAULT_RATE_LOCK_S",
    "DEPLOYED_CONTRACTS",
    "DeployEstimate",
    "Deployed",
    "Deployment",
    "MAINNET_CHAIN_IDS",
    "TEST_CHAIN_IDS",
    "check_image_ids",
    "core_creations",
    "deploy_contracts",
    "deploy_core_contract",
    "estimate_creations",
    "estimate_deployment",
]

DEPLOYED_CONTRACTS: Final = ("token", "market", "kms_registry")
"""What :func:`deploy_contracts` deploys, in order, by their :class:`Deployment` field names."""

MAINNET_CHAIN_IDS: Final[Mapping[int, str]] = {
    1: "Ethereum mainnet",
    10: "OP Mainnet",
    25: "Cronos",
    56: "BNB Smart Chain",
    100: "Gnosis",
    137: "Polygon PoS",
    250: "Fantom",
    324: "zkSync Era",
    1101: "Polygon zkEVM",
    1284: "Moonbeam",
    5000: "Mantle",
    8453: "Base",
    42161: "Arbitrum One",
    42170: "Arbitrum Nova",
    43114: "Avalanche C-Chain",
    59144: "Linea",
    81457: "Blast",
    534352: "Scroll",
}
"""Chain ids of public chains whose ETH is real money, with their names (not exhaustive: a
chain missing here is not thereby a test chain)."""

TEST_CHAIN_IDS: Final[Mapping[int, str]] = {
    1337: "a dev chain (geth --dev, ganache)",
    31337: "a dev chain (anvil, hardhat, reef's devnet)",
    5: "Goerli",
    97: "BNB Smart Chain testnet",
    300: "zkSync Sepolia",
    10200: "Gnosis Chiado",
    17000: "Holesky",
    43113: "Avalanche Fuji",
    59141: "Linea Sepolia",
    80002: "Polygon Amoy",
    84532: "Base Sepolia",
    421614: "Arbitrum Sepolia",
    534351: "Scroll Sepolia",
    560048: "Hoodi",
    5003: "Mantle Sepolia",
    11155111: "Sepolia",
    11155420: "OP Sepolia",
    168587773: "Blast Sepolia",
}
"""Chain ids known to be test or dev networks, whose gas is worth nothing: ``reef chain deploy``
needs no consent there. Any other chain may be a mainnet (a new L2 is not in any list)."""

Deployed = Callable[[str, Address, "int | None"], None]
"""Told of each contract once its deployment is mined: its :data:`DEPLOYED_CONTRACTS` name, address and
block (``None`` where the client does not say it)."""

# What a mint to a new holder costs (two fresh storage slots, the total supply, one event) with
# room to spare: it cannot be simulated before the token exists.
_MINT_GAS: Final = 80_000
_KMS_BATCH: Final = 256  # the DynArray bound of the registry's constructor
_TOKEN: Final = ("reef test USD", "rUSD")  # the test token's name and symbol


def _gas_limit(estimate: int) -> int:
    """The gas limit :class:`reef.chain._tx.Transactor` sends a transaction with, for a
    simulated ``estimate``: the node checks the sender's balance against limit x fee."""
    return int(estimate * 1.2) + 60_000


@dataclass(frozen=True, kw_only=True)
class DeployEstimate:
    """What :func:`deploy_contracts` will spend at most, priced before anything is sent."""

    transactions: int
    gas: int
    """The sum of the transactions' gas limits (what the node reserves; less is used)."""
    fee_per_gas: int
    """Wei per gas at most: twice the base fee plus the tip (as web3.py prices a transaction),
    or the node's gas price on a chain without a base fee."""

    @property
    def wei(self) -> int:
        """The most the transactions can cost, in wei."""
        return self.gas * self.fee_per_gas


def estimate_deployment(
    w3: Web3,
    sender: str,
    *,
    rate_lock_s: int = DEFAULT_RATE_LOCK_S,
    fund_count: int = 0,
    approved_images: Sequence[bytes | str] = (),
    extra: Sequence[tuple[str, Sequence[Any]]] = (),
) -> DeployEstimate:
    """Price :func:`deploy_contracts`'s transactions (with the same arguments) for ``sender``,
    and ``extra`` contract creations deployed after them (artifact name, constructor arguments:
    the serverless and proof-market contracts, which their own packages deploy).

    Each contract creation is simulated (``eth_estimateGas``, against the chain as it is: the
    market's token is a placeholder address, which its constructor only stores, as those of
    ``extra`` must); each mint is a fixed allowance, since the token it calls does not exist yet.

    Raises:
        ContractRevertError: a creation would revert (an argument out of bounds).
        RPCError: the node failed.
        InputError: an image id is malformed, or more than 256.
    """
    from reef.chain._clients import check_uint

    check_uint(rate_lock_s, "rate_lock_s", bits=64)
    who = parse_address(sender, name="deployer")
    creations = [creation for _, creation in core_creations(who, rate_lock_s, approved_images)]
    return estimate_creations(w3, who, [*creations, *extra], mints=fund_count)


def core_creations(
    token: str, rate_lock_s: int, approved_images: Sequence[bytes | str]
) -> list[tuple[str, tuple[str, tuple[Any, ...]]]]:
    """What :data:`DEPLOYED_CONTRACTS` are created with, by name: (artifact name, constructor
    arguments), the market's token being ``token`` (a placeholder address when pricing before
    the token exists: the constructor only stores it).

    Raises:
        InputError: an image id is malformed, or more than 256.
    """
    return [
        ("token", ("Token", _TOKEN)),
        ("market", ("Market", (token, rate_lock_s))),
        ("kms_registry", ("KmsRegistry", (check_image_ids(approved_images),))),
    ]


def estimate_creations(
    w3: Web3, sender: str, creations: Sequence[tuple[str, Sequence[Any]]], *, mints: int = 0
) -> DeployEstimate:
    """Price contract ``creations`` (artifact name, constructor arguments) sent by ``sender``,
    each simulated against the chain as it is, and ``mints`` token mints at a fixed allowance
    (the token they call may not exist yet); :func:`estimate_deployment` prices a whole
    deployment with it, ``reef chain deploy`` what a resumed one still sends.

    Raises:
        ContractRevertError: a creation would revert (an argument out of bounds).
        RPCError: the node failed.
    """
    from reef.chain._artifacts import load_artifact
    from reef.chain._tx import translate_errors

    who = parse_address(sender, name="deployer")
    gas = 0
    for name, args in creations:
        artifact = load_artifact(name)
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        with translate_errors(f"estimating the gas to deploy {name}"):
            gas += _gas_limit(int(factory.constructor(*args).estimate_gas({"from": who})))
    gas += mints * _gas_limit(_MINT_GAS)
    return DeployEstimate(
        transactions=len(creations) + mints, gas=gas, fee_per_gas=_fee_per_gas(w3)
    )


def check_image_ids(values: Sequence[bytes | str]) -> list[bytes]:
    """``values`` checked as the registry takes them at deployment (as
    :meth:`~reef.chain.KmsRegistryClient.deploy` checks them), before anything is sent.

    Raises:
        InputError: an image id is not 32 bytes, or there are more than 256.
    """
    from reef.encoding import parse_bytes32
    from reef.errors import InputError

    ids = [
        parse_bytes32(
            value,
            name="image id",
            hint="an image id is 32 bytes, sha256 over the PCRs: `reef image measure` prints it",
        )
        for value in values
    ]
    if len(ids) > _KMS_BATCH:
        raise InputError(
            f"at most {_KMS_BATCH} image ids can be approved at deployment, got {len(ids)}",
            hint="deploy with fewer, then approve the rest with the registry's approveImages",
        )
    return ids


def _fee_per_gas(w3: Web3) -> int:
    """The most a transaction sent now pays per gas (see :attr:`DeployEstimate.fee_per_gas`).

    Raises:
        RPCError: the node failed.
    """
    from web3.exceptions import MethodUnavailable, Web3RPCError

    from reef.chain._tx import translate_errors

    with translate_errors("reading the gas price"):
        base = w3.eth.get_block("latest").get("baseFeePerGas")
        price = int(w3.eth.gas_price)
        if base is None:
            return price
        try:
            tip = int(w3.eth.max_priority_fee)
        except (MethodUnavailable, Web3RPCError):  # a node without eth_maxPriorityFeePerGas
            tip = max(price - int(base), 0)
        return max(2 * int(base) + tip, price)


def deploy_contracts(
    w3: Web3,
    deployer: Sender,
    *,
    rate_lock_s: int = DEFAULT_RATE_LOCK_S,
    fund: Sequence[str] = (),
    fund_amount: int = DEFAULT_FUND_AMOUNT,
    approved_images: Sequence[bytes | str] = (),
    progress: ProgressCallback | None = None,
    deployed: Deployed | None = None,
) -> Deployment:
    """Deploy the test token, the market and the KMS registry, and mint to ``fund``.

    Args:
        w3: any web3 provider.
        deployer: a ``LocalAccount``, or an address the node signs for; it owns the token
            (may mint) and the KMS registry (approves images).
        rate_lock_s: seconds a rate revision stays locked (MarketV1 deploys with 300).
        fund: addresses that each receive ``fund_amount`` token base units.
        approved_images: image ids the KMS registry approves from the start.
        progress: told of each transaction's stages.
        deployed: told of each contract once it is on the chain, so a caller can say what was
            deployed when a later transaction fails (the error itself says only what failed).

    Raises:
        ContractRevertError: a transaction reverted (those before it stay on the chain).
        RPCError: the node failed or refused a transaction.
        InputError: an argument is invalid (before anything is sent).
    """
    from reef.chain._clients import TokenClient, check_uint
    from reef.chain._tx import Transactor

    check_uint(rate_lock_s, "rate_lock_s", bits=64)
    check_uint(fund_amount, "fund_amount")
    recipients = [parse_address(a, name="funded account") for a in fund]
    image_ids = check_image_ids(approved_images)
    made: dict[str, tuple[Address, int | None]] = {}
    for name in DEPLOYED_CONTRACTS:
        made[name] = deploy_core_contract(
            w3,
            deployer,
            name,
            token=made["token"][0] if made else None,
            rate_lock_s=rate_lock_s,
            approved_images=image_ids,
            progress=progress,
        )
        if deployed is not None:
            deployed(name, *made[name])
    token_address, (market_address, market_block) = made["token"][0], made["market"]
    if fund_amount:
        token = TokenClient(w3, token_address, account=deployer, progress=progress)
        for recipient in recipients:
            token.mint(recipient, fund_amount)
    return Deployment(
        chain_id=Transactor(w3, deployer).chain_id(),
        token=token_address,
        market=market_address,
        kms_registry=made["kms_registry"][0],
        block=cast(int, market_block),  # a contract of deploy_contract's: its block is known
    )


def deploy_core_contract(
    w3: Web3,
    deployer: Sender,
    name: str,
    *,
    token: Address | None,
    rate_lock_s: int = DEFAULT_RATE_LOCK_S,
    approved_images: Sequence[bytes] = (),
    progress: ProgressCallback | None = None,
) -> tuple[Address, int | None]:
    """Deploy one of :data:`DEPLOYED_CONTRACTS` by its name and wait for it: its address and
    block (``None`` where the client does not say it). The market is made with ``token``.

    :func:`deploy_contracts` deploys them all at once; ``reef chain deploy`` one at a time, to
    record each as it lands and resume a deployment stopped half way.

    Raises:
        MisuseError: a name not in :data:`DEPLOYED_CONTRACTS`, or the market without ``token``.
        ContractRevertError, RPCError: as :func:`deploy_contracts`.
    """
    from reef.chain._clients import KmsRegistryClient, deploy_contract
    from reef.chain._tx import Transactor

    if name == "token":
        return deploy_contract(Transactor(w3, deployer, progress=progress), "Token", *_TOKEN)
    if name == "market" and token is not None:
        transactor = Transactor(w3, deployer, progress=progress)
        return deploy_contract(transactor, "Market", token, rate_lock_s)
    if name == "kms_registry":
        registry = KmsRegistryClient.deploy(w3, deployer, approved_images, progress=progress)
        return registry.address, None
    raise MisuseError(f"no core contract {name!r} (with token {token})")
