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


_HEADINGS = {
    "app": "Enclave apps (reef deploy DIR, or reef enclave run):",
    "function": "Serverless functions (reef fn dev DIR --input ...):",
    "circuit": "Proof market circuits (reef up creates their markets; reef proofs request):",
    "platform": "The enclaves reef up runs (to read, or to build your own on):",
}


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
    from reef.node import copy_example, describe_examples

    with failing():
        if name is None:
            shipped = describe_examples()
            if as_json:
                print_json(
                    {
                        "examples": [e.name for e in shipped],
                        "details": [
                            {"name": e.name, "kind": e.kind, "about": e.about} for e in shipped
                        ],
                    }
                )
                return
            out = console()
            width = max(len(e.name) for e in shipped)
            for kind, heading in _HEADINGS.items():
                of_kind = [e for e in shipped if e.kind == kind]
                if of_kind:
                    out.print(heading, markup=False)
                for entry in of_kind:
                    out.print(f"  {entry.name:<{width}}  {entry.about}".rstrip(), markup=False)
            out.print("copy one: reef examples NAME [DIR]", markup=False)
            return
        target = copy_example(name, directory or Path(name.rsplit("/", 1)[-1]))
    if as_json:
        print_json({"example": name, "directory": str(target)})
        return
    console().print(f"copied the example {name} to {target}", markup=False)
