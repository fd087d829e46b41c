"""Pinned KMS identities: what ``reef kms`` remembers about the roots it has checked.

A pin is written when a root's identity was verified (``reef kms info --pin``, or the first
``reef kms pubkey --trust ...``) or given explicitly; later commands check answers against it
without asking for an attestation again (trust on first *verified* use). Pins live in
``$REEF_HOME/kms/pins.json``, keyed by the normalised public URL, and hold only public keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reef.errors import ConfigError
from reef.home import ReefHome, replace_json
from reef.kms._client import VerifiedKmsIdentity, normalize_kms_url

__all__ = ["KmsPin", "PinStore"]


@dataclass(frozen=True)
class KmsPin:
    """What is pinned for one KMS root.

    ``signing_keys`` / ``scallop_keys`` map a root seed version to its keys; ``image_id`` and
    ``root`` say what the pin was verified against ("" when the keys were given by hand).
    """

    url: str
    signing_keys: Mapping[int, bytes]
    scallop_keys: Mapping[int, bytes] = field(default_factory=dict)
    current_version: int = 0
    image_id: bytes = b""
    root: str = ""
    learned_at_ms: int = 0

    @classmethod
    def from_identity(cls, identity: VerifiedKmsIdentity, *, learned_at_ms: int) -> KmsPin:
        return cls(
            url=identity.url,
            signing_keys={i.version: i.signing_key for i in identity.identities},
            scallop_keys={i.version: i.scallop_key for i in identity.identities},
            current_version=identity.current_version,
            image_id=identity.attestation.image_id,
            root=identity.attestation.root.name,
            learned_at_ms=learned_at_ms,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "signing_keys": {str(v): k.hex() for v, k in sorted(self.signing_keys.items())},
            "scallop_keys": {str(v): k.hex() for v, k in sorted(self.scallop_keys.items())},
            "current_version": self.current_version,
            "image_id": self.image_id.hex(),
            "root": self.root,
            "learned_at_ms": self.learned_at_ms,
        }

    @classmethod
    def from_json(cls, url: str, data: Mapping[str, Any]) -> KmsPin:
        return cls(
            url=url,
            signing_keys={int(v): bytes.fromhex(k) for v, k in data["signing_keys"].items()},
            scallop_keys={int(v): bytes.fromhex(k) for v, k in data["scallop_keys"].items()},
            current_version=int(data["current_version"]),
            image_id=bytes.fromhex(data["image_id"]),
            root=str(data["root"]),
            learned_at_ms=int(data["learned_at_ms"]),
        )


class PinStore:
    """``$REEF_HOME/kms/pins.json``: one :class:`KmsPin` per KMS URL."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_home(cls, home: ReefHome) -> PinStore:
        return cls(home.kms / "pins.json")

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{self.path} is not readable JSON: {exc}",
                hint="delete it to forget every pinned KMS",
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path} is not a JSON object", hint="delete it")
        return data

    def get(self, url: str) -> KmsPin | None:
        """The pin for ``url``, or None.

        Raises:
            ConfigError: when the pin file is corrupt.
        """
        key = normalize_kms_url(url)
        entry = self._load().get(key)
        if entry is None:
            return None
        try:
            return KmsPin.from_json(key, entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"the pin for {key} in {self.path} is malformed",
                hint="re-pin it with reef kms info --pin",
            ) from exc

    def save(self, pin: KmsPin) -> None:
        """Write (or replace) the pin for ``pin.url`` atomically."""
        data = self._load()
        data[normalize_kms_url(pin.url)] = pin.to_json()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._write(data)

    def forget(self, url: str) -> bool:
        """Drop the pin for ``url``; return whether there was one."""
        data = self._load()
        if data.pop(normalize_kms_url(url), None) is None:
            return False
        self._write(data)
        return True

    def _write(self, data: Mapping[str, Any]) -> None:
        replace_json(self.path, data, sort_keys=True)
