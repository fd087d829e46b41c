"""Intel TDX/SGX quotes fuzzed at the structure level: the embedded PCK certificate chain and
the collateral JSON, besides the bytes ``tests/attestation/test_quote.py`` already edits.

A quote is a stranger's: its certification data carries a PEM chain that ``parse_quote`` reads
and :meth:`ParsedQuote.verify_pck_chain` walks offline, without dcap-qvl. The collateral comes
from a PCCS, which may be anyone's. Only reef's errors may come out.
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.fuzz_support import FUZZ, json_values, mutated, mutations, replace_somewhere
from reef.attestation import parse_quote, verify_quote
from reef.errors import CertificateChainError, InputError, ReefError

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\n(.*?)\n-----END CERTIFICATE-----", re.DOTALL)


class Sample:
    def __init__(self, folder: Path, name: str) -> None:
        self.quote = (folder / name).read_bytes()
        self.collateral_bytes = (folder / f"{name}_collateral.json").read_bytes()
        tcb_info = json.loads(json.loads(self.collateral_bytes)["tcb_info"])
        issued = calendar.timegm(time.strptime(tcb_info["issueDate"], "%Y-%m-%dT%H:%M:%SZ"))
        self.at = issued + 3600
        # Where each PEM certificate's base64 sits in the quote's certification data.
        self.pem_bodies = [match.span(1) for match in _PEM.finditer(self.quote)]


@pytest.fixture(scope="module")
def samples(vectors: Path) -> list[Sample]:
    return [Sample(vectors / "dcap", name) for name in ("tdx_quote", "sgx_quote")]


def _with_certificate_edited(
    sample: Sample, which: int, edits: list[tuple[str, int, bytes]]
) -> bytes:
    """The quote with one PCK chain certificate's DER edited, re-encoded to the same length."""
    start, end = sample.pem_bodies[which % len(sample.pem_bodies)]
    body = sample.quote[start:end]
    der = base64.b64decode(b"".join(body.split()))
    changed = mutated(der, [e for e in edits if e[0] in ("flip", "set")])
    text = base64.b64encode(changed)
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    new_body = b"\n".join(lines)
    assert len(new_body) == len(body)
    return sample.quote[:start] + new_body + sample.quote[end:]


def _check(sample: Sample, quote: bytes) -> None:
    try:
        parsed = parse_quote(quote)
    except ReefError:
        return
    for at_s in (None, sample.at):
        with contextlib.suppress(ReefError):
            parsed.verify_pck_chain(at_s=at_s)


@FUZZ
@given(st.integers(0, 1), st.integers(0, 2), mutations)
def test_pck_certificates_edited_inside_a_quote(
    samples: list[Sample], index: int, which: int, edits: list[tuple[str, int, bytes]]
) -> None:
    sample = samples[index]
    _check(sample, _with_certificate_edited(sample, which, edits))


@FUZZ
@given(st.integers(0, 1), mutations)
def test_edited_quotes_through_the_offline_chain_check(
    samples: list[Sample], index: int, edits: list[tuple[str, int, bytes]]
) -> None:
    sample = samples[index]
    _check(sample, mutated(sample.quote, edits))


@FUZZ
@given(
    st.integers(0, 1),
    st.lists(st.integers(0, 20), min_size=1, max_size=3),
    json_values() | st.sampled_from(["", "zz", "\u00e9", "00" * 40, "1" * 5000]),
    st.booleans(),
)
def test_collateral_with_any_value_anywhere(
    samples: list[Sample], index: int, path: list[int], value: Any, nested: bool
) -> None:
    sample = samples[index]
    collateral = json.loads(sample.collateral_bytes)
    if nested:  # tcb_info and qe_identity are JSON documents inside strings
        key = ("tcb_info", "qe_identity")[path[0] % 2]
        inner = replace_somewhere(json.loads(collateral[key]), path[1:], value)
        collateral[key] = json.dumps(inner)
    else:
        collateral = replace_somewhere(collateral, path, value)
    for form in (json.dumps(collateral), collateral if isinstance(collateral, dict) else None):
        if form is None:
            continue
        with contextlib.suppress(ReefError):
            verify_quote(sample.quote, collateral=form, at_s=sample.at)


def test_a_chain_whose_names_do_not_parse_is_a_chain_error(samples: list[Sample]) -> None:
    # The offline walk named both certificates with rfc4514_string() when one did not sign the
    # other; a subject that does not parse raised ValueError (or UserWarning) from the message.
    sample = samples[0]
    found = []
    for position in range(40, 400):
        edits = [("set", position, bytes([0x13]))]
        quote = _with_certificate_edited(sample, 1, edits)
        try:
            parse_quote(quote).verify_pck_chain()
        except CertificateChainError:
            continue
        except (ValueError, UserWarning) as exc:  # pragma: no cover - the bug
            found.append((position, exc))
    assert not found, found[:3]


def test_collateral_that_is_not_text_is_an_input_error(samples: list[Sample]) -> None:
    with pytest.raises(InputError, match="not valid QuoteCollateralV3 JSON"):
        verify_quote(samples[0].quote, collateral=b"\xff\xfe", at_s=samples[0].at)


@FUZZ
@given(
    st.sampled_from(["tcb_info", "qe_identity"]),
    st.sampled_from(["issueDate", "nextUpdate"]),
    st.one_of(
        st.datetimes().map(lambda d: d.isoformat()),
        st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00", "", "Z", "x"]),
        json_values(),
    ),
)
def test_the_collateral_window_of_an_expiry_message_reads_any_dates(
    samples: list[Sample], part: str, field: str, value: Any
) -> None:
    # Only read to word a rejection: whatever the dates say, the rejection stays one.
    from reef.attestation._quote import _outside_window
    from reef.errors import CertificateExpiredError

    collateral = json.loads(samples[0].collateral_bytes)
    body = json.loads(collateral[part])
    body[field] = value
    collateral[part] = json.dumps(body)
    error = _outside_window(CertificateExpiredError("expired"), json.dumps(collateral), 5)
    assert isinstance(error, CertificateExpiredError)


def _with_der_edited(sample: Sample, which: int, find: bytes, replace: bytes) -> bytes:
    start, end = sample.pem_bodies[which]
    der = base64.b64decode(b"".join(sample.quote[start:end].split()))
    at = der.index(find)
    edits = [("set", at + i, bytes([b])) for i, b in enumerate(replace)]
    return _with_certificate_edited(sample, which, edits)


@pytest.mark.parametrize(
    ("find", "replace"),
    [
        (b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03"),  # version 4: InvalidVersion
        (b"\xa0\x03\x02\x01\x02\x02\x14", b"\xa0\x03\x02\x01\x02\x02\x14\x80"),  # serial < 0
    ],
    ids=["version", "negative-serial"],
)
def test_an_unreadable_pck_certificate_leaves_the_chain_empty(
    samples: list[Sample], find: bytes, replace: bytes
) -> None:
    # cryptography's InvalidVersion is no ValueError, and a non-positive serial number is a
    # warning (an error where warnings are): both came out of parse_quote.
    parsed = parse_quote(_with_der_edited(samples[0], 0, find, replace))
    assert parsed.pck_chain == ()
    with pytest.raises(CertificateChainError, match="carries no PCK certificate chain"):
        parsed.verify_pck_chain()
