"""Nitro attestation verification throughput, against the raw P-384 ECDSA bound measured in the
same run.

For each document kind (real AWS documents when ../shared/vectors is present, dev TEE documents
always) it prints:

- raw: P-384 ECDSA verifications per second of exactly the signatures a document carries (each
  certificate's signature over its TBS bytes, and the COSE signature over the Sig_structure),
  keys already parsed: the floor no verifier can go below;
- cold: documents per second with no chain cache (every signature is checked);
- chain cached: documents per second with the issuing chain cached and a leaf not seen before
  (two signatures: the leaf certificate's and the COSE signature);
- leaf cached: documents per second from a leaf already verified (one signature, the COSE one:
  every further document of an enclave, which signs with one leaf for hours);
- of raw bound: the time those signatures alone take, divided by the time a verification takes
  (100 % would mean all time goes to ECDSA; the aim is at least 80 %).

Measurements are interleaved in rounds so that load from other processes affects all of them
alike; each figure is the best round (the least disturbed by other processes, as ``timeit``
recommends). Prints, does not assert.

Run: ``.venv/bin/python bench/attestation.py [--seconds S]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from reef.attestation import DevAuthority, Mode, NitroVerifier, TrustedRoot, decode_nitro
from reef.home import ReefHome

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 7


@dataclass(frozen=True)
class Check:
    """One signature a verification checks."""

    label: str
    key: ec.EllipticCurvePublicKey
    signature: bytes
    message: bytes
    hash_type: type[hashes.HashAlgorithm]

    def run(self) -> None:
        self.key.verify(self.signature, self.message, ec.ECDSA(self.hash_type()))


def signatures(document: bytes, root: TrustedRoot) -> list[Check]:
    """Every signature verifying ``document`` checks, the COSE signature last."""
    cose, doc = decode_nitro(document)
    certs = [root.x509] + [x509.load_der_x509_certificate(d) for d in doc.cabundle[1:]]
    certs.append(x509.load_der_x509_certificate(doc.certificate))
    checks = []
    for position, (issuer, child) in enumerate(itertools.pairwise(certs), start=1):
        key = issuer.public_key()
        algorithm = child.signature_hash_algorithm
        if not isinstance(key, ec.EllipticCurvePublicKey) or algorithm is None:
            raise SystemExit("bench: the chain is not ECDSA")
        label = "leaf" if position == len(certs) - 1 else f"cabundle[{position}]"
        checks.append(
            Check(label, key, child.signature, child.tbs_certificate_bytes, type(algorithm))
        )
    leaf_key = certs[-1].public_key()
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey):
        raise SystemExit("bench: the leaf key is not EC")
    r = int.from_bytes(cose.signature[:48], "big")
    s = int.from_bytes(cose.signature[48:], "big")
    der = encode_dss_signature(r, s)
    checks.append(Check("COSE", leaf_key, der, cose.sig_structure(), hashes.SHA384))
    return checks


def seconds_per_call(work: Callable[[], None], budget: float) -> float:
    """Mean seconds per call of ``work`` over about ``budget`` seconds."""
    count, start = 0, time.perf_counter()
    while True:
        work()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return elapsed / count


def bench(
    label: str,
    document: bytes,
    root: TrustedRoot,
    *,
    mode: Mode,
    now_ms: int | None,
    seconds: float,
) -> None:
    checks = signatures(document, root)
    cold_verifier = NitroVerifier(cache_size=0)
    chain_verifier = NitroVerifier()
    warm_verifier = NitroVerifier()

    def cold() -> None:
        cold_verifier.verify(document, root=root, mode=mode, now_ms=now_ms)

    def chain_cached() -> None:
        # A bench-only reach inside: forget the verified leaves, keep the issuing chains, as
        # when an enclave shows a leaf this verifier has not seen yet.
        chain_verifier._leaves.clear()
        chain_verifier.verify(document, root=root, mode=mode, now_ms=now_ms)

    def leaf_cached() -> None:
        warm_verifier.verify(document, root=root, mode=mode, now_ms=now_ms)

    runs = {"cold": cold, "chain cached": chain_cached, "leaf cached": leaf_cached}
    for run in runs.values():
        run()
    budget = seconds / ROUNDS / (len(checks) + len(runs))
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for check in checks:
        samples[check.label] = []
    for _ in range(ROUNDS):
        for check in checks:
            samples[check.label].append(seconds_per_call(check.run, budget))
        for name, run in runs.items():
            samples[name].append(seconds_per_call(run, budget))
    t = {name: min(values) for name, values in samples.items()}
    raw_all = sum(t[c.label] for c in checks)
    per_signature = len(checks) / raw_all

    print(f"{label}: {len(document)} bytes, {len(checks)} signatures per document")
    print(f"  raw P-384 ECDSA        {per_signature:8.0f} verifications/s (mean of this chain's)")
    rows = (
        ("cold", "cold (no cache)", len(checks), raw_all),
        ("chain cached", "issuing chain cached", 2, t["leaf"] + t["COSE"]),
        ("leaf cached", "leaf cached too", 1, t["COSE"]),
    )
    for name, title, sigs, bound in rows:
        print(
            f"  {title:22} {1 / t[name]:8.0f} documents/s  {sigs} signature(s) each  "
            f"{100 * bound / t[name]:5.1f} % of the raw bound"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description="Nitro verification throughput vs raw ECDSA.")
    parser.add_argument("--seconds", type=float, default=6.0, help="time per document kind")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {ROUNDS} interleaved rounds")
    vectors = Path(os.environ.get("REEF_VECTORS", REPO.parent / "shared" / "vectors")) / "nitro"
    if (vectors / "aws.bin").exists():
        bench(
            "AWS Nitro document (aws.bin, replay mode)",
            (vectors / "aws.bin").read_bytes(),
            TrustedRoot.aws(),
            mode="replay",
            now_ms=None,
            seconds=args.seconds,
        )
    else:
        print(f"(no public vectors at {vectors}: AWS documents skipped)")
    with tempfile.TemporaryDirectory() as home:
        authority = DevAuthority.load_or_create(ReefHome(Path(home)))
        now_ms = int(time.time() * 1000)
        document = authority.mint({0: bytes(48)}, timestamp_ms=now_ms, public_key=bytes(32))
        bench(
            "dev TEE document (live mode)",
            document,
            authority.root,
            mode="live",
            now_ms=now_ms,
            seconds=args.seconds,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
