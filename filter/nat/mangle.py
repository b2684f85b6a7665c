"""TTL / hop-limit and DSCP edits in place, with the IPv4 header checksum updated by
RFC 1624 (the IPv6 header has no checksum, RFC 8200 section 3)."""

from __future__ import annotations

from struct import pack_into, unpack_from

from filter.checksum import update_word

__all__ = ["set_ttl", "set_hoplimit", "dec_ttl", "set_dscp"]


def set_ttl(frame, info, ttl: int) -> None:
    """Set the IPv4 TTL or the IPv6 hop limit of the located datagram to ``ttl``."""
    if not isinstance(ttl, int) or not 0 <= ttl <= 255:
        raise ValueError(f"TTL must be 0..255, not {ttl!r}")
    mv = memoryview(frame).cast("B")
    l3 = info.l3
    if info.family == 6:
        mv[l3 + 7] = ttl
        return
    old = unpack_from("!H", mv, l3 + 8)[0]            # TTL and protocol share a word
    new = (ttl << 8) | (old & 0xFF)
    pack_into("!H", mv, l3 + 8, new)
    pack_into("!H", mv, l3 + 10, update_word(unpack_from("!H", mv, l3 + 10)[0], old, new))


set_hoplimit = set_ttl


def dec_ttl(frame, info, by: int = 1) -> int:
    """Lower the TTL / hop limit by ``by`` (not below 0); the new value."""
    mv = memoryview(frame).cast("B")
    current = mv[info.l3 + (7 if info.family == 6 else 8)]
    new = max(current - by, 0)
    if new != current:
        set_ttl(mv, info, new)
    return new


def set_dscp(frame, info, dscp: int) -> None:
    """Set the DSCP (RFC 2474 section 3) of the datagram, keeping its two ECN bits."""
    if not isinstance(dscp, int) or not 0 <= dscp <= 63:
        raise ValueError(f"DSCP must be 0..63, not {dscp!r}")
    mv = memoryview(frame).cast("B")
    l3 = info.l3
    if info.family == 6:                     # traffic class: bits 4..11 of the first word
        tclass = ((mv[l3] & 0x0F) << 4) | (mv[l3 + 1] >> 4)
        tclass = (dscp << 2) | (tclass & 3)
        mv[l3] = (mv[l3] & 0xF0) | (tclass >> 4)
        mv[l3 + 1] = ((tclass & 0x0F) << 4) | (mv[l3 + 1] & 0x0F)
        return
    old = unpack_from("!H", mv, l3)[0]                 # version/IHL and TOS share a word
    new = (old & 0xFF00) | (dscp << 2) | (old & 3)
    pack_into("!H", mv, l3, new)
    pack_into("!H", mv, l3 + 10, update_word(unpack_from("!H", mv, l3 + 10)[0], old, new))
