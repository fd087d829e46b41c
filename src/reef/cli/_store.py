"""`reef store serve`: the image store tenants upload to (``reef deploy --store URL``), served
on its own, for a market on a chain reef does not run (``reef chain deploy``, then ``reef
provider run``). ``reef up`` serves one of its own.

Thin over :mod:`reef.node._image_store`: who may upload (:func:`reef.node.store_uploads`) and
the server (:func:`reef.node.serve_image_store`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reef.cli._common import serve_until_stopped
from reef.cli._options import ListenHost, ListenPort
from reef.cli._output import failing, say, tell
from reef.cli._root import command_group
from reef.errors import InputError

if TYPE_CHECKING:
    from reef.node import Served, StoreUploads

__all__ = ["register"]

app, register = command_group("store")

_MIB = 1 << 20
_DEFAULT_QUOTA_MIB = 2048  # reef.market's DEFAULT_UPLOAD_QUOTA, said without importing it


@app.callback()
def _store_group() -> None:
    # A group with one command: without a callback Typer would make `reef store` that command.
    pass


@app.command("serve")
def serve_cmd(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Where the images are kept (default: $REEF_HOME/images, as reef up's store).",
            show_default=False,
        ),
    ] = None,
    host: ListenHost = "127.0.0.1",
    port: ListenPort = 8090,
    # Not the shared --rpc: its help says "the local network's", and here it says who uploads.
    rpc: Annotated[
        str | None,
        typer.Option(
            "--rpc",
            help="The chain whose funded accounts may upload (default: the one $REEF_HOME "
            "records, e.g. by reef chain deploy).",
            show_default=False,
        ),
    ] = None,
    open_to_anyone: Annotated[
        bool,
        typer.Option(
            "--open",
            help="Admit unsigned uploads from anyone, with no quota: for a private network only.",
        ),
    ] = False,
    quota: Annotated[
        int,
        typer.Option(
            "--quota", min=1, metavar="MIB", help="MiB of images each account may upload."
        ),
    ] = _DEFAULT_QUOTA_MIB,
) -> None:
    """Serve the image store reef deploy uploads to, until Ctrl-C (uploads signed by accounts
    funded on the chain)."""
    from reef.home import ReefHome

    with failing(code=2):
        if open_to_anyone and rpc is not None:
            raise InputError(
                "--open admits anyone, --rpc names the chain whose funded accounts may upload",
                hint="give one of them",
            )
    home = ReefHome.from_env()
    root = directory if directory is not None else home.images
    with failing():
        from reef.node import store_uploads

        uploads = store_uploads(
            home, rpc=rpc, open_to_anyone=open_to_anyone, quota_bytes=quota * _MIB
        )
    if open_to_anyone:
        tell(
            "warning: --open: anyone who reaches this store can upload, unsigned and with no "
            "quota; serve it only on a private network"
        )
    from reef.node import serve_image_store

    serve_until_stopped(
        lambda: serve_image_store(root, uploads=uploads.policy, host=host, port=port, log=tell),
        lambda served: _ready(served, root, uploads),
        stopping="stopping the image store",
    )


def _ready(served: Served, root: Path, uploads: StoreUploads) -> None:
    from urllib.parse import urlsplit

    say(f"image store  {served.url}")
    say(f"images       {root}")
    say(f"uploads      {uploads.describe()}")
    parts = urlsplit(served.url)
    store_url = served.url
    if _unspecified(parts.hostname):
        # Listening on every address: tenants and the provider need one they reach it at.
        store_url = f"{parts.scheme}://<this host's address>:{parts.port}"
    say(f"deploy with  reef deploy IMAGE --store {store_url}")
    say("ready")


def _unspecified(host: str | None) -> bool:
    """Whether ``host`` is 0.0.0.0 or ``::`` (every address of the host)."""
    import ipaddress

    try:
        return ipaddress.ip_address(host or "").is_unspecified
    except ValueError:
        return False
