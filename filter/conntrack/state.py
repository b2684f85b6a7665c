"""Connection states as rules see them, directions, and the result of a lookup."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

ORIGINAL = 0
REPLY = 1


class CtState(StrEnum):
    """nftables' ``ct state`` values (plus ``untracked``)."""

    NEW = "new"
    ESTABLISHED = "established"
    RELATED = "related"
    INVALID = "invalid"
    UNTRACKED = "untracked"


class CtMatch(NamedTuple):
    """What :meth:`ConnTracker.lookup` found: the state, the entry (or None) and the
    direction of the packet relative to the entry (ORIGINAL or REPLY)."""

    state: CtState
    entry: object
    direction: int
