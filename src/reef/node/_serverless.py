"""``reef up``'s serverless extension: the contracts, three executor enclaves and their gateways.

:class:`ServerlessExtension` (an :class:`~reef.node.UpExtension` named ``serverless``):

1. deploys the code contract and the Jobs contract on the devnet (paid in the devnet's token,
   trusting the network's attestation verifier key), or reuses the ones this home deployed;
2. builds the executor image (``examples/serverless-executor`` plus the pinned workerd binary,
   so the runtime is measured) and whitelists its image id on the Jobs contract;
3. starts N executor enclaves (labelled ``{"reef.role": "serverless"}``) that may reach the
   devnet's RPC port and nothing else of the host, and registers each through the verifier
   (:func:`reef.serverless._operator.register_enclave_executor`) owned by a dev account, which
   also funds its gas; executors this home registered earlier and that are gone are drained;
4. returns, for ``network.json``'s ``services["serverless"]``: the contracts, the chain id, the
   executor image id, each executor's address and its gateway URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from reef.attestation import load_verifier_key
from reef.chain import TokenClient
from reef.enclave import EnclaveInfo, EnclaveSpec
from reef.errors import ReefError, ServiceError
from reef.home import ReefHome
from reef.node._examples import _build_example
from reef.node._serve import until_up
from reef.node._up import UpContext, _EnclaveExtension
from reef.serverless import (
    JobsParams,
    ServerlessCodeClient,
    ServerlessJobsClient,
    ensure_workerd,
    register_enclave_executor,
)

__all__ = ["SERVERLESS_ROLE", "ServerlessExtension", "ServerlessSettings"]

log = logging.getLogger("reef.node.serverless")

SERVERLESS_ROLE = "serverless"
_GATEWAY_PORT = 8080
_CONTROL_PORT = 8081
# Dev accounts that own the executors (the provider uses 9; users start at 0).
_OPERATOR_ACCOUNTS = (6, 7, 8)
# What a saved deployment must be to be reused; 2: outputs sign the code and input they ran (an
# older Jobs contract would refuse every output of today's executors).
_STATE_VERSION = 2


@dataclass(frozen=True, kw_only=True)
class ServerlessSettings:
    """What the extension starts.

    Attributes:
        executors: how many executor enclaves (the Jobs contract selects 3 per job).
        stake: each executor's stake, in token base units.
        params: the Jobs contract's constants when it is deployed here.
    """

    executors: int = 3
    stake: int = 100 * 10**6
    params: JobsParams = field(default_factory=JobsParams)


_T = TypeVar("_T")


async def _all(work: Sequence[Coroutine[Any, Any, _T]]) -> list[_T]:
    """The results of ``work`` run together, in order; the first failure is raised once all
    have ended (none is cancelled half-way: an enclave started is one the extension stops)."""
    results = await asyncio.gather(*work, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast("list[_T]", results)


class ServerlessExtension(_EnclaveExtension):
    """Serverless functions on the local network (see the module docstring)."""

    ROLE = SERVERLESS_ROLE

    def __init__(self, settings: ServerlessSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or ServerlessSettings()

    async def start(self, ctx: UpContext) -> Mapping[str, Any]:
        self._ctx = ctx
        s = self.settings
        if s.executors > len(_OPERATOR_ACCOUNTS):
            raise ServiceError(f"reef up runs at most {len(_OPERATOR_ACCOUNTS)} executors")
        ctx.progress("deploying the serverless contracts")
        jobs, code = await asyncio.to_thread(self._contracts, ctx)
        ctx.progress("building the serverless executor image")
        image_path = await asyncio.to_thread(self._image, ctx.home)
        await self._stop_leftovers(ctx)
        ctx.progress(f"starting {s.executors} serverless executors")
        spec = EnclaveSpec(
            image=image_path,
            ports={_GATEWAY_PORT: 0, _CONTROL_PORT: 0},
            allow_host_ports=(ctx.rpc_port,),
        )
        # Side by side: each waits mostly on its enclave's boot and its registration's round
        # trips (the verifier, the chain); one after another, reef up waited for all of them.
        infos = await _all([self._start_enclave(ctx, spec) for _ in range(s.executors)])
        # The image id the enclaves attest, as the backend measured it at start (the reef
        # runtime is part of it, so it is read from the running enclaves, not recomputed).
        for image_id in dict.fromkeys(info.image_id for info in infos):
            if not await asyncio.to_thread(jobs.is_whitelisted, image_id):
                await asyncio.to_thread(jobs.whitelist_image, image_id)
        executors = await _all(
            [self._register(ctx, jobs, code, info, index) for index, info in enumerate(infos)]
        )
        await asyncio.to_thread(self._drain_gone, ctx, jobs, {e["address"] for e in executors})
        return {
            "chain_id": ctx.devnet.chain_id,
            "jobs_contract": jobs.address,
            "code_contract": code.address,
            "executor_image_id": executors[0]["image_id"] if executors else None,
            "gateways": [e["gateway"] for e in executors],
            "executors": executors,
        }

    async def _register(
        self,
        ctx: UpContext,
        jobs: ServerlessJobsClient,
        code: ServerlessCodeClient,
        info: EnclaveInfo,
        index: int,
    ) -> dict[str, Any]:
        owner = ctx.devnet.accounts[_OPERATOR_ACCOUNTS[index]].local_account
        control = info.endpoints["ports"][_CONTROL_PORT]
        gateway = info.endpoints["ports"][_GATEWAY_PORT]
        if ctx.info.verifier is None:
            raise ServiceError("reef up runs no attestation verifier")
        owned = jobs.with_account(owner)
        verifier = ctx.info.verifier
        record = await until_up(
            lambda: register_enclave_executor(
                jobs=owned,
                owner=owner,
                control_url=control,
                attestation_url=info.endpoints["attestation_secp256k1"],
                verifier_url=verifier,
                rpc_url=ctx.info.rpc_url,
                code_contract=code.address,
                stake=self.settings.stake,
            ),
            what=f"serverless executor {index + 1}",
            errors=ServiceError,
        )
        return {
            "address": record.enclave,
            "owner": record.owner,
            "enclave_id": info.id,
            "image_id": "0x" + info.image_id.hex(),
            "gateway": gateway,
            "control": control,
        }

    def _saved_contracts(self, ctx: UpContext) -> dict[str, Any] | None:
        """The contracts a previous ``reef up`` deployed on this devnet, when they are of
        today's version."""
        return self._reusable_state(ctx, ("jobs_contract", "code_contract"), version=_STATE_VERSION)

    def _contracts(self, ctx: UpContext) -> tuple[ServerlessJobsClient, ServerlessCodeClient]:
        """The home's serverless contracts on this devnet, deployed if they are not there."""
        w3 = ctx.devnet.web3()
        admin = ctx.devnet.accounts[0].local_account
        saved = self._saved_contracts(ctx)
        if saved is not None:
            return (
                ServerlessJobsClient(w3, saved["jobs_contract"], account=admin),
                ServerlessCodeClient(w3, saved["code_contract"], account=admin),
            )
        verifier = load_verifier_key(ctx.home.path("verifier", "secp256k1.sec"))
        token = ctx.info.deployment.token
        jobs = ServerlessJobsClient.deploy(
            w3,
            admin,
            token=token,
            verifier=verifier.public_key.checksum_address,
            params=self.settings.params,
        )
        code = ServerlessCodeClient.deploy(w3, admin)
        minter = TokenClient(w3, token, account=admin)
        for index in _OPERATOR_ACCOUNTS:
            address = ctx.devnet.accounts[index].address
            if minter.balance(address) < self.settings.stake:
                minter.mint(address, self.settings.stake * 10)
        self._save_state(
            ctx.home,
            {
                "version": _STATE_VERSION,
                "chain_id": ctx.devnet.chain_id,
                "jobs_contract": jobs.address,
                "code_contract": code.address,
            },
        )
        return jobs, code

    def _image(self, home: ReefHome) -> Path:
        """The executor image (the example app plus workerd), rebuilt when either changed."""
        return _build_example(
            home,
            "serverless-executor",
            {"workerd": ensure_workerd(home)},
            workdir=home.path("serverless", "executor-app"),
        )

    @staticmethod
    def _drain_gone(ctx: UpContext, jobs: ServerlessJobsClient, live: set[str]) -> None:
        """Executors our operators registered before whose enclaves are gone: drained, and
        deregistered when they have no active jobs, so no job selects a dead executor."""
        owners = {
            ctx.devnet.accounts[i].address: ctx.devnet.accounts[i].local_account
            for i in _OPERATOR_ACCOUNTS
        }
        for record in jobs.executors():
            if record.enclave in live or record.owner not in owners:
                continue
            owned = jobs.with_account(owners[record.owner])
            with contextlib.suppress(ReefError):
                if not record.draining:
                    owned.drain(record.enclave)
                if record.active_jobs == 0:
                    owned.deregister(record.enclave)
