"""The KMS root's state, independent of transports: keyring, sealed store, rotation, identity.

Both listeners (Scallop ``/derive`` and the public HTTP endpoints) read the keyring through one
:class:`KmsRoot`, so a rotation is seen by both at once. Rotation is an authorised operation: the
root is configured with an *admin* Ethereum address (part of its command line, hence of its
measured configuration), and rotates only on an EIP-191 signature by that address over a message
naming this root's current signing address and the next version number (so a signature can be
neither replayed on another root nor reused for a later rotation).

A *handover* is the other authorised operation: the same admin signs (EIP-191) a message naming
this root's current signing address, an image id and an expiry
(:func:`handover_message`), and until that expiry the root hands its seeds, every version, over
Scallop to an enclave that attests that image live (a new root of the same KMS after a reef
upgrade, or with another configuration: ``docs/kms.md``, "Upgrading a root"). The signature
cannot be part of the new image (it names the new image's id); it reaches the root through
``POST /admin/handover`` and is kept beside the sealed seeds, so a restart does not lose it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from reef._clock import format_time, wall_clock_ms
from reef.crypto import eip191_digest, recover_digest
from reef.errors import InputError, KMSError, MisuseError
from reef.kms._derive import ROOT_SEED_LENGTH, RootSeed
from reef.kms._keyring import RootKeyring, identity_digest

if TYPE_CHECKING:
    from reef.attestation import Attester
    from reef.kms._approval import ImageApproval
    from reef.kms._store import SeedStore

__all__ = [
    "MAX_HANDOVER_S",
    "HandoverGrant",
    "KmsRoot",
    "handover_message",
    "rotation_message",
]

_log = logging.getLogger("reef.kms.root")

_MAX_NONCE = 64
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
MAX_HANDOVER_S = 7 * 86400
"""The longest an admin's handover authorisation may stay valid (a week): long enough to build
and start the new root, short enough that a forgotten one does not stand for ever."""
_MAX_GRANTS = 16
"""Handover authorisations a root keeps (the newest for each image; expired ones dropped)."""


def rotation_message(signing_address: str, version: int) -> bytes:
    """The text an admin signs (EIP-191) to rotate the root whose current signer is given."""
    return (
        f"reef-kms rotate\nkms signing address: {signing_address.lower()}\nnew version: {version}"
    ).encode()


def handover_message(
    signing_address: str, image_id: bytes, expires_s: int, *, revoke: bool = False
) -> bytes:
    """The text an admin signs (EIP-191) to let enclaves of ``image_id`` inherit the seeds of
    the root whose current signer is ``signing_address``, until Unix time ``expires_s``; with
    ``revoke``, to withdraw that very authorisation (a revocation names its expiry, so replayed
    later it cannot withdraw a newer authorisation of the same image)."""
    return (
        f"reef-kms handover{' revoke' if revoke else ''}\n"
        f"kms signing address: {signing_address.lower()}\n"
        f"target image id: {image_id.hex()}\nexpires: {expires_s}"
    ).encode()


@dataclass(frozen=True)
class HandoverGrant:
    """An admin's authorisation to hand this root's seeds to enclaves of ``image_id``.

    Attributes:
        image_id: the image (32 bytes) whose live-attested enclaves may inherit the seeds.
        expires_s: Unix seconds after which the grant is void.
        signing_address: the root signing address the admin's message names.
        signature: the admin's 65-byte EIP-191 signature over :func:`handover_message`.
        revoke: the admin withdraws the authorisation of this image and expiry instead.
    """

    image_id: bytes
    expires_s: int
    signing_address: str
    signature: bytes
    revoke: bool = False

    @property
    def message(self) -> bytes:
        return handover_message(
            self.signing_address, self.image_id, self.expires_s, revoke=self.revoke
        )

    def signer(self) -> str:
        """The address that signed the grant.

        Raises:
            KMSError: when the signature is malformed.
        """
        try:
            return recover_digest(eip191_digest(self.message), self.signature).address
        except InputError as exc:
            raise KMSError(f"the handover signature is malformed: {exc.message}") from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id.hex(),
            "expires": self.expires_s,
            "kms_signing_address": self.signing_address,
            "signature": self.signature.hex(),
            **({"revoke": True} if self.revoke else {}),
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> HandoverGrant:
        """Read :meth:`to_json` output (a request body, or the root's own file).

        Raises:
            InputError: when a field is missing or malformed.
        """
        from reef.encoding import parse_hex

        try:
            expires = item["expires"]
            address = item["kms_signing_address"]
            if not isinstance(expires, int) or isinstance(expires, bool):
                raise InputError("expires must be an integer (Unix seconds)")
            if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
                raise InputError("kms_signing_address must be an address: 0x and 40 hex digits")
            revoke = item.get("revoke", False)
            if not isinstance(revoke, bool):
                raise InputError("revoke must be true or false")
            return cls(
                parse_hex(str(item["image_id"]), name="image_id", length=32),
                expires,
                address.lower(),
                parse_hex(str(item["signature"]), name="signature", length=65),
                revoke,
            )
        except (KeyError, TypeError) as exc:
            raise InputError(
                f"malformed handover authorisation (missing {exc})",
                hint="send JSON {image_id, expires, kms_signing_address, signature}",
            ) from exc


class KmsRoot:
    """A KMS root's keys and policy.

    Args:
        keyring: the root seeds (from :meth:`SeedStore.load_or_create`, or given in tests).
        store: where rotations are persisted; None keeps rotations in memory only.
        approval: the on-chain check for contract seeds; None disables the contract flavour.
        attester: signs this root's identity attestation (``/info``); None serves it unattested.
        admin: the Ethereum address allowed to rotate; None disables rotation over HTTP.
        random: the source of new seeds when there is no store.
        clock_ms: the wall clock in Unix milliseconds (handover expiries are read against it).
    """

    def __init__(
        self,
        keyring: RootKeyring,
        *,
        store: SeedStore | None = None,
        approval: ImageApproval | None = None,
        attester: Attester | None = None,
        admin: str | None = None,
        random: Callable[[int], bytes] = os.urandom,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._keyring = keyring
        self._store = store
        self.approval = approval
        self.attester = attester
        self.admin = _admin_address(admin) if admin else None
        self._random = random
        self._clock_ms = clock_ms
        self._lock = asyncio.Lock()
        self._on_rotate: list[Callable[[RootKeyring], Awaitable[None]]] = []
        self._grants: dict[bytes, HandoverGrant] = {}
        if store is not None:
            self._grants = self._kept_grants(store.load_handovers())

    @classmethod
    def open(
        cls,
        store: SeedStore,
        *,
        approval: ImageApproval | None = None,
        attester: Attester | None = None,
        admin: str | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> KmsRoot:
        """Unseal the root's seeds from ``store``, creating version 0 on first start; the
        handover authorisations kept beside them that still hold are read back.

        Raises:
            ConfigError, KMSError: when the sealed file is not one, or does not unseal here.
        """
        return cls(
            store.load_or_create(),
            store=store,
            approval=approval,
            attester=attester,
            admin=admin,
            clock_ms=clock_ms,
        )

    def __repr__(self) -> str:
        return f"KmsRoot({self._keyring!r})"

    @property
    def keyring(self) -> RootKeyring:
        return self._keyring

    @property
    def chain_id(self) -> int | None:
        """The chain contract seeds are bound to, or None without the contract flavour."""
        return self.approval.chain_id if self.approval is not None else None

    def on_rotate(self, callback: Callable[[RootKeyring], Awaitable[None]]) -> None:
        """Run ``await callback(new_keyring)`` after each rotation (the server re-keys Scallop)."""
        self._on_rotate.append(callback)

    async def rotate(self, *, version: int | None = None) -> RootKeyring:
        """Add a fresh seed as the next version, persist it (sealed) and make it current.

        Args:
            version: the version this rotation must create, checked under the rotation lock:
                an admin's signature names one version, and copies of it sent at once must not
                each rotate (each checks :meth:`check_rotation` before any has ended).

        Raises:
            InputError: when ``version`` is given and is not the next one.
        """
        async with self._lock:
            expected = self._keyring.current_version + 1
            if version is not None and version != expected:
                raise InputError(f"the next version of this KMS is {expected}, not {version}")
            if self._store is not None:
                self._keyring = await run_in_threadpool(self._store.rotate)
            else:
                seed = RootSeed(self._random(ROOT_SEED_LENGTH), self._keyring.current_version + 1)
                self._keyring = self._keyring.with_version(seed)
            keyring = self._keyring
            for callback in self._on_rotate:
                await callback(keyring)
            return keyring

    def identity_attestation(
        self, nonce: bytes = b"", *, keyring: RootKeyring | None = None
    ) -> bytes:
        """A document for the identity of ``keyring`` (default: the current one, see
        :meth:`info`); empty without an attester. Blocking (an NSM call)."""
        if self.attester is None:
            return b""
        keyring = keyring or self._keyring
        return self.attester(
            public_key=keyring.identity().scallop_key,
            user_data=identity_digest(
                keyring.identities(), chain_id=self.chain_id, admin=self.admin or ""
            ),
            nonce=nonce,
        )

    def check_rotation(self, version: int, signature: bytes) -> None:
        """Check that the admin signed the rotation to ``version`` of this root.

        Raises:
            MisuseError: when rotation is not enabled (no admin configured).
            InputError: when ``version`` is not the next one.
            KMSError: when the signature is not the admin's.
        """
        if self.admin is None:
            raise MisuseError(
                "rotation over HTTP is disabled on this KMS root",
                hint="start the root with --admin ADDRESS to allow signed rotations",
            )
        expected = self._keyring.current_version + 1
        if version != expected:
            raise InputError(f"the next version of this KMS is {expected}, not {version}")
        message = rotation_message(self._keyring.identity().signing_address, version)
        try:
            signer = recover_digest(eip191_digest(message), signature).address
        except InputError as exc:
            raise KMSError(f"the rotation signature is malformed: {exc.message}") from exc
        if not hmac.compare_digest(signer, self.admin):
            raise KMSError(f"the rotation is signed by {signer}, not by this KMS's admin")

    # --- handover ----------------------------------------------------------------------------

    def _kept_grants(self, items: Iterable[Mapping[str, Any]]) -> dict[bytes, HandoverGrant]:
        """The grants of a stored list that still hold: signed by this root's admin, naming one
        of this root's signing addresses, unexpired (a tampered file only loses grants)."""
        addresses = {identity.signing_address for identity in self._keyring.identities()}
        now_s = self._clock_ms() // 1000
        kept: dict[bytes, HandoverGrant] = {}
        for item in items:
            try:
                grant = HandoverGrant.from_json(item)
                signer = grant.signer()
            except (InputError, KMSError) as exc:
                _log.warning("dropping a stored handover authorisation: %s", exc)
                continue
            if (
                self.admin is not None
                and not grant.revoke
                and hmac.compare_digest(signer, self.admin)
                and grant.signing_address in addresses
                and grant.expires_s > now_s
            ):
                kept[grant.image_id] = grant
        return kept

    def _prune(self) -> None:
        now_s = self._clock_ms() // 1000
        for image, grant in list(self._grants.items()):
            if grant.expires_s <= now_s:
                del self._grants[image]

    def handovers(self) -> tuple[HandoverGrant, ...]:
        """The handover authorisations that hold now, soonest to expire first."""
        self._prune()
        return tuple(sorted(self._grants.values(), key=lambda g: g.expires_s))

    def check_handover(self, grant: HandoverGrant) -> None:
        """Check that this root's admin signed ``grant`` for this root, and that it holds.

        Raises:
            MisuseError: when handovers are disabled (no admin configured).
            InputError: when the expiry is past, or more than :data:`MAX_HANDOVER_S` ahead.
            KMSError: when the grant names another root, or is not signed by the admin.
        """
        if self.admin is None:
            raise MisuseError(
                "handovers are disabled on this KMS root (it has no admin)",
                hint="only a root started with --admin ADDRESS can authorise a new image",
            )
        current = self._keyring.identity().signing_address
        if not hmac.compare_digest(grant.signing_address, current):
            raise KMSError(
                f"the authorisation is for the KMS root whose signing address is "
                f"{grant.signing_address}, not this one ({current})",
                hint="sign it for this root: reef kms handover reads the address from its /info",
            )
        now_s = self._clock_ms() // 1000
        if grant.revoke:
            pass  # a revocation names the authorisation it withdraws, expired or not
        elif grant.expires_s <= now_s:
            raise InputError(
                f"the authorisation expired at {format_time(grant.expires_s, utc=True)} "
                f"(now {format_time(now_s, utc=True)})",
                hint="sign a new one with a later --expires",
            )
        elif grant.expires_s > now_s + MAX_HANDOVER_S:
            raise InputError(
                f"the authorisation expires {grant.expires_s - now_s} s from now, more than "
                f"the {MAX_HANDOVER_S} s a root accepts",
                hint="authorise the new image shortly before you start it",
            )
        signer = grant.signer()
        if not hmac.compare_digest(signer, self.admin):
            raise KMSError(f"the handover is signed by {signer}, not by this KMS's admin")

    async def authorise_handover(self, grant: HandoverGrant) -> None:
        """Keep ``grant`` (checked by :meth:`check_handover`): it replaces an earlier one for
        the same image, and is written beside the sealed seeds when the root has a store. A
        revocation removes the authorisation it names.

        Raises:
            MisuseError, InputError, KMSError: as :meth:`check_handover`; InputError also when
                a revocation names no authorisation this root keeps.
        """
        self.check_handover(grant)
        async with self._lock:
            self._prune()
            if grant.revoke:
                kept = self._grants.get(grant.image_id)
                if kept is None or kept.expires_s != grant.expires_s:
                    raise InputError(
                        f"this root keeps no authorisation for image {grant.image_id.hex()} "
                        f"until {format_time(grant.expires_s, utc=True)} to revoke",
                        hint="reef kms info lists the authorisations it keeps",
                    )
                del self._grants[grant.image_id]
            else:
                self._grants[grant.image_id] = grant
            while len(self._grants) > _MAX_GRANTS:
                soonest = min(self._grants.values(), key=lambda g: g.expires_s)
                del self._grants[soonest.image_id]
            if self._store is not None:
                items = [g.to_json() for g in self._grants.values()]
                await run_in_threadpool(self._store.save_handovers, items)
        _log.info(
            "image %s %s",
            grant.image_id.hex(),
            "may no longer inherit this root's seeds"
            if grant.revoke
            else f"may inherit this root's seeds until {format_time(grant.expires_s, utc=True)}",
        )

    def handover_grant(self, image_id: bytes) -> HandoverGrant:
        """The authorisation that lets enclaves of ``image_id`` inherit the seeds now.

        Raises:
            KMSError: when there is none (never authorised, or expired).
        """
        now_s = self._clock_ms() // 1000
        grant = self._grants.get(bytes(image_id))
        if grant is not None and grant.expires_s > now_s:
            return grant
        if grant is not None:
            raise KMSError(
                f"the authorisation for image {image_id.hex()} to inherit this KMS root's seeds "
                f"expired at {format_time(grant.expires_s, utc=True)}",
                hint="the root's admin authorises it again: reef kms handover --to IMAGE_ID",
            )
        raise KMSError(
            f"image {image_id.hex()} is not authorised to inherit this KMS root's seeds",
            hint="the root's admin authorises it first: reef kms handover --kms URL --to "
            "IMAGE_ID --admin-key -",
        )

    def handover_answer(self) -> bytes:
        """What an authorised new root receives: every version's seed, and the configuration
        the root's attestation commits to (so the receiver can check it got what was attested)."""
        keyring = self._keyring
        return json.dumps(
            {
                "current_version": keyring.current_version,
                "versions": [
                    {"version": v, "seed": keyring.seed(v).seed.hex()} for v in keyring.versions
                ],
                "chain_id": self.chain_id,
                "rotation_admin": self.admin or "",
            }
        ).encode()

    async def info(self, nonce: bytes = b"") -> dict[str, Any]:
        """This root's public identity: every version's keys, and an attestation binding them.

        The attestation (when an attester is configured) has ``public_key`` = the current Scallop
        key, ``user_data`` = :func:`identity_digest` of every version's keys, the chain and the
        rotation admin, and the caller's ``nonce``.

        Raises:
            InputError: when the nonce is over 64 bytes.
        """
        if len(nonce) > _MAX_NONCE:
            raise InputError(f"nonce is at most {_MAX_NONCE} bytes, got {len(nonce)}")
        keyring = self._keyring
        identities = keyring.identities()
        document = await run_in_threadpool(
            lambda: self.identity_attestation(nonce, keyring=keyring)
        )
        return {
            "current_version": keyring.current_version,
            "versions": [identity.to_json() for identity in identities],
            "chain_id": self.chain_id,
            "rotation_admin": self.admin or "",
            "handovers": [
                {"image_id": g.image_id.hex(), "expires": g.expires_s} for g in self.handovers()
            ],
            "attestation": document.hex(),
        }


_ADDRESS = re.compile(r"(0x)?[0-9a-fA-F]{40}")


def _admin_address(value: str) -> str:
    """``--admin`` as the root compares signers with it (``0x`` + lower-case hex), checked when
    the root is made: a typo found at the first rotation would be a 500 for the admin.

    Raises:
        InputError: ``value`` is not a 20-byte hex address.
    """
    if not _ADDRESS.fullmatch(value):
        raise InputError(
            f"--admin {value!r} is not an Ethereum address",
            hint="give the admin's address as 0x and 40 hex digits (the account that signs "
            "`reef kms rotate` and `reef kms handover`)",
        )
    return "0x" + value.removeprefix("0x").lower()
