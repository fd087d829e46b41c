"""`reef kms ...`: derive keys offline, fetch signed public keys, learn and pin a root's identity,
rotate a root, manage a KMS registry contract (the image ids allowed contract-based keys), and
run the root server and the derive server (as an enclave's commands).

Exit codes: 0 ok, 1 refused or failed (a bad signature, a refused attestation, an unreachable
KMS), 2 usage error (a bad flag value). Anything relying on the dev or mock TEE root says so on
stderr.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from reef._clock import format_time, wall_clock_ms
from reef.cli._common import kms_pins, kms_url, trusted_root
from reef.cli._kms_contract import contract_app
from reef.cli._kms_serve import derive_server_cmd, root_app
from reef.cli._options import AttestationMaxAge, Json, KmsUrl, TrustOption
from reef.cli._output import (
    failing,
    print_result,
    tell,
    warn_insecure_root,
)
from reef.cli._root import command_group
from reef.encoding import parse_hex
from reef.errors import AttestationError, InputError

if TYPE_CHECKING:
    from reef.kms import KeyType, KmsPin, VerifiedKmsIdentity

__all__ = ["register"]

app, register = command_group("kms")
app.add_typer(root_app, name="root")
app.add_typer(contract_app, name="contract")
app.command("derive-server")(derive_server_cmd)

_KEY_TYPES = ("secp256k1", "ed25519", "x25519")


def _key_type(value: str) -> KeyType:
    if value not in _KEY_TYPES:
        raise InputError(f"--type must be one of {', '.join(_KEY_TYPES)}, got {value!r}")
    return cast("KeyType", value)


def _read_secret_hex(value: str, *, name: str, length: int) -> bytes:
    # "-" reads the value from stdin, so it need not appear in the process list or shell history.
    text = sys.stdin.read() if value == "-" else value
    return parse_hex(text, name=name, length=length)


def _kms_image_id(value: str | None) -> bytes | None:
    """``--kms-image-id``, when given."""
    return parse_hex(value, name="--kms-image-id", length=32) if value else None


# How a failed KMS exchange is reported: a refused attestation says which check refused it.
_KMS_REJECTED = "KMS attestation rejected"


# --- derive --------------------------------------------------------------------------------------


_KeyPath = Annotated[str, typer.Option("--path", help="Derivation path (UTF-8).")]
_KeyType = Annotated[str, typer.Option("--type", help="Key type: secp256k1, ed25519 or x25519.")]
# Whose key: an enclave image's (image-based seed) or a contract's (contract-based seed).
_SeedImageId = Annotated[
    str | None,
    typer.Option("--image-id", help="The enclave's image id (32 bytes hex): an image-based key."),
]
_SeedContract = Annotated[
    str | None,
    typer.Option(
        "--address", help="A contract address: a contract-based key (hashed after lowercasing)."
    ),
]


@app.command("derive")
def derive_cmd(
    seed: Annotated[
        str,
        typer.Option("--seed", help="The 64-byte root seed in hex, or - to read it from stdin."),
    ],
    path: _KeyPath,
    key_type: _KeyType,
    image_id: _SeedImageId = None,
    chain_id: Annotated[
        int | None, typer.Option("--chain-id", help="Chain id of a contract-based seed.")
    ] = None,
    address: _SeedContract = None,
    version: Annotated[
        int, typer.Option("--version", help="Root seed version (0 = Oyster's derivation).")
    ] = 0,
    as_json: Json = False,
) -> None:
    """Derive a key from a root seed, offline, exactly as the KMS root would."""
    from reef.kms import RootSeed, contract_seed, derive_key, enclave_seed

    with failing(code=2):
        if (image_id is None) == (address is None and chain_id is None):
            raise InputError(
                "give either --image-id, or --chain-id with --address",
                hint="--image-id selects an image-based seed; --chain-id/--address a contract one",
            )
        root = RootSeed(_read_secret_hex(seed, name="--seed", length=64), version)
        if image_id is not None:
            parent = enclave_seed(root, parse_hex(image_id, name="--image-id", length=32))
        else:
            if chain_id is None or address is None:
                raise InputError("a contract-based seed needs both --chain-id and --address")
            parent = contract_seed(root, chain_id, address)
        key = derive_key(parent, path, _key_type(key_type))
    result = {
        "type": key.key_type,
        "version": version,
        "path": path,
        "secret": key.secret.hex(),
        "public_key": key.public_key.hex(),
        "address": key.address or "",
    }
    print_result(result, as_json)


# --- identity, pins, public keys -----------------------------------------------------------------


def _learn(
    kms: str, trust: list[str], image_id: bytes | None, max_age_ms: int
) -> VerifiedKmsIdentity:
    import asyncio

    from reef.kms import fetch_identity

    roots = [trusted_root(spec) for spec in trust]
    failures: list[AttestationError] = []
    for root in roots:
        try:
            identity = asyncio.run(
                fetch_identity(kms, root=root, image_id=image_id, max_age_ms=max_age_ms)
            )
        except AttestationError as exc:
            failures.append(exc)
            continue
        warn_insecure_root(root, "the KMS identity is attested")
        return identity
    raise failures[-1]


def _identity_rows(identity: VerifiedKmsIdentity) -> dict[str, Any]:
    att = identity.attestation
    rows: dict[str, Any] = {
        "kms": identity.url,
        "current_version": identity.current_version,
        "attested": f"image {att.image_id.hex()} under root {att.root.name}",
        "chain_id": identity.chain_id if identity.chain_id is not None else "(none)",
        "rotation_admin": identity.rotation_admin or "(rotation disabled)",
    }
    for item in identity.identities:
        rows[f"v{item.version} signing_key"] = item.signing_key.hex()
        rows[f"v{item.version} signing_address"] = item.signing_address
        rows[f"v{item.version} scallop_key"] = item.scallop_key.hex()
    if identity.handovers:
        rows["handovers"] = "; ".join(
            f"image {image.hex()} until {format_time(expires_s, utc=True)}"
            for image, expires_s in identity.handovers
        )
    return rows


def _identity_json(identity: VerifiedKmsIdentity) -> dict[str, Any]:
    return {
        "kms": identity.url,
        "current_version": identity.current_version,
        "versions": [i.to_json() for i in identity.identities],
        "chain_id": identity.chain_id,
        "rotation_admin": identity.rotation_admin,
        "handovers": [
            {"image_id": image.hex(), "expires": expires_s}
            for image, expires_s in identity.handovers
        ],
        "attestation": identity.attestation.to_json(),
    }


_KmsImageOption = typer.Option(
    "--kms-image-id", help="Also require the KMS root enclave to run this image id (hex)."
)


@app.command("info")
def info_cmd(
    trust: Annotated[list[str], TrustOption],
    kms: KmsUrl = None,
    kms_image_id: Annotated[str | None, _KmsImageOption] = None,
    pin: Annotated[bool, typer.Option("--pin", help="Remember these keys for this URL.")] = False,
    max_age_ms: AttestationMaxAge = 300_000,
    as_json: Json = False,
) -> None:
    """Learn a KMS root's keys from its attested identity (optionally pin them)."""
    from reef.kms import KmsPin

    with failing(code=2):
        expected = _kms_image_id(kms_image_id)
        url = kms_url(kms)
    with failing(attestation=_KMS_REJECTED):
        identity = _learn(url, trust, expected, max_age_ms)
        if pin:
            kms_pins().save(KmsPin.from_identity(identity, learned_at_ms=wall_clock_ms()))
            tell(f"pinned {identity.url}")
    print_result(_identity_json(identity), as_json, shown=_identity_rows(identity))


