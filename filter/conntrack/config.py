"""Connection-tracker settings: table bounds and per-state timeouts.

Timeouts are seconds (pf's defaults, see pf.conf(5) "set timeout"): ``tcp_first`` after the
first SYN, ``tcp_opening`` until both sides are established, ``tcp_established``,
``tcp_closing`` after the first FIN, ``tcp_finwait`` once both sides have sent FIN,
``tcp_closed`` once both FINs are acknowledged or after a RST; ``udp_first`` / ``icmp_first``
/ ``other_first`` until a reply is seen, ``udp_multiple`` / ``icmp_replied`` /
``other_multiple`` afterwards; ``fragment``: how long the later fragments of a datagram
are recognised after its first fragment (Linux's ipfrag_time).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

NS = 1_000_000_000


@dataclass(frozen=True)
class CtTimeouts:
    """Seconds an entry lives after its last packet, per state (see the module docstring)."""

    tcp_first: float = 120
    tcp_opening: float = 30
    tcp_established: float = 86400
    tcp_closing: float = 900
    tcp_finwait: float = 45
    tcp_closed: float = 90
    udp_first: float = 60
    udp_multiple: float = 60
    icmp_first: float = 20
    icmp_replied: float = 10
    other_first: float = 60
    other_multiple: float = 60
    fragment: float = 30

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"timeout {f.name} must be a positive number of seconds, "
                                 f"not {value!r}")

    def in_ns(self) -> dict[str, int]:
        """Each timeout in integer nanoseconds, by name."""
        return {f.name: int(getattr(self, f.name) * NS) for f in fields(self)}


@dataclass(frozen=True)
class CtConfig:
    """``max_entries``: table bound (>= 1); ``per_source_limit``: entries one original source
    address may hold (0: no limit); ``tcp_loose``: let a non-SYN segment start an entry
    (picking up connections mid-stream; windows are then learnt from the first segments);
    ``max_fragment_ids``: fragmented datagrams remembered at once (their later fragments
    follow the first one's connection; beyond this the oldest is forgotten)."""

    max_entries: int = 65536
    per_source_limit: int = 0
    tcp_loose: bool = False
    max_fragment_ids: int = 4096
    timeouts: CtTimeouts = field(default_factory=CtTimeouts)

    def __post_init__(self) -> None:
        for name in ("max_entries", "per_source_limit", "max_fragment_ids"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        if self.max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not isinstance(self.timeouts, CtTimeouts):
            raise ValueError("timeouts must be a CtTimeouts")
