"""A prover's and the services' use cases beyond single transactions. A prover registers once
(:func:`register_prover`) and adds stake (:func:`add_prover_stake`), each refused before an
allowance is spent for nothing; joins a market, registering its key where asks have private
inputs (:func:`join_as_prover`), and leaves in two steps (:func:`withdraw_from_market`;
:func:`leave_market_step` also says what holds a refused step back). When ``reef up`` starts
the services in enclaves with fresh keys: the prover waits for its gas and stake, then
registers and joins as its settings say (:func:`enroll_prover`); the engine waits until the
market's admin has made its key the engine and funded it (:func:`await_engine_role`); the IVS
fetches its signing key from the enclave's KMS derive server (:func:`derived_secp256k1_key`).

Waiting is polling, so the clock and the sleep are parameters (tests pass fakes), and the derive
server is reached through an injectable httpx transport, its answers read as a stranger's
(:mod:`reef._fetch`: the host may answer in the derive server's place).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from reef._fetch import FetchError, fetch_blocking, request_to
from reef.chain import TokenClient, format_amount
from reef.crypto import Secp256k1PrivateKey
from reef.encoding import terminal_text
from reef.errors import ContractRevertError, ProofError, ServiceError
from reef.proofs._client import ProofMarketClient
from reef.proofs._reasons import ProofRevert
from reef.proofs._settings import MarketJoin, ProverSetup
from reef.proofs._types import ProverInfo

__all__ = [
    "IVS_KMS_PATH",
    "LeaveStep",
    "add_prover_stake",
    "await_engine_role",
    "derived_secp256k1_key",
    "enroll_prover",
    "join_as_prover",
    "leave_market_step",
    "register_prover",
    "withdraw_from_market",
]

IVS_KMS_PATH = "reef.proofs.ivs"
"""The KMS derivation path of ``reef up``'s IVS key (secp256k1, from its image's seed): every
enclave of the IVS image signs as one address, which survives restarts."""
_POLL_S = 0.5
log = logging.getLogger("reef.proofs.prover")


def _without_gas(client: ProofMarketClient) -> bool:
    """Whether the account sending holds none of the chain's coin yet."""
    w3 = client.w3
    return w3.eth.get_balance(w3.to_checksum_address(client.sender)) == 0


