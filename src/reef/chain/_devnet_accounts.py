"""Moved to :mod:`reef.chain.devnet._accounts`: the names code outside reef.chain still imports from
here, until those imports point at the devnet package."""

from __future__ import annotations

from reef.chain.devnet._accounts import DEV_KEYS_WARNING as DEV_KEYS_WARNING
from reef.chain.devnet._accounts import DEV_MNEMONIC as DEV_MNEMONIC
from reef.chain.devnet._accounts import DEVNET_CHAIN_ID as DEVNET_CHAIN_ID
from reef.chain.devnet._accounts import DevAccount as DevAccount
from reef.chain.devnet._accounts import dev_accounts as dev_accounts
