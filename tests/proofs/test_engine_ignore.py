"""A matching engine told that a prover is gone (an earlier ``reef up``'s prover enclave, whose
key died with it) never assigns it an ask, while an engine without that list does."""

from __future__ import annotations

from pathlib import Path

from proofs.test_flow import Flow
from reef.proofs import AskState


def test_an_ignored_prover_is_never_assigned(tmp_path: Path) -> None:
    flow = Flow(tmp_path)
    gone = flow.prover_account.address
    ignoring = flow.chain.matching_engine(tmp_path / "ignoring.db", ignore_provers=[gone.lower()])
    ask_id = flow.ask(5)
    assert ignoring.step().assigned == 0
    assert flow.chain.market().ask(ask_id).state == AskState.OPEN
    # The same book without the list assigns it to that prover: the list alone kept it open.
    assert flow.engine.step().assigned == 1
    assert flow.chain.market().ask(ask_id).prover == gone
