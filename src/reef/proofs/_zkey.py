"""The verification key inside a snarkjs Groth16 ``.zkey``, read without Node, so that a market
is never created over a ``verification_key.json`` that belongs to another circuit or setup.

Such a market's verifier rejects every proof its provers make from the ``.zkey``: each ask they
take ends slashed, through no fault of theirs. ``snarkjs zkey export verificationkey`` gives the
same key as :func:`zkey_verification_key`; reading it here costs a few milliseconds where a
Node process costs a second.

The layout follows snarkjs's ``zkey_utils.js`` (``readHeader``): the magic ``zkey``, a version
and a section count, then sections of ``type: u32, size: u64`` and their bytes. Section 1 holds
the protocol (1 for Groth16); section 2 the field sizes and moduli, ``nVars``, ``nPublic``, the
domain size, then alpha1, beta1, beta2, gamma2, delta1 and delta2; section 3 the ``nPublic + 1``
IC points. Coordinates are little-endian in Montgomery form (``x·2^256 mod q``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reef.errors import InputError

__all__ = ["check_zkey_matches", "zkey_verification_key"]

_GROTH16 = 1
_MAX_SECTIONS = 64  # snarkjs writes 10; a bound so a hostile file cannot make us loop long


def _sections(data: bytes, where: str) -> dict[int, bytes]:
    if data[:4] != b"zkey" or len(data) < 12:
        raise InputError(f"{where} is not a snarkjs .zkey (it does not start with 'zkey')")
    (count,) = struct.unpack_from("<I", data, 8)
    sections: dict[int, bytes] = {}
    pos = 12
    for _ in range(min(count, _MAX_SECTIONS)):
        if pos + 12 > len(data):
            break
        kind, size = struct.unpack_from("<IQ", data, pos)
        pos += 12
        sections.setdefault(kind, data[pos : pos + size])
        pos += size
    return sections


def zkey_verification_key(path: Path) -> dict[str, Any]:
    """The Groth16 verification key a ``.zkey`` carries, as snarkjs exports it (decimal
    strings; ``vk_alphabeta_12`` left out): ``nPublic``, ``vk_alpha_1``, ``vk_beta_2``,
    ``vk_gamma_2``, ``vk_delta_2`` and ``IC``.

    Raises:
        InputError: the file cannot be read, or is not a snarkjs Groth16 ``.zkey``.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    sections = _sections(data, str(path))
    header, groth, ic = sections.get(1, b""), sections.get(2, b""), sections.get(3, b"")
    if len(header) < 4 or struct.unpack_from("<I", header)[0] != _GROTH16:
        raise InputError(f"{path} is not a Groth16 .zkey (its protocol section says otherwise)")
    try:
        (n8q,) = struct.unpack_from("<I", groth, 0)
        q = int.from_bytes(groth[4 : 4 + n8q], "little")
        pos = 4 + n8q
        (n8r,) = struct.unpack_from("<I", groth, pos)
        pos += 4 + n8r
        _n_vars, n_public, _domain = struct.unpack_from("<III", groth, pos)
        pos += 12
    except struct.error as exc:
        raise InputError(f"{path}: its Groth16 header is cut short") from exc
    if n8q == 0 or q == 0 or n_public > 1024:
        raise InputError(f"{path}: its Groth16 header is not one snarkjs writes")
    r_inverse = pow(2 ** (8 * n8q), -1, q)

    def field(blob: bytes, at: int) -> str:
        if at + n8q > len(blob):
            raise InputError(f"{path}: its Groth16 sections are cut short")
        return str(int.from_bytes(blob[at : at + n8q], "little") * r_inverse % q)

    def g1(blob: bytes, at: int) -> list[str]:
        x, y = field(blob, at), field(blob, at + n8q)
        return ["0", "1", "0"] if x == y == "0" else [x, y, "1"]

    def g2(blob: bytes, at: int) -> list[list[str]]:
        x = [field(blob, at), field(blob, at + n8q)]
        y = [field(blob, at + 2 * n8q), field(blob, at + 3 * n8q)]
        return [x, y, ["1", "0"]]

    one, two = 2 * n8q, 4 * n8q  # a G1 point's bytes, a G2 point's
    return {
        "nPublic": n_public,
        "vk_alpha_1": g1(groth, pos),
        "vk_beta_2": g2(groth, pos + 2 * one),
        "vk_gamma_2": g2(groth, pos + 2 * one + two),
        "vk_delta_2": g2(groth, pos + 3 * one + 2 * two),
        "IC": [g1(ic, i * one) for i in range(n_public + 1)],
    }


def check_zkey_matches(zkey: Path, vkey: Mapping[str, Any], vkey_path: Path) -> None:
    """Refuse a verification key that is not ``zkey``'s own.

    Raises:
        InputError: ``zkey`` is no Groth16 ``.zkey``, or its key differs from ``vkey`` (read
            from ``vkey_path``), naming the first field that differs.
    """
    own = zkey_verification_key(zkey)
    for name, value in own.items():
        given = vkey.get(name)
        if name == "nPublic" and given != value:
            differs = f"nPublic {given} where the .zkey has {value}"
        elif name != "nPublic" and _decimals(given) != value:
            differs = name
        else:
            continue
        raise InputError(
            f"{vkey_path} is not the verification key of {zkey} ({differs} differs): a market "
            "over them would reject every proof its provers make, and slash them",
            hint="export the key from this .zkey: `snarkjs zkey export verificationkey "
            f"{zkey} verification_key.json`",
        )


def _decimals(value: Any) -> Any:
    """A verification key's points with every coordinate as a canonical decimal string."""
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    try:
        return str(int(str(value)))
    except ValueError:
        return value
