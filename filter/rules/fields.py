"""The packet fields rules can match, their value kinds and domains, and the selectors
(``tcp dport``, ``ip saddr`` …) that name them.

A field is *absent* from a packet that does not carry it (``ip saddr`` of an IPv6 packet, the
ports of a non-first fragment, a header cut short by the capture length); a match on an absent
field fails, whatever its operator (as in nftables, where ``tcp dport != 22`` implies
``meta l4proto tcp``).

Where each field comes from (Ethernet linktype 1; raw IP linktypes 12/101/228/229 start at the
IP header, and their ``ether type`` is 0x0800/0x86dd by version):

- ``ether.type``: bytes 12-13 of the frame (VLAN-tagged frames have type 0x8100 and no IP fields);
- IPv4 (RFC 791 §3.1): present when version is 4, IHL >= 5 and the whole header was captured;
  ``ip.protocol``, ``ip.ttl``, ``ip.saddr``, ``ip.daddr``; a fragment with a non-zero offset has
  no transport fields;
- IPv6 (RFC 8200 §3): present when version is 6 and 40 bytes were captured; extension headers
  hop-by-hop (0), routing (43), fragment (44) and destination options (60) are walked (up to 4,
  RFC 8200 §4) to find ``meta.l4proto``; a fragment header with a non-zero offset means no
  transport fields; ``ip6.nexthdr`` is the fixed header's Next Header;
- ``meta.l4proto``: the IPv4 protocol or the IPv6 upper-layer protocol;
- ``th.sport``/``th.dport``: for TCP, UDP, SCTP and UDP-Lite, when 4 bytes of the transport
  header were captured; ``tcp.flags`` when 14 bytes of TCP header were (RFC 9293 §3.1);
- ``icmp.type``/``icmp.code`` (IPv4 protocol 1) and ``icmpv6.type``/``icmpv6.code`` (58) when 2
  bytes were captured;
- ``meta.length``: the captured frame length; ``iif``: the queue the frame came in on;
- ``meta.mark``: the mark this evaluation set (0 at the start).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    name: str
    kind: str          # value syntax: addr4 addr6 port proto ethertype icmp icmpv6 flags int iif
    bits: int          # domain is 0 .. 2**bits - 1

    @property
    def top(self) -> int:
        return (1 << self.bits) - 1


FIELDS = {f.name: f for f in (
    Field("iif", "iif", 16),
    Field("ether.type", "ethertype", 16),
    Field("ip.saddr", "addr4", 32), Field("ip.daddr", "addr4", 32),
    Field("ip.protocol", "proto", 8), Field("ip.ttl", "int", 8),
    Field("ip6.saddr", "addr6", 128), Field("ip6.daddr", "addr6", 128),
    Field("ip6.nexthdr", "proto", 8), Field("ip6.hoplimit", "int", 8),
    Field("meta.l4proto", "proto", 8),
    Field("th.sport", "port", 16), Field("th.dport", "port", 16),
    Field("tcp.flags", "flags", 8),
    Field("icmp.type", "icmp", 8), Field("icmp.code", "int", 8),
    Field("icmpv6.type", "icmpv6", 8), Field("icmpv6.code", "int", 8),
    Field("meta.length", "int", 32),
    Field("meta.mark", "int", 32),
)}

DYNAMIC = frozenset({"meta.mark"})     # set by the rules themselves: evaluated per frame

PORT_PROTOCOLS = (6, 17, 132, 136)     # protocols whose header starts with two ports

# selector words -> (field, implied l4 protocol or None)
SELECTORS: dict[tuple[str, ...], tuple[str, int | None]] = {
    ("iif",): ("iif", None), ("iifname",): ("iif", None), ("meta", "iifname"): ("iif", None),
    ("ether", "type"): ("ether.type", None), ("meta", "protocol"): ("ether.type", None),
    ("ip", "saddr"): ("ip.saddr", None), ("ip", "daddr"): ("ip.daddr", None),
    ("ip", "protocol"): ("ip.protocol", None), ("ip", "ttl"): ("ip.ttl", None),
    ("ip6", "saddr"): ("ip6.saddr", None), ("ip6", "daddr"): ("ip6.daddr", None),
    ("ip6", "nexthdr"): ("ip6.nexthdr", None), ("ip6", "hoplimit"): ("ip6.hoplimit", None),
    ("meta", "l4proto"): ("meta.l4proto", None), ("meta", "length"): ("meta.length", None),
    ("meta", "mark"): ("meta.mark", None), ("mark",): ("meta.mark", None),
    ("tcp", "sport"): ("th.sport", 6), ("tcp", "dport"): ("th.dport", 6),
    ("udp", "sport"): ("th.sport", 17), ("udp", "dport"): ("th.dport", 17),
    ("sctp", "sport"): ("th.sport", 132), ("sctp", "dport"): ("th.dport", 132),
    ("th", "sport"): ("th.sport", None), ("th", "dport"): ("th.dport", None),
    ("tcp", "flags"): ("tcp.flags", 6),
    ("icmp", "type"): ("icmp.type", None), ("icmp", "code"): ("icmp.code", None),
    ("icmpv6", "type"): ("icmpv6.type", None), ("icmpv6", "code"): ("icmpv6.code", None),
}
SELECTOR_HEADS = frozenset(words[0] for words in SELECTORS)

# set/map element types (nftables' names) -> the field kind their elements are written in
SET_TYPES = {"ipv4_addr": "addr4", "ipv6_addr": "addr6", "inet_service": "port",
             "inet_proto": "proto", "mark": "int", "ether_type": "ethertype",
             "icmp_type": "icmp", "icmpv6_type": "icmpv6"}

# the field whose domain a value of each kind is checked against (set elements)
KIND_FIELD = {"addr4": "ip.saddr", "addr6": "ip6.saddr", "port": "th.dport",
              "proto": "meta.l4proto", "int": "meta.mark", "ethertype": "ether.type",
              "icmp": "icmp.type", "icmpv6": "icmpv6.type", "flags": "tcp.flags"}
