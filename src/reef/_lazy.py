"""Package facades that load their heavy modules on first use (PEP 562).

A one-shot command (``reef kms derive``, ``reef attestation verify``) imports a package for one
function; a facade that imports every module eagerly makes it pay for servers (FastAPI,
uvicorn), HTTP clients (httpx) and ABI codecs (eth-abi) it never touches. A facade lists those
names in a table, imports them under ``TYPE_CHECKING`` for the type checker, and sets
``__getattr__ = lazy_attributes(__name__, table)``.

:func:`without_init` does the same for another project's package whose ``__init__`` imports far
more than a long-lived process uses (uvicorn's imports its command line: click, multiprocessing
and the reloaders, about 1.6 MiB of an enclave supervisor's memory). :func:`defer_import` goes
one step further for a module that a library imports but a process may never call: it runs the
module's code when one of its names is first asked.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["defer_import", "lazy_attributes", "without_init"]


def lazy_attributes(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.<table[name]>`` when ``name`` is asked."""
    return _loader(package, table)


def _loader(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    # Apart from lazy_attributes: the measured runtime's closure reads the literal tables given
    # to lazy_attributes (tests/enclave/test_image.py), and without_init's is another project's.
    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


def without_init(package: str, table: Mapping[str, str]) -> bool:
    """Register ``package`` without running its ``__init__``: its submodules import as usual, and
    the names in ``table`` (what the ``__init__`` would have imported, as in
    :func:`lazy_attributes`) load from their submodule on first use.

    For a process that imports only some submodules of a package whose ``__init__`` loads much
    more. Does nothing (and returns False) when the package is already imported, or is not an
    installed package; True when it registered it.
    """
    if package in sys.modules:
        return False
    from importlib.util import find_spec, module_from_spec  # here: facades import this module

    spec = find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        return False
    module = module_from_spec(spec)  # its __path__ set, its code not run
    module.__getattr__ = _loader(package, table)  # type: ignore[method-assign]
    sys.modules[package] = module
    return True


def defer_import(name: str) -> bool:
    """Register module ``name`` so that importing it costs nothing until it is used: ``import
    name`` (and ``from parent import child``) give a module whose code runs, in full and once,
    when any of its names is first asked (``from name import x``, ``name.x``).

    Unlike ``importlib.util.LazyLoader``, a later ``import name`` does not load it: the import
    system finds the module's ``__spec__`` without asking for a missing name. Does nothing (and
    returns False) when ``name`` is already imported or is not found; True when it deferred it.
    """
    if name in sys.modules:
        return False
    parent, _, child = name.rpartition(".")
    if parent:
        importlib.import_module(parent)
    import threading
    from importlib.util import find_spec, module_from_spec

    spec = find_spec(name)
    if spec is None or spec.loader is None:
        return False
    module = module_from_spec(spec)
    loader = spec.loader
    lock = threading.RLock()  # two threads asking at once: one runs the code, the other waits

    def __getattr__(attr: str) -> Any:
        if attr == "__path__":
            # The import system's probe for a package, on `from name import x`: a module is
            # not one (a package's spec sets __path__), and x itself is asked next.
            raise AttributeError(attr)
        with lock:
            if module.__dict__.get("__getattr__") is __getattr__:
                del module.__getattr__  # the module's own code defines one, if it has one
                try:
                    loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(name, None)  # as the import system does with a failed import
                    raise
        return getattr(module, attr)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = module
    if parent:
        setattr(sys.modules[parent], child, module)
    return True
