"""``reef verify`` shows an empty field as ``(empty)``, as ``reef attestation verify`` does.

The hello enclave attests no user data, and its ``user_data`` row was blank: a newcomer read it
as a row whose value had not been printed (or was lost to wrapping).
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.cli_support import printed_rows
from net_support import serve_in_thread
from reef.attestation import DevAuthority, attestation_app, image_id
from reef.cli import app
from reef.testing import wall_ms

PCRS = {0: b"\x30" * 48, 1: b"\x31" * 48, 2: b"\x32" * 48}


def test_empty_user_data_reads_empty_and_a_set_key_is_shown(authority: DevAuthority) -> None:
    attester = authority.attester(PCRS, clock_ms=wall_ms)
    served = attestation_app(attester, public_key=b"\x07" * 32)
    wanted = image_id(PCRS).hex()
    with serve_in_thread(served) as url:
        args = ["verify", url, "--root", "dev", "--image-id", wanted]
        shown = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
        machine = CliRunner().invoke(app, [*args, "--json"])
    assert shown.exit_code == 0, shown.output
    rows = printed_rows(shown.stdout)
    assert rows["user_data"] == "(empty)"
    assert rows["public_key"] == "07" * 32
    assert rows["verified"] == "yes"
    # Scripts keep the empty string.
    assert machine.exit_code == 0, machine.output
    assert json.loads(machine.stdout)["user_data"] == ""
