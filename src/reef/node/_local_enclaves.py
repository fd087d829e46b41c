"""Which local enclave serves an address: for a user who points a command at an enclave's app
port where its attestation server was meant (``reef verify http://127.0.0.1:43243`` with the
endpoint ``reef deploy`` printed), so the error can name the right URL."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from reef._listen import is_loopback
from reef.enclave import EnclaveInfo, LocalBackend
from reef.home import ReefHome

__all__ = ["AppPort", "find_app_port"]


@dataclass(frozen=True)
class AppPort:
    """One app port of a local enclave, as its host maps it."""

    enclave: EnclaveInfo
    port: int
    """The app's port inside the enclave."""


def _host_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:  # a port out of range or not a number
        return None
    if parts.hostname is None or port is None:
        return None
    return parts.hostname, port


def _same_place(a: tuple[str, int], b: tuple[str, int]) -> bool:
    return a[1] == b[1] and (a[0] == b[0] or (is_loopback(a[0]) and is_loopback(b[0])))


async def find_app_port(home: ReefHome, url: str) -> AppPort | None:
    """The running local enclave (under ``home``) one of whose app ports the host serves at
    ``url``'s host and port; None if none does (or ``url`` names no port)."""
    wanted = _host_port(url)
    if wanted is None:
        return None
    for info in await LocalBackend(home).list():
        if info.state != "running":
            continue
        for port, app_url in info.endpoints["ports"].items():
            served = _host_port(app_url)
            if served is not None and _same_place(wanted, served):
                return AppPort(info, int(port))
    return None
