"""Capture files: read (index) and write classic pcap and pcapng, on buffers and fds.

Drivers run sandboxed and cannot open files: the harness opens the capture and grants the fd.
Reading maps it (``map_fd``) and ``scan`` builds an index of records (offset of the frame
bytes, caplen, origlen, ts_ns, interface) without copying a frame; ``copy_frames`` then
moves each frame once into a data region. ``CaptureWriter`` writes to an fd or file object.

- ``scan(buf) -> Scan``; ``scan_file(path)``; ``map_fd(fd)``
- ``copy_frames(src_buf, records, dst_uint8, dst_offsets) -> bytes copied``
- ``CaptureWriter(dest, fmt, nanosecond, linktype | interfaces, snaplen)``; ``open_writer``
- ``CaptureFormatError(offset, message)``: the byte offset of the first bad record or block
"""

from .copy import copy_frames
from .errors import CaptureFormatError
from .model import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    RECORD_DTYPE,
    Interface,
    Scan,
    linktype_name,
)
from .scan import map_fd, scan, scan_file
from .writer import CaptureWriter, open_writer

__all__ = [
    "LINKTYPE_ETHERNET", "LINKTYPE_IPV4", "LINKTYPE_IPV6", "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2", "LINKTYPE_RAW", "RECORD_DTYPE", "CaptureFormatError",
    "CaptureWriter", "Interface", "Scan", "copy_frames", "linktype_name", "map_fd",
    "open_writer", "scan", "scan_file",
]
