"""The KMS root's state, independent of transports: keyring, sealed store, rotation, identity.

Both listeners (Scallop ``/derive`` and the public HTTP endpoints) read the keyring through one
:class:`KmsRoot`, so a rotation is seen by both at once. Rotation is an authorised operation: the
root is configured with an *admin* Ethereum address (part of its command line, hence of its
measured configuration), and rotates only on an EIP-191 signature by that address over a message
naming this root's current signing address and the next version number (so a signature can be
neither replayed on another root nor reused for a later rotation).
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from reef.crypto import eip191_digest, recover_digest
from reef.errors import InputError, KMSError, MisuseError
from reef.kms._derive import ROOT_SEED_LENGTH, RootSeed
from reef.kms._keyring import RootKeyring, identity_digest

if TYPE_CHECKING:
    from reef.attestation import Attester
    from reef.kms._approval import ImageApproval
    from reef.kms._store import SeedStore

__all__ = ["KmsRoot", "rotation_message"]

_MAX_NONCE = 64


def rotation_message(signing_address: str, version: int) -> bytes:
    """The text an admin signs (EIP-191) to rotate the root whose current signer is given."""
    return (
        f"reef-kms rotate\nkms signing address: {signing_address.lower()}\nnew version: {version}"
    ).encode()


class KmsRoot:
    """A KMS root's keys and policy.

    Args:
        keyring: the root seeds (from :meth:`SeedStore.load_or_create`, or given in tests).
        store: where rotations are persisted; None keeps rotations in memory only.
        approval: the on-chain check for contract seeds; None disables the contract flavour.
        attester: signs this root's identity attestation (``/info``); None serves it unattested.
        admin: the Ethereum address allowed to rotate; None disables rotation over HTTP.
        random: the source of new seeds when there is no store.
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
    ) -> None:
        self._keyring = keyring
        self._store = store
        self.approval = approval
        self.attester = attester
        self.admin = admin.lower() if admin else None
        self._random = random
        self._lock = asyncio.Lock()
        self._on_rotate: list[Callable[[RootKeyring], Awaitable[None]]] = []

    @classmethod
    def open(
        cls,
        store: SeedStore,
        *,
        approval: ImageApproval | None = None,
        attester: Attester | None = None,
        admin: str | None = None,
    ) -> KmsRoot:
        """Unseal the root's seeds from ``store``, creating version 0 on first start.

        Raises:
            ConfigError, KMSError: when the sealed file is not one, or does not unseal here.
        """
        return cls(
            store.load_or_create(), store=store, approval=approval, attester=attester, admin=admin
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
            "attestation": document.hex(),
        }
