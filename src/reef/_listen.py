"""Listening sockets: how every reef server binds its port, and which addresses are loopback.

Kept apart from :mod:`reef._serve` (the HTTP serving floor) because that module loads uvicorn,
about 100 ms, and the Scallop listener and clients that only check an address need neither:
Scallop serves its own framed protocol over a socket bound here, the one binder every reef
server uses, so a busy port says the same thing for every service.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from reef.errors import InputError, ReefError, ServiceError

__all__ = ["bind", "is_loopback", "url_of"]


def bind(
    host: str,
    port: int,
    *,
    what: str,
    error: type[ReefError] = ServiceError,
    hint: str | None = None,
    backlog: int = 512,
) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (0 picks a free port), with
    ``TCP_NODELAY`` set and ``IPPROTO_TCP`` as its protocol so accepted sockets get it too.

    Args:
        what: names the service in the error ("devnet JSON-RPC endpoint").
        error: the error class to raise (a package's own root, e.g. ``ChainError``).
        hint: what the user should do when the port is in use.

    Raises:
        InputError: for a port outside 0..65535 or a host that does not resolve.
        ReefError: of class ``error`` when the address is in use or cannot be bound.
    """
    if not 0 <= port <= 65535:
        raise InputError(f"the port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise InputError(f"cannot resolve the host {host!r}: {exc}") from exc
    family, kind, _, _, address = infos[0]
    sock = socket.socket(family, kind, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise error(
                f"cannot listen on {where} for the {what}: the port is in use",
                hint=hint or "stop what uses that port, or pick another one (0 picks a free one)",
            ) from exc
        raise error(f"cannot listen on {where} for the {what}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, bracketed or not, or ``localhost``) is a loopback address.

    A server that serves only this machine checks its bind address, or a peer's, with this.
    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, what a dual-stack socket reports for an
    IPv4 peer) is loopback when the IPv4 address is; :mod:`ipaddress` says so itself only from
    Python 3.13 on. Other names are not resolved: only ``localhost`` is taken as loopback.
    """
    bare = host.strip("[]")
    if bare == "localhost":
        return True
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
