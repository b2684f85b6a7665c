"""Connection tracking and NAT around a classified batch (``filter.conntrack``, ``filter.nat``).

Before classification each frame is located and looked up (its ``ct state`` for the rules);
after it, frames are confirmed in order (creating or advancing their connections, with the NAT
action the rules chose; accepted frames only) and translated in place when their connection is
NATed — replies too, through the connection table. A frame whose state an earlier frame of the
same batch changed (a reply right behind its connection's first packet) ends the pass: the
rest of the batch is looked up and classified again, so the result is what one-by-one
processing gives (except that ``limit`` tokens taken by the discarded pass stay taken). Only
rule sets that use ``ct state`` or NAT pay for this.
"""

from __future__ import annotations

import ipaddress

from filter.conntrack import ConnTracker, CtConfig, CtState
from filter.nat import NatAction, translate
from filter.packet import locate
from filter.rules import ast


def nat_action(nat: ast.Nat, masquerade_address: str | None,
               masquerade_address6: str | None = None) -> NatAction:
    """The ``filter.nat`` action of a rule's NAT statement (addresses of its family)."""
    size = 4 if nat.family == 4 else 16
    if nat.kind == "masquerade":
        configured = masquerade_address if nat.family == 4 else masquerade_address6
        if nat.address is not None:
            address = nat.address.to_bytes(size, "big")
        elif configured:
            address = ipaddress.ip_address(configured).packed
        else:
            key = "masquerade_address" if nat.family == 4 else "masquerade_address6"
            raise ValueError(f"masquerade needs the config key {key}")
        return NatAction.masquerade(address, nat.ports)
    make = NatAction.snat if nat.kind == "snat" else NatAction.dnat
    last = nat.address if nat.last is None else nat.last
    return make((nat.address.to_bytes(size, "big"), last.to_bytes(size, "big")), nat.ports)


class Connections:
    """The tracker of one firewall; kept across rule reloads."""

    def __init__(self, linktype: int, max_entries: int = 65536, per_source_limit: int = 0,
                 masquerade_address: str | None = None,
                 masquerade_address6: str | None = None) -> None:
        self.linktype = linktype
        self.tracker = ConnTracker(CtConfig(max_entries=max_entries,
                                            per_source_limit=per_source_limit))
        self.masquerade_address = masquerade_address
        self.masquerade_address6 = masquerade_address6
        self.refused = 0
        self.translated = 0

    def before(self, data, offsets, lengths, now: int):
        """(infos, matches, states) of a batch, in order."""
        infos, matches, states = [], [], []
        for off, length in zip(offsets.tolist(), lengths.tolist(), strict=True):
            info = locate(data[off:off + length], self.linktype)
            match = self.tracker.lookup(info, now) if info is not None else None
            infos.append(info)
            matches.append(match)
            states.append(str(match.state) if match is not None else str(CtState.UNTRACKED))
        return infos, matches, states

    def after(self, data, offsets, lengths, result, infos, matches, states, now: int) -> int:
        """Confirm accepted frames in order and translate NATed ones in place; stops at the
        first frame whose connection state an earlier frame of the batch changed (it must be
        classified again) and returns its index (``len`` when all were done)."""
        for p in range(len(offsets)):
            info = infos[p]
            if info is None:
                continue
            if p:                             # an earlier confirm may have changed its state
                fresh = self.tracker.lookup(info, now)
                if str(fresh.state) != states[p]:
                    return p
                matches[p] = fresh
            if result.verdict[p] != 0:        # only accepted frames make or advance state
                continue
            nat = next((n for q, _, n in result.nat if q == p), None)
            action = None if nat is None else \
                nat_action(nat, self.masquerade_address, self.masquerade_address6)
            match = matches[p]
            entry = self.tracker.confirm(info, match, now, nat=action)
            if entry is None:
                self.refused += 1
                continue
            if getattr(entry, "nat", None) is not None:
                off, length = int(offsets[p]), int(lengths[p])
                direction = match.direction if match.entry is not None else 0
                if translate(data[off:off + length], info, entry, direction):
                    self.translated += 1
        return len(offsets)

    def expire(self, now: int) -> int:
        return self.tracker.expire(now)
