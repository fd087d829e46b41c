"""Groth16 over BN254 for circom circuits: prove and verify with snarkjs, verify on chain.

Proving and the independent check run the pinned snarkjs (``_runtime``) as a child process:
``prove`` feeds ``groth16.fullProve`` (witness + proof) JSON on stdin, ``verify_with_snarkjs``
runs snarkjs's own ``groth16 verify`` command on temporary files, so the check is one nobody
here wrote. ``verifier_source`` renders a Vyper verifier for one verification key from the
template in ``templates/`` (EVM precompiles 0x06-0x08); ``compile_verifier`` compiles it with
the vyper pinned for reef's contracts. ``proof_words`` and ``parse_*`` convert between
snarkjs's JSON (decimal strings, G2 real part first) and the verifier's uint256 words.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from reef.errors import InputError, InvalidProofInputError, ProofError
from reef.home import read_json
from reef.proofs._runtime import SnarkjsRuntime, _run_program

__all__ = [
    "FIELD_MODULUS",
    "SCALAR_FIELD",
    "CompiledVerifier",
    "Groth16Proof",
    "compile_verifier",
    "load_verification_key",
    "proof_from_words",
    "prove",
    "verifier_source",
    "verify_with_snarkjs",
]

FIELD_MODULUS = 21888242871839275222246405745257275088696311157297823662689037894645226208583
"""BN254's base field (point coordinates)."""
SCALAR_FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617
"""BN254's scalar field (public signals)."""
_TEMPLATE = Path(__file__).parent / "templates" / "Groth16Verifier.vy.tmpl"
_PROVE_TIMEOUT_S = 600
_VERIFY_TIMEOUT_S = 120


@dataclass(frozen=True)
class Groth16Proof:
    """A proof and its public signals, as snarkjs writes them (``proof.json``, ``public.json``)."""

    proof: Mapping[str, Any]
    public_signals: tuple[int, ...]

    def words(self) -> tuple[int, ...]:
        """The 8 uint256 words the on-chain verifier takes: A.x, A.y, B (imaginary first), C."""
        try:
            a, b, c = self.proof["pi_a"], self.proof["pi_b"], self.proof["pi_c"]
            out = (
                int(a[0]), int(a[1]),
                int(b[0][1]), int(b[0][0]), int(b[1][1]), int(b[1][0]),
                int(c[0]), int(c[1]),
            )  # fmt: skip
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise InputError(f"not a snarkjs Groth16 proof: {exc}") from exc
        for word in out:
            if not 0 <= word < 2**256:
                raise InputError("a Groth16 proof coordinate is out of range")
        return out

    def signals_json(self) -> list[str]:
        """``public.json``: the public signals as decimal strings."""
        return [str(s) for s in self.public_signals]

    def to_json(self) -> dict[str, Any]:
        return {"proof": dict(self.proof), "public_signals": self.signals_json()}


def proof_from_words(words: Sequence[int], public_signals: Sequence[int]) -> Groth16Proof:
    """The snarkjs JSON form of a proof given as the verifier's 8 words (inverse of ``words``)."""
    if len(words) != 8:
        raise InputError(f"a Groth16 proof is 8 words, got {len(words)}")
    w = [int(x) for x in words]
    proof = {
        "pi_a": [str(w[0]), str(w[1]), "1"],
        "pi_b": [[str(w[3]), str(w[2])], [str(w[5]), str(w[4])], ["1", "0"]],
        "pi_c": [str(w[6]), str(w[7]), "1"],
        "protocol": "groth16",
        "curve": "bn128",
    }
    return Groth16Proof(proof, tuple(int(s) for s in public_signals))


