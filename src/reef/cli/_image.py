"""`reef image ...` commands: build deterministic enclave images and print their measurements."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from reef.cli._options import DebugEnclave, ImageFile, InitParamsFile, Json
from reef.cli._output import failing, print_result, print_result_and_rows
from reef.cli._root import command_group

__all__ = ["register"]

app, register = command_group("image")


def _measurement_rows(data: dict[str, Any]) -> dict[str, Any]:
    rows: dict[str, Any] = {"image_id": data["image_id"]}
    for index, value in data["pcrs"].items():
        rows[f"PCR{index}"] = value
    if data.get("init_params_digest"):
        rows["init_params_digest"] = data["init_params_digest"]
    rows["debug"] = "yes (PCR0-2 zero)" if data["debug"] else "no"
    return rows


@app.command("build")
def build_cmd(
    directory: Annotated[Path, typer.Argument(help="The app directory (with a reef.toml).")],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="The image file to write (default: $REEF_HOME/builds/NAME.img, NAME the "
            "directory's name, where reef deploy builds).",
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Build a deterministic image: same inputs, same bytes and image id, on any machine."""
    from reef.enclave import build_image

    if output is None:
        from reef.home import ReefHome

        output = ReefHome.from_env().app_image(directory)
    with failing():
        image = build_image(directory, output)
    result: dict[str, Any] = {
        "image": str(output),
        "name": image.manifest.name,
        "size": output.stat().st_size,
        **image.measurements.to_json(),
    }
    shown = {
        "image": result["image"],
        "name": result["name"],
        "size": f"{result['size']} bytes",
        **_measurement_rows(result),
    }
    print_result(result, as_json, shown=shown)


@app.command("measure")
def measure_cmd(
    image_file: ImageFile,
    init_params: InitParamsFile = None,
    debug: DebugEnclave = False,
    as_json: Json = False,
) -> None:
    """Print the PCRs and image id an enclave of this image attests."""
    from reef.enclave import attested_measurements  # not on every command's path

    with failing():
        measurements = attested_measurements(image_file, init_params, debug=debug)
    result = measurements.to_json()
    print_result(result, as_json, shown=_measurement_rows(result))


@app.command("inspect")
def inspect_cmd(
    image_file: ImageFile,
    as_json: Json = False,
) -> None:
    """Show an image's reef.toml settings and its files."""
    from reef.enclave import load_image

    with failing():
        image = load_image(image_file)
    manifest = image.manifest
    entries = [
        {"path": e.path, "kind": e.kind, "mode": f"{e.mode:o}", "size": len(e.data)}
        for e in image.entries
    ]
    result: dict[str, Any] = {
        "name": manifest.name,
        "command": list(manifest.command),
        "ports": list(manifest.ports),
        "env": dict(manifest.env),
        "vcpus": manifest.vcpus,
        "memory_mib": manifest.memory_mib,
        "image_id": image.image_id.hex(),
        "entries": entries,
    }
    print_result_and_rows(result, as_json, rows="entries", columns=["path", "kind", "mode", "size"])
