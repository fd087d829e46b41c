"""The EIP-712 messages of the serverless contracts: outputs and executor registrations.

Both are signed by an executor's enclave key (secp256k1) in the domain
``{name: "reef.serverless.Jobs", version: "1", chainId, verifyingContract: the Jobs contract}``.
Oyster's ``marlin.oyster.Jobs`` domain has only a name and a version, so one of its signatures
replays on every deployment (reference oyster_serverless.md §15.5); binding the chain id and the
contract address makes a reef signature valid on exactly one deployment.

An output also signs the code and input it was computed from: ``SubmitOutput`` (and the Relay's
``JobResponse``) carry the job's ``codehash`` and ``inputHash = keccak256(codeInputs)``, which
Oyster's type does not. An enclave learns both from its host's JSON-RPC node (the ``JobCreated``
event); without them in the signature, a host whose node forged them could have its own enclave
run the host's code and get that output accepted for another user's job. The contracts rebuild
the digest from the codehash and input hash they stored when the job was created, so a signature
over anything else recovers to an address that is not the job's executor (or gateway).

Pure functions over :mod:`reef.crypto` (keccak, EIP-712 framing, coincurve signing with low s),
checking numbers with :func:`reef.chain.check_uint` as the clients that send them do; tests check
every digest against eth-account's independent typed-data encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypedDict, Unpack

from eth_abi.abi import encode as abi_encode

from reef.chain import check_uint
from reef.crypto import (
    Secp256k1PrivateKey,
    eip712_digest,
    eip712_domain_separator,
    keccak256,
    recover_digest,
)
from reef.encoding import parse_bytes32
from reef.errors import InputError, SignatureError

__all__ = [
    "JOBS_DOMAIN_NAME",
    "JOBS_DOMAIN_VERSION",
    "REGISTER_TYPE",
    "SUBMIT_OUTPUT_TYPE",
    "JobsDomain",
    "OutputFields",
    "SignedOutput",
    "register_digest",
    "sign_output",
    "sign_registration",
    "submit_output_digest",
]

JOBS_DOMAIN_NAME = "reef.serverless.Jobs"
JOBS_DOMAIN_VERSION = "1"
SUBMIT_OUTPUT_TYPE = (
    "SubmitOutput(uint256 jobId,bytes32 codehash,bytes32 inputHash,bytes output,"
    "uint256 totalTime,uint8 errorCode,uint256 signTimestamp)"
)
REGISTER_TYPE = "Register(address owner,uint256 jobCapacity,uint8 env,uint256 signTimestamp)"
_SUBMIT_TYPEHASH = keccak256(SUBMIT_OUTPUT_TYPE.encode())
_REGISTER_TYPEHASH = keccak256(REGISTER_TYPE.encode())


@dataclass(frozen=True)
class JobsDomain:
    """The deployment a signature is bound to: the chain id and the Jobs contract's address."""

    chain_id: int
    jobs_contract: str

    @property
    def separator(self) -> bytes:
        return eip712_domain_separator(
            JOBS_DOMAIN_NAME,
            JOBS_DOMAIN_VERSION,
            chain_id=self.chain_id,
            verifying_contract=self.jobs_contract,
        )


class OutputFields(TypedDict):
    """What an output's signature covers, as the signing functions take it (keywords): the
    fields of ``SubmitOutput`` (Jobs) and ``JobResponse`` (Relay), which are the same. A hash is
    given as 32 bytes or as hex text."""

    job_id: int
    codehash: bytes | str
    input_hash: bytes | str
    output: bytes
    total_time: int
    error_code: int
    sign_timestamp: int


def submit_output_digest(domain: JobsDomain, **fields: Unpack[OutputFields]) -> bytes:
    """The digest an executor signs for one output (``SubmitOutput``) of the code ``codehash``
    run on the input whose keccak256 is ``input_hash``.

    Raises:
        InputError: a hash that is not 32 bytes, or a number out of its ABI type's range.
    """
    return _output_digest(domain.separator, _SUBMIT_TYPEHASH, _unsigned(fields))


def _hash32(value: bytes | str, name: str) -> bytes:
    """A codehash or an input hash (:func:`reef.encoding.parse_bytes32`, with the hint that says
    what each is); :mod:`reef.serverless._contracts` checks the hashes it sends with it too.

    Raises:
        InputError: it is not 32 bytes.
    """
    return parse_bytes32(
        value,
        name=name,
        hint="a codehash is the deployment's tx hash; an input hash is keccak256 of the input",
    )


def _output_digest(separator: bytes, typehash: bytes, fields: SignedOutput) -> bytes:
    """The EIP-712 digest of an output's ``fields`` in the domain ``separator``: the fields of
    ``SubmitOutput`` (Jobs) and ``JobResponse`` (Relay) are the same; the type name
    (``typehash``) tells them apart.

    Raises:
        InputError: a hash that is not 32 bytes, or a number out of its ABI type's range.
    """
    struct_hash = keccak256(
        abi_encode(
            ["bytes32", "uint256", "bytes32", "bytes32", "bytes32", "uint256", "uint8", "uint256"],
            [
                typehash,
                check_uint(fields.job_id, "job_id"),
                _hash32(fields.codehash, "codehash"),
                _hash32(fields.input_hash, "input_hash"),
                keccak256(fields.output),
                check_uint(fields.total_time, "total_time"),
                check_uint(fields.error_code, "error_code", bits=8),
                check_uint(fields.sign_timestamp, "sign_timestamp"),
            ],
        )
    )
    return eip712_digest(separator, struct_hash)


