"""Images: deterministic archives, the documented measurement recipe, strict reading."""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import os
import random
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reef
from reef.attestation import image_id as oyster_image_id
from reef.enclave import (
    RUNTIME_MODULES,
    InitParam,
    InitParams,
    Manifest,
    attested_measurements,
    build_image,
    extend_pcr,
    load_image,
    runtime_measurement,
)
from reef.errors import ImageError

MANIFEST = b'name = "hello"\ncommand = ["python3", "server.py"]\nports = [8080]\n[env]\nA = "1"\n'
FILES: dict[str, tuple[bytes, int]] = {
    "reef.toml": (MANIFEST, 0o644),
    "server.py": (b"print('hello')\n", 0o644),
    "bin/run.sh": (b"#!/bin/sh\nexec python3 server.py\n", 0o755),
    "static/index.html": (b"<h1>hi</h1>\n", 0o644),
    "static/empty.txt": (b"", 0o644),
    "\u00e9t\u00e9/caf\u00e9.txt": (b"utf-8 names\n", 0o644),
}


def make_app(root: Path, files: dict[str, tuple[bytes, int]], *, seed: int = 0) -> Path:
    """Write files in a shuffled order, with random mtimes and permission noise."""
    rng = random.Random(seed)
    items = list(files.items())
    rng.shuffle(items)
    root.mkdir(parents=True)
    for rel, (data, mode) in items:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        # Different permission bits that normalise to the same mode (0644 or 0755).
        noisy = (0o700 if mode & 0o100 else 0o600) if seed % 2 else (mode | 0o020)
        path.chmod(noisy)
        stamp = rng.randrange(10**9, 2 * 10**9)
        os.utime(path, (stamp, stamp))
    (root / "empty-dir").mkdir(exist_ok=True)
    return root


def test_same_inputs_give_identical_bytes(tmp_path: Path) -> None:
    a = make_app(tmp_path / "one" / "app", FILES, seed=1)
    old = os.umask(0o077)
    try:
        b = make_app(tmp_path / "two" / "deeper" / "app", FILES, seed=2)
    finally:
        os.umask(old)
    if os.geteuid() == 0:
        for path in b.rglob("*"):
            os.lchown(path, 1234, 5678)
    image_a = build_image(a, tmp_path / "a.img")
    image_b = build_image(b, tmp_path / "b.img")
    assert (tmp_path / "a.img").read_bytes() == (tmp_path / "b.img").read_bytes()
    assert image_a.image_id == image_b.image_id
    assert image_a.measurements.pcrs == image_b.measurements.pcrs
    # Building again later gives the same bytes.
    build_image(a, tmp_path / "c.img")
    assert (tmp_path / "c.img").read_bytes() == (tmp_path / "a.img").read_bytes()


def test_the_image_id_measures_the_entries_not_the_compression(tmp_path: Path) -> None:
    """The archive's gzip level (9 until images took 13 s to build with workerd inside) may
    change; what enclaves attest may not: the same entries compressed otherwise measure alike."""
    app = make_app(tmp_path / "app", FILES, seed=5)
    built = build_image(app, tmp_path / "a.img")
    raw = gzip.decompress((tmp_path / "a.img").read_bytes())
    for level in (1, 9):
        other = tmp_path / f"level{level}.img"
        other.write_bytes(gzip.compress(raw, compresslevel=level, mtime=0))
        assert other.read_bytes() != (tmp_path / "a.img").read_bytes()
        again = load_image(other)
        assert again.image_id == built.image_id
        assert again.measurements.pcrs == built.measurements.pcrs


