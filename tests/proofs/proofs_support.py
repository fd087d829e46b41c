"""Shared set-up for the proof market tests: an in-process chain with the token and market.

A fresh in-process reef devnet per :class:`ProofChain` (its gas estimate runs a Groth16
verification twice, where eth-tester's binary search runs it a dozen times), with dev accounts
whose keys are known, the test token and a ``ProofMarket`` whose matching engine is account 1,
and a clock the test moves. :class:`Groth16Market` adds a Groth16 market over one of the
example circuits, with its input verification service, for the flows that prove.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from reef.chain import DEVNET_CHAIN_ID, Devnet, TokenClient
from reef.proofs import (
    ArtifactStore,
    CircuitArtifacts,
    InputVerifier,
    MatchingEngine,
    ProofMarketClient,
    ProverService,
    TaskOutcome,
    create_groth16_market,
    ensure_snarkjs,
)

START = 4_000_000_000
FUNDS = 1_000_000 * 10**6
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "proofs" / "poseidon"


@dataclass
class ProofChain:
    __test__ = False

    devnet: Devnet
    w3: Web3
    deployer: LocalAccount
    engine: LocalAccount
    users: list[LocalAccount]
    token_address: str
    market_address: str

    @classmethod
    def create(cls, n_users: int = 6, *, chain_id: int = DEVNET_CHAIN_ID) -> ProofChain:
        """A fresh chain: ``chain_id`` apart, every one deploys the token and the market at
        the same addresses (dev account 0's first two contracts)."""
        clock = [float(START)]
        devnet = Devnet(
            chain_id=chain_id, accounts=2 + n_users, clock=lambda: clock[0], genesis_timestamp=START
        )
        w3 = devnet.web3()
        accounts = [Account.from_key(a.private_key) for a in devnet.accounts]
        deployer, engine, users = accounts[0], accounts[1], accounts[2 : 2 + n_users]
        token = TokenClient.deploy(w3, deployer)
        market = ProofMarketClient.deploy(
            w3, deployer, token=token.address, matching_engine=engine.address
        )
        for user in users:
            token.mint(user.address, FUNDS)
            TokenClient(w3, token.address, account=user).approve(market.address, 2**256 - 1)
        return cls(devnet, w3, deployer, engine, users, token.address, market.address)

    def key_files(self, folder: Path) -> list[Path]:
        """Each user's private key in a file of ``folder`` (``userN.key``), as ``--key`` takes it."""
        keys = []
        for n, user in enumerate(self.users):
            key = folder / f"user{n}.key"
            key.write_text(user.key.hex())
            keys.append(key)
        return keys

    def market(self, account: LocalAccount | None = None) -> ProofMarketClient:
        return ProofMarketClient(self.w3, self.market_address, account=account or self.deployer)

    def token(self) -> TokenClient:
        return TokenClient(self.w3, self.token_address, account=self.deployer)

    def balance(self, address: str) -> int:
        return self.token().balance(address)

    def next_time(self) -> int:
        return int(self.w3.eth.get_block("pending")["timestamp"])

    def at(self, timestamp: int) -> None:
        """Make the next block carry ``timestamp`` (if it is later than the next block's)."""
        if timestamp > self.next_time():
            self.devnet.set_next_block_timestamp(timestamp)

    def matching_engine(
        self, database: Path, *, ignore_provers: Iterable[str] = ()
    ) -> MatchingEngine:
        """The market's matching engine (sending as the engine account, on the chain's clock),
        its indexer in the SQLite file ``database``: a second one on the same file is the first
        restarted after a kill -9."""
        return MatchingEngine.on_database(
            self.market(self.engine),
            f"sqlite:///{database}",
            clock=self.next_time,
            ignore_provers=ignore_provers,
        )


class Groth16Market:
    """A fresh :class:`ProofChain` (4 users; the first requests) with a Groth16 market over the
    example circuit in ``folder``, its artifacts stored under ``tmp`` and an in-process input
    verification service."""

    __test__ = False

    def __init__(
        self,
        tmp: Path,
        folder: Path,
        *,
        public_inputs: Sequence[str],
        private_inputs: Sequence[str] = (),
        penalty: int,
        name: str = "",
    ) -> None:
        self.chain = ProofChain.create(n_users=4)
        self.store = ArtifactStore(tmp / "artifacts")
        self.runtime = ensure_snarkjs()
        self.ivs = InputVerifier(Account.from_key(b"\x33" * 32), self.store, self.runtime)
        self.market_id = create_groth16_market(
            self.chain.market(),
            CircuitArtifacts.in_folder(folder),
            public_inputs=public_inputs,
            private_inputs=private_inputs,
            store=self.store,
            penalty=penalty,
            name=name,
            ivs=self.ivs.address,
        )
        self.requester = self.chain.users[0]

    def prover_service(self, account: LocalAccount, *, price: int, stake: int) -> ProverService:
        """``account`` registered (compute 2, ``stake``) and joined to the market at ``price``
        (compute 1, 60 s): its prover service, asking this market's IVS about invalid inputs."""
        client = self.chain.market(account)
        client.register(compute=2, stake=stake)
        client.join_market(self.market_id, price=price, max_time=60, compute=1)
        return ProverService(client, self.store, self.runtime, verifiers={self.market_id: self.ivs})


def settle(service: ProverService, tries: int = 6) -> list[TaskOutcome]:
    """Step ``service`` until a step's outcomes include no failure (the prover retries a failed
    task by design; on a loaded machine the devnet's 5 s budget for one ``eth_call`` or gas
    estimate can abort a Groth16 verification, which the retry then gets through)."""
    outcomes: list[TaskOutcome] = []
    for _ in range(tries):
        outcomes = service.step()
        if outcomes and all(o.outcome != "failed" for o in outcomes):
            break
    return outcomes
