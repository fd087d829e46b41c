"""The proof market against hostile requesters, provers and strangers, on a real EVM (the
in-process devnet), the pinned snarkjs and the IVS served over loopback HTTP.

Each test replays one attack that worked before its fix:

* a requester's public input outside BN254's scalar field: snarkjs proves it reduced, the
  chain refuses the proof (its signals must equal the ask's inputs), the IVS refused to call
  it invalid, so the honest prover was slashed and the requester pocketed its stake;
* an ask whose proving time overflows the contract's deadline arithmetic: the batch holding it
  reverted, and the engine re-sent that pending batch forever, assigning nothing else;
* private inputs nested a hundred thousand deep (a kilobyte once deflated): ``json.loads``'s
  RecursionError escaped (or, under py_ecc's raised recursion limit, the process segfaulted),
  killing the prover's loop and leaving it to be slashed; the measure of that depth must itself
  read the text once (escaped quotes without a closing one made a regex scan quadratic);
* a prover registering a 64-byte key that is no curve point: every private ask drawn to it was
  shelved for good, a free denial of service on private markets;
* a prover slashed a thousand times (free where the penalty is 0): its weight overflowed a
  float and every matching round raised;
* a stranger making the IVS run the circuit for asks that are not assigned, for markets that
  name another IVS, or for the same ask again and again;
* a hostile host answering the prover enclave's IVS requests with JSON nested too deep, or
  with megabytes (the prover parsed it all, and quoted it all in its error);
* a market whose metadata names an artifact by a path instead of a hash, or omits one, or is
  JSON of another shape (``reef proofs market show`` failed on it);
* a private value the circuit cannot take quoted in the prover's outcome, which its enclave
  logs to the host;
* a market naming a public input among its private ones, so that the requester's private value
  replaced the public one and the honest prover's proof could never be accepted.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from typer.testing import CliRunner

from net_support import run_loop_in_thread, serve_in_thread
from proofs.proofs_support import EXAMPLE, Groth16Market, ProofChain, settle
from reef.chain import serve_devnet_in_thread
from reef.errors import InvalidProofInputError, ProofError
from reef.node._serve import serve_app
from reef.proofs import (
    SCALAR_FIELD,
    ArtifactStore,
    AskState,
    Capacity,
    CircuitArtifacts,
    MarketCreated,
    MarketMetadata,
    OpenAsk,
    ProverService,
    Quote,
    RemoteInputVerifier,
    create_groth16_market,
    describe_market,
    ecies_encrypt,
    ivs_app,
    market_aad,
    match_round,
    parse_private_inputs,
    prover_weight,
)

COMMITMENT = EXAMPLE.parent / "commitment"
PENALTY, STAKE, PRICE, REWARD = 50, 500, 30, 100


class Poseidon(Groth16Market):
    """The example Poseidon market with one prover (user 1) and the matching engine."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, EXAMPLE, public_inputs=["x"], penalty=PENALTY, name="poseidon")
        self.prover_account = self.chain.users[1]
        self.prover = self.prover_service(self.prover_account, price=PRICE, stake=STAKE)
        self.engine = self.chain.matching_engine(tmp / "engine.db")

    def ask(self, x: int, *, market_id: int | None = None, proving: int = 300) -> int:
        now = self.chain.next_time()
        ask_id, _ = self.chain.market(self.requester).create_ask(
            self.market_id if market_id is None else market_id,
            [x],
            reward=REWARD,
            expiry=now + 120,
            proving_time=proving,
        )
        return ask_id


