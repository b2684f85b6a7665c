"""The packet fields rules can match, their value kinds and domains, and the selectors
(``tcp dport``, ``ip saddr`` …) that name them.

A field is *absent* from a packet that does not carry it (``ip saddr`` of an IPv6 packet, the
ports of a non-first fragment, a header cut short by the capture length); a match on an absent
field fails, whatever its operator (as in nftables, where ``tcp dport != 22`` implies
``meta l4proto tcp``).

Where each field comes from, by link type:

- Ethernet (1): ``ether.type`` is bytes 12-13 of the frame (0x8100 for a tagged frame, as in
  nftables); up to two IEEE 802.1Q/802.1ad tags (TPID 0x8100 or 0x88a8, then a 2-byte TCI of
  PCP (3 bits), DEI and VID (12 bits), then the next type) are seen through: ``vlan.id``,
  ``vlan.pcp`` and ``vlan.type`` come from the first tag, ``meta.protocol`` is the type after
  the tags and the IP header follows them;
- raw IP (12, 14, 101: by the version nibble; 228: IPv4; 229: IPv6) and BSD loopback (0, 108:
  the 4-byte address family, 2 = IPv4, 24/28/30 = IPv6): ``ether.type`` and ``meta.protocol``
  are 0x0800/0x86dd; the IP header starts at byte 0 (loopback: 4);
- Linux cooked captures (113: type at bytes 14-15, IP at 16; 276: type at 0-1, IP at 20):
  ``ether.type`` and ``meta.protocol`` are the protocol field;
- an IP header is read where ``meta.protocol`` says 0x0800/0x86dd and the version agrees;
  no VLAN fields outside Ethernet; other link types have no fields but length and iif;
- IPv4 (RFC 791 §3.1): present when version is 4, IHL >= 5 and the whole header was captured;
  ``ip.protocol``, ``ip.ttl``, ``ip.saddr``, ``ip.daddr``; a fragment with a non-zero offset has
  no transport fields;
- IPv6 (RFC 8200 §3): present when version is 6 and 40 bytes were captured; extension headers
  hop-by-hop (0), routing (43), fragment (44) and destination options (60) are walked (up to 4,
  RFC 8200 §4) to find ``meta.l4proto``; a fragment header with a non-zero offset means no
  transport fields; ``ip6.nexthdr`` is the fixed header's Next Header;
- ``meta.l4proto``: the IPv4 protocol or the IPv6 upper-layer protocol;
- ``meta.nfproto``: ``ipv4`` (2) when the IPv4 header is present, ``ipv6`` (10) when the IPv6
  one is (netfilter's NFPROTO numbers); a NAT statement implies a match on it;
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
    kind: str          # value syntax: addr4 addr6 port proto nfproto ethertype icmp icmpv6
                       # flags int iif
    bits: int          # domain is 0 .. 2**bits - 1

    @property
    def top(self) -> int:
        return (1 << self.bits) - 1


FIELDS = {f.name: f for f in (
    Field("iif", "iif", 16),
    Field("ether.type", "ethertype", 16), Field("meta.protocol", "ethertype", 16),
    Field("vlan.id", "int", 12), Field("vlan.pcp", "int", 3), Field("vlan.type", "ethertype", 16),
    Field("ip.saddr", "addr4", 32), Field("ip.daddr", "addr4", 32),
    Field("ip.protocol", "proto", 8), Field("ip.ttl", "int", 8),
    Field("ip6.saddr", "addr6", 128), Field("ip6.daddr", "addr6", 128),
    Field("ip6.nexthdr", "proto", 8), Field("ip6.hoplimit", "int", 8),
    Field("meta.l4proto", "proto", 8), Field("meta.nfproto", "nfproto", 8),
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
    ("ether", "type"): ("ether.type", None), ("meta", "protocol"): ("meta.protocol", None),
    ("vlan", "id"): ("vlan.id", None), ("vlan", "pcp"): ("vlan.pcp", None),
    ("vlan", "type"): ("vlan.type", None),
    ("ip", "saddr"): ("ip.saddr", None), ("ip", "daddr"): ("ip.daddr", None),
    ("ip", "protocol"): ("ip.protocol", None), ("ip", "ttl"): ("ip.ttl", None),
    ("ip6", "saddr"): ("ip6.saddr", None), ("ip6", "daddr"): ("ip6.daddr", None),
    ("ip6", "nexthdr"): ("ip6.nexthdr", None), ("ip6", "hoplimit"): ("ip6.hoplimit", None),
    ("meta", "l4proto"): ("meta.l4proto", None), ("meta", "nfproto"): ("meta.nfproto", None),
    ("meta", "length"): ("meta.length", None),
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
              "proto": "meta.l4proto", "int": "meta.mark", "nfproto": "meta.nfproto",
              "ethertype": "ether.type",
              "icmp": "icmp.type", "icmpv6": "icmpv6.type", "flags": "tcp.flags"}
