"""TCP state and sequence-window tracking, after pf (Guido van Rooij, "Real Stateful TCP
Packet Filtering in IP Filter", 2000).

Each direction's sender is a :class:`TcpPeer` recording ``seqlo`` (the highest sequence
number it has sent, plus one: max{s + n}), ``seqhi`` (the highest end the receiver's window
lets it reach: max{a + w} of the other side) and ``max_win`` (the largest window it has
advertised, in bytes). A segment with sequence ``s``, end ``s + n`` (SYN and FIN count one)
and acknowledgement ``a`` from ``src`` to ``dst`` passes when (van Rooij's four conditions):

    I    s + n <= src.seqhi                        data inside the receiver's window
    II   s >= src.seqlo - dst.max_win              not older than one window (retransmits)
    III  a <= dst.seqlo + MAX_ACK_WINDOW           not acknowledging unsent data (slack for
                                                   segments seen out of order)
    IV   a >= dst.seqlo - (MAX_ACK_WINDOW << sws)  not acknowledging further back than that

Segments without data skip I and II (keepalives, pure ACKs), as pf does, except RSTs: an RST
must lie inside the window (I and II with its own sequence number) or it is invalid and
ignored (RFC 5961 section 3 in spirit); a valid RST closes the connection. Window scaling
(RFC 7323 section 2.2) applies once both SYNs carried the option; windows in SYN segments are
never scaled. A SYN from a side that is established, on a connection established both ways,
is invalid; a SYN (without ACK) on a connection closed both ways reopens it (see
:meth:`TcpTrack.reopens`). Sequence arithmetic is modulo 2**32 through the ``seq_*`` helpers
(written out inline in :meth:`TcpTrack.evaluate`, which runs for every segment).
"""

from __future__ import annotations

from typing import NamedTuple

from filter.packet import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

CLOSED, SYN_SENT, ESTABLISHED, CLOSING, FIN_WAIT_2, TIME_WAIT = range(6)
STATE_NAMES = ("closed", "syn_sent", "established", "closing", "fin_wait_2", "time_wait")
MAX_ACK_WINDOW = 65535 + 1500
UNKNOWN_WINDOW = 65535 << 14          # the window of a side not yet seen (loose pick-up)
_MASK = 0xFFFFFFFF


def seq_diff(a: int, b: int) -> int:
    """``a - b`` as a signed 32-bit sequence-space distance."""
    d = (a - b) & _MASK
    return d - 0x100000000 if d & 0x80000000 else d


def seq_geq(a: int, b: int) -> bool:
    """``a >= b`` in sequence space (RFC 9293 section 3.4)."""
    return ((a - b) & _MASK) < 0x80000000


def seq_gt(a: int, b: int) -> bool:
    """``a > b`` in sequence space."""
    return a != b and ((a - b) & _MASK) < 0x80000000


class TcpPeer(NamedTuple):
    """A snapshot of what one side has sent (see the module docstring)."""

    seen: bool
    seqlo: int
    seqhi: int
    max_win: int
    wscale: int
    state: int
    fin_end: int

    def __repr__(self) -> str:
        return (f"{STATE_NAMES[self.state]}[{self.seqlo}..{self.seqhi} win {self.max_win}"
                f" ws {self.wscale}]")


# Both sides live in one flat list (one object per connection, cheap to create): side d's
# fields start at 7 * d, in TcpPeer's order.
SEEN, SEQLO, SEQHI, MAXWIN, WSCALE, STATE, FINEND = range(7)
_FRESH = [False, 0, 0, 1, -1, CLOSED, 0]


