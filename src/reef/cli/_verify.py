"""`reef verify ENDPOINT`: check what code a running enclave runs, from outside, in live mode.

Fetches the enclave's attestation (``/attestation/raw`` of its attestation server) and verifies
it with :class:`reef.attestation.AttestationClient` under a pinned root, fresh at this instant,
expecting the image id given (as hex, or measured from an image file and its init params, exactly
as ``reef image measure`` does).
"""

from __future__ import annotations

import contextlib
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._options import (
    AttestationMaxAge,
    AttestationRoot,
    DebugEnclave,
    ExpectedImageId,
    InitParamsFile,
    Json,
    RequestTimeout,
)
from reef.cli._output import (
    attested_time,
    fail,
    failing,
    print_json,
    print_result,
    tell,
    warn_insecure_root,
)
from reef.errors import AttestationError, InputError, ReefError

if TYPE_CHECKING:
    from reef.attestation import VerifiedAttestation

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    root.command("verify")(verify_cmd)


def _expected_image_id(
    image_id: str | None, image: Path | None, init_params: Path | None, debug: bool
) -> bytes | None:
    from reef.encoding import parse_hex

    if image_id is not None and image is not None:
        raise InputError("give --image-id or --image, not both")
    if image_id is not None:
        if init_params is not None or debug:
            raise InputError("--init-params and --debug apply to --image, not --image-id")
        return parse_hex(image_id, name="--image-id", length=32)
    if image is None:
        if init_params is not None or debug:
            raise InputError("--init-params and --debug need --image")
        return None
    from reef.enclave import attested_measurements  # as `reef image measure` measures

    return attested_measurements(image, init_params, debug=debug).image_id


def _point_at_attestation(exc: ReefError, endpoint: str, checks: list[str]) -> None:
    """When ``endpoint`` is a local enclave's app port (the endpoint `reef deploy` prints, not
    its attestation), say so in ``exc``'s hint and give the command to run instead: the URL to
    verify, with the user's own ``checks`` (``--image hello``: without them the command it
    printed checked no image), under the dev root, which every local enclave attests under."""
    import asyncio
    import contextlib
    import shlex

    from reef.home import ReefHome
    from reef.node import find_app_port

    found = None
    with contextlib.suppress(ReefError, OSError):  # a failed lookup leaves the error as it was
        found = asyncio.run(find_app_port(ReefHome.from_env(), endpoint))
    if found is None:
        return
    info = found.enclave
    attestation = info.endpoints["attestation"]
    exc.hint = (
        f"{endpoint} is the app's port {found.port} of the local enclave {info.id} "
        f"({info.name}); its attestation is served apart: "
        + shlex.join(["reef", "verify", attestation, *checks, "--root", "dev"])
    )


def _user_data(hex_data: str) -> str:
    """The attested user data as people read it: a reef provider's enclave attests its job as
    text (``reef-job/1 chain=… market=… job=…``, docs/node.md), which hex hid; anything that
    is not printable ASCII stays hex (it is a stranger's: no control character is printed)."""
    if not hex_data:
        return "(empty)"
    data = bytes.fromhex(hex_data)
    if all(0x20 <= byte < 0x7F for byte in data):
        return f"{data.decode('ascii')} (as text; --json gives its hex)"
    return hex_data


def _explain_image_id(exc: AttestationError, attested: VerifiedAttestation, debug: bool) -> None:
    """Say in ``exc``'s hint why the image id ``--image`` gives is not the one ``attested``: a
    debug enclave (PCR0-2 zero, as on Nitro) attests no image, so ``--image`` matches it only
    with ``--debug`` (``reef jobs update JOB --debug`` makes one of a verified job), and the
    other way round."""
    from reef.attestation import PCR_LENGTH

    zero = bytes(PCR_LENGTH)
    is_debug = all(hmac.compare_digest(attested.pcrs.get(i, b""), zero) for i in (0, 1, 2))
    if is_debug and not debug:
        exc.hint = (
            "the enclave is a debug enclave: its PCR0-2 are zero, so (as on Nitro) it attests no "
            "image at all; add --debug to accept it, which proves only that it is some debug "
            "enclave (every debug enclave with the same init params has this image id)"
        )
    elif debug and not is_debug:
        exc.hint = "the enclave is not a debug enclave (its PCR0-2 are not zero): drop --debug"
    else:
        exc.hint = (
            "the enclave runs another image, or other init params, than --image gives "
            "(`reef image measure` prints the image id of an image and its init params)"
        )


def verify_cmd(
    endpoint: Annotated[
        str,
        typer.Argument(help="The enclave's attestation endpoint: URL or host:port."),
    ],
    image_id: ExpectedImageId = None,
    image: Annotated[
        Path | None,
        typer.Option(
            "--image",
            help="The image file it must run (booted with --init-params, --debug).",
        ),
    ] = None,
    init_params: InitParamsFile = None,
    debug: DebugEnclave = False,
    root: AttestationRoot = "aws",
    max_age_ms: AttestationMaxAge = 300_000,
    timeout: RequestTimeout = 10.0,
    as_json: Json = False,
) -> None:
    """Verify a running enclave's attestation, live, and the image id it runs."""
    from reef.attestation import AttestationClient, Expectations, attestation_url
    from reef.cli._common import trusted_root

    with failing(code=2):
        url = attestation_url(endpoint)
        expected = _expected_image_id(image_id, image, init_params, debug)
        trusted = trusted_root(root)
        client = AttestationClient(root=trusted, max_age_ms=max_age_ms, timeout=timeout)
    document = None
    try:
        # Fetched, then checked: a rejected image id is explained from the same document.
        document = client.fetch(url)
        verified = client.check(
            document, expect=Expectations(image_id=expected) if expected is not None else None
        )
    except AttestationError as exc:
        if exc.reason == "image_id" and document is not None and image is not None:
            with contextlib.suppress(AttestationError):  # unexplained, it is still rejected
                _explain_image_id(exc, client.check(document), debug)
        if as_json:
            print_json(
                {"verified": False, "endpoint": url, "reason": exc.reason, "error": exc.message}
            )
        raise fail(exc, prefix="rejected") from exc
    except ReefError as exc:
        checks = [
            *(["--image-id", image_id] if image_id is not None else []),
            *(["--image", str(image)] if image is not None else []),
            *(["--init-params", str(init_params)] if init_params is not None else []),
            *(["--debug"] if debug else []),
        ]
        _point_at_attestation(exc, endpoint, checks)
        raise fail(exc) from exc
    result: dict[str, Any] = {"verified": True, "endpoint": url, **verified.to_json()}
    result["insecure"] = trusted.insecure
    if expected is None:
        result["image_id_checked"] = False
    shown = {
        "verified": "yes" if expected is not None else "yes (image id not checked)",
        "endpoint": url,
        "image_id": result["image_id"],
        "root": trusted.name,
        "timestamp": attested_time(result["timestamp_ms"]),
        # As `reef attestation verify` shows them: a blank value read as a missing line.
        "public_key": result["public_key"] or "(empty)",
        "user_data": _user_data(result["user_data"]),
    }
    print_result(result, as_json, shown=shown)
    warn_insecure_root(trusted, "verified")
    if expected is None:
        tell(
            "warning: no --image-id or --image given: the document is genuine, but which image "
            "it runs was not checked"
        )
