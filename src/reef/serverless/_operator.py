"""The operator's side of an executor: configure the enclave, have its attestation verified,
register it on chain with a stake, and fund its gas.

Registration is Oyster's bootstrap (reference §2.3) over reef's pieces: the enclave's
attestation document (its secp256k1 attestation endpoint, whose ``public_key`` is the enclave
key) goes to the attestation verifier service, whose signed statement the Jobs contract checks
with one ``ecrecover``; the enclave key signs ``Register(owner, jobCapacity, env,
signTimestamp)``; the owner sends both with the stake. Nothing here is trusted by the contract:
a host that lies about any of it gets a revert.

The enclave's control port and the verifier are reached through hosts the operator does not
control, so every answer is read as a stranger's (:func:`reef._fetch.read_bounded`): at most
:data:`_MAX_ANSWER` bytes, uncompressed, within twice the per-operation timeout in all (a server
trickling its head a byte at a time is given up on), and parsed as JSON nested no deeper than
:data:`reef.encoding.MAX_JSON_DEPTH`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from web3 import Web3

from reef._fetch import BoundedAnswer, FetchError, read_bounded, request_to, tls_context
from reef.attestation import AttestationClient, VerifierStatement
from reef.chain import format_amount, translate_errors
from reef.encoding import parse_hex, terminal_text
from reef.errors import InputError, ServiceError
from reef.serverless._contracts import ExecutorRecord, ServerlessJobsClient

__all__ = ["fund_gas", "register_enclave_executor"]

_TIMEOUT_S = 30.0
"""httpx's per-operation timeout; an answer may take twice that in all, head and body."""
_MAX_ANSWER = 64 << 10
"""The longest answer read from the control port or the verifier (each is a small JSON object)."""


