"""What several command groups share besides printing (that is :mod:`reef.cli._output`).

- reading the files users name (``-`` for stdin where a command allows it), with errors that name
  the file rather than a traceback;
- the market session the ``--rpc`` / ``--market`` / ``--key`` flags name (the flags themselves are
  in :mod:`reef.cli._options`; :func:`reef.node.open_session` resolves them against ``$REEF_HOME``);
- stopping a foreground command cleanly on Ctrl-C or SIGTERM (:func:`stop_signals`, the one way
  every reef command reacts to a stop signal, lives on the serving floor, :mod:`reef._serve`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from reef.errors import InputError

if TYPE_CHECKING:
    import asyncio

    from reef.chain import Address
    from reef.node import Session

__all__ = [
    "market_session",
    "owner_session",
    "read_file",
    "read_input",
    "stop_signals",
]


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """:func:`reef._serve.stop_signals`, imported when a command first serves: the serving floor
    loads uvicorn and FastAPI, which ``reef --help`` and one-shot commands must not pay for."""
    from reef._serve import stop_signals as floor_stop_signals

    with floor_stop_signals() as stop:
        yield stop


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


def owner_session(
    rpc: str | None, market: str | None, key: Path | None, owner: str | None
) -> tuple[Session, Address]:
    """The market session the flags name, and whose account a command shows: ``--owner`` when
    given (then no account is needed), else the session's own.

    Raises:
        InputError: ``owner`` is not an address.
        ConfigError: nothing says where the chain or market is, or no account is available.
        RPCError: the endpoint does not answer.
    """
    from reef.chain import parse_address

    session = market_session(rpc, market, key, need_account=owner is None)
    return session, parse_address(owner, name="owner") if owner else session.address
