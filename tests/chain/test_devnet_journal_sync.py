"""The devnet journal's sync to disk: every entry is in the file when the call that wrote it
returns, synced by a background thread right after, synced at close; a failed background sync
makes the chain refuse the next transaction rather than go on without a record."""

from __future__ import annotations

import os
import threading

import pytest
from eth_account import Account

from reef.chain import DEVNET_CHAIN_ID, Devnet
from reef.errors import ChainError
from reef.home import ReefHome

SINK = "0x" + "22" * 20


def transfer(devnet: Devnet, nonce: int) -> bytes:
    raw = Account.sign_transaction(
        {
            "chainId": DEVNET_CHAIN_ID,
            "nonce": nonce,
            "gas": 21000,
            "to": SINK,
            "value": 1,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
        },
        devnet.accounts[0].private_key,
    ).raw_transaction
    return devnet.send_raw_transaction(bytes(raw))


class Syncs:
    """``os.fdatasync`` recorded: which descriptors, and an event per call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.called = threading.Event()
        self.fail = fail
        self._real = os.fdatasync
        monkeypatch.setattr(os, "fdatasync", self)

    def __call__(self, fd: int) -> None:
        self.calls.append(fd)
        self.called.set()
        if self.fail:
            raise OSError(5, "Input/output error")
        self._real(fd)


def test_each_block_is_in_the_file_on_return_and_synced_soon_after(
    home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        syncs = Syncs(monkeypatch)
        tx_hash = transfer(devnet, 0)
        # Another reader sees the block at once: it is in the file, not in a buffer.
        text = (home.chain / "journal.jsonl").read_text()
        assert '"number":1' in text
        assert syncs.called.wait(10), "the journal was not synced to disk after a block"
    # A restart (the process gone) finds the block.
    with Devnet.open(home, deploy=False) as devnet:
        assert devnet.block_number == 1
        assert devnet.transaction(tx_hash) is not None


def test_close_syncs_what_is_left(home: ReefHome, monkeypatch: pytest.MonkeyPatch) -> None:
    devnet = Devnet.open(home, deploy=False)
    persistence = devnet._persistence
    assert persistence is not None
    syncer = persistence.journal._syncer
    assert syncer is not None
    transfer(devnet, 0)
    syncs = Syncs(monkeypatch)
    syncer._dirty = True  # as if the last block were written after the thread's last sync
    devnet.close()
    assert syncs.calls, "close() did not sync the journal"
    assert syncer._dirty is False


def test_a_failed_sync_refuses_the_next_transaction(
    home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Devnet.open(home, deploy=False) as devnet:
        syncs = Syncs(monkeypatch, fail=True)
        transfer(devnet, 0)
        assert syncs.called.wait(10)
        syncer = devnet._persistence.journal._syncer  # type: ignore[union-attr]
        assert syncer is not None
        thread = syncer._thread
        if thread is not None:
            thread.join(10)  # the failure is recorded once the sync returns
        head = devnet.head.hash
        with pytest.raises(ChainError, match="could not write the devnet journal"):
            transfer(devnet, 1)
        assert devnet.head.hash == head
        monkeypatch.undo()
        transfer(devnet, 1)  # the error was told once; the disk works again
    with Devnet.open(home, deploy=False) as devnet:
        assert devnet.block_number == 2


def test_a_throwaway_journal_never_syncs(home: ReefHome, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = Syncs(monkeypatch)
    with Devnet.open(home, deploy=False, durable=False) as devnet:
        transfer(devnet, 0)
    assert syncs.calls == []
