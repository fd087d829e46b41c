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
- ``reef wallet`` printed ``rusd 1000000``, ``jobs_balance 1.3501`` and a blank ``jobs`` row;
  ``reef jobs deposit 0 1`` printed ``deposited 1``; ``reef jobs show`` printed three amounts and
  no unit, and two balances without saying which is which.
- ``reef deploy ./hello --duration 1h --debug`` printed ``verified: the enclave attests image
  bafc…`` and nothing more than for any deploy, though that image id (zero PCRs) is every debug
  enclave's: it proves nothing of the code; nor did it say where the console it asked for is.
- ``reef logs 2 --follow``, then ``reef jobs update 2 --image ./hello``: the follow ended, exit 0,
  with nothing said (the provider had replaced the enclave, closing its console).
- ``reef jobs update 2 --image ./hello`` of a debug job printed ``updated url`` (the metadata's
  field: ``--image`` was asked for) and the debug image id bare, as if it were the new image's;
  ``reef jobs update 0 --debug`` pointed at ``reef jobs show`` for an image id it does not show.
- ``reef deploy examples/hello --duration 1h`` printed nothing for 10-18 s (a busy two-core
  machine loading web3.py and the market's modules) before its first progress line.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.cli_support import printed_rows
from kms.kms_support import dev_root_server
from net_support import free_port, run_loop_in_thread, serve_in_thread
from reef.attestation import DevAuthority, attestation_app
from reef.chain import JobId, parse_amount, serve_devnet_in_thread
from reef.cli import app
from reef.crypto import Secp256k1PrivateKey
from reef.enclave import attested_measurements
from reef.home import ReefHome
from reef.kms import KmsRoot, RootKeyring, RootSeed, RootServer, derive_key
from reef.market import RateCard, RunningEnclave, control_plane_app, job_user_data
from reef.testing import ScriptedJobView, dev_market, wall_ms

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello"
ZERO = bytes(48)
MARKET = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
JOB = "0x" + "00" * 32
CARD = RateCard.dev().lookup("local", "dev.small")

runner = CliRunner()


def _verify(url: str, *flags: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["verify", url, "--root", "dev", *flags], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


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
    assert printed_rows(out)["verified"] == "yes"


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
    assert printed_rows(out)["image_id"] == measured.image_id.hex()


def test_verify_shows_the_attested_job_as_text(authority: DevAuthority) -> None:
    bound = job_user_data(31337, MARKET, JOB)
    attester = authority.attester({0: b"\x30" * 48}, clock_ms=wall_ms)
    served = attestation_app(attester, public_key=b"\x07" * 32, user_data=bound)
    with serve_in_thread(served) as url:
        code, out, err = _verify(url)
        assert code == 0, err
        machine = runner.invoke(app, ["verify", url, "--root", "dev", "--json"])
    shown = printed_rows(out)["user_data"]
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
    assert printed_rows(out)["user_data"] == shown
    assert "\x1b" not in out


# --- reef up on ports of its own: the KMS commands find its KMS root ------------------------------


ROOT_PCRS = {0: b"\xa0" * 48, 1: b"\xa1" * 48, 2: b"\xa2" * 48}
ADMIN = Secp256k1PrivateKey(hashlib.sha256(b"reef core hour admin").digest())
IMAGE = bytes.fromhex("62a1191a2867f7115ac032c87e60a9e1b08ee3e2a550dbc30e2fab5931832a26")
ZERO_ADDRESS = "0x" + "00" * 20


def _network(home: Path, kms: dict[str, str]) -> None:
    """The ``network.json`` a ``reef up`` on ports of its own writes (only ``kms`` matters here)."""
    from reef.chain import Deployment, parse_address
    from reef.node import NetworkInfo

    zero = parse_address(ZERO_ADDRESS, name="address")
    NetworkInfo(
        rpc_url="http://127.0.0.1:38545",
        chain_id=31337,
        deployment=Deployment(chain_id=31337, token=zero, market=zero, kms_registry=zero, block=0),
        rate_lock_s=300,
        provider=zero,
        control_plane="http://127.0.0.1:38080",
        image_store="http://127.0.0.1:38090",
        kms=kms,
    ).dump(ReefHome(home))


@pytest.fixture
def live_root(authority: DevAuthority) -> Iterator[RootServer]:
    keyring = RootKeyring([RootSeed(hashlib.sha512(b"reef core hour root").digest(), 0)])
    root = KmsRoot(
        keyring,
        attester=authority.attester(ROOT_PCRS, clock_ms=wall_ms),
        admin=ADMIN.public_key.address,
    )
    server = dev_root_server(root, authority)
    with run_loop_in_thread() as loop:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.aclose(), loop).result(10)


def _kms(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["kms", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_kms_commands_use_the_kms_root_of_the_running_network(
    live_root: RootServer, reef_home: Path
) -> None:
    """The walk: `reef kms pubkey --kms http://127.0.0.1:1101` (the README's) reached nothing;
    the network's KMS root was on 31101. Without --kms, each command asks the network's."""
    url = live_root.public_url
    _network(reef_home, {"scallop": "127.0.0.1:31100", "public": url})
    code, out, err = _kms("info", "--trust", "dev", "--json")
    assert code == 0, err
    assert json.loads(out)["kms"] == url
    assert f"KMS: {url} (the KMS root of the reef network in {reef_home})" in err

    keys = ["--image-id", IMAGE.hex(), "--path", "wallet", "--type", "secp256k1", "--json"]
    code, out, err = _kms("pubkey", *keys, "--root", "dev")
    assert code == 0, err
    expected = derive_key(live_root.root.keyring.enclave_seed(IMAGE), "wallet", "secp256k1")
    assert json.loads(out)["address"] == expected.address
    assert json.loads(out)["kms"] == url

    code, out, err = _kms("rotate", "--admin-key", "-", "--json", stdin=ADMIN.secret.hex())
    assert code == 0, err
    assert json.loads(out)["version"] == 1
    assert f"pin for {url} extended to version 1" in err
    code, out, err = _kms("pubkey", *keys)  # the pin, extended: the new version's key
    assert code == 0, err
    assert json.loads(out)["address"] != expected.address

    # A --kms given still wins over the network's.
    code, _, err = _kms("info", "--kms", f"http://127.0.0.1:{free_port()}", "--trust", "dev")
    assert code == 1
    assert "cannot reach the KMS" in err


def test_kms_without_kms_and_without_a_network_says_what_to_pass(reef_home: Path) -> None:
    code, _, err = _kms("info", "--trust", "dev")
    assert code == 2
    assert "no --kms given, and no reef network found in" in err
    assert "pass --kms URL" in err
    _network(reef_home, {})  # reef up --no-kms
    code, _, err = _kms("rotate", "--admin-key", ADMIN.secret.hex())
    assert code == 2
    assert f"the reef network in {reef_home} runs no KMS root" in err
    assert "without --no-kms" in err


def test_scallop_call_that_reaches_nothing_names_the_networks_kms_root(
    reef_home: Path, authority: DevAuthority
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["scallop", "call", dead, "/derive", "--root", "dev"])
    assert result.exit_code == 1
    assert "could not connect" in result.stderr
    assert "listens for Scallop" not in result.stderr  # no network here: nothing to name
    _network(reef_home, {"scallop": "127.0.0.1:31100", "public": "http://127.0.0.1:31101"})
    result = runner.invoke(app, ["scallop", "call", dead, "/derive", "--root", "dev"])
    assert result.exit_code == 1
    assert "is the Scallop server running and the port right?" in result.stderr
    assert f"The KMS root of the reef network in {reef_home} listens for Scallop on" in (
        " ".join(result.stderr.split())
    )
    assert "127.0.0.1:31100" in result.stderr


def test_doctor_checks_every_default_port_of_reef_up() -> None:
    """`reef doctor --ports` checked six of reef up's seven default ports (not the dashboard's)."""
    from reef.cli._doctor import UP_PORTS
    from reef.cli._up import up

    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(up).parameters.items()
        if name.endswith("_port")
    }
    assert len(defaults) == 7, defaults
    assert sorted(UP_PORTS) == sorted(defaults.values())
    result = runner.invoke(app, ["doctor", "--ports", "--json"])
    checked = {c["name"] for c in json.loads(result.stdout)["checks"]}
    assert "port 8888" in checked


def test_deploy_says_what_it_does_before_loading_the_chain_client(reef_home: Path) -> None:
    """Its first line comes before web3.py loads and the network is looked for (here: none)."""
    result = runner.invoke(app, ["deploy", str(HELLO), "--duration", "1h"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"… deploying {HELLO} for 1h"
    assert lines[1].startswith("error: no chain endpoint: nothing in")


# --- amounts people read carry their unit --------------------------------------------------------


@pytest.mark.slow
def test_money_is_shown_with_its_unit(tmp_path: Path) -> None:
    market = dev_market(rate_lock_s=5, fund=[0])
    view = ScriptedJobView(market.provider.address.lower())
    with serve_in_thread(control_plane_app(view)) as cp_url:
        market.register_provider(cp_url)
        key = market.write_key(tmp_path / "owner.key")
        with serve_devnet_in_thread(market.devnet) as rpc:
            where = ["--rpc", rpc.url, "--market", market.deployment.market]
            flags = [*where, "--key", str(key)]

            def reef(*args: str) -> dict[str, str]:
                given = where if args[:2] == ("jobs", "show") else flags  # show needs no account
                done = runner.invoke(app, [*args, *given], env={"COLUMNS": "200"})
                assert done.exit_code == 0, done.output
                return printed_rows(done.stdout)

            wallet = reef("wallet")
            assert wallet["rusd"].endswith(" rUSD")
            assert wallet["eth"].endswith(" ETH")
            assert wallet["jobs"] == "(none)"
            market.open_job(CARD.min_rate, 360_000)
            wallet = reef("wallet")
            assert wallet["jobs_balance"].endswith(" rUSD")
            assert wallet["spend_per_hour"].endswith(" rUSD")
            assert wallet["jobs"] == "0"
            deposited = reef("jobs", "deposit", "0", "0.5")
            assert deposited["deposited"] == "0.5 rUSD"
            shown = reef("jobs", "show", "0")
            assert shown["rate_per_hour"].endswith(" rUSD")
            assert shown["balance"].endswith(" rUSD (left now)")
            assert shown["balance_on_chain"].endswith(" rUSD (as last settled on chain)")
            # Scripts read the same numbers as before, without units.
            done = runner.invoke(app, ["jobs", "show", "0", "--json", *where])
            assert parse_amount(json.loads(done.stdout)["balance_on_chain"]) == 860_000
            done = runner.invoke(app, ["wallet", "--json", *flags])
            assert json.loads(done.stdout)["jobs"] == [0]


def _deployed(authority: DevAuthority, *, debug: bool) -> tuple[Any, Any]:
    from reef.attestation import VerifiedAttestation
    from reef.chain import Address
    from reef.node import DeployRequest, DeployResult

    measured = attested_measurements(HELLO, debug=debug)
    attestation = VerifiedAttestation(
        kind="nitro",
        image_id=measured.image_id,
        pcrs=measured.pcrs,
        timestamp_ms=wall_ms(),
        module_id="dev",
        public_key=b"\x07" * 32,
        user_data=b"",
        nonce=b"",
        root=authority.root,
        mode="live",
    )
    result = DeployResult(
        job_id=JobId("0x" + "00" * 31 + "02"),
        endpoint="http://127.0.0.1:59843",
        endpoints={"attestation": "http://127.0.0.1:47191/attestation/raw"},
        image_id=measured.image_id,
        image_url="http://127.0.0.1:38090/images/ab",
        enclave_id="aac59c9f168f",
        provider=Address(ZERO_ADDRESS),
        control_plane="http://127.0.0.1:38080",
        rate=100,
        cost=360_000,
        attestation=attestation,
    )
    return result, DeployRequest(image=HELLO, duration_s=3600, debug=debug)


@pytest.mark.parametrize("debug", [True, False])
def test_a_debug_deploy_says_what_its_verification_proves(
    authority: DevAuthority,
    debug: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reef.cli._deploy import print_deployed

    monkeypatch.setenv("COLUMNS", "200")
    print_deployed(*_deployed(authority, debug=debug))
    out, err = capsys.readouterr()
    rows = printed_rows(out)
    said = " ".join(err.split())
    assert "verified under the dev TEE root" in said
    if debug:
        assert "a debug enclave attests zero PCRs" in said
        assert "not which code it runs" in said
        assert rows["image"].endswith("(debug: not its image's)")
        assert rows["console"] == "reef logs 2 --follow"
    else:
        assert "debug" not in said + out
        assert "console" not in rows
    assert rows["stop"].split() == ["it", "reef", "jobs", "stop", "2"]


def _debug_enclave(job: JobId, logs: str) -> RunningEnclave:
    """A debug enclave of ``job`` whose console streams at ``logs``."""
    return RunningEnclave(
        enclave_id="aac59c9f168f", job_id=job, key="k", state="running", endpoints={"logs": logs}
    )


def _console_that_closes() -> Any:
    """An enclave console that streams two lines, then closes (its enclave was replaced)."""
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def lines() -> AsyncIterator[bytes]:
        yield b"data: hello: listening on 127.0.0.1:8080\n\n"
        await asyncio.sleep(0.2)
        yield b'data: 127.0.0.1 "GET / HTTP/1.1" 200 -\n\n'

    async def stream(_request: Any) -> StreamingResponse:
        return StreamingResponse(lines(), media_type="text/event-stream")

    return Starlette(routes=[Route("/logs/stream", stream)])


@pytest.mark.slow
def test_logs_follow_says_why_it_ended(tmp_path: Path) -> None:
    market = dev_market(rate_lock_s=5, fund=[0])
    with serve_in_thread(_console_that_closes()) as console_url:
        view = ScriptedJobView(market.provider.address.lower())
        with serve_in_thread(control_plane_app(view)) as cp_url:
            market.register_provider(cp_url)
            job = market.open_job(CARD.min_rate, 360_000)
            view.enclaves[job.lower()] = _debug_enclave(job, f"{console_url}/logs/stream")
            with serve_devnet_in_thread(market.devnet) as rpc:
                where = ["--rpc", rpc.url, "--market", market.deployment.market]
                followed = runner.invoke(app, ["logs", "0", "--follow", *where])
                once = runner.invoke(app, ["logs", "0", *where])
    assert followed.exit_code == 0, followed.output
    assert followed.stdout.splitlines() == [
        "hello: listening on 127.0.0.1:8080",
        '127.0.0.1 "GET / HTTP/1.1" 200 -',
    ]
    said = " ".join(followed.stderr.split())
    assert "job 0's enclave console ended: the enclave stopped or was replaced" in said
    assert f"`reef logs 0 --follow {' '.join(where)}` follows a new one" in said
    # Without --follow, the console's end is the command's: nothing to explain.
    assert once.exit_code == 0, once.output
    assert once.stdout == followed.stdout
    assert once.stderr == ""


@pytest.mark.slow
def test_update_says_what_changed_and_what_a_debug_enclave_attests(tmp_path: Path) -> None:
    from reef.market import ImageStore, UploadPolicy, image_store_app

    market = dev_market(rate_lock_s=5, fund=[0])
    store = image_store_app(ImageStore(tmp_path / "store"), uploads=UploadPolicy.anyone())
    with (
        serve_in_thread(store) as store_url,
        serve_in_thread(control_plane_app(ScriptedJobView(market.provider.address.lower()))) as cp,
    ):
        market.register_provider(cp)
        market.open_job(CARD.min_rate, 360_000)
        key = market.write_key(tmp_path / "owner.key")
        with serve_devnet_in_thread(market.devnet) as rpc:
            flags = ["--rpc", rpc.url, "--market", market.deployment.market, "--key", str(key)]

            def update(*args: str) -> dict[str, str]:
                done = runner.invoke(
                    app,
                    ["jobs", "update", "0", *args, "--store", store_url, *flags],
                    env={"COLUMNS": "200"},
                )
                assert done.exit_code == 0, done.output
                return {
                    name: " ".join(value.split())
                    for name, value in printed_rows(done.stdout).items()
                }

            debug = update("--debug")
            assert debug["updated"] == "debug"
            assert debug["image_id"].startswith("(a debug enclave's: its PCR0-2 are zero")
            image = update("--image", str(HELLO))  # the job is a debug job now
            assert image["updated"] == "image"
            zero = attested_measurements(HELLO, debug=True).image_id.hex()
            assert image["image_id"] == f"{zero} (debug: not its image's)"
            plain = update("--no-debug")
            assert plain["image_id"].startswith("(same image file;")
            again = update("--image", str(HELLO))
            assert again["image_id"] == attested_measurements(HELLO).image_id.hex()
            # Scripts read the metadata's field names, as before.
            done = runner.invoke(
                app,
                [
                    "jobs",
                    "update",
                    "0",
                    "--image",
                    str(HELLO),
                    "--store",
                    store_url,
                    "--json",
                    *flags,
                ],
            )
            assert json.loads(done.stdout)["updated"] == ["url"]
