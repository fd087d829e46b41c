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
at a time is given up on, not waited for), and never into the free space the cache's disk must
keep (``disk_reserve``: strangers choose how large and how many images are downloaded at once,
and a full disk would stop the provider's database and its enclaves' ``/state``). Only
``http(s)`` URLs are followed by default: a ``file://`` URL would let a job owner make the
provider load any local file into an enclave the owner controls.

Where a download may connect is checked when it connects (:class:`_Guard`, the network backend
of the client's connection pool): every address the host name resolves to, for the first URL and
each redirect, so neither a redirect nor a name that resolves differently the second time (DNS
rebinding) reaches what a literal address could not. A job's owner is a stranger, and the
provider's host answers on addresses no stranger should reach through it:

* never: link-local addresses (``169.254.169.254``, where clouds serve their instance's
  credentials, and ``fe80::/10``), the other cloud metadata addresses, ``0.0.0.0/8`` (which
  Linux connects to the host itself), multicast and reserved addresses, IPv4 addresses inside
  IPv6 ones (``::ffff:a.b.c.d``, 6to4, NAT64) judged as the IPv4 address;
* loopback and private addresses (the provider's control plane, the devnet's JSON-RPC, the KMS
  root, enclaves' ports, services of its network) as :attr:`ImagePolicy.private` says:
  ``"allow"`` (:class:`ImagePolicy`'s default: a single-user dev setup, ``reef up``), ``"by-hash"``
  (:meth:`ImagePolicy.from_files`, the operator's policy of ``reef provider run``: only for a
  content-addressed URL, whose bytes must hash to what the URL names, so nothing there can be
  read that the job's owner did not know; what answered there is not quoted back either) or
  ``"never"``; networks in :attr:`ImagePolicy.trusted` (the operator's own image store) are
  reached as public ones.

Host names are looked up in threads of the fetcher's own (:class:`_Resolver`), once at a time
per name and within a deadline: a stranger's name whose DNS server never answers holds a thread
for the resolver's whole timeout, and in asyncio's default pool it held the threads the
provider's indexer reads the chain in.

The client's connection pool is httpcore's with that network backend (httpx takes no network
backend of its own), so proxies named by the environment do not apply to image downloads: a
proxy would resolve the names itself, past the check.

Failures are split in two: :class:`~reef.errors.ImageError` means retrying cannot help (refused by
a list, wrong hash, too large, bad URL) and ends the job; :class:`~reef.errors.ServiceError` is a
network failure the control plane retries.

One module (about 760 lines): the operator's lists, the address policy, the guarded connection
(its resolver included) and the download are one check of a stranger's URL, applied at each
step of the same request; split, each part would have to trust the others' reading of it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import shutil
import socket
import ssl
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpcore
import httpx

from reef._fetch import FetchError, request_to, stream_bounded
from reef.chain import Address, parse_address
from reef.encoding import terminal_text
from reef.errors import ConfigError, ImageError, ServiceError
from reef.market._image_store import DEFAULT_DISK_RESERVE, SHA256_HEX, ImageStore, Upload

__all__ = ["FetchedImage", "ImageFetcher", "ImagePolicy", "read_list_file", "read_owner_list"]

log = logging.getLogger("reef.market.fetch")

DEFAULT_MAX_DOWNLOAD = 4 * 1024**3  # Oyster's limit for an EIF
DEFAULT_MAX_DOWNLOADS = 64
"""How many image downloads run at once, by default (128 descriptors, far below the usual
limit of 1024)."""
RESOLVE_TIMEOUT_S = 10.0
"""How long one image host's name lookup may take, waiting for a thread included."""
_DISK_CHECK_EVERY = 8 << 20  # bytes written between two looks at the free space
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PrivateTargets = Literal["allow", "by-hash", "never"]
"""Where a provider downloads images from loopback and private addresses (:class:`ImagePolicy`)."""

_THIS_HOST = ipaddress.ip_network("0.0.0.0/8")
_CLOUD_METADATA = (
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud's, outside link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS's over IPv6
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


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


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to (mapped, 6to4, NAT64's well-known prefix)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_kind(address: IPAddress) -> tuple[str, bool] | None:
    """What ``address`` is, when not a public one: its description and whether no image is
    ever fetched from it (``True``) or only as :attr:`ImagePolicy.private` says (``False``).
    ``None`` for a public address."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        return address_kind(inner) or (None if address.is_global else ("a private address", False))
    if address.is_unspecified or address in _THIS_HOST:
        return "an unspecified address (which reaches the provider's own host)", True
    if address.is_link_local or any(address in net for net in _CLOUD_METADATA):
        return "a link-local address (where clouds serve their instances' credentials)", True
    if address.is_multicast:
        return "a multicast address", True
    if address.is_loopback:
        return "a loopback address (the provider's own host)", False
    if isinstance(address, ipaddress.IPv4Address) and address.is_reserved:
        return "a reserved address", True
    if address.is_private or not address.is_global or getattr(address, "is_site_local", False):
        return "a private address", False
    return None


@dataclass(frozen=True)
class ImagePolicy:
    """Which image hashes this provider runs (``allow`` of ``None`` allows all not denied), and
    from where it downloads them.

    ``private`` says whether images are downloaded from loopback and private addresses:
    ``"allow"``, ``"by-hash"`` (only for a URL that names the image's SHA-256) or ``"never"``;
    ``trusted`` networks (the operator's own image store) are reached as public addresses.
    Link-local, cloud metadata, unspecified, multicast and reserved addresses are never
    reached, unless trusted. See the module docstring.
    """

    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()
    private: PrivateTargets = "allow"
    trusted: frozenset[IPNetwork] = field(default_factory=frozenset)

    @classmethod
    def from_files(
        cls,
        allow: Path | None = None,
        deny: Path | None = None,
        *,
        private: PrivateTargets = "by-hash",
        trusted: Iterable[str] = (),
    ) -> ImagePolicy:
        """The operator's policy (``reef provider run``): hash lists from files, and private
        addresses reached only for content-addressed URLs unless ``private`` says otherwise.

        Raises:
            ConfigError: a malformed list entry, or a trusted network that is not a CIDR.
        """
        networks: set[IPNetwork] = set()
        for entry in trusted:
            try:
                networks.add(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ConfigError(
                    f"{entry[:80]!r} is not a network",
                    hint="give a trusted network as an address or CIDR (10.0.0.0/8, fd00::/8)",
                ) from exc
        return cls(
            allow=read_list_file(allow, kind="sha256") if allow else None,
            deny=read_list_file(deny, kind="sha256") if deny else frozenset(),
            private=private,
            trusted=frozenset(networks),
        )

    def refusal(self, sha256: str) -> str | None:
        return list_refusal("image", sha256, allow=self.allow, deny=self.deny)

    def address_refusal(self, address: IPAddress, *, by_hash: bool) -> str | None:
        """Why a download (of a content-addressed URL when ``by_hash``) may not connect to
        ``address``, or ``None`` when it may."""
        if any(address in net for net in self.trusted):
            return None
        kind = address_kind(address)
        if kind is None:
            return None
        what, never = kind
        if never:
            return f"resolves to {what}, which this provider never downloads from"
        if self.private == "allow" or (self.private == "by-hash" and by_hash):
            return None
        if self.private == "by-hash":
            return (
                f"resolves to {what}, which this provider downloads from only by content "
                "address (a URL whose last segment is the image's SHA-256)"
            )
        return f"resolves to {what}, which this provider never downloads from"

    def quiet(self, private_seen: bool) -> bool:
        """Whether what a private address answered stays out of the job's status (an operator
        who refuses strangers private addresses does not let them scan its ports either)."""
        return private_seen and self.private != "allow"


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


class _DiskFull(ServiceError):
    """The provider's disk has no room for the download (its own state: said as it is)."""


class _Guard(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to the addresses ``policy`` allows a
    download to reach (``by_hash``: the job's URL names the image's SHA-256).

    The host is resolved here, once, and the connection made to an address that was checked,
    so the name cannot resolve elsewhere in between. TLS still checks the certificate against
    the name (httpcore passes the URL's host as the server name). ``private_seen`` tells
    whether an address it connected to is loopback or private.
    """

    def __init__(
        self, policy: ImagePolicy, *, by_hash: bool, url: str, resolver: _Resolver | None = None
    ) -> None:
        self._policy = policy
        self._by_hash = by_hash
        self._url = url
        self._resolver = resolver if resolver is not None else _Resolver()
        self._inner = httpcore.AnyIOBackend()
        self.private_seen = False

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolver.resolve(host, port)
        for address in addresses:
            refusal = self._policy.address_refusal(address, by_hash=self._by_hash)
            if refusal is not None:
                shown = terminal_text(self._url[:120])
                by_hash = "only by content address" in refusal
                raise ImageError(
                    f"the image URL {shown} cannot be downloaded: the host "
                    f"{terminal_text(host[:80])!r} (in it, or in a redirect from it) {refusal}",
                    hint=(
                        "name the image by its SHA-256 (the image store's /images/<sha256> "
                        "URLs do), or host it at a public address"
                        if by_hash
                        else "host the image at a public address"
                    ),
                )
        if any(
            address_kind(address) is not None
            and not any(address in net for net in self._policy.trusted)
            for address in addresses
        ):
            self.private_seen = True
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host} resolves to no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("images are not downloaded over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Resolver:
    """Host name lookups for image downloads, in a bounded pool of threads of their own.

    ``getaddrinfo`` blocks its thread for as long as the name's DNS server makes it (glibc's
    timeout and retries: seconds to a minute), and the name is a stranger's choice. In asyncio's
    default pool (6 threads on 2 cores) a few strangers' names held every thread the provider's
    indexer reads the chain in. Here:

    * lookups hold at most ``threads`` threads of their own (as many as downloads run at once);
    * a name is looked up once at a time, however many downloads ask for it: retries of a
      download whose name never resolves wait for the lookup under way instead of taking
      another thread each, so a few strangers cannot hold every thread and starve other
      tenants' names (an object store's);
    * each caller gives up after ``timeout`` seconds (the download is retried); the lookup
      itself ends with the resolver's own timeout;
    * an address written in the URL needs no lookup at all.

    Lookups go through :func:`socket.getaddrinfo`, so ``/etc/hosts`` and nsswitch apply as for
    any other program on the host (an asynchronous DNS client would skip them).
    """

    def __init__(
        self, threads: int = DEFAULT_MAX_DOWNLOADS, timeout: float = RESOLVE_TIMEOUT_S
    ) -> None:
        self._threads = threads
        self._timeout = timeout
        self._pool: ThreadPoolExecutor | None = None
        self._lookups: dict[tuple[str, int], asyncio.Future[list[Any]]] = {}
        """Lookups under way, by name and port."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses ``host`` resolves to, in the resolver's order, each once.

        Raises:
            httpcore.ConnectError: the name does not resolve, or not in time (httpx reports it
                as a failure to connect, retried, as before the check).
        """
        try:
            return [ipaddress.ip_address(host.split("%", 1)[0])]
        except ValueError:
            pass
        try:
            async with asyncio.timeout(self._timeout):
                # Shielded: a caller giving up leaves the lookup to whoever asks next.
                infos = await asyncio.shield(self._lookup(host, port))
        except TimeoutError as exc:
            raise httpcore.ConnectError(
                f"cannot resolve {host}: its DNS server did not answer within {self._timeout:g} s"
            ) from exc
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        found: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in found:
                found.append(address)
        return found

    def _lookup(self, host: str, port: int) -> asyncio.Future[list[Any]]:
        """The lookup of ``host`` under way, or a new one."""
        key = (host, port)
        lookup = self._lookups.get(key)
        if lookup is not None:
            return lookup
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="reef-image-dns")
        lookup = asyncio.get_running_loop().run_in_executor(self._pool, _getaddrinfo, host, port)
        self._lookups[key] = lookup

        def done(finished: asyncio.Future[list[Any]]) -> None:
            if self._lookups.get(key) is finished:
                del self._lookups[key]
            if not finished.cancelled():
                finished.exception()  # retrieved: whoever waited got it, if anyone did

        lookup.add_done_callback(done)
        return lookup

    def close(self) -> None:
        """Let the threads go (a lookup under way ends by itself); a later lookup starts anew."""
        pool, self._pool = self._pool, None
        self._lookups.clear()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _getaddrinfo(host: str, port: int) -> list[Any]:
    """:func:`socket.getaddrinfo` for a TCP connection (looked up when called)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose network backend is a :class:`_Guard`
    (httpx has no option for one)."""

    def __init__(self, guard: _Guard, ssl_context: ssl.SSLContext) -> None:
        # httpx's own pool is replaced at once: given the context, it loads no CA bundle.
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(ssl_context=ssl_context, network_backend=guard)


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
        disk_reserve: the free space (bytes) downloads leave on the cache's filesystem: a
            download that would take it (declared, or as it comes) stops, to be retried.
        max_downloads: how many downloads run at once; others wait their turn (each holds a
            socket and a file: strangers naming slow servers must not take every descriptor
            the provider has, its own server's and database's included).
        resolver_threads: how many threads look image hosts' names up, by default
            ``max_downloads`` (their own pool: a stranger's name whose DNS server never answers
            holds its thread for the resolver's whole timeout, and asyncio's default pool is
            the one the provider's indexer reads the chain in).
        resolve_timeout: how long one name lookup may take (a thread's wait included); past
            it the download fails, to be retried.

    :meth:`close` lets the lookup threads go; the TLS context (the CA bundle, loaded once:
    about 50 ms of CPU each time) is shared by every download.
    """

    def __init__(
        self,
        cache: ImageStore,
        policy: ImagePolicy | None = None,
        *,
        allow_file_urls: bool = False,
        max_bytes: int = DEFAULT_MAX_DOWNLOAD,
        disk_reserve: int = DEFAULT_DISK_RESERVE,
        max_downloads: int = DEFAULT_MAX_DOWNLOADS,
        timeout: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver_threads: int | None = None,
        resolve_timeout: float = RESOLVE_TIMEOUT_S,
    ) -> None:
        self._cache = cache
        self.policy = policy or ImagePolicy()
        self._allow_file = allow_file_urls
        self._max = max_bytes
        self._reserve = disk_reserve
        self._slots = asyncio.Semaphore(max_downloads)
        self._timeout = timeout
        self._transport = transport
        self._resolver = _Resolver(
            max_downloads if resolver_threads is None else resolver_threads, resolve_timeout
        )
        self._ssl_context: ssl.SSLContext | None = None

    def close(self) -> None:
        """Let the name lookup threads go (a later download starts them again)."""
        self._resolver.close()

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

    def _check_hash(
        self, url: str, expected: str | None, actual: str, *, quote: bool = True
    ) -> None:
        if expected is not None and actual != expected:
            # The hash of what a private address answered would let its owner test guesses of
            # a secret offline: it is not quoted.
            got = actual if quote else "other bytes (from a private address: not quoted)"
            raise ImageError(
                f"the image at {terminal_text(url)} hashes to {got}, not the {expected} "
                "its URL names",
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

    def _digest_then_commit(
        self, writer: Upload, url: str, expected: str | None, *, quote: bool = True
    ) -> str:
        actual = writer.digest()
        try:
            self._check_hash(url, expected, actual, quote=quote)
        except ImageError:
            writer.abort()
            raise
        return writer.commit()

    async def _download(self, url: str, expected: str | None) -> str:
        async with self._slots:
            return await self._download_now(url, expected)

    async def _download_now(self, url: str, expected: str | None) -> str:
        writer = self._cache.writer(expect=None, max_bytes=self._max)
        what = "the image's server"
        guard = _Guard(self.policy, by_hash=expected is not None, url=url, resolver=self._resolver)
        transport = self._transport
        if transport is None:
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context(trust_env=False)
            transport = _GuardedTransport(guard, self._ssl_context)
        try:
            async with (
                httpx.AsyncClient(
                    timeout=self._timeout, transport=transport, follow_redirects=True
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
                    error = (
                        f"downloading the image {terminal_text(url)} answered HTTP "
                        f"{response.status}"
                    )
                    if 400 <= response.status < 500:
                        raise ImageError(error)
                    raise ServiceError(error)
                declared = response.headers.get("content-length", "").strip()
                self._check_disk(int(declared) if declared.isdigit() else 0)
                unchecked = 0
                async for chunk in response.aiter_bytes():
                    writer.write(chunk)
                    unchecked += len(chunk)
                    if unchecked >= _DISK_CHECK_EVERY:
                        self._check_disk()
                        unchecked = 0
        except _DiskFull:
            writer.abort()
            raise
        except (ImageError, ServiceError) as exc:
            writer.abort()
            failure = _download_failure(url, exc, self._max) if isinstance(exc, FetchError) else exc
            told = self._quieted(url, guard, failure)
            if told is exc:
                raise
            raise told from exc
        except BaseException:
            writer.abort()
            raise
        return self._digest_then_commit(
            writer, url, expected, quote=not self.policy.quiet(guard.private_seen)
        )

    def _check_disk(self, coming: int = 0) -> None:
        """Raise when ``coming`` more bytes would leave less than the reserve free.

        Strangers choose how large and how many images the provider downloads at once; a full
        disk would stop its index database and every enclave's ``/state`` with them.

        Raises:
            ServiceError: the download waits (it is retried) until space is freed.
        """
        try:
            free = shutil.disk_usage(self._cache.root).free
        except OSError:
            return
        if free - coming < self._reserve:
            raise _DiskFull(
                f"the provider's disk has {free} bytes free, and downloading this image "
                f"{'of ' + str(coming) + ' bytes ' if coming else ''}would leave less than the "
                f"{self._reserve} it keeps free (for its database and its enclaves' /state); "
                "the download is tried again later",
                hint="the provider's operator frees disk space (or ends jobs)",
            )

    def _quieted(
        self, url: str, guard: _Guard, error: ServiceError | ImageError
    ) -> ServiceError | ImageError:
        """``error``, or when what answered was at a private address the operator keeps from
        strangers, the same kind of error that does not say what answered there (a status, a
        refused connection: a port scan of the provider's network); the log keeps the detail.
        """
        if not self.policy.quiet(guard.private_seen):
            return error
        log.warning("image download from a private address failed: %s", terminal_text(str(error)))
        message = (
            f"downloading the image {terminal_text(url[:120])} from a private address failed; "
            "this provider does not say what answered there (its log does)"
        )
        return ImageError(message) if isinstance(error, ImageError) else ServiceError(message)


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
    shown = terminal_text(url[:120])
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
    return ServiceError(f"downloading the image {terminal_text(url)} failed: {exc.message}")
