"""A per-flow memo of first matches: packets whose fields fall in the same elementary interval
of every field's table have the same candidate entries, so the same first candidate.

A packet's key is its row numbers in all the tables, in mixed radix (one int64); the memo is
two sorted arrays (keys, first candidates) searched for a whole batch at once. Only keys not
seen before are resolved the slow way (once per distinct key in the batch) and merged in. The
memo is bounded: past ``limit`` keys it starts again from the batch's, so a flood of new flows
costs the uncached work plus little, never unbounded memory; a memo that keeps missing backs
off (``Backoff``) and is not even looked at for a while. It belongs to one compiled
classifier: a new rule set gets a new, empty memo.
"""

from __future__ import annotations

import numpy as np

LIMIT = 1 << 16
MAX_SKIP = 64                 # batches a memo that keeps missing sits out, at most


class Backoff:
    """When to skip a memo: after a batch in which it missed more than half the packets (no
    flow locality: it costs more than it saves), it sits out 1 batch, then 2, 4 … up to
    ``MAX_SKIP`` while its trial batches keep missing; one good batch resets that."""

    def __init__(self) -> None:
        self.skip, self.next_skip = 0, 1

    def bypass(self) -> bool:
        if self.skip:
            self.skip -= 1
            return True
        return False

    def report(self, missed: int, n: int) -> None:
        if 2 * missed > n:
            self.skip, self.next_skip = self.next_skip, min(MAX_SKIP, 2 * self.next_skip)
        else:
            self.next_skip = 1


class FirstHits:
    """Memo of ``resolve(packets) -> first candidate entry per packet`` by row-number keys."""

    def __init__(self, sizes: list[int], limit: int = LIMIT) -> None:
        scale, total = [], 1
        for size in reversed(sizes):
            scale.append(total)
            total *= max(1, size)
        self.scale = list(reversed(scale))
        self.usable = bool(sizes) and total < (1 << 62)     # keys fit in an int64
        self.limit = limit
        self.keys = np.zeros(0, dtype=np.int64)
        self.hits = np.zeros(0, dtype=np.int64)
        self.lookups = self.misses = 0
        self.backoff = Backoff()

    def key(self, rows: list[np.ndarray]) -> np.ndarray:
        out = None
        for index, scale in zip(rows, self.scale, strict=True):
            part = index.astype(np.int64)
            if scale != 1:
                part *= scale
            out = part if out is None else np.add(out, part, out=out)
        return out

    def first_hits(self, rows: list[np.ndarray], resolve) -> np.ndarray:
        """The first candidate of each packet (rows: each table's row number per packet)."""
        if self.backoff.bypass():
            return np.asarray(resolve(np.arange(len(rows[0]))), dtype=np.int64)
        keys = self.key(rows)
        n = len(keys)
        self.lookups += n
        if len(self.keys):
            where = np.searchsorted(self.keys, keys)
            np.minimum(where, len(self.keys) - 1, out=where)
            found = self.keys[where] == keys
            hits = self.hits[where]
            if found.all():
                return hits
            missing = np.flatnonzero(~found)
        else:
            hits, missing = np.empty(n, dtype=np.int64), np.arange(n)
        new, first, inverse = np.unique(keys[missing], return_index=True, return_inverse=True)
        resolved = np.asarray(resolve(missing[first]), dtype=np.int64)
        hits[missing] = resolved[inverse]
        self.misses += len(new)
        self.backoff.report(len(missing), n)
        self._remember(new, resolved)
        return hits

    def _remember(self, new: np.ndarray, resolved: np.ndarray) -> None:
        """Merge the (sorted, unseen) keys in; past the limit, start again from them."""
        if len(self.keys) + len(new) > self.limit:
            self.keys, self.hits = new, resolved
            return
        where = np.searchsorted(self.keys, new)
        self.keys = np.insert(self.keys, where, new)
        self.hits = np.insert(self.hits, where, resolved)
