"""`reef init-params ...` commands: build Oyster-format init params, show what a file holds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._common import kms_pins, kms_url, read_file, trusted_root
from reef.cli._options import Json, KmsUrl
from reef.cli._output import failing, print_result_and_rows
from reef.cli._root import command_group
from reef.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from reef.enclave import InitParam, InitParams

__all__ = ["register"]

app, register = command_group("init-params")


def _split(option: str, value: str) -> tuple[str, str]:
    path, sep, rest = value.partition("=")
    if not sep or not path:
        raise InputError(f"{option} takes PATH=VALUE, got {value!r}")
    return path, rest


def _read_local(option: str, path: str, local: str) -> bytes:
    try:
        return Path(local).read_bytes()
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot read {local}: {exc.strerror}") from exc


def _oyster_spec(spec: str) -> InitParam:
    """``<path>:<attest 0|1>:<encrypt 0|1>:utf8:<text>`` or ``...:file:<local path>``."""
    from reef.enclave import InitParam

    parts = spec.split(":", 4)
    if len(parts) != 5 or parts[1] not in ("0", "1") or parts[2] not in ("0", "1"):
        raise InputError(
            f"--param {spec!r} is not <path>:<attest 0|1>:<encrypt 0|1>:utf8|file:<value>",
            hint="e.g. --param config.json:1:0:file:./config.json",
        )
    path, attest, encrypt, kind, value = parts
    if kind == "utf8":
        data = value.encode("utf-8")
    elif kind == "file":
        data = _read_local("--param", path, value)
    else:
        raise InputError(f"--param {spec!r}: the fourth field must be utf8 or file, not {kind!r}")
    return InitParam(path, data, attest == "1", encrypt == "1")


def _collect(
    files: list[str], texts: list[str], secrets: list[str], specs: list[str]
) -> list[InitParam]:
    from reef.enclave import InitParam

    params: list[InitParam] = []
    for value in files:
        path, local = _split("--file", value)
        params.append(InitParam(path, _read_local("--file", path, local)))
    for value in texts:
        path, text = _split("--utf8", value)
        params.append(InitParam(path, text.encode("utf-8")))
    for value in secrets:
        path, local = _split("--secret", value)
        params.append(InitParam(path, _read_local("--secret", path, local), True, True))
    params.extend(_oyster_spec(spec) for spec in specs)
    if not params:
        raise InputError(
            "no init params given",
            hint="use --file PATH=LOCAL, --utf8 PATH=TEXT, --secret PATH=LOCAL or --param SPEC",
        )
    return params


def _image_id(image: Path, digest: bytes) -> bytes:
    """The image id of ``image`` booted with init params of this digest (its PCR16)."""
    from reef.enclave import load_image

    return load_image(image).measurements.with_init_params(digest).image_id


def _seal_key(
    image: Path | None,
    kms: str | None,
    verification_key: str | None,
    kms_root: str | None,
    digest: bytes,
) -> tuple[bytes, bytes]:
    """The KMS X25519 key for the final image id; returns ``(key, image_id)``.

    The KMS's answer is checked against ``--kms-verification-key``, else the identity
    ``--kms-root`` attests, else the keys pinned for that KMS (``reef kms info --pin``), as
    ``reef kms pubkey`` checks it."""
    from reef.encoding import parse_hex
    from reef.kms import fetch_identity, init_params_public_key

    if image is None:
        raise InputError(
            "secret init params are sealed to the enclave's KMS-derived key for the final image "
            "id, which needs the image and the KMS",
            hint="give --image FILE (the image the params are for) and --kms URL (the KMS root's "
            "public listener; by default the one `reef up` runs in $REEF_HOME)",
        )
    url = kms_url(kms)
    image_id = _image_id(image, digest)
    signing: bytes | Mapping[int, bytes]
    if verification_key is not None:
        signing = parse_hex(verification_key, name="--kms-verification-key", length=64)
    elif kms_root is not None:
        import asyncio

        signing = asyncio.run(fetch_identity(url, root=trusted_root(kms_root))).signing_keys
    else:
        pinned = kms_pins().get(url)
        if pinned is None:
            raise InputError(
                f"no signing key is known for the KMS at {url}: its answers must be checked "
                "against a key you trust",
                hint="give --kms-verification-key HEX (the root's signing key) or --kms-root ROOT "
                "to verify the KMS's attested identity, or pin it once with "
                "`reef kms info --pin --trust ROOT`",
            )
        signing = pinned.signing_keys
    return init_params_public_key(url, image_id, signing_key=signing), image_id


def _summary(params: InitParams, output: Path | None, image_id: bytes | None) -> dict[str, Any]:
    from reef.enclave import extend_pcr

    result: dict[str, Any] = {}
    if output is not None:
        result["output"] = str(output)
    result["digest"] = params.digest.hex()
    result["pcr16"] = extend_pcr(params.digest).hex()
    if image_id is not None:
        result["image_id"] = image_id.hex()
    result["params"] = [
        {
            "path": p.path,
            "size": len(p.contents),
            "should_attest": p.should_attest,
            "should_decrypt": p.should_decrypt,
        }
        for p in params.params
    ]
    return result


def _print(result: dict[str, Any], as_json: bool) -> None:
    columns = ["path", "size", "should_attest", "should_decrypt"]
    print_result_and_rows(result, as_json, rows="params", columns=columns)


@app.command("build")
def build_cmd(
    output: Annotated[Path, typer.Option("-o", "--output", help="The JSON file to write.")],
    files: Annotated[
        list[str] | None,
        typer.Option("--file", help="PATH=LOCAL: attested file from a local file (repeatable)."),
    ] = None,
    texts: Annotated[
        list[str] | None,
        typer.Option("--utf8", help="PATH=TEXT: attested file with this text (repeatable)."),
    ] = None,
    secrets: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            help="PATH=LOCAL: attested and sealed to the enclave's KMS key (needs --image, --kms).",
        ),
    ] = None,
    specs: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="Oyster spec <path>:<attest 0|1>:<encrypt 0|1>:utf8|file:<value> (repeatable).",
        ),
    ] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="The image the params are for (for --secret).")
    ] = None,
    kms: KmsUrl = None,
    verification_key: Annotated[
        str | None,
        typer.Option("--kms-verification-key", help="The KMS root's 64-byte signing key (hex)."),
    ] = None,
    kms_root: Annotated[
        str | None,
        typer.Option("--kms-root", help="Verify the KMS's attested identity under this root."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Build init params. Order: --file, --utf8, --secret, then --param, each as given."""
    from reef.enclave import InitParams, init_params_digest

    image_id: bytes | None = None
    with failing():
        try:
            params = _collect(files or [], texts or [], secrets or [], specs or [])
            if any(p.should_decrypt for p in params):
                InitParams.build([p for p in params if not p.should_decrypt])  # paths checked early
                digest = init_params_digest((p.path, p.contents, p.should_attest) for p in params)
                key, image_id = _seal_key(image, kms, verification_key, kms_root, digest)
                built = InitParams.build(params, seal_to=key)
            else:
                built = InitParams.build(params)
                if image is not None:
                    image_id = _image_id(image, built.digest)
            output.write_bytes(built.to_json())
        except OSError as exc:
            raise InputError(f"cannot write {output}: {exc.strerror}") from exc
    _print(_summary(built, output, image_id), as_json)


@app.command("show")
def show_cmd(
    file: Annotated[Path, typer.Argument(help="An init-params JSON file (or its base64).")],
    image: Annotated[
        Path | None, typer.Option("--image", help="Also print the image id with this image.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Show an init-params file: digest, PCR16 and its params (secrets stay sealed)."""
    from reef.enclave import InitParams

    with failing():
        params = InitParams.from_json(read_file(file), source=str(file))
        image_id = None
        if image is not None:
            image_id = _image_id(image, params.digest)
    _print(_summary(params, None, image_id), as_json)
