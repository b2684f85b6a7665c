"""Deterministic pseudo-random bytes for transfer tests: ``/bytes/N`` and the bulk apps.

Byte stream = SHAKE-128(b"capnet-bytes" || block number, 8 bytes big-endian) for consecutive
64 KiB blocks, so any party (a kernel-side test client, curl piped into sha256sum) can
recompute it with hashlib alone, and a prefix of a longer stream is the shorter stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

BLOCK = 64 * 1024
SEED = b"capnet-bytes"


def block(index: int) -> bytes:
    """The ``index``-th 64 KiB block of the stream."""
    return hashlib.shake_128(SEED + index.to_bytes(8, "big")).digest(BLOCK)


def chunks(n: int) -> Iterator[bytes]:
    """The first ``n`` bytes of the stream, in blocks of at most 64 KiB."""
    index = 0
    while n > 0:
        data = block(index)
        yield data[:n] if n < BLOCK else data
        n -= BLOCK
        index += 1


def pattern_bytes(n: int) -> bytes:
    """The first ``n`` bytes of the stream."""
    return b"".join(chunks(n))


def pattern_sha256(n: int) -> str:
    """Hex SHA-256 of the first ``n`` bytes of the stream."""
    digest = hashlib.sha256()
    for chunk in chunks(n):
        digest.update(chunk)
    return digest.hexdigest()
