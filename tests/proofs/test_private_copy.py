"""A requester copying another requester's sealed private inputs into an ask of its own.

An ask's private inputs are logged on chain sealed (the body under a fresh AES key, the key
encrypted to the engine), with only the market id as the body's associated data. Anyone could
log the same body and ACL again with public inputs of their choosing: the engine opened the
key, re-encrypted it to a prover, and the proof published the circuit's outputs for the
victim's private value and the copier's public ones, an oracle on the private value (a circuit
proving ``x > threshold`` would give ``x`` away in a binary search). A sealed body is new for
each honest ask (a fresh key and IV), and nobody without its key can make another that opens,
so the engine now assigns only the first ask that logs a body; a later copy is never offered
and is refunded when it expires.
"""

from __future__ import annotations

from pathlib import Path

from proofs.proofs_support import settle
from proofs.test_private import REWARD, SALT, PrivateFlow, X
from reef.proofs import AskState


def test_an_ask_carrying_a_copy_of_another_asks_sealed_inputs_is_never_assigned(
    tmp_path: Path,
) -> None:
    flow = PrivateFlow(tmp_path)
    flow.engine.publish_key()
    flow.register_key()
    victim = flow.ask(X)
    copier = flow.chain.market(flow.chain.users[2])
    sealed = copier.ask_secret(victim)
    copy, _ = copier.create_private_ask(
        flow.market_id, [SALT + 1], secret=sealed.secret, acl=sealed.acl, reward=REWARD,
        expiry=flow.chain.next_time() + 120, proving_time=300,
    )  # fmt: skip
    for _ in range(3):
        flow.engine.step()
    assert copier.ask_state(victim) == AskState.ASSIGNED
    assert copier.ask_state(copy) == AskState.OPEN
    [outcome] = settle(flow.prover)
    assert (outcome.ask_id, outcome.outcome) == (victim, "proved")
    # The book remembers the body after the victim's ask is done, and after a restart.
    again = flow.chain.matching_engine(tmp_path / "engine.db")
    again.step()
    assert copy in again.book.open_asks
    assert copy not in again.book.fresh
    assert copier.ask_state(copy) == AskState.OPEN