def test_gnu_tar_sees_normalised_entries(tmp_path: Path) -> None:
    """An independent reader (GNU tar) lists fixed owners, times and modes, sorted."""
    app = make_app(tmp_path / "app", FILES, seed=3)
    build_image(app, tmp_path / "x.img")
    raw = (tmp_path / "x.img").read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x00"  # gzip, deflate, no FNAME flag
    assert raw[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    listing = subprocess.run(
        ["tar", "--numeric-owner", "--full-time", "-tvzf", str(tmp_path / "x.img")],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC", "LC_ALL": "C.UTF-8"},
    ).stdout.splitlines()
    names = [line.split(maxsplit=5)[5] for line in listing]
    assert names == sorted(names, key=lambda n: n.rstrip("/").encode())
    for line in listing:
        mode, owner, _size, day, _clock, name = line.split(maxsplit=5)
        assert owner == "0/0"
        assert day == "1970-01-01"
        if name.endswith("/"):
            assert mode == "drwxr-xr-x"
        elif name.rstrip("/") == "bin/run.sh":
            assert mode == "-rwxr-xr-x"
        else:
            assert mode == "-rw-r--r--"
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(tmp_path / "x.img"), "-C", str(out)], check=True)
    for rel, (data, _) in FILES.items():
        assert (out / rel).read_bytes() == data


def _record(kind: bytes, path: str, data: bytes) -> bytes:
    raw = path.encode()
    return kind + struct.pack("<Q", len(raw)) + raw + struct.pack("<Q", len(data)) + data


SRC = Path(reef.__file__).resolve().parent.parent


