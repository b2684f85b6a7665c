"""One TCP connection (RFC 9293): the TCB, the state machine's actions, user calls and the
segment-arrival rules (3.10.7), with RFC 7323 PAWS and RFC 5961 challenge ACKs.

State changes go only through the table in netstack.tcp.states. The sending half (output,
loss recovery) is netstack.tcp.sender, the receiving half (reassembly, delayed ACKs)
netstack.tcp.receiver, the timers netstack.tcp.timers: mixins over this one TCB.
"""

from __future__ import annotations

from netstack.tcp.congestion import make_congestion_control
from netstack.tcp.events import (
    Accepted,
    Closed,
    Connected,
    PeerClosed,
    Reset,
    SendSpace,
    TimedOut,
)
from netstack.tcp.receiver import Receiver
from netstack.tcp.rto import RtoEstimator
from netstack.tcp.sack import Scoreboard
from netstack.tcp.sender import Sender
from netstack.tcp.seq import (
    seq_add,
    seq_ge,
    seq_gt,
    seq_in,
    seq_le,
    seq_lt,
    seq_max,
    seq_sub,
)
from netstack.tcp.states import RECEIVE_STATES, SYNCHRONIZED, Event, State, transition
from netstack.tcp.timers import Timers
from netstack.wire.tcp import ACK, FIN, RST, SYN, Tcp

__all__ = ["Connection"]

PAWS_IDLE_NS = 24 * 24 * 3600 * 1_000_000_000   # RFC 7323 5.5: TS.Recent invalid after 24 days
DEFAULT_PEER_MSS = 536                       # RFC 9293 3.7.1 (IPv4)
MIN_MSS = 88                                 # floor for a hostile MSS option (room for options)


def _window_shift(buffer: int) -> int:
    """RFC 7323 2.3: the smallest shift (at most 14) that lets the buffer be announced."""
    shift = 0
    while (buffer >> shift) > 0xFFFF and shift < 14:
        shift += 1
    return shift


