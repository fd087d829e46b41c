"""The conformance suite every enclave backend must pass (as trio ships its stream tests).

:func:`check_backend` drives a backend through the whole :class:`reef.enclave.EnclaveBackend`
contract with two images the caller built, and raises :class:`reef.errors.ConformanceError`
(an ``AssertionError``) at the first broken promise. The local dev TEE and
:class:`reef.testing.FakeBackend` run it in reef's own tests; a new backend (Nitro) runs it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from pathlib import Path

from reef.enclave import LIVE_STATES, EnclaveBackend, EnclaveInfo, EnclaveSpec
from reef.errors import ConformanceError, EnclaveError, ImageError, InputError
from reef.testing._clock import wall_ms

__all__ = ["check_backend"]

_UNKNOWN = "fffffffffff0"


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceError(message)


async def _raises_enclave_error(what: str, call: Awaitable[object]) -> None:
    try:
        await call
    except (EnclaveError, InputError):
        return
    raise ConformanceError(f"{what} of an unknown enclave did not raise EnclaveError")


async def _until_ended(backend: EnclaveBackend, enclave_id: str, limit_s: float) -> EnclaveInfo:
    deadline = time.monotonic() + limit_s
    while True:
        info = await backend.status(enclave_id)
        if info.state not in LIVE_STATES or time.monotonic() > deadline:
            return info
        await asyncio.sleep(0.1)


async def check_backend(
    backend: EnclaveBackend, image: Path, other_image: Path, *, lease_wait_s: float = 15.0
) -> None:
    """Check every promise of the interface; leaves no enclave of its own behind.

    ``image`` and ``other_image`` must be two different valid images whose apps keep running
    (e.g. examples/hello and a copy with another greeting), each declaring at least one port.
    ``lease_wait_s`` bounds the wait for a 1-second lease to stop its enclave.

    Raises:
        ConformanceError: the first promise the backend broke.
    """
    mine: list[str] = []
    try:
        await _check(backend, image, other_image, mine, lease_wait_s)
    finally:
        for enclave_id in mine:
            with contextlib.suppress(EnclaveError, InputError):
                await backend.stop(enclave_id)
            with contextlib.suppress(EnclaveError, InputError):
                await backend.remove(enclave_id)


async def _check(
    backend: EnclaveBackend, image: Path, other: Path, mine: list[str], lease_wait_s: float
) -> None:
    _expect(isinstance(backend, EnclaveBackend), "the backend lacks EnclaveBackend methods")
    before = {i.id for i in await backend.list()}

    # A bad image is refused before anything starts.
    try:
        await backend.start(EnclaveSpec(image=image.with_name("no-such-image.img")))
    except ImageError:
        pass
    else:
        raise ConformanceError("starting a missing image did not raise ImageError")
    _expect({i.id for i in await backend.list()} == before, "a refused start left an enclave")

    # start: running, measured by the backend's own recipe, labels kept, endpoints given.
    spec = EnclaveSpec(image=image, labels={"conformance": "1"})
    info = await backend.start(spec)
    mine.append(info.id)
    _expect(info.state in LIVE_STATES, f"a started enclave is {info.state}")
    _expect(
        info.image_id == backend.measure(spec).image_id,
        "the enclave's image id is not what measure() says it attests",
    )
    _expect(info.labels.get("conformance") == "1", "labels given to start() were not kept")
    _expect(bool(info.endpoints["attestation"]), "a started enclave has no attestation endpoint")
    _expect(bool(info.endpoints["ports"]), "the image's declared ports have no endpoints")
    _expect(info.endpoints["logs"] is None, "a production enclave exposes its console")
    status = await backend.status(info.id)
    _expect(status.id == info.id and status.image_id == info.image_id, "status() disagrees")
    _expect(info.id in {i.id for i in await backend.list()}, "list() misses a started enclave")
    try:
        await backend.logs(info.id)
    except EnclaveError:
        pass
    else:
        raise ConformanceError("logs() of a production enclave did not refuse (console private)")

    # remove() refuses a running enclave.
    try:
        await backend.remove(info.id)
    except EnclaveError:
        pass
    else:
        raise ConformanceError("remove() of a running enclave did not raise EnclaveError")

    # update: same id and endpoints, the new image's measurement, labels merged.
    new_spec = EnclaveSpec(image=other, labels={"updated": "yes"})
    updated = await backend.update(info.id, new_spec)
    _expect(updated.id == info.id, "update() changed the enclave's id")
    _expect(updated.state in LIVE_STATES, f"an updated enclave is {updated.state}")
    _expect(updated.image_id == backend.measure(new_spec).image_id, "update() kept the old image")
    _expect(updated.image_id != info.image_id, "the two images measure the same")
    _expect(
        updated.endpoints["ports"] == info.endpoints["ports"]
        and updated.endpoints["attestation"] == info.endpoints["attestation"],
        "update() moved the enclave's endpoints",
    )
    _expect(
        updated.labels.get("conformance") == "1" and updated.labels.get("updated") == "yes",
        "update() did not merge the labels",
    )

    # renew, then stop: stopped, still listed, then removed and unknown.
    await backend.renew(info.id, wall_ms() + 3_600_000)
    await backend.renew(info.id, None)
    stopped = await backend.stop(info.id)
    _expect(stopped.state == "stopped", f"a stopped enclave is {stopped.state}")
    _expect(
        any(i.id == info.id and i.state == "stopped" for i in await backend.list()),
        "list() does not show a stopped enclave as stopped",
    )
    await backend.remove(info.id)
    mine.remove(info.id)
    await _raises_enclave_error("status()", backend.status(info.id))

    # debug: another measurement, a readable console.
    debug_spec = EnclaveSpec(image=image, debug=True)
    debug = await backend.start(debug_spec)
    mine.append(debug.id)
    _expect(debug.debug, "a debug enclave does not say so")
    _expect(debug.image_id == backend.measure(debug_spec).image_id, "debug measurement differs")
    _expect(debug.image_id != info.image_id, "debug mode attests the production image id")
    _expect(isinstance(await backend.logs(debug.id), str), "logs() of a debug enclave failed")
    # aclose lets go of what the backend holds besides its enclaves: they keep running.
    await backend.aclose()
    await backend.aclose()
    _expect((await backend.status(debug.id)).state in LIVE_STATES, "aclose() stopped an enclave")

    # remove_state: the debug enclave's /state is its own, kept while it runs, removable after.
    _expect(bool(debug.state_key), "a started enclave names no /state (state_key)")
    _expect(debug.state_key != info.state_key, "a debug enclave shares the production /state")
    try:
        await backend.remove_state(debug.state_key)
    except EnclaveError:
        pass
    else:
        raise ConformanceError("remove_state() of a running enclave's /state did not refuse")
    await backend.stop(debug.id)
    _expect(await backend.remove_state(debug.state_key), "remove_state() found no /state")
    _expect(not await backend.remove_state(debug.state_key), "a removed /state is still there")

    # A lease that runs out unrenewed stops the enclave by itself.
    leased = await backend.start(EnclaveSpec(image=image, lease_until_ms=wall_ms() + 1000))
    mine.append(leased.id)
    ended = await _until_ended(backend, leased.id, lease_wait_s)
    _expect(ended.state == "stopped", f"an enclave past its lease is {ended.state}")
    _expect("lease" in (ended.reason or ""), f"the stop reason does not name the lease: {ended}")

    # Unknown ids.
    for name, call in (
        ("status()", backend.status(_UNKNOWN)),
        ("stop()", backend.stop(_UNKNOWN)),
        ("remove()", backend.remove(_UNKNOWN)),
        ("logs()", backend.logs(_UNKNOWN)),
        ("renew()", backend.renew(_UNKNOWN, None)),
    ):
        await _raises_enclave_error(name, call)
