"""``reef deploy``: from an app directory to a verified enclave a user can reach, in one call.

The steps, each of which can fail with a message saying why and what to do:

1. the image: a directory is built (deterministically, :func:`reef.enclave.build_image`), a file
   is used as is; the expected image id is computed here from the bytes the user has (with the
   init params' PCR16 and the debug flag), never taken from the provider;
2. the provider: its control-plane URL from the market, its offer from ``/spec``; an unknown
   provider or an instance type it does not offer stops here, before any transaction;
3. the money: cost = rate × duration (rounded up as the market settles), checked against the
   account's token balance;
4. the upload to the content-addressed image store, whose URL pins the image's SHA-256;
5. approve + ``jobOpen`` with Oyster's metadata JSON;
6. wait for the provider to run the enclave (its ``/job`` says why if it refuses the job);
7. verify the enclave's attestation **live** against the expected image id under the chosen
   root (``dev`` on the local network) and wait for the app's port to accept connections.

The root is checked in step 2 against the one the provider says its enclaves chain to (its
control plane's ``/tee-root``), so a tenant whose root cannot verify them is stopped before
paying. ``--root provider`` takes the provider's dev TEE root on its word (INSECURE: the provider
holds that root's key) and stores it in the tenant's home as ``provider-0x<address>``, where it is
pinned: a provider that later serves another root is refused (:mod:`reef.node._deploy_root`).

From step 5 on the job is open and paying, so every failure after it says so and names the
command that stops it (or, with ``stop_on_failure``, stops it). Each command a hint names ends
with the flags the caller addressed the market with (``DeployRequest.again``), so that it acts on
the same market from the same account, not on the home's. While steps 6 and 7 wait, the
provider's ``/job`` answer is watched: an enclave that crashed is relaunched by the provider
(``restarts``), so a crash at start fails the deployment within one provider heartbeat instead
of after the whole timeout, with the app's exit and, for a debug enclave, its last console lines
when the provider reports them (``last_exit``).

Everything here is synchronous (web3.py and httpx clients); progress goes to a callback. Each
service answers through a client that reads it as a stranger's answer, within a deadline that
covers its head and a byte bound (:mod:`reef._fetch`): the image store (``--store`` names any)
through :func:`reef.market.upload_image`, the provider's control plane through
:class:`reef.market.ControlPlaneClient`, the enclave's attestation through
:class:`reef.attestation.AttestationClient`; this module makes no HTTP request of its own (the
app's port is probed with a bounded socket connect, :func:`wait_for_app`).

One module (about 750 lines): deploying is one ordered use case (image, rate card, money,
upload, job, wait, verify) whose steps share the request and the timings they report.
"""

from __future__ import annotations

import hmac
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from reef.attestation import AttestationClient, Expectations, TrustedRoot, VerifiedAttestation
from reef.chain import (
    Address,
    JobId,
    MarketClient,
    ProgressCallback,
    amount_per_hour,
    format_amount,
    job_index,
)
from reef.enclave import InitParams, attested_measurements, build_image
from reef.encoding import terminal_text
from reef.errors import (
    AttestationError,
    ConfigError,
    EnclaveError,
    ExpectationError,
    InputError,
    MarketError,
    ReefError,
    ServiceError,
)
from reef.home import ReefHome
from reef.market import (
    DEV_REGION,
    ControlPlaneClient,
    JobMetadata,
    job_user_data,
    settlement_amount,
    upload_image,
)
from reef.node._deploy_root import deploy_root, is_provider_root
from reef.node._jobs import format_time, stop_job, stop_margin_s, stops_at
from reef.node._session import Session

__all__ = [
    "Again",
    "DeployRequest",
    "DeployResult",
    "EnclaveCrash",
    "app_endpoint",
    "deploy",
    "enclave_crash",
    "prepare_image",
    "verify_enclave",
    "wait_for_app",
    "wait_for_enclave",
]

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


class Again(Protocol):
    """How a next step a hint names reaches the same market from the same account: the flags
    the caller was given, as the tail of a command line (the CLI's ``Flags.again``). Called
    with no names for a command that sends (``reef jobs stop``), with ``"rpc", "market"`` for
    one that only reads (``reef jobs show``)."""

    def __call__(self, *names: str) -> str: ...


