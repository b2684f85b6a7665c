"""Stateful parts of rule evaluation shared by the reference evaluator and the compiled
classifier: token buckets for ``limit`` and the rate limit on ``log`` lines. Sans-I/O: every
call takes ``now`` (int ns)."""

from __future__ import annotations

from collections import OrderedDict

MAX_KEYS = 65536              # per-key buckets kept per limit; the least recently used goes
LOG_RATE = 10                 # log lines per second (burst 10), the rest are counted


class TokenBucket:
    """``rate`` units per ``per_ns``, at most ``burst`` units banked (RFC 2697's idea)."""

    __slots__ = ("rate", "per_ns", "cap", "tokens", "last")

    def __init__(self, rate: int, per_ns: int, burst: int, now: int) -> None:
        self.rate, self.per_ns = rate, per_ns
        self.cap = burst * per_ns            # tokens are kept scaled by per_ns: integers only
        self.tokens, self.last = self.cap, now

    def take(self, cost: int, now: int) -> bool:
        """Take ``cost`` units if there are enough; True if taken."""
        if now > self.last:
            self.tokens = min(self.cap, self.tokens + (now - self.last) * self.rate)
            self.last = now
        need = cost * self.per_ns
        if self.tokens >= need:
            self.tokens -= need
            return True
        return False


class Limits:
    """Every ``limit`` of a rule set, keyed by an id the evaluator chooses (stable across
    reloads only if the caller keeps the object)."""

    def __init__(self) -> None:
        self.buckets: dict[object, OrderedDict] = {}

    def check(self, ident: object, limit, key: tuple, length: int, now: int) -> bool:
        """Whether ``limit`` matches a packet of ``length`` bytes with key ``key`` at ``now``."""
        table = self.buckets.setdefault(ident, OrderedDict())
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = TokenBucket(limit.rate, limit.per_ns, limit.burst, now)
            if len(table) > MAX_KEYS:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        ok = bucket.take(length if limit.bytes else 1, now)
        return ok != limit.over


class LogLimiter:
    """Allows ``LOG_RATE`` lines a second; counts the suppressed ones."""

    def __init__(self, now: int = 0) -> None:
        self.bucket = TokenBucket(LOG_RATE, 10**9, LOG_RATE, now)
        self.suppressed = 0

    def allow(self, now: int) -> bool:
        if self.bucket.take(1, now):
            return True
        self.suppressed += 1
        return False
