"""The isolation pieces without an enclave: host requirements, the seccomp filter, the firewall."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from reef.enclave import check_host, missing_summary
from reef.enclave.local._firewall import (
    PASTA_GID_BASE,
    PASTA_GID_SPAN,
    TABLE,
    Firewall,
    _elements,
    app_uid,
    pasta_gid,
)
from reef.enclave.local._seccomp import DENIED_SYSCALLS, write_filter
from reef.errors import EnclaveError


def _host(**missing: bool) -> list:  # type: ignore[type-arg]
    return check_host(
        which=lambda tool: None if missing.get(tool) else f"/usr/bin/{tool}",
        euid=lambda: 1000 if missing.get("root") else 0,
        userns=lambda: (not missing.get("userns"), "user.max_user_namespaces is 0"),
        libseccomp=lambda: (not missing.get("libseccomp"), "no libseccomp.so.2"),
        loop_devices=lambda: not missing.get("loop"),
    )


def test_a_complete_host_has_nothing_missing() -> None:
    assert missing_summary(_host()) is None


def test_missing_pasta_names_passt_and_its_install_command() -> None:
    summary = missing_summary(_host(pasta=True))
    assert summary is not None
    what, fix = summary
    assert "pasta" in what
    assert fix == "apt-get install passt"


def test_several_missing_packages_are_one_install_command() -> None:
    summary = missing_summary(_host(bwrap=True, nft=True, pasta=True, root=True, userns=True))
    assert summary is not None
    what, fix = summary
    for name in ("root", "bwrap", "pasta", "nft", "user namespaces"):
        assert name in what
    assert "apt-get install bubblewrap nftables passt" in fix
    assert "sysctl" in fix
    assert "root" in fix


@pytest.mark.parametrize(
    "name",
    [
        "open_by_handle_at",
        "name_to_handle_at",
        "mount",
        "umount2",
        "pivot_root",
        "ptrace",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "userfaultfd",
        "setns",
        "iopl",
        "ioperm",
    ],
)
def test_the_filter_denies_what_the_issue_lists(name: str) -> None:
    assert name in DENIED_SYSCALLS


def test_the_filter_is_a_bpf_program() -> None:
    with tempfile.TemporaryFile() as out:
        write_filter(out)
        out.seek(0)
        program = out.read()
    # struct sock_filter is 8 bytes; the program ends with a return of the default (allow).
    assert len(program) % 8 == 0
    assert len(program) // 8 > len(DENIED_SYSCALLS)


def test_gids_and_uids_stay_in_their_ranges() -> None:
    for enclave_id in ("000000000000", "ffffffffffff", "a1b2c3d4e5f6"):
        assert PASTA_GID_BASE <= pasta_gid(enclave_id) < PASTA_GID_BASE + PASTA_GID_SPAN
    assert app_uid("00" * 32) != app_uid("00" * 32 + "-debug")
    for key in ("00" * 32, "ff" * 32, "ab" * 32 + "-debug"):
        assert not PASTA_GID_BASE <= app_uid(key) < PASTA_GID_BASE + PASTA_GID_SPAN


def test_firewall_elements_are_one_line_each() -> None:
    script = _elements("add", 5, published=[8080, 1300], allowed=[8545])
    assert script.splitlines() == [
        "add element inet reef_enclaves_v2 published { 1300 }",
        "add element inet reef_enclaves_v2 published { 8080 }",
        "add element inet reef_enclaves_v2 allowed { 5 . 8545 }",
    ]


# A stand-in for nft: it keeps the table as a file, refuses elements while the table is missing,
# and logs every call (its arguments, then its script) so a test sees what the firewall ran.
_FAKE_NFT = """#!/bin/sh
dir=$(dirname "$0")
if [ "$1" = list ]; then echo "list" >> "$dir/calls"; [ -e "$dir/table" ]; exit $?; fi
script=$(cat)
printf "%s\\n" "$script" | grep -m1 . >> "$dir/calls"
case "$script" in
  *"table inet"*) touch "$dir/table"; exit 0 ;;
  *) [ -e "$dir/table" ] || { echo "No such file or directory" >&2; exit 1; }
     echo "$script" >> "$dir/elements"; exit 0 ;;
esac
"""


def _fake_nft(tmp_path: Path, *, table: bool) -> Path:
    nft = tmp_path / "nft"
    nft.write_text(_FAKE_NFT)
    nft.chmod(0o755)
    if table:
        (tmp_path / "table").touch()
    return nft


def test_admitting_into_the_existing_table_runs_nft_once(tmp_path: Path) -> None:
    Firewall(str(_fake_nft(tmp_path, table=True))).admit(7, published=[8080], allowed=[8545])
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"add element inet {TABLE} published {{ 8080 }}"
    ]
    assert (tmp_path / "elements").read_text().splitlines() == [
        f"add element inet {TABLE} published {{ 8080 }}",
        f"add element inet {TABLE} allowed {{ 7 . 8545 }}",
    ]


def test_the_first_admit_on_a_machine_creates_the_table(tmp_path: Path) -> None:
    Firewall(str(_fake_nft(tmp_path, table=False))).admit(7, published=[8080], allowed=[])
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == f"add element inet {TABLE} published {{ 8080 }}"  # refused: no table
    assert calls[1] == "list"
    assert f"table inet {TABLE}" in calls[2]
    assert calls[3] == calls[0]
    assert (tmp_path / "elements").read_text().splitlines() == [calls[0]]


def test_an_admit_nft_refuses_twice_is_an_error(tmp_path: Path) -> None:
    nft = _fake_nft(tmp_path, table=False)
    nft.write_text("#!/bin/sh\ncat > /dev/null\necho 'Operation not permitted' >&2\nexit 1\n")
    with pytest.raises(EnclaveError, match="Operation not permitted"):
        Firewall(str(nft)).admit(7, published=[8080], allowed=[])
