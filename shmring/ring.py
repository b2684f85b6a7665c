"""Single-producer single-consumer descriptor rings in shared memory (sDDF's queue, hardened).

Layout at the ring's offset (64-byte lines so the two ends never write the same line)::

    +0    tail              u64  written by the producer only: free-running count of enqueues
    +64   head              u64  written by the consumer only: free-running count of dequeues
    +128  signal_requested  u32  the consumer sets it to ask to be woken; the producer clears it
    +192  slots             capacity x 32-byte descriptors (shmring.descriptor.DESC_DTYPE)

Indices run free over 64 bits and wrap at 2**64; every comparison is modular (``M64`` masks).
The capacity is a private constructor argument of each end, never read from shared memory (sDDF
notes that a writable capacity lets a peer cause out-of-bounds accesses).

Each end keeps a *shadow* of both indices and only ever writes its own. The peer's index is
validated against the shadow before use: a producer accepts a head only between the last head it
saw and its own tail; a consumer accepts a tail only if it did not move backwards and is no more
than ``capacity`` ahead of its head. A bad value is counted in ``index_faults`` and ignored (the
last good value stands), so a peer scribbling on the indices cannot make this end read outside
the slots, spin, or raise.

Copies are whole byte ranges (one or two slices when the batch wraps). The consumer copies the
slots out *before* it publishes its head, so a hostile producer that rewrites slots afterwards
cannot change what was validated.

Ordering: slots are written before the index that publishes them. x86-64 is TSO: stores are not
reordered with other stores and loads not with other loads, which is all the data path needs.
The signal protocol's store-then-load pairs may be reordered, so sleepers block with a bounded
timeout (``shmring.notify``) and a rare lost wake-up costs at most that.
"""

from __future__ import annotations

import numpy as np

from shmring.descriptor import DESC_DTYPE
from shmring.fence import full_fence

M64 = (1 << 64) - 1
LINE = 64
HEADER = 3 * LINE
_TAIL, _HEAD = 0, LINE // 8             # u64 word indices into the header
_SIGNAL = 2 * LINE // 4                 # u32 word index into the header
MAX_CAPACITY = 1 << 20
SLOT = _SLOT = DESC_DTYPE.itemsize


def ring_bytes(capacity: int) -> int:
    """Bytes a ring of ``capacity`` slots occupies (header + slots)."""
    _check_capacity(capacity)
    return HEADER + capacity * _SLOT


def _check_capacity(capacity: int) -> None:
    if not (isinstance(capacity, int) and 2 <= capacity <= MAX_CAPACITY
            and capacity & (capacity - 1) == 0):
        raise ValueError(f"ring capacity must be a power of two 2..{MAX_CAPACITY}, got {capacity}")


def _as_bytes(batch: np.ndarray) -> bytes:
    """The batch's raw bytes (converted to DESC_DTYPE first if it is another layout).

    ``tobytes`` is the cheapest route for small batches: numpy's structured-array views cost
    about a microsecond each, a copy of a few KiB much less."""
    if batch.dtype is not DESC_DTYPE and batch.dtype != DESC_DTYPE:
        names = batch.dtype.names or ()
        if not set(names) <= set(DESC_DTYPE.names):
            raise TypeError(f"not a descriptor batch: fields {names}")
        converted = np.zeros(len(batch), dtype=DESC_DTYPE)     # missing fields stay zero
        for name in names:
            converted[name] = batch[name]
        batch = converted
    return batch.tobytes()


class _RingEnd:
    def __init__(self, buf, offset: int, capacity: int) -> None:
        _check_capacity(capacity)
        self.capacity = capacity
        self._mask = capacity - 1
        view = memoryview(buf)
        if view.readonly:
            raise ValueError("a ring end needs a writable buffer")
        if offset < 0 or offset % 8 or offset + ring_bytes(capacity) > view.nbytes:
            raise ValueError(f"ring of capacity {capacity} at offset {offset} does not fit "
                             f"in a buffer of {view.nbytes} bytes")
        whole = view.cast("B")
        self._hdr = whole[offset:offset + HEADER].cast("Q")
        self._flag = whole[offset:offset + HEADER].cast("I")
        self._slots = whole[offset + HEADER:offset + ring_bytes(capacity)]
        # At attach time the shared indices are taken as they are (zero for a new ring, the
        # current state for a restarted component); a nonsensical pair is reset to empty.
        self._tail = self._hdr[_TAIL]
        self._head = self._hdr[_HEAD]
        if (self._tail - self._head) & M64 > capacity:
            self._head = self._tail
        self.index_faults = 0

    def close(self) -> None:
        """Let go of the shared buffer (so its mapping can be unmapped); idempotent."""
        for view in ("_hdr", "_flag", "_slots"):
            mv = getattr(self, view, None)
            if mv is not None:
                mv.release()
                setattr(self, view, None)


