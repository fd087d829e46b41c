"""The image store as a service of its own: ``reef store serve``, the store ``reef deploy``
uploads to when the market runs on a chain reef does not run itself.

``reef up`` serves a store beside its devnet. An operator who put reef's contracts on anvil or a
testnet (``reef chain deploy``) and runs ``reef provider run`` there had none: this module is
that store's use case, so the command that serves it only parses its flags.

* :func:`store_uploads` decides who may upload: by default an account that holds ether on the
  chain the home records (or ``--rpc``), exactly as on ``reef up``'s store (anyone can make a
  key; funding one costs money), within a per-account quota; or, ``open``, anyone unsigned (a
  private network only). It resolves the chain as every command does
  (:func:`reef.node.open_chain`) and asks it its id once, so a wrong URL is said before serving.
* :func:`funded_uploads` is that policy over any JSON-RPC transport (``eth_getBalance``, read in
  a worker thread so that the store keeps serving while the node answers). A node that cannot
  be read refuses the upload with 503 (try again), never with a 500.
* :func:`serve_image_store` serves the store (:func:`reef.market.image_store_app`) on the
  serving floor until it is closed, and tells ``log`` one line per refused upload (who, what,
  why): the operator sees the refusals a tenant is told of.

Serving until Ctrl-C or SIGTERM is the command's, as for every reef server
(:func:`reef._serve.serve_until_stopped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reef._serve import Limits, serve
from reef.encoding import terminal_text
from reef.errors import ChainError, ConfigError
from reef.home import ReefHome
from reef.market import ImageStore, UploadPolicy, image_store_app
from reef.market._upload_auth import DEFAULT_UPLOAD_QUOTA, UploadDenied
from reef.node._serve import Served

if TYPE_CHECKING:
    from reef.chain._reader import RpcPoster

__all__ = [
    "DEFAULT_STORE_PORT",
    "StoreUploads",
    "funded_uploads",
    "serve_image_store",
    "store_uploads",
]

DEFAULT_STORE_PORT = 8090
"""The image store's port, as ``reef up`` serves it (DESIGN.md's port table)."""

_STORE_CHAIN_HINT = (
    "pass --rpc URL (the chain whose funded accounts may upload), run it with the REEF_HOME "
    "`reef chain deploy` recorded, or --open on a private network"
)
_REFUSAL_BYTES = 400
"""The most of a refusal's body a log line quotes (the store's reasons are one sentence)."""


@dataclass(frozen=True, kw_only=True)
class StoreUploads:
    """Who may upload to a store (:attr:`policy`) and, for a chain's funded accounts, which
    chain (``None`` on an open store)."""

    policy: UploadPolicy
    rpc_url: str | None = None
    chain_id: int | None = None

    def describe(self) -> str:
        """One line for the operator: who may upload."""
        if self.policy.open:
            return "anyone, unsigned (--open: no signature, no quota)"
        mib = self.policy.quota_bytes // (1 << 20)
        return (
            f"signed by accounts funded on chain {self.chain_id} ({self.rpc_url}), "
            f"up to {mib} MiB each"
        )


def funded_uploads(
    rpc: RpcPoster, *, chain_id: int, quota_bytes: int = DEFAULT_UPLOAD_QUOTA
) -> UploadPolicy:
    """Uploads signed by accounts that hold ether on the chain ``rpc`` reaches (an account with
    none could not pay the gas of a job for its image either), ``quota_bytes`` each.

    A balance that cannot be read refuses that upload with 503 and says to try again.
    """
    from reef.chain import parse_address
    from reef.chain._rpc import rpc_quantity, rpc_result

    def balance(address: str) -> int:
        who = parse_address(address, name="uploader")
        what = f"eth_getBalance({who})"
        message = {"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": [who, "latest"]}
        return rpc_quantity(what, rpc_result(what, rpc.post(what, message)))

    async def funded(address: str) -> bool:
        try:
            return await asyncio.to_thread(balance, address) > 0
        except ChainError as exc:
            raise UploadDenied(
                503,
                f"the store cannot read {address}'s balance on chain {chain_id} now: {exc.message}",
                hint="try again later",
            ) from exc

    return UploadPolicy(is_funded=funded, quota_bytes=quota_bytes, chain=f"chain {chain_id}")


def store_uploads(
    home: ReefHome,
    *,
    rpc: str | None = None,
    open_to_anyone: bool = False,
    quota_bytes: int = DEFAULT_UPLOAD_QUOTA,
) -> StoreUploads:
    """Who may upload to a store served for ``home``: anyone when ``open_to_anyone``, else the
    accounts funded on the chain ``rpc`` names (default: the one the home records, as every
    command finds it), whose endpoint must answer now.

    Raises:
        ConfigError: no chain is named and the home records none.
        RPCError: the chain's endpoint does not answer.
    """
    if open_to_anyone:
        return StoreUploads(policy=UploadPolicy.anyone())
    from reef.chain._reader import chain_id
    from reef.node._session import open_chain

    session = open_chain(home, rpc=rpc, need_account=False, hint=_STORE_CHAIN_HINT)
    chain = chain_id(session.rpc)
    return StoreUploads(
        policy=funded_uploads(session.rpc, chain_id=chain, quota_bytes=quota_bytes),
        rpc_url=session.rpc_url,
        chain_id=chain,
    )


async def serve_image_store(
    root: Path,
    *,
    uploads: UploadPolicy,
    host: str = "127.0.0.1",
    port: int = DEFAULT_STORE_PORT,
    log: Callable[[str], None] | None = None,
    port_hint: str = "another process uses that port; pick another with --port",
) -> Served:
    """Serve the image store in ``root`` (created if missing) on ``host:port`` (0 picks a free
    port) until :meth:`Served.aclose`; ``uploads`` decides who may upload, ``log`` is told of
    each refused upload.

    Raises:
        ConfigError: ``root`` cannot be created or opened as the store's directory.
        ServiceError: the port cannot be bound (with ``port_hint``) or the server does not start.
        InputError: for a port outside 0..65535 or a host that does not resolve.
    """
    try:
        store = ImageStore(root)
    except OSError as exc:
        raise ConfigError(
            f"cannot keep images in {root}: {exc.strerror or exc}",
            hint="pass --dir DIR, a directory this user may create and write",
        ) from exc
    app = image_store_app(store, uploads=uploads)
    limits: Limits = app.reef_limits  # type: ignore[attr-defined]
    return await serve(
        app if log is None else _RefusalLog(app, log),
        host=host,
        port=port,
        what="image store",
        limits=limits,
        hint=port_hint,
    )


class _RefusalLog:
    """An ASGI wrapper that tells ``log`` of each upload the store refuses: the client, the
    request, the status and the store's reason (its ``{"error": ...}``, cut short).

    The serving floor refuses some requests before the store sees them (a body over the
    store's limit, oversized headers, a body that stops arriving): it tells
    :meth:`reef_on_refusal` of those, which logs them in the same line, of any method.
    """

    def __init__(self, app: Any, log: Callable[[str], None]) -> None:
        self._app = app
        self._log = log

    def reef_on_refusal(self, scope: Any, status: int, reason: str) -> None:
        """A refusal the serving floor made itself (:class:`reef._serve.Guard`)."""
        self._tell(_refusal_line(scope, status, json.dumps({"error": reason}).encode()))

    def _tell(self, line: str) -> None:
        # A log that cannot be written (its reader gone) must not fail the request it tells of:
        # Rich, which prints the CLI's, answers a broken pipe with SystemExit.
        with contextlib.suppress(OSError, ValueError, SystemExit):
            self._log(line)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") not in ("PUT", "POST"):
            await self._app(scope, receive, send)
            return
        status = 0
        body = bytearray()

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status >= 400:
                body.extend(message.get("body", b"")[: _REFUSAL_BYTES - len(body)])
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            if status >= 400:
                self._tell(_refusal_line(scope, status, bytes(body)))


def _refusal_line(scope: Any, status: int, body: bytes) -> str:
    client = scope.get("client") or ("?", 0)
    reason = body.decode("utf-8", "replace")
    try:
        answer = json.loads(body)
        if isinstance(answer, dict) and "error" in answer:
            reason = str(answer["error"])
    except ValueError:
        pass
    path = str(scope.get("path", ""))[:100]
    return terminal_text(
        f"refused {scope.get('method')} {path} from {client[0]} ({status}): {reason[:300]}"
    )
