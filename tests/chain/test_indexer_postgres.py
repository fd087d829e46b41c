"""The indexer on a real PostgreSQL server (any SQLAlchemy URL works, as the issue asks): exactly
once storage, resume, the duplicate guard and failures part-way, against a throwaway cluster.
Skips when PostgreSQL or the psycopg driver is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from indexer_fakes import MARKET, FakeChain, opened

from net_support import free_port
from reef.chain import Indexer
from reef.errors import ChainError, RPCError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed")
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="reef-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start PostgreSQL as postgres")
        shutil.chown(base, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", free_port()
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "reef"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_user,
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(base / "log"),
                "-w",
                "-o",
                f"-p {port} -k {base} -h 127.0.0.1",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"cannot start a PostgreSQL server here: {exc}")
    try:
        yield f"postgresql+psycopg://reef@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


def _fresh(url: str) -> str:
    """A new database per test, so tests do not see each other's streams."""
    import sqlalchemy as sa

    name = f"t{os.urandom(6).hex()}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def test_exactly_once_and_resume_on_postgres(postgres: str) -> None:
    db = _fresh(postgres)
    chain = FakeChain()
    for n in range(12):
        chain.mine(opened(n))
    first = Indexer(chain, db, contract=MARKET, block_range=4)
    chain.fail_on["logs"] = 1  # the second range fails
    with pytest.raises(RPCError):
        first.poll()
    assert [e.block_number for e in first.events()] == [0, 1, 2, 3]
    first.engine.dispose()

    resumed = Indexer(chain, db, contract=MARKET, block_range=4)
    assert resumed.poll() == 8
    stored = resumed.events()
    assert [(e.block_number, e.log_index) for e in stored] == [(n, 0) for n in range(12)]
    assert stored[0].data["rate"] == hex(10**14)
    checkpoint = resumed.checkpoint()
    assert checkpoint is not None
    assert checkpoint.last_block == 11
    with pytest.raises(ChainError, match="already stored"):
        resumed._commit(None, chain.block(0), chain.logs(MARKET, 0, 0))
    resumed.engine.dispose()
