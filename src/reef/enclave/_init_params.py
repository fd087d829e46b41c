"""Init params in Oyster's format: files handed to an enclave at boot, outside its image.

The JSON document (reference §3.2) is ``{"digest": base64(32 bytes), "params": [{"path",
"contents": base64, "should_attest", "should_decrypt"}]}``. Attested params are committed to by
the digest, and through PCR16 to the image id; secret params travel as libsodium sealed boxes to
the enclave's KMS-derived X25519 key for path ``oyster.init-params``.

Digest (reference §3.2), over the *plaintext* of the attested params in list order::

    h_i    = SHA-256(u64_le(len(P)) || P || u64_le(len(C)) || C),  P = "/init-params/" + path
    digest = SHA-256(h_1 || h_2 || ...)          (SHA-256 of nothing when none is attested)

PCR16 = SHA-384(48 zero bytes || digest). Paths are relative, made of normal components (no
``.``, ``..``, empty parts or leading ``/``); two params may not claim the same path or a path
inside another param, since the enclave writes each one as a file under ``/init-params/``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reef.encoding import loads_bounded
from reef.errors import ImageError, InputError
from reef.home import read_file

__all__ = [
    "INIT_PARAMS_KMS_PATH",
    "InitParam",
    "InitParams",
    "init_params_digest",
    "validate_param_path",
]

# The KMS derivation path whose X25519 key secret params are sealed to (Oyster's constant).
INIT_PARAMS_KMS_PATH = "oyster.init-params"
_PREFIX = "/init-params/"
# Oyster's decoder refuses sealed boxes above 64 KiB - 1.
MAX_SEALED_BYTES = 65535
_U64 = struct.Struct("<Q")
# Linux's PATH_MAX, less the prefix the enclave writes a param under: a longer path can never be
# written, and bounding it keeps checking a stranger's paths linear in their size.
MAX_PATH_BYTES = 4096 - len(_PREFIX)


def validate_param_path(path: str) -> str:
    """Return ``path`` when it is a valid init-param path.

    Raises:
        InputError: naming the path and what is wrong with it.
    """
    if not path:
        raise InputError("an init-param path is empty")
    if path.startswith("/"):
        raise InputError(
            f"init-param path {path!r} is absolute",
            hint="paths are relative; the enclave puts them under /init-params/",
        )
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate, from a JSON "\\ud800" escape
        raise InputError(
            f"init-param path {path[:80]!r} is not UTF-8",
            hint="paths are UTF-8 text without lone surrogates",
        ) from exc
    if size > MAX_PATH_BYTES:
        raise InputError(
            f"init-param path {path[:40]!r}... is {size} bytes long; at most {MAX_PATH_BYTES}",
            hint="the enclave writes each param under /init-params/, within Linux's PATH_MAX",
        )
    if "\0" in path or "\\" in path:
        raise InputError(f"init-param path {path!r} contains a NUL or backslash")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InputError(
            f"init-param path {path!r} has an empty, '.' or '..' component",
            hint="every path component must be a plain name",
        )
    return path


def _leaf_hash(path: str, contents: bytes) -> bytes:
    raw = (_PREFIX + path).encode("utf-8")
    return hashlib.sha256(_U64.pack(len(raw)) + raw + _U64.pack(len(contents)) + contents).digest()


def init_params_digest(params: Iterable[tuple[str, bytes, bool]]) -> bytes:
    """Oyster's init-params digest of ``(path, plaintext, should_attest)`` triples, in order."""
    return hashlib.sha256(
        b"".join(_leaf_hash(path, data) for path, data, attest in params if attest)
    ).digest()


@dataclass(frozen=True)
class InitParam:
    """One param. ``contents`` is the plaintext, or the sealed box when ``should_decrypt``."""

    path: str
    contents: bytes
    should_attest: bool = True
    should_decrypt: bool = False


