"""Selective acknowledgment, both ways (RFC 2018).

Receiver side, :func:`sack_blocks`: RFC 2018 section 4 — "The first SACK block ... MUST specify
the contiguous block of data containing the segment which triggered this ACK", the others
repeat the most recently reported blocks. Sender side, :class:`Scoreboard`: the SACKed ranges
above SND.UNA, from which the connection finds the holes to retransmit (RFC 6675 section 4).
"""

from __future__ import annotations

from netstack.tcp.seq import seq_gt, seq_le, seq_lt, seq_max, seq_min, seq_sub

__all__ = ["Scoreboard", "sack_blocks"]


def _merge(ranges: list[tuple[int, int]], left: int, right: int) -> list[tuple[int, int]]:
    """Insert [left, right) into sorted, disjoint ``ranges``, merging what touches it."""
    out = []
    placed = False
    for a, b in ranges:
        if seq_lt(b, left):
            out.append((a, b))
        elif seq_lt(right, a):
            if not placed:
                out.append((left, right))
                placed = True
            out.append((a, b))
        else:
            left, right = seq_min(a, left), seq_max(b, right)
    if not placed:
        out.append((left, right))
    return out


class Scoreboard:
    """The sender's record of SACKed sequence ranges above SND.UNA (sorted, disjoint)."""

    __slots__ = ("ranges",)

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []

    def update(self, blocks, snd_una: int, snd_max: int) -> None:
        """Take the blocks of one ACK; RFC 2018 blocks outside (SND.UNA, SND.MAX] are ignored."""
        for left, right in blocks:
            if not seq_lt(left, right) or seq_le(left, snd_una) or seq_gt(right, snd_max):
                continue
            self.ranges = _merge(self.ranges, left, right)
        self.advance(snd_una)

    def advance(self, snd_una: int) -> None:
        """Forget what the cumulative acknowledgment now covers."""
        while self.ranges and seq_le(self.ranges[0][1], snd_una):
            self.ranges.pop(0)
        if self.ranges and seq_lt(self.ranges[0][0], snd_una):
            self.ranges[0] = (snd_una, self.ranges[0][1])

    def clear(self) -> None:
        self.ranges = []

    @property
    def high(self) -> int | None:
        """The highest SACKed sequence number (exclusive end), or None."""
        return self.ranges[-1][1] if self.ranges else None

    def sacked_bytes(self) -> int:
        return sum(seq_sub(b, a) for a, b in self.ranges)

    def is_sacked(self, seq: int) -> bool:
        return any(seq_le(a, seq) and seq_lt(seq, b) for a, b in self.ranges)

    def holes(self, snd_una: int) -> list[tuple[int, int]]:
        """The un-SACKed ranges between SND.UNA and the highest SACKed byte (lost, RFC 6675)."""
        out, start = [], snd_una
        for a, b in self.ranges:
            if seq_lt(start, a):
                out.append((start, a))
            start = seq_max(start, b)
        return out


def sack_blocks(ooo: list[tuple[int, int]], recent: list[tuple[int, int]],
                limit: int) -> list[tuple[int, int]]:
    """The blocks to report: the most recent first, then others, at most ``limit``.

    ``ooo`` are the received out-of-order ranges (sorted, disjoint); ``recent`` the ranges
    most recently changed, newest first (RFC 2018 section 4).
    """
    out: list[tuple[int, int]] = []
    for left, right in recent:
        for a, b in ooo:
            if seq_le(a, left) and seq_le(right, b) and (a, b) not in out:
                out.append((a, b))
                break
    for block in reversed(ooo):
        if block not in out:
            out.append(block)
    return out[:limit]
