"""An input verification service over HTTP, so that a prover in an enclave can reach its IVS.

The IVS (:class:`~reef.proofs.InputVerifier`) signs "these inputs admit no proof" after proving
that for itself. In-process it is a method call; a prover enclave reaches it instead at
``POST /invalid`` with ``{"ask_id": N, "acl": "0x…" | null}`` and gets
``{"signature": "0x…"}``, or a 409 with the reason when it refuses. ``acl`` is the AES key of the
ask's private inputs, when it has some, ECIES-encrypted to the IVS's own key (Kalypso's ACL
format): the request crosses the host's network between two enclaves, so the key never travels
in the clear. ``GET /`` gives the IVS's address and public key; :class:`RemoteInputVerifier`
encrypts to that key only after checking that its address is the market's IVS on chain. The
service reads the ask, its inputs and its market's metadata from the chain itself, so the
prover's word is never taken for any of them. A light API (reef's ``light_api``: Starlette, with
typed models that FastAPI describes at ``/openapi.json`` and ``/docs`` on demand), served
on reef's serving floor like the other services of ``reef up``.

:class:`RemoteInputVerifier` is the prover's side: it has ``attest_invalid`` like
:class:`~reef.proofs.InputVerifier`, so :class:`~reef.proofs.ProverService` takes either.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import httpx
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from reef._api import LightApi, json_error, light_api
from reef._api_models import error_answers, validation_reasons
from reef._fetch import FetchError, fetch_blocking, request_to
from reef.crypto import Secp256k1PrivateKey, Secp256k1PublicKey
from reef.encoding import loads_bounded
from reef.errors import InputError, ProofError, ReefError
from reef.proofs._client import ProofMarketClient
from reef.proofs._events import MarketCreated
from reef.proofs._prover import InputVerifier
from reef.proofs._secret import ecies_decrypt, ecies_encrypt

__all__ = ["RemoteInputVerifier", "ivs_app"]

_TIMEOUT_S = 120.0  # the IVS proves the inputs itself: a Groth16 witness and proof take seconds
_MAX_ANSWER = 64 * 1024  # an answer is a signature, an identity or a reason: well under this
_ANSWER_DEPTH = 4
_SHOWN = 300  # characters of a refusal's reason quoted in the prover's error
_WHAT = "the input verification service"
_HINT = "is the prover pointed at the market's IVS, and may it reach it?"


class _Markets:
    """The markets' metadata, read from their ``MarketCreated`` events (cached)."""

    def __init__(self, client: ProofMarketClient, from_block: int) -> None:
        self.client = client
        self._next = from_block
        self._metadata: dict[int, str] = {}
        self._lock = threading.Lock()

    def metadata(self, market_id: int) -> str:
        """``market_id``'s metadata: from the events since ``from_block``, or, for a market
        created before it, from its own ``MarketCreated`` event (found once). Without the
        second, an IVS started later refused that market's asks, and its provers were slashed
        on invalid inputs nobody attested."""
        with self._lock:
            if market_id not in self._metadata:
                events, self._next = self.client.events_to_head(self._next)
                for event in events:
                    if isinstance(event, MarketCreated):
                        self._metadata[event.market_id] = event.metadata
            if market_id not in self._metadata:
                for event in self.client.events_of(MarketCreated, 0, topics=[market_id]):
                    self._metadata[market_id] = event.metadata
            found = self._metadata.get(market_id)
        if found is None:
            raise ProofError(f"market {market_id} was not created on this chain")
        return found


class InvalidRequest(BaseModel):
    """``POST /invalid``: the ask whose inputs admit no proof, and the key of its private inputs.
    Other fields are ignored."""

    ask_id: int = Field(ge=0, lt=2**256, description="the ask (uint256)")
    acl: str | None = Field(
        None,
        max_length=4096,
        pattern=r"^(0x)?([0-9a-fA-F]{2})*$",
        description="the ask's AES key ECIES-encrypted to this IVS's public key, as hex; null "
        "or empty when the ask has no private inputs",
    )


class InvalidSignature(BaseModel):
    """The IVS's signature, which the market's ``submitInvalidInput`` accepts."""

    signature: str = Field(pattern=r"^0x[0-9a-f]{130}$")


class IvsIdentity(BaseModel):
    """``GET /``: the address the IVS signs as, and the public key to encrypt ACLs to."""

    address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    public_key: str = Field(pattern=r"^0x[0-9a-f]{128}$", description="uncompressed, no 04")


