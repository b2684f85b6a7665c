"""The sending half of a connection: segments out, output under the windows, loss recovery.

A mixin of netstack.tcp.connection.Connection (it uses the TCB's fields). Output obeys the
peer's window, the congestion window, Nagle (RFC 9293 3.7.4) and sender SWS avoidance
(3.8.6.2.1), and piggybacks the FIN on the last data. With ``segment_offload`` new data leaves
in segments of several MSS that the NIC cuts (TSO); retransmissions stay one MSS. Loss
recovery: limited transmit (RFC 3042); fast retransmit after three duplicate ACKs (RFC 5681
3.2) or more than two segments' worth of SACKed bytes (RFC 6675 IsLost), then only the holes
the scoreboard shows, paced by the pipe estimate (RFC 6675), or NewReno partial ACKs (RFC 6582)
without SACK; a lost retransmission of the first hole is sent again after 5/4 RTT (the idea of
RACK, RFC 8985).
"""

from __future__ import annotations

from netstack.tcp.sack import sack_blocks
from netstack.tcp.seq import (
    MASK,
    seq_add,
    seq_ge,
    seq_gt,
    seq_in,
    seq_le,
    seq_lt,
    seq_max,
    seq_sub,
)
from netstack.tcp.states import SEND_STATES
from netstack.wire.tcp import (
    ACK,
    FIN,
    PSH,
    SYN,
    TcpOptions,
    segment_bytes,
    timestamp_option,
)

DUPACK_THRESHOLD = 3                         # RFC 5681 3.2


