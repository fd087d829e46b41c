"""The sandbox an enclave's app runs in: bubblewrap, with nothing of the host but a read-only runtime.

Inside, the app sees (all read-only unless noted):

==================  ============================================================================
``/image``          the image, extracted; the working directory
``/app``            Oyster's boot files: ``id.sec``/``id.pub`` (X25519), ``ecdsa.sec``/``ecdsa.pub``
                    (secp256k1, public key 64 bytes), ``init-params`` and ``init-params-digest``
``/init-params/``   the decoded init params (secrets opened when the enclave has a KMS)
``/tmp``            a private tmpfs (writable, gone with the enclave)
``/state``          writable, kept across restarts, one per image id (``$REEF_STATE_DIR``): the
                    host's disk, as untrusted as a Nitro host's, so only sealed data belongs there
system runtime      ``/usr``, ``/bin``, ``/lib*``, ``/sbin``, a few ``/etc`` files (users, DNS,
                    TLS roots), and the Python runtime reef runs on with reef importable
==================  ============================================================================

and its own PID, IPC, UTS and cgroup namespaces (``--unshare-pid`` also means that killing the
sandbox's init kills every process the app started). Nothing else of the host's file system is
visible: not ``$REEF_HOME`` (so not the dev TEE's root key), not the user's files.

The app itself is a stranger's code: it runs as an unprivileged host user of its image's own
(:func:`reef.enclave.local._firewall.app_uid`), inside a user namespace of its own, with no capabilities
(effective, permitted, bounding and ambient sets empty), ``no_new_privs``, no further user
namespaces, and the seccomp filter of :mod:`reef.enclave.local._seccomp`. Its ``/tmp`` has a size
limit; its processes are bounded by the enclave's ``pids`` control group.

:func:`bwrap_argv` is pure so that the exact policy is testable and documented in one place.
"""

# ruff: noqa: S108  (/tmp here is the sandbox's own private tmpfs, not the host's)
from __future__ import annotations

import os
import posixpath
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reef.enclave._backend import DEFAULT_TMP_MIB
from reef.errors import ImageError

__all__ = [
    "IMAGE_MOUNT",
    "SANDBOX_PATH",
    "SANDBOX_UID",
    "SECRET_FILES",
    "STATE_MOUNT",
    "Confinement",
    "SandboxLayout",
    "bwrap_argv",
    "python_runtime_paths",
    "resolve_command",
]

IMAGE_MOUNT = "/image"
APP_MOUNT = "/app"
INIT_PARAMS_MOUNT = "/init-params"
STATE_MOUNT = "/state"
# The app's user inside its user namespace (mapped to its unprivileged host user).
SANDBOX_UID = 1000
# The per-boot secret keys in /app, deleted when the enclave ends.
SECRET_FILES = ("id.sec", "ecdsa.sec")
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/mime.types",
)


def _venv_bin() -> str:
    return str(Path(sys.prefix) / "bin")


SANDBOX_PATH = f"{_venv_bin()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def python_runtime_paths() -> tuple[str, ...]:
    """Host paths that make reef's own Python (and reef) importable inside, read-only.

    The virtualenv, the interpreter it points at, and the directory holding the ``reef`` package
    (an editable install points outside site-packages). Only the ``reef`` package itself is bound
    from that directory, not its neighbours.
    """
    import reef

    paths: list[str] = []
    for candidate in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        for form in (candidate, os.path.realpath(candidate)):
            if form and form not in paths and not _covered(form, paths):
                paths.append(form)
    package = str(Path(reef.__file__).resolve().parent)
    if not _covered(package, paths):
        paths.append(package)
    return tuple(paths)


