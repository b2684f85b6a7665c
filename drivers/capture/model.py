"""What a capture scan produces: the record index dtype, interfaces, and the Scan result."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import CaptureFormatError

RECORD_DTYPE = np.dtype([
    ("data_offset", "<u8"),   # byte offset of the frame bytes in the file
    ("caplen", "<u4"),        # captured bytes
    ("origlen", "<u4"),       # length on the wire
    ("ts_ns", "<u8"),         # integer ns since the Unix epoch
    ("interface", "<u2"),     # index into Scan.interfaces
])

LINKTYPE_NAMES = {
    0: "NULL", 1: "ETHERNET", 101: "RAW", 105: "IEEE802_11", 113: "LINUX_SLL",
    127: "IEEE802_11_RADIOTAP", 228: "IPV4", 229: "IPV6", 276: "LINUX_SLL2",
}

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

DEFAULT_SNAPLEN = 262144


def linktype_name(linktype: int) -> str:
    """A readable name for a LINKTYPE_ value (``LINKTYPE_<n>`` when unknown)."""
    return LINKTYPE_NAMES.get(linktype, f"LINKTYPE_{linktype}")


@dataclass(frozen=True)
class Interface:
    """One capture interface: its link type, snapshot length and timestamp resolution.

    ``tsresol`` is the pcapng if_tsresol byte: high bit clear -> 10**-n s, set -> 2**-n s.
    Classic pcap is 6 (µs) or 9 (ns). ``name`` is pcapng's if_name, when present.
    """

    linktype: int = LINKTYPE_ETHERNET
    snaplen: int = DEFAULT_SNAPLEN
    tsresol: int = 6
    name: str | None = None
    section: int = 0

    @property
    def linktype_name(self) -> str:
        return linktype_name(self.linktype)


@dataclass
class Scan:
    """A capture file's format and its record index (no frame bytes are copied).

    ``records`` is a numpy array of RECORD_DTYPE; ``error`` is None or the
    CaptureFormatError of the first bad record (every record before it is in ``records``).
    """

    format: str                       # "pcap" or "pcapng"
    byte_order: str                   # "<" or ">" (of the first section for pcapng)
    interfaces: list[Interface]
    records: np.ndarray
    error: CaptureFormatError | None = None
    version: tuple[int, int] = (2, 4)
    sections: int = 1
    skipped_blocks: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def nanosecond(self) -> bool:
        """True when every interface's resolution is finer than a microsecond."""
        return all(_resolution_digits(i.tsresol) > 6 for i in self.interfaces)

    @property
    def linktype(self) -> int:
        """The first interface's link type (the only one for classic pcap)."""
        return self.interfaces[0].linktype if self.interfaces else LINKTYPE_ETHERNET

    def __len__(self) -> int:
        return len(self.records)


def _resolution_digits(tsresol: int) -> float:
    if tsresol & 0x80:
        return (tsresol & 0x7F) * 0.30103
    return float(tsresol)
