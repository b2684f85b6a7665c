"""The timers of a connection: retransmission (RFC 6298), persist (zero-window probes, RFC 9293
3.8.6.1), keep-alive (RFC 9293 3.8.4), delayed ACK and TIME-WAIT.

A mixin of netstack.tcp.connection.Connection; the layer asks ``deadline()`` and calls
``on_timer(now)`` when it has passed.
"""

from __future__ import annotations

from netstack.tcp.seq import (
    seq_add,
    seq_lt,
    seq_max,
    seq_sub,
)
from netstack.tcp.states import SEND_STATES, Event, State
from netstack.wire.tcp import PSH


class Timers:
    """Deadlines and their expiry for a Connection."""

    # ------------------------------------------------------------------ timers
    def _touch_keepalive(self, now: int) -> None:
        self.ka_probes = 0
        if self.ka_deadline is not None:
            self.ka_deadline = now + self.cfg.keepalive_idle_ns

    def _arm_keepalive(self, now: int) -> None:
        if self.cfg.keepalive_idle_ns:
            self.ka_deadline = now + self.cfg.keepalive_idle_ns

    def deadline(self) -> int | None:
        best = None
        for t in (self.rtx_deadline, self.dack_deadline, self.persist_deadline,
                  self.ka_deadline, self.tw_deadline):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def on_timer(self, now: int) -> None:
        """Run every timer whose deadline has passed."""
        self.last_now = now
        if self.tw_deadline is not None and now >= self.tw_deadline:
            self.tw_deadline = None
            self.fire(Event.TIMEOUT_2MSL, now)
            return
        if self.dack_deadline is not None and now >= self.dack_deadline:
            self.layer.counters["delayed_acks"] += 1
            self._send_ack(now)
        if self.rtx_deadline is not None and now >= self.rtx_deadline:
            self.rtx_deadline = None
            self._retransmit_timeout(now)
        if self.state == State.CLOSED:
            return
        if self.persist_deadline is not None and now >= self.persist_deadline:
            self.persist_deadline = None
            self._probe_zero_window(now)
        if self.ka_deadline is not None and now >= self.ka_deadline:
            self._keepalive(now)

    def _retransmit_timeout(self, now: int) -> None:
        """RFC 6298 section 5 (5.4)-(5.6); RFC 5681 (4)/(5); RFC 9293 3.8.3 R2 gives up."""
        self.rtx_count += 1
        self.layer.counters["rto_expirations"] += 1
        if self.state in (State.SYN_SENT, State.SYN_RECEIVED):
            if self.rtx_count > self.cfg.syn_retries:
                self.fire(Event.GIVE_UP, now)
                return
            self.rto.backoff()
            self.retransmits += 1
            self.rtt_seq = None
            self._send_syn(now, ack=self.state == State.SYN_RECEIVED)
            self.rtx_deadline = now + self.rto.rto
            return
        if self.rtx_count > self.cfg.max_retransmits:
            self.fire(Event.GIVE_UP, now)
            return
        if self.state not in SEND_STATES or not seq_lt(self.snd_una, self.snd_max):
            return
        self.cc.on_timeout(self._flight(), now)
        self.in_recovery = False
        self.rxt_times.clear()
        self.recover = self.snd_max
        self.dupacks = 0
        self.scoreboard.clear()
        self.rtt_seq = None
        self.rto.backoff()
        self.snd_nxt = self.snd_una                     # go back N (the FIN keeps its number)
        self._output(now)
        self.rtx_deadline = now + self.rto.rto

    def _probe_zero_window(self, now: int) -> None:
        """RFC 9293 3.8.6.1: probe a zero window with one byte, backing off like the RTO; send a
        runt the SWS rule held back once the override timeout expires (3.8.6.2.1)."""
        if self.state not in SEND_STATES:
            return
        data_end = seq_add(self.snd_buf_seq, len(self.snd_buf))
        room = seq_sub(seq_add(self.snd_una, self.snd_wnd), self.snd_nxt)
        if self.snd_wnd > 0:
            if room > 0 and seq_lt(self.snd_nxt, data_end):    # 3.8.6.2.1 override timeout
                n = min(room, self._segment_size(), seq_sub(data_end, self.snd_nxt))
                off = seq_sub(self.snd_nxt, self.snd_buf_seq)
                self._emit(self.snd_nxt, PSH, now, self.snd_buf[off:off + n])
                self.snd_nxt = seq_add(self.snd_nxt, n)
                self.snd_max = seq_max(self.snd_max, self.snd_nxt)
            self._arm_send_timers(now)
            return
        self.layer.counters["zero_window_probes"] += 1
        if seq_lt(self.snd_una, self.snd_max):
            self._send_range(self.snd_una, 1, now)
        elif seq_lt(self.snd_nxt, data_end):
            off = seq_sub(self.snd_nxt, self.snd_buf_seq)
            self._emit(self.snd_nxt, 0, now, self.snd_buf[off:off + 1])
            self.snd_nxt = seq_add(self.snd_nxt, 1)
            self.snd_max = seq_max(self.snd_max, self.snd_nxt)
        elif self.fin_queued:
            self._send_fin_at(data_end, now)
        self.persist_backoff = min(self.persist_backoff + 1, 16)
        self._arm_send_timers(now)

    def _keepalive(self, now: int) -> None:
        """RFC 9293 3.8.4 / RFC 1122 4.2.3.6: <SEQ=SND.UNA-1> with no data; give up after N."""
        if self.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
            self.ka_deadline = None
            return
        if seq_lt(self.snd_una, self.snd_max):         # data outstanding: the RTO is in charge
            self.ka_deadline = now + self.cfg.keepalive_interval_ns
            return
        if self.ka_probes >= self.cfg.keepalive_probes:
            self.fire(Event.GIVE_UP, now)
            return
        self.ka_probes += 1
        self.layer.counters["keepalive_probes"] += 1
        self._emit(seq_add(self.snd_una, -1), 0, now)
        self.ka_deadline = now + self.cfg.keepalive_interval_ns
