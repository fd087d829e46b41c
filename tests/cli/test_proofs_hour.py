"""A proof buyer's, a prover operator's and a market creator's first hour, followed to the
letter (README and docs/proofs.md): what tripped them up stays fixed.

- ``reef prover status`` printed ``stake 50``, ``max_time 60`` and ``active 0``: no unit, no
  hint that 50 is rUSD and 60 seconds.
- ``reef proofs request`` read ``--reward 0.5rUSD`` or ``--expiry abc`` only after seconds on
  the chain; an input file with a signal the market does not take (a typo, or a private input
  put in the public file, which then went on chain in the clear) was sent without a word; a
  reward below every prover's price was sent without a word and expired.
- ``reef proofs wait`` exited 1 for an expired, invalid or slashed ask and said nothing of why
  or where the money went; ``ramp_end`` was unix seconds where ``expiry`` was a date.
- ``reef prover register`` a second time spent an approval then showed a bare revert; a prover
  could join with no free stake and never be assigned anything; nothing added stake.
- ``reef prover leave`` said "in about 1 min 0 s" for a delay half gone (the idle devnet's
  latest block was the request's), and blamed the delay when an assigned ask held it back.
- ``reef proofs market create --vkey`` with a mistyped path printed Python's ``[Errno 2]``.

The network is an in-process devnet served over HTTP (no enclaves); commands run through
CliRunner with ``--rpc`` and ``--proof-market``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner, Result

from proofs.proofs_support import ProofChain
from reef.chain import serve_devnet_in_thread
from reef.cli import app

REPO = Path(__file__).resolve().parents[2]
POSEIDON = REPO / "examples" / "proofs" / "poseidon"


class Net:
    """The served chain, a key file per user and a public (``x``) and a private (``salt``
    public, ``x`` private) TEE market: their asks take the same input files as Groth16's."""

    def __init__(self, chain: ProofChain, url: str, tmp: Path) -> None:
        self.chain, self.url, self.tmp = chain, url, tmp
        self.keys = chain.key_files(tmp)
        market = chain.market()
        self.public, _ = market.create_tee_market(
            image_id=b"\x01" * 32,
            penalty=10**6,
            n_inputs=1,
            metadata=json.dumps({"name": "pub", "public_inputs": ["x"]}),
        )
        self.private, _ = market.create_tee_market(
            image_id=b"\x02" * 32,
            penalty=10**6,
            n_inputs=1,
            metadata=json.dumps(
                {"name": "priv", "public_inputs": ["salt"], "private_inputs": ["x"]}
            ),
            private_inputs=True,
        )

    def reef(self, *args: str, user: int | None = 0) -> Result:
        flags = ["--rpc", self.url, "--proof-market", self.chain.market_address]
        if user is not None:
            flags += ["--key", str(self.keys[user])]
        return CliRunner().invoke(app, [*args, *flags], env={"COLUMNS": "200"})

    def ok(self, *args: str, user: int | None = 0) -> Result:
        done = self.reef(*args, user=user)
        assert done.exit_code == 0, done.output
        return done

    def inputs(self, name: str, data: object) -> str:
        path = self.tmp / name
        path.write_text(json.dumps(data))
        return str(path)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    chain = ProofChain.create(n_users=5)
    with serve_devnet_in_thread(chain.devnet) as thread:
        yield Net(chain, thread.url, tmp_path_factory.mktemp("hour"))


# ---- flags and files, before the chain ----


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--reward", "0.5rUSD"], "--reward is not a number: '0.5rUSD'"),
        (["--reward", "0"], "--reward must be more than 0"),
        (["--reward", "1", "--expiry", "abc"], "--expiry: not a duration: 'abc'"),
        (["--reward", "1", "--deadline", "0"], "--deadline: the duration must be longer than zero"),
    ],
)
def test_a_bad_flag_is_refused_before_the_chain_is_asked(flags: list[str], said: str) -> None:
    """No network answers here: the flag is checked first, or this would say so instead."""
    done = CliRunner().invoke(
        app,
        ["proofs", "request", "1", "--input", str(POSEIDON / "input.json"), *flags,
         "--rpc", "http://127.0.0.1:9", "--proof-market", "0x" + "11" * 20],
    )  # fmt: skip
    assert done.exit_code == 1, done.output
    assert f"error: {said}" in done.stderr
    assert "hint:" in done.stderr
    assert "Traceback" not in done.output
    if "reward" in said:
        assert "rUSD" in done.stderr  # the unit is named