class Commitment(Groth16Market):
    """The example commitment market (``x`` private); provers join it per test."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(
            tmp, COMMITMENT, public_inputs=["salt"], private_inputs=["x"], penalty=PENALTY
        )
        self.engine = self.chain.matching_engine(tmp / "engine.db")
        self.engine.publish_key()

    def sealed_ask(self, plaintext: bytes, *, market_id: int | None = None) -> int:
        """An ask whose private body is ``plaintext`` deflated, sealed as Kalypso's format says
        (whatever it holds: a hostile requester need not use reef's encoder)."""
        market = self.chain.market(self.requester)
        market_id = self.market_id if market_id is None else market_id
        key, iv = b"\x42" * 32, b"\x24" * 12
        body = iv + AESGCM(key).encrypt(iv, zlib.compress(plaintext, 9), market_aad(market_id))
        assert len(body) <= 4096, len(body)
        now = self.chain.next_time()
        ask_id, _ = market.create_private_ask(
            market_id, [7], secret=body, acl=ecies_encrypt(market.engine_key(), key),
            reward=REWARD, expiry=now + 120, proving_time=300,
        )  # fmt: skip
        return ask_id


@pytest.fixture
def poseidon(tmp_path: Path) -> Poseidon:
    return Poseidon(tmp_path)


@pytest.fixture
def served(poseidon: Poseidon) -> Iterator[httpx.Client]:
    """The Poseidon market's IVS served over loopback HTTP, and a client of it."""
    app = ivs_app(poseidon.ivs, poseidon.chain.market())
    with run_loop_in_thread() as loop:
        server = asyncio.run_coroutine_threadsafe(
            serve_app(app, host="127.0.0.1", port=0, what="the IVS"), loop
        ).result(30)
        try:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                yield http
        finally:
            asyncio.run_coroutine_threadsafe(server.aclose(), loop).result(30)


# ---- requesters ----


@pytest.mark.slow
def test_a_public_input_outside_the_scalar_field_closes_invalid_instead_of_slashing(
    poseidon: Poseidon,
) -> None:
    # x = r + 12345 reduces to 12345 in the circuit: snarkjs proves it, but the chain checks
    # the proof's signals against the ask's inputs and the verifier refuses signals >= r.
    ask_id = poseidon.ask(SCALAR_FIELD + 12345)
    assert poseidon.engine.step().assigned == 1
    [outcome] = settle(poseidon.prover)
    assert outcome.outcome == "invalid", outcome
    market = poseidon.chain.market()
    assert market.ask(ask_id).state == AskState.INVALID
    info = market.prover(poseidon.prover_account.address)
    assert (info.stake, info.stake_locked) == (STAKE, 0)


def test_an_ask_whose_deadline_would_overflow_does_not_stall_the_engine(
    poseidon: Poseidon,
) -> None:
    # The contract computes block.timestamp + provingTime: this ask's assignment reverts.
    overflowing = poseidon.ask(1, proving=2**256 - 1)
    honest = poseidon.ask(5)
    for _ in range(3):
        poseidon.engine.step()
    market = poseidon.chain.market()
    assert market.ask(honest).state == AskState.ASSIGNED
    assert market.ask(overflowing).state == AskState.OPEN


def test_a_recorded_batch_that_reverts_is_split_and_its_culprit_dropped(
    poseidon: Poseidon,
) -> None:
    # As an engine of an earlier version (or any other cause of a revert) left it: a pending
    # batch the contract refuses as a whole must not block every later batch.
    prover = str(poseidon.prover_account.address)
    overflowing = poseidon.ask(1, proving=2**256 - 1)
    honest = poseidon.ask(5)
    poseidon.engine.record_batch([(overflowing, prover), (honest, prover)])
    later = poseidon.ask(6)
    for _ in range(5):
        poseidon.engine.step()
    market = poseidon.chain.market()
    assert market.ask(honest).state == AskState.ASSIGNED
    assert market.ask(later).state == AskState.ASSIGNED
    assert market.ask(overflowing).state == AskState.OPEN


@pytest.mark.slow
def test_private_inputs_nested_too_deep_close_invalid_and_the_prover_keeps_running(
    tmp_path: Path,
) -> None:
    flow = Commitment(tmp_path)
    account = flow.chain.users[1]
    prover = flow.prover_service(account, price=PRICE, stake=STAKE)
    key = prover.public_key
    assert key is not None
    prover.client.set_prover_key(flow.market_id, key)
    depth = 200_000
    ask_id = flow.sealed_ask(b'{"x": ' + b"[" * depth + b"]" * depth + b"}")
    assert flow.engine.step().assigned == 1
    [outcome] = settle(prover)
    assert outcome.outcome == "invalid", outcome
    market = flow.chain.market()
    assert market.ask(ask_id).state == AskState.INVALID
    assert market.prover(account.address).stake == STAKE


@pytest.mark.slow
def test_a_private_input_overriding_a_public_one_closes_invalid_instead_of_slashing(
    tmp_path: Path,
) -> None:
    # A market whose metadata (written by hand: the contract takes any) names ``salt`` both
    # public and private: the requester's private salt replaced the public one in the
    # prover's input, its proof's signals differed from the ask's, and the prover was slashed.
    flow = Commitment(tmp_path)
    chain = flow.chain
    real = chain.market().market(flow.market_id)
    good = MarketMetadata.from_json(_created_metadata(flow, flow.market_id))
    metadata = MarketMetadata("double", ("salt",), good.artifacts, ("salt", "x"))
    double, _ = chain.market(chain.users[3]).create_groth16_market(
        verifier=real.verifier,
        artifacts_hash=metadata.artifacts_hash(),
        penalty=PENALTY,
        n_inputs=1,
        ivs=flow.ivs.address,
        metadata=metadata.to_json(),
        private_inputs=True,
    )
    account = chain.users[1]
    client = chain.market(account)
    client.register(compute=2, stake=STAKE)
    client.join_market(double, price=PRICE, max_time=60, compute=1)
    prover = ProverService(client, flow.store, flow.runtime, verifiers={double: flow.ivs})
    key = prover.public_key
    assert key is not None
    client.set_prover_key(double, key)
    ask_id = flow.sealed_ask(json.dumps({"x": 12345, "salt": 8}).encode(), market_id=double)
    assert flow.engine.step().assigned == 1
    [outcome] = settle(prover)
    assert outcome.outcome == "invalid", outcome
    assert chain.market().ask(ask_id).state == AskState.INVALID
    assert chain.market().prover(account.address).stake == STAKE


def _created_metadata(flow: Groth16Market, market_id: int) -> str:
    events, _ = flow.chain.market().events_to_head(0)
    [created] = [e for e in events if isinstance(e, MarketCreated) and e.market_id == market_id]
    return created.metadata


def test_a_bad_private_value_is_not_quoted_in_the_provers_outcome(tmp_path: Path) -> None:
    # A prover enclave's outcomes go to its log, which the host reads: a private value must not
    # appear there, even one the circuit cannot take.
    flow = Commitment(tmp_path)
    account = flow.chain.users[1]
    flow.prover_service(account, price=PRICE, stake=STAKE)
    prover = ProverService(flow.chain.market(account), flow.store, flow.runtime)  # no IVS
    key = prover.public_key
    assert key is not None
    prover.client.set_prover_key(flow.market_id, key)
    secrets = ["my-passphrase", str(2**256 + 424242)]
    for secret in secrets:
        flow.sealed_ask(json.dumps({"x": secret}).encode())
    assert flow.engine.step().assigned == 2
    outcomes = prover.step()
    assert [o.outcome for o in outcomes] == ["failed", "failed"]
    for outcome, secret in zip(outcomes, secrets, strict=True):
        assert "private input x" in outcome.detail
        assert secret not in outcome.detail


@pytest.mark.parametrize(
    "plaintext",
    [b'{"x": "' + b'\\"' * 400_000, b'["' + b'\\"' * 400_000, b"[" * 400_000 + b'"'],
    ids=["escapes-in-object", "escapes-in-array", "deep-then-quote"],
)
def test_private_inputs_are_measured_in_one_pass(plaintext: bytes) -> None:
    # Escaped quotes without a closing one: a scan that looks for each string's end from every
    # quote reads the text once per quote (this round's first measure took hours on a body that
    # inflates to under a megabyte); reef.encoding.json_depth reads it once.
    with pytest.raises(InvalidProofInputError, match=r"not JSON|nest"):
        parse_private_inputs(plaintext, ["x"])


def test_a_megabyte_of_private_keys_is_not_a_megabyte_of_message() -> None:
    plaintext = json.dumps({f"k{n}": 1 for n in range(60_000)}).encode()
    with pytest.raises(InvalidProofInputError, match="the market takes") as refused:
        parse_private_inputs(plaintext, ["x"])
    assert len(str(refused.value)) < 500
    assert "59992 more" in str(refused.value)


# ---- provers ----


def test_a_prover_key_that_is_no_curve_point_does_not_shelve_private_asks(
    tmp_path: Path,
) -> None:
    flow = Commitment(tmp_path)
    hostile = flow.prover_service(flow.chain.users[2], price=1, stake=STAKE)
    # 64 bytes the contract takes as a key (it checks only the length), but no secp256k1 point.
    hostile.client.set_prover_key(flow.market_id, b"\x01" * 64)
    ask_id = flow.sealed_ask(json.dumps({"x": 12345}).encode())
    flow.engine.step()
    assert flow.chain.market().ask(ask_id).state == AskState.OPEN
    honest = flow.prover_service(flow.chain.users[1], price=PRICE, stake=STAKE)
    key = honest.public_key
    assert key is not None
    honest.client.set_prover_key(flow.market_id, key)
    flow.engine.step()
    ask = flow.chain.market().ask(ask_id)
    assert ask.state == AskState.ASSIGNED
    assert ask.prover == str(flow.chain.users[1].address)


def test_a_prover_slashed_a_thousand_times_does_not_stop_matching() -> None:
    # Slashes halve a prover's weight (2**-missed, as a float): a prover that had itself
    # slashed 1024 times in 48 hours (free in a market whose penalty is 0, with asks of its own)
    # made every round raise OverflowError, and the engine's loop died with it.
    quotes = [Quote("0xbad", 1, 0, 1, 1), Quote("0xgood", 1, 5, 60, 1)]
    capacity = {"0xbad": Capacity(10, 10, missed=1100), "0xgood": Capacity(10, 10)}
    asks = [OpenAsk(a, 1, 10, 10**9, 300) for a in range(1, 21)]
    pairs = match_round(asks, quotes, capacity, {1: 0}, now=0, limit=20)
    assert [prover for _, prover in pairs] == ["0xgood"] * 10 + ["0xbad"] * 10
    assert prover_weight(0, 1, 1100) == 0.0


# ---- strangers at the IVS ----


def test_the_ivs_runs_no_circuit_for_an_ask_that_is_not_assigned(
    poseidon: Poseidon, served: httpx.Client
) -> None:
    ask_id = poseidon.ask(2**64)  # invalid, but open: nobody may close it as invalid yet
    answer = served.post("/invalid", json={"ask_id": ask_id})
    assert answer.status_code == 409, answer.text
    assert f"ask {ask_id} is open, not assigned" in answer.json()["error"]


def test_the_ivs_runs_no_circuit_for_a_market_that_names_another_ivs(
    poseidon: Poseidon, served: httpx.Client
) -> None:
    # Anyone may create a market over the same (public) artifacts naming any IVS address.
    other = create_groth16_market(
        poseidon.chain.market(poseidon.chain.users[3]),
        CircuitArtifacts.in_folder(EXAMPLE),
        public_inputs=["x"],
        store=poseidon.store,
        penalty=PENALTY,
        ivs="0x" + "77" * 20,
    )
    poseidon.prover.client.join_market(other, price=PRICE, max_time=60, compute=1)
    ask_id = poseidon.ask(2**64, market_id=other)
    assert poseidon.engine.step().assigned == 1
    answer = served.post("/invalid", json={"ask_id": ask_id})
    assert answer.status_code == 409, answer.text
    assert "not this service" in answer.json()["error"]


@pytest.mark.slow
def test_the_ivs_judges_an_ask_once(poseidon: Poseidon, served: httpx.Client) -> None:
    ask_id = poseidon.ask(5)
    assert poseidon.engine.step().assigned == 1
    first = served.post("/invalid", json={"ask_id": ask_id})
    assert first.status_code == 409
    assert "admit a proof" in first.json()["error"]
    # The verdict stands (the inputs and the circuit cannot change): asking again does not
    # prove again, as the artifacts being gone now shows.
    for stored in poseidon.store.root.iterdir():
        stored.unlink()
    again = served.post("/invalid", json={"ask_id": ask_id})
    assert again.status_code == 409
    assert again.json()["error"] == first.json()["error"]


def _impostor(body: bytes) -> Starlette:
    """What a hostile host answers a prover enclave's IVS requests with: ``body``, as JSON."""

    async def answer(_request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Starlette(
        routes=[Route("/invalid", answer, methods=["POST"]), Route("/", answer, methods=["GET"])]
    )


@pytest.mark.parametrize(
    "body", [b"[" * 200_000, b'{"error": "' + b"x" * 8_000_000 + b'"}'], ids=["deep", "huge"]
)
def test_a_prover_survives_whatever_answers_in_place_of_its_ivs(body: bytes) -> None:
    # The prover enclave reaches its IVS across the host's network: the host may answer.
    chain = ProofChain.create(n_users=1)
    with serve_in_thread(_impostor(body)) as url:
        verifier = RemoteInputVerifier(url, timeout_s=30)
        with pytest.raises(ProofError) as refused:
            verifier.attest_invalid(chain.market(), 1, "")
        assert len(str(refused.value)) < 1000
        with pytest.raises(ProofError, match="gave no public key"):
            verifier._public_key("0x" + "77" * 20)


# ---- market creators ----


def test_an_artifact_named_by_a_path_is_refused_without_reading_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("not an artifact")
    store = ArtifactStore(tmp_path / "artifacts")
    for digest in (str(outside), "../outside", "0" * 63, "A" * 64 + "/"):
        with pytest.raises(ProofError, match="not a SHA-256") as refused:
            store.get(digest)
        assert "delete" not in str(refused.value)
    assert outside.read_text() == "not an artifact"


def test_a_market_whose_metadata_lacks_an_artifact_fails_the_task_not_the_prover(
    poseidon: Poseidon,
) -> None:
    chain = poseidon.chain
    creator = chain.market(chain.users[3])
    real = chain.market().market(poseidon.market_id)
    metadata = MarketMetadata("broken", ("x",), {"vkey": "00" * 32})
    broken, _ = creator.create_groth16_market(
        verifier=real.verifier,
        artifacts_hash=metadata.artifacts_hash(),
        penalty=PENALTY,
        n_inputs=1,
        ivs=None,
        metadata=metadata.to_json(),
    )
    poseidon.prover.client.join_market(broken, price=PRICE, max_time=60, compute=1)
    ask_id = poseidon.ask(5, market_id=broken)
    assert poseidon.engine.step().assigned == 1
    outcomes = poseidon.prover.step()
    assert [(o.ask_id, o.outcome) for o in outcomes] == [(ask_id, "failed")]
    assert "wasm" in outcomes[0].detail


@pytest.mark.parametrize(
    "metadata",
    ["[1]", '"a name"', '{"public_inputs": 5}', '{"artifacts": {"wasm": 1}}', "[" * 1000],
)
def test_metadata_that_is_no_object_of_reefs_fields_is_described_raw(metadata: str) -> None:
    # reef proofs market show and request read these fields (.get, list(...)): a market created
    # with any other JSON made both fail with a traceback.
    chain = ProofChain.create(n_users=1)
    market_id, _ = chain.market(chain.users[0]).create_tee_market(
        image_id=b"\x01" * 32, penalty=1, n_inputs=1, metadata=metadata
    )
    listing = describe_market(chain.market(), market_id)
    assert dict(listing.metadata) == {"raw": metadata}


def test_a_market_name_prints_as_text_in_the_market_list() -> None:
    # Anyone may name a market; everyone who lists the markets sees the name in a table.
    chain = ProofChain.create(n_users=1)
    name = "[link=https://evil.example]poseidon[/link]\x1b]0;owned\x07"
    chain.market(chain.users[0]).create_tee_market(
        image_id=b"\x01" * 32, penalty=1, n_inputs=1, metadata=json.dumps({"name": name})
    )
    from reef.cli import app

    with serve_devnet_in_thread(chain.devnet) as thread:
        flags = ["--rpc", thread.url, "--proof-market", chain.market_address]
        # Wide enough that no cell is cut short.
        result = CliRunner().invoke(
            app, ["proofs", "market", "list", *flags], env={"COLUMNS": "300"}
        )
    assert result.exit_code == 0, result.output
    assert "[link=https://evil.example]" in result.output
    assert "\x1b" not in result.output
