"""The supervisor: one process per local enclave that boots it, runs its trusted base, and ends it.

``python -m reef.enclave.local._supervisor RUN_DIR READY_FD`` reads ``RUN_DIR/spec.json`` (written by
:class:`reef.enclave.LocalBackend`), boots the enclave in Oyster's order (reference §3.6):

1. limits (control groups) and the network namespace with pasta's port map;
2. fresh identity keys per boot: X25519 ``/app/id.{sec,pub}``, secp256k1 ``/app/ecdsa.{sec,pub}``;
3. the trusted base, listening inside the enclave: attestation servers on 1300 (X25519 key) and
   1301 (secp256k1 key), the custom attestation server on 1350, dev-TEE sealing on 1210, and with
   a KMS, the derive server on 1100; documents are signed by the dev TEE authority with the
   image's PCRs (PCR0-2 zero in debug mode, PCR16 the init params);
4. init params: written under ``/init-params``, secrets opened with the KMS-derived key, the digest
   checked against the measured one;
5. the app, sandboxed, with its console captured only in debug mode (as Nitro's);

then reports readiness on READY_FD (one JSON line) and records every state change in
``RUN_DIR/state.json``. On SIGTERM, or when the app exits, it kills the app's whole process tree,
stops the trusted base, removes the namespace and groups, deletes the per-boot secrets, and writes
the final state (``stopped``, or ``crashed`` with the exit code and, if the kernel's OOM killer
struck, the reason).

Every supervisor loads the trusted base's code first, then forks away from its starter and boots.
A spare (``... --spare GO_FD READY_FD``, kept by ``LocalBackend(spare=True)``) waits in between
for the run directory it is to boot (one line on GO_FD; at end of file it exits): a launch that
finds one skips most of a boot's CPU. What the trusted base's libraries import but never use
is kept out of the process (``_lean_imports``).

One module (about 1000 lines): the boot sequence is one ordered story (limits, firewall,
network, keys, trusted base, app, leases, stop), and its steps share the supervisor's state;
the isolation parts it calls live in their own modules.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # This process is a supervisor (python -m). asyncio, imported next, runs as in a Python built
    # without ssl; _lean_imports then lets ssl load on first real use (see _ssl_on_demand).
    # hashlib and hmac use CPython's own SHA-2 and BLAKE2 instead of OpenSSL's (_hashlib loads
    # the system libcrypto: some 1.5 MiB resident): the trusted base hashes short messages only
    # (ids, init params' digest, the KMS derivation, Scallop's handshake), and cryptography,
    # which does its signing and sealing, carries its own OpenSSL.
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]

import asyncio
import contextlib
import hashlib
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reef._clock import wall_clock_ms
from reef._lazy import defer_import, without_init
from reef.enclave._init_params import INIT_PARAMS_KMS_PATH, InitParams
from reef.enclave.local._firewall import Firewall, app_uid, pasta_gid
from reef.enclave.local._lease import LEASE_FILE, read_lease
from reef.enclave.local._limits import Limits
from reef.enclave.local._network import (
    NetworkNamespace,
    pasta_argv,
    unprivileged_port_start,
)
from reef.enclave.local._plan import LaunchPlan
from reef.enclave.local._procs import proc_start
from reef.enclave.local._sandbox import (
    SECRET_FILES,
    STATE_MOUNT,
    Confinement,
    SandboxLayout,
    bwrap_argv,
    python_runtime_paths,
    sandbox_environment,
)
from reef.enclave.local._state_volume import StateVolume
from reef.enclave.local._trusted_base import SEALING_PORT, Console, RotatingFile, split_console
from reef.errors import EnclaveError, ReefError
from reef.home import ReefHome, replace_file

if TYPE_CHECKING:
    from reef._serve import Server
    from reef.attestation import Attester
    from reef.kms import EnclaveSeeds

# The servers (uvicorn, Starlette) and the attestation stack are imported by main, before the
# process forks into the supervisor (see _load_trusted_base); the module imports them by name
# inside functions, so that a process importing it for its constants does not load them.

__all__ = [
    "ATTESTATION_PORT",
    "ATTESTATION_SECP256K1_PORT",
    "CUSTOM_PORT",
    "DERIVE_PORT",
    "main",
]

ATTESTATION_PORT = 1300
ATTESTATION_SECP256K1_PORT = 1301
CUSTOM_PORT = 1350
DERIVE_PORT = 1100
KMS_RETRY_S = 20.0
PUBLISHED_PER_PEER = 1024
"""Connections the attestation servers (the trusted base's published ports) take from one peer
address, which behind pasta is every client's (the serving floor's default: 128)."""
TRUSTED_BASE_LOG = "trusted-base.log"
"""Where the trusted base's log records go (the serving floor's refusals, uvicorn's and
asyncio's complaints), in the enclave's run directory."""
TRUSTED_BASE_LOG_BYTES = 128 << 10
"""Its size before it rotates (one rotated file kept): the app provokes those records at will
(one per connection its sealing service refuses), so they must not grow the host's disk."""
"""How long an enclave keeps asking a busy or restarting KMS root for its seed before failing."""


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomically replace a JSON file (readers never see half of it)."""
    replace_file(path, json.dumps(data, indent=2, sort_keys=True).encode())


def _module_id(enclave_id: str) -> str:
    digest = hashlib.sha256(b"reef dev-tee enclave " + enclave_id.encode()).hexdigest()
    return f"i-{digest[:17]}-enc{digest[17:33]}"


class Supervisor:
    """Boots, runs and tears down one enclave (see the module docstring)."""

    def __init__(self, run_dir: Path, ready_fd: int | None) -> None:
        self.run_dir = run_dir
        self.ready_fd = ready_fd
        self.plan = LaunchPlan.from_json(json.loads((run_dir / "spec.json").read_text()))
        self.state: dict[str, Any] = {
            "id": self.plan.id,
            "name": self.plan.name,
            "state": "starting",
            "exit_code": None,
            "reason": None,
            "supervisor_pid": os.getpid(),
            "supervisor_start": proc_start(os.getpid()),
            "created_ms": self.plan.created_ms,
            "warnings": list(self.plan.warnings),
        }
        self.servers: list[Server] = []
        self.limits: Limits | None = None
        self.netns: NetworkNamespace | None = None
        self.firewall: tuple[Firewall, int, list[int], list[int]] | None = None
        self.state_volume: StateVolume | None = None
        self.pasta: asyncio.subprocess.Process | None = None
        self.pasta_pidfd: int | None = None
        self.pasta_pid_file = run_dir / "pasta.pid"
        self.app: asyncio.subprocess.Process | None = None
        self.console: Console | None = None
        self.pump: asyncio.Task[None] | None = None
        self.seccomp: asyncio.Future[int] | None = None  # the app's seccomp program, as an fd
        self.seeds: EnclaveSeeds | None = None  # with a KMS
        self.secret_params = False  # whether opened secrets sit under init-params/
        self.stopping = asyncio.Event()
        self.stop_reason = "stopped"
        self._log = (run_dir / "supervisor.log").open("a", encoding="utf-8")

    # -- bookkeeping -------------------------------------------------------------------------

    def log(self, message: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}"
        self._log.write(f"{stamp} {message}\n")
        self._log.flush()

    def save(self, **changes: Any) -> None:
        self.state.update(changes)
        write_json(self.run_dir / "state.json", self.state)

    def notify(self, message: Mapping[str, Any]) -> None:
        if self.ready_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, (json.dumps(message) + "\n").encode())
            os.close(self.ready_fd)
        self.ready_fd = None

    # -- boot --------------------------------------------------------------------------------

    async def boot(self) -> None:
        plan = self.plan
        enclave_id = plan.id
        if plan.sandbox == "bwrap":
            # The app's seccomp program is built (libseccomp, in a thread) while the enclave
            # boots; the app's start takes it.
            self.seccomp = asyncio.ensure_future(asyncio.to_thread(self._seccomp_fd))
        self.limits = Limits.prepare(enclave_id, memory_mib=plan.memory_mib, cpus=plan.cpus)
        self.save(limits=self.limits.describe())
        self.log(f"limits: {self.limits.describe()}")
        for note in self.limits.notes:
            self.state["warnings"].append(note)

        internal = {ATTESTATION_PORT, ATTESTATION_SECP256K1_PORT, CUSTOM_PORT, SEALING_PORT}
        if plan.kms:
            internal.add(DERIVE_PORT)
        att_ports = dict(plan.attestation_ports)
        app_ports = dict(plan.ports)
        env_extra: dict[str, str] = {
            "REEF_ENCLAVE_ID": enclave_id,
            "REEF_IMAGE_ID": plan.image_id.hex(),
            "REEF_DEBUG": "1" if plan.debug else "0",
        }
        network: asyncio.Task[str] | None = None
        if plan.network == "netns":
            forwards = [(att_ports[p], p) for p in sorted(att_ports)]
            forwards += [(host, inner) for inner, host in sorted(app_ports.items())]
            self.netns = NetworkNamespace.create(
                f"reef-{enclave_id}", owner=self._pasta_owner(forwards)
            )
            self.save(netns=self.netns.name)
            sockets = self.netns.listen(sorted(internal))
            # pasta and the firewall come up while the trusted base loads and starts; the task
            # is awaited once the trusted base is up.
            await self._spawn_pasta(forwards)
            published = [host for host, _ in forwards]
            network = asyncio.create_task(self._network(published))
            where = {port: port for port in internal}
        else:
            from reef._listen import bind

            # Host networking: the trusted base listens on host ports, named in REEF_* variables.
            where = {port: att_ports.get(port, 0) for port in internal}
            sockets = {}
            for port, host_port in where.items():
                sock = bind(
                    "127.0.0.1",
                    host_port,
                    what="the trusted base",
                    error=EnclaveError,
                    hint="another process holds that port; start the enclave again",
                )
                sockets[port] = sock
                where[port] = sock.getsockname()[1]
            env_extra["REEF_HOST_ADDR"] = "127.0.0.1"
        env_extra["REEF_ATTESTATION_URL"] = f"http://127.0.0.1:{where[ATTESTATION_PORT]}"
        env_extra["REEF_ATTESTATION_SECP256K1_URL"] = (
            f"http://127.0.0.1:{where[ATTESTATION_SECP256K1_PORT]}"
        )
        env_extra["REEF_CUSTOM_ATTESTATION_URL"] = f"http://127.0.0.1:{where[CUSTOM_PORT]}"
        env_extra["REEF_SEALING_URL"] = f"http://127.0.0.1:{where[SEALING_PORT]}"
        if DERIVE_PORT in where:
            env_extra["REEF_KMS_DERIVE_URL"] = f"http://127.0.0.1:{where[DERIVE_PORT]}"

        warm_up: asyncio.Task[None] | None = None
        try:
            keys = self._keys()
            warm_up = await self._trusted_base(sockets, keys)
            init_dir = await self._init_params(keys)
            if network is not None:
                # pasta's or the firewall's failure, if any, surfaces here.
                env_extra["REEF_HOST_ADDR"] = await network
            if plan.debug:
                await self._console()
            await self._start_app(init_dir, env_extra)
            self._confine_helpers()
            await warm_up
        finally:
            # A boot that failed leaves no task behind (teardown follows).
            for task in (network, warm_up):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    def _signal_pasta(self, number: int) -> None:
        """Signal pasta through its process descriptor (gone already is fine)."""
        with contextlib.suppress(ProcessLookupError):
            if self.pasta_pidfd is not None:
                signal.pidfd_send_signal(self.pasta_pidfd, number)
            elif self.pasta is not None:
                self.pasta.send_signal(number)

    def _confine_helpers(self) -> None:
        """From now on the app can make this process and pasta work for it: both join the
        helpers' CPU quota (not before: the boot itself is bounded, and must be quick)."""
        assert self.limits is not None
        helpers = [os.getpid()] + ([self.pasta.pid] if self.pasta is not None else [])
        for failure in self.limits.confine_helpers(helpers):
            self.log(f"limits: {failure}")

    async def _console(self) -> None:
        """Serve a debug enclave's console on its logs port."""
        from reef._listen import bind
        from reef._serve import Server
        from reef.enclave.local._trusted_base import console_app

        self.console = Console(self.run_dir / "console.log")
        logs_sock = bind(
            "127.0.0.1", self.plan.logs_port, what="the enclave's console", error=EnclaveError
        )
        self.servers.append(
            await Server(
                console_app(self.console),
                logs_sock,
                what="enclave console",
                uvicorn_logging=False,
            ).start()
        )

    async def _network(self, published: list[int]) -> str:
        """Wait for pasta's port map, then open the firewall for the published ports; the
        namespace's gateway (the host's loopback as the app reaches it)."""
        assert self.netns is not None
        await self._pasta_ready()
        await self._admit(published)
        return await asyncio.to_thread(self.netns.gateway) or ""

    async def _admit(self, published: list[int]) -> None:
        """Let other enclaves reach this one's host ports, and this one the host ports it is
        given; every other address of the host stays out of its reach (see ``_firewall``)."""
        if not self.plan.firewall:
            return
        firewall = Firewall()
        gid = pasta_gid(self.plan.id)
        allowed = list(self.plan.allow_host_ports)
        # Recorded first: a failed admit still leaves the elements to remove, also for the
        # cleanup after a dead supervisor (LocalBackend reads state.json).
        self.firewall = (firewall, gid, published, allowed)
        self.save(firewall={"gid": gid, "published": published, "allowed": allowed})
        # The cap on its connections to the host's addresses first: the admit opens them.
        await asyncio.to_thread(firewall.ensure_limits)
        await asyncio.to_thread(firewall.admit, gid, published=published, allowed=allowed)
        self.log(f"firewall: published {published}, allowed {allowed}, pasta gid {gid}")

    def _pasta_owner(self, forwards: list[tuple[int, int]]) -> int | None:
        """The unprivileged user pasta runs as (the enclave's firewall group id); None (root,
        with a warning) when a host port it must bind is one only root may."""
        low = sorted(host for host, _ in forwards if host < unprivileged_port_start())
        if not low:
            return pasta_gid(self.plan.id)
        self.state["warnings"].append(
            f"pasta (the enclave's network) runs as root on this host: host port "
            f"{', '.join(map(str, low))} is below {unprivileged_port_start()}, which only root "
            "may bind; map the enclave's ports to higher host ports to run it unprivileged"
        )
        return None

    async def _spawn_pasta(self, forwards: list[tuple[int, int]]) -> None:
        assert self.netns is not None
        gid = pasta_gid(self.plan.id)
        userns_fd = self.netns.userns_fd
        pass_fds: tuple[int, ...] = ()
        pid_file = self.pasta_pid_file
        if userns_fd is not None:
            # pasta opens its PID file as its own unprivileged user, who cannot traverse the
            # run directory: it is given the file, empty and its own, as a descriptor.
            pid_file.unlink(missing_ok=True)
            pid_fd = os.open(pid_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.fchown(pid_fd, gid, gid)
            pass_fds = (userns_fd, pid_fd)
            pid_file = Path(f"/proc/self/fd/{pid_fd}")
        argv = pasta_argv(
            self.netns.name, forwards, pid_file=pid_file, gid=gid, userns_fd=userns_fd
        )
        self.log("pasta: " + " ".join(argv))
        # A file, not a pipe, for pasta's complaints: nobody reads a pipe once it runs.
        err_path = self.run_dir / "pasta.log"
        assert self.limits is not None
        try:
            with err_path.open("ab") as err_file:
                self.pasta = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=err_file,
                    pass_fds=pass_fds,
                    # Its memory group (its sockets' buffers), before it opens a socket.
                    preexec_fn=self.limits.net_preexec(),
                )
        finally:
            self.netns.release_userns()
            for fd in pass_fds[1:]:
                os.close(fd)
        # Signalled through this descriptor, never by PID: Popen.terminate() first polls, and
        # that reaps a pasta that has just exited (it does once its namespace is deleted) under
        # asyncio's child watcher, which then logs "Unknown child process pid".
        with contextlib.suppress(OSError):  # a kernel before 5.3: signalled by PID then
            self.pasta_pidfd = os.pidfd_open(self.pasta.pid)
        self.save(pasta_pid=self.pasta.pid, pasta_start=proc_start(self.pasta.pid))

    async def _pasta_ready(self) -> None:
        """Wait until pasta wrote its PID into its PID file, which it does once its port map is
        in place (the file may exist, empty, before).

        Raises:
            EnclaveError: pasta exited (or took over 10 s) instead; its complaint says why.
        """
        assert self.pasta is not None
        pid_file = self.pasta_pid_file
        err_path = self.run_dir / "pasta.log"
        deadline = time.monotonic() + 10
        while not _has_data(pid_file):
            if self.pasta.returncode is not None or time.monotonic() > deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.pasta.wait(), 1)
                err = err_path.read_bytes()
                # pasta also reports that it has no syslog here; only its real complaint matters.
                lines = [
                    line.strip()
                    for line in err.decode(errors="replace").splitlines()
                    if line.strip() and "to syslog" not in line
                ]
                message = "; ".join(lines) or f"pasta exited with {self.pasta.returncode}"
                bind = "bind" in message.lower()
                raise EnclaveError(
                    f"pasta could not set up the enclave's network: {message}",
                    hint="a host port is in use; pick another with --port HOST:ENCLAVE"
                    if bind
                    else "pasta needs a host interface with a default route",
                )
            await asyncio.sleep(0.01)

    def _keys(self) -> dict[str, bytes]:
        app_dir = self.run_dir / "app"
        app_dir.mkdir(mode=0o755, exist_ok=True)
        files = _fresh_keys()
        uid = app_uid(self.plan.state_key)
        for name, data in files.items():
            path = app_dir / name
            path.write_bytes(data)
            path.chmod(0o400 if name.endswith(".sec") else 0o444)
            if name.endswith(".sec") and self.plan.sandbox == "bwrap":
                # Readable by the app's own unprivileged user, and by no other enclave's.
                os.chown(path, uid, uid)
        self.save(
            public_keys={"x25519": files["id.pub"].hex(), "secp256k1": files["ecdsa.pub"].hex()}
        )
        return files

    async def _trusted_base(
        self, sockets: dict[int, socket.socket], keys: dict[str, bytes]
    ) -> asyncio.Task[None]:
        """Start the trusted base's servers on ``sockets``; the task that warms them up."""
        from reef._serve import Limits as ServingLimits
        from reef._serve import Server
        from reef.attestation import DevAuthority, attestation_app, custom_attestation_app
        from reef.enclave.local._trusted_base import sealing_app

        plan = self.plan
        home = ReefHome(plan.home)
        authority = DevAuthority.load_or_create(home)
        image_id = plan.image_id
        attester = authority.attester(
            dict(plan.pcrs), clock_ms=wall_clock_ms, module_id=_module_id(plan.id)
        )
        apps: dict[int, Any] = {
            ATTESTATION_PORT: attestation_app(
                attester, public_key=keys["id.pub"], user_data=self.plan.user_data
            ),
            ATTESTATION_SECP256K1_PORT: attestation_app(
                attester, public_key=keys["ecdsa.pub"], user_data=self.plan.user_data
            ),
            CUSTOM_PORT: custom_attestation_app(attester),
            SEALING_PORT: sealing_app(authority.sealing_key(image_id), image_id),
        }
        if plan.kms:
            apps[DERIVE_PORT] = await self._derive_app(keys, attester)
        # Every client of a published port (the host's, other enclaves', the app) reaches it
        # through pasta from 127.0.0.1: the cap per peer is one cap for all of them. Above what
        # a few enclaves may hold together (MAX_HOST_CONNECTIONS each, the firewall's), an idle
        # connection costing the supervisor some kilobytes until the floor's read deadline.
        published = ServingLimits(per_peer=PUBLISHED_PER_PEER)
        for port, app in apps.items():
            server = Server(
                app,
                sockets.pop(port),
                what=f"trusted base port {port}",
                uvicorn_logging=False,
                limits=published
                if port in (ATTESTATION_PORT, ATTESTATION_SECP256K1_PORT)
                else None,
            )
            self.servers.append(await server.start())
        for sock in sockets.values():
            sock.close()
        # A first request loads what serving one needs (anyio's backend) and issues this
        # enclave's leaf certificate (a P-384 key and a signature): made in-process while the
        # app starts, and done before the enclave is reported ready, so that the first client
        # is answered as fast as the next.
        return asyncio.create_task(_warm_up(apps[ATTESTATION_PORT], "/attestation/raw"))

    async def _derive_app(self, keys: dict[str, bytes], attester: Attester) -> Any:
        from reef.kms import EnclaveSeeds, KmsWiring, derive_server_app

        assert self.plan.kms is not None
        wiring = KmsWiring.from_json(self.plan.kms)
        public_key = keys["id.pub"]

        async def auther() -> bytes:
            return await asyncio.to_thread(
                attester, public_key=public_key, user_data=b"", nonce=b""
            )

        from reef.attestation import TrustedRoot

        # A KMS root that rotated since the wiring was made attests its new key; on the dev TEE
        # it runs under this home's dev root (and a real one under AWS's), pinned to its image.
        roots = [TrustedRoot.dev(ReefHome(self.plan.home)), TrustedRoot.aws()]
        seeds = self.seeds = EnclaveSeeds.from_root(
            wiring, static_key=keys["id.sec"], auther=auther, roots=roots
        )

        def retrying(error: ReefError, delay: float) -> None:
            self.log(f"kms: no seed yet ({error.message}); retrying in {delay:.2f} s")

        # Enclaves of one host that boot together share the root's per-address handshake slots.
        version = await seeds.start(retry_for_s=KMS_RETRY_S, on_retry=retrying)
        self.log(f"kms: enclave seed fetched from {wiring.endpoint} (root version {version})")
        return derive_server_app(seeds)

    async def _init_params(self, keys: dict[str, bytes]) -> Path | None:
        source = self.plan.init_params
        if source is None:
            return None
        raw = await asyncio.to_thread(source.read_bytes)
        params = InitParams.from_json(raw, source="the enclave's init params")
        secret_key: bytes | None = None
        if params.has_secrets:
            if self.plan.debug:
                raise EnclaveError(
                    "secret init params cannot be opened by a debug enclave",
                    hint="as on Oyster: debug enclaves can be inspected, so secrets are refused",
                )
            if self.seeds is None:
                raise EnclaveError(
                    "the init params carry secrets, and this enclave has no KMS to open them",
                    hint="run it with a KMS (LocalBackend(kms=...) / reef up)",
                )
            from reef.kms import derive_secret

            seed, _ = await self.seeds.get(None)
            secret_key = derive_secret(seed, INIT_PARAMS_KMS_PATH, "x25519")
        try:
            plain = params.open(secret_key)
        except ReefError as exc:
            raise EnclaveError(f"init params refused: {exc.message}", hint=exc.hint) from exc
        expected = self.plan.init_params_digest
        if expected and params.digest != expected:
            raise EnclaveError("the init params changed since the enclave was measured")
        target = self.run_dir / "init-params"
        self.secret_params = params.has_secrets
        target.mkdir(mode=0o755)
        for path, data in plain.items():
            dest = target.joinpath(*path.split("/"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            dest.chmod(0o444)
        app_dir = self.run_dir / "app"
        (app_dir / "init-params").write_bytes(raw)
        (app_dir / "init-params-digest").write_bytes(params.digest)
        return target

    async def _start_app(self, init_dir: Path | None, env_extra: dict[str, str]) -> None:
        plan = self.plan
        assert self.limits is not None
        assert plan.image_dir is not None
        image_dir = plan.image_dir
        command = list(plan.command)
        state_dir = ReefHome(plan.home).enclave_state(plan.state_key)
        pass_fds: tuple[int, ...] = ()
        if plan.sandbox == "bwrap":
            uid = app_uid(plan.state_key)
            if plan.state_volume:
                self.state_volume = StateVolume(state_dir, size_mib=plan.state_mib, uid=uid)
                self.save(state_volume=str(state_dir))
                await asyncio.to_thread(self.state_volume.open)
            await asyncio.to_thread(_own_tree, state_dir, uid)
            layout = SandboxLayout(image_dir, self.run_dir / "app", init_dir, state_dir)
            env_extra = {**env_extra, "REEF_STATE_DIR": STATE_MOUNT}
            assert self.seccomp is not None
            seccomp_fd = await self.seccomp
            pass_fds = (seccomp_fd,)
            argv = bwrap_argv(
                layout,
                command,
                runtime=python_runtime_paths(),
                confinement=Confinement(uid=uid, seccomp_fd=seccomp_fd, tmp_bytes=plan.tmp_bytes),
                hostname=f"enclave-{plan.id[:8]}",
            )
            env = sandbox_environment(plan.env, env_extra)
        else:
            argv = list(command)
            env = sandbox_environment(plan.env, env_extra)
            env["PATH"] = os.environ.get("PATH", env["PATH"])
            env["REEF_APP_DIR"] = str(self.run_dir / "app")
            env["REEF_STATE_DIR"] = str(state_dir)
            if init_dir is not None:
                env["REEF_INIT_PARAMS_DIR"] = str(init_dir)
        if self.netns is not None:
            argv = ["nsenter", f"--net={self.netns.path}", "--", *argv]
        debug = plan.debug
        self.log("app: " + " ".join(argv))
        self.app = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(image_dir),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if debug else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.STDOUT if debug else asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=self.limits.preexec(),
            pass_fds=pass_fds,
            # The sandbox's own directories (parents of its binds) must be traversable by the
            # app's unprivileged user, whatever umask reef was started with.
            umask=0o022,
        )
        for fd in pass_fds:
            os.close(fd)
        if debug and self.app.stdout is not None:
            self.pump = asyncio.create_task(self._pump(self.app.stdout))
        self.save(app_pid=self.app.pid, app_start=proc_start(self.app.pid))
        self.log(f"app started, pid {self.app.pid}")

    def _seccomp_fd(self) -> int:
        """A file descriptor, at offset 0, of the seccomp program the sandbox loads."""
        from reef.enclave.local._seccomp import write_filter

        path = self.run_dir / "seccomp.bpf"
        with path.open("wb") as out:
            write_filter(out)
        return os.open(path, os.O_RDONLY)

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        # Chunks rather than readline(): an app printing a huge line without a newline must not
        # stop the pump (and then block on a full pipe).
        assert self.console is not None
        pending = b""
        while True:
            chunk = await stream.read(65536)
            lines, pending = split_console(pending + chunk, final=not chunk)
            for line in lines:
                self.console.append(line)
            if not chunk:
                return

    # -- run and end -------------------------------------------------------------------------

    async def _watch_lease(self) -> None:
        """Stop the enclave when its lease (``lease.json``, renewed by whoever launched it)
        runs out: a paid enclave must not outlive its payment just because its provider died."""
        path = self.run_dir / LEASE_FILE
        while True:
            until = read_lease(path)
            now = wall_clock_ms()
            if until is not None and now >= until:
                self.stop_reason = (
                    f"its lease ran out at {until // 1000} (its launcher did not renew it)"
                )
                self.log(self.stop_reason)
                self.stopping.set()
                return
            wait_ms = 1000 if until is None else min(1000, until - now)
            await asyncio.sleep(max(wait_ms, 10) / 1000)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        self.save()
        try:
            await self.boot()
        except Exception as exc:
            message = exc.message if isinstance(exc, ReefError) else f"{type(exc).__name__}: {exc}"
            hint = exc.hint if isinstance(exc, ReefError) else None
            if not isinstance(exc, ReefError):
                self.log(traceback.format_exc())
            self.log(f"boot failed: {message}")
            await self.teardown()
            self.save(state="crashed", reason=f"boot failed: {message}", stopped_ms=wall_clock_ms())
            self.notify({"ok": False, "error": message, "hint": hint})
            return 1
        self.save(state="running", started_ms=wall_clock_ms())
        self.notify({"ok": True})
        assert self.app is not None
        waiter = asyncio.create_task(self.app.wait())
        stopper = asyncio.create_task(self.stopping.wait())
        lease = asyncio.create_task(self._watch_lease())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        lease.cancel()
        if waiter.done():
            code = waiter.result()
            stopper.cancel()
            oom = self.limits is not None and self.limits.oom_killed()
            if oom:
                reason = f"killed: out of memory (limit {self.plan.memory_mib} MiB)"
            elif code < 0 or code > 128:
                number = -code if code < 0 else code - 128
                reason = f"killed by signal {_signal_name(number)}"
            else:
                reason = f"the app exited with code {code}"
            code = 128 - code if code < 0 else code
            self.log(reason)
            await self.teardown()
            state = "stopped" if code == 0 and not oom else "crashed"
            self.save(state=state, exit_code=code, reason=reason, stopped_ms=wall_clock_ms())
            return 0
        self.log(f"stop requested: {self.stop_reason}")
        await self.teardown()
        # Like terminating a Nitro enclave: the app is killed, which is not its exit code.
        self.save(
            state="stopped", exit_code=None, reason=self.stop_reason, stopped_ms=wall_clock_ms()
        )
        return 0

    async def teardown(self) -> None:
        """Kill everything this enclave started and undo its namespace, groups and secrets."""
        if self.seccomp is not None and self.app is None:
            # A boot that failed before the app started: the program's fd is still ours.
            with contextlib.suppress(Exception):
                os.close(await self.seccomp)
        if self.app is not None and self.app.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.app.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.app.wait(), 5)
        if self.limits is not None:
            left = await asyncio.to_thread(self.limits.kill_all)
            if left:
                self.log(f"processes that would not die: {left}")
        if self.pump is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self.pump, 2)
        if self.console is not None:
            self.console.close()
        for server in reversed(self.servers):
            await server.aclose()
        self.servers.clear()
        if self.netns is not None:
            self.netns.delete()
        if self.firewall is not None:
            firewall, gid, published, allowed = self.firewall
            await asyncio.to_thread(firewall.forget, gid, published=published, allowed=allowed)
        if self.pasta is not None and self.pasta.returncode is None:
            self._signal_pasta(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.pasta.wait(), 5)
            except TimeoutError:
                self._signal_pasta(signal.SIGKILL)
                await self.pasta.wait()
        if self.pasta_pidfd is not None:
            os.close(self.pasta_pidfd)
            self.pasta_pidfd = None
        if self.limits is not None:
            await asyncio.to_thread(self.limits.cleanup)
        if self.state_volume is not None:
            await asyncio.to_thread(self.state_volume.close)
        for name in SECRET_FILES:
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / "app" / name).unlink()
        # Opened secret init params must not outlive the enclave.
        if self.secret_params:
            shutil.rmtree(self.run_dir / "init-params", ignore_errors=True)


