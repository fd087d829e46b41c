"""``reef up`` asks its IVS enclave which address it signs as (``GET /``) through the host, which
may answer in the enclave's place: the answer is read bounded in time and size
(``reef._fetch.read_bounded``). A head trickled a byte at a time used to hold ``reef up`` for
ever (httpx's timeouts bound each read, and each byte came in time); now it is one failed try,
which reef up's wait for the enclave retries."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from net_support import Sent, drip, ends, gigabyte, raw_server
from reef._fetch import FetchError
from reef.errors import ServiceError
from reef.node._proofs import _ivs_address

ADDRESS = "0x" + "ab" * 20


def _against(handler: object, **kwargs: float) -> str | BaseException:
    """What ``_ivs_address`` gives against the raw server ``handler`` (run in a thread: a
    client that hangs fails the test instead of holding it)."""

    async def ask() -> str:
        async with raw_server(handler) as url:  # type: ignore[arg-type]
            return await _ivs_address(url, **kwargs)

    return ends(lambda: asyncio.run(ask()))


def test_a_head_trickled_for_ever_is_one_failed_try() -> None:
    outcome = _against(drip(), deadline_s=1.0)
    assert isinstance(outcome, FetchError), outcome
    assert isinstance(outcome, ServiceError)  # what reef up's wait for the enclave retries
    assert outcome.reason == "too_late"
    assert "the input verification service enclave" in outcome.message


@pytest.mark.parametrize("declared", [True, False])
def test_a_gigabyte_answer_is_refused_unread(declared: bool) -> None:
    sent = Sent()
    outcome = _against(gigabyte(sent, declared=declared))
    assert isinstance(outcome, FetchError), outcome
    assert outcome.reason == "too_large"


def _mock(status: int, body: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, content=body))


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (500, b"{}", "HTTP 500"),
        (200, b"not json", "not JSON"),
        (200, b"[" * 4000, "nested"),
        (200, json.dumps({"public_key": "0x00"}).encode(), "named no address"),
        (200, json.dumps({"address": 7}).encode(), "named no address"),
    ],
)
def test_a_bad_answer_is_a_service_error(status: int, body: bytes, says: str) -> None:
    with pytest.raises(ServiceError, match=says):
        asyncio.run(_ivs_address("http://ivs.test", transport=_mock(status, body)))


def test_the_address_it_signs_as() -> None:
    answer = json.dumps({"address": ADDRESS, "public_key": "0x" + "11" * 64}).encode()
    assert asyncio.run(_ivs_address("http://ivs.test", transport=_mock(200, answer))) == ADDRESS
