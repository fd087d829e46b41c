"""The dev TEE's pure pieces: cgroup detection, sandbox policy, pasta's port map, sealing, console."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pytest

from reef.attestation import attestation_url
from reef.cli._enclave import parse_port
from reef.enclave import DevTeeSealer, dev_seal, dev_unseal
from reef.enclave.local._limits import CgroupLayout, Limits, detect_cgroups
from reef.enclave.local._network import pasta_argv
from reef.enclave.local._sandbox import (
    IMAGE_MOUNT,
    Confinement,
    SandboxLayout,
    bwrap_argv,
    python_runtime_paths,
    resolve_command,
)
from reef.enclave.local._trusted_base import Console, console_app, sealing_app
from reef.errors import ImageError, InputError, KMSError

# -- control groups ------------------------------------------------------------------------------

V1_CGROUP = """12:pids:/
4:memory:/process_api/abc
1:cpu,cpuacct:/
0::/
"""
V1_MOUNTS = """30 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
32 25 0:29 / /sys/fs/cgroup/pids rw,relatime shared:11 - cgroup cgroup rw,pids
33 25 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_detects_cgroup_v1_hierarchies_under_our_own_groups() -> None:
    layout = detect_cgroups(V1_CGROUP, V1_MOUNTS)
    assert layout.v2 is None  # the unified mount has no memory controller here
    assert layout.v1 == {
        "memory": Path("/sys/fs/cgroup/memory/process_api/abc"),
        "cpu": Path("/sys/fs/cgroup/cpu,cpuacct"),
        "pids": Path("/sys/fs/cgroup/pids"),
    }


