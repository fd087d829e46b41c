"""The proof services' settings (``network.json``) have one owner, :class:`ServiceSettings`:
what ``reef up`` writes is byte for byte what it wrote as a dict (an init param's bytes are
measured into PCR16), what the services read back is the same record, and the host-address
rewrite is its own step."""

from __future__ import annotations

import json

import pytest

from reef.errors import InputError
from reef.proofs import MarketJoin, ProverSetup, ServiceSettings

RPC = "http://127.0.0.1:8545"
MARKET = "0x" + "ab" * 20


def _old_writer(settings: dict[str, object]) -> bytes:
    """How the proofs extension wrote network.json before the record existed."""
    return json.dumps(settings, sort_keys=True).encode()


def test_what_reef_up_writes_is_byte_for_byte_what_it_wrote_before() -> None:
    base = {"rpc": RPC, "proof_market": MARKET, "from_block": 7, "wait_s": 120}
    record = ServiceSettings(rpc=RPC, proof_market=MARKET, from_block=7, wait_s=120)
    engine = ServiceSettings(
        rpc=RPC, proof_market=MARKET, from_block=7, wait_s=120, ignore_provers=()
    )
    assert engine.to_json() == _old_writer({**base, "ignore_provers": []})
    gone = ("0x" + "01" * 20, "0x" + "02" * 20)
    assert ServiceSettings(
        rpc=RPC, proof_market=MARKET, from_block=7, wait_s=120, ignore_provers=gone
    ).to_json() == _old_writer({**base, "ignore_provers": list(gone)})
    ivs = ServiceSettings(rpc=RPC, proof_market=MARKET, from_block=7)
    assert ivs.to_json() == _old_writer({"rpc": RPC, "proof_market": MARKET, "from_block": 7})
    quotes = [{"market_id": m, "price": 100_000, "max_time": 60, "compute": 1} for m in (2, 10)]
    prover = ServiceSettings(
        rpc=RPC,
        proof_market=MARKET,
        from_block=7,
        wait_s=120,
        prover=ProverSetup(
            stake=100_000_000,
            compute=4,
            markets=tuple(MarketJoin(market_id=m, price=100_000, max_time=60) for m in (2, 10)),
        ),
        ivs={2: "http://127.0.0.1:4000", 10: "http://127.0.0.1:4000"},
    )
    old = {
        **base,
        "prover": {"stake": 100_000_000, "compute": 4, "markets": quotes},
        "ivs": {"2": "http://127.0.0.1:4000", "10": "http://127.0.0.1:4000"},
    }
    assert prover.to_json() == _old_writer(old)
    # Pinned as text too: keys sorted at every level (so "10" before "2"), ", " and ": ".
    assert prover.to_json().decode() == (
        '{"from_block": 7, "ivs": {"10": "http://127.0.0.1:4000", "2": "http://127.0.0.1:4000"}, '
        '"proof_market": "0xabababababababababababababababababababab", "prover": {"compute": 4, '
        '"markets": [{"compute": 1, "market_id": 2, "max_time": 60, "price": 100000}, '
        '{"compute": 1, "market_id": 10, "max_time": 60, "price": 100000}], "stake": 100000000}, '
        '"rpc": "http://127.0.0.1:8545", "wait_s": 120}'
    )
    for settings in (record, engine, ivs, prover, ServiceSettings()):
        assert ServiceSettings.from_json(settings.to_json(), source="x") == settings


def test_reading_fills_the_defaults_reef_up_always_writes() -> None:
    read = ServiceSettings.from_json(
        '{"prover": {"markets": [{"market_id": 3, "price": 5, "max_time": 9}]}, "extra": 1}',
        source="n.json",
    )
    assert read.prover == ProverSetup(
        stake=0, compute=1, markets=(MarketJoin(market_id=3, price=5, max_time=9, compute=1),)
    )
    assert (read.rpc, read.ivs, read.ignore_provers, read.wait_s) == (None, None, None, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "the network file n.json is not a JSON object"),
        ("{", "cannot read the network file n.json"),
        ('{"rpc": 5}', "the network file n.json: rpc must be a string"),
        ('{"wait_s": -1}', "the network file n.json: wait_s must be a number >= 0"),
        ('{"ivs": {"1": 2}}', 'ivs must be an object {"MARKET": URL}'),
        ('{"prover": []}', "prover must be an object"),
        ('{"prover": {"markets": [1]}}', "prover.markets must be a list of objects"),
        ('{"prover": {"compute": 1.5}}', "prover compute must be an integer >= 0"),
        ('{"prover": {"markets": [{"market_id": 1, "price": 1}]}}', "an object with max_time"),
    ],
)
def test_a_bad_settings_document_names_the_source_and_the_field(text: str, message: str) -> None:
    with pytest.raises(InputError) as raised:
        ServiceSettings.from_json(text, source="n.json")
    assert message in raised.value.message


def test_the_host_address_rewrite_is_a_separate_step_for_loopback_urls_only() -> None:
    settings = ServiceSettings(
        rpc="http://localhost/rpc",
        ivs={1: "http://127.0.0.1:4000/x", 2: "https://ivs.example:443"},
    )
    assert settings.via_host(None) is settings
    assert settings.via_host("") is settings
    inside = settings.via_host("10.0.2.2")
    assert inside.rpc == "http://10.0.2.2/rpc"
    assert inside.ivs == {1: "http://10.0.2.2:4000/x", 2: "https://ivs.example:443"}
    assert ServiceSettings(wait_s=1).via_host("10.0.2.2") == ServiceSettings(wait_s=1)
    assert settings.rpc == "http://localhost/rpc"  # the record itself is unchanged
