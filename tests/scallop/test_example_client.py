"""The Scallop client example answers a malformed query with a 400 naming the parameter (it was
a 500 from ``int()``/``bytes.fromhex``): it is sample code users copy, and its callers are
whoever reaches the enclave's port."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from reef.attestation import DevAuthority, TrustedRoot
from reef.home import ReefHome

EXAMPLE = Path(__file__).parents[2] / "examples" / "scallop" / "client" / "app.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scallop_client_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # importing it reaches no network
    return module


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("", "port must be a TCP port number"),
        ("port=http", "port must be a TCP port number"),
        ("port=70000", "port must be a TCP port number"),
        ("port=1100&image_id=00", "image_id"),
        ("port=1100&image_id=zz", "image_id"),
    ],
)
async def test_a_malformed_query_is_a_400_naming_it(tmp_path: Path, query: str, words: str) -> None:
    example = _example()
    home = ReefHome(tmp_path)
    DevAuthority.load_or_create(home)
    example.app.state.root = TrustedRoot.dev(home)
    transport = httpx.ASGITransport(app=example.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://client") as http:
        answer = await http.get(f"/call?{query}")
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