class Connection(Sender, Receiver, Timers):
    """The TCB (RFC 9293 3.3.1) and its behaviour; the layer owns demux, listeners and output."""

    def __init__(self, layer, conn_id: int, local: tuple, remote: tuple, iss: int, now: int,
                 listener: int | None = None) -> None:
        cfg = self.cfg = layer.config
        self.layer, self.id, self.local, self.remote = layer, conn_id, local, remote
        self.listener = listener
        self.state = State.CLOSED
        # send sequence space (RFC 9293 3.3.1, Figure 4)
        self.iss = self.snd_una = self.snd_nxt = self.snd_max = iss
        self.snd_wnd = self.max_snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.snd_buf = bytearray()
        self.snd_buf_seq = seq_add(iss, 1)       # sequence number of snd_buf[0]
        self.fin_queued = False                  # the user closed: FIN follows the data
        self.fin_seq: int | None = None          # sequence number of our FIN once sent
        # receive sequence space
        self.irs = self.rcv_nxt = self.rcv_adv = 0
        self.rcv_buf = bytearray()
        self.ooo: dict[int, bytes] = {}          # out-of-order segments by sequence number
        self.ooo_ranges: list[tuple[int, int]] = []
        self.ooo_fin: int | None = None
        self.recent_sacks: list[tuple[int, int]] = []
        self.fin_received = False
        # options (RFC 7323, RFC 2018)
        self.rcv_wscale = _window_shift(cfg.recv_buffer) if cfg.window_scaling else 0
        self.snd_wscale = 0
        self.ws_ok = self.ts_ok = self.sack_ok = False
        self.ts_recent = 0
        self.ts_recent_time = now
        self.ts_offset = iss                     # RFC 7323 5.4: a per-connection offset
        self.ts_last: int | None = None          # the newest TSval sent (it never goes back)
        self.last_ack_sent = 0
        self.mss = min(cfg.mss, DEFAULT_PEER_MSS)
        self.rcv_mss = DEFAULT_PEER_MSS           # the largest segment seen (for delayed ACKs)
        # loss recovery and congestion control
        self.rto = RtoEstimator(cfg.rto_initial_ns, cfg.rto_min_ns, cfg.rto_max_ns)
        self.cc = make_congestion_control(cfg.congestion, cfg.mss, cfg.initial_window_segments)
        self.scoreboard = Scoreboard()
        self.in_recovery = False
        self.recover = self.high_rxt = iss
        self.dupacks = 0
        self.rxt_times: dict[int, int] = {}     # retransmissions of this recovery: seq -> time
        self.rtt_seq: int | None = None          # Karn's algorithm when timestamps are off
        self.rtt_time = 0
        # timers (absolute ns or None)
        self.rtx_deadline: int | None = None
        self.rtx_count = 0                       # consecutive expiries
        self.dack_deadline: int | None = None
        self.unacked_bytes = 0
        self.persist_deadline: int | None = None
        self.persist_backoff = 0
        self.ka_deadline: int | None = None
        self.ka_probes = 0
        self.tw_deadline: int | None = None
        self.timer_entry: int | None = None     # the deadline the layer's heap holds for us
        # statistics and flags
        self.retransmits = self.segments_in = self.segments_out = 0
        self.send_blocked = False
        self.closed_reported = False
        self.announced = listener is None          # a passive open is announced by Accepted
        self.reset_reason = "reset"
        self.last_now = now

    # ------------------------------------------------------------------ state machine
    def fire(self, event: Event, now: int) -> bool:
        """Take the table's transition for ``event``; False if there is none."""
        step = transition(self.state, event)
        if step is None:
            return False
        self.state, actions = step
        for action in actions:
            getattr(self, "_do_" + action)(now)
        return True

    def _do_send_syn(self, now: int) -> None:
        self._send_syn(now, ack=False)

    def _do_send_syn_ack(self, now: int) -> None:
        self._send_syn(now, ack=True)

    def _do_send_ack(self, now: int) -> None:
        self._send_ack(now)

    def _do_send_fin(self, now: int) -> None:
        self.fin_queued = True
        self._output(now)

    def _do_send_rst(self, now: int) -> None:
        """RFC 9293 3.10.4 ABORT: send <SEQ=SND.NXT><CTL=RST>."""
        self._emit(self.snd_nxt, RST, now, with_ack=False)

    def _do_connected(self, now: int) -> None:
        self.announced = True
        if self.listener is not None:
            self.layer._event(Accepted(self.listener, self.id, self.remote))
        else:
            self.layer._event(Connected(self.id))
        self._arm_keepalive(now)
        self._output(now)

    def _do_peer_closed(self, now: int) -> None:
        self.layer._event(PeerClosed(self.id))

    def _report_end(self, event) -> None:
        """Report the end once, and only for a connection the user knows of (not a passive
        open that never reached ESTABLISHED)."""
        if not self.closed_reported and self.announced:
            self.layer._event(event)
        self.closed_reported = True

    def _do_closed(self, now: int) -> None:
        self._report_end(Closed(self.id))

    def _do_reset(self, now: int) -> None:
        self._report_end(Reset(self.id, self.reset_reason))

    def _do_timed_out(self, now: int) -> None:
        self._report_end(TimedOut(self.id))

    def _do_start_time_wait(self, now: int) -> None:
        """RFC 9293 3.10.7.4: TIME-WAIT lasts 2 MSL and restarts on a retransmitted FIN."""
        self.rtx_deadline = self.dack_deadline = self.persist_deadline = None
        self.ka_deadline = None
        self.tw_deadline = now + 2 * self.cfg.msl_ns

    def _do_delete(self, now: int) -> None:
        self.rtx_deadline = self.dack_deadline = self.persist_deadline = None
        self.ka_deadline = self.tw_deadline = None
        self.layer._forget(self)

    # ------------------------------------------------------------------ user calls
    def open_active(self, now: int) -> None:
        self.fire(Event.OPEN_ACTIVE, now)

    def send(self, data, now: int) -> int:
        """Queue bytes; returns how many fit in the send buffer (0 after close)."""
        self.last_now = now
        if self.fin_queued or self.state not in (State.SYN_SENT, State.SYN_RECEIVED,
                                                 State.ESTABLISHED, State.CLOSE_WAIT):
            return 0
        room = self.cfg.send_buffer - len(self.snd_buf)
        taken = min(room, len(data))
        if taken:
            self.snd_buf += data[:taken]
        if taken < len(data):
            self.send_blocked = True
        self._output(now)
        return taken

    def recv(self, max_bytes: int) -> bytes:
        """Take up to ``max_bytes`` in-order bytes; may send a window update."""
        if not self.rcv_buf or max_bytes <= 0:
            return b""
        data = bytes(self.rcv_buf[:max_bytes])
        del self.rcv_buf[:max_bytes]
        if self.state in RECEIVE_STATES:
            old = seq_sub(self.rcv_adv, self.rcv_nxt)
            if self._advance_rcv_adv() and old < self.cfg.recv_buffer // 2:
                self._send_ack(self.last_now)          # window update
        return data

    @property
    def eof(self) -> bool:
        return self.fin_received and not self.rcv_buf

    def close(self, now: int) -> None:
        self.last_now = now
        self.fire(Event.CLOSE, now)

    def abort(self, now: int) -> None:
        self.last_now = now
        self.snd_buf.clear()
        self.rcv_buf.clear()
        self.fire(Event.ABORT, now)

    # ------------------------------------------------------------------ segment arrival
    def segment(self, seg: Tcp, now: int) -> None:
        """RFC 9293 3.10.7: process one arriving segment."""
        self.last_now = now
        self.segments_in += 1
        if self.state == State.SYN_SENT:
            self._segment_syn_sent(seg, now)
            return
        if self.state in SYNCHRONIZED or self.state == State.SYN_RECEIVED:
            self._segment_synchronized(seg, now)

    def _take_syn_options(self, seg: Tcp, now: int) -> None:
        """Adopt the options of the peer's SYN (RFC 9293 3.7.1, RFC 7323 2.2/3.2, RFC 2018 2)."""
        opts, cfg = seg.options, self.cfg
        self.mss = max(min(cfg.mss, opts.mss if opts.mss else DEFAULT_PEER_MSS), MIN_MSS)
        self.cc.mss = self.mss
        self.cc.cwnd = cfg.initial_window_segments * self.mss
        self.ws_ok = cfg.window_scaling and opts.wscale is not None
        self.snd_wscale = min(opts.wscale, 14) if self.ws_ok else 0
        if not self.ws_ok:
            self.rcv_wscale = 0
        self.ts_ok = cfg.timestamps and opts.timestamp is not None
        if self.ts_ok:
            self.ts_recent, self.ts_recent_time = opts.timestamp[0], now
        self.sack_ok = cfg.sack and opts.sack_permitted

    def passive_open(self, seg: Tcp, now: int) -> None:
        """LISTEN + SYN (RFC 9293 3.10.7.2): record IRS, answer SYN-ACK."""
        self.state = State.LISTEN
        self.irs = seg.seq
        self.rcv_nxt = self.rcv_adv = seq_add(seg.seq, 1)
        self._take_syn_options(seg, now)
        self.snd_wnd = self.max_snd_wnd = seg.window
        self.snd_wl1, self.snd_wl2 = seg.seq, self.iss
        self.fire(Event.RCV_SYN, now)

    def open_from_cookie(self, seg: Tcp, mss: int, wscale, sack: bool, now: int) -> None:
        """Complete a passive open from a SYN cookie's ACK (RFC 4987 3.6): ESTABLISHED now."""
        cfg = self.cfg
        self.irs = seq_add(seg.seq, -1)
        self.rcv_nxt = self.rcv_adv = seg.seq
        self.mss = min(cfg.mss, mss)
        self.cc.mss = self.mss
        self.cc.cwnd = cfg.initial_window_segments * self.mss
        self.ts_ok = cfg.timestamps and seg.options.timestamp is not None
        self.ws_ok = self.ts_ok and cfg.window_scaling and wscale is not None
        self.snd_wscale = wscale if self.ws_ok else 0
        self.rcv_wscale = self.rcv_wscale if self.ws_ok else 0
        self.sack_ok = self.ts_ok and cfg.sack and sack
        if self.ts_ok:
            self.ts_recent, self.ts_recent_time = seg.options.timestamp[0], now
            # our cookie SYN-ACK's TSval came from the layer clock: keep that clock
            self.ts_offset = 0
            self.ts_last = None
        self.snd_una = self.iss
        self.snd_nxt = self.snd_max = self.snd_buf_seq = seg.ack
        self.rcv_adv = seq_add(self.rcv_nxt, min(cfg.recv_buffer, 0xFFFF))   # what we offered
        self._advance_rcv_adv()
        self.state = State.SYN_RECEIVED
        self._segment_synchronized(seg, now)

    def _segment_syn_sent(self, seg: Tcp, now: int) -> None:
        """RFC 9293 3.10.7.3, with RFC 5961 3.2 for the RST."""
        flags = seg.flags
        if flags & ACK and (seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_max)):
            if not flags & RST:
                self._emit(seg.ack, RST, now, with_ack=False)
            self.layer._drop("unacceptable_ack")
            return
        if flags & RST:
            if flags & ACK:
                self.reset_reason = "refused"
                self.fire(Event.RCV_RST, now)
            else:
                self.layer._drop("rst_without_ack")
            return
        if not flags & SYN:
            self.layer._drop("no_syn")
            return
        self.irs = seg.seq
        self.rcv_nxt = self.rcv_adv = seq_add(seg.seq, 1)
        self._take_syn_options(seg, now)
        if flags & ACK:
            self._ack_of_syn(seg, now)
            self._advance_rcv_adv()
            self.fire(Event.RCV_SYN_ACK, now)
            if seg.payload or flags & FIN:
                self._receive_text(seg, seq_add(seg.seq, 1), seg.payload, bool(flags & FIN), now)
        else:                                        # simultaneous open (RFC 9293 3.5 Fig. 8)
            self.snd_wnd = self.max_snd_wnd = seg.window
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            self.rtx_deadline = None
            self.fire(Event.RCV_SYN, now)

    def _ack_of_syn(self, seg: Tcp, now: int) -> None:
        """Our SYN is acknowledged: take the window, an RTT sample, and stop the timer."""
        self.snd_una = seg.ack
        self.snd_nxt = seq_max(self.snd_nxt, seg.ack)
        scale = self.snd_wscale if not seg.flags & SYN else 0     # RFC 7323 2.2
        self.snd_wnd = seg.window << scale
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
        self._rtt_sample(seg, now)
        self.rtx_deadline = None
        self.rtx_count = 0
        self.rto.reset_backoff()

    def _rtt_sample(self, seg: Tcp, now: int) -> None:
        """RFC 7323 4.1 RTTM from TSecr, else one timed segment (RFC 6298 section 3, Karn)."""
        ts = seg.options.timestamp
        if self.ts_ok and ts is not None and ts[1]:
            rtt_ms = seq_sub(self._ts_now(now), ts[1])
            if 0 <= rtt_ms < 0x7FFFFFFF:
                self.rto.sample(rtt_ms * 1_000_000)
            return
        if self.rtt_seq is not None and seq_ge(seg.ack, self.rtt_seq):
            self.rto.sample(now - self.rtt_time)
            self.rtt_seq = None

    def _challenge_ack(self, now: int, reason: str) -> None:
        """RFC 5961 3.2/4.2/5.2: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, rate-limited (section 7)."""
        self.layer._drop(reason)
        if self.layer._challenge_allowed(now):
            self.layer.counters["challenge_acks"] += 1
            self._send_ack(now)

    def _segment_synchronized(self, seg: Tcp, now: int) -> None:
        flags = seg.flags
        payload = seg.payload
        seq = seg.seq
        ts = seg.options.timestamp
        # a retransmitted SYN-ACK seen in SYN-RECEIVED (simultaneous open): drop the SYN bit
        if flags & SYN and seq == self.irs and flags & ACK and self.state == State.SYN_RECEIVED:
            flags &= ~SYN
            seq = seq_add(seq, 1)
        if self.state == State.SYN_RECEIVED and flags & (SYN | ACK | RST) == SYN \
                and seg.seq == self.irs:
            self._send_syn(now, ack=True)             # the peer repeated its SYN: repeat ours
            return
        if self.state == State.TIME_WAIT and flags & FIN and not flags & RST:
            self.fire(Event.RCV_FIN, now)            # retransmitted FIN: ACK, restart 2 MSL
            return
        # RFC 7323 5.3 R1: PAWS
        if self.ts_ok and ts is not None and not flags & RST and self.ts_recent_time + \
                PAWS_IDLE_NS > now and seq_lt(ts[0], self.ts_recent):
            self.layer._drop("paws")
            self._send_ack(now)
            return
        if flags & SYN and not flags & RST:                           # RFC 5961 4.2
            self._challenge_ack(now, "syn_in_window" if self._acceptable(seq, 1)
                                else "syn_out_of_window")
            return
        # a bare FIN at RCV.NXT is taken even by a zero window (as Linux does), else the close
        # would wait for the user to read
        length = len(payload) + (1 if flags & FIN and payload else 0)
        if not self._acceptable(seq, length):
            if not flags & RST:
                self._send_ack(now)
            self.layer._drop("out_of_window")
            return
        if ts is not None and self.ts_ok and seq_ge(ts[0], self.ts_recent) \
                and seq_le(seq, self.last_ack_sent):
            self.ts_recent, self.ts_recent_time = ts[0], now           # RFC 7323 4.3 (2)
        self._touch_keepalive(now)
        if flags & RST:                                                # RFC 5961 3.2
            if seq == self.rcv_nxt:
                self.reset_reason = "reset"
                self.fire(Event.RCV_RST, now)
            else:
                self._challenge_ack(now, "rst_not_at_rcv_nxt")
            return
        if not flags & ACK:
            self.layer._drop("no_ack")
            return
        if self.state == State.SYN_RECEIVED:
            if not seq_in(seg.ack, seq_add(self.snd_una, 1), seq_add(self.snd_max, 1)):
                self._emit(seg.ack, RST, now, with_ack=False)
                self.layer._drop("unacceptable_ack")
                return
            self._ack_of_syn(seg, now)
            self.fire(Event.RCV_ACK_OF_SYN, now)
        elif not self._process_ack(seg, now):
            return
        if self.state == State.CLOSED:
            return
        if payload or flags & FIN:
            self._receive_text(seg, seq, payload, bool(flags & FIN), now)
        self._output(now)

    def _process_ack(self, seg: Tcp, now: int) -> bool:
        """RFC 9293 3.10.7.4 fifth check with RFC 5961 5.2; False when the segment is dropped."""
        ack = seg.ack
        if seq_gt(ack, self.snd_max):
            self._send_ack(now)
            self.layer._drop("ack_beyond_snd_nxt")
            return False
        if seq_lt(ack, seq_add(self.snd_una, -self.max_snd_wnd)):
            self._challenge_ack(now, "ack_too_old")
            return False
        window = seg.window << self.snd_wscale
        blocks = seg.options.sack_blocks
        if self.sack_ok and blocks:
            self.scoreboard.update(blocks, self.snd_una, self.snd_max)
        if seq_gt(ack, self.snd_una):
            self._new_ack(seg, ack, now)
        elif ack == self.snd_una and seq_lt(self.snd_una, self.snd_max) and not seg.payload \
                and not seg.flags & FIN and (window == self.snd_wnd or blocks):
            self._duplicate_ack(now)
        # window update (RFC 9293 3.10.7.4: SND.WL1 < SEG.SEQ or (= and SND.WL2 =< SEG.ACK))
        if seq_lt(self.snd_wl1, seg.seq) or (self.snd_wl1 == seg.seq
                                             and seq_le(self.snd_wl2, ack)):
            opened = self.snd_wnd == 0 and window > 0
            self.snd_wnd, self.snd_wl1, self.snd_wl2 = window, seg.seq, ack
            self.max_snd_wnd = max(self.max_snd_wnd, window)
            if opened:
                self.persist_deadline, self.persist_backoff = None, 0
                if seq_lt(self.snd_una, self.snd_max):
                    self.rtx_deadline = None
        if self.fin_seq is not None and seq_gt(self.snd_una, self.fin_seq):
            if self.fire(Event.RCV_ACK_OF_FIN, now) and self.state == State.CLOSED:
                return False
        return True

    def _new_ack(self, seg: Tcp, ack: int, now: int) -> None:
        acked = seq_sub(ack, self.snd_una)
        flight_before = self._flight()
        self.snd_una = ack
        if seq_lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        drop = min(max(seq_sub(ack, self.snd_buf_seq), 0), len(self.snd_buf))
        if drop:
            del self.snd_buf[:drop]
            self.snd_buf_seq = seq_add(self.snd_buf_seq, drop)
        self.scoreboard.advance(ack)
        self._rtt_sample(seg, now)
        self.rtx_count = 0
        self.rto.reset_backoff()
        self.persist_backoff = 0
        # RFC 6298 (5.2)/(5.3): stop the timer when all is acknowledged, else restart it
        self.rtx_deadline = None if ack == self.snd_max else now + self.rto.rto
        if self.in_recovery:
            if seq_ge(ack, self.recover):            # RFC 6582 3.2 step 3: full acknowledgment
                self.in_recovery = False
                self.rxt_times.clear()
                self.cc.on_exit_recovery(self._flight())
            else:                                    # partial acknowledgment: next hole
                self.high_rxt = seq_max(self.high_rxt, ack)
        else:
            self.cc.on_ack(min(acked, flight_before) if flight_before > 0 else acked, now,
                           self.rto.srtt)
        self.dupacks = 0
        if self.send_blocked and len(self.snd_buf) < self.cfg.send_buffer:
            self.send_blocked = False
            self.layer._event(SendSpace(self.id))

    # ------------------------------------------------------------------ introspection
    def info(self) -> dict:
        return {
            "state": self.state.value, "local": self.local, "remote": self.remote,
            "mss": self.mss, "segment_size": self._segment_size(), "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh, "congestion": self.cc.name, "srtt": self.rto.srtt,
            "srtt_ns": self.rto.srtt, "rttvar_ns": self.rto.rttvar, "rto": self.rto.rto,
            "rto_ns": self.rto.rto, "snd_una": self.snd_una, "snd_nxt": self.snd_nxt,
            "snd_wnd": self.snd_wnd, "rcv_nxt": self.rcv_nxt,
            "rcv_wnd": max(seq_sub(self.rcv_adv, self.rcv_nxt), 0),
            "snd_wscale": self.snd_wscale, "rcv_wscale": self.rcv_wscale,
            "timestamps": self.ts_ok, "ts_recent": self.ts_recent, "sack": self.sack_ok, "in_recovery": self.in_recovery,
            "retransmits": self.retransmits, "segments_in": self.segments_in,
            "segments_out": self.segments_out, "send_buffered": len(self.snd_buf),
            "recv_buffered": len(self.rcv_buf), "eof": self.eof,
        }
