"""The matching core: eligibility mirrors the contract, capacity and stake are never exceeded,
rounds are deterministic (a rebuilt batch is the lost batch), cheaper/faster provers win more
often and a recent miss halves a prover's chances."""

from __future__ import annotations

import collections

from hypothesis import given, settings
from hypothesis import strategies as st

from reef.proofs import Capacity, OpenAsk, Quote, match_round, prover_weight

BIG = 10**9


def _ask(i: int, reward: int = 100, time: int = 100, market: int = 1) -> OpenAsk:
    return OpenAsk(i, market, reward, BIG, time)


def test_only_provers_within_price_time_compute_and_stake_are_chosen() -> None:
    quotes = [
        Quote("dear", 1, price=101, max_time=10, compute=1),
        Quote("slow", 1, price=10, max_time=101, compute=1),
        Quote("busy", 1, price=10, max_time=10, compute=1),
        Quote("poor", 1, price=10, max_time=10, compute=1),
        Quote("leaving", 1, price=10, max_time=10, compute=1, leaving=True),
        Quote("ok", 1, price=100, max_time=100, compute=1),  # equality is allowed, as on chain
    ]
    capacity = {
        "dear": Capacity(BIG, BIG),
        "slow": Capacity(BIG, BIG),
        "busy": Capacity(BIG, 0),
        "poor": Capacity(4, BIG),
        "leaving": Capacity(BIG, BIG),
        "ok": Capacity(BIG, BIG),
    }
    pairs = match_round([_ask(i) for i in range(50)], quotes, capacity, {1: 5}, now=0, limit=100)
    assert {p for _, p in pairs} == {"ok"}
    assert len(pairs) == 50


def test_expired_asks_unknown_markets_and_the_limit_are_respected() -> None:
    quotes = [Quote("p", 1, 1, 1, 1)]
    capacity = {"p": Capacity(BIG, BIG)}
    asks = [OpenAsk(1, 1, 10, 100, 10), OpenAsk(2, 2, 10, BIG, 10), _ask(3), _ask(4), _ask(5)]
    pairs = match_round(asks, quotes, capacity, {1: 0}, now=99, limit=2)
    assert pairs == [(3, "p"), (4, "p")]


@settings(max_examples=60, deadline=None)
@given(
    provers=st.lists(
        st.tuples(
            st.integers(0, 50),
            st.integers(1, 50),
            st.integers(1, 3),
            st.integers(0, 6),
            st.integers(0, 200),
        ),
        min_size=1,
        max_size=8,
    ),
    asks=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 60)), max_size=40),
    penalty=st.integers(0, 40),
)
def test_a_round_never_exceeds_capacity_or_stake_and_is_deterministic(
    provers: list[tuple[int, int, int, int, int]], asks: list[tuple[int, int]], penalty: int
) -> None:
    quotes = [Quote(f"p{i}", 1, pr, t, c) for i, (pr, t, c, _, _) in enumerate(provers)]
    capacity = {f"p{i}": Capacity(stake, free) for i, (_, _, _, free, stake) in enumerate(provers)}
    open_asks = [_ask(i, reward, time) for i, (reward, time) in enumerate(asks)]
    pairs = match_round(open_asks, quotes, capacity, {1: penalty}, now=0, limit=1000)
    assert pairs == match_round(open_asks, quotes, capacity, {1: penalty}, now=0, limit=1000)
    by_quote = {q.prover: q for q in quotes}
    by_ask = {a.ask_id: a for a in open_asks}
    used = collections.Counter(p for _, p in pairs)
    for prover, count in used.items():
        q = by_quote[prover]
        assert count * q.compute <= capacity[prover].free_compute
        assert count * penalty <= capacity[prover].free_stake
    for ask_id, prover in pairs:
        assert by_quote[prover].price <= by_ask[ask_id].reward
        assert by_quote[prover].max_time <= by_ask[ask_id].proving_time
    assert len({a for a, _ in pairs}) == len(pairs)


def test_cheaper_and_faster_provers_win_more_often_and_a_miss_halves_the_odds() -> None:
    quotes = [
        Quote("cheap", 1, 10, 10, 1),
        Quote("dear", 1, 40, 10, 1),
        Quote("missed", 1, 10, 10, 1),
    ]
    capacity = {
        "cheap": Capacity(BIG, BIG),
        "dear": Capacity(BIG, BIG),
        "missed": Capacity(BIG, BIG, missed=1),
    }
    pairs = match_round([_ask(i) for i in range(6000)], quotes, capacity, {1: 0}, now=0, limit=BIG)
    wins = collections.Counter(p for _, p in pairs)
    # Weights 1/100, 1/400, 1/200: shares 4/7, 1/7, 2/7.
    assert abs(wins["cheap"] / 6000 - 4 / 7) < 0.03
    assert abs(wins["dear"] / 6000 - 1 / 7) < 0.03
    assert abs(wins["missed"] / 6000 - 2 / 7) < 0.03
    assert prover_weight(10, 10, 1) == prover_weight(10, 10, 0) / 2


def _loc() -> dict[str, object]:
    return {
        "address": "0x" + "11" * 20,
        "block_number": 1,
        "log_index": 0,
        "tx_hash": "0x" + "00" * 32,
    }


def test_a_stale_ask_is_parked_and_never_blocks_fresh_ones() -> None:
    from reef.proofs import AskCreated, MarketCreated, OrderBook, ProverJoined, ProverRegistered

    book = OrderBook()
    zero = "0x" + "00" * 20
    book.apply(MarketCreated(**_loc(), market_id=1, creator=zero, kind=1, verifier=zero,  # type: ignore[arg-type]
                             image_id=b"", artifacts_hash=b"", penalty=0, ivs=zero, n_inputs=1, metadata=""), 0)  # fmt: skip
    book.apply(ProverRegistered(**_loc(), prover="p", reward_address="p", compute=10, stake=0), 0)  # type: ignore[arg-type]
    book.apply(ProverJoined(**_loc(), prover="p", market_id=1, price=50, max_time=10, compute=1), 0)  # type: ignore[arg-type]

    def ask(i: int, reward: int) -> None:
        book.apply(AskCreated(**_loc(), ask_id=i, market_id=1, requester="r", refund_address="r",  # type: ignore[arg-type]
                              reward=reward, expiry=BIG, proving_time=100, inputs=b""), 0)  # fmt: skip

    def round_() -> list[tuple[int, str]]:
        return match_round(book.candidates(), book.quotes.values(), book.capacity(0),
                           book.penalties, now=0, limit=10, on_unmatched=book.park)  # fmt: skip

    ask(1, 10)  # below every price: nobody can take it
    assert round_() == []
    assert 1 in book.priced_out[1]  # no quote can take it: only a new quote wakes it
    ask(2, 100)
    assert round_() == [(2, "p")]  # the stale ask did not stand in the way
    assert list(book.candidates()) == [book.open_asks[2]]  # parked ask 1 is not retried...
    book.apply(ProverJoined(**_loc(), prover="q", market_id=1, price=5, max_time=10, compute=1), 0)  # type: ignore[arg-type]
    book.apply(ProverRegistered(**_loc(), prover="q", reward_address="q", compute=1, stake=0), 0)  # type: ignore[arg-type]
    assert (1, "q") in round_()  # ...until its market gains a prover cheap enough
