"""The local backend: run enclave images as dev-TEE enclaves on this machine.

:class:`LocalBackend` is what ``reef enclave ...`` and the market's control plane drive. It
validates an image and its init params *before* anything starts (a bad image is a clear error
and leaves nothing running), extracts the image under ``$REEF_HOME/enclaves/<id>``, picks host
ports, and starts one detached supervisor process per enclave
(:mod:`reef.enclave.local._supervisor`), which outlives the caller until the enclave is stopped.
State lives in files (``state.json`` per enclave), so any process can list, inspect and stop
enclaves that another one started.

One module (about 1050 lines): the backend's one job, the host side of every enclave (plan,
stage, start a supervisor, read and change its state files, stop, remove), is the
EnclaveBackend interface, method by method.
"""

# ruff: noqa: S603, S607  (runs the supervisor and `ip` with argument lists, never a shell)
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from reef._clock import wall_clock_ms
from reef.enclave._backend import (
    EnclaveInfo,
    EnclaveSpec,
    EnclaveState,
)
from reef.enclave._image import Image, load_image
from reef.enclave._init_params import InitParams
from reef.enclave._manifest import MIN_MEMORY_MIB
from reef.enclave._measure import Measurements, runtime_measurement
from reef.enclave.local._firewall import Firewall
from reef.enclave.local._lease import LEASE_FILE, write_lease
from reef.enclave.local._limits import Limits
from reef.enclave.local._network import HOST_MODE_WARNING, NetworkMode, choose_network, free_port
from reef.enclave.local._plan import LaunchPlan, SandboxKind
from reef.enclave.local._procs import alive, proc_start
from reef.enclave.local._requirements import check_host, missing_summary
from reef.enclave.local._sandbox import (
    SECRET_FILES,
    python_runtime_paths,
    resolve_command,
)
from reef.enclave.local._state_volume import release_if_unused, remove_volume
from reef.enclave.local._trusted_base import MAX_CONSOLE_FILE_BYTES, ROTATED_SUFFIX
from reef.errors import EnclaveError, ImageError, InputError, MisuseError, ReefError
from reef.home import read_json

if TYPE_CHECKING:
    from reef.attestation import DevAuthority
    from reef.home import ReefHome
    from reef.kms import KmsWiring

__all__ = ["INSECURE_WARNING", "NO_SANDBOX_WARNING", "LocalBackend"]

NO_SANDBOX_WARNING = (
    "WARNING: the app runs WITHOUT a sandbox (it needs bubblewrap, setpriv, user namespaces and "
    "libseccomp) and can read and write everything your user can."
)
INSECURE_WARNING = (
    "INSECURE: this enclave runs without the dev TEE's full isolation (--insecure); its app may "
    "reach the host and other enclaves. Missing here: "
)
_READY_TIMEOUT_S = 60.0
# A supervisor records itself within milliseconds of being handed a launch; this long after the
# last write, a launch whose launcher is gone has not been handed over and never will be.
_HANDOFF_S = 5.0
_STOP_TIMEOUT_S = 15.0
_MAX_LABEL_KEY = 256
_MAX_LABEL_VALUE = 4096


async def _read_ready(fd: int) -> bytes:
    """One line from the supervisor's readiness pipe (b"" on EOF; wrap it in a timeout).

    Read by the event loop, not in a worker thread: a burst of launches would otherwise hold
    every thread of the loop's default pool for as long as their enclaves boot, and stall
    everything else the program runs in threads (the control plane's chain polling, say).
    """
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    data = bytearray()
    done = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        data.extend(chunk)
        if (not chunk or data.endswith(b"\n")) and not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return bytes(data)


