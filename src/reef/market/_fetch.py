"""Getting a job's image onto the provider: download, hash, and apply the operator's lists.

Oyster's control plane downloads the EIF named by the job's ``url`` and checks its SHA-256 against
the operator's ``--whitelist`` / ``--blacklist`` files (reference §4.5). reef does the same and one
thing more: when the URL is content-addressed (its last path segment is a 64-hex-digit SHA-256, as
reef's image store serves them) the downloaded bytes must hash to it, so a store cannot hand out
different bytes than the job's owner pinned in the metadata.

Downloads are cached by hash (an :class:`ImageStore`) and read as a stranger's answer, through
:func:`reef._fetch.stream_bounded`: streamed to disk (never held in memory), uncompressed, at
most ``max_bytes``, the head within ``timeout`` and the whole within
:func:`download_deadline_s`, which grows with ``max_bytes`` (a server trickling its answer a byte
at a time is given up on, not waited for). Only ``http(s)`` URLs are followed by default: a ``file://`` URL would let a job owner make
the provider load any local file into an enclave the owner controls.

Failures are split in two: :class:`~reef.errors.ImageError` means retrying cannot help (refused by
a list, wrong hash, too large, bad URL) and ends the job; :class:`~reef.errors.ServiceError` is a
network failure the control plane retries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from reef._fetch import FetchError, request_to, stream_bounded
from reef.chain import Address, parse_address
from reef.errors import ConfigError, ImageError, ServiceError
from reef.market._image_store import SHA256_HEX, ImageStore, Upload

__all__ = ["FetchedImage", "ImageFetcher", "ImagePolicy", "read_list_file", "read_owner_list"]

DEFAULT_MAX_DOWNLOAD = 4 * 1024**3  # Oyster's limit for an EIF
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def read_list_file(path: Path, *, kind: str) -> frozenset[str]:
    """Entries of an allow/deny list file: one per line, ``#`` comments, case-insensitive.

    ``kind`` is ``"sha256"`` (image hashes) or ``"address"`` (owner addresses).

    Raises:
        ConfigError: naming the file and line of a malformed entry.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the {kind} list {path}: {exc}") from exc
    entries: set[str] = set()
    for number, line in enumerate(lines, 1):
        entry = line.split("#", 1)[0].strip().lower()
        if not entry:
            continue
        if kind == "sha256":
            entry = entry.removeprefix("0x")
            valid = bool(SHA256_HEX.match(entry))
        else:
            valid = bool(_ADDRESS.match(entry))
        if not valid:
            raise ConfigError(
                f"{path}:{number}: not a {'SHA-256 hex digest' if kind == 'sha256' else 'address'}"
                f": {entry[:80]!r}"
            )
        entries.add(entry)
    return frozenset(entries)


def list_refusal(
    subject: str, entry: str, *, allow: frozenset[str] | None, deny: frozenset[str]
) -> str | None:
    """Why an operator's lists refuse ``entry`` (``allow`` of ``None`` allows all not denied),
    or ``None`` when they accept it."""
    if entry in deny:
        return f"{subject} {entry} is on this provider's deny list"
    if allow is not None and entry not in allow:
        return f"{subject} {entry} is not on this provider's allow list"
    return None


def read_owner_list(path: Path) -> frozenset[Address]:
    """The owner addresses of an allow/deny list file (:func:`read_list_file`), checksummed.

    Raises:
        ConfigError: naming the file and line of a malformed entry.
    """
    return frozenset(parse_address(entry) for entry in read_list_file(path, kind="address"))


@dataclass(frozen=True)
class ImagePolicy:
    """Which image hashes this provider runs; ``allow`` of ``None`` allows all not denied."""

    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()

    @classmethod
    def from_files(cls, allow: Path | None = None, deny: Path | None = None) -> ImagePolicy:
        return cls(
            allow=read_list_file(allow, kind="sha256") if allow else None,
            deny=read_list_file(deny, kind="sha256") if deny else frozenset(),
        )

    def refusal(self, sha256: str) -> str | None:
        return list_refusal("image", sha256, allow=self.allow, deny=self.deny)


@dataclass(frozen=True)
class FetchedImage:
    """An image on local disk, checked."""

    url: str
    sha256: str
    path: Path


