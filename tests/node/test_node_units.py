"""Node helpers without a network: durations, network.json, key files, session resolution, and
`reef provider register` / `reef provider index` against a devnet served over JSON-RPC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.network_support import network_json
from reef.chain import Devnet, DevnetThread, MarketClient, serve_devnet_in_thread
from reef.cli import app
from reef.errors import ConfigError, InputError
from reef.home import ReefHome
from reef.node import NetworkInfo, load_key_file, locate_market, open_session, parse_duration
from reef.testing import dev_market


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("30m", 1800),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2d", 172800),
        (" 1H ", 3600),
        ("1w", 604800),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1x", "h", "-5m", "0", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InputError):
        parse_duration(text)


def test_a_duration_is_read_without_loading_a_use_case() -> None:
    """A first-hour report: `reef proofs request --expiry abc` took 8 s to say "not a duration",
    importing reef.node's deploy use case (web3, the market) for one pure function."""
    import subprocess
    import sys

    probe = (
        "import sys; from reef.node import parse_duration; parse_duration('1h'); "
        "print(sorted(m for m in sys.modules if m.startswith(('web3', 'reef.node.'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_an_alerts_duration_is_the_same_grammar_with_zero_allowed() -> None:
    from reef.web import parse_duration_s

    assert parse_duration_s("1h30m", name="for") == 5400
    assert parse_duration_s(0, name="for") == 0
    assert parse_duration_s("0", name="for") == 0
    with pytest.raises(InputError, match=r"^within: not a duration"):
        parse_duration_s("soon", name="within")


def test_network_json_round_trip(reef_home: Path) -> None:
    home = ReefHome(reef_home)
    with pytest.raises(ConfigError, match="reef up"):
        NetworkInfo.load(home)
    info = NetworkInfo.from_json(network_json(block=3, rate_lock_s=300))
    info.dump(home)
    assert NetworkInfo.load(home) == info
    (reef_home / "network.json").write_text('{"rpc_url": 1}')
    with pytest.raises(ConfigError, match="not a valid network"):
        NetworkInfo.load(home)
    NetworkInfo.clear(home)
    assert not (reef_home / "network.json").exists()


def test_a_network_that_never_started_leaves_another_onesnetwork_json(reef_home: Path) -> None:
    """A second ``reef up`` in the same home that fails before it starts (the devnet's lock is
    held, a port is busy) must not remove the running network's record: every command finds
    the network through it."""
    import asyncio

    from reef.node import LocalNetwork

    home = ReefHome(reef_home)
    running = NetworkInfo.from_json(network_json(block=3, rate_lock_s=300))
    running.dump(home)
    asyncio.run(LocalNetwork(home).aclose())
    assert NetworkInfo.load(home) == running


@pytest.mark.parametrize(
    ("contents", "words"),
    [(b"{", "cannot read .*network.json: Expecting"), (b"\xff{}", "cannot read .*network.json")],
)
def test_a_network_json_that_cannot_be_read_is_a_config_error_naming_it(
    reef_home: Path, contents: bytes, words: str
) -> None:
    (reef_home / "network.json").write_bytes(contents)  # cut short, or not UTF-8
    with pytest.raises(ConfigError, match=words):
        NetworkInfo.load(ReefHome(reef_home))


def test_key_files(tmp_path: Path) -> None:
    key = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
    expected = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # hardhat account 1
    text, raw = tmp_path / "hex", tmp_path / "raw"
    text.write_text(f"0x{key}\n")
    raw.write_bytes(bytes.fromhex(key))
    assert load_key_file(text).address == expected
    assert load_key_file(raw).address == expected
    bad = tmp_path / "bad"
    bad.write_text("hello")
    with pytest.raises(InputError, match="neither 32 raw bytes nor 64 hex"):
        load_key_file(bad)
    bad.write_text("00" * 32)
    with pytest.raises(InputError, match="not a valid secp256k1"):
        load_key_file(bad)
    with pytest.raises(InputError, match="cannot read"):
        load_key_file(tmp_path / "missing")


def test_a_session_needs_to_know_where_the_network_is(reef_home: Path) -> None:
    with pytest.raises(ConfigError, match="reef up"):
        open_session(ReefHome(reef_home))


def test_locating_the_market_from_network_json_and_flags(reef_home: Path) -> None:
    home = ReefHome(reef_home)
    with pytest.raises(ConfigError, match="reef up"):
        locate_market(home)
    info = NetworkInfo.from_json(network_json(block=7, rate_lock_s=5, safety_margin_s=5))
    info.dump(home)
    local = locate_market(home)
    assert (local.rpc_url, local.market_address.lower()) == (info.rpc_url, "0x" + "22" * 20)
    assert local.start_block == 7  # the market this home deployed: its history starts there
    assert local.safety_margin_s == 5
    assert local.default_provider() == info.provider
    assert local.image_store() == info.image_store
    assert local.image_store("http://other:1") == "http://other:1"
    # Another market (flags win): its deployment block is unknown, so its history starts at 0.
    other = locate_market(home, rpc="http://other:8545", market="0x" + "55" * 20)
    assert (other.rpc_url, other.start_block) == ("http://other:8545", 0)
    with pytest.raises(InputError, match="market address"):
        locate_market(home, market="not-an-address")
    NetworkInfo.clear(home)
    bare = locate_market(home, rpc="http://other:8545", market="0x" + "55" * 20)
    assert (bare.safety_margin_s, bare.default_provider()) == (None, None)
    with pytest.raises(ConfigError, match="no image store"):
        bare.image_store()


@pytest.fixture
def served() -> Iterator[tuple[Devnet, DevnetThread, str]]:
    market = dev_market(fund=[])
    with serve_devnet_in_thread(market.devnet) as server:
        yield market.devnet, server, market.deployment.market


def test_provider_register_and_index_commands(
    served: tuple[Devnet, DevnetThread, str], tmp_path: Path, reef_home: Path
) -> None:
    devnet, server, market = served
    key = tmp_path / "provider.key"
    key.write_text(devnet.accounts[5].private_key.hex())
    runner = CliRunner()
    base = ["--rpc", server.url, "--market", market, "--key", str(key)]

    first = runner.invoke(app, ["provider", "register", "--cp", "http://a:8080", *base, "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["action"] == "registered"
    again = runner.invoke(app, ["provider", "register", "--cp", "http://a:8080", *base, "--json"])
    assert json.loads(again.stdout)["action"] == "unchanged"
    moved = runner.invoke(app, ["provider", "register", "--cp", "http://b:8080", *base, "--json"])
    assert json.loads(moved.stdout)["action"] == "updated"
    client = MarketClient(devnet.web3(), market)
    assert client.provider(devnet.accounts[5].address) == "http://b:8080"

    db = f"sqlite:///{tmp_path / 'index.db'}"
    indexed = runner.invoke(
        app,
        ["provider", "index", "--rpc", server.url, "--market", market, "--db", db, "--json"],
    )
    assert indexed.exit_code == 0, indexed.output
    # ProviderAdded, ProviderUpdatedWithCp (plus the market's own deployment events)
    assert json.loads(indexed.stdout)["stored"] >= 2

    unreachable = runner.invoke(
        app,
        [
            "provider",
            "register",
            "--cp",
            "x",
            "--rpc",
            "http://127.0.0.1:9",
            "--market",
            market,
            "--key",
            str(key),
        ],
    )
    assert unreachable.exit_code == 1
    assert "cannot reach the JSON-RPC endpoint" in unreachable.stderr


# ---- shipped examples ----


def test_shipped_examples_group_functions_and_refuse_to_overwrite(tmp_path: Path) -> None:
    from reef.node import copy_example, example_dir, list_examples

    names = list_examples()
    assert {"hello", "kms-root", "serverless/hello"} <= set(names)
    assert "serverless" not in names  # a directory of functions is a group, not one example
    assert (example_dir("hello") / "reef.toml").is_file()
    copied = copy_example("serverless/hello", tmp_path / "fn")
    assert (copied / "index.js").read_bytes() == (
        example_dir("serverless/hello") / "index.js"
    ).read_bytes()
    with pytest.raises(InputError, match="already exists"):
        copy_example("hello", tmp_path / "fn")
    with pytest.raises(InputError, match="no shipped example named 'nope'") as info:
        example_dir("nope")
    assert "hello" in (info.value.hint or "")


def test_every_shipped_example_says_what_it_is() -> None:
    """`reef examples` listed bare names ("kms-root", "serverless/broken"): each now has its
    kind and one line, and a new example cannot ship without them."""
    from reef.node import describe_examples, list_examples
    from reef.node._examples import _ABOUT

    shipped = describe_examples()
    assert [e.name for e in shipped] == list_examples()
    assert set(_ABOUT) == set(list_examples())  # no line without its example either
    assert all(e.about and e.kind in ("app", "function", "circuit", "platform") for e in shipped)
    kinds = {e.name: e.kind for e in shipped}
    assert kinds["hello"] == "app"
    assert kinds["serverless/hello"] == "function"
    assert kinds["kms-root"] == "platform"


def test_reef_examples_lists_them_by_kind() -> None:
    from typer.testing import CliRunner

    from reef.cli import app

    listed = CliRunner().invoke(app, ["examples"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    apps = lines.index("Enclave apps (reef deploy DIR, or reef enclave run):")
    functions = next(i for i, line in enumerate(lines) if line.startswith("Serverless functions"))
    assert apps < functions
    assert any(line.split()[:1] == ["hello"] for line in lines[apps:functions])
    hello = next(line for line in lines if line.split()[:1] == ["serverless/hello"])
    assert "greeting" in hello
    as_json = json.loads(CliRunner().invoke(app, ["examples", "--json"]).output)
    assert {"name": "hello", "kind": "app"}.items() <= as_json["details"][0].items()
    assert as_json["examples"][0] == "hello"


def test_reef_up_names_the_accounts_its_extensions_act_with() -> None:
    from reef.chain import Deployment
    from reef.cli._up import _account_roles

    zero = "0x" + "00" * 20
    info = NetworkInfo(
        rpc_url="http://127.0.0.1:8545",
        chain_id=31337,
        deployment=Deployment(
            chain_id=31337,
            token=zero,
            market=zero,
            kms_registry=zero,
            block=0,  # type: ignore[arg-type]
        ),
        rate_lock_s=300,
        provider=zero,
        control_plane="http://127.0.0.1:8080",
        image_store="http://127.0.0.1:8090",
        services={
            "proofs": {"engine": "0xAA" + "00" * 19, "prover": "0xBB" + "00" * 19},
            "serverless": {"executors": [{"owner": "0xCC" + "00" * 19}, {"owner": None}]},
        },
    )
    roles = _account_roles(info)
    assert roles == {
        "0xaa" + "00" * 19: "proof matching engine",
        "0xbb" + "00" * 19: "prover",
        "0xcc" + "00" * 19: "serverless executor operator",
    }


def test_deploy_without_a_local_network_says_none_is_recorded(
    served: tuple[Devnet, DevnetThread, str], tmp_path: Path, reef_home: Path
) -> None:
    """Against a market named by flags, in a home where no ``reef up`` wrote network.json,
    ``reef deploy`` says why it has no provider instead of only asking which."""
    devnet, server, market = served
    key = tmp_path / "owner.key"
    key.write_text(devnet.accounts[1].private_key.hex())
    hello = Path(__file__).parents[2] / "examples" / "hello"
    flags = ["--rpc", server.url, "--market", market, "--key", str(key)]
    result = CliRunner().invoke(
        app, ["deploy", str(hello), "--duration", "1h", "--root", "mock", *flags]
    )
    assert result.exit_code != 0
    assert "no `reef up` network is recorded in" in result.output
    assert "--provider ADDR" in result.output


def test_deploy_refuses_an_enclave_that_attests_another_job() -> None:
    """A provider could name, as a job's attestation endpoint, another provider's enclave of the
    same image (its image id verifies) and be paid for running nothing: reef's providers'
    enclaves attest their job, and deploy refuses one that attests another, and warns about
    one that attests none (Oyster's)."""
    from reef.errors import ExpectationError
    from reef.market import job_user_data
    from reef.node._deploy import _check_bound

    market = "0x" + "44" * 20
    job, other = "0x" + "00" * 31 + "07", "0x" + "00" * 31 + "08"
    bound = job_user_data(31337, market, job)
    said: list[str] = []
    _check_bound(bound, bound, job, said.append)
    assert said == []
    with pytest.raises(ExpectationError, match="another enclave's attestation endpoint") as caught:
        _check_bound(job_user_data(31337, market, other), bound, job, said.append)
    assert caught.value.reason == "user_data"
    assert f"job={other}" in caught.value.message
    _check_bound(b"", bound, job, said.append)
    (warning,) = said
    assert "does not say which job it runs" in warning
