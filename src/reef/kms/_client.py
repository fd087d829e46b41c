"""Clients of a KMS root's public listener: signed public keys, and the root's attested identity.

:class:`KmsPublicClient` asks ``/derive/<type>/...`` and accepts an answer only if it is signed by
the signing key the caller pinned for the answer's version (reference oyster_cvm.md §2.5). Where
the key comes from is the caller's choice: a key printed by the operator (Oyster's hard-coded
deployments), a pin saved earlier (:class:`reef.kms.PinStore`), or :func:`fetch_identity`, which
reads ``/info`` and checks the root's attestation: a document from an accepted TEE root, fresh,
bound to the caller's nonce, whose ``user_data`` commits to every version's keys.

:func:`init_params_public_key` is the one call image tooling needs: the X25519 key that secret
init params for an image are sealed to (path ``oyster.init-params``), synchronously.

Whoever answers at a KMS URL is a stranger until its signature checks out, so every answer is
read through :mod:`reef._fetch`: the client's timeout bounds the whole exchange (a server that
trickles its head is given up on), and at most :data:`MAX_ANSWER_BYTES` of a body are read (an
honest answer is a key, an address, or ``/info`` with one attestation document).

One module (about 690 lines): every client of the public listener (signed keys, the attested
identity, the admin's rotation and handover) shares one exchange, one signature check and the
pins; split, each part would import the others' internals.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import httpx

from reef._clock import wall_clock_ms
from reef._fetch import read_bounded, request_to, run_blocking, tls_context
from reef.crypto import solana_address
from reef.encoding import loads_bounded, parse_bytes32, terminal_text
from reef.errors import InputError, KMSError, MisuseError, ServiceError
from reef.kms._derive import _IMAGE_ID_HINT, INIT_PARAMS_KEY_PATH, KeyType
from reef.kms._http import VERSION_HEADER, answered_version
from reef.kms._keyring import KmsIdentity, identity_digest
from reef.kms._signing import SIGNATURE_HEADER, verify_response

if TYPE_CHECKING:
    from reef.attestation import TrustedRoot, VerifiedAttestation

__all__ = [
    "KmsPublicClient",
    "VerifiedKmsIdentity",
    "fetch_identity",
    "init_params_public_key",
    "authorise_handover",
    "normalize_kms_url",
    "rotate_root",
]

_PUBLIC_LENGTH = {"secp256k1": 64, "ed25519": 32, "x25519": 32}
MAX_ANSWER_BYTES: Final = 256 * 1024
"""The longest KMS answer read: ``/info`` with a Nitro document (a few KiB, one per root) is
the largest honest one."""
_WHAT: Final = "the KMS"
_HINT: Final = "check --kms (the KMS URL) and that the KMS is up"


@dataclass(frozen=True)
class _Answer:
    """A KMS answer read whole within the bounds, with the URI its signature binds."""

    raw_path: bytes
    status: int
    headers: httpx.Headers
    content: bytes

    @property
    def path(self) -> str:
        return self.raw_path.split(b"?", 1)[0].decode("ascii", "replace")

    def json(self) -> Any:
        """The body as JSON, parsed bounded: a stranger's deep nesting is an
        :class:`~reef.errors.InputError` (a ValueError), not a RecursionError.
        """
        return loads_bounded(self.content, what="the KMS's answer")


_ADDRESS_ROUTE = {"secp256k1": "ethereum", "ed25519": "solana"}
_ETHEREUM_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_FORGED_ADDRESS_HINT: Final = (
    "something between this client and the KMS may be passing off another path's answer; "
    "reach the KMS directly (or over a trusted network) and retry"
)


def normalize_kms_url(url: str) -> str:
    """``host:port`` or ``http(s)://host:port[/]`` to ``http(s)://host:port`` (no trailing slash).

    Raises:
        InputError: when the URL is empty.
    """
    text = url.strip().rstrip("/")
    if not text:
        raise InputError("the KMS URL is empty", hint="give e.g. http://127.0.0.1:1101")
    if "://" not in text:
        text = "http://" + text
    return text


def _query(
    image_id: bytes | None, address: str | None, path: str, version: int | None
) -> dict[str, str]:
    if (image_id is None) == (address is None):
        raise MisuseError("give exactly one of image_id and address")
    params: dict[str, str] = {}
    if image_id is not None:
        params["image_id"] = parse_bytes32(image_id, name="image id", hint=_IMAGE_ID_HINT).hex()
    else:
        params["address"] = str(address)
    params["path"] = path
    if version is not None:
        params["version"] = str(version)
    return params


@dataclass(frozen=True)
class _Pins:
    by_version: Mapping[int, bytes]
    any_version: bytes | None

    @classmethod
    def of(cls, signing_key: bytes | Mapping[int, bytes]) -> _Pins:
        if isinstance(signing_key, Mapping):
            for version, key in signing_key.items():
                if len(key) != 64:
                    raise InputError(f"the pinned signing key of version {version} is not 64 bytes")
            return cls(dict(signing_key), None)
        if len(signing_key) != 64:
            raise InputError(
                f"a KMS signing key is 64 bytes (x || y), got {len(signing_key)}",
                hint="give the 128-hex-digit key the KMS operator publishes",
            )
        return cls({}, bytes(signing_key))

    def check(self, response: _Answer, requested_version: int | None) -> int | None:
        """Verify the signature; return the version the root says it answered under."""
        header = response.headers.get(VERSION_HEADER)
        version = (
            requested_version if header is None else answered_version(header, requested_version)
        )
        key = self.any_version
        if key is None:
            if version is None:
                version = 0  # an Oyster root names no version: it is a version-0 root
            newest = max(self.by_version, default=0)
            if requested_version is None and version < newest:
                # The version header is not signed, and an unversioned URI does not name one:
                # an answer from before a rotation (to a seed rotated out, perhaps because it
                # leaked) would verify under its old key. Asked for the current key, only the
                # newest pinned version may answer.
                raise KMSError(
                    f"asked the KMS for its current key, it answered under version {version}, "
                    f"older than version {newest} this client knows",
                    hint="an old answer was replayed on the way, or the KMS was rolled back; "
                    "ask for an old version by name with --version",
                )
            key = self.by_version.get(version)
            if key is None:
                raise KMSError(
                    f"the KMS answered under root seed version {version}, "
                    "for which no signing key is pinned",
                    hint="the KMS was rotated: learn its new identity (reef kms info) "
                    "or ask for a pinned version with --version",
                )
        _verify_signed(response, key)
        return version


def _verify_signed(response: _Answer, signing_key: bytes) -> None:
    verify_response(
        response.raw_path,
        response.content,
        response.headers.get(SIGNATURE_HEADER),
        signing_key,
    )


def _check_status(response: _Answer) -> None:
    if response.status == 200:
        return
    # Stripped before it is made printable: a trailing newline would show as \x0a.
    text = terminal_text(response.content[:400].decode("utf-8", "replace").strip())
    detail = text[:200]
    raise ServiceError(
        f"the KMS answered {response.status} for {response.path}"
        + (f": {detail}" if detail else ""),
    )


async def _exchange(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    body: object = None,
    deadline_s: float,
    hint: str | None,
) -> _Answer:
    """One request to the KMS, its answer read within ``deadline_s`` and
    :data:`MAX_ANSWER_BYTES`.

    Raises:
        ServiceError: (a :class:`~reef._fetch.FetchError`) unreachable, too large or too late.
    """
    request = request_to(method, url, what=_WHAT, hint=hint, params=params, json=body)
    answer = await read_bounded(
        http, request, max_bytes=MAX_ANSWER_BYTES, deadline_s=deadline_s, what=_WHAT, hint=hint
    )
    return _Answer(request.url.raw_path, answer.status, answer.headers, answer.body)


async def _kms_get(
    base: str,
    route: str,
    params: Mapping[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None,
    http_timeout: float,
    hint: str | None = _HINT,
) -> _Answer:
    """One GET to the KMS at ``base``, answered 200 within ``http_timeout`` (the whole
    exchange) and :data:`MAX_ANSWER_BYTES`.

    Raises:
        ServiceError: when the KMS cannot be reached, answers too much or too late (with
            ``hint``), or answers another status.
    """
    async with httpx.AsyncClient(
        transport=transport, timeout=http_timeout, verify=tls_context()
    ) as http:
        response = await _exchange(
            http, "GET", base + route, params=params, deadline_s=http_timeout, hint=hint
        )
    _check_status(response)
    return response


def _decode_public(key_type: KeyType, response: _Answer) -> bytes:
    want = _PUBLIC_LENGTH[key_type]
    if len(response.content) != want:
        raise KMSError(
            f"a {key_type} public key is {want} bytes, the KMS sent {len(response.content)}"
        )
    return bytes(response.content)


class KmsPublicClient:
    """Signed public keys from a KMS root's public listener.

    Args:
        url: the public listener (``http://127.0.0.1:1101``; ``host:port`` is accepted).
        signing_key: the 64-byte key every answer must be signed by, or a mapping from root seed
            version to that version's key (answers under an unpinned version are refused).
        transport: an httpx transport (tests pass ``httpx.ASGITransport``).
        timeout: seconds per request.
    """

    def __init__(
        self,
        url: str,
        *,
        signing_key: bytes | Mapping[int, bytes],
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.url = normalize_kms_url(url)
        self._pins = _Pins.of(signing_key)
        self._transport = transport
        self._timeout = timeout

    async def _get(self, route: str, params: dict[str, str]) -> tuple[_Answer, int | None]:
        response = await _kms_get(
            self.url, route, params, transport=self._transport, http_timeout=self._timeout
        )
        version = params.get("version")
        return response, self._pins.check(response, int(version) if version else None)

    async def public_key(
        self,
        key_type: KeyType,
        path: str,
        *,
        image_id: bytes | None = None,
        address: str | None = None,
        version: int | None = None,
    ) -> bytes:
        """The public key of ``key_type`` at ``path`` for an image id (or contract address).

        Raises:
            ServiceError: when the KMS cannot be reached or refuses.
            KMSError: when the answer is not signed by the pinned key or is malformed.
        """
        key, _ = await self.versioned_public_key(
            key_type, path, image_id=image_id, address=address, version=version
        )
        return key

    async def versioned_public_key(
        self,
        key_type: KeyType,
        path: str,
        *,
        image_id: bytes | None = None,
        address: str | None = None,
        version: int | None = None,
    ) -> tuple[bytes, int | None]:
        """:meth:`public_key`, and the root seed version the KMS says it derived it under (its
        signature then checked with that version's pinned key, unless one key was given for
        every version; ``None`` from a KMS that names none, as Oyster's): after a rotation,
        which version an enclave starting now derives from.

        Raises:
            ServiceError, KMSError: as :meth:`public_key`.
        """
        params = _query(image_id, address, path, version)
        response, answered = await self._get(f"/derive/{key_type}/public", params)
        return _decode_public(key_type, response), answered

    async def address(
        self,
        key_type: Literal["secp256k1", "ed25519"],
        path: str,
        *,
        image_id: bytes | None = None,
        address: str | None = None,
        version: int | None = None,
    ) -> str:
        """The Ethereum (secp256k1) or Solana (ed25519) address at ``path``.

        Raises:
            ServiceError, KMSError: as :meth:`public_key`.
        """
        if key_type not in _ADDRESS_ROUTE:
            raise InputError(f"only secp256k1 and ed25519 keys have addresses, not {key_type}")
        params = _query(image_id, address, path, version)
        route = f"/derive/{key_type}/address/{_ADDRESS_ROUTE[key_type]}"
        response, answered = await self._get(route, params)
        try:
            text = response.content.decode("ascii")
        except UnicodeDecodeError as exc:
            raise KMSError("the KMS answered an address that is not ASCII text") from exc
        # The signature covers sha256(uri || body) with no separator (Oyster's format), so the
        # root's signed answer for the URI of path p + s also signs s + its body as the answer
        # for path p: an address is accepted only in a form that rules that out.
        if key_type == "secp256k1":
            if not _ETHEREUM_ADDRESS.fullmatch(text):
                raise KMSError(
                    f"the KMS answered {terminal_text(text[:60])!r}, not an Ethereum address "
                    "(0x and 40 hex digits)",
                    hint=_FORGED_ADDRESS_HINT,
                )
            return text
        # A Solana address has no fixed length: it must be the one of the (fixed-length)
        # signed public key of the same path and version.
        if version is None and answered is not None:
            params = _query(image_id, address, path, answered)
        public, _ = await self._get("/derive/ed25519/public", params)
        if text != solana_address(_decode_public("ed25519", public)):
            raise KMSError(
                "the KMS's signed Solana address is not the address of its signed ed25519 "
                "public key for the same path",
                hint=_FORGED_ADDRESS_HINT,
            )
        return text


def init_params_public_key(
    url: str,
    image_id: bytes,
    *,
    signing_key: bytes | Mapping[int, bytes],
    version: int | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 5.0,
) -> bytes:
    """The X25519 key secret init params of ``image_id`` are sealed to (synchronous):
    :meth:`KmsPublicClient.public_key` of path ``oyster.init-params``, for blocking callers
    (image tooling). It only waits on one request, so it runs the async client on an event
    loop of its own (:func:`reef._fetch.run_blocking`).

    Raises:
        ServiceError: when the KMS cannot be reached or refuses.
        KMSError: when the answer is not signed by the pinned key.
    """
    client = KmsPublicClient(url, signing_key=signing_key, transport=transport, timeout=timeout)
    return run_blocking(
        client.public_key("x25519", INIT_PARAMS_KEY_PATH, image_id=image_id, version=version)
    )


@dataclass(frozen=True)
class VerifiedKmsIdentity:
    """A KMS root's identity, checked against its attestation.

    ``identities`` holds every version's keys (oldest first); ``current`` is the current one;
    ``attestation`` is the verified document of the root enclave (its ``image_id`` says which
    KMS code runs); ``chain_id`` is set when the root serves contract-based seeds.
    """

    url: str
    identities: tuple[KmsIdentity, ...]
    current_version: int
    chain_id: int | None
    rotation_admin: str
    attestation: VerifiedAttestation
    handovers: tuple[tuple[bytes, int], ...] = ()
    """Pending handover authorisations: (image id, expiry in Unix seconds), as the root's
    signed answer lists them (signed, not attested)."""

    @property
    def current(self) -> KmsIdentity:
        return self.identity(self.current_version)

    def identity(self, version: int) -> KmsIdentity:
        """The keys of ``version``.

        Raises:
            InputError: when the root has no such version.
        """
        for identity in self.identities:
            if identity.version == version:
                return identity
        raise InputError(f"the KMS has no version {version}")

    @property
    def signing_keys(self) -> dict[int, bytes]:
        """Version → signing key, what :class:`KmsPublicClient` pins."""
        return {identity.version: identity.signing_key for identity in self.identities}


def _parse_identities(info: Mapping[str, Any]) -> tuple[tuple[KmsIdentity, ...], KmsIdentity]:
    """Every version's identity in an ``/info`` answer, and the current one."""
    try:
        identities = tuple(KmsIdentity.from_json(item) for item in info["versions"])
        current = int(info["current_version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise KMSError("the KMS /info answer is malformed") from exc
    for identity in identities:
        if len(identity.signing_key) != 64 or len(identity.scallop_key) != 32:
            raise KMSError(f"the KMS /info keys of version {identity.version} have wrong lengths")
    for identity in identities:
        if identity.version == current:
            return identities, identity
    raise KMSError("the KMS /info answer names no current version among its versions")


async def fetch_identity(
    url: str,
    *,
    root: TrustedRoot,
    clock_ms: Callable[[], int] | None = None,
    image_id: bytes | None = None,
    max_age_ms: int = 300_000,
    transport: httpx.AsyncBaseTransport | None = None,
    http_timeout: float = 5.0,
) -> VerifiedKmsIdentity:
    """Learn a KMS root's keys from its attested ``/info``.

    The answer is accepted only with an attestation from ``root``, at most ``max_age_ms`` old when
    it arrives (``clock_ms``, the wall clock by default, is read then), carrying a fresh random
    nonce this call chose, whose ``public_key`` is the current Scallop key and whose
    ``user_data`` is :func:`identity_digest` of every listed version; with ``image_id``, the root
    enclave must also run that image.

    Raises:
        ServiceError: when the KMS cannot be reached.
        KMSError: when the answer is malformed or not attested.
        AttestationError: when the attestation is rejected.
    """
    from reef.attestation import Expectations, verify_nitro

    base = normalize_kms_url(url)
    nonce = os.urandom(32)
    response = await _kms_get(
        base, "/info", {"nonce": nonce.hex()}, transport=transport, http_timeout=http_timeout
    )
    try:
        info = response.json()
        document = bytes.fromhex(info["attestation"])
    except (ValueError, KeyError, TypeError) as exc:
        raise KMSError("the KMS /info answer is malformed") from exc
    if not document:
        raise KMSError(
            "the KMS serves its identity without an attestation",
            hint="pin its signing key explicitly with --verification-key",
        )
    identities, current = _parse_identities(info)
    chain_id = info.get("chain_id")
    if chain_id is not None and (not isinstance(chain_id, int) or isinstance(chain_id, bool)):
        raise KMSError("the KMS /info chain_id is not an integer")
    admin = info.get("rotation_admin", "")
    if not isinstance(admin, str):
        raise KMSError("the KMS /info rotation_admin is not a string")
    verified = verify_nitro(
        document,
        root=root,
        mode="live",
        now_ms=(clock_ms or wall_clock_ms)(),
        max_age_ms=max_age_ms,
        expect=Expectations(
            image_id=image_id,
            public_key=current.scallop_key,
            user_data=identity_digest(identities, chain_id=chain_id, admin=admin),
            nonce=nonce,
        ),
    )
    # The response is also signed by the current key (belt and braces against a mixed answer).
    _verify_signed(response, current.signing_key)
    try:
        handovers = tuple(
            (parse_bytes32(bytes.fromhex(str(h["image_id"])), name="image id"), int(h["expires"]))
            for h in info.get("handovers", [])
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise KMSError("the KMS /info handovers are malformed") from exc
    return VerifiedKmsIdentity(
        url=base,
        identities=identities,
        current_version=current.version,
        chain_id=chain_id,
        rotation_admin=admin,
        attestation=verified,
        handovers=handovers,
    )


async def _current_identity(
    http: httpx.AsyncClient,
    base: str,
    signing_keys: Mapping[int, bytes] | None,
    deadline_s: float,
) -> tuple[KmsIdentity, Any]:
    """The root's current keys from its ``/info`` (and the answer), checked against
    ``signing_keys`` if given.

    Raises:
        ServiceError: when the root cannot be reached or refuses.
        KMSError: when the answer is malformed, or not signed by the pinned key.
    """
    info_response = await _exchange(http, "GET", base + "/info", deadline_s=deadline_s, hint=_HINT)
    _check_status(info_response)
    try:
        info = info_response.json()
        _, identity = _parse_identities(info)
    except ValueError as exc:
        raise KMSError("the KMS /info answer is not JSON") from exc
    if signing_keys is not None:
        _Pins.of(dict(signing_keys)).check(info_response, None)
        if identity.signing_key != signing_keys.get(identity.version):
            raise KMSError(f"the KMS's current version {identity.version} is not the pinned one")
    return identity, info


async def authorise_handover(
    url: str,
    image_id: bytes,
    *,
    expires_s: int | None,
    sign: Callable[[bytes], bytes],
    revoke: bool = False,
    signing_keys: Mapping[int, bytes] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    http_timeout: float = 10.0,
) -> dict[str, Any]:
    """Let enclaves of ``image_id`` inherit a KMS root's seeds until ``expires_s`` (the admin's
    side of a handover: docs/kms.md, "Upgrading a root"). Returns the root's signed answer.

    The message signed names the root's current signing address, read from its ``/info``
    (checked against ``signing_keys`` when given), so it cannot be replayed on another root.
    With ``revoke`` the authorisation of ``image_id`` is withdrawn; ``expires_s`` None takes
    its expiry from the authorisations the root lists.

    Raises:
        ServiceError: when the root cannot be reached or refuses (401 not the admin, 400
            expired, 403 no admin).
        KMSError: when an answer is not signed by the root's current key.
    """
    from reef.kms._root import handover_message

    image = parse_bytes32(image_id, name="the new root's image id", hint=_IMAGE_ID_HINT)
    base = normalize_kms_url(url)
    async with httpx.AsyncClient(
        transport=transport, timeout=http_timeout, verify=tls_context()
    ) as http:
        identity, info = await _current_identity(http, base, signing_keys, http_timeout)
        if expires_s is None:
            expires_s = _kept_expiry(info, image)
        address = identity.signing_address
        signature = sign(handover_message(address, image, expires_s, revoke=revoke))
        response = await _exchange(
            http,
            "POST",
            base + "/admin/handover",
            body={
                "image_id": image.hex(),
                "expires": expires_s,
                "kms_signing_address": address,
                "signature": signature.hex(),
                "revoke": revoke,
            },
            deadline_s=http_timeout,
            hint=_HINT,
        )
    _check_status(response)
    _verify_signed(response, identity.signing_key)
    try:
        answer = response.json()
        kept = (str(answer["image_id"]), int(answer["expires"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise KMSError("the KMS handover answer is malformed") from exc
    if kept != (image.hex(), expires_s):
        raise KMSError("the KMS kept another authorisation than the one sent")
    return {
        "kms": base,
        "image_id": image.hex(),
        "expires": expires_s,
        "kms_signer": address,
        "revoked": revoke,
    }


def _kept_expiry(info: Any, image: bytes) -> int:
    """The expiry of the authorisation of ``image`` an ``/info`` answer lists.

    Raises:
        KMSError: when it lists none for that image.
    """
    try:
        for item in info.get("handovers", []):
            if str(item["image_id"]) == image.hex():
                return int(item["expires"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise KMSError("the KMS /info handovers are malformed") from exc
    raise KMSError(
        f"the KMS keeps no authorisation for image {image.hex()}",
        hint="reef kms info lists the authorisations it keeps",
    )


async def rotate_root(
    url: str,
    *,
    sign: Callable[[bytes], bytes],
    signing_keys: Mapping[int, bytes] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    http_timeout: float = 10.0,
) -> KmsIdentity:
    """Ask a KMS root to rotate; return the new current version's keys.

    Args:
        url: the root's public listener.
        sign: signs a message EIP-191 with the rotation admin's key (``r || s || v``).
        signing_keys: pinned keys by version; when given, the root's current identity must be
            signed by the pinned key of its version. Without, it is read from ``/info`` as is.
        transport: an httpx transport (tests).

    The answer is accepted only if signed by the previous current version's signing key.

    Raises:
        ServiceError: when the root cannot be reached or refuses (e.g. 401 not the admin).
        KMSError: when an answer is not signed by the expected key.
    """
    from reef.kms._root import rotation_message

    base = normalize_kms_url(url)
    async with httpx.AsyncClient(
        transport=transport, timeout=http_timeout, verify=tls_context()
    ) as http:
        identity, _ = await _current_identity(http, base, signing_keys, http_timeout)
        version = identity.version + 1
        signature = sign(rotation_message(identity.signing_address, version))
        response = await _exchange(
            http,
            "POST",
            base + "/admin/rotate",
            body={"version": version, "signature": signature.hex()},
            deadline_s=http_timeout,
            hint=_HINT,
        )
    _check_status(response)
    _verify_signed(response, identity.signing_key)
    try:
        new = KmsIdentity.from_json(response.json())
    except (ValueError, KeyError, TypeError) as exc:
        raise KMSError("the KMS rotation answer is malformed") from exc
    if new.version != version:
        raise KMSError(f"asked the KMS to rotate to version {version}, it reports {new.version}")
    return new