def test_detects_cgroup_v2(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mounts = f"30 25 0:27 / {tmp_path} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    layout = detect_cgroups("0::/user.slice/reef.scope\n", mounts)
    assert layout.v2 == tmp_path / "user.slice" / "reef.scope"
    assert layout.v1 == {}


def _fake_v1(root: Path) -> CgroupLayout:
    hierarchies = {}
    for name in ("memory", "cpu", "pids"):
        path = root / name / "own"
        path.mkdir(parents=True)
        hierarchies[name] = path
    return CgroupLayout(v1=hierarchies)


def test_cgroup_v1_limits_are_written(tmp_path: Path) -> None:
    # A fake hierarchy: plain directories accept the same writes a cgroupfs would.
    limits = Limits.prepare(
        "e1", memory_mib=64, cpus=1, layout=_fake_v1(tmp_path), available_cpus=[0, 1]
    )
    assert limits.method == "cgroup1"
    memory = tmp_path / "memory" / "own" / "reef-e1"
    assert (memory / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (tmp_path / "cpu" / "own" / "reef-e1" / "cpu.cfs_quota_us").read_text() == "100000"
    assert (tmp_path / "pids" / "own" / "reef-e1" / "pids.max").read_text() == "512"
    assert limits.affinity == ()  # the CPU quota does the job
    # The supervisor and pasta get half a CPU per vCPU, in the cpu hierarchy only.
    helpers = tmp_path / "cpu" / "own" / "reef-e1-helpers"
    assert limits.helper_groups == (helpers,)
    assert (helpers / "cpu.cfs_quota_us").read_text() == "50000"
    assert not (tmp_path / "memory" / "own" / "reef-e1-helpers").exists()
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert limits.oom_killed()


def test_a_later_process_cleans_up_from_the_description(tmp_path: Path) -> None:
    limits = Limits.prepare(
        "e4", memory_mib=64, cpus=1, layout=_fake_v1(tmp_path), available_cpus=[0, 1]
    )
    described = json.loads(json.dumps(limits.describe()))  # as state.json keeps it
    assert Limits.from_description(described) == limits
    assert Limits.from_description({}).groups == ()  # a supervisor that died before any


def test_cgroup_v2_limits_are_written(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "cgroup.subtree_control").write_text("memory cpu pids")
    limits = Limits.prepare(
        "e2", memory_mib=32, cpus=2, layout=CgroupLayout(v2=own), available_cpus=[0, 1]
    )
    assert limits.method == "cgroup2"
    group = own / "reef-e2"
    assert (group / "memory.max").read_text() == str(32 << 20)
    assert (group / "cpu.max").read_text() == "200000 100000"
    assert limits.helper_groups == (own / "reef-e2-helpers",)
    assert (own / "reef-e2-helpers" / "cpu.max").read_text() == "100000 100000"
    assert not limits.oom_killed()
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert limits.oom_killed()


def test_falls_back_to_rlimits_and_affinity(tmp_path: Path) -> None:
    limits = Limits.prepare(
        "e3", memory_mib=64, cpus=1, layout=CgroupLayout(), available_cpus=[2, 3]
    )
    assert limits.method == "rlimit"
    assert limits.affinity == (2,)
    assert limits.groups == ()
    assert any("RLIMIT_AS" in note for note in limits.notes)


def test_too_many_vcpus_are_refused() -> None:
    with pytest.raises(InputError, match="vCPUs"):
        Limits.prepare("e4", memory_mib=64, cpus=3, layout=CgroupLayout(), available_cpus=[0, 1])


# -- sandbox policy ------------------------------------------------------------------------------


CONF = Confinement(uid=1234567, seccomp_fd=9, tmp_bytes=32 << 20)


def test_bwrap_argv_binds_only_what_it_should(tmp_path: Path) -> None:
    layout = SandboxLayout(tmp_path / "image", tmp_path / "app", tmp_path / "params")
    runtime = python_runtime_paths()
    argv = bwrap_argv(
        layout, ["python3", "server.py"], runtime=runtime, hostname="enclave-x", confinement=CONF
    )
    assert argv[0] == "bwrap"
    assert argv[-3:] == ["--", "python3", "server.py"]
    # Stage 2: the app's own unprivileged user, a user namespace, no capabilities, seccomp.
    split = argv.index("setpriv")
    argv, stage2 = argv[:split], argv[split:]
    assert stage2[:4] == ["setpriv", "--reuid=1234567", "--regid=1234567", "--clear-groups"]
    for flag in ("--unshare-user", "--disable-userns", "--die-with-parent"):
        assert flag in stage2
    assert stage2[stage2.index("--cap-drop") + 1] == "ALL"
    assert stage2[stage2.index("--seccomp") + 1] == "9"
    assert stage2[stage2.index("--uid") + 1] == "1000"
    assert stage2[stage2.index("--chdir") + 1] == IMAGE_MOUNT
    for flag in ("--die-with-parent", "--unshare-pid", "--unshare-ipc", "--new-session"):
        assert flag in argv
    binds = [(argv[i], argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a.startswith("--")
             and a in ("--bind", "--ro-bind", "--ro-bind-try", "--bind-try")]  # fmt: skip
    # Nothing is bound writable, and $HOME or / are never bound.
    assert all(kind != "--bind" and kind != "--bind-try" for kind, _, _ in binds)
    targets = {dest for _, _, dest in binds}
    assert {IMAGE_MOUNT, "/app", "/init-params"} <= targets
    assert "/" not in targets
    assert str(Path.home()) not in targets
    assert argv[argv.index("--tmpfs") + 1] == "/tmp"
    assert argv[argv.index("--tmpfs") - 1] == str(CONF.tmp_bytes)  # --size of the /tmp


def test_a_runtime_under_tmp_is_bound_over_the_private_tmp(tmp_path: Path) -> None:
    # A checkout (and its editable install) may live under the host's /tmp, as in CI: its bind
    # must come after the private /tmp is mounted, or the tmpfs hides it from the app.
    layout = SandboxLayout(tmp_path / "image", tmp_path / "app")
    runtime = ["/tmp/checkout/src", *python_runtime_paths()]
    argv = bwrap_argv(layout, ["python3"], runtime=runtime, confinement=CONF)
    tmpfs = argv.index("--tmpfs")
    assert argv[tmpfs + 1] == "/tmp"
    bind = argv.index("/tmp/checkout/src")
    assert argv[bind - 1] == "--ro-bind"
    assert tmpfs < bind


def test_only_the_state_directory_is_writable(tmp_path: Path) -> None:
    layout = SandboxLayout(tmp_path / "image", tmp_path / "app", None, tmp_path / "state")
    argv = bwrap_argv(layout, ["python3"], runtime=python_runtime_paths(), confinement=CONF)
    writable = [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == "--bind"]
    assert writable == [(str(tmp_path / "state"), "/state")]


def test_resolve_command(tmp_path: Path) -> None:
    image = tmp_path / "image"
    image.mkdir()
    (image / "run.sh").write_text("#!/bin/sh\n")
    (image / "run.sh").chmod(0o755)
    (image / "data.txt").write_text("x")
    runtime = python_runtime_paths()
    assert resolve_command(["./run.sh"], image, runtime) == "/image/run.sh"
    assert resolve_command(["python3", "x"], image, runtime).endswith("/python3")
    assert resolve_command(["sh", "-c", "true"], image, runtime) in ("/usr/bin/sh", "/bin/sh")
    with pytest.raises(ImageError, match="not executable"):
        resolve_command(["./data.txt"], image, runtime)
    with pytest.raises(ImageError, match="does not exist"):
        resolve_command(["./missing"], image, runtime)
    with pytest.raises(ImageError, match="not found"):
        resolve_command(["no-such-program-anywhere"], image, runtime)
    # A host path the sandbox does not show is not a command inside it.
    with pytest.raises(ImageError, match="does not exist"):
        resolve_command([str(image / "run.sh")], image, runtime)


def test_pasta_maps_each_port_on_loopback(tmp_path: Path) -> None:
    argv = pasta_argv("reef-x", [(40001, 1300), (40002, 8080)], pid_file=tmp_path / "p", gid=77)
    assert argv[argv.index("--netns") + 1] == "reef-x"
    # Root (to enter the namespace), with the enclave's own group for the host firewall.
    assert argv[argv.index("--runas") + 1] == "0:77"
    forwards = [argv[i + 1] for i, a in enumerate(argv) if a == "--tcp-ports"]
    assert forwards == ["127.0.0.1/40001:1300", "127.0.0.1/40002:8080"]
    assert argv[argv.index("--udp-ports") + 1] == "none"
    assert argv[argv.index("--tcp-ns") + 1] == "none"


# -- sealing -------------------------------------------------------------------------------------

KEY = bytes(range(32))
IMAGE = b"\x11" * 32


def test_sealing_binds_key_and_image_id() -> None:
    blob = dev_seal(KEY, IMAGE, b"root seed", nonce=b"\x00" * 12)
    assert blob[0] == 1
    assert len(blob) == 1 + 12 + len(b"root seed") + 16
    assert dev_unseal(KEY, IMAGE, blob) == b"root seed"
    with pytest.raises(InputError, match="does not open"):
        dev_unseal(KEY, b"\x22" * 32, blob)
    with pytest.raises(InputError, match="does not open"):
        dev_unseal(bytes(32), IMAGE, blob)
    with pytest.raises(InputError, match="not a dev-TEE sealed blob"):
        dev_unseal(KEY, IMAGE, b"\x02" + blob[1:])
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(InputError):
        dev_unseal(KEY, IMAGE, bytes(tampered))


async def test_sealing_service_and_client() -> None:
    app = sealing_app(KEY, IMAGE)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://e"
    ) as http:
        sealed = (await http.post("/seal", content=b"secret")).content
        assert dev_unseal(KEY, IMAGE, sealed) == b"secret"
        assert (await http.post("/unseal", content=sealed)).content == b"secret"
        bad = await http.post("/unseal", content=b"\x01" + bytes(40))
        assert bad.status_code == 400
        big = await http.post("/seal", content=bytes((1 << 20) + 1))
        assert big.status_code == 413
        assert (await http.get("/seal")).status_code == 405

    # The synchronous client (a reef.kms.Sealer) over a transport that runs the same logic.
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/seal":
            return httpx.Response(200, content=dev_seal(KEY, IMAGE, request.content))
        try:
            return httpx.Response(200, content=dev_unseal(KEY, IMAGE, request.content))
        except InputError as exc:
            return httpx.Response(400, text=str(exc))

    sealer = DevTeeSealer("http://127.0.0.1:1210", transport=httpx.MockTransport(handler))
    assert sealer.unseal(sealer.seal(b"x")) == b"x"
    with pytest.raises(KMSError, match="does not open"):
        sealer.unseal(b"\x01" + bytes(40))
    from reef.kms import Sealer

    assert isinstance(sealer, Sealer)


def test_sealer_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REEF_SEALING_URL", "http://127.0.0.1:5555/")
    assert DevTeeSealer().url == "http://127.0.0.1:5555"
    monkeypatch.delenv("REEF_SEALING_URL")
    assert DevTeeSealer().url == "http://127.0.0.1:1210"


# -- console -------------------------------------------------------------------------------------


async def test_console_history_tail_and_stream(tmp_path: Path) -> None:
    console = Console(tmp_path / "console.log", keep=3)
    for n in range(5):
        console.append(f"line {n}")
    assert (tmp_path / "console.log").read_text().splitlines()[0] == "line 0"
    assert console.last_id == 4
    assert [e["log_id"] for e in console.history(None, 10)] == [2, 3, 4]  # only 3 kept
    assert console.history(3, 1) == [{"log_id": 3, "line": "line 3"}]
    app = console_app(console)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://h"
    ) as http:
        assert (await http.get("/logs/tail-log-id")).json() == {"log_id": 4}
        history = (await http.get("/logs/history", params={"log_id": 4, "offset": 2})).json()
        assert [e["line"] for e in history] == ["line 3", "line 4"]
        assert (await http.get("/logs/history", params={"offset": "x"})).status_code == 400

    got: list[tuple[int, str]] = []

    async def follow() -> None:
        async for item in console.follow(3):
            got.append(item)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.01)
    console.append("line 5")
    await asyncio.sleep(0.01)
    console.close()
    await asyncio.wait_for(task, 1)
    assert got == [(3, "line 3"), (4, "line 4"), (5, "line 5")]


