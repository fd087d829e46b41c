"""`reef kms ...` commands: derive keys offline, fetch signed public keys, run and rotate a root."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, cast

import typer

from reef.cli._output import JsonOption, fail, print_json, print_mapping
from reef.encoding import parse_hex
from reef.errors import InputError, ReefError

if TYPE_CHECKING:
    from reef.kms import KeyType

__all__ = ["register"]

app = typer.Typer(
    help="KMS: derive keys bound to enclave images, fetch signed public keys, run a root server.",
    no_args_is_help=True,
)

_KEY_TYPES = ("secp256k1", "ed25519", "x25519")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="kms")


def _key_type(value: str) -> KeyType:
    if value not in _KEY_TYPES:
        raise InputError(f"--type must be one of {', '.join(_KEY_TYPES)}, got {value!r}")
    return cast("KeyType", value)


def _read_seed(value: str) -> bytes:
    # "-" reads the seed from stdin, so it need not appear in the process list or shell history.
    text = sys.stdin.read() if value == "-" else value
    return parse_hex(text, name="--seed", length=64)


@app.command("derive")
def derive_cmd(
    seed: Annotated[
        str,
        typer.Option("--seed", help="The 64-byte root seed in hex, or - to read it from stdin."),
    ],
    path: Annotated[str, typer.Option("--path", help="Derivation path (UTF-8).")],
    key_type: Annotated[
        str, typer.Option("--type", help="Key type: secp256k1, ed25519 or x25519.")
    ],
    image_id: Annotated[
        str | None, typer.Option("--image-id", help="Image id (32 bytes hex): image-based seed.")
    ] = None,
    chain_id: Annotated[
        int | None, typer.Option("--chain-id", help="Chain id of a contract-based seed.")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Contract address, hashed as given after lowercasing."),
    ] = None,
    version: Annotated[
        int, typer.Option("--version", help="Root seed version (0 = Oyster's derivation).")
    ] = 0,
    as_json: bool = JsonOption,
) -> None:
    """Derive a key from a root seed, offline, exactly as the KMS root would."""
    from reef.kms import RootSeed, contract_seed, derive_key, enclave_seed

    try:
        if (image_id is None) == (address is None and chain_id is None):
            raise InputError(
                "give either --image-id, or --chain-id with --address",
                hint="--image-id selects an image-based seed; --chain-id/--address a contract one",
            )
        root = RootSeed(_read_seed(seed), version)
        if image_id is not None:
            parent = enclave_seed(root, parse_hex(image_id, name="--image-id", length=32))
        else:
            if chain_id is None or address is None:
                raise InputError("a contract-based seed needs both --chain-id and --address")
            parent = contract_seed(root, chain_id, address)
        key = derive_key(parent, path, _key_type(key_type))
    except ReefError as exc:
        raise fail(exc, code=2) from exc
    result = {
        "type": key.key_type,
        "version": version,
        "path": path,
        "secret": key.secret.hex(),
        "public_key": key.public_key.hex(),
        "address": key.address or "",
    }
    if as_json:
        print_json(result)
    else:
        print_mapping(result)
