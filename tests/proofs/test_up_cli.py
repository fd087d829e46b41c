"""End to end on a real ``reef up`` with the proof market: the extension deploys the contract
and the example markets and starts a matching engine and a prover as attested enclaves; the CLI
requests a proof, waits for it, and the proof it prints verifies with `snarkjs groth16 verify`
run directly. The engine and the prover sign with their enclaves' attested keys (checked
against the attestation documents), and the ``reef up`` process runs neither. The input
verification service is an enclave too, signing with the KMS key of its measured image id, the
address the example markets have on chain. Invalid inputs end ``invalid`` through it; a second market is created from the CLI; errors are messages, not
tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import network_in_thread, up_settings
from typer.testing import CliRunner

from proofs.proofs_support import EXAMPLE
from reef.chain import Devnet, TokenClient
from reef.cli import app
from reef.home import ReefHome
from reef.node import LocalNetwork
from reef.node._proofs import ProofsExtension, ProofsSettings
from reef.proofs import ensure_snarkjs
from reef.testing import wall_ms

pytestmark = pytest.mark.slow

runner = CliRunner()


class Up:
    def __init__(self, tmp: Path, home: ReefHome, devnet: Devnet, network: LocalNetwork) -> None:
        self.tmp, self.home, self.devnet, self.network = tmp, home, devnet, network
        self.key = tmp / "user.key"
        self.key.write_text(devnet.accounts[0].private_key.hex())

    def reef(self, *args: str) -> Any:
        # (conftest gives each test its own $REEF_HOME; these share the module's network)
        return runner.invoke(app, list(args), env={"REEF_HOME": str(self.home.root)})

    def services(self) -> Any:
        """What ``reef up`` wrote about the proof market in network.json (addresses, enclaves)."""
        return json.loads((self.home.root / "network.json").read_text())["services"]["proofs"]

    def funded_key(self, index: int, key_file: str) -> tuple[str, str]:
        """The ``--key`` options of dev account ``index``, minted 10**8 of the market's token
        (its key written to ``key_file`` in the module's folder)."""
        account = self.devnet.accounts[index]
        owner = self.devnet.accounts[0].local_account
        token = TokenClient(self.devnet.web3(), self.services()["token"], account=owner)
        token.mint(account.address, 10**8)
        key = self.tmp / key_file
        key.write_text(account.private_key.hex())
        return ("--key", str(key))

    def request(self, market: int | str, *options: str) -> int:
        """``reef proofs request MARKET OPTIONS --key <the user> --json``, which must succeed:
        the new ask's id."""
        requested = self.reef(
            "proofs", "request", str(market), *options, "--key", str(self.key), "--json"
        )
        assert requested.exit_code == 0, requested.output
        return int(json.loads(requested.stdout)["ask_id"])

    def wait(self, ask_id: int) -> Any:
        """``reef proofs wait ASK --timeout 3m --json``: its result, whatever its exit code."""
        return self.reef("proofs", "wait", str(ask_id), "--timeout", "3m", "--json")

    def snarkjs_verify(self, vkey: Path, done: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        """`snarkjs groth16 verify` itself, on the proof and public signals that ``reef proofs
        wait`` printed (``done``), saved to files as a user would."""
        proof, public = self.tmp / "proof.json", self.tmp / "public.json"
        proof.write_text(json.dumps(done["proof"]))
        public.write_text(json.dumps(done["public_signals"]))
        runtime = ensure_snarkjs()
        return subprocess.run(
            [str(runtime.node), str(runtime.snarkjs_cli), "groth16", "verify",
             str(vkey), str(public), str(proof)],
            cwd=runtime.project, capture_output=True, text=True, check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("up")
    home = ReefHome(tmp / "home").ensure()
    settings = up_settings()
    network = LocalNetwork(home, settings, extensions=[ProofsExtension(ProofsSettings())])
    with network_in_thread(network, timeout=600):
        assert isinstance(network.devnet, Devnet)
        yield Up(tmp, home, network.devnet, network)


def test_request_prove_pay_and_verify_with_snarkjs(up: Up) -> None:
    listed = up.reef("proofs", "market", "list", "--json")
    assert listed.exit_code == 0, listed.output
    example, private = json.loads(listed.stdout)[:2]
    assert example["kind"] == "groth16"
    assert example["public_inputs"] == ["x"]
    assert (example["private"], private["private"]) == (False, True)
    assert (private["public_inputs"], private["private_inputs"]) == (["salt"], ["x"])
    inputs = up.tmp / "input.json"
    inputs.write_text(json.dumps({"x": 424242}))
    ask_id = up.request(1, "--input", str(inputs), "--reward", "1")
    waited = up.wait(ask_id)
    assert waited.exit_code == 0, waited.output
    done = json.loads(waited.stdout)
    assert done["state"] == "complete"
    assert done["public_signals"][1] == "424242"
    verified = up.snarkjs_verify(EXAMPLE / "verification_key.json", done)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK" in verified.stdout
    shown = up.reef("proofs", "show", str(ask_id), "--json")
    assert json.loads(shown.stdout)["state"] == "complete"


def test_the_engine_and_the_prover_are_attested_enclaves_not_tasks_of_reef_up(up: Up) -> None:
    import gc

    import httpx

    from reef.attestation import Expectations, TrustedRoot, verify
    from reef.proofs import MatchingEngine, ProofMarketClient, ProverService, tee_signer_address

    services = up.services()
    market = ProofMarketClient(up.devnet.web3(), services["market"])
    enclaves = services["enclaves"]
    root = TrustedRoot.resolve("dev", up.home)
    for part, address in (("engine", services["engine"]), ("prover", services["prover"])):
        described = enclaves[part]
        assert described["address"] == address
        evidence = httpx.get(described["attestation"], timeout=30).content
        verified = verify(
            evidence,
            root=root,
            now_ms=wall_ms(),
            expect=Expectations(image_id=bytes.fromhex(described["image_id"][2:])),
        )
        assert tee_signer_address(verified.public_key) == address
    assert enclaves["engine"]["image_id"] != enclaves["prover"]["image_id"]
    assert market.matching_engine() == services["engine"]
    assert market.prover(services["prover"]).registered
    # Asks the tests before completed were assigned by the engine enclave to the prover's key.
    listed = json.loads(up.reef("proofs", "list", "--json").stdout)
    assert {r["prover"] for r in listed if r["state"] == "complete"} <= {services["prover"]}
    # The dev accounts the in-process engine and prover used to sign with sent nothing.
    w3 = up.devnet.web3()
    for index in (4, 5):
        assert w3.eth.get_transaction_count(up.devnet.accounts[index].address) == 0
    # And this process (the one running reef up) holds no engine or prover.
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, MatchingEngine | ProverService)]
    # What the images carry, and so measure: the reef code the apps run; for the prover also
    # snarkjs and the example circuits (by hash, as the market records them).
    from reef.enclave import load_image

    engine_files = {e.path for e in load_image(up.home.path("builds", "proofs-engine.img")).entries}
    prover_files = {e.path for e in load_image(up.home.path("builds", "proofs-prover.img")).entries}
    assert "py/reef/proofs/_engine.py" in engine_files
    assert "snarkjs/node_modules/snarkjs/package.json" in prover_files
    assert "py/reef/proofs/runtime/prove.cjs" in prover_files
    shown = json.loads(up.reef("proofs", "market", "show", "1", "--json").stdout)
    assert {f"artifacts/{h}" for h in shown["artifacts"].values()} <= prover_files
    running = up.reef("enclave", "ps", "--json")
    assert running.exit_code == 0, running.output
    ids = {e["id"] for e in json.loads(running.stdout)}
    assert {enclaves["engine"]["enclave_id"], enclaves["prover"]["enclave_id"]} <= ids


def test_a_private_input_is_proved_and_never_shown(up: Up) -> None:
    commitment = EXAMPLE.parent / "commitment"
    ask_id = up.request(
        2, "--input", str(commitment / "input.json"), "--private", str(commitment / "private.json"),
        "--reward", "1",
    )  # fmt: skip
    waited = up.wait(ask_id)
    assert waited.exit_code == 0, waited.output
    done = json.loads(waited.stdout)
    assert done["private_inputs"] is True
    assert done["inputs"] == ["7"]
    assert done["public_signals"][1] == "7"
    assert len(done["public_signals"]) == 2
    # The private input (x = 12345) appears nowhere as a number; the proof's own 77-digit numbers
    # may hold those five digits inside them by chance, which says nothing.
    assert not re.search(r"(?<![0-9])12345(?![0-9])", waited.stdout)
    verified = up.snarkjs_verify(commitment / "verification_key.json", done)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_private_inputs_go_only_to_markets_that_take_them(up: Up) -> None:
    commitment = EXAMPLE.parent / "commitment"
    k = ("--key", str(up.key), "--reward", "1")
    public = up.reef(
        "proofs", "request", "1", "--input", str(EXAMPLE / "input.json"),
        "--private", str(commitment / "private.json"), *k,
    )  # fmt: skip
    assert public.exit_code == 1
    assert "market 1 takes no private inputs" in public.output
    missing = up.reef("proofs", "request", "2", "--input", str(commitment / "input.json"), *k)
    assert missing.exit_code == 1
    assert "needs private inputs ['x']" in missing.output
    wrong = up.tmp / "wrong-private.json"
    wrong.write_text(json.dumps({"y": 1}))
    refused = up.reef(
        "proofs", "request", "2", "--input", str(commitment / "input.json"),
        "--private", str(wrong), *k,
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "the market takes ['x']" in refused.output


def test_invalid_inputs_end_invalid_without_slashing(up: Up) -> None:
    inputs = up.tmp / "bad.json"
    inputs.write_text(json.dumps({"x": str(2**64)}))
    ask_id = up.request(1, "--input", str(inputs), "--reward", "1")
    waited = up.wait(ask_id)
    assert waited.exit_code == 1  # not complete
    assert json.loads(waited.stdout)["state"] == "invalid"
    status = up.reef("proofs", "list", "--json")
    assert {r["state"] for r in json.loads(status.stdout)} >= {"invalid"}


def test_the_ivs_is_an_enclave_signing_with_its_images_kms_key(up: Up) -> None:
    import asyncio
    import gc

    import httpx

    from reef.attestation import Expectations, TrustedRoot, verify
    from reef.enclave import load_image
    from reef.kms import KmsPublicClient, fetch_identity
    from reef.proofs import InputVerifier, ProofMarketClient

    network = json.loads((up.home.root / "network.json").read_text())
    services, kms = network["services"]["proofs"], network["kms"]
    ivs = services["enclaves"]["ivs"]
    image_id = bytes.fromhex(ivs["image_id"][2:])
    root = TrustedRoot.resolve("dev", up.home)
    # The enclave runs the measured IVS image (its attestation says so) ...
    verify(
        httpx.get(ivs["attestation"], timeout=30).content,
        root=root,
        now_ms=wall_ms(),
        expect=Expectations(image_id=image_id),
    )
    # ... and the KMS root (its identity attested) derives, for that image id, the address both
    # example markets were created with and the enclave serves as.
    identity = asyncio.run(
        fetch_identity(kms["public"], root=root, image_id=bytes.fromhex(kms["image_id"]))
    )
    derived = asyncio.run(
        KmsPublicClient(kms["public"], signing_key=identity.signing_keys).address(
            "secp256k1", "reef.proofs.ivs", image_id=image_id
        )
    )
    market = ProofMarketClient(up.devnet.web3(), services["market"])
    for market_id in (services["example_market"], services["private_market"]):
        assert market.market(market_id).ivs.lower() == derived.lower()
    assert services["ivs"].lower() == ivs["address"].lower() == derived.lower()
    assert services["ivs_url"] == ivs["url"]
    assert httpx.get(ivs["url"] + "/", timeout=10).json()["address"].lower() == derived.lower()
    # The reef up process (this one) runs no input verification service.
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, InputVerifier)]
    files = {e.path for e in load_image(up.home.path("builds", "proofs-ivs.img")).entries}
    assert "py/reef/proofs/_ivs.py" in files
    shown = json.loads(up.reef("proofs", "market", "show", "1", "--json").stdout)
    assert {f"artifacts/{h}" for h in shown["artifacts"].values()} <= files