def _covered(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


@dataclass(frozen=True)
class Confinement:
    """Who the app runs as and what bounds it, beyond the file system.

    Attributes:
        uid: the unprivileged host user (and group) the app runs as.
        seccomp_fd: an inherited file descriptor holding the seccomp BPF program.
        tmp_bytes: the size of the private ``/tmp``.
    """

    uid: int
    seccomp_fd: int
    tmp_bytes: int = DEFAULT_TMP_MIB * 1024 * 1024


@dataclass(frozen=True)
class SandboxLayout:
    """Host directories the sandbox shows the app."""

    image: Path
    app: Path
    init_params: Path | None = None
    state: Path | None = None


def resolve_command(command: Sequence[str], image: Path, runtime: Sequence[str]) -> str:
    """Check that the command exists as the sandbox will see it; return its sandbox path.

    A command with a ``/`` is relative to ``/image`` (or absolute inside the sandbox); a bare name
    is looked up on the sandbox's ``PATH``. The host paths the sandbox binds are the same paths
    inside, so the lookup runs on the host.

    Raises:
        ImageError: when the command does not exist there or is not executable.
    """
    program = command[0]
    if "/" in program:
        # The path as the sandbox resolves it, then the host file behind it, which must be one
        # the sandbox shows: a command climbing out of /image (../..), or through a chain of the
        # image's links that leaves it on the host, was checked against the host's own files,
        # as root, and the answer told the image's author whether they exist.
        inside = posixpath.normpath(
            program if program.startswith("/") else f"{IMAGE_MOUNT}/{program}"
        )
        host = _host_path(inside, image, runtime)
        if host is not None and not _shown(host, image, runtime):
            host = None
        if host is None or not host.is_file():
            raise ImageError(
                f"the image's command {program!r} does not exist in the enclave",
                hint="relative commands are looked up in the image; fix `command` in reef.toml",
            )
        if not os.access(host, os.X_OK):
            raise ImageError(
                f"the image's command {program!r} is not executable",
                hint="set its execute bit (chmod +x) before `reef image build`",
            )
        return inside
    for directory in SANDBOX_PATH.split(":"):
        host_dir = _host_path(directory, image, runtime)
        if host_dir is None:
            continue
        candidate = host_dir / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return f"{directory}/{program}"
    raise ImageError(
        f"the image's command {program!r} is not found in the enclave",
        hint=f"the enclave's PATH is {SANDBOX_PATH}; or give a path inside the image (./run.sh)",
    )


def _shown(host: Path, image: Path, runtime: Sequence[str]) -> bool:
    """Whether ``host``, its links resolved on the host, lies in what the sandbox shows."""
    roots = [os.path.realpath(p) for p in (str(image), *_SYSTEM_DIRS, *runtime)]
    return _covered(os.path.realpath(host), roots)


def _host_path(inside: str, image: Path, runtime: Sequence[str]) -> Path | None:
    """The host path behind a sandbox path, or None when the sandbox does not show it."""
    if inside == IMAGE_MOUNT or inside.startswith(IMAGE_MOUNT + "/"):
        return image / inside[len(IMAGE_MOUNT) + 1 :]
    if _covered(inside, _SYSTEM_DIRS) or _covered(inside, runtime):
        return Path(inside)
    return None


def bwrap_argv(
    layout: SandboxLayout,
    command: Sequence[str],
    *,
    runtime: Sequence[str],
    confinement: Confinement,
    hostname: str = "enclave",
    bwrap: str = "bwrap",
) -> list[str]:
    """The command line that runs an app in its sandbox (its environment is given to ``Popen``).

    Two bubblewrap stages, because no single one can do both halves:

    1. as root: the file system (every bind below, including paths only root can traverse, such
       as a Python runtime under ``/root``), a size-limited ``/tmp``, and the PID, IPC, UTS and
       cgroup namespaces;
    2. ``setpriv`` drops to the image's own unprivileged host user (``confinement.uid``), and an
       unprivileged bubblewrap puts the app in a user namespace of its own (uid 1000 inside) with
       no capabilities, no further user namespaces, ``no_new_privs`` and the seccomp filter
       (read from ``confinement.seccomp_fd``, an inherited file descriptor).
    """
    argv = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        hostname,
        # The private /tmp comes first: bubblewrap mounts in order, and a runtime or checkout that
        # lives under the host's /tmp must be bound on top of it, not hidden beneath it.
        "--perms",
        "1777",
        "--size",
        str(confinement.tmp_bytes),
        "--tmpfs",
        "/tmp",
    ]
    # bubblewrap makes the parents of a bind mode 0700 (root's); the app's user must traverse them.
    parents: list[str] = []
    for dest in (*_ETC_FILES, *runtime, "/var/tmp"):
        for parent in reversed(Path(dest).parents):
            if str(parent) != "/" and str(parent) not in parents:
                parents.append(str(parent))
    for parent_dir in parents:
        if not _covered(parent_dir, _SYSTEM_DIRS):
            argv += ["--perms", "0755", "--dir", parent_dir]
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            argv += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            argv += ["--ro-bind", directory, directory]
    for entry in _ETC_FILES:
        argv += ["--ro-bind-try", entry, entry]
    for path in runtime:
        real = os.path.realpath(path)
        argv += ["--ro-bind", real, path]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--dir",
        "/var/tmp",
        "--ro-bind",
        str(layout.image),
        IMAGE_MOUNT,
        "--ro-bind",
        str(layout.app),
        APP_MOUNT,
    ]
    if layout.init_params is not None:
        argv += ["--ro-bind", str(layout.init_params), INIT_PARAMS_MOUNT]
    if layout.state is not None:
        argv += ["--bind", str(layout.state), STATE_MOUNT]
    uid = str(confinement.uid)
    argv += [
        "--",
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--",
        bwrap,
        "--unshare-user",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--disable-userns",
        "--assert-userns-disabled",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--seccomp",
        str(confinement.seccomp_fd),
        # --dev-bind: a plain bind inside a user namespace is nodev, and /dev/null with it.
        "--dev-bind",
        "/",
        "/",
        "--chdir",
        IMAGE_MOUNT,
        "--",
        *command,
    ]
    return argv


def sandbox_environment(env: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The app's environment: reef.toml's ``env`` over a small fixed base, plus ``REEF_*``."""
    base = {
        "PATH": SANDBOX_PATH,
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    return {**base, **env, **extra}
