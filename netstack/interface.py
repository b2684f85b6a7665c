"""The composite sans-I/O core of one Ethernet interface: ARP, IPv4, IPv6/NDP, ICMP, UDP.

No sockets, clocks or threads: frames and ``now`` (int ns, monotonic) go in; frames, events
and the next deadline come out. The API below is stable (the Stack component and TCP use it)::

    iface = Interface(mac, ipv4="10.77.0.2/24", gateway=None, ipv6=True, mtu=1500,
                      *, error_rate=100.0, error_burst=10, dad=False, strict=False, gso=False)
        # gso=True: the NIC segments TCP (a TAP with offload): TCP datagrams of up to 64 KiB
        # go out whole, never fragmented; everything else still keeps to the MTU
    iface.start(now)                    # gratuitous ARP, IPv6 link-local (after DAD if dad=True),
                                        # then router solicitations
    iface.receive(frame, now) -> None   # one Ethernet frame in (bytes | memoryview); never raises
    iface.send_ip(dst, proto, payload, now, src=None, *, dont_fragment=False) -> bool
        # dst an ipaddress object (v4 or v6); resolves the next hop (queueing the datagram
        # while ARP/NDP runs), fragments to the MTU (IPv4; IPv6 source fragmentation);
        # False if dropped (counted tx.drop.<reason>). dont_fragment and too big: not sent,
        # IcmpError(fragmentation needed / packet too big, mtu=...) to the error handler.
    iface.udp_bind(port=0) -> port / iface.udp_unbind(port)   # 0: an ephemeral port
    iface.udp_send(src_port, dst, dst_port, data, now) -> bool
    iface.ping(dst, ident, seq, data, now) -> bool      # ICMP/ICMPv6 echo request
    iface.register_protocol(proto, handler, error_handler=None)
        # handler(src, dst, payload, now): payload a memoryview of the transport segment,
        # src/dst ipaddress objects; works for IPv4 protocol numbers and IPv6 next headers.
        # error_handler(IcmpError, now) receives ICMP errors quoting that protocol (else
        # they go to events()).
    iface.source_for(dst) -> ip_address     # the source address the stack would use for dst
    iface.mss_for(dst) -> int               # largest transport segment in one IP packet
    iface.frames_to_send() -> list[bytes]   # drain: complete Ethernet frames
    iface.events() -> list[Event]           # drain: UdpDatagram, EchoReply, IcmpError,
                                            # AddressConfigured, AddressExpired,
                                            # AddressDuplicate, ResolutionFailed
    iface.next_deadline() -> int | None
    iface.handle_timeout(now) -> None
    iface.counters -> Counter[str]          # see below
    iface.mac, iface.mtu, iface.ipv4 (IPv4Interface | None), iface.ipv6_addresses

Counters and conservation: every frame received is counted ``rx.frames`` and ends as exactly
one ``rx.delivered.<what>`` or ``drop.<reason>`` (truncated, malformed, bad_checksum,
not_for_us, bad_source, vlan_tagged, unknown_ethertype, unknown_protocol, udp_no_listener,
ndp_invalid, ...). A fragment is "delivered" to reassembly (``rx.delivered.fragment``); what
becomes of datagrams being reassembled is counted under ``ipv4.reassembly.*`` and
``ipv6.reassembly.*`` (done, timeout, overlap, limit, invalid, discarded, duplicate). Sending
counts ``tx.frames``, ``tx.<proto>.*`` and ``tx.drop.<reason>`` (arp_queue_full,
ndp_queue_full, unresolved, no_route, too_big, no_address). ``drop.internal_error`` counts a
bug caught by the guard in ``receive`` (``strict=True`` re-raises it instead; tests use it).
"""

from __future__ import annotations

import secrets
from collections import Counter
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, ip_address

