"""What the dashboard's management buttons do: market transactions signed by its account.

Each action is a thin call into the library (:func:`reef.node.deposit_to_job`,
:func:`reef.node.withdraw_from_job`, :func:`reef.node.stop_job`, :func:`reef.node.update_job`,
:func:`reef.node.deploy`), as ``reef jobs`` and ``reef deploy`` make it; the app checks the
token before calling any of them. They are synchronous (web3.py) and run in a worker thread. Every refusal is
a :class:`~reef.errors.ReefError` whose message the page shows as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reef.errors import MarketError

if TYPE_CHECKING:
    from reef.chain import JobId
    from reef.node import Session

__all__ = ["deploy_job", "deposit", "stop_job", "update_job", "withdraw"]


def _owned(session: Session, job: JobId) -> Any:
    """The market client and the open job ``job``, refused unless the dashboard's account owns
    it (:func:`reef.node.owned_job`)."""
    from reef.node import owned_job

    client = session.market()
    return client, owned_job(session, client, job)


def deposit(session: Session, job: JobId, amount: str) -> dict[str, Any]:
    """Add ``amount`` rUSD (decimal text) to ``job`` from the dashboard's account, and say when
    its provider now stops the enclave, as :func:`withdraw` does (:class:`reef.node.Deposit`)."""
    from reef.chain import format_amount, parse_amount
    from reef.node import deposit_to_job

    value = parse_amount(amount)
    done = deposit_to_job(session, session.market(), job, value)
    return {
        "job_id": job,
        "deposited": format_amount(value),
        "tx_hash": done.tx_hash,
        "stops_at": done.stops_at,
        "stopping_now": done.stopping_now,
        "warning": done.warning or None,
    }


def withdraw(session: Session, job: JobId, amount: str | None) -> dict[str, Any]:
    """Take ``amount`` rUSD back from ``job`` (all the notice reserve allows when ``None``), and
    say when its provider now stops the enclave (:class:`reef.node.Withdrawal`): ``stops_at``
    (unix seconds; ``None`` at rate 0), ``stopping_now`` and, when it is now, ``warning``."""
    from reef.chain import format_amount, parse_amount
    from reef.node import withdraw_from_job

    client, found = _owned(session, job)
    wanted = parse_amount(amount) if amount else None
    done = withdraw_from_job(session, client, found, wanted)
    return {
        "job_id": job,
        "withdrawn": format_amount(done.amount),
        "tx_hash": done.tx.tx_hash,
        "stops_at": done.stops_at,
        "stopping_now": done.stopping_now,
        "warning": done.warning or None,
    }


def stop_job(session: Session, job: JobId) -> dict[str, Any]:
    """Revise ``job``'s rate to 0: its provider stops the enclave at once
    (:func:`reef.node.stop_job`, as ``reef jobs stop``)."""
    from reef.node import stop_job as node_stop_job

    client, found = _owned(session, job)
    unlock = node_stop_job(client, found)
    return {"job_id": found.id, "state": "stopping", "close_after": unlock or None}


def update_job(
    session: Session, job: JobId, *, debug: bool | None = None, url: str | None = None
) -> dict[str, Any]:
    """Change ``job``'s debug flag or image URL; its provider replaces the enclave
    (:func:`reef.node.update_job`, as ``reef jobs update``)."""
    from reef.node import JobUpdate
    from reef.node import update_job as node_update_job

    if debug is None and not url:
        raise MarketError("nothing to update", hint="give a debug flag or an image URL")
    client, found = _owned(session, job)
    result = node_update_job(session, client, found.id, JobUpdate(debug=debug, url=url or None))
    return {"job_id": found.id, "updated": list(result.updated), "tx_hash": result.tx_hash}


def deploy_job(
    session: Session, image: str, duration: str, *, debug: bool = False
) -> dict[str, Any]:
    """``reef deploy IMAGE --duration D [--debug]`` from the dashboard: build, upload, open,
    wait for the enclave and verify it (:func:`reef.node.deploy`)."""
    from reef.node import DeployRequest, deploy, parse_duration

    request = DeployRequest(
        image=Path(image).expanduser(), duration_s=parse_duration(duration), debug=debug
    )
    return deploy(session, request).to_json()
