"""What a ``reef up`` extension reuses from ``$REEF_HOME/<role>/deployment.json``: the contracts
it deployed, only on the same devnet (chain id and the values it names) while every one of
them still holds code; anything else means deploying anew, never a crash."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from reef.home import ReefHome
from reef.node import UpContext
from reef.node._up import _EnclaveExtension

CHAIN_ID = 31337
JOBS = "0x" + "11" * 20
CODE = "0x" + "22" * 20


@dataclass
class FakeDevnet:
    """The two things the check reads: the chain id and ``eth.get_code``."""

    code: dict[str, bytes] = field(default_factory=dict)
    chain_id: int = CHAIN_ID

    def web3(self) -> Any:
        return SimpleNamespace(eth=SimpleNamespace(get_code=self._get_code))

    def _get_code(self, address: str) -> bytes:
        if not (address.startswith("0x") and len(address) == 42):
            raise ValueError(f"{address!r} is not an address")  # as web3 refuses one
        return self.code.get(address, b"")


class Extension(_EnclaveExtension):
    ROLE = "test-role"


def _ctx(devnet: FakeDevnet) -> UpContext:
    return cast(UpContext, SimpleNamespace(home=ReefHome.from_env(), devnet=devnet))


@pytest.fixture
def deployed() -> FakeDevnet:
    return FakeDevnet(code={JOBS: b"\x60\x80", CODE: b"\x60\x80"})


def test_nothing_saved_is_nothing_to_reuse(deployed: FakeDevnet) -> None:
    assert Extension()._reusable_state(_ctx(deployed), ("jobs",)) is None


def test_the_saved_contracts_are_reused_on_the_same_devnet(deployed: FakeDevnet) -> None:
    extension = Extension()
    ctx = _ctx(deployed)
    state = {"chain_id": CHAIN_ID, "version": 3, "jobs": JOBS, "code": CODE}
    extension._save_state(ctx.home, state)
    assert extension._reusable_state(ctx, ("jobs", "code"), version=3) == state


@pytest.mark.parametrize(
    ("saved", "why"),
    [
        ({"chain_id": 1, "version": 3, "jobs": JOBS, "code": CODE}, "another chain"),
        ({"chain_id": CHAIN_ID, "version": 2, "jobs": JOBS, "code": CODE}, "an older layout"),
        ({"chain_id": CHAIN_ID, "version": 3, "jobs": JOBS}, "a contract not recorded"),
        ({"chain_id": CHAIN_ID, "version": 3, "jobs": JOBS, "code": "0x12"}, "a bad address"),
        (
            {"chain_id": CHAIN_ID, "version": 3, "jobs": JOBS, "code": "0x" + "33" * 20},
            "a contract without code (a fresh chain)",
        ),
    ],
)
def test_anything_else_is_deployed_anew(
    deployed: FakeDevnet, saved: dict[str, Any], why: str
) -> None:
    extension = Extension()
    ctx = _ctx(deployed)
    extension._save_state(ctx.home, saved)
    assert extension._reusable_state(ctx, ("jobs", "code"), version=3) is None, why


def test_a_serverless_deployment_from_before_outputs_bound_their_code_is_not_reused(
    deployed: FakeDevnet,
) -> None:
    """An older Jobs contract refuses every output today's executors sign (they bind the
    code and input they ran), so a home's old serverless deployment is deployed anew."""
    from reef.node._serverless import _STATE_VERSION, ServerlessExtension

    extension = ServerlessExtension()
    ctx = _ctx(deployed)
    old = {"chain_id": CHAIN_ID, "jobs_contract": JOBS, "code_contract": CODE}
    extension._save_state(ctx.home, old)
    assert extension._saved_contracts(ctx) is None
    extension._save_state(ctx.home, {**old, "version": _STATE_VERSION})
    assert extension._saved_contracts(ctx) is not None
