"""An ask checked against its market before it goes on chain: the input files a requester
wrote (:func:`read_input_file`), refused when they do not fit the market, and the values and
sealed-to-be secret they give (:func:`prepare_ask`); then sent, with a warning when no prover
would take it (:func:`request_checked`), and waited for until it ends
(:func:`wait_for_ending`). ``reef proofs request`` and ``reef proofs wait`` are these.

The contract counts only the inputs and cannot tell a typo from a private input put in the
public file (which would then be on chain in the clear), nor a market retired for a newer one:
these checks are the requester's only warning, so each refusal names the file, the input and
what to give instead. :func:`prepare_ask` is pure over a :class:`~reef.proofs.MarketListing`
(the market as read from the chain).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reef.encoding import parse_uint
from reef.errors import InputError, InvalidProofInputError, ProofError
from reef.home import read_json
from reef.proofs._advice import UnmatchedAsk, ask_advice
from reef.proofs._client import ProofMarketClient
from reef.proofs._listing import AskListing, MarketListing, describe_ask, describe_market
from reef.proofs._request import AuctionRamp, ask_settled, request_proof, wait_for_ask
from reef.proofs._secret import parse_private_inputs

__all__ = [
    "PreparedAsk",
    "prepare_ask",
    "read_input_file",
    "request_checked",
    "retired_hint",
    "wait_for_ending",
]

# What an input file looks like, for the refusals of one that is missing or is not one.
_INPUT_HINT = (
    'a JSON object of the market\'s input signals by name, e.g. {"x": 12345} '
    "(examples/proofs/poseidon/input.json, for reef up's example market)"
)


def read_input_file(path: Path) -> dict[str, Any]:
    """The JSON object of input signals in ``path``.

    Raises:
        InputError: the file is missing, unreadable, not JSON, or not a JSON object.
    """
    what = f"cannot read the input file {path}"
    missing = InputError(f"{what}: No such file or directory", hint=_INPUT_HINT)
    data = read_json(path, missing=missing, unreadable=what)
    if not isinstance(data, dict):
        raise InputError(f'{path} must hold a JSON object of input signals, e.g. {{"x": 5}}')
    return data


@dataclass(frozen=True)
class PreparedAsk:
    """What an ask sends: its public inputs in the market's order, and its private inputs as
    the bytes to encrypt to the matching engine (None for a market without them)."""

    market_id: int
    inputs: tuple[int, ...]
    secret: bytes | None


def retired_hint(successors: Sequence[int]) -> str:
    """What to ask instead of a retired market: the live markets over its circuit, if any (the
    example markets reef up created for its current image replace the ones it retired)."""
    if not successors:
        return "`reef proofs market list` shows the markets that take asks"
    named = " or ".join(f"market {m}" for m in successors)
    return f"{named} proves the same circuit: `reef proofs request {successors[0]} ...`"


def prepare_ask(
    listing: MarketListing,
    public: Mapping[str, Any],
    public_path: Path,
    *,
    private: Mapping[str, Any] | None = None,
    private_path: Path | None = None,
    auction: bool = False,
) -> PreparedAsk:
    """An ask for ``listing``'s market from the input files' contents (``public`` read from
    ``public_path``, ``private`` from ``private_path``), checked in this order: the market
    takes asks, the public inputs are exactly its public inputs, private inputs are given
    exactly when it takes them and are its own, and an ``auction`` ask has none.

    Raises:
        ProofError: the market is retired, takes no private inputs or needs them, or an
            auction ask would carry them.
        InputError: an input file does not give the market's inputs, or a value is not an
            unsigned 256-bit integer.
    """
    market_id = listing.market.market_id
    if listing.retired:
        raise ProofError(
            f"market {market_id} is retired: it takes no new asks",
            hint=retired_hint(listing.successors),
        )
    private_names = list(listing.metadata.get("private_inputs", []))
    names = list(listing.metadata.get("public_inputs", []))
    values = _public_inputs(public, public_path, names, private_names, market_id)
    if private is not None and not listing.market.private_inputs:
        raise ProofError(
            f"market {market_id} takes no private inputs",
            hint="drop --private, or use a market created with --private-input",
        )
    if private is None and listing.market.private_inputs:
        raise ProofError(
            f"market {market_id} needs private inputs {private_names}",
            hint="give them with --private FILE (a JSON object)",
        )
    secret = None
    if private is not None:
        where = private_path or Path("the private inputs")
        secret = _private_inputs(private, where, private_names, market_id)
    if auction and secret is not None:
        raise ProofError(
            "an auction ask takes public inputs only",
            hint="provers lock auctions themselves, so no engine re-encrypts a secret for them",
        )
    return PreparedAsk(market_id, tuple(values), secret)


def request_checked(
    client: ProofMarketClient,
    market_id: int,
    public: Mapping[str, Any],
    public_path: Path,
    *,
    expiry: int,
    proving_time: int,
    reward: int | None = None,
    auction: AuctionRamp | None = None,
    private: Mapping[str, Any] | None = None,
    private_path: Path | None = None,
    warn: Callable[[UnmatchedAsk], None] | None = None,
) -> int:
    """Ask market ``market_id`` for a proof of the inputs its files give: checked against the
    market as the chain has it (:func:`prepare_ask`), then, when no prover would take it
    (:func:`~reef.proofs.ask_advice`), passed to ``warn``, and sent all the same (a prover may
    join or change its terms before it expires) by :func:`~reef.proofs.request_proof`, whose
    arguments the rest are. Returns the ask's id.

    Raises:
        ProofError, InputError: as :func:`prepare_ask` and :func:`~reef.proofs.request_proof`.
    """
    listing = describe_market(client, market_id)
    ask = prepare_ask(
        listing, public, public_path, private=private, private_path=private_path,
        auction=auction is not None,
    )  # fmt: skip
    advice = ask_advice(
        client, listing, reward=reward, proving_time=proving_time, private=ask.secret is not None
    )
    if advice is not None and warn is not None:
        warn(advice)
    return request_proof(
        client, market_id, ask.inputs, reward=reward, auction=auction, secret=ask.secret,
        expiry=expiry, proving_time=proving_time,
    )  # fmt: skip


def wait_for_ending(
    client: ProofMarketClient,
    ask_id: int,
    *,
    timeout_s: float,
    waited: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> AskListing:
    """Ask ``ask_id`` whole once it has ended or waits only for its requester
    (:func:`~reef.proofs.wait_for_ask`, :func:`~reef.proofs.ask_settled`).

    Raises:
        ProofError: there is no such ask, or it is still under way after ``timeout_s`` (the
            message says so in ``waited``, the caller's words for that time, e.g. ``10m``).
    """
    state = wait_for_ask(client, ask_id, timeout_s=timeout_s, clock=clock, sleep=sleep)
    if not ask_settled(state):
        raise ProofError(
            f"ask {ask_id} is still {state.label} after {waited or f'{timeout_s:g} s'}",
            hint=f"run `reef proofs wait {ask_id}` again, or `reef proofs show {ask_id}`",
        )
    return describe_ask(client, ask_id)


def _private_inputs(data: Mapping[str, Any], path: Path, names: list[str], market_id: int) -> bytes:
    """The private inputs (``data``, read from ``path``), checked against the market's names, as
    the bytes to encrypt."""
    try:
        values = parse_private_inputs(json.dumps(data).encode(), names)
    except InvalidProofInputError as exc:
        raise InputError(
            f"{path}: {exc.message}",
            hint=exc.hint or f"market {market_id} takes the private inputs {names}",
        ) from exc
    return json.dumps(values, separators=(",", ":")).encode()


def _public_inputs(
    data: Mapping[str, Any],
    path: Path,
    names: list[str],
    private_names: list[str],
    market_id: int,
) -> list[int]:
    """The public inputs ``data`` (read from ``path``) gives, in the market's order (in the
    file's order for a market whose metadata names none).

    Raises:
        InputError: one of ``names`` is missing, or ``data`` has a signal the market does not
            take publicly: a typo, another market's input, or one of its private inputs, which
            would go on chain in the clear.
    """
    if names:
        missing = [n for n in names if n not in data]
        example = json.dumps({n: 12345 for n in names})
        if missing:
            raise InputError(
                f"{path} lacks market {market_id}'s public input{_s(missing)} {', '.join(missing)}",
                hint=f"give each of its public inputs by name, e.g. {example}",
            )
        private = [n for n in data if n in private_names]
        if private:
            raise InputError(
                f"{path} has {', '.join(private)}, a private input of market {market_id}: "
                "--input goes on chain in the clear",
                hint="move it to the --private FILE, which only the assigned prover can read",
            )
        extra = [n for n in data if n not in names]
        if extra:
            raise InputError(
                f"{path} has {', '.join(map(repr, extra))}, which market {market_id} does not "
                f"take (its public input{_s(names)}: {', '.join(names)})",
                hint=f"give exactly its inputs, e.g. {example}; `reef proofs market list` shows "
                "the markets, if this is another's",
            )
    return [parse_uint(data[n], name=f"{path}: public input {n}") for n in names or list(data)]


def _s(items: list[str]) -> str:
    return "" if len(items) == 1 else "s"
