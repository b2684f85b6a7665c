"""Write pcap or pcapng to an fd or file object, one frame or a whole batch at a time.

Output is little-endian. Classic pcap: µs (magic 0xa1b2c3d4) or ns (0xa1b23c4d). pcapng: one
SHB, one IDB per interface (if_tsresol written when not the default µs; 9 for ns), then EPBs.
Timestamps are integer ns since the epoch, converted exactly to each interface's resolution,
so what ``scan`` read is written back with the same timestamps and bytes. Frames longer than
the snaplen are cut to it (origlen keeps the wire length). Output is buffered and written with
few large writes.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from .copy import copy_spans
from .model import DEFAULT_SNAPLEN, LINKTYPE_ETHERNET, Interface
from .timeres import ns_to_units, ns_to_units_array

BUFFER_BYTES = 1 << 20
NS = 1_000_000_000


def _pad4(n):
    return (n + 3) & ~3


class CaptureWriter:
    """Writes frames as classic pcap (``fmt="pcap"``) or pcapng (``fmt="pcapng"``).

    ``dest`` is an fd (int) or an object with ``write``. Give either ``linktype`` (+
    ``snaplen``) or ``interfaces`` (a list of Interface, e.g. ``scan.interfaces``).
    ``nanosecond``: None keeps the interfaces' resolutions (µs without interfaces); True or
    False forces ns or µs. ``closefd``: close ``dest`` on close().
    """

    def __init__(self, dest, fmt: str = "pcap", nanosecond: bool | None = None,
                 linktype: int = LINKTYPE_ETHERNET, interfaces: list[Interface] | None = None,
                 snaplen: int = DEFAULT_SNAPLEN, closefd: bool = False) -> None:
        if fmt not in ("pcap", "pcapng"):
            raise ValueError(f"fmt must be 'pcap' or 'pcapng', not {fmt!r}")
        if interfaces is None or (not interfaces and fmt == "pcap"):
            interfaces = [Interface(linktype=linktype, snaplen=snaplen, tsresol=6)]
        # pcapng may have none: a section with no interface holds no packets (an input of
        # only a section header is copied as that)
        if nanosecond is not None:
            interfaces = [Interface(i.linktype, i.snaplen, 9 if nanosecond else 6, i.name)
                          for i in interfaces]
        self.fmt = fmt
        self.dest = dest
        self.closefd = closefd
        self.frames = 0
        self.bytes = 0
        self.closed = False
        self._chunks: list = []
        self._pending = 0
        if fmt == "pcap":
            if len({i.linktype for i in interfaces}) != 1:
                raise ValueError("classic pcap holds one link type; use pcapng")
            first = interfaces[0]
            nano = first.tsresol not in (6,) and _finer_than_us(first.tsresol)
            self.interfaces = [Interface(first.linktype, first.snaplen, 9 if nano else 6,
                                         first.name)] * len(interfaces)
            self._emit(struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0,
                                   first.snaplen, first.linktype))
        else:
            self.interfaces = list(interfaces)
            self._emit(_section_header())
            for iface in self.interfaces:
                self._emit(_interface_block(iface))

    @property
    def nanosecond(self) -> bool:
        return bool(self.interfaces) and self.interfaces[0].tsresol == 9

    def write(self, ts_ns: int, data, origlen: int | None = None, interface: int = 0) -> None:
        """Append one frame captured at ``ts_ns`` (int ns since the epoch)."""
        data = memoryview(data).cast("B")
        iface = self._interface(interface)
        caplen = min(len(data), iface.snaplen) if iface.snaplen else len(data)
        origlen = len(data) if origlen is None else origlen
        if self.fmt == "pcap":
            sec, frac = divmod(int(ts_ns), NS)
            frac = frac if iface.tsresol == 9 else frac // 1000
            self._emit(struct.pack("<IIII", sec, frac, caplen, origlen))
            self._emit(bytes(data[:caplen]))
        else:
            units = ns_to_units(int(ts_ns), iface.tsresol)
            if units >> 64:
                raise ValueError("timestamp does not fit 64 bits at this resolution")
            total = 32 + _pad4(caplen)
            head = struct.pack("<IIIIIII", 6, total, interface, units >> 32, units & 0xFFFFFFFF,
                               caplen, origlen)
            pad = b"\0" * (_pad4(caplen) - caplen)
            self._emit(head + bytes(data[:caplen]) + pad + struct.pack("<I", total))
        self.frames += 1
        self.bytes += caplen

    def write_batch(self, data: np.ndarray, offsets, lengths, ts_ns, origlens=None,
                    interfaces=None) -> None:
        """Append ``len(offsets)`` frames: frame i is ``data[offsets[i]:+lengths[i]]``."""
        src = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) \
            else data.reshape(-1).view(np.uint8)
        offs = np.asarray(offsets, dtype=np.int64)
        lens = np.asarray(lengths, dtype=np.int64)
        n = offs.size
        if n == 0:
            return
        ts = np.asarray(ts_ns, dtype=np.uint64)
        ifs = (np.zeros(n, np.int64) if interfaces is None
               else np.asarray(interfaces, dtype=np.int64))
        if not (lens.shape == ts.shape == ifs.shape == offs.shape):
            raise ValueError("offsets, lengths, ts_ns and interfaces must have equal lengths")
        if offs.min() < 0 or lens.min() < 0 or (offs + lens).max() > src.size:
            raise ValueError("a frame falls outside the data array")
        if ifs.min() < 0 or ifs.max() >= len(self.interfaces):
            raise ValueError("unknown interface index")
        snap = np.array([i.snaplen or (1 << 62) for i in self.interfaces], np.int64)[ifs]
        caplen = np.minimum(lens, snap)
        orig = lens if origlens is None else np.asarray(origlens, dtype=np.int64)
        if self.fmt == "pcap":
            out, data_pos = self._pcap_batch(ts, caplen, orig)
        else:
            out, data_pos = self._pcapng_batch(ts, caplen, orig, ifs)
        copy_spans(src, offs, out, data_pos, caplen)
        self._emit(out)
        self.frames += n
        self.bytes += int(caplen.sum())

    def _pcap_batch(self, ts, caplen, orig):
        n = caplen.size
        pos = np.zeros(n, np.int64)
        np.cumsum(16 + caplen[:-1], out=pos[1:])
        out = np.empty(int(pos[-1] + 16 + caplen[-1]), np.uint8)
        head = np.empty((n, 4), "<u4")
        head[:, 0] = ts // np.uint64(NS)
        frac = ts % np.uint64(NS)
        head[:, 1] = frac if self.nanosecond else frac // np.uint64(1000)
        head[:, 2] = caplen
        head[:, 3] = orig
        out[pos[:, None] + np.arange(16)] = head.view(np.uint8).reshape(n, 16)
        return out, pos + 16

    def _pcapng_batch(self, ts, caplen, orig, ifs):
        n = caplen.size
        block = 32 + ((caplen + 3) & ~3)
        pos = np.zeros(n, np.int64)
        np.cumsum(block[:-1], out=pos[1:])
        out = np.zeros(int(pos[-1] + block[-1]), np.uint8)
        units = np.empty(n, np.uint64)
        for i, iface in enumerate(self.interfaces):
            sel = ifs == i
            if sel.any():
                units[sel] = ns_to_units_array(ts[sel], iface.tsresol)
        head = np.empty((n, 7), "<u4")
        head[:, 0] = 6
        head[:, 1] = block
        head[:, 2] = ifs
        head[:, 3] = units >> np.uint64(32)
        head[:, 4] = units & np.uint64(0xFFFFFFFF)
        head[:, 5] = caplen
        head[:, 6] = orig
        out[pos[:, None] + np.arange(28)] = head.view(np.uint8).reshape(n, 28)
        tail = (pos + block - 4)[:, None] + np.arange(4)
        out[tail] = block.astype("<u4").view(np.uint8).reshape(n, 4)
        return out, pos + 28

    def _interface(self, index: int) -> Interface:
        if not 0 <= index < len(self.interfaces):
            raise ValueError(f"unknown interface index {index}")
        return self.interfaces[index]

    def _emit(self, chunk) -> None:
        if self.closed:
            raise ValueError("write to a closed CaptureWriter")
        self._chunks.append(chunk)
        self._pending += len(chunk)
        if self._pending >= BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered to ``dest``."""
        if not self._chunks:
            return
        chunks, self._chunks, self._pending = self._chunks, [], 0
        if isinstance(self.dest, int):
            data = memoryview(chunks[0] if len(chunks) == 1 else b"".join(chunks)).cast("B")
            while data:
                data = data[os.write(self.dest, data):]
        else:
            for chunk in chunks:
                self.dest.write(memoryview(chunk).cast("B"))
            if hasattr(self.dest, "flush"):
                self.dest.flush()

    def close(self) -> None:
        """Flush, and close ``dest`` if ``closefd``. Idempotent."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        if self.closefd:
            if isinstance(self.dest, int):
                os.close(self.dest)
            else:
                self.dest.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_writer(path: str | os.PathLike, **kwargs) -> CaptureWriter:
    """Convenience for the CLI and tests: create ``path`` and return a writer that owns it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    return CaptureWriter(fd, closefd=True, **kwargs)


def _finer_than_us(tsresol: int) -> bool:
    return (tsresol & 0x7F) > 19 if tsresol & 0x80 else tsresol > 6


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (_pad4(len(value)) - len(value))


def _section_header() -> bytes:
    opts = _option(4, b"capnet") + b"\0\0\0\0"
    total = 28 + len(opts)
    return struct.pack("<IIIHHq", 0x0A0D0D0A, total, 0x1A2B3C4D, 1, 0, -1) + opts + \
        struct.pack("<I", total)


def _interface_block(iface: Interface) -> bytes:
    opts = b""
    if iface.name:
        opts += _option(2, iface.name.encode())
    if iface.tsresol != 6:
        opts += _option(9, bytes([iface.tsresol]))
    if opts:
        opts += b"\0\0\0\0"
    total = 20 + len(opts)
    return struct.pack("<IIHHI", 1, total, iface.linktype, 0, iface.snaplen) + opts + \
        struct.pack("<I", total)