@dataclass(frozen=True)
class InitParams:
    """A validated init-params document. Its digest is stored, as in the JSON.

    Build one with :meth:`build`; load one with :meth:`read` (a file) or :meth:`from_json`.
    Documents without secrets are checked against their digest on load; secret ones once opened
    (:meth:`open`).
    """

    params: tuple[InitParam, ...]
    digest: bytes

    @property
    def has_secrets(self) -> bool:
        return any(p.should_decrypt for p in self.params)

    @classmethod
    def build(
        cls,
        params: Sequence[InitParam],
        *,
        seal_to: bytes | None = None,
    ) -> InitParams:
        """Compute the digest over the plaintexts, then seal the secret params to ``seal_to``.

        ``params`` carry plaintext contents. The digest is computed first because the key to seal
        to depends on it (through PCR16 and the image id); callers with secrets therefore call
        :func:`init_params_digest` (or ``build`` without secrets) first, derive the key, then
        ``build(..., seal_to=key)``.

        Raises:
            InputError: on an invalid or repeated path, or secrets without ``seal_to``.
        """
        _check_paths(p.path for p in params)
        digest = init_params_digest((p.path, p.contents, p.should_attest) for p in params)
        out: list[InitParam] = []
        for param in params:
            if param.should_decrypt:
                if seal_to is None:
                    raise InputError(
                        f"init param {param.path} is secret but no key to seal it to was given",
                        hint="secret params are sealed to the enclave's KMS-derived key",
                    )
                # libsodium loads only for secret params (most enclaves have none).
                from reef.crypto import SEALED_BOX_OVERHEAD, seal

                sealed = seal(param.contents, seal_to)
                if len(sealed) > MAX_SEALED_BYTES:
                    raise InputError(
                        f"secret init param {param.path} is too large "
                        f"({len(param.contents)} bytes; at most "
                        f"{MAX_SEALED_BYTES - SEALED_BOX_OVERHEAD})"
                    )
                param = replace(param, contents=sealed)
            out.append(param)
        return cls(tuple(out), digest)

    def to_json(self) -> bytes:
        """The Oyster JSON document (UTF-8, key order as Oyster writes it)."""
        doc = {
            "digest": base64.b64encode(self.digest).decode(),
            "params": [
                {
                    "path": p.path,
                    "contents": base64.b64encode(p.contents).decode(),
                    "should_attest": p.should_attest,
                    "should_decrypt": p.should_decrypt,
                }
                for p in self.params
            ],
        }
        return json.dumps(doc, indent=2).encode() + b"\n"

    def to_base64(self) -> str:
        """The form Oyster's job metadata carries (``init_params``): base64 of the JSON."""
        return base64.b64encode(self.to_json()).decode()

    @classmethod
    def read(cls, path: Path) -> InitParams:
        """The init-params file at ``path`` (``reef init-params build`` writes them).

        Raises:
            ImageError: the file is missing or unreadable, or does not hold valid init params.
        """
        raw = read_file(
            path,
            missing=ImageError(f"init params file {path} does not exist"),
            unreadable=f"cannot read init params {path}",
        )
        return cls.from_json(raw, source=str(path))

    @classmethod
    def from_json(cls, data: bytes | str, *, source: str = "init params") -> InitParams:
        """Parse and validate an init-params JSON document (or its base64 form).

        Raises:
            ImageError: when the document is malformed, a path is invalid, or (for documents
                without secrets) the digest does not match the contents.
        """
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        stripped = text.strip()
        if stripped and not stripped.startswith(("{", "[")):
            try:
                stripped = base64.b64decode(stripped, validate=True).decode("utf-8")
            # ValueError: text that is not ASCII (binascii.Error and UnicodeDecodeError are
            # ValueErrors too).
            except ValueError as exc:
                raise ImageError(f"{source} is neither init-params JSON nor its base64") from exc
        try:
            # A job's init params are its tenant's: bounded, as any stranger's JSON.
            doc = loads_bounded(stripped, what=source)
        except InputError as exc:
            raise ImageError(exc.message, hint=exc.hint) from exc
        params_doc, digest = _parse_doc(doc, source)
        params = tuple(_parse_param(item, i, source) for i, item in enumerate(params_doc))
        try:
            _check_paths(p.path for p in params)
        except InputError as exc:
            raise ImageError(f"{source}: {exc.message}", hint=exc.hint) from exc
        result = cls(params, digest)
        if not result.has_secrets:
            result.check_digest()
        return result

    def check_digest(self, plaintexts: Mapping[str, bytes] | None = None) -> None:
        """Recompute the digest (with opened secrets from ``plaintexts``) and compare.

        Raises:
            ImageError: when it differs from the stored digest.
        """
        triples = []
        for p in self.params:
            data = p.contents
            if p.should_decrypt:
                if plaintexts is None or p.path not in plaintexts:
                    raise ImageError(f"secret init param {p.path} is not opened")
                data = plaintexts[p.path]
            triples.append((p.path, data, p.should_attest))
        if init_params_digest(triples) != self.digest:
            raise ImageError(
                "the init params do not match their digest",
                hint="the file was altered after it was built; rebuild it",
            )

    def open(self, secret_key: bytes | None) -> dict[str, bytes]:
        """Every param's plaintext by path, opening secrets with ``secret_key``; digest checked.

        Raises:
            ImageError: when a secret does not open with the key or the digest differs.
        """
        plain: dict[str, bytes] = {}
        for p in self.params:
            if p.should_decrypt:
                if secret_key is None:
                    raise ImageError(
                        f"init param {p.path} is secret and no KMS key is available to open it",
                        hint="secret init params open inside an enclave wired to a KMS",
                    )
                if len(p.contents) > MAX_SEALED_BYTES:
                    raise ImageError(f"secret init param {p.path} is larger than 65535 bytes")
                from reef.crypto import open_sealed

                try:
                    plain[p.path] = open_sealed(p.contents, secret_key)
                except InputError as exc:
                    raise ImageError(
                        f"secret init param {p.path} does not open with this enclave's key",
                        hint="it was sealed for another image id (another image, init params "
                        "or debug mode) or for another KMS",
                    ) from exc
            else:
                plain[p.path] = p.contents
        self.check_digest(plain)
        return plain


