"""The ``reef`` command: thin Typer commands over the library, one module per command group.

``reef`` imports only the module of the command it runs: the table below names every top-level
command, its module and the help ``reef --help`` lists for it, so listing the commands imports
none of them and ``reef kms derive`` imports ``_kms`` alone (:class:`~reef.cli._root.ReefGroup`
builds the command from the module's ``register(root)`` when it is run). Command modules in turn
import heavy libraries (web3, uvicorn, ...) inside their functions. A command added to a module's
``register`` needs a row here; tests/attestation/test_cli_lazy.py checks the table against what
the modules register.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from reef.cli._root import LazyCommand, ReefTyper, version_callback
from reef.errors import ReefError

__all__ = ["app", "main"]

_OYSTER = "Oyster CLI names"  # the panel of _aliases' commands

# In the order ``reef --help`` lists them (within each panel).
_COMMANDS = (
    LazyCommand(
        "doctor",
        "reef.cli._doctor",
        "Check this host: sandbox, network, firewall, user namespaces, seccomp, disk, Node.js.",
    ),
    LazyCommand(
        "verify",
        "reef.cli._verify",
        "Verify a running enclave's attestation, live, and the image id it runs.",
    ),
    LazyCommand(
        "examples",
        "reef.cli._examples",
        "List the shipped examples, or copy one into a new directory.",
    ),
    LazyCommand(
        "up",
        "reef.cli._up",
        "Run the local network: chain, provider, KMS, serverless, proof market, dashboard.",
    ),
    LazyCommand(
        "deploy",
        "reef.cli._deploy",
        "Deploy an enclave: build, upload, pay for --duration, wait, verify, print the endpoint.",
    ),
    LazyCommand(
        "logs",
        "reef.cli._jobs",
        "Print a debug job's enclave console (only debug enclaves have a readable console).",
    ),
    LazyCommand(
        "wallet",
        "reef.cli._wallet",
        "Your balances (rUSD, ETH for gas) and what your open jobs hold and spend per hour.",
    ),
    LazyCommand(
        "dashboard",
        "reef.cli._dashboard",
        "Serve the web dashboard until Ctrl-C (management only on loopback, with the printed "
        "token).",
    ),
    LazyCommand(
        "attestation",
        "reef.cli._attestation",
        "Attestation evidence: verify Nitro documents and TDX/SGX quotes, inspect, mint (dev).",
    ),
    LazyCommand(
        "verifier",
        "reef.cli._verifier",
        "Attestation verifier: verify a Nitro document once, sign an EIP-712 statement anyone "
        "can check with ecrecover (Oyster-compatible).",
    ),
    LazyCommand(
        "image",
        "reef.cli._image",
        "Enclave images: build a deterministic image of an app directory, measure it.",
    ),
    LazyCommand(
        "init-params",
        "reef.cli._init_params",
        "Init params: files given to an enclave at boot, attested through PCR16 or sealed to its "
        "KMS key (Oyster's format).",
    ),
    LazyCommand(
        "enclave",
        "reef.cli._enclave",
        "Local enclaves: run images in the dev TEE (sandboxed, measured, attested); ps, logs, "
        "stop.",
    ),
    LazyCommand(
        "chain",
        "reef.cli._chain",
        "The local devnet: an Ethereum JSON-RPC chain (py-evm) with reef's contracts. "
        "`reef chain` runs it in the foreground; `reef chain deploy` puts reef's contracts "
        "on a chain of your own.",
    ),
    LazyCommand(
        "scallop",
        "reef.cli._scallop",
        "Scallop attested channels: Noise test vectors, attested requests.",
    ),
    LazyCommand(
        "kms",
        "reef.cli._kms",
        "KMS: keys bound to enclave images. Derive offline, fetch signed public keys, run a root.",
    ),
    LazyCommand("jobs", "reef.cli._jobs", "Your jobs in the market: inspect, fund, update, stop."),
    LazyCommand(
        "provider",
        "reef.cli._provider",
        "Run a provider: its control plane launches enclaves for the market's paying jobs.",
    ),
    LazyCommand(
        "store",
        "reef.cli._store",
        "The image store reef deploy uploads to, served on its own (reef up serves one).",
    ),
    LazyCommand(
        "fn",
        "reef.cli._fn",
        "Serverless functions: write one, run it locally in workerd with executor limits.",
    ),
    LazyCommand(
        "executor",
        "reef.cli._executor",
        "Serverless executors: run one, register it on chain, drain, deregister, whitelist.",
    ),
    LazyCommand(
        "alerts", "reef.cli._dashboard", "Alert rules (alerts.toml) over the network's metrics."
    ),
    LazyCommand("proofs", "reef.cli._proofs", "The proof market: markets and proof requests."),
    LazyCommand("prover", "reef.cli._prover", "Proving for the proof market: stake, join, run."),
    LazyCommand(
        "list",
        "reef.cli._aliases",
        "Your open jobs, and what they hold and spend in total. (= reef jobs list)",
        _OYSTER,
    ),
    LazyCommand(
        "deposit",
        "reef.cli._aliases",
        "Add money to a job (anyone may); its enclave then runs longer (this says until when). (= reef jobs deposit)",
        _OYSTER,
    ),
    LazyCommand(
        "withdraw",
        "reef.cli._aliases",
        "Take unused money back from a job (owner only; a notice reserve stays). "
        "(= reef jobs withdraw)",
        _OYSTER,
    ),
    LazyCommand(
        "stop",
        "reef.cli._aliases",
        "Stop a job: revise its rate to 0, and the provider stops the enclave at once. "
        "(= reef jobs stop)",
        _OYSTER,
    ),
    LazyCommand(
        "update",
        "reef.cli._aliases",
        "Change a job's image, init params or debug flag; the provider replaces the enclave. "
        "(= reef jobs update)",
        _OYSTER,
    ),
    LazyCommand(
        "compute-image-id",
        "reef.cli._aliases",
        "The image id of PCR values: sha256(flags ‖ PCR0 ‖ PCR1 ‖ PCR2 ‖ PCR16), as Oyster's.",
        _OYSTER,
    ),
)

app = ReefTyper(
    commands=_COMMANDS,
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


def main() -> None:
    """Entry point of the ``reef`` console script."""
    try:
        app()
    except ReefError as exc:
        # A command that did not handle its own error still gets a readable message, not a trace.
        from reef.cli._output import fail

        sys.exit(fail(exc).exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
