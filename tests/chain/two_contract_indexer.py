"""The indexing process of tests/chain/test_indexer_two_contracts.py: one indexer following the
market and the KMS registry of a devnet over JSON-RPC into one database, polling until killed
(or once, with ``--once``).

Usage: python two_contract_indexer.py RPC_URL MARKET REGISTRY DB_URL START_BLOCK [--once]
"""

from __future__ import annotations

import sys
import time

from web3 import Web3

from reef.chain import (
    IndexedContract,
    Indexer,
    Web3BlockSource,
    kms_registry_decoder,
    market_decoder,
)


def indexer(rpc: str, market: str, registry: str, db: str, start: int) -> Indexer:
    return Indexer(
        Web3BlockSource(Web3(Web3.HTTPProvider(rpc))),
        db,
        contracts=[
            IndexedContract(
                address=market, events=market_decoder(), stream="market", start_block=start
            ),
            IndexedContract(
                address=registry,
                events=kms_registry_decoder(),
                stream="kms_registry",
                start_block=start,
            ),
        ],
        block_range=3,  # many small transactions: kills land inside them
    )


def main(argv: list[str]) -> None:
    rpc, market, registry, db, start = argv[:5]
    follower = indexer(rpc, market, registry, db, int(start))
    follower.poll()
    while "--once" not in argv:
        time.sleep(0.02)
        follower.poll()


if __name__ == "__main__":
    main(sys.argv[1:])
