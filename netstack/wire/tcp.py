"""TCP segments (RFC 9293 section 3.1) and the options the stack uses.

Options: End (0), NOP (1), MSS (2, RFC 9293 3.2), window scale (3, RFC 7323 section 2.2),
SACK-permitted (4) and SACK (5) (RFC 2018 sections 2-3), timestamps (8, RFC 7323 section 3.2).
Unknown options are skipped by their length; a malformed option list is a WireError.
The checksum covers the pseudo-header (RFC 9293 3.1), computed by netstack.wire.checksum.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

from netstack.wire import WireError
from netstack.wire.checksum import ones_sum

__all__ = ["TcpView", "Tcp", "TcpOptions", "segment_bytes", "timestamp_option", "PROTO_TCP",
           "FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "HEADER_LEN"]

PROTO_TCP = 6
HEADER_LEN = 20
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

OPT_END, OPT_NOP, OPT_MSS, OPT_WSCALE, OPT_SACK_PERM, OPT_SACK, OPT_TS = 0, 1, 2, 3, 4, 5, 8
_HEAD = struct.Struct("!HHIIBBHHH")
_TS_ONLY = bytes((OPT_NOP, OPT_NOP, OPT_TS, 10))
_TS_ONLY_OPTION = struct.Struct("!BBBBII")


@lru_cache(maxsize=4096)
def _address_sum(src, dst) -> int:
    return ones_sum(src.packed + dst.packed)


def pseudo_sum(src, dst, length: int) -> int:
    """One's complement sum of the TCP pseudo-header (RFC 9293 3.1; RFC 8200 8.1 for IPv6):
    the addresses, the protocol and the length, each a sum of 16-bit words."""
    total = _address_sum(src, dst) + PROTO_TCP + (length >> 16) + (length & 0xFFFF)
    return (total & 0xFFFF) + (total >> 16)


class TcpView:
    """Read a TCP header in place; the data offset is checked once, at construction."""

    __slots__ = ("buf", "header_len")

    def __init__(self, buf) -> None:
        buf = memoryview(buf)
        if len(buf) < HEADER_LEN:
            raise WireError("tcp: truncated header")
        header_len = (buf[12] >> 4) * 4
        if header_len < HEADER_LEN or header_len > len(buf):
            raise WireError("tcp: bad data offset")
        self.buf, self.header_len = buf, header_len

    @property
    def src_port(self) -> int:
        return self.buf[0] << 8 | self.buf[1]

    @property
    def dst_port(self) -> int:
        return self.buf[2] << 8 | self.buf[3]

    @property
    def seq(self) -> int:
        return int.from_bytes(self.buf[4:8], "big")

    @property
    def ack(self) -> int:
        return int.from_bytes(self.buf[8:12], "big")

    @property
    def flags(self) -> int:
        return self.buf[13]

    @property
    def window(self) -> int:
        return self.buf[14] << 8 | self.buf[15]

    @property
    def checksum(self) -> int:
        return self.buf[16] << 8 | self.buf[17]

    @property
    def urgent(self) -> int:
        return self.buf[18] << 8 | self.buf[19]

    @property
    def options(self) -> memoryview:
        return self.buf[HEADER_LEN:self.header_len]

    @property
    def payload(self) -> memoryview:
        return self.buf[self.header_len:]

    def checksum_valid(self, src, dst) -> bool:
        """RFC 9293 3.1: the sum over pseudo-header, header and data is all ones."""
        return ones_sum(self.buf, pseudo_sum(src, dst, len(self.buf))) == 0xFFFF


@dataclass(frozen=True, slots=True)
class TcpOptions:
    """The options of one segment; None (or False, or ()) where absent."""
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamp: tuple[int, int] | None = None      # (TSval, TSecr)

    @classmethod
    def parse(cls, buf) -> TcpOptions:
        """Parse an option list (RFC 9293 3.2: kind, length, data; End and NOP are 1 byte)."""
        buf = bytes(buf)
        if len(buf) == 12 and buf[:4] == _TS_ONLY:                  # the common data segment
            return _timestamps_only(struct.unpack_from("!II", buf, 4))
        mss = wscale = timestamp = None
        sack_permitted = False
        blocks: tuple[tuple[int, int], ...] = ()
        i, n = 0, len(buf)
        while i < n:
            kind = buf[i]
            if kind == OPT_END:
                break
            if kind == OPT_NOP:
                i += 1
                continue
            if i + 1 >= n:
                raise WireError("tcp: option without length")
            length = buf[i + 1]
            if length < 2 or i + length > n:
                raise WireError(f"tcp: option {kind} has bad length {length}")
            body = buf[i + 2:i + length]
            if kind == OPT_MSS:
                if length != 4:
                    raise WireError("tcp: MSS option length is not 4")
                mss = int.from_bytes(body, "big")
            elif kind == OPT_WSCALE:
                if length != 3:
                    raise WireError("tcp: window scale option length is not 3")
                wscale = body[0]
            elif kind == OPT_SACK_PERM:
                if length != 2:
                    raise WireError("tcp: SACK-permitted option length is not 2")
                sack_permitted = True
            elif kind == OPT_SACK:
                if (length - 2) % 8:
                    raise WireError("tcp: SACK option length is not 2 + 8n")
                blocks = tuple(struct.unpack_from("!II", body, j) for j in range(0, len(body), 8))
            elif kind == OPT_TS:
                if length != 10:
                    raise WireError("tcp: timestamps option length is not 10")
                timestamp = struct.unpack("!II", body)
            i += length
        return cls(mss, wscale, sack_permitted, blocks, timestamp)

    def emit(self) -> bytes:
        """The option list, NOP-aligned to 4 bytes in the layout Linux uses."""
        if self.timestamp is not None and self.mss is None and self.wscale is None and \
                not self.sack_permitted and not self.sack_blocks:    # the common data segment
            return timestamp_option(*self.timestamp)
        out = bytearray()
        if self.mss is not None:
            out += struct.pack("!BBH", OPT_MSS, 4, self.mss)
        if self.sack_permitted and self.timestamp is not None:
            out += bytes((OPT_SACK_PERM, 2))
            out += struct.pack("!BBII", OPT_TS, 10, *self.timestamp)
        else:
            if self.timestamp is not None:
                out += struct.pack("!BBBBII", OPT_NOP, OPT_NOP, OPT_TS, 10, *self.timestamp)
            if self.sack_permitted:
                out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERM, 2))
        if self.wscale is not None:
            out += bytes((OPT_NOP, OPT_WSCALE, 3, self.wscale))
        if self.sack_blocks:
            out += bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(self.sack_blocks)))
            for left, right in self.sack_blocks:
                out += struct.pack("!II", left, right)
        if len(out) % 4:
            out += bytes(4 - len(out) % 4)
        if len(out) > 40:
            raise WireError("tcp: options longer than 40 bytes")
        return bytes(out)


NO_OPTIONS = TcpOptions()


@dataclass(frozen=True, slots=True)
class Tcp:
    """A parsed TCP segment."""
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    options: TcpOptions = NO_OPTIONS
    payload: bytes = b""
    urgent: int = 0

    @classmethod
    def parse(cls, buf, src=None, dst=None) -> Tcp:
        """Parse; with ``src``/``dst`` given, verify the checksum too (WireError if bad). The
        view checks the header; its fields are then read in one unpack."""
        v = TcpView(buf)
        if src is not None and not v.checksum_valid(src, dst):
            raise WireError("tcp: bad checksum")
        src_port, dst_port, seq, ack, _off, flags, window, _sum, urgent = _HEAD.unpack_from(
            v.buf)
        opts = TcpOptions.parse(v.options) if v.header_len > HEADER_LEN else NO_OPTIONS
        return _new_tcp(src_port, dst_port, seq, ack, flags, window, opts, bytes(v.payload),
                        urgent)

    def emit(self, src, dst) -> bytes:
        """The segment with its checksum under the ``src``/``dst`` pseudo-header."""
        opts = self.options.emit() if self.options is not NO_OPTIONS else b""
        return segment_bytes(src, dst, self.src_port, self.dst_port, self.seq, self.ack,
                             self.flags, self.window, opts, self.payload, self.urgent)


# Frozen dataclasses set each field through object.__setattr__ in __init__; the parser, whose
# values are already checked, sets the slots directly: about half the cost per segment.
_new = object.__new__
_tcp_slots = [Tcp.__dict__[name].__set__ for name in
              ("src_port", "dst_port", "seq", "ack", "flags", "window", "options", "payload",
               "urgent")]
_option_slots = [TcpOptions.__dict__[name].__set__ for name in
                 ("mss", "wscale", "sack_permitted", "sack_blocks", "timestamp")]


def _new_tcp(src_port, dst_port, seq, ack, flags, window, options, payload, urgent) -> Tcp:
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = _tcp_slots
    seg = _new(Tcp)
    s0(seg, src_port)
    s1(seg, dst_port)
    s2(seg, seq)
    s3(seg, ack)
    s4(seg, flags)
    s5(seg, window)
    s6(seg, options)
    s7(seg, payload)
    s8(seg, urgent)
    return seg


def _timestamps_only(timestamp: tuple[int, int]) -> TcpOptions:
    mss, wscale, sack_permitted, sack_blocks, ts = _option_slots
    opts = _new(TcpOptions)
    mss(opts, None)
    wscale(opts, None)
    sack_permitted(opts, False)
    sack_blocks(opts, ())
    ts(opts, timestamp)
    return opts


def timestamp_option(tsval: int, tsecr: int) -> bytes:
    """The option list of a segment carrying only timestamps (RFC 7323 3.2, NOP-aligned)."""
    return _TS_ONLY_OPTION.pack(OPT_NOP, OPT_NOP, OPT_TS, 10, tsval, tsecr)


def segment_bytes(src, dst, src_port: int, dst_port: int, seq: int, ack: int, flags: int,
                  window: int, options: bytes, payload, urgent: int = 0) -> bytes:
    """A segment with its checksum under the ``src``/``dst`` pseudo-header, from its fields
    and its emitted option list (a multiple of 4 bytes): ``Tcp.emit`` without a Tcp."""
    header_len = HEADER_LEN + len(options)
    if header_len & 3:
        raise WireError("tcp: options not a multiple of 4 bytes")
    head = _HEAD.pack(src_port, dst_port, seq, ack, header_len << 2, flags, window, 0,
                      urgent) + options
    checksum = ~ones_sum(payload, ones_sum(head, pseudo_sum(src, dst, header_len + len(payload))))
    return head[:16] + (checksum & 0xFFFF).to_bytes(2, "big") + head[18:] + payload
