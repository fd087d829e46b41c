"""The public surface is deliberate: every package lists ``__all__``, sorted, naming real objects,
and every public name is exported from exactly one package (its home)."""

from __future__ import annotations

import importlib
import pkgutil

import reef

PACKAGES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(reef.__path__, "reef.")
    if not any(part.startswith("_") for part in name.split(".")[1:])
)


def test_every_public_module_declares_a_sorted_all() -> None:
    for name in PACKAGES:
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{name} has no __all__"
        assert list(exported) == sorted(exported), f"{name}.__all__ is not sorted"
        for symbol in exported:
            assert hasattr(module, symbol), f"{name}.__all__ names missing {symbol}"


def test_public_objects_are_exported_from_one_package() -> None:
    homes: dict[int, str] = {}
    for name in PACKAGES:
        module = importlib.import_module(name)
        if name.startswith("reef.cli"):
            continue
        for symbol in getattr(module, "__all__", ()):
            obj = getattr(module, symbol)
            if not callable(obj) and not isinstance(obj, type):
                continue
            key = id(obj)
            assert homes.setdefault(key, name) == name, (
                f"{symbol} is exported by both {homes[key]} and {name}"
            )
