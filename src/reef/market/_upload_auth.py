"""Who may upload an image: a signature by an account that holds funds on the chain.

An open store is a free disk for anyone who can reach it (issue 11 uploaded 50 MB unasked). An
upload therefore carries ``Authorization: ReefUpload <address>:<expires>:<size>:<signature>``,
an EIP-191 ``personal_sign`` by ``address`` over :func:`upload_message` (the image's SHA-256,
its size in bytes and an expiry a few minutes ahead). The store admits it when the signature
recovers to ``address``, the expiry is neither past nor too far ahead, the account holds funds
on the chain (anyone can make a key; funding one costs money) and the account's uploads stay
within its quota. The ledger of those uploads is shared by every store on one directory.

Only funded accounts of the chain the store serves can upload: exactly the ones that could pay
for a job running the image. The signature names the image and its size, so a captured header
uploads nothing but that image, and only until it expires: the store refuses a body of another
length before it is read (declared) or as soon as it passes the size (streamed). Without the
size, a captured header let anyone stream junk up to the signer's whole quota under the image's
name and hold it there (refused only at the end, by its hash), so the signer's own uploads were
refused as over quota meanwhile. The older form without ``<size>`` (``<address>:<expires>:
<signature>``, over the message without its size line) is still accepted, for any length.

Pure logic: the check of funds, the clock and the ledger of bytes per uploader are parameters.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reef.crypto import eip191_digest, recover_digest
from reef.encoding import parse_hex
from reef.errors import InputError, ReefError
from reef.home import replace_json

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

__all__ = [
    "DEFAULT_UPLOAD_QUOTA",
    "UPLOAD_SCHEME",
    "UploadDenied",
    "UploadLedger",
    "UploadPolicy",
    "upload_authorization",
    "upload_message",
]

UPLOAD_SCHEME = "ReefUpload"
DEFAULT_UPLOAD_QUOTA = 2 * 1024**3
"""Bytes of images one account may have uploaded to one store (2 GiB)."""
MAX_TTL_S = 600
"""How far ahead an authorization may expire: a captured one is useless after this."""


def upload_message(sha256: str, expires: int, size: int | None = None) -> bytes:
    """What an uploader signs (EIP-191) to upload the image ``sha256`` of ``size`` bytes until
    ``expires`` (any size when ``None``: the older form)."""
    sized = "" if size is None else f"size: {size}\n"
    return f"reef image upload\nsha256: {sha256}\n{sized}expires: {expires}".encode()


def upload_authorization(
    account: LocalAccount,
    sha256: str,
    *,
    size: int | None = None,
    ttl_s: int = 300,
    now: float | None = None,
) -> str:
    """The ``Authorization`` header value that lets ``account`` upload the image ``sha256`` of
    ``size`` bytes (reef's client always says it; ``None`` signs for a body of any length)."""
    from eth_account.messages import encode_defunct

    expires = int(time.time() if now is None else now) + ttl_s
    signed = account.sign_message(encode_defunct(upload_message(sha256, expires, size)))
    sized = "" if size is None else f"{size}:"
    return (
        f"{UPLOAD_SCHEME} {account.address.lower()}:{expires}:{sized}"
        f"0x{bytes(signed.signature).hex()}"
    )


class UploadDenied(ReefError):
    """An upload the store refuses; ``status`` is the HTTP status it answers."""

    def __init__(self, status: int, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class UploadLedger:
    """Bytes uploaded per account, kept in one JSON file beside the images (atomic rewrites).

    Several stores may serve one images directory (``reef up``'s and a ``reef store serve``, or
    two of the latter), so the file is the count, not this object's memory: it is read again
    whenever it changed (one ``stat`` per look), and each addition re-reads and rewrites it
    under an exclusive ``flock`` of ``<ledger>.lock``. Before, each store read it once and
    rewrote it whole from its own memory: the other's counts were lost, and an account had a
    full quota in each.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._seen: tuple[int, int, int] | None = None
        self._used: dict[str, int] = {}
        self._refresh()

    def _refresh(self) -> None:
        """Read the file again when it changed since the last read (another store wrote it)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._seen, self._used = None, {}
            return
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        try:
            raw = json.loads(self.path.read_text())
            self._used = {str(k): int(v) for k, v in dict(raw).items()}
        except FileNotFoundError:
            self._seen, self._used = None, {}
            return
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(
                f"the upload ledger {self.path} is unreadable: {exc}",
                hint="move it aside; the store then counts uploads from zero",
            ) from exc
        self._seen = seen

    def used(self, address: str) -> int:
        self._refresh()
        return self._used.get(address, 0)

    def add(self, address: str, size: int) -> None:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._seen = None  # read what another store may have added, under the lock
            self._refresh()
            self._used[address] = self._used.get(address, 0) + size
            replace_json(self.path, self._used, indent=1, sort_keys=True)
        finally:
            os.close(fd)  # releases the lock


@dataclass(frozen=True, kw_only=True)
class UploadPolicy:
    """Which uploads a store admits. :meth:`anyone` for a private store; otherwise funded
    accounts within a quota."""

    is_funded: Callable[[str], Awaitable[bool]] | None
    """Whether an address holds funds on the chain; ``None`` admits anyone unsigned."""
    quota_bytes: int = DEFAULT_UPLOAD_QUOTA
    clock: Callable[[], float] = field(default=time.time)
    chain: str = "the chain"
    """How refusals name the chain (``chain 31337``)."""

    @classmethod
    def anyone(cls) -> UploadPolicy:
        """No authorization: for a store only trusted clients reach (tests, a private network)."""
        return cls(is_funded=None)

    @property
    def open(self) -> bool:
        return self.is_funded is None

    async def admit(
        self, header: str | None, sha256: str, size: int | None, ledger: UploadLedger
    ) -> str | None:
        """The uploader's address (``None`` on an open store) once the upload may proceed
        (:meth:`authorize`, without the signed size)."""
        return (await self.authorize(header, sha256, size, ledger))[0]

    async def authorize(
        self, header: str | None, sha256: str, size: int | None, ledger: UploadLedger
    ) -> tuple[str | None, int | None]:
        """The uploader's address (``None`` on an open store) and the size it signed (``None``
        when it signed none) once the upload may proceed.

        ``size`` is the bytes the upload will add (its declared length; checked again as bytes
        arrive); when ``None``, the signed size counts against the quota. Whether the body has
        the signed size is the store's to check (:func:`wrong_size`).

        Raises:
            UploadDenied: 401 (missing or malformed), 403 (bad signature, expired, unfunded) or
                413 (over the uploader's quota), with what to do.
        """
        if self.is_funded is None:
            return None, None
        address, expires, signed_size, signature = _parse(header)
        now = int(self.clock())
        if expires < now:
            raise UploadDenied(
                403,
                "the upload authorization has expired",
                hint="sign a new one (reef signs each upload as it sends it)",
            )
        if expires > now + MAX_TTL_S:
            raise UploadDenied(
                403,
                f"the upload authorization expires more than {MAX_TTL_S} s ahead",
                hint=f"sign one that expires within {MAX_TTL_S} s",
            )
        try:
            message = upload_message(sha256, expires, signed_size)
            signer = recover_digest(eip191_digest(message), signature)
        except InputError as exc:
            raise UploadDenied(403, f"the upload signature is invalid: {exc.message}") from exc
        if signer.address != address:
            raise UploadDenied(
                403,
                f"the upload is not signed by {address} (nor for this image)",
                hint="sign the image's SHA-256 with the account you name",
            )
        if not await self.is_funded(address):
            raise UploadDenied(
                403,
                f"{address} holds no funds on {self.chain}: only accounts that could pay for a "
                "job may upload images",
                hint="fund the account, or upload with one that is (--key FILE)",
            )
        self.check_quota(address, (signed_size if size is None else size) or 0, ledger)
        return address, signed_size

    def check_quota(
        self, address: str | None, size: int, ledger: UploadLedger, *, pending: int = 0
    ) -> None:
        """Raise 413 when ``size`` more bytes would put ``address`` over its quota, counting the
        ``pending`` bytes its other uploads under way hold already."""
        if address is None:
            return
        used = ledger.used(address)
        if used + pending + size > self.quota_bytes:
            under_way = f" and {pending} in uploads under way" if pending else ""
            raise UploadDenied(
                413,
                f"{address} has uploaded {used} bytes to this store{under_way}; {size} more "
                f"would pass its quota of {self.quota_bytes} bytes",
                hint="ask the store's operator for more, or reuse an image already uploaded",
            )


def wrong_size(signed: int, instead: str) -> str:
    """Why a body of another length than its authorization's is refused."""
    return (
        f"the upload is signed for {signed} bytes, and {instead}: only the signed image, "
        "whole, may be sent under its signature"
    )


def _parse(header: str | None) -> tuple[str, int, int | None, bytes]:
    hint = (
        f"send `Authorization: {UPLOAD_SCHEME} <address>:<expires>:<size>:<signature>` "
        "(reef deploy does)"
    )
    if not header:
        raise UploadDenied(401, "uploads to this store need an authorization", hint=hint)
    scheme, _, value = header.partition(" ")
    parts = value.strip().split(":")
    if scheme != UPLOAD_SCHEME or len(parts) not in (3, 4):
        raise UploadDenied(401, f"not a {UPLOAD_SCHEME} authorization", hint=hint)
    address, expires, signature = parts[0], parts[1], parts[-1]
    size = parts[2] if len(parts) == 4 else None
    if size is not None and (not size.isdigit() or len(size) > 15):
        raise UploadDenied(401, "the authorization's size is not a number of bytes", hint=hint)
    if len(address) != 42 or not address.startswith("0x"):
        raise UploadDenied(401, "the authorization's address is not 0x + 40 hex digits", hint=hint)
    if not expires.isdigit() or len(expires) > 12:
        raise UploadDenied(401, "the authorization's expiry is not unix seconds", hint=hint)
    try:
        raw = parse_hex(signature, name="signature", length=65)
        int(address, 16)
    except (InputError, ValueError) as exc:
        raise UploadDenied(401, f"malformed authorization: {exc}", hint=hint) from exc
    return address.lower(), int(expires), None if size is None else int(size), raw