def _signing_keys(
    kms: str,
    verification_key: str | None,
    trust: list[str],
    kms_image_id: bytes | None,
) -> tuple[dict[int, bytes] | bytes, str]:
    """The keys answers must be signed by, and a sentence saying where they came from."""
    from reef.kms import KmsPin

    if verification_key is not None:
        key = parse_hex(verification_key, name="--verification-key", length=64)
        return key, "the given --verification-key"
    pins = kms_pins()
    pinned = pins.get(kms)
    if pinned is not None and not trust:
        return dict(pinned.signing_keys), f"the key pinned for {pinned.url} (root {pinned.root})"
    if not trust:
        raise InputError(
            f"no signing key is known for the KMS at {kms}",
            hint="pass --verification-key HEX (the KMS operator publishes it), or --trust aws|dev "
            "to learn it from the KMS's attestation",
        )
    identity = _learn(kms, trust, kms_image_id, 300_000)
    pin: KmsPin = KmsPin.from_identity(identity, learned_at_ms=wall_clock_ms())
    pins.save(pin)
    return dict(pin.signing_keys), (
        f"keys attested by KMS image {identity.attestation.image_id.hex()} "
        f"(root {identity.attestation.root.name}), now pinned"
    )


@app.command("pubkey")
def pubkey_cmd(
    path: _KeyPath,
    key_type: _KeyType,
    kms: KmsUrl = None,
    image_id: _SeedImageId = None,
    address: _SeedContract = None,
    verification_key: Annotated[
        str | None,
        typer.Option("--verification-key", help="The KMS signing key (64 bytes hex x||y) to pin."),
    ] = None,
    trust: Annotated[list[str] | None, TrustOption] = None,
    kms_image_id: Annotated[str | None, _KmsImageOption] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Root seed version (default: current).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Fetch an enclave's public key from a KMS, checking the KMS's signature on the answer."""
    import asyncio

    from reef.crypto import Secp256k1PublicKey, solana_address
    from reef.kms import KmsPublicClient

    with failing(code=2):
        kind = _key_type(key_type)
        if (image_id is None) == (address is None):
            raise InputError("give exactly one of --image-id and --address")
        image = parse_hex(image_id, name="--image-id", length=32) if image_id else None
        expected = _kms_image_id(kms_image_id)
        url = kms_url(kms)
    with failing(attestation=_KMS_REJECTED):
        keys, source = _signing_keys(url, verification_key, trust or [], expected)
        client = KmsPublicClient(url, signing_key=keys)
        public, answered = asyncio.run(
            client.versioned_public_key(
                kind, path, image_id=image, address=address, version=version
            )
        )
    derived_address = ""
    if kind == "secp256k1":
        derived_address = Secp256k1PublicKey(public).address
    elif kind == "ed25519":
        derived_address = solana_address(public)
    result = {
        "kms": client.url,
        "image_id": image.hex() if image else "",
        "contract_address": address or "",
        "path": path,
        "type": kind,
        # The version the KMS says it derived under (the current one unless --version asked
        # another): after a rotation, which key an enclave starting now gets.
        "version": answered if answered is not None else ("" if version is None else version),
        "public_key": public.hex(),
        "address": derived_address,
    }
    tell(f"verified: the answer is signed by {source}")
    print_result(result, as_json, shown={k: v for k, v in result.items() if v != ""})


# --- rotation ------------------------------------------------------------------------------------


@app.command("rotate")
def rotate_cmd(
    admin_key: Annotated[
        str,
        typer.Option(
            "--admin-key", help="The rotation admin's secp256k1 key (hex), or - for stdin."
        ),
    ],
    kms: KmsUrl = None,
    as_json: Json = False,
) -> None:
    """Rotate a KMS root: a fresh seed becomes the current version; old versions stay derivable.

    The root must have been started with --admin ADDRESS; the request is signed with that
    address's key. The answer (the new keys) is checked against the previous version's signing
    key, and an existing pin for the URL is extended with the new version.
    """
    import asyncio

    from reef.crypto import Secp256k1PrivateKey, eip191_digest
    from reef.kms import KmsPin, rotate_root

    with failing(code=2):
        admin = Secp256k1PrivateKey(_read_secret_hex(admin_key, name="--admin-key", length=32))
        url = kms_url(kms)
    pins = kms_pins()
    with failing():
        pinned = pins.get(url)
        new = asyncio.run(
            rotate_root(
                url,
                sign=lambda message: admin.sign_digest(eip191_digest(message)),
                signing_keys=dict(pinned.signing_keys) if pinned else None,
            )
        )
        if pinned is not None:
            pins.save(
                KmsPin(
                    url=pinned.url,
                    signing_keys={**pinned.signing_keys, new.version: new.signing_key},
                    scallop_keys={**pinned.scallop_keys, new.version: new.scallop_key},
                    current_version=new.version,
                    image_id=pinned.image_id,
                    root=pinned.root,
                    learned_at_ms=wall_clock_ms(),
                )
            )
            tell(f"pin for {pinned.url} extended to version {new.version}")
    print_result(new.to_json(), as_json, title="new current version")


# --- handover ------------------------------------------------------------------------------------


@app.command("handover")
def handover_cmd(
    to: Annotated[
        str,
        typer.Option("--to", help="The new root's image id (hex): its enclaves may inherit."),
    ],
    admin_key: Annotated[
        str,
        typer.Option("--admin-key", help="The root admin's secp256k1 key (hex), or - for stdin."),
    ],
    kms: KmsUrl = None,
    expires: Annotated[
        str,
        typer.Option("--expires", help="How long the authorisation holds (e.g. 30m, 1h, 2d)."),
    ] = "1h",
    trust: Annotated[list[str] | None, TrustOption] = None,
    kms_image_id: Annotated[str | None, _KmsImageOption] = None,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Withdraw the authorisation of --to instead.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Let a new root's image inherit this KMS root's seeds (every version) until --expires.

    The old root keeps the admin's signed authorisation; a root of image --to started with
    --inherit-from (this root's Scallop HOST:PORT) and an empty state dir then receives the
    seeds over Scallop, attested both ways, and derives every key exactly as this root does.
    """
    import asyncio

    from reef._clock import parse_duration
    from reef.crypto import Secp256k1PrivateKey, eip191_digest
    from reef.kms import authorise_handover

    with failing(code=2):
        image = parse_hex(to, name="--to", length=32)
        admin = Secp256k1PrivateKey(_read_secret_hex(admin_key, name="--admin-key", length=32))
        expires_s = None if revoke else wall_clock_ms() // 1000 + parse_duration(expires)
        expected = _kms_image_id(kms_image_id)
        url = kms_url(kms)
    with failing(attestation=_KMS_REJECTED):
        # The message signed names the root's signing address: learnt from a pin or the root's
        # attested identity, an answer on the way cannot have the admin sign for another root.
        keys: dict[int, bytes] | None = None
        if trust or kms_pins().get(url) is not None:
            learned, source = _signing_keys(url, None, trust or [], expected)
            keys = learned if isinstance(learned, dict) else None
            tell(f"the root's identity: {source}")
        else:
            tell(
                "warning: the root's identity is not checked (no pin for it, no --trust): "
                "pin it first (reef kms info --trust ... --pin) or pass --trust"
            )
        result = asyncio.run(
            authorise_handover(
                url,
                image,
                expires_s=expires_s,
                sign=lambda message: admin.sign_digest(eip191_digest(message)),
                signing_keys=keys,
                revoke=revoke,
            )
        )
    if revoke:
        print_result(result, as_json, title="handover revoked")
        tell(f"a root of image {image.hex()} may no longer inherit the seeds of {result['kms']}")
        return
    until = format_time(int(result["expires"]), utc=True)
    print_result({**result, "expires_at": until}, as_json, title="handover authorised")
    tell(
        f"a root of image {image.hex()} may inherit these seeds until {until}: start it with "
        "--inherit-from <this root's Scallop HOST:PORT> and an empty state dir"
    )