class LocalBackend:
    """Runs enclaves on this machine in the dev TEE.

    Args:
        home: the reef home; enclaves live under ``home.enclaves``.
        authority: the dev TEE authority; it must be ``home``'s (the supervisors load it from
            there), and is created if it does not exist yet.
        kms: where enclaves get their KMS seeds; without it they have no derive server and
            cannot open secret init params.
        network: default network mode for specs that say ``"auto"``.
        insecure: start enclaves even when this host cannot isolate them (no root, no
            bubblewrap, pasta, nftables, user namespaces or libseccomp); every enclave's
            warnings then say what is missing. Without it such a host is refused with the
            install command. Host networking (``network="host"``) also needs it.
        max_booting: how many enclaves boot at once (their supervisors load and start the
            trusted base), and how many are prepared and staged at once; more wait their turn,
            in order. Two per CPU by default: booting is CPU work,
            and a burst of launches that all boot at once shares the CPUs until every one of
            them is ready at the same late moment, where taking turns makes the first ready at
            once and each next one soon after.
        spare: keep one supervisor loaded ahead (from the first :meth:`list` or launch, and
            again after each launch that used it), so that a launch skips loading the trusted
            base (most of a boot's CPU). For a long-lived program that launches many enclaves (a
            provider, whose start lists its enclaves, so that even its first launch has one);
            :meth:`aclose` lets it go. A spare whose reef runtime changed on disk since it
            loaded is never used: an enclave runs the code its PCR1 measures.
    """

    def __init__(
        self,
        home: ReefHome,
        *,
        authority: DevAuthority | None = None,
        kms: KmsWiring | None = None,
        network: Literal["auto", "netns", "host"] = "auto",
        insecure: bool = False,
        max_booting: int | None = None,
        spare: bool = False,
    ) -> None:
        self.home = home
        self.kms = kms
        self.network = network
        self.insecure = insecure
        self._authority = authority
        if max_booting is not None and max_booting < 1:
            raise MisuseError("max_booting must be at least 1")
        self._max_booting = max_booting or 2 * len(os.sched_getaffinity(0))
        # Made in the loop that first starts an enclave (a semaphore belongs to one loop): the
        # turns to prepare and stage a launch, then to boot it (see _start).
        self._turns: tuple[asyncio.Semaphore, asyncio.Semaphore] | None = None
        self._spare_wanted = spare
        self._spare: _Spare | None = None
        self._refill: asyncio.Task[None] | None = None
        # Host ports picked for launches still under way (by enclave id): nothing is bound to
        # them until pasta starts, so the kernel may offer them again to the next launch of a
        # burst. Launches are prepared in threads, hence the lock.
        self._picked: dict[str, set[int]] = {}
        self._picked_lock = threading.Lock()

    async def wait_spare(self) -> None:
        """Return once the spare supervisor being loaded, if any, is loaded (or failed to)."""
        if self._refill is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._refill)

    async def aclose(self) -> None:
        """Let go of the spare supervisor, if any (it exits); enclaves keep running."""
        self._spare_wanted = False
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refill
            self._refill = None
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()

    # -- paths and state ---------------------------------------------------------------------

    def _dir(self, enclave_id: str) -> Path:
        if not enclave_id or not all(c in "0123456789abcdef" for c in enclave_id):
            raise InputError(f"{enclave_id!r} is not an enclave id", hint="see `reef enclave ps`")
        return self.home.enclaves / enclave_id

    def _state(self, enclave_id: str) -> dict[str, Any]:
        return self._read(enclave_id, "state.json")

    def _read(self, enclave_id: str, name: str) -> dict[str, Any]:
        """One of the enclave's JSON records (``spec.json``, ``state.json``)."""
        data: dict[str, Any] = read_json(
            self._dir(enclave_id) / name,
            missing=EnclaveError(
                f"no enclave {enclave_id}", hint="`reef enclave ps` lists local enclaves"
            ),
            unreadable=f"the state of enclave {enclave_id} is unreadable",
        )
        return data

    def _plan(self, enclave_id: str) -> LaunchPlan:
        return LaunchPlan.from_json(self._read(enclave_id, "spec.json"))

    def _info(self, enclave_id: str) -> EnclaveInfo:
        state = self._state(enclave_id)
        plan = self._plan(enclave_id)
        status: EnclaveState = state["state"]
        reason = state.get("reason")
        exit_code = state.get("exit_code")
        pid = state.get("supervisor_pid")
        if pid is None and status == "starting":
            # No supervisor has recorded itself yet: it may be about to, or never will.
            why = _unclaimed(self._dir(enclave_id) / "state.json", state, plan.created_ms)
            if why is not None:
                status, reason = "crashed", why
        elif status in ("starting", "running") and not alive(pid, state.get("supervisor_start")):
            # The supervisor died without recording an end: its enclave is gone (the sandbox
            # dies with it), but nobody cleaned up; `stop` does.
            status, reason = "crashed", "the enclave's supervisor died"
        return EnclaveInfo(
            id=enclave_id,
            name=plan.name,
            state=status,
            exit_code=exit_code,
            reason=reason,
            image_id=plan.image_id,
            pcrs=plan.pcrs,
            debug=plan.debug,
            endpoints=plan.endpoints,
            cpus=plan.cpus,
            memory_mib=plan.memory_mib,
            network=plan.network,
            sandbox=plan.sandbox,
            created_ms=plan.created_ms,
            public_keys={k: bytes.fromhex(v) for k, v in state.get("public_keys", {}).items()},
            warnings=tuple(state.get("warnings", plan.warnings)),
            labels=dict(plan.labels),
            image_path=plan.source_image if str(plan.source_image) != "." else None,
            init_params_path=plan.source_init_params,
            state_key=plan.state_key,
        )

    # -- start -------------------------------------------------------------------------------

    def _prepare(
        self,
        spec: EnclaveSpec,
        enclave_id: str,
        *,
        keep: LaunchPlan | None = None,
    ) -> tuple[LaunchPlan, Image]:
        """Validate everything and plan the enclave; nothing is written or started here.

        ``keep`` is the plan of the enclave this one replaces: its host ports and labels stay.
        """
        image, params, measurements = _measured(spec)
        # Debug enclaves all attest zero PCRs; their state stays apart from each other's and
        # from the production enclaves' of the same image.
        state_key = measurements.image_id.hex() + ("-debug" if spec.debug else "")
        if spec.debug:
            measurements = measurements.as_debug()
        manifest = image.manifest
        if params is not None:
            if params.has_secrets and spec.debug:
                raise EnclaveError(
                    "secret init params cannot be given to a debug enclave",
                    hint="as on Oyster: a debug enclave can be inspected, so it gets no secrets",
                )
            if params.has_secrets and self.kms is None:
                raise EnclaveError(
                    "the init params carry secrets, which only open with the enclave's KMS key",
                    hint="run the enclave with a KMS (LocalBackend(kms=...), `reef up`)",
                )
        cpus = spec.cpus if spec.cpus is not None else manifest.vcpus
        memory = spec.memory_mib if spec.memory_mib is not None else manifest.memory_mib
        available = len(os.sched_getaffinity(0))
        if not 1 <= cpus <= available:
            raise InputError(
                f"{cpus} vCPUs asked, this machine offers {available}",
                hint=f"use --cpus 1..{available}",
            )
        if memory < MIN_MEMORY_MIB:
            raise InputError(f"memory must be at least {MIN_MEMORY_MIB} MiB, got {memory}")

        want = spec.network if spec.network != "auto" else self.network
        requirements = {r.name: r for r in check_host()}
        missing = missing_summary(list(requirements.values()))
        warnings: list[str] = []
        if missing is not None or want == "host":
            what, fix = missing or ("nothing; host networking was asked for", "")
            if not self.insecure:
                raise EnclaveError(
                    f"this host cannot isolate a local enclave: missing {what}"
                    if missing
                    else "host networking (network='host') gives the app the host's network",
                    hint=(f"install it: {fix}; " if missing else "")
                    + "or pass --insecure to run without that isolation (every output says so)",
                )
            warnings.append(INSECURE_WARNING + what)
        mode, why = choose_network(want=None if want == "auto" else want)
        if mode == "host":
            warnings.append(f"{HOST_MODE_WARNING} ({why})")
        sandbox_parts = ("bwrap", "setpriv", "user namespaces", "libseccomp")
        sandbox: SandboxKind = "bwrap" if all(requirements[n].ok for n in sandbox_parts) else "none"
        if sandbox == "none":
            warnings.append(NO_SANDBOX_WARNING)
        firewall = mode == "netns" and requirements["nft"].ok
        for port in spec.allow_host_ports:
            if not 0 < port < 65536:
                raise InputError(f"allowed host port {port} is not a TCP port (1-65535)")
        if spec.state_mib < 16:
            raise InputError(f"the enclave's /state must be at least 16 MiB, got {spec.state_mib}")
        if spec.tmp_mib < 1:
            raise InputError(f"the enclave's /tmp must be at least 1 MiB, got {spec.tmp_mib}")
        if spec.user_data:
            from reef.attestation import MAX_ATTESTATION_FIELD

            if len(spec.user_data) > MAX_ATTESTATION_FIELD:
                raise InputError(
                    f"the enclave's attestation user data is {len(spec.user_data)} bytes; an "
                    f"attestation document carries at most {MAX_ATTESTATION_FIELD}"
                )

        ports, attestation_ports, logs_port = self._ports(
            manifest.ports, spec.ports, mode, keep, owner=enclave_id
        )
        labels = {**(keep.labels if keep else {}), **_check_labels(spec.labels)}
        plan = LaunchPlan(
            id=enclave_id,
            name=manifest.name,
            command=tuple(manifest.command),
            env=dict(manifest.env),
            debug=spec.debug,
            cpus=cpus,
            memory_mib=memory,
            network=mode,
            sandbox=sandbox,
            firewall=firewall,
            allow_host_ports=tuple(sorted(set(spec.allow_host_ports))),
            tmp_bytes=spec.tmp_mib * 1024 * 1024,
            state_volume=sandbox == "bwrap" and requirements["loop devices"].ok,
            state_mib=spec.state_mib,
            state_key=state_key,
            pcrs=dict(measurements.pcrs),
            image_id=measurements.image_id,
            init_params_digest=params.digest if params else None,
            warnings=tuple(warnings),
            ports=ports,
            attestation_ports=attestation_ports,
            logs_port=logs_port,
            home=self.home.root,
            kms=self.kms.to_json() if self.kms is not None else None,
            labels=dict(sorted(labels.items())),
            user_data=bytes(spec.user_data),
            source_image=spec.image.resolve(),
            source_init_params=spec.init_params.resolve() if spec.init_params else None,
        )
        return plan, image

    def _ports(
        self,
        declared: tuple[int, ...],
        requested: Mapping[int, int],
        mode: NetworkMode,
        keep: LaunchPlan | None,
        *,
        owner: str = "",
    ) -> tuple[dict[int, int], dict[int, int], int]:
        """Host ports: the app's (enclave port -> host port), the attestation servers', the
        console's; an enclave that replaces another keeps its ports. The ports picked are
        ``owner``'s (the launching enclave's id) until :meth:`_release_ports`."""
        for inner in requested:
            if inner not in declared:
                raise InputError(
                    f"port {inner} is not declared by the image",
                    hint=f"the image's reef.toml declares {list(declared) or 'no ports'}",
                )
        previous = dict(keep.ports) if keep else {}
        mapping: dict[int, int] = {}
        for inner in declared:
            host = requested.get(inner, 0) or previous.get(inner, 0)
            if requested.get(inner) and keep is None and not _port_free(requested[inner]):
                raise InputError(
                    f"host port {requested[inner]} is already in use",
                    hint=f"choose another with --port HOST:{inner}, or --port {inner} for any",
                )
            if mode == "host":
                if host not in (0, inner):
                    raise InputError(
                        f"--port {host}:{inner}: without a network namespace, the app binds its "
                        "ports on the host itself, so host and enclave port must be equal"
                    )
                host = inner
            mapping[inner] = host  # 0: any free port, picked below
        old_att = dict(keep.attestation_ports) if keep else {}
        attestation = {port: old_att.get(port, 0) for port in (1300, 1301)}
        logs = keep.logs_port if keep else 0
        # The kernel may hand the same free port to two probes in a row: each port picked
        # avoids those this enclave already has and those other launches under way picked, so
        # only a user's own choice can collide.
        taken = {port for port in (*mapping.values(), *attestation.values(), logs) if port}

        def pick() -> int:
            with self._picked_lock:
                mine = self._picked.setdefault(owner, set())
                while (port := free_port()) in taken or any(
                    port in others for others in self._picked.values()
                ):
                    pass
                taken.add(port)
                mine.add(port)
                return port

        mapping = {inner: host or pick() for inner, host in mapping.items()}
        attestation = {inner: host or pick() for inner, host in attestation.items()}
        logs = logs or pick()
        if len(set(mapping.values()) | set(attestation.values()) | {logs}) != len(mapping) + 3:
            raise InputError("two of the enclave's ports map to the same host port")
        return mapping, attestation, logs

    async def start(self, spec: EnclaveSpec) -> EnclaveInfo:
        """Start an enclave; returns once its trusted base answers and its app is started.

        Raises:
            ImageError: the image or init params are invalid (nothing was started).
            InputError: bad limits or ports.
            EnclaveError: the enclave failed to boot (it was cleaned up).
        """
        enclave_id = secrets.token_hex(6)
        return await self._start(spec, enclave_id, keep=None)

    async def _start(
        self, spec: EnclaveSpec, enclave_id: str, *, keep: LaunchPlan | None
    ) -> EnclaveInfo:
        if self._turns is None:
            self._turns = (
                asyncio.Semaphore(self._max_booting),
                asyncio.Semaphore(self._max_booting),
            )
        preparing, booting = self._turns
        # Launches take turns, in the order they came, to be prepared and staged too, not only to
        # boot: all of a burst in the thread pool at once would queue the first launch's staging
        # behind every other's preparation, and no enclave would boot before all were prepared.
        # Those later in line are prepared while the first ones boot.
        try:
            async with preparing:
                run_dir = await self._prepared(spec, enclave_id, keep=keep)
            async with booting:
                return await self._launch(run_dir, enclave_id)
        finally:
            self._release_ports(enclave_id)

    def _release_ports(self, owner: str) -> None:
        """The ports ``owner``'s launch picked are bound (or its launch failed): others may
        be offered them again."""
        with self._picked_lock:
            self._picked.pop(owner, None)

    async def _prepared(
        self, spec: EnclaveSpec, enclave_id: str, *, keep: LaunchPlan | None
    ) -> Path:
        """Plan, check and stage a launch; its run directory."""
        plan, image = await asyncio.to_thread(self._prepare, spec, enclave_id, keep=keep)
        if self._authority is not None:
            from reef.attestation import TrustedRoot

            if self._authority.root != TrustedRoot.dev(self.home):
                raise MisuseError(
                    "the DevAuthority given is not the one of this reef home",
                    hint="pass DevAuthority.load_or_create(home) for the same home",
                )
        else:
            from reef.attestation import DevAuthority

            await asyncio.to_thread(DevAuthority.load_or_create, self.home)
        run_dir = self._dir(enclave_id)
        self.home.ensure()
        run_dir.mkdir(parents=True, mode=0o700, exist_ok=keep is not None)
        try:
            await asyncio.to_thread(self._stage, run_dir, image, spec, plan)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        return run_dir

    def _stage(self, run_dir: Path, image: Image, spec: EnclaveSpec, plan: LaunchPlan) -> None:
        image_dir = run_dir / "image"
        image.extract(image_dir)
        if plan.sandbox == "bwrap":
            resolve_command(plan.command, image_dir, python_runtime_paths())
        else:
            _check_host_command(list(plan.command), image_dir)
        init_copy: Path | None = None
        if spec.init_params is not None:
            init_copy = run_dir / "init-params.json"
            shutil.copyfile(spec.init_params, init_copy)
        plan = plan.staged(image_dir=image_dir, init_params=init_copy, created_ms=wall_clock_ms())
        (run_dir / "spec.json").write_text(json.dumps(plan.to_json(), indent=2, sort_keys=True))
        state = {
            "id": plan.id,
            "name": plan.name,
            "state": "starting",
            "exit_code": None,
            "reason": None,
            "warnings": list(plan.warnings),
            # Until a supervisor records itself, whether this process lives tells whether one
            # still may: a launcher killed before handing the launch over leaves it to nobody.
            "launcher_pid": os.getpid(),
            "launcher_start": proc_start(os.getpid()),
        }
        (run_dir / "state.json").write_text(json.dumps(state, indent=2))
        write_lease(run_dir / LEASE_FILE, spec.lease_until_ms)

    async def _launch(self, run_dir: Path, enclave_id: str) -> EnclaveInfo:
        read_fd = await self._supervise(run_dir)
        try:
            line = b""
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_READY_TIMEOUT_S):
                    line = await _read_ready(read_fd)
        finally:
            os.close(read_fd)
            self._keep_spare()
        message: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            message = json.loads(line) if line else {}
        if message.get("ok"):
            return self._info(enclave_id)
        # Boot failed or timed out: make sure nothing of it is left, then say why.
        await self._stop(enclave_id)
        error = message.get("error") or _tail(run_dir / "supervisor.out") or "no answer"
        raise EnclaveError(
            f"enclave {enclave_id} failed to start: {error}",
            hint=message.get("hint") or f"see {run_dir / 'supervisor.log'}",
        )

    async def _supervise(self, run_dir: Path) -> int:
        """Give ``run_dir`` to the spare supervisor, or start one for it; the read end of its
        readiness pipe."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.runtime != _runtime_digest():
            spare.close()  # it loaded code that has changed since
            spare = None
        if spare is not None:
            try:
                os.write(spare.go, f"{run_dir}\n".encode())
            except OSError:
                spare.close()  # it is gone (killed, say): start one as without a spare
            else:
                os.close(spare.go)
                return spare.ready
        read_fd, write_fd = os.pipe()
        try:
            try:
                child = await _spawn_supervisor(run_dir, write_fd)
            finally:
                os.close(write_fd)
            await _reap_first_child(child)
        except BaseException:
            os.close(read_fd)
            raise
        return read_fd

    def _keep_spare(self) -> None:
        """Load the next spare supervisor in the background, when spares are wanted."""
        if not self._spare_wanted or self._spare is not None:
            return
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._load_spare(), name="spare supervisor")

    async def _load_spare(self) -> None:
        runtime = _runtime_digest()  # before it loads: a change after that is seen on use
        go_read, go_write = os.pipe()
        ready_read, ready_write = os.pipe()
        try:
            try:
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "reef.enclave.local._supervisor",
                    "--spare",
                    str(go_read),
                    str(ready_write),
                    pass_fds=(go_read, ready_write),
                    env=_supervisor_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=str(self.home.root),
                )
            finally:
                os.close(go_read)
                os.close(ready_write)
            await _reap_first_child(child)
        except BaseException:
            # Closing the pipe's write end makes a spare that started exit.
            os.close(go_write)
            os.close(ready_read)
            raise
        if self._spare_wanted and self._spare is None:
            self._spare = _Spare(go=go_write, ready=ready_read, runtime=runtime)
        else:
            _Spare(go=go_write, ready=ready_read, runtime=runtime).close()

    # -- stop, status, list, update, logs ----------------------------------------------------

    async def stop(self, enclave_id: str) -> EnclaveInfo:
        """Stop an enclave and check that none of its processes is left.

        Raises:
            EnclaveError: unknown enclave, or a process that survived.
        """
        self._state(enclave_id)
        await self._stop(enclave_id)
        return self._info(enclave_id)

    async def _stop(self, enclave_id: str) -> None:
        run_dir = self._dir(enclave_id)
        before = self._state(enclave_id)
        pid: int | None = before.get("supervisor_pid")
        start: int | None = before.get("supervisor_start")
        if pid is not None and alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + _STOP_TIMEOUT_S
            while alive(pid, start) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            if alive(pid, start):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        state = self._state(enclave_id)
        left = await asyncio.to_thread(_force_cleanup, run_dir, state)
        if state.get("state") in ("starting", "running"):
            state.update(
                state="stopped" if state.get("state") == "running" else "crashed",
                reason="stopped (its supervisor had died)" if not left else state.get("reason"),
                stopped_ms=wall_clock_ms(),
            )
            (run_dir / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
        if left:
            raise EnclaveError(
                f"enclave {enclave_id}: processes {left} survived the stop",
                hint="kill them by hand (kill -9) and report this",
            )

    def measure(self, spec: EnclaveSpec) -> Measurements:
        """The dev TEE's recipe: PCR0-2 of image and runtime (zero in debug), PCR16 of the init
        params (docs/enclave.md).

        Raises:
            ImageError: the image or init params are unreadable or invalid.
        """
        measurements = _measured(spec)[2]
        return measurements.as_debug() if spec.debug else measurements

    async def renew(self, enclave_id: str, until_ms: int | None) -> None:
        """Move the enclave's lease to ``until_ms`` (Unix milliseconds); None removes it.

        Raises:
            EnclaveError: when no such enclave exists.
        """
        self._state(enclave_id)
        await asyncio.to_thread(write_lease, self._dir(enclave_id) / LEASE_FILE, until_ms)

    async def remove_state(self, state_key: str) -> bool:
        """Delete the ``/state`` of ``state_key`` (its volume file and directory under
        ``$REEF_HOME/enclave-state``) unless an enclave of this home using it is starting or
        running; returns whether there was one.

        Raises:
            InputError: ``state_key`` is not an image id (hex), with ``-debug`` or not.
            EnclaveError: an enclave using it is starting or running, or it cannot be unmounted.
        """
        image_id, _, debug = state_key.partition("-")
        if (
            not image_id
            or len(image_id) > 128
            or not all(c in "0123456789abcdef" for c in image_id)
            or debug not in ("", "debug")
        ):
            raise InputError(
                f"{state_key!r} is not the name of an enclave's /state",
                hint="pass the state_key of an EnclaveInfo (an image id in hex, maybe -debug)",
            )
        for info in await self.list():
            if info.state_key == state_key and info.state in ("starting", "running"):
                raise EnclaveError(
                    f"enclave {info.id} still runs with the /state {state_key}",
                    hint="stop it first; /state is removed only once no enclave uses it",
                )
        # Not through ReefHome.enclave_state, which would make the directory.
        directory = self.home.root / "enclave-state" / state_key
        return await asyncio.to_thread(remove_volume, directory)

    async def status(self, enclave_id: str) -> EnclaveInfo:
        """The enclave's current state and endpoints.

        Raises:
            EnclaveError: when no such enclave exists.
        """
        return self._info(enclave_id)

    async def list(self) -> list[EnclaveInfo]:
        """Every enclave with a state under this home, oldest first."""
        # A provider lists its enclaves when it starts: its first spare loads from then on,
        # ready before its first launch rather than after it.
        self._keep_spare()
        found: list[EnclaveInfo] = []
        if not self.home.enclaves.is_dir():
            return found
        for entry in self.home.enclaves.iterdir():
            if (entry / "spec.json").exists() and (entry / "state.json").exists():
                with contextlib.suppress(ReefError, OSError, ValueError, KeyError):
                    found.append(self._info(entry.name))
        return sorted(found, key=lambda info: (info.created_ms, info.id))

    async def update(self, enclave_id: str, spec: EnclaveSpec) -> EnclaveInfo:
        """Replace a running enclave's image, init params or limits, keeping its id and ports.

        Labels of the old enclave that the new spec does not name are kept.

        The new spec is validated first: if it is invalid, the old enclave keeps running.

        Raises:
            ImageError, InputError: the new spec is invalid (the old enclave is untouched).
            EnclaveError: the new enclave failed to boot (the old one is already gone).
        """
        run_dir = self._dir(enclave_id)
        old = self._plan(enclave_id)
        await asyncio.to_thread(self._prepare, spec, enclave_id, keep=old)
        await self._stop(enclave_id)
        for entry in run_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return await self._start(spec, enclave_id, keep=old)

    async def remove(self, enclave_id: str) -> None:
        """Forget a stopped or crashed enclave (its directory is deleted).

        Raises:
            EnclaveError: when it is still running (stop it first).
        """
        info = self._info(enclave_id)
        if info.state in ("starting", "running"):
            raise EnclaveError(f"enclave {enclave_id} is {info.state}", hint="stop it first")
        await asyncio.to_thread(_force_cleanup, self._dir(enclave_id), self._state(enclave_id))
        shutil.rmtree(self._dir(enclave_id), ignore_errors=True)

    async def logs(self, enclave_id: str) -> str:
        """The app's console so far (debug enclaves only, as on Nitro).

        Raises:
            EnclaveError: for an enclave not in debug mode.
        """
        info = self._info(enclave_id)
        if not info.debug:
            raise EnclaveError(
                f"enclave {enclave_id} is not in debug mode: its console is private, as on Nitro",
                hint=f"run it with --debug to read its logs; supervisor events are in "
                f"{self._dir(enclave_id) / 'supervisor.log'}",
            )
        return await asyncio.to_thread(_console_text, self._dir(enclave_id) / "console.log")

    async def follow(self, enclave_id: str, *, poll: float = 0.1) -> AsyncIterator[str]:
        """The console's lines, then new ones as they come, until the enclave ends."""
        await self.logs(enclave_id)
        path = self._dir(enclave_id) / "console.log"
        rotated = path.with_name(path.name + ROTATED_SUFFIX)
        position = 0
        followed: int | None = None  # the inode of the file read so far
        pending = b""
        while True:
            data = b""
            with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
                stat = os.fstat(handle.fileno())
                # The console rotates by renaming (a new file then grows at once): a smaller
                # file is not the only sign, since the new one may have passed the position.
                if followed is not None and (stat.st_ino != followed or stat.st_size < position):
                    rest = _read_rest(rotated, followed, position, MAX_CONSOLE_FILE_BYTES)
                    if rest is None:
                        # It rotated twice since the last read: the rest of the file followed
                        # is gone, and its line begun in ``pending`` must not get another's end.
                        pending = b""
                    data = rest or b""
                    position = 0
                followed = stat.st_ino
                handle.seek(position)
                fresh = handle.read(MAX_CONSOLE_FILE_BYTES)
                position += len(fresh)
                data += fresh
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace")
            if not data:
                if self._info(enclave_id).state not in ("starting", "running"):
                    if pending:
                        yield pending.decode("utf-8", "replace")
                    return
                await asyncio.sleep(poll)


