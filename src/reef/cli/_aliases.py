"""Oyster's CLI names for reef commands, so ``oyster-cvm`` habits work: ``reef list``,
``reef deposit``, ``reef withdraw``, ``reef stop``, ``reef update`` (the ``reef jobs`` commands;
``reef logs`` and ``reef deploy`` already have Oyster's names), and ``reef compute-image-id``
from PCR values.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from reef.cli import _jobs
from reef.cli._options import Json
from reef.cli._output import failing, print_result

__all__ = ["register"]

_PANEL = "Oyster CLI names"


def register(root: typer.Typer) -> None:
    for name, command in (
        ("list", _jobs.list_cmd),
        ("deposit", _jobs.deposit_cmd),
        ("withdraw", _jobs.withdraw_cmd),
        ("stop", _jobs.stop_cmd),
        ("update", _jobs.update_cmd),
    ):
        summary = (command.__doc__ or "").strip().splitlines()[0]
        root.command(name, help=f"{summary} (= reef jobs {name})", rich_help_panel=_PANEL)(command)
    root.command("compute-image-id", rich_help_panel=_PANEL)(compute_image_id_cmd)


def _pcr(name: str, required: bool) -> Any:
    return typer.Option(
        f"--{name}",
        help=f"{name.upper()} as 96 hex digits (0x optional)"
        + ("" if required else "; 48 zero bytes when absent"),
        show_default=False,
    )


def compute_image_id_cmd(
    pcr0: Annotated[str, _pcr("pcr0", True)],
    pcr1: Annotated[str, _pcr("pcr1", True)],
    pcr2: Annotated[str, _pcr("pcr2", True)],
    pcr16: Annotated[str | None, _pcr("pcr16", False)] = None,
    json_output: Json = False,
) -> None:
    """The image id of PCR values: sha256(flags ‖ PCR0 ‖ PCR1 ‖ PCR2 ‖ PCR16), as Oyster's."""
    from reef.attestation import PCR_LENGTH, image_id
    from reef.encoding import parse_hex

    with failing():
        given = {0: pcr0, 1: pcr1, 2: pcr2, 16: pcr16}
        pcrs = {
            index: parse_hex(value, name=f"--pcr{index}", length=PCR_LENGTH)
            for index, value in given.items()
            if value is not None
        }
        result = image_id(pcrs)
    if json_output:
        print_result({"image_id": result.hex()}, True)
    else:
        typer.echo(result.hex())
