"""The devnet under $REEF_HOME: journal replay across restarts, crash tolerance, the lock,
--fresh, snapshots truncating the journal, devnet.json, and reef's contracts deployed at start."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from reef.chain import (
    DEVNET_CHAIN_ID,
    Devnet,
    MarketClient,
    TokenClient,
    read_devnet_info,
)
from reef.errors import ChainError, ConfigError
from reef.home import ReefHome
from reef.testing import ManualWallClock

SINK = "0x" + "22" * 20


def transfer(devnet: Devnet, nonce: int | None = None, value: int = 1) -> bytes:
    if nonce is None:
        nonce = devnet.nonce(bytes.fromhex(devnet.accounts[0].address[2:]))
    raw = Account.sign_transaction(
        {
            "chainId": DEVNET_CHAIN_ID,
            "nonce": nonce,
            "gas": 21000,
            "to": SINK,
            "value": value,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
        },
        devnet.accounts[0].private_key,
    ).raw_transaction
    return devnet.send_raw_transaction(bytes(raw))


def journal(home: ReefHome) -> Path:
    return home.chain / "journal.jsonl"


def test_state_survives_a_restart_block_for_block(home: ReefHome) -> None:
    clock = ManualWallClock(1_800_000_000)
    with Devnet.open(home, deploy=False, clock=clock) as devnet:
        for nonce in range(3):
            clock.now += 30
            transfer(devnet, nonce)
        devnet.increase_time(100)
        devnet.mine()
        head, count = devnet.head.hash, devnet.block_number
        stamps = [devnet.block(n).timestamp for n in range(count + 1)]  # type: ignore[union-attr]
    clock.now += 10_000  # time passes while the devnet is stopped
    with Devnet.open(home, deploy=False, clock=clock) as again:
        assert again.block_number == count
        assert again.head.hash == head  # the replay rebuilt the very same blocks
        assert [again.block(n).timestamp for n in range(count + 1)] == stamps  # type: ignore[union-attr]
        assert again.balance(bytes.fromhex(SINK[2:])) == 3
        assert again.time_offset == 100  # clock controls are journaled too
        transfer(again, 3)
        assert again.head.timestamp == int(clock.now) + 100


def test_a_line_cut_short_by_a_crash_is_dropped(home: ReefHome) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        transfer(devnet, 0)
        transfer(devnet, 1)
        kept = devnet.block(1).hash  # type: ignore[union-attr]
    data = journal(home).read_bytes()
    journal(home).write_bytes(data[:-15])  # the last entry loses its end, as in a crash
    with Devnet.open(home, deploy=False) as devnet:
        assert devnet.block_number == 1
        assert devnet.head.hash == kept
        transfer(devnet, 1)  # and the chain goes on from there
    assert journal(home).read_bytes().count(b"\n") == 3  # genesis, block 1, the new block 2


def test_a_corrupt_journal_is_refused_with_a_way_out(home: ReefHome) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        transfer(devnet, 0)
    lines = journal(home).read_text().splitlines()
    journal(home).write_text(lines[0] + "\n{not json\n" + "\n".join(lines[1:]) + "\n")
    with pytest.raises(ConfigError, match="corrupt at line 2") as caught:
        Devnet.open(home, deploy=False)
    assert "--fresh" in (caught.value.hint or "")
    # The lock was released: --fresh can start over at once.
    with Devnet.open(home, deploy=False, fresh=True) as devnet:
        assert devnet.block_number == 0


def test_a_tampered_block_does_not_replay(home: ReefHome) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        transfer(devnet, 0)
    lines = journal(home).read_text().splitlines()
    entry = json.loads(lines[1])
    entry["timestamp"] += 1  # a different block: its hash no longer matches
    journal(home).write_text("\n".join([lines[0], json.dumps(entry)]) + "\n")
    with pytest.raises(ConfigError, match="different hash"):
        Devnet.open(home, deploy=False)


def test_one_devnet_per_home(home: ReefHome) -> None:
    first = Devnet.open(home, deploy=False)
    try:
        with pytest.raises(ChainError, match="in use by pid") as caught:
            Devnet.open(home, deploy=False)
        assert "REEF_HOME" in (caught.value.hint or "")
    finally:
        first.close()
    Devnet.open(home, deploy=False).close()


def test_fresh_starts_a_new_chain(home: ReefHome) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        transfer(devnet, 0)
    with Devnet.open(home, deploy=False, fresh=True) as devnet:
        assert devnet.block_number == 0
        assert devnet.balance(bytes.fromhex(SINK[2:])) == 0


def test_revert_truncates_the_journal(home: ReefHome) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        transfer(devnet, 0)
        snapshot = devnet.snapshot()
        size = journal(home).stat().st_size
        transfer(devnet, 1)
        devnet.increase_time(50)
        assert journal(home).stat().st_size > size
        assert devnet.revert(snapshot)
        assert journal(home).stat().st_size == size
    with Devnet.open(home, deploy=False) as devnet:
        assert devnet.block_number == 1
        assert devnet.time_offset == 0


def test_devnet_json_describes_the_chain_and_is_private(home: ReefHome) -> None:
    with Devnet.open(home, deploy=False, accounts=3) as devnet:
        info = read_devnet_info(home)
        assert info.chain_id == 31337
        assert [a.address for a in info.accounts] == [a.address for a in devnet.accounts]
        assert info.accounts[0].private_key == devnet.accounts[0].private_key
        assert info.deployment is None
    path = home.chain / "devnet.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(path.read_text())
    assert "DEV-ONLY" in data["accounts_warning"]


def test_reading_devnet_json_when_there_is_none(home: ReefHome) -> None:
    with pytest.raises(ConfigError, match="no devnet has been started") as caught:
        read_devnet_info(home)
    assert "reef chain" in (caught.value.hint or "")
    home.path("chain", "devnet.json").write_text("[]")
    with pytest.raises(ConfigError, match="JSON object"):
        read_devnet_info(home)
    home.path("chain", "devnet.json").write_text('{"chain_id": 1}')
    with pytest.raises(ConfigError, match="not a valid devnet description"):
        read_devnet_info(home)


def test_an_unreadable_devnet_json_is_a_config_error(home: ReefHome) -> None:
    # Bytes that are not UTF-8 and a path the OS cannot read as a file (a directory: root
    # reads files without permission) are reef errors, not a UnicodeDecodeError or an OSError.
    path = home.path("chain", "devnet.json")
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_devnet_info(home)
    path.unlink()
    path.mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        read_devnet_info(home)


def test_open_deploys_reefs_contracts_and_funds_the_accounts(home: ReefHome) -> None:
    with Devnet.open(home, rate_lock_s=60) as devnet:
        deployment = devnet.deployment
        assert deployment is not None
        assert deployment.chain_id == 31337
        w3 = devnet.web3()
        market = MarketClient(w3, deployment.market)
        assert market.lock_wait_time() == 60
        assert market.token_address() == deployment.token
        token = TokenClient(w3, deployment.token)
        for account in devnet.accounts:
            assert token.balance(account.address) == 1_000_000 * 10**6
        assert read_devnet_info(home).deployment == deployment
        assert read_devnet_info(home).rate_lock_s == 60
    # Reopening replays the deployment rather than deploying again.
    with Devnet.open(home) as devnet:
        assert devnet.deployment == deployment
        assert devnet.rate_lock_s == 60
    with pytest.raises(ConfigError, match="rate lock of 60 s, not 300 s"):
        Devnet.open(home, rate_lock_s=300)
    with Devnet.open(home, rate_lock_s=60) as devnet:  # the same value is fine
        assert devnet.deployment == deployment


def test_the_journal_remembers_the_deployment_without_devnet_json(home: ReefHome) -> None:
    with Devnet.open(home, rate_lock_s=90) as devnet:
        deployment = devnet.deployment
    for with_checkpoint in (True, False):
        (home.chain / "devnet.json").unlink()
        if not with_checkpoint:
            checkpoint(home).unlink()
        with Devnet.open(home) as devnet:
            assert devnet.deployment == deployment
            assert devnet.rate_lock_s == 90
        assert read_devnet_info(home).deployment == deployment  # written again


def test_a_new_devnet_whose_contracts_fail_to_deploy_is_not_kept(
    home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reef.chain._deploy as deploy_module

    def failing(w3: Any, deployer: str, **kwargs: object) -> None:
        # Something reaches the journal before the failure, as a half-done deployment would.
        w3.eth.send_transaction({"from": deployer, "to": SINK, "value": 1})
        raise ChainError("the deployment failed")

    monkeypatch.setattr(deploy_module, "deploy_contracts", failing)
    with pytest.raises(ChainError, match="the deployment failed"):
        Devnet.open(home)
    assert not journal(home).exists()
    assert not (home.chain / "devnet.json").exists()
    with Devnet.open(home, deploy=False) as devnet:  # the lock was released
        assert devnet.block_number == 0


def test_a_journal_that_cannot_be_written_keeps_nothing(
    home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        transfer(devnet, 0)
        head = devnet.head.hash
        persistence = devnet._persistence
        assert persistence is not None

        def full_disk(entries: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(persistence.journal, "extend", full_disk)
        with pytest.raises(ChainError, match="could not write the devnet journal") as caught:
            transfer(devnet, 1)
        assert "disk" in (caught.value.hint or "")
        assert devnet.head.hash == head  # the block was not kept in memory either
        monkeypatch.undo()
        transfer(devnet, 1)  # and once the disk has room, the same transaction goes through
    with Devnet.open(home, deploy=False) as devnet:
        assert devnet.block_number == 2


def checkpoint(home: ReefHome) -> Path:
    return home.chain / "checkpoint.bin"


def state_of(devnet: Devnet) -> tuple[object, ...]:
    """Everything a client can see: every block (with its transactions), every receipt, the
    logs, a balance and the clock offset."""
    rpc = devnet.web3().provider

    def ask(method: str, *params: object) -> object:
        return rpc.make_request(method, list(params))["result"]  # type: ignore[arg-type]

    blocks = range(devnet.block_number + 1)
    return (
        [ask("eth_getBlockByNumber", hex(n), True) for n in blocks],
        [ask("eth_getBlockReceipts", hex(n)) for n in blocks],
        ask("eth_getLogs", {"fromBlock": "0x0"}),
        devnet.balance(bytes.fromhex(SINK[2:])),
        devnet.time_offset,
    )


def test_a_clean_close_leaves_a_checkpoint_that_skips_the_replay(
    home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Devnet.open(home) as devnet:  # with contracts, so there are logs to index
        transfer(devnet)
        devnet.increase_time(42)
        before = state_of(devnet)
    assert checkpoint(home).exists()

    def no_replay(*args: object, **kwargs: object) -> Devnet:
        raise AssertionError("the whole journal was replayed")

    monkeypatch.setattr(Devnet, "_replay", no_replay)
    with Devnet.open(home) as devnet:
        assert state_of(devnet) == before
        transfer(devnet)  # and the restored chain goes on
        after = state_of(devnet)
    with Devnet.open(home) as devnet:
        assert state_of(devnet) == after


def test_after_a_crash_the_checkpoint_and_the_journals_tail_are_used(
    home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        transfer(devnet, 0)
    devnet = Devnet.open(home, deploy=False)
    transfer(devnet, 1)
    devnet.increase_time(7)
    expected = state_of(devnet)
    persistence = devnet._persistence
    assert persistence is not None
    persistence.journal.close()  # the process dies: no checkpoint for these last entries
    persistence.lock.release()
    monkeypatch.setattr(Devnet, "_replay", None)  # a full replay would fail loudly
    with Devnet.open(home, deploy=False) as again:
        assert state_of(again) == expected


def test_a_damaged_or_foreign_checkpoint_falls_back_to_the_journal(
    home: ReefHome, tmp_path: Path
) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        transfer(devnet, 0)
        expected = state_of(devnet)
    data = bytearray(checkpoint(home).read_bytes())
    data[-5] ^= 0xFF
    checkpoint(home).write_bytes(bytes(data))
    with Devnet.open(home, deploy=False) as devnet:
        assert state_of(devnet) == expected
    # A checkpoint of another chain (here: another home's) does not match this journal.
    other = ReefHome(tmp_path / "other")
    with Devnet.open(other, deploy=False) as devnet:
        transfer(devnet, 0)
        transfer(devnet, 1)
    checkpoint(home).write_bytes(checkpoint(other).read_bytes())
    with Devnet.open(home, deploy=False) as devnet:
        assert state_of(devnet) == expected


def test_reverting_below_a_checkpoint_drops_it(home: ReefHome) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        snapshot = devnet.snapshot()
        transfer(devnet, 0)
        devnet._write_checkpoint()
        assert checkpoint(home).exists()
        assert devnet.revert(snapshot)
        assert not checkpoint(home).exists()
    with Devnet.open(home, deploy=False) as devnet:
        assert devnet.block_number == 0


def test_replay_reports_progress(home: ReefHome) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        for nonce in range(60):
            transfer(devnet, nonce)
    checkpoint(home).unlink()  # force the whole journal to be replayed
    seen: list[tuple[int, int]] = []
    with Devnet.open(home, deploy=False, progress=lambda done, total: seen.append((done, total))):
        pass
    assert seen[0] == (0, 60)
    assert seen[-1] == (60, 60)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
