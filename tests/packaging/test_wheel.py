"""reef installed from its wheel, away from the checkout: the commands a new user starts with.

The wheel is built by pip (as a user's ``pip install`` would), installed into a new virtualenv
outside the repository, and run from a directory outside it too, so nothing can reach the
checkout's ``src/`` or ``examples/`` by accident. The dependencies come from the test venv's
site-packages, added as a plain path (its own ``.pth`` files, among them reef's editable
install, are not processed), so the test needs no network and takes seconds.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with reef installed from a wheel built from this checkout."""
    base = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["REEF_HOME"] = str(base / "home")
    _run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(base)],
        cwd=base,
        env=env,
    )
    (wheel,) = base.glob("reef-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base, env=env)
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        cwd=base,
        env=env,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "zz_reef_test_deps.pth").write_text("\n".join(deps) + "\n")
    return venv, env


def test_the_installed_package_is_the_wheel_not_the_checkout(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = installed
    done = _run(
        [str(venv / "bin" / "python"), "-c", "import reef; print(reef.__file__)"],
        cwd=tmp_path,
        env=env,
    )
    location = Path(done.stdout.strip())
    assert venv in location.parents
    assert REPO not in location.parents


def test_reef_up_help_runs_from_the_wheel(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = installed
    done = _run([str(venv / "bin" / "reef"), "up", "--help"], cwd=tmp_path, env=env)
    assert "--rpc-port" in done.stdout
    assert "--insecure" in done.stdout


def test_a_shipped_example_builds_to_the_same_image_as_in_the_checkout(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = installed
    reef = str(venv / "bin" / "reef")
    listed = json.loads(_run([reef, "examples", "--json"], cwd=tmp_path, env=env).stdout)
    assert {"hello", "kms-root"} <= set(listed["examples"])
    _run([reef, "examples", "hello", "app"], cwd=tmp_path, env=env)
    built = json.loads(
        _run(
            [reef, "image", "build", "app", "-o", "app.img", "--json"], cwd=tmp_path, env=env
        ).stdout
    )
    # The same app built by the checkout's reef: the wheel carries the example byte for byte.
    from reef.enclave import build_image

    reference = build_image(REPO / "examples" / "hello", tmp_path / "reference.img")
    assert built["image_id"] == reference.image_id.hex()
    # ... and the KMS root app that reef up runs is in the wheel too.
    kms = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from reef.node import example_dir; print(example_dir('kms-root'))",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert venv in Path(kms.stdout.strip()).parents
