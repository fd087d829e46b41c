"""State files are replaced atomically, owner-only unless asked, and leave no temporary behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reef.errors import ConfigError, EnclaveError
from reef.home import ReefHome, read_file, read_json, replace_file, replace_json


def test_replace_file_writes_owner_only_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    replace_file(target, b"new", durable=True)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_replace_file_honours_a_public_mode(tmp_path: Path) -> None:
    target = tmp_path / "image.img"
    replace_file(target, b"x", mode=0o644)
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_failed_replace_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "kept"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        replace_file(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_replace_file_into_a_missing_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "missing" / "file", b"x")


@pytest.mark.parametrize(("indent", "sort_keys"), [(2, False), (2, True), (1, True)])
def test_replace_json_writes_what_json_dumps_writes_and_a_newline(
    tmp_path: Path, indent: int, sort_keys: bool
) -> None:
    # The state files written before replace_json existed keep their bytes: the pins (2, sorted),
    # the upload ledger (1, sorted), network.json and the extensions' deployment.json (2).
    data = {"b": [1, {"z": None, "a": "x"}], "a": 2}
    target = tmp_path / "state.json"
    replace_json(target, data, indent=indent, sort_keys=sort_keys)
    expected = json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n"
    assert target.read_bytes() == expected.encode()
    assert json.loads(target.read_text()) == data
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_replace_json_default_layout(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    replace_json(target, {"b": 1, "a": [2]}, durable=True)
    assert target.read_text() == '{\n  "b": 1,\n  "a": [\n    2\n  ]\n}\n'


def test_read_json_reads_what_replace_json_wrote(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    replace_json(target, {"b": 1, "a": [2]})
    missing = ConfigError("no state", hint="start it")
    assert read_json(target, missing=missing, unreadable="cannot read it") == {"b": 1, "a": [2]}
    assert read_file(target, missing=missing, unreadable="cannot read it") == target.read_bytes()


def test_a_missing_file_raises_the_callers_error(tmp_path: Path) -> None:
    missing = EnclaveError("no enclave x", hint="`reef enclave ps` lists local enclaves")
    with pytest.raises(EnclaveError) as raised:
        read_json(tmp_path / "absent.json", missing=missing, unreadable="unused")
    assert raised.value is missing
    assert isinstance(raised.value.__cause__, FileNotFoundError)


def test_an_unreadable_or_invalid_file_says_why_in_the_callers_class(tmp_path: Path) -> None:
    missing = EnclaveError("no enclave x")
    with pytest.raises(EnclaveError, match=r"^the state is unreadable: Is a directory$"):
        read_file(tmp_path, missing=missing, unreadable="the state is unreadable")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EnclaveError, match="the state is unreadable: Expecting property name"):
        read_json(tmp_path / "bad.json", missing=missing, unreadable="the state is unreadable")
    (tmp_path / "latin1.json").write_bytes(b'{"a": "\xff"}')  # not UTF-8
    with pytest.raises(EnclaveError, match="the state is unreadable"):
        read_json(tmp_path / "latin1.json", missing=missing, unreadable="the state is unreadable")


def test_enclave_state_is_owner_only_and_per_image(tmp_path: Path) -> None:
    home = ReefHome(tmp_path / "home")
    first = home.enclave_state("aa" * 32)
    assert first == home.enclave_state("aa" * 32)
    assert first != home.enclave_state("bb" * 32)
    assert first.stat().st_mode & 0o777 == 0o700
    assert os.access(first, os.W_OK)
