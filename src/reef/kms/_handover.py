"""A new KMS root's side of a handover: inheriting an old root's seeds (docs/kms.md, "Upgrading
a root").

A root's seeds are sealed to its image id, which a reef upgrade changes (PCR1 is the runtime).
With an empty store and ``--inherit-from``, :func:`inherit_root_seeds` connects to the old root's
Scallop listener with a fresh key its own TEE attests, requires the old root's live attestation
(its image, or its key, pinned: :class:`HandoverSource`), asks ``GET /handover`` (which the old
root answers only to an image its admin authorised, :mod:`reef.kms._scallop`), checks that the
seeds received are exactly the identity the old root attested, and seals them. A restarted root
whose seeds were inherited does not ask again; a store holding seeds it did not inherit is never
overwritten.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reef.encoding import parse_bytes32
from reef.errors import InputError, KMSError
from reef.kms._derive import _IMAGE_ID_HINT
from reef.kms._scallop import DEFAULT_MAX_AGE_MS, _channel_get

if TYPE_CHECKING:
    from reef.attestation import Attester, TrustedRoot, VerifiedAttestation
    from reef.kms._keyring import RootKeyring
    from reef.kms._store import SeedStore

__all__ = ["HandoverSource", "inherit_root_seeds"]


@dataclass(frozen=True, kw_only=True)
class HandoverSource:
    """The old KMS root a new root inherits its seeds from (``--inherit-from``).

    Attributes:
        host, port: the old root's Scallop listener.
        image_id: the old root's image id: its attestation must name it.
        scallop_key: a Scallop key of the old root (any version, as ``reef kms info`` lists
            them): the seeds received must include it. Many roots may run one image (an
            example's, say); the key names one root.

    Raises:
        InputError: when neither is given, or one has the wrong length.
    """

    host: str
    port: int
    image_id: bytes | None = None
    scallop_key: bytes | None = None

    def __post_init__(self) -> None:
        if self.image_id is None and self.scallop_key is None:
            raise InputError(
                "a root inherits only from an old root it can name",
                hint="give --inherit-image OLD_IMAGE_ID and/or --inherit-key OLD_SCALLOP_KEY",
            )
        if self.image_id is not None:
            parse_bytes32(self.image_id, name="the old root's image id", hint=_IMAGE_ID_HINT)
        if self.scallop_key is not None and len(self.scallop_key) != 32:
            raise InputError(f"a Scallop key is 32 bytes, got {len(self.scallop_key)}")
        if not 0 < self.port < 65536:
            raise InputError(f"the old root's Scallop port {self.port} is not a TCP port")

    @classmethod
    def parse(
        cls, endpoint: str, *, image_id: str | None = None, scallop_key: str | None = None
    ) -> HandoverSource:
        """From ``HOST:PORT`` and hex values as an operator types them.

        Raises:
            InputError: naming what is malformed.
        """
        from reef.encoding import parse_hex

        host, _, port = endpoint.strip().rpartition(":")
        if not host or not port.isdigit():
            raise InputError(
                f"--inherit-from must be HOST:PORT (the old root's Scallop listener), "
                f"got {endpoint!r}"
            )
        return cls(
            host=host.strip("[]"),
            port=int(port),
            image_id=parse_hex(image_id, name="--inherit-image", length=32) if image_id else None,
            scallop_key=(
                parse_hex(scallop_key, name="--inherit-key", length=32) if scallop_key else None
            ),
        )

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


_HANDOVER_HINT = (
    "the old root must run, attest under one of this root's --trust roots, and (with "
    "--inherit-image) run that image; it also checks this root's attestation"
)
_HANDOVER_LABEL = b"reef.kms.handover.v1"


def _received_keyring(
    body: bytes, source: HandoverSource, attested: VerifiedAttestation, root_key: bytes
) -> RootKeyring:
    """The keyring an old root sent, checked to be exactly the identity it attested.

    Raises:
        KMSError: when the answer is malformed, is not what the root attested, or lacks the
            pinned key.
    """
    from reef.kms._derive import RootSeed
    from reef.kms._keyring import RootKeyring, identity_digest

    try:
        data = json.loads(body)
        seeds = [
            RootSeed(bytes.fromhex(str(item["seed"])), int(item["version"]))
            for item in data["versions"]
        ]
        keyring = RootKeyring(seeds)
        chain_id = data.get("chain_id")
        admin = str(data.get("rotation_admin") or "")
    except (ValueError, KeyError, TypeError) as exc:
        raise KMSError(f"the old root's handover answer is malformed ({exc})") from exc
    if chain_id is not None and (not isinstance(chain_id, int) or isinstance(chain_id, bool)):
        raise KMSError("the old root's handover answer has a chain_id that is not an integer")
    # The old root's attestation names its Scallop key (this channel's) and commits to every
    # version's keys, its chain and its admin: seeds that derive another identity were not sent
    # by the root that attested, whatever the channel says.
    digest = identity_digest(keyring.identities(), chain_id=chain_id, admin=admin)
    if not hmac.compare_digest(keyring.identity().scallop_key, root_key) or not (
        hmac.compare_digest(digest, attested.user_data)
    ):
        raise KMSError(
            "the seeds the old root sent are not the identity it attested",
            hint="it may have rotated while handing over: start this root again",
        )
    if source.scallop_key is not None and not any(
        hmac.compare_digest(i.scallop_key, source.scallop_key) for i in keyring.identities()
    ):
        raise KMSError(
            f"the root at {source.endpoint} is not the pinned one: none of its versions has "
            f"the Scallop key {source.scallop_key.hex()} (--inherit-key)",
            hint="check --inherit-from, or the key (reef kms info lists the old root's keys)",
        )
    return keyring


async def inherit_root_seeds(
    store: SeedStore,
    source: HandoverSource,
    *,
    attester: Attester,
    roots: Sequence[TrustedRoot],
    max_age_ms: int = DEFAULT_MAX_AGE_MS,
    clock: Callable[[], int] | None = None,
    deadline_s: float = 10.0,
) -> str:
    """Fill an empty ``store`` with the seeds of the old root at ``source``; say what was done.

    With seeds already in the store: if they were inherited (a restart), nothing is asked of
    the old root; otherwise this refuses (they are never overwritten, nor served as the old
    root's). With none: a fresh X25519 key, attested by ``attester``, opens a Scallop channel to
    the old root, whose live attestation must chain to one of ``roots`` (and name
    ``source.image_id``); the old root answers only if its admin authorised this enclave's image;
    the answer must be exactly the identity the old root attested (and hold
    ``source.scallop_key``); then it is sealed with :meth:`SeedStore.adopt`.

    Raises:
        KMSError: when the old root cannot be reached, refuses, or sends anything else, or the
            store holds seeds this root did not inherit.
        InputError: when no root is given.
    """
    from reef.crypto import generate_x25519
    from reef.scallop._policy import PeerPolicy, PolicyStore

    if store.exists():
        origin = store.inherited_from()
        if origin is None:
            raise KMSError(
                f"{store.path} already holds root seeds this root did not inherit: it will "
                f"neither overwrite them with the seeds of the root at {source.endpoint} nor "
                "serve them as that root's",
                hint="a new root inherits into an empty --state-dir; start it without "
                "--inherit-from to serve these seeds, or move them away only if you mean to "
                "lose every key derived from them",
            )
        return f"the sealed seeds were inherited from image {origin.hex()}: not asking again"
    if not roots:
        raise InputError("inheriting seeds needs a --trust root to check the old root against")
    options: dict[str, Any] = {
        "roots": tuple(roots),
        "image_ids": {source.image_id} if source.image_id is not None else (),
        "max_age_ms": max_age_ms,
        "mode": "live",
    }
    if clock is not None:
        options["clock"] = clock
    policy = PolicyStore(PeerPolicy(**options), cache=False)
    secret, public = generate_x25519()

    async def auther() -> bytes:
        return await asyncio.to_thread(
            attester, public_key=public, user_data=_HANDOVER_LABEL, nonce=b""
        )

    status, _, body, peer = await _channel_get(
        source.host,
        source.port,
        "/handover",
        static_key=secret,
        policy=policy,
        auther=auther,
        deadline_s=deadline_s,
        hint=_HANDOVER_HINT,
        max_answer=1024 * 1024,
    )
    if status != 200:
        text = body.decode(errors="replace").strip()[:400]
        raise KMSError(
            f"the old root at {source.endpoint} refused the handover ({status}): {text}",
            hint="the old root's admin authorises this root's image first: reef kms handover "
            "--kms OLD_URL --to THIS_IMAGE_ID --admin-key -",
        )
    attested = peer.attestation
    if attested is None:
        raise KMSError(
            f"the root at {source.endpoint} did not attest itself",
            hint="the old root must run in an enclave (or with --attestation-url)",
        )
    keyring = _received_keyring(body, source, attested, peer.static_key)
    await asyncio.to_thread(store.adopt, keyring, origin=attested.image_id)
    return (
        f"inherited root seed versions {', '.join(map(str, keyring.versions))} (current "
        f"{keyring.current_version}) from image {attested.image_id.hex()} at {source.endpoint}"
    )
