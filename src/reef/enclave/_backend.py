"""What every enclave backend offers: one interface, typed specs and infos, whatever runs them.

A backend runs enclave images somewhere: :class:`reef.enclave.LocalBackend` on this machine's dev
TEE, a Nitro backend on real hosts later, :class:`reef.testing.FakeBackend` in memory for tests.
Everything above the enclave layer (the market's runner, ``reef up``, the CLI) speaks
:class:`EnclaveBackend` only, so a new backend is one new module that passes the conformance suite
:func:`reef.testing.check_backend`.

Each backend also owns its **measurement recipe** (:meth:`EnclaveBackend.measure`): what an enclave
of a given spec attests (PCRs, image id), which is what a client must expect when it verifies one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, runtime_checkable

if TYPE_CHECKING:
    from reef.attestation import DevAuthority
    from reef.enclave._measure import Measurements
    from reef.home import ReefHome
    from reef.kms import KmsWiring

__all__ = [
    "DEFAULT_STATE_MIB",
    "DEFAULT_TMP_MIB",
    "LIVE_STATES",
    "EnclaveBackend",
    "EnclaveEndpoints",
    "EnclaveInfo",
    "EnclaveSpec",
    "EnclaveState",
    "open_backend",
]

DEFAULT_TMP_MIB = 256
DEFAULT_STATE_MIB = 1024
EnclaveState = Literal["starting", "running", "crashed", "stopped"]
LIVE_STATES: frozenset[str] = frozenset({"starting", "running"})


class EnclaveEndpoints(TypedDict):
    """Where an enclave is reached from the host."""

    attestation: str
    attestation_secp256k1: str
    ports: dict[int, str]
    logs: str | None


@dataclass(frozen=True, kw_only=True)
class EnclaveSpec:
    """What to run.

    Attributes:
        image: the image file.
        init_params: an init-params JSON file, or None.
        debug: debug mode: PCR0-2 zero, console readable (``logs``), as on Nitro.
        cpus, memory_mib: limits; default to the image's ``reef.toml``.
        ports: enclave port -> host port (0 picks a free one); default: every port the image
            declares, on free host ports.
        network: ``"auto"`` (own namespace when possible), ``"netns"`` or ``"host"``.
        labels: the caller's own tags (e.g. ``{"reef.job": "0x…"}``), kept with the enclave and
            returned on :class:`EnclaveInfo`, so a caller finds its enclaves again after a
            restart; :meth:`LocalBackend.update` keeps the labels the new spec does not name.
        allow_host_ports: host ports on 127.0.0.1 this enclave's app may connect to (through
            ``$REEF_HOST_ADDR``) besides other enclaves' published ports: the services it is
            deliberately given. Every other host address and port is refused.
        tmp_mib: the size of its private ``/tmp``.
        state_mib: the size of its ``/state`` (fixed when an image's volume is first made; the
            app gets ``ENOSPC`` past it).
        lease_until_ms: when the enclave stops by itself (Unix milliseconds) unless
            :meth:`LocalBackend.renew` moves it; None for no lease. A launcher that pays for
            the enclave's time sets it, so that the enclave ends even if the launcher dies.
        user_data: what every document of the enclave's two attestation endpoints carries as
            ``user_data`` (at most 1024 bytes, the NSM's limit): a launcher binds the enclave
            to what it runs for, so that nobody passes another's enclave off as this one (a
            market provider puts the job: :func:`reef.market.job_user_data`).
    """

    image: Path
    init_params: Path | None = None
    debug: bool = False
    cpus: int | None = None
    memory_mib: int | None = None
    ports: Mapping[int, int] = field(default_factory=dict)
    network: Literal["auto", "netns", "host"] = "auto"
    labels: Mapping[str, str] = field(default_factory=dict)
    allow_host_ports: tuple[int, ...] = ()
    tmp_mib: int = DEFAULT_TMP_MIB
    state_mib: int = DEFAULT_STATE_MIB
    lease_until_ms: int | None = None
    user_data: bytes = b""


@dataclass(frozen=True, kw_only=True)
class EnclaveInfo:
    """An enclave as its state file records it.

    ``labels`` are the ones its spec gave; ``image_path`` and ``init_params_path`` are the files
    it was started from (absolute). ``state_key`` names the ``/state`` it shares with the other
    enclaves of its image (the same image id and debug flag), which
    :meth:`EnclaveBackend.remove_state` removes; it is not part of the CLI's JSON.
    """

    id: str
    name: str
    state: EnclaveState
    exit_code: int | None
    reason: str | None
    image_id: bytes
    pcrs: Mapping[int, bytes]
    debug: bool
    endpoints: EnclaveEndpoints
    cpus: int
    memory_mib: int
    network: str
    sandbox: str
    created_ms: int
    public_keys: Mapping[str, bytes] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    image_path: Path | None = None
    init_params_path: Path | None = None
    state_key: str = ""

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON shape (hex without 0x; port keys as strings)."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "exit_code": self.exit_code,
            "reason": self.reason or "",
            "image_id": self.image_id.hex(),
            "pcrs": {str(i): v.hex() for i, v in sorted(self.pcrs.items())},
            "debug": self.debug,
            "endpoints": {
                "attestation": self.endpoints["attestation"],
                "attestation_secp256k1": self.endpoints["attestation_secp256k1"],
                "ports": {str(p): url for p, url in sorted(self.endpoints["ports"].items())},
                "logs": self.endpoints["logs"],
            },
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            "network": self.network,
            "sandbox": self.sandbox,
            "created_ms": self.created_ms,
            "public_keys": {k: v.hex() for k, v in self.public_keys.items()},
            "warnings": list(self.warnings),
            "labels": dict(sorted(self.labels.items())),
            "image_path": str(self.image_path) if self.image_path else "",
            "init_params_path": str(self.init_params_path) if self.init_params_path else "",
        }


@runtime_checkable
class EnclaveBackend(Protocol):
    """Runs enclaves. Every method raises :class:`reef.errors.EnclaveError` for an unknown id.

    ``start`` returns once the enclave's trusted base answers; ``update`` replaces an enclave in
    place (same id and host endpoints); ``stop`` ends it and leaves its record (state
    ``stopped``); ``remove`` forgets a stopped one; ``logs`` and ``follow`` read a debug
    enclave's console (a production console is private, as on Nitro); ``renew`` moves its lease;
    ``aclose`` lets go of what the backend holds besides its enclaves (a spare supervisor),
    which keep running.
    """

    async def start(self, spec: EnclaveSpec) -> EnclaveInfo: ...

    async def update(self, enclave_id: str, spec: EnclaveSpec) -> EnclaveInfo: ...

    async def status(self, enclave_id: str) -> EnclaveInfo: ...

    async def list(self) -> list[EnclaveInfo]: ...

    async def stop(self, enclave_id: str) -> EnclaveInfo: ...

    async def remove(self, enclave_id: str) -> None: ...

    async def logs(self, enclave_id: str) -> str: ...

    def follow(self, enclave_id: str, *, poll: float = 0.1) -> AsyncIterator[str]: ...

    async def renew(self, enclave_id: str, until_ms: int | None) -> None: ...

    async def remove_state(self, state_key: str) -> bool:
        """Delete the ``/state`` named ``state_key`` (an :attr:`EnclaveInfo.state_key`) for good;
        returns whether there was one. ``/state`` outlives its enclaves (it is kept across their
        restarts), so whoever starts enclaves for others removes it once none should run.

        Raises:
            EnclaveError: an enclave using it is starting or running (it is left alone).
            InputError: ``state_key`` is not a name this backend gives.
        """
        ...

    def measure(self, spec: EnclaveSpec) -> Measurements:
        """What an enclave started from ``spec`` attests (its PCRs and image id)."""
        ...

    async def aclose(self) -> None:
        """Let go of what this backend holds besides its enclaves (a spare supervisor, say);
        the enclaves keep running. Safe to call more than once."""
        ...


BackendKind = Literal["local"]


def open_backend(
    home: ReefHome,
    *,
    kind: BackendKind = "local",
    kms: KmsWiring | None = None,
    authority: DevAuthority | None = None,
    insecure: bool = False,
    spare: bool = False,
) -> EnclaveBackend:
    """The backend of ``kind`` for ``home``: how ``reef up``, ``reef provider run`` and
    ``reef enclave`` get one without naming a class (a Nitro backend is one more kind here).

    ``spare`` keeps a supervisor loaded ahead so that launches start sooner (for a long-lived
    launcher such as a provider; :meth:`EnclaveBackend.aclose` lets it go).

    Raises:
        InputError: for a kind this reef does not have.
    """
    if kind == "local":
        from reef.enclave.local._backend import LocalBackend

        return LocalBackend(home, kms=kms, authority=authority, insecure=insecure, spare=spare)
    from reef.errors import InputError

    raise InputError(f"no enclave backend {kind!r}", hint="this reef has: local")
