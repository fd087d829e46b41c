"""The backend conformance suite (reef.testing.check_backend) on every backend reef has."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from dev_tee_support import requires_isolation
from reef.attestation import DevAuthority
from reef.enclave import EnclaveBackend, LocalBackend, build_image, open_backend
from reef.errors import ConformanceError
from reef.home import ReefHome
from reef.testing import FakeBackend, ManualClock, check_backend

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("conformance")
    first = root / "hello.img"
    build_image(HELLO, first)
    src = root / "hello-two"
    shutil.copytree(HELLO, src)
    manifest = src / "reef.toml"
    manifest.write_text(manifest.read_text().replace("hello from a reef enclave", "version two"))
    second = root / "hello-two.img"
    build_image(src, second)
    return first, second


async def test_the_fake_backend_conforms(images: tuple[Path, Path]) -> None:
    await check_backend(FakeBackend(), *images)


@pytest.mark.slow
@requires_isolation
@pytest.mark.skipif(sys.platform != "linux", reason="the dev TEE runs on Linux")
async def test_the_local_backend_conforms(images: tuple[Path, Path], reef_home: Path) -> None:
    home = ReefHome(reef_home)
    backend = open_backend(home, authority=DevAuthority.load_or_create(home))
    assert isinstance(backend, LocalBackend)
    await check_backend(backend, *images)
    assert [i for i in await backend.list() if i.state in ("starting", "running")] == []


class _ForgetsLabels(FakeBackend):
    async def update(self, enclave_id, spec):  # type: ignore[no-untyped-def]
        info = await super().update(enclave_id, spec)
        from dataclasses import replace

        return replace(info, labels=dict(spec.labels))


class _NeverExpires(FakeBackend):
    async def renew(self, enclave_id: str, until_ms: int | None) -> None:
        return None


@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        (_ForgetsLabels(), "merge the labels"),
        (_NeverExpires(clock_ms=ManualClock()), "past its lease"),
    ],
)
async def test_the_suite_catches_a_broken_backend(
    images: tuple[Path, Path], broken: EnclaveBackend, complaint: str
) -> None:
    with pytest.raises(ConformanceError, match=complaint):
        await check_backend(broken, *images, lease_wait_s=2)
