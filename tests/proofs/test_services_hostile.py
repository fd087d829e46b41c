"""The IVS's key from the enclave's KMS derive server, against a hostile server: the derive
server is reached through the host, which may answer in its place, so its answer is read within
a deadline (its head included) and a byte bound (``reef._fetch``). The servers are real ones on
loopback (``net_support``): only a socket can trickle a head a byte at a time."""

from __future__ import annotations

import pytest

from net_support import SENT_AT_MOST, Raw, Sent, drip, ends, gigabyte, raw_server_in_thread
from reef.errors import ServiceError
from reef.proofs import derived_secp256k1_key

# Far above the bound the client is given here (1 s a try), far below "for ever".
_LIVENESS_S = 30.0


@pytest.mark.parametrize(
    "attack",
    [drip(), drip(b"HTTP/1.1 200 OK\r\ncontent-length: 32\r\n\r\n")],
    ids=["head", "body"],
)
def test_a_derive_server_trickling_its_answer_is_given_up_on(attack: Raw) -> None:
    with raw_server_in_thread(attack) as url:
        outcome = ends(
            lambda: derived_secp256k1_key(url, "p", tries=2, timeout_s=1.0, sleep=lambda _: None),
            _LIVENESS_S,
        )
    assert isinstance(outcome, ServiceError), outcome
    assert outcome.message.startswith(f"the KMS derive server at {url} gave no key for 'p': ")
    assert "did not answer within 1 s" in outcome.message


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
def test_a_derive_server_answering_a_gigabyte_is_not_read(declared: bool) -> None:
    sent = Sent()
    with raw_server_in_thread(gigabyte(sent, declared=declared)) as url:
        outcome = ends(
            lambda: derived_secp256k1_key(url, "p", tries=1, sleep=lambda _: None), _LIVENESS_S
        )
    assert isinstance(outcome, ServiceError), outcome
    assert "larger than any honest answer" in outcome.message
    assert sent.bytes < SENT_AT_MOST
