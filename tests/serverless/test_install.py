"""Finding and installing the pinned workerd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import reef.serverless._install as _install
from reef.errors import ServerlessError
from reef.home import ReefHome
from reef.serverless import RUNTIME_PACKAGE_DIR, WORKERD_VERSION, ensure_workerd, find_workerd


def test_the_lock_pins_the_version() -> None:
    package = json.loads((RUNTIME_PACKAGE_DIR / "package.json").read_text())
    lock = json.loads((RUNTIME_PACKAGE_DIR / "package-lock.json").read_text())
    assert package["dependencies"]["workerd"] == WORKERD_VERSION
    assert lock["packages"]["node_modules/workerd"]["version"] == WORKERD_VERSION
    assert lock["packages"]["node_modules/workerd"]["integrity"].startswith("sha512-")


@pytest.mark.node
def test_the_installed_binary_is_the_pinned_one(workerd: Path) -> None:
    import subprocess

    out = subprocess.run([str(workerd), "--version"], capture_output=True, text=True, check=True)
    # workerd prints its compatibility date; the npm version embeds the same date.
    date = WORKERD_VERSION.split(".")[1]
    assert out.stdout.strip().replace("-", "").endswith(date)


def _fake_install(project: Path, version: str) -> Path:
    (project / "node_modules" / "workerd").mkdir(parents=True)
    (project / "node_modules" / "workerd" / "package.json").write_text(
        json.dumps({"version": version})
    )
    binary = project / "node_modules" / "@cloudflare" / "workerd-linux-64" / "bin" / "workerd"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return binary


def test_finds_a_home_install_only_at_the_pinned_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_install, "RUNTIME_PACKAGE_DIR", tmp_path / "empty")
    home = ReefHome(tmp_path / "home")
    project = home.root / "serverless" / "runtime" / WORKERD_VERSION
    _fake_install(project, "1.20200101.0")
    assert find_workerd(home) is None  # another version is not the pinned one
    (project / "node_modules" / "workerd" / "package.json").write_text(
        json.dumps({"version": WORKERD_VERSION})
    )
    assert find_workerd(home) == (
        project / "node_modules" / "@cloudflare" / "workerd-linux-64" / "bin" / "workerd"
    )


def test_missing_npm_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_install, "RUNTIME_PACKAGE_DIR", tmp_path / "empty")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(ServerlessError) as caught:
        ensure_workerd(ReefHome(tmp_path / "home"))
    assert "apt-get install nodejs npm" in str(caught.value)


def test_a_failed_install_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    for name in ("package.json", "package-lock.json"):
        (package / name).write_bytes((RUNTIME_PACKAGE_DIR / name).read_bytes())
    monkeypatch.setattr(_install, "RUNTIME_PACKAGE_DIR", package)
    fake_npm = tmp_path / "npm"
    fake_npm.write_text("#!/bin/sh\necho 'registry unreachable' >&2\nexit 1\n")
    fake_npm.chmod(0o755)
    with pytest.raises(ServerlessError, match="registry unreachable"):
        ensure_workerd(npm=str(fake_npm))


def test_install_runs_npm_ci_in_the_package_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    monkeypatch.setattr(_install, "RUNTIME_PACKAGE_DIR", package)
    fake_npm = tmp_path / "npm"
    # a stand-in npm that "installs" the pinned version and records its arguments
    fake_npm.write_text(
        "#!/bin/sh\n"
        'echo "$@" > args\n'
        "mkdir -p node_modules/workerd node_modules/@cloudflare/workerd-linux-64/bin\n"
        f'echo \'{{"version": "{WORKERD_VERSION}"}}\' > node_modules/workerd/package.json\n'
        "printf '#!/bin/sh\\n' > node_modules/@cloudflare/workerd-linux-64/bin/workerd\n"
        "chmod +x node_modules/@cloudflare/workerd-linux-64/bin/workerd\n"
    )
    fake_npm.chmod(0o755)
    binary = ensure_workerd(npm=str(fake_npm))
    assert binary == package / "node_modules/@cloudflare/workerd-linux-64/bin/workerd"
    assert (package / "args").read_text().split()[0] == "ci"
