"""Link-layer types (pcap LINKTYPE_ values) and where each puts its type field and payload."""

from dataclasses import dataclass

LINKTYPE_NULL = 0          # BSD loopback: a 4-byte address family in the writer's byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108        # OpenBSD loopback: the same family word in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276  # Linux cooked v2: the protocol first, 20 bytes of header


@dataclass(frozen=True)
class LinkLayout:
    """Offsets libpcap assumes for a link type: the type field (None if absent), the payload."""

    linktype: int
    name: str
    off_linktype: int | None
    off_linkpl: int


LAYOUTS = {
    LINKTYPE_NULL: LinkLayout(LINKTYPE_NULL, "NULL", 0, 4),
    LINKTYPE_LOOP: LinkLayout(LINKTYPE_LOOP, "LOOP", 0, 4),
    LINKTYPE_LINUX_SLL2: LinkLayout(LINKTYPE_LINUX_SLL2, "LINUX_SLL2", 0, 20),
    LINKTYPE_ETHERNET: LinkLayout(LINKTYPE_ETHERNET, "EN10MB", 12, 14),
    LINKTYPE_RAW: LinkLayout(LINKTYPE_RAW, "RAW", None, 0),
    LINKTYPE_LINUX_SLL: LinkLayout(LINKTYPE_LINUX_SLL, "LINUX_SLL", 14, 16),
    LINKTYPE_IPV4: LinkLayout(LINKTYPE_IPV4, "IPV4", None, 0),
    LINKTYPE_IPV6: LinkLayout(LINKTYPE_IPV6, "IPV6", None, 0),
}


def layout_for(linktype: int) -> LinkLayout:
    """The layout of a supported link type; ValueError for any other."""
    try:
        return LAYOUTS[int(linktype)]
    except (KeyError, TypeError, ValueError):
        names = ", ".join(f"{k} ({v.name})" for k, v in LAYOUTS.items())
        raise ValueError(f"unsupported link type {linktype!r}; supported: {names}") from None