# -- CLI parsing ---------------------------------------------------------------------------------


def test_port_and_endpoint_parsing() -> None:
    assert parse_port("8080") == (8080, 0)
    assert parse_port("18080:8080") == (8080, 18080)
    for bad in ("x", "1:2:3", "0", "70000", "-1:80"):
        with pytest.raises(InputError):
            parse_port(bad)
    assert attestation_url("127.0.0.1:1300") == "http://127.0.0.1:1300/attestation/raw"
    assert attestation_url("http://h:1/") == "http://h:1/attestation/raw"
    assert attestation_url("https://h/attestation/hex") == "https://h/attestation/hex"
    with pytest.raises(InputError):
        attestation_url("ftp://h")
    with pytest.raises(InputError):
        attestation_url(" ")


async def test_an_unknown_enclave_is_a_clear_error(tmp_path: Path) -> None:
    from reef.enclave import EnclaveSpec, LocalBackend
    from reef.errors import EnclaveError
    from reef.home import ReefHome

    backend = LocalBackend(ReefHome(tmp_path))
    with pytest.raises(EnclaveError, match="no enclave 0123456789ab"):
        await backend.update("0123456789ab", EnclaveSpec(image=tmp_path / "x.img"))
    with pytest.raises(EnclaveError, match="no enclave 0123456789ab"):
        await backend.status("0123456789ab")


