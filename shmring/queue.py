"""sDDF queue pairs: an *active* ring carries filled buffers from producer to consumer, a *free*
ring returns empty buffers to the producer. Both rings live in one sealed region per queue,
mapped read-write by both ends; the frames live in a separate data region.

Everything that crosses is checked: indices by the rings' shadows, descriptors by the process's
``BufferLedger`` (bounds, alignment, length, duplicates), so a hostile peer can lose frames it was
given but never make this end follow a bad descriptor, read garbage, spin or raise.
"""

from __future__ import annotations

import mmap

import numpy as np

from shmring.descriptor import DESC_DTYPE
from shmring.fence import full_fence
from shmring.ledger import SMALL, BufferLedger
from shmring.notify import signal
from shmring.region import Region
from shmring.ring import SLOT, RingConsumer, RingProducer, peek_offsets, ring_bytes
from shmring.ring import occupancy as _ring_occupancy

STAT_KEYS = ("sent", "received", "released", "reclaimed", "full", "bad_offset", "bad_alignment",
             "bad_length", "duplicate", "not_held", "index_faults", "signals")


_EMPTY = np.zeros(0, DESC_DTYPE)


def queue_bytes(capacity: int) -> int:
    size = 2 * ring_bytes(capacity)
    return (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE


def occupancy(rings: Region, capacity: int) -> tuple[int, int]:
    """(frames on the active ring, buffers on the free ring), as the supervisor sees them."""
    return (_ring_occupancy(rings.mem, 0, capacity),
            _ring_occupancy(rings.mem, ring_bytes(capacity), capacity))


def buffers_on_rings(rings: Region, capacity: int) -> np.ndarray:
    """Offsets of every buffer on the queue's two rings (the supervisor's view)."""
    return np.concatenate((peek_offsets(rings.mem, 0, capacity),
                           peek_offsets(rings.mem, ring_bytes(capacity), capacity)))


class QueueEnd:
    """One end of a queue pair; see the module docstring. Not thread-safe (one PD, one end)."""

    kind = "pair"

    def __init__(self, name: str, role: str, rings: Region, data: Region, capacity: int,
                 ledger: BufferLedger, notify_fd: int | None, wait_fd: int | None) -> None:
        if role not in ("producer", "consumer"):
            raise ValueError(f"queue '{name}': role must be producer or consumer, got {role!r}")
        if rings.size < queue_bytes(capacity):
            raise ValueError(f"queue '{name}': ring region too small for capacity {capacity}")
        self.name, self.role, self.capacity = name, role, capacity
        self.rings, self.data, self.ledger = rings, data, ledger
        self.notify_fd, self.wait_fd = notify_fd, wait_fd
        active, free = 0, ring_bytes(capacity)
        if role == "producer":
            self._out = RingProducer(rings.mem, active, capacity)
            self._in = RingConsumer(rings.mem, free, capacity)
        else:
            self._in = RingConsumer(rings.mem, active, capacity)
            self._out = RingProducer(rings.mem, free, capacity)
        self._dirty = False
        self._unreleased: list[np.ndarray] = []   # released, no room on the free ring yet
        # a producer with buffers enough to go on may set this False: its runtime then asks
        # for no wake-up when buffers come back (they are taken at its next turn), so its
        # consumer is spared an eventfd write per release
        self.want_returns = True
        self.counters: dict[str, int] = {}

    # -- producer side -------------------------------------------------------------------------
    def send(self, batch: np.ndarray) -> int:
        """Hand filled buffers to the consumer; returns how many left (the rest stay held)."""
        if self.role != "producer":
            self._expect("producer", "send")
        return self._push(batch, "sent")

    def reclaim(self, max_n: int | None = None) -> np.ndarray:
        """Empty buffers the consumer returned (validated; now held here)."""
        if self.role != "producer":
            self._expect("producer", "reclaim")
        return self._pull(max_n, "reclaimed")

    def send_bytes(self, raw) -> int:
        """``send`` from raw descriptor bytes (``shmring.descriptor`` layout, 32 per
        descriptor): a few good ones reach the ring without a numpy array in between."""
        if self.role != "producer":
            self._expect("producer", "send")
        return self._push_bytes(raw, "sent")

    def reclaim_bytes(self, max_n: int | None = None) -> bytearray:
        """``reclaim``, as raw descriptor bytes."""
        if self.role != "producer":
            self._expect("producer", "reclaim")
        return self._pull_bytes(max_n, "reclaimed")

    def space(self) -> int:
        """How many descriptors the outgoing ring can take now."""
        return self._out.free_space()

    # -- consumer side -------------------------------------------------------------------------
    def receive(self, max_n: int | None = None) -> np.ndarray:
        """Filled buffers from the producer (validated; now held here)."""
        if self.role != "consumer":
            self._expect("consumer", "receive")
        return self._pull(max_n, "received")

    def release(self, batch: np.ndarray, defer: bool = True) -> int:
        """Return buffers to the producer; returns how many left now. What the free ring has no
        room for stays held here: with ``defer`` (the default) it waits, in order, and leaves
        with ``settle()`` (which the runtime calls every turn), so a consumer never retries a
        release itself; without, the caller keeps it and tries again."""
        if self.role != "consumer":
            self._expect("consumer", "release")
        if not defer:
            return self._push(batch, "released")
        if self._unreleased and self.settle():
            self._unreleased.append(batch.copy())
            return 0
        n = self._push(batch, "released")
        if n < len(batch):
            self._unreleased.append(batch[n:].copy())
        return n

    def receive_bytes(self, max_n: int | None = None) -> bytearray:
        """``receive``, as raw descriptor bytes."""
        if self.role != "consumer":
            self._expect("consumer", "receive")
        return self._pull_bytes(max_n, "received")

    def release_bytes(self, raw) -> int:
        """``release`` (deferred) from raw descriptor bytes."""
        if self.role != "consumer":
            self._expect("consumer", "release")
        if self._unreleased:        # what waits goes first, in order
            return self.release(np.frombuffer(raw, dtype=DESC_DTYPE))
        n = self._push_bytes(raw, "released")
        if n * SLOT < len(raw):
            self._unreleased.append(np.frombuffer(raw, dtype=DESC_DTYPE)[n:].copy())
        return n

    def settle(self) -> int:
        """Push released buffers still waiting for room; returns how many still wait."""
        while self._unreleased:
            first = self._unreleased[0]
            n = self._push(first, "released", count_full=False)
            if n < len(first):
                self._unreleased[0] = first[n:]
                break
            self._unreleased.pop(0)
        return sum(len(b) for b in self._unreleased)

    # -- both ------------------------------------------------------------------------------------
    def pending(self) -> int:
        """Descriptors waiting on this end's incoming ring."""
        return self._in.available()

    def arm(self) -> int:
        """Request a wake-up on the incoming ring and re-check; 0 means it is safe to sleep."""
        return self._in.request_signal()

    def disarm(self) -> None:
        """Withdraw a wake-up request (there is work; signals would only cost the peer)."""
        self._in.cancel_signal()

    def taken(self) -> int:
        """Free-running count of descriptors this end has taken off its incoming ring."""
        return self._in.position()

    def flush(self, force: bool = False) -> bool:
        """Wake the peer if this end enqueued since the last flush (or ``force``) and the peer
        asked for a signal."""
        if not (self._dirty or force):
            return False
        self._dirty = False
        if self.notify_fd is None:
            return False
        full_fence()        # the tail we wrote is visible before the request is read
        if not self._out.signal_requested():
            return False
        self._out.clear_signal_request()
        signal(self.notify_fd)
        self.counters["signals"] = self.counters.get("signals", 0) + 1
        return True

    def stats(self) -> dict[str, int]:
        """Counters: sent/received, released/reclaimed, full (refused for lack of space),
        bad_offset/bad_alignment/bad_length/duplicate, not_held, index_faults, and signals (the
        wake-ups this end sent its peer)."""
        out = dict.fromkeys(STAT_KEYS, 0)
        out.update(self.counters)
        out["index_faults"] = self._in.index_faults + self._out.index_faults
        return out

    def close(self) -> None:
        """Let go of the ring region's memory (the regions themselves are closed by their
        owner); idempotent."""
        self._in.close()
        self._out.close()

    # -- internals -------------------------------------------------------------------------------
    def _expect(self, role: str, what: str) -> None:
        raise RuntimeError(f"queue '{self.name}': {what}() is for the {role} end")

    def _push(self, batch: np.ndarray, key: str, count_full: bool = True) -> int:
        if len(batch) <= SMALL and batch.dtype is DESC_DTYPE:     # a few: as raw bytes
            return self._push_bytes(batch.tobytes(), key, count_full)
        n = self._room(len(batch), count_full)
        if n:
            self._enqueue_checked(batch[:n], key)
        return n

    def _push_bytes(self, raw, key: str, count_full: bool = True) -> int:
        """``_push`` from raw bytes: a few good descriptors go straight to the ring; anything
        else is checked by the ledger's careful path, which counts what is wrong."""
        want = len(raw) // SLOT
        n = self._room(want, count_full)
        if not n:
            return 0
        raw = raw[:n * SLOT]
        if n <= SMALL and self.ledger.move_small(raw, True):
            sent = self._out.enqueue_bytes(raw)
            self.counters[key] = self.counters.get(key, 0) + sent
            self._dirty = True
        else:
            self._enqueue_checked(np.frombuffer(raw, dtype=DESC_DTYPE), key)
        return n

    def _room(self, want: int, count_full: bool) -> int:
        """How many of ``want`` descriptors fit; the rest are counted as ``full``."""
        n = self._out.room_for(want)
        if n < want and count_full:
            self.counters["full"] = self.counters.get("full", 0) + want - n
        return n

    def _enqueue_checked(self, batch: np.ndarray, key: str) -> None:
        sent = self._out.enqueue(self.ledger.surrender(batch, self.counters))
        self.counters[key] = self.counters.get(key, 0) + sent
        self._dirty = True

    def _pull_bytes(self, max_n: int | None, key: str) -> bytearray:
        """Descriptors off the incoming ring, validated (``_pull``'s raw form): a few good ones
        are checked in plain Python, anything else by the ledger's careful path."""
        raw = self._in.dequeue_raw(max_n)
        if raw and (len(raw) > SMALL * SLOT or not self.ledger.move_small(raw, False)):
            batch = np.frombuffer(raw, dtype=DESC_DTYPE)
            good = self.ledger.accept(batch, self.counters)
            if good is not batch:
                raw = bytearray(good.tobytes())
        if raw:
            self.counters[key] = self.counters.get(key, 0) + len(raw) // SLOT
        return raw

    def _pull(self, max_n: int | None, key: str) -> np.ndarray:
        raw = self._pull_bytes(max_n, key)
        return np.frombuffer(raw, dtype=DESC_DTYPE) if raw else _EMPTY
