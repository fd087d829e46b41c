"""``reef up``'s proof market extension: the contract, the example markets, and an engine and a
prover that run as attested enclaves.

:class:`ProofsExtension` (an :class:`~reef.node.UpExtension` named ``proofs``):

1. deploys ``ProofMarket`` on the devnet (paid and staked in the network's token), or reuses the
   one this home deployed while its code is still on the chain;
2. builds the input verification service's image (``examples/proofs-ivs`` plus the pinned
   snarkjs and the example circuits) and starts it as an enclave; its signing key is derived
   from reef's KMS (path ``reef.proofs.ivs`` of its image id's seed), so every enclave of that
   image signs as one address, which the extension learns from the KMS root's signed public
   endpoint for the measured image id and checks against what the enclave says it signs with
   (without a KMS, ``--no-kms``: the enclave's attested key, new at every start);
3. creates the shipped example markets with that IVS, storing their artifacts under
   ``$REEF_HOME/proofs/artifacts``: market 1 (``examples/proofs/poseidon``: Poseidon of a
   64-bit public ``x``, Groth16) and market 2 (``examples/proofs/commitment``:
   ``Poseidon(x, salt)`` with ``x`` a private input); a market's IVS is fixed when it is
   created, so when the IVS address differs from the one the home's example markets have (new
   reef code, so another IVS image and KMS key; another KMS root; no KMS), new example markets
   replace them, and the ones replaced are retired (``retireMarket``: they take no new asks,
   and their prover, gone with its enclave, would never take one; asks already there end as
   before). Both are said in the progress; the markets still to retire are kept in the state
   (``superseded``) until they are, so a ``reef up`` killed in between retires them next time;
4. builds the matching engine's image (``examples/proofs-engine``) and the prover's
   (``examples/proofs-prover`` plus the pinned snarkjs and the example circuits, so both are
   measured), and starts one enclave of each (labelled ``{"reef.role": "proofs",
   "reef.proofs": "engine" | "prover" | "ivs"}``), allowed to reach the devnet's RPC port (and
   the prover the IVS enclave's published port) and nothing else of the host. Their settings
   (chain, market, first block; the prover's stake, quotes and IVS) travel as an attested init
   param, ``network.json``: a :class:`reef.proofs.ServiceSettings`, whose bytes are measured;
5. fetches each enclave's attestation, verifies it for the image the backend measured, and
   makes the engine's attested key the market's matching engine
   (:func:`reef.proofs.register_matching_engine`, sent by the market's admin, dev account 0);
   funds both keys' gas and mints the prover's stake (the token owner is account 0); the
   prover enclave registers, joins both markets and registers its key for market 2's private
   inputs with its own transactions;
6. returns, for ``network.json``'s ``services["proofs"]``: the market address, the token, the
   example market ids, the engine and prover (address, enclave id, image id, attestation URL),
   the IVS's address and URL (and its enclave), the artifact directory and the deployment block.

Enclaves a killed ``reef up`` left behind are stopped and replaced on the next start (their
keys die with them; the new engine replaces the old one on chain).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from web3 import Web3

import reef
from reef._clock import wall_clock_ms
from reef._fetch import read_bounded, request_to, tls_context
from reef.attestation import AttestationClient, Expectations, attestation_url
from reef.chain import TokenClient
from reef.enclave import EnclaveInfo, EnclaveSpec, InitParam, InitParams
from reef.errors import ChainError, ContractRevertError, ReefError, ServiceError
from reef.home import ReefHome
from reef.node._examples import _build_example, examples_root
from reef.node._serve import until_up
from reef.node._up import UpContext, _EnclaveExtension, _url_port
from reef.proofs import (
    IVS_KMS_PATH,
    RUNTIME_PACKAGE_DIR,
    ArtifactStore,
    CircuitArtifacts,
    MarketJoin,
    ProofMarketClient,
    ProverSetup,
    ServiceSettings,
    create_groth16_market,
    ensure_snarkjs,
    register_matching_engine,
    tee_signer_address,
)

__all__ = ["PROOFS_ROLE", "ProofsExtension", "ProofsSettings"]


PROOFS_ROLE = "proofs"
_PART_LABEL = "reef.proofs"
# 3: the engine and the prover are enclaves (no dev-account prover); 4: the market's IVS and TEE
# digests bind the chain id (an older market's signatures replay across devnets); 5: a market's
# creator can retire it (an older contract cannot retire the example markets it replaces).
_STATE_VERSION = 5
_GAS_WEI = 10**18
# snarkjs's toolchain minus the compilers, which a prover does not run.
_NOT_PROVING = ("circom2", "circomlib")
_IVS_PORT = 8701  # the port the IVS app listens on inside its enclave
# The IVS's ``GET /`` answer ({"address", "public_key"}: about 200 bytes), read bounded: it comes
# through the host, which may answer in the enclave's place.
_IVS_ANSWER_BYTES = 4096
_IVS_ANSWER_S = 10.0
_IVS_UP_S = 300.0  # the whole wait for its first answer (600 quickly refused tries: 2 min)
_IVS = "the input verification service enclave"
_EXAMPLES: tuple[tuple[str, list[str], list[str], str], ...] = (
    ("poseidon", ["x"], [], "poseidon (example)"),
    ("commitment", ["salt"], ["x"], "commitment (example, private x)"),
)


@dataclass(frozen=True, kw_only=True)
class ProofsSettings:
    """What the extension starts."""

    penalty: int = 1_000_000
    """Stake slashed per missed deadline in the example market (1 rUSD)."""
    prover_stake: int = 100_000_000
    prover_price: int = 100_000
    prover_max_time_s: int = 60
    prover_compute: int = 4


@dataclass(frozen=True)
class _Market:
    client: ProofMarketClient
    example: int
    private: int
    start_block: int
    store: ArtifactStore
    ivs: str = ""


class ProofsExtension(_EnclaveExtension):
    """The proof market on ``reef up``; see the module docstring."""

    ROLE = PROOFS_ROLE

    def __init__(self, settings: ProofsSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or ProofsSettings()
        self._ivs_url = ""

    async def start(self, ctx: UpContext) -> Mapping[str, Any]:
        self._ctx = ctx
        ctx.progress("deploying the proof market")
        try:
            contract = await asyncio.to_thread(self._contract, ctx)
        except ReefError:
            raise
        except Exception as exc:  # a chain or file failure while setting up: say what failed
            raise ServiceError(f"starting the proof market failed: {exc}") from exc
        await self._stop_leftovers(ctx)
        ctx.progress("building the proof market's input verification service image")
        ivs_image = await asyncio.to_thread(self._ivs_image, ctx.home, contract.store)
        ivs = await self._start_ivs(ctx, contract, ivs_image)
        try:
            market = await asyncio.to_thread(self._examples, ctx, contract, ivs["address"])
        except ReefError:
            raise
        except Exception as exc:  # a chain failure while creating the markets
            raise ServiceError(f"creating the example proof markets failed: {exc}") from exc
        ctx.progress("building the proof market's enclave images")
        engine_image, prover_image = await asyncio.to_thread(self._images, ctx.home, market)
        engine = await self._start_engine(ctx, market, engine_image)
        prover = await self._start_prover(ctx, market, prover_image)
        return {
            "market": market.client.address,
            "token": ctx.info.deployment.token,
            "example_market": market.example,
            "private_market": market.private,
            "engine": engine["address"],
            "prover": prover["address"],
            "enclaves": {"engine": engine, "prover": prover, "ivs": ivs},
            "ivs": market.ivs,
            "ivs_url": self._ivs_url,
            "artifacts": str(market.store.root),
            "start_block": market.start_block,
        }

    # ---- the chain ----

    def _contract(self, ctx: UpContext) -> _Market:
        """The ``ProofMarket`` this home deployed while its code is still on the chain, or a new
        one (its example markets, when reused: checked against the IVS by :meth:`_examples`)."""
        home = ctx.home
        w3 = ctx.devnet.web3()
        owner = ctx.devnet.accounts[0].local_account
        ensure_snarkjs(home)
        store = ArtifactStore(home.path("proofs", "artifacts"))
        token = ctx.info.deployment.token
        state = self._reusable_state(ctx, ("market",), version=_STATE_VERSION, token=token)
        if state is not None:
            return _Market(
                ProofMarketClient(w3, state["market"], account=owner),
                int(state.get("example_market", 0)),
                int(state.get("private_market", 0)),
                int(state["start_block"]),
                store,
                str(state.get("ivs", "")),
            )
        start_block = ctx.devnet.block_number
        # The admin is the engine until the engine enclave's attested key replaces it.
        market = ProofMarketClient.deploy(w3, owner, token=token, matching_engine=owner.address)
        self._save_state(
            home,
            {
                "version": _STATE_VERSION,
                "chain_id": ctx.devnet.chain_id,
                "token": token,
                "market": market.address,
                "start_block": start_block,
            },
        )
        return _Market(market, 0, 0, start_block, store)

    def _examples(self, ctx: UpContext, contract: _Market, ivs: str) -> _Market:
        """The example markets, with ``ivs`` as their input verification service: the ones this
        home created when they have that IVS, else new ones (a market's IVS cannot change)."""
        s = self.settings
        if contract.example and contract.private and contract.ivs.lower() == ivs.lower():
            self._retire_superseded(ctx, contract)  # those a killed reef up left to retire
            return replace(contract, ivs=ivs)
        if contract.example:
            note = (
                f"the example markets {contract.example} and {contract.private} have IVS "
                f"{contract.ivs or '(unrecorded)'}, the IVS enclave signs as {ivs}: creating new "
                "example markets (a market's IVS is fixed when it is created)"
            )
            ctx.progress(note)  # once: reef up's log handler would print a warning again
        ids = []
        for example, public, private, name in _EXAMPLES:
            folder = examples_root() / "proofs" / example
            ids.append(
                create_groth16_market(
                    contract.client,
                    CircuitArtifacts.in_folder(folder),
                    public_inputs=public,
                    private_inputs=private,
                    store=contract.store,
                    penalty=s.penalty,
                    name=name,
                    ivs=ivs,
                )
            )
        state = self._load_state(ctx.home)
        superseded = [int(m) for m in state.get("superseded", [])]
        superseded += [m for m in (contract.example, contract.private) if m]
        state.update(
            {
                "example_market": ids[0],
                "private_market": ids[1],
                "ivs": ivs,
                "superseded": superseded,
            }
        )
        self._save_state(ctx.home, state)
        market = replace(contract, example=ids[0], private=ids[1], ivs=ivs)
        self._retire_superseded(ctx, market)
        return market

    def _retire_superseded(self, ctx: UpContext, market: _Market) -> None:
        """Retire the example markets this home replaced (the state's ``superseded``), and say
        so. One the chain refuses to retire (not this home's to retire) is dropped with a note;
        one a chain failure left is tried again at the next start."""
        state = self._load_state(ctx.home)
        pending = [int(m) for m in state.get("superseded", [])]
        if not pending:
            return
        retired, left = [], []
        for market_id in pending:
            try:
                if not market.client.retired(market_id):
                    market.client.retire_market(market_id)
                retired.append(market_id)
            except ContractRevertError as exc:
                ctx.progress(f"example market {market_id} was not retired: {exc}")
            except ChainError as exc:
                ctx.progress(f"example market {market_id} was not retired (next time): {exc}")
                left.append(market_id)
        state["superseded"] = left
        self._save_state(ctx.home, state)
        if retired:
            names = " and ".join(str(m) for m in retired)
            ctx.progress(
                f"retired the earlier example markets {names}: they take no new asks (those "
                "they have end as before); the example markets are now "
                f"{market.example} and {market.private}"
            )

    # ---- the images ----

    def _images(self, home: ReefHome, market: _Market) -> tuple[Path, Path]:
        """The engine's image and the prover's (with snarkjs and the example circuits copied
        in, so they are measured); each rebuilt only when what goes into it changed."""
        engine = self._build(home, "proofs-engine", _code())
        circuits: dict[str, Path] = {}
        for market_id in (market.example, market.private):
            metadata = _market_metadata(market.client, market_id, market.start_block)
            for digest in metadata.values():
                circuits[f"artifacts/{digest}"] = market.store.get(digest)
        extra = {**_code(), **circuits, **_snarkjs_files(home)}
        prover = self._build(home, "proofs-prover", extra)
        return engine, prover

    def _ivs_image(self, home: ReefHome, store: ArtifactStore) -> Path:
        """The IVS's image: the reef code, snarkjs and the example circuits (by SHA-256, the
        names the example markets record), known before those markets exist."""
        circuits: dict[str, Path] = {}
        for example, *_ in _EXAMPLES:
            files = CircuitArtifacts.in_folder(examples_root() / "proofs" / example)
            for path in (files.wasm, files.zkey, files.vkey):
                digest = store.put(path)
                circuits[f"artifacts/{digest}"] = store.get(digest)
        return self._build(home, "proofs-ivs", {**_code(), **circuits, **_snarkjs_files(home)})

    @staticmethod
    def _build(home: ReefHome, name: str, extra: Mapping[str, Path]) -> Path:
        return _build_example(home, name, extra, workdir=home.path("proofs", f"{name}-app"))

    # ---- the enclaves ----

    async def _launch(
        self,
        ctx: UpContext,
        part: str,
        image: Path,
        settings: ServiceSettings,
        ports: tuple[int, ...],
        *,
        published: Mapping[int, int] | None = None,
    ) -> tuple[EnclaveInfo, bytes]:
        """Start one enclave with ``settings`` as its attested ``network.json``; returns it and
        its attested public key (verified for the image id the backend measured)."""
        params = InitParams.build([InitParam("network.json", settings.to_json())])
        init_path = ctx.home.path("proofs", f"{part}-init-params.json")
        init_path.write_bytes(params.to_json())
        info = await self._start_enclave(
            ctx,
            EnclaveSpec(
                image=image,
                init_params=init_path,
                allow_host_ports=ports,
                ports=dict(published or {}),
                labels={_PART_LABEL: part},
            ),
        )
        client = AttestationClient(root=ctx.root)
        url = attestation_url(info.endpoints["attestation_secp256k1"])
        evidence = await until_up(
            lambda: client.afetch(url),
            what=f"the proof market's {part} enclave",
            errors=ServiceError,
        )
        verified = client.check(evidence, expect=Expectations(image_id=info.image_id))
        return info, evidence if part == "engine" else verified.public_key

    @staticmethod
    def _settings(
        ctx: UpContext, market: _Market, *, wait_s: float | None = 120
    ) -> ServiceSettings:
        """The chain, the market and its first block (and how long a service waits to be
        funded or made the engine: the IVS has nothing to wait for)."""
        return ServiceSettings(
            rpc=ctx.info.rpc_url,
            proof_market=market.client.address,
            from_block=market.start_block,
            wait_s=wait_s,
        )

    async def _start_engine(self, ctx: UpContext, market: _Market, image: Path) -> dict[str, Any]:
        ctx.progress("starting the proof market's matching engine enclave")
        # Provers an earlier reef up started on this market are gone with their enclaves (and
        # keys): they can neither prove nor leave, so the engine never assigns them.
        gone = self._load_state(ctx.home).get("provers", [])
        settings = replace(self._settings(ctx, market), ignore_provers=tuple(gone))
        info, evidence = await self._launch(ctx, "engine", image, settings, (ctx.rpc_port,))

        def on_chain() -> str:
            engine = register_matching_engine(
                market.client,
                evidence,
                image_id=info.image_id,
                root=ctx.root,
                now_ms=wall_clock_ms(),
            )
            _fund(ctx, engine, 0)
            return engine

        address = await asyncio.to_thread(on_chain)
        return _described(info, address)

    async def _start_ivs(self, ctx: UpContext, contract: _Market, image: Path) -> dict[str, Any]:
        """The IVS enclave, started and attested; its signing address from the KMS root's
        public endpoint for the measured image id (checked against what the enclave says)."""
        ctx.progress("starting the proof market's input verification service enclave")
        settings = self._settings(ctx, contract, wait_s=None)
        info, public_key = await self._launch(
            ctx, "ivs", image, settings, (ctx.rpc_port,), published={_IVS_PORT: 0}
        )
        kms = ctx.info.kms
        if kms.get("public"):
            from reef.kms import KmsPublicClient, fetch_identity

            identity = await fetch_identity(
                kms["public"], root=ctx.root, image_id=bytes.fromhex(kms["image_id"])
            )
            derived = await KmsPublicClient(
                kms["public"], signing_key=identity.signing_keys
            ).address("secp256k1", IVS_KMS_PATH, image_id=info.image_id)
            address = str(Web3.to_checksum_address(derived))
        else:  # no KMS root: the enclave signs with its attested key (not kept across restarts)
            address = str(tee_signer_address(public_key))
        url = str(info.endpoints["ports"][_IVS_PORT])
        self._ivs_url = url

        try:
            # Each answer is bounded (_ivs_address); so is the wait for one, as tries of a host
            # that trickles every answer would each take the whole deadline.
            async with asyncio.timeout(_IVS_UP_S):
                says = await until_up(
                    lambda: _ivs_address(url), what=_IVS, errors=ServiceError, tries=600
                )
        except TimeoutError as exc:
            raise ServiceError(f"{_IVS} at {url} gave no answer in {_IVS_UP_S:g} s") from exc
        if says.lower() != address.lower():
            raise ServiceError(
                f"the IVS enclave signs as {says}, but its key for image "
                f"0x{info.image_id.hex()} is {address}",
                hint="the enclave is not wired to this network's KMS root; restart reef up",
            )
        return {**_described(info, address), "url": url}

    async def _start_prover(self, ctx: UpContext, market: _Market, image: Path) -> dict[str, Any]:
        s = self.settings
        ctx.progress("starting the proof market's prover enclave")
        ivs_url = self._ivs_url
        ivs_port = _url_port(ivs_url)
        markets = (market.example, market.private)
        quotes = tuple(
            MarketJoin(market_id=m, price=s.prover_price, max_time=s.prover_max_time_s, compute=1)
            for m in markets
        )
        settings = replace(
            self._settings(ctx, market),
            prover=ProverSetup(stake=s.prover_stake, compute=s.prover_compute, markets=quotes),
            ivs={m: ivs_url for m in markets},
        )
        info, public_key = await self._launch(
            ctx, "prover", image, settings, (ctx.rpc_port, ivs_port)
        )
        address = tee_signer_address(public_key)
        state = self._load_state(ctx.home)
        state["provers"] = [*state.get("provers", []), address]
        self._save_state(ctx.home, state)
        await asyncio.to_thread(_fund, ctx, address, s.prover_stake)

        async def joined() -> None:
            def check() -> bool:
                client = market.client
                return (
                    client.prover(address).registered
                    and all(
                        client.offer(address, m).joined for m in (market.example, market.private)
                    )
                    and client.prover_key(address, market.private) != b""
                )

            if not await asyncio.to_thread(check):
                raise ServiceError(f"the prover enclave {address} has not joined the markets yet")

        await until_up(
            joined, what="the prover enclave's registration", errors=ServiceError, tries=600
        )
        return _described(info, address)


async def _ivs_address(
    url: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    deadline_s: float = _IVS_ANSWER_S,
) -> str:
    """The address the IVS enclave at ``url`` says it signs as (its ``GET /``), read within
    ``deadline_s`` and :data:`_IVS_ANSWER_BYTES` (:func:`reef._fetch.read_bounded`): the answer
    comes through the host, and a head trickled a byte at a time must cost one failed try, not
    reef up.

    Raises:
        ServiceError: no such answer in time (a :class:`~reef._fetch.FetchError`), an error
            status, or a body that names no address.
    """
    request = request_to("GET", url + "/", what=_IVS)
    async with httpx.AsyncClient(
        transport=transport, timeout=deadline_s, verify=tls_context()
    ) as client:
        answer = await read_bounded(
            client, request, max_bytes=_IVS_ANSWER_BYTES, deadline_s=deadline_s, what=_IVS
        )
    if answer.status != 200:
        raise ServiceError(f"{_IVS} at {url} answered HTTP {answer.status}")
    body = answer.json(what=f"the answer of {_IVS} at {url}", max_depth=2)
    address = body.get("address") if isinstance(body, dict) else None
    if not isinstance(address, str):
        raise ServiceError(f"{_IVS} at {url} named no address it signs as")
    return address


def _code() -> dict[str, Path]:
    """The reef code the apps run (the CLI, the engine, the prover, the IVS): each image carries
    it and imports it first ($PYTHONPATH), so it is measured with the image, not read from the
    host's installation (PCR1 measures only the supervisor's own modules)."""
    return {"py/reef": Path(reef.__file__).parent}


def _snarkjs_files(home: ReefHome) -> dict[str, Path]:
    """The pinned snarkjs install, minus the compilers (image path -> source)."""
    modules = ensure_snarkjs(home).project / "node_modules"
    extra = {"snarkjs/package.json": RUNTIME_PACKAGE_DIR / "package.json"}
    for entry in sorted(modules.iterdir()):
        if entry.name not in _NOT_PROVING:
            extra[f"snarkjs/node_modules/{entry.name}"] = entry
    return extra


def _described(info: EnclaveInfo, address: str) -> dict[str, Any]:
    return {
        "address": address,
        "enclave_id": info.id,
        "image_id": "0x" + info.image_id.hex(),
        "attestation": attestation_url(info.endpoints["attestation_secp256k1"]),
    }


def _fund(ctx: UpContext, address: str, stake: int) -> None:
    """Gas (from dev account 0) and ``stake`` of the token (minted by its owner, account 0)."""
    w3 = ctx.devnet.web3()
    owner = ctx.devnet.accounts[0].local_account
    if w3.eth.get_balance(w3.to_checksum_address(address)) < _GAS_WEI // 2:
        from reef.serverless import fund_gas

        fund_gas(w3, owner, address, _GAS_WEI)
    if stake:
        minter = TokenClient(w3, ctx.info.deployment.token, account=owner)
        if minter.balance(address) < stake:
            minter.mint(address, stake)


def _market_metadata(client: ProofMarketClient, market_id: int, from_block: int) -> dict[str, str]:
    """A Groth16 market's artifact hashes by role, from its ``MarketCreated`` event."""
    from reef.proofs import MarketCreated, MarketMetadata

    for event in client.events(from_block, client.w3.eth.block_number):
        if isinstance(event, MarketCreated) and event.market_id == market_id:
            return dict(MarketMetadata.from_json(event.metadata).artifacts)
    raise ServiceError(f"market {market_id} has no MarketCreated event after block {from_block}")