def _run(
    runtime: SnarkjsRuntime, args: Sequence[str], *, stdin: str | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    return _run_program(
        [str(runtime.node), *args],
        what="snarkjs",
        stdin=stdin,
        timeout_s=timeout,
        cwd=runtime.project,
        hint="install Node.js",
    )


def prove(
    runtime: SnarkjsRuntime, wasm: Path, zkey: Path, inputs: Mapping[str, Any]
) -> Groth16Proof:
    """Compute the witness for ``inputs`` and a Groth16 proof (snarkjs ``groth16.fullProve``).

    Raises:
        InvalidProofInputError: the inputs violate the circuit (no witness exists).
        ProofError: snarkjs failed for another reason.
    """
    for path in (wasm, zkey):
        if not path.is_file():
            raise ProofError(f"circuit artifact {path} does not exist")
    request = json.dumps(
        {"input": dict(inputs), "wasm": str(wasm.resolve()), "zkey": str(zkey.resolve())}
    )
    done = _run(runtime, [str(runtime.prove_script)], stdin=request, timeout=_PROVE_TIMEOUT_S)
    if done.returncode == 3:
        raise InvalidProofInputError(
            f"the inputs violate the circuit: {done.stderr.strip()[-300:]}",
            hint="check the input values against the circuit's constraints",
        )
    if done.returncode != 0:
        raise ProofError(
            f"snarkjs fullProve failed (exit {done.returncode}): {done.stderr.strip()[-600:]}"
        )
    try:
        out = json.loads(done.stdout)
        return Groth16Proof(out["proof"], tuple(int(s) for s in out["publicSignals"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ProofError(f"snarkjs fullProve printed something unexpected: {exc}") from exc


def verify_with_snarkjs(
    runtime: SnarkjsRuntime, vkey: Mapping[str, Any], proof: Groth16Proof
) -> bool:
    """Whether snarkjs's own ``groth16 verify`` accepts ``proof`` under ``vkey``."""
    with tempfile.TemporaryDirectory(prefix="reef-verify-") as tmp:
        files = {
            "vkey.json": dict(vkey),
            "public.json": proof.signals_json(),
            "proof.json": dict(proof.proof),
        }
        for name, data in files.items():
            (Path(tmp) / name).write_text(json.dumps(data))
        args = [str(runtime.snarkjs_cli), "groth16", "verify"]
        args += [str(Path(tmp) / n) for n in files]
        done = _run(runtime, args, stdin=None, timeout=_VERIFY_TIMEOUT_S)
    # snarkjs prints "OK!" and exits 0 on success, "Invalid proof" and exits 1 otherwise.
    return done.returncode == 0 and "OK" in done.stdout


_VKEY_HINT = (
    "give the verification key snarkjs exports from the circuit's .zkey: "
    "`snarkjs zkey export verificationkey circuit.zkey verification_key.json`"
)


def load_verification_key(path: Path) -> dict[str, Any]:
    """A snarkjs ``verification_key.json``, checked to be Groth16 over BN254."""
    what = f"cannot read the verification key {path}"
    data = read_json(
        path,
        missing=InputError(f"{what}: No such file or directory", hint=_VKEY_HINT),
        unreadable=what,
    )
    _check_vkey(data, str(path))
    return dict(data)


def _check_vkey(vkey: Any, where: str) -> None:
    if not isinstance(vkey, Mapping):
        raise InputError(f"{where}: a verification key is a JSON object")
    if vkey.get("protocol") != "groth16" or vkey.get("curve") != "bn128":
        raise InputError(
            f"{where}: not a Groth16/BN254 verification key "
            f"(protocol {vkey.get('protocol')!r}, curve {vkey.get('curve')!r})",
            hint=_VKEY_HINT,
        )
    n_public = vkey.get("nPublic")
    ic = vkey.get("IC")
    if not isinstance(n_public, int) or not isinstance(ic, list) or len(ic) != n_public + 1:
        raise InputError(f"{where}: nPublic and IC disagree (IC must have nPublic + 1 points)")
    if not 0 <= n_public <= 32:
        raise InputError(
            f"{where}: reef's verifier takes at most 32 public signals, got {n_public}"
        )


def verifier_source(vkey: Mapping[str, Any]) -> str:
    """The Vyper source of a verifier for ``vkey`` (a snarkjs Groth16 verification key)."""
    _check_vkey(vkey, "verification key")
    try:

        def g1(point: Any) -> tuple[int, int]:
            return int(point[0]), int(point[1])

        def g2(point: Any) -> tuple[int, int, int, int]:
            # (x1, x0, y1, y0): the EIP-197 precompile takes the imaginary part first.
            return int(point[0][1]), int(point[0][0]), int(point[1][1]), int(point[1][0])

        alpha = g1(vkey["vk_alpha_1"])
        beta, gamma, delta = g2(vkey["vk_beta_2"]), g2(vkey["vk_gamma_2"]), g2(vkey["vk_delta_2"])
        ic = [g1(p) for p in vkey["IC"]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise InputError(f"malformed verification key: {exc}") from exc
    for value in (*alpha, *beta, *gamma, *delta, *(v for p in ic for v in p)):
        if not 0 <= value < FIELD_MODULUS:
            raise InputError("a verification key coordinate is not in BN254's field")
    canonical = json.dumps(vkey, sort_keys=True, separators=(",", ":")).encode()
    fields: dict[str, object] = {
        "vkey_sha256": hashlib.sha256(canonical).hexdigest(),
        "n_public": len(ic) - 1,
        "n_ic": len(ic),
        "alpha_x": alpha[0],
        "alpha_y": alpha[1],
        "ic_x": ", ".join(str(p[0]) for p in ic),
        "ic_y": ", ".join(str(p[1]) for p in ic),
    }
    for name, point in (("beta", beta), ("gamma", gamma), ("delta", delta)):
        for suffix, value in zip(("x1", "x0", "y1", "y0"), point, strict=True):
            fields[f"{name}_{suffix}"] = value
    return Template(_TEMPLATE.read_text()).substitute(fields)


@dataclass(frozen=True)
class CompiledVerifier:
    """A verifier contract compiled for one verification key."""

    abi: Sequence[Mapping[str, Any]]
    bytecode: bytes
    source: str


def compile_verifier(vkey: Mapping[str, Any]) -> CompiledVerifier:
    """Compile the verifier for ``vkey`` with vyper (about a second: done once per market)."""
    source = verifier_source(vkey)
    import vyper  # slow to import; only market creation needs it

    try:
        out = vyper.compile_code(
            source, contract_path="Groth16Verifier.vy", output_formats=["abi", "bytecode"]
        )
    except Exception as exc:  # vyper raises many unrelated types; all mean "did not compile"
        raise ProofError(f"the generated Groth16 verifier did not compile: {exc}") from exc
    return CompiledVerifier(out["abi"], bytes.fromhex(out["bytecode"].removeprefix("0x")), source)
