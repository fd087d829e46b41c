"""The dashboard's state: where the network is, who it acts for, and the management token.

A :class:`Dashboard` is built once per server (``reef dashboard`` or ``reef up``'s extension) and
handed to :func:`reef.web.dashboard_app`. It resolves the chain, the market and the account as
every other command does (:func:`reef.node.open_session`: flags, then ``network.json``, then the
devnet's own file) and holds the token that state-changing requests must carry.

Management is allowed only when the dashboard listens on a loopback address *and* has an
account; the token is random per start (printed once, like Jupyter's) unless one is given.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reef._clock import wall_clock_ms
from reef._listen import is_loopback
from reef.errors import ConfigError, ReefError
from reef.home import ReefHome

if TYPE_CHECKING:
    from reef.attestation import TrustedRoot
    from reef.node import NetworkInfo, Session

__all__ = ["TOKEN_HEADER", "Dashboard", "DashboardSettings", "is_loopback"]

TOKEN_HEADER = "x-reef-token"  # noqa: S105 - a header name, not a secret
"""The header a state-changing request carries the token in (never a cookie: a cross-site form
cannot set a header, so no CSRF)."""


@dataclass(frozen=True, kw_only=True)
class DashboardSettings:
    """Where the network is and who the dashboard acts for (as the other commands' flags)."""

    home: ReefHome
    rpc: str | None = None
    market: str | None = None
    key: Path | None = None
    """The account that signs management transactions; dev account 0 on reef's own devnet."""
    host: str = "127.0.0.1"
    """Where the dashboard listens; management is refused unless it is a loopback address."""
    token: str | None = None
    """The management token; a random one when not given."""
    manage: bool = True
    max_log_streams: int = 32
    """Live log streams relayed at once (each holds a connection to an enclave's console); a
    visitor not on loopback may hold an eighth of them (at least one)."""


class Dashboard:
    """The dashboard's view of the network (see the module docstring).

    Args:
        settings: where and who.
        clock_ms: milliseconds since the epoch (the wall clock), for attestation checks.
    """

    def __init__(
        self,
        settings: DashboardSettings,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.settings = settings
        self.home = settings.home
        self.token = settings.token or secrets.token_urlsafe(24)
        self.clock_ms = clock_ms
        self._session: Session | None = None
        self._lock = threading.Lock()
        self.closing = asyncio.Event()
        """Set by :meth:`close`: live log streams end, so the server stops without waiting."""

    def close(self) -> None:
        """End the live streams (call before stopping the server that serves the app)."""
        self.closing.set()

    @property
    def manage_enabled(self) -> bool:
        return self.settings.manage and is_loopback(self.settings.host)

    def management_refusal(self) -> str | None:
        """Why management is off, or ``None`` when it is on."""
        if not self.settings.manage:
            return "management is turned off for this dashboard"
        if not is_loopback(self.settings.host):
            return (
                f"management works only on loopback; this dashboard listens on {self.settings.host}"
            )
        return None

    def token_ok(self, given: str | None) -> bool:
        """Whether ``given`` is the management token (constant-time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def session(self) -> Session:
        """The market session: reused while the chain and market it resolves to stay the same
        (a restarted ``reef up`` writes new endpoints to ``network.json``; they are picked up).

        Raises:
            ConfigError: nothing says where the network is.
            RPCError: the chain does not answer.
        """
        from reef.node import locate_market

        s = self.settings
        where = locate_market(self.home, rpc=s.rpc, market=s.market)
        with self._lock:
            current = self._session
            if current is None or (current.rpc_url, current.market_address) != (
                where.rpc_url,
                where.market_address,
            ):
                self._session = None  # a session on the old endpoints is never served again
                current = self._session = self._open(where.rpc_url, where.market_address)
            return current

    def _open(self, rpc: str, market: str) -> Session:
        """:func:`reef.node.open_session` on the endpoints just located (so the session is the
        one compared against), with the sending account when there is one."""
        from reef.node import open_session

        try:
            return open_session(self.home, rpc=rpc, market=market, key=self.settings.key)
        except ConfigError:
            # The endpoints are given, so only the account can be missing: open_session takes
            # one as required or as absent, never "if any". Without --key on a chain with no
            # dev account, the read-only pages still work.
            return open_session(self.home, rpc=rpc, market=market, need_account=False)

    def network(self) -> NetworkInfo | None:
        """``network.json`` as ``reef up`` wrote it (re-read each time: services come and go)."""
        from reef.node import NetworkInfo

        try:
            return NetworkInfo.load(self.home)
        except ReefError:
            return None

    def dev_root(self) -> TrustedRoot | None:
        from reef.attestation import TrustedRoot

        try:
            return TrustedRoot.dev(self.home)
        except ReefError:
            return None