def _measured(spec: EnclaveSpec) -> tuple[Image, InitParams | None, Measurements]:
    """The image, its init params and what an enclave of ``spec`` attests on the dev TEE
    (before debug zeroes PCR0-2: the caller applies :meth:`Measurements.as_debug`)."""
    image = load_image(spec.image)
    measurements = image.measurements
    params: InitParams | None = None
    if spec.init_params is not None:
        params = InitParams.read(spec.init_params)
        measurements = measurements.with_init_params(params.digest)
    return image, params, measurements


def _unclaimed(state_file: Path, state: Mapping[str, Any], created_ms: int) -> str | None:
    """Why a launch no supervisor has taken never will be; None while one still may take it."""
    if not alive(state.get("launcher_pid"), state.get("launcher_start")):
        try:
            idle_s = time.time() - state_file.stat().st_mtime
        except OSError:
            idle_s = 0.0  # being removed or rewritten right now: judge it on the next look
        if idle_s > _HANDOFF_S:
            return "the process that launched it exited before a supervisor took it over"
    if time.time() * 1000 - created_ms > _READY_TIMEOUT_S * 2000:
        return "the enclave's supervisor never started"
    return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class _Spare:
    """A supervisor that loaded the trusted base and waits for a run directory on ``go``."""

    go: int  # the write end of its pipe: one line (the run directory), or end of file
    ready: int  # the read end of its readiness pipe
    runtime: bytes  # the digest of the reef runtime on disk when it was started

    def close(self) -> None:
        for fd in (self.go, self.ready):
            with contextlib.suppress(OSError):
                os.close(fd)


