"""Package facades that load their heavy modules on first use (PEP 562).

A one-shot command (``reef kms derive``, ``reef attestation verify``) imports a package for one
function; a facade that imports every module eagerly makes it pay for servers (FastAPI,
uvicorn), HTTP clients (httpx) and ABI codecs (eth-abi) it never touches. A facade lists those
names in a table, imports them under ``TYPE_CHECKING`` for the type checker, and sets
``__getattr__ = lazy_attributes(__name__, table)``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.<table[name]>`` when ``name`` is asked."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
