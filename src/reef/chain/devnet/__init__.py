"""reef.chain.devnet: the embedded chain behind Ethereum JSON-RPC (DESIGN.md, package layout).

Layers, each importing only those before it (no cycle):

- ``_accounts`` (dev keys), ``_types`` (vocabulary), ``_exec`` (calls and estimates),
  ``_trie`` (trie nodes remembered from block to block, their encodings, a block's writes at
  once), ``_state`` (py-evm's state over them), ``_precompiles`` (py-evm's precompiles, the
  costly ones remembering their answers), ``_vm`` (py-evm's VM with that state, those
  precompiles and a leaner interpreter);
- ``_engine``: :class:`Chain`, execution on py-evm, which writes what must be kept to a
  ``Recorder`` and knows nothing of files;
- ``_store`` (journal, lock, checkpoint and ``devnet.json`` formats) and ``_devnet``:
  :class:`Devnet`, a chain kept under ``$REEF_HOME/chain`` with reef's contracts deployed;
- ``_format`` and ``_rpc`` (JSON-RPC over a chain, no I/O), ``_provider`` (web3.py in process),
  ``_server`` (HTTP);
- ``_anvil``: :class:`AnvilChain`, the same role played by an anvil node (``reef up --chain
  anvil``), for a user who outgrows the embedded chain.

The names that need py-evm, web3.py or Starlette are imported on first use (PEP 562): py-evm's
import takes about a second, and a client of a chain (every market command) never needs it.
``reef.chain`` offers the same names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes
from reef.chain.devnet._accounts import DEV_MNEMONIC, DEVNET_CHAIN_ID, DevAccount, dev_accounts
from reef.chain.devnet._store import (
    DevnetInfo,
    local_chain_state,
    read_devnet_info,
    write_devnet_info,
)

if TYPE_CHECKING:
    from reef.chain.devnet._anvil import AnvilChain
    from reef.chain.devnet._devnet import Devnet
    from reef.chain.devnet._provider import DevnetProvider
    from reef.chain.devnet._server import (
        DevnetServer,
        DevnetThread,
        devnet_app,
        serve_devnet,
        serve_devnet_in_thread,
    )
    from reef.chain.devnet._types import TxRequest

__getattr__ = lazy_attributes(
    __name__,
    {
        "AnvilChain": "_anvil",
        "Devnet": "_devnet",
        "DevnetProvider": "_provider",
        "DevnetServer": "_server",
        "DevnetThread": "_server",
        "TxRequest": "_types",
        "devnet_app": "_server",
        "serve_devnet": "_server",
        "serve_devnet_in_thread": "_server",
    },
)

__all__ = [
    "AnvilChain",
    "DEVNET_CHAIN_ID",
    "DEV_MNEMONIC",
    "DevAccount",
    "Devnet",
    "DevnetInfo",
    "DevnetProvider",
    "DevnetServer",
    "DevnetThread",
    "TxRequest",
    "dev_accounts",
    "devnet_app",
    "local_chain_state",
    "read_devnet_info",
    "serve_devnet",
    "serve_devnet_in_thread",
    "write_devnet_info",
]
