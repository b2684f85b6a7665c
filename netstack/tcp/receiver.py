"""The receiving half of a connection: acceptability, reassembly, delayed ACKs.

A mixin of netstack.tcp.connection.Connection. Out-of-order segments are kept (bounded) and
SACKed (RFC 2018); ACKs are delayed except for every second full segment, out-of-order data
and filled holes (RFC 9293 3.8.6.3, RFC 5681 4.2).
"""

from __future__ import annotations

from netstack.tcp.events import (
    DataReady,
)
from netstack.tcp.sack import _merge
from netstack.tcp.seq import (
    seq_add,
    seq_gt,
    seq_in,
    seq_lt,
    seq_sub,
)
from netstack.tcp.states import RECEIVE_STATES, Event
from netstack.wire.tcp import Tcp

MAX_OUT_OF_ORDER = 1024                      # out-of-order segments kept (bounds CPU and memory)


class Receiver:
    """Segment text and FIN processing for a Connection."""

    def _acceptable(self, seq: int, length: int) -> bool:
        """RFC 9293 3.10.7.4 first check: the four cases of segment acceptability."""
        wnd = seq_sub(self.rcv_adv, self.rcv_nxt)
        if wnd <= 0:
            return length == 0 and seq == self.rcv_nxt
        end = seq_add(self.rcv_nxt, wnd)
        if length == 0:
            return seq_in(seq, self.rcv_nxt, end)
        return seq_in(seq, self.rcv_nxt, end) or seq_in(seq_add(seq, length - 1), self.rcv_nxt, end)

    def _receive_text(self, seg: Tcp, seq: int, payload, fin: bool, now: int) -> None:
        """RFC 9293 3.10.7.4 seventh and eighth checks: segment text and FIN."""
        if self.state not in RECEIVE_STATES:
            return
        end = seq_add(seq, len(payload))
        if seq_lt(seq, self.rcv_nxt):                 # trim what we already have
            cut = seq_sub(self.rcv_nxt, seq)
            payload = payload[cut:] if cut < len(payload) else b""
            seq = self.rcv_nxt
        limit = seq_sub(self.rcv_adv, seq)            # trim beyond the window
        if len(payload) > limit:
            payload = payload[:max(limit, 0)]
            fin = False
            end = seq_add(seq, len(payload))
        if seq != self.rcv_nxt:                       # out of order: keep, SACK, ACK now
            if payload and len(self.ooo) >= MAX_OUT_OF_ORDER and seq not in self.ooo:
                self.layer._drop("out_of_order_queue_full")
            elif payload:
                if len(payload) > len(self.ooo.get(seq, b"")):
                    self.ooo[seq] = bytes(payload)
                self.ooo_ranges = _merge(self.ooo_ranges, seq, end)
                self.recent_sacks = [(seq, end)] + self.recent_sacks[:3]
            if fin:
                self.ooo_fin = end
            self.layer.counters["out_of_order_segments"] += 1
            self._send_ack(now)
            return
        filled_hole = bool(self.ooo)
        if len(payload) > self.rcv_mss:
            self.rcv_mss = min(len(payload), self.cfg.mss)
        if payload:
            self.rcv_buf += payload
            self.rcv_nxt = end
            if self.ooo:
                self._pull_out_of_order()
            self.layer._event(DataReady(self.id))
        if fin or (self.ooo_fin is not None and self.ooo_fin == self.rcv_nxt):
            self.ooo.clear()
            self.ooo_ranges = []
            self.fin_received = True
            self.rcv_nxt = seq_add(self.rcv_nxt, 1)
            self.fire(Event.RCV_FIN, now)
            return
        self.unacked_bytes += len(payload)
        if filled_hole or self.unacked_bytes >= 2 * self.rcv_mss:  # RFC 9293 3.8.6.3, 5681 4.2
            self._send_ack(now)
        elif self.dack_deadline is None:
            self.dack_deadline = now + self.cfg.delayed_ack_ns

    def _pull_out_of_order(self) -> None:
        """Move the out-of-order segments that now follow RCV.NXT into the receive buffer."""
        for start in sorted(self.ooo, key=lambda s: seq_sub(s, self.rcv_nxt)):
            data = self.ooo[start]
            if seq_gt(start, self.rcv_nxt):
                break
            del self.ooo[start]
            skip = seq_sub(self.rcv_nxt, start)
            if skip < len(data):
                self.rcv_buf += data[skip:]
                self.rcv_nxt = seq_add(start, len(data))
        self.ooo_ranges = [(a, b) for a, b in self.ooo_ranges if seq_gt(b, self.rcv_nxt)]
        if self.ooo_ranges and seq_lt(self.ooo_ranges[0][0], self.rcv_nxt):
            self.ooo_ranges[0] = (self.rcv_nxt, self.ooo_ranges[0][1])
        self.recent_sacks = [r for r in self.recent_sacks if seq_gt(r[1], self.rcv_nxt)]
