"""Wire codecs: a view that reads a header in place after one length check, and a frozen,
parsed dataclass with ``parse(buf)`` and ``emit()``, for each format the stack speaks.

Views raise :class:`WireError` (a ``ValueError``) once, at construction, if the buffer is too
short or inconsistent; their properties then cannot fail. ``parse`` raises ``WireError`` for
anything malformed (including a bad checksum where the format has one it can check alone).
Nothing here raises any other exception on any byte sequence.
"""


class WireError(ValueError):
    """A buffer that is not a valid instance of the format (reason in the message)."""


from netstack.wire.arp import ARP_REPLY, ARP_REQUEST, Arp, ArpView  # noqa: E402
from netstack.wire.checksum import (  # noqa: E402
    internet_checksum,
    ones_sum,
    pseudo_header,
    transport_checksum,
    transport_valid,
)
from netstack.wire.ethernet import (  # noqa: E402
    BROADCAST,
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    ETH_VLAN,
    Ethernet,
    EthernetView,
    format_mac,
    parse_mac,
)
from netstack.wire.icmpv4 import Icmpv4, Icmpv4View  # noqa: E402
from netstack.wire.icmpv6 import (  # noqa: E402
    Icmpv6,
    Icmpv6View,
    NdpOptions,
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInfo,
    RouterAdvertisement,
    RouterSolicitation,
)
from netstack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Ipv4, Ipv4View  # noqa: E402
from netstack.wire.ipv6 import (  # noqa: E402
    PROTO_ICMPV6,
    Ipv6,
    Ipv6Fragment,
    Ipv6View,
    UpperLayer,
    walk_extension_headers,
)
from netstack.wire.tcp import Tcp, TcpOptions, TcpView  # noqa: E402  (written with TCP)
from netstack.wire.udp import Udp, UdpView  # noqa: E402

__all__ = [
    "WireError",
    "internet_checksum", "ones_sum", "pseudo_header", "transport_checksum", "transport_valid",
    "Ethernet", "EthernetView", "BROADCAST", "ETH_ARP", "ETH_IPV4", "ETH_IPV6", "ETH_VLAN",
    "format_mac", "parse_mac",
    "Arp", "ArpView", "ARP_REQUEST", "ARP_REPLY",
    "Ipv4", "Ipv4View", "PROTO_ICMP", "PROTO_TCP", "PROTO_UDP",
    "Ipv6", "Ipv6View", "Ipv6Fragment", "UpperLayer", "walk_extension_headers", "PROTO_ICMPV6",
    "Icmpv4", "Icmpv4View",
    "Icmpv6", "Icmpv6View", "NeighborSolicitation", "NeighborAdvertisement",
    "RouterSolicitation", "RouterAdvertisement", "PrefixInfo", "NdpOptions",
    "Udp", "UdpView",
    "Tcp", "TcpView", "TcpOptions",
]