def test_a_short_wait_timeout_that_is_no_duration_is_named(net: Net) -> None:
    done = net.reef("proofs", "wait", "1", "--timeout", "0", user=None)
    assert done.exit_code == 1
    assert "error: --timeout: the duration must be longer than zero" in done.stderr


def test_an_input_file_with_a_signal_the_market_does_not_take_is_refused(net: Net) -> None:
    extra = net.inputs("extra.json", {"x": 5, "y": 7})
    done = net.reef("proofs", "request", str(net.public), "--input", extra, "--reward", "1")
    assert done.exit_code == 1
    assert f"has 'y', which market {net.public} does not take (its public input: x)" in done.stderr
    assert 'e.g. {"x": 12345}' in done.stderr
    missing = net.inputs("empty.json", {})
    done = net.reef("proofs", "request", str(net.public), "--input", missing, "--reward", "1")
    assert done.exit_code == 1
    assert f"lacks market {net.public}'s public input x" in done.stderr
    assert "['x']" not in done.stderr  # no Python list
    assert net.chain.market().ask_count() == 0


def test_a_private_input_in_the_public_file_never_goes_on_chain(net: Net) -> None:
    both = net.inputs("both.json", {"salt": 7, "x": 12345})
    secret = net.inputs("private.json", {"x": 12345})
    done = net.reef(
        "proofs", "request", str(net.private), "--input", both, "--private", secret,
        "--reward", "1",
    )  # fmt: skip
    assert done.exit_code == 1
    assert f"has x, a private input of market {net.private}" in done.stderr
    assert "--private FILE" in done.stderr
    assert net.chain.market().ask_count() == 0


def _serving_public(net: Net, user: int) -> None:
    """``user`` registered and joined to the public market at 0.2, whichever test comes first
    (the module's chain is one per xdist worker, and tests may land on either)."""
    address = net.chain.users[user].address
    if not net.chain.market().prover(address).registered:
        net.ok("prover", "register", "--stake", "5", user=user)
    if not net.chain.market().offer(address, net.public).joined:
        net.ok("prover", "join", str(net.public), "--price", "0.2", "--max-time", "1m", user=user)


def test_a_reward_no_prover_takes_is_sent_with_a_warning_and_the_escrow_in_rusd(net: Net) -> None:
    _serving_public(net, 1)
    asked = net.inputs("input.json", {"x": 5})
    low = net.ok("proofs", "request", str(net.public), "--input", asked, "--reward", "0.05")
    assert "warning: no prover of market" in low.stderr
    assert "the cheapest asks 0.2 rUSD per proof (--reward is 0.05 rUSD)" in low.stderr
    assert "escrowed  0.05 rUSD" in low.stdout
    short = net.ok(
        "proofs", "request", str(net.public), "--input", asked, "--reward", "1", "--deadline", "30s"
    )
    assert "the quickest needs 60 s to prove (--deadline gives 30 s)" in short.stderr
    fine = net.ok("proofs", "request", str(net.public), "--input", asked, "--reward", "1")
    assert "warning" not in fine.stderr
    ask_id = net.chain.market().ask_count()
    assert f"`reef proofs wait {ask_id}`" in fine.stdout
    net.ok("proofs", "cancel", str(ask_id))


# ---- provers ----


def test_prover_status_says_its_units(net: Net) -> None:
    before = net.ok("prover", "status", user=3)
    assert "registered  no" in before.stdout
    assert "reef prover register --stake AMOUNT" in before.stdout
    net.ok("prover", "register", "--stake", "2.5", "--compute", "3", user=3)
    net.ok("prover", "join", str(net.public), "--price", "0.1", "--max-time", "90s", user=3)
    shown = net.ok("prover", "status", user=3).stdout
    assert "stake         2.5 rUSD" in shown
    assert "stake_locked  0 rUSD" in shown
    assert "compute       3 units" in shown
    assert (
        f"market {net.public}: 0.1 rUSD per proof, proves within 90 s, 1 unit of compute per "
        "ask, 0 asks assigned now"
    ) in shown
    # --json is as it was: numbers a script reads.
    data = json.loads(net.ok("prover", "status", "--json", user=3).stdout)
    assert (data["stake"], data["compute"], data["markets"][0]["max_time"]) == ("2.5", 3, 90)