def _source(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _imported(tree: ast.AST, package: str = "") -> set[str]:
    """Every module an import statement names (``from m import x`` names ``m`` and ``m.x``),
    at any depth, except under ``if TYPE_CHECKING:``; and every module a facade of ``package``
    loads on first use (the table given to ``reef._lazy.lazy_attributes``)."""
    found: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for branch in node.orelse:
                found |= _imported(branch, package)
            continue
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "lazy_attributes":
            table = node.args[1]
            assert isinstance(table, ast.Dict)
            for value in table.values:
                assert isinstance(value, ast.Constant)
                found.add(f"{package}.{value.value}")
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "reef uses absolute imports"
            assert node.module
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        found |= _imported(node, package)
    return found


def _trusted_base_closure() -> list[str]:
    """The reef modules ``python -m reef.enclave.local._supervisor`` can load, packages included."""
    seen: set[str] = set()
    todo = ["reef.enclave.local._supervisor"]
    while todo:
        parts = todo.pop().split(".")
        for depth in range(1, len(parts) + 1):
            module = ".".join(parts[:depth])
            path = _source(module) if parts[0] == "reef" else None
            if module not in seen and path is not None:
                seen.add(module)
                todo += _imported(ast.parse(path.read_text()), module)
    return sorted(seen)


def test_the_runtime_is_every_module_the_trusted_base_loads() -> None:
    """RUNTIME_MODULES is the supervisor's import closure within reef (function-level imports
    included), so PCR1 covers all the code that serves an enclave."""
    closure = _trusted_base_closure()
    assert list(RUNTIME_MODULES) == closure
    for module in ("reef.attestation._dev", "reef.kms._derive_server", "reef.scallop._noise"):
        assert module in closure
    # What a supervisor has loaded once booted (its lazy imports done) is all measured.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, reef.enclave.local._supervisor, reef.attestation, reef.kms, reef.scallop\n"
            # what the supervisor's function-level imports use (the facades load on first use)
            "reef.kms.derive_server_app, reef.kms.EnclaveSeeds, reef.attestation.attestation_app\n"
            "print(' '.join(m for m in sys.modules if m.split('.')[0] == 'reef'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "reef.kms._derive_server" in loaded
    assert set(loaded) <= set(RUNTIME_MODULES)


def test_measurement_follows_the_documented_recipe(tmp_path: Path) -> None:
    """Recompute PCR0/1/2 from the files on disk with the recipe in docs/enclave.md."""
    app = make_app(tmp_path / "app", FILES, seed=4)
    image = build_image(app, tmp_path / "x.img")
    entries = []
    for path in app.rglob("*"):
        rel = path.relative_to(app).as_posix()
        if path.is_dir():
            entries.append((rel, b"d", b""))
        else:
            kind = b"x" if path.stat().st_mode & 0o111 else b"f"
            entries.append((rel, kind, path.read_bytes()))
    entries.sort(key=lambda e: e[0].encode())
    app_bytes = b"reef.app.v1\0" + b"".join(_record(k, p, d) for p, k, d in entries)
    runtime = b"reef.runtime.v2\0" + _record(b"v", "version", f"reef {reef.__version__}".encode())
    for module in _trusted_base_closure():
        path = _source(module)
        assert path is not None
        runtime += _record(b"f", path.relative_to(SRC).as_posix(), path.read_bytes())
    assert runtime == runtime_measurement()

    def pcr(data: bytes) -> bytes:
        return hashlib.sha384(bytes(48) + hashlib.sha384(data).digest()).digest()

    expected = {0: pcr(runtime + app_bytes), 1: pcr(runtime), 2: pcr(app_bytes)}
    assert dict(image.measurements.pcrs) == expected
    assert image.image_id == oyster_image_id(expected)
    assert image.measurements.as_debug().pcrs == dict.fromkeys((0, 1, 2), bytes(48))


@pytest.mark.parametrize(
    ("rel", "data"),
    [
        ("server.py", b"print('hello!')\n"),
        ("static/empty.txt", b"\n"),
        ("new.txt", b"x"),
        ("reef.toml", MANIFEST.replace(b'"server.py"', b'"-u", "server.py"')),
        ("reef.toml", MANIFEST.replace(b'A = "1"', b'A = "2"')),
        ("reef.toml", MANIFEST.replace(b"8080", b"8081")),
    ],
    ids=["file", "empty-file", "added-file", "command", "env", "ports"],
)
def test_any_change_changes_the_image_id(tmp_path: Path, rel: str, data: bytes) -> None:
    base = build_image(make_app(tmp_path / "a", FILES), tmp_path / "a.img")
    changed = dict(FILES)
    changed[rel] = (data, 0o644)
    other = build_image(make_app(tmp_path / "b", changed), tmp_path / "b.img")
    assert other.image_id != base.image_id
    assert other.measurements.pcrs[1] == base.measurements.pcrs[1]  # same runtime


def test_mode_and_renames_change_the_image_id(tmp_path: Path) -> None:
    base = build_image(make_app(tmp_path / "a", FILES), tmp_path / "a.img")
    executable = dict(FILES)
    executable["server.py"] = (FILES["server.py"][0], 0o755)
    renamed = {("srv.py" if k == "server.py" else k): v for k, v in FILES.items()}
    ids = {
        build_image(make_app(tmp_path / name, files), tmp_path / f"{name}.img").image_id
        for name, files in (("x", executable), ("r", renamed))
    }
    assert base.image_id not in ids
    assert len(ids) == 2


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=st.dictionaries(
        st.lists(st.sampled_from(["a", "b", "c.txt", "d e", "\u00fc"]), min_size=1, max_size=3)
        .map("/".join)
        .filter(lambda p: p != "reef.toml"),
        st.binary(max_size=64),
        max_size=6,
    ),
    seed=st.integers(0, 1000),
)
def test_build_is_order_independent(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes], seed: int
) -> None:
    # A path cannot be both a file and a directory: keep only the leaves.
    leaves = {p: d for p, d in files.items() if not any(o.startswith(p + "/") for o in files)}
    tree = {"reef.toml": (MANIFEST, 0o644), **{p: (d, 0o644) for p, d in leaves.items()}}
    base = tmp_path_factory.mktemp("prop")
    one = build_image(make_app(base / "1", tree, seed=seed), base / "1.img")
    two = build_image(make_app(base / "2", tree, seed=seed + 1), base / "2.img")
    assert (base / "1.img").read_bytes() == (base / "2.img").read_bytes()
    assert one.image_id == two.image_id
    assert load_image(base / "1.img").image_id == one.image_id


def test_load_round_trip_and_extract(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", FILES)
    built = build_image(app, tmp_path / "x.img")
    loaded = load_image(tmp_path / "x.img")
    assert loaded.image_id == built.image_id
    assert loaded.manifest == Manifest.parse(MANIFEST)
    loaded.extract(tmp_path / "out")
    assert (tmp_path / "out" / "bin" / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "server.py").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "out" / "empty-dir").is_dir()