def _check_paths(paths: Iterable[str]) -> None:
    seen: set[str] = set()
    for path in paths:
        validate_param_path(path)
        if path in seen:
            raise InputError(f"init-param path {path!r} is given twice")
        seen.add(path)
    for path in seen:
        # Every parent is a prefix of the path ending before one of its slashes (the path is in
        # normal form: validate_param_path checked it).
        slash = path.find("/")
        while slash != -1:
            parent = path[:slash]
            if parent in seen:
                raise InputError(
                    f"init-param path {path!r} lies inside {parent!r}, which is a file"
                )
            slash = path.find("/", slash + 1)


def _parse_doc(doc: Any, source: str) -> tuple[list[Any], bytes]:
    if not isinstance(doc, dict):
        raise ImageError(f"{source}: the document must be a JSON object with digest and params")
    if "digest" not in doc or "params" not in doc:
        raise ImageError(f"{source}: the document needs both 'digest' and 'params'")
    try:
        digest = base64.b64decode(str(doc["digest"]), validate=True)
    except ValueError as exc:  # binascii.Error, or text that is not ASCII
        raise ImageError(f"{source}: 'digest' is not base64") from exc
    if len(digest) != 32:
        raise ImageError(f"{source}: 'digest' must be 32 bytes, got {len(digest)}")
    if not isinstance(doc["params"], list):
        raise ImageError(f"{source}: 'params' must be a list")
    return doc["params"], digest


def _parse_param(item: Any, index: int, source: str) -> InitParam:
    where = f"{source}: params[{index}]"
    if not isinstance(item, dict):
        raise ImageError(f"{where} must be an object")
    path, contents = item.get("path"), item.get("contents")
    if not isinstance(path, str):
        raise ImageError(f"{where}: 'path' must be a string")
    if not isinstance(contents, str):
        raise ImageError(f"{where}: 'contents' must be a base64 string")
    try:
        raw = base64.b64decode(contents, validate=True)
    except ValueError as exc:  # binascii.Error, or text that is not ASCII
        raise ImageError(f"{where}: 'contents' is not base64") from exc
    # Oyster's decoder defaults: attest unless told otherwise, decrypt only when told.
    attest, decrypt = item.get("should_attest", True), item.get("should_decrypt", False)
    if not isinstance(attest, bool) or not isinstance(decrypt, bool):
        raise ImageError(f"{where}: should_attest and should_decrypt must be true or false")
    return InitParam(path, raw, attest, decrypt)
