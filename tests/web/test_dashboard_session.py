"""The dashboard opens its chain session as every command does (``reef.node.open_session``):
with the sending account when there is one (``--key``, else a development chain's dev account 0),
read-only when there is none (its pages still work), reused while the endpoints stay the same and
reopened when ``reef up`` restarts elsewhere. Two devnets served over JSON-RPC: one with another
chain id and mnemonic than the public dev chain's, recorded in ``devnet.json`` or not."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from reef.chain import Devnet, dev_accounts, serve_devnet_in_thread
from reef.chain.devnet._store import write_devnet_info
from reef.errors import RPCError
from reef.home import ReefHome
from reef.web import Dashboard, DashboardSettings

MARKET = "0x" + "22" * 20  # sessions name the market; none of these tests calls it
OTHER_CHAIN_ID = 4242
OTHER_MNEMONIC = "abandon " * 11 + "about"


@pytest.fixture(scope="module")
def chains() -> Iterator[tuple[str, Devnet, str]]:
    """The public dev chain (chain id 31337, anvil's accounts), and another one."""
    other = Devnet(chain_id=OTHER_CHAIN_ID, accounts=2, mnemonic=OTHER_MNEMONIC)
    with (
        serve_devnet_in_thread(Devnet(accounts=2)) as public,
        serve_devnet_in_thread(other) as own,
    ):
        yield public.url, other, own.url


def test_without_an_account_the_dashboard_reads_and_with_one_it_signs(
    reef_home: Path, chains: tuple[str, Devnet, str], tmp_path: Path
) -> None:
    public_url, _, other_url = chains
    home = ReefHome(reef_home)
    reader = Dashboard(DashboardSettings(home=home, rpc=other_url, market=MARKET)).session()
    assert (reader.account, reader.rpc_url) == (None, other_url)  # no key, no dev account here
    assert int(reader.w3.eth.chain_id) == OTHER_CHAIN_ID
    key = tmp_path / "user.key"
    key.write_text("0x" + "5a" * 32)
    keyed = Dashboard(DashboardSettings(home=home, rpc=other_url, market=MARKET, key=key)).session()
    assert keyed.account is not None
    assert keyed.account_note == f"{keyed.account.address} (key file {key})"
    dev = Dashboard(DashboardSettings(home=home, rpc=public_url, market=MARKET)).session()
    assert dev.account is not None
    assert dev.account.address == dev_accounts(1)[0].address
    assert dev.market_address.lower() == MARKET


def test_the_session_is_reused_until_the_network_moves(
    reef_home: Path, chains: tuple[str, Devnet, str]
) -> None:
    public_url, other, other_url = chains
    home = ReefHome(reef_home).ensure()
    info = other.info()
    write_devnet_info(home, dataclasses.replace(info, rpc_url=other_url))
    dash = Dashboard(DashboardSettings(home=home, market=MARKET))
    first = dash.session()
    assert first.rpc_url == other_url
    assert first.account is not None  # devnet.json records this chain's dev account 0
    assert first.account.address == other.accounts[0].address
    assert dash.session() is first
    # The network restarted elsewhere: the next request gets a session there.
    write_devnet_info(home, dataclasses.replace(info, rpc_url=public_url))
    moved = dash.session()
    assert moved is not first
    assert moved.rpc_url == public_url
    assert int(moved.w3.eth.chain_id) != OTHER_CHAIN_ID
    assert dash.session() is moved
    # ... or nowhere: the error says so (the pages show it), and nothing stale is served.
    gone = "http://127.0.0.1:1/"
    write_devnet_info(home, dataclasses.replace(info, rpc_url=gone))
    with pytest.raises(RPCError, match=re.escape(f"cannot reach the JSON-RPC endpoint {gone}")):
        dash.session()
