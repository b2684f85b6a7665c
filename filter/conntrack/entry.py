"""A tracked connection: its two tuples, state, NAT action, mark and counters."""

from __future__ import annotations

from ipaddress import ip_address
from typing import NamedTuple


class CtTuple(NamedTuple):
    """How packets of one direction look on arrival. ICMP queries carry the identifier in
    ``sport`` (requests) or ``dport`` (replies), so that inverting a tuple maps a request
    to its reply; protocols without ports carry zeros."""

    proto: int
    src: bytes
    dst: bytes
    sport: int
    dport: int


def invert(t: tuple) -> CtTuple:
    """The tuple of a packet going the other way."""
    return _make((t[0], t[2], t[1], t[4], t[3]))


def as_tuple(t: tuple) -> CtTuple:
    """A CtTuple of a plain 5-tuple (fast: no per-field checks)."""
    return _make(t)


def _make(t: tuple) -> CtTuple:
    return tuple.__new__(CtTuple, t)


class CtEntry:
    """One connection. ``original``: the tuple of the first packet; ``reply``: the tuple
    replies arrive with (the inverse of ``original`` unless NAT chose another). ``packets``
    and ``octets`` are [original, reply] counters. ``klass`` names its timeout class."""

    __slots__ = ("original", "reply", "family", "tcp", "mark", "nat", "created", "last_seen",
                 "expires", "seen_reply", "packets", "octets", "klass")

    def __init__(self, original: CtTuple, reply: CtTuple, family: int, now: int,
                 tcp=None, nat=None) -> None:
        self.original = original
        self.reply = reply
        self.family = family
        self.tcp = tcp
        self.mark = 0
        self.nat = nat
        self.created = now
        self.last_seen = now
        self.expires = now
        self.seen_reply = False
        self.packets = [0, 0]
        self.octets = [0, 0]
        self.klass = ""

    @property
    def translated(self) -> bool:
        """True when NAT changed the reply tuple (packets need rewriting)."""
        return self.reply != invert(self.original)

    def __repr__(self) -> str:
        tcp = f" tcp={self.tcp}" if self.tcp is not None else ""
        return (f"CtEntry({_fmt(self.original)} reply {_fmt(self.reply)} {self.klass}{tcp} "
                f"packets={self.packets})")


def _fmt(t: tuple) -> str:
    return f"{t[0]}:{ip_address(t[1])}:{t[3]}->{ip_address(t[2])}:{t[4]}"
