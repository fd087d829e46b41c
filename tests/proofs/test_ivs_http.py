"""The input verification service over HTTP (what a prover enclave reaches): a prover using
:class:`RemoteInputVerifier` closes an invalid ask as ``invalid`` on a real EVM, the service
refuses valid inputs with its reason, and a malformed request is a 400, not a crash."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from net_support import run_loop_in_thread
from proofs.proofs_support import settle
from proofs.test_flow import Flow
from reef.crypto import Secp256k1PrivateKey, Secp256k1PublicKey
from reef.errors import ProofError
from reef.node._serve import serve_app
from reef.proofs import AskState, ProverService, RemoteInputVerifier, ecies_encrypt, ivs_app


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[tuple[Flow, httpx.Client, RemoteInputVerifier]]:
    flow = Flow(tmp_path)
    app = ivs_app(flow.ivs, flow.chain.market())
    with run_loop_in_thread() as loop:
        served = asyncio.run_coroutine_threadsafe(
            serve_app(app, host="127.0.0.1", port=0, what="the IVS"), loop
        ).result(30)
        try:
            with httpx.Client(base_url=served.url, timeout=60) as http:
                yield flow, http, RemoteInputVerifier(served.url)
        finally:
            asyncio.run_coroutine_threadsafe(served.aclose(), loop).result(30)


@pytest.mark.slow
def test_a_prover_closes_an_invalid_ask_through_the_http_ivs(
    remote: tuple[Flow, httpx.Client, RemoteInputVerifier],
) -> None:
    flow, _http, verifier = remote
    prover = ProverService(
        flow.prover.client, flow.store, flow.runtime, verifiers={flow.market_id: verifier}
    )
    ask_id = flow.ask(2**64)  # the circuit's range check fails: no proof exists
    assert flow.engine.step().assigned == 1
    [outcome] = settle(prover)
    assert outcome.outcome == "invalid", outcome
    assert flow.chain.market().ask(ask_id).state == AskState.INVALID


def test_the_http_ivs_refuses_valid_inputs_and_bad_requests(
    remote: tuple[Flow, httpx.Client, RemoteInputVerifier],
) -> None:
    flow, http, verifier = remote
    ask_id = flow.ask(5)
    flow.engine.step()
    with pytest.raises(ProofError, match="admit a proof"):
        verifier.attest_invalid(flow.chain.market(), ask_id, "")
    assert http.post("/invalid", json={"ask": 1}).status_code == 400
    assert http.post("/invalid", content=b"{").status_code == 400
    missing = http.post("/invalid", json={"ask_id": 99})
    assert missing.status_code == 409
    assert "99" in missing.json()["error"]
    identity = http.get("/").json()
    assert identity["address"] == flow.ivs.address
    assert Secp256k1PublicKey(bytes.fromhex(identity["public_key"][2:])).checksum_address == (
        flow.ivs.address
    )
    assert http.post("/invalid", json={"ask_id": ask_id, "acl": "0x00"}).status_code == 400
    # Encrypted to another key: the IVS cannot open it, and says so.
    foreign = ecies_encrypt(Secp256k1PrivateKey.generate().public_key.raw, b"k" * 32)
    refused = http.post("/invalid", json={"ask_id": ask_id, "acl": "0x" + foreign.hex()})
    assert refused.status_code == 400
    assert "does not open" in refused.json()["error"]


class _ElsewhereMarket:
    """A market whose IVS is some other address than the service's."""

    def ask(self, ask_id: int) -> SimpleNamespace:
        return SimpleNamespace(market_id=1)

    def market(self, market_id: int) -> SimpleNamespace:
        return SimpleNamespace(ivs="0x" + "77" * 20)


def test_a_private_asks_key_goes_only_to_the_markets_ivs(
    remote: tuple[Flow, httpx.Client, RemoteInputVerifier],
) -> None:
    _flow, _http, verifier = remote
    with pytest.raises(ProofError, match="not as the market's IVS"):
        verifier.attest_invalid(_ElsewhereMarket(), 1, "", b"k" * 32)  # type: ignore[arg-type]


def test_the_remote_ivs_is_asked_through_its_transport_within_its_bounds() -> None:
    """The transport seam: the prover's request goes through it, and an answer longer than any
    signature is refused as a :class:`ProofError` naming the service, before it is read."""
    asked: list[tuple[str, bytes]] = []

    def ivs(request: httpx.Request) -> httpx.Response:
        asked.append((request.url.path, request.content))
        return httpx.Response(200, json={"signature": "0x" + "ab" * 65})

    verifier = RemoteInputVerifier("http://ivs", transport=httpx.MockTransport(ivs))
    assert verifier.attest_invalid(_ElsewhereMarket(), 7, "") == b"\xab" * 65  # type: ignore[arg-type]
    assert asked == [("/invalid", b'{"ask_id":7,"acl":null}')]

    huge = httpx.MockTransport(lambda _: httpx.Response(200, headers={"content-length": "70000"}))
    with pytest.raises(ProofError, match="input verification service at http://ivs/invalid"):
        RemoteInputVerifier("http://ivs", transport=huge).attest_invalid(_ElsewhereMarket(), 7, "")  # type: ignore[arg-type]
