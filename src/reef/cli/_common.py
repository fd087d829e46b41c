"""What several command groups share besides printing (that is :mod:`reef.cli._output`).

- reading the files users name (``-`` for stdin where a command allows it), with errors that name
  the file rather than a traceback;
- the TEE root a ``--root`` / ``--trust`` value names (:func:`trusted_root`), and the KMS root
  ``--kms-endpoint`` / ``--kms-pubkey`` name (:func:`kms_wiring`);
- the market session the ``--rpc`` / ``--market`` / ``--key`` flags name (the flags themselves are
  in :mod:`reef.cli._options`; :func:`reef.node.open_session` resolves them against ``$REEF_HOME``),
  and the serverless contracts ``--rpc`` / ``--jobs`` / ``--code`` / ``--key`` name (``reef fn``
  and ``reef executor``), resolved the same way (:func:`reef.node.open_service`);
- stopping a foreground command cleanly on Ctrl-C or SIGTERM (:func:`stop_signals`, the one way
  every reef command reacts to a stop signal, lives on the serving floor, :mod:`reef._serve`),
  and serving one server until then (:func:`serve_until_stopped`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from reef.cli._output import failing, tell, tx_printer
from reef.errors import ConfigError, InputError

if TYPE_CHECKING:
    import asyncio

    from eth_account.signers.local import LocalAccount

    from reef._serve import Serving
    from reef.attestation import TrustedRoot
    from reef.chain import Address, Job, MarketReader
    from reef.cli._options import Flags
    from reef.kms import KmsWiring, PinStore
    from reef.node import ServiceSession, Session
    from reef.serverless import ServerlessCodeClient, ServerlessJobsClient

__all__ = [
    "OwnerJobs",
    "ServerlessTarget",
    "kms_pins",
    "kms_url",
    "kms_wiring",
    "market_session",
    "open_target",
    "owner_jobs",
    "read_file",
    "read_input",
    "serve_until_stopped",
    "stop_signals",
    "trusted_root",
]


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """:func:`reef._serve.stop_signals`, imported when a command first serves: the serving floor
    loads uvicorn and FastAPI, which ``reef --help`` and one-shot commands must not pay for."""
    from reef._serve import stop_signals as floor_stop_signals

    with floor_stop_signals() as stop:
        yield stop


_ServingT = TypeVar("_ServingT", bound="Serving")


def serve_until_stopped(
    start: Callable[[], Awaitable[_ServingT]],
    ready: Callable[[_ServingT], None] | None = None,
    *,
    stopping: str | None = None,
    before_close: Callable[[], None] | None = None,
) -> None:
    """Run a command's server in the foreground (:func:`reef._serve.serve_until_stopped`, as
    every reef server): ``stopping`` is said on stderr when a signal stops it. A reef error on
    the way ends the command (exit 1, :func:`~reef.cli._output.failing`)."""
    import asyncio

    from reef._serve import serve_until_stopped as serve

    said = None if stopping is None else (lambda: tell(stopping))
    with failing():
        asyncio.run(serve(start, ready, on_signal=said, before_close=before_close))


def read_file(path: Path) -> bytes:
    """The bytes of a file the user named.

    Raises:
        InputError: naming the file and why it cannot be read.
    """
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_input(path: str) -> bytes:
    """Like :func:`read_file`, where ``-`` reads stdin.

    Raises:
        InputError: naming the file and why it cannot be read.
    """
    if path == "-":
        return sys.stdin.buffer.read()
    return read_file(Path(path))


def trusted_root(spec: str) -> TrustedRoot:
    """The TEE root a ``--root`` / ``--trust`` value names: ``aws``, ``mock``, ``dev`` (this
    ``$REEF_HOME``'s dev TEE root) or a DER/PEM certificate file.

    Raises:
        InputError: the file is unreadable or not a certificate.
        ConfigError: ``dev`` when this home has no dev root yet.
    """
    from reef.attestation import TrustedRoot
    from reef.home import ReefHome

    return TrustedRoot.resolve(spec, ReefHome.from_env())


def kms_url(kms: str | None) -> str:
    """``--kms``, else the public URL of the KMS root that the network in ``$REEF_HOME`` runs
    (``network.json``, as every other command finds the network): ``reef up`` on ports of its
    own has it elsewhere than the :1101 of the examples.

    Raises:
        InputError: no ``--kms``, and no network in ``$REEF_HOME`` runs a KMS root.
    """
    if kms is not None:
        return kms
    from reef.home import ReefHome
    from reef.node import NetworkInfo

    home = ReefHome.from_env()
    try:
        network = NetworkInfo.load(home)
    except ConfigError as exc:
        raise InputError(
            f"no --kms given, and {exc.message}",
            hint="pass --kms URL (a KMS root's public URL, e.g. http://127.0.0.1:1101), or start "
            "the local network with `reef up` (in the same $REEF_HOME)",
        ) from exc
    url = network.kms.get("public")
    if not url:
        raise InputError(
            f"no --kms given, and the reef network in {home.root} runs no KMS root",
            hint="pass --kms URL, or restart `reef up` without --no-kms",
        )
    tell(f"KMS: {url} (the KMS root of the reef network in {home.root})")
    return url


def kms_pins() -> PinStore:
    """The KMS pins this ``$REEF_HOME`` keeps (``reef kms info --pin``)."""
    from reef.home import ReefHome
    from reef.kms import PinStore

    return PinStore.for_home(ReefHome.from_env())


def kms_wiring(endpoint: str, pubkey: str) -> KmsWiring:
    """The KMS root ``--kms-endpoint HOST:PORT`` and ``--kms-pubkey HEX`` name: where an
    enclave's derive server gets its seed.

    Raises:
        InputError: a value is malformed (naming its flag).
    """
    from reef.encoding import parse_hex
    from reef.kms import KmsWiring

    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(f"--kms-endpoint {endpoint!r} is not HOST:PORT")
    return KmsWiring(
        scallop_host=host,
        scallop_port=int(port),
        scallop_key=parse_hex(pubkey, name="--kms-pubkey", length=32),
    )


def market_session(
    rpc: str | None, market: str | None, key: Path | None, *, need_account: bool = True
) -> Session:
    """The market session a command's ``--rpc``, ``--market`` and ``--key`` flags name.

    Raises:
        ConfigError: nothing says where the chain or market is, or no account is available.
        RPCError: the endpoint does not answer.
    """
    from reef.home import ReefHome
    from reef.node import open_session

    return open_session(
        ReefHome.from_env(), rpc=rpc, market=market, key=key, need_account=need_account
    )


@dataclass(frozen=True)
class OwnerJobs:
    """An account's open jobs in the market (``reef wallet``, ``reef jobs list``), read through
    the session's reader (no web3.py: the command sends nothing)."""

    session: Session
    reader: MarketReader
    owner: Address
    jobs: list[Job]

    def totals(self, now: int | None = None) -> dict[str, Any]:
        """What the jobs hold and spend: their balances at ``now`` (default: the chain's time
        now; ``reef jobs list`` passes the instant its rows were settled at) and their rates
        per hour."""
        from reef.chain import format_amount
        from reef.node import jobs_totals

        held, spend = jobs_totals(self.jobs, self.session.now() if now is None else now)
        return {
            "open_jobs": len(self.jobs),
            "jobs_balance": format_amount(held),
            "spend_per_hour": format_amount(spend),
        }


def owner_jobs(flags: Flags, owner: str | None) -> OwnerJobs:
    """The open jobs of the account a command shows (``--owner`` when given, then no account
    is needed; else the session's own), in the market the flags name.

    Raises:
        InputError: ``owner`` is not an address.
        ConfigError: nothing says where the chain or market is, or no account is available.
        RPCError: the endpoint does not answer.
    """
    session = market_session(flags.rpc, flags.market, flags.key, need_account=owner is None)
    from reef.node import open_jobs  # after the session: a command with no network says so first

    if owner:
        from reef.chain import parse_address  # after the session: no network, no eth-utils

        who = parse_address(owner, name="owner")
    else:
        who = session.address
    reader = session.reader
    return OwnerJobs(session, reader, who, open_jobs(session, reader, who))


@dataclass(frozen=True)
class ServerlessTarget:
    """The chain and serverless contracts a command acts on, and the account it sends from."""

    session: ServiceSession
    """Its contracts: ``jobs_contract``, and ``code_contract`` unless the command uses the Jobs
    contract alone (``reef executor drain``)."""

    @property
    def jobs_address(self) -> Address:
        return self.session.contracts["jobs_contract"]

    @property
    def code_address(self) -> Address:
        code = self.session.contracts.addresses.get("code_contract")
        if code is None:  # pragma: no cover - open_target(code=True) names one
            raise ConfigError("no serverless code contract known", hint="pass --code ADDR")
        return code

    def jobs(self, *, send: bool = False) -> ServerlessJobsClient:
        from reef.serverless import ServerlessJobsClient

        return ServerlessJobsClient(
            self.session.w3, self.jobs_address, account=self._sender(send), progress=tx_printer
        )

    def code(self, *, send: bool = False) -> ServerlessCodeClient:
        from reef.serverless import ServerlessCodeClient

        return ServerlessCodeClient(
            self.session.w3, self.code_address, account=self._sender(send), progress=tx_printer
        )

    def _sender(self, send: bool) -> LocalAccount | None:
        if send and self.session.account is None:
            raise ConfigError("no account to send from", hint="pass --key FILE")
        return self.session.account


def open_target(flags: Flags, *, send: bool, code: bool = True) -> ServerlessTarget:
    """The serverless contracts ``--jobs`` / ``--code`` name (else ``reef up``'s), on the chain
    ``--rpc`` names, sending from ``--key`` (else, when ``send``, dev account 0 on a development
    chain): :func:`reef.node.open_service`. ``code=False``: the command uses the Jobs contract
    alone, so no code contract need be known.

    Raises:
        ConfigError: when nothing says where the chain or a contract is, or a command that sends
            has no account.
        RPCError: when the endpoint does not answer.
    """
    from reef.home import ReefHome
    from reef.node import open_service

    given = {"jobs_contract": flags.jobs}
    if code:
        given["code_contract"] = flags.code
    session = open_service(
        ReefHome.from_env(),
        "serverless",
        given,
        rpc=flags.rpc,
        key=flags.key,
        need_account=send,
        missing="no serverless deployment to talk to",
        hint="start the local network (`reef up`), or pass --rpc, --jobs and --code",
    )
    return ServerlessTarget(session)
