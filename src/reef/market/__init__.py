"""reef.market (see DESIGN.md, package layout)."""

from __future__ import annotations

__all__: list[str] = []
