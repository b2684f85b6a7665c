"""A memo of first matches keyed by the header bytes the rules can see, so that packets of a
flow seen before skip field extraction and table lookups altogether.

Only frames of ``fast``'s common shapes (untagged Ethernet + IPv4 with a 20-byte header, or
IPv6 with no extension header) are memoised. For those, every field a rule reads is a function
of a few bytes at fixed offsets and of the frame's length (``fast`` documents the offsets).
The key: the frame's bytes (below 68) that the mask of its shape keeps — the shape's own bytes
(ether type, IP version and IHL, IPv4 fragment offset and protocol, IPv6 next header) and
those of the fields the classifier's tables use — then the length's class (which of the
thresholds 34, 36, 38, 48, 54, 56, 58, 68 it reaches: no field of these shapes depends on more; the
exact length when ``meta.length`` is matched) and the input queue.
Equal keys mean equal fields, so the same first match. Bytes past a frame's end are kept as
they are (stale bytes can only make a key more specific, never wrong).

The memo is a table of ``SLOTS`` keys in buckets of ``WAYS`` (a multiplicative hash picks the
bucket; a key is compared in full before its answer is used; a new key takes its bucket's
first empty way, or replaces the key in the last way), so its memory is fixed whatever the
traffic, and the flows that came first keep their place when a flood of new ones comes. When
most of a batch misses (no flow locality), the memo backs off (``cache.Backoff``) and batches
go straight to the tables for a while. A classifier whose tables use a field not listed here
(a pcap match) has no memo.
"""

from __future__ import annotations

import numpy as np

from filter.classify import fast
from filter.classify.cache import Backoff

END = 68                                # no byte past frame[:68] is read
SLOTS = 1 << 16
WAYS = 2                                # keys per bucket (two flows can share a hash)
# the length's class: the number of the thresholds a field of the common shapes depends on
# (IPv4: 34 the header, 36 ICMP, 38 ports, 48 TCP flags; IPv6: 54, 56, 58, 68) at or below it
LENGTH_CLASS = np.searchsorted(np.array([34, 36, 38, 48, 54, 56, 58, 68]), np.arange(END + 1),
                               side="right").astype(np.uint64) + 1
MULTIPLIERS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                        0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
                        0x94D049BB133111EB, 0xBF58476D1CE4E5B9], dtype=np.uint64)

# per field: (IPv4 byte ranges, IPv6 byte ranges) of the frame it is read from
FIELD_BYTES = {
    "ether.type": ((), ()), "meta.protocol": ((), ()), "meta.nfproto": ((), ()),
    "vlan.id": ((), ()), "vlan.pcp": ((), ()), "vlan.type": ((), ()),
    "meta.l4proto": ((), ()), "ip.protocol": ((), ()), "ip6.nexthdr": ((), ()),
    "ip.ttl": (((22, 23),), ()), "ip6.hoplimit": ((), ((21, 22),)),
    "ip.saddr": (((26, 30),), ()), "ip.daddr": (((30, 34),), ()),
    "ip6.saddr": ((), ((22, 38),)), "ip6.daddr": ((), ((38, 54),)),
    "th.sport": (((34, 36),), ((54, 56),)), "th.dport": (((36, 38),), ((56, 58),)),
    "tcp.flags": (((47, 48),), ((67, 68),)),
    "icmp.type": (((34, 35),), ()), "icmp.code": (((35, 36),), ()),
    "icmpv6.type": ((), ((54, 55),)), "icmpv6.code": ((), ((55, 56),)),
    "meta.length": ((), ()), "iif": ((), ()),
}


def _masks(fields) -> tuple[np.ndarray, np.ndarray]:
    """(the frame byte positions in the key, (IPv6 mask, IPv4 mask) of those bytes)."""
    v4, v6 = np.zeros(END, dtype=np.uint8), np.zeros(END, dtype=np.uint8)
    v4[12:15] = v6[12:14] = 0xFF          # ether type; IPv4 version + IHL
    v6[14] = 0xF0                         # IPv6 version
    v4[20], v4[21], v4[23] = 0x1F, 0xFF, 0xFF    # fragment offset, protocol
    v6[20] = 0xFF                         # next header
    for name in fields:
        ranges4, ranges6 = FIELD_BYTES[name]
        for lo, hi in ranges4:
            v4[lo:hi] = 0xFF
        for lo, hi in ranges6:
            v6[lo:hi] = 0xFF
    positions = np.flatnonzero(v4 | v6)
    return positions, np.stack([v6[positions], v4[positions]])


