"""A requester's use cases: ask for a proof (:func:`request_proof`: private inputs sealed to
the matching engine's published key, the token allowance, the ask of the right kind), wait
until the ask needs nobody else (:func:`wait_for_ask`), and take the reward back
(:func:`close_ask`). ``reef proofs request``, ``wait`` and ``cancel`` parse the user's files
and flags and print; these do the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reef.chain import format_amount
from reef.errors import MisuseError, ProofError
from reef.proofs._client import ProofMarketClient
from reef.proofs._secret import EncryptedSecret, encrypt_secret
from reef.proofs._types import AskState

__all__ = ["AuctionRamp", "ask_settled", "close_ask", "request_proof", "wait_for_ask"]


@dataclass(frozen=True, kw_only=True)
class AuctionRamp:
    """A new auction ask's price curve: from ``min_price`` to ``max_price`` (base units) over
    ``ramp_time`` seconds; the ask escrows ``max_price``."""

    min_price: int
    max_price: int
    ramp_time: int


def request_proof(
    client: ProofMarketClient,
    market_id: int,
    inputs: Sequence[int],
    *,
    expiry: int,
    proving_time: int,
    reward: int | None = None,
    auction: AuctionRamp | None = None,
    secret: bytes | None = None,
) -> int:
    """Create an ask for a proof of ``inputs`` in market ``market_id`` and return its id: paying
    ``reward``, or an auction ask on ``auction``'s curve; with ``secret`` (the private inputs'
    JSON), sealed to the matching engine's published key. The market may take the sender's
    tokens first (an unlimited allowance, approved only when it has too little).

    ``expiry`` is the chain time by which a prover must be assigned; ``proving_time`` the
    seconds it then has.

    Raises:
        ProofError: the market is retired (it takes no new asks; nothing is sent), the account
            holds less than the ask escrows (nothing is sent), or private inputs, but the
            engine has published no key yet.
        ContractRevertError: the contract refused the ask.
        MisuseError: neither or both of ``reward`` and ``auction``, or an auction with a secret
            (a caller's mistake: the CLI refuses these combinations of flags before).
    """
    if auction is not None:
        if reward is not None or secret is not None:
            raise MisuseError(
                "an auction ask has no reward (it escrows its maximum price) and no private "
                "inputs (no engine re-encrypts them for the prover who locks it)"
            )
        _refuse_retired(client, market_id)
        _refuse_unaffordable(client, auction.max_price, "an auction ask escrows its maximum price")
        client.ensure_allowance(auction.max_price)
        ask_id, _ = client.create_auction_ask(
            market_id,
            inputs,
            min_price=auction.min_price,
            max_price=auction.max_price,
            ramp_time=auction.ramp_time,
            expiry=expiry,
            proving_time=proving_time,
        )
        return ask_id
    if reward is None:
        raise MisuseError("request_proof takes a reward or an auction")
    _refuse_retired(client, market_id)
    sealed = None if secret is None else _sealed_for_engine(client, market_id, secret)
    _refuse_unaffordable(client, reward, "the ask escrows its reward")
    client.ensure_allowance(reward)
    if sealed is None:
        ask_id, _ = client.create_ask(
            market_id, inputs, reward=reward, expiry=expiry, proving_time=proving_time
        )
    else:
        ask_id, _ = client.create_private_ask(
            market_id,
            inputs,
            secret=sealed.body,
            acl=sealed.acl,
            reward=reward,
            expiry=expiry,
            proving_time=proving_time,
        )
    return ask_id


def _refuse_retired(client: ProofMarketClient, market_id: int) -> None:
    """Refuse an ask in a retired market before anything is sent: the contract refuses it
    too, but only after the token approval went through.

    Raises:
        ProofError: the market is retired.
    """
    if client.retired(market_id):
        raise ProofError(
            f"market {market_id} is retired: it takes no new asks",
            hint="`reef proofs market list` shows the markets that take asks",
        )


def _refuse_unaffordable(client: ProofMarketClient, amount: int, taken: str) -> None:
    """Refuse an ask its account cannot pay before anything is sent: the contract refuses it
    too, but only after a first ask's token approval went through, and says only "transfer
    amount exceeds balance".

    Raises:
        ProofError: the account holds less than ``amount`` of the market's token.
    """
    held = int(client.token().balance())
    if held < amount:
        raise ProofError(
            f"account {client.sender} holds {format_amount(held)} rUSD; {taken}: "
            f"{format_amount(amount)} rUSD",
            hint="send rUSD to this account, or ask with a funded key (--key FILE; on reef's "
            "devnet `reef chain accounts` lists the funded dev accounts)",
        )


def _sealed_for_engine(client: ProofMarketClient, market_id: int, secret: bytes) -> EncryptedSecret:
    """``secret`` sealed to the key the matching engine published.

    Raises:
        ProofError: the engine has published no key yet.
    """
    engine_key = client.engine_key()
    if not engine_key:
        raise ProofError(
            "the matching engine has not published its key yet",
            hint="start the matching engine (reef up runs one), then retry",
        )
    return encrypt_secret(secret, market_id, engine_key)


def wait_for_ask(
    client: ProofMarketClient,
    ask_id: int,
    *,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> AskState:
    """Ask ``ask_id``'s state once it has ended (complete, expired, slashed, invalid,
    cancelled) or waits only for its requester (unassigned past its expiry, or its prover past
    the deadline), or its state after ``timeout_s``; the caller tells these apart with
    :func:`ask_settled`.

    Raises:
        ProofError: there is no such ask.
    """
    limit = clock() + timeout_s
    while True:
        state = client.ask_state(ask_id)
        if state == AskState.NULL:
            raise ProofError(
                f"ask {ask_id} does not exist", hint="list asks with `reef proofs list`"
            )
        if ask_settled(state) or clock() > limit:
            return state
        sleep(0.5)


def ask_settled(state: AskState) -> bool:
    """Whether an ask in ``state`` has ended or waits only for its requester."""
    return state.terminal or state in (AskState.UNASSIGNED, AskState.DEADLINE_CROSSED)


def close_ask(client: ProofMarketClient, ask_id: int) -> str:
    """Take back an ask's reward: cancel it while nobody is assigned, or, past its expiry
    unassigned, refund it (anyone may). Returns the transaction hash.

    Raises:
        ProofError: there is no such ask, it ended already, a prover holds it, or (to cancel
            it) it is another account's; nothing is sent.
    """
    # The contract refuses each of these too, but only as a revert reason with no next step.
    ask = client.ask(ask_id)
    state = ask.state
    if state == AskState.UNASSIGNED:
        return client.refund_expired(ask_id).tx_hash
    if state.terminal:
        raise ProofError(
            f"ask {ask_id} has ended ({state.label}): there is nothing to take back",
            hint=f"`reef proofs show {ask_id}` shows how it ended",
        )
    if state in (AskState.ASSIGNED, AskState.DEADLINE_CROSSED):
        raise ProofError(
            f"ask {ask_id} is assigned to prover {ask.prover}: it can no longer be cancelled",
            hint="it ends proved or invalid (the prover is paid its price, the rest comes back), "
            "or slashed past its deadline (the reward and the prover's penalty come to you); "
            f"`reef proofs wait {ask_id}` waits for that",
        )
    if ask.requester != client.sender:
        raise ProofError(
            f"ask {ask_id} is {ask.requester}'s: only its requester can cancel it",
            hint="cancel it with the requester's --key; once it expires unassigned, anyone may "
            "refund it (to its requester)",
        )
    return client.cancel_ask(ask_id).tx_hash
