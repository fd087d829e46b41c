"""``reef proofs request`` reads public and private input files with reef.encoding's one
``parse_uint``: a value that is not an unsigned 256-bit integer is a clear message naming the
file and the input, with what to give instead, exit 1 and no traceback, for both kinds alike.
No Groth16 verifier is needed: a TEE market's asks take the same input files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from proofs.proofs_support import ProofChain
from reef.chain import serve_devnet_in_thread
from reef.cli import app


class Served:
    def __init__(self, chain: ProofChain, url: str, market_id: int) -> None:
        self.chain, self.url, self.market_id = chain, url, market_id

    def request(self, tmp: Path, public: object, private: object | None = None) -> Result:
        key = tmp / "user.key"
        key.write_text(self.chain.users[0].key.hex())
        inputs = tmp / "input.json"
        inputs.write_text(json.dumps({"salt": public}))
        args = ["proofs", "request", str(self.market_id), "--input", str(inputs)]
        if private is not None:
            secret = tmp / "private.json"
            secret.write_text(json.dumps({"x": private}))
            args += ["--private", str(secret)]
        args += ["--reward", "1", "--rpc", self.url, "--key", str(key)]
        return CliRunner().invoke(app, [*args, "--proof-market", self.chain.market_address])


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    chain = ProofChain.create(n_users=1)
    metadata = json.dumps({"name": "t", "public_inputs": ["salt"], "private_inputs": ["x"]})
    market_id, _ = chain.market().create_tee_market(
        image_id=b"\x01" * 32, penalty=1, n_inputs=1, metadata=metadata, private_inputs=True
    )
    with serve_devnet_in_thread(chain.devnet) as thread:
        yield Served(chain, thread.url, market_id)


@pytest.mark.parametrize(
    ("public", "private", "named", "message"),
    [
        ("abc", 1, "input.json: public input salt", "is not an integer: 'abc'"),
        (str(2**256), 1, "input.json: public input salt", "does not fit in 256 bits"),
        (True, 1, "input.json: public input salt", "is not an integer: True"),
        (1, "abc", "private.json: private input x", "is not an integer: 'abc'"),
        (1, -1, "private.json: private input x", "does not fit in 256 bits"),
    ],
)
def test_a_bad_integer_input_is_one_clear_error_for_public_and_private_inputs(
    served: Served, tmp_path: Path, public: object, private: object, named: str, message: str
) -> None:
    result = served.request(tmp_path, public, private)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert f"{named} {message}" in output
    assert "give a whole number from 0 to 2**256-1, in decimal or 0x hex" in output
    assert "Traceback" not in output
    assert isinstance(result.exception, SystemExit)
