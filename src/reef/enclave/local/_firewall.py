"""Which host addresses an enclave's network may reach: an nftables table on the host.

An enclave's outbound traffic leaves through its pasta process, which connects from the host's
own network namespace. Left alone, pasta therefore lets the app reach everything the host can:
its loopback services (the devnet with unlocked accounts, the image store, the KMS), its other
interfaces' addresses, and every other enclave's internal ports. The dev TEE stops that on the
host side, where the app cannot touch it:

- each enclave's pasta runs with a group id of its own (:func:`pasta_gid`), in a range only
  pastas use, so the kernel knows which socket belongs to which enclave;
- one nftables table (:data:`TABLE`) rejects any new connection from that range to an address of
  this host (``fib daddr type local``: loopback and every interface), except to a host port that
  an enclave publishes (set ``published``: the way enclaves talk to each other, as they would
  through a Nitro host's forwarded ports) or that this enclave was given (set ``allowed``:
  ``gid . port``, the "trusted base it is given"). Traffic to other machines is untouched, and
  so are packets of connections already admitted (pasta answering a client of a published port
  sends from a socket of the enclave's group, to the client's own port).

A second table (:data:`LIMIT_TABLE`) caps how many connections one enclave holds open at once
(counted by nftables per pasta group): :data:`MAX_CONNECTIONS` in all, since each is an entry of
the host's connection-tracking table, which one enclave filled for the whole host otherwise; and
:data:`MAX_HOST_CONNECTIONS` to the host's addresses, since every connection from another
enclave arrives through the target's pasta from 127.0.0.1, so a server's cap of connections per
peer is one cap for all enclaves, and one enclave that held it (130 connections to another's
attestation port) had every other client of that server refused.

That count leaves out what the kernel calls closed (TCP's TIME_WAIT and CLOSE), which still
hold an entry of the table for two minutes and ten seconds: an app that opened and closed
connections in batches, never holding many, left 20 000 entries in ten seconds. So the same
table also forgets pasta's closed TCP connections after :data:`CLOSED_TIMEOUT_S` (a conntrack
timeout policy, set on each new connection) and lets one enclave open at most
:data:`NEW_PER_SECOND` TCP connections a second (burst :data:`NEW_BURST`): what it leaves
behind closed is then at most about ``NEW_PER_SECOND * CLOSED_TIMEOUT_S + NEW_BURST`` entries.

The tables are created once and shared by every enclave on the machine; an enclave adds its own
elements when it boots and removes them when it ends (and reef's cleanup after a crash does too).
nftables is driven through the ``nft`` command (Debian ``nftables``), the kernel's supported
interface for it; a script per call keeps each change atomic.
"""

# ruff: noqa: S603, S608  (runs nft with argument lists and a script on stdin, never a shell;
# its scripts are nftables, not SQL)
from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterable

from reef.errors import EnclaveError

__all__ = [
    "CLOSED_TIMEOUT_S",
    "LIMIT_TABLE",
    "MAX_CONNECTIONS",
    "MAX_HOST_CONNECTIONS",
    "NEW_BURST",
    "NEW_PER_SECOND",
    "PASTA_GID_BASE",
    "PASTA_GID_SPAN",
    "TABLE",
    "Firewall",
    "app_uid",
    "pasta_gid",
]

TABLE = "reef_enclaves_v2"
PASTA_GID_BASE = 0x40000000
PASTA_GID_SPAN = 0x01000000
_APP_UID_BASE = 0x50000000
LIMIT_TABLE = "reef_enclave_limits_v3"
MAX_CONNECTIONS = 4096
"""Connections one enclave may hold open at once, to anywhere: each is one pasta opens from the
host, and an entry of the host's connection-tracking table (kept two minutes after an unanswered
SYN), which one enclave could otherwise fill for the whole host."""
CLOSED_TIMEOUT_S = 2
"""How long the host's connection tracking keeps a TCP connection of pasta's once it is closed
(TIME_WAIT, CLOSE; the kernel's defaults are 120 s and 10 s), uncounted by the cap above."""
NEW_PER_SECOND = 500
"""New TCP connections one enclave may open a second (each leaves an entry behind when it
closes, for :data:`CLOSED_TIMEOUT_S`)."""
NEW_BURST = 1000
"""The burst above :data:`NEW_PER_SECOND` it may open at once."""
MAX_HOST_CONNECTIONS = 64
"""Connections one enclave may hold open at once to this host's addresses (other enclaves'
published ports, the host ports it was given): half the serving floor's cap per peer, which
every enclave's connections share once pasta has forwarded them."""