def fund_gas(w3: Web3, payer: LocalAccount, to: str, wei: int) -> str:
    """Send ``wei`` of the chain's native coin from ``payer`` to ``to`` (an executor's gas)."""
    with translate_errors("funding the executor's gas"):
        tx: Any = {
            "to": Web3.to_checksum_address(to),
            "value": wei,
            "gas": 21_000,
            "gasPrice": w3.eth.gas_price,
            "nonce": w3.eth.get_transaction_count(payer.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
        signed = payer.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.05)
    return Web3.to_hex(tx_hash)


async def _answer(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json: object = None,
    content: bytes | None = None,
    who: str = "the executor's control port",
    failed: str | None = None,
) -> BoundedAnswer:
    """The answer to ``method url``, read within the bounds (module docstring).

    Raises:
        ServiceError: ``"{method} {url} failed: ..."`` (or ``failed`` failed) when it cannot
            be read within them.
    """
    failed = failed or f"{method} {url}"
    try:
        request = request_to(method, url, what=who, json=json, content=content)
        return await read_bounded(
            client, request, max_bytes=_MAX_ANSWER, deadline_s=2 * _TIMEOUT_S, what=who
        )
    except FetchError as exc:
        raise ServiceError(f"{failed} failed: {exc.message}") from exc


def _text(body: bytes) -> str:
    return terminal_text(body[:300].decode("utf-8", "replace"))


async def _json(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Any:
    """The JSON object the control port answers ``method url`` with (200 only)."""
    answer = await _answer(client, method, url, **kwargs)
    if answer.status != 200:
        raise ServiceError(f"{method} {url} answered {answer.status}: {_text(answer.body)}")
    parsed = answer.json(what=f"the answer to {method} {url}")
    if not isinstance(parsed, dict):
        raise ServiceError(f"{method} {url} answered no JSON object: {_text(answer.body)}")
    return parsed


def _check_configuration(
    details: dict[str, Any], control_url: str, jobs_contract: str, owner: str
) -> None:
    """Refuse an executor that serves another Jobs contract or owner (it is configured once:
    its ``POST /config`` would answer 409), saying which, and what to do.

    Raises:
        InputError: it is configured for another deployment or owner.
    """
    if not details.get("configured"):
        return
    theirs = (str(details.get("jobs_contract") or ""), str(details.get("owner") or ""))
    if theirs[0].lower() == jobs_contract.lower() and theirs[1].lower() == owner.lower():
        return  # a retry of the same registration: configuring it again is harmless
    raise InputError(
        f"the executor at {control_url} already serves owner {terminal_text(theirs[1])} on Jobs"
        f" contract {terminal_text(theirs[0])}, not owner {owner} on {jobs_contract}",
        hint="an executor is configured once: register it with that owner's key (--key FILE),"
        " or start a new executor enclave for this owner",
    )


def _registered_already(record: ExecutorRecord, owner: str) -> InputError:
    """The error for registering an executor the Jobs contract already has."""
    stake = f"{format_amount(record.stake)} rUSD"
    if record.owner.lower() == owner.lower():
        return InputError(
            f"executor {record.enclave} is already registered, owned by you, staking {stake}",
            hint="nothing to do: `reef fn executors` lists it; to register it again, run"
            f" `reef executor drain {record.enclave}`, then `reef executor deregister"
            f" {record.enclave}` (it returns the stake)",
        )
    return InputError(
        f"executor {record.enclave} is already registered, owned by {record.owner}, staking"
        f" {stake}",
        hint="only its owner may drain and deregister it; register an executor enclave of your own",
    )


def _check_registrable(jobs: ServerlessJobsClient, owner: str, image_id: bytes, stake: int) -> None:
    """Refuse a registration the Jobs contract would revert, saying why and what to do.

    Raises:
        InputError: the executor's image is not whitelisted.
        MarketError: ``owner`` holds less than ``stake``.
    """
    if not jobs.is_whitelisted(image_id):
        raise InputError(
            f"the executor's image 0x{image_id.hex()} is not whitelisted on the Jobs contract "
            f"{jobs.address}",
            hint=f"its admin ({jobs.admin()}) whitelists it: `reef executor whitelist "
            f"0x{image_id.hex()} --key ADMIN_KEY`; reef up whitelists the image its own executors "
            "attest, which covers the reef runtime too: an executor built or started by another "
            "reef version attests another id",
        )
    jobs.require_tokens(
        owner,
        stake,
        taken="the stake is",
        hint="send it rUSD, or register with a funded key (--key FILE; `reef wallet` shows "
        "a balance), or stake less (--stake, at least the contract's minimum)",
    )


async def register_enclave_executor(
    *,
    jobs: ServerlessJobsClient,
    owner: LocalAccount,
    control_url: str,
    attestation_url: str,
    verifier_url: str,
    rpc_url: str,
    code_contract: str,
    stake: int,
    gas_wei: int = 10**18,
) -> ExecutorRecord:
    """Configure an executor enclave, register it owned by ``owner``, fund its gas.

    Args:
        jobs: a Jobs client sending from ``owner`` (who pays the stake; approved here).
        control_url: the enclave's control port (``http://host:port``).
        attestation_url: the enclave's secp256k1 attestation endpoint (``host:port`` or a URL;
            without a path, ``/attestation/raw``), fetched as
            :meth:`reef.attestation.AttestationClient.afetch` fetches every document.
        verifier_url: the attestation verifier service the Jobs contract trusts.
        rpc_url, code_contract: what the executor watches and fetches code from.
        stake: token base units staked.
        gas_wei: native coin sent to the enclave's address to pay for its transactions.

    Raises:
        ServiceError: when the enclave or the verifier fails.
        InputError: the executor serves another deployment or owner already, or is registered
            already (found before its attestation is fetched and before any approval or
            transaction; not a ServiceError, which a caller waiting for the enclave to come up
            retries); the stake is below the minimum, or the image is not whitelisted (before
            any transaction).
        MarketError: the owner cannot pay the stake (before any transaction).
        ContractRevertError: when the contract refuses the registration (with its reason).
    """
    async with httpx.AsyncClient(timeout=_TIMEOUT_S, verify=tls_context()) as client:
        # The configuration first: the same one again is a no-op for the executor (a retry);
        # another owner's or deployment's is refused (409), and then its details say whose.
        config_url = f"{control_url}/config"
        configured = await _answer(
            client,
            "POST",
            config_url,
            json={
                "rpc_url": rpc_url,
                "jobs_contract": jobs.address,
                "code_contract": code_contract,
                "owner": owner.address,
            },
        )
        if configured.status == 409:
            theirs = await _json(client, "GET", f"{control_url}/details")
            _check_configuration(theirs, control_url, jobs.address, owner.address)
        if configured.status != 200:
            raise ServiceError(
                f"POST {config_url} answered {configured.status}: {_text(configured.body)}"
            )
        if not isinstance(configured.json(what=f"the answer to POST {config_url}"), dict):
            raise ServiceError(
                f"POST {config_url} answered no JSON object: {_text(configured.body)}"
            )
        details = await _json(client, "GET", f"{control_url}/details")
        # Whether it is registered already, before the attestation round trips and anything
        # sent on chain: a second registration approved the stake and only then reverted, with
        # nothing to say what to do.
        address = details.get("enclave_address")
        if not isinstance(address, str):
            raise ServiceError(f"GET {control_url}/details answered no enclave address")
        known = await asyncio.to_thread(jobs.executor, address)
        if known is not None:
            raise _registered_already(known, owner.address)
        min_stake = (await asyncio.to_thread(jobs.params)).min_stake
        if stake < min_stake:
            raise InputError(
                f"a stake of {format_amount(stake)} rUSD ({stake} base units) is below the Jobs"
                f" contract's minimum, {format_amount(min_stake)} rUSD ({min_stake} base units)",
                hint=f"stake at least {min_stake} base units (--stake {min_stake})",
            )
        document = await AttestationClient(timeout=_TIMEOUT_S).afetch(attestation_url)
        verify_url = f"{verifier_url}/verify/raw"
        verified = await _answer(
            client,
            "POST",
            verify_url,
            content=document,
            who="the attestation verifier",
            failed="attesting the executor",
        )
        if verified.status != 200:
            raise ServiceError(
                f"the verifier rejected the executor's attestation: {_text(verified.body)}",
                hint="is the verifier the one that trusts this TEE's root?",
            )
        statement = VerifierStatement.from_json(
            verified.json(what=f"the answer to POST {verify_url}")
        )
        if statement.public_key != parse_hex(details["public_key"], name="public key"):
            raise ServiceError(
                "the attestation is for another key than the executor's",
                hint="the attestation URL must be the executor enclave's secp256k1 endpoint",
            )
        registration = await _json(client, "POST", f"{control_url}/registration")
    signature = parse_hex(registration["signature"], name="signature", length=65)
    # What would only revert, found before the approval is sent.
    await asyncio.to_thread(_check_registrable, jobs, owner.address, statement.image_id, stake)

    def on_chain() -> None:  # web3 is synchronous: off the event loop
        jobs.ensure_allowance(stake)
        jobs.register_executor(
            statement,
            job_capacity=int(registration["job_capacity"]),
            env=int(registration["env"]),
            sign_timestamp=int(registration["sign_timestamp"]),
            register_signature=signature,
            stake=stake,
        )
        fund_gas(jobs.w3, owner, details["enclave_address"], gas_wei)

    await asyncio.to_thread(on_chain)
    record = await asyncio.to_thread(jobs.executor, details["enclave_address"])
    if record is None:  # pragma: no cover - registration just succeeded
        raise ServiceError("the executor is not registered after its registration")
    return record