def _home_market(*_names: str) -> str:
    """No flags: the commands a hint names act on the home's market (``reef up``'s)."""
    return ""


def _stop_command(label: str, again: Again) -> str:
    return f"`reef jobs stop {label}{again()}`"


def prepare_image(image: Path, home: ReefHome) -> Path:
    """The image file to upload: ``image`` itself, or if it is a directory a build of it (at
    :meth:`~reef.home.ReefHome.app_image`).

    Raises:
        InputError: the path does not exist.
        ImageError: the directory is not a valid app (missing or bad ``reef.toml``, ...).
    """
    if _check_image_path(image).is_dir():
        out = home.app_image(image)
        tmp = out.with_suffix(".tmp")
        built = build_image(image, tmp)
        tmp.replace(out)
        del built
        return out
    return image


def _check_image_path(image: Path) -> Path:
    """``image`` when it is an image file or an app directory.

    Raises:
        InputError: it is neither.
    """
    if image.is_dir() or image.is_file():
        return image
    raise InputError(f"no such image file or app directory: {image}")


@dataclass(frozen=True, kw_only=True)
class DeployRequest:
    """What ``reef deploy`` was asked for."""

    image: Path
    duration_s: int
    instance: str = "dev.small"
    region: str | None = None
    provider: Address | None = None
    init_params: Path | None = None
    debug: bool = False
    name: str | None = None
    vcpu: int | None = None
    memory: int | None = None
    store_url: str | None = None
    root: str = "dev"
    timeout_s: float = 120.0
    stop_on_failure: bool = False
    again: Again = _home_market
    """The flags every command a hint names must repeat (:class:`Again`)."""


