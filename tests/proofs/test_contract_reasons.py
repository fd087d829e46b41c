"""The proof market's revert reasons in Python are exactly the contract's assert strings."""

from __future__ import annotations

import re

from proofs.proofs_support import EXAMPLE
from reef.proofs import ProofRevert

CONTRACT = EXAMPLE.parents[2] / "src" / "reef" / "chain" / "contracts" / "ProofMarket.vy"


def test_revert_reasons_match_the_contract_exactly() -> None:
    text = re.sub(r'"""[\s\S]*?"""', "", CONTRACT.read_text())
    in_source = set(re.findall(r'"([^"\n]+)"', text)) - {"\\x19Ethereum Signed Message:\\n32"}
    known = {r.value for r in ProofRevert}
    assert in_source - known == set(), "reasons in ProofMarket.vy that ProofRevert lacks"
    assert known - in_source == set(), "reasons in ProofRevert that ProofMarket.vy never gives"
