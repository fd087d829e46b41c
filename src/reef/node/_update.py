"""``reef jobs update``: change a running job's image, init params or debug flag.

The provider sees the new metadata on chain and replaces the enclave; this computes what the
new enclave must attest (the same recipe as :func:`reef.node.deploy`) so the caller can verify it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reef.chain import JobId, MarketClient
from reef.enclave import InitParams, attested_measurements
from reef.errors import MarketError
from reef.market import JobMetadata, upload_image
from reef.node._deploy import prepare_image
from reef.node._jobs import find_open_job
from reef.node._session import Session

__all__ = ["JobUpdate", "UpdateResult", "update_job"]


@dataclass(frozen=True, kw_only=True)
class JobUpdate:
    """What to change; ``None`` keeps the job's current value."""

    image: Path | None = None
    """A new app directory or image file (built, then uploaded)."""
    init_params: Path | None = None
    debug: bool | None = None
    store_url: str | None = None
    """The image store to upload to; the local network's by default."""
    url: str | None = None
    """An image already in a store, by its URL (instead of ``image``)."""


@dataclass(frozen=True, kw_only=True)
class UpdateResult:
    job_id: JobId
    updated: tuple[str, ...]
    """The metadata fields that changed (``debug``, ``init_params``, ``url``)."""
    image_id: str
    """With a new image: the image id (hex) the new enclave must attest; else empty."""
    tx_hash: str


def update_job(
    session: Session,
    market: MarketClient,
    job: JobId,
    change: JobUpdate,
    *,
    progress: Callable[[str], None] | None = None,
) -> UpdateResult:
    """Apply ``change`` to ``job``'s metadata on chain (one transaction).

    Raises:
        MarketError: nothing to change, both an image and a URL, or the job is not open.
        ImageError, ServiceError, ChainError: building, uploading or sending failed.
    """
    unchanged = change.image is None and change.init_params is None and change.debug is None
    if unchanged and not change.url:
        raise MarketError("nothing to update", hint="give --image, --init-params or --debug")
    if change.image is not None and change.url:
        raise MarketError("give a new image or an image URL, not both")
    meta = JobMetadata.parse(find_open_job(session, market, job).metadata)
    changes: dict[str, object] = {}
    if change.debug is not None:
        changes["debug"] = change.debug
    if change.init_params is not None:
        changes["init_params"] = InitParams.read(change.init_params).to_base64()
    if change.url:
        changes["url"] = change.url
    built: Path | None = None
    if change.image is not None:
        built = prepare_image(change.image, session.home)
        _, changes["url"] = upload_image(
            session.image_store(change.store_url), built, signer=session.account
        )
    updated = dataclasses.replace(meta, **changes)  # type: ignore[arg-type]
    image_id = ""
    if built is not None:
        # The new enclave gets the job's init params, new or kept, and its debug flag.
        params = (
            InitParams.from_json(updated.init_params, source="the job's init params")
            if updated.init_params
            else None
        )
        image_id = attested_measurements(built, params, debug=updated.debug).image_id.hex()
        if progress is not None:
            progress(f"uploaded; the new enclave must attest image id {image_id}")
    result = market.update_metadata(job, updated.to_json())
    return UpdateResult(
        job_id=job,
        updated=tuple(sorted(changes)),
        image_id=image_id,
        tx_hash=result.tx_hash,
    )
