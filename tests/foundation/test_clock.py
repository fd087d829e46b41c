"""reef._clock: the one wall clock in milliseconds that ``clock_ms`` parameters default to."""

from __future__ import annotations

import dataclasses
import inspect
import time

from imports_support import loaded_after
from reef._clock import format_time, wall_clock_ms


def test_wall_clock_ms_is_whole_unix_milliseconds_of_now() -> None:
    before = time.time_ns() // 1_000_000
    now = wall_clock_ms()
    after = time.time_ns() // 1_000_000
    assert type(now) is int
    assert before <= now <= after


def test_the_defaults_that_read_the_wall_clock_are_this_one() -> None:
    from reef.attestation import AttestationClient
    from reef.scallop import PeerPolicy

    client_default = inspect.signature(AttestationClient).parameters["clock_ms"].default
    policy_default = {f.name: f.default for f in dataclasses.fields(PeerPolicy)}["clock"]
    assert client_default is wall_clock_ms
    assert policy_default is wall_clock_ms


def test_scallop_policies_do_not_load_the_attestation_package_for_a_clock() -> None:
    assert "reef.attestation" not in loaded_after("import reef.scallop._policy")


def test_a_time_is_shown_as_a_date_and_one_past_any_calendar_as_its_number() -> None:
    assert format_time(1_796_650_346, utc=True) == "2026-12-07 13:32:26 UTC"
    assert format_time(0).startswith("19")  # local time zone: 1969 or 1970
    # A job whose owner deposited enough for ever: its stop time has no date (time.localtime
    # raised OverflowError from `reef jobs show`).
    assert format_time(10**20) == f"unix time {10**20}"
    assert format_time(10**20, utc=True) == f"unix time {10**20}"
