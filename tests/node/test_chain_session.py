"""One way to open a chain session (issue 13): the chain, the account a command sends from, and a
service's contracts, resolved the same way for the compute market (``reef jobs``), the
serverless contracts (``reef fn``, ``reef executor``) and the proof market (``reef proofs``).

Two devnets served over JSON-RPC: one with hardhat's and anvil's chain id and the public mnemonic
(as anvil would be), and one with another chain id and another mnemonic (a devnet this home
records in ``devnet.json``), so the default-account rule is told apart from its fallbacks.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reef.chain import DEVNET_CHAIN_ID, Devnet, dev_accounts, serve_devnet_in_thread
from reef.chain.devnet._store import write_devnet_info
from reef.errors import ConfigError, InputError
from reef.home import ReefHome
from reef.node import (
    ChainSession,
    MarketLocation,
    NetworkInfo,
    Session,
    default_dev_account,
    locate_service,
    open_chain,
    open_session,
)

OTHER_CHAIN_ID = 4242
OTHER_MNEMONIC = "abandon " * 11 + "about"


@pytest.fixture(scope="module")
def public_chain() -> Iterator[str]:
    """A 31337 chain with the public mnemonic's accounts, unknown to the home (anvil-like)."""
    with serve_devnet_in_thread(Devnet(accounts=2)) as thread:
        yield thread.url


@pytest.fixture(scope="module")
def own_chain() -> Iterator[tuple[Devnet, str]]:
    """Another chain id and mnemonic: only its devnet.json says which key it funds."""
    devnet = Devnet(chain_id=OTHER_CHAIN_ID, accounts=2, mnemonic=OTHER_MNEMONIC)
    with serve_devnet_in_thread(devnet) as thread:
        yield devnet, thread.url


def _record(home: ReefHome, devnet: Devnet, url: str) -> None:
    write_devnet_info(home.ensure(), dataclasses.replace(devnet.info(), rpc_url=url))


def _network(home: ReefHome, rpc_url: str, services: dict[str, Any], **more: Any) -> None:
    NetworkInfo.from_json(
        {
            "rpc_url": rpc_url,
            "chain_id": DEVNET_CHAIN_ID,
            "deployment": {
                "chain_id": DEVNET_CHAIN_ID,
                "token": "0x" + "11" * 20,
                "market": "0x" + "22" * 20,
                "kms_registry": "0x" + "33" * 20,
                "block": 1,
            },
            "rate_lock_s": 5,
            "provider": "0x" + "44" * 20,
            "control_plane": "http://127.0.0.1:8080",
            "image_store": "http://127.0.0.1:8090",
            "services": services,
            **more,
        }
    ).dump(home)


def test_the_home_devnets_recorded_account_is_the_default_on_its_chain(
    reef_home: Path, own_chain: tuple[Devnet, str]
) -> None:
    devnet, url = own_chain
    home = ReefHome(reef_home)
    _record(home, devnet, url)
    session = open_chain(home)  # the endpoint, too, comes from devnet.json
    assert isinstance(session, ChainSession)
    assert not isinstance(session, MarketLocation)
    assert session.rpc_url == url
    assert session.account is not None
    assert session.account.address == devnet.accounts[0].address
    assert session.account.address != dev_accounts(1)[0].address  # not the public mnemonic's
    assert session.address == devnet.accounts[0].address
    assert session.account_note.endswith("(dev account 0; its key is public)")
    assert session.now() >= devnet.info().genesis_timestamp


def test_on_another_chain_a_sender_needs_a_key_and_a_reader_does_not(
    reef_home: Path, own_chain: tuple[Devnet, str], tmp_path: Path
) -> None:
    _, url = own_chain  # chain id 4242, and this home records no devnet
    home = ReefHome(reef_home)
    with pytest.raises(ConfigError, match="no account to send transactions from") as refused:
        open_chain(home, rpc=url)
    assert "--key FILE" in (refused.value.hint or "")
    assert "--owner ADDR" in (refused.value.hint or "")  # a reader of jobs needs no key
    assert "chain 4242 has no public dev account" in refused.value.message
    reader = open_chain(home, rpc=url, need_account=False)
    assert (reader.account, reader.account_note) == (None, "")
    with pytest.raises(ConfigError, match="no account to send from"):
        _ = reader.address
    key = tmp_path / "own.key"
    key.write_text("0x" + "5a" * 32)
    keyed = open_chain(home, rpc=url, key=key)
    assert keyed.account is not None
    assert keyed.account_note == f"{keyed.account.address} (key file {key})"