def test_excludes_bytecode_caches_and_listed_patterns(tmp_path: Path) -> None:
    base = build_image(make_app(tmp_path / "a", FILES), tmp_path / "a.img")
    app = make_app(tmp_path / "b", FILES)
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "server.cpython-311.pyc").write_bytes(os.urandom(16))
    (app / ".git").mkdir()
    (app / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert build_image(app, tmp_path / "b.img").image_id == base.image_id
    (app / "debug.log").write_text("noise")
    assert any(e.path == "debug.log" for e in build_image(app, tmp_path / "c.img").entries)
    (app / "reef.toml").write_bytes(MANIFEST.replace(b"[env]", b'exclude = ["*.log"]\n[env]'))
    assert all(e.path != "debug.log" for e in build_image(app, tmp_path / "d.img").entries)


def test_symlinks_inside_are_kept_outside_refused(tmp_path: Path) -> None:
    app = make_app(tmp_path / "a", FILES)
    (app / "link.py").symlink_to("server.py")
    image = build_image(app, tmp_path / "a.img")
    assert any(
        e.path == "link.py" and e.kind == "l" and e.data == b"server.py" for e in image.entries
    )
    (app / "escape").symlink_to("../../etc/passwd")
    with pytest.raises(ImageError, match="leaves the image"):
        build_image(app, tmp_path / "b.img")
    (app / "escape").unlink()
    (app / "abs").symlink_to("/etc/passwd")
    with pytest.raises(ImageError, match="absolute"):
        build_image(app, tmp_path / "b.img")


def test_special_files_are_refused(tmp_path: Path) -> None:
    app = make_app(tmp_path / "a", FILES)
    os.mkfifo(app / "pipe")
    with pytest.raises(ImageError, match="not a regular file"):
        build_image(app, tmp_path / "a.img")


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (None, "has no reef.toml"),
        (b"name = ", "not valid TOML"),
        (b'name = "x"\n', "'command' is missing"),
        (b'command = ["a"]\n', "'name' is missing"),
        (b'name = "Bad Name"\ncommand = ["a"]\n', "'name' must be"),
        (b'name = "x"\ncommand = []\n', "non-empty list"),
        (b'name = "x"\ncommand = ["a"]\nports = [1300]\n', "reserved"),
        (b'name = "x"\ncommand = ["a"]\nports = [70000]\n', "not a TCP port"),
        (b'name = "x"\ncommand = ["a"]\nport = [80]\n', "unknown key 'port'"),
        (b'name = "x"\ncommand = ["a"]\nmemory_mib = 1\n', "'memory_mib' must be"),
        (b'name = "x"\ncommand = ["a"]\n[env]\nREEF_X = "1"\n', "reserved"),
        (b'name = "x"\ncommand = ["a"]\n[env]\nA = 1\n', "must be a string"),
    ],
)
def test_bad_manifests_are_named(tmp_path: Path, manifest: bytes | None, message: str) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "x.py").write_text("")
    if manifest is not None:
        (app / "reef.toml").write_bytes(manifest)
    with pytest.raises(ImageError, match=message):
        build_image(app, tmp_path / "x.img")
    assert not (tmp_path / "x.img").exists()


def test_command_as_a_string_is_split() -> None:
    manifest = Manifest.parse(b'name = "x"\ncommand = "python3 -u \'my app.py\'"\n')
    assert manifest.command == ("python3", "-u", "my app.py")
    assert manifest.vcpus == 1
    assert manifest.memory_mib == 256


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return gzip.compress(raw.getvalue(), mtime=0)


