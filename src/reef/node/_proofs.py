"""``reef up``'s proof market extension: the contract, the example market, an engine, a prover.

:class:`ProofsExtension` (an :class:`~reef.node.UpExtension` named ``proofs``):

1. deploys ``ProofMarket`` on the devnet (paid and staked in the network's token, assigned by
   dev account 4 as the matching engine), or reuses the one this home deployed while its code
   is still on the chain;
2. creates the shipped example markets with an input verification service, storing their
   artifacts under ``$REEF_HOME/proofs/artifacts``: market 1 (``examples/proofs/poseidon``:
   Poseidon of a 64-bit public ``x``, Groth16) and market 2 (``examples/proofs/commitment``:
   ``Poseidon(x, salt)`` with ``x`` a private input);
3. registers dev account 5 as a prover (stake minted by the token owner, account 0), joins it
   to both markets and registers its key for market 2's private inputs (the engine publishes
   its own key on its first step);
4. runs the matching engine (indexer database ``$REEF_HOME/proofs/engine.db``) and the prover
   as asyncio tasks of the ``reef up`` process (not yet as attested enclaves);
5. returns, for ``network.json``'s ``services["proofs"]``: the market address, the token, the
   example market id, the engine, prover and IVS addresses, the artifact directory and the
   deployment block.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from reef.chain import IndexedContract, Indexer, TokenClient, Web3BlockSource
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ReefError, ServiceError
from reef.home import ReefHome
from reef.node._examples import examples_root
from reef.node._up import UpContext
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
    proof_market_decoder,
)

__all__ = ["PROOFS_ROLE", "ProofsExtension", "ProofsSettings"]

log = logging.getLogger("reef.node.proofs")

PROOFS_ROLE = "proofs"
# Dev accounts: 0 is the user (and token owner), 6-8 serverless operators, 9 the provider.
_ENGINE_ACCOUNT = 4
_PROVER_ACCOUNT = 5
_STATE_FILE = ("proofs", "deployment.json")
_STATE_VERSION = 2  # 2: the contract takes private inputs; market 2 is the private example


@dataclass(frozen=True, kw_only=True)
class ProofsSettings:
    """What the extension starts."""

    penalty: int = 1_000_000
    """Stake slashed per missed deadline in the example market (1 rUSD)."""
    prover_stake: int = 100_000_000
    prover_price: int = 100_000
    prover_max_time_s: int = 60
    prover_compute: int = 4
    interval_s: float = 0.3


def _ivs_account(home: ReefHome) -> LocalAccount:
    # The IVS key of this home's example market: derived from the home's path, so a restart
    # keeps the market's IVS. It is a development key on a development chain.
    seed = hashlib.sha256(b"reef proofs ivs\x00" + str(home.root.resolve()).encode()).digest()
    account: LocalAccount = Account.from_key(seed)
    return account


class ProofsExtension:
    """The proof market on ``reef up``; see the module docstring."""

    def __init__(self, settings: ProofsSettings | None = None) -> None:
        self.settings = settings or ProofsSettings()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    @property
    def name(self) -> str:
        return PROOFS_ROLE

    async def start(self, ctx: UpContext) -> Mapping[str, Any]:
        try:
            services, engine, prover = await asyncio.to_thread(self._start_sync, ctx)
        except ReefError:
            raise
        except Exception as exc:  # a chain or file failure while setting up: say what failed
            raise ServiceError(f"starting the proof market failed: {exc}") from exc
        interval = self.settings.interval_s
        self._tasks = [
            asyncio.create_task(engine.run(interval_s=interval, stop=self._stop)),
            asyncio.create_task(prover.run(interval_s=interval, stop=self._stop)),
        ]
        return services

    def _start_sync(
        self, ctx: UpContext
    ) -> tuple[Mapping[str, Any], MatchingEngine, ProverService]:
        s = self.settings
        home = ctx.home
        w3 = ctx.devnet.web3()
        accounts = ctx.devnet.accounts
        owner = accounts[0].local_account
        engine_account = accounts[_ENGINE_ACCOUNT].local_account
        prover_account = accounts[_PROVER_ACCOUNT].local_account
        runtime = ensure_snarkjs(home)
        store = ArtifactStore(home.path("proofs", "artifacts"))
        ivs = InputVerifier(_ivs_account(home), store, runtime)
        token = ctx.info.deployment.token
        state = self._load_state(home)
        usable = (
            state.get("version") == _STATE_VERSION
            and state.get("chain_id") == ctx.devnet.chain_id
            and state.get("token") == token
            and len(w3.eth.get_code(state.get("market", "0x" + "00" * 20))) > 0
        )
        if usable:
            market = ProofMarketClient(w3, state["market"], account=owner)
            market_id = int(state["example_market"])
            private_id = int(state["private_market"])
            start_block = int(state["start_block"])
        else:
            start_block = ctx.devnet.block_number
            market = ProofMarketClient.deploy(
                w3, owner, token=token, matching_engine=engine_account.address
            )
            example = examples_root() / "proofs" / "poseidon"
            market_id = create_groth16_market(
                market,
                CircuitArtifacts(
                    example / "circuit.wasm",
                    example / "circuit.zkey",
                    example / "verification_key.json",
                ),
                public_inputs=["x"],
                store=store,
                penalty=s.penalty,
                name="poseidon (example)",
                ivs=ivs.address,
            )
            commitment = examples_root() / "proofs" / "commitment"
            private_id = create_groth16_market(
                market,
                CircuitArtifacts(
                    commitment / "circuit.wasm",
                    commitment / "circuit.zkey",
                    commitment / "verification_key.json",
                ),
                public_inputs=["salt"],
                private_inputs=["x"],
                store=store,
                penalty=s.penalty,
                name="commitment (example, private x)",
                ivs=ivs.address,
            )
            minter = TokenClient(w3, token, account=owner)
            minter.mint(prover_account.address, s.prover_stake)
            TokenClient(w3, token, account=prover_account).approve(market.address, 2**256 - 1)
            prover_client = market.with_account(prover_account)
            prover_client.register(compute=s.prover_compute, stake=s.prover_stake)
            for joined in (market_id, private_id):
                prover_client.join_market(
                    joined, price=s.prover_price, max_time=s.prover_max_time_s, compute=1
                )
            prover_key = Secp256k1PrivateKey(bytes(prover_account.key)).public_key.raw
            prover_client.set_prover_key(private_id, prover_key)
            state = {
                "version": _STATE_VERSION,
                "chain_id": ctx.devnet.chain_id,
                "token": token,
                "market": market.address,
                "example_market": market_id,
                "private_market": private_id,
                "start_block": start_block,
            }
            self._save_state(home, state)
        indexer = Indexer(
            Web3BlockSource(w3),
            f"sqlite:///{home.path('proofs', 'engine.db')}",
            contracts=[
                IndexedContract(
                    address=market.address,
                    events=proof_market_decoder(),
                    stream="proofs",
                    start_block=start_block,
                )
            ],
        )
        engine = MatchingEngine(
            market.with_account(engine_account), indexer, clock=ctx.devnet.next_block_timestamp
        )
        prover = ProverService(
            market.with_account(prover_account),
            store,
            runtime,
            verifiers={market_id: ivs, private_id: ivs},
            from_block=start_block,
            on_outcome=self._report,
        )
        services = {
            "market": market.address,
            "token": token,
            "example_market": market_id,
            "private_market": private_id,
            "engine": engine_account.address,
            "prover": prover_account.address,
            "ivs": ivs.address,
            "artifacts": str(store.root),
            "start_block": start_block,
        }
        return services, engine, prover

    @staticmethod
    def _report(outcome: TaskOutcome) -> None:
        log.info("proofs: ask %s %s %s", outcome.ask_id, outcome.outcome, outcome.detail)

    @staticmethod
    def _load_state(home: ReefHome) -> dict[str, Any]:
        path = home.root.joinpath(*_STATE_FILE)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _save_state(home: ReefHome, state: Mapping[str, Any]) -> None:
        path = home.path(*_STATE_FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(path)

    async def aclose(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=30)
        self._tasks = []
