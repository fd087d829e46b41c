"""The ``reef`` command: thin Typer commands over the library, one module per command group.

Command modules import heavy libraries (web3, uvicorn, ...) inside their functions so that
``reef --help`` and quick commands start fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from reef.cli import (
    _aliases,
    _attestation,
    _chain,
    _dashboard,
    _deploy,
    _doctor,
    _enclave,
    _examples,
    _executor,
    _fn,
    _image,
    _init_params,
    _jobs,
    _kms,
    _proofs,
    _provider,
    _scallop,
    _up,
    _verifier,
    _verify,
    _wallet,
)
from reef.cli._output import fail
from reef.cli._root import ReefTyper, version_callback
from reef.errors import ReefError

__all__ = ["app", "main"]

app = ReefTyper(
    name="reef",
    help="reef: verifiable compute. Attested enclaves, KMS, attested channels, a compute market.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    suggest_commands=False,  # ReefGroup suggests, never a command that spends money
)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print reef's version and exit.",
            callback=version_callback,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """reef: verifiable compute. Attested enclaves, KMS, attested channels, a compute market."""


for _module in (
    _doctor,
    _attestation,
    _verifier,
    _verify,
    _image,
    _examples,
    _init_params,
    _enclave,
    _chain,
    _scallop,
    _kms,
    _up,
    _deploy,
    _jobs,
    _wallet,
    _provider,
    _fn,
    _executor,
    _dashboard,
    _proofs,
    _aliases,
):
    _module.register(app)


def main() -> None:
    """Entry point of the ``reef`` console script."""
    try:
        app()
    except ReefError as exc:
        # A command that did not handle its own error still gets a readable message, not a trace.
        sys.exit(fail(exc).exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
