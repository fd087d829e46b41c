"""``reef.toml``: what an enclave image runs, and what it declares about itself.

Every image carries a ``reef.toml`` at its root::

    name = "hello"
    command = ["python3", "server.py"]   # argv; a string is split like a shell would
    ports = [8080]                       # TCP ports the app listens on inside the enclave
    vcpus = 1                            # defaults; `reef enclave run --cpus/--memory` override
    memory_mib = 256
    exclude = ["*.log"]                  # extra build exclusions (glob on paths and names)

    [env]
    GREETING = "hello"

The file is measured byte for byte with the rest of the image (PCR2), so the command, the
environment and the ports are part of the image id. Parsing is strict: unknown keys, wrong types
and values that the dev TEE would refuse later are reported here, with the key named, so a typo
never turns into a silently different enclave.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reef.encoding import describe_value
from reef.errors import ImageError

__all__ = [
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "MAX_MANIFEST_DEPTH",
    "MIN_MEMORY_MIB",
    "RESERVED_PORTS",
    "Manifest",
]

MANIFEST_NAME = "reef.toml"

# Ports the trusted base owns inside every enclave (Oyster's layout, reference §0 cheat-sheet):
# KMS derive 1100/1101, attestation 1300/1301, custom attestation 1350, and reef's dev-TEE
# sealing service at 1210 (a dev TEE addition; Nitro has no sealing, see docs/enclave.md).
RESERVED_PORTS = frozenset({1100, 1101, 1210, 1300, 1301, 1350})

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYS = ("name", "command", "ports", "env", "vcpus", "memory_mib", "exclude")
# The smallest memory limit under which a Python interpreter still starts.
MIN_MEMORY_MIB = 16
_MAX_MEMORY_MIB = 1 << 20
# Every real reef.toml is a few hundred bytes; pure-Python TOML reads about a megabyte a second,
# and a provider parses a stranger's (inside an image of up to 512 MB) before anything else.
MAX_MANIFEST_BYTES = 1 << 20
MAX_MANIFEST_DEPTH = 64
"""How deeply a ``reef.toml``'s arrays and inline tables may nest (real ones nest two or three).
tomllib recurses once per level: where the recursion limit is raised (web3's py_ecc raises it
to 100 000), 5000 levels parsed and deeper ones would overflow the C stack, so the depth is
counted before tomllib runs."""
_TOML_SKIPPED = re.compile(
    r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*',
    re.DOTALL,
)
"""TOML's strings (multi-line and single-line, basic and literal) and comments: brackets in them
do not nest."""


@dataclass(frozen=True)
class Manifest:
    """A validated ``reef.toml``."""

    name: str
    command: tuple[str, ...]
    ports: tuple[int, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    vcpus: int = 1
    memory_mib: int = 256
    exclude: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: bytes | str, *, source: str = MANIFEST_NAME) -> Manifest:
        """Parse and validate the text of a ``reef.toml``.

        Raises:
            ImageError: naming the key that is missing or invalid.
        """
        size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_MANIFEST_BYTES:
            raise ImageError(
                f"{source} is {size} bytes; at most {MAX_MANIFEST_BYTES} are read",
                hint="a reef.toml names the command, ports and environment: keep data in files",
            )
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImageError(f"{source} is not UTF-8 text") from exc
        if _toml_depth(text) > MAX_MANIFEST_DEPTH:
            raise ImageError(
                f"{source} nests arrays or tables too deeply to be read (more than "
                f"{MAX_MANIFEST_DEPTH} levels)",
                hint="see docs/enclave.md for the reef.toml format",
            )
        try:
            data = tomllib.loads(text)
        # TOMLDecodeError is a ValueError, as is int() of an integer over 4 300 digits, which
        # tomllib lets out as it is.
        except ValueError as exc:
            raise ImageError(
                f"{source} is not valid TOML: {str(exc)[:200]}",
                hint="see docs/enclave.md for the reef.toml format",
            ) from exc
        return cls.from_mapping(data, source=source)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = MANIFEST_NAME) -> Manifest:
        """Validate an already parsed manifest.

        Raises:
            ImageError: naming the key that is missing or invalid.
        """
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ImageError(
                f"{source}: unknown key {describe_value(unknown[0])}",
                hint=f"the keys are {', '.join(_KEYS)}",
            )
        return cls(
            name=_name(data, source),
            command=_command(data, source),
            ports=_ports(data, source),
            env=_env(data, source),
            vcpus=_int(data, "vcpus", 1, low=1, high=1024, source=source),
            memory_mib=_int(
                data, "memory_mib", 256, low=MIN_MEMORY_MIB, high=_MAX_MEMORY_MIB, source=source
            ),
            exclude=_strings(data, "exclude", source),
        )


def _name(data: Mapping[str, Any], source: str) -> str:
    if "name" not in data:
        raise ImageError(f"{source}: 'name' is missing", hint='add e.g. name = "hello"')
    value = data["name"]
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ImageError(
            f"{source}: 'name' must be 1-64 characters of a-z, 0-9, '.', '_' or '-', "
            f"got {describe_value(value)}"
        )
    return value


def _command(data: Mapping[str, Any], source: str) -> tuple[str, ...]:
    if "command" not in data:
        raise ImageError(
            f"{source}: 'command' is missing",
            hint='add e.g. command = ["python3", "server.py"]',
        )
    value = data["command"]
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise ImageError(f"{source}: 'command' cannot be split into words: {exc}") from exc
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(word, str) and word and "\0" not in word for word in value)
    ):
        raise ImageError(
            f"{source}: 'command' must be a non-empty list of non-empty strings, "
            f"got {describe_value(value)}"
        )
    return tuple(value)


def _ports(data: Mapping[str, Any], source: str) -> tuple[int, ...]:
    value = data.get("ports", [])
    if not isinstance(value, list):
        raise ImageError(
            f"{source}: 'ports' must be a list of TCP port numbers, got {describe_value(value)}"
        )
    seen: list[int] = []
    for port in value:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ImageError(
                f"{source}: 'ports' holds {describe_value(port)}, not a TCP port (1-65535)"
            )
        if port in RESERVED_PORTS:
            raise ImageError(
                f"{source}: port {port} is reserved for the enclave's trusted base",
                hint=f"reserved inside every enclave: {sorted(RESERVED_PORTS)}",
            )
        if port in seen:
            raise ImageError(f"{source}: port {port} is listed twice")
        seen.append(port)
    return tuple(seen)


def _env(data: Mapping[str, Any], source: str) -> dict[str, str]:
    value = data.get("env", {})
    if not isinstance(value, Mapping):
        raise ImageError(f"{source}: 'env' must be a table of NAME = \"value\" strings")
    env: dict[str, str] = {}
    for key, item in value.items():
        if not _ENV_NAME.fullmatch(key):
            raise ImageError(
                f"{source}: env name {describe_value(key)} is not a valid variable name"
            )
        if key.startswith("REEF_"):
            raise ImageError(
                f"{source}: env name {key!r} is reserved (REEF_* variables are set by the dev TEE)"
            )
        if not isinstance(item, str) or "\0" in item:
            raise ImageError(
                f"{source}: env {key} must be a string without NUL, got {describe_value(item)}"
            )
        env[key] = item
    return dict(sorted(env.items()))


def _int(
    data: Mapping[str, Any], key: str, default: int, *, low: int, high: int, source: str
) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ImageError(
            f"{source}: '{key}' must be an integer from {low} to {high}, "
            f"got {describe_value(value)}"
        )
    return value


def _strings(data: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ImageError(
            f"{source}: '{key}' must be a list of non-empty strings, got {describe_value(value)}"
        )
    return tuple(value)


def _toml_depth(text: str) -> int:
    """How deeply brackets and braces nest in ``text`` outside TOML strings and comments (an
    unbalanced text counts what it opens, as a parser would go before failing)."""
    depth = deepest = 0
    for char in _TOML_SKIPPED.sub("", text):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
