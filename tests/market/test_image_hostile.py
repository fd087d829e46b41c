"""The provider's image download and the image upload client against hostile servers.

A job's owner names the URL its provider downloads the image from, and ``reef deploy`` uploads
to whatever store it is pointed at: both answers are a stranger's. Each attack is a real server
on loopback (``net_support``'s raw server) that trickles its answer a byte at a time (no single
read is late, so per-read timeouts never fire) or answers more than the bound.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from net_support import (
    DRIPPED_HEAD,
    SENT_AT_MOST,
    Raw,
    Sent,
    drip,
    ends,
    gigabyte,
    raw_server,
    raw_server_in_thread,
)
from reef.errors import ImageError, ServiceError
from reef.market import ImageFetcher, ImageStore, upload_image

# Far above every bound the clients are given here (1-2 s), far below "for ever".
_LIVENESS_S = 30.0
_BODY_DRIP = drip(b"HTTP/1.1 200 OK\r\ncontent-length: 60000\r\n\r\n")
"""A head at once, then a body of 60 000 bytes a byte at a time (within every byte bound here)."""


def _left_in(store: Path) -> list[Path]:
    """What a download left in the store's directory (no partial image may stay)."""
    return sorted(store.iterdir())


@pytest.mark.parametrize(
    ("attack", "within"), [(drip(), "1 s"), (_BODY_DRIP, "2 s")], ids=["head", "body"]
)
async def test_an_image_server_trickling_its_answer_is_given_up_on(
    tmp_path: Path, attack: Raw, within: str
) -> None:
    """The head within ``timeout``; the whole image within ``timeout`` plus its bound at the
    slowest rate accepted (1 MiB/s: 1 MiB takes 1 s more)."""
    fetcher = ImageFetcher(ImageStore(tmp_path), timeout=1.0, max_bytes=1 << 20)
    async with raw_server(attack) as base:
        with pytest.raises(ServiceError) as caught:
            async with asyncio.timeout(_LIVENESS_S):
                await fetcher.fetch(f"{base}/app.eif")
    assert not isinstance(caught.value, ImageError)  # the server's failure: worth a retry
    assert f"did not answer within {within}" in caught.value.message
    assert caught.value.message.startswith(f"downloading the image {base}/app.eif failed")
    assert _left_in(tmp_path) == []


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_an_image_server_answering_a_gigabyte_is_cut_at_the_bound(
    tmp_path: Path, declared: bool
) -> None:
    sent = Sent()
    fetcher = ImageFetcher(ImageStore(tmp_path), timeout=5.0, max_bytes=1 << 20)
    async with raw_server(gigabyte(sent, declared=declared)) as base:
        with pytest.raises(ImageError, match="larger than"):
            async with asyncio.timeout(_LIVENESS_S):
                await fetcher.fetch(f"{base}/app.eif")
    assert sent.bytes < SENT_AT_MOST
    assert _left_in(tmp_path) == []


async def test_a_compressed_image_is_refused(tmp_path: Path) -> None:
    """httpx would inflate each read whole before the byte bound saw it; the image is asked for
    uncompressed, and a server that compresses it anyway always will (so the job ends)."""

    async def gzipped(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 4\r\n\r\nzzzz")
        await writer.drain()

    fetcher = ImageFetcher(ImageStore(tmp_path), timeout=5.0)
    async with raw_server(gzipped) as base:
        with pytest.raises(ImageError, match="'gzip' content encoding"):
            await fetcher.fetch(f"{base}/app.eif")
    assert _left_in(tmp_path) == []


@pytest.mark.parametrize("attack", [drip(DRIPPED_HEAD), _BODY_DRIP], ids=["head", "body"])
def test_an_image_store_trickling_its_answer_to_an_upload_is_given_up_on(
    tmp_path: Path, attack: Raw
) -> None:
    """``reef deploy`` uploads to the store it is given: the exchange is bounded by the client's
    timeout plus the upload's size at the slowest rate accepted (1 MiB/s, rounded up to the
    second: 1 + 1 s here), the answer's head as much as its body."""
    image = tmp_path / "app.img"
    image.write_bytes(b"\0image" * 100)
    with raw_server_in_thread(attack) as base, httpx.Client(timeout=1.0) as client:
        outcome = ends(lambda: upload_image(base, image, signer=None, client=client), _LIVENESS_S)
    assert isinstance(outcome, ServiceError), outcome
    assert "did not answer within 2 s" in outcome.message


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
def test_an_image_store_answering_an_upload_with_a_gigabyte_is_not_read(
    tmp_path: Path, declared: bool
) -> None:
    image = tmp_path / "app.img"
    image.write_bytes(b"\0image" * 100)
    sent = Sent()
    with raw_server_in_thread(gigabyte(sent, declared=declared)) as base:
        outcome = ends(lambda: upload_image(base, image, signer=None), _LIVENESS_S)
    assert isinstance(outcome, ServiceError), outcome
    assert "larger than any honest answer" in outcome.message
    assert sent.bytes < SENT_AT_MOST
