"""Registering an executor enclave against hostile servers: the enclave's control port and the
attestation verifier answer through a host the operator does not control, so each answer is read
within a deadline (its head included) and a byte bound (``reef._fetch``). The servers are real
ones on loopback (``net_support``), since only a socket can trickle a head a byte at a time."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from net_support import SENT_AT_MOST, Raw, Sent, drip, gigabyte, raw_server
from reef.errors import ServiceError
from reef.serverless import _operator, register_enclave_executor

# Far above the bounds the operator is given here (1 s a call, 2 s an answer), far below "for ever".
_LIVENESS_S = 30.0


async def _register(control_url: str) -> Any:
    """Register the executor whose control port is ``control_url`` (the first thing asked:
    nothing reaches the chain before it answers)."""
    return await register_enclave_executor(
        jobs=cast(Any, SimpleNamespace(address="0x" + "11" * 20)),
        owner=cast(Any, SimpleNamespace(address="0x" + "22" * 20)),
        control_url=control_url,
        attestation_url=control_url,
        verifier_url=control_url,
        rpc_url="http://127.0.0.1:1",
        code_contract="0x" + "33" * 20,
        stake=1,
    )


@pytest.mark.parametrize(
    "attack",
    [drip(), drip(b"HTTP/1.1 200 OK\r\ncontent-length: 60000\r\n\r\n")],
    ids=["head", "body"],
)
async def test_an_executor_trickling_its_answer_is_given_up_on(
    monkeypatch: pytest.MonkeyPatch, attack: Raw
) -> None:
    monkeypatch.setattr(_operator, "_TIMEOUT_S", 1.0)
    async with raw_server(attack) as base:
        with pytest.raises(ServiceError) as caught:
            async with asyncio.timeout(_LIVENESS_S):
                await _register(base)
    assert "did not answer within 2 s" in caught.value.message
    assert caught.value.message.startswith(f"POST {base}/config failed")


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_an_executor_answering_a_gigabyte_is_not_read(declared: bool) -> None:
    sent = Sent()
    async with raw_server(gigabyte(sent, declared=declared)) as base:
        with pytest.raises(ServiceError, match="larger than any honest answer"):
            async with asyncio.timeout(_LIVENESS_S):
                await _register(base)
    assert sent.bytes < SENT_AT_MOST


async def test_an_executor_answering_json_nested_without_end_is_refused() -> None:
    """A control port's answer is parsed as a stranger's JSON: 60 000 ``[`` was a
    RecursionError traceback (or a crash of the process)."""
    nested = b"[" * 60_000  # within the byte bound

    async def deep(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(nested) + nested)
        await writer.drain()

    async with raw_server(deep) as base:
        with pytest.raises(ServiceError, match="nested more than"):
            async with asyncio.timeout(_LIVENESS_S):
                await _register(base)
