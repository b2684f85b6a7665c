"""Values as written in rules (addresses, prefixes, ranges, names) turned into sorted lists of
inclusive integer intervals over a field's domain."""

from __future__ import annotations

import ipaddress

from filter.rules.errors import RuleError
from filter.rules.fields import Field

Intervals = tuple[tuple[int, int], ...]

PROTOCOLS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
             "icmpv6": 58, "sctp": 132, "udplite": 136}
ETHER_TYPES = {"ip": 0x0800, "arp": 0x0806, "ip6": 0x86DD, "vlan": 0x8100, "rarp": 0x8035,
               "8021q": 0x8100, "8021ad": 0x88A8, "mpls": 0x8847}
SERVICES = {"ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53,
            "dns": 53, "bootps": 67, "bootpc": 68, "tftp": 69, "http": 80, "pop3": 110,
            "ntp": 123, "imap": 143, "snmp": 161, "bgp": 179, "ldap": 389, "https": 443,
            "syslog": 514, "submission": 587, "imaps": 993, "pop3s": 995, "openvpn": 1194,
            "mysql": 3306, "rdp": 3389, "postgresql": 5432, "wireguard": 51820}
ICMP_TYPES = {"echo-reply": 0, "destination-unreachable": 3, "source-quench": 4,
              "redirect": 5, "echo-request": 8, "router-advertisement": 9,
              "router-solicitation": 10, "time-exceeded": 11, "parameter-problem": 12,
              "timestamp-request": 13, "timestamp-reply": 14}
ICMPV6_TYPES = {"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3,
                "parameter-problem": 4, "echo-request": 128, "echo-reply": 129,
                "mld-listener-query": 130, "nd-router-solicit": 133, "nd-router-advert": 134,
                "nd-neighbor-solicit": 135, "nd-neighbor-advert": 136, "nd-redirect": 137}
TCP_FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20,
             "ecn": 0x40, "ece": 0x40, "cwr": 0x80}
NFPROTOS = {"ipv4": 2, "ipv6": 10}
NAMES = {"nfproto": NFPROTOS, "proto": PROTOCOLS,
          "ethertype": ETHER_TYPES, "port": SERVICES, "icmp": ICMP_TYPES,
         "icmpv6": ICMPV6_TYPES, "flags": TCP_FLAGS}


def normalise(intervals) -> Intervals:
    """Sorted, merged, non-overlapping intervals."""
    out: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def complement(intervals: Intervals, top: int) -> Intervals:
    """The domain ``0 .. top`` without ``intervals``."""
    out, start = [], 0
    for lo, hi in normalise(intervals):
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= top:
        out.append((start, top))
    return tuple(out)


def contains(intervals: Intervals, value: int) -> bool:
    return any(lo <= value <= hi for lo, hi in intervals)


LABELS = {"th.sport": "port", "th.dport": "port", "meta.mark": "mark", "iif": "interface"}


def label(field: Field) -> str:
    """How messages name a field (``port``, ``ip saddr``)."""
    return LABELS.get(field.name, field.name.replace(".", " "))


def _scalar(field: Field, text: str) -> int:
    kind = field.kind
    if kind in ("addr4", "addr6"):
        version = 4 if kind == "addr4" else 6
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"'{text}' is not an IPv{version} address") from None
        if addr.version != version:
            raise ValueError(f"'{text}' is not an IPv{version} address")
        return int(addr)
    table = NAMES.get(kind, {})
    if text in table:
        return table[text]
    try:
        value = int(text, 0)
    except ValueError:
        known = f" (known names: {', '.join(sorted(table))})" if table else ""
        raise ValueError(f"'{text}' is not a valid {label(field)}{known}") from None
    if not 0 <= value <= field.top:
        raise ValueError(f"{value} is out of range for a {label(field)} (0-{field.top})")
    return value


def parse_value(field: Field, text: str) -> Intervals:
    """One written value (``22``, ``1024-65535``, ``10.0.0.0/8``, ``ssh``) as intervals;
    raises ``ValueError`` with a message that says what would be valid."""
    if field.kind in ("addr4", "addr6") and "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            if "host bits" in str(exc):
                raise ValueError(f"'{text}' has host bits set beyond the /{text.split('/')[-1]} "
                                 "prefix") from None
            raise ValueError(f"'{text}' is not a valid prefix") from None
        if net.version != (4 if field.kind == "addr4" else 6):
            raise ValueError(f"'{text}' is not an IPv{4 if field.kind == 'addr4' else 6} prefix")
        return ((int(net.network_address), int(net.broadcast_address)),)
    if field.kind == "flags" and "|" in text:
        return ((sum(_scalar(field, part) for part in text.split("|")),) * 2,)
    dash = _range_split(field, text)
    if dash is not None:
        lo, hi = (_scalar(field, part) for part in dash)
        if lo > hi:
            raise ValueError(f"range '{text}' is empty (start above end)")
        return ((lo, hi),)
    value = _scalar(field, text)
    return ((value, value),)


def _range_split(field: Field, text: str):
    """``lo-hi`` split at the dash that separates two valid values (names contain dashes)."""
    table = NAMES.get(field.kind, {})
    if text in table or "-" not in text:
        return None
    for i, ch in enumerate(text):
        if ch == "-" and 0 < i < len(text) - 1:
            left, right = text[:i], text[i + 1:]
            try:
                _scalar(field, left)
                _scalar(field, right)
            except ValueError:
                continue
            return left, right
    return None


def value_error(token, exc: ValueError) -> RuleError:
    return token.error(str(exc))
