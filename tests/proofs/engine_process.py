"""The matching engine as a process, for tests/proofs/test_engine_kill.py: steps until killed.

Usage: python engine_process.py RPC_URL MARKET ENGINE_KEY_HEX DB_URL BATCH
"""

from __future__ import annotations

import sys
import time

from eth_account import Account
from web3 import Web3

from reef.chain import IndexedContract, Indexer, Web3BlockSource
from reef.proofs import MatchingEngine, ProofMarketClient, proof_market_decoder


def main(argv: list[str]) -> None:
    rpc, market, key, db, batch = argv[:5]
    w3 = Web3(Web3.HTTPProvider(rpc))
    client = ProofMarketClient(w3, market, account=Account.from_key(bytes.fromhex(key)))
    indexer = Indexer(
        Web3BlockSource(w3),
        db,
        contracts=[IndexedContract(address=market, events=proof_market_decoder(), stream="pm")],
        block_range=5,
    )
    engine = MatchingEngine(client, indexer, batch_size=int(batch))
    while True:
        step = engine.step()
        if not step.assigned and not step.resent:
            time.sleep(0.02)


if __name__ == "__main__":
    main(sys.argv[1:])
