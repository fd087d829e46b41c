"""The example apps reef ships: where they are, in a checkout or in an installed wheel.

The repository's ``examples/`` is the one copy. The wheel carries it as ``reef/_examples``
(``force-include`` in pyproject), so ``reef up`` finds its KMS root app and ``reef examples``
can hand a user a starting point however reef was installed; a source checkout (and an editable
install) reads the repository's directory itself. :func:`_build_example` builds the image of an
example app with extra files added (the runtimes ``reef up``'s extensions pin), rebuilt only when
what goes into it changed; another home's build of the same inputs is copied from the cache
across homes (:func:`reef.home.cache_root`) instead, since a build is deterministic.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from reef.enclave import Manifest, build_image
from reef.errors import InputError
from reef.home import ReefHome, cache_root

__all__ = [
    "ExampleKind",
    "ShippedExample",
    "copy_example",
    "describe_examples",
    "example_dir",
    "examples_root",
    "list_examples",
]

ExampleKind = Literal["app", "function", "circuit", "platform"]
"""An enclave app to deploy, a serverless function, a proof market's circuit, or one of the
enclaves ``reef up`` runs itself (shipped to read and to build on)."""


@dataclass(frozen=True)
class ShippedExample:
    """A shipped example as ``reef examples`` lists it."""

    name: str
    kind: ExampleKind
    about: str
    """One line: what it shows."""


# What each example is, for someone choosing a starting point (a test checks that every shipped
# example has its line and every line its example).
_ABOUT: Mapping[str, tuple[ExampleKind, str]] = {
    "hello": ("app", "an HTTP server that reports the keys its enclave attests"),
    "init-params": ("app", "one image, configured at boot by attested (or sealed) init params"),
    "scallop": ("app", "two enclaves talking HTTP over attested Scallop channels"),
    "serverless/hello": ("function", "the smallest function: a name in, a greeting out"),
    "serverless/json-input": ("function", "JSON in, JSON out; bad input gets a 400"),
    "serverless/broken": (
        "function",
        "does not parse: error code 3 (reef fn deploy refuses it without --no-check)",
    ),
    "serverless/endless": ("function", "never answers: killed at its deadline (error code 4)"),
    "proofs/poseidon": ("circuit", "Poseidon of a 64-bit number (Groth16): reef up's market 1"),
    "proofs/commitment": ("circuit", "a Poseidon commitment, private input (Groth16): market 2"),
    "kms-root": ("platform", "the KMS root server"),
    "serverless-executor": ("platform", "a serverless executor (workerd inside)"),
    "proofs-engine": ("platform", "the proof market's matching engine"),
    "proofs-ivs": ("platform", "the proof market's input verification service"),
    "proofs-prover": ("platform", "a proof market prover (snarkjs inside)"),
}

_MARKERS = ("reef.toml", "index.js", "README.md")
"""A directory is one example when it holds an app (reef.toml), a function or a guide."""
# What the reef package copied into an image leaves out: caches, its own npm installs and
# (in a wheel) the examples.
_NOT_CODE_NAMES = ("__pycache__", "node_modules", ".mypy_cache", "_examples")
_NOT_CODE = shutil.ignore_patterns(*_NOT_CODE_NAMES, "*.pyc")
_HEX = frozenset("0123456789abcdef")


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


def describe_examples() -> list[ShippedExample]:
    """The shipped examples with what each is, in :func:`list_examples`' order."""
    return [
        ShippedExample(name, *_ABOUT.get(name, ("app", "")))  # a new one without its line yet
        for name in list_examples()
    ]


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


def _build_example(home: ReefHome, name: str, extra: Mapping[str, Path], *, workdir: Path) -> Path:
    """The image ``builds/<name>.img`` of the example app ``name`` (its ``reef.toml``) with the
    files of ``extra`` (image path -> source) added, assembled in ``workdir``; rebuilt only when
    the manifest or an extra file changed since the last build (``builds/<name>.stamp``).

    A source under ``py/`` is a Python package (copied without caches, stamped file by file); a
    directory elsewhere is copied whole (with its symlinks) and stamped by its own entry, as npm
    replaces ``node_modules`` entries whole.
    """
    app = example_dir(name)
    stamp = hashlib.sha256((app / "reef.toml").read_bytes())
    # The builder's own code too: an image of the same inputs written by another reef (kept in
    # the cache across homes) is not this reef's build.
    for code in (build_image, Manifest):
        stamp.update(Path(inspect.getfile(code)).read_bytes())
    for target, source in sorted(extra.items()):
        files = _code_files(source) if target.startswith("py/") else [source]
        for file in files:
            info = file.stat()
            stamp.update(f"{target}\x00{file}\x00{info.st_mtime_ns}\x00{info.st_size}\x00".encode())
    image_path = home.path("builds", f"{name}.img")
    stamp_path = home.path("builds", f"{name}.stamp")
    if (
        image_path.is_file()
        and stamp_path.is_file()
        and stamp_path.read_text() == stamp.hexdigest()
    ):
        return image_path
    shared = cache_root() / "builds" / f"{name}-{stamp.hexdigest()}.img"
    if shared.is_file():
        # Another home built these very inputs (a fresh home, reef up --fresh, each test's).
        _copy_over(shared, image_path)
        stamp_path.write_text(stamp.hexdigest())
        return image_path
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    shutil.copy2(app / "reef.toml", workdir / "reef.toml")
    for target, source in extra.items():
        destination = workdir / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        if target.startswith("py/"):
            shutil.copytree(source, destination, ignore=_NOT_CODE)
        elif source.is_dir():
            shutil.copytree(source, destination, symlinks=True)
        else:
            shutil.copy2(source, destination)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    build_image(workdir, image_path)
    stamp_path.write_text(stamp.hexdigest())
    _keep_shared(image_path, shared)
    return image_path


def _copy_over(source: Path, target: Path) -> None:
    """Replace ``target`` with a copy of ``source`` (never a link: a later build writes it)."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def _keep_shared(image: Path, shared: Path) -> None:
    """Keep a copy of ``image`` as ``shared`` in the cross-home cache, the only one of its name
    (older inputs' builds go); a cache that cannot be written only costs the next home a build."""
    name = shared.name.rsplit("-", 1)[0]
    with contextlib.suppress(OSError):
        shared.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _copy_over(image, shared)
        for old in shared.parent.glob(f"{name}-*.img"):
            digest = old.name[len(name) + 1 : -len(".img")]
            if old != shared and len(digest) == 64 and all(c in _HEX for c in digest):
                old.unlink(missing_ok=True)


def _code_files(package: Path) -> list[Path]:
    """The files of ``package`` an image carries (sorted), for the build stamp."""
    return sorted(
        path
        for path in package.rglob("*")
        if path.is_file() and not any(part in _NOT_CODE_NAMES for part in path.parts)
    )
