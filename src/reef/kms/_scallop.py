"""The enclave-seed exchange over Scallop (reference oyster_cvm.md §2.3 Scallop listener, §2.4).

Root side, :func:`scallop_app`: HTTP/1.1 inside a Scallop channel whose server key is the root's
``oyster.kms.x25519`` key. The channel's auth store asks *every* client for an attestation (no
cache, as Oyster's root) and accepts it only from an accepted TEE root, at most 300 s old, with
``public_key`` equal to the client's Noise static key; the verified image id is the connection's
identity. ``GET /derive`` answers the 64-byte enclave seed of that image; ``GET /derive?address=``
the contract seed, only if the contract approves the image on chain (401 if not, 500 if the chain
cannot be asked, 400 for a bad address). Per client address (an IPv6 /64), the root verifies a
budget of attestations (:class:`BudgetedStore`) and asks the chain a budget of times per image;
past either, 429 with a ``Retry-After`` (:mod:`reef._peers`). It is a light API
(:func:`reef._api.light_api`: the enclave's trusted base imports this module), so
``/openapi.json`` and ``/docs`` describe it, over the same channel; its errors stay plain text, as
every KMS listener's.

Handover (docs/kms.md, "Upgrading a root"): ``GET /handover`` answers every version's root seed
to a client whose live-attested image the root's admin authorised (:meth:`KmsRoot.handover_grant`);
the new root's side is :mod:`reef.kms._handover`, which asks through :func:`_channel_get`.

Enclave side, :func:`fetch_enclave_seed`: connect with the enclave's X25519 identity key, pin the
root's Scallop key (never asking the root for an attestation: the pin is the trust), present the
enclave's attestation when asked, and ``GET /derive``. That one request is written by hand on the
channel and its answer parsed with httptools (the serving floor's parser, loaded in the enclave's
supervisor anyway), rather than through httpx and :class:`reef.scallop.ScallopTransport`: the
supervisor, which runs it, would otherwise load httpx, h11, idna and the email parser (about
2 MiB) for one GET. It imports ``reef.scallop``'s handshake, policy and stream modules only.

One module (about 630 lines): the root's listener and the clients that speak to it over Scallop
(the enclave's, and the new root's in :mod:`reef.kms._handover`) share one hand-written exchange,
kept beside the routes it must match.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from reef._api import LightApi, light_api, query_param
from reef._peers import PeerBudget, PeerRate, peer_group
from reef.encoding import parse_bytes32
from reef.errors import (
    ChainError,
    ChannelBrokenError,
    ChannelError,
    InputError,
    KMSBusyError,
    KMSError,
    ReefError,
)
from reef.kms._derive import _IMAGE_ID_HINT
from reef.kms._http import (
    VERSION_HEADER,
    VERSION_PARAM,
    OneAtATime,
    add_kms_route,
    answered_version,
    busy_response,
    error_response,
    kms_guard,
    parse_address,
    parse_version,
    query_params,
    versioned_answer,
    versioned_response,
)

if TYPE_CHECKING:
    from reef.attestation import TrustedRoot, VerifiedAttestation
    from reef.kms._client import VerifiedKmsIdentity
    from reef.kms._root import KmsRoot
    from reef.scallop import (
        Auther,
        AuthStore,
        ContainsResponse,
        PolicyStore,
        ScallopPeer,
        ScallopStream,
    )

__all__ = [
    "ATTESTATION_RATE",
    "BudgetedStore",
    "CHAIN_RATE",
    "DEFAULT_MAX_AGE_MS",
    "KmsWiring",
    "client_policy",
    "fetch_enclave_seed",
    "scallop_app",
]

_log = logging.getLogger("reef.kms.scallop")

DEFAULT_MAX_AGE_MS = 300_000
"""How old a client's attestation may be (Oyster's root: 300 000 ms)."""
ATTESTATION_RATE = PeerRate(per_second=8, burst=32)
"""Attestations the root verifies for one client group (an IPv4 address, an IPv6 /64): 32 at
once, 8 more a second. An enclave presents one per seed it fetches (a few per boot); enclaves
booting together on one provider host share the burst."""
CHAIN_RATE = PeerRate(per_second=2, burst=16)
"""Contract approvals (``eth_call``s) the root makes for one image at one client group: 16 at
once, 2 more a second. An enclave asks once per contract seed it fetches."""
_LOG_EVERY_S = 1.0


def client_policy(
    roots: Sequence[TrustedRoot],
    *,
    max_age_ms: int = DEFAULT_MAX_AGE_MS,
    clock: Callable[[], int] | None = None,
) -> PolicyStore:
    """The root's auth store: always ask, never cache; accepted roots, fresh, key-bound.

    Args:
        roots: TEE roots a client's attestation may chain to (``TrustedRoot.aws()`` for Nitro;
            the dev root locally).
        max_age_ms: the freshness bound at the instant of the handshake.
        clock: milliseconds since the epoch (the wall clock when None).
    """
    from reef.scallop import PeerPolicy

    options: dict[str, Any] = {"roots": tuple(roots), "max_age_ms": max_age_ms, "mode": "live"}
    if clock is not None:
        options["clock"] = clock
    return PeerPolicy(**options).store(cache=False)


class BudgetedStore:
    """The root's auth store (an :class:`reef.scallop.AuthStore`), verifying at most a
    :class:`PeerBudget` of attestations per client group.

    Each attestation a client presents is verified in full (about 2 ms of P-384 on the event
    loop), refused or not, and a stranger can present a new one per handshake: someone else's
    document with a fresh Noise key each time, or fresh documents of its own enclave. Past its
    group's budget a handshake is not asked for an attestation at all: it is let through
    *unattested* (:class:`reef.scallop.Approved` without a peer), and :func:`scallop_app`, given
    the same budget, answers every request on such a channel 429 with a ``Retry-After``, so the
    client learns why and when, which a refused handshake could not tell it. An unattested
    channel gets no seed: the app serves seeds to attested peers only.

    Args:
        store: the verifying store (:func:`client_policy`).
        budget: attestations per client group.
        peer: the client group of the connection whose handshake is being decided (None when
            unknown: then the budget does not apply).
    """

    def __init__(
        self, store: AuthStore, budget: PeerBudget, peer: Callable[[], str | None]
    ) -> None:
        self.store = store
        self.budget = budget
        self._peer = peer
        self._logged_at = -_LOG_EVERY_S
        self._unlogged = 0

    def __repr__(self) -> str:
        return f"BudgetedStore({self.store!r}, {self.budget!r})"

    def contains(self, key: bytes) -> ContainsResponse:
        """The store's answer; past the client's budget, approved without an attestation."""
        from reef.scallop._policy import Approved, NotFound

        answer = self.store.contains(key)
        if not isinstance(answer, NotFound):
            return answer
        group = self._peer()
        if group is None:
            return answer
        wait = self.budget.take(group)
        if not wait:
            return answer
        self._log(group, wait)
        return Approved(None)

    def verify(self, attestation: bytes, key: bytes) -> VerifiedAttestation | None:
        """Verify with the store (only handshakes within the budget get here)."""
        return self.store.verify(attestation, key)

    def _log(self, group: str, wait: float) -> None:
        # A flood would otherwise write a line per handshake: one a second, with a count.
        now = asyncio.get_running_loop().time()
        if now - self._logged_at < _LOG_EVERY_S:
            self._unlogged += 1
            return
        _log.warning(
            "%s is over its attestation budget (%g a second): not verifying its attestations "
            "for %.1f s (%d more over-budget handshakes since the last line)",
            group,
            self.budget.rate.per_second,
            wait,
            self._unlogged,
        )
        self._logged_at, self._unlogged = now, 0


def _group(peer: ScallopPeer) -> str:
    address = peer.address
    return peer_group(address) if address else ""


def scallop_app(
    root: KmsRoot,
    *,
    verifications: PeerBudget | None = None,
    chain_calls: PeerBudget | None = None,
) -> LightApi:
    """The root's ``/derive`` app, to be served with :func:`reef.scallop.serve_asgi`.

    Args:
        verifications: the budget of the listener's :class:`BudgetedStore`: a client's channel
            without an attestation is then answered 429 (else 401, a misconfigured listener).
        chain_calls: contract approvals per client group and attested image (default: none
            counted); past it 429.
    """
    from reef.scallop import scallop_peer

    # The chain is asked about one image's contracts one call at a time: an enclave that names
    # a contract which loops (or answers slowly) costs the chain node one call at a time,
    # however many channels it opens, and the calls of other images do not queue behind its.
    asking: OneAtATime[bytes] = OneAtATime()

    async def derive(request: Request) -> Response:
        try:
            peer = scallop_peer(request)
        except InputError:
            return error_response(401, "this endpoint is only served over Scallop")
        image_id = peer.image_id
        if image_id is None:
            if verifications is not None and peer.auth == "pinned":
                # BudgetedStore let the channel through without asking (see its docstring).
                group = _group(peer)
                return busy_response(
                    verifications.wait_s(group),
                    f"{group} presented more attestations than the root verifies per client "
                    f"({verifications.rate.per_second:g}/s, {verifications.rate.burst:g} at "
                    "once): this channel is unattested and gets no seed; open a new one",
                )
            # The store always asks; a peer without attestation means a misconfigured listener.
            return error_response(401, "the client did not attest its image")
        try:
            # Strict UTF-8 (kms._http.query_params), as on every KMS listener.
            params = query_params(request.scope)
            keyring = root.keyring
            chosen = keyring.resolve_version(parse_version(params))
            address = params.get("address")
            if address is not None:
                address = parse_address(address, evm=True)
        except InputError as exc:
            return error_response(400, exc.message)
        if address is None:
            seed = keyring.enclave_seed(image_id, chosen)
            _log.info("enclave seed v%d for image %s", chosen, image_id.hex())
        else:
            approval = root.approval
            if approval is None:
                return error_response(400, "this KMS root serves no contract-based seeds")
            if chain_calls is not None:
                # Per address *and* image: the image is attested by now, so a tenant's enclave
                # spends its own image's share, not that of its neighbours on one host.
                group = _group(peer)
                wait = chain_calls.take(f"{group} {image_id.hex()}")
                if wait:
                    return busy_response(
                        wait,
                        f"image {image_id.hex()[:16]}… at {group} asked about contracts more "
                        f"often than the root asks the chain per client and image "
                        f"({chain_calls.rate.per_second:g}/s, {chain_calls.rate.burst:g} at "
                        "once); a contract seed is the same every time: keep it",
                    )
            try:
                async with asking.turn(image_id):
                    approved = await approval(address, image_id)
            except ChainError as exc:
                _log.warning("cannot ask %s about image %s: %s", address, image_id.hex(), exc)
                return error_response(500, f"cannot ask the chain: {exc.message}")
            if not approved:
                _log.info("image %s is not approved by %s", image_id.hex(), address)
                return error_response(401, f"image {image_id.hex()} is not approved by {address}")
            seed = keyring.contract_seed(approval.chain_id, address, chosen)
            _log.info("contract seed v%d for %s to image %s", chosen, address, image_id.hex())
        return versioned_response(seed, chosen)

    async def handover(request: Request) -> Response:
        try:
            peer = scallop_peer(request)
        except InputError:
            return error_response(401, "this endpoint is only served over Scallop")
        attested = peer.attestation
        if attested is None or attested.mode != "live":
            return error_response(
                401, "the client did not attest its image live: no seeds are handed over"
            )
        try:
            root.handover_grant(attested.image_id)
        except KMSError as exc:
            _log.warning("refused a handover to image %s: %s", attested.image_id.hex(), exc)
            return error_response(403, f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
        _log.warning(
            "handing this root's seeds (versions %s) to image %s at %s",
            ", ".join(map(str, root.keyring.versions)),
            attested.image_id.hex(),
            _group(peer),
        )
        return Response(root.handover_answer(), media_type="application/json")

    app = light_api(
        "reef KMS root (Scallop)",
        description="Enclave and contract seeds for attested enclaves: served only inside a "
        "Scallop channel whose client attested its image, which names the seed.",
    )
    errors = {
        400: "what is wrong with the query (or: this root serves no contract seeds)",
        401: "not over Scallop, the client did not attest, or the contract does not "
        "approve the client's image",
        500: "the chain cannot be asked whether the contract approves",
    }
    if verifications is not None or chain_calls is not None:
        errors[429] = (
            "this client presented more attestations, or asked about contracts more often, "
            "than the root takes from one client; Retry-After says when to ask again"
        )
    add_kms_route(
        app,
        "/derive",
        derive,
        name="derive",
        summary="The 64-byte seed of the client's image (or of a contract approving it)",
        ok=versioned_answer("the 64-byte seed"),
        errors=errors,
        parameters=[
            query_param(
                "address",
                "a contract address: its seed, if it approves the client's image "
                "(default: the image's own seed)",
                r"^0x[0-9a-fA-F]{40}$",
            ),
            VERSION_PARAM,
        ],
    )
    add_kms_route(
        app,
        "/handover",
        handover,
        name="handover",
        summary="Every version's root seed, to a new root of an image the admin authorised",
        ok={"description": "the seeds and the configuration the root attests (JSON)"},
        errors={
            401: "not over Scallop, or the client did not attest its image live",
            403: "the client's image is not authorised (or its authorisation expired)",
        },
    )
    app.add_middleware(kms_guard, what="KMS root's Scallop listener")
    return app


@dataclass(frozen=True, kw_only=True)
class KmsWiring:
    """How an enclave reaches its KMS root: what the local runtime hands each derive server.

    Attributes:
        scallop_host, scallop_port: the root's Scallop listener.
        scallop_key: the root's 32-byte Scallop static key, pinned (a current-version key).
        public_url: the root's public listener (for tools that seal init params), optional.
        signing_keys: version → 64-byte signing key of the public listener, optional.
        contract_address: ask for the contract seed of this address instead of the image seed.
        root_image_id: the KMS root enclave's image id. With it, a root whose Scallop key is not
            the pinned one (it rotated since) is accepted when it attests that key from this
            image, so a rotation does not cut enclaves off their KMS.
    """

    scallop_host: str
    scallop_port: int
    scallop_key: bytes
    public_url: str | None = None
    signing_keys: Mapping[int, bytes] = field(default_factory=dict)
    contract_address: str | None = None
    root_image_id: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.scallop_key) != 32:
            raise InputError(f"the KMS Scallop key is 32 bytes, got {len(self.scallop_key)}")
        if not 0 < self.scallop_port < 65536:
            raise InputError(f"the KMS Scallop port {self.scallop_port} is not a TCP port")
        if self.contract_address is not None:
            parse_address(self.contract_address, evm=True)
        if self.root_image_id is not None:
            parse_bytes32(self.root_image_id, name="the KMS root image id", hint=_IMAGE_ID_HINT)

    @classmethod
    def from_identity(
        cls,
        identity: VerifiedKmsIdentity,
        *,
        scallop_host: str,
        scallop_port: int,
        contract_address: str | None = None,
    ) -> KmsWiring:
        """Wiring to a root whose identity was verified (:func:`reef.kms.fetch_identity`)."""
        return cls(
            scallop_host=scallop_host,
            scallop_port=scallop_port,
            scallop_key=identity.current.scallop_key,
            public_url=identity.url,
            signing_keys=identity.signing_keys,
            contract_address=contract_address,
            root_image_id=identity.attestation.image_id,
        )

    @property
    def endpoint(self) -> str:
        """``host:port`` of the Scallop listener (Oyster's ``kms_endpoint``)."""
        return f"{self.scallop_host}:{self.scallop_port}"

    def to_json(self) -> dict[str, Any]:
        """Oyster's ``root-server-config.json`` keys, plus reef's optional ones."""
        return {
            "kms_endpoint": self.endpoint,
            "kms_pubkey": self.scallop_key.hex(),
            "public_url": self.public_url or "",
            "signing_keys": {str(v): k.hex() for v, k in self.signing_keys.items()},
            "contract_address": self.contract_address or "",
            "root_image_id": self.root_image_id.hex() if self.root_image_id else "",
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KmsWiring:
        """Read :meth:`to_json` output (or Oyster's ``root-server-config.json``).

        Raises:
            InputError: when a field is missing or malformed.
        """
        try:
            host, _, port = str(data["kms_endpoint"]).rpartition(":")
            return cls(
                scallop_host=host,
                scallop_port=int(port),
                scallop_key=bytes.fromhex(str(data["kms_pubkey"])),
                public_url=str(data.get("public_url") or "") or None,
                signing_keys={
                    int(v): bytes.fromhex(str(k))
                    for v, k in dict(data.get("signing_keys") or {}).items()
                },
                contract_address=str(data.get("contract_address") or "") or None,
                root_image_id=bytes.fromhex(str(data.get("root_image_id") or "")) or None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"the KMS wiring is malformed: {exc}",
                hint='give {"kms_endpoint": "host:port", "kms_pubkey": "<64 hex>"}',
            ) from exc


async def fetch_enclave_seed(
    wiring: KmsWiring,
    *,
    static_key: bytes,
    auther: Auther,
    version: int | None = None,
    deadline_s: float = 10.0,
    roots: Sequence[TrustedRoot] = (),
) -> tuple[bytes, int]:
    """Get this enclave's 64-byte seed (and its root version) from the KMS root over Scallop.

    Args:
        wiring: where the root is and its pinned Scallop key.
        static_key: the enclave's 32-byte X25519 identity secret (the key its attestation names).
        auther: returns the enclave's attestation of that key.
        version: a root seed version (None: the root's current one).
        deadline_s: seconds for the whole exchange.
        roots: roots the KMS root's attestation may chain to; with ``wiring.root_image_id``, a
            root whose key is not the pinned one must attest it from that image under them.

    Raises:
        KMSError: when the root cannot be reached, refuses the enclave, or answers badly.
    """
    # The submodules, not the package: its __init__ loads the httpx transport (an enclave's
    # supervisor registers reef.scallop without it: reef._lazy.without_init).
    from reef.scallop._policy import PeerPolicy, PinnedKeys, PolicyStore

    params: dict[str, str] = {}
    if wiring.contract_address is not None:
        params["address"] = wiring.contract_address
    if version is not None:
        params["version"] = str(version)
    fallback = None
    if wiring.root_image_id is not None and roots:
        fallback = PolicyStore(PeerPolicy(roots=roots, image_ids={wiring.root_image_id}))
    target = "/derive" + ("?" + urllib.parse.urlencode(params) if params else "")
    status, headers, body, _ = await _channel_get(
        wiring.scallop_host,
        wiring.scallop_port,
        target,
        static_key=static_key,
        policy=PinnedKeys([wiring.scallop_key], fallback=fallback),
        auther=auther,
        deadline_s=deadline_s,
        hint="the root refuses attestations that are stale, from another TEE root, or not "
        "of this channel's key; check also the pinned KMS key and that the root runs",
    )
    if status != 200:
        text = body.decode(errors="replace")
        message = f"the KMS root refused the enclave seed ({status}): {text.strip()[:200]}"
        if status == 429:
            raise KMSBusyError(
                message,
                retry_after_s=_retry_after(headers.get("retry-after", "")),
                hint="too many seeds or attestations asked from this address: ask again later",
            )
        raise KMSError(message)
    if len(body) != 64:
        raise KMSError(f"the KMS root sent a {len(body)}-byte seed, not 64")
    # A root that names no version (Oyster's) has only version 0.
    return body, answered_version(headers.get(VERSION_HEADER.lower(), "0"), version)


async def _channel_get(
    host: str,
    port: int,
    target: str,
    *,
    static_key: bytes,
    policy: AuthStore,
    auther: Auther | None,
    deadline_s: float,
    hint: str,
    max_answer: int = 64 * 1024,
) -> tuple[int, dict[str, str], bytes, ScallopPeer]:
    """One ``GET target`` to a KMS root over a new Scallop channel: status, headers, body and
    what the channel proved about the root.

    Raises:
        KMSError: when there is no channel (with ``hint``), or no complete answer in time.
    """
    from reef.scallop._handshake import connect

    endpoint = f"{host}:{port}"
    request = (f"GET {target} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n").encode()
    try:
        async with asyncio.timeout(deadline_s):
            stream = await connect(
                host,
                port,
                static_key=static_key,
                policy=policy,
                auther=auther,
                handshake_timeout=deadline_s,
            )
            try:
                await stream.send(request)
                status, headers, body = await _read_answer(stream, max_answer)
                peer = stream.peer_info
            finally:
                with contextlib.suppress(ReefError):  # the answer is read: closing is courtesy
                    await stream.aclose()
    except TimeoutError as exc:
        raise KMSError(f"the KMS root at {endpoint} did not answer in {deadline_s:g} s") from exc
    except KMSError:
        raise
    except ChannelError as exc:
        raise KMSError(
            f"no Scallop channel to the KMS root at {endpoint}: {exc.message}", hint=hint
        ) from exc
    except ReefError as exc:
        raise KMSError(f"the KMS root at {endpoint} failed: {exc}") from exc
    return status, headers, body, peer


_MAX_RETRY_AFTER_S = 3600


def _retry_after(header: str) -> float:
    """A root's ``Retry-After`` in seconds: whole seconds, 1 to an hour (1 when it is not)."""
    if not (header.isascii() and header.isdigit()) or len(header) > 6:
        return 1.0
    return float(min(max(int(header), 1), _MAX_RETRY_AFTER_S))


_MAX_ANSWER = 64 * 1024
"""Bytes of a root's answer read at most (a seed answer is some 200)."""
_READ_SIZE = 16 * 1024


async def _read_answer(
    stream: ScallopStream, max_answer: int = _MAX_ANSWER
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lowercase names) and body of one HTTP/1.1 response read from ``stream``.

    Raises:
        ChannelBrokenError: when the channel ends before the answer's first byte.
        KMSError: when the answer is not HTTP, is cut short, or is longer than _MAX_ANSWER.
    """
    import httptools

    headers: dict[str, str] = {}
    body: list[bytes] = []
    done: list[bool] = []

    class Callbacks:
        # httptools' parser calls these by name as it reads.
        def on_header(self, name: bytes, value: bytes) -> None:
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")

        def on_body(self, chunk: bytes) -> None:
            body.append(chunk)

        def on_message_complete(self) -> None:
            done.append(True)

    parser = httptools.HttpResponseParser(Callbacks())
    received = 0
    while not done:
        data = await stream.read(_READ_SIZE)
        received += len(data)
        if received > max_answer:
            raise KMSError(f"the KMS root's answer is over {max_answer} bytes")
        try:
            if not data:
                break  # the root's answers have a length: EOF before it is a cut answer
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise KMSError(f"the KMS root sent a malformed HTTP answer: {exc}") from exc
    if received == 0:
        # As a refused handshake ends (the root checks the attestation after the client's
        # last handshake message): no channel, the same error as a refusal during it.
        raise ChannelBrokenError("the root closed the channel without answering")
    if not done:
        raise KMSError("the KMS root closed the channel before its answer was complete")
    return parser.get_status_code(), headers, b"".join(body)
