"""The retransmission timer's value (RFC 6298).

(2.2) first sample R: SRTT = R, RTTVAR = R/2; (2.3) later samples: RTTVAR = (1 - beta) *
RTTVAR + beta * |SRTT - R'|, SRTT = (1 - alpha) * SRTT + alpha * R' with alpha = 1/8,
beta = 1/4 (RTTVAR first, using the old SRTT); RTO = SRTT + max(G, K * RTTVAR), K = 4.
(2.4) "Whenever RTO is computed, if it is less than 1 second, then the RTO SHOULD be rounded up
to 1 second" (the minimum is configurable). (2.5) a maximum may be placed on the RTO, at least
60 s. (5.5) on expiry "set RTO <- RTO * 2 (back off the timer)".
"""

from __future__ import annotations

__all__ = ["RtoEstimator"]

CLOCK_GRANULARITY_NS = 1_000_000    # G: our timestamps tick in milliseconds
K = 4


class RtoEstimator:
    """SRTT, RTTVAR and RTO in ns; ``backoff`` doubles the RTO until a new sample arrives."""

    __slots__ = ("srtt", "rttvar", "base_rto", "rto", "rto_min", "rto_max")

    def __init__(self, initial: int = 1_000_000_000, rto_min: int = 1_000_000_000,
                 rto_max: int = 60_000_000_000) -> None:
        self.srtt: int | None = None
        self.rttvar: int | None = None
        self.rto_min, self.rto_max = rto_min, rto_max
        self.base_rto = self.rto = max(initial, rto_min)       # (2.1)

    def sample(self, rtt: int) -> None:
        """Take one RTT measurement R (ns): rules (2.2) and (2.3), then (2.4)/(2.5)."""
        rtt = max(rtt, 0)
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt // 2
        else:
            self.rttvar = (3 * self.rttvar + abs(self.srtt - rtt)) // 4
            self.srtt = (7 * self.srtt + rtt) // 8
        rto = self.srtt + max(CLOCK_GRANULARITY_NS, K * self.rttvar)
        self.base_rto = self.rto = min(max(rto, self.rto_min), self.rto_max)

    def backoff(self) -> None:
        """(5.5): double the RTO, bounded by the maximum (2.5)."""
        self.rto = min(self.rto * 2, self.rto_max)

    def reset_backoff(self) -> None:
        """A new acknowledgment: drop the backoff (the next sample recomputes anyway)."""
        self.rto = self.base_rto
