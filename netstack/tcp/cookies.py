"""SYN cookies (RFC 4987 section 3.6): a listener whose backlog is full keeps no state.

The SYN-ACK's sequence number encodes what the connection needs: the top 5 bits a counter
``t`` that ticks every 64 s, the next 3 bits an index into a table of MSS values, the low 24
bits a keyed hash of the 4-tuple, ``t`` and the client's ISN. The returning ACK (acknowledging
cookie + 1) is checked against ``t`` and ``t - 1`` only, so a cookie lives 64-128 s. When
the client offered timestamps, window scale and SACK-permitted ride in the low bits of our
TSval and come back in its TSecr (as Linux does); without timestamps they are lost.
"""

from __future__ import annotations

import hashlib

from netstack.tcp.isn import _tuple_bytes

__all__ = ["make_cookie", "check_cookie", "MSS_TABLE", "encode_ts_options", "decode_ts_options"]

MSS_TABLE = (536, 1200, 1300, 1360, 1400, 1440, 1460, 8960)
PERIOD_NS = 64 * 1_000_000_000
TS_OPTION_BITS = 5
NO_WSCALE = 0xF


def _hash(secret: bytes, local: tuple, remote: tuple, t: int, client_isn: int) -> int:
    data = _tuple_bytes(local, remote) + t.to_bytes(8, "big") + client_isn.to_bytes(4, "big")
    digest = hashlib.blake2s(data, key=secret[:32], digest_size=3, person=b"syncook").digest()
    return int.from_bytes(digest, "big")


def make_cookie(secret: bytes, local: tuple, remote: tuple, client_isn: int, mss: int,
                now: int) -> tuple[int, int]:
    """(our ISN carrying the cookie, the MSS it encodes: the largest table entry <= mss)."""
    t = now // PERIOD_NS
    index = max(i for i, m in enumerate(MSS_TABLE) if m <= mss or i == 0)
    value = ((t & 0x1F) << 27) | (index << 24) | _hash(secret, local, remote, t, client_isn)
    return value, MSS_TABLE[index]


def check_cookie(secret: bytes, local: tuple, remote: tuple, client_isn: int, cookie: int,
                 now: int) -> int | None:
    """The MSS the cookie encodes if it is genuine and fresh, else None."""
    t_now = now // PERIOD_NS
    for t in (t_now, t_now - 1):
        if t < 0 or (cookie >> 27) != (t & 0x1F):
            continue
        if (cookie & 0xFFFFFF) == _hash(secret, local, remote, t, client_isn):
            return MSS_TABLE[(cookie >> 24) & 0x7]
    return None


def encode_ts_options(tsval: int, wscale: int | None, sack: bool) -> int:
    """Our SYN-ACK's TSval with the peer's window scale and SACK-permitted in its low 5 bits.

    The value lies below ``tsval`` (the current clock) so that the connection's later TSvals,
    read from the same clock, never look older to the peer's PAWS (RFC 7323 5.3).
    """
    bits = (NO_WSCALE if wscale is None else min(wscale, 14)) | (0x10 if sack else 0)
    return ((tsval - 0x20) & ~0x1F & 0xFFFFFFFF) | bits


def decode_ts_options(tsecr: int) -> tuple[int | None, bool]:
    """(peer's window scale or None, SACK permitted) from the TSecr of the cookie's ACK."""
    wscale = tsecr & 0xF
    return (None if wscale == NO_WSCALE else wscale), bool(tsecr & 0x10)
