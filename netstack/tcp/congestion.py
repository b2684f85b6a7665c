"""Congestion control behind one interface: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438).

The connection owns loss detection and recovery (SACK-based, RFC 6675 style, or NewReno's
partial acknowledgments); a controller owns ``cwnd`` and ``ssthresh`` (bytes) and reacts to:
``on_ack`` (bytes newly acknowledged outside recovery), ``on_enter_recovery`` (fast
retransmit), ``on_exit_recovery`` (the full acknowledgment of RFC 6582 3.2 step 3) and
``on_timeout`` (an RTO fired).
"""

from __future__ import annotations

__all__ = ["CongestionControl", "NewReno", "Cubic", "make_congestion_control"]


class CongestionControl:
    """Slow start and the loss reactions shared by both algorithms (RFC 5681 section 3.1)."""

    name = "base"

    def __init__(self, mss: int, initial_window_segments: int = 10) -> None:
        self.mss = mss
        self.cwnd = initial_window_segments * mss               # RFC 6928 / RFC 5681 (3.1)
        self.ssthresh = 0x7FFFFFFF                              # "arbitrarily high"
        self.bytes_acked = 0

    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    def on_ack(self, acked: int, now: int, srtt: int | None) -> None:
        """RFC 5681 (2): slow start grows cwnd by at most SMSS per ACK (RFC 3465 L=1 SMSS)."""
        if self.in_slow_start():
            self.cwnd += min(acked, self.mss)
        else:
            self._avoid_congestion(acked, now, srtt)

    def _avoid_congestion(self, acked: int, now: int, srtt: int | None) -> None:
        raise NotImplementedError

    def _reduced_ssthresh(self, flight: int) -> int:
        """RFC 5681 (4): ssthresh = max(FlightSize / 2, 2 * SMSS)."""
        return max(flight // 2, 2 * self.mss)

    def on_enter_recovery(self, flight: int, now: int) -> None:
        """Fast retransmit (RFC 5681 3.2 step 2; RFC 6675 section 5): cwnd = ssthresh."""
        self.ssthresh = self._reduced_ssthresh(flight)
        self.cwnd = self.ssthresh
        self.bytes_acked = 0

    def on_exit_recovery(self, flight: int) -> None:
        """RFC 6582 3.2 step 3 (full ACK): cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS)."""
        self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)

    def on_timeout(self, flight: int, now: int) -> None:
        """RFC 5681 (4) and (5): ssthresh halves the flight, cwnd = 1 SMSS (loss window)."""
        self.ssthresh = self._reduced_ssthresh(flight)
        self.cwnd = self.mss
        self.bytes_acked = 0


class NewReno(CongestionControl):
    """RFC 5681 3.1 congestion avoidance by appropriate byte counting (RFC 3465)."""

    name = "newreno"

    def _avoid_congestion(self, acked: int, now: int, srtt: int | None) -> None:
        """cwnd grows by one SMSS once per cwnd of acknowledged bytes (RFC 5681 (3))."""
        self.bytes_acked += acked
        if self.bytes_acked >= self.cwnd:
            self.bytes_acked -= self.cwnd
            self.cwnd += self.mss


class Cubic(CongestionControl):
    """RFC 9438: W_cubic(t) = C * (t - K)**3 + W_max (4.2), in segments, t in seconds."""

    name = "cubic"
    C = 0.4                  # RFC 9438 section 5: C = 0.4
    BETA = 0.7               # beta_cubic (4.6)

    def __init__(self, mss: int, initial_window_segments: int = 10) -> None:
        super().__init__(mss, initial_window_segments)
        self.w_max = 0.0                 # segments
        self.k = 0.0                     # seconds
        self.epoch_start: int | None = None
        self.cwnd_epoch = 0.0            # segments, cwnd at the start of the epoch
        self.w_est = 0.0                 # segments, the Reno-friendly estimate (4.3)

    def w_cubic(self, t: float) -> float:
        """RFC 9438 Figure 1: the window (segments) t seconds into the epoch."""
        return self.C * (t - self.k) ** 3 + self.w_max

    def _compute_k(self) -> None:
        """RFC 9438 Figure 2: K = cubic_root((W_max - cwnd_epoch) / C)."""
        diff = max(self.w_max - self.cwnd_epoch, 0.0)
        self.k = (diff / self.C) ** (1.0 / 3.0)

    def _avoid_congestion(self, acked: int, now: int, srtt: int | None) -> None:
        """RFC 9438 4.2-4.4: grow towards W_cubic(t + RTT), never below the Reno estimate."""
        segs = self.cwnd / self.mss
        if self.epoch_start is None:                 # congestion avoidance starts (4.2)
            self.epoch_start = now
            if self.w_max < segs:                    # no loss yet: start at the plateau
                self.w_max = segs
            self.cwnd_epoch = segs
            self.w_est = segs
            self._compute_k()
        rtt = (srtt or 100_000_000) / 1e9
        t = (now - self.epoch_start) / 1e9
        target = self.w_cubic(t + rtt)
        target = min(max(target, segs), 1.5 * segs)              # 4.2: bounded target
        # 4.3 Reno-friendly region: W_est += alpha_cubic * acked / cwnd
        alpha = 3.0 * (1.0 - self.BETA) / (1.0 + self.BETA)
        self.w_est += alpha * (acked / self.mss) / segs
        if self.w_est > self.w_max:                  # 4.3: alpha becomes 1 past W_max
            alpha = 1.0
        if self.w_cubic(t) < self.w_est:
            new_segs = segs + alpha * (acked / self.mss) / segs
            new_segs = max(new_segs, self.w_est)
        else:                                        # 4.4/4.5: concave and convex regions
            new_segs = segs + (target - segs) / segs * (acked / self.mss)
        self.cwnd = max(int(new_segs * self.mss), self.cwnd)

    def _reduced_ssthresh(self, flight: int) -> int:
        """RFC 9438 4.6: ssthresh = cwnd * beta_cubic; 4.7 fast convergence lowers W_max."""
        segs = self.cwnd / self.mss
        if segs < self.w_max:                        # 4.7 fast convergence
            self.w_max = segs * (1.0 + self.BETA) / 2.0
        else:
            self.w_max = segs
        self.epoch_start = None
        return max(int(self.cwnd * self.BETA), 2 * self.mss)


def make_congestion_control(name: str, mss: int, initial_window_segments: int = 10):
    """A fresh controller by name: "newreno" or "cubic"."""
    cls = {"newreno": NewReno, "cubic": Cubic}[name]
    return cls(mss, initial_window_segments)
