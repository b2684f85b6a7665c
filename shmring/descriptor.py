"""The ring descriptor: where a frame is, how long, and when it entered the system.

32 bytes, little endian: ``offset`` (u64, byte offset of the buffer in the data region),
``length`` (u32, frame bytes), ``flags`` (u32), ``timestamp`` (u64, ingress time in monotonic
ns, so latency is measured without touching the payload), ``meta`` (u64, free for stages:
interface, mark, ...).
"""

from __future__ import annotations

import numpy as np

DESC_DTYPE = np.dtype([("offset", "<u8"), ("length", "<u4"), ("flags", "<u4"),
                       ("timestamp", "<u8"), ("meta", "<u8")])
assert DESC_DTYPE.itemsize == 32

FLAG_NONE = 0


def descriptors(n: int) -> np.ndarray:
    """A zeroed batch of ``n`` descriptors."""
    return np.zeros(n, dtype=DESC_DTYPE)
