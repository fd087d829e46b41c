"""``reef up`` with a port another process holds names the flag that moves that service.

A newcomer whose port 8545 was taken (a second ``reef up`` under another ``$REEF_HOME``, a
hardhat node) read "pick another with the matching --…-port flag", which is no flag they can
type; the hint now says which one.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reef._listen import bind
from reef.cli import app
from reef.cli._up import name_the_port_flag
from reef.errors import ChainError, InputError, ServiceError

# Every other service on a free port, so that only the devnet's can be the busy one.
FREE = [f"--{name}-port=0" for name in ("cp", "store", "verifier", "kms", "kms-public")]
FLAGS = {"--rpc-port": 8545, "--cp-port": 8080, "--dashboard-port": 8888, "--kms-port": 0}


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def _refusal(port: int, what: str) -> ServiceError:
    """What the serving floor itself raises for a port in use (not a hand-written message)."""
    with pytest.raises(ServiceError) as caught:
        bind("127.0.0.1", port, what=what, hint="the matching --…-port flag").close()
    return caught.value


def test_a_busy_port_names_the_flag_of_its_service(busy_port: int) -> None:
    error = _refusal(busy_port, "control plane")
    name_the_port_flag(error, {**FLAGS, "--cp-port": busy_port})
    assert error.hint is not None
    assert "--cp-port PORT" in error.hint
    assert f"port {busy_port}" in error.hint
    assert "…" not in error.hint


def test_a_port_no_flag_or_two_flags_name_keeps_its_hint(busy_port: int) -> None:
    error = _refusal(busy_port, "control plane")
    name_the_port_flag(error, FLAGS)
    assert error.hint == "the matching --…-port flag"
    name_the_port_flag(error, {"--cp-port": busy_port, "--store-port": busy_port})
    assert error.hint == "the matching --…-port flag"


def test_an_enclave_port_in_use_names_the_flag_of_reef_up_not_of_reef_enclave_run() -> None:
    """The KMS root is an enclave: the local backend refuses its busy host port in its own words,
    with a hint for `reef enclave run --port`, which `reef up` does not take."""
    error = InputError(
        "host port 1100 is already in use",
        hint="choose another with --port HOST:1110, or --port 1110 for any",
    )
    name_the_port_flag(error, {**FLAGS, "--kms-port": 1100})
    assert error.hint is not None
    assert "--kms-port PORT" in error.hint
    assert "--port HOST" not in error.hint


def test_other_errors_are_left_alone() -> None:
    error = ChainError("cannot listen on 127.0.0.1:8545 for the devnet: no such device", hint="x")
    name_the_port_flag(error, FLAGS)
    assert error.hint == "x"


def test_reef_up_on_a_busy_rpc_port_says_to_move_it_with_rpc_port(busy_port: int) -> None:
    done = CliRunner().invoke(
        app,
        [
            "up",
            "--rpc-port",
            str(busy_port),
            *FREE,
            "--no-serverless",
            "--no-proofs",
            "--no-dashboard",
        ],
    )
    assert done.exit_code == 1, done.output
    assert f"cannot listen on 127.0.0.1:{busy_port}" in done.stderr
    assert "--rpc-port PORT (0 picks a free one)" in " ".join(done.stderr.split())
    assert "Traceback" not in done.output


def test_a_busy_dashboard_port_is_refused_before_anything_starts(
    busy_port: int, reef_home: Path
) -> None:
    """The dashboard is served last: its busy port failed ``reef up`` minutes in, after the
    chain, the KMS and every enclave had started (and then stopped again)."""
    done = CliRunner().invoke(
        app,
        ["up", "--dashboard-port", str(busy_port), *FREE, "--rpc-port=0", "--no-serverless"],
    )
    assert done.exit_code == 1, done.output
    assert f"cannot listen on 127.0.0.1:{busy_port} for the dashboard" in done.stderr
    assert "--dashboard-port PORT (0 picks a free one)" in " ".join(done.stderr.split())
    assert not (reef_home / "chain").exists()  # no chain was started
