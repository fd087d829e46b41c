"""reef.market: the Oyster-style job market (billing model, rate cards, provider control plane)."""

from __future__ import annotations

from reef.market._backend_runner import BackendRunner
from reef.market._billing import (
    Settlement,
    notice_reserve,
    paid_until,
    settle,
    settlement_amount,
    withdrawable,
)
from reef.market._control_plane import (
    ControlPlane,
    EnclaveRunner,
    EventFeed,
    RunningEnclave,
    launch_key,
)
from reef.market._cp_app import ControlPlaneClient, JobView, control_plane_app
from reef.market._fetch import (
    FetchedImage,
    ImageFetcher,
    ImagePolicy,
    read_list_file,
    read_owner_list,
)
from reef.market._image_store import ImageStore, image_store_app, upload_image
from reef.market._job_state import (
    JobBook,
    JobMachine,
    JobMetadata,
    JobPolicy,
    Launch,
    LaunchSpec,
    Terminate,
)
from reef.market._rates import (
    DEV_REGION,
    BandwidthRate,
    InstanceRate,
    RateCard,
    RegionRates,
    bandwidth_kbit_s,
    parse_u256,
)
from reef.market._upload_auth import UploadPolicy, upload_authorization

__all__ = [
    "BackendRunner",
    "BandwidthRate",
    "ControlPlane",
    "ControlPlaneClient",
    "DEV_REGION",
    "EnclaveRunner",
    "EventFeed",
    "FetchedImage",
    "ImageFetcher",
    "ImagePolicy",
    "ImageStore",
    "InstanceRate",
    "JobBook",
    "JobMachine",
    "JobMetadata",
    "JobPolicy",
    "JobView",
    "Launch",
    "LaunchSpec",
    "RateCard",
    "RegionRates",
    "RunningEnclave",
    "Settlement",
    "Terminate",
    "UploadPolicy",
    "bandwidth_kbit_s",
    "control_plane_app",
    "image_store_app",
    "launch_key",
    "notice_reserve",
    "paid_until",
    "parse_u256",
    "read_list_file",
    "read_owner_list",
    "settle",
    "settlement_amount",
    "upload_authorization",
    "upload_image",
    "withdrawable",
]