class Sender:
    """Segment output and loss recovery for a Connection."""

    # ------------------------------------------------------------------ segment output
    def _ts_now(self, now: int) -> int:
        """TSval now (1 ms ticks). RFC 7323 5.4: the timestamp clock MUST be monotone: one
        segment may be stamped from a ``now`` read a little earlier than one already sent (the
        socket calls read the clock afresh, a batch of frames shares the turn's ``now``), and
        a TSval older than the last one would be dropped by the peer's PAWS test (5.3 R1) —
        in-order data lost for nothing. So it never goes back."""
        ts = (now // 1_000_000 + self.ts_offset) & MASK
        last = self.ts_last
        if last is not None and seq_lt(ts, last):
            return last
        self.ts_last = ts
        return ts

    def _window_field(self) -> int:
        return min(max(seq_sub(self.rcv_adv, self.rcv_nxt), 0) >> self.rcv_wscale, 0xFFFF)

    def _advance_rcv_adv(self) -> bool:
        """Move the right window edge per receiver SWS avoidance (RFC 9293 3.8.6.2.2)."""
        space = self.cfg.recv_buffer - len(self.rcv_buf)
        space -= space % (1 << self.rcv_wscale)
        edge = seq_add(self.rcv_nxt, space)
        step = min(self.cfg.recv_buffer // 2, self.mss)
        if seq_gt(edge, self.rcv_adv) and (seq_sub(edge, self.rcv_adv) >= step
                                            or seq_sub(self.rcv_adv, self.rcv_nxt) <= 0):
            self.rcv_adv = edge
            return True
        return False

    def _emit(self, seq: int, flags: int, now: int, payload=b"", with_ack: bool = True,
              options: TcpOptions | None = None, window: int | None = None) -> None:
        if with_ack:
            flags |= ACK
        ack = self.rcv_nxt if flags & ACK else 0
        if options is None:
            ts = (self._ts_now(now), self.ts_recent) if self.ts_ok else None
            if self.sack_ok and self.ooo_ranges and flags & ACK:
                blocks = tuple(sack_blocks(self.ooo_ranges, self.recent_sacks,
                                           3 if ts else 4))
                opts = TcpOptions(timestamp=ts, sack_blocks=blocks).emit()
            else:                       # the usual segment: no TcpOptions object to build
                opts = timestamp_option(*ts) if ts else b""
        else:
            opts = options.emit()
        if flags & ACK:
            self.last_ack_sent = ack
            self.dack_deadline = None
            self.unacked_bytes = 0
        if window is None:
            self._advance_rcv_adv()
            window = self._window_field()
        local, remote = self.local, self.remote
        self.segments_out += 1
        self.layer._transmit_bytes(local[0], remote[0], segment_bytes(
            local[0], remote[0], local[1], remote[1], seq, ack, flags, window, opts,
            bytes(payload)))

    def _send_ack(self, now: int) -> None:
        self._emit(self.snd_nxt, 0, now)

    def _send_syn(self, now: int, ack: bool) -> None:
        """RFC 9293 3.10.1 / 3.10.7.2: <SEQ=ISS><CTL=SYN> or <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>."""
        cfg = self.cfg
        if ack:     # a SYN-ACK offers only what the peer's SYN offered (RFC 7323 2.2, 3.2)
            wscale = self.rcv_wscale if self.ws_ok else None
            ts = (self._ts_now(now), self.ts_recent) if self.ts_ok else None
            sack = self.sack_ok
        else:
            wscale = self.rcv_wscale if cfg.window_scaling else None
            ts = (self._ts_now(now), 0) if cfg.timestamps else None
            sack = cfg.sack
        if not self.ws_ok and ack:
            self.rcv_wscale = 0
        opts = TcpOptions(mss=cfg.mss, wscale=wscale, sack_permitted=sack, timestamp=ts)
        if self.rcv_adv == self.rcv_nxt:
            self.rcv_adv = seq_add(self.rcv_nxt, min(cfg.recv_buffer, 0xFFFF))
        window = min(seq_sub(self.rcv_adv, self.rcv_nxt), 0xFFFF)    # never scaled in a SYN
        self._emit(self.iss, SYN | (ACK if ack else 0), now, with_ack=False, options=opts,
                   window=window)
        self.snd_nxt = seq_add(self.iss, 1)
        self.snd_max = seq_max(self.snd_max, self.snd_nxt)
        if self.rtx_deadline is None:
            self.rtx_deadline = now + self.rto.rto
        if self.rtx_count == 0:
            self.rtt_seq, self.rtt_time = self.snd_nxt, now

    def _segment_size(self) -> int:
        """Payload bytes per full segment: the MSS less our options (RFC 6691 / RFC 9293 3.7.1)."""
        size = self.mss - (12 if self.ts_ok else 0)
        if self.sack_ok and self.ooo_ranges:
            size -= 4 + 8 * min(len(self.ooo_ranges), 3 if self.ts_ok else 4)
        return size

    def _flight(self) -> int:
        return seq_sub(self.snd_nxt, self.snd_una)

    def _pipe(self) -> int:
        """RFC 6675 section 4 estimate of the bytes in the network during recovery."""
        outstanding = seq_sub(self.snd_max, self.snd_una)
        if self.sack_ok and self.scoreboard.ranges:
            lost = sum(seq_sub(b, seq_max(a, self.high_rxt))
                       for a, b in self.scoreboard.holes(self.snd_una) if seq_lt(self.high_rxt, b))
            return max(outstanding - self.scoreboard.sacked_bytes() - lost, 0)
        lost = self.mss if seq_le(self.high_rxt, self.snd_una) else 0
        return max(outstanding - self.dupacks * self.mss - lost, 0)

    def _next_hole(self) -> tuple[int, int] | None:
        """The next lost range not yet retransmitted in this recovery (RFC 6675 NextSeg (1))."""
        if self.sack_ok and self.scoreboard.ranges:
            for a, b in self.scoreboard.holes(self.snd_una):
                if seq_lt(self.high_rxt, b):
                    start = seq_max(a, self.high_rxt)
                    return start, min(seq_sub(b, start), self._segment_size())
            return None
        if seq_le(self.high_rxt, self.snd_una) and seq_lt(self.snd_una, self.snd_max):
            return self.snd_una, min(seq_sub(self.snd_max, self.snd_una), self._segment_size())
        return None

    def _send_range(self, seq: int, length: int, now: int) -> None:
        """Resend ``length`` sequence numbers from ``seq``: data, and our FIN if it is in range."""
        data_end = seq_add(self.snd_buf_seq, len(self.snd_buf))
        n = max(min(length, seq_sub(data_end, seq)), 0)
        off = seq_sub(seq, self.snd_buf_seq)
        flags = PSH if n else 0
        if self.fin_seq is not None and seq_in(self.fin_seq, seq, seq_add(seq, length)):
            flags |= FIN
        if seq_lt(seq, self.snd_max):
            self.retransmits += 1
            self.layer.counters["retransmitted_segments"] += 1
            if self.in_recovery:
                self.rxt_times[seq] = now
            if self.rtt_seq is not None and seq_lt(seq, self.rtt_seq):
                self.rtt_seq = None                 # Karn: no sample from a retransmission
        self._emit(seq, flags, now, self.snd_buf[off:off + n])

    def _output(self, now: int) -> None:
        """Send what the windows allow: holes first in recovery, then new data, then the FIN."""
        if self.state not in SEND_STATES:
            return
        if not (self.in_recovery or self.fin_queued) and \
                self.snd_nxt == seq_add(self.snd_buf_seq, len(self.snd_buf)):
            self._arm_send_timers(now)                   # nothing new to send: the timers only
            return
        mss = self._segment_size()
        chunk = max(mss, self.cfg.segment_offload // mss * mss)    # TSO: several MSS at once
        while True:
            if self.in_recovery:
                budget = self.cc.cwnd - self._pipe()
            else:       # RFC 3042 limited transmit: a new segment for each of 2 duplicate ACKs
                budget = self.cc.cwnd + min(self.dupacks, 2) * mss - self._flight()
            if self.in_recovery:
                hole = self._next_hole()
                if hole is not None:
                    if budget < hole[1]:
                        break
                    self._send_range(hole[0], hole[1], now)
                    self.high_rxt = seq_add(hole[0], hole[1])
                    continue
            data_end = seq_add(self.snd_buf_seq, len(self.snd_buf))
            avail = seq_sub(data_end, self.snd_nxt)
            if avail < 0:
                break                                    # our FIN is already out
            room = seq_sub(seq_add(self.snd_una, self.snd_wnd), self.snd_nxt)
            # TSO only for new data (what an RTO sends again goes one MSS at a time), in whole
            # MSS pieces unless it is the last of the data
            limit = chunk if seq_ge(self.snd_nxt, self.snd_max) else mss
            n = min(limit, avail, room, max(budget, 0))
            if n > mss and n < avail:
                n -= n % mss
            if n <= 0:
                if avail == 0 and self.fin_queued and self.fin_seq in (None, data_end):
                    self._send_fin_at(data_end, now)
                break
            if n < mss and n < avail:                    # window- or cwnd-limited runt
                if n < self.max_snd_wnd // 2 or budget < mss:
                    break
            if n < mss and n == avail and self.cfg.nagle and self.snd_nxt != self.snd_una \
                    and not self.fin_queued:
                break                                    # Nagle: wait for the ACK
            seq = self.snd_nxt
            fin = n == avail and self.fin_queued
            flags = PSH if n == avail else 0
            if fin:
                self.fin_seq = data_end
                flags |= FIN
            if seq_lt(seq, self.snd_max):
                self.retransmits += 1
                self.layer.counters["retransmitted_segments"] += 1
            elif self.rtt_seq is None and not self.ts_ok:
                self.rtt_seq, self.rtt_time = seq_add(seq, n), now
            off = seq_sub(seq, self.snd_buf_seq)
            self._emit(seq, flags, now, self.snd_buf[off:off + n])
            self.snd_nxt = seq_add(seq, n + (1 if fin else 0))
            self.snd_max = seq_max(self.snd_max, self.snd_nxt)
            if fin or (n == avail and not self.fin_queued and not self.in_recovery):
                break                                    # all of it is out: nothing follows
        self._arm_send_timers(now)

    def _send_fin_at(self, seq: int, now: int) -> None:
        self.fin_seq = seq
        if seq_lt(seq, self.snd_max):
            self.retransmits += 1
        self._emit(seq, FIN, now)
        self.snd_nxt = seq_add(seq, 1)
        self.snd_max = seq_max(self.snd_max, self.snd_nxt)

    def _arm_send_timers(self, now: int) -> None:
        """RFC 6298 (5.1) retransmission timer, or the persist timer for a zero window."""
        outstanding = seq_lt(self.snd_una, self.snd_max)
        pending = len(self.snd_buf) > seq_sub(self.snd_nxt, self.snd_buf_seq) or (
            self.fin_queued and self.fin_seq is None)
        stuck = pending and not outstanding      # the peer's window (or SWS avoidance) holds data
        if self.state in SEND_STATES and (stuck or (self.snd_wnd == 0 and outstanding)):
            self.rtx_deadline = None
            if self.persist_deadline is None:
                interval = max(self.rto.rto, self.cfg.persist_min_ns) << self.persist_backoff
                self.persist_deadline = now + min(interval, self.cfg.rto_max_ns)
            return
        self.persist_deadline = None
        if outstanding and self.rtx_deadline is None:
            self.rtx_deadline = now + self.rto.rto


    def _duplicate_ack(self, now: int) -> None:
        """RFC 5681 3.2 / RFC 6582 3.2 step 2 / RFC 6675 5: enter fast recovery."""
        self.dupacks += 1
        self.layer.counters["duplicate_acks"] += 1
        if self.in_recovery:
            self._resend_lost_retransmission(now)
            return
        # RFC 6675 IsLost: more than (DupThresh - 1) * SMSS bytes SACKed above SND.UNA
        sack_loss = self.sack_ok and \
            self.scoreboard.sacked_bytes() > (DUPACK_THRESHOLD - 1) * self.mss
        # RFC 6582 3.2 step 2: not again for the same window (strictly beyond "recover");
        # with SACK (RFC 6675 5) a new loss after RecoveryPoint starts a new recovery
        beyond = seq_ge if self.sack_ok else seq_gt
        if (self.dupacks >= DUPACK_THRESHOLD or sack_loss) and beyond(self.snd_una, self.recover):
            if self.snd_nxt != self.snd_max:
                return                                # still going back after an RTO
            self.in_recovery = True
            self.recover = self.snd_max
            self.high_rxt = self.snd_una
            self.cc.on_enter_recovery(self._flight(), now)
            self.layer.counters["fast_retransmits"] += 1
            hole = self._next_hole()                 # RFC 5681 3.2 step 2: resend it now
            if hole is not None:
                self._send_range(hole[0], hole[1], now)
                self.high_rxt = seq_add(hole[0], hole[1])
            self.rtx_deadline = now + self.rto.rto

    def _resend_lost_retransmission(self, now: int) -> None:
        """A retransmission of the first hole still unacknowledged 5/4 of an RTT later, while
        later data keeps being SACKed, was lost too (the idea of RACK, RFC 8985 6.2): resend it
        rather than wait for the RTO."""
        sent = self.rxt_times.get(self.snd_una)
        srtt = self.rto.srtt
        if sent is None or srtt is None or now - sent <= srtt + srtt // 4:
            return
        if not (self.sack_ok and self.scoreboard.ranges):
            return
        end = self.scoreboard.ranges[0][0]
        self.layer.counters["lost_retransmissions"] += 1
        self._send_range(self.snd_una, min(seq_sub(end, self.snd_una), self._segment_size()), now)
