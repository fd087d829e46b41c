"""The decisions ``reef proofs`` and ``reef prover`` used to make themselves, now pure functions
of reef.proofs over typed snapshots (no chain, no sockets): an ask no prover takes, a prover
short of the stake for a market's penalty, an ask's ending and where its money went, an ask's
input files checked against its market, and the circuit files of a new market.

The independent checks: the warnings agree with the matching engine's round (``match_round``)
on random books, and an ending's money is what the contract's model
(:class:`~reef.proofs.ProofMarketModel`) moves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reef.chain import Address, Amount
from reef.errors import InputError, ProofError
from reef.proofs import (
    Ask,
    AskListing,
    AskState,
    Capacity,
    CircuitArtifacts,
    LeaveStep,
    Market,
    MarketKind,
    MarketListing,
    OpenAsk,
    ProofMarketModel,
    ProverInfo,
    Quote,
    ask_ending,
    match_round,
    prepare_ask,
    short_stake,
    unmatched_ask,
)

POSEIDON = Path(__file__).resolve().parents[2] / "examples" / "proofs" / "poseidon"
_ZERO = Address("0x" + "00" * 20)
_PROVER = Address("0x" + "11" * 20)


def _ask(reward: int = 100, proving_time: int = 60, *, private: bool = False) -> OpenAsk:
    return OpenAsk(1, 3, reward, 10**9, proving_time, private=private)


def _quote(price: int = 100, max_time: int = 60, **kw: Any) -> Quote:
    return Quote(kw.pop("prover", "p"), kw.pop("market_id", 3), price, max_time, 1, **kw)


# ---- an ask no prover takes ----


def test_an_ask_in_a_market_nobody_serves_says_so() -> None:
    for quotes in ([], [_quote(leaving=True)], [_quote(market_id=4)]):
        advice = unmatched_ask(_ask(), quotes)
        assert advice is not None
        assert advice.quotes == ()
        assert (advice.cheapest, advice.quickest) == (None, None)
        assert advice.message("2m").startswith("no prover takes market 3's asks now")


def test_a_price_exactly_at_the_reward_takes_the_ask_and_one_unit_more_does_not() -> None:
    assert unmatched_ask(_ask(reward=100), [_quote(price=100)]) is None
    advice = unmatched_ask(_ask(reward=100), [_quote(price=101), _quote(price=150)])
    assert advice is not None
    assert advice.cheapest == 101
    assert advice.reasons() == [
        "the cheapest asks 0.000101 rUSD per proof (--reward is 0.0001 rUSD)"
    ]
    message = advice.message("90s")
    assert message.startswith("no prover of market 3 takes this ask as it is: the cheapest")
    assert "Unless one does within --expiry (90s), it expires unassigned" in message


def test_a_time_bound_exactly_at_the_proving_time_takes_the_ask_and_one_second_more_does_not() -> (
    None
):
    assert unmatched_ask(_ask(proving_time=60), [_quote(max_time=60)]) is None
    advice = unmatched_ask(_ask(proving_time=60), [_quote(max_time=61)])
    assert advice is not None
    assert advice.reasons() == ["the quickest needs 61 s to prove (--deadline gives 60 s)"]


def test_a_cheap_slow_prover_and_a_quick_dear_one_leave_the_ask_to_neither() -> None:
    quotes = [_quote(price=10, max_time=600), _quote(price=500, max_time=10, prover="q")]
    advice = unmatched_ask(_ask(reward=100, proving_time=60), quotes)
    assert advice is not None
    assert advice.reasons() == []
    assert "none takes both its reward and its deadline" in advice.message("2m")


def test_a_private_ask_needs_a_prover_with_a_key() -> None:
    advice = unmatched_ask(_ask(private=True), [_quote()])
    assert advice is not None
    assert advice.reasons() == ["none has registered a key for its private inputs"]
    assert unmatched_ask(_ask(private=True), [_quote(keyed=True)]) is None
    assert unmatched_ask(_ask(private=False), [_quote()]) is None


def test_an_auction_is_locked_at_the_provers_price_so_only_an_empty_market_warns() -> None:
    assert unmatched_ask(_ask(reward=1), [_quote(price=10**6)], auction=True) is None
    assert unmatched_ask(_ask(reward=1), [], auction=True) is not None


_quotes = st.lists(
    st.builds(
        Quote,
        prover=st.sampled_from(["a", "b", "c", "d"]),
        market_id=st.sampled_from([3, 4]),
        price=st.integers(0, 20),
        max_time=st.integers(1, 20),
        compute=st.just(1),
        leaving=st.booleans(),
        keyed=st.booleans(),
    ),
    max_size=6,
    unique_by=lambda q: (q.prover, q.market_id),
)


@settings(max_examples=300, deadline=None)
@given(
    quotes=_quotes,
    reward=st.integers(0, 20),
    proving_time=st.integers(1, 20),
    private=st.booleans(),
)
def test_the_warning_is_exactly_when_the_engine_would_not_assign(
    quotes: list[Quote], reward: int, proving_time: int, private: bool
) -> None:
    """With room for everyone, the engine's round leaves the ask alone iff it is unmatched."""
    ask = OpenAsk(1, 3, reward, 10**9, proving_time, private=private)
    room = {q.prover: Capacity(free_stake=10**9, free_compute=10**9) for q in quotes}
    pairs = match_round([ask], quotes, room, {3: 1, 4: 1}, now=0, limit=10)
    assert (unmatched_ask(ask, quotes) is None) == bool(pairs)


