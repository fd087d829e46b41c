"""reef.market: the Oyster-style job market (billing model, rate cards, provider control plane).

The names load on first use (:mod:`reef._lazy`): a command that settles a job's money or reads
its metadata (``reef jobs list``) does not import the provider's control plane, image fetcher and
image store (FastAPI, the backend runner), which only a provider serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes

if TYPE_CHECKING:
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
        LAUNCH_BURST,
        ControlPlane,
        EnclaveRunner,
        EventFeed,
        RunningEnclave,
        launch_key,
    )
    from reef.market._cp_app import JobView, control_plane_app
    from reef.market._cp_client import ControlPlaneClient
    from reef.market._fetch import (
        FetchedImage,
        ImageFetcher,
        ImagePolicy,
        PrivateTargets,
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
        job_user_data,
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
    "LAUNCH_BURST",
    "Launch",
    "LaunchSpec",
    "PrivateTargets",
    "RateCard",
    "RegionRates",
    "RunningEnclave",
    "Settlement",
    "Terminate",
    "UploadPolicy",
    "bandwidth_kbit_s",
    "control_plane_app",
    "image_store_app",
    "job_user_data",
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

__getattr__ = lazy_attributes(
    __name__,
    {
        "BackendRunner": "_backend_runner",
        "BandwidthRate": "_rates",
        "ControlPlane": "_control_plane",
        "ControlPlaneClient": "_cp_client",
        "DEV_REGION": "_rates",
        "EnclaveRunner": "_control_plane",
        "EventFeed": "_control_plane",
        "FetchedImage": "_fetch",
        "ImageFetcher": "_fetch",
        "ImagePolicy": "_fetch",
        "ImageStore": "_image_store",
        "LAUNCH_BURST": "_control_plane",
        "PrivateTargets": "_fetch",
        "InstanceRate": "_rates",
        "JobBook": "_job_state",
        "JobMachine": "_job_state",
        "JobMetadata": "_job_state",
        "JobPolicy": "_job_state",
        "JobView": "_cp_app",
        "Launch": "_job_state",
        "LaunchSpec": "_job_state",
        "RateCard": "_rates",
        "RegionRates": "_rates",
        "RunningEnclave": "_control_plane",
        "Settlement": "_billing",
        "Terminate": "_job_state",
        "job_user_data": "_job_state",
        "UploadPolicy": "_upload_auth",
        "bandwidth_kbit_s": "_rates",
        "control_plane_app": "_cp_app",
        "image_store_app": "_image_store",
        "launch_key": "_control_plane",
        "notice_reserve": "_billing",
        "paid_until": "_billing",
        "parse_u256": "_rates",
        "read_list_file": "_fetch",
        "read_owner_list": "_fetch",
        "settle": "_billing",
        "settlement_amount": "_billing",
        "upload_authorization": "_upload_auth",
        "upload_image": "_image_store",
        "withdrawable": "_billing",
    },
)