class RingProducer(_RingEnd):
    """The end that enqueues: owns ``tail``, reads (and validates) ``head``."""

    def _peer_head(self) -> int:
        head = self._hdr[_HEAD]
        if head != self._head:
            if (head - self._head) & M64 <= (self._tail - self._head) & M64:
                self._head = head
            else:
                self.index_faults += 1
        return self._head

    def free_space(self) -> int:
        return self.capacity - ((self._tail - self._peer_head()) & M64)

    def room_for(self, n: int) -> int:
        """min(n, free space), reading the consumer's head only when the shadow says the ring
        is too full: on a steady stream this keeps the head's cache line on the consumer."""
        room = self.capacity - ((self._tail - self._head) & M64)
        if room < n:
            room = self.free_space()
        return min(n, room)

    def enqueue(self, batch: np.ndarray) -> int:
        """Copy up to ``free_space()`` descriptors into the slots, then publish them at once;
        returns how many were enqueued (the first ones of ``batch``)."""
        n = self.room_for(len(batch))
        if n <= 0:
            return 0
        src = _as_bytes(batch if n == len(batch) else batch[:n])
        start = self._tail & self._mask
        first = min(n, self.capacity - start)
        self._slots[start * _SLOT:(start + first) * _SLOT] = src[:first * _SLOT]
        if n > first:
            self._slots[:(n - first) * _SLOT] = src[first * _SLOT:]
        self._tail = (self._tail + n) & M64
        self._hdr[_TAIL] = self._tail
        return n

    def enqueue_bytes(self, raw) -> int:
        """The same from raw descriptor bytes (a multiple of 32): the allocation-free path."""
        n = self.room_for(len(raw) // _SLOT)
        if n <= 0:
            return 0
        start = self._tail & self._mask
        first = min(n, self.capacity - start)
        self._slots[start * _SLOT:(start + first) * _SLOT] = raw[:first * _SLOT]
        if n > first:
            self._slots[:(n - first) * _SLOT] = raw[first * _SLOT:n * _SLOT]
        self._tail = (self._tail + n) & M64
        self._hdr[_TAIL] = self._tail
        return n

    def signal_requested(self) -> bool:
        return self._flag[_SIGNAL] != 0

    def clear_signal_request(self) -> None:
        self._flag[_SIGNAL] = 0


class RingConsumer(_RingEnd):
    """The end that dequeues: owns ``head``, reads (and validates) ``tail``."""

    def _peer_tail(self) -> int:
        tail = self._hdr[_TAIL]
        if tail != self._tail:
            if (tail - self._tail) & M64 <= (self._head + self.capacity - self._tail) & M64:
                self._tail = tail
            else:
                self.index_faults += 1
        return self._tail

    def available(self) -> int:
        return (self._peer_tail() - self._head) & M64

    def dequeue(self, max_n: int | None = None) -> np.ndarray:
        """A private (writable) copy of up to ``max_n`` descriptors; the slots are then
        released to the producer at once."""
        return np.frombuffer(self.dequeue_raw(max_n), dtype=DESC_DTYPE)

    def dequeue_raw(self, max_n: int | None = None) -> bytearray:
        """``dequeue``'s descriptors as raw bytes (32 per descriptor)."""
        n = self.available()
        if max_n is not None:
            n = min(n, max(0, max_n))
        if n == 0:
            return bytearray()
        start = self._head & self._mask
        first = min(n, self.capacity - start)
        raw = bytearray(self._slots[start * _SLOT:(start + first) * _SLOT])
        if n > first:
            raw += self._slots[:(n - first) * _SLOT]
        self._head = (self._head + n) & M64
        self._hdr[_HEAD] = self._head
        return raw

    def dequeue_into(self, raw) -> int:
        """Copy as many descriptors as fit into the writable buffer ``raw`` (bytes), then
        release their slots; returns how many. The allocation-free path."""
        n = min(self.available(), len(raw) // _SLOT)
        if n:
            start = self._head & self._mask
            first = min(n, self.capacity - start)
            raw[:first * _SLOT] = self._slots[start * _SLOT:(start + first) * _SLOT]
            if n > first:
                raw[first * _SLOT:n * _SLOT] = self._slots[:(n - first) * _SLOT]
            self._head = (self._head + n) & M64
            self._hdr[_HEAD] = self._head
        return n

    def position(self) -> int:
        """This end's own (free-running) head index."""
        return self._head

    def request_signal(self) -> int:
        """Ask to be woken, then re-check: a non-zero answer means do not sleep."""
        self._flag[_SIGNAL] = 1
        full_fence()        # the request is visible before the tail is read
        return self.available()

    def cancel_signal(self) -> None:
        self._flag[_SIGNAL] = 0


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