class _TrustedBaseLog(logging.Handler):
    """The supervisor's log records, in a :class:`RotatingFile` of the run directory.

    Its servers leave their loggers to the program (``Server(uvicorn_logging=False)``): without
    a handler, every record went to stderr (``supervisor.out``), one line per refusal the app
    provoked, on the host's disk and without bound.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(logging.WARNING)
        self.file = RotatingFile(path, TRUSTED_BASE_LOG_BYTES)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.file.write((self.format(record) + "\n").encode(errors="replace"))
        except Exception:
            self.handleError(record)


def _log_to(run_dir: Path) -> None:
    """Send this process's log records to the run directory's bounded trusted-base log."""
    root = logging.getLogger()
    root.addHandler(_TrustedBaseLog(run_dir / TRUSTED_BASE_LOG))
    root.setLevel(logging.WARNING)


async def _warm_up(app: Any, path: str) -> None:
    """One ``GET path`` through the ASGI ``app``, its answer dropped."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Mapping[str, Any]) -> None:
        return None

    await app(scope, receive, send)


def _fresh_keys() -> dict[str, bytes]:
    """A boot's identity keys, as the files under ``/app``: X25519 ``id.{sec,pub}`` (the secret
    clamped, by :func:`reef.crypto.generate_x25519`) and secp256k1 ``ecdsa.{sec,pub}`` (the
    public key as ``x || y``).

    The secp256k1 pair is made with cryptography, which the trusted base loads anyway for its
    attestations, rather than with coincurve (reef.crypto's secp256k1), which would add about
    1 MiB to the supervisor's memory for this one key pair.
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    from reef.crypto import generate_x25519

    x_secret, x_public = generate_x25519()
    ecdsa = ec.generate_private_key(ec.SECP256K1())
    point = ecdsa.public_key().public_numbers()
    return {
        "id.sec": x_secret,
        "id.pub": x_public,
        "ecdsa.sec": ecdsa.private_numbers().private_value.to_bytes(32, "big"),
        "ecdsa.pub": point.x.to_bytes(32, "big") + point.y.to_bytes(32, "big"),
    }


def _load_trusted_base() -> None:
    """Import what the trusted base's keys, servers and attestation need, the seccomp builder,
    and what serving a first request loads (``main`` calls it before it forks)."""
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: F401

    import reef._serve
    import reef.attestation._dev
    import reef.attestation._server
    import reef.crypto._curve25519
    import reef.enclave.local._seccomp  # noqa: F401

    # Other packages' private modules, loaded on first use otherwise: a missing one (after an
    # upgrade, say) only means it loads then.
    for name in _FIRST_REQUEST_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


_FIRST_REQUEST_MODULES = (
    "anyio._backends._asyncio",
    "cryptography.hazmat.backends.openssl.backend",
    "uvicorn.lifespan.off",
)


def _own_tree(root: Path, uid: int) -> None:
    """Make ``root`` and everything in it belong to ``uid`` (links themselves, never followed).

    This runs as root on the host while another enclave of the same image may be running, and
    /state is shared: its app can swap a directory for a link to any host path at any moment.
    So no path is ever resolved from ``root``: ``os.fwalk`` opens each directory relative to its
    parent's descriptor and descends only if it is the directory it listed, and every entry is
    stat-ed and chown-ed by name relative to its directory's descriptor, without following it.
    (A walk by path listed a directory, then went through the link it had become: the host's
    files were chowned to the app's user.) Entries that vanish meanwhile are skipped.
    """
    st = os.lstat(root)
    if st.st_uid != uid or st.st_gid != uid:
        os.lchown(root, uid, uid)
    for _, dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if st.st_uid != uid or st.st_gid != uid:
                    os.chown(name, uid, uid, dir_fd=dir_fd, follow_symlinks=False)


def _has_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _signal_name(number: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(number).name
    return str(number)


_UVICORN_NAMES = {
    "Config": "config",
    "Server": "server",
    "__version__": "_version",
    "main": "main",
    "run": "main",
}
"""What ``import uvicorn`` provides, by the submodule that defines it (see ``main``)."""

_SCALLOP_NAMES = {
    "connect": "_handshake",
    "handshake_client": "_handshake",
    "handshake_server": "_handshake",
    "ScallopTransport": "_http",
    "asgi_handler": "_http",
    "scallop_peer": "_http",
    "serve_asgi": "_http",
    "Approved": "_policy",
    "AuthStore": "_policy",
    "Auther": "_policy",
    "ContainsResponse": "_policy",
    "NotFound": "_policy",
    "PeerPolicy": "_policy",
    "PinnedKeys": "_policy",
    "PolicyStore": "_policy",
    "Rejected": "_policy",
    "auther_from_url": "_policy",
    "ScallopResponse": "_request",
    "scallop_request": "_request",
    "ScallopServer": "_server",
    "connection_peer": "_server",
    "serve": "_server",
    "AuthKind": "_stream",
    "ScallopPeer": "_stream",
    "ScallopStream": "_stream",
}
"""What ``import reef.scallop`` provides, by its submodule (see ``_lean_imports``)."""

_DEFERRED = (
    # uvicorn.config imports it for its own log formats, which the trusted base's servers do
    # without (Server(uvicorn_logging=False)); with logging.handlers, pickle, socketserver.
    "logging.config",
    # Starlette's HTTPException names a status from it, when it has no detail of its own: the
    # first such answer loads it (with email's parser and message classes).
    "http.client",
    # html.escape (and html.entities' tables): only Starlette's debug error page uses them.
    "html",
    # uvicorn's signal capture (which the floor's embedded server replaces) and Starlette's
    # FileResponse (which no trusted-base app sends) use these.
    "platform",
    "mimetypes",
)
"""Modules the trusted base's libraries import but serving an enclave never or seldom calls:
imported as placeholders whose code runs when first used (reef._lazy.defer_import). About
1.5 MiB of the supervisor's memory."""


def _lean_imports() -> None:
    """Keep out of this process what the trusted base's libraries import but it never uses."""
    # httpx's package init imports its optional command line (click, rich, pygments: some 80
    # modules and 3 MiB) whenever they are installed, as they are for reef's own CLI. The
    # trusted base does not use httpx (its KMS seed request goes without): should a library
    # import it all the same, tell Python the CLI is absent.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    # uvicorn's package init imports its command line too (uvicorn.main: click, multiprocessing,
    # the reloaders; about 1.6 MiB): the serving floor uses its config, server and protocol
    # modules only, which import as usual; its top-level names load from them if ever asked.
    without_init("uvicorn", _UVICORN_NAMES)
    # reef.scallop's package init loads its httpx transport (httpx, h11, idna, the email parser:
    # about 2 MiB). A supervisor wired to a KMS uses its handshake and stream modules only (the
    # seed request is written by hand: reef.kms._scallop), which import as usual.
    without_init("reef.scallop", _SCALLOP_NAMES)
    _ssl_on_demand()
    for name in _DEFERRED:
        defer_import(name)


class _UnloadedSSLContext:
    """Stands for ``ssl.SSLContext`` in anyio.streams.tls, which imports the name for its type
    annotations only; no instance exists (one would need ssl loaded)."""


_SSL_NAMES: dict[str, object] = {
    # uvicorn.config's module constant and a default argument (tests/enclave checks the values).
    "PROTOCOL_TLS_SERVER": 17,
    "CERT_NONE": 0,
    "SSLContext": _UnloadedSSLContext,
}
"""What the trusted base's libraries read from ssl when imported, until it loads."""


def _ssl_on_demand() -> None:
    """In a supervisor process, let ssl load only when something uses it (nothing in the trusted
    base does: it speaks plain HTTP, and Scallop to a KMS). ``main``'s module blocked ssl before
    importing asyncio, which then runs without TLS support, as in a Python built without ssl:
    ssl's import loads libssl and libcrypto and initialises OpenSSL, about 1.3 MiB of private
    memory (cryptography links its own OpenSSL, which the trusted base does use). uvicorn.config
    and anyio.streams.tls import ssl and read two constants and a class name from it: ssl is
    registered deferred (reef._lazy) with those set (_SSL_NAMES), and any other name asked
    loads the real module in full, which replaces them."""
    if "ssl" not in sys.modules or sys.modules["ssl"] is not None:
        return  # loaded already (asyncio imported ssl), or not blocked: nothing to do
    del sys.modules["ssl"]
    if defer_import("ssl"):
        vars(sys.modules["ssl"]).update(_SSL_NAMES)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m reef.enclave.local._supervisor RUN_DIR [READY_FD]``, or
    ``... --spare GO_FD READY_FD`` for a spare that loads first and boots the run directory it
    is then given (a line on GO_FD; end of file: exit)."""
    _lean_imports()
    args = sys.argv[1:] if argv is None else argv
    spare = args[:1] == ["--spare"] and len(args) == 3
    if not args or (args[0] == "--spare" and not spare):
        sys.stderr.write(
            "usage: python -m reef.enclave.local._supervisor RUN_DIR [READY_FD]\n"
            "       python -m reef.enclave.local._supervisor --spare GO_FD READY_FD\n"
        )
        return 2
    # The trusted base's code (servers, attestation stack, keys: most of a boot's CPU) loads
    # now, before the fork, single-threaded: the supervisor (the child) then keeps only the pages
    # of the libraries' files it touches again, since a fork does not copy a file mapping's page
    # table; loaded by the supervisor itself, import-time code stayed resident for the enclave's
    # life (about 2 MiB). A spare loads it before it is needed. (Loaded in a thread during the
    # boot instead, it overlapped `ip` and pasta by about 20 ms of its 140.)
    _load_trusted_base()
    # Detach from whoever started us (before any thread exists): the starter reaps its child at
    # once and never holds a process handle on a long-lived enclave; a session of our own makes
    # the supervisor the leader of the process group `stop` kills.
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if spare:
        given = _await_run_dir(int(args[1]))
        if given is None:
            return 0  # its backend closed, or went away
        run_dir = given
        ready_fd: int | None = int(args[2])
        os.chdir(run_dir)
        with (run_dir / "supervisor.out").open("ab") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
    else:
        run_dir = Path(args[0])
        ready_fd = int(args[1]) if len(args) > 1 else None
    _log_to(run_dir)
    supervisor = Supervisor(run_dir, ready_fd)
    return asyncio.run(supervisor.run())


def _await_run_dir(go_fd: int) -> Path | None:
    """The run directory a spare is given (one line on ``go_fd``); None at end of file."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(go_fd, 4096)
        if not chunk:
            return None
        data += chunk
    os.close(go_fd)
    return Path(data[:-1].decode())


if __name__ == "__main__":
    sys.exit(main())