# ---- a prover short of stake ----


def _prover(stake: int, locked: int = 0) -> ProverInfo:
    return ProverInfo(_PROVER, _PROVER, Amount(stake), Amount(locked), 4, 1, 0, 1)


def _market(penalty: int, *, private: bool = False) -> Market:
    return Market(
        3, MarketKind.TEE, _PROVER, _ZERO, b"\x01" * 32, b"\x00" * 32, Amount(penalty), _ZERO,
        1, 1, private_inputs=private,
    )  # fmt: skip


def test_free_stake_exactly_at_the_penalty_is_enough_and_one_unit_less_is_not() -> None:
    assert short_stake(_prover(10**6), _market(10**6)) is None
    short = short_stake(_prover(10**6 - 1), _market(10**6))
    assert short is not None
    assert (short.free_stake, short.penalty, short.missing) == (10**6 - 1, 10**6, 1)
    assert short.message == (
        "your free stake (0.999999 rUSD) is below market 3's penalty (1 rUSD), which each ask "
        "assigned to you locks: you get none of its asks until you add stake "
        "(`reef prover stake 0.000001`)"
    )


def test_locked_stake_is_not_free_and_a_zero_penalty_needs_none() -> None:
    short = short_stake(_prover(3 * 10**6, locked=2_500_000), _market(10**6))
    assert short is not None
    assert short.missing == 500_000
    assert short_stake(_prover(0), _market(0)) is None


@settings(max_examples=200, deadline=None)
@given(stake=st.integers(0, 50), locked=st.integers(0, 50), penalty=st.integers(0, 50))
def test_short_stake_is_exactly_when_the_engine_would_not_assign(
    stake: int, locked: int, penalty: int
) -> None:
    locked = min(locked, stake)
    ask = OpenAsk(1, 3, 10, 10**9, 60)
    room = {"p": Capacity(free_stake=stake - locked, free_compute=10)}
    pairs = match_round([ask], [_quote(price=1, max_time=1)], room, {3: penalty}, now=0, limit=1)
    assert (short_stake(_prover(stake, locked), _market(penalty)) is None) == bool(pairs)


# ---- an ask's ending, and its money ----


def _listing(state: AskState, *, reward: int = 750_000, price: int | None = None) -> AskListing:
    ask = Ask(
        7, 3, _PROVER, _PROVER, Amount(reward), 100, 60, 0 if price is None else 160,
        _ZERO if price is None else _PROVER, state,
    )  # fmt: skip
    return AskListing(ask, (5,), None if price is None else Amount(price), None, None)


