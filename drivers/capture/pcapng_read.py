"""pcapng: index every packet block of a buffer without copying frame bytes.

Sections (SHB, either byte order, any number), interfaces (IDB: link type, snaplen,
if_tsresol, if_tsoffset, if_name), packets (EPB, SPB, OPB). Every other block type is skipped
by its length. Interfaces are numbered across the whole file in the order their IDBs appear;
a record's ``interface`` is that global number. An SPB has no timestamp: it takes the
previous packet's (0 if none) cut to its interface's resolution, and its caplen is min(original length, snaplen, block body).
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import CaptureFormatError
from .model import RECORD_DTYPE, Interface, Scan
from .pcap_read import MAX_CAPLEN, caplen_limit
from .timeres import units_to_ns

SHB, IDB, OPB, SPB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000002, 0x00000003, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
MAX_BLOCK = MAX_CAPLEN + 65536
MAX_INTERFACES = 65535
MAX_TS_NS = (1 << 64) - 1


def is_pcapng(buf) -> bool:
    """True when ``buf`` starts with a pcapng section header block."""
    return len(buf) >= 4 and struct.unpack_from("<I", buf, 0)[0] == SHB


class _Reader:
    """Walks the blocks; collects interfaces and record fields in Python lists."""

    def __init__(self, buf) -> None:
        self.buf = buf
        self.size = len(buf)
        self.interfaces: list[Interface] = []
        self.offsets: list[tuple] = []
        self.section_ifaces: list[int] = []     # global index of each interface in this section
        self.section_offsets: list[int] = []    # if_tsoffset (s) per interface in this section
        self.order = "<"
        self.first_order = None
        self.sections = 0
        self.skipped = 0
        self.last_ts = 0
        self.fast: list[tuple] = []             # per local interface: (global, mult, offset, limit)
        self.head = struct.Struct("<7I").unpack_from
        self.word = struct.Struct("<I").unpack_from

    def run(self) -> CaptureFormatError | None:
        """Walk every block; EPBs of interfaces with a decimal resolution take a fast path that
        makes the same checks as ``block`` (which handles everything else, and every error)."""
        buf, size, append = self.buf, self.size, self.offsets.append
        off = 0
        try:
            while off < size:
                if size - off >= 32:
                    btype, length, local, hi, lo, caplen, origlen = self.head(buf, off)
                    if btype == EPB and local < len(self.fast) and not length % 4 \
                            and 32 + caplen <= length <= min(size - off, MAX_BLOCK):
                        glob, mult, tsoffset, limit = self.fast[local]
                        ts = ((hi << 32) | lo) * mult + tsoffset
                        if mult and caplen <= limit and 0 <= ts <= MAX_TS_NS \
                                and self.word(buf, off + length - 4)[0] == length:
                            append((off + 28, caplen, origlen, ts, glob))
                            self.last_ts = ts
                            off += length
                            continue
                off = self.block(off)
        except CaptureFormatError as exc:
            return exc
        return None

    def block(self, off: int) -> int:
        buf, size = self.buf, self.size
        if size - off < 12:
            raise CaptureFormatError(off, f"block header truncated ({size - off} bytes left)")
        btype = struct.unpack_from("<I", buf, off)[0]
        if btype == SHB:
            self.section_header(off)
        order = self.order
        length = struct.unpack_from(order + "I", buf, off + 4)[0]
        if length < (28 if btype == SHB else 12) or length % 4:
            raise CaptureFormatError(off, f"bad block length {length}")
        if length > MAX_BLOCK and btype in (EPB, SPB, OPB, IDB):
            raise CaptureFormatError(off, f"absurd block length {length}")
        if length > size - off:
            raise CaptureFormatError(off, f"block truncated: length {length}, "
                                          f"{size - off} bytes left in file")
        if struct.unpack_from(order + "I", buf, off + length - 4)[0] != length:
            raise CaptureFormatError(off, "trailing block length does not match")
        btype = struct.unpack_from(order + "I", buf, off)[0]
        body, body_end = off + 8, off + length - 4
        if btype == SHB:
            pass
        elif btype == IDB:
            self.interface(off, body, body_end)
        elif btype == EPB:
            self.packet(off, body, body_end, 20, order + "IIIII")
        elif btype == OPB:
            self.packet(off, body, body_end, 20, order + "HHIIII")
        elif btype == SPB:
            self.simple_packet(off, body, body_end)
        else:
            self.skipped += 1
        return off + length

    def section_header(self, off: int) -> None:
        if self.size - off < 28:
            raise CaptureFormatError(off, "section header block truncated")
        magic = struct.unpack_from("<I", self.buf, off + 8)[0]
        if magic == BYTE_ORDER_MAGIC:
            self.order = "<"
        elif magic == 0x4D3C2B1A:
            self.order = ">"
        else:
            raise CaptureFormatError(off, f"bad byte-order magic 0x{magic:08x}")
        major, minor = struct.unpack_from(self.order + "HH", self.buf, off + 12)
        if major != 1 or minor not in (0, 2):   # as libpcap: 1.2 is 1.0 (pcapng spec, SHB)
            raise CaptureFormatError(off, f"unsupported pcapng version {major}.{minor}")
        if self.first_order is None:
            self.first_order = self.order
        self.sections += 1
        self.section_ifaces = []
        self.section_offsets = []
        self.fast = []
        self.head = struct.Struct(self.order + "7I").unpack_from
        self.word = struct.Struct(self.order + "I").unpack_from

    def interface(self, off: int, body: int, end: int) -> None:
        if end - body < 8:
            raise CaptureFormatError(off, "interface description block too short")
        if len(self.interfaces) >= MAX_INTERFACES:
            raise CaptureFormatError(off, "too many interfaces")
        linktype, _res, snaplen = struct.unpack_from(self.order + "HHI", self.buf, body)
        tsresol, tsoffset, name = 6, 0, None
        for code, vstart, vlen in self.options(off, body + 8, end):
            if code == 9 and vlen >= 1:
                tsresol = self.buf[vstart]
            elif code == 14 and vlen == 8:
                tsoffset = struct.unpack_from(self.order + "q", self.buf, vstart)[0]
            elif code == 2:
                name = bytes(self.buf[vstart:vstart + vlen]).decode("utf-8", "replace")
        if ((tsresol & 0x7F) > 60) if tsresol & 0x80 else tsresol > 18:
            raise CaptureFormatError(off, f"unsupported if_tsresol 0x{tsresol:02x}")
        self.section_ifaces.append(len(self.interfaces))
        self.section_offsets.append(tsoffset)
        mult = 10 ** (9 - tsresol) if tsresol <= 9 else 0          # 0: binary or sub-ns
        limit = caplen_limit(snaplen) if snaplen else MAX_BLOCK
        self.fast.append((len(self.interfaces), mult, tsoffset * 1_000_000_000, limit))
        self.interfaces.append(Interface(linktype=linktype, snaplen=snaplen, tsresol=tsresol,
                                         name=name, section=self.sections - 1))

    def options(self, off: int, pos: int, end: int):
        while pos + 4 <= end:
            code, vlen = struct.unpack_from(self.order + "HH", self.buf, pos)
            if code == 0:
                return
            if pos + 4 + vlen > end:
                raise CaptureFormatError(off, f"option {code} runs past the end of its block")
            yield code, pos + 4, vlen
            pos += 4 + ((vlen + 3) & ~3)

    def _iface(self, off: int, local: int) -> tuple[int, Interface, int]:
        if local >= len(self.section_ifaces):
            raise CaptureFormatError(off, f"unknown interface id {local}")
        g = self.section_ifaces[local]
        return g, self.interfaces[g], self.section_offsets[local]

    def packet(self, off: int, body: int, end: int, fixed: int, fmt: str) -> None:
        if end - body < fixed:
            raise CaptureFormatError(off, "packet block too short")
        fields = struct.unpack_from(fmt, self.buf, body)
        local, hi, lo, caplen, origlen = (fields[0],) + fields[-4:]
        g, iface, tsoffset = self._iface(off, local)
        data = body + fixed
        if caplen > end - data:
            raise CaptureFormatError(off, f"caplen {caplen} exceeds its block")
        if iface.snaplen and caplen > caplen_limit(iface.snaplen):
            raise CaptureFormatError(off, f"caplen {caplen} exceeds snaplen {iface.snaplen}")
        ts = units_to_ns((hi << 32) | lo, iface.tsresol) + tsoffset * 1_000_000_000
        if not 0 <= ts <= MAX_TS_NS:
            raise CaptureFormatError(off, "timestamp out of range")
        self.last_ts = ts
        self.offsets.append((data, caplen, origlen, ts, g))

    def simple_packet(self, off: int, body: int, end: int) -> None:
        if end - body < 4:
            raise CaptureFormatError(off, "simple packet block too short")
        origlen = struct.unpack_from(self.order + "I", self.buf, body)[0]
        g, iface, _ = self._iface(off, 0)
        caplen = min(origlen, end - body - 4)
        if iface.snaplen:
            caplen = min(caplen, iface.snaplen)
        units = (self.last_ts << 64) // units_to_ns(1 << 64, iface.tsresol)   # floor
        ts = units_to_ns(units, iface.tsresol)            # representable at this resolution
        self.offsets.append((body + 4, caplen, origlen, ts, g))


def scan_pcapng(buf) -> Scan:
    """Index a pcapng held in ``buf`` (raises CaptureFormatError when it has no valid SHB)."""
    reader = _Reader(buf)
    error = reader.run()
    if reader.sections == 0:
        raise error or CaptureFormatError(0, "no section header block")
    records = np.array(reader.offsets, dtype=RECORD_DTYPE) if reader.offsets else \
        np.zeros(0, dtype=RECORD_DTYPE)
    return Scan(format="pcapng", byte_order=reader.first_order, interfaces=reader.interfaces,
                records=records, error=error, version=(1, 0), sections=reader.sections,
                skipped_blocks=reader.skipped)