def _unsigned(fields: OutputFields) -> SignedOutput:
    """An output's fields with its hashes as bytes, not signed yet (empty ``signature``).

    Raises:
        InputError: a hash that is not 32 bytes, or a field missing or unknown (the signing
            functions take their fields as keywords, which only a type checker holds to
            :class:`OutputFields`).
    """
    given = fields.keys()
    if given != OutputFields.__annotations__.keys():
        missing = sorted(OutputFields.__annotations__.keys() - given)
        unknown = sorted(given - OutputFields.__annotations__.keys())
        raise InputError(
            f"an output's fields are {', '.join(OutputFields.__annotations__)}: "
            + "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unknown {', '.join(unknown)}" if unknown else "",
                )
                if part
            )
        )
    return SignedOutput(
        job_id=fields["job_id"],
        codehash=_hash32(fields["codehash"], "codehash"),
        input_hash=_hash32(fields["input_hash"], "input_hash"),
        output=bytes(fields["output"]),
        total_time=fields["total_time"],
        error_code=fields["error_code"],
        sign_timestamp=fields["sign_timestamp"],
        signature=b"",
    )


def _sign_output(
    key: Secp256k1PrivateKey, separator: bytes, typehash: bytes, fields: SignedOutput
) -> SignedOutput:
    """``fields`` with ``key``'s signature of their :func:`_output_digest`."""
    digest = _output_digest(separator, typehash, fields)
    return replace(fields, signature=key.sign_digest(digest))


def register_digest(
    domain: JobsDomain, *, owner: str, job_capacity: int, env: int, sign_timestamp: int
) -> bytes:
    """The digest an executor's enclave key signs to be registered by ``owner``."""
    struct_hash = keccak256(
        abi_encode(
            ["bytes32", "address", "uint256", "uint8", "uint256"],
            [
                _REGISTER_TYPEHASH,
                owner,
                check_uint(job_capacity, "job_capacity"),
                check_uint(env, "env", bits=8),
                check_uint(sign_timestamp, "sign_timestamp"),
            ],
        )
    )
    return eip712_digest(domain.separator, struct_hash)


@dataclass(frozen=True, kw_only=True)
class SignedOutput:
    """One executor's signed result of one job, as ``submitOutput`` takes it, with the code
    (``codehash``) and input (``input_hash``, its keccak256) the signature binds: the contract
    takes neither (it holds the job's own), but the signature verifies only over them."""

    job_id: int
    codehash: bytes
    input_hash: bytes
    output: bytes
    total_time: int
    error_code: int
    sign_timestamp: int
    signature: bytes

    def call_args(self) -> tuple[bytes, int, bytes, int, int, int]:
        """The arguments ``submitOutput`` (Jobs) and ``jobResponse`` (Relay) both take, checked
        (not the codehash and input hash: the contracts use the ones they stored for the job).

        Raises:
            InputError: a number out of its ABI type's range.
        """
        return (
            self.signature,
            check_uint(self.job_id, "job id"),
            self.output,
            check_uint(self.total_time, "total_time"),
            check_uint(self.error_code, "error_code", bits=8),
            check_uint(self.sign_timestamp, "sign_timestamp"),
        )

    def digest(self, domain: JobsDomain) -> bytes:
        return _output_digest(domain.separator, _SUBMIT_TYPEHASH, self)

    def signer(self, domain: JobsDomain) -> str:
        """The checksummed address that signed this output in ``domain``.

        Raises:
            SignatureError: when the signature is malformed.
        """
        try:
            return recover_digest(self.digest(domain), self.signature).checksum_address
        except InputError as exc:
            raise SignatureError(
                f"the output signature is invalid: {exc.message}", reason="output_signature"
            ) from exc


def sign_output(
    key: Secp256k1PrivateKey, domain: JobsDomain, **fields: Unpack[OutputFields]
) -> SignedOutput:
    """Sign one output with an executor's enclave key: the output of the code ``codehash`` run
    on the input whose keccak256 is ``input_hash`` (what the executor ran; the Jobs contract
    accepts it only when they are the job's).

    Raises:
        InputError: a hash that is not 32 bytes, or a number out of its ABI type's range.
    """
    return _sign_output(key, domain.separator, _SUBMIT_TYPEHASH, _unsigned(fields))


def sign_registration(
    key: Secp256k1PrivateKey,
    domain: JobsDomain,
    *,
    owner: str,
    job_capacity: int,
    env: int,
    sign_timestamp: int,
) -> bytes:
    """The enclave key's signature that lets ``owner`` register it (65 bytes, v = 27/28)."""
    return key.sign_digest(
        register_digest(
            domain, owner=owner, job_capacity=job_capacity, env=env, sign_timestamp=sign_timestamp
        )
    )
