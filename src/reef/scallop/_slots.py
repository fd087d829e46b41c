"""Handshake slots shared fairly among peer addresses (pure logic: no sockets, no clock of its own).

A Scallop server runs at most ``capacity`` handshakes at once, because each one holds memory and
a task until it finishes or times out. With one shared pool and first come, first served, a
crowd of clients that open connections and never finish (or finish slowly on purpose) holds
every slot and honest enclaves are turned away for as long as the crowd stays (issue 11: 300
stalled handshakes, 0 of 4 enclaves served). The rules here keep slots for honest clients:

1. **A small share per address.** One peer address holds at most ``per_peer`` slots and queued
   connections (IPv6 peers are counted per /64, the block one host usually gets); more from it
   are refused at once.
2. **When every slot is taken, heavier peers yield.** A newcomer takes a slot of a peer holding
   more than the newcomer's peer does: the many connections of one source give way to the first
   connection of another, and a peer holding nothing therefore always gets a slot.
3. **When every slot is taken, stalled handshakes are dropped early.** Otherwise (the newcomer's
   peer holds as many as anyone) it takes the slot of a handshake that has run for
   ``busy_timeout`` seconds: an honest handshake takes milliseconds, and the full handshake
   timeout is only for when slots are free.

   Which of those slots goes (:func:`_drop_order`): first one still waiting for its client's
   first message (an honest client sends it at once), from the peer with the most such stalled
   slots, then the oldest. Counting stalled slots rather than all of a peer's matters: one
   host's several enclaves handshaking at once hold more slots than each of a crowd of
   addresses with two stalled slots apiece, and must not be the ones who yield (CI saw an
   enclave of four refused its seed that way while 125 addresses flooded the KMS root).
4. Otherwise the newcomer waits for the next slot its own peer frees (the server bounds the
   wait by the handshake timeout, and refuses it after): several enclaves of one host that connect at once take turns
   instead of being refused, and cost no other peer a slot.

The server passes the time in; :class:`HandshakeSlots` decides and keeps the counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Admission", "HandshakeSlots", "Slot"]


@dataclass(eq=False)
class Slot:
    """One handshake in progress, or (``waiting``) a connection queued for its peer's next free
    slot. ``owner`` is whatever the server needs to stop or wake it."""

    peer: str
    started: float
    owner: Any = None
    evicted: bool = False
    waiting: bool = False
    under_way: bool = False
    """The client's first message is in; such handshakes are dropped after stalled ones."""


@dataclass(frozen=True)
class Admission:
    """What :meth:`HandshakeSlots.admit` decided.

    ``slot`` is the newcomer's slot, or None when it is refused (``reason`` says why). A slot
    with ``waiting`` set is a place in its peer's queue: :meth:`HandshakeSlots.release` of one of
    that peer's slots hands it over (or :meth:`HandshakeSlots.give_up` ends the wait).
    ``evict`` is a handshake the server must stop now to make room (its slot is already freed).
    """

    slot: Slot | None
    evict: Slot | None = None
    reason: str = ""


@dataclass
class HandshakeSlots:
    """The handshake slots of one server; see the module docstring for the rules."""

    capacity: int
    per_peer: int
    busy_timeout: float
    _slots: dict[Slot, None] = field(default_factory=dict)  # insertion order: oldest first
    _by_peer: dict[str, dict[Slot, None]] = field(default_factory=dict)
    _waiting: dict[str, dict[Slot, None]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._slots)

    def held_by(self, peer: str) -> int:
        return len(self._by_peer.get(peer, ()))

    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    def admit(self, peer: str, now: float) -> Admission:
        """A slot for a new connection from ``peer`` at time ``now``, a place in its peer's
        queue, or why not."""
        held = self.held_by(peer)
        queued = len(self._waiting.get(peer, ()))
        if held + queued >= self.per_peer:
            return Admission(
                None,
                reason=f"{held + queued} handshakes already in progress from {peer} "
                f"(at most {self.per_peer} per address)",
            )
        victim: Slot | None = None
        if len(self._slots) >= self.capacity:
            heavier = [s for s in self._slots if self.held_by(s.peer) > held]
            old = heavier or [s for s in self._slots if now - s.started >= self.busy_timeout]
            victim = min(old, key=self._drop_order, default=None)
            if victim is None:
                # Only a peer that holds as many as anyone gets here, so it holds at least one:
                # its next free slot goes to this connection, at no other peer's expense
                # (several enclaves of one host); the server bounds the wait.
                place = Slot(peer, now, waiting=True)
                self._waiting.setdefault(peer, {})[place] = None
                return Admission(place)
            victim.evicted = True
            self._free(victim)
        return Admission(self._take(peer, now), evict=victim)

    def _take(self, peer: str, now: float) -> Slot:
        slot = Slot(peer, now)
        self._slots[slot] = None
        self._by_peer.setdefault(peer, {})[slot] = None
        return slot

    def _drop_order(self, slot: Slot) -> tuple[bool, int, float]:
        """Which handshake goes first (rule 3's second paragraph): stalled before under way,
        from the peer with the most stalled slots, then the oldest."""
        if slot.under_way:
            return (True, 0, slot.started)
        stalled = sum(not s.under_way for s in self._by_peer[slot.peer])
        return (False, -stalled, slot.started)

    def _free(self, slot: Slot) -> bool:
        if slot not in self._slots:
            return False
        del self._slots[slot]
        mine = self._by_peer[slot.peer]
        del mine[slot]
        if not mine:
            del self._by_peer[slot.peer]
        return True

    def release(self, slot: Slot, now: float) -> Slot | None:
        """Free ``slot`` (idempotent: a slot freed by eviction may be released again).

        Returns the place of the connection that gets it (its peer's longest waiting one, now
        holding a slot of its own, ``waiting`` cleared), or None.
        """
        if not self._free(slot):
            return None
        queue = self._waiting.get(slot.peer)
        if not queue:
            return None
        place = next(iter(queue))
        self._drop_wait(place)
        place.waiting = False
        place.started = now
        self._slots[place] = None
        self._by_peer.setdefault(place.peer, {})[place] = None
        return place

    def give_up(self, place: Slot) -> None:
        """End a wait without a slot (the waiting connection timed out or closed)."""
        self._drop_wait(place)

    def _drop_wait(self, place: Slot) -> None:
        queue = self._waiting.get(place.peer)
        if queue is not None and place in queue:
            del queue[place]
            if not queue:
                del self._waiting[place.peer]
