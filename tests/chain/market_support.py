"""Shared set-up for the contract and client tests: an in-process chain with reef's contracts.

Each :class:`TestChain` is a fresh eth-tester (py-evm) chain behind web3's
EthereumTesterProvider, with accounts whose keys are known (so clients sign locally, as they
would against a public RPC) and helpers to put the next block at a chosen time: eth-tester
stamps blocks itself, so tests move its clock with ``time_travel`` (DESIGN §6).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3

from reef.chain import (
    Deployment,
    KmsRegistryClient,
    MarketClient,
    TokenClient,
    deploy_contracts,
)

LOCK = 300  # the rate lock wait time every test market is deployed with
# Every chain starts at this block time (2096-10-02), so runs are reproducible and replayable.
START = 4_000_000_000
FUNDS = 1_000_000 * 10**6  # tokens minted to each user


@dataclass
class TestChain:
    """A fresh chain with the token, market and registry deployed and accounts funded."""

    __test__ = False  # not a pytest class

    tester: EthereumTester
    w3: Web3
    deployer: LocalAccount
    users: list[LocalAccount]
    providers: list[LocalAccount]
    deployment: Deployment
    cp: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, *, n_users: int = 3, n_providers: int = 2, lock: int = LOCK) -> TestChain:
        tester = EthereumTester(PyEVMBackend())
        tester.time_travel(START)
        w3 = Web3(EthereumTesterProvider(tester))
        keys = [k.to_bytes() for k in tester.backend.account_keys]
        accounts = [Account.from_key(k) for k in keys]
        deployer, rest = accounts[0], accounts[1:]
        users, providers = rest[:n_users], rest[n_users : n_users + n_providers]
        deployment = deploy_contracts(
            w3,
            deployer,
            rate_lock_s=lock,
            fund=[a.address for a in users],
            fund_amount=FUNDS,
        )
        chain = cls(tester, w3, deployer, users, providers, deployment)
        for user in users:  # unlimited allowance, so a job opens in exactly one transaction
            chain.token(user).approve(deployment.market, 2**256 - 1)
        for i, provider in enumerate(providers):
            url = f"http://127.0.0.1:{8080 + i}"
            chain.market(provider).add_provider(url)
            chain.cp[provider.address] = url
        return chain

    def market(self, account: LocalAccount | str | None = None) -> MarketClient:
        return MarketClient(self.w3, self.deployment.market, account=account)

    def token(self, account: LocalAccount | str | None = None) -> TokenClient:
        return TokenClient(self.w3, self.deployment.token, account=account)

    def registry(self, account: LocalAccount | str | None = None) -> KmsRegistryClient:
        return KmsRegistryClient(self.w3, self.deployment.kms_registry, account=account)

    def next_time(self) -> int:
        """The timestamp the next mined block (the next transaction) will carry."""
        return int(self.w3.eth.get_block("pending")["timestamp"])

    def at(self, timestamp: int) -> int:
        """Make the next transaction's block carry ``timestamp`` (which must not be in the past)."""
        if timestamp < self.next_time():
            raise AssertionError(f"cannot go back to {timestamp}; next is {self.next_time()}")
        self.tester.time_travel(timestamp)
        assert self.next_time() == timestamp
        return timestamp

    def block_time(self, block_number: int) -> int:
        return int(self.w3.eth.get_block(block_number)["timestamp"])
