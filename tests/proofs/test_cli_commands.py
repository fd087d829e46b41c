"""The proof commands against a served in-process chain (no enclaves): each parses, calls its
reef.proofs use case and prints the same JSON as before. A TEE market is created, an ask is
requested, shown and cancelled; a prover registers, joins, shows its status and leaves in two
steps; a market's creator retires it, and asks for it are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from proofs.proofs_support import ProofChain
from reef.chain import serve_devnet_in_thread


class Served:
    def __init__(self, chain: ProofChain, url: str, tmp: Path) -> None:
        self.chain, self.url = chain, url
        self.keys = chain.key_files(tmp)

    def reef(self, *args: str, user: int | None = 0) -> Any:
        """The command's JSON output, sent from ``user`` (None: a command that only reads)."""
        from reef.cli import app

        flags = ["--rpc", self.url, "--proof-market", self.chain.market_address, "--json"]
        if user is not None:
            flags += ["--key", str(self.keys[user])]
        result = CliRunner().invoke(app, [*args, *flags])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    chain = ProofChain.create(n_users=2)
    with serve_devnet_in_thread(chain.devnet) as thread:
        yield Served(chain, thread.url, tmp_path_factory.mktemp("keys"))


def test_a_tee_market_and_an_ask_from_creation_to_cancel(served: Served, tmp_path: Path) -> None:
    created = served.reef(
        "proofs", "market", "create", "--tee", "--image-id", "0x" + "03" * 32, "--name", "dbl"
    )
    market_id = created["market_id"]
    shown = served.reef("proofs", "market", "show", str(market_id), user=None)
    assert (shown["kind"], shown["name"], shown["public_inputs"]) == ("tee", "dbl", [])
    assert (shown["image_id"], shown["private"], shown["penalty"]) == ("0x" + "03" * 32, False, "1")
    inputs = tmp_path / "input.json"
    inputs.write_text(json.dumps({"x": "0x10"}))
    # Nobody proves in a new market: the request goes through, with a warning that says so.
    assert shown["provers"] == []
    from reef.cli import app

    requested = CliRunner().invoke(
        app,
        ["proofs", "request", str(market_id), "--input", str(inputs), "--reward", "1.5",
         "--rpc", served.url, "--proof-market", served.chain.market_address,
         "--key", str(served.keys[0]), "--json"],
    )  # fmt: skip
    assert requested.exit_code == 0, requested.output
    assert f"no prover takes market {market_id}'s asks now" in requested.stderr
    ask_id = json.loads(requested.stdout)["ask_id"]
    ask = served.reef("proofs", "show", str(ask_id), user=None)
    assert (ask["market_id"], ask["state"], ask["reward"], ask["inputs"]) == (
        market_id, "open", "1.5", ["16"],
    )  # fmt: skip
    assert (ask["prover"], ask["price"], ask["private_inputs"]) == (None, None, False)
    assert "auction" not in ask
    # For people, the ask's expiry reads as a time (`reef jobs` style), not unix seconds.
    from reef.node import format_time

    human = CliRunner().invoke(
        app,
        ["proofs", "show", str(ask_id), "--rpc", served.url,
         "--proof-market", served.chain.market_address],
    )  # fmt: skip
    assert human.exit_code == 0, human.output
    assert format_time(ask["expiry"]) in human.stdout
    assert str(ask["expiry"]) not in human.stdout
    listed = served.reef("proofs", "list", user=None)
    assert {"ask_id": ask_id, "state": "open"}.items() <= listed[-1].items()
    closed = served.reef("proofs", "cancel", str(ask_id))
    assert (closed["ask_id"], closed["state"]) == (ask_id, "cancelled")
    assert closed["tx"].startswith("0x")


def test_a_prover_registers_joins_and_leaves_in_two_steps(served: Served) -> None:
    market_id = served.reef("proofs", "market", "create", "--tee", "--image-id", "04" * 32)[
        "market_id"
    ]
    me = served.chain.users[1].address
    registered = served.reef("prover", "register", "--stake", "2", "--compute", "3", user=1)
    assert (registered["prover"], registered["stake"], registered["compute"]) == (me, "2", 3)
    joined = served.reef(
        "prover", "join", str(market_id), "--price", "0.1", "--max-time", "30s", user=1
    )
    assert (joined["market_id"], joined["prover"]) == (market_id, me)
    shown = served.reef("proofs", "market", "show", str(market_id), user=None)
    assert shown["provers"] == [me]
    assert "encryption_key" not in joined  # no private inputs in this market
    status = served.reef("prover", "status", user=1)
    assert (status["registered"], status["stake"], status["compute"]) == (True, "2", 3)
    assert status["markets"] == [
        {"market_id": market_id, "price": "0.1", "max_time": 30, "compute": 1, "active": 0,
         "leaving": False}
    ]  # fmt: skip
    leaving = served.reef("prover", "leave", str(market_id), user=1)
    assert leaving["state"] == "leaving"
    # A prover on its way out takes no new asks: the market has none.
    assert served.reef("proofs", "market", "show", str(market_id), user=None)["provers"] == []
    served.chain.at(leaving["leave_at"] + 1)
    assert served.reef("prover", "leave", str(market_id), user=1) == {
        "market_id": market_id,
        "state": "left",
    }
    assert served.reef("prover", "status", user=1)["markets"] == []


def test_a_markets_creator_retires_it_and_its_asks_are_refused(
    served: Served, tmp_path: Path
) -> None:
    from reef.cli import app

    market_id = served.reef("proofs", "market", "create", "--tee", "--image-id", "05" * 32)[
        "market_id"
    ]
    flags = ["--rpc", served.url, "--proof-market", served.chain.market_address]
    # Only its creator (user 0 created it) may retire it: refused before any transaction.
    other = CliRunner().invoke(
        app, ["proofs", "market", "retire", str(market_id), *flags, "--key", str(served.keys[1])]
    )
    assert other.exit_code == 1, other.output
    assert f"market {market_id} was created by {served.chain.users[0].address}" in other.stderr
    assert served.reef("proofs", "market", "show", str(market_id), user=None)["retired"] is False
    retired = served.reef("proofs", "market", "retire", str(market_id))
    assert (retired["market_id"], retired["retired"]) == (market_id, True)
    assert retired["tx"].startswith("0x")
    # Again: nothing to send.
    assert served.reef("proofs", "market", "retire", str(market_id))["tx"] is None
    assert served.reef("proofs", "market", "show", str(market_id), user=None)["retired"] is True
    inputs = tmp_path / "input.json"
    inputs.write_text(json.dumps({"x": "1"}))
    requested = CliRunner().invoke(
        app,
        ["proofs", "request", str(market_id), "--input", str(inputs), "--reward", "1",
         *flags, "--key", str(served.keys[0])],
    )  # fmt: skip
    assert requested.exit_code == 1, requested.output
    assert f"market {market_id} is retired: it takes no new asks" in requested.stderr
    assert "`reef proofs market list` shows the markets that take asks" in requested.stderr
    table = CliRunner().invoke(app, ["proofs", "market", "list", *flags])
    rows = [line.split("│") for line in table.stdout.splitlines() if line.startswith("│")]
    assert [(r[1].strip(), r[4].strip()) for r in rows if r[1].strip() == str(market_id)] == [
        (str(market_id), "retired")
    ]
