"""One reader of revert data for the clients and the devnet (``decode_revert_data``): both say
the same reason for the same data, each wording a panic its own way, and neither fails on data
that is not what it claims (invalid UTF-8, a length beyond any index, too few bytes).

The data is built with eth-abi's encoder, independently of the reader."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode

from reef.chain._reasons import decode_revert_data
from reef.chain._tx import decode_revert_reason
from reef.chain.devnet._engine import Chain
from reef.chain.devnet._types import ExecutionReverted, TxRequest, revert_reason

ERROR = bytes.fromhex("08c379a0")
PANIC = bytes.fromhex("4e487b71")


@pytest.mark.parametrize(
    ("data", "decoded", "client", "devnet"),
    [
        (ERROR + encode(["string"], ["job not found"]), "job not found", "job not found", None),
        (ERROR + encode(["string"], [""]), "", "", None),
        # Not UTF-8: replaced, as geth shows it (the devnet's own reader raised here before).
        (ERROR + encode(["bytes"], [b"\xffno"]), "\ufffdno", "\ufffdno", None),
        (PANIC + encode(["uint256"], [0x11]), 0x11, "panic 0x11", "panic code 0x11"),
        (PANIC + encode(["uint256"], [1]), 1, "panic 0x01", "panic code 0x1"),
        # A length no index can hold (eth-abi raises OverflowError; the client let it out).
        (ERROR + encode(["uint256", "uint256"], [32, 2**200]), None, None, ""),
        (ERROR + bytes(10), None, None, ""),  # too few bytes
        (PANIC + bytes(31), None, None, ""),
        (bytes.fromhex("deadbeef") + bytes(32), None, None, ""),  # a custom error
        (b"", None, None, ""),
    ],
)
def test_the_client_and_the_devnet_read_revert_data_alike(
    data: bytes, decoded: str | int | None, client: str | None, devnet: str | None
) -> None:
    assert decode_revert_data(data) == decoded
    assert decode_revert_reason(data) == client
    assert revert_reason(data) == (client if devnet is None else devnet)


def _reverting_creation(payload: bytes) -> bytes:
    """Init code that reverts with ``payload`` (CODECOPY it to memory 0, REVERT)."""
    size = len(payload)
    assert size < 256
    return bytes.fromhex(f"60{size:02x}600c600039{'60'}{size:02x}6000fd") + payload


def test_an_eth_call_reverting_with_invalid_utf8_is_answered_with_its_data() -> None:
    chain = Chain(accounts=1, clock=lambda: 1_800_000_000.0)
    sender = bytes.fromhex(chain.accounts[0].address[2:])
    payload = ERROR + encode(["bytes"], [b"\xffno"])
    with pytest.raises(ExecutionReverted) as info:
        chain.call(TxRequest(sender=sender, data=_reverting_creation(payload)))
    assert info.value.data == payload
    assert info.value.reason == "\ufffdno"
    assert str(info.value) == "execution reverted: \ufffdno"
