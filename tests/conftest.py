"""Shared fixtures: the public vectors folder, an isolated $REEF_HOME for every test (also as a
:class:`~reef.home.ReefHome`), and the dev TEE authority of that home."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from reef.attestation import DevAuthority
    from reef.home import ReefHome

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chain",
        choices=("devnet", "anvil"),
        default="devnet",
        help="the chain every `reef up` of the end-to-end tests runs on (anvil: npm's anvil)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # The e2e helpers start `reef up` as a process: they read the chosen chain from here.
    os.environ["REEF_E2E_CHAIN"] = str(config.getoption("--chain"))


def _vectors_dir() -> Path:
    env = os.environ.get("REEF_VECTORS")
    return Path(env) if env else (REPO.parent / "shared" / "vectors")


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The public test vectors (``../shared/vectors`` or ``$REEF_VECTORS``); skip when absent."""
    path = _vectors_dir()
    if not path.is_dir():
        pytest.skip(f"public test vectors not found at {path} (set REEF_VECTORS to their folder)")
    return path


@pytest.fixture(autouse=True)
def reef_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own $REEF_HOME, so no test reads or writes the user's ~/.reef."""
    home = tmp_path_factory.mktemp("reef-home")
    monkeypatch.setenv("REEF_HOME", str(home))
    return home


@pytest.fixture
def home(reef_home: Path) -> ReefHome:
    """This test's $REEF_HOME as a :class:`~reef.home.ReefHome`."""
    from reef.home import ReefHome

    return ReefHome(reef_home)


@pytest.fixture
def authority(reef_home: Path) -> DevAuthority:
    """The dev TEE authority of this test's $REEF_HOME (the one the CLI's ``--root dev`` names),
    created on first use. Imported here, not at the top, so collecting tests stays light."""
    from reef.attestation import DevAuthority
    from reef.home import ReefHome

    return DevAuthority.load_or_create(ReefHome(reef_home))
