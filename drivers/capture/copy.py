"""Copy indexed frames from a capture buffer into a data region: one copy per frame.

Frames of the same short length (<= SMALL_FRAME bytes) are moved by one numpy gather/scatter
per group and chunk; longer frames by a loop of memoryview slice assignments, which copy
straight from source to destination. Every offset is bounds-checked first.
"""

from __future__ import annotations

import numpy as np

SMALL_FRAME = 128
CHUNK = 4096


def copy_frames(src_buf, records: np.ndarray, dst: np.ndarray, dst_offsets) -> int:
    """Copy each record's ``caplen`` bytes at ``data_offset`` in ``src_buf`` to ``dst``.

    ``records`` is a RECORD_DTYPE array (or any array with data_offset and caplen fields),
    ``dst`` a 1-D uint8 array (e.g. a view over a data region), ``dst_offsets`` one byte
    offset into ``dst`` per record. Returns the number of bytes copied. Raises ValueError,
    copying nothing, if any frame would fall outside ``src_buf`` or ``dst``.
    """
    src = np.frombuffer(src_buf, dtype=np.uint8)
    lengths = np.asarray(records["caplen"], dtype=np.int64)
    src_off = np.asarray(records["data_offset"], dtype=np.int64)
    dst_off = np.asarray(dst_offsets, dtype=np.int64)
    if dst.dtype != np.uint8 or dst.ndim != 1:
        raise ValueError("dst must be a 1-D uint8 array")
    if dst_off.shape != lengths.shape:
        raise ValueError("need one destination offset per record")
    if lengths.size == 0:
        return 0
    if (src_off.min() < 0 or (src_off + lengths).max() > src.size
            or dst_off.min() < 0 or (dst_off + lengths).max() > dst.size):
        raise ValueError("a frame falls outside the source buffer or the destination")
    copy_spans(src, src_off, dst, dst_off, lengths)
    return int(lengths.sum())


def copy_spans(src: np.ndarray, src_off: np.ndarray, dst: np.ndarray, dst_off: np.ndarray,
               lengths: np.ndarray) -> None:
    """Copy ``src[src_off[i]:+lengths[i]]`` to ``dst[dst_off[i]:]``; offsets already checked."""
    small = lengths <= SMALL_FRAME
    if small.any():
        _copy_grouped(src, dst, src_off[small], dst_off[small], lengths[small])
    if not small.all():
        big = ~small
        _copy_each(src, dst, src_off[big], dst_off[big], lengths[big])


def _copy_grouped(src, dst, src_off, dst_off, lengths) -> None:
    for length in np.unique(lengths).tolist():
        if length == 0:
            continue
        sel = np.flatnonzero(lengths == length)
        span = np.arange(length)
        for start in range(0, sel.size, CHUNK):
            part = sel[start:start + CHUNK]
            dst[dst_off[part, None] + span] = src[src_off[part, None] + span]


def _copy_each(src, dst, src_off, dst_off, lengths) -> None:
    try:
        s, d = memoryview(src), memoryview(dst)
    except (TypeError, ValueError, BufferError):
        s, d = src, dst
    for so, do, n in zip(src_off.tolist(), dst_off.tolist(), lengths.tolist(), strict=True):
        d[do:do + n] = s[so:so + n]