def test_registering_twice_says_so_and_stake_is_added_by_its_own_command(net: Net) -> None:
    first = net.ok("prover", "register", "--stake", "1", user=2)
    assert "stake    1 rUSD" in first.stdout
    assert "compute  4 units" in first.stdout
    again = net.reef("prover", "register", "--stake", "1", user=2)
    assert again.exit_code == 1
    assert "is registered already, with 1 rUSD of stake and 4 compute units" in again.stderr
    assert "`reef prover stake AMOUNT`" in again.stderr
    added = net.ok("prover", "stake", "1.5", user=2)
    assert "added   1.5 rUSD" in added.stdout
    assert "stake   2.5 rUSD" in added.stdout
    me = net.chain.users[2].address
    assert net.chain.market().prover(me).stake == 2_500_000


def test_joining_without_the_stake_for_the_penalty_warns(net: Net) -> None:
    user = 0
    net.ok("prover", "register", "--stake", "0", user=user)
    joined = net.ok("prover", "join", str(net.public), "--price", "0.1", user=user)
    assert "warning: your free stake (0 rUSD) is below market" in joined.stderr
    assert "penalty (1 rUSD)" in joined.stderr
    assert "`reef prover stake 1`" in joined.stderr
    twice = net.reef("prover", "join", str(net.public), "--price", "0.1", user=user)
    assert twice.exit_code == 1
    assert f"you are in market {net.public} already" in twice.stderr


def test_leaving_with_an_assigned_ask_says_what_holds_it_back(net: Net) -> None:
    chain, me = net.chain, 4  # a prover of its own: another test's may be leaving already
    _serving_public(net, me)
    asked = net.inputs("input.json", {"x": 5})
    net.ok("proofs", "request", str(net.public), "--input", asked, "--reward", "1", user=2)
    ask_id = chain.market().ask_count()
    chain.market(chain.engine).assign([ask_id], [chain.users[me].address])
    first = net.ok("prover", "leave", str(net.public), user=me)
    assert f"1 ask of market {net.public} is still yours" in first.stderr
    leave_at = chain.market().offer(chain.users[me].address, net.public).leave_at
    # Too early: the wait is counted from the chain's time, or the wall clock's if later.
    early = net.reef("prover", "leave", str(net.public), user=me)
    assert early.exit_code == 1
    assert "the leave delay has not passed" in early.stderr
    chain.at(leave_at + 1)
    held = net.reef("prover", "leave", str(net.public), user=me)
    assert held.exit_code == 1
    assert "the prover still has assigned asks in this market" in held.stderr
    assert "you may leave" not in held.stderr  # not the delay's message
    assert "keep `reef prover run` going" in held.stderr


def test_the_prover_run_lines_say_what_a_hash_and_a_price_are() -> None:
    from reef.cli._prover import _outcome_line

    proved = _outcome_line(SimpleNamespace(ask_id=3, outcome="proved", detail="0xab"))
    assert proved.startswith("ask 3: proved;")
    assert "(tx 0xab)" in proved
    locked = _outcome_line(SimpleNamespace(ask_id=4, outcome="locked", detail="106250"))
    assert locked == "ask 4: locked at 0.10625 rUSD; proving it"
    skipped = _outcome_line(
        SimpleNamespace(ask_id=7, outcome="skipped", detail="the ask is complete")
    )
    assert skipped == "ask 7: nothing to do (the ask is complete)"


# ---- waiting, and what an ending means ----


def test_wait_on_an_ask_that_ended_otherwise_says_why_and_where_the_money_went(net: Net) -> None:
    asked = net.inputs("input.json", {"x": 5})
    requested = net.ok(
        "proofs", "request", str(net.public), "--input", asked, "--reward", "0.75", "--json"
    )
    ask_id = json.loads(requested.stdout)["ask_id"]
    net.ok("proofs", "cancel", str(ask_id))
    done = net.reef("proofs", "wait", str(ask_id), user=None)
    assert done.exit_code == 1
    assert "reward          0.75 rUSD" in done.stdout
    assert f"ask {ask_id} was cancelled; its 0.75 rUSD came back to the requester" in done.stderr
    as_json = net.reef("proofs", "wait", str(ask_id), "--json", user=None)
    assert json.loads(as_json.stdout)["reward"] == "0.75"  # --json keeps its numbers


