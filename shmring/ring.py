"""Single-producer single-consumer descriptor rings in shared memory (sDDF's queue, hardened).

Layout at the ring's offset (64-byte lines so the two ends never write the same line)::

    +0    tail              u64  written by the producer only: free-running count of enqueues
    +64   head              u64  written by the consumer only: free-running count of dequeues
    +128  signal_requested  u64  the consumer sets it to ask to be woken; the producer clears it
    +192  slots             capacity x 32-byte descriptors (shmring.descriptor.DESC_DTYPE)

Indices run free over 64 bits and wrap at 2**64; all comparisons are modular. The capacity is a
private constructor argument of each end, never read from shared memory (sDDF notes that a
writable capacity lets a peer cause out-of-bounds accesses).

Each end keeps a *shadow* of both indices and only ever writes its own. The peer's index is
validated against the shadow before use: a producer accepts a head only between the last head it
saw and its own tail; a consumer accepts a tail only if it is no more than ``capacity`` ahead of
its head and did not move backwards. A bad value is counted in ``index_faults`` and ignored, so a
peer scribbling on the indices cannot make this end read outside the slots, spin, or raise.

Ordering: slots are written before the index that publishes them. On x86-64 (TSO) stores are not
reordered with other stores, which is all this needs; the signal protocol's store-then-load pairs
may be reordered, so sleepers block with a bounded timeout (``shmring.notify``).
"""

from __future__ import annotations

import numpy as np

from shmring.descriptor import DESC_DTYPE

M64 = (1 << 64) - 1
HEADER = 192
_TAIL, _HEAD, _SIGNAL = 0, 8, 16        # u64 word indices into the header
MAX_CAPACITY = 1 << 20


def ring_bytes(capacity: int) -> int:
    _check_capacity(capacity)
    return HEADER + capacity * DESC_DTYPE.itemsize


def _check_capacity(capacity: int) -> None:
    if not (2 <= capacity <= MAX_CAPACITY and capacity & (capacity - 1) == 0):
        raise ValueError(f"ring capacity must be a power of two 2..{MAX_CAPACITY}, got {capacity}")


SLOT = DESC_DTYPE.itemsize


class _RingEnd:
    def __init__(self, buf, offset: int, capacity: int) -> None:
        _check_capacity(capacity)
        self.capacity = capacity
        self._mask = capacity - 1
        # plain memoryviews: a header word costs ~50 ns and a slot copy is one memcpy, where
        # numpy scalar and structured-array operations cost microseconds per batch
        view = memoryview(buf)
        self._hdr = view[offset:offset + HEADER].cast("Q")
        self._slots = view[offset + HEADER:offset + HEADER + capacity * SLOT]
        # At attach time the shared indices are taken as they are (zero for a new ring, the
        # current state for a restarted component); a nonsensical pair is reset to empty.
        self._tail = self._hdr[_TAIL]
        self._head = self._hdr[_HEAD]
        if (self._tail - self._head) & M64 > capacity:
            self._head = self._tail
        self.index_faults = 0


class RingProducer(_RingEnd):
    """The end that enqueues: owns ``tail``, reads (and validates) ``head``."""

    def _peer_head(self) -> int:
        head = self._hdr[_HEAD]
        if (head - self._head) & M64 <= (self._tail - self._head) & M64:
            self._head = head
        else:
            self.index_faults += 1
        return self._head

    def free_space(self) -> int:
        return self.capacity - ((self._tail - self._peer_head()) & M64)

    def enqueue(self, batch: np.ndarray) -> int:
        """Copy up to ``free_space()`` descriptors into the slots, then publish them at once."""
        if not len(batch):
            return 0
        return self.enqueue_bytes(np.ascontiguousarray(batch).view(np.uint8).data)

    def enqueue_bytes(self, raw: memoryview) -> int:
        """The same from raw descriptor bytes (a multiple of 32): the allocation-free path."""
        head = self._hdr[_HEAD]                   # _peer_head(), inlined on the hot path
        if (head - self._head) & M64 <= (self._tail - self._head) & M64:
            self._head = head
        else:
            self.index_faults += 1
        n = self.capacity - ((self._tail - self._head) & M64)
        if len(raw) < n * SLOT:
            n = len(raw) // SLOT
        if n <= 0:
            return 0
        start = self._tail & self._mask
        first = min(n, self.capacity - start)
        self._slots[start * SLOT:(start + first) * SLOT] = raw[:first * SLOT]
        if n > first:
            self._slots[:(n - first) * SLOT] = raw[first * SLOT:n * SLOT]
        self._tail = (self._tail + n) & M64
        self._hdr[_TAIL] = self._tail
        return n

    def signal_requested(self) -> bool:
        return bool(self._hdr[_SIGNAL])

    def clear_signal_request(self) -> None:
        self._hdr[_SIGNAL] = 0


