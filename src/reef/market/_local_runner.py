"""The control plane's enclaves on reef's local dev TEE (:class:`reef.enclave.LocalBackend`).

Each launch stages the job's image and init params under the control plane's own directory, at
paths that name the job and the launch key (``<job id>--<key>.img``), and starts the enclave from
there. The backend records those source paths in each enclave's state, which other processes can
read, so a control plane that was killed (even between starting an enclave and noting its id)
finds on restart exactly which enclaves are its own and for which job: enclaves started from
anywhere else (``reef enclave run``, the KMS root) are never touched.

Images are hard-linked from the download cache when the filesystem allows it (no copy), and the
staged files of an enclave are removed when it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reef.enclave import EnclaveInfo, EnclaveSpec, LocalBackend
from reef.errors import EnclaveError, ReefError
from reef.market._control_plane import RunningEnclave
from reef.market._fetch import FetchedImage
from reef.market._job_state import LaunchSpec

__all__ = ["LocalRunner"]

_STAGED = re.compile(r"^(0x[0-9a-f]{64})--([0-9a-f]{32})\.img$")


class LocalRunner:
    """An :class:`~reef.market.EnclaveRunner` over a :class:`~reef.enclave.LocalBackend`.

    Args:
        backend: the local dev TEE.
        workdir: where launches are staged (the control plane's own directory).
    """

    def __init__(self, backend: LocalBackend, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _stage(self, spec: LaunchSpec, image: FetchedImage, key: str) -> EnclaveSpec:
        image_path = self.workdir / f"{spec.job_id}--{key}.img"
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
            init_path = self.workdir / f"{spec.job_id}--{key}.init.json"
            init_path.write_bytes(spec.init_params)
        return EnclaveSpec(
            image=image_path,
            init_params=init_path,
            debug=spec.debug,
            cpus=spec.vcpu,
            memory_mib=spec.memory,
        )

    def _running(self, info: EnclaveInfo, job_id: str, key: str) -> RunningEnclave:
        endpoints: dict[str, Any] = {
            "attestation": info.endpoints["attestation"],
            "attestation_secp256k1": info.endpoints["attestation_secp256k1"],
            "ports": {str(port): url for port, url in sorted(info.endpoints["ports"].items())},
            "logs": info.endpoints["logs"],
        }
        return RunningEnclave(
            enclave_id=info.id, job_id=job_id, key=key, state=info.state, endpoints=endpoints
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
        old = self._source(enclave_id)
        try:
            info = await self.backend.update(enclave_id, staged)
        except EnclaveError:
            # The old enclave is gone and the new one did not boot: leave nothing behind.
            with contextlib.suppress(ReefError):
                await self._remove(enclave_id)
            raise
        if old is not None and old != staged.image:
            self._unstage(old)
        return self._running(info, spec.job_id, key)

    async def stop(self, enclave_id: str) -> None:
        source = self._source(enclave_id)
        await self._remove(enclave_id)
        if source is not None:
            self._unstage(source)

    async def _remove(self, enclave_id: str) -> None:
        info = await self.backend.status(enclave_id)
        if info.state in ("starting", "running"):
            await self.backend.stop(enclave_id)
        await self.backend.remove(enclave_id)

    async def list(self) -> Sequence[RunningEnclave]:
        found: list[RunningEnclave] = []
        for info in await self.backend.list():
            source = self._source(info.id)
            if source is None:
                continue
            match = _STAGED.match(source.name)
            if match is None:
                continue
            found.append(self._running(info, match.group(1), match.group(2)))
        return found

    def _source(self, enclave_id: str) -> Path | None:
        """The staged image an enclave was started from, if it is one of ours.

        Read from the backend's state file (``spec.json``, ``source.image``), which is written
        before the enclave's processes start.
        """
        try:
            spec = json.loads((self.backend.home.enclaves / enclave_id / "spec.json").read_text())
            source = Path(str(spec["source"]["image"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if source.parent.resolve() != self.workdir.resolve():
            return None
        return source

    def _unstage(self, image_path: Path) -> None:
        image_path.unlink(missing_ok=True)
        image_path.with_suffix(".init.json").unlink(missing_ok=True)
