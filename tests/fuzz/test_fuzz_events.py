"""Event logs fuzzed: what any tenant or provider writes on chain, read by every indexer.

Logs are built from the contracts' own ABIs with eth-abi (an independent encoder) from random
arguments, then mutated: data and topic bytes edited, topics added or dropped, fields of the log
object replaced by other JSON types. ``EventDecoder.decode`` must answer an event, ``None`` (not
its event) or a ``ChainError``; ``from_json`` likewise for stored records; the ABI word decoder a
value or an ``InputError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from hypothesis import given
from hypothesis import strategies as st

from fuzz.fuzz_support import FUZZ, json_values, mutated, mutations
from reef.chain import EventDecoder, kms_registry_decoder, market_decoder
from reef.chain._abi_words import decode_words, words_checker
from reef.chain._artifacts import load_artifact
from reef.crypto import keccak256
from reef.errors import ChainError, InputError

_DECODERS = {"Market": market_decoder(), "KmsRegistry": kms_registry_decoder()}
_EVENTS = [
    (contract, entry)
    for contract in _DECODERS
    for entry in load_artifact(contract).abi
    if entry.get("type") == "event"
]


def _value(typ: str) -> st.SearchStrategy[Any]:
    if typ == "address":
        return st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
    if typ == "bool":
        return st.booleans()
    if typ == "string":
        return st.text(max_size=40)
    if typ == "bytes":
        return st.binary(max_size=40)
    if typ.startswith("bytes"):
        return st.binary(min_size=int(typ[5:]), max_size=int(typ[5:]))
    if typ.startswith("uint"):
        return st.integers(0, 2 ** int(typ[4:] or 256) - 1)
    if typ.endswith("[]"):
        return st.lists(_value(typ[:-2]), max_size=3)
    raise AssertionError(typ)


@st.composite
def _logs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    contract, entry = draw(st.sampled_from(_EVENTS))
    inputs = entry["inputs"]
    values = [draw(_value(i["type"])) for i in inputs]
    signature = f"{entry['name']}({','.join(i['type'] for i in inputs)})"
    topics = [keccak256(signature.encode())]
    for i, value in zip(inputs, values, strict=True):
        if i["indexed"]:
            topics.append(abi_encode([i["type"]], [value]))
    data_types = [i["type"] for i in inputs if not i["indexed"]]
    data = abi_encode(
        data_types, [v for i, v in zip(inputs, values, strict=True) if not i["indexed"]]
    )
    hex_form = draw(st.booleans())
    log = {
        "address": "0x" + draw(st.binary(min_size=20, max_size=20)).hex(),
        "topics": ["0x" + t.hex() for t in topics] if hex_form else topics,
        "data": "0x" + data.hex() if hex_form else data,
        "blockNumber": hex(draw(st.integers(0, 2**40))) if hex_form else draw(st.integers(0, 9)),
        "logIndex": draw(st.integers(0, 9)),
        "transactionHash": "0x" + draw(st.binary(min_size=32, max_size=32)).hex(),
    }
    return contract, log


def _decode(decoder: EventDecoder, log: Mapping[str, Any]) -> Any:
    try:
        return decoder.decode(log)
    except ChainError:
        return None


@FUZZ
@given(_logs())
def test_real_logs_decode_and_round_trip_through_storage(log: tuple[str, dict[str, Any]]) -> None:
    contract, raw = log
    decoder = _DECODERS[contract]
    event = decoder.decode(raw)
    if event is None:  # an event of the contract reef does not decode (OwnershipTransferred)
        return
    record = decoder.to_json(event)
    again = decoder.from_json(
        record.name,
        record.data,
        address=event.address,
        block_number=event.block_number,
        log_index=event.log_index,
        tx_hash=event.tx_hash,
    )
    assert again == event


@FUZZ
@given(_logs(), mutations, st.booleans())
def test_logs_with_edited_data_or_topics(
    log: tuple[str, dict[str, Any]], edits: list[tuple[str, int, bytes]], topic: bool
) -> None:
    contract, raw = log
    if topic:
        topics = [bytes.fromhex(t[2:]) if isinstance(t, str) else t for t in raw["topics"]]
        index = edits[0][1] % len(topics)
        topics[index] = mutated(topics[index], edits)
        raw = {**raw, "topics": topics}
    else:
        data = raw["data"]
        raw = {
            **raw,
            "data": mutated(bytes.fromhex(data[2:]) if isinstance(data, str) else data, edits),
        }
    _decode(_DECODERS[contract], raw)


_junk = json_values() | st.sampled_from(
    [None, "", "0x", "0xzz", "zz", "0x" + "9" * 5000, "9" * 5000, -1, 2**300, [], {}, b"\x00"]
)


@FUZZ
@given(
    _logs(),
    st.sampled_from(["address", "topics", "data", "blockNumber", "logIndex", "transactionHash"]),
    _junk,
)
def test_log_fields_of_any_json_type(
    log: tuple[str, dict[str, Any]], field: str, value: Any
) -> None:
    contract, raw = log
    _decode(_DECODERS[contract], {**raw, field: value})
    _decode(_DECODERS[contract], {k: v for k, v in raw.items() if k != field})


@pytest.mark.parametrize("topics", [None, 5, "0x00"])
def test_topics_that_are_not_a_list_are_a_chain_error_or_not_an_event(topics: Any) -> None:
    # A node (or a block source) answering topics as null or a number: iterating it raised
    # TypeError outside the decoder's error translation.
    log = {"address": "0x" + "00" * 20, "topics": topics, "data": "0x"}
    with pytest.raises(ChainError, match="topics"):
        market_decoder().decode(log)


@FUZZ
@given(_logs(), st.data())
def test_stored_records_with_any_value(
    log: tuple[str, dict[str, Any]], data: st.DataObject
) -> None:
    contract, raw = log
    decoder = _DECODERS[contract]
    event = decoder.decode(raw)
    if event is None:
        return
    record = decoder.to_json(event)
    stored = dict(record.data)
    if stored:
        key = data.draw(st.sampled_from(sorted(stored)))
        stored[key] = data.draw(_junk)
    with contextlib.suppress(ChainError):
        decoder.from_json(
            record.name, stored, address=event.address, block_number=1, log_index=0, tx_hash=""
        )


def test_a_stored_integer_of_over_4300_digits_is_a_chain_error() -> None:
    decoder = market_decoder()
    data = {"job_id": "0x" + "00" * 32, "amount": "9" * 5000, "from": "0x" + "00" * 20}
    with pytest.raises(ChainError, match=r"Deposited\.amount is not a valid int"):
        decoder.from_json(
            "Deposited", data, address="0x" + "00" * 20, block_number=1, log_index=0, tx_hash=""
        )


_WORD_TYPES = ["uint8", "uint256", "int16", "int256", "address", "bool", "bytes4", "bytes32",
               "bytes", "string", "address[]", "uint256[]"]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(_WORD_TYPES), min_size=1, max_size=4), st.binary(max_size=200))
def test_abi_words_of_any_bytes(types: list[str], data: bytes) -> None:
    try:
        decode_words(types, data)
    except InputError:
        accepted = False
    else:
        accepted = True
    check = words_checker(types)
    try:
        check("0x" + data.hex())
    except InputError:
        assert not accepted or "string" in types  # the checker does not read UTF-8
    with contextlib.suppress(InputError):
        check("0x" + data.hex()[:-1])  # an odd number of digits
