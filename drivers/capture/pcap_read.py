"""Classic pcap: index every record of a buffer without copying frame bytes.

Magics: 0xa1b2c3d4 (µs), 0xa1b23c4d (ns), either byte order; also the "modified" Kuznetzov
format 0xa1b2cd34 (µs, 24-byte record headers). The chain of record headers is followed by a
tight loop that only reads each caplen; the headers are then decoded in one vectorised gather.
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import CaptureFormatError
from .model import DEFAULT_SNAPLEN, RECORD_DTYPE, Interface, Scan

FILE_HEADER_LEN = 24
MAX_CAPLEN = 1 << 24          # absurd beyond this whatever the snaplen says
DECODE_CHUNK = 1 << 18

MAGICS = {  # magic as read little-endian -> (byte order, nanosecond, record header length)
    0xA1B2C3D4: ("<", False, 16), 0xD4C3B2A1: (">", False, 16),
    0xA1B23C4D: ("<", True, 16), 0x4D3CB2A1: (">", True, 16),
    0xA1B2CD34: ("<", False, 24), 0x34CDB2A1: (">", False, 24),
}


def is_pcap(buf) -> bool:
    """True when ``buf`` starts with a classic pcap magic."""
    return len(buf) >= 4 and struct.unpack_from("<I", buf, 0)[0] in MAGICS


def caplen_limit(snaplen: int) -> int:
    """The largest caplen accepted for a snaplen: libpcap's slack, capped as absurd."""
    return min(max(snaplen, DEFAULT_SNAPLEN), MAX_CAPLEN)


def scan_pcap(buf) -> Scan:
    """Index a classic pcap held in ``buf`` (raises CaptureFormatError for a bad file header)."""
    size = len(buf)
    if size < FILE_HEADER_LEN:
        raise CaptureFormatError(0, f"pcap file header truncated ({size} of 24 bytes)")
    magic = struct.unpack_from("<I", buf, 0)[0]
    if magic not in MAGICS:
        raise CaptureFormatError(0, f"not a pcap file (magic 0x{magic:08x})")
    order, nano, hdr_len = MAGICS[magic]
    major, minor, _zone, _sigfigs, snaplen, link_field = struct.unpack_from(order + "HHiIII", buf, 4)
    if not ((major == 2 and minor <= 4) or (major, minor) == (543, 0)):
        # libpcap reads 2.0-2.4 (2.4 since 1998) and DG/UX's 543.0, and no other
        raise CaptureFormatError(0, f"unsupported pcap version {major}.{minor}")
    swap = _length_order(major, minor)
    if link_field & 0x03FF0000:          # as libpcap: bits 16-25 are reserved, must be zero
        raise CaptureFormatError(20, f"link type field 0x{link_field:08x}: reserved bits set")
    linktype = link_field & 0xFFFF
    offsets, error = _follow_chain(buf, order, hdr_len, size, caplen_limit(snaplen), swap)
    records, error = _decode(buf, order, nano, hdr_len, offsets, snaplen, error, swap)
    iface = Interface(linktype=linktype, snaplen=snaplen, tsresol=9 if nano else 6)
    scan = Scan(format="pcap", byte_order=order, interfaces=[iface], records=records,
                error=error, version=(major, minor))
    scan.extra["fcs_bits"] = link_field >> 28
    if hdr_len != 16:
        scan.extra["modified"] = True
    return scan


SWAPPED, MAYBE_SWAPPED, IN_ORDER = "swapped", "maybe swapped", "in order"


def _length_order(major: int, minor: int) -> str:
    """Where a record header keeps caplen and len, as libpcap reads it (sf-pcap.c): before
    2.3 (and in DG/UX's 543.0) len comes first; 2.3 files were written both ways, so the
    smaller of the two is the caplen; from 2.4, caplen first."""
    if major == 543 or minor < 3:
        return SWAPPED
    return MAYBE_SWAPPED if minor == 3 else IN_ORDER


def _follow_chain(buf, order: str, hdr_len: int, size: int, limit: int,
                  swap: str = IN_ORDER):
    """Record-header offsets up to the first header or frame that runs past the end.

    The loop only reads caplens; a record whose caplen is over ``limit`` and runs past the end
    is left for _decode, which checks every caplen and names it.
    """
    incl = struct.Struct(order + "I").unpack_from
    pair = struct.Struct(order + "II").unpack_from

    def caplen_at(at: int) -> int:
        if swap == IN_ORDER:
            return incl(buf, at + 8)[0]
        first, second = pair(buf, at + 8)
        return second if swap == SWAPPED else min(first, second)

    offsets = []
    append = offsets.append
    off = FILE_HEADER_LEN
    last = size - hdr_len
    if swap == IN_ORDER:                 # the common case, without a call per record
        while off <= last:
            append(off)
            off += hdr_len + incl(buf, off + 8)[0]
    else:
        while off <= last:
            append(off)
            off += hdr_len + caplen_at(off)
    if off == size:
        return offsets, None
    if offsets and off > size:
        bad = offsets.pop()
        caplen = caplen_at(bad)
        if caplen > limit:
            offsets.append(bad)        # _decode names it as over the snaplen
            return offsets, None
        return offsets, CaptureFormatError(
            bad, f"record truncated: caplen {caplen} runs {off - size} bytes past end of file")
    return offsets, CaptureFormatError(
        off, f"record header truncated ({size - off} of {hdr_len} bytes)")


def _decode(buf, order, nano, hdr_len, offsets, snaplen, error, swap: str = IN_ORDER):
    """Vectorised decode of the record headers at ``offsets``; cut at the first bad one."""
    n = len(offsets)
    records = np.zeros(n, dtype=RECORD_DTYPE)
    if n == 0:
        return records, error
    raw = np.frombuffer(buf, dtype=np.uint8)
    offs = np.asarray(offsets, dtype=np.int64)
    heads = np.empty((n, 16), np.uint8)
    for lo in range(0, n, DECODE_CHUNK):            # bounded temporary index arrays
        heads[lo:lo + DECODE_CHUNK] = raw[offs[lo:lo + DECODE_CHUNK, None] + np.arange(16)]
    heads = heads.view(np.dtype(order + "u4"))
    sec, frac, caplen, origlen = (heads[:, i].astype(np.uint64) for i in range(4))
    if swap == SWAPPED:
        caplen, origlen = origlen, caplen
    elif swap == MAYBE_SWAPPED:
        caplen, origlen = np.minimum(caplen, origlen), np.maximum(caplen, origlen)
    # a fraction of a second past the second's end (crafted, or a writer's bug) is read as
    # libpcap reads it: the record stays, its time carried into the seconds
    bad = np.flatnonzero(caplen > caplen_limit(snaplen))
    if bad.size:
        i = int(bad[0])
        error = CaptureFormatError(int(offs[i]), f"caplen {int(caplen[i])} exceeds snaplen {snaplen}")
        records, n = records[:i], i
        sec, frac, caplen, origlen, offs = sec[:i], frac[:i], caplen[:i], origlen[:i], offs[:i]
    records["data_offset"] = offs + hdr_len
    records["caplen"] = caplen
    records["origlen"] = origlen
    records["ts_ns"] = sec * np.uint64(10**9) + frac * np.uint64(1 if nano else 1000)
    return records, error
