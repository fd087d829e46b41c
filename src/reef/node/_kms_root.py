"""``reef kms root serve``'s use case: a KMS root assembled from its operator's choices.

Where the sealed seed lives, what seals it (the enclave's dev TEE sealing service, or the dev TEE
key read from ``$REEF_HOME`` outside an enclave), which TEE roots its clients may attest under
(``self``: the root this enclave itself runs under), the chain that approves contract-bound
keys, who may rotate it, and the old root it inherits its seeds from on first start (a new image
of the same KMS: docs/kms.md, "Upgrading a root"). This sits in ``node`` because it composes the
KMS with the dev TEE (``reef.enclave``), which the ``kms`` package must not know.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from reef.errors import InputError
from reef.home import ReefHome

if TYPE_CHECKING:
    from reef.attestation import TrustedRoot
    from reef.kms import HandoverSource, KmsRoot, Sealer

__all__ = ["KmsRootOptions", "PreparedKmsRoot", "prepare_kms_root"]


@dataclass(frozen=True, kw_only=True)
class KmsRootOptions:
    """What an operator decides about a KMS root (the flags of ``reef kms root serve``)."""

    trust: Sequence[str]
    """TEE roots its clients may attest under: ``dev``, ``aws``, a file, or ``self``."""
    home: ReefHome
    state_dir: Path | None = None
    """Where the sealed seed lives; ``$REEF_STATE_DIR`` inside an enclave, else the home's."""
    sealer: Literal["tee", "dev-home"] | str = "tee"
    image_id: bytes | None = None
    """The image to seal for with ``sealer="dev-home"``."""
    rpc_url: str | None = None
    chain_id: int | None = None
    admin: str | None = None
    attestation_url: str | None = None
    """The enclave's custom attestation endpoint (attests the root's identity)."""
    environ: Mapping[str, str] = field(default_factory=dict)
    """The process environment the local enclave runtime sets (``REEF_*``)."""
    inherit: HandoverSource | None = None
    """The old root whose seeds this one inherits when its store is empty."""


@dataclass(frozen=True)
class PreparedKmsRoot:
    root: KmsRoot
    peer_roots: list[TrustedRoot]
    warnings: list[str]
    """What the operator must be told (insecure roots, a seed that will not survive)."""
    notes: list[str] = field(default_factory=list)
    """What happened on the way (seeds inherited from an old root)."""


async def prepare_kms_root(options: KmsRootOptions) -> PreparedKmsRoot:
    """Open (or create) the root's seed and resolve whom it trusts.

    Raises:
        InputError: contradictory or incomplete options, naming the flag.
        KMSError, ChainError: the sealed seed cannot be opened or the chain is not the one named.
    """
    from reef.attestation import TrustedRoot
    from reef.kms import (
        KmsRoot,
        RpcApproval,
        SeedStore,
        http_attester,
        inherit_root_seeds,
        own_tee_root,
    )

    warnings: list[str] = []
    # The sealer first: with dev-home it creates the dev TEE authority that --trust dev names.
    store = SeedStore(_state_dir(options, warnings), _sealer(options, warnings))
    attestation_url = options.attestation_url
    custom = options.environ.get("REEF_CUSTOM_ATTESTATION_URL")
    if attestation_url is None and custom:
        attestation_url = custom + "/attestation/raw"
    attester = http_attester(attestation_url) if attestation_url else None
    roots = [TrustedRoot.resolve(spec, options.home) for spec in options.trust if spec != "self"]
    if "self" in options.trust:
        if attester is None:
            raise InputError(
                "--trust self needs --attestation-url (the enclave's custom attestation server)"
            )
        roots.append(own_tee_root(attester))
    warnings += [
        f"accepting enclaves attested under the {r.name} root: INSECURE"
        for r in roots
        if r.insecure
    ]
    if (options.rpc_url is None) != (options.chain_id is None):
        raise InputError("--rpc-url and --chain-id go together")
    approval = None
    if options.rpc_url is not None and options.chain_id is not None:
        approval = RpcApproval(options.rpc_url, options.chain_id)
        await approval.check_chain()
    notes: list[str] = []
    if options.inherit is not None:
        if attester is None:
            raise InputError(
                "--inherit-from needs this root's own attestation (the old root hands its seeds "
                "only to an attested image)",
                hint="give --attestation-url (inside an enclave the runtime sets "
                "$REEF_CUSTOM_ATTESTATION_URL)",
            )
        source = options.inherit
        host_addr = options.environ.get("REEF_HOST_ADDR")
        if host_addr and source.host in ("127.0.0.1", "localhost", "::1"):
            # Inside a local enclave the host's loopback (where the old root's port is mapped)
            # is the namespace's gateway: the measured command names 127.0.0.1, as the
            # operator sees the port (reef enclave run --allow-host-port PORT lets it out).
            source = dataclasses.replace(source, host=host_addr)
        notes.append(await inherit_root_seeds(store, source, attester=attester, roots=roots))
    root = KmsRoot.open(store, approval=approval, attester=attester, admin=options.admin)
    return PreparedKmsRoot(root, roots, warnings, notes)


def _state_dir(options: KmsRootOptions, warnings: list[str]) -> Path:
    if options.state_dir is not None:
        return options.state_dir
    # Inside a local enclave the runtime names a persistent per-image directory; elsewhere the
    # seed lives under $REEF_HOME/kms. Only the sealed blob is ever written there.
    env = options.environ.get("REEF_STATE_DIR")
    if env:
        return Path(env)
    if options.environ.get("REEF_ENCLAVE_ID"):
        warnings.append(
            "this enclave has no persistent state directory ($REEF_STATE_DIR): the sealed root "
            "seed will not survive it, so a restarted root derives other keys"
        )
    return Path(options.home.kms)


def _sealer(options: KmsRootOptions, warnings: list[str]) -> Sealer:
    if options.sealer == "tee":
        from reef.enclave import DevTeeSealer

        return DevTeeSealer()
    if options.sealer == "dev-home":
        from reef.attestation import DevAuthority
        from reef.kms import AeadSealer

        if options.image_id is None:
            raise InputError("--sealer dev-home needs --image-id (the image to seal for)")
        warnings.append("sealing with the dev TEE key from $REEF_HOME outside an enclave: INSECURE")
        authority = DevAuthority.load_or_create(options.home)
        return AeadSealer(authority.sealing_key(options.image_id))
    raise InputError(f"--sealer must be tee or dev-home, got {options.sealer!r}")