def test_market_create_from_the_cli_and_clear_errors(up: Up) -> None:
    created = up.reef(
        "proofs", "market", "create", "--groth16",
        "--wasm", str(EXAMPLE / "circuit.wasm"), "--zkey", str(EXAMPLE / "circuit.zkey"),
        "--vkey", str(EXAMPLE / "verification_key.json"), "--public-input", "x",
        "--name", "mine", "--key", str(up.key), "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    market_id = json.loads(created.stdout)["market_id"]
    shown = json.loads(up.reef("proofs", "market", "show", str(market_id), "--json").stdout)
    assert shown["name"] == "mine"
    missing = up.reef("proofs", "market", "show", "99")
    assert missing.exit_code == 1
    assert "market 99 does not exist" in missing.output
    no_ask = up.reef("proofs", "wait", "99")
    assert no_ask.exit_code == 1
    assert "ask 99 does not exist" in no_ask.output
    both = up.reef("proofs", "market", "create", "--groth16", "--tee")
    assert both.exit_code == 2
    bad = up.tmp / "notjson.json"
    bad.write_text("{")
    refused = up.reef(
        "proofs", "request", "1", "--input", str(bad), "--reward", "1", "--key", str(up.key)
    )
    assert refused.exit_code == 1
    assert "cannot read the input file" in refused.output
    status = json.loads(up.reef("prover", "status", "--key", str(up.key), "--json").stdout)
    assert status["registered"] is False


def test_a_prover_registers_joins_and_leaves_from_the_cli(up: Up) -> None:
    k = up.funded_key(3, "prover.key")
    registered = up.reef("prover", "register", "--stake", "5", "--compute", "2", *k, "--json")
    assert registered.exit_code == 0, registered.output
    joined = up.reef("prover", "join", "1", "--price", "0.2", "--max-time", "30s", *k, "--json")
    assert joined.exit_code == 0, joined.output
    status = json.loads(up.reef("prover", "status", *k, "--json").stdout)
    assert status["stake"] == "5"
    assert status["markets"] == [
        {
            "market_id": 1,
            "price": "0.2",
            "max_time": 30,
            "compute": 1,
            "active": 0,
            "leaving": False,
        }
    ]
    leaving = json.loads(up.reef("prover", "leave", "1", *k, "--json").stdout)
    assert leaving["state"] == "leaving"
    too_soon = up.reef("prover", "leave", "1", *k)
    assert too_soon.exit_code == 1
    assert "the leave delay has not passed" in too_soon.output


def test_a_tee_market_from_the_cli_signer_registration_to_a_proof(up: Up) -> None:
    import sys
    import time

    from coincurve import PrivateKey

    from reef.attestation import DevAuthority, image_id

    pcrs = {0: b"\x0a" * 48, 1: b"\x0b" * 48, 2: b"\x0c" * 48}
    u = ("--key", str(up.key))
    created = up.reef(
        "proofs", "market", "create", "--tee", "--image-id", image_id(pcrs).hex(),
        "--inputs", "1", "--name", "double", *u, "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    market_id = json.loads(created.stdout)["market_id"]
    enclave = bytes(range(1, 33))
    (up.tmp / "enclave.key").write_text(enclave.hex())
    public = PrivateKey(enclave).public_key.format(compressed=False)[1:]
    authority = DevAuthority.load_or_create(up.home)
    now_ms = wall_ms()
    wrong = authority.mint({**pcrs, 0: b"\x0f" * 48}, timestamp_ms=now_ms, public_key=public)
    (up.tmp / "wrong.att").write_bytes(wrong)
    refused = up.reef(
        "proofs", "market", "signer", str(market_id), "--evidence", str(up.tmp / "wrong.att"),
        "--root", "dev", *u,
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "image" in refused.output.lower()
    evidence = authority.mint(pcrs, timestamp_ms=now_ms, public_key=public)
    (up.tmp / "enclave.att").write_bytes(evidence)
    registered = up.reef(
        "proofs", "market", "signer", str(market_id), "--evidence", str(up.tmp / "enclave.att"),
        "--root", "dev", *u, "--json",
    )  # fmt: skip
    assert registered.exit_code == 0, registered.output
    signer = json.loads(registered.stdout)["signer"]
    assert up.reef("proofs", "market", "signer", str(market_id)).exit_code == 2

    k = up.funded_key(2, "tee-prover.key")
    assert up.reef("prover", "register", "--stake", "5", *k).exit_code == 0
    assert up.reef("prover", "join", str(market_id), "--price", "0.1", *k).exit_code == 0
    inputs = up.tmp / "tee-input.json"
    inputs.write_text(json.dumps({"a": 21}))
    ask_id = up.request(market_id, "--input", str(inputs), "--reward", "1")
    double = (
        f"{sys.executable} -c 'import json,sys; print([2*int(v) for v in json.load(sys.stdin)])'"
    )
    for _ in range(40):
        ran = up.reef(
            "prover", "run", "--once", "--market", str(market_id),
            "--tee", f"{market_id}={double}", "--tee-key", str(up.tmp / "enclave.key"), *k,
        )  # fmt: skip
        assert ran.exit_code == 0, ran.output
        if f"ask {ask_id}: proved" in ran.output:
            break
        time.sleep(0.5)
    shown = json.loads(up.reef("proofs", "show", str(ask_id), "--json").stdout)
    assert shown["state"] == "complete"
    from reef.proofs import ProofMarketClient, TeeProofSubmitted, decode_inputs

    market = ProofMarketClient(up.devnet.web3(), up.services()["market"])
    [proof] = [e for e in market.ask_events(ask_id) if isinstance(e, TeeProofSubmitted)]
    assert decode_inputs(proof.output) == (42,)
    assert proof.signer == signer


def test_an_auction_ask_is_locked_by_reef_ups_prover(up: Up) -> None:
    ask_id = up.request(
        1, "--input", str(EXAMPLE / "input.json"), "--auction", "0.05:0.5", "--ramp", "20s"
    )
    waited = up.wait(ask_id)
    assert waited.exit_code == 0, waited.output
    done = json.loads(waited.stdout)
    assert done["auction"] == {
        "min_price": "0.05",
        "max_price": "0.5",
        "ramp_end": done["auction"]["ramp_end"],
    }
    # reef up's prover quotes 0.1: it locked as soon as the price reached that.
    assert 0.1 <= float(done["price"]) < 0.5


def test_the_matching_engine_runs_from_the_cli_with_the_engines_key_only(up: Up) -> None:
    from reef.proofs import ProofMarketClient, tee_signer_address

    services = up.services()
    # reef up's engine is its enclave: neither the user's key nor dev account 4's may run it.
    engine_key = up.tmp / "engine.key"
    engine_key.write_text(up.devnet.accounts[4].private_key.hex())
    for key in (up.key, engine_key):
        refused = up.reef("proofs", "engine", "run", "--once", "--key-file", str(key))
        assert refused.exit_code == 1
        assert "is not this market's matching engine" in refused.output
    # The key the enclave published for private inputs is its attested key.
    published = ProofMarketClient(up.devnet.web3(), services["market"]).engine_key()
    assert tee_signer_address(published) == services["engine"]
    # A market of one's own, named by a network file (what reef up hands its enclaves).
    owner = up.devnet.accounts[0].local_account
    w3 = up.devnet.web3()
    mine = ProofMarketClient.deploy(
        w3, owner, token=services["token"], matching_engine=up.devnet.accounts[4].address
    )
    network = up.tmp / "network.json"
    network.write_text(
        json.dumps(
            {
                "rpc": up.network.info.rpc_url if up.network.info else "",
                "proof_market": mine.address,
                "from_block": w3.eth.block_number,
            }
        )
    )
    db = f"sqlite:///{up.tmp / 'cli-engine.db'}"
    ran = up.reef(
        "proofs", "engine", "run", "--once", "--key-file", str(engine_key), "--db", db,
        "--network", str(network), "--json",
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    step = json.loads(ran.stdout)
    assert step["engine"] == up.devnet.accounts[4].address
    assert step["engine_key"] == "0x" + mine.engine_key().hex()
