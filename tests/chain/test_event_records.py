"""Stored events read back into the same types: every market and KMS registry event survives
to_json → from_json unchanged (hypothesis over all field values), in Oyster's job_events shape,
and malformed stored rows are refused with a ChainError naming the field."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import fields
from typing import Any, get_type_hints

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from reef.chain import (
    Address,
    Amount,
    ChainEvent,
    EventDecoder,
    JobDeposited,
    JobId,
    JobMetadataUpdated,
    JobOpened,
    ProviderAdded,
    Rate,
    kms_registry_decoder,
    market_decoder,
)
from reef.errors import ChainError
from reef.proofs import proof_market_decoder
from reef.serverless import (
    serverless_code_decoder,
    serverless_jobs_decoder,
    serverless_relay_decoder,
)

MARKET = market_decoder()
REGISTRY = kms_registry_decoder()
BASE = {f.name for f in fields(ChainEvent)}

_addresses = st.binary(min_size=20, max_size=20).map(lambda b: Address(to_checksum_address(b)))
_STRATEGIES: dict[object, st.SearchStrategy[Any]] = {
    Address: _addresses,
    JobId: st.binary(min_size=32, max_size=32).map(lambda b: JobId("0x" + b.hex())),
    Rate: st.integers(0, 2**256 - 1),
    Amount: st.integers(0, 2**256 - 1),
    int: st.integers(0, 2**256 - 1),
    bytes: st.binary(max_size=40),
    str: st.text(max_size=40),
}


def events_of(decoder: EventDecoder) -> st.SearchStrategy[ChainEvent]:
    def build(cls: type[ChainEvent]) -> st.SearchStrategy[ChainEvent]:
        hints = get_type_hints(cls)
        own = {f.name: _STRATEGIES[hints[f.name]] for f in fields(cls) if f.name not in BASE}
        return st.builds(
            cls,
            address=_addresses,
            block_number=st.integers(0, 2**63 - 1),
            log_index=st.integers(0, 2**31 - 1),
            tx_hash=st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
            **own,
        )

    return st.sampled_from(decoder.classes).flatmap(build)


def test_every_event_type_is_a_frozen_keyword_only_dataclass() -> None:
    # Subclassing ChainEvent is the whole declaration: the base makes each subclass so.
    decoders = [
        MARKET,
        REGISTRY,
        proof_market_decoder(),
        serverless_code_decoder(),
        serverless_jobs_decoder(),
        serverless_relay_decoder(),
    ]
    classes = [cls for decoder in decoders for cls in decoder.classes]
    assert len(classes) == 16 + 2 + 24 + 1 + 14 + 7  # the proof market gained MarketRetired
    for cls in classes:
        assert dataclasses.is_dataclass(cls), cls
        assert cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        assert all(f.kw_only for f in fields(cls)), cls
        assert set(BASE) < {f.name for f in fields(cls)}, cls
    event = ProviderAdded(
        address=Address("0x" + "11" * 20),
        block_number=1,
        log_index=0,
        tx_hash="",
        provider=Address("0x" + "22" * 20),
        cp="x",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.cp = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ProviderAdded(Address("0x" + "11" * 20), 1, 0, "", Address("0x" + "22" * 20), "x")  # type: ignore[call-arg]


@settings(max_examples=300, deadline=None)
@given(event=st.one_of(events_of(MARKET), events_of(REGISTRY)))
def test_every_event_reads_back_equal(event: ChainEvent) -> None:
    decoder = MARKET if type(event) in MARKET.classes else REGISTRY
    record = decoder.to_json(event)
    stored = json.loads(json.dumps(dict(record.data)))  # as the indexer stores it: JSON text
    back = decoder.from_json(
        record.name,
        stored,
        address=event.address.lower(),
        block_number=event.block_number,
        log_index=event.log_index,
        tx_hash=event.tx_hash,
    )
    assert back == event
    assert type(back) is type(event)


def test_the_stored_shape_is_oysters() -> None:
    job = JobId("0x" + "00" * 31 + "07")
    owner = Address(to_checksum_address("0x" + "ab" * 20))
    where: dict[str, Any] = {
        "address": owner,
        "block_number": 1,
        "log_index": 0,
        "tx_hash": "0x" + "11" * 32,
    }
    opened = JobOpened(
        **where,
        job=job,
        metadata="{}",
        owner=owner,
        provider=owner,
        rate=Rate(10),
        balance=Amount(255),
        timestamp=1,
    )
    record = MARKET.to_json(opened)
    assert (record.name, record.job_id) == ("Opened", job)
    assert record.data == {
        "job_id": job,
        "metadata": "{}",
        "owner": "0x" + "ab" * 20,
        "provider": "0x" + "ab" * 20,
        "rate": "0xa",
        "balance": "0xff",
        "timestamp": "0x1",
    }
    deposited = MARKET.to_json(JobDeposited(**where, job=job, from_=owner, amount=Amount(1)))
    assert deposited.data == {"job_id": job, "from": "0x" + "ab" * 20, "amount": "0x1"}
    updated = MARKET.to_json(JobMetadataUpdated(**where, job=job, metadata="m"))
    assert (updated.name, updated.data) == ("MetadataUpdated", {"job_id": job, "new_metadata": "m"})
    # A string field is stored as given, even when it looks like an address (the type decides).
    cp = ProviderAdded(**where, provider=owner, cp="0x" + "AB" * 20)
    assert MARKET.to_json(cp).data["cp"] == "0x" + "AB" * 20
    assert MARKET.to_json(cp).job_id is None
    with pytest.raises(ChainError, match="not an event of this contract"):
        REGISTRY.to_json(cp)


GOOD = {"job_id": "0x" + "00" * 32, "from": "0x" + "0d" * 20, "amount": "0x10"}


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("Nope", GOOD, "named 'Nope'"),
        ("Deposited", {**GOOD, "amount": None}, "Deposited.amount"),
        ("Deposited", {**GOOD, "amount": "0xzz"}, "Deposited.amount"),
        ("Deposited", {**GOOD, "amount": -1}, "Deposited.amount"),
        ("Deposited", {**GOOD, "amount": True}, "Deposited.amount"),
        ("Deposited", {**GOOD, "from": "0x1234"}, "Deposited.from"),
        ("Deposited", {**GOOD, "job_id": "0x12"}, "Deposited.job_id"),
        ("Deposited", {k: v for k, v in GOOD.items() if k != "from"}, "no 'from'"),
    ],
)
def test_malformed_rows_are_refused(name: str, data: dict[str, Any], needle: str) -> None:
    with pytest.raises(ChainError, match=needle):
        MARKET.from_json(
            name, data, address="0x" + "5a" * 20, block_number=0, log_index=0, tx_hash=""
        )


def test_integers_may_be_json_numbers_and_extra_keys_are_ignored() -> None:
    event = MARKET.from_json(
        "Deposited",
        {**GOOD, "amount": 16, "later_field": 1},
        address="0x" + "5a" * 20,
        block_number=3,
        log_index=1,
        tx_hash="",
    )
    assert isinstance(event, JobDeposited)
    assert event.amount == 16
    assert event.from_ == to_checksum_address("0x" + "0d" * 20)
