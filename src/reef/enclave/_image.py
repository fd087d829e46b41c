"""Enclave images: a deterministic archive of an app directory with its ``reef.toml``.

An image is a gzip-compressed POSIX (pax) tar of the directory. To make the same inputs give the
same bytes on any machine, whatever the file order, mtimes, owners or umask:

- entries are sorted by their UTF-8 path; directories are included;
- every entry has mtime 0, uid/gid 0 and empty owner names; files are mode 0644, or 0755 when
  any execute bit is set, directories 0755; only regular files, directories and symlinks that
  stay inside the image are allowed (no hard links, devices, sockets or absolute links);
- the gzip header has mtime 0, no file name, and a fixed compression level.

The measurement (PCR0/PCR2, :mod:`reef.enclave._measure`) is taken over the entries themselves,
never over the compressed bytes, so a different zlib could change the file but not the image id.
Reading is as strict as writing: an archive that the builder could not have produced (an
unsorted, duplicated, absolute or ``..`` entry, a foreign mode) is refused as corrupt.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gzip
import hashlib
import io
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from reef.enclave._init_params import InitParams
from reef.enclave._manifest import MANIFEST_NAME, Manifest
from reef.enclave._measure import EntryKind, Measurements, Measurer, runtime_measurement
from reef.errors import ImageError, InputError
from reef.home import read_file, replace_file

__all__ = [
    "DEFAULT_EXCLUDES",
    "Image",
    "ImageEntry",
    "attested_measurements",
    "build_image",
    "load_image",
]

# Files that are never part of an app, and that would otherwise make builds depend on who ran the
# app last (bytecode caches) or on the developer's tools.
DEFAULT_EXCLUDES = (".git", "__pycache__", "*.pyc", ".DS_Store")
# gzip's default: the workerd binary of the serverless executor's image (156 MB) took 13 s at
# level 9 and takes 5.5 s at 6, for an archive 0.5 % larger. The level fixes the archive's bytes,
# never what an enclave attests (the measurements are over the entries, not the compressed bytes).
_GZIP_LEVEL = 6
_CHUNK = 1 << 20
# Refuse archives that would unpack to more than this: whoever launches an image (a provider,
# for a stranger's job) holds it whole in memory while it is read, so this bounds what a few MB
# of gzip can cost it. It was 4 GiB (a 4.7 MB image of 1 GiB of zeros cost its loader 2.1 GB and
# 25 s of CPU); it is now the market image store's upload cap, which the images reef runs (app
# directories: the Python runtime comes from the host) stay far below.
MAX_IMAGE_BYTES = 512 << 20
_MAX_COMPRESSED = MAX_IMAGE_BYTES + (MAX_IMAGE_BYTES >> 8)


@dataclass(frozen=True)
class ImageEntry:
    """One entry of an image: its path, kind and, for files and links, its data."""

    path: str
    kind: EntryKind
    data: bytes = b""

    @property
    def mode(self) -> int:
        return 0o755 if self.kind in ("d", "x") else (0o777 if self.kind == "l" else 0o644)


@dataclass(frozen=True)
class Image:
    """A loaded, validated image: its manifest, entries and measurements (non-debug)."""

    manifest: Manifest
    entries: tuple[ImageEntry, ...]
    measurements: Measurements

    @property
    def image_id(self) -> bytes:
        return self.measurements.image_id

    def attested(
        self, init_params: InitParams | None = None, *, debug: bool = False
    ) -> Measurements:
        """What an enclave of this image attests when started with ``init_params`` (PCR16) and
        in this mode (debug zeroes PCR0-2, as on Nitro): the dev TEE's recipe, docs/enclave.md."""
        digest = init_params.digest if init_params is not None else None
        return self.measurements.attested(init_params_digest=digest, debug=debug)

    def extract(self, target: Path) -> None:
        """Write the image's files under ``target`` (which must be empty or absent)."""
        target.mkdir(parents=True, exist_ok=True)
        if any(target.iterdir()):
            raise InputError(f"{target} is not empty; images extract into an empty directory")
        for entry in self.entries:
            dest = target.joinpath(*PurePosixPath(entry.path).parts)
            if entry.kind == "l":
                dest.symlink_to(entry.data.decode("utf-8"))
                continue
            if entry.kind == "d":
                dest.mkdir()
            else:
                dest.write_bytes(entry.data)
            # Explicitly, since the umask filters what mkdir and open would set.
            dest.chmod(entry.mode)


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)