def test_any_chain_with_the_development_chain_id_gets_the_public_dev_account(
    reef_home: Path, public_chain: str
) -> None:
    home = ReefHome(reef_home)  # no devnet.json, no network.json: an anvil reached by --rpc
    public = dev_accounts(1)[0].address
    chain = open_chain(home, rpc=public_chain)
    assert chain.account is not None
    assert chain.account.address == public
    # The compute market's session is the same session with the market added.
    market = "0x" + "55" * 20
    session = open_session(home, rpc=public_chain, market=market)
    assert isinstance(session, Session)
    assert isinstance(session, ChainSession)
    assert isinstance(session, MarketLocation)
    assert session.account is not None
    assert session.account.address == public
    assert (session.market_address.lower(), session.start_block) == (market, 0)
    assert session.market().address.lower() == market


def test_the_default_dev_account_rule(own_chain: tuple[Devnet, str]) -> None:
    devnet, _ = own_chain
    info = devnet.info()
    recorded = default_dev_account(OTHER_CHAIN_ID, info)
    assert recorded is not None
    assert recorded[0].address == devnet.accounts[0].address
    public = default_dev_account(DEVNET_CHAIN_ID, info)  # the record is for another chain
    assert public is not None
    assert public[0].address == dev_accounts(1)[0].address
    assert default_dev_account(1, info) is None
    assert default_dev_account(1, None) is None


def test_without_an_endpoint_the_error_names_the_commands_own_flags(reef_home: Path) -> None:
    home = ReefHome(reef_home)
    with pytest.raises(ConfigError, match="no chain endpoint") as caught:
        open_chain(home, hint="pass --rpc URL and --proof-market ADDR")
    assert caught.value.hint == "pass --rpc URL and --proof-market ADDR"


def test_a_services_contracts_come_from_flags_else_network_json(reef_home: Path) -> None:
    home = ReefHome(reef_home)
    fields = {"jobs_contract": None, "code_contract": None}
    kwargs = {"missing": "no serverless deployment to talk to", "hint": "pass --jobs and --code"}
    with pytest.raises(ConfigError, match="no serverless deployment") as nothing:
        locate_service(home, "serverless", fields, **kwargs)
    assert nothing.value.hint == "pass --jobs and --code"
    jobs, code, flag = "0x" + "66" * 20, "0x" + "77" * 20, "0x" + "88" * 20
    _network(
        home,
        "http://127.0.0.1:1",
        {"serverless": {"jobs_contract": jobs, "code_contract": code, "gateway": "http://g"}},
    )
    found = locate_service(home, "serverless", fields, **kwargs)
    assert (found["jobs_contract"].lower(), found["code_contract"].lower()) == (jobs, code)
    assert found.entry["gateway"] == "http://g"
    flagged = locate_service(home, "serverless", {**fields, "jobs_contract": flag}, **kwargs)
    assert (flagged["jobs_contract"].lower(), flagged["code_contract"].lower()) == (flag, code)
    # A contract this service's entry does not name is missing, whatever other services hold.
    with pytest.raises(ConfigError, match="no proof market known"):
        locate_service(home, "proofs", {"market": None}, missing="no proof market known", hint="")
    with pytest.raises(InputError, match="serverless jobs contract"):
        locate_service(home, "serverless", {"jobs_contract": "0x12"}, **kwargs)


def test_a_service_reef_up_is_still_starting_is_said_to_be_starting(reef_home: Path) -> None:
    """A first-hour report: while ``reef up`` was starting, ``reef fn deploy`` said "no
    serverless deployment to talk to" with the hint to start ``reef up``, which was running."""
    home = ReefHome(reef_home)
    fields = {"jobs_contract": None, "code_contract": None}
    kwargs = {"missing": "no serverless deployment to talk to", "hint": "start `reef up`"}
    _network(home, "http://127.0.0.1:1", {}, pid=os.getpid(), starting=["serverless", "proofs"])
    with pytest.raises(ConfigError, match="still starting its serverless") as starting:
        locate_service(home, "serverless", fields, **kwargs)
    assert f"pid {os.getpid()}" in starting.value.message
    assert starting.value.hint is not None
    assert "ready" in starting.value.hint
    # A reef up that is gone (killed while starting) is not waited for.
    dead = subprocess.Popen(["true"])
    dead.wait()
    _network(home, "http://127.0.0.1:1", {}, pid=dead.pid, starting=["serverless"])
    with pytest.raises(ConfigError, match="no serverless deployment to talk to"):
        locate_service(home, "serverless", fields, **kwargs)