@dataclass(frozen=True, kw_only=True)
class DeployResult:
    """A job with a verified, reachable enclave."""

    job_id: JobId
    endpoint: str
    endpoints: Mapping[str, Any]
    image_id: bytes
    image_url: str
    enclave_id: str
    provider: Address
    control_plane: str
    rate: int
    cost: int
    attestation: VerifiedAttestation
    stops_at: int | None = None
    """When the provider stops the enclave: its safety margin before the money runs out, so
    sooner than ``cost`` pays for (``None`` if unknown)."""
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def job(self) -> int:
        """The job's number, what users type (``reef jobs stop 17``); ``job_id`` is its full id."""
        return job_index(self.job_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "job_id": self.job_id,
            "endpoint": self.endpoint,
            "image_id": self.image_id.hex(),
            "image_url": self.image_url,
            "enclave_id": self.enclave_id,
            "provider": self.provider,
            "control_plane": self.control_plane,
            "rate": self.rate,
            "cost": self.cost,
            "endpoints": dict(self.endpoints),
            "root": self.attestation.root.name,
            "stops_at": self.stops_at,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _label(job_id: JobId) -> str:
    """A job as people see it and type it: its decimal number."""
    return str(job_index(job_id))


@dataclass(frozen=True, kw_only=True)
class EnclaveCrash:
    """What the provider's ``/job`` says of a job's enclave that died.

    ``restarts`` counts the provider's relaunches; ``exit_code``, ``reason`` and ``console`` (a
    debug enclave's last lines) come from its ``last_exit`` when it reports one.
    """

    restarts: int
    state: str
    detail: str
    exit_code: int | None = None
    reason: str = ""
    console: tuple[str, ...] = ()

    def describe(self) -> str:
        """What died and how, and the app's last lines, after "job N's enclave "."""
        how = self.reason or (
            f"the app exited with code {self.exit_code}" if self.exit_code is not None else ""
        )
        if how:
            times = "time" if self.restarts == 1 else "times"
            text = f"crashed: {how}"
            if self.restarts:
                text += f" (the provider relaunched it {self.restarts} {times})"
        else:
            text = f"crashed; its provider says: {self.detail or f'the enclave is {self.state}'}"
        if self.console:
            text += "\nits last console lines:\n" + "\n".join(f"  {line}" for line in self.console)
        return text


_CONSOLE_LINES = 20


def enclave_crash(status: Mapping[str, Any] | None) -> EnclaveCrash | None:
    """The crash a provider's ``/job`` answer reports for a job's enclave, or ``None``.

    A fresh job has no restarts; any relaunch, or an enclave the provider reports as ended, means
    the enclave died (the provider keeps relaunching it while the job pays).
    """
    if status is None:
        return None
    enclave = status.get("enclave") or {}
    if not isinstance(enclave, Mapping):  # the provider's answer, not to be trusted for shape
        enclave = {}
    state = str(enclave.get("state") or "")
    try:
        restarts = int(status.get("restarts") or 0)
    except (TypeError, ValueError):
        restarts = 0
    last_exit = status.get("last_exit") or {}
    if not isinstance(last_exit, Mapping):
        last_exit = {}
    if restarts == 0 and state not in ("crashed", "stopped") and not last_exit:
        return None
    code = last_exit.get("exit_code")
    console = last_exit.get("console") or ()
    # The provider's and the app's words, printed on the user's terminal: written out (terminal_text).
    return EnclaveCrash(
        restarts=restarts,
        state=terminal_text(str(last_exit.get("state") or state or "gone")),
        detail=terminal_text(str(status.get("last_restart") or "")),
        exit_code=code if isinstance(code, int) else None,
        reason=terminal_text(str(last_exit.get("reason") or "")),
        console=tuple(terminal_text(str(line)) for line in console[-_CONSOLE_LINES:])
        if isinstance(console, (list, tuple))
        else (),
    )


class _CrashWatch:
    """Asks the provider's ``/job`` (at most every ``interval`` s) whether the enclave died.

    Raises:
        EnclaveError: from :meth:`check`, once the enclave crashed.
    """

    def __init__(self, cp: ControlPlaneClient, job_id: JobId, *, interval: float = 0.5) -> None:
        self.cp = cp
        self.job_id = job_id
        self.interval = interval
        self._next = 0.0

    def raise_if_crashed(self, status: Mapping[str, Any] | None) -> None:
        crash = enclave_crash(status)
        if crash is not None:
            raise EnclaveError(f"job {_label(self.job_id)}'s enclave {crash.describe()}")

    def check(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        try:
            status = self.cp.job(self.job_id)
        except ReefError:
            return  # the provider did not answer this time: the wait goes on, and says why
        self.raise_if_crashed(status)


def wait_for_enclave(
    cp: ControlPlaneClient,
    job_id: JobId,
    *,
    timeout_s: float,
    progress: Progress = _quiet,
    again: Again = _home_market,
) -> dict[str, Any]:
    """Poll the provider until the job's enclave runs; return its ``/ip`` answer. The commands
    its errors' hints name end with ``again``'s flags.

    Raises:
        MarketError: the provider refused or ended the job (its reason is the message).
        EnclaveError: the enclave crashed (the provider relaunched it).
        ServiceError: nothing ran within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    last = ""
    label = _label(job_id)
    watch = _CrashWatch(cp, job_id)
    while True:
        status = cp.job(job_id)
        if status is not None and status.get("phase") == "done":
            raise MarketError(
                f"the provider will not run job {label}: {terminal_text(str(status.get('reason')))}",
                hint="the deposit stays in the job until it is stopped",
            )
        watch.raise_if_crashed(status)
        answer = cp.ip(job_id)
        if answer is not None:
            return answer
        state = "not seen by the provider yet"
        if status is not None:
            enclave = status.get("enclave") or {}
            if not isinstance(enclave, Mapping):
                enclave = {}
            state = f"enclave {terminal_text(str(enclave.get('state', 'being prepared')))}"
            if status.get("last_error"):
                state += f" (retrying: {terminal_text(str(status['last_error']))})"
        if state != last:
            progress(f"waiting for the enclave: {state}")
            last = state
        if time.monotonic() > deadline:
            raise ServiceError(
                f"job {label}'s enclave did not start within {timeout_s:.0f} s ({state})",
                hint=f"check `reef jobs show {label}{again('rpc', 'market')}`",
            )
        time.sleep(0.2)


def verify_enclave(
    attestation_url: str,
    *,
    image_id: bytes,
    root: TrustedRoot,
    timeout_s: float = 10.0,
) -> VerifiedAttestation:
    """Fetch an enclave's attestation and verify it live, expecting ``image_id``.

    Raises:
        ServiceError: the attestation server cannot be reached.
        AttestationError: the document does not verify, or attests another image.
    """
    client = AttestationClient(root=root, timeout=5.0)
    return client.verify(attestation_url, expect=Expectations(image_id=image_id), wait_s=timeout_s)


def app_endpoint(endpoints: Mapping[str, Any], label: str) -> str:
    """The URL of the app's lowest container port in a provider's ``/ip`` ``endpoints``
    (``ports``: container port -> the URL that reaches it), or ``""`` when it names none.

    Raises:
        ServiceError: ``ports`` is not container ports mapped to http(s) URLs with a host and
            a valid port (the provider of job ``label`` answered something no enclave has).
    """
    ports = endpoints.get("ports") or {}
    if not isinstance(ports, Mapping) or not all(
        isinstance(port, str) and port.isdigit() and isinstance(url, str)
        for port, url in ports.items()
    ):
        raise _bad_ports(label, ports)
    if not ports:
        return ""
    url: str = ports[min(ports, key=int)]
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        valid = False
    if not valid:
        raise _bad_ports(label, ports)
    return url


def _bad_ports(label: str, ports: object) -> ServiceError:
    return ServiceError(
        f"the provider answered app ports that are no container ports and URLs for job "
        f"{label}: {repr(ports)[:200]}",
        hint="ask the provider",
    )


def _accepts(host: str, port: int) -> bool:
    """Whether an app listens behind ``host:port``.

    A forwarded port (the enclave's network namespace) accepts connections even before the app
    listens and then drops them, so a connect alone proves nothing: the connection must also
    stay open (or the server must speak first).
    """
    try:
        with socket.create_connection((host, port), timeout=1.0) as conn:
            conn.settimeout(0.3)
            try:
                return conn.recv(1) != b""
            except TimeoutError:
                return True
    except OSError:
        return False


def wait_for_app(url: str, timeout_s: float, *, check: Callable[[], None] | None = None) -> None:
    """Wait until the app behind ``url`` accepts connections.

    ``check`` is called while waiting and may raise to stop the wait (``deploy`` passes one
    that asks the provider whether the enclave crashed).

    Raises:
        ServiceError: it does not within ``timeout_s``.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    deadline = time.monotonic() + timeout_s
    while not _accepts(host, port):
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise ServiceError(
                f"the enclave runs and attests, but its app does not accept connections at {url}",
                hint="check the app's command and port in reef.toml; deploy with --debug "
                "to read its logs with `reef logs JOB`",
            )
        time.sleep(0.1)


def deploy(
    session: Session,
    request: DeployRequest,
    *,
    progress: Progress = _quiet,
    tx_progress: ProgressCallback | None = None,
) -> DeployResult:
    """Run the whole deployment (see the module docstring). Returns once verified.

    Raises:
        InputError / ImageError: bad image, init params or duration.
        MarketError: unknown provider, instance not offered, insufficient balance, or the
            provider refused the job.
        ServiceError / RPCError: a service or the chain cannot be reached.
        AttestationError: the enclave does not attest the expected image.
        EnclaveError: the enclave crashed while starting (the provider relaunched it).

    After the job is opened, every error's hint says that it is still open and paying and how
    to stop it, or (``request.stop_on_failure``) that it was stopped.
    """
    timings: dict[str, float] = {}
    started = time.monotonic()
    market = session.market(tx_progress)

    # 1. what is checked without the image: the root, the provider and its offer, the money and
    # the store (building a directory takes seconds, and a mistake here cost a build each time)
    _check_image_path(request.image)
    # A root named here is read before the network is asked (a mistyped file is said first);
    # the provider's root (--root provider) is known only once its control plane answers.
    named = (
        None if is_provider_root(request.root) else TrustedRoot.resolve(request.root, session.home)
    )
    provider = request.provider or session.default_provider()
    if provider is None:
        raise ConfigError(
            "which provider? none is configured: no `reef up` network is recorded in "
            f"{session.home.root} (its network.json names the local provider)",
            hint="pass --provider ADDR, or start `reef up` with this $REEF_HOME",
        )
    cp_url = market.provider(provider)
    if cp_url is None:
        raise MarketError(
            f"unknown provider {provider}: it is not registered in the market at "
            f"{session.market_address}",
            hint="`reef provider register` registers one; check --provider",
        )
    cp = ControlPlaneClient(cp_url)
    offer = cp.spec()
    root = deploy_root(named or request.root, session, cp, provider, progress=progress)
    region = request.region or (
        DEV_REGION if DEV_REGION in offer.allowed_regions else offer.allowed_regions[0]
    )
    card = offer.lookup(region, request.instance)
    vcpu = request.vcpu or card.cpu
    memory = request.memory or card.memory
    if vcpu > card.cpu or memory > card.memory:
        raise InputError(
            f"{request.instance} has {card.cpu} vCPU and {card.memory} MiB; asked for {vcpu} "
            f"vCPU and {memory} MiB",
            hint="choose a bigger --instance",
        )
    margin = session.safety_margin_s
    if margin is not None and request.duration_s <= margin:
        raise InputError(
            f"a {request.duration_s} s job would never run: the provider stops enclaves "
            f"{margin} s before their deposit runs out",
            hint=f"deploy for longer than {margin} s",
        )

    # 2. the money
    rate = card.min_rate
    cost = settlement_amount(rate, request.duration_s)
    balance = market.token().balance(session.address)
    if balance < cost:
        raise MarketError(
            f"insufficient balance: {session.address} has {format_amount(balance)} rUSD, the "
            f"job needs {format_amount(cost)} rUSD ({request.duration_s} s of {request.instance})",
            hint="deploy for a shorter --duration, or fund the account",
        )
    store = session.image_store(request.store_url)

    # 3. the image and what it must attest
    image_path = prepare_image(request.image, session.home)
    if request.image.is_dir():
        progress(f"built {request.image} into {image_path}")
    params = InitParams.read(request.init_params) if request.init_params is not None else None
    image_id = attested_measurements(image_path, params, debug=request.debug).image_id
    progress(f"the enclave must attest image id {image_id.hex()[:16]}…")

    # 4. upload
    sha256, image_url = upload_image(store, image_path, signer=session.account)
    # The store names files by their bytes' hash, which is not the image id: say which is which.
    progress(f"uploaded the image file (sha256 {sha256[:16]}…) to {store}")

    # 5. open the job
    metadata = JobMetadata(
        instance=request.instance,
        region=region,
        memory=memory,
        vcpu=vcpu,
        url=image_url,
        name=request.name or request.image.resolve().name,
        family="tuna",
        debug=request.debug,
        init_params=params.to_base64() if params is not None else "",
    )
    opening = time.monotonic()
    timings["prepare"] = opening - started
    job_id = market.open_job(metadata.to_json(), provider, rate, cost)
    opened = time.monotonic()
    timings["open"] = opened - opening
    progress(
        f"opened job {_label(job_id)} ({job_id}): {format_amount(cost)} rUSD for "
        f"{request.duration_s} s"
    )

    # 6-7. From here the job is open and paying: a failure says so, or stops it on request.
    try:
        bound = job_user_data(int(market.w3.eth.chain_id), market.address, job_id)
        launched = _launch_and_verify(
            cp,
            job_id,
            image_id=image_id,
            bound=bound,
            root=root,
            request=request,
            progress=progress,
        )
    except ReefError as exc:
        _after_failure(
            exc, market, job_id, rate=rate, stop=request.stop_on_failure, again=request.again
        )
        raise
    timings["launch"] = launched.running - opened
    timings["verify"] = time.monotonic() - launched.running
    timings["open_to_verified"] = time.monotonic() - opening
    progress(f"verified: the enclave attests image {image_id.hex()} (root {root.name})")
    job = market.find_job(job_id)
    return DeployResult(
        job_id=job_id,
        endpoint=launched.endpoint,
        endpoints=launched.endpoints,
        image_id=image_id,
        image_url=image_url,
        enclave_id=str(launched.answer.get("enclave_id", "")),
        provider=provider,
        control_plane=cp_url,
        rate=rate,
        cost=cost,
        attestation=launched.attestation,
        stops_at=None if job is None else stops_at(job, stop_margin_s(session)),
        timings=timings,
    )


@dataclass(frozen=True, kw_only=True)
class _Launched:
    answer: Mapping[str, Any]
    endpoints: Mapping[str, Any]
    endpoint: str
    attestation: VerifiedAttestation
    running: float
    """``time.monotonic()`` when the provider first reported the enclave running."""


def _launch_and_verify(
    cp: ControlPlaneClient,
    job_id: JobId,
    *,
    image_id: bytes,
    bound: bytes,
    root: TrustedRoot,
    request: DeployRequest,
    progress: Progress,
) -> _Launched:
    """Steps 6 and 7: wait for the enclave, verify it (and that it attests this job: ``bound``,
    its :func:`~reef.market.job_user_data`), wait for its app.

    Raises:
        EnclaveError: the enclave crashed while we waited (seen in the provider's ``/job``).
        MarketError / ServiceError / AttestationError: as :func:`deploy`.
    """
    # 6. wait for the enclave
    answer = wait_for_enclave(
        cp, job_id, timeout_s=request.timeout_s, progress=progress, again=request.again
    )
    running = time.monotonic()
    endpoints: Mapping[str, Any] = answer.get("endpoints") or {}
    attestation_url = str(endpoints.get("attestation", ""))
    if not attestation_url:
        raise ServiceError(f"the provider did not say where job {_label(job_id)}'s enclave attests")
    watch = _CrashWatch(cp, job_id)

    # 7. verify it, then wait for the app
    try:
        verified = verify_enclave(attestation_url, image_id=image_id, root=root)
        _check_bound(verified.user_data, bound, job_id, progress)
    except AttestationError as exc:
        raise AttestationError(
            f"job {_label(job_id)}'s enclave failed verification: {exc.message}",
            reason=exc.reason,
            hint="do not trust it",
        ) from exc
    except ServiceError:
        # An enclave that died at once takes its attestation server with it: say so if the
        # provider saw the crash.
        watch.check()
        raise
    endpoint = app_endpoint(endpoints, _label(job_id))
    if endpoint:
        wait_for_app(endpoint, request.timeout_s, check=watch.check)
    return _Launched(
        answer=answer, endpoints=endpoints, endpoint=endpoint, attestation=verified, running=running
    )


def _check_bound(attested: bytes, bound: bytes, job_id: JobId, progress: Progress) -> None:
    """Refuse an enclave that attests another job than ``job_id``; warn about one that attests
    none (an Oyster provider's: nothing then ties its attestation to this job).

    Raises:
        ExpectationError: the enclave attests another job (or other user data).
    """
    if not attested:
        progress(
            f"warning: the enclave does not say which job it runs (it attests no user data, as "
            f"Oyster's do): nothing but the provider's word ties it to job {_label(job_id)}"
        )
        return
    if not hmac.compare_digest(attested, bound):
        said = terminal_text(attested.decode("ascii", "replace"))[:200]
        raise ExpectationError(
            f"it attests {said!r}, not this job ({bound.decode()}): the provider named "
            "another enclave's attestation endpoint",
            reason="user_data",
        )


def _after_failure(
    exc: ReefError,
    market: MarketClient,
    job_id: JobId,
    *,
    rate: int,
    stop: bool,
    again: Again = _home_market,
) -> None:
    """Tell the user about the open job after a failed wait or verification: it still pays,
    and this is how to stop it; or, with ``stop``, stop it (:func:`reef.node.stop_job`: rate to
    0) and say when the rest can be taken back. The advice becomes ``exc``'s hint; the commands
    it names end with ``again``'s flags."""
    label = _label(job_id)
    if not stop:
        exc.hint = (
            f"{exc.hint + '; ' if exc.hint else ''}job {label} is still open and paying "
            f"{format_amount(amount_per_hour(rate))} rUSD/h"
            f"{' (its provider keeps relaunching it)' if isinstance(exc, EnclaveError) else ''}: "
            f"stop it with {_stop_command(label, again)} (or deploy with --stop-on-failure)"
        )
        return
    try:
        unlock = stop_job(market, market.job(job_id))
    except ReefError as stop_exc:
        exc.hint = (
            f"job {label} is still open and paying: --stop-on-failure could not stop it "
            f"({stop_exc.message}); run {_stop_command(label, again)}"
        )
        return
    when = format_time(unlock) if unlock else "now"  # as `reef jobs` shows times
    exc.hint = (
        f"stopped job {label} (--stop-on-failure): its provider stops the enclave when it reads "
        "the stop; "
        f"`reef jobs close {label}{again()}` refunds the rest from {when}"
    )
