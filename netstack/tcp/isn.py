"""Initial sequence numbers (RFC 6528 section 3).

"ISN = M + F(localip, localport, remoteip, remoteport, secretkey)" where M is a timer that
ticks every 4 microseconds and F a keyed hash (here BLAKE2s keyed with the layer's secret).
ISNs therefore grow with time for one 4-tuple and are unpredictable across 4-tuples.
"""

from __future__ import annotations

import hashlib

__all__ = ["initial_sequence_number"]


def _tuple_bytes(local: tuple, remote: tuple) -> bytes:
    return (local[0].packed + local[1].to_bytes(2, "big")
            + remote[0].packed + remote[1].to_bytes(2, "big"))


def initial_sequence_number(secret: bytes, local: tuple, remote: tuple, now: int) -> int:
    """The ISN for the connection ``local`` (ip, port) <-> ``remote`` at ``now`` (ns)."""
    digest = hashlib.blake2s(_tuple_bytes(local, remote), key=secret[:32],
                             digest_size=4, person=b"tcp-isn").digest()
    m = now // 4000                                  # RFC 6528: a 4-microsecond timer
    return (m + int.from_bytes(digest, "big")) & 0xFFFFFFFF
