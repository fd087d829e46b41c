"""Who a client is, and how much dear work it may ask for: for every reef server.

A server facing strangers counts what each client does under its **client group**
(:func:`peer_group`): its IPv4 address, or the /64 of an IPv6 one (the block one host usually
gets; an IPv4-mapped address counts as its IPv4 address). Scallop's handshake slots and channel
caps share by group, and so do the KMS root's budgets.

A :class:`PeerBudget` bounds how much a group gets *a second*, where connection caps and
one-at-a-time turns bound how much runs *at once*: a token bucket per group that fills at
``per_second`` up to ``burst`` and refuses past it with the seconds until the next unit. An honest
client (an enclave fetching its seeds at boot, a tool asking for a few keys) stays far inside its
burst and never notices it; a client that asks without end is told to wait (a 429 with
``Retry-After``: :func:`retry_after_s`) while other groups are served as before. Its first user
is the KMS root, whose strangers make it verify attestations, derive and sign keys and ask the
chain, none of which it can charge for.

Pure: the clock is a parameter and nothing here does I/O, so it is tested without sockets.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reef.errors import InputError, MisuseError

__all__ = ["PeerBudget", "PeerRate", "peer_group", "retry_after_s"]


def peer_group(peer: Any) -> str:
    """The client group of ``peer`` (a socket's peername tuple, or an address as text): the
    IPv4 address, or the /64 of an IPv6 one; an IPv6 zone is ignored. Text that is no address
    is its own group."""
    host = peer[0] if isinstance(peer, tuple) and peer else peer
    try:
        address = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return str(host)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True, kw_only=True)
class PeerRate:
    """How much work one client group may ask for: ``burst`` units at once, refilled at
    ``per_second`` units a second.

    Raises:
        InputError: when either is not a positive finite number.
    """

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        for name, value in (("per_second", self.per_second), ("burst", self.burst)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(f"a peer rate's {name} must be a positive number, got {value!r}")


def retry_after_s(wait_s: float) -> int:
    """The whole seconds a ``Retry-After`` header gives for a wait of ``wait_s`` (at least 1)."""
    return max(1, math.ceil(wait_s))


class PeerBudget:
    """A token bucket per client group (see the module docstring).

    Args:
        rate: the refill rate and the bucket size.
        clock: seconds, monotonic (``time.monotonic`` unless injected).
        max_peers: groups remembered at most; past it the one charged longest ago is forgotten
            (it comes back with a full bucket, as any new address would).
    """

    def __init__(
        self,
        rate: PeerRate,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_peers: int = 16_384,
    ) -> None:
        if max_peers < 1:
            raise MisuseError(f"max_peers must be at least 1, got {max_peers}")
        self.rate = rate
        self._clock = clock
        self._max_peers = max_peers
        # group -> (tokens, when they were counted); least recently charged first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.refused = 0
        """Requests refused so far (all groups)."""

    def __repr__(self) -> str:
        return (
            f"PeerBudget({self.rate.per_second:g}/s, burst {self.rate.burst:g}, {len(self)} peers)"
        )

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, peer: str, now: float) -> float:
        found = self._buckets.get(peer)
        if found is None:
            return self.rate.burst
        tokens, then = found
        # max(0, ...): a clock that went backwards refills nothing rather than draining.
        return min(self.rate.burst, tokens + max(0.0, now - then) * self.rate.per_second)

    def _check_cost(self, cost: float) -> None:
        if not 0 < cost <= self.rate.burst:
            raise MisuseError(
                f"a cost of {cost} can never be paid from a burst of {self.rate.burst}",
                hint="give a cost in (0, burst]",
            )

    def wait_s(self, peer: str, cost: float = 1.0) -> float:
        """Seconds until ``peer`` may spend ``cost`` (0.0: now); nothing is spent."""
        self._check_cost(cost)
        missing = cost - self._tokens(peer, self._clock())
        return max(0.0, missing / self.rate.per_second)

    def take(self, peer: str, cost: float = 1.0) -> float:
        """Spend ``cost`` of ``peer``'s budget if it has that much: 0.0 when spent, else the
        seconds until it will have (nothing is spent then: a refused request costs nothing).

        Raises:
            MisuseError: when ``cost`` is not in (0, burst].
        """
        self._check_cost(cost)
        now = self._clock()
        tokens = self._tokens(peer, now)
        if tokens < cost:
            self.refused += 1
            return (cost - tokens) / self.rate.per_second
        self._buckets[peer] = (tokens - cost, now)
        self._buckets.move_to_end(peer)
        while len(self._buckets) > self._max_peers:
            self._buckets.popitem(last=False)
        return 0.0
