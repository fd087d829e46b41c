"""A provider restarted on a second market (same home, same launch directory) leaves the first
market's enclaves alone: a job id names a job of one market only.

The operator walk found it: after a second ``reef chain deploy`` repointed the home, the new
provider run took the first market's still-paying enclaves for its own jobs' leftovers and
stopped them. The runner now labels each enclave with its market and adopts only its own
(and enclaves launched before the label existed, which have none).
"""

from __future__ import annotations

from pathlib import Path

from reef.enclave import EnclaveSpec, build_image
from reef.market import BackendRunner
from reef.testing import FakeBackend

PROVIDER = "0x" + "44" * 20
MARKET_A = "0x" + "aa" * 20
MARKET_B = "0x" + "bB" * 20
JOB = "0x" + "00" * 31 + "01"  # job 1: each market has one
KEY = "0123456789abcdef" * 2


async def test_each_market_adopts_only_its_own_enclaves(tmp_path: Path) -> None:
    src = tmp_path / "app"
    src.mkdir()
    (src / "reef.toml").write_text('name = "app"\ncommand = ["true"]\n')
    image = tmp_path / "app.img"
    build_image(src, image)
    backend = FakeBackend()
    workdir = tmp_path / "launch"

    def runner(market: str | None) -> BackendRunner:
        made = BackendRunner(backend, workdir, provider=PROVIDER)
        if market is not None:
            made.attest_jobs(chain_id=84532, market=market)
        return made

    # The labels a runner writes (other processes read them back after a restart).
    base = {
        "reef.runner": str(workdir.resolve()),
        "reef.provider": PROVIDER,
        "reef.job": JOB,
        "reef.launch-key": KEY,
    }
    first = await backend.start(
        EnclaveSpec(image=image, labels={**base, "reef.market": f"84532:{MARKET_A}"})
    )
    older = await backend.start(EnclaveSpec(image=image, labels=base))  # before markets were named

    on_a = {e.enclave_id for e in await runner(MARKET_A).list()}
    on_b = {e.enclave_id for e in await runner(MARKET_B).list()}
    assert on_a == {first.id, older.id}
    assert on_b == {older.id}  # not market A's job 1, though its number is the same
    # A runner told no market (one that only reads a provider's enclaves) sees them all.
    assert {e.enclave_id for e in await runner(None).list()} == on_a
    # The market is matched as an address (any case), on its chain.
    assert {e.enclave_id for e in await runner("0x" + "AA" * 20).list()} == on_a
