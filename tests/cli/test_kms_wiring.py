"""``--kms-endpoint`` / ``--kms-pubkey``: read one way (:func:`reef.cli._common.kms_wiring`) by
``reef enclave run`` and ``reef kms derive-server``, so both accept the same values and name the
flag that is wrong."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from reef.cli import app
from reef.cli._common import kms_wiring
from reef.errors import InputError

KEY = "ab" * 32


def test_the_flags_give_the_roots_scallop_listener_and_key() -> None:
    wiring = kms_wiring("kms.example:1100", "0x" + KEY)
    assert (wiring.scallop_host, wiring.scallop_port) == ("kms.example", 1100)
    assert wiring.scallop_key == bytes.fromhex(KEY)
    assert wiring.endpoint == "kms.example:1100"


@pytest.mark.parametrize(
    ("endpoint", "pubkey", "flag"),
    [
        ("kms.example", KEY, "--kms-endpoint"),
        ("kms.example:port", KEY, "--kms-endpoint"),
        ("kms.example:1100", "zz" * 32, "--kms-pubkey"),
        ("kms.example:1100", "ab" * 31, "--kms-pubkey"),
    ],
)
def test_a_malformed_value_names_its_flag(endpoint: str, pubkey: str, flag: str) -> None:
    with pytest.raises(InputError) as caught:
        kms_wiring(endpoint, pubkey)
    assert flag in caught.value.message


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["kms", "derive-server", "--kms-endpoint", "kms.example", "--kms-pubkey", KEY], 2),
        (["enclave", "run", "app", "--kms-endpoint", "kms.example", "--kms-pubkey", KEY], 1),
    ],
)
def test_both_commands_refuse_a_malformed_endpoint_naming_the_flag(
    argv: list[str], code: int
) -> None:
    done = CliRunner().invoke(app, argv)
    assert done.exit_code == code, done.output
    assert done.stderr.splitlines()[0] == "error: --kms-endpoint 'kms.example' is not HOST:PORT"
