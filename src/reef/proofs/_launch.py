"""Starting the proof market's three services as a process does (``reef proofs engine run``,
``reef prover run``, ``reef proofs ivs run``, which ``reef up``'s enclaves run): from the
settings a network file gives (:class:`~reef.proofs.ServiceSettings`) and what the operator
named. Each waits or enrolls as its settings say, then returns the service, not yet running
(a prover's: what :class:`~reef.proofs.ProverService` takes); the caller runs it (``run``,
``step``, or serving the IVS's app).

The matching engine's order book (SQLAlchemy) and the IVS's server are imported only by the
function that starts them, so starting a prover loads neither.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from eth_account import Account
from eth_account.signers.local import LocalAccount

from reef.errors import InputError
from reef.proofs._client import ProofMarketClient
from reef.proofs._market import ArtifactStore
from reef.proofs._prover import InputVerifier, InvalidInputAttester
from reef.proofs._runtime import SnarkjsRuntime
from reef.proofs._services import await_engine_role, derived_secp256k1_key, enroll_prover
from reef.proofs._settings import ServiceSettings
from reef.proofs._tee import TeeWorker, command_worker

if TYPE_CHECKING:
    from reef._api import LightApi
    from reef.proofs._engine import MatchingEngine

__all__ = [
    "enroll_from_settings",
    "ivs_signer",
    "start_ivs",
    "start_matching_engine",
    "tee_workers",
]


def start_matching_engine(
    client: ProofMarketClient,
    settings: ServiceSettings,
    *,
    db_url: str,
    start_block: int,
    batch_size: int = 64,
) -> MatchingEngine:
    """The matching engine of ``client``'s market, its order book in ``db_url``, indexing from
    ``start_block``, once the sender is the market's engine and holds gas (waiting
    ``settings.wait_s``: started by ``reef up``, the enclave exists before the admin makes its
    attested key the engine and funds it).

    Raises:
        ProofError: the sender is not the matching engine after the wait.
    """
    from reef.proofs._engine import MatchingEngine

    await_engine_role(client, wait_s=float(settings.wait_s or 0))
    return MatchingEngine.on_database(
        client,
        db_url,
        start_block=start_block,
        batch_size=batch_size,
        ignore_provers=settings.ignore_provers or (),
    )


def tee_workers(signer: LocalAccount, specs: Sequence[str]) -> dict[int, TeeWorker]:
    """The TEE workers ``specs`` name, each ``MARKET=COMMAND`` (the command split as a shell
    would), signing with ``signer``; by market id.

    Raises:
        InputError: a spec is not ``MARKET=COMMAND``.
    """
    workers = {}
    for spec in specs:
        market_text, sep, command = spec.partition("=")
        if not sep or not market_text.strip().isdigit() or not command.strip():
            raise InputError(f"--tee {spec!r}: expected MARKET=COMMAND, e.g. 3='./double'")
        workers[int(market_text)] = command_worker(signer, shlex.split(command))
    return workers


def enroll_from_settings(
    client: ProofMarketClient, settings: ServiceSettings, *, private_key: bytes | None = None
) -> dict[int, InvalidInputAttester]:
    """What a prover does before it proves, as ``settings`` say: register and join when
    ``settings.prover`` says how (:func:`~reef.proofs.enroll_prover`, ``private_key`` being the
    sender's); returns the IVS of each market ``settings.ivs`` names, reached over HTTP (the
    ``verifiers`` of :class:`~reef.proofs.ProverService`).

    Raises:
        ProofError: the account was not funded in time to enroll.
    """
    from reef.proofs._ivs import RemoteInputVerifier

    if settings.prover is not None:
        enroll_prover(client, settings.prover, private_key=private_key)
    return {m: RemoteInputVerifier(u) for m, u in (settings.ivs or {}).items()}


def ivs_signer(
    *,
    kms_path: str | None,
    derive_url: str | None,
    key_file: Callable[[], LocalAccount] | None,
) -> LocalAccount:
    """The IVS's signing key: the secp256k1 key at ``kms_path`` from the enclave's KMS derive
    server at ``derive_url`` when both are given (every enclave of the image signs as one
    address, which survives restarts), else the key ``key_file`` loads.

    Raises:
        InputError: neither gives a key.
        ServiceError: the derive server gave no key.
    """
    if kms_path is not None and derive_url:
        account: LocalAccount = Account.from_key(derived_secp256k1_key(derive_url, kms_path))
        return account
    if key_file is not None:
        return key_file()
    raise InputError(
        "the IVS has no signing key: no --key-file, and no KMS derive server "
        "($REEF_KMS_DERIVE_URL is not set)"
        if kms_path is not None
        else "the IVS has no signing key: give --key-file FILE or --kms-path PATH",
        hint="pass --key-file FILE, or run the IVS in an enclave wired to a KMS",
    )


def start_ivs(
    account: LocalAccount,
    client: ProofMarketClient,
    store: ArtifactStore,
    runtime: SnarkjsRuntime,
    *,
    from_block: int = 0,
) -> tuple[InputVerifier, LightApi]:
    """The input verification service signing as ``account`` for ``client``'s market (reading
    the markets created from ``from_block``): the verifier and its HTTP app, to serve."""
    from reef.proofs._ivs import ivs_app

    verifier = InputVerifier(account, store, runtime)
    return verifier, ivs_app(verifier, client, from_block=from_block)