def _runtime_digest() -> bytes:
    return hashlib.sha256(runtime_measurement()).digest()


def _supervisor_env() -> dict[str, str]:
    # Two malloc arenas rather than one per thread: the supervisor's few threads (the trusted
    # base's loading, seccomp, firewall) would each keep an arena for good.
    return {"MALLOC_ARENA_MAX": "2", **os.environ}


async def _spawn_supervisor(run_dir: Path, ready_fd: int) -> asyncio.subprocess.Process:
    # A session of its own: the supervisor outlives the caller (--detach) and owns its group.
    with (run_dir / "supervisor.out").open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reef.enclave.local._supervisor",
            str(run_dir),
            str(ready_fd),
            pass_fds=(ready_fd,),
            env=_supervisor_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            cwd=str(run_dir),
        )


async def _reap_first_child(child: asyncio.subprocess.Process) -> None:
    """Wait for a supervisor's first child, which exits once the supervisor has forked away
    (reaping it leaves no zombie). Cancelled, it kills and still reaps the child: a loop closed
    right after, as ``reef up``'s is, would never see the exit, and the child's transport would be
    dropped while its process runs."""
    try:
        await child.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(child.wait())
        raise


def _read_text(path: Path) -> str:
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="utf-8", errors="replace")
    return ""


