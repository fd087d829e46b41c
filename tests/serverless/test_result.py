"""The pure parts: error codes (Oyster's numbering), limits validation, the workerd config."""

from __future__ import annotations

import pytest

from reef.errors import InputError
from reef.serverless import DEFAULT_OUTPUT_BYTES, ErrorCode, Limits
from reef.serverless._config import render_config


def test_error_codes_keep_oysters_numbers() -> None:
    # reference/oyster_serverless.md §4.5: 0 success, 1 code not found, 2 not decodable,
    # 3 syntax error, 4 timeout, 5 output too large. reef adds 6.
    assert [int(code) for code in ErrorCode] == [0, 1, 2, 3, 4, 5, 6]
    assert ErrorCode(3) is ErrorCode.SYNTAX_ERROR
    assert ErrorCode.OUTPUT_TOO_LARGE == 5
    assert ErrorCode.MEMORY_LIMIT.description == "memory limit exceeded"
    assert all(code.description for code in ErrorCode)


def test_default_output_cap_is_oysters() -> None:
    assert DEFAULT_OUTPUT_BYTES == 20 * 1024 == Limits().output_bytes


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout_ms": 0},
        {"timeout_ms": 300_001},
        {"memory_bytes": 1024},
        {"output_bytes": -1},
        {"allow_network": ('public", "x',)},
        {"allow_network": ("",)},
    ],
)
def test_limits_refuse_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(InputError):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_config_denies_network_and_caps_the_heap() -> None:
    text = render_config(heap_mib=128)
    assert 'globalOutbound = "egress"' in text
    assert "network = (allow = []" in text
    assert '"--max-old-space-size=128"' in text
    assert 'compatibilityDate = "2023-03-07"' in text  # Oyster's executor's date
    # a socket with no address: reef passes the listening descriptor
    assert "address" not in text


def test_config_allows_only_the_given_patterns() -> None:
    text = render_config(heap_mib=64, allow_network=("public", "10.0.0.0/8"))
    assert 'allow = ["public", "10.0.0.0/8"]' in text
