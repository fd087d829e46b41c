"""A user's first hour after an upgrade: ``reef up`` on the same chain with a new image.

The example markets' IVS key is the KMS's for the IVS image's id, and every reef release changes
that image (PCR1), so ``reef up`` creates new example markets. The ones it created before name
a prover that died with its enclave: an ask placed there would wait for its expiry, paying
nothing back until then. Here the extension's market set-up runs twice on one devnet, with the
IVS address another image gives the second time (the seam: ``_contract`` then ``_examples``,
what :meth:`ProofsExtension.start` runs, without the enclaves); the first examples must come out
retired: listed as retired, refused by the CLI before any transaction, refused by the contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner

from proofs.proofs_support import EXAMPLE, ProofChain
from reef.chain import serve_devnet_in_thread
from reef.cli import app
from reef.errors import ContractRevertError
from reef.home import ReefHome
from reef.node._proofs import ProofsExtension
from reef.proofs import ProofMarketClient, ProofRevert

pytestmark = pytest.mark.slow


def _up_context(home: ReefHome, chain: ProofChain, said: list[str]) -> Any:
    """What ``_contract`` and ``_examples`` read of reef up's context: the home, the devnet
    (dev account 0 deploys and creates), the network's token and the progress."""
    return SimpleNamespace(
        home=home,
        devnet=chain.devnet,
        info=SimpleNamespace(deployment=SimpleNamespace(token=chain.token_address)),
        progress=said.append,
    )


def _ivs_of_image(n: int) -> str:
    """The IVS address one image's KMS key gives (any fixed key per image will do here)."""
    return str(Account.from_key(bytes([n]) * 32).address)


def test_reef_up_with_another_image_retires_its_earlier_example_markets(tmp_path: Path) -> None:
    chain = ProofChain.create(n_users=1)
    home = ReefHome(tmp_path / "home").ensure()
    said: list[str] = []
    ctx = _up_context(home, chain, said)
    first = ProofsExtension()
    before = first._examples(ctx, first._contract(ctx), _ivs_of_image(1))
    # The next release: a new reef up (a new extension) on the same home and chain, whose IVS
    # enclave is another image, so signs as another address.
    second = ProofsExtension()
    contract = second._contract(ctx)
    assert contract.client.address == before.client.address  # the proof market is reused
    after = second._examples(ctx, contract, _ivs_of_image(2))
    old = (before.example, before.private)
    new = (after.example, after.private)
    assert set(old).isdisjoint(new)

    user = chain.users[0]
    key = tmp_path / "user.key"
    key.write_text(user.key.hex())
    market = contract.client.address
    with serve_devnet_in_thread(chain.devnet) as served:
        flags = ["--rpc", served.url, "--proof-market", market, "--json"]
        nonce = chain.w3.eth.get_transaction_count(user.address)
        requested = CliRunner().invoke(
            app,
            ["proofs", "request", str(old[0]), "--input", str(EXAMPLE / "input.json"),
             "--reward", "1", "--key", str(key), *flags],
        )  # fmt: skip
        # Today's code took the ask (and the user's reward) into a market nobody proves in.
        assert requested.exit_code == 1, requested.output
        assert f"market {old[0]} is retired" in requested.stderr
        # The replacement is named: the live market over the same circuit.
        assert f"market {new[0]}" in requested.stderr
        assert "Traceback" not in requested.output
        # Refused before any transaction: not even the token approval was sent.
        assert chain.w3.eth.get_transaction_count(user.address) == nonce

        listed = CliRunner().invoke(app, ["proofs", "market", "list", *flags])
        assert listed.exit_code == 0, listed.output
        rows = {row["market_id"]: row for row in json.loads(listed.stdout)}
        assert [rows[m]["retired"] for m in (*old, *new)] == [True, True, False, False]
        shown = CliRunner().invoke(app, ["proofs", "market", "show", str(old[1]), *flags])
        assert json.loads(shown.stdout)["retired"] is True
        table = CliRunner().invoke(app, ["proofs", "market", "list", "--rpc", served.url,
                                         "--proof-market", market])  # fmt: skip
        assert "retired" in table.stdout

    # reef up said so.
    assert any("retired" in line and str(old[0]) in line for line in said), said

    # The contract refuses an ask there whoever sends it (not only reef's CLI).
    client = ProofMarketClient(chain.w3, market, account=user)
    client.ensure_allowance(10**6)
    with pytest.raises(ContractRevertError) as refused:
        client.create_ask(
            old[0], [12345], reward=10**6, expiry=chain.next_time() + 60, proving_time=60
        )
    assert refused.value.reason == ProofRevert.MARKET_RETIRED
    ask_id, _ = client.create_ask(
        new[0], [12345], reward=10**6, expiry=chain.next_time() + 60, proving_time=60
    )
    assert client.ask(ask_id).market_id == new[0]

    # A third start with the same image keeps the markets and retires nothing more.
    said.clear()
    third = ProofsExtension()
    kept = third._examples(ctx, third._contract(ctx), _ivs_of_image(2))
    assert (kept.example, kept.private) == new
    assert not any("retired" in line for line in said), said
    assert not client.retired(new[0])