from netstack.arp import ArpResolver, ResolutionFailed
from netstack.icmp import (
    EchoReply,
    IcmpError,
    TokenBucket,
    may_answer_with_error_v4,
    may_answer_with_error_v6,
    parse_quoted_v4,
    parse_quoted_v6,
    quote_v4,
    quote_v6,
)
from netstack.ipv4 import Reassembler, fragment
from netstack.ndp import (
    AddressConfigured,
    AddressDuplicate,
    AddressExpired,
    Ndp,
    multicast_mac,
)
from netstack.udp import UdpDatagram, UdpTable
from netstack.wire import WireError
from netstack.wire import icmpv4 as ic4
from netstack.wire import icmpv6 as ic6
from netstack.wire.ethernet import BROADCAST, ETH_ARP, ETH_IPV4, ETH_IPV6, EthernetView
from netstack.wire.ipv4 import FLAG_DF, PROTO_ICMP, PROTO_UDP, Ipv4, Ipv4View, address4, ipv4_header
from netstack.wire.ipv6 import (
    PROTO_FRAGMENT,
    PROTO_ICMPV6,
    PROTO_NONE,
    Ipv6,
    Ipv6Fragment,
    Ipv6View,
    walk_extension_headers,
)
from netstack.wire.tcp import PROTO_TCP
from netstack.wire.udp import Udp, UdpView

__all__ = [
    "Interface", "UdpDatagram", "EchoReply", "IcmpError", "AddressConfigured", "AddressExpired",
    "AddressDuplicate", "ResolutionFailed",
]

SECOND = 1_000_000_000
LIMITED_BROADCAST = IPv4Address("255.255.255.255")
_DELIVERED = [f"delivered.proto{proto}" for proto in range(256)]
ROUTES_CACHED = 1024        # destinations whose IPv4 route (next hop) is remembered