class TcpTrack(list):
    """Both sides of one TCP connection; :meth:`peer` (d) is the sender in direction d."""

    __slots__ = ("scaling",)

    def __init__(self) -> None:
        super().__init__(_FRESH * 2)
        self.scaling = False

    def peer(self, d: int) -> TcpPeer:
        """A snapshot of side ``d`` (0: the originator, 1: the responder)."""
        return TcpPeer(*self[7 * d:7 * d + 7])

    @property
    def peers(self) -> tuple[TcpPeer, TcpPeer]:
        return self.peer(0), self.peer(1)

    @classmethod
    def start(cls, info, loose: bool = False) -> TcpTrack:
        """The tracking state after the first segment (a SYN; any segment if ``loose``)."""
        track = cls()
        flags = info.tcp_flags
        end = (info.seq + info.payload_len + (flags & TCP_SYN and 1)
               + (flags & TCP_FIN and 1)) & _MASK
        track[SEEN] = True
        track[SEQLO] = track[SEQHI] = end
        track[MAXWIN] = max(info.window, 1)
        if flags & TCP_SYN:
            track[WSCALE] = info.wscale
            track[STATE] = SYN_SENT
        else:                                   # picked up mid-stream
            track[STATE] = track[7 + STATE] = ESTABLISHED
            track[7 + MAXWIN] = UNKNOWN_WINDOW
            track[SEQHI] = (end + UNKNOWN_WINDOW) & _MASK
        return track

    def reopens(self, direction: int, info) -> bool:
        """True for a SYN without ACK on a connection closed both ways (port reuse)."""
        return ((info.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN
                and self[STATE] >= FIN_WAIT_2 and self[7 + STATE] >= FIN_WAIT_2)

    def check(self, direction: int, info) -> str | None:
        """None if the segment is acceptable, else the reason it is invalid."""
        found = self.evaluate(direction, info)
        return found if type(found) is str else None

    def advance(self, direction: int, info) -> str | None:
        """Check the segment and, if acceptable, record it (windows, state)."""
        found = self.evaluate(direction, info)
        if type(found) is str:
            return found
        self.record(*found)
        return None

    def quoted_in_window(self, d: int, seq: int) -> bool:
        """True when ``seq``, quoted by an ICMP error about a segment side ``d`` sent, lies
        between one window before that side's highest sequence and its allowed maximum."""
        s = 7 * d
        low = (self[s + SEQLO] - self[7 - s + MAXWIN]) & _MASK
        return seq_geq(seq, low) and seq_geq(self[s + SEQHI], seq)

    def klass(self) -> str:
        """The timeout class the connection is in (pf's choice of timeout)."""
        sa, sb = self[STATE], self[7 + STATE]
        if sa >= FIN_WAIT_2 and sb >= FIN_WAIT_2:
            return "tcp_closed"
        if sa >= CLOSING and sb >= CLOSING:
            return "tcp_finwait"
        if sa < ESTABLISHED or sb < ESTABLISHED:
            return "tcp_opening" if self[7 + SEEN] else "tcp_first"
        if sa >= CLOSING or sb >= CLOSING:
            return "tcp_closing"
        return "tcp_established"

    @property
    def established(self) -> bool:
        """True when both sides completed the handshake and neither has closed."""
        return self.klass() == "tcp_established"

    def evaluate(self, d: int, info) -> str | tuple:
        """The reason the segment is invalid, or what :meth:`record` needs to take it in.
        (The four conditions are written out inline: this runs for every segment.)"""
        s = 7 * d                               # the sender's fields
        r = 7 - s                               # the receiver's fields
        flags = info.tcp_flags
        if flags & TCP_SYN and flags & (TCP_RST | TCP_FIN) or not flags & (
                TCP_SYN | TCP_ACK | TCP_RST):
            return "tcp_flags"
        if flags & TCP_SYN and self[s + STATE] >= ESTABLISHED and self[r + STATE] >= ESTABLISHED:
            return "tcp_syn_established"
        seq = info.seq
        end = (seq + info.payload_len + (flags & TCP_SYN and 1) + (flags & TCP_FIN and 1)) & _MASK
        seqlo, seqhi, wscale, scaling = self[s + SEQLO], self[s + SEQHI], self[s + WSCALE], \
            self.scaling
        dst_seen, dst_seqlo, dst_maxwin, dst_wscale = (
            self[r + SEEN], self[r + SEQLO], self[r + MAXWIN], self[r + WSCALE])
        if not self[s + SEEN]:                  # first segment from this side
            if flags & TCP_SYN:
                wscale = info.wscale
                scaling = wscale >= 0 and dst_wscale >= 0
            seqlo = seq
            allowed = (end + max(1, dst_maxwin)) & _MASK
            if seqhi == 0 or seq_geq(allowed, seqhi):
                seqhi = allowed
        sws = wscale if scaling and not flags & TCP_SYN else 0
        dws = dst_wscale if scaling else 0
        window = info.window << sws
        ack = info.ack
        if not flags & TCP_ACK or not dst_seen or (ack == 0 and flags & TCP_RST):
            ack = dst_seqlo                     # nothing to check (pf: "broken stacks")
        if seq == end and not flags & TCP_RST:  # no data: ease sequencing (pf)
            seq = end = seqlo
        ackskew = (dst_seqlo - ack) & _MASK     # seq_diff, inline
        if ackskew & 0x80000000:
            ackskew -= 0x100000000
        # (max_win is never below 1: it starts at 1 and only grows)
        if not (((seqhi - end) & _MASK) < 0x80000000                              # I
                and ((seq - seqlo + dst_maxwin) & _MASK) < 0x80000000             # II
                and -MAX_ACK_WINDOW <= ackskew
                <= (MAX_ACK_WINDOW << (sws if sws > dws else dws))):           # III, IV
            return "tcp_window"
        return (s, r, flags, seqlo, seqhi, wscale, scaling, end, ack, window)    # record()

    def record(self, s: int, r: int, flags: int, seqlo: int, seqhi: int, wscale: int,
               scaling: bool, end: int, ack: int, window: int) -> None:
        """Take in a segment :meth:`evaluate` accepted (its result, unpacked): windows,
        sequence edges, states."""
        self[s + SEEN] = True
        self[s + SEQLO], self[s + SEQHI], self[s + WSCALE] = seqlo, seqhi, wscale
        self.scaling = scaling
        if window > self[s + MAXWIN] and not flags & TCP_RST:   # an RST's window means nothing
            self[s + MAXWIN] = window
        if seq_gt(end, seqlo):
            self[s + SEQLO] = end
        if (flags & TCP_ACK and not flags & TCP_RST
                and seq_geq((ack + window) & _MASK, self[r + SEQHI])):
            self[r + SEQHI] = (ack + max(window, 1)) & _MASK
        state = self[s + STATE]
        if flags & TCP_SYN and state < SYN_SENT:
            self[s + STATE] = SYN_SENT
        if flags & TCP_FIN and state < CLOSING:
            self[s + STATE] = CLOSING
            self[s + FINEND] = end
        if flags & TCP_ACK:
            other = self[r + STATE]
            if other == SYN_SENT:
                self[r + STATE] = ESTABLISHED
            elif other == CLOSING and seq_geq(ack, self[r + FINEND]):
                self[r + STATE] = FIN_WAIT_2
        if flags & TCP_RST:
            self[s + STATE] = self[r + STATE] = TIME_WAIT

    def __repr__(self) -> str:
        return f"TcpTrack({self.peer(0)!r} / {self.peer(1)!r})"

    __hash__ = object.__hash__
    __eq__ = object.__eq__
