"""The control plane's enclaves on any enclave backend (:class:`reef.enclave.EnclaveBackend`:
the local dev TEE, a fake in tests, later Nitro hosts).

Each launch stages the job's image and init params under the control plane's own directory
(``<job id>--<key>.img``) and starts the enclave from there with labels that name this runner
(its directory and, when given, the provider's address and the market), the job and the launch
key. The backend keeps labels with each enclave's state, which other processes can read, so a
control plane that was killed (even between starting an enclave and noting its id) finds on
restart exactly which enclaves are its own and for which job: enclaves started by anyone else
(``reef enclave run``, the KMS root, another control plane) carry other labels or none and are
never touched.

Images are hard-linked from the download cache when the filesystem allows it (no copy), and the
staged files of an enclave are removed when it is stopped. An image's ``/state``, which outlives
its enclaves, is removed when the control plane asks (no job wants it any more), unless an
enclave this runner did not start uses it: the KMS root's sealed seed, say, must never go because
a tenant ran the same image.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reef.chain import JobId
from reef.enclave import LIVE_STATES, EnclaveBackend, EnclaveInfo, EnclaveSpec
from reef.errors import EnclaveError, ReefError
from reef.market._control_plane import RunningEnclave
from reef.market._fetch import FetchedImage
from reef.market._job_state import LaunchSpec, job_user_data

__all__ = ["BackendRunner"]

# The labels this runner puts on its enclaves.
_RUNNER_LABEL = "reef.runner"
_PROVIDER_LABEL = "reef.provider"
_JOB_LABEL = "reef.job"
_MARKET_LABEL = "reef.market"
_KEY_LABEL = "reef.launch-key"
_TAIL = 20  # console lines kept of an ended debug enclave
_JOB_ID = re.compile(r"0x[0-9a-f]{64}")
_KEY = re.compile(r"[0-9a-f]{32}")


class BackendRunner:
    """An :class:`~reef.market.EnclaveRunner` over any :class:`~reef.enclave.EnclaveBackend`.

    Args:
        backend: where enclaves run (the local dev TEE in ``reef up``).
        workdir: where launches are staged (the control plane's own directory).
        provider: the provider's address; when given, only enclaves labelled with it are this
            runner's.

    :meth:`aclose` closes the backend (its spare supervisor, say); the enclaves keep running.
    """

    def __init__(
        self, backend: EnclaveBackend, workdir: Path, *, provider: str | None = None
    ) -> None:
        self.backend = backend
        self.workdir = workdir
        self.provider = provider
        self._market: tuple[int, str] | None = None
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._runner = str(workdir.resolve())

    def attest_jobs(self, *, chain_id: int, market: str) -> None:
        """Have each enclave launched from now on attest its job of ``market`` on chain
        ``chain_id`` (:func:`~reef.market.job_user_data` as its documents' ``user_data``), so
        that no other enclave can be passed off as the job's (a provider's does at start)."""
        self._market = (chain_id, market)

    def _staged(self, job_id: str, key: str) -> Path:
        return self.workdir / f"{job_id}--{key}.img"

    def _market_label(self) -> str | None:
        return None if self._market is None else f"{self._market[0]}:{self._market[1].lower()}"

    def _labels(self, job_id: str, key: str) -> dict[str, str]:
        labels = {_RUNNER_LABEL: self._runner, _JOB_LABEL: job_id, _KEY_LABEL: key}
        if self.provider is not None:
            labels[_PROVIDER_LABEL] = self.provider
        market = self._market_label()
        if market is not None:
            labels[_MARKET_LABEL] = market
        return labels

    def _ours(self, info: EnclaveInfo) -> tuple[JobId, str] | None:
        """The job id and launch key of one of this runner's enclaves; None for any other.

        A job id names a job of one market only: an enclave labelled with another market (the
        provider was restarted on a second deployment from the same home) belongs to that
        market's job, which may still be paying, and is never this runner's to stop. An enclave
        with no market label was launched before runners labelled one, and stays adopted; a
        runner told no market (:meth:`attest_jobs`: a reader of a provider's enclaves) reads
        every market's."""
        labels = info.labels
        market, mine = labels.get(_MARKET_LABEL), self._market_label()
        if (
            labels.get(_RUNNER_LABEL) != self._runner
            or labels.get(_PROVIDER_LABEL) != self.provider
            or (market is not None and mine is not None and market != mine)
        ):
            return None
        job_id, key = labels.get(_JOB_LABEL, ""), labels.get(_KEY_LABEL, "")
        if not (_JOB_ID.fullmatch(job_id) and _KEY.fullmatch(key)):
            return None
        return JobId(job_id), key  # the pattern admits only a JobId's own spelling

    def _stage(self, spec: LaunchSpec, image: FetchedImage, key: str) -> EnclaveSpec:
        image_path = self._staged(spec.job_id, key)
        if not image_path.exists():
            tmp = image_path.with_suffix(".tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(image.path, tmp)
            except OSError:
                shutil.copyfile(image.path, tmp)
            os.replace(tmp, image_path)
        init_path: Path | None = None
        if spec.init_params:
            init_path = image_path.with_suffix(".init.json")
            init_path.write_bytes(spec.init_params)
        return EnclaveSpec(
            image=image_path,
            init_params=init_path,
            debug=spec.debug,
            cpus=spec.vcpu,
            memory_mib=spec.memory,
            labels=self._labels(spec.job_id, key),
            user_data=b"" if self._market is None else job_user_data(*self._market, spec.job_id),
        )

    def _running(
        self, info: EnclaveInfo, job_id: JobId, key: str, console: tuple[str, ...] = ()
    ) -> RunningEnclave:
        endpoints: dict[str, Any] = {
            "attestation": info.endpoints["attestation"],
            "attestation_secp256k1": info.endpoints["attestation_secp256k1"],
            "ports": {str(port): url for port, url in sorted(info.endpoints["ports"].items())},
            "logs": info.endpoints["logs"],
        }
        return RunningEnclave(
            enclave_id=info.id,
            job_id=job_id,
            key=key,
            state=info.state,
            endpoints=endpoints,
            exit_code=info.exit_code,
            reason=info.reason,
            console=console,
            state_key=info.state_key,
        )

    async def launch(self, spec: LaunchSpec, image: FetchedImage, key: str) -> RunningEnclave:
        staged = await asyncio.to_thread(self._stage, spec, image, key)
        info = await self.backend.start(staged)
        return self._running(info, spec.job_id, key)

    async def replace(
        self, enclave_id: str, spec: LaunchSpec, image: FetchedImage, key: str
    ) -> RunningEnclave:
        """Update in place: the enclave keeps its id and host ports (the user's endpoint)."""
        staged = await asyncio.to_thread(self._stage, spec, image, key)
        old = self._ours(await self.backend.status(enclave_id))
        try:
            info = await self.backend.update(enclave_id, staged)
        except EnclaveError:
            # The old enclave is gone and the new one did not boot: leave nothing behind.
            with contextlib.suppress(ReefError):
                await self._remove(await self.backend.status(enclave_id))
            raise
        if old is not None and self._staged(*old) != staged.image:
            self._unstage(self._staged(*old))
        return self._running(info, spec.job_id, key)

    async def renew(self, enclave_id: str, until_s: int) -> None:
        await self.backend.renew(enclave_id, until_s * 1000)

    async def stop(self, enclave_id: str) -> None:
        info = await self.backend.status(enclave_id)
        await self._remove(info)
        ours = self._ours(info)
        if ours is not None:
            self._unstage(self._staged(*ours))

    async def remove_state(self, state_key: str) -> bool:
        """Delete the ``/state`` ``state_key`` through the backend, unless an enclave that is
        not this runner's (running or not: the KMS root between two ``reef up``, say) has it.
        Returns whether it was removed.

        Raises:
            ReefError: an enclave runs with it, or the backend cannot remove it.
        """
        for info in await self.backend.list():
            if info.state_key == state_key and self._ours(info) is None:
                return False
        return await self.backend.remove_state(state_key)

    async def _remove(self, info: EnclaveInfo) -> None:
        if info.state in LIVE_STATES:
            await self.backend.stop(info.id)
        await self.backend.remove(info.id)

    async def list(self) -> Sequence[RunningEnclave]:
        found: list[RunningEnclave] = []
        for info in await self.backend.list():
            ours = self._ours(info)
            if ours is not None:
                console: tuple[str, ...] = ()
                if info.debug and info.state not in LIVE_STATES:
                    # Read before the control plane removes it: why a debug app died.
                    with contextlib.suppress(ReefError):
                        console = tuple((await self.backend.logs(info.id)).splitlines()[-_TAIL:])
                found.append(self._running(info, *ours, console=console))
        return found

    async def aclose(self) -> None:
        """Close the backend: it lets go of what it holds besides the enclaves, which stay."""
        await self.backend.aclose()

    def _unstage(self, image_path: Path) -> None:
        image_path.unlink(missing_ok=True)
        image_path.with_suffix(".init.json").unlink(missing_ok=True)
