"""Neighbour resolution: a generic neighbour cache, and its ARP form (RFC 826, RFC 1122).

:class:`NeighbourCache` keeps one entry per neighbour in the states of RFC 4861 section 7.3.2
(which Linux also uses for ARP): INCOMPLETE (soliciting, packets queued), REACHABLE (confirmed
within ``reachable_ns``), STALE (unconfirmed; still used), DELAY (used while stale: wait
``delay_ns`` for a confirmation), PROBE (unicast solicitations, ``max_probes`` times, then the
entry is removed). Packets awaiting resolution are queued, bounded per neighbour and in total
(RFC 1122 section 2.3.2.2: "SHOULD save (rather than discard) at least one ... packet");
when resolution fails they are dropped and a :class:`ResolutionFailed` event is raised.

:class:`ArpResolver` adds RFC 826's packet reception algorithm (merge the sender's address if
known; if we are the target, add it and answer requests), gratuitous ARP on start, and
broadcast requests for INCOMPLETE entries and unicast ones for PROBE.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from netstack.wire.arp import ARP_REPLY, ARP_REQUEST, Arp, ArpView
from netstack.wire.ethernet import BROADCAST, ETH_ARP, Ethernet

SECOND = 1_000_000_000
INCOMPLETE, REACHABLE, STALE, DELAY, PROBE = "incomplete", "reachable", "stale", "delay", "probe"


@dataclass(frozen=True, slots=True)
class ResolutionFailed:
    """The link-layer address of ``address`` could not be found; ``dropped`` packets lost."""

    address: IPv4Address | IPv6Address
    dropped: int


class _Entry:
    __slots__ = ("mac", "state", "deadline", "probes")

    def __init__(self, mac: bytes | None, state: str, deadline: int | None) -> None:
        self.mac, self.state, self.deadline, self.probes = mac, state, deadline, 0


class NeighbourCache:
    """Neighbour entries, resolution queues and their timers; subclasses send solicitations."""

    def __init__(self, mac: bytes, counters: Counter | None = None, *,
                 reachable_ns: int = 30 * SECOND, retrans_ns: int = 1 * SECOND,
                 delay_ns: int = 5 * SECOND, max_probes: int = 3, max_entries: int = 512,
                 queue_per_neighbour: int = 64, queue_total: int = 512,
                 stale_ns: int = 600 * SECOND) -> None:
        self.mac = mac
        self.counters = counters if counters is not None else Counter()
        self.reachable_ns, self.retrans_ns, self.delay_ns = reachable_ns, retrans_ns, delay_ns
        self.max_probes, self.max_entries, self.stale_ns = max_probes, max_entries, stale_ns
        self.queue_per_neighbour, self.queue_total = queue_per_neighbour, queue_total
        self.entries: dict[object, _Entry] = {}
        self.pending: dict[object, deque[tuple[int, bytes]]] = {}
        self.queued = 0
        self.frames: list[bytes] = []
        self.events: list[object] = []
        self.proto_name = "neighbour"
        self._headers: dict[tuple[bytes, int], bytes] = {}   # Ethernet headers, reused

    # -- subclass hooks ----------------------------------------------------------------------
    def _solicit(self, address, unicast_mac: bytes | None, now: int) -> None:
        raise NotImplementedError

    # -- use -----------------------------------------------------------------------------------
    def lookup(self, address) -> bytes | None:
        entry = self.entries.get(address)
        return entry.mac if entry is not None and entry.state != INCOMPLETE else None

    def output(self, address, ethertype: int, packet: bytes, now: int) -> bool:
        """Send ``packet`` to neighbour ``address``, resolving it first; False if dropped."""
        entry = self.entries.get(address)
        if entry is not None and entry.state != INCOMPLETE:
            if entry.state == STALE:        # RFC 4861 section 7.3.3: first use of a stale entry
                entry.state, entry.deadline = DELAY, now + self.delay_ns
            self._emit(entry.mac, ethertype, packet)
            return True
        if entry is None:
            if len(self.entries) >= self.max_entries and not self._evict():
                self.counters["tx.drop.neighbour_table_full"] += 1
                return False
            entry = self.entries[address] = _Entry(None, INCOMPLETE, now + self.retrans_ns)
            entry.probes = 1
            self._solicit(address, None, now)
        queue = self.pending.setdefault(address, deque())
        if len(queue) >= self.queue_per_neighbour or self.queued >= self.queue_total:
            self.counters[f"tx.drop.{self.proto_name}_queue_full"] += 1
            return False
        queue.append((ethertype, packet))
        self.queued += 1
        return True

    def learned(self, address, mac: bytes, now: int, *, confirmed: bool,
                create: bool = True, override: bool = True) -> None:
        """A link-layer address for ``address`` was seen (confirmed: a solicited answer)."""
        entry = self.entries.get(address)
        if entry is None:
            if not create or (len(self.entries) >= self.max_entries and not self._evict()):
                return
            entry = self.entries[address] = _Entry(mac, STALE, now + self.stale_ns)
        changed = entry.mac is not None and entry.mac != mac
        if entry.state != INCOMPLETE and changed and not override:
            if entry.state == REACHABLE:
                entry.state, entry.deadline = STALE, now + self.stale_ns
            return
        was_incomplete = entry.state == INCOMPLETE
        if confirmed:
            entry.mac, entry.state, entry.deadline = mac, REACHABLE, now + self.reachable_ns
        elif was_incomplete or changed:
            entry.mac, entry.state, entry.deadline = mac, STALE, now + self.stale_ns
        entry.probes = 0
        queue = self.pending.pop(address, None)
        if queue:
            self.queued -= len(queue)
            for ethertype, packet in queue:
                self._emit(mac, ethertype, packet)

    def _evict(self) -> bool:
        for address, entry in self.entries.items():
            if entry.state == STALE:
                del self.entries[address]
                return True
        return False

    def _emit(self, dst_mac: bytes, ethertype: int, packet: bytes) -> None:
        header = self._headers.get((dst_mac, ethertype))
        if header is None:
            if len(self._headers) > 4 * self.max_entries:
                self._headers.clear()
            header = self._headers[dst_mac, ethertype] = \
                Ethernet(dst_mac, self.mac, ethertype).header()
        self.frames.append(header + packet)

    # -- timers ----------------------------------------------------------------------------------
    def next_deadline(self) -> int | None:
        deadlines = [e.deadline for e in self.entries.values() if e.deadline is not None]
        return min(deadlines) if deadlines else None

    def handle_timeout(self, now: int) -> None:
        for address, entry in list(self.entries.items()):
            if entry.deadline is None or entry.deadline > now:
                continue
            if entry.state == REACHABLE:
                entry.state, entry.deadline = STALE, now + self.stale_ns
            elif entry.state == STALE:
                del self.entries[address]               # unused for stale_ns: forget it
            elif entry.state == DELAY:
                entry.state, entry.probes = PROBE, 1
                entry.deadline = now + self.retrans_ns
                self._solicit(address, entry.mac, now)
            elif entry.probes < self.max_probes:        # INCOMPLETE or PROBE: try again
                entry.probes += 1
                entry.deadline = now + self.retrans_ns
                self._solicit(address, entry.mac if entry.state == PROBE else None, now)
                self.counters[f"tx.{self.proto_name}.retry"] += 1
            else:
                del self.entries[address]
                queue = self.pending.pop(address, ())
                self.queued -= len(queue)
                if queue:
                    self.counters["tx.drop.unresolved"] += len(queue)
                self.events.append(ResolutionFailed(address, len(queue)))


class ArpResolver(NeighbourCache):
    """ARP for one IPv4 address on one Ethernet interface."""

    def __init__(self, mac: bytes, ip: IPv4Address, counters: Counter | None = None,
                 **limits) -> None:
        super().__init__(mac, counters, **limits)
        self.ip = ip
        self.proto_name = "arp"

    def announce(self, now: int) -> None:
        """Gratuitous ARP (RFC 5227 section 3): a request with sender = target = our address."""
        self._send(ARP_REQUEST, BROADCAST, b"\0" * 6, self.ip)
        self.counters["tx.arp.gratuitous"] += 1

    def _solicit(self, address, unicast_mac: bytes | None, now: int) -> None:
        self._send(ARP_REQUEST, unicast_mac or BROADCAST, b"\0" * 6, address)
        self.counters["tx.arp.request"] += 1

    def _send(self, op: int, eth_dst: bytes, target_mac: bytes, target_ip) -> None:
        packet = Arp(op, self.mac, self.ip, target_mac, target_ip).emit()
        self._emit(eth_dst, ETH_ARP, packet)

    def receive(self, packet, now: int) -> str:
        """RFC 826 "Packet Reception"; returns the fate of the frame (a counter suffix)."""
        view = ArpView(packet)
        sender, target = view.sender_ip, view.target_ip
        if sender == self.ip and view.sender_mac != self.mac:
            self.counters["arp.address_conflict"] += 1
            return "drop.arp_conflict"
        if sender.is_unspecified or sender.is_multicast or view.sender_mac[0] & 1:
            return "drop.arp_bad_sender"        # probes (RFC 5227) and nonsense teach nothing
        for_us = target == self.ip
        # "If the pair <protocol type, sender protocol address> is already in my translation
        # table, update the sender hardware address field" (the merge flag) ...
        known = sender in self.entries
        if known or for_us:
            # ... "If Merge_flag is false, add the triplet" when we are the target.
            self.learned(sender, view.sender_mac, now,
                         confirmed=for_us and view.op == ARP_REPLY, create=for_us)
        if not for_us:
            return "delivered.arp" if known else "drop.not_for_us"
        if view.op == ARP_REQUEST:
            # "swap hardware and protocol fields, ... set ar$op to ares_op$REPLY, send it"
            self._send(ARP_REPLY, view.sender_mac, view.sender_mac, sender)
            self.counters["tx.arp.reply"] += 1
        return "delivered.arp"