def test_state_files_are_json(tmp_path: Path) -> None:
    from reef.enclave.local._supervisor import write_json

    write_json(tmp_path / "state.json", {"a": 1})
    assert json.loads((tmp_path / "state.json").read_text()) == {"a": 1}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_console_lines_are_split_and_bounded() -> None:
    from reef.enclave.local._trusted_base import MAX_CONSOLE_LINE, split_console

    assert split_console(b"a\nb\r\nc") == (["a", "b"], b"c")
    assert split_console(b"a\n\nb\n") == (["a", "", "b"], b"")
    assert split_console(b"tail", final=True) == (["tail"], b"")
    big = b"x" * (2 * MAX_CONSOLE_LINE + 5)
    lines, rest = split_console(big)
    assert lines == ["x" * MAX_CONSOLE_LINE] * 2
    assert rest == b"x" * 5
    lines, rest = split_console(big + b"\n")
    assert [len(line) for line in lines] == [MAX_CONSOLE_LINE, MAX_CONSOLE_LINE, 5]
    assert rest == b""
    assert split_console("é".encode() + b"\n") == (["é"], b"")


def test_a_boots_identity_keys_are_pairs_as_reef_crypto_makes_them() -> None:
    # The supervisor makes them with cryptography; coincurve and reef's X25519 check them.
    from reef.crypto import Secp256k1PrivateKey, clamp_x25519, x25519_public_key
    from reef.enclave.local._supervisor import _fresh_keys

    first, second = _fresh_keys(), _fresh_keys()
    assert sorted(first) == ["ecdsa.pub", "ecdsa.sec", "id.pub", "id.sec"]
    for keys in (first, second):
        assert len(keys["id.sec"]) == 32
        assert clamp_x25519(keys["id.sec"]) == keys["id.sec"]
        assert x25519_public_key(keys["id.sec"]) == keys["id.pub"]
        assert Secp256k1PrivateKey(keys["ecdsa.sec"]).public_key.raw == keys["ecdsa.pub"]
    assert first["id.sec"] != second["id.sec"]
    assert first["ecdsa.sec"] != second["ecdsa.sec"]
