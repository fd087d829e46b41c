"""The devnet's dev accounts: BIP-39/BIP-44 keys from the well-known hardhat/anvil mnemonic.

Using the same mnemonic and derivation path (``m/44'/60'/0'/0/i``) as hardhat and anvil means
wallets, ethers scripts and tutorials already know these addresses and keys. They are public
knowledge: funds sent to them on a real network are lost, and every output that shows a key says
so. Derivation uses eth-account's BIP-32 implementation directly (``key_from_seed``), which needs no
global "unaudited features" switch. eth-account (about a second of imports with eth-utils) is
imported where a key is derived or a signer built, not with this module: the devnet's records
(``devnet.json``) name these accounts, and a command reading them to find the chain need not load
it.

Both devnet kinds (the embedded one and anvil) start a new chain the same way, so that is here
too: :func:`settle_contracts` deploys reef's contracts on a new chain (from the first account,
funding them all: :func:`deploy_for_dev_accounts`) and refuses to reopen a kept chain with another
rate lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from reef.chain._deployment import DEFAULT_RATE_LOCK_S
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ConfigError, InputError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from reef.chain._deployment import Deployment

__all__ = [
    "DEVNET_CHAIN_ID",
    "DEV_KEYS_WARNING",
    "DEV_MNEMONIC",
    "DevAccount",
    "dev_accounts",
]

DEV_MNEMONIC = "test test test test test test test test test test test junk"
"""The hardhat/anvil development mnemonic. Its keys are public: never use them on a real network."""

DEVNET_CHAIN_ID = 31337
"""hardhat's and anvil's chain id, so wallets and libraries recognise a local development chain."""

DEV_KEYS_WARNING = (
    "DEV-ONLY keys from a public mnemonic: anyone can spend from these accounts on a real network"
)

_MAX_ACCOUNTS = 1000


@dataclass(frozen=True)
class DevAccount:
    """One funded development account: its index on the HD path, address and private key."""

    index: int
    address: str
    """EIP-55 checksum address."""
    private_key: bytes
    """32 bytes. Public knowledge: a development key only."""

    def __repr__(self) -> str:
        # Keys are public, but repr still keeps them out of logs and tracebacks.
        return f"DevAccount(index={self.index}, address={self.address!r})"

    @property
    def local_account(self) -> LocalAccount:
        """The account as an eth-account signer (for web3 middleware and typed clients)."""
        from eth_account import Account

        account: LocalAccount = Account.from_key(self.private_key)
        return account

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "address": self.address,
            "private_key": "0x" + self.private_key.hex(),
        }


def dev_accounts(count: int = 10, *, mnemonic: str = DEV_MNEMONIC) -> tuple[DevAccount, ...]:
    """The first ``count`` accounts of ``mnemonic`` on the path ``m/44'/60'/0'/0/i``.

    Raises:
        InputError: if ``count`` is not between 1 and 1000, or the mnemonic is not valid.
    """
    if not 1 <= count <= _MAX_ACCOUNTS:
        raise InputError(
            f"the number of dev accounts must be between 1 and {_MAX_ACCOUNTS}, got {count}"
        )
    return _derive(mnemonic, count)


@cache
def _derive(mnemonic: str, count: int) -> tuple[DevAccount, ...]:
    # PBKDF2 over the mnemonic (2048 rounds) dominates; the cache makes repeated devnets cheap.
    from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
    from eth_utils.exceptions import ValidationError

    try:
        seed = seed_from_mnemonic(mnemonic, "")
    except ValidationError as exc:
        raise InputError(
            "the dev mnemonic is not a valid BIP-39 phrase",
            hint="use the default 'test test ... junk' mnemonic or another 12/24-word phrase",
        ) from exc
    accounts = []
    for index in range(count):
        key = key_from_seed(seed, f"m/44'/60'/0'/0/{index}")
        address = Secp256k1PrivateKey(key).public_key.checksum_address
        accounts.append(DevAccount(index=index, address=address, private_key=key))
    return tuple(accounts)


def deploy_for_dev_accounts(
    web3: Web3, accounts: Sequence[DevAccount], *, rate_lock_s: int
) -> Deployment:
    """Deploy reef's contracts from the first dev account and fund every one: how both devnet
    kinds (the embedded one and anvil) start a fresh chain.

    Raises:
        ReefError: a deployment transaction failed (as :func:`reef.chain.deploy_contracts`).
    """
    from reef.chain._deploy import deploy_contracts  # reef.chain imports this package

    return deploy_contracts(
        web3,
        accounts[0].address,
        rate_lock_s=rate_lock_s,
        fund=[account.address for account in accounts],
    )


def settle_contracts(
    chain: str,
    deployed: int | None,
    asked: int | None,
    *,
    deploy: Callable[[int], None] | None,
    hint: str,
) -> None:
    """Settle reef's contracts on a chain being opened: a new one (``deployed`` None) gets them
    through ``deploy`` with the ``asked`` rate lock, or the default (``deploy`` None: it stays
    empty); a kept one, its market deployed with a rate lock of ``deployed`` s, is refused
    another (``asked`` None: whatever it was deployed with).

    Raises:
        ConfigError: naming ``chain``, when ``asked`` differs from ``deployed``.
    """
    if deployed is None:
        if deploy is not None:
            deploy(DEFAULT_RATE_LOCK_S if asked is None else asked)
    elif asked is not None and asked != deployed:
        raise ConfigError(
            f"the {chain} was deployed with a rate lock of {deployed} s, not {asked} s", hint=hint
        )