def ivs_app(verifier: InputVerifier, client: ProofMarketClient, *, from_block: int = 0) -> LightApi:
    """The HTTP face of ``verifier`` for the market ``client`` reads (see the module docstring)."""
    markets = _Markets(client, from_block)
    key = Secp256k1PrivateKey(bytes(verifier.account.key))
    identity = {"address": verifier.address, "public_key": "0x" + key.public_key.raw.hex()}

    def attest(ask_id: int, secret_key: bytes | None) -> bytes:
        ask = client.ask(ask_id)
        return verifier.attest_invalid(client, ask_id, markets.metadata(ask.market_id), secret_key)

    async def invalid(request: Request) -> JSONResponse:
        try:
            given = InvalidRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            reasons = validation_reasons(exc)
            return json_error(400, f'{reasons}; expected {{"ask_id": N, "acl": "0x…" | null}}')
        acl = bytes.fromhex(given.acl.removeprefix("0x")) if given.acl else None
        try:
            secret_key = None if acl is None else ecies_decrypt(key.secret, acl)
        except ReefError as exc:
            return json_error(400, f"the acl does not open with this IVS's key: {exc}")
        try:
            signature = await asyncio.to_thread(attest, given.ask_id, secret_key)
        except ReefError as exc:
            return json_error(409, str(exc))
        return JSONResponse({"signature": "0x" + signature.hex()})

    async def info(_request: Request) -> JSONResponse:
        return JSONResponse(identity)

    app = light_api(
        "reef proof market: input verification service",
        description="Signs that an ask's inputs admit no proof, after checking that itself "
        "(it reads the ask, its inputs and its market from the chain), so that the ask's prover "
        "can close it without being slashed.",
    )
    app.add_api_route(
        "/invalid",
        invalid,
        methods=["POST"],
        body=InvalidRequest,
        response_model=InvalidSignature,
        summary="Sign that an ask's inputs admit no proof",
        responses=error_answers(
            {
                400: "malformed, or the acl does not open",
                409: "refused: no such ask or market, the inputs admit a proof, or private "
                "inputs without their key",
            }
        ),
    )
    app.add_api_route(
        "/",
        info,
        methods=["GET"],
        response_model=IvsIdentity,
        summary="The address the IVS signs as, and its public key",
    )
    return app


class RemoteInputVerifier:
    """A market's IVS reached over HTTP (``ivs_app``); used by a prover like an
    :class:`~reef.proofs.InputVerifier`.

    Args:
        url: the service's base URL.
        timeout_s: httpx's timeout of each operation; a whole answer may take twice this.
        transport: an httpx transport for every request (tests); a new connection otherwise.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = _TIMEOUT_S,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._transport = transport

    def attest_invalid(
        self,
        client: ProofMarketClient,
        ask_id: int,
        metadata_json: str,
        secret_key: bytes | None = None,
    ) -> bytes:
        """The IVS's signature for ``submitInvalidInput`` (it checks the inputs itself).

        Raises:
            ProofError: the IVS refused (its reason) or could not be reached.
        """
        del metadata_json  # the service reads it from the chain itself
        acl = None
        if secret_key is not None:
            ivs = client.market(client.ask(ask_id).market_id).ivs
            acl = ecies_encrypt(self._public_key(ivs), secret_key)
        payload = {"ask_id": ask_id, "acl": None if acl is None else "0x" + acl.hex()}
        status, body, text = self._exchange("POST", "/invalid", payload)
        signature = body.get("signature") if isinstance(body, dict) else None
        if status != 200 or not isinstance(signature, str):
            reason = body.get("error") if isinstance(body, dict) else None
            raise ProofError(
                f"the input verification service refused ask {ask_id}: "
                f"{str(reason or text)[:_SHOWN]}"
            )
        try:
            return bytes.fromhex(signature.removeprefix("0x"))
        except ValueError as exc:
            raise ProofError(
                f"the input verification service answered ask {ask_id} with a signature that "
                f"is not hex: {signature[:_SHOWN]!r}"
            ) from exc

    def _exchange(
        self, method: str, path: str, payload: object | None = None
    ) -> tuple[int, Any, str]:
        """The status, the JSON body (None if it is not JSON) and the text of the service's
        answer, read up to :data:`_MAX_ANSWER` bytes. The prover's enclave reaches the IVS
        across the host's network, so whoever answers may be hostile: an endless body or one
        nested deep enough to kill ``json`` must cost the prover an error, not its loop.

        Raises:
            ProofError: the service cannot be reached, or its answer is too long or too slow.
        """
        # Read by reef's one bounded reader: the deadline covers the head as well as the body.
        try:
            answer = fetch_blocking(
                request_to(method, f"{self.url}{path}", what=_WHAT, hint=_HINT, json=payload),
                transport=self._transport,
                timeout=self.timeout_s,
                max_bytes=_MAX_ANSWER,
                deadline_s=2 * self.timeout_s,
                what=_WHAT,
                hint=_HINT,
            )
        except FetchError as exc:
            raise ProofError(exc.message, hint=exc.hint) from exc
        status, data = answer.status, answer.body
        text = data.decode("utf-8", errors="replace")
        body: Any = None
        with contextlib.suppress(InputError):
            body = loads_bounded(text, what="the IVS's answer", max_depth=_ANSWER_DEPTH)
        return status, body, text

    def _public_key(self, ivs: str) -> bytes:
        """The service's public key, once its address is the market's IVS ``ivs``.

        Raises:
            ProofError: the service cannot be reached, or it is not the market's IVS.
        """
        try:
            _status, body, _text = self._exchange("GET", "/")
            public_key = Secp256k1PublicKey(bytes.fromhex(str(body["public_key"])[2:]))
        except (ValueError, KeyError, TypeError, ReefError) as exc:
            raise ProofError(
                f"the input verification service at {self.url} gave no public key: {exc}",
                hint="is the IVS running, and may this prover reach it?",
            ) from exc
        if public_key.address.lower() != ivs.lower():
            raise ProofError(
                f"the service at {self.url} signs as {public_key.checksum_address}, not as the "
                f"market's IVS {ivs}: the ask's key is not sent to it",
                hint="point the prover at the market's IVS",
            )
        return public_key.raw
