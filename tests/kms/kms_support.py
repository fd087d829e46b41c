"""A KMS root on the dev TEE, and an enclave peer of its Scallop app, set up once for every test
that needs one (tests/kms, tests/enclave, tests/serve, ...).

pytest puts the tests folder on ``sys.path`` (``pythonpath`` in pyproject.toml)::

    from kms.kms_support import attested_peer, dev_root_server, dev_root_store
"""

from __future__ import annotations

from collections.abc import Mapping

from reef.attestation import DevAuthority, TrustedRoot, VerifiedAttestation, image_id
from reef.home import ReefHome
from reef.kms import AeadSealer, KmsRoot, RootServer, SeedStore
from reef.scallop import ScallopPeer

__all__ = ["attested_peer", "dev_root_server", "dev_root_store"]


def dev_root_store(
    home: ReefHome, authority: DevAuthority, root_pcrs: Mapping[int, bytes]
) -> SeedStore:
    """The KMS root's seed store in ``home``, sealed under ``authority``'s dev-TEE key for the
    root's own image (``root_pcrs``), as a root enclave seals it: a root opened on it again, of
    the same image, unseals the same seed."""
    return SeedStore(home.kms, AeadSealer(authority.sealing_key(image_id(root_pcrs))))


def dev_root_server(
    root: KmsRoot, authority: DevAuthority, *, log_level: str = "warning"
) -> RootServer:
    """``root`` served on free loopback ports (Scallop and public), taking the enclaves that
    ``authority`` attests as clients; enter it with ``async with`` (or start and aclose it)."""
    return RootServer(
        root, peer_roots=[authority.root], scallop_port=0, public_port=0, log_level=log_level
    )


def attested_peer(
    root: TrustedRoot, pcrs: Mapping[int, bytes], *, timestamp_ms: int
) -> ScallopPeer:
    """The peer ``reef.scallop.serve_asgi`` hands a KMS Scallop app with each request of an
    enclave that attested the image of ``pcrs`` live, under ``root``, at ``timestamp_ms``."""
    attested = VerifiedAttestation(
        kind="nitro",
        image_id=image_id(pcrs),
        pcrs=pcrs,
        timestamp_ms=timestamp_ms,
        module_id="dev",
        public_key=b"\x07" * 32,
        user_data=b"",
        nonce=b"",
        root=root,
        mode="live",
    )
    return ScallopPeer(b"\x07" * 32, attested, "attested", b"\x08" * 32)
