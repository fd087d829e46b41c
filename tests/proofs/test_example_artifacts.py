"""The example market's committed artifacts are what examples/proofs/poseidon/generate.sh makes
(byte for byte), and each example's verification key is the one snarkjs exports from its
proving key (examples/proofs/commitment/generate.sh is the same script: the byte-for-byte run
is done for one example, to keep the suite's time down)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import astuple
from pathlib import Path

import pytest

from proofs.proofs_support import EXAMPLE
from reef.proofs import RUNTIME_PACKAGE_DIR, CircuitArtifacts, ensure_snarkjs


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("example", [EXAMPLE, EXAMPLE.parent / "commitment"], ids=lambda p: p.name)
def test_the_verification_key_is_the_one_in_the_proving_key(tmp_path: Path, example: Path) -> None:
    runtime = ensure_snarkjs()
    circuit = CircuitArtifacts.in_folder(example)
    out = tmp_path / "vkey.json"
    subprocess.run(
        [str(runtime.node), str(runtime.snarkjs_cli), "zkey", "export", "verificationkey",
         str(circuit.zkey), str(out)],
        cwd=runtime.project, check=True, capture_output=True,
    )  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(circuit.vkey.read_text())


@pytest.mark.slow
def test_generate_sh_reproduces_the_committed_artifacts_byte_for_byte(tmp_path: Path) -> None:
    ensure_snarkjs()
    # The script finds the npm runtime at ../../../src/reef/proofs/runtime from its directory.
    here = tmp_path / "examples" / "proofs" / "poseidon"
    here.mkdir(parents=True)
    for name in ("circuit.circom", "generate.sh"):
        (here / name).write_bytes((EXAMPLE / name).read_bytes())
    (here / "generate.sh").chmod(0o755)
    runtime = tmp_path / "src" / "reef" / "proofs"
    runtime.mkdir(parents=True)
    (runtime / "runtime").symlink_to(RUNTIME_PACKAGE_DIR)
    subprocess.run([str(here / "generate.sh")], check=True, capture_output=True, timeout=600)
    # The names generate.sh writes are the ones CircuitArtifacts.in_folder reads.
    made, committed = CircuitArtifacts.in_folder(here), CircuitArtifacts.in_folder(EXAMPLE)
    for ours, theirs in zip(astuple(made), astuple(committed), strict=True):
        assert _sha(ours) == _sha(theirs), ours.name
