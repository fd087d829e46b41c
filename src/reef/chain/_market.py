"""Typed client for the compute market (MarketV1 semantics; see docs/contracts.md).

Every market function has a method here, named for what it does (``open_job`` is
``jobOpen``, ``revise_rate_initiate`` is ``jobReviseRateInitiate``, ...). Writes return a
:class:`~reef.chain._tx.TxResult` whose ``events`` are the market events the transaction
emitted; ``open_job`` returns the new job's id, read from its ``JobOpened`` log. Opening and
depositing approve the market for the amount first when the allowance is short, so a user
needs one call, not two. Jobs, providers and rate locks are read through the client's
:class:`~reef.chain.MarketReader` (over its web3 client), the reader ``reef jobs list`` and
``show`` use without web3.py: one way to read them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import cast

from web3 import Web3

from reef.chain._clients import (
    LOG_CHUNK_BLOCKS,
    ContractClient,
    Topic,
    check_uint,
)
from reef.chain._events import JobEvent, JobOpened, MarketEvent, market_decoder
from reef.chain._reader import RATE_LOCK_SELECTOR, MarketReader, ProviderRpc
from reef.chain._reasons import Revert, hint_for
from reef.chain._tx import ProgressCallback, Sender, TxResult
from reef.chain._types import (
    MAX_RATE,
    Job,
    JobId,
    Rate,
    RateLock,
    parse_address,
    parse_job_id,
)
from reef.errors import ContractRevertError, InputError

__all__ = ["MAX_CP_BYTES", "MAX_METADATA_BYTES", "RATE_LOCK_SELECTOR", "MarketClient", "check_text"]

MAX_METADATA_BYTES = 32768
"""Longest job metadata the market stores (UTF-8 bytes; ``String[32768]`` in Market.vy)."""
MAX_CP_BYTES = 1024
"""Longest control-plane URL a provider may register."""


def check_text(value: str, name: str, limit: int) -> str:
    """``value`` if it is a string of at most ``limit`` UTF-8 bytes, else :class:`InputError`."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, got {type(value).__name__}")
    size = len(value.encode("utf-8"))
    if size > limit:
        raise InputError(
            f"{name} is {size} bytes; the market stores at most {limit}",
            hint="keep large data elsewhere (e.g. a URL) and reference it",
        )
    return value


def _check_rate(rate: int, name: str = "rate") -> Rate:
    check_uint(rate, name)
    if rate > MAX_RATE:
        raise InputError(
            f"{name} {rate} is above the market's maximum 2**128-1",
            hint="a rate is token base units x 10**12 per second",
        )
    return Rate(rate)


def _would_revert(function: str, reason: Revert) -> ContractRevertError:
    """The error the contract would give, found before sending (same ``reason``)."""
    return ContractRevertError(
        f"Market.{function} would revert: {reason}", hint=hint_for(reason), reason=reason
    )


