"""Every reef HTTP API fuzzed from its own ``/openapi.json`` with schemathesis (issue 11).

Each service's schema is loaded from the app itself, and schemathesis generates requests from
it (valid and invalid: bad hex, wrong lengths, unknown parameters, odd bodies), a bounded,
deterministic number per operation. Every answer must be no 5xx and must match the schema the
service publishes (status, content type, body). A failure here is either a crash the fuzzer
found or a schema that does not say what the server does.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from chain.market_support import TestChain
from kms.kms_support import attested_peer
from proofs.proofs_support import ProofChain
from reef.attestation import (
    DevAuthority,
    attestation_app,
    custom_attestation_app,
    image_id,
    verifier_app,
)
from reef.chain import Devnet, devnet_app
from reef.crypto import Secp256k1PrivateKey
from reef.enclave.local._trusted_base import Console, console_app, sealing_app
from reef.home import ReefHome
from reef.kms import (
    EnclaveSeeds,
    KmsRoot,
    RootKeyring,
    RootSeed,
    derive_server_app,
    public_app,
    scallop_app,
)
from reef.market import (
    ImageStore,
    JobPolicy,
    RateCard,
    UploadPolicy,
    control_plane_app,
    image_store_app,
)
from reef.market._control_plane import RunningEnclave
from reef.node import Session
from reef.proofs import ArtifactStore, InputVerifier, SnarkjsRuntime, ivs_app
from reef.scallop import ScallopPeer
from reef.serverless import ExecutorNode, FunctionRuntime
from reef.testing import wall_ms
from reef.web import Dashboard, DashboardSettings, dashboard_app
from serverless.chain_support import ServerlessChain

pytestmark = [pytest.mark.timeout(120)]

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    status_code_conformance,
]
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
DASHBOARD_TOKEN = "schemathesis-token"
PCRS = {0: b"\x10" * 48, 1: b"\x11" * 48, 2: b"\x12" * 48}
JOB = "0x" + "ab" * 32


class _View:
    """A control plane with one running job, as ``ControlPlane`` reports it."""

    policy = JobPolicy(RateCard.dev(), provider="0x" + "11" * 20)
    host = "127.0.0.1"

    def enclave(self, job_id: str) -> RunningEnclave | None:
        if job_id != JOB:
            return None
        return RunningEnclave("enc-1", JOB, "key", "running", {"attestation": "http://x"})

    def job_status(self, job_id: str) -> dict[str, Any] | None:
        if job_id != JOB:
            return None
        return {
            "job_id": JOB,
            "phase": "running",
            "reason": "",
            "owner": "0x" + "22" * 20,
            "rate": "0x10",
            "pending_rate": None,
            "balance": "0x100",
            "last_settled": 1,
            "stop_at": 2,
            "instance": "dev.small",
            "region": "local",
            "url": "http://images/x",
            "debug": False,
            "enclave": {"id": "enc-1", "state": "running", "endpoints": {}},
            "last_error": "",
            "restarts": 0,
            "last_restart": "",
        }

    def jobs(self) -> list[dict[str, Any]]:
        status = self.job_status(JOB)
        assert status is not None
        return [status]


def _executor(home: Path) -> ExecutorNode:
    """An executor configured for a serverless deployment on a devnet, its chain watcher then
    stopped (the gateway reads code through the chain; nothing polls behind the fuzzer). No
    code is deployed, so every call the fuzzer makes ends at the gateway's own answers and the
    runtime (whose workerd is never started) runs nothing."""
    chain = ServerlessChain.create()
    node = ExecutorNode(
        Secp256k1PrivateKey(hashlib.sha256(b"reef schemathesis executor").digest()),
        FunctionRuntime(home / "workerd", workdir=home / "run"),
        home / "code",
    )

    async def configure() -> None:
        await chain.configure(node)

    # On a thread of its own: the async test below already runs a loop on this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, configure()).result()
    return node


def _ivs(home: Path) -> Any:
    """The IVS of a market contract with no asks yet (every ask the fuzzer names is refused
    before any proving: no snarkjs runs)."""
    chain = ProofChain.create(n_users=1)
    verifier = InputVerifier(
        Account.from_key(hashlib.sha256(b"reef schemathesis ivs").digest()),
        ArtifactStore(home / "artifacts"),
        SnarkjsRuntime(node=home / "node", project=home / "snarkjs"),
    )
    return ivs_app(verifier, chain.market())


class _Approval:
    """A chain whose contracts approve every image when their address ends in an even digit."""

    chain_id = 31337

    async def __call__(self, address: str, image_id: bytes) -> bool:
        return int(address[-1], 16) % 2 == 0


class _OverScallop:
    """Requests as ``reef.scallop.serve_asgi`` hands them on: from an attested peer."""

    def __init__(self, app: ASGIApp, *, peer: ScallopPeer) -> None:
        self.app = app
        self.peer = peer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = {
            **scope,
            "extensions": {**scope.get("extensions", {}), "scallop": {"peer": self.peer}},
        }
        await self.app(scope, receive, send)


def _kms_scallop(home: Path) -> Any:
    """The KMS root's Scallop app, its requests from an enclave that attested its image."""
    authority = DevAuthority.load_or_create(ReefHome(home))
    seed = RootSeed(hashlib.sha512(b"reef schemathesis root").digest(), 0)
    app = scallop_app(KmsRoot(RootKeyring([seed]), approval=_Approval()))
    peer = attested_peer(authority.root, PCRS, timestamp_ms=wall_ms())
    app.add_middleware(_OverScallop, peer=peer)
    return app