def _checked_url(url: str) -> str:
    """The scheme of ``url`` once httpx could request it (a job owner writes it).

    Raises:
        ImageError: naming what is wrong (retrying cannot fix a URL).
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port past 65535
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ImageError(
            f"the image URL {url[:120]!r} is not a valid URL: {exc}",
            hint="give the image's http(s) URL, as the image store answers it",
        ) from exc
    return parts.scheme.lower()


def content_address(url: str) -> str | None:
    """The SHA-256 a content-addressed URL names (its last path segment), if it names one."""
    segment = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1].lower()
    return segment if SHA256_HEX.match(segment) else None


class ImageFetcher:
    """Downloads images into a hash-addressed cache and checks them.

    Args:
        cache: where downloaded images are kept, by hash.
        policy: the operator's allow/deny lists of image hashes.
        allow_file_urls: follow ``file://`` URLs (only for tests and single-user setups).
        max_bytes: the largest image downloaded (a larger one is refused, not read on).
        timeout: httpx's per-operation timeout, and the time the answer's head may take; the
            whole download may take :func:`download_deadline_s` of it and ``max_bytes``.
        transport: an httpx transport (tests inject one).
    """

    def __init__(
        self,
        cache: ImageStore,
        policy: ImagePolicy | None = None,
        *,
        allow_file_urls: bool = False,
        max_bytes: int = DEFAULT_MAX_DOWNLOAD,
        timeout: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._cache = cache
        self.policy = policy or ImagePolicy()
        self._allow_file = allow_file_urls
        self._max = max_bytes
        self._timeout = timeout
        self._transport = transport

    async def fetch(self, url: str) -> FetchedImage:
        """The image at ``url``, downloaded unless the cache already has its content address.

        Raises:
            ImageError: the URL is unusable, or the image is refused (list, hash, size).
            ServiceError: the download failed (worth retrying).
        """
        scheme = _checked_url(url)
        expected = content_address(url)
        if expected is not None:
            self._check_policy(expected)
            if self._cache.has(expected):
                return FetchedImage(url, expected, self._cache.path(expected))
        if scheme in ("http", "https"):
            sha256 = await self._download(url, expected)
        elif scheme == "file" and self._allow_file:
            sha256 = self._copy(Path(urlsplit(url).path), expected)
        else:
            raise ImageError(
                f"cannot fetch the image URL {url[:120]!r}: only http(s) URLs are supported",
                hint="upload the image to a store (reef up has one) and use its URL",
            )
        self._check_policy(sha256)
        return FetchedImage(url, sha256, self._cache.path(sha256))

    def forget(self, sha256: str) -> None:
        """Remove a downloaded image from the cache (enclaves started from it keep their own
        staged copy or link)."""
        self._cache.path(sha256).unlink(missing_ok=True)

    def cached(self, sha256: str) -> bool:
        """Whether the image ``sha256`` is in the cache."""
        return self._cache.has(sha256)

    def keep_only(self, keep: set[str]) -> list[str]:
        """Remove every cached image but those in ``keep``; return the hashes removed.

        A provider that starts calls it with the images its open jobs name: the images of jobs
        that ended while it was down were never seen to end, and would stay on disk for good.
        """
        removed = [sha256 for sha256 in self._cache if sha256 not in keep]
        for sha256 in removed:
            self.forget(sha256)
        return removed

    def _check_policy(self, sha256: str) -> None:
        refusal = self.policy.refusal(sha256)
        if refusal:
            raise ImageError(refusal)

    def _check_hash(self, url: str, expected: str | None, actual: str) -> None:
        if expected is not None and actual != expected:
            raise ImageError(
                f"the image at {url} hashes to {actual}, not the {expected} its URL names",
                hint="the image store served different bytes than the job pinned",
            )

    def _copy(self, path: Path, expected: str | None) -> str:
        writer = self._cache.writer(expect=None, max_bytes=self._max)
        try:
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    writer.write(chunk)
        except OSError as exc:
            writer.abort()
            raise ImageError(f"cannot read the image file {path}: {exc}") from exc
        return self._digest_then_commit(writer, str(path), expected)

    def _digest_then_commit(self, writer: Upload, url: str, expected: str | None) -> str:
        actual = writer.digest()
        try:
            self._check_hash(url, expected, actual)
        except ImageError:
            writer.abort()
            raise
        return writer.commit()

    async def _download(self, url: str, expected: str | None) -> str:
        writer = self._cache.writer(expect=None, max_bytes=self._max)
        what = "the image's server"
        try:
            async with (
                httpx.AsyncClient(
                    timeout=self._timeout, transport=self._transport, follow_redirects=True
                ) as client,
                stream_bounded(
                    client,
                    request_to("GET", url, what=what),
                    max_bytes=self._max,
                    head_s=self._timeout,
                    deadline_s=download_deadline_s(self._timeout, self._max),
                    what=what,
                ) as response,
            ):
                if response.status != 200:
                    error = f"downloading the image {url} answered HTTP {response.status}"
                    if 400 <= response.status < 500:
                        raise ImageError(error)
                    raise ServiceError(error)
                async for chunk in response.aiter_bytes():
                    writer.write(chunk)
        except FetchError as exc:
            writer.abort()
            raise _download_failure(url, exc, self._max) from exc
        except BaseException:
            writer.abort()
            raise
        return self._digest_then_commit(writer, url, expected)


MIN_DOWNLOAD_RATE = 1 << 20
"""The slowest download accepted, in bytes a second (1 MiB/s, 8 Mbit/s): below it, an image of
the largest size allowed could not arrive within :func:`download_deadline_s`."""


def download_deadline_s(timeout_s: float, max_bytes: int) -> float:
    """How long one image download may take in all: its ``timeout_s`` (the head's deadline) and
    the largest image allowed at the slowest rate accepted, rounded up to the second.

    The total must scale with the bound: any fixed deadline would refuse honest large images
    on slow links, or let a trickling server hold the provider's download for as long as it
    wished. At :data:`MIN_DOWNLOAD_RATE` a 4 GiB image (Oyster's limit) may take 4096 s, an
    hour and a bit, which a server sending a byte a second cannot use to hold it any longer.
    """
    return timeout_s + -(-max_bytes // MIN_DOWNLOAD_RATE)


def _download_failure(url: str, exc: FetchError, max_bytes: int) -> ImageError | ServiceError:
    """What a download that could not be read within its bounds means for the job: an
    :class:`ImageError` when retrying cannot help (ending the job), else the
    :class:`ServiceError` the control plane retries."""
    shown = url[:120]
    cause = exc.__cause__
    never = (httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.InvalidURL, UnicodeError)
    if isinstance(cause, never):
        # A redirect to file:// (or another scheme), a redirect loop, a redirect to a URL
        # no client can use, a host name no resolver can encode: so every time.
        return ImageError(f"downloading the image {shown} cannot work: {cause}")
    if exc.reason == "too_large":
        return ImageError(
            f"the image at {shown} is larger than this provider's limit of {max_bytes} bytes; "
            "not downloaded further"
        )
    if exc.reason == "encoded":
        return ImageError(f"downloading the image {shown} cannot work: {exc.message}")
    return ServiceError(f"downloading the image {url} failed: {exc.message}")
