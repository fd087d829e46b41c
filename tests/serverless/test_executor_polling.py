"""An executor's polls: a poll asks the chain only for its block number until a block comes
(then it reads that block and its events), and once no block has come for ``idle_after_s`` it
polls at ``idle_poll_interval_s`` until one does. Every idle ``reef up`` runs three executors."""

from __future__ import annotations

from pathlib import Path

from reef.crypto import Secp256k1PrivateKey
from reef.serverless import ExecutorSettings, FunctionRuntime
from reef.serverless._executor import ExecutorService
from serverless.chain_support import IDLE_POLLS, ServerlessChain, check_idle_polls, record_requests


def test_the_poll_interval_grows_only_after_a_quiet_spell() -> None:
    settings = ExecutorSettings(
        rpc_url="x",
        jobs_contract="0x" + "11" * 20,
        code_contract="0x" + "22" * 20,
        poll_interval_s=0.05,
        idle_poll_interval_s=0.25,
        idle_after_s=10,
    )
    assert settings.poll_policy.delay(quiet_s=0) == 0.05
    assert settings.poll_policy.delay(quiet_s=9.9) == 0.05
    assert settings.poll_policy.delay(quiet_s=10) == 0.25
    # An idle interval below the busy one never speeds an idle executor up.
    fast = ExecutorSettings(
        rpc_url="x", jobs_contract="0x", code_contract="0x", poll_interval_s=1,
        idle_poll_interval_s=0.1,
    )  # fmt: skip
    assert fast.poll_policy.delay(quiet_s=60) == 1


async def test_an_idle_executor_asks_only_for_the_block_number_and_slows_down(
    tmp_path: Path,
) -> None:
    chain = ServerlessChain.create(real_time=True)
    w3 = chain.devnet.web3()
    asked = record_requests(w3)
    settings = ExecutorSettings(
        rpc_url="in-process",
        jobs_contract=chain.jobs_address,
        code_contract=chain.code_address,
        **IDLE_POLLS,
    )
    runtime = FunctionRuntime(tmp_path / "no-workerd")  # no job runs: never started
    service = ExecutorService(
        Secp256k1PrivateKey.generate(), settings, runtime, tmp_path / "code", w3=w3
    )
    await service.start()
    try:
        # A new block is read with its head block (the chain's clock) and its events.
        await check_idle_polls(
            asked,
            chain.devnet,
            lambda: service.stats.last_block == chain.devnet.block_number,
            {"eth_getBlockByNumber", "eth_getLogs"},
        )
    finally:
        await service.aclose()
        await runtime.aclose()
