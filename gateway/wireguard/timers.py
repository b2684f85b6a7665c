"""The protocol's timers (whitepaper §6), sans-I/O: deadlines in monotonic ns, no clock here.

``Timing`` holds the constants of §6.1 (overridable, e.g. to rekey within a test; every value
is in nanoseconds). ``PeerTimers`` is the per-peer set of one-shot timers wireguard-go keeps,
each an optional deadline:

- ``retransmit``: REKEY_TIMEOUT + jitter after an initiation is sent (§6.4: "a handshake
  initiation is retried after REKEY_TIMEOUT + jitter ms"), up to REKEY_ATTEMPT_TIME in all;
- ``keepalive``: KEEPALIVE_TIMEOUT after a data packet is received, if nothing was sent
  back (§6.5: "passive keepalive");
- ``new_handshake``: KEEPALIVE_TIMEOUT + REKEY_TIMEOUT after a data packet is sent, if nothing
  came back (§6.5);
- ``zero_keys``: 3 × REJECT_AFTER_TIME after the last handshake: erase all keys (§6.3);
- ``persistent``: the peer's PersistentKeepalive interval after any authenticated packet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

SECOND = 10**9


@dataclass(frozen=True)
class Timing:
    rekey_after_messages: int = 2**60
    reject_after_messages: int = 2**64 - 2**13 - 1
    rekey_after_time: int = 120 * SECOND
    reject_after_time: int = 180 * SECOND
    rekey_attempt_time: int = 90 * SECOND
    rekey_timeout: int = 5 * SECOND
    keepalive_timeout: int = 10 * SECOND
    jitter_max: int = 334 * 10**6

    @property
    def max_handshake_attempts(self) -> int:
        return max(1, self.rekey_attempt_time // self.rekey_timeout)


TIMER_NAMES = ("retransmit", "keepalive", "new_handshake", "zero_keys", "persistent")


@dataclass
class PeerTimers:
    """One peer's deadlines (None = not armed) and the handshake attempt count."""

    timing: Timing
    persistent_interval: int = 0
    deadlines: dict = field(default_factory=lambda: dict.fromkeys(TIMER_NAMES))
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def jitter(self) -> int:
        return self.rng.randrange(0, self.timing.jitter_max + 1)

    def arm(self, name: str, deadline: int, *, if_idle: bool = False) -> None:
        if if_idle and self.deadlines[name] is not None:
            return
        self.deadlines[name] = deadline

    def disarm(self, name: str) -> None:
        self.deadlines[name] = None

    def next_deadline(self) -> int | None:
        armed = [d for d in self.deadlines.values() if d is not None]
        return min(armed) if armed else None

    def expired(self, now: int) -> list[str]:
        """The timers due at ``now`` (disarmed as they are returned)."""
        due = [n for n, d in self.deadlines.items() if d is not None and d <= now]
        for n in due:
            self.deadlines[n] = None
        return due

    # -- the events of §6 --------------------------------------------------------------------
    def initiation_sent(self, now: int) -> None:
        self.arm("retransmit", now + self.timing.rekey_timeout + self.jitter())

    def handshake_complete(self, now: int) -> None:
        self.disarm("retransmit")
        self.attempts = 0
        self.arm("zero_keys", now + 3 * self.timing.reject_after_time)

    def data_sent(self, now: int) -> None:
        deadlines = self.deadlines
        deadlines["keepalive"] = None
        if deadlines["new_handshake"] is None:
            deadlines["new_handshake"] = now + self.timing.keepalive_timeout \
                + self.timing.rekey_timeout + self.jitter()

    def data_received(self, now: int) -> None:
        self.arm("keepalive", now + self.timing.keepalive_timeout, if_idle=True)

    def authenticated_received(self, now: int) -> None:
        self.disarm("new_handshake")

    def authenticated_traversed(self, now: int) -> None:
        if self.persistent_interval:
            self.arm("persistent", now + self.persistent_interval)
