"""A new app developer's first hour on the core path, from a fresh clone, followed to the letter
(``reef up`` on ports of its own, deploy, verify, call, logs, jobs, wallet, KMS, Scallop, doctor):
each rough edge it met is replayed here first, then fixed.

- ``reef jobs update 0 --debug`` (to read ``reef logs 0``), then the README's
  ``reef verify … --image examples/hello --root dev`` said only ``rejected: image id is X,
  expected Y``: nothing said that a debug enclave attests zero PCRs, hence no image, and that
  ``--debug`` accepts it (and what that then proves).
- ``reef verify`` printed the job binding a reef enclave attests (``reef-job/1 chain=31337
  market=0x… job=0x…``, docs/node.md) as 200 hex digits.
- ``reef up`` on other ports than the README's (other networks used 8545…1101): ``reef kms
  pubkey --kms http://127.0.0.1:1101`` and ``reef scallop call 127.0.0.1:1100`` reached nothing,
  though ``$REEF_HOME/network.json`` (which every other command reads) names the KMS root: the
  KMS commands now take their ``--kms`` from it, and a Scallop call that reaches nothing names
  the network's KMS root's Scallop endpoint.
- ``reef doctor --ports`` left out the dashboard's port (8888), which ``reef up`` also takes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from net_support import serve_in_thread
from reef.attestation import DevAuthority, attestation_app
from reef.cli import app
from reef.enclave import attested_measurements
from reef.market import job_user_data
from reef.testing import wall_ms

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello"
ZERO = bytes(48)
MARKET = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
JOB = "0x" + "00" * 32

runner = CliRunner()


def _verify(url: str, *flags: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["verify", url, "--root", "dev", *flags], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def _rows(text: str) -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.strip().partition(" ")
        rows[name] = value.strip()
    return rows


def test_verify_says_why_a_debug_enclave_is_not_the_image(authority: DevAuthority) -> None:
    """The walk: deploy hello, ``reef jobs update 0 --debug``, verify as the README does."""
    debug = authority.attester({0: ZERO, 1: ZERO, 2: ZERO}, clock_ms=wall_ms)
    with serve_in_thread(attestation_app(debug, public_key=b"\x07" * 32)) as url:
        code, _, err = _verify(url, "--image", str(HELLO))
        assert code == 1
        assert "rejected: image id is" in err
        assert "debug enclave" in err
        assert "add --debug" in err
        code, out, err = _verify(url, "--image", str(HELLO), "--debug")
    assert code == 0, err
    assert _rows(out)["verified"] == "yes"


def test_verify_says_drop_debug_or_another_image(authority: DevAuthority) -> None:
    measured = attested_measurements(HELLO)
    running = authority.attester(dict(measured.pcrs), clock_ms=wall_ms)
    with serve_in_thread(attestation_app(running, public_key=b"\x07" * 32)) as url:
        code, _, err = _verify(url, "--image", str(HELLO), "--debug")
        assert code == 1
        assert "not a debug enclave" in err
        assert "drop --debug" in err
        other = REPO / "examples" / "init-params" / "app"
        code, _, err = _verify(url, "--image", str(other))
        assert code == 1
        assert "another image" in err
        assert "reef image measure" in err
        code, out, err = _verify(url, "--image", str(HELLO))  # and the right one passes
    assert code == 0, err
    assert _rows(out)["image_id"] == measured.image_id.hex()


def test_verify_shows_the_attested_job_as_text(authority: DevAuthority) -> None:
    bound = job_user_data(31337, MARKET, JOB)
    attester = authority.attester({0: b"\x30" * 48}, clock_ms=wall_ms)
    served = attestation_app(attester, public_key=b"\x07" * 32, user_data=bound)
    with serve_in_thread(served) as url:
        code, out, err = _verify(url)
        assert code == 0, err
        machine = runner.invoke(app, ["verify", url, "--root", "dev", "--json"])
    shown = _rows(out)["user_data"]
    assert shown.startswith(f"reef-job/1 chain=31337 market={MARKET.lower()} job={JOB}")
    assert "--json gives its hex" in shown
    assert json.loads(machine.stdout)["user_data"] == bound.hex()  # scripts keep the hex


@pytest.mark.parametrize(
    ("data", "shown"),
    [(b"\x1b[31mred", "1b5b33316d726564"), (b"caf\xc3\xa9", "636166c3a9")],
)
def test_user_data_that_is_not_plain_text_stays_hex(
    authority: DevAuthority, data: bytes, shown: str
) -> None:
    attester = authority.attester({0: b"\x30" * 48}, clock_ms=wall_ms)
    with serve_in_thread(attestation_app(attester, public_key=b"", user_data=data)) as url:
        code, out, err = _verify(url)
    assert code == 0, err
    assert _rows(out)["user_data"] == shown
    assert "\x1b" not in out
