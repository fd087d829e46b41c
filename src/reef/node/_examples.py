"""The example apps reef ships: where they are, in a checkout or in an installed wheel.

The repository's ``examples/`` is the one copy. The wheel carries it as ``reef/_examples``
(``force-include`` in pyproject), so ``reef up`` finds its KMS root app and ``reef examples``
can hand a user a starting point however reef was installed; a source checkout (and an editable
install) reads the repository's directory itself.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from reef.errors import InputError

__all__ = ["copy_example", "example_dir", "examples_root", "list_examples"]

_MARKERS = ("reef.toml", "index.js", "README.md")
"""A directory is one example when it holds an app (reef.toml), a function or a guide."""


def _is_example(path: Path) -> bool:
    return any((path / marker).is_file() for marker in _MARKERS)


def examples_root() -> Path:
    """The directory holding the shipped examples.

    Raises:
        InputError: when this installation carries none (a wheel built without them).
    """
    shipped = Path(str(resources.files("reef"))) / "_examples"
    if shipped.is_dir():
        return shipped
    checkout = Path(__file__).resolve().parents[3] / "examples"
    if checkout.is_dir():
        return checkout
    raise InputError(
        "this reef installation ships no examples",
        hint="reinstall reef from its wheel or run it from a checkout",
    )


def list_examples() -> list[str]:
    """Names of the shipped examples (``hello``, ``serverless/hello``, ...), sorted.

    A top-level directory is one example, unless it only groups examples (``serverless/``):
    then each of its directories is one.
    """
    root = examples_root()
    names: list[str] = []
    for top in sorted(p for p in root.iterdir() if p.is_dir()):
        children = [c for c in top.iterdir() if c.name != "node_modules"]
        grouped = (
            not _is_example(top)
            and children
            and all(c.is_dir() and _is_example(c) for c in children)
        )
        if grouped:
            names.extend(f"{top.name}/{c.name}" for c in sorted(children))
        else:
            names.append(top.name)
    return names


def example_dir(name: str) -> Path:
    """The directory of the shipped example ``name`` (as :func:`list_examples` names it).

    Raises:
        InputError: naming the examples there are, when ``name`` is not one of them.
    """
    names = list_examples()
    if name not in names:
        raise InputError(
            f"there is no shipped example named {name!r}",
            hint=f"choose one of: {', '.join(names)}",
        )
    return examples_root() / name


def copy_example(name: str, destination: Path) -> Path:
    """Copy the example ``name`` to ``destination`` (which must not exist yet); return it.

    Raises:
        InputError: for an unknown example or an existing destination (nothing is overwritten).
    """
    source = example_dir(name)
    if destination.exists():
        raise InputError(
            f"{destination} already exists",
            hint="give a new directory; reef never writes over an existing one",
        )
    shutil.copytree(
        source, destination, ignore=shutil.ignore_patterns("node_modules", "__pycache__")
    )
    return destination