def enroll_prover(
    client: ProofMarketClient,
    setup: ProverSetup,
    *,
    private_key: bytes | None = None,
    wait_s: float = 120.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Register and join as ``setup`` says, once the sender holds gas and the stake (whoever
    starts the prover funds its fresh key); steps already done are skipped, and so is a market
    its creator retired (it takes no asks: joining would tie up compute for nothing). With
    ``private_key`` (the sender's), its public key is registered for each market with private
    inputs, which are re-encrypted to it.

    Raises:
        ProofError: the account was not funded within ``wait_s``.
    """
    me = client.sender
    token = TokenClient(client.w3, client.token_address(), account=client.account)
    deadline = clock() + wait_s
    while _without_gas(client) or token.balance(me) < setup.stake:
        if clock() > deadline:
            raise ProofError(
                f"{me} was not funded with gas and a stake of {format_amount(setup.stake)} in "
                f"{wait_s:.0f} s",
                hint="send it the chain's coin and the stake in the market's token",
            )
        sleep(_POLL_S)
    if not client.prover(me).registered:
        client.ensure_allowance(setup.stake)
        client.register(compute=setup.compute, stake=setup.stake)
    for join in setup.markets:
        if client.retired(join.market_id):
            log.warning(
                "market %s is retired (it takes no new asks): not joining it", join.market_id
            )
            continue
        if not client.offer(me, join.market_id).joined:
            _join(client, join)
        if private_key is not None and client.market(join.market_id).private_inputs:
            _register_key(client, join.market_id, private_key)


def register_prover(client: ProofMarketClient, *, stake: int, compute: int) -> str:
    """Register the sender as a prover locking ``stake`` (base units) with ``compute`` units;
    returns the transaction hash.

    Raises:
        ProofError: it is registered already (the contract would refuse, after an allowance
            sent for nothing).
        ContractRevertError: the contract refused it.
    """
    me = client.prover(client.sender)
    if me.registered:
        raise ProofError(
            f"{me.address} is registered already, with {format_amount(me.stake)} rUSD of stake "
            f"and {me.compute} compute units",
            hint="`reef prover status` shows it; `reef prover stake AMOUNT` adds stake",
        )
    client.ensure_allowance(stake)
    return client.register(compute=compute, stake=stake).tx_hash


def add_prover_stake(client: ProofMarketClient, amount: int) -> tuple[str, ProverInfo]:
    """Add ``amount`` (base units) to the sender's stake; returns the transaction hash and the
    prover as it is then.

    Raises:
        ProofError: the sender is not a registered prover.
    """
    me = client.sender
    if not client.prover(me).registered:
        raise ProofError(
            f"{me} is not a registered prover",
            hint=f"register with a stake first: `reef prover register --stake "
            f"{format_amount(amount)}`",
        )
    client.ensure_allowance(amount)
    tx = client.add_stake(amount).tx_hash
    return tx, client.prover(me)


def join_as_prover(
    client: ProofMarketClient, join: MarketJoin, *, private_key: bytes | None = None
) -> tuple[str, bytes | None]:
    """Join ``join.market_id`` at its price, time bound and compute; in a market with private
    inputs, also register the public key of ``private_key`` (the sender's), to which the engine
    re-encrypts each assigned ask's inputs. Returns the join's transaction hash and the key
    registered (None in a market without private inputs).

    Raises:
        ProofError: no such market, a retired one, one the sender is in already, a sender
            that is not a registered prover, or a market with private inputs and no
            ``private_key``.
        ContractRevertError: the contract refused the join.
    """
    market = client.market(join.market_id)
    if client.offer(client.sender, join.market_id).joined:
        raise ProofError(
            f"you are in market {join.market_id} already",
            hint="`reef prover status` shows your terms there; to change them, leave "
            f"(`reef prover leave {join.market_id}`, twice) and join again",
        )
    if client.retired(join.market_id):
        raise ProofError(
            f"market {join.market_id} is retired: it takes no new asks, so there is nothing to "
            "prove in it",
            hint="`reef proofs market list` shows the markets that take asks",
        )
    if not client.prover(client.sender).registered:
        # The contract says only "the caller is not a registered prover", after the gas.
        raise ProofError(
            f"{client.sender} is not a registered prover: register before joining a market",
            hint="`reef prover register --stake AMOUNT` (rUSD; at least the market's penalty), "
            f"then `reef prover join {join.market_id} ...` again",
        )
    if market.private_inputs:
        if private_key is None:
            raise ProofError("no account to register an encryption key for")
        tx = _join(client, join)
        return tx, _register_key(client, join.market_id, private_key)
    return _join(client, join), None


def withdraw_from_market(client: ProofMarketClient, market_id: int) -> int:
    """One step of leaving market ``market_id``: the first call stops new assignments and
    returns the chain time from which the prover may leave; the next, after that, leaves and
    returns 0.

    Raises:
        ProofError: the sender is not in the market.
        ContractRevertError: leaving before that time.
    """
    me = client.sender
    offer = client.offer(me, market_id)
    if not offer.joined:
        raise ProofError(f"you are not in market {market_id}")
    if offer.leave_at == 0:
        client.request_leave(market_id)
        return client.offer(me, market_id).leave_at
    client.leave_market(market_id)
    return 0


@dataclass(frozen=True)
class LeaveStep:
    """Where a prover's leaving of a market stands after :func:`leave_market_step`."""

    market_id: int
    leave_at: int
    """The chain time from which it may leave (0: it has left)."""
    assigned: int
    """Its asks in the market still assigned: it proves them (or is slashed) before leaving."""
    early: ContractRevertError | None = None
    """The refusal of a second step before ``leave_at`` (its wait: ``wait_s``); None when the
    step was taken."""
    wait_s: int = 0
    """How long until ``leave_at``, from the later of the chain's and the wall clock's time."""

    @property
    def left(self) -> bool:
        return self.leave_at == 0 and self.early is None

    @property
    def warning(self) -> str | None:
        """What a first step that leaves asks assigned means (None otherwise)."""
        if not self.leave_at or self.early is not None or not self.assigned:
            return None
        them, its = _them_its(self.assigned)
        return (
            f"{_still_yours(self.assigned, self.market_id)}: keep `reef prover run` going "
            f"until {them} proved, or you are slashed at {its} deadline; you can leave once "
            "none is left"
        )


def _still_yours(n: int, market_id: int) -> str:
    """``1 ask of market 3 is still yours``, or ``2 asks ... are``."""
    many = f"{n} asks of market {market_id} are"
    return f"{f'1 ask of market {market_id} is' if n == 1 else many} still yours"


def _them_its(n: int) -> tuple[str, str]:
    return ("it is", "its") if n == 1 else ("they are", "their")


def leave_market_step(
    client: ProofMarketClient, market_id: int, *, clock: Callable[[], float] = time.time
) -> LeaveStep:
    """:func:`withdraw_from_market`, saying what holds a refused second step back: a step
    before the leave delay has passed comes back with ``early`` (the revert says nothing of
    when: the step says ``leave_at`` and the wait, counted from the chain's latest block or
    ``clock``, whichever is later, as an idle devnet's next block takes the wall clock's time).

    Raises:
        ProofError: the sender is not in the market, or asks of it are still assigned to it.
        ContractRevertError: the contract refused the step otherwise.
    """
    offer = client.offer(client.sender, market_id)
    try:
        leave_at = withdraw_from_market(client, market_id)
    except ContractRevertError as exc:
        if not (offer.joined and offer.leave_at):
            raise
        n = offer.active
        if exc.reason == ProofRevert.STILL_ASSIGNED:
            them, its = _them_its(n)
            raise ProofError(
                f"{exc.message}: {_still_yours(n, market_id)}",
                hint=f"keep `reef prover run` going until {them} proved (or slashed at {its} "
                f"deadline), then run `reef prover leave {market_id}` again",
            ) from exc
        latest = int(client.w3.eth.get_block("latest")["timestamp"])
        now = max(latest, int(clock()))
        return LeaveStep(market_id, offer.leave_at, n, early=exc, wait_s=offer.leave_at - now)
    return LeaveStep(market_id, leave_at, offer.active)


def _join(client: ProofMarketClient, join: MarketJoin) -> str:
    result = client.join_market(
        join.market_id, price=join.price, max_time=join.max_time, compute=join.compute
    )
    return result.tx_hash


def _register_key(client: ProofMarketClient, market_id: int, private_key: bytes) -> bytes:
    """Register ``private_key``'s public key for the market's private inputs; returns it."""
    public = Secp256k1PrivateKey(private_key).public_key.raw
    client.set_prover_key(market_id, public)
    return public


def await_engine_role(
    client: ProofMarketClient,
    *,
    wait_s: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the sender is the market's matching engine and holds gas, waiting up to
    ``wait_s`` (an engine enclave exists before the admin makes its attested key the engine
    and funds it).

    Raises:
        ProofError: the sender is not the matching engine after ``wait_s``.
    """
    me = client.sender.lower()
    engine = client.matching_engine()
    deadline = clock() + wait_s
    while (engine.lower() != me or _without_gas(client)) and clock() < deadline:
        sleep(_POLL_S)
        engine = client.matching_engine()
    if engine.lower() != me:
        raise ProofError(
            f"{client.sender} is not this market's matching engine ({engine})",
            hint="run it with the engine's key (--key-file FILE)",
        )


_DERIVE_ANSWER_BYTES = 4096
"""The longest derive-server answer read: a 32-byte key, or a short reason."""


def derived_secp256k1_key(
    derive_url: str,
    path: str,
    *,
    tries: int = 60,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    timeout_s: float = 10.0,
) -> bytes:
    """The secp256k1 secret at ``path`` from an enclave's KMS derive server
    (``GET /derive/secp256k1?path=``), retried while the server is not ready (the trusted base
    fetches its seed from the KMS root when it starts).

    The server is reached through the host, which may answer in its place: each answer is read
    through :func:`reef._fetch.fetch_blocking`, at most 4 KiB within ``timeout_s`` seconds in
    all (its head included); one that is not counts as a failed try.

    Raises:
        ServiceError: the derive server did not answer with a 32-byte key in ``tries`` tries.
    """
    last = ""
    what = "the KMS derive server"
    url = f"{derive_url.rstrip('/')}/derive/secp256k1"
    for _ in range(tries):
        try:
            answer = fetch_blocking(
                request_to("GET", url, what=what, params={"path": path}),
                transport=transport,
                timeout=timeout_s,
                max_bytes=_DERIVE_ANSWER_BYTES,
                deadline_s=timeout_s,
                what=what,
            )
        except FetchError as exc:
            last = (
                str(exc.__cause__) if exc.reason == "unreachable" and exc.__cause__ else exc.message
            )
        else:
            if answer.status == 200 and len(answer.body) == 32:
                return answer.body
            text = answer.body[:200].decode("utf-8", "replace")
            last = f"HTTP {answer.status}: {terminal_text(text)}"
        sleep(_POLL_S)
    raise ServiceError(
        f"the KMS derive server at {derive_url} gave no key for {path!r}: {last}",
        hint="run the IVS in an enclave wired to a KMS root (reef up), or pass --key-file",
    )
