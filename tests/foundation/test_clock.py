"""reef._clock: the one wall clock in milliseconds that ``clock_ms`` parameters default to."""

from __future__ import annotations

import dataclasses
import inspect
import time

from imports_support import loaded_after
from reef._clock import wall_clock_ms


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
