"""Who may upload an image: a signature by an account that holds funds on the chain.

An open store is a free disk for anyone who can reach it (issue 11 uploaded 50 MB unasked). An
upload therefore carries ``Authorization: ReefUpload <address>:<expires>:<signature>``, an
EIP-191 ``personal_sign`` by ``address`` over :func:`upload_message` (the image's SHA-256 and an
expiry a few minutes ahead). The store admits it when the signature recovers to ``address``,
the expiry is neither past nor too far ahead, the account holds funds on the chain (anyone
can make a key; funding one costs money) and the account's uploads stay within its quota.

Only funded accounts of the chain the store serves can upload: exactly the ones that could pay
for a job running the image. The signature names the image, so a captured header uploads
nothing but that image, and only until it expires.

Pure logic: the check of funds, the clock and the ledger of bytes per uploader are parameters.
"""

from __future__ import annotations

import json
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


def upload_message(sha256: str, expires: int) -> bytes:
    """What an uploader signs (EIP-191) to upload the image ``sha256`` until ``expires``."""
    return f"reef image upload\nsha256: {sha256}\nexpires: {expires}".encode()


def upload_authorization(
    account: LocalAccount, sha256: str, *, ttl_s: int = 300, now: float | None = None
) -> str:
    """The ``Authorization`` header value that lets ``account`` upload the image ``sha256``."""
    from eth_account.messages import encode_defunct

    expires = int(time.time() if now is None else now) + ttl_s
    signed = account.sign_message(encode_defunct(upload_message(sha256, expires)))
    return f"{UPLOAD_SCHEME} {account.address.lower()}:{expires}:0x{bytes(signed.signature).hex()}"


class UploadDenied(ReefError):
    """An upload the store refuses; ``status`` is the HTTP status it answers."""

    def __init__(self, status: int, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class UploadLedger:
    """Bytes uploaded per account, kept in one JSON file beside the images (atomic rewrites)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = json.loads(path.read_text())
            self._used = {str(k): int(v) for k, v in dict(raw).items()}
        except FileNotFoundError:
            self._used = {}
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(
                f"the upload ledger {path} is unreadable: {exc}",
                hint="move it aside; the store then counts uploads from zero",
            ) from exc

    def used(self, address: str) -> int:
        return self._used.get(address, 0)

    def add(self, address: str, size: int) -> None:
        self._used[address] = self.used(address) + size
        replace_json(self.path, self._used, indent=1, sort_keys=True)


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
        """The uploader's address (``None`` on an open store) once the upload may proceed.

        ``size`` is the declared length when known (checked again as bytes arrive).

        Raises:
            UploadDenied: 401 (missing or malformed), 403 (bad signature, expired, unfunded) or
                413 (over the uploader's quota), with what to do.
        """
        if self.is_funded is None:
            return None
        address, expires, signature = _parse(header)
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
            signer = recover_digest(eip191_digest(upload_message(sha256, expires)), signature)
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
        self.check_quota(address, size or 0, ledger)
        return address

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


def _parse(header: str | None) -> tuple[str, int, bytes]:
    hint = (
        f"send `Authorization: {UPLOAD_SCHEME} <address>:<expires>:<signature>` (reef deploy does)"
    )
    if not header:
        raise UploadDenied(401, "uploads to this store need an authorization", hint=hint)
    scheme, _, value = header.partition(" ")
    parts = value.strip().split(":")
    if scheme != UPLOAD_SCHEME or len(parts) != 3:
        raise UploadDenied(401, f"not a {UPLOAD_SCHEME} authorization", hint=hint)
    address, expires, signature = parts
    if len(address) != 42 or not address.startswith("0x"):
        raise UploadDenied(401, "the authorization's address is not 0x + 40 hex digits", hint=hint)
    if not expires.isdigit() or len(expires) > 12:
        raise UploadDenied(401, "the authorization's expiry is not unix seconds", hint=hint)
    try:
        raw = parse_hex(signature, name="signature", length=65)
        int(address, 16)
    except (InputError, ValueError) as exc:
        raise UploadDenied(401, f"malformed authorization: {exc}", hint=hint) from exc
    return address.lower(), int(expires), raw