@pytest.mark.parametrize(
    "state", [AskState.COMPLETE, AskState.OPEN, AskState.ASSIGNED, AskState.NULL]
)
def test_an_ask_complete_or_under_way_has_no_ending(state: AskState) -> None:
    assert ask_ending(_listing(state)) is None


@pytest.mark.parametrize(
    ("state", "said"),
    [
        (AskState.CANCELLED, "ask 7 was cancelled; its 0.75 rUSD came back to the requester"),
        (AskState.EXPIRED, "ask 7 expired: no prover took it before its expiry, and its 0.75 rUSD"),
        (AskState.UNASSIGNED, "`reef proofs cancel 7` takes its 0.75 rUSD back"),
        (AskState.SLASHED, "the 0.75 rUSD and the prover's penalty went to the requester"),
        (AskState.DEADLINE_CROSSED, "anyone may slash it"),
        (AskState.INVALID, "its prover was paid its price (0.25 rUSD) and the rest of the 0.75"),
    ],
)
def test_each_ending_says_why_and_where_the_money_went(state: AskState, said: str) -> None:
    price = (
        250_000
        if state in (AskState.INVALID, AskState.SLASHED, AskState.DEADLINE_CROSSED)
        else None
    )
    ending = ask_ending(_listing(state, price=price))
    assert ending is not None
    assert said in ending.message
    assert (ending.ask_id, ending.market_id, ending.state) == (7, 3, state)


def _model_ending(end: str) -> tuple[ProofMarketModel, int]:
    """A TEE market, a prover at price 25 and penalty 10, an ask of reward 75 by ``req``
    (refunds to ``refund``) ended as ``end`` says; returns the model and the ask's id."""
    model = ProofMarketModel()
    model.balances.update({"req": 100, "p": 100})
    market_id = model.create_tee_market("creator", penalty=10, ivs="ivs", n_inputs=1)
    model.register("p", compute=4, stake=50)
    model.join_market("p", market_id, price=25, max_time=30, compute=1)
    ask_id = model.create_ask(
        "req", market_id, [5], reward=75, expiry=100, proving_time=60, refund="refund", now=0
    )
    if end == "cancelled":
        model.cancel_ask("req", ask_id)
    elif end == "expired":
        model.refund_expired(ask_id, now=100)
    else:
        assert model.try_assign(ask_id, "p", now=1) is None
        if end == "invalid":
            model.submit_invalid_input(ask_id, "ivs", now=2)
        else:
            model.slash(ask_id, now=62)
    return model, ask_id


@pytest.mark.parametrize("end", ["cancelled", "expired", "invalid", "slashed"])
def test_an_endings_money_is_what_the_contracts_model_moves(end: str) -> None:
    model, ask_id = _model_ending(end)
    kept = model.asks[ask_id]
    listing = _listing(kept.state, reward=kept.reward, price=kept.price if kept.prover else None)
    ending = ask_ending(listing)
    assert ending is not None
    penalty = 10 if end == "slashed" else 0  # a slash also pays the requester the penalty
    assert model.balances["refund"] == ending.to_requester + penalty
    assert model.balances["p"] - 50 == ending.to_prover  # the prover's 50 went to its stake
    assert model.balances["req"] == 100 - kept.reward


def test_an_ending_still_to_be_closed_has_moved_nothing_yet() -> None:
    for state in (AskState.UNASSIGNED, AskState.DEADLINE_CROSSED):
        ending = ask_ending(_listing(state, price=None))
        assert ending is not None
        assert (ending.to_requester, ending.to_prover) == (0, 0)


# ---- an ask's input files, against its market ----


def _market_listing(
    *, public: list[str], private: list[str] | None = None, retired: bool = False,
    successors: tuple[int, ...] = (),
) -> MarketListing:  # fmt: skip
    metadata: dict[str, Any] = {"name": "m", "public_inputs": public}
    if private is not None:
        metadata["private_inputs"] = private
    return MarketListing(
        _market(1, private=private is not None), metadata, (), retired=retired,
        successors=successors,
    )  # fmt: skip


