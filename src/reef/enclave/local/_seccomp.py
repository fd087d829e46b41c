"""The seccomp filter every local enclave's app runs under.

The app already has no capabilities and its own user namespace, so most of these calls would fail
anyway; the filter takes away the kernel surface itself (handle-based opens, mounts, namespaces,
keyrings, BPF, io_uring, userfaultfd, ptrace), which is where sandbox escapes come from, so that a
kernel bug behind one of them cannot be reached at all. Refused calls return ``EPERM`` (programs handle that
better than being killed); ``clone3`` returns ``ENOSYS`` because its flags sit in a struct the
filter cannot read, which makes libc fall back to ``clone``, whose flags it can. System calls of
another architecture (x32, i386 through ``int 0x80``) kill the process: libseccomp's default for a
foreign architecture, and the classic way around a native-only filter.

The BPF program is built by libseccomp (through ``pyseccomp``, a ctypes binding with the same API
as libseccomp's own Python module, which PyPI does not carry), not by hand: the syscall numbers
and the architecture checks are exactly what that library maintains.
"""

from __future__ import annotations

import errno
import stat
from typing import BinaryIO

from reef.errors import EnclaveError

__all__ = ["DENIED_SYSCALLS", "write_filter"]

# Refused outright.
DENIED_SYSCALLS = (
    "open_by_handle_at",
    "name_to_handle_at",
    "mount",
    "umount2",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "pivot_root",
    "chroot",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "setns",
    "iopl",
    "ioperm",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "lookup_dcookie",
    "syslog",
    "personality",
)
_S_IFMT = 0o170000  # stat.S_IFMT is a function in Python
_CLONE_NEW = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)


def write_filter(out: BinaryIO) -> None:
    """Write the filter as a BPF program (the form ``bwrap --seccomp FD`` loads) to ``out``.

    Raises:
        EnclaveError: when libseccomp is missing (names the package to install).
    """
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as exc:  # OSError: the binding found no libseccomp.so.2
        raise EnclaveError(
            f"cannot build the enclave's seccomp filter: {exc}",
            hint="install libseccomp (Debian: apt-get install libseccomp2)",
        ) from exc
    refuse = sc.ERRNO(errno.EPERM)
    rules = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED_SYSCALLS:
        rules.add_rule(refuse, name)
    for flag in _CLONE_NEW:
        rules.add_rule(refuse, "unshare", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        rules.add_rule(refuse, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    # Device nodes: the mode's file type is a character or block device.
    for name, mode_arg in (("mknod", 1), ("mknodat", 2)):
        for kind in (stat.S_IFCHR, stat.S_IFBLK):
            rules.add_rule(refuse, name, sc.Arg(mode_arg, sc.MASKED_EQ, _S_IFMT, kind))
    # TIOCSTI/TIOCLINUX push input into a terminal: an old escape from sandboxes sharing one.
    for request in (0x5412, 0x541C):
        rules.add_rule(refuse, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    out.flush()
    rules.export_bpf(out)
    out.flush()
