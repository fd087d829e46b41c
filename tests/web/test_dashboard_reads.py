"""What the dashboard asks the chain for on every page and ``/metrics`` scrape: the registered
providers' control-plane URLs in one JSON-RPC batch, not one call per provider (anyone may
register; 10 000 registrations took ~50 s a page), read through the session's reader (reef's
JSON-RPC transport) from reef's devnet served over JSON-RPC."""

from __future__ import annotations

import socket

from chain.rpc_support import CountingRpc
from reef.chain import serve_devnet_in_thread
from reef.chain._rpc import HttpRpc
from reef.home import ReefHome
from reef.node import open_session
from reef.testing import dev_market
from reef.web import _data


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_providers_urls_are_read_in_one_batch() -> None:
    # Control planes on a closed port: each answers at once that it cannot be reached.
    base = f"http://127.0.0.1:{_closed_port()}"
    market = dev_market(control_plane=f"{base}/9", fund=[])
    registered = {market.provider.address: f"{base}/9"}
    for account in range(3, 8):
        client = market.client(account)
        client.add_provider(f"{base}/{account}")
        registered[market.devnet.accounts[account].address] = f"{base}/{account}"
    market.client(5).remove_provider()
    del registered[market.devnet.accounts[5].address]
    with serve_devnet_in_thread(market.devnet) as rpc:
        session = open_session(
            ReefHome.from_env(),
            rpc=rpc.url,
            market=market.deployment.market,
            need_account=False,
        )
        poster = CountingRpc(HttpRpc(rpc.url, {}, 10.0))
        session.__dict__["rpc"] = poster  # what the session's reader sends through
        rows = _data.providers(session, session.market())
    assert {row.address: row.control_plane for row in rows} == registered
    assert not any(row.reachable for row in rows)
    calls = [
        message
        for post in poster.posts
        for message in (post if isinstance(post, list) else [post])
        if message["method"] == "eth_call"
    ]
    batches = [post for post in poster.posts if isinstance(post, list)]
    # One batch of every registered provider's providers(addr) call, and no call on its own.
    assert len(batches) == 1
    assert len(batches[0]) == len(calls) == len(registered) == 5
    methods = [post["method"] for post in poster.posts if isinstance(post, dict)]
    assert "eth_call" not in methods
    assert methods.count("eth_getLogs") == 2  # ProviderAdded, ProviderRemoved: nothing else
