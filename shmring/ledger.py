"""Buffer ownership: which buffers of a data region this process holds right now.

As in sDDF, a buffer is on at most one ring at a time and enqueueing it hands it over. Each
process keeps one ledger per data region, shared by all its queue ends on that region. Every
descriptor that *arrives* is validated against it (inside the region, aligned to a buffer,
no longer than a buffer, not already held here, not twice in the batch) and the bad ones are
counted and dropped, never followed; only buffers held here may *leave*.
"""

from __future__ import annotations

import struct

import numpy as np

from shmring.descriptor import DESC_DTYPE

_ROW = struct.Struct("<QI20x")     # a descriptor's offset and length (shmring.descriptor)
REJECT_REASONS = ("bad_offset", "bad_alignment", "bad_length", "duplicate")
SMALL = 16     # batches up to this size are checked in plain Python: numpy's per-call cost
               # (a few microseconds each, about ten calls) dwarfs the work for a handful


def _bump(counters: dict, key: str, n: int) -> None:
    if n:
        counters[key] = counters.get(key, 0) + int(n)


class BufferLedger:
    def __init__(self, region_size: int, buffer_size: int) -> None:
        if buffer_size <= 0 or buffer_size & (buffer_size - 1):
            raise ValueError(f"buffer size must be a power of two, got {buffer_size}")
        self.buffer_size = buffer_size
        self.nbuf = region_size // buffer_size
        self._shift = buffer_size.bit_length() - 1
        self.held = np.zeros(self.nbuf, dtype=bool)
        self._limit = np.uint64(self.nbuf * buffer_size)
        self._misalign = np.uint64(buffer_size - 1)
        self._ushift = np.uint64(self._shift)
        self._scratch = np.zeros(self.nbuf, dtype=np.intp)    # buffer -> position in a batch
        self._positions = np.arange(256, dtype=np.intp)
        self._held_bytes = memoryview(self.held.view(np.uint8))   # the same flags, cheap to index

    def hold_initial(self, first: int, count: int) -> None:
        if first < 0 or count < 0 or first + count > self.nbuf:
            raise ValueError(f"buffers {first}..{first + count - 1} outside 0..{self.nbuf - 1}")
        self.held[first:first + count] = True

    def hold(self, indices) -> None:
        self.held[np.asarray(indices, dtype=np.int64)] = True

    def _index(self, batch: np.ndarray, counters: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """Buffer index of each descriptor, and the mask of the well-formed ones (None: all)."""
        offset = batch["offset"]
        index = offset >> self._ushift
        if (index.max() < self.nbuf and not np.count_nonzero(offset & self._misalign)
                and batch["length"].max() <= self.buffer_size):
            return index.astype(np.intp), None        # the usual case: every one well formed
        in_region = index < self.nbuf
        aligned = (offset & self._misalign) == 0
        length_ok = batch["length"] <= self.buffer_size
        ok = in_region & aligned & length_ok
        if np.count_nonzero(ok) == len(ok):
            return index.astype(np.intp), None
        _bump(counters, "bad_offset", np.count_nonzero(~in_region))
        _bump(counters, "bad_alignment", np.count_nonzero(in_region & ~aligned))
        _bump(counters, "bad_length", np.count_nonzero(in_region & aligned & ~length_ok))
        return np.where(ok, index, 0).astype(np.intp), ok

    def _filter(self, batch: np.ndarray, counters: dict, want_held: bool, reason: str,
                ) -> np.ndarray:
        """The descriptors whose buffer is well formed and (not) held, one per buffer; flips
        their buffers' state and counts the rest under ``reason``."""
        n = len(batch)
        if not n:
            return batch
        if n <= SMALL:
            return self._filter_small(batch, counters, want_held, reason)
        return self._filter_vectorised(batch, counters, want_held, reason)

    def _filter_vectorised(self, batch: np.ndarray, counters: dict, want_held: bool,
                           reason: str) -> np.ndarray:
        n = len(batch)
        index, ok = self._index(batch, counters)
        if ok is None and self._all_move(index, want_held):
            return batch
        if ok is not None and not ok.any():
            return batch[:0]
        good = self.held[index] if want_held else ~self.held[index]
        if ok is not None:
            good &= ok
        if n > 1:
            # A buffer named twice counts once: each candidate writes its position into its
            # buffer's scratch slot and only the one that reads its own position back stays.
            if len(self._positions) < n:
                self._positions = np.arange(n, dtype=np.intp)
            position = self._positions[:n]
            self._scratch[index[good]] = position[good]
            good &= self._scratch[index] == position
        kept = np.count_nonzero(good)
        self.held[index[good]] = not want_held
        lost = n - kept - (0 if ok is None else n - np.count_nonzero(ok))
        _bump(counters, reason, lost)
        return batch if kept == n else batch[good]

    def _filter_small(self, batch: np.ndarray, counters: dict, want_held: bool, reason: str,
                      ) -> np.ndarray:
        """``_filter`` for a few descriptors, one at a time, with the same verdicts: of a buffer
        named twice the last one stays, as numpy's fancy assignment leaves it."""
        held, nbuf, size = self._held_bytes, self.nbuf, self.buffer_size
        shift, misalign = self._shift, size - 1
        state = 1 if want_held else 0
        if batch.dtype == DESC_DTYPE:       # struct reads the rows faster than numpy's fields
            rows = list(_ROW.iter_unpack(batch.tobytes()))
        else:
            rows = list(zip(batch["offset"].tolist(), batch["length"].tolist(), strict=True))
        keep: list[int] = []
        taken: set[int] = set()
        rejected = {"bad_offset": 0, "bad_alignment": 0, "bad_length": 0, reason: 0}
        for pos in range(len(rows) - 1, -1, -1):
            offset, length = rows[pos]
            index = offset >> shift
            if index >= nbuf:
                rejected["bad_offset"] += 1
            elif offset & misalign:
                rejected["bad_alignment"] += 1
            elif length > size:
                rejected["bad_length"] += 1
            elif held[index] != state or index in taken:
                rejected[reason] += 1
            else:
                taken.add(index)
                keep.append(pos)
        flip = 0 if want_held else 1
        for index in taken:
            held[index] = flip
        for key, count in rejected.items():
            _bump(counters, key, count)
        if len(keep) == len(rows):
            return batch
        keep.reverse()
        return batch[keep]

    def move_small(self, raw, want_held: bool) -> bool:
        """The usual case of a few descriptors, from their raw bytes (shmring.descriptor
        layout): every one well formed, its buffer (not) held as ``want_held`` says and named
        once — then flip them all and say True. Otherwise change nothing: False sends the
        batch down the careful path, which counts what is wrong."""
        held, nbuf, shift = self._held_bytes, self.nbuf, self._shift
        size = self.buffer_size
        misalign, state = size - 1, 1 if want_held else 0
        indices = []
        for offset, length in _ROW.iter_unpack(raw):
            index = offset >> shift
            if index >= nbuf or offset & misalign or length > size or held[index] != state:
                return False
            indices.append(index)
        if len(indices) > 1 and len(set(indices)) < len(indices):
            return False
        for index in indices:
            held[index] = 1 - state
        return True

    def _all_move(self, index: np.ndarray, want_held: bool) -> bool:
        """The usual case, in few numpy calls: every buffer in the right state and named once;
        then flip them all. False (nothing changed) sends the batch down the careful path."""
        n = len(index)
        if np.count_nonzero(self.held[index]) != (n if want_held else 0):
            return False
        if n > 1:
            if len(self._positions) < n:
                self._positions = np.arange(n, dtype=np.intp)
            position = self._positions[:n]
            self._scratch[index] = position
            if np.count_nonzero(self._scratch[index] != position):
                return False
        self.held[index] = not want_held
        return True

    def accept(self, batch: np.ndarray, counters: dict) -> np.ndarray:
        """Validate descriptors arriving here; returns the good ones, now held. Rejections are
        counted by reason: bad_offset, bad_alignment, bad_length, duplicate (already held here
        or named twice in the batch)."""
        return self._filter(batch, counters, False, "duplicate")

    def surrender(self, batch: np.ndarray, counters: dict) -> np.ndarray:
        """Descriptors leaving here: only held buffers may go (others are counted ``not_held``
        and removed); those that go are no longer held."""
        return self._filter(batch, counters, True, "not_held")

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
