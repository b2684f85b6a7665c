"""ICMPv6 (RFC 4443) and Neighbor Discovery messages and options (RFC 4861).

RFC 4443 section 2.1: type, code, checksum (over the IPv6 pseudo-header, next header 58,
and the whole message), then a 4-byte type-specific field ("rest") and the body. Types below
128 are errors. RFC 4861 section 4: Router Solicitation (133), Router Advertisement (134),
Neighbor Solicitation (135), Neighbor Advertisement (136); options are type/length(8-octet
units)/value, and section 4.6 says "Nodes MUST silently discard an ND packet that contains an
option with length zero" (parsing raises WireError).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Address

from netstack.wire import WireError
from netstack.wire.checksum import transport_checksum
from netstack.wire.icmpview import IcmpHeaderView

PROTO_ICMPV6 = 58
DEST_UNREACHABLE = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAMETER_PROBLEM = 4
ECHO_REQUEST = 128
ECHO_REPLY = 129
ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
NEIGHBOR_SOLICITATION = 135
NEIGHBOR_ADVERTISEMENT = 136
PORT_UNREACHABLE = 4
OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2
OPT_PREFIX_INFO = 3
OPT_MTU = 5


class Icmpv6View(IcmpHeaderView):
    """Read an ICMPv6 message in place."""

    __slots__ = ()
    PROTOCOL = "icmpv6"

    def checksum_valid(self, src: IPv6Address, dst: IPv6Address) -> bool:
        return transport_checksum(src, dst, PROTO_ICMPV6, self.buf) == 0


@dataclass(frozen=True, slots=True)
class Icmpv6:
    type: int
    code: int = 0
    rest: bytes = b"\0\0\0\0"
    body: bytes = b""

    @classmethod
    def parse(cls, buf, src: IPv6Address | None = None,
              dst: IPv6Address | None = None) -> Icmpv6:
        """Parse; with ``src``/``dst`` given, verify the checksum too."""
        v = Icmpv6View(buf)
        if src is not None and not v.checksum_valid(src, dst):
            raise WireError("icmpv6: bad checksum")
        return cls(v.type, v.code, v.rest, bytes(v.body))

    @classmethod
    def echo(cls, request: bool, ident: int, seq: int, data: bytes = b"") -> Icmpv6:
        rest = ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
        return cls(ECHO_REQUEST if request else ECHO_REPLY, 0, rest, data)

    def emit(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        if len(self.rest) != 4:
            raise WireError("icmpv6: rest of header must be 4 bytes")
        message = bytes((self.type, self.code)) + b"\0\0" + self.rest + self.body
        checksum = transport_checksum(src, dst, PROTO_ICMPV6, message)
        return message[:2] + checksum.to_bytes(2, "big") + message[4:]


@dataclass(frozen=True, slots=True)
class PrefixInfo:
    """Prefix Information option (RFC 4861 section 4.6.2); lifetimes in seconds."""

    prefix: IPv6Address
    prefix_len: int
    on_link: bool
    autonomous: bool
    valid_lifetime: int
    preferred_lifetime: int

    def emit(self) -> bytes:
        flags = (0x80 if self.on_link else 0) | (0x40 if self.autonomous else 0)
        return (bytes((OPT_PREFIX_INFO, 4, self.prefix_len, flags))
                + self.valid_lifetime.to_bytes(4, "big")
                + self.preferred_lifetime.to_bytes(4, "big") + b"\0" * 4 + self.prefix.packed)


@dataclass(frozen=True, slots=True)
class NdpOptions:
    """The ND options the stack uses; unknown options are skipped (RFC 4861 section 4.6)."""

    source_lladdr: bytes | None = None
    target_lladdr: bytes | None = None
    mtu: int | None = None
    prefixes: tuple[PrefixInfo, ...] = ()

    @classmethod
    def parse(cls, buf) -> NdpOptions:
        buf = memoryview(buf)
        offset, found, prefixes = 0, {}, []
        while offset < len(buf):
            if len(buf) - offset < 2:
                raise WireError("ndp: truncated option")
            kind, size = buf[offset], buf[offset + 1] * 8
            if size == 0:
                raise WireError("ndp: option with length zero")
            if offset + size > len(buf):
                raise WireError("ndp: truncated option")
            value = buf[offset + 2:offset + size]
            if kind in (OPT_SOURCE_LLADDR, OPT_TARGET_LLADDR):
                name = "source_lladdr" if kind == OPT_SOURCE_LLADDR else "target_lladdr"
                found[name] = bytes(value[:6])
            elif kind == OPT_MTU and size == 8:
                found["mtu"] = int.from_bytes(value[2:6], "big")
            elif kind == OPT_PREFIX_INFO:
                if size != 32:
                    raise WireError("ndp: prefix information option of bad length")
                prefixes.append(PrefixInfo(
                    IPv6Address(bytes(value[14:30])), value[0], bool(value[1] & 0x80),
                    bool(value[1] & 0x40), int.from_bytes(value[2:6], "big"),
                    int.from_bytes(value[6:10], "big")))
            offset += size
        return cls(prefixes=tuple(prefixes), **found)

    def emit(self) -> bytes:
        out = b""
        if self.source_lladdr is not None:
            out += bytes((OPT_SOURCE_LLADDR, 1)) + self.source_lladdr
        if self.target_lladdr is not None:
            out += bytes((OPT_TARGET_LLADDR, 1)) + self.target_lladdr
        if self.mtu is not None:
            out += bytes((OPT_MTU, 1, 0, 0)) + self.mtu.to_bytes(4, "big")
        for prefix in self.prefixes:
            out += prefix.emit()
        return out


def _target(body: memoryview, what: str) -> IPv6Address:
    if len(body) < 16:
        raise WireError(f"ndp: truncated {what}")
    return IPv6Address(bytes(body[:16]))


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    """RFC 4861 section 4.3."""

    target: IPv6Address
    options: NdpOptions = field(default_factory=NdpOptions)

    @classmethod
    def from_icmp(cls, msg: Icmpv6) -> NeighborSolicitation:
        body = memoryview(msg.body)
        return cls(_target(body, "neighbor solicitation"), NdpOptions.parse(body[16:]))

    def to_icmp(self) -> Icmpv6:
        return Icmpv6(NEIGHBOR_SOLICITATION, 0, b"\0" * 4, self.target.packed + self.options.emit())


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    """RFC 4861 section 4.4: flags Router, Solicited, Override."""

    target: IPv6Address
    router: bool = False
    solicited: bool = False
    override: bool = False
    options: NdpOptions = field(default_factory=NdpOptions)

    @classmethod
    def from_icmp(cls, msg: Icmpv6) -> NeighborAdvertisement:
        body = memoryview(msg.body)
        flags = msg.rest[0]
        return cls(_target(body, "neighbor advertisement"), bool(flags & 0x80),
                   bool(flags & 0x40), bool(flags & 0x20), NdpOptions.parse(body[16:]))

    def to_icmp(self) -> Icmpv6:
        flags = (0x80 if self.router else 0) | (0x40 if self.solicited else 0) | \
            (0x20 if self.override else 0)
        return Icmpv6(NEIGHBOR_ADVERTISEMENT, 0, bytes((flags, 0, 0, 0)),
                      self.target.packed + self.options.emit())


@dataclass(frozen=True, slots=True)
class RouterSolicitation:
    """RFC 4861 section 4.1."""

    options: NdpOptions = field(default_factory=NdpOptions)

    @classmethod
    def from_icmp(cls, msg: Icmpv6) -> RouterSolicitation:
        return cls(NdpOptions.parse(msg.body))

    def to_icmp(self) -> Icmpv6:
        return Icmpv6(ROUTER_SOLICITATION, 0, b"\0" * 4, self.options.emit())


@dataclass(frozen=True, slots=True)
class RouterAdvertisement:
    """RFC 4861 section 4.2; router lifetime in seconds, reachable/retrans in ms."""

    hop_limit: int = 64
    managed: bool = False
    other: bool = False
    router_lifetime: int = 1800
    reachable_time: int = 0
    retrans_timer: int = 0
    options: NdpOptions = field(default_factory=NdpOptions)

    @classmethod
    def from_icmp(cls, msg: Icmpv6) -> RouterAdvertisement:
        body = memoryview(msg.body)
        if len(body) < 8:
            raise WireError("ndp: truncated router advertisement")
        flags = msg.rest[1]
        return cls(msg.rest[0], bool(flags & 0x80), bool(flags & 0x40),
                   int.from_bytes(msg.rest[2:4], "big"), int.from_bytes(body[0:4], "big"),
                   int.from_bytes(body[4:8], "big"), NdpOptions.parse(body[8:]))

    def to_icmp(self) -> Icmpv6:
        flags = (0x80 if self.managed else 0) | (0x40 if self.other else 0)
        rest = bytes((self.hop_limit, flags)) + self.router_lifetime.to_bytes(2, "big")
        body = (self.reachable_time.to_bytes(4, "big") + self.retrans_timer.to_bytes(4, "big")
                + self.options.emit())
        return Icmpv6(ROUTER_ADVERTISEMENT, 0, rest, body)
