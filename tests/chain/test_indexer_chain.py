"""The indexer on a real EVM (eth-tester in process) running reef's market: a job's whole life is
stored exactly once, and the stored fields match web3.py's own ABI decoding of the same logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from reef.chain import Indexer, MarketClient, Web3BlockSource, deploy_contracts, load_artifact
from reef.market import JobBook, JobPolicy, RateCard

JOB_EVENTS = {
    "Opened",
    "Settled",
    "Closed",
    "Deposited",
    "Withdrew",
    "ReviseRateInitiated",
    "ReviseRateCancelled",
    "ReviseRateFinalized",
    "MetadataUpdated",
}


def _chain() -> tuple[Web3, Any]:
    provider = EthereumTesterProvider()
    return Web3(provider), provider.ethereum_tester


def test_a_jobs_life_is_indexed_exactly_once(tmp_path: Path) -> None:
    w3, tester = _chain()
    deployer, provider_addr, owner = w3.eth.accounts[:3]
    deployment = deploy_contracts(w3, deployer, rate_lock_s=5, fund=[owner])
    as_provider = MarketClient(w3, deployment.market, account=provider_addr)
    as_owner = MarketClient(w3, deployment.market, account=owner)
    as_provider.add_provider("http://127.0.0.1:8080")
    card = RateCard.dev().lookup("local", "dev.small")
    metadata = (
        '{"instance":"dev.small","region":"local","memory":512,"vcpu":1,"url":"http://x/'
        + "aa" * 32
        + '"}'
    )
    job = as_owner.open_job(metadata, provider_addr, card.min_rate, 10**6)
    as_owner.deposit(job, 500)
    tester.time_travel(w3.eth.get_block("latest")["timestamp"] + 100)
    as_owner.withdraw(job, 1000)
    as_owner.update_metadata(job, metadata.replace("aa", "bb"))
    as_owner.revise_rate_initiate(job, 0)
    tester.time_travel(w3.eth.get_block("latest")["timestamp"] + 10)
    as_owner.close(job)

    indexer = Indexer(
        Web3BlockSource(w3),
        f"sqlite:///{tmp_path / 'index.db'}",
        contract=deployment.market,
        start_block=deployment.block,
    )
    indexer.poll()
    assert indexer.poll() == 0
    stored = indexer.events()
    assert len({(e.block_number, e.log_index) for e in stored}) == len(stored)
    job_events = [e for e in stored if e.job_id == job]
    assert [e.name for e in job_events if not e.name.startswith("Lock")] == [
        "Opened",
        "Deposited",
        "Settled",
        "Withdrew",
        "MetadataUpdated",
        "ReviseRateInitiated",
        "Settled",
        "Closed",
    ]

    # Independent check: web3.py's own event decoding of the same logs, field by field.
    contract = w3.eth.contract(address=deployment.market, abi=load_artifact("Market").abi)
    receipts = {e.tx_hash: w3.eth.get_transaction_receipt(e.tx_hash) for e in stored}
    aliases = {"job": "job_id", "_from": "from", "newRate": "new_rate", "newCp": "new_cp"}
    for event in stored:
        abi_name = "Job" + event.name if event.name in JOB_EVENTS else event.name
        (raw,) = [
            log for log in receipts[event.tx_hash]["logs"] if log["logIndex"] == event.log_index
        ]
        decoded = getattr(contract.events, abi_name)().process_log(raw)
        for key, value in decoded["args"].items():
            field = aliases.get(key, key)
            if event.name == "MetadataUpdated" and key == "metadata":
                field = "new_metadata"
            expected: Any = value
            if isinstance(value, bytes):
                expected = "0x" + value.hex()
            elif isinstance(value, int):
                expected = hex(value)
            elif isinstance(value, str) and Web3.is_address(value):
                expected = value.lower()
            assert event.data[_snake(field)] == expected, (event.name, key)

    # The stored history drives the control plane's state machine to the chain's end state.
    book = JobBook(JobPolicy(RateCard.dev(), provider=provider_addr, safety_margin_s=0))
    book.apply_all(e.event for e in stored)
    machine = book.jobs[job]
    assert machine.phase == "done"
    assert "revised to 0" in machine.reason


def _snake(name: str) -> str:
    import re

    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