class RingConsumer(_RingEnd):
    """The end that dequeues: owns ``head``, reads (and validates) ``tail``."""

    def _peer_tail(self) -> int:
        tail = self._hdr[_TAIL]
        if (tail - self._tail) & M64 <= (self._head + self.capacity - self._tail) & M64:
            self._tail = tail
        else:
            self.index_faults += 1
        return self._tail

    def available(self) -> int:
        return (self._peer_tail() - self._head) & M64

    def dequeue(self, max_n: int | None = None) -> np.ndarray:
        """A private copy of up to ``max_n`` descriptors; the slots are released at once."""
        n = self.available()
        if max_n is not None:
            n = min(n, max(0, max_n))
        out = np.empty(n * SLOT, dtype=np.uint8)
        if n:
            self._copy_out(out.data, n)
        return out.view(DESC_DTYPE)

    def dequeue_into(self, raw: memoryview) -> int:
        """Copy as many descriptors as fit into ``raw`` (bytes); returns how many."""
        tail = self._hdr[_TAIL]                   # _peer_tail(), inlined on the hot path
        if (tail - self._tail) & M64 <= (self._head + self.capacity - self._tail) & M64:
            self._tail = tail
        else:
            self.index_faults += 1
        n = (self._tail - self._head) & M64
        if len(raw) < n * SLOT:
            n = len(raw) // SLOT
        if n:
            self._copy_out(raw, n)
        return n

    def _copy_out(self, raw: memoryview, n: int) -> None:
        start = self._head & self._mask
        first = min(n, self.capacity - start)
        raw[:first * SLOT] = self._slots[start * SLOT:(start + first) * SLOT]
        if n > first:
            raw[first * SLOT:n * SLOT] = self._slots[:(n - first) * SLOT]
        self._head = (self._head + n) & M64
        self._hdr[_HEAD] = self._head

    def position(self) -> int:
        """This end's own (free-running) head index."""
        return self._head

    def request_signal(self) -> int:
        """Ask to be woken, then re-check: a non-zero answer means do not sleep."""
        self._hdr[_SIGNAL] = 1
        return self.available()

    def cancel_signal(self) -> None:
        self._hdr[_SIGNAL] = 0


def peek_offsets(buf, offset: int, capacity: int) -> np.ndarray:
    """Buffer offsets of the descriptors on a ring, as an observer (the supervisor) sees them."""
    hdr = np.ndarray(_HEAD + 1, dtype=np.uint64, buffer=buf, offset=offset)
    head = int(hdr[_HEAD])
    used = (int(hdr[_TAIL]) - head) & M64
    if used > capacity:
        return np.empty(0, dtype=np.uint64)
    slots = np.ndarray(capacity, dtype=DESC_DTYPE, buffer=buf, offset=offset + HEADER)
    index = (head + np.arange(used, dtype=np.uint64)) & np.uint64(capacity - 1)
    return slots["offset"][index.astype(np.int64)]


def occupancy(buf, offset: int, capacity: int) -> int:
    """Descriptors on a ring as seen by an observer (the supervisor); 0 if indices are nonsense."""
    hdr = np.ndarray(_HEAD + 1, dtype=np.uint64, buffer=buf, offset=offset)
    used = (int(hdr[_TAIL]) - int(hdr[_HEAD])) & M64
    return used if used <= capacity else 0
