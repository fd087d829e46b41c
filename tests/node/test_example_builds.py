"""The example images ``reef up`` builds are built once per set of inputs, not once per home:
each fresh home (``reef up --fresh``, each test's) built the serverless executor (workerd, 156
MB, gzipped: 8-11 s on two cores) and the proof market's images again."""

from __future__ import annotations

from pathlib import Path

import pytest

from reef.home import ReefHome, cache_root
from reef.node import _examples


def _builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    built: list[Path] = []
    real = _examples.build_image

    def counting(source: Path, output: Path) -> object:
        built.append(output)
        return real(source, output)

    monkeypatch.setattr(_examples, "build_image", counting)
    return built


def test_a_second_home_copies_the_first_homes_build_of_the_same_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REEF_CACHE", str(tmp_path / "cache"))
    built = _builds(monkeypatch)
    extra = tmp_path / "extra.txt"
    extra.write_text("a runtime file\n")
    first, second = ReefHome(tmp_path / "a"), ReefHome(tmp_path / "b")

    one = _examples._build_example(first, "hello", {"extra.txt": extra}, workdir=tmp_path / "w1")
    two = _examples._build_example(second, "hello", {"extra.txt": extra}, workdir=tmp_path / "w2")
    assert len(built) == 1  # the second home built nothing
    before = one.read_bytes()
    assert two.read_bytes() == before
    assert two.parent == second.root / "builds"

    # Other inputs are another build, which replaces the cache's entry for that example.
    extra.write_text("another runtime file\n")
    three = _examples._build_example(first, "hello", {"extra.txt": extra}, workdir=tmp_path / "w3")
    assert len(built) == 2
    assert three.read_bytes() != before
    assert len(list((cache_root() / "builds").glob("hello-*.img"))) == 1


def test_an_unwritable_cache_costs_only_the_next_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setenv("REEF_CACHE", str(blocked))
    built = _builds(monkeypatch)
    for name in ("a", "b"):
        image = _examples._build_example(
            ReefHome(tmp_path / name), "hello", {}, workdir=tmp_path / f"w-{name}"
        )
        assert image.is_file()
    assert len(built) == 2


def test_the_cache_follows_reef_cache_then_xdg() -> None:
    assert cache_root({"REEF_CACHE": "/c", "XDG_CACHE_HOME": "/x"}) == Path("/c")
    assert cache_root({"XDG_CACHE_HOME": "/x"}) == Path("/x/reef")
    assert cache_root({}) == Path.home() / ".cache" / "reef"
