"""capnet netstack: wire codecs (``netstack.wire``) and sans-I/O protocol cores.

Cores take bytes and ``now`` (int ns) and give frames, events and the next deadline; they
import neither ``shmring`` nor ``harness``. :class:`Interface` composes ARP, IPv4 (with
fragmentation and reassembly), ICMP, IPv6 with NDP and SLAAC, ICMPv6 and UDP for one Ethernet
interface; TCP registers itself on it with ``register_protocol``.
"""

from netstack.arp import ArpResolver, NeighbourCache, ResolutionFailed
from netstack.icmp import EchoReply, IcmpError, TokenBucket
from netstack.interface import Interface
from netstack.ipv4 import Reassembler, fragment
from netstack.ndp import AddressConfigured, AddressDuplicate, AddressExpired, Ndp
from netstack.udp import PortInUse, UdpDatagram, UdpTable

__all__ = [
    "Interface",
    "UdpDatagram", "EchoReply", "IcmpError", "AddressConfigured", "AddressExpired",
    "AddressDuplicate", "ResolutionFailed",
    "ArpResolver", "NeighbourCache", "Ndp", "Reassembler", "fragment", "TokenBucket",
    "UdpTable", "PortInUse",
]

# --- The Stack component and socket/asyncio APIs (H6 adds its exports below this line) ---
from netstack.sockets import Host, TcpSocket, UdpSocket  # noqa: E402  (no harness import)

__all__ += ["Stack", "Host", "TcpSocket", "UdpSocket"]


def __getattr__(name: str):
    """``netstack.Stack``, the component (``program = "netstack:Stack"``), is imported on first
    use, so that the codecs and cores never pull in the harness."""
    if name == "Stack":
        from netstack.stack import Stack
        return Stack
    raise AttributeError(f"module 'netstack' has no attribute {name!r}")
