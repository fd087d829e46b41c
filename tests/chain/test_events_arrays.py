"""EventDecoder on dynamic arrays and bools (the serverless contracts' ``address[]`` and
``success``), held to eth-abi's encoding and web3's decoding of the same log, and to hostile data:
a short, overlong or badly padded array is a ChainError naming the event, never a crash.

Stored events with arrays and bools survive to_json -> from_json (hypothesis over every event of
the three serverless decoders), and a stored array that is not a list is refused.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, get_args, get_origin, get_type_hints

import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st
from web3 import Web3

from reef.chain import Address, ChainEvent, EventDecoder, load_artifact
from reef.crypto import keccak256
from reef.errors import ChainError
from reef.serverless import (
    JobCreated,
    JobResultCallbackCalled,
    RelayJobResponded,
    serverless_code_decoder,
    serverless_jobs_decoder,
    serverless_relay_decoder,
)

JOBS = serverless_jobs_decoder()
JOBS_AT = "0x" + "5b" * 20
TX = "0x" + "ab" * 32
EXECUTORS = [to_checksum_address(bytes([i]) * 20) for i in (1, 2, 3)]
CREATED = keccak256(b"JobCreated(uint256,uint8,address,bytes32,bytes,uint256,uint256,address[])")
CALLBACK = keccak256(b"JobResultCallbackCalled(uint256,bool)")


def _word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def _raw_log(topic0: bytes, topics: list[str], data: bytes) -> dict[str, Any]:
    """A log as a JSON-RPC node returns it (hex strings)."""
    return {
        "address": JOBS_AT,
        "topics": ["0x" + topic0.hex(), *topics],
        "data": "0x" + data.hex(),
        "blockNumber": "0x7",
        "logIndex": "0x2",
        "transactionHash": TX,
    }


def _created_log(selected: list[str], *, data: bytes | None = None) -> dict[str, Any]:
    body = abi_encode(
        ["bytes32", "bytes", "uint256", "uint256", "address[]"],
        [b"\x11" * 32, b"input", 4000, 4000, selected],
    )
    owner = "0x" + "00" * 12 + "cc" * 20
    return _raw_log(CREATED, [_word(5), _word(1), owner], body if data is None else data)


@pytest.mark.parametrize("selected", [[], EXECUTORS[:1], EXECUTORS])
def test_an_address_array_decodes_as_web3_decodes_it(selected: list[str]) -> None:
    raw = _created_log(selected)
    event = JOBS.decode(raw)
    assert isinstance(event, JobCreated)
    assert event.selected_executors == tuple(selected)
    # The same log through web3's own decoder (an independent implementation).
    contract = Web3().eth.contract(abi=load_artifact("ServerlessJobs").abi)
    web3_log = {
        **raw,
        "topics": [bytes.fromhex(t[2:]) for t in raw["topics"]],
        "data": bytes.fromhex(raw["data"][2:]),
        "blockNumber": 7,
        "logIndex": 2,
        "transactionIndex": 0,
        "blockHash": b"\x00" * 32,
        "transactionHash": bytes.fromhex(TX[2:]),
        "address": to_checksum_address(JOBS_AT),
    }
    args = contract.events.JobCreated().process_log(web3_log)["args"]
    assert event.job_id == args["jobId"] == 5
    assert event.env == args["env"] == 1
    assert event.owner == args["owner"]
    assert event.codehash == args["codehash"]
    assert event.code_inputs == args["codeInputs"] == b"input"
    assert event.deadline == args["deadline"]
    assert event.deposit == args["deposit"]
    assert event.selected_executors == tuple(args["selectedExecutors"])
    assert (event.block_number, event.log_index, event.tx_hash) == (7, 2, TX)


def test_bools_decode_and_a_bool_word_above_one_is_refused() -> None:
    for flag in (True, False):
        event = JOBS.decode(_raw_log(CALLBACK, [_word(9)], abi_encode(["bool"], [flag])))
        assert isinstance(event, JobResultCallbackCalled)
        assert event.success is flag
    with pytest.raises(ChainError, match="malformed JobResultCallbackCalled"):
        JOBS.decode(_raw_log(CALLBACK, [_word(9)], (2).to_bytes(32, "big")))


def _hostile_bodies() -> list[tuple[str, bytes]]:
    good = abi_encode(
        ["bytes32", "bytes", "uint256", "uint256", "address[]"],
        [b"\x11" * 32, b"input", 4000, 4000, EXECUTORS],
    )
    array_at = int.from_bytes(good[4 * 32 : 5 * 32], "big")
    huge_length = good[:array_at] + (2**200).to_bytes(32, "big") + good[array_at + 32 :]
    padded = bytearray(good)
    padded[array_at + 32] = 0xFF  # the first element's high (padding) byte
    outside = good[: 4 * 32] + (len(good) + 64).to_bytes(32, "big") + good[5 * 32 :]
    return [
        ("truncated", good[:-32]),
        ("empty", b""),
        ("a length of 2**200", huge_length),
        ("a padded element", bytes(padded)),
        ("an offset outside the data", outside),
    ]


@pytest.mark.parametrize(("what", "body"), _hostile_bodies(), ids=lambda v: str(v)[:24])
def test_a_hostile_array_is_a_chain_error(what: str, body: bytes) -> None:
    with pytest.raises(ChainError, match="malformed JobCreated"):
        JOBS.decode(_created_log(EXECUTORS, data=body))


_addresses = st.binary(min_size=20, max_size=20).map(lambda b: Address(to_checksum_address(b)))
_SCALARS: dict[object, st.SearchStrategy[Any]] = {
    Address: _addresses,
    int: st.integers(0, 2**256 - 1),
    bytes: st.binary(max_size=40),
    bool: st.booleans(),
}
_BASE = {f.name for f in fields(ChainEvent)}
DECODERS = [serverless_code_decoder(), JOBS, serverless_relay_decoder()]


def _strategy(hint: object) -> st.SearchStrategy[Any]:
    if get_origin(hint) is tuple:
        return st.lists(_SCALARS[get_args(hint)[0]], max_size=4).map(tuple)
    return _SCALARS[hint]


def _events(decoder: EventDecoder) -> st.SearchStrategy[tuple[EventDecoder, ChainEvent]]:
    def build(cls: type[ChainEvent]) -> st.SearchStrategy[ChainEvent]:
        hints = get_type_hints(cls)
        own = {f.name: _strategy(hints[f.name]) for f in fields(cls) if f.name not in _BASE}
        return st.builds(
            cls,
            address=_addresses,
            block_number=st.integers(0, 2**63 - 1),
            log_index=st.integers(0, 2**31 - 1),
            tx_hash=st.just(TX),
            **own,
        )

    return st.tuples(st.just(decoder), st.sampled_from(decoder.classes).flatmap(build))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(DECODERS).flatmap(_events))
def test_stored_events_with_arrays_and_bools_read_back_equal(
    pair: tuple[EventDecoder, ChainEvent],
) -> None:
    decoder, event = pair
    record = decoder.to_json(event)
    back = decoder.from_json(
        record.name,
        record.data,
        address=event.address,
        block_number=event.block_number,
        log_index=event.log_index,
        tx_hash=event.tx_hash,
    )
    assert back == event


def test_the_relay_and_the_jobs_contract_each_have_their_job_responded() -> None:
    relay = serverless_relay_decoder()
    assert RelayJobResponded in relay.classes
    # One ABI name, two contracts' events, stored under their class names.
    assert relay.json_name(RelayJobResponded) == "RelayJobResponded"
    assert JOBS.topics_of([JobCreated]) == (CREATED,)


@pytest.mark.parametrize(
    ("selected", "message"),
    [
        ("0x" + "01" * 20, "is not a list"),
        (["0x1234"], "not a valid address"),
    ],
)
def test_a_malformed_stored_array_is_refused(selected: Any, message: str) -> None:
    event = JOBS.decode(_created_log(EXECUTORS))
    assert event is not None
    data = {**JOBS.to_json(event).data, "selected_executors": selected}
    with pytest.raises(ChainError, match=message):
        JOBS.from_json("JobCreated", data, address=JOBS_AT, block_number=0, log_index=0, tx_hash=TX)


def test_a_stored_bool_must_be_a_json_bool() -> None:
    with pytest.raises(ChainError, match="not a valid bool"):
        JOBS.from_json(
            "JobResultCallbackCalled",
            {"job_id": "0x1", "success": "true"},
            address=JOBS_AT,
            block_number=0,
            log_index=0,
            tx_hash=TX,
        )


def test_a_class_is_refused_by_an_abi_that_lacks_its_event_or_logs_other_fields() -> None:
    with pytest.raises(ChainError, match="lacks the events"):
        EventDecoder(load_artifact("ServerlessCode").abi, [RelayJobResponded])
    # The Jobs contract has a JobResponded too, with other fields: not the Relay's event.
    with pytest.raises(ChainError, match="declares the fields"):
        EventDecoder(load_artifact("ServerlessJobs").abi, [RelayJobResponded])
    assert RelayJobResponded.ABI_NAME == "JobResponded"
    assert EventDecoder(load_artifact("ServerlessRelay").abi, [RelayJobResponded]).topics