class _OnLoopback:
    """Requests as a browser on this machine sends them (from 127.0.0.1, ``Host: 127.0.0.1``):
    a loopback dashboard refuses other host names (DNS rebinding) and management from other
    clients, and the test clients say testserver/testclient."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
            scope = {
                **scope,
                "headers": [*headers, (b"host", b"127.0.0.1")],
                "client": ("127.0.0.1", 50000),
            }
        await self.app(scope, receive, send)


def _dashboard(home: Path) -> Any:
    app = dashboard_app(_ChainDashboard(home))
    app.add_middleware(_OnLoopback)
    return app


class _ChainDashboard(Dashboard):
    """A dashboard whose session is on an in-process chain with reef's contracts (no RPC
    server): its account has rUSD and no jobs, and no network.json names services."""

    def __init__(self, home: Path) -> None:
        super().__init__(DashboardSettings(home=ReefHome(home), token=DASHBOARD_TOKEN))
        chain = TestChain.create(n_users=1, n_providers=1)
        self._chain_session = Session(
            rpc_url="http://127.0.0.1:8545",
            market_address=chain.deployment.market,
            network=None,
            devnet=None,
            home=ReefHome(home),
            w3=chain.w3,
            account=chain.users[0],
            account_note="test user",
        )

    def session(self) -> Session:
        return self._chain_session


def _console(home: Path) -> Any:
    """A debug enclave's console with a few lines, closed: its stream answers them and ends."""
    home.mkdir(parents=True, exist_ok=True)
    console = Console(home / "console.log", keep=5)
    for n in range(8):
        console.append(f"line {n} \u00e9")
    console.close()
    return console_app(console)


def _apps() -> dict[str, Callable[[Path], Any]]:
    """Each service's app, built in a fresh home when its test asks for it."""

    def attestation(home: Path, custom: bool = False) -> Any:
        authority = DevAuthority.load_or_create(ReefHome(home))
        attester = authority.attester(PCRS, clock_ms=wall_ms)
        if custom:
            return custom_attestation_app(attester)
        return attestation_app(attester, public_key=b"\x01" * 32)

    def verifier(home: Path) -> Any:
        authority = DevAuthority.load_or_create(ReefHome(home))
        key = Secp256k1PrivateKey(hashlib.sha256(b"reef schemathesis verifier").digest())
        return verifier_app(key, root=authority.root)

    def kms_public(_home: Path) -> Any:
        seed = RootSeed(hashlib.sha512(b"reef schemathesis root").digest(), 0)
        return public_app(KmsRoot(RootKeyring([seed])))

    return {
        "devnet": lambda _home: devnet_app(Devnet()),
        "verifier": verifier,
        "control plane": lambda _home: control_plane_app(_View()),
        "image store": lambda home: image_store_app(
            ImageStore(home / "images"), uploads=UploadPolicy.anyone(), max_bytes=1 << 20
        ),
        "kms public": kms_public,
        "kms scallop": _kms_scallop,
        "kms derive": lambda _home: derive_server_app(
            EnclaveSeeds.fixed(hashlib.sha512(b"reef schemathesis enclave").digest())
        ),
        "attestation": attestation,
        "custom attestation": lambda home: attestation(home, custom=True),
        "executor control": lambda home: _executor(home).control_app(),
        "executor gateway": lambda home: _executor(home).gateway_app(),
        "ivs": _ivs,
        "dashboard": _dashboard,
        "dev tee sealing": lambda _home: sealing_app(b"\x05" * 32, image_id(PCRS)),
        "dev tee console": _console,
    }


SERVICES = [
    "devnet",
    "verifier",
    "control plane",
    "image store",
    "kms public",
    "kms scallop",
    "kms derive",
    "attestation",
    "custom attestation",
    "executor control",
    "executor gateway",
    "ivs",
    "dashboard",
    "dev tee sealing",
    "dev tee console",
]

ONE_OPERATION = {"kms scallop"}
"""Services whose whole API is one operation (the root's Scallop listener: GET /derive)."""
PAGES_UNDESCRIBED = {"dashboard"}
"""Services that also serve HTML pages, which their schema leaves out (their API is /api/...)."""


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
@pytest.mark.parametrize("service", SERVICES)
def test_every_api_answers_what_its_schema_says(
    service: str, mode: GenerationMode, tmp_path: Path
) -> None:
    """Requests that follow the schema (positive) and that break it (negative): no 5xx, and
    every answer as documented."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", _apps()[service](tmp_path))
    operations = [result.ok() for result in schema.get_all_operations()]
    least = 1 if service in ONE_OPERATION else 2
    assert len(operations) >= least, f"the {service} publishes {len(operations)} operations"
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy(mode))
        def fuzz(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            fuzz()
        except Unsatisfiable:
            # An operation without parameters or body has nothing to break.
            if mode is GenerationMode.POSITIVE:
                raise


async def test_the_schemas_name_every_route(tmp_path: Path) -> None:
    """/openapi.json and /docs exist, and the schema lists each route the app serves."""
    for service, build in _apps().items():
        app = build(tmp_path / service)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://reef") as client:
            published = (await client.get("/openapi.json")).json()["paths"]
            assert (await client.get("/docs")).status_code == 200, service
        served = {
            route.path_format  # as OpenAPI spells it: /{rest}, not Starlette's /{rest:path}
            for route in app.routes
            if isinstance(route, Route)
            and route.path not in {"/openapi.json", "/docs"}
            and not route.path.startswith("/docs/")
            and not (service in PAGES_UNDESCRIBED and not route.path.startswith("/api/"))
        }
        assert served == set(published), service
