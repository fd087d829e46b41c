"""`reef examples [NAME DIR]`: the example apps and functions reef ships, copied out to start from.

They travel inside reef's wheel, so a user who installed reef with pip has the same starting
points as one in a checkout (``reef examples hello ./hello && reef deploy ./hello``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reef.cli._options import Json
from reef.cli._output import console, failing, print_json

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    root.command("examples")(examples_cmd)


def examples_cmd(
    name: Annotated[
        str | None, typer.Argument(help="The example to copy (omit to list them).")
    ] = None,
    directory: Annotated[
        Path | None, typer.Argument(help="Where to copy it (a new directory; default: NAME).")
    ] = None,
    as_json: Json = False,
) -> None:
    """List the shipped examples, or copy one into a new directory."""
    from reef.node import copy_example, list_examples

    with failing():
        if name is None:
            names = list_examples()
            if as_json:
                print_json({"examples": names})
                return
            out = console()
            for entry in names:
                out.print(entry, markup=False)
            out.print("copy one: reef examples NAME [DIR]", markup=False)
            return
        target = copy_example(name, directory or Path(name.rsplit("/", 1)[-1]))
    if as_json:
        print_json({"example": name, "directory": str(target)})
        return
    console().print(f"copied the example {name} to {target}", markup=False)
