"""Buffer ownership: which buffers of a data region this process holds right now.

As in sDDF, a buffer is on at most one ring at a time and enqueueing it hands it over. Each
process keeps one ledger per data region, shared by all its queue ends on that region. Every
descriptor that *arrives* is validated against it (inside the region, aligned to a buffer,
no longer than a buffer, not already held here, not twice in the batch) and the bad ones are
counted and dropped, never followed; only buffers held here may *leave*.
"""

from __future__ import annotations

import numpy as np

from shmring.descriptor import DESC_DTYPE

REJECT_REASONS = ("bad_offset", "bad_alignment", "bad_length", "duplicate")


def _bump(counters: dict, key: str, n: int) -> None:
    if n:
        counters[key] = counters.get(key, 0) + int(n)


def _first_occurrences(index: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence of each value in ``index``."""
    first = np.zeros(len(index), dtype=bool)
    _, where = np.unique(index, return_index=True)
    first[where] = True
    return first


class BufferLedger:
    def __init__(self, region_size: int, buffer_size: int) -> None:
        if buffer_size <= 0 or buffer_size & (buffer_size - 1):
            raise ValueError(f"buffer size must be a power of two, got {buffer_size}")
        self.buffer_size = buffer_size
        self.nbuf = region_size // buffer_size
        self._shift = buffer_size.bit_length() - 1
        self.held = np.zeros(self.nbuf, dtype=bool)

    def hold_initial(self, first: int, count: int) -> None:
        if first < 0 or count < 0 or first + count > self.nbuf:
            raise ValueError(f"buffers {first}..{first + count - 1} outside 0..{self.nbuf - 1}")
        self.held[first:first + count] = True

    def hold(self, indices) -> None:
        self.held[np.asarray(indices, dtype=np.int64)] = True

    def _index(self, batch: np.ndarray, counters: dict) -> tuple[np.ndarray, np.ndarray]:
        """Buffer index of each descriptor and the mask of those that are well formed."""
        offset = batch["offset"]
        in_region = offset < np.uint64(self.nbuf * self.buffer_size)
        aligned = (offset & np.uint64(self.buffer_size - 1)) == 0
        length_ok = batch["length"] <= self.buffer_size
        _bump(counters, "bad_offset", np.count_nonzero(~in_region))
        _bump(counters, "bad_alignment", np.count_nonzero(in_region & ~aligned))
        _bump(counters, "bad_length", np.count_nonzero(in_region & aligned & ~length_ok))
        ok = in_region & aligned & length_ok
        index = np.where(ok, offset >> np.uint64(self._shift), 0).astype(np.int64)
        return index, ok

    def accept(self, batch: np.ndarray, counters: dict) -> np.ndarray:
        """Validate descriptors arriving here; returns the good ones, now held."""
        if not len(batch):
            return batch
        index, ok = self._index(batch, counters)
        fresh = ok & ~self.held[index] & _first_occurrences(np.where(ok, index, -1))
        _bump(counters, "duplicate", np.count_nonzero(ok & ~fresh))
        self.held[index[fresh]] = True
        return batch if fresh.all() else batch[fresh]

    def surrender(self, batch: np.ndarray, counters: dict) -> np.ndarray:
        """Descriptors leaving here: only held buffers may go; they are no longer held."""
        if not len(batch):
            return batch
        index, ok = self._index(batch, counters)
        mine = ok & self.held[index] & _first_occurrences(np.where(ok, index, -1))
        _bump(counters, "not_held", np.count_nonzero(ok & ~mine))
        self.held[index[mine]] = False
        return batch if mine.all() else batch[mine]

    def held_count(self) -> int:
        return int(np.count_nonzero(self.held))

    def held_indices(self) -> np.ndarray:
        return np.flatnonzero(self.held)


class BufferPool:
    """The empty buffers an origin component may fill (all held by its ledger)."""

    def __init__(self, ledger: BufferLedger) -> None:
        self.ledger = ledger
        self._stack = np.zeros(ledger.nbuf, dtype=np.uint64)
        held = ledger.held_indices().astype(np.uint64) * np.uint64(ledger.buffer_size)
        self._stack[:len(held)] = held
        self._top = len(held)

    def __len__(self) -> int:
        return self._top

    def take(self, n: int) -> np.ndarray:
        n = max(0, min(n, self._top))
        batch = np.zeros(n, dtype=DESC_DTYPE)
        batch["offset"] = self._stack[self._top - n:self._top]
        self._top -= n
        return batch

    def give(self, batch: np.ndarray) -> None:
        n = len(batch)
        if not n:
            return
        room = len(self._stack) - self._top
        if n > room:
            raise ValueError(f"pool overflow: {n} buffers returned, room for {room}")
        self._stack[self._top:self._top + n] = batch["offset"]
        self._top += n
