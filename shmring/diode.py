"""A diode: a one-way queue whose producer never reads anything its consumer can write.

The ring region and the data region are mapped read-write by the producer and read-only by the
consumer, and the consumer keeps its head index privately: nothing the consumer does can reach
the producer (no free ring, no head, no signal-request flag). The producer therefore cannot know
whether the consumer keeps up. It never blocks: frame ``s`` goes into slot and buffer
``s mod capacity``, overwriting what the consumer has not read. The consumer detects that from
the free-running tail and counts the frames it lost as ``overrun`` (the only side that can
know); each frame is copied out and re-checked after the copy (a seqlock on ``reserved``), so
a frame overwritten mid-copy is dropped, never delivered torn.

Layout of the ring region: ``tail`` (u64, frames published) and ``reserved`` (u64, frames being
written, announced before any byte of them is) on one 64-byte line, then ``capacity``
descriptors (``DESC_DTYPE``). Frames live in the data region at ``(s mod capacity) * buffer_size``.

Notifications: the producer signals its eventfd after every batch (it cannot read a request
flag); eventfd signals coalesce, and the producer ignores the write's outcome.
"""

from __future__ import annotations

import mmap

import numpy as np

from shmring.descriptor import DESC_DTYPE
from shmring.notify import signal
from shmring.region import Region
from shmring.ring import M64, _check_capacity

HEADER = 64


