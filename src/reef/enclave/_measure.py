"""Measurements of enclave images: PCR0/1/2 of the dev TEE, PCR16 of init params, the image id.

The recipe follows Nitro's spirit (reference §1.2, §3.3): every PCR is *extended once from zero*,
``PCR = SHA-384(48 zero bytes || SHA-384(measured bytes))``, which is how an EIF's PCRs and
Oyster's PCR16 are formed. What is measured:

- **PCR2, the app**: the image's entries (``reef.toml`` included) in archive order, i.e. sorted by
  their UTF-8 path, as records (below) after the tag ``b"reef.app.v1\\0"``.
- **PCR1, the reef runtime**: the version record and the exact bytes of every reef module the
  trusted base can load (:data:`RUNTIME_MODULES`: the supervisor, its sandbox, limits and network,
  the attestation servers and dev TEE authority, the KMS derive server and its Scallop client,
  this recipe, and all they import from reef), after the tag ``b"reef.runtime.v2\\0"``. The same
  reef release gives the same PCR1 on every machine.
- **PCR0, the whole image**: the runtime bytes followed by the app bytes, as an EIF's PCR0 covers
  kernel, boot ramdisk and application together.
- **PCR16**: ``SHA-384(48 zero bytes || init-params digest)`` (Oyster's ``pcr-extender``), only
  when init params are given.

A record is ``kind (1 byte) || u64_le(len(path)) || path || u64_le(len(data)) || data`` with
kind ``d`` (directory, no data), ``f`` (file, mode 0644), ``x`` (executable file, 0755),
``l`` (symlink, data = target) or ``v`` (the runtime version, path ``version``). Lengths are
little-endian as in Oyster's init-params digest. Debug mode zeroes PCR0-2, as Nitro does; PCR16
stays the init-params measurement (Oyster's ``debug`` preset).
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from stat import S_ISREG
from typing import Literal

import reef
from reef.attestation import PCR_LENGTH, image_id
from reef.errors import MisuseError

__all__ = [
    "APP_TAG",
    "RUNTIME_MODULES",
    "RUNTIME_TAG",
    "EntryKind",
    "Measurements",
    "Measurer",
    "extend_pcr",
    "measure_record",
    "runtime_measurement",
]

APP_TAG = b"reef.app.v1\0"
RUNTIME_TAG = b"reef.runtime.v2\0"
# Every reef module the trusted base can load, in measuring order: the import closure, within
# reef, of the module the supervisor runs as (reef.enclave.local._supervisor), counting imports inside
# functions and the package __init__ modules on the way, leaving out imports made only for type
# checking. It is written out here rather than computed when measuring, so that every machine
# measures the same files for the same release; tests/enclave/test_image.py recomputes the
# closure and checks this list against it.
RUNTIME_MODULES: tuple[str, ...] = (
    "reef",
    "reef._api",
    "reef._clock",
    "reef._fetch",
    "reef._lazy",
    "reef._listen",
    "reef._peers",
    "reef._serve",
    "reef.attestation",
    "reef.attestation._cache",
    "reef.attestation._chain",
    "reef.attestation._client",
    "reef.attestation._cose",
    "reef.attestation._dev",
    "reef.attestation._image_id",
    "reef.attestation._model",
    "reef.attestation._nitro",
    "reef.attestation._quote",
    "reef.attestation._roots",
    "reef.attestation._server",
    "reef.attestation._statement",
    "reef.attestation._verifier_service",
    "reef.attestation._verify",
    "reef.crypto",
    "reef.crypto._curve25519",
    "reef.crypto._eip712",
    "reef.crypto._hashes",
    "reef.crypto._scalars",
    "reef.crypto._sealed_box",
    "reef.crypto._secp256k1",
    "reef.enclave",
    "reef.enclave._backend",
    "reef.enclave._image",
    "reef.enclave._init_params",
    "reef.enclave._manifest",
    "reef.enclave._measure",
    "reef.enclave.local",
    "reef.enclave.local._backend",
    "reef.enclave.local._firewall",
    "reef.enclave.local._lease",
    "reef.enclave.local._limits",
    "reef.enclave.local._network",
    "reef.enclave.local._plan",
    "reef.enclave.local._procs",
    "reef.enclave.local._requirements",
    "reef.enclave.local._sandbox",
    "reef.enclave.local._seccomp",
    "reef.enclave.local._state_volume",
    "reef.enclave.local._supervisor",
    "reef.enclave.local._trusted_base",
    "reef.encoding",
    "reef.errors",
    "reef.home",
    "reef.kms",
    "reef.kms._approval",
    "reef.kms._client",
    "reef.kms._derive",
    "reef.kms._derive_server",
    "reef.kms._handover",
    "reef.kms._http",
    "reef.kms._keyring",
    "reef.kms._pins",
    "reef.kms._public",
    "reef.kms._root",
    "reef.kms._scallop",
    "reef.kms._server",
    "reef.kms._signing",
    "reef.kms._store",
    "reef.scallop",
    "reef.scallop._handshake",
    "reef.scallop._http",
    "reef.scallop._noise",
    "reef.scallop._policy",
    "reef.scallop._request",
    "reef.scallop._server",
    "reef.scallop._slots",
    "reef.scallop._stream",
    "reef.scallop._wire",
)

EntryKind = Literal["d", "f", "x", "l", "v"]
_ZERO = bytes(PCR_LENGTH)
_U64 = struct.Struct("<Q")


def extend_pcr(measured_digest: bytes, *, initial: bytes = _ZERO) -> bytes:
    """One NSM-style extend: ``SHA-384(initial || measured_digest)``."""
    return hashlib.sha384(initial + measured_digest).digest()


def measure_record(kind: EntryKind, path: str, data: bytes) -> bytes:
    """The bytes of one measured record (see the module docstring)."""
    raw = path.encode("utf-8")
    return kind.encode() + _U64.pack(len(raw)) + raw + _U64.pack(len(data)) + data


class Measurer:
    """Streams the records of an image into the PCR0 and PCR2 hashes.

    Entries must be fed in archive order; a file's content may arrive in chunks after its header.
    """

    def __init__(self, runtime: bytes) -> None:
        self._pcr0 = hashlib.sha384(runtime)
        self._pcr2 = hashlib.sha384()
        self._pending = 0
        self._update(APP_TAG)

    def _update(self, data: bytes) -> None:
        self._pcr0.update(data)
        self._pcr2.update(data)

    def begin(self, kind: EntryKind, path: str, size: int) -> None:
        """Start a record whose data (``size`` bytes) follows through :meth:`data`."""
        if self._pending:
            raise MisuseError("the previous record still expects data")
        raw = path.encode("utf-8")
        self._update(kind.encode() + _U64.pack(len(raw)) + raw + _U64.pack(size))
        self._pending = size

    def data(self, chunk: bytes) -> None:
        """Feed part of the current record's data."""
        if len(chunk) > self._pending:
            raise MisuseError("more record data than its declared size")
        self._pending -= len(chunk)
        self._update(chunk)

    def record(self, kind: EntryKind, path: str, data: bytes) -> None:
        """A whole record at once."""
        self.begin(kind, path, len(data))
        self.data(data)

    def finish(self, runtime_digest: bytes) -> tuple[bytes, bytes, bytes]:
        """PCR0, PCR1 and PCR2 (``runtime_digest`` is SHA-384 of the runtime bytes)."""
        if self._pending:
            raise MisuseError("the last record is missing data")
        return (
            extend_pcr(self._pcr0.digest()),
            extend_pcr(runtime_digest),
            extend_pcr(self._pcr2.digest()),
        )


