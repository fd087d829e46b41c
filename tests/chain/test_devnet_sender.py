"""The devnet's sender recovery (reef.chain.devnet._engine._recover_sender) is py-evm's: the same
address as ``extract_transaction_sender`` for every transaction type, and the same error (so the
same rejection) for every signature eth_keys refuses, inside its ranges and outside them.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import rlp
from eth._utils.transactions import extract_transaction_sender
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_account import Account

from reef.chain.devnet._engine import _recover_sender

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _raw(kind: int, seed: int) -> bytes:
    rng = random.Random(seed)
    fields: dict[str, Any] = {
        "chainId": 31337,
        "nonce": rng.randrange(1000),
        "gas": 21_000 + rng.randrange(10**5),
        "to": bytes(rng.randrange(256) for _ in range(20)),
        "value": rng.randrange(10**18),
        "data": bytes(rng.randrange(256) for _ in range(rng.randrange(70))),
    }
    if kind == 2:
        fields.update(maxFeePerGas=10**11, maxPriorityFeePerGas=10**9)
    else:
        fields["gasPrice"] = 10**11
    if kind == 1:
        fields["accessList"] = [{"address": "0x" + "22" * 20, "storageKeys": ["0x" + "00" * 32]}]
    key = bytes(rng.randrange(1, 256) for _ in range(32))
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


def _resigned(raw: bytes, v: int, r: int, s: int) -> bytes:
    """``raw`` with its signature fields replaced (v is the legacy v or the y parity)."""
    if raw[0] >= 0xC0:
        return bytes(rlp.encode([*rlp.decode(raw)[:-3], v, r, s]))
    return raw[:1] + bytes(rlp.encode([*rlp.decode(raw[1:])[:-3], v, r, s]))


def _outcome(recover: Any, raw: bytes) -> str:
    tx = PragueTransactionBuilder.decode(raw)
    try:
        recover(tx)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "0x" + bytes(tx.sender).hex()


def _plain(tx: Any) -> None:
    tx.sender  # noqa: B018 (py-evm's own path)


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_a_valid_signature_gives_py_evms_sender(kind: int) -> None:
    for seed in range(20):
        raw = _raw(kind, seed)
        tx = PragueTransactionBuilder.decode(raw)
        _recover_sender(tx)
        assert "sender" in tx.__dict__  # the quick path set it
        assert tx.sender == extract_transaction_sender(PragueTransactionBuilder.decode(raw))
        assert _outcome(_recover_sender, raw) == _outcome(_plain, raw)


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_a_bad_signature_fails_as_on_py_evm(kind: int) -> None:
    raw = _raw(kind, 99)
    tx = PragueTransactionBuilder.decode(raw)
    parity = tx.y_parity
    v = 31337 * 2 + 35 + parity if kind == 0 else parity
    rng = random.Random(kind)
    cases = [
        (v, 0, tx.s),
        (v, tx.r, 0),
        (v, N, tx.s),
        (v, tx.r, N),
        (v, 2**256 - 1, tx.s),
        (v, N - 1, N - 1),
        (v, 1, 1),
        *((v, rng.randrange(1, N), rng.randrange(1, N)) for _ in range(8)),
        (v + 2, tx.r, tx.s),
        (v + 1 if parity == 0 else v - 1, tx.r, tx.s),  # the other parity: another sender
    ]
    if kind == 0:
        cases += [(27, tx.r, tx.s), (28, tx.r, tx.s), (0, tx.r, tx.s), (35, tx.r, tx.s)]
    outcomes = set()
    for case in cases:
        bad = _resigned(raw, *case)
        outcome = _outcome(_recover_sender, bad)
        assert outcome == _outcome(_plain, bad), case
        outcomes.add(outcome.split(":")[0])
    assert len(outcomes) > 1  # both recoveries and refusals were compared