class MarketClient(ContractClient[MarketEvent]):
    """The market contract: providers, jobs, settlement, rate revisions, events."""

    CONTRACT = "Market"
    EVENTS = market_decoder
    PAID_IN = "token"

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        account: Sender,
        token: str,
        *,
        rate_lock_s: int = 300,
        progress: ProgressCallback | None = None,
    ) -> MarketClient:
        """Deploy a market paid in ``token`` whose rate revisions lock for ``rate_lock_s``."""
        check_uint(rate_lock_s, "rate_lock_s", bits=64)
        return cls._deploy(
            w3, account, parse_address(token, name="token"), rate_lock_s, progress=progress
        )

    # ---- constants and getters ----

    def extra_decimals(self) -> int:
        return int(self._call("EXTRA_DECIMALS"))

    def rate_lock_selector(self) -> bytes:
        return bytes(self._call("RATE_LOCK_SELECTOR"))

    def lock_wait_time(self) -> int:
        """Seconds a rate revision stays locked (``lockWaitTime(RATE_LOCK_SELECTOR)``)."""
        return int(self._call("lockWaitTime", RATE_LOCK_SELECTOR))

    def job_count(self) -> int:
        """How many jobs were ever opened (``jobIndex``); ids run from 0 to this minus 1."""
        return int(self._call("jobIndex"))

    @functools.cached_property
    def reader(self) -> MarketReader:
        """The market's reads of jobs, providers and rate locks (:class:`MarketReader`, over
        this client's web3 provider): one way to read them, with or without web3.py."""
        sender = self.sender if self._tx.has_sender else None
        return MarketReader(ProviderRpc(self.w3), self.address, sender=sender)

    def provider(self, address: str) -> str | None:
        """The control-plane URL ``address`` registered, or ``None`` if it is not a provider."""
        return self.reader.provider(address)

    def providers(self, addresses: Sequence[str]) -> list[str | None]:
        """:meth:`provider` of each of ``addresses``, in order."""
        return self.reader.providers(addresses)

    def find_job(self, job: int | str | bytes) -> Job | None:
        """The job as stored on chain, or ``None`` if it never existed or was closed."""
        return self.reader.find_job(job)

    def find_jobs(self, jobs: Sequence[int | str | bytes]) -> list[Job | None]:
        """:meth:`find_job` of each of ``jobs``, in order."""
        return self.reader.find_jobs(jobs)

    def job(self, job: int | str | bytes) -> Job:
        """The job as stored on chain.

        Raises:
            MarketError: when no such job is open (never opened, or closed), naming it as users
                see it (its index) and as the market keys it.
        """
        return self.reader.job(job)

    def rate_locks(self, jobs: Sequence[int | str | bytes]) -> list[RateLock | None]:
        """:meth:`rate_lock` of each of ``jobs``, in order."""
        return self.reader.rate_locks(jobs)

    def rate_lock(self, job: int | str | bytes) -> RateLock | None:
        """The pending rate revision of a job, or ``None``."""
        return self.reader.rate_lock(job)

    # ---- providers ----

    def add_provider(self, cp: str) -> TxResult[MarketEvent]:
        """Register this account as a provider whose control plane listens at ``cp``."""
        return self._transact("providerAdd", check_text(cp, "control-plane URL", MAX_CP_BYTES))

    def remove_provider(self) -> TxResult[MarketEvent]:
        """Unregister this account (its open jobs keep running and paying)."""
        return self._transact("providerRemove")

    def update_provider(self, cp: str) -> TxResult[MarketEvent]:
        """Change this provider's control-plane URL."""
        return self._transact(
            "providerUpdateWithCp", check_text(cp, "control-plane URL", MAX_CP_BYTES)
        )

    # ---- jobs ----

    def _approve_payment(
        self, function: str, amount: int, payee_exists: bool, missing: Revert
    ) -> None:
        """Before ``function`` takes ``amount`` from this account: approve the market for it if
        the allowance is short, after checking what the contract would (that what it pays into
        exists, else ``missing``; then the sender's balance), so that a call bound to fail
        leaves no approval behind."""
        if not payee_exists:
            raise _would_revert(function, missing)
        token = self.token()
        if token.allowance(self.sender, self.address) >= amount:
            return
        if token.balance() < amount:
            raise _would_revert(function, Revert.INSUFFICIENT_BALANCE)
        token.approve(self.address, amount)

    def open_job(
        self,
        metadata: str,
        provider: str,
        rate: int,
        balance: int,
        *,
        approve: bool = True,
    ) -> JobId:
        """Open a job paying ``rate`` to ``provider`` from a prepaid ``balance``; returns its id.

        With ``approve`` (default), first approves the market for ``balance`` if needed.
        """
        check_text(metadata, "job metadata", MAX_METADATA_BYTES)
        provider_address = parse_address(provider, name="provider")
        check_uint(balance, "balance")
        checked_rate = _check_rate(rate)
        if approve and balance:
            registered = self.provider(provider_address) is not None
            self._approve_payment("jobOpen", balance, registered, Revert.PROVIDER_NOT_REGISTERED)
        result = self._transact("jobOpen", metadata, provider_address, checked_rate, balance)
        return result.first(JobOpened).job

    def deposit(
        self, job: int | str | bytes, amount: int, *, approve: bool = True
    ) -> TxResult[MarketEvent]:
        """Add ``amount`` to a job's balance (anyone may; the tokens come from this account)."""
        check_uint(amount, "amount")
        job_id = parse_job_id(job)
        if approve and amount:
            found = self.find_job(job_id) is not None
            self._approve_payment("jobDeposit", amount, found, Revert.JOB_NOT_FOUND)
        return self._transact("jobDeposit", job_id, amount)

    def withdraw(self, job: int | str | bytes, amount: int) -> TxResult[MarketEvent]:
        """Take ``amount`` back from a job (owner only); settles first and keeps the reserve."""
        return self._transact("jobWithdraw", parse_job_id(job), check_uint(amount, "amount"))

    def settle(self, job: int | str | bytes) -> TxResult[MarketEvent]:
        """Pay the provider for the time since the last settlement (anyone may)."""
        return self._transact("jobSettle", parse_job_id(job))

    def revise_rate_initiate(self, job: int | str | bytes, new_rate: int) -> TxResult[MarketEvent]:
        """Ask for a new rate; it may be finalized after the rate lock (owner only)."""
        return self._transact(
            "jobReviseRateInitiate", parse_job_id(job), _check_rate(new_rate, "new rate")
        )

    def revise_rate_cancel(self, job: int | str | bytes) -> TxResult[MarketEvent]:
        """Drop a pending rate revision (owner only)."""
        return self._transact("jobReviseRateCancel", parse_job_id(job))

    def revise_rate_finalize(self, job: int | str | bytes) -> TxResult[MarketEvent]:
        """Apply an unlocked rate revision; time so far is charged at the old rate."""
        return self._transact("jobReviseRateFinalize", parse_job_id(job))

    def close(self, job: int | str | bytes) -> TxResult[MarketEvent]:
        """Settle, refund the rest to the owner and delete the job (owner only).

        A job with a non-zero rate needs an unlocked revision to rate 0 first.
        """
        return self._transact("jobClose", parse_job_id(job))

    def update_metadata(self, job: int | str | bytes, metadata: str) -> TxResult[MarketEvent]:
        """Replace a job's metadata (owner only)."""
        return self._transact(
            "jobMetadataUpdate",
            parse_job_id(job),
            check_text(metadata, "job metadata", MAX_METADATA_BYTES),
        )

    # ---- events ----

    def events(
        self,
        from_block: int = 0,
        to_block: int | str = "latest",
        *,
        job: int | str | bytes | None = None,
        topics: Sequence[Topic] = (),
        chunk: int = LOG_CHUNK_BLOCKS,
    ) -> list[MarketEvent]:
        """Every market event in the block range, in chain order (optionally of one ``job``;
        ``topics`` as in :meth:`ContractClient.events`, with no ``job``).

        Logs are requested ``chunk`` blocks at a time, which public endpoints require.
        """
        if job is None:
            return super().events(from_block, to_block, topics=topics, chunk=chunk)
        if topics:
            raise InputError("give job= or topics=, not both", hint="job= is topics=[job id]")
        # Topic 0 must be a job event too: other events' first indexed field (a zero
        # address, a lock selector) can equal a job id, job 0 in particular.
        found = self.events_of(
            JobEvent, from_block, to_block, topics=[parse_job_id(job)], chunk=chunk
        )
        # Every JobEvent the market's decoder yields is one of MarketEvent's classes.
        return cast("list[MarketEvent]", found)