def _walk(root: Path, patterns: tuple[str, ...]) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Every non-excluded path under root, relative, with its lstat, in no particular order."""
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            children = list(os.scandir(current))
        except OSError as exc:
            raise ImageError(f"cannot read directory {current}: {exc.strerror}") from exc
        for child in children:
            path = Path(child.path)
            rel = path.relative_to(root).as_posix()
            if _excluded(rel, patterns):
                continue
            info = child.stat(follow_symlinks=False)
            yield rel, path, info
            if stat.S_ISDIR(info.st_mode):
                stack.append(path)


def _check_link(rel: str, target: str) -> None:
    if target.startswith("/"):
        raise ImageError(
            f"symlink {rel} points to the absolute path {target}",
            hint="images may only hold relative links that stay inside the image",
        )
    parts: list[str] = list(PurePosixPath(rel).parent.parts)
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not parts:
                raise ImageError(
                    f"symlink {rel} -> {target} leaves the image",
                    hint="images may only hold relative links that stay inside the image",
                )
            parts.pop()
        elif part != ".":
            parts.append(part)


def build_image(source: Path, output: Path | IO[bytes]) -> Image:
    """Build the deterministic image of ``source`` (a directory with a ``reef.toml``).

    Raises:
        ImageError: when the directory has no valid ``reef.toml``, or holds a file an image
            cannot carry (a device, a socket, a link leaving the image, an unreadable file).
    """
    if not source.is_dir():
        raise ImageError(f"{source} is not a directory", hint="give the app's directory")
    manifest_path = source / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ImageError(
            f"{source} has no {MANIFEST_NAME}",
            hint="create one with at least name and command; see docs/enclave.md",
        )
    manifest = Manifest.parse(manifest_path.read_bytes(), source=str(manifest_path))
    patterns = DEFAULT_EXCLUDES + manifest.exclude
    if _excluded(MANIFEST_NAME, patterns):
        raise ImageError(f"{MANIFEST_NAME} may not be excluded from the image")

    # An output written inside the source directory must not end up in the next build.
    skip: set[str] = set()
    if isinstance(output, Path):
        written = output.resolve()
        for candidate in (written, written.with_name(written.name + ".tmp")):
            if candidate.is_relative_to(source.resolve()):
                skip.add(candidate.relative_to(source.resolve()).as_posix())
    found: list[tuple[bytes, str, Path, os.stat_result]] = []
    for rel, path, info in _walk(source, patterns):
        if rel in skip:
            continue
        try:
            key = rel.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ImageError(f"the file name {rel!r} is not valid UTF-8") from exc
        found.append((key, rel, path, info))
    found.sort(key=lambda item: item[0])

    entries: list[ImageEntry] = []
    for _, rel, path, info in found:
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            entries.append(ImageEntry(rel, "d"))
        elif stat.S_ISLNK(mode):
            target = os.readlink(path)
            _check_link(rel, target)
            entries.append(ImageEntry(rel, "l", target.encode("utf-8")))
        elif stat.S_ISREG(mode):
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ImageError(f"cannot read {path}: {exc.strerror}") from exc
            entries.append(ImageEntry(rel, "x" if mode & 0o111 else "f", data))
        else:
            raise ImageError(
                f"{path} is not a regular file, directory or symlink",
                hint="remove it, or exclude it in reef.toml",
            )
    image = _measure(manifest, tuple(entries))
    data = _archive(image.entries)
    if isinstance(output, Path):
        try:
            replace_file(output, data, mode=0o644)
        except OSError as exc:
            raise ImageError(f"cannot write the image to {output}: {exc.strerror}") from exc
    else:
        output.write(data)
    return image


def _measure(manifest: Manifest, entries: tuple[ImageEntry, ...]) -> Image:
    runtime = runtime_measurement()
    measurer = Measurer(runtime)
    for entry in entries:
        measurer.record(entry.kind, entry.path, entry.data)
    pcr0, pcr1, pcr2 = measurer.finish(hashlib.sha384(runtime).digest())
    return Image(manifest, entries, Measurements.of(pcr0, pcr1, pcr2))


def _archive(entries: tuple[ImageEntry, ...]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.path)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = entry.mode
            if entry.kind == "d":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind == "l":
                info.type = tarfile.SYMTYPE
                info.linkname = entry.data.decode("utf-8")
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    if raw.tell() > MAX_IMAGE_BYTES:
        # Built, it would be refused by every command that loads it.
        raise _too_large("the image")
    out = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of names and clocks.
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=out, compresslevel=_GZIP_LEVEL, mtime=0
    ) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _corrupt(path: str, why: str) -> ImageError:
    return ImageError(
        f"{path} is not a valid reef image: {why}",
        hint="rebuild it with `reef image build DIR -o FILE`",
    )


def load_image(source: Path | bytes, *, name: str | None = None) -> Image:
    """Read, validate and measure an image file (or its bytes).

    A directory is built in memory first, exactly as :func:`build_image` builds it, so every
    command that takes an image also takes an app directory.

    Raises:
        ImageError: when the file is missing, is not a reef image, is corrupted, or carries a
            missing or malformed ``reef.toml``.
    """
    label = name or (str(source) if isinstance(source, Path) else "the image")
    if isinstance(source, Path) and source.is_dir():
        return build_image(source, io.BytesIO())
    if isinstance(source, Path):
        # gzip never shrinks what it cannot compress by more than a few bytes per block: a file
        # larger than this cannot unpack within the cap, and is not read into memory to see.
        with contextlib.suppress(OSError):
            if source.stat().st_size > _MAX_COMPRESSED:
                raise _too_large(label)
        blob = read_file(
            source,
            missing=ImageError(f"image file {source} does not exist"),
            unreadable=f"cannot read image file {source}",
        )
    else:
        blob = source
    if len(blob) > _MAX_COMPRESSED:
        raise _too_large(label)
    try:
        raw = _gunzip(blob, label)
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(label, f"the gzip stream is damaged ({exc})") from exc
    entries = _read_tar(raw, label)
    manifest_entry = next((e for e in entries if e.path == MANIFEST_NAME), None)
    if manifest_entry is None or manifest_entry.kind not in ("f", "x"):
        raise ImageError(
            f"{label} has no {MANIFEST_NAME}",
            hint="build images with `reef image build DIR -o FILE` from a directory with reef.toml",
        )
    manifest = Manifest.parse(manifest_entry.data, source=f"{label}: {MANIFEST_NAME}")
    return _measure(manifest, entries)


def attested_measurements(
    image: Path | bytes,
    init_params: Path | InitParams | None = None,
    *,
    debug: bool = False,
) -> Measurements:
    """What an enclave of the image ``image`` (a file, an app directory or the file's bytes)
    attests when it boots with ``init_params`` (an init-params file or a loaded document;
    measured into PCR16) in debug mode or not (debug zeroes PCR0-2).

    Deploying checks a new enclave against it, updating a job names the image id the new
    enclave must attest, and ``reef image measure`` / ``reef verify --image`` print and expect
    it: one recipe, here beside :meth:`Image.attested` (docs/enclave.md), for all of them.

    Raises:
        ImageError: the image or the init-params file cannot be read or is malformed.
    """
    params = InitParams.read(init_params) if isinstance(init_params, Path) else init_params
    return load_image(image).attested(params, debug=debug)


def _gunzip(blob: bytes, label: str) -> bytes:
    """The tar stream of an image, refused past :data:`MAX_IMAGE_BYTES` as it unpacks.

    Raises:
        ImageError: when it unpacks to more than that.
    """
    # A BytesIO hands its buffer over (getvalue), where bytes(bytearray) copied it once more.
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=io.BytesIO(blob), mode="rb") as gz:
        while chunk := gz.read(_CHUNK):
            if out.tell() + len(chunk) > MAX_IMAGE_BYTES:
                raise _too_large(label)
            out.write(chunk)
    return out.getvalue()


def _too_large(label: str) -> ImageError:
    return ImageError(
        f"{label} unpacks to more than {MAX_IMAGE_BYTES} bytes",
        hint="an image holds an app directory (the runtime comes from the host): keep large "
        "data out of it, or fetch it when the app starts",
    )


def _read_tar(raw: bytes, label: str) -> tuple[ImageEntry, ...]:
    entries: list[ImageEntry] = []
    seen: set[str] = set()
    previous = b""
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                entries.append(_entry(tar, member, label))
                key = member.name.encode("utf-8")
                if member.name in seen:
                    raise _corrupt(label, f"entry {member.name!r} appears twice")
                if key < previous:
                    raise _corrupt(label, f"entry {member.name!r} is out of order")
                seen.add(member.name)
                previous = key
    except ImageError:
        raise
    # tarfile lets ValueError out of malformed pax sparse headers (int() of GNU.sparse.map,
    # .size or .realsize), and the others of numbers it reads from headers.
    except (tarfile.TarError, ValueError, EOFError, OverflowError) as exc:
        raise _corrupt(label, f"the tar stream is damaged ({str(exc)[:200]})") from exc
    # Every parent must be a directory entry (never a symlink), so that extracting the image can
    # never write through a link.
    directories = {entry.path for entry in entries if entry.kind == "d"}
    for entry in entries:
        parent = str(PurePosixPath(entry.path).parent)
        if parent != "." and parent not in directories:
            raise _corrupt(label, f"entry {entry.path!r} has no parent directory entry")
    return tuple(entries)


def _utf8(text: str) -> bytes | None:
    """``text`` in UTF-8, or None when tarfile read it from bytes that are not (it keeps such
    bytes as lone surrogates, which no file name reef writes holds)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _entry(tar: tarfile.TarFile, member: tarfile.TarInfo, label: str) -> ImageEntry:
    name = member.name
    if _utf8(name) is None:
        raise _corrupt(label, f"entry {name!r} is not UTF-8")
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise _corrupt(label, f"entry {name!r} is not a plain relative path")
    if "/".join(parts) != name:
        raise _corrupt(label, f"entry {name!r} is not in normal form")
    if member.mtime != 0 or member.uid != 0 or member.gid != 0:
        raise _corrupt(label, f"entry {name!r} has owner or time metadata")
    if member.isdir():
        expected, entry = 0o755, ImageEntry(name, "d")
    elif member.issym():
        target = _utf8(member.linkname)
        if target is None:
            raise _corrupt(label, f"entry {name!r} links to a target that is not UTF-8")
        _check_link(name, member.linkname)
        expected, entry = 0o777, ImageEntry(name, "l", target)
    elif member.isreg():
        if member.issparse():
            # A sparse entry's holes read back as zeros: a few hundred bytes of archive could
            # claim terabytes, and reading it would allocate them all. The builder never writes
            # one.
            raise _corrupt(label, f"entry {name!r} is a sparse file")
        handle = tar.extractfile(member)
        if handle is None:
            raise _corrupt(label, f"entry {name!r} has no data")
        data = handle.read()
        if len(data) != member.size:
            raise _corrupt(label, f"entry {name!r} is truncated")
        kind: EntryKind = "x" if member.mode == 0o755 else "f"
        expected, entry = (0o755 if kind == "x" else 0o644), ImageEntry(name, kind, data)
    else:
        raise _corrupt(label, f"entry {name!r} is not a file, directory or symlink")
    if member.mode != expected:
        raise _corrupt(label, f"entry {name!r} has mode {member.mode:o}, not {expected:o}")
    return entry