def test_inputs_come_in_the_markets_order_and_private_ones_as_the_bytes_to_seal() -> None:
    listing = _market_listing(public=["b", "a"], private=["x"])
    ask = prepare_ask(
        listing, {"a": 1, "b": "0x10"}, Path("in.json"), private={"x": 5},
        private_path=Path("p.json"),
    )  # fmt: skip
    assert ask.inputs == (16, 1)
    assert ask.secret == b'{"x":"5"}'  # snarkjs's decimal strings, compact


@pytest.mark.parametrize(
    ("public", "private", "said"),
    [
        ({}, None, "in.json lacks market 3's public input a"),
        ({"a": 1, "y": 2}, None, "in.json has 'y', which market 3 does not take"),
        ({"a": 1, "x": 2}, {"x": 2}, "in.json has x, a private input of market 3"),
        ({"a": "abc"}, None, "in.json: public input a is not an integer: 'abc'"),
    ],
)
def test_input_files_that_do_not_fit_the_market_are_refused(
    public: dict[str, Any], private: dict[str, Any] | None, said: str
) -> None:
    listing = _market_listing(public=["a"], private=["x"] if private is not None else None)
    with pytest.raises(InputError) as caught:
        prepare_ask(listing, public, Path("in.json"), private=private, private_path=Path("p.json"))
    assert said in caught.value.message


def test_private_inputs_go_only_to_a_market_that_takes_them_and_never_into_an_auction() -> None:
    with pytest.raises(ProofError, match="market 3 takes no private inputs"):
        prepare_ask(_market_listing(public=["a"]), {"a": 1}, Path("i"), private={"x": 1})
    with pytest.raises(ProofError, match=r"market 3 needs private inputs \['x'\]"):
        prepare_ask(_market_listing(public=["a"], private=["x"]), {"a": 1}, Path("i"))
    with pytest.raises(ProofError, match="an auction ask takes public inputs only"):
        prepare_ask(
            _market_listing(public=["a"], private=["x"]), {"a": 1}, Path("i"), private={"x": 1},
            auction=True,
        )  # fmt: skip


def test_a_retired_market_refuses_asks_and_names_its_successor() -> None:
    with pytest.raises(ProofError) as caught:
        prepare_ask(
            _market_listing(public=["a"], retired=True, successors=(5, 6)), {"a": 1}, Path("i")
        )
    assert caught.value.message == "market 3 is retired: it takes no new asks"
    assert (
        caught.value.hint
        == "market 5 or market 6 proves the same circuit: `reef proofs request 5 ...`"
    )


# ---- a new market's circuit files, and a prover's leave ----


def test_circuit_files_are_checked_before_the_chain(tmp_path: Path) -> None:
    wasm, zkey = POSEIDON / "circuit.wasm", POSEIDON / "circuit.zkey"
    vkey = POSEIDON / "verification_key.json"
    assert CircuitArtifacts.given(wasm, zkey, vkey) == CircuitArtifacts(wasm, zkey, vkey)
    with pytest.raises(InputError, match=r"--vkey .*: no such file"):
        CircuitArtifacts.given(wasm, zkey, tmp_path / "nope.json")
    with pytest.raises(InputError, match=r"--wasm .*: is a directory"):
        CircuitArtifacts.given(tmp_path, zkey, vkey)
    with pytest.raises(InputError, match="is not the verification key of"):
        CircuitArtifacts.given(wasm, zkey, POSEIDON.parent / "commitment" / "verification_key.json")
    with pytest.raises(InputError, match="--groth16 needs --wasm, --zkey and --vkey"):
        CircuitArtifacts.given(wasm, None, vkey)


def test_a_first_leave_step_with_asks_still_assigned_warns_and_a_last_one_does_not() -> None:
    assert LeaveStep(3, 1000, 2).warning == (
        "2 asks of market 3 are still yours: keep `reef prover run` going until they are "
        "proved, or you are slashed at their deadline; you can leave once none is left"
    )
    assert "1 ask of market 3 is still yours" in (LeaveStep(3, 1000, 1).warning or "")
    assert LeaveStep(3, 1000, 0).warning is None
    assert LeaveStep(3, 0, 0).left