_CREATE = f"""
table inet {TABLE} {{
  set published {{ type inet_service; }}
  set allowed {{ typeof meta skgid . tcp dport; }}
  chain output {{
    type filter hook output priority filter; policy accept;
    ct state established,related accept
    meta skgid != {PASTA_GID_BASE}-{PASTA_GID_BASE + PASTA_GID_SPAN - 1} accept
    fib daddr type != local accept
    tcp dport @published accept
    meta skgid . tcp dport @allowed accept
    counter reject
  }}
}}
"""


_CREATE_LIMITS = f"""
table inet {LIMIT_TABLE} {{
  ct timeout closed_soon {{
    protocol tcp;
    l3proto inet;
    policy = {{ time_wait: {CLOSED_TIMEOUT_S}, close: {CLOSED_TIMEOUT_S} }}
  }}
  set openers {{ typeof meta skgid; flags dynamic,timeout; timeout 1m; size 65536; }}
  set holders {{ typeof meta skgid; flags dynamic; size 65536; }}
  set host_holders {{ typeof meta skgid; flags dynamic; size 65536; }}
  chain output {{
    type filter hook output priority filter; policy accept;
    meta skgid != {PASTA_GID_BASE}-{PASTA_GID_BASE + PASTA_GID_SPAN - 1} accept
    ct state != new accept
    meta l4proto tcp update @openers \
      {{ meta skgid limit rate over {NEW_PER_SECOND}/second burst {NEW_BURST} packets }} \
      counter reject
    add @holders {{ meta skgid ct count over {MAX_CONNECTIONS} }} counter reject
    fib daddr type local add @host_holders {{ meta skgid ct count over {MAX_HOST_CONNECTIONS} }} \
      counter reject
    meta l4proto tcp ct timeout set "closed_soon"
  }}
}}
"""


def pasta_gid(enclave_id: str) -> int:
    """The group id the enclave's pasta runs with (from its random id; unique in practice)."""
    return PASTA_GID_BASE + int(enclave_id[:6], 16) % PASTA_GID_SPAN


def app_uid(state_key: str) -> int:
    """The host user id an app runs as: unprivileged, and the owner of its ``/state``.

    Per state key (the image id, marked for debug enclaves) rather than per enclave, because
    enclaves of one image share their state; apps of different images never share a user.
    """
    digest = hashlib.sha256(state_key.encode()).digest()
    return _APP_UID_BASE + int.from_bytes(digest[:3], "big")


class Firewall:
    """The host's enclave table; every method needs root (as the network namespaces do)."""

    def __init__(self, nft: str = "nft") -> None:
        self.nft = nft

    @staticmethod
    def available() -> str | None:
        """None when ``nft`` exists, else why not (with the install command)."""
        if shutil.which("nft") is None:
            return "nft not found (apt-get install nftables)"
        return None

    def _run(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=30
        )
        if check and result.returncode != 0:
            raise EnclaveError(
                f"nftables refused the enclave firewall: {result.stderr.strip()}",
                hint="local enclaves need root and a kernel with nf_tables (apt-get install "
                "nftables); or run with --insecure (no isolation of the host's addresses)",
            )
        return result

    def ensure(self) -> None:
        """Create the table unless it exists (it is never replaced: others' elements live in it)."""
        self._ensure(TABLE, _CREATE)

    def ensure_limits(self) -> None:
        """Create the connection-count table unless it exists (never replaced: it counts the
        connections of running enclaves)."""
        self._ensure(LIMIT_TABLE, _CREATE_LIMITS)

    def _ensure(self, table: str, script: str) -> None:
        listed = subprocess.run(
            [self.nft, "list", "table", "inet", table], capture_output=True, text=True, timeout=30
        )
        if listed.returncode != 0:
            self._run(script)

    def admit(self, gid: int, *, published: Iterable[int], allowed: Iterable[int]) -> None:
        """Publish an enclave's host ports and allow it the host ports it was given (the
        connection cap is :meth:`ensure_limits`'s)."""
        script = _elements("add", gid, published, allowed)
        # The table outlives every enclave, so it is there but for the first boot on a machine:
        # one nft run adds the elements (a script is all or nothing), and the table is looked
        # for and created only when that run fails.
        if script and self._run(script, check=False).returncode == 0:
            return
        self.ensure()
        if script:
            self._run(script)

    def forget(self, gid: int, *, published: Iterable[int], allowed: Iterable[int]) -> None:
        """Remove what :meth:`admit` added; elements already gone are fine."""
        for line in _elements("delete", gid, published, allowed).splitlines():
            self._run(line, check=False)


def _elements(verb: str, gid: int, published: Iterable[int], allowed: Iterable[int]) -> str:
    lines = [f"{verb} element inet {TABLE} published {{ {int(p)} }}" for p in sorted(published)]
    lines += [
        f"{verb} element inet {TABLE} allowed {{ {gid} . {int(p)} }}" for p in sorted(allowed)
    ]
    return "\n".join(lines)
