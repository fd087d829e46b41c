"""One polling policy for the executor and the relay gateway: fast while blocks come, slower once
none has come for a while, and a failed poll is logged, never the end of the loop. The policy and
its pacer run on a given clock (no chain); the relay gateway is then watched on an in-process
devnet, as the executor is in ``test_executor_polling.py``."""

from __future__ import annotations

import asyncio
import logging

import pytest

from reef.chain import Devnet
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ChainError
from reef.serverless import RelayGateway, ServerlessJobsClient, ServerlessRelayClient
from reef.serverless._polling import _Pacer, _poll_forever, _PollPolicy
from reef.testing import ManualWallClock
from serverless.chain_support import IDLE_POLLS, check_idle_polls, record_requests

POLICY = _PollPolicy(interval_s=0.05, idle_interval_s=0.25, idle_after_s=10)


def test_the_policy_slows_down_only_after_a_quiet_spell() -> None:
    assert POLICY.delay(0) == 0.05
    assert POLICY.delay(9.9) == 0.05
    assert POLICY.delay(10) == 0.25
    assert POLICY.delay(3600) == 0.25
    # An idle interval below the busy one never speeds an idle loop up.
    assert _PollPolicy(interval_s=1, idle_interval_s=0.1, idle_after_s=0).delay(60) == 1


def test_the_pacer_measures_the_quiet_spell_from_the_last_new_block() -> None:
    clock = ManualWallClock(100.0)
    pacer = _Pacer(POLICY, clock)
    assert pacer.after(moved=False) == 0.05
    clock.now += 9.9
    assert pacer.after(moved=False) == 0.05  # quiet since the pacer was made
    clock.now += 0.1
    assert pacer.after(moved=False) == 0.25
    clock.now += 50
    assert pacer.after(moved=True) == 0.05  # a block: fast at once
    clock.now += 9.9
    assert pacer.after(moved=False) == 0.05
    clock.now += 0.1
    assert pacer.after(moved=False) == 0.25


async def test_a_failed_poll_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: list[BaseException | bool] = [ChainError("node down"), OSError("reset"), True]
    polls = 0

    async def poll() -> bool:
        nonlocal polls
        polls += 1
        outcome = outcomes[min(polls, len(outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    log = logging.getLogger("reef.test.polling")
    policy = _PollPolicy(interval_s=0, idle_interval_s=0, idle_after_s=0)
    with caplog.at_level(logging.WARNING, logger=log.name):
        task = asyncio.create_task(_poll_forever(poll, policy, owner="tester", log=log))
        for _ in range(1000):
            if polls > 3:
                break
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert polls > 3
    assert [r.getMessage() for r in caplog.records] == [
        "tester: polling the chain failed: node down",
        "tester: polling the chain failed: OSError('reset')",
    ]


async def test_an_idle_relay_gateway_asks_only_for_the_block_number_and_slows_down() -> None:
    devnet = Devnet(chain_id=31337)
    w3 = devnet.web3()
    asked = record_requests(w3)
    # No contract at either address: the Relay's logs read empty and no job is ever opened.
    relay = ServerlessRelayClient(w3, "0x" + "11" * 20)
    jobs = ServerlessJobsClient(w3, "0x" + "22" * 20)
    gateway = RelayGateway(Secp256k1PrivateKey.generate(), relay, jobs, **IDLE_POLLS)
    await gateway.start()
    try:
        # A new block is read for the jobs relayed in it (the Relay's events).
        await check_idle_polls(
            asked, devnet, lambda: gateway._next_block > devnet.block_number, {"eth_getLogs"}
        )
    finally:
        await gateway.aclose()