class Interface:
    """One Ethernet interface's host stack (see the module docstring for the API)."""

    def __init__(self, mac: bytes, ipv4: str | None = "10.77.0.2/24", gateway: str | None = None,
                 ipv6: bool = True, mtu: int = 1500, *, error_rate: float = 100.0,
                 error_burst: int = 10, dad: bool = False, strict: bool = False,
                 gso: bool = False) -> None:
        if len(mac) != 6 or mac[0] & 1:
            raise ValueError("mac must be 6 bytes, unicast")
        if not 68 <= mtu <= 65535:
            raise ValueError(f"mtu {mtu} out of range 68..65535")
        self.mac, self.mtu = bytes(mac), mtu
        self.ipv4 = IPv4Interface(ipv4) if ipv4 else None
        self.gateway = IPv4Address(gateway) if gateway else None
        self._routes4: dict[IPv4Address, tuple] = {}
        self.counters: Counter = Counter()
        self._ip4_raw = (self.ipv4.ip.packed, (LIMITED_BROADCAST.packed,
                         self.ipv4.network.broadcast_address.packed)) if self.ipv4 else None
        self.arp = ArpResolver(self.mac, self.ipv4.ip, self.counters) if self.ipv4 else None
        self.ndp = Ndp(self.mac, self.counters, dad=dad) if ipv6 else None
        self.reassembly4 = Reassembler(self.counters, prefix="ipv4", timeout_ns=30 * SECOND)
        self.reassembly6 = Reassembler(self.counters, prefix="ipv6", timeout_ns=60 * SECOND)
        self.udp = UdpTable()
        self.handlers: dict[int, tuple] = {}
        self.errors4, self.errors6 = (TokenBucket(error_rate, error_burst),
                                      TokenBucket(error_rate, error_burst))
        self._events: list[object] = []
        # RFC 7739 section 5: fragment identifications should not be predictable across
        # restarts; start at a random value and count up
        self._ident4 = secrets.randbits(16)
        self._ident6 = secrets.randbits(32)
        self.ttl = 64
        self.gso = gso                      # the NIC cuts TCP datagrams larger than the MTU
        self.strict = strict                # tests: re-raise internal errors instead of counting

    # -- configuration -------------------------------------------------------------------------
    @property
    def ipv6_addresses(self) -> list:
        return self.ndp.addresses() if self.ndp else []

    def start(self, now: int) -> None:
        if self.arp:
            self.arp.announce(now)
        if self.ndp:
            self.ndp.start(now)

    def register_protocol(self, proto: int, handler, error_handler=None) -> None:
        self.handlers[proto] = (handler, error_handler)

    def udp_bind(self, port: int = 0) -> int:
        return self.udp.bind(port)

    def udp_unbind(self, port: int) -> None:
        self.udp.unbind(port)

    def source_for(self, dst):
        if dst.version == 4:
            return self.ipv4.ip if self.ipv4 else None
        return self.ndp.source_for(dst) if self.ndp else None

    def mss_for(self, dst) -> int:
        """Largest transport segment that goes out unfragmented (TCP subtracts its header)."""
        if dst.version == 4:
            return self.mtu - 20
        return self._mtu6() - 40

    def _mtu6(self) -> int:
        return min(self.mtu, self.ndp.mtu) if self.ndp and self.ndp.mtu else self.mtu

    # -- outputs -------------------------------------------------------------------------------
    def frames_to_send(self) -> list[bytes]:
        frames = []
        for part in (self.arp, self.ndp.resolver if self.ndp else None):
            if part is not None and part.frames:
                frames.extend(part.frames)
                part.frames.clear()
        self.counters["tx.frames"] += len(frames)
        return frames

    def events(self) -> list[object]:
        events, self._events = self._events, []
        for part in (self.arp, self.ndp.resolver if self.ndp else None, self.ndp):
            if part is not None and part.events:
                events.extend(part.events)
                part.events.clear()
        return events

    def next_deadline(self) -> int | None:
        deadlines = [self.reassembly4.next_deadline(), self.reassembly6.next_deadline(),
                     self.arp.next_deadline() if self.arp else None,
                     self.ndp.next_deadline() if self.ndp else None]
        deadlines = [d for d in deadlines if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timeout(self, now: int) -> None:
        if self.arp:
            self.arp.handle_timeout(now)
        if self.ndp:
            self.ndp.handle_timeout(now)
        for expired in self.reassembly4.expire(now):
            # RFC 792 / RFC 1122 section 3.3.2: time exceeded, code 1, if fragment zero came
            if expired.first_packet is not None:
                self._icmp4_error(expired.first_packet, ic4.TIME_EXCEEDED,
                                  ic4.REASSEMBLY_EXCEEDED, now)
        for expired in self.reassembly6.expire(now):
            if expired.first_packet is not None:
                self._icmp6_error(expired.first_packet, ic6.TIME_EXCEEDED, 1, now)

    # -- sending -------------------------------------------------------------------------------
    def send_ip(self, dst, proto: int, payload: bytes, now: int, src=None, *,
                dont_fragment: bool = False) -> bool:
        """Send one datagram. With ``dont_fragment`` (IPv4 DF; IPv6 never fragments then) a
        datagram too big for the link is not sent: an IcmpError "fragmentation needed" /
        "packet too big" carrying the MTU goes to the protocol's error handler (or events)."""
        dst = ip_address(dst) if isinstance(dst, str) else dst
        self.counters[f"tx.ip{dst.version}.datagrams"] += 1
        header = 20 if dst.version == 4 else 40
        mtu = self.mtu if dst.version == 4 else self._mtu6()
        if self.gso and proto == PROTO_TCP:
            mtu = 0xFFFF
        if dont_fragment and len(payload) + header > mtu:
            self.counters["tx.drop.too_big"] += 1
            here = self.source_for(dst)
            kind = (ic4.DEST_UNREACHABLE, ic4.FRAGMENTATION_NEEDED) if dst.version == 4 else \
                (ic6.PACKET_TOO_BIG, 0)
            ports = (payload[0] << 8 | payload[1], payload[2] << 8 | payload[3]) \
                if len(payload) >= 4 else (0, 0)
            self._report(IcmpError(here, *kind, proto, here, dst, *ports, mtu,
                                   bytes(payload[:8])), now)
            return False
        if dst.version == 4:
            return self._send4(dst, proto, payload, now, src, dont_fragment)
        return self._send6(dst, proto, payload, now, src)

    def udp_send(self, src_port: int, dst, dst_port: int, data: bytes, now: int) -> bool:
        dst = ip_address(dst) if isinstance(dst, str) else dst
        src = self.source_for(dst)
        if src is None:
            self.counters["tx.drop.no_address"] += 1
            return False
        if len(data) > 0xFFFF - 8 - (20 if dst.version == 4 else 0):
            self.counters["tx.drop.too_big"] += 1
            return False
        self.counters["tx.udp"] += 1
        return self.send_ip(dst, PROTO_UDP, Udp(src_port, dst_port, data).emit(src, dst), now,
                            src)

    def ping(self, dst, ident: int, seq: int, data: bytes, now: int) -> bool:
        dst = ip_address(dst) if isinstance(dst, str) else dst
        if dst.version == 4:
            return self.send_ip(dst, PROTO_ICMP, ic4.Icmpv4.echo(True, ident, seq, data).emit(),
                                now)
        src = self.source_for(dst)
        if src is None:
            return False
        msg = ic6.Icmpv6.echo(True, ident, seq, data).emit(src, dst)
        return self.send_ip(dst, PROTO_ICMPV6, msg, now, src)

    def _route4(self, dst: IPv4Address) -> tuple | None:
        """(next hop, MAC) for ``dst``: the link's broadcast (MAC known), on link, the default
        gateway; None: no route."""
        net = self.ipv4.network
        if dst == LIMITED_BROADCAST or dst == net.broadcast_address:
            return None, BROADCAST
        if dst in net:
            return dst, None
        if self.gateway is not None:
            return self.gateway, None
        return None

    def _send4(self, dst: IPv4Address, proto: int, payload: bytes, now: int, src=None,
               dont_fragment: bool = False) -> bool:
        if self.ipv4 is None:
            self.counters["tx.drop.no_address"] += 1
            return False
        route = self._routes4.get(dst)
        if route is None:
            route = self._route4(dst)
            if route is None:
                self.counters["tx.drop.no_route"] += 1
                return False
            if len(self._routes4) >= ROUTES_CACHED:
                self._routes4.clear()
            self._routes4[dst] = route
        next_hop, mac = route
        self._ident4 = (self._ident4 + 1) & 0xFFFF
        if len(payload) + 20 > 0xFFFF:
            self.counters["tx.drop.too_big"] += 1
            return False
        limit = 0xFFFF if self.gso and proto == PROTO_TCP else self.mtu
        if len(payload) + 20 <= limit:        # the usual case: one packet, no Ipv4 object
            packets = [ipv4_header((src or self.ipv4.ip).packed, dst.packed, proto,
                                   len(payload), self.ttl, self._ident4,
                                   FLAG_DF if dont_fragment else 0) + payload]
        else:
            header = Ipv4(src or self.ipv4.ip, dst, proto, b"", self.ttl, self._ident4,
                          dont_fragment)
            packets = fragment(header, payload, limit)
            self.counters["tx.ipv4.fragments"] += len(packets)
        for packet in packets:
            if mac is not None:
                self.arp._emit(mac, ETH_IPV4, packet)
            elif not self.arp.output(next_hop, ETH_IPV4, packet, now):
                return False
        return True

    def _send6(self, dst: IPv6Address, proto: int, payload: bytes, now: int, src=None) -> bool:
        if self.ndp is None:
            self.counters["tx.drop.no_address"] += 1
            return False
        src = src or self.ndp.source_for(dst)
        if dst.is_multicast:
            next_hop, mac = None, multicast_mac(dst)
        else:
            next_hop, mac = self.ndp.next_hop(dst, now), None
            if next_hop is None:
                self.counters["tx.drop.no_route"] += 1
                return False
        mtu = 0xFFFF + 40 if self.gso and proto == PROTO_TCP else self._mtu6()
        if len(payload) + 40 <= mtu:
            packets = [Ipv6(src, dst, proto, b"", self.ndp.hop_limit).header(len(payload)) + payload]
        else:                       # RFC 8200 section 4.5: source fragmentation
            if len(payload) > 0xFFFF - 8:
                self.counters["tx.drop.too_big"] += 1
                return False
            self._ident6 = (self._ident6 + 1) & 0xFFFFFFFF
            step = (mtu - 48) // 8 * 8
            packets = []
            for start in range(0, len(payload), step):
                piece = payload[start:start + step]
                more = start + step < len(payload)
                frag = Ipv6Fragment(proto, start, more, self._ident6).emit()
                head = Ipv6(src, dst, PROTO_FRAGMENT, b"", self.ndp.hop_limit)
                packets.append(head.header(8 + len(piece)) + frag + piece)
            self.counters["tx.ipv6.fragments"] += len(packets)
        for packet in packets:
            if mac is not None:
                self.ndp.resolver._emit(mac, ETH_IPV6, packet)
            elif not self.ndp.resolver.output(next_hop, ETH_IPV6, packet, now):
                return False
        return True

    # -- receiving -----------------------------------------------------------------------------
    def receive(self, frame, now: int) -> None:
        """One Ethernet frame in; every frame ends as one ``rx.delivered.*`` or ``drop.*``."""
        self.counters["rx.frames"] += 1
        deliver = None
        try:
            fate, deliver = self._receive(memoryview(frame), now)
        except WireError as exc:
            fate = "drop." + _reason(exc)
        except Exception:                   # a bug must not take the stack down; counted
            fate = "drop.internal_error"
            if self.strict:
                raise
        self.counters["rx." + fate if fate.startswith("delivered") else fate] += 1
        if deliver is not None:            # protocol handlers run outside the guard
            deliver()

    def _receive(self, frame: memoryview, now: int):
        eth = EthernetView(frame)
        if eth.vlan_tci is not None:
            return "drop.vlan_tagged", None
        dst = frame[0:6].tobytes()
        if dst != self.mac and dst != BROADCAST and not (
                dst[:2] == b"\x33\x33" and self.ndp is not None):
            return "drop.not_for_us", None
        ethertype = eth.ethertype
        if ethertype == ETH_ARP:
            if self.arp is None:
                return "drop.no_ipv4", None
            return self.arp.receive(eth.payload, now), None
        if ethertype == ETH_IPV4:
            return self._receive4(eth.payload, dst != self.mac, now)
        if ethertype == ETH_IPV6:
            return self._receive6(eth.payload, dst, now)
        return "drop.unknown_ethertype", None

    def _receive4(self, packet: memoryview, link_broadcast: bool, now: int):
        if self.ipv4 is None:
            return "drop.no_ipv4", None
        ip = Ipv4View(packet)
        if not ip.checksum_valid():
            return "drop.bad_checksum", None
        dst_raw, src_raw = packet[16:20].tobytes(), packet[12:16].tobytes()
        ours, broadcasts = self._ip4_raw
        to_broadcast = dst_raw in broadcasts
        if dst_raw != ours and not to_broadcast:
            return "drop.not_for_us", None
        # RFC 1122 section 3.2.1.3: discard datagrams with an invalid source address
        if src_raw in broadcasts or 224 <= src_raw[0] < 240:
            return "drop.bad_source", None
        dst, src = address4(dst_raw), address4(src_raw)
        payload = ip.payload
        if packet[6] & 0x3F or packet[7]:         # MF set or a fragment offset: a fragment
            first = quote_v4(ip) if ip.frag_offset == 0 else None
            whole = self.reassembly4.add((src, dst, ip.proto, ip.ident), ip.frag_offset,
                                         ip.more_fragments, payload, now, first)
            if whole is None:
                return "delivered.fragment", None
            payload = memoryview(whole)
        proto = ip.proto
        if proto == PROTO_ICMP:
            return self._icmp4(ip, src, dst, payload, to_broadcast, now), None
        if proto == PROTO_UDP:
            return self._udp(ip, src, dst, payload, to_broadcast or link_broadcast, now)
        if proto in self.handlers:
            handler = self.handlers[proto][0]
            return _DELIVERED[proto], lambda: handler(src, dst, payload, now)
        # RFC 1122 section 3.2.2.1: protocol unreachable SHOULD be sent
        if may_answer_with_error_v4(ip, link_broadcast, self.ipv4.network.broadcast_address,
                                    False):
            self._icmp4_error(quote_v4(ip), ic4.DEST_UNREACHABLE, ic4.PROTOCOL_UNREACHABLE, now)
        return "drop.unknown_protocol", None

    def _icmp4(self, ip: Ipv4View, src, dst, payload, to_broadcast: bool, now: int) -> str:
        icmp = ic4.Icmpv4View(payload)
        if not icmp.checksum_valid():
            return "drop.bad_checksum"
        if icmp.type == ic4.ECHO_REQUEST:
            # RFC 1122 section 3.2.2.6: an echo request to a broadcast MAY be silently discarded
            if to_broadcast:
                return "drop.broadcast_echo"
            reply = ic4.Icmpv4(ic4.ECHO_REPLY, 0, icmp.rest, bytes(icmp.body)).emit()
            self.counters["tx.icmp.echo_reply"] += 1
            self._send4(src, PROTO_ICMP, reply, now)
            return "delivered.icmp_echo"
        if icmp.type == ic4.ECHO_REPLY:
            self._events.append(EchoReply(src, icmp.ident, icmp.seq, bytes(icmp.body)))
            return "delivered.icmp_echo_reply"
        if icmp.type in ic4.ERROR_TYPES:
            mtu = icmp.next_hop_mtu if icmp.type == ic4.DEST_UNREACHABLE and \
                icmp.code == ic4.FRAGMENTATION_NEEDED else 0
            error = parse_quoted_v4(src, icmp.type, icmp.code, mtu, icmp.body)
            self._report(error, now)
            return "delivered.icmp_error"
        return "drop.icmp_unhandled"

    def _report(self, error: IcmpError, now: int) -> None:
        entry = self.handlers.get(error.proto)
        if entry is not None and entry[1] is not None:
            entry[1](error, now)
        else:
            self._events.append(error)

    def _udp(self, ip, src, dst, payload, no_errors: bool, now: int):
        udp = UdpView(payload)
        if not udp.checksum_valid(src, dst):
            return "drop.bad_checksum", None
        if udp.dst_port in self.udp:
            self._events.append(UdpDatagram(src, udp.src_port, dst, udp.dst_port,
                                            bytes(udp.payload)))
            return "delivered.udp", None
        if not no_errors:
            if src.version == 4 and may_answer_with_error_v4(ip, False, None, False):
                self._icmp4_error(quote_v4(ip), ic4.DEST_UNREACHABLE, ic4.PORT_UNREACHABLE, now)
            elif src.version == 6 and may_answer_with_error_v6(ip, False, False):
                self._icmp6_error(quote_v6(ip), ic6.DEST_UNREACHABLE, ic6.PORT_UNREACHABLE,
                                  now)
        return "drop.udp_no_listener", None

    def _icmp4_error(self, quote: bytes, icmp_type: int, code: int, now: int) -> None:
        """Send an ICMP error quoting ``quote`` (header + 8 bytes) back to its source."""
        if not self.errors4.allow(now):
            self.counters["tx.icmp.rate_limited"] += 1
            return
        body = ic4.Icmpv4(icmp_type, code, b"\0\0\0\0", quote).emit()
        self.counters[f"tx.icmp.error{icmp_type}.{code}"] += 1
        self._send4(IPv4Address(quote[12:16]), PROTO_ICMP, body, now)

    def _icmp6_error(self, quote: bytes, icmp_type: int, code: int, now: int,
                     rest: bytes = b"\0\0\0\0") -> None:
        """Send an ICMPv6 error quoting ``quote`` (the start of a packet) to its source."""
        if not self.errors6.allow(now):
            self.counters["tx.icmpv6.rate_limited"] += 1
            return
        to, was_to = IPv6Address(quote[8:24]), IPv6Address(quote[24:40])
        src = was_to if self.ndp.is_ours(was_to) else self.ndp.source_for(to)
        body = ic6.Icmpv6(icmp_type, code, rest, quote).emit(src, to)
        self.counters[f"tx.icmpv6.error{icmp_type}.{code}"] += 1
        self._send6(to, PROTO_ICMPV6, body, now, src)

    def _receive6(self, packet: memoryview, eth_dst: bytes, now: int):
        if self.ndp is None:
            return "drop.no_ipv6", None
        ip = Ipv6View(packet)
        dst, src = ip.dst, ip.src
        if dst.is_multicast:
            if not self.ndp.listens(dst):
                return "drop.not_for_us", None
        elif not self.ndp.is_ours(dst):
            return "drop.not_for_us", None
        if src.is_multicast:
            return "drop.bad_source", None
        upper = walk_extension_headers(ip.next_header, ip.payload)
        payload = ip.payload[upper.offset:]
        proto = upper.proto
        if upper.fragment is not None:
            frag = upper.fragment
            if frag.more and len(payload) % 8:
                return "drop.bad_fragment", None      # RFC 8200 section 4.5: not 8-multiple
            first = quote_v6(ip) if frag.offset == 0 else None
            if frag.offset == 0 and not frag.more:
                pass                                  # an atomic fragment (RFC 6946)
            else:
                whole = self.reassembly6.add((src, dst, frag.ident), frag.offset, frag.more,
                                             ip.payload[upper.fragment_offset + 8:], now, first)
                if whole is None:
                    return "delivered.fragment", None
                upper = walk_extension_headers(frag.next_header, whole)
                payload, proto = memoryview(whole)[upper.offset:], upper.proto
        if proto == PROTO_NONE:
            return "delivered.no_next_header", None
        multicast = dst.is_multicast
        if proto == PROTO_ICMPV6:
            return self._icmp6(ip, src, dst, payload, multicast, now), None
        if proto == PROTO_UDP:
            udp = UdpView(payload)
            if udp.checksum == 0:                     # RFC 8200 section 8.1
                return "drop.bad_checksum", None
            return self._udp(ip, src, dst, payload, multicast, now)
        if proto in self.handlers:
            handler = self.handlers[proto][0]
            return f"delivered.proto{proto}", lambda: handler(src, dst, payload, now)
        if may_answer_with_error_v6(ip, multicast, False):
            # RFC 4443 section 3.4: code 1, the pointer names the unrecognized Next Header
            self._icmp6_error(quote_v6(ip), ic6.PARAMETER_PROBLEM, 1, now,
                              upper.next_header_at.to_bytes(4, "big"))
        return "drop.unknown_protocol", None

    def _icmp6(self, ip: Ipv6View, src, dst, payload, multicast: bool, now: int) -> str:
        icmp = ic6.Icmpv6View(payload)
        if not icmp.checksum_valid(src, dst):
            return "drop.bad_checksum"
        kind = icmp.type
        if kind in (ic6.NEIGHBOR_SOLICITATION, ic6.NEIGHBOR_ADVERTISEMENT,
                    ic6.ROUTER_ADVERTISEMENT, ic6.ROUTER_SOLICITATION):
            msg = ic6.Icmpv6(kind, icmp.code, icmp.rest, bytes(icmp.body))
            return self.ndp.receive(src, dst, ip.hop_limit, msg, now)
        if kind == ic6.ECHO_REQUEST:
            reply_src = dst if not multicast else self.ndp.source_for(src)
            reply = ic6.Icmpv6(ic6.ECHO_REPLY, 0, icmp.rest, bytes(icmp.body))
            self.counters["tx.icmpv6.echo_reply"] += 1
            self._send6(src, PROTO_ICMPV6, reply.emit(reply_src, src), now, reply_src)
            return "delivered.icmpv6_echo"
        if kind == ic6.ECHO_REPLY:
            self._events.append(EchoReply(src, icmp.ident, icmp.seq, bytes(icmp.body)))
            return "delivered.icmpv6_echo_reply"
        if kind < 128:
            rest = icmp.rest
            mtu = int.from_bytes(rest, "big") if kind == ic6.PACKET_TOO_BIG else 0
            self._report(parse_quoted_v6(src, kind, icmp.code, mtu, icmp.body), now)
            return "delivered.icmpv6_error"
        return "drop.icmpv6_unhandled"


def _reason(exc: WireError) -> str:
    """A counter name from a WireError message: 'ipv4: truncated header' -> 'truncated'."""
    text = str(exc)
    if "checksum" in text:
        return "bad_checksum"
    if "truncated" in text:
        return "truncated"
    return "malformed"
