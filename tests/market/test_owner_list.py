"""Owner allow/deny lists and the job policy's addresses: parsed once into checksummed
:class:`reef.chain.Address` values, so an address in any case names the same account."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils.address import to_checksum_address

from reef.chain import parse_address
from reef.errors import ConfigError, InputError
from reef.market import JobPolicy, RateCard, read_owner_list

OWNER = "0x" + "cd" * 20


def test_an_owner_list_holds_checksummed_addresses(tmp_path: Path) -> None:
    path = tmp_path / "deny.txt"
    path.write_text(f"# who may not deploy\n{OWNER.upper().replace('0X', '0x')}  # shouting\n")
    # eth_utils checksums independently of reef's parser.
    assert read_owner_list(path) == {to_checksum_address(OWNER)}


def test_an_owner_list_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "allow.txt"
    path.write_text(f"{OWNER}\n0x1234\n")
    with pytest.raises(ConfigError, match=r"allow\.txt:2"):
        read_owner_list(path)


def test_the_policy_checksums_what_it_is_given() -> None:
    policy = JobPolicy(
        RateCard.dev(), provider=OWNER, allow_owners=frozenset({OWNER}), deny_owners=frozenset()
    )
    assert policy.provider == to_checksum_address(OWNER)
    assert policy.allow_owners == {to_checksum_address(OWNER)}
    assert policy.owner_refusal(parse_address(OWNER.upper().replace("0X", "0x"))) is None


def test_the_policy_refuses_an_entry_that_is_not_an_address() -> None:
    with pytest.raises(InputError, match="denied owner"):
        JobPolicy(RateCard.dev(), deny_owners=frozenset({"0x12"}))
