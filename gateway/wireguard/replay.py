"""The anti-replay sliding window of RFC 6479 ("IPsec Anti-Replay Algorithm without Bit
Shifting"), as WireGuard's transport counters need it (whitepaper §5.4.6).

RFC 6479 §2: the window is a ring of blocks of bits; a counter beyond the newest one seen
clears the blocks it skips over ("the bitmap is not shifted; ... the blocks between are
cleared") instead of shifting the whole bitmap. The window spans ``(RING_BLOCKS - 1) * 64``
counters behind the newest. Only authenticated counters may be passed to ``accept`` (it
records them).
"""

from __future__ import annotations

BLOCK_BITS = 64
RING_BLOCKS = 128                                 # a power of two
WINDOW = (RING_BLOCKS - 1) * BLOCK_BITS           # 8128, as wireguard-go
REJECT_AFTER_MESSAGES = 2**64 - 2**13 - 1         # whitepaper §6.1


class ReplayWindow:
    __slots__ = ("last", "ring")

    def __init__(self) -> None:
        self.last = 0
        self.ring = [0] * RING_BLOCKS

    def accept(self, counter: int) -> bool:
        """Record ``counter``; False if it was seen, is too old, or is past the limit."""
        if counter >= REJECT_AFTER_MESSAGES:
            return False
        block = counter >> 6
        if counter > self.last:
            current = self.last >> 6
            skip = min(block - current, RING_BLOCKS)
            ring = self.ring
            for i in range(1, skip + 1):               # RFC 6479 §2: clear the skipped blocks
                ring[(current + i) & (RING_BLOCKS - 1)] = 0
            self.last = counter
        elif self.last - counter > WINDOW:
            return False
        index = block & (RING_BLOCKS - 1)
        bit = 1 << (counter & 63)
        if self.ring[index] & bit:
            return False
        self.ring[index] |= bit
        return True
