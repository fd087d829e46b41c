"""``reef up``'s dashboard: :class:`DashboardExtension` serves :mod:`reef.web` with the network.

It starts after the core network (so ``network.json`` already names the chain, market and
services), acts for dev account 0 unless given a key, and reports ``{"url", "manage_url"}``
under ``services.dashboard``: ``manage_url`` carries the management token, which ``reef up``
prints once; whoever reads ``network.json`` (owner-only in ``$REEF_HOME``) can manage too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reef.node._serve import Served, serve_app

if TYPE_CHECKING:
    from reef.node._up import UpContext

__all__ = ["DashboardExtension"]


class DashboardExtension:
    """An :class:`~reef.node.UpExtension` named ``dashboard`` (port 0 picks a free one)."""

    def __init__(
        self, *, port: int = 8888, key: Path | None = None, token: str | None = None
    ) -> None:
        self.port = port
        self.key = key
        self.token = token
        self._served: Served | None = None
        self._dashboard: Any = None

    @property
    def name(self) -> str:
        return "dashboard"

    async def start(self, ctx: UpContext) -> Mapping[str, Any]:
        from reef.web import Dashboard, DashboardSettings, dashboard_app

        ctx.progress("starting the dashboard")
        dash = Dashboard(
            DashboardSettings(
                home=ctx.home,
                rpc=ctx.info.rpc_url,
                market=ctx.info.deployment.market,
                key=self.key,
                host=ctx.settings.host,
                token=self.token,
            )
        )
        self._dashboard = dash
        self._served = await serve_app(
            dashboard_app(dash), host=ctx.settings.host, port=self.port, what="dashboard"
        )
        url = self._served.url
        return {"url": url, "manage_url": f"{url}/?token={dash.token}"}

    async def aclose(self) -> None:
        if self._dashboard is not None:
            self._dashboard.close()  # live log streams end, so the server stops at once
        if self._served is not None:
            await self._served.aclose()
            self._served = None