class FlowMemo:
    """First match by header bytes, for frames of the common shapes."""

    def __init__(self, fields, slots: int = SLOTS) -> None:
        self.positions, self.masks = _masks(fields)
        self.width = (len(self.positions) + 7) // 8 * 8      # key bytes, then one more word
        self.head_size = int(self.positions[-1]) + 1          # frame bytes to look at
        self.exact_length = "meta.length" in fields
        buckets = slots // WAYS
        self.shift = np.uint64(64 - (buckets.bit_length() - 1))
        self.keys = np.zeros((buckets, WAYS, self.width // 8 + 1), dtype=np.uint64)  # 0: empty
        self.hits = np.zeros(buckets * WAYS, dtype=np.int64)
        self._tails: dict[int, np.ndarray] = {}
        self.backoff = Backoff()
        self.lookups = self.misses = 0

    @staticmethod
    def usable(fields) -> bool:
        return all(name in FIELD_BYTES for name in fields)

    def first_hits(self, head: np.ndarray, lengths: np.ndarray, queue: int,
                   resolve) -> np.ndarray:
        """First match of each frame (``head``: its first ``head_size`` bytes); frames not in
        the memo, or of other shapes, are answered by ``resolve(frames)`` (then memoised).

        The mask is picked by byte 12 alone (0x08: IPv4's, else IPv6's); both masks keep bytes
        12-13, so a key made with one never equals a key made with the other, and a frame
        whose key equals a memoised (common) frame's key is of that frame's shape."""
        n = len(head)
        if self.backoff.bypass():
            return np.asarray(resolve(np.arange(n)), dtype=np.int64)
        key = np.zeros((n, self.width + 8), dtype=np.uint8)
        ipv4 = (head[:, 12] == 0x08).view(np.uint8)
        np.bitwise_and(head.take(self.positions, axis=1), self.masks.take(ipv4, axis=0),
                       out=key[:, :len(self.positions)])
        words = key.view(np.uint64)
        tail = self._tail(queue)
        words[:, -1] = tail.take(np.minimum(lengths, len(tail) - 1))
        mixed = words[:, 0] * MULTIPLIERS[0]
        for j in range(1, words.shape[1]):
            mixed += words[:, j] * MULTIPLIERS[j % len(MULTIPLIERS)]
        bucket = (mixed >> self.shift).astype(np.int64)
        differ = self.keys.take(bucket, axis=0) ^ words[:, None, :]      # (n, WAYS, words)
        for j in range(1, words.shape[1]):
            differ[:, :, 0] |= differ[:, :, j]
        same = differ[:, :, 0] == 0
        way = same.argmax(axis=1)
        hits = self.hits.take(bucket * WAYS + way)
        self.lookups += n
        found = same[np.arange(n), way]
        if found.all():
            return hits
        missing = np.flatnonzero(~found)
        hits[missing] = resolve(missing)
        self.misses += len(missing)
        self.backoff.report(len(missing), n)
        v4, v6 = fast.shapes(head[missing], lengths[missing])
        keep = missing[v4 | v6]
        # into its bucket's first empty way; a full bucket's last way takes the newcomer
        into = bucket[keep]
        occupied = self.keys[into, :, -1] != 0                # (k, WAYS)
        way = np.where(occupied.all(axis=1), WAYS - 1, occupied.argmin(axis=1))
        slot = into * WAYS + way
        self.keys.reshape(-1, words.shape[1])[slot] = words[keep]
        self.hits[slot] = hits[keep]
        return hits

    def _tail(self, queue: int) -> np.ndarray:
        """The key's last word by frame length (capped at 68, or when exact at 65536, a
        buffer's largest size): the length's class (or the length) and the queue; never 0,
        which marks an empty slot."""
        tail = self._tails.get(queue)
        if tail is None:
            exact = np.arange(1, (1 << 16) + 2, dtype=np.uint64)
            classes = exact if self.exact_length else LENGTH_CLASS
            tail = self._tails[queue] = classes | (np.uint64(queue) << np.uint64(32))
        return tail
