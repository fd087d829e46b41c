"""A root's --admin is an Ethereum address, checked when the root is made: a value that is not
one used to be taken as is and crashed the comparison on the first rotation or handover (a
non-ASCII text in ``hmac.compare_digest``), a 500 for the admin, far from the typo."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from reef.cli import app
from reef.errors import InputError
from reef.kms import KmsRoot, RootKeyring, RootSeed

ADMIN = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def _keyring() -> RootKeyring:
    return RootKeyring([RootSeed(hashlib.sha512(b"reef admin test").digest(), 0)])


@pytest.mark.parametrize(
    "admin", ["0xé39fd6e51aad88f6f4ce6ab8827279cfffb9226", "0x1234", "alice", "0x" + "g" * 40]
)
def test_an_admin_that_is_not_an_address_is_refused_when_the_root_is_made(admin: str) -> None:
    with pytest.raises(InputError) as caught:
        KmsRoot(_keyring(), admin=admin)
    assert "--admin" in caught.value.message
    assert repr(admin) in caught.value.message
    assert caught.value.hint is not None
    assert "0x" in caught.value.hint


def test_an_admin_in_any_case_is_kept_lower_case() -> None:
    assert KmsRoot(_keyring(), admin=ADMIN).admin == ADMIN.lower()
    assert KmsRoot(_keyring(), admin=ADMIN[2:].upper()).admin == ADMIN.lower()


def test_kms_root_serve_with_a_bad_admin_says_so_and_starts_nothing(tmp_path: object) -> None:
    result = CliRunner().invoke(
        app,
        [
            "kms",
            "root",
            "serve",
            "--trust",
            "mock",
            "--sealer",
            "dev-home",
            "--image-id",
            "11" * 32,
            "--admin",
            "0xé39f",
            "--scallop-port",
            "0",
            "--public-port",
            "0",
        ],
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "--admin" in result.stderr
    assert "0xé39f" in result.stderr
