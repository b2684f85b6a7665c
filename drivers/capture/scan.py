"""Open any capture: detect classic pcap or pcapng and index it (``scan``, ``scan_file``)."""

from __future__ import annotations

import mmap
import os

from .errors import CaptureFormatError
from .model import Scan
from .pcap_read import is_pcap, scan_pcap
from .pcapng_read import is_pcapng, scan_pcapng


def scan(buf) -> Scan:
    """Index the capture in ``buf`` (any buffer, typically an mmap of the file).

    Raises CaptureFormatError only when the file header itself is unusable (empty file,
    unknown magic); a bad or truncated record later in the file is reported in
    ``Scan.error`` with the records before it indexed. No other exception is raised and no
    byte outside ``buf`` is read, whatever ``buf`` holds.
    """
    view = memoryview(buf).cast("B") if not isinstance(buf, (bytes, bytearray, mmap.mmap)) \
        else buf
    if len(view) == 0:
        raise CaptureFormatError(0, "empty capture file")
    if is_pcapng(view):
        return scan_pcapng(view)
    if is_pcap(view):
        return scan_pcap(view)
    head = bytes(view[:4]).hex()
    raise CaptureFormatError(0, f"not a pcap or pcapng file (starts with {head})")


def map_fd(fd: int) -> mmap.mmap | bytes:
    """A read-only mapping of the whole file behind ``fd`` (empty bytes for an empty file)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return b""
    return mmap.mmap(fd, size, prot=mmap.PROT_READ)


def scan_file(path: str | os.PathLike) -> tuple[Scan, mmap.mmap | bytes]:
    """Convenience for the CLI and tests: map ``path`` and scan it; returns (scan, mapping)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = map_fd(fd)
    finally:
        os.close(fd)
    return scan(buf), buf
