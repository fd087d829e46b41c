"""An in-memory enclave backend for tests of what sits above the enclave layer.

Nothing runs: an enclave is a record with a state, endpoints on a reserved name and a console the
test writes to. Images are still loaded and measured for real (the dev TEE's recipe), so image
ids, bad-image errors and labels behave as on :class:`reef.enclave.LocalBackend`. It passes the
same conformance suite (:func:`reef.testing.check_backend`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

from reef.enclave import (
    LIVE_STATES,
    EnclaveEndpoints,
    EnclaveInfo,
    EnclaveSpec,
    Image,
    InitParams,
    Measurements,
    load_image,
)
from reef.errors import EnclaveError
from reef.testing._clock import wall_ms

__all__ = ["FakeBackend"]


@dataclass
class _Record:
    info: EnclaveInfo
    spec: EnclaveSpec
    lease_ms: int | None
    console: list[str] = field(default_factory=list)


class FakeBackend:
    """A :class:`reef.enclave.EnclaveBackend` that keeps enclaves in memory.

    Args:
        clock_ms: the time leases are checked against (Unix milliseconds).
        fail_starts: how many of the next starts fail with :class:`EnclaveError`, as a boot
            failure would.

    Test controls: :meth:`crash`, :meth:`write_console`; ``started`` lists every spec started;
    ``closed`` says whether :meth:`aclose` was called; ``states`` holds the ``/state`` names
    (:attr:`EnclaveInfo.state_key`) its enclaves made and :meth:`remove_state` did not remove.
    """

    def __init__(self, *, clock_ms: Callable[[], int] = wall_ms, fail_starts: int = 0) -> None:
        self.clock_ms = clock_ms
        self.fail_starts = fail_starts
        self.started: list[EnclaveSpec] = []
        self.closed = False
        self.states: set[str] = set()
        self._records: dict[str, _Record] = {}
        self._ids = itertools.count(1)

    # -- EnclaveBackend -----------------------------------------------------------------------

    def measure(self, spec: EnclaveSpec) -> Measurements:
        return _measure(load_image(spec.image), spec)

    async def start(self, spec: EnclaveSpec) -> EnclaveInfo:
        image = load_image(spec.image)
        if self.fail_starts:
            self.fail_starts -= 1
            raise EnclaveError("the fake enclave failed to boot (FakeBackend.fail_starts)")
        enclave_id = f"{next(self._ids):012x}"
        info = self._info(enclave_id, spec, image, labels=dict(spec.labels))
        self._records[enclave_id] = _Record(info, spec, spec.lease_until_ms)
        self.started.append(spec)
        return info

    async def update(self, enclave_id: str, spec: EnclaveSpec) -> EnclaveInfo:
        record = self._get(enclave_id)
        labels = {**record.info.labels, **spec.labels}
        info = self._info(
            enclave_id, spec, load_image(spec.image), labels=labels, endpoints=record.info.endpoints
        )
        self._records[enclave_id] = _Record(info, spec, spec.lease_until_ms)
        self.started.append(spec)
        return info

    async def status(self, enclave_id: str) -> EnclaveInfo:
        return self._get(enclave_id).info

    async def list(self) -> list[EnclaveInfo]:
        for enclave_id in list(self._records):
            self._get(enclave_id)  # leases
        return sorted((r.info for r in self._records.values()), key=lambda i: i.id)

    async def stop(self, enclave_id: str) -> EnclaveInfo:
        record = self._get(enclave_id)
        if record.info.state in LIVE_STATES:
            record.info = replace(record.info, state="stopped", reason="stopped")
        return record.info

    async def remove(self, enclave_id: str) -> None:
        record = self._get(enclave_id)
        if record.info.state in LIVE_STATES:
            raise EnclaveError(f"enclave {enclave_id} is {record.info.state}", hint="stop it first")
        del self._records[enclave_id]

    async def logs(self, enclave_id: str) -> str:
        record = self._get(enclave_id)
        if not record.info.debug:
            raise EnclaveError(f"enclave {enclave_id} is not in debug mode: its console is private")
        return "".join(line + "\n" for line in record.console)

    async def follow(self, enclave_id: str, *, poll: float = 0.1) -> AsyncIterator[str]:
        await self.logs(enclave_id)
        sent = 0
        while True:
            record = self._get(enclave_id)
            for line in record.console[sent:]:
                yield line
            sent = len(record.console)
            if record.info.state not in LIVE_STATES:
                return
            await asyncio.sleep(poll)

    async def renew(self, enclave_id: str, until_ms: int | None) -> None:
        self._get(enclave_id).lease_ms = until_ms

    async def remove_state(self, state_key: str) -> bool:
        for record in self._records.values():
            if record.info.state_key == state_key:
                self._get(record.info.id)  # leases
                if record.info.state in LIVE_STATES:
                    raise EnclaveError(
                        f"enclave {record.info.id} still runs with the /state {state_key}",
                        hint="stop it first",
                    )
        if state_key not in self.states:
            return False
        self.states.discard(state_key)
        return True

    async def aclose(self) -> None:
        """Nothing to let go of besides the enclaves, which stay (as a closed backend's do)."""
        self.closed = True

    # -- test controls ------------------------------------------------------------------------

    def crash(self, enclave_id: str, exit_code: int = 1) -> None:
        """The app exits with ``exit_code``, as a crash would be recorded."""
        record = self._get(enclave_id)
        record.info = replace(
            record.info,
            state="crashed",
            exit_code=exit_code,
            reason=f"the app exited with code {exit_code}",
        )

    def write_console(self, enclave_id: str, line: str) -> None:
        """The app prints ``line`` (readable through ``logs`` when the enclave is in debug)."""
        self._get(enclave_id).console.append(line)

    # -- internals ----------------------------------------------------------------------------

    def _get(self, enclave_id: str) -> _Record:
        record = self._records.get(enclave_id)
        if record is None:
            raise EnclaveError(f"no enclave {enclave_id}", hint="FakeBackend.list() shows them")
        lease = record.lease_ms
        if record.info.state in LIVE_STATES and lease is not None and self.clock_ms() >= lease:
            record.info = replace(
                record.info, state="stopped", reason=f"its lease ran out at {lease // 1000}"
            )
        return record

    def _info(
        self,
        enclave_id: str,
        spec: EnclaveSpec,
        image: Image,
        *,
        labels: dict[str, str],
        endpoints: EnclaveEndpoints | None = None,
    ) -> EnclaveInfo:
        manifest = image.manifest
        measurements = _measure(image, spec)
        # As the dev TEE names it: the image id before debug zeroes PCR0-2, marked for debug.
        state_key = _measure(image, replace(spec, debug=False)).image_id.hex()
        state_key += "-debug" if spec.debug else ""
        self.states.add(state_key)
        base = f"http://fake-{enclave_id}.invalid"
        if endpoints is None:
            endpoints = EnclaveEndpoints(
                attestation=f"{base}:1300/attestation/raw",
                attestation_secp256k1=f"{base}:1301/attestation/raw",
                ports={port: f"{base}:{port}" for port in manifest.ports},
                logs=f"{base}/logs/stream" if spec.debug else None,
            )
        return EnclaveInfo(
            id=enclave_id,
            name=manifest.name,
            state="running",
            exit_code=None,
            reason=None,
            image_id=measurements.image_id,
            pcrs=dict(measurements.pcrs),
            debug=spec.debug,
            endpoints=endpoints,
            cpus=spec.cpus or manifest.vcpus,
            memory_mib=spec.memory_mib or manifest.memory_mib,
            network="fake",
            sandbox="fake",
            created_ms=wall_ms(),
            labels=labels,
            image_path=spec.image,
            init_params_path=spec.init_params,
            state_key=state_key,
        )


def _measure(image: Image, spec: EnclaveSpec) -> Measurements:
    """What LocalBackend's enclave of ``spec`` attests (:meth:`Image.attested`)."""
    params = InitParams.read(spec.init_params) if spec.init_params is not None else None
    return image.attested(params, debug=spec.debug)
