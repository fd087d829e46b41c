"""reef.testing.dev_market: the set-up most market, node and dashboard tests start from does what
its docstring promises, read back from the chain through reef's own clients."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account

from reef.chain import DEFAULT_FUND_AMOUNT, Devnet, TokenClient
from reef.market import JobMetadata
from reef.testing import dev_job_metadata, dev_market


def test_a_dev_market_registers_dev_account_9_and_funds_whom_it_is_told(tmp_path: Path) -> None:
    market = dev_market(Devnet(accounts=10), control_plane="http://127.0.0.1:9", fund=[0, 3])
    accounts = market.devnet.accounts
    assert market.provider == accounts[9]
    assert market.owner.provider(accounts[9].address) == "http://127.0.0.1:9"
    assert market.owner.lock_wait_time() == 5
    token = TokenClient(market.devnet.web3(), market.deployment.token)
    assert [token.balance(a.address) for a in accounts[:4]] == [
        DEFAULT_FUND_AMOUNT,
        0,
        0,
        DEFAULT_FUND_AMOUNT,
    ]

    job = market.open_job(10**12, 3600, memory=512)
    opened = market.owner.job(job)
    assert (opened.owner, opened.provider) == (accounts[0].address, accounts[9].address)
    assert (opened.rate, opened.balance) == (10**12, 3600)
    assert JobMetadata.parse(opened.metadata) == dev_job_metadata("http://store/x", memory=512)

    key = market.write_key(tmp_path / "owner.key")
    assert Account.from_key(key.read_text()).address == accounts[0].address


def test_without_a_control_plane_no_provider_is_registered() -> None:
    market = dev_market(rate_lock_s=60)
    assert market.owner.provider(market.provider.address) is None
    assert market.owner.lock_wait_time() == 60
    market.register_provider("http://127.0.0.1:8")
    assert market.client(9).provider(market.provider.address) == "http://127.0.0.1:8"