def _read_range(path: Path, start: int, most: int) -> bytes:
    """Up to ``most`` bytes of ``path`` from ``start`` (nothing when it is missing)."""
    with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
        handle.seek(start)
        return handle.read(most)
    return b""


def _read_rest(path: Path, inode: int, start: int, most: int) -> bytes | None:
    """Up to ``most`` bytes of ``path`` from ``start`` if it is still the file ``inode`` (a
    console followed before it rotated), else None."""
    with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_ino != inode:
            return None
        handle.seek(start)
        return handle.read(most)
    return None


def _console_text(path: Path) -> str:
    """A debug console's text: its rotated file, then its current one, at most twice the
    rotation size read from the end. Consoles rotate (``_trusted_base.Console``), but the files
    are the app's output on the host's disk: whatever their size (a file written before consoles
    rotated, say), this never reads more, so a caller (the provider, when a debug job ends) never
    holds an app-chosen amount of memory. A first line cut by the limit is left out."""
    budget = 2 * MAX_CONSOLE_FILE_BYTES
    parts: list[bytes] = []
    cut = False
    for name in (path, path.with_name(path.name + ROTATED_SUFFIX)):
        try:
            size = name.stat().st_size
        except FileNotFoundError:
            continue
        take = min(size, budget)
        parts.insert(0, _read_range(name, size - take, take))
        budget -= take
        if take < size:
            cut = True
        if budget <= 0:
            break
    data = b"".join(parts)
    if cut:
        data = data[data.find(b"\n") + 1 :]
    return data.decode("utf-8", errors="replace")