def _info(
    name: str, *, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, mtime: int = 0
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, mtime
    return info


GOOD = (_info("reef.toml"), b'name = "x"\ncommand = ["a"]\n')


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([GOOD, (_info("/etc/passwd"), b"x")], "plain relative path"),
        ([GOOD, (_info("../x"), b"x")], "plain relative path"),
        ([(_info("z"), b""), GOOD], "out of order"),
        ([GOOD, GOOD], "appears twice"),
        ([GOOD, (_info("x", mode=0o600), b"")], "mode"),
        ([GOOD, (_info("x", mtime=5), b"")], "owner or time"),
        ([GOOD, (_info("x", kind=tarfile.LNKTYPE), b"")], "not a file"),
        ([GOOD, (_info("x", kind=tarfile.CHRTYPE), b"")], "not a file"),
        ([GOOD, (_info("sub/x"), b"")], "no parent directory"),
        ([(_info("a.txt"), b"")], "has no reef.toml"),
        ([(_info("reef.toml"), b"name = 1")], "'name' must be"),
    ],
)
def test_archives_the_builder_could_not_make_are_refused(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], message: str
) -> None:
    with pytest.raises(ImageError, match=message):
        load_image(_tar(members))


def test_corrupted_and_missing_archives(tmp_path: Path) -> None:
    build_image(make_app(tmp_path / "a", FILES), tmp_path / "a.img")
    blob = (tmp_path / "a.img").read_bytes()
    with pytest.raises(ImageError, match="not a valid reef image"):
        load_image(blob[: len(blob) // 2])
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    with pytest.raises(ImageError, match="not a valid reef image"):
        load_image(bytes(flipped))
    with pytest.raises(ImageError, match="not a valid reef image"):
        load_image(b"PK\x03\x04 not gzip at all")
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.img")


def test_an_output_inside_the_source_is_not_part_of_the_next_build(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", FILES)
    first = build_image(app, app / "app.img")
    second = build_image(app, app / "app.img")
    assert first.image_id == second.image_id
    assert all(e.path != "app.img" for e in second.entries)


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", FILES)
    with pytest.raises(ImageError, match="cannot write the image"):
        build_image(app, tmp_path / "no" / "such" / "dir" / "x.img")


def test_a_directory_loads_as_the_image_it_builds(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", FILES)
    assert load_image(app).image_id == build_image(app, tmp_path / "x.img").image_id


def test_attested_measurements_of_a_file_a_directory_or_bytes_with_a_params_file_or_document(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path / "app", FILES)
    image_file = tmp_path / "a.img"
    image = build_image(app, image_file)
    params = InitParams.build([InitParam("config.json", b"{}")])
    params_file = tmp_path / "params.json"
    params_file.write_bytes(params.to_json())

    for source in (image_file, app, image_file.read_bytes()):
        assert attested_measurements(source) == image.measurements
        for init in (params_file, params):
            for debug in (False, True):
                measured = attested_measurements(source, init, debug=debug)
                assert measured.pcrs[16] == extend_pcr(params.digest)
                assert measured.init_params_digest == params.digest
                assert measured.debug is debug
                assert measured.pcrs[0] == (bytes(48) if debug else image.measurements.pcrs[0])
                assert measured.image_id == oyster_image_id(measured.pcrs)
    with pytest.raises(ImageError, match=r"missing\.json"):
        attested_measurements(image_file, tmp_path / "missing.json")
    with pytest.raises(ImageError, match="does not exist"):
        attested_measurements(tmp_path / "missing.img")


def test_an_image_attests_pcr16_of_its_init_params_and_zero_pcrs_in_debug(tmp_path: Path) -> None:
    image = build_image(make_app(tmp_path / "app", FILES), tmp_path / "a.img")
    params = InitParams.build([InitParam("config.json", b"{}")])
    saved = tmp_path / "params.json"
    saved.write_bytes(params.to_json())
    read = InitParams.read(saved)
    assert read.digest == params.digest

    plain = image.attested()
    assert plain == image.measurements
    with_params = image.attested(read)
    assert with_params.pcrs[16] == extend_pcr(params.digest)
    assert with_params.pcrs[0] == image.measurements.pcrs[0]
    debug = image.attested(read, debug=True)
    assert debug.debug
    assert debug.pcrs[0] == bytes(48)
    assert debug.pcrs[16] == with_params.pcrs[16]
    assert len({plain.image_id, with_params.image_id, debug.image_id}) == 3

    with pytest.raises(ImageError, match=r"init params file .*missing\.json does not exist"):
        InitParams.read(tmp_path / "missing.json")
    with pytest.raises(ImageError, match="cannot read init params"):
        InitParams.read(tmp_path)