def test_an_auctions_ramp_end_reads_as_a_date(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from reef.cli._proofs import _print_ask
    from reef.node import format_time

    monkeypatch.setenv("COLUMNS", "100")
    row = {
        "ask_id": 4, "market_id": 1, "state": "complete", "reward": "0.5", "price": "0.10625",
        "expiry": 1796541200, "deadline": 1796541400,
        "auction": {"min_price": "0.05", "max_price": "0.5", "ramp_end": 1796541148},
    }  # fmt: skip
    _print_ask(row, False)
    out = capsys.readouterr().out
    assert f"ramp_end: {format_time(1796541148)}" in out
    assert "min_price: 0.05 rUSD" in out
    assert "price      0.10625 rUSD" in out
    _print_ask(row, True)
    assert json.loads(capsys.readouterr().out)["auction"]["ramp_end"] == 1796541148


# ---- creating a market ----


def test_a_mistyped_verification_key_path_is_named_with_its_flag() -> None:
    done = CliRunner().invoke(
        app,
        ["proofs", "market", "create", "--groth16", "--wasm", str(POSEIDON / "circuit.wasm"),
         "--zkey", str(POSEIDON / "circuit.zkey"), "--vkey", str(POSEIDON / "vkey.json"),
         "--public-input", "x", "--rpc", "http://127.0.0.1:9", "--proof-market", "0x" + "11" * 20],
    )  # fmt: skip
    assert done.exit_code == 1
    assert f"error: --vkey {POSEIDON / 'vkey.json'}: no such file" in done.stderr
    assert "snarkjs zkey export verificationkey" in done.stderr
    assert "Errno" not in done.output


def test_the_library_names_an_unreadable_verification_key_without_errno(tmp_path: Path) -> None:
    from reef.errors import InputError
    from reef.proofs import load_verification_key

    with pytest.raises(InputError) as caught:
        load_verification_key(tmp_path / "nope.json")
    assert "No such file or directory" in caught.value.message
    assert "Errno" not in caught.value.message
    assert "snarkjs zkey export verificationkey" in (caught.value.hint or "")


@pytest.mark.parametrize("example", ["poseidon", "commitment"])
def test_the_key_read_from_a_zkey_is_the_one_snarkjs_exported(example: str) -> None:
    """Independent check: each example's verification_key.json is snarkjs's own export."""
    from reef.proofs import zkey_verification_key

    folder = POSEIDON.parent / example
    exported = json.loads((folder / "verification_key.json").read_text())
    own = zkey_verification_key(folder / "circuit.zkey")
    assert own == {k: exported[k] for k in own}
    assert len(own["IC"]) == exported["nPublic"] + 1


def test_another_circuits_verification_key_is_refused_before_the_chain() -> None:
    """The commitment circuit's key beside the poseidon circuit's .zkey: a market over them
    would reject every proof, and slash every prover that took an ask."""
    other = POSEIDON.parent / "commitment" / "verification_key.json"
    done = CliRunner().invoke(
        app,
        ["proofs", "market", "create", "--groth16", "--wasm", str(POSEIDON / "circuit.wasm"),
         "--zkey", str(POSEIDON / "circuit.zkey"), "--vkey", str(other), "--public-input", "x",
         "--rpc", "http://127.0.0.1:9", "--proof-market", "0x" + "11" * 20],
    )  # fmt: skip
    assert done.exit_code == 1, done.output
    assert f"error: {other} is not the verification key of {POSEIDON / 'circuit.zkey'}" in (
        done.stderr
    )
    assert "snarkjs zkey export verificationkey" in done.stderr


def test_a_file_that_is_no_zkey_is_named(tmp_path: Path) -> None:
    from reef.errors import InputError
    from reef.proofs import zkey_verification_key

    bogus = tmp_path / "circuit.zkey"
    bogus.write_bytes(b"zkey" + b"\x01\x00\x00\x00" + b"\xff\xff\xff\xff")
    with pytest.raises(InputError, match=r"is not a Groth16 \.zkey"):
        zkey_verification_key(bogus)
    bogus.write_text('{"protocol": "groth16"}')
    with pytest.raises(InputError, match=r"is not a snarkjs \.zkey"):
        zkey_verification_key(bogus)


def test_reading_the_market_loads_neither_the_engine_nor_sql_nor_the_ivs_server() -> None:
    """Every proofs command paid for the whole facade (the engine's order book, SQLAlchemy, the
    IVS's server): seconds on a busy host before the first RPC."""
    import subprocess
    import sys

    loaded = subprocess.run(
        [sys.executable, "-c",
         "import sys\nfrom reef.proofs import ProofMarketClient, describe_market, request_proof\n"
         "print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "reef.proofs._client" in loaded
    for heavy in ("reef.proofs._engine", "reef.proofs._book", "reef.proofs._ivs", "sqlalchemy"):
        assert heavy not in loaded