def diode_bytes(capacity: int) -> int:
    _check_capacity(capacity)
    size = HEADER + capacity * DESC_DTYPE.itemsize
    return (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE


class _Frames:
    """The consumer's private copy of delivered frames (it stands where ``data`` would)."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self.array = np.zeros(size, dtype=np.uint8)


class _DiodeEnd:
    kind = "diode"
    want_returns = True     # as a queue end's: wake on freed slots (see shmring.queue)

    def __init__(self, name: str, rings: Region, data: Region, capacity: int,
                 buffer_size: int) -> None:
        _check_capacity(capacity)
        if capacity * buffer_size > data.size:
            raise ValueError(f"diode '{name}': {capacity} buffers of {buffer_size} B exceed "
                             f"the data region's {data.size} B")
        self.name, self.capacity, self.buffer_size = name, capacity, buffer_size
        self.rings = rings
        self._mask = capacity - 1
        # word 0: tail (published frames); word 1: reserved (frames being written, >= tail)
        self._tail_word = np.ndarray(2, dtype=np.uint64, buffer=rings.mem, offset=0)
        self._slots = np.ndarray(capacity, dtype=DESC_DTYPE, buffer=rings.mem, offset=HEADER)
        self.counters: dict[str, int] = {}

    def _count(self, key: str, n: int) -> None:
        if n:
            self.counters[key] = self.counters.get(key, 0) + int(n)

    def stats(self) -> dict[str, int]:
        return dict(self.counters)


class DiodeProducer(_DiodeEnd):
    role = "producer"

    def __init__(self, name: str, rings: Region, data: Region, capacity: int,
                 buffer_size: int, notify_fd: int | None) -> None:
        super().__init__(name, rings, data, capacity, buffer_size)
        self.data = data
        self.notify_fd = notify_fd
        self._tail = int(self._tail_word[0])      # its own index: written, never read back
        self._dirty = False

    def space(self) -> int:
        """Always the capacity: a diode never refuses (old frames are overwritten)."""
        return self.capacity

    def send_frames(self, source: np.ndarray, batch: np.ndarray) -> int:
        """Copy each frame ``source[offset:offset+length]`` into the diode and publish them."""
        n = min(len(batch), self.capacity)
        if n < len(batch):
            self._count("dropped_batch_overflow", len(batch) - n)
        if not n:
            return 0
        lengths = np.minimum(batch["length"][:n], self.buffer_size).astype(np.int64)
        self._count("truncated", int(np.count_nonzero(batch["length"][:n] > self.buffer_size)))
        seqs = (self._tail + np.arange(n, dtype=np.uint64)) & np.uint64(M64)
        slot = (seqs & np.uint64(self._mask)).astype(np.int64)
        dest = slot * self.buffer_size
        src = batch["offset"][:n].astype(np.int64)
        data = self.data.array
        self._tail_word[1] = (self._tail + n) & M64      # announce what is about to be overwritten
        for d, s, ln in zip(dest.tolist(), src.tolist(), lengths.tolist(), strict=True):
            data[d:d + ln] = source[s:s + ln]
        out = batch[:n].copy()
        out["offset"] = dest.astype(np.uint64)
        out["length"] = lengths.astype(np.uint32)
        out["meta"] = seqs                        # the consumer's overwrite check
        self._slots[slot] = out
        self._tail = (self._tail + n) & M64
        self._tail_word[0] = self._tail
        self._count("sent", n)
        self._dirty = True
        return n

    def pending(self) -> int:
        return 0

    def arm(self) -> int:
        return 0

    def disarm(self) -> None:
        pass

    def taken(self) -> int:
        return 0

    def flush(self, force: bool = False) -> bool:
        if not (self._dirty or force) or self.notify_fd is None:
            return False
        self._dirty = False
        signal(self.notify_fd)
        return True


class DiodeConsumer(_DiodeEnd):
    role = "consumer"

    def __init__(self, name: str, rings: Region, data: Region, capacity: int,
                 buffer_size: int) -> None:
        super().__init__(name, rings, data, capacity, buffer_size)
        self.shared = data
        self.data = _Frames(data.name, capacity * buffer_size)
        self._head = int(self._tail_word[0])      # private: start from what is there now

    def _tail(self) -> int:
        return int(self._tail_word[0])

    def pending(self) -> int:
        ahead = (self._tail() - self._head) & M64
        return ahead if ahead <= M64 >> 1 else 0

    def arm(self) -> int:
        return self.pending()

    def disarm(self) -> None:
        pass

    def taken(self) -> int:
        return self._head

    def receive(self, max_n: int | None = None) -> np.ndarray:
        """Copy up to ``max_n`` frames out; their descriptors point into ``self.data``."""
        tail = self._tail()
        ahead = (tail - self._head) & M64
        if ahead > M64 >> 1:              # the tail went backwards: a producer bug, not ours
            self._count("index_faults", 1)
            return np.empty(0, dtype=DESC_DTYPE)
        if ahead > self.capacity:         # overwritten before we got to them
            self._count("overrun", ahead - self.capacity)
            self._head = (tail - self.capacity) & M64
            ahead = self.capacity
        n = ahead if max_n is None else min(ahead, max(0, max_n))
        if not n:
            return np.empty(0, dtype=DESC_DTYPE)
        seqs = (self._head + np.arange(n, dtype=np.uint64)) & np.uint64(M64)
        slot = (seqs & np.uint64(self._mask)).astype(np.int64)
        batch = self._slots[slot].copy()
        good = (batch["meta"] == seqs) & (batch["length"] <= self.buffer_size) & \
            (batch["offset"] == slot.astype(np.uint64) * np.uint64(self.buffer_size))
        shared, private = self.shared.array, self.data.array
        for off, ln in zip(batch["offset"][good].astype(np.int64).tolist(),
                           batch["length"][good].astype(np.int64).tolist(), strict=True):
            private[off:off + ln] = shared[off:off + ln]
        reserved = int(self._tail_word[1])
        # anything the producer may have started to overwrite during the copy is not trusted:
        # frame s is reused by frame s + capacity, which exists once reserved > s + capacity
        overwritten = ((reserved - seqs) & np.uint64(M64)) > np.uint64(self.capacity)
        self._count("overrun", int(np.count_nonzero(good & overwritten)))
        self._count("bad_descriptor", int(np.count_nonzero(~good)))
        self._head = (self._head + n) & M64
        keep = good & ~overwritten
        self._count("received", int(np.count_nonzero(keep)))
        return batch[keep]

    def release(self, batch: np.ndarray, defer: bool = True) -> int:
        """Nothing goes back through a diode; the private copies are simply reused."""
        return len(batch)

    def settle(self) -> int:
        """Nothing ever waits to go back."""
        return 0

    def flush(self, force: bool = False) -> bool:
        return False
