"""A fake of the control plane's enclave runner, for tests of the provider's decisions.

:class:`reef.market.ControlPlane` starts, replaces, renews and stops enclaves through an
:class:`~reef.market.EnclaveRunner`; this one runs nothing and remembers what it was asked, so a
test can read what the control plane decided (which jobs run, on which image, with what lease
and memory). Its enclaves outlive a control plane, as the local dev TEE's do when the provider
stops, so restarts can be tested against it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from reef.chain import JobId
from reef.errors import EnclaveError
from reef.market import FetchedImage, LaunchSpec, RunningEnclave

__all__ = ["FakeRunner"]


@dataclass
class FakeRunner:
    """An :class:`~reef.market.EnclaveRunner` that runs nothing.

    ``fail_launches`` launches fail first (as an app that does not start); each launch waits
    ``launch_delay`` seconds. ``launches`` lists (job id, image SHA-256) in order, ``leases`` the
    last renewal of each enclave, ``memory_mib`` what each asked for. ``states`` holds the
    ``/state`` names its enclaves made (one per image, init params and debug flag, as the dev
    TEE's) that :meth:`remove_state` has not removed.
    """

    enclaves: dict[str, RunningEnclave] = field(default_factory=dict)
    launches: list[tuple[JobId, str]] = field(default_factory=list)
    leases: dict[str, int] = field(default_factory=dict)
    memory_mib: dict[str, int] = field(default_factory=dict)
    states: set[str] = field(default_factory=set)
    fail_launches: int = 0
    launch_delay: float = 0.0
    _launched: int = 0

    async def launch(self, spec: LaunchSpec, image: FetchedImage, key: str) -> RunningEnclave:
        if self.launch_delay:
            await asyncio.sleep(self.launch_delay)
        if self.fail_launches:
            self.fail_launches -= 1
            raise EnclaveError("the enclave failed to start")
        self._launched += 1
        enclave_id = f"e{self._launched}"
        material = f"{image.sha256}:{spec.init_params.hex()}".encode()
        state = hashlib.sha256(material).hexdigest() + ("-debug" if spec.debug else "")
        self.states.add(state)
        enclave = RunningEnclave(
            enclave_id,
            spec.job_id,
            key,
            "running",
            {"attestation": f"http://x/{enclave_id}"},
            state_key=state,
        )
        self.enclaves[enclave_id] = enclave
        self.memory_mib[enclave_id] = spec.memory
        self.launches.append((spec.job_id, image.sha256))
        return enclave

    async def replace(
        self, enclave_id: str, spec: LaunchSpec, image: FetchedImage, key: str
    ) -> RunningEnclave:
        await self.stop(enclave_id)
        return await self.launch(spec, image, key)

    async def stop(self, enclave_id: str) -> None:
        self.enclaves.pop(enclave_id, None)
        self.memory_mib.pop(enclave_id, None)

    async def list(self) -> Sequence[RunningEnclave]:
        return list(self.enclaves.values())

    async def renew(self, enclave_id: str, until_s: int) -> None:
        self.leases[enclave_id] = until_s

    async def remove_state(self, state_key: str) -> bool:
        if any(e.state_key == state_key for e in self.enclaves.values()):
            raise EnclaveError(f"an enclave still runs with the /state {state_key}")
        if state_key not in self.states:
            return False
        self.states.discard(state_key)
        return True

    def of(self, job: JobId) -> Sequence[RunningEnclave]:
        """The enclaves running for ``job``."""
        return [e for e in self.enclaves.values() if e.job_id == job]

    def jobs(self) -> set[JobId]:
        """The jobs that have an enclave running."""
        return {e.job_id for e in self.enclaves.values()}

    def memory(self) -> int:
        """The memory (MiB) of every running enclave together."""
        return sum(self.memory_mib.values())