def runtime_measurement(modules: Iterable[str] = RUNTIME_MODULES) -> bytes:
    """The measured bytes of this installation's reef runtime (PCR1's input).

    Every launch measures its image, and with it these files: they are read again only when one
    of them changed (a new path, size or modification time), which a stat of each tells.

    Raises:
        MisuseError: when a runtime module is missing (a broken installation).
    """
    # Read from the files next to this reef package (what the supervisor imports), without
    # importing anything.
    top = os.path.dirname(os.path.dirname(os.path.abspath(reef.__file__)))
    files: list[tuple[str, int, int]] = []
    for name in modules:
        base = os.path.join(top, *name.split("."))
        for path in (os.path.join(base, "__init__.py"), base + ".py"):
            try:
                stat = os.stat(path)
            except OSError:
                continue
            if S_ISREG(stat.st_mode):
                files.append((path, stat.st_mtime_ns, stat.st_size))
                break
        else:
            raise MisuseError(
                f"the reef runtime module {name} is missing",
                hint="reinstall reef; the runtime cannot be measured without it",
            )
    return _runtime_bytes(top, tuple(files))


@functools.lru_cache(maxsize=4)
def _runtime_bytes(top: str, files: tuple[tuple[str, int, int], ...]) -> bytes:
    """The runtime record of ``files`` (path, mtime, size): a memo of a pure function of the
    files' contents, keyed so that a file changed since is read again."""
    parts = [RUNTIME_TAG, measure_record("v", "version", f"reef {reef.__version__}".encode())]
    for path, _, _ in files:
        with open(path, "rb") as handle:
            data = handle.read()
        relative = os.path.relpath(path, top).replace(os.sep, "/")
        parts.append(measure_record("f", relative, data))
    return b"".join(parts)


