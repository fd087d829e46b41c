"""The root a deployment verifies its enclave under, checked against the provider's before
anything is paid (``reef deploy --root``, step 2 of :mod:`reef.node._deploy`).

The provider's control plane serves the root its enclaves chain to (``/tee-root``). Any root the
tenant names is compared with it, so a root that cannot verify the provider's enclaves is refused
before the job is paid. ``--root provider`` takes the provider's dev TEE root on its word
(INSECURE: the provider holds that root's key), stores it in the tenant's home as
``provider-0x<address>`` the first time, and pins it after: a provider that later serves another
root is refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from reef.attestation import TrustedRoot
from reef.chain import Address
from reef.errors import CertificateChainError, MarketError, ServiceError
from reef.market import ControlPlaneClient
from reef.node._session import Session

__all__ = ["deploy_root", "is_provider_root"]

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    """Say nothing (no progress callback)."""


def is_provider_root(spec: str) -> bool:
    return spec.strip().lower() == TrustedRoot.PROVIDER


def deploy_root(
    spec: str | TrustedRoot,
    session: Session,
    cp: ControlPlaneClient,
    provider: Address,
    *,
    progress: Progress = _quiet,
) -> TrustedRoot:
    """The root a deployment verifies its enclave under, checked before anything is paid
    against the root ``provider``'s control plane says its enclaves chain to (``/tee-root``).

    ``spec`` is a ``--root`` value (or the root it already named). ``provider`` (what ``--root
    provider`` says) takes the provider's dev TEE root on its word: stored in the session's home
    as ``provider-0x<address>`` the first time, with a warning (INSECURE: the provider holds the
    root's key), and from then on pinned: a provider serving another root is refused. Any other
    root is compared with the served one when there is one: a root that cannot verify the
    provider's enclaves is refused here rather than after the job is paid.

    Raises:
        MarketError: ``--root provider`` and the provider serves no root.
        ServiceError: ``--root provider`` and its control plane cannot say which root.
        CertificateChainError: the provider serves another root than ``spec`` names (or than
            the one stored for it).
        InputError / ConfigError: as :meth:`reef.attestation.TrustedRoot.resolve`.
    """
    if isinstance(spec, str) and is_provider_root(spec):
        return _provider_root(session, cp, provider, progress)
    root = spec if isinstance(spec, TrustedRoot) else TrustedRoot.resolve(spec, session.home)
    try:
        served = cp.tee_root(provider)
    except ServiceError:
        return root  # advisory only: the enclave's own attestation decides after the launch
    if served is None or served.public_key == root.public_key:
        return root
    ours = f"root {root.name!r} (key id {root.key_id})"
    raise CertificateChainError(
        f"provider {provider}'s enclaves chain to the root its control plane serves (key id "
        f"{served.key_id}), not to {ours}: they would fail verification once the job is paid",
        reason="root",
        hint="nothing was paid. A dev TEE root is its provider's own: --root provider takes it "
        "on the provider's word (INSECURE: it proves nothing against the provider) and stores "
        "it for later commands; a real TEE is verified with --root aws",
    )


def _provider_root(
    session: Session, cp: ControlPlaneClient, provider: Address, progress: Progress
) -> TrustedRoot:
    """``--root provider``: the root ``provider`` serves, stored on first use, pinned after."""
    served = cp.tee_root(provider)
    if served is None:
        raise MarketError(
            f"provider {provider} serves no TEE root ({cp.url}/tee-root), so --root provider "
            "has nothing to take on its word",
            hint="its enclaves run on a real TEE (verify them with --root aws), or its control "
            "plane does not serve its root (Oyster's, or an older reef's): ask its operator for "
            "the root certificate (--root FILE)",
        )
    if served.provider is None:  # AWS's pinned root: a provider on real hardware
        progress(f"provider {provider} says its enclaves chain to AWS's Nitro root (pinned)")
        return served
    home = session.home
    path = TrustedRoot.stored_at(home, served.name)
    stored = TrustedRoot.stored(home, served.name)
    if stored is None:
        served.store(
            home,
            origin={
                "control_plane": cp.url,
                "chain_id": int(session.w3.eth.chain_id),
                "market": session.market_address,
                "stored_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
        )
        progress(
            f"warning: taking provider {provider}'s word for its dev TEE root (key id "
            f"{served.key_id}, sha256 {served.sha256}): INSECURE. The provider holds that "
            "root's key and can sign any attestation under it, so verifying under it proves "
            "nothing against the provider; it checks which image runs on its simulated TEE. "
            "Real TEEs are verified with --root aws"
        )
        progress(
            f"stored it as root {served.name} ({path}): later commands take --root {served.name}"
        )
        return served
    if stored.certificate != served.certificate:
        raise CertificateChainError(
            f"provider {provider} now serves another dev TEE root (key id {served.key_id}) than "
            f"the one stored for it (key id {stored.key_id}, {path})",
            reason="root",
            hint=f"nothing was paid. If you know why it changed (the provider's home was "
            f"recreated, or this is another network), remove {path} and deploy again to take "
            "the new root on its word; otherwise do not deploy there",
        )
    progress(
        f"root {stored.name}: provider {provider}'s dev TEE root as stored (key id "
        f"{stored.key_id}; INSECURE, its own word)"
    )
    return stored
