"""The control plane's parts: Oyster rate files, the content-addressed image store over HTTP,
image downloads with hash and allow/deny checks, and the list files operators write."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from market.provider_support import serve_image_store
from reef.errors import ConfigError, ImageError, MarketError, ServiceError
from reef.market import (
    ImageFetcher,
    ImagePolicy,
    ImageStore,
    RateCard,
    UploadPolicy,
    bandwidth_kbit_s,
    image_store_app,
    parse_u256,
    read_list_file,
    upload_image,
)

# -- rate files (reference 4.3) ---------------------------------------------------------------

OYSTER_RATES = [
    {
        "region": "ap-south-1",
        "rate_cards": [
            {
                "instance": "c5.xlarge",
                "min_rate": "52500000000000",
                "cpu": 4,
                "memory": 8192,
                "arch": "amd64",
            },
            {
                "instance": "c6g.large",
                "min_rate": "0x2fbf9bd9c800",
                "cpu": 2,
                "memory": 4096,
                "arch": "arm64",
            },
        ],
    }
]
OYSTER_BANDWIDTH = [
    {"region": "Asia Pacific (Mumbai)", "region_code": "ap-south-1", "rate": "90000000000000000"}
]


def test_oyster_rate_files_parse_and_serve_as_hex() -> None:
    card = RateCard.parse(OYSTER_RATES, OYSTER_BANDWIDTH)
    assert card.lookup("ap-south-1", "c5.xlarge").min_rate == 52_500_000_000_000
    assert card.lookup("ap-south-1", "c6g.large").min_rate == 0x2FBF9BD9C800
    assert card.gb_rate("ap-south-1") == 9 * 10**16
    spec = card.spec_json()
    assert spec["allowed_regions"] == ["ap-south-1"]
    assert spec["min_rates"][0]["rate_cards"][0]["min_rate"] == hex(52_500_000_000_000)
    assert card.bandwidth_json()["rates"][0]["rate"] == hex(9 * 10**16)
    # what /spec serves parses back to the same offer (our client reads other providers)
    assert RateCard.parse(spec["min_rates"], card.bandwidth_json()["rates"]) == card


def test_rate_files_from_disk(tmp_path: Path) -> None:
    rates, bandwidth = tmp_path / "rates.json", tmp_path / "bw.json"
    rates.write_text(json.dumps(OYSTER_RATES))
    bandwidth.write_text(json.dumps(OYSTER_BANDWIDTH))
    assert RateCard.from_files(rates, bandwidth).allowed_regions == ("ap-south-1",)
    with pytest.raises(ConfigError, match="not found"):
        RateCard.from_files(tmp_path / "missing.json")
    rates.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        RateCard.from_files(rates)


@pytest.mark.parametrize(
    ("rates", "needle"),
    [
        ({"region": "x"}, "JSON list"),
        ([{"rate_cards": []}], "no 'region'"),
        ([{"region": "r", "rate_cards": [{"instance": "i", "cpu": 1, "memory": 1}]}], "min_rate"),
        (
            [
                {
                    "region": "r",
                    "rate_cards": [{"instance": "i", "min_rate": "1.5", "cpu": 1, "memory": 1}],
                }
            ],
            "not a decimal",
        ),
        (
            [
                {
                    "region": "r",
                    "rate_cards": [{"instance": "i", "min_rate": 1, "cpu": 0, "memory": 1}],
                }
            ],
            "cpu must be a positive",
        ),
        (
            [
                {
                    "region": "r",
                    "rate_cards": [
                        {"instance": "i", "min_rate": 1, "cpu": 1, "memory": 1},
                        {"instance": "i", "min_rate": 2, "cpu": 1, "memory": 1},
                    ],
                }
            ],
            "listed twice",
        ),
    ],
)
def test_bad_rate_files_name_the_entry(rates: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        RateCard.parse(rates)


def test_u256_bounds() -> None:
    assert parse_u256("0x" + "f" * 64, name="x") == 2**256 - 1
    with pytest.raises(ConfigError, match="uint256"):
        parse_u256(2**256, name="x")
    with pytest.raises(ConfigError):
        parse_u256(True, name="x")


def test_lookup_says_what_is_offered() -> None:
    card = RateCard.dev()
    with pytest.raises(MarketError) as info:
        card.lookup("local", "c5.metal")
    assert info.value.hint == "this provider offers: dev.small, dev.medium"
    with pytest.raises(MarketError, match="region 'mars'"):
        card.lookup("mars", "dev.small")


def test_bandwidth_formula() -> None:
    # one GB per second above the minimum is 8 * 1024 * 1024 kbit/s (reference 4.5)
    assert bandwidth_kbit_s(10 + 9 * 10**16, 10, 9 * 10**16) == 8 * 1024 * 1024
    assert bandwidth_kbit_s(10, 10, 9 * 10**16) == 0
    assert bandwidth_kbit_s(100, 10, 0) == 0


# -- list files -----------------------------------------------------------------------------------


def test_list_files(tmp_path: Path) -> None:
    path = tmp_path / "list"
    digest = "ab" * 32
    path.write_text(f"# images we run\n0x{digest.upper()}  # the app\n\n")
    assert read_list_file(path, kind="sha256") == {digest}
    path.write_text("0x" + "Ab" * 20 + "\n")
    assert read_list_file(path, kind="address") == {"0x" + "ab" * 20}
    path.write_text("not-a-hash\n")
    with pytest.raises(ConfigError, match=":1: not a SHA-256"):
        read_list_file(path, kind="sha256")
    with pytest.raises(ConfigError, match="cannot read"):
        read_list_file(tmp_path / "nope", kind="address")


# -- the image store over HTTP --------------------------------------------------------------------


async def test_image_store_http(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    app = image_store_app(
        store, uploads=UploadPolicy.anyone(), public_url="http://store.example", max_bytes=64
    )
    data = b"an image"
    digest = hashlib.sha256(data).hexdigest()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
        put = await client.put(f"/images/{digest}", content=data)
        assert put.status_code == 201
        assert put.json() == {
            "sha256": digest,
            "size": len(data),
            "url": f"http://store.example/images/{digest}",
        }
        assert (await client.get(f"/images/{digest}")).content == data
        wrong = await client.put(f"/images/{'00' * 32}", content=data)
        assert wrong.status_code == 400
        assert "hash to" in wrong.json()["error"]
        assert not store.has("00" * 32)
        assert (await client.put("/images/xyz", content=data)).status_code == 400
        assert (await client.get(f"/images/{'11' * 32}")).status_code == 404
        big = await client.post("/images", content=b"x" * 65)
        assert big.status_code == 413
        posted = await client.post("/images", content=b"other")
        assert posted.json()["sha256"] == hashlib.sha256(b"other").hexdigest()
        assert (await client.get("/health")).json() == {"ok": True}
    assert sorted(store) == sorted([digest, hashlib.sha256(b"other").hexdigest()])
    assert [p.name for p in (tmp_path / "store").iterdir() if p.name.startswith(".")] == []


async def test_upload_image_client(tmp_path: Path) -> None:
    import asyncio

    served = await serve_image_store(ImageStore(tmp_path / "store"))
    try:
        image = tmp_path / "app.img"
        image.write_bytes(b"\x00image" * 1000)
        digest, url = await asyncio.to_thread(upload_image, served.url, image, signer=None)
        assert digest == hashlib.sha256(image.read_bytes()).hexdigest()
        assert url == f"{served.url}/images/{digest}"
    finally:
        await served.aclose()
    with pytest.raises(ServiceError, match="cannot reach the image store"):
        await asyncio.to_thread(upload_image, served.url, image, signer=None)


# -- downloads ------------------------------------------------------------------------------------

IMAGE = b"the image bytes"
SHA = hashlib.sha256(IMAGE).hexdigest()


def _transport(calls: list[str], *, status: int = 200, body: bytes = IMAGE) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(status, content=body)

    return httpx.MockTransport(handler)


async def test_fetch_checks_the_content_address_and_caches(tmp_path: Path) -> None:
    calls: list[str] = []
    fetcher = ImageFetcher(ImageStore(tmp_path), transport=_transport(calls))
    first = await fetcher.fetch(f"http://h/images/{SHA}")
    assert (first.sha256, first.path.read_bytes()) == (SHA, IMAGE)
    await fetcher.fetch(f"http://other/{SHA}")  # same content address: no download
    assert len(calls) == 1
    plain = await fetcher.fetch("http://h/app.eif")  # not content-addressed: hashed anyway
    assert plain.sha256 == SHA


async def test_fetch_refusals(tmp_path: Path) -> None:
    calls: list[str] = []
    other = hashlib.sha256(b"x").hexdigest()
    fetcher = ImageFetcher(ImageStore(tmp_path), transport=_transport(calls))
    with pytest.raises(ImageError, match="hashes to"):
        await fetcher.fetch(f"http://h/images/{other}")
    assert not ImageStore(tmp_path).has(other)
    with pytest.raises(ImageError, match="only http"):
        await fetcher.fetch(f"file:///etc/{SHA}")
    with pytest.raises(ImageError, match="only http"):
        await fetcher.fetch("ipfs://bafy")
    denied = ImageFetcher(ImageStore(tmp_path), ImagePolicy(deny=frozenset({SHA})),
                          transport=_transport(calls))  # fmt: skip
    with pytest.raises(ImageError, match="deny list"):
        await denied.fetch("http://h/app.eif")
    allowed = ImageFetcher(ImageStore(tmp_path), ImagePolicy(allow=frozenset({other})),
                           transport=_transport(calls))  # fmt: skip
    with pytest.raises(ImageError, match="not on this provider's allow list"):
        await allowed.fetch(f"http://h/{SHA}")
    small = ImageFetcher(ImageStore(tmp_path / "s"), max_bytes=4, transport=_transport(calls))
    with pytest.raises(ImageError, match="larger than"):
        await small.fetch("http://h/app.eif")
    missing = ImageFetcher(ImageStore(tmp_path), transport=_transport(calls, status=404))
    with pytest.raises(ImageError, match="HTTP 404"):
        await missing.fetch("http://h/gone.eif")
    flaky = ImageFetcher(ImageStore(tmp_path), transport=_transport(calls, status=503))
    with pytest.raises(ServiceError, match="HTTP 503"):
        await flaky.fetch("http://h/later.eif")


async def test_file_urls_only_when_allowed(tmp_path: Path) -> None:
    image = tmp_path / "app.img"
    image.write_bytes(IMAGE)
    fetcher = ImageFetcher(ImageStore(tmp_path / "cache"), allow_file_urls=True)
    fetched = await fetcher.fetch(image.as_uri())
    assert fetched.sha256 == SHA