def _tail(path: Path, lines: int = 5) -> str:
    text = _read_text(path).strip().splitlines()
    return " | ".join(text[-lines:])


def _check_host_command(command: list[str], image_dir: Path) -> None:
    program = command[0]
    if "/" in program:
        target = image_dir / program if not program.startswith("/") else Path(program)
        if not target.is_file() or not os.access(target, os.X_OK):
            raise ImageError(f"the image's command {program!r} does not exist or is not executable")
    elif shutil.which(program) is None:
        raise ImageError(f"the image's command {program!r} is not found on PATH")


def _check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not isinstance(key, str) or not 0 < len(key) <= _MAX_LABEL_KEY:
            raise InputError(
                f"label name {key!r} must be a string of 1-{_MAX_LABEL_KEY} characters"
            )
        if not isinstance(value, str) or len(value) > _MAX_LABEL_VALUE:
            raise InputError(
                f"label {key} must be a string of at most {_MAX_LABEL_VALUE} characters, "
                f"got {value!r}"
            )
    return dict(labels)


def _force_cleanup(run_dir: Path, state: Mapping[str, Any]) -> list[int]:
    """Undo what a dead supervisor left: processes, namespace, groups, secrets.

    Returns the PIDs still alive afterwards (none, normally).
    """
    limits = Limits.from_description(state.get("limits", {}))
    # PIDs are only trusted with the start time recorded for them: a PID reused by an unrelated
    # process since must never be killed.
    app_pid = state.get("app_pid")
    if app_pid and not alive(app_pid, state.get("app_start")):
        app_pid = None
    pasta_pid = state.get("pasta_pid")
    if pasta_pid and not alive(pasta_pid, state.get("pasta_start")):
        pasta_pid = None
    if app_pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(app_pid, signal.SIGKILL)
    limits.kill_all(timeout=2.0)
    volume = state.get("state_volume")
    if volume:
        release_if_unused(Path(volume))
    rules = state.get("firewall")
    if rules:
        Firewall().forget(rules["gid"], published=rules["published"], allowed=rules["allowed"])
    netns = state.get("netns")
    if netns and (Path("/run/netns") / netns).exists():
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
    deadline = time.monotonic() + 5
    while pasta_pid and proc_start(pasta_pid) is not None and _is_pasta(pasta_pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pasta_pid, signal.SIGKILL)
        time.sleep(0.02)
        if time.monotonic() > deadline + 2:
            break
    limits.cleanup()
    for name in SECRET_FILES:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / "app" / name).unlink()
    left = limits.pids()
    if app_pid and _group_alive(app_pid):
        left.append(app_pid)
    if pasta_pid and proc_start(pasta_pid) is not None and _is_pasta(pasta_pid):
        left.append(pasta_pid)
    return sorted(set(left))


def _is_pasta(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "pas" in Path(f"/proc/{pid}/comm").read_text()
    return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only zombies may be left in the group; they are not running code.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False