@dataclass(frozen=True)
class Measurements:
    """The PCRs an enclave of this image attests, and its image id."""

    pcrs: Mapping[int, bytes]
    debug: bool = False
    init_params_digest: bytes | None = None
    image_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_id", image_id(self.pcrs))

    @classmethod
    def of(
        cls,
        pcr0: bytes,
        pcr1: bytes,
        pcr2: bytes,
        *,
        init_params_digest: bytes | None = None,
        debug: bool = False,
    ) -> Measurements:
        """Assemble PCRs 0, 1, 2 (zeroed in debug) and PCR16 from an init-params digest."""
        pcrs = {0: pcr0, 1: pcr1, 2: pcr2}
        if debug:
            pcrs = {index: _ZERO for index in pcrs}
        if init_params_digest is not None:
            pcrs[16] = extend_pcr(init_params_digest)
        return cls(pcrs=pcrs, debug=debug, init_params_digest=init_params_digest)

    def with_init_params(self, digest: bytes | None) -> Measurements:
        """The same image with another init-params digest (``None``: no init params)."""
        pcrs = {i: v for i, v in self.pcrs.items() if i != 16}
        if digest is not None:
            pcrs[16] = extend_pcr(digest)
        return Measurements(pcrs=pcrs, debug=self.debug, init_params_digest=digest)

    def as_debug(self) -> Measurements:
        """The measurements a debug enclave of this image attests (PCR0-2 zero)."""
        pcrs = {i: (_ZERO if i in (0, 1, 2) else v) for i, v in self.pcrs.items()}
        return Measurements(pcrs=pcrs, debug=True, init_params_digest=self.init_params_digest)

    def attested(self, *, init_params_digest: bytes | None, debug: bool) -> Measurements:
        """What an enclave of this image attests when started with these init params (PCR16)
        and in this mode (debug zeroes PCR0-2)."""
        measured = self.with_init_params(init_params_digest)
        return measured.as_debug() if debug else measured

    def to_json(self) -> dict[str, object]:
        """``{"image_id", "pcrs": {"0": hex, ...}, "debug", "init_params_digest"}``."""
        return {
            "image_id": self.image_id.hex(),
            "pcrs": {str(i): self.pcrs[i].hex() for i in sorted(self.pcrs)},
            "debug": self.debug,
            "init_params_digest": self.init_params_digest.hex() if self.init_params_digest else "",
        }
