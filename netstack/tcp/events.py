"""Events the TCP layer reports to its user (the stack component, sockets, asyncio).

Drained with ``TcpLayer.events()``; each is a small frozen dataclass. ``conn`` is the
connection id (an int) that ``connect`` returned or ``Accepted`` announced.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Connected", "Accepted", "DataReady", "SendSpace", "PeerClosed", "Closed", "Reset",
    "TimedOut", "TcpEvent",
]


@dataclass(frozen=True, slots=True)
class Connected:
    """An active open completed: the connection is ESTABLISHED."""
    conn: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """A listener's passive open completed; ``remote`` is the peer's (ip, port)."""
    listener: int
    conn: int
    remote: tuple


@dataclass(frozen=True, slots=True)
class DataReady:
    """New in-order bytes can be read with ``recv``."""
    conn: int


@dataclass(frozen=True, slots=True)
class SendSpace:
    """The send buffer, once full, has room again."""
    conn: int


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer's FIN arrived: after the buffered bytes, ``recv`` returns b"" (EOF)."""
    conn: int


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection finished an orderly close (or an ``abort`` completed)."""
    conn: int


@dataclass(frozen=True, slots=True)
class Reset:
    """The connection was reset; ``reason``: "refused", "reset" or "challenge"."""
    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Retransmissions or keep-alive probes went unanswered: the connection is gone."""
    conn: int


TcpEvent = Connected | Accepted | DataReady | SendSpace | PeerClosed | Closed | Reset | TimedOut
