"""A content-addressed image store over HTTP: the local network's stand-in for IPFS or S3.

Images are stored under their SHA-256 and served at ``/images/<sha256>``, so the URL a job's
metadata carries names the exact bytes: the control plane checks what it downloads against the
hash in the URL (and against the operator's allow/deny lists), and a store cannot swap an image
under a running job.

* ``PUT /images/<sha256>`` uploads; the body must hash to ``<sha256>`` (400 otherwise).
* ``POST /images`` uploads and answers the hash and URL.
* ``GET`` / ``HEAD /images/<sha256>`` download.

Uploads stream to a temporary file (``.upload-*``) while being hashed and are renamed into place
only when complete and correct, so a crash or a lying client never leaves a wrong or partial image
under a hash. Each temporary file is ``flock``-ed by its writer for as long as it writes; a store
that opens removes the ones nobody holds (left by a writer killed mid-upload, which no quota
counts), so crash after crash does not fill the disk, while another process's upload under way in
the same directory is left alone.

A FastAPI app, so ``/openapi.json`` and ``/docs`` describe it; the bodies are streamed by hand
(never buffered whole), and errors are JSON ``{"error": reason}``.

Over HTTP an image has exactly one name: 64 lowercase hex digits. Anything else (upper case,
``0x``, spaces) is refused with 400 rather than normalised, so one image is never reachable
under several spellings. One upload is at most ``max_bytes`` (512 MiB by default; 413 beyond),
and the app carries that limit to the serving floor (``reef_limits``), which enforces it before
the body is read.

Uploads are authorized by an :class:`~reef.market._upload_auth.UploadPolicy`: on ``reef up``'s
store, a signature by an account funded on the chain, over the image's SHA-256, within that
account's quota (``_upload_auth``). The policy is an explicit argument: a store open to anyone
is :meth:`UploadPolicy.anyone`, never a default. Downloads stay open: images are public bytes,
named by their hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from reef._api import api_app, json_error
from reef._api_models import add_health_route, error_answers
from reef._fetch import FetchError, read_blocking, request_to
from reef._serve import Limits
from reef.encoding import loads_bounded, terminal_text
from reef.errors import ImageError, InputError, ServiceError
from reef.market._upload_auth import (
    UploadDenied,
    UploadLedger,
    UploadPolicy,
    upload_authorization,
    wrong_size,
)

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

__all__ = ["ImageStore", "image_store_app", "upload_image"]

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_MAX_IMAGE_BYTES = 512 * 1024**2
DEFAULT_DISK_RESERVE = 1 << 30
"""The free space image uploads and downloads leave on their filesystem (1 GiB)."""
_DISK_CHECK_EVERY = 8 << 20  # bytes written between two looks at the free space
MIN_UPLOAD_RATE = 64 << 10
"""The slowest average rate an upload may keep after its grace period, in bytes a second
(64 KiB/s: a 512 MiB image in about two hours; reef's client gives up below 1 MiB/s)."""
UPLOAD_GRACE_S = 60.0
"""Seconds an upload may take before :data:`MIN_UPLOAD_RATE` applies to it."""


def disk_shortage(root: Path, reserve: int, coming: int = 0) -> int | None:
    """The free bytes on ``root``'s filesystem when ``coming`` more would leave less than
    ``reserve`` there, else ``None`` (also when the free space cannot be read)."""
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return None
    return free if free - coming < reserve else None


def check_sha256(text: str) -> str:
    """A lowercase SHA-256 hex digest, or InputError."""
    value = text.strip().lower()
    if not SHA256_HEX.match(value):
        raise InputError(f"not a SHA-256 hex digest: {text[:80]!r}", hint="give 64 hex digits")
    return value


class ImageStore:
    """Files named by their SHA-256 under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.removed_at_open = remove_stale_uploads(root)
        """How many temporary files of dead uploads opening the store removed."""

    def path(self, sha256: str) -> Path:
        return self.root / check_sha256(sha256)

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, data: bytes, *, expect: str | None = None) -> str:
        """Store ``data``; return its hash.

        Raises:
            ImageError: when ``expect`` is given and the data hashes to something else.
        """
        writer = self.writer(expect=expect)
        writer.write(data)
        return writer.commit()

    def writer(self, *, expect: str | None = None, max_bytes: int | None = None) -> Upload:
        """A streaming upload: ``write`` chunks, then ``commit`` (or ``abort``)."""
        return Upload(self, expect=check_sha256(expect) if expect else None, max_bytes=max_bytes)

    @property
    def ledger_path(self) -> Path:
        """Where the bytes each account uploaded are counted (beside the images)."""
        return self.root / ".uploaders.json"

    def __iter__(self) -> Iterator[str]:
        return (p.name for p in sorted(self.root.iterdir()) if SHA256_HEX.match(p.name))


UPLOAD_PREFIX = ".upload-"
"""How the temporary files of uploads under way are named (in the store's directory)."""


def _locked_temp_file(root: Path) -> tuple[int, Path]:
    """A new temporary file in ``root``, open and ``flock``-ed by this process.

    Another store opening in the same instant may take the lock between the file's creation
    and ours, and remove the file: then the path no longer names our file, and a new one is made.
    """
    while True:
        fd, name = tempfile.mkstemp(dir=root, prefix=UPLOAD_PREFIX)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(name).st_ino == os.fstat(fd).st_ino:
                return fd, Path(name)
        except FileNotFoundError:
            pass
        os.close(fd)


def remove_stale_uploads(root: Path) -> int:
    """Remove the temporary files of uploads whose writer is gone (killed mid-upload: the kernel
    released its lock); return how many. Uploads under way hold theirs and are left alone.

    Nothing counted them: the ledger counts an upload once it is committed, and the bytes of
    uploads under way only in the serving process's memory.
    """
    removed = 0
    for path in root.glob(UPLOAD_PREFIX + "*"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile, or not a file a writer made
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live upload (this process's or another's)
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        finally:
            os.close(fd)
    return removed


class Upload:
    """A streaming write into the store: ``write`` chunks, then ``commit`` or ``abort``."""

    def __init__(self, store: ImageStore, *, expect: str | None, max_bytes: int | None) -> None:
        self._store = store
        self._expect = expect
        self._max = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        fd, self._tmp = _locked_temp_file(store.root)
        self._file = os.fdopen(fd, "wb")  # closing it releases the lock

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._max is not None and self.size > self._max:
            self.abort()
            raise ImageError(f"the image is larger than the store's limit of {self._max} bytes")
        self._hash.update(chunk)
        self._file.write(chunk)

    def digest(self) -> str:
        """The SHA-256 of what was written so far."""
        return self._hash.hexdigest()

    def commit(self) -> str:
        """Check the expected hash, then move the file into place under its hash."""
        digest = self._hash.hexdigest()
        if self._expect is not None and digest != self._expect:
            self.abort()
            raise ImageError(
                f"the uploaded bytes hash to {digest}, not {self._expect}",
                hint="upload the image under its own SHA-256",
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        os.fchmod(self._file.fileno(), 0o600)
        # Moved while still open, so still locked: a store opening now cannot take it for a
        # dead upload's.
        os.replace(self._tmp, self._store.root / digest)
        self._file.close()
        return digest

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class UploadModel(BaseModel):
    """What an upload answers."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    url: str


# Documented, not enforced by FastAPI: the handlers refuse other spellings with their own message.
_NAME = PathParam(
    description="the image's SHA-256: 64 lowercase hex digits",
    json_schema_extra={"pattern": "^[0-9a-f]{64}$"},
)
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the image bytes",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_IMAGE: dict[str, Any] = {
    "description": "the image bytes",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


def _canonical(text: str) -> str:
    """The one accepted spelling of an image name over HTTP (no case folding, no trimming).

    Raises:
        InputError: when ``text`` is not exactly 64 lowercase hex digits.
    """
    if not SHA256_HEX.fullmatch(text):
        raise InputError(
            f"an image is named by 64 lowercase hex digits (its SHA-256), not {text[:80]!r}"
        )
    return text


def image_store_app(
    store: ImageStore,
    *,
    uploads: UploadPolicy,
    public_url: str | None = None,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    disk_reserve: int = DEFAULT_DISK_RESERVE,
    min_upload_rate: int = MIN_UPLOAD_RATE,
    upload_grace_s: float = UPLOAD_GRACE_S,
) -> FastAPI:
    """The store's HTTP API. ``uploads`` decides who may upload (see the module docstring);
    ``public_url`` is the base URL printed in upload answers.

    An upload stops (507, to be tried later) where it would leave less than ``disk_reserve``
    bytes free on the store's filesystem, before its body when its length is declared: the
    quota is per account, accounts cost next to nothing (1 wei of funds), and the provider's
    database and its enclaves' ``/state`` live on that disk.

    An upload may take ``upload_grace_s`` plus its bytes at ``min_upload_rate``, else it is
    refused with 408 (looked at as each chunk arrives): the serving floor closes a body that
    stops (no chunk within its read timeout), and this closes one that trickles, which would
    otherwise hold its temporary file and its share of the account's quota for as long as the
    client wished."""
    ledger = UploadLedger(store.ledger_path)
    under_way: dict[str, int] = {}
    """Bytes each account's uploads hold now (temporary files not yet committed)."""

    def url_for(request: Request, digest: str) -> str:
        base = public_url.rstrip("/") if public_url else str(request.base_url).rstrip("/")
        return f"{base}/images/{digest}"

    too_large = f"the image is larger than the store's limit of {max_bytes} bytes"

    def full(free: int, size: int | None) -> Response:
        what = f"an image of {size} bytes" if size else "this upload"
        return json_error(
            507,
            f"the store's disk has {free} bytes free, and {what} would leave less than the "
            f"{disk_reserve} bytes the store keeps free (for the provider's database and its "
            "enclaves' /state); try again later, or ask the store's operator to free space",
        )

    async def receive(request: Request, expect: str | None) -> Response:
        declared = request.headers.get("content-length")
        size = int(declared) if declared is not None and declared.isdigit() else None
        if size is not None and size > max_bytes:
            return json_error(413, too_large)
        if expect is None and not uploads.open:
            # The signature names the image: an authorized upload says its hash up front.
            return json_error(
                401, "uploads to this store are authorized per image: PUT /images/<sha256>"
            )
        # An image already here costs its uploader nothing more (the bytes are checked again).
        existed = expect is not None and store.has(expect)
        try:
            uploader, signed = await uploads.authorize(
                request.headers.get("authorization"), expect or "", 0 if existed else size, ledger
            )
        except UploadDenied as exc:
            return json_error(exc.status, f"{exc.message}; {exc.hint}" if exc.hint else exc.message)
        if signed is not None and size is not None and size != signed:
            return json_error(400, wrong_size(signed, f"its body declares {size}"))
        counted = None if existed else uploader
        short = disk_shortage(store.root, disk_reserve, size or 0)
        if short is not None:
            return full(short, size)
        upload = store.writer(expect=expect)
        unchecked = 0
        clock = asyncio.get_running_loop().time
        started = clock()
        try:
            async for chunk in request.stream():
                if clock() - started > upload_grace_s + upload.size / min_upload_rate:
                    upload.abort()
                    return json_error(
                        408,
                        f"the upload arrives slower than {min_upload_rate} bytes a second "
                        f"(after {upload_grace_s:g} s, {upload.size} bytes had arrived); "
                        "send it on a faster link",
                    )
                unchecked += len(chunk)
                if unchecked >= _DISK_CHECK_EVERY:
                    unchecked = 0
                    short = disk_shortage(store.root, disk_reserve, len(chunk))
                    if short is not None:
                        upload.abort()
                        return full(short, None)
                if upload.size + len(chunk) > max_bytes:
                    upload.abort()
                    return json_error(413, too_large)
                if signed is not None and upload.size + len(chunk) > signed:
                    upload.abort()
                    return json_error(400, wrong_size(signed, "its body is longer"))
                if uploader is not None:
                    # The account's other uploads under way hold disk too: counted, so that
                    # many at once cannot hold more than the quota (each alone would pass).
                    others = under_way.get(uploader, 0) - upload.size
                    if counted is not None:
                        uploads.check_quota(
                            counted, upload.size + len(chunk), ledger, pending=others
                        )
                    elif others + upload.size + len(chunk) > uploads.quota_bytes:
                        raise UploadDenied(
                            413,
                            f"{uploader} has {others} bytes in uploads under way; "
                            f"{upload.size + len(chunk)} more would pass its quota of "
                            f"{uploads.quota_bytes} bytes",
                        )
                    under_way[uploader] = under_way.get(uploader, 0) + len(chunk)
                upload.write(chunk)
            if signed is not None and upload.size != signed:
                upload.abort()
                return json_error(400, wrong_size(signed, f"its body has {upload.size}"))
            if counted is not None and store.has(upload.digest()):
                # Another upload of this image (a retry, a replay) completed while this one
                # ran: the image is stored once, and counted once.
                counted = None
            digest = upload.commit()
        except UploadDenied as exc:
            upload.abort()
            return json_error(exc.status, exc.message)
        except ImageError as exc:
            return json_error(400, exc.message)
        except BaseException:
            upload.abort()
            raise
        finally:
            if uploader is not None:
                left = under_way.get(uploader, 0) - upload.size
                if left > 0:
                    under_way[uploader] = left
                else:
                    under_way.pop(uploader, None)
        if counted is not None:
            ledger.add(counted, upload.size)
        return JSONResponse(
            {"sha256": digest, "size": upload.size, "url": url_for(request, digest)},
            status_code=201,
        )

    async def post_image(request: Request) -> Response:
        return await receive(request, None)

    async def put_image(request: Request, sha256: str = _NAME) -> Response:
        try:
            expect = _canonical(sha256)
        except InputError as exc:
            return json_error(400, exc.message)
        return await receive(request, expect)

    async def get_image(sha256: str = _NAME) -> Response:
        try:
            path = store.path(_canonical(sha256))
        except InputError as exc:
            return json_error(400, exc.message)
        if not path.is_file():
            return json_error(404, "no image with that SHA-256 in this store")
        return FileResponse(path, media_type="application/octet-stream")

    app = api_app(
        "reef image store",
        description="Content-addressed enclave images, named by their SHA-256.",
    )
    errors = error_answers(
        {
            400: "a bad name, or a body of another hash",
            401: "no or a malformed upload authorization",
            403: "a bad signature, or an unfunded account",
            413: f"an image over {max_bytes} bytes, or over the uploader's quota",
            507: "an upload that would leave the store's disk less free space than it keeps",
        }
    )
    upload_routes = (
        ("/images", post_image, "POST", "Upload an image; answers its hash and URL"),
        (
            "/images/{sha256}",
            put_image,
            "PUT",
            "Upload an image under its hash (the body must hash to it)",
        ),
    )
    for path, handler, method, summary in upload_routes:
        app.add_api_route(
            path,
            handler,
            methods=[method],
            status_code=201,
            response_model=UploadModel,
            responses=errors,
            openapi_extra=_UPLOAD_BODY,
            summary=summary,
        )
    for method in ("GET", "HEAD"):
        app.add_api_route(
            "/images/{sha256}",
            get_image,
            methods=[method],
            operation_id=f"{method.lower()}_image",
            response_class=Response,
            responses={
                200: _IMAGE,
                **error_answers({400: "not 64 lowercase hex digits", 404: "no such image here"}),
            },
            summary="Download an image" if method == "GET" else "Whether an image is here",
        )
    add_health_route(app)
    # The serving floor reads this: uploads may be as large as the store allows, and no larger.
    app.reef_limits = Limits(max_body=max_bytes)  # type: ignore[attr-defined]
    return app


_UPLOAD_ANSWER_BYTES = 64 << 10
"""The longest answer to an upload read: the store answers its hash and URL, or a reason."""
_UPLOAD_TIMEOUT_S = 300.0


def upload_image(
    store_url: str,
    path: Path,
    *,
    signer: LocalAccount | None,
    client: httpx.Client | None = None,
) -> tuple[str, str]:
    """Upload the file at ``path`` to the store at ``store_url``; return ``(sha256, url)``.

    ``signer`` authorizes the upload (an account funded on the store's chain); ``None`` only
    suits a store open to anyone. The store is whatever ``--store`` names, so its answer is read
    as a stranger's (:func:`reef._fetch.read_blocking`): at most 64 KiB, uncompressed, and the
    whole exchange within the client's timeout (300 s by default) plus the file's size at the
    slowest rate accepted (:func:`reef.market._fetch.download_deadline_s`, as downloads).

    Raises:
        ServiceError: when the store cannot be reached, does not answer within its bounds, or
            refuses the upload.
    """
    from reef.market._fetch import download_deadline_s  # which imports this module

    with path.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    endpoint = f"{store_url.rstrip('/')}/images/{sha256}"
    size = path.stat().st_size
    headers = {"authorization": upload_authorization(signer, sha256, size=size)} if signer else {}
    http = client or httpx.Client(timeout=_UPLOAD_TIMEOUT_S)
    timeouts = http.timeout.as_dict().values()
    base_s = max((t for t in timeouts if t is not None), default=_UPLOAD_TIMEOUT_S)
    what = "the image store"
    hint = "is `reef up` running? pass --store URL to use another store"
    try:
        url = request_to("PUT", endpoint, what=what, hint=hint).url
        with path.open("rb") as handle:
            answer = read_blocking(
                http,
                http.build_request("PUT", url, content=handle, headers=headers),
                max_bytes=_UPLOAD_ANSWER_BYTES,
                deadline_s=download_deadline_s(base_s, path.stat().st_size),
                what=what,
                hint=hint,
            )
    except FetchError as exc:
        if exc.reason != "unreachable":
            raise
        raise ServiceError(
            f"cannot reach the image store at {store_url}: {_cause(exc)}", hint=hint
        ) from exc
    finally:
        if client is None:
            http.close()
    if answer.status not in (200, 201):
        raise ServiceError(
            f"the image store refused the upload ({answer.status}): {_message(answer.body)}"
        )
    body = _json_object(answer.body)
    image_url = body.get("url", endpoint) if body is not None else None
    if not isinstance(image_url, str):
        raise ServiceError(
            f"the image store at {store_url} answered the upload with no URL: "
            f"{terminal_text(answer.body[:200].decode('utf-8', 'replace'))}"
        )
    return sha256, image_url


def _cause(exc: ServiceError) -> str:
    """What went wrong, as httpx said it (the cause of ``exc``) or as ``exc`` says it."""
    return str(exc.__cause__) if exc.__cause__ is not None else exc.message


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The store's JSON object answer, or ``None`` when it is none."""
    try:
        answer = loads_bounded(body, what="the image store's answer")
    except InputError:
        return None
    return answer if isinstance(answer, dict) else None


def _message(body: bytes) -> str:
    answer = _json_object(body)
    if answer is not None and "error" in answer:
        return terminal_text(str(answer["error"]))[:200]
    return terminal_text(body[:200].decode("utf-8", "replace"))
