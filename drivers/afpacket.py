"""``drivers.afpacket:AfPacket`` — a raw AF_PACKET socket bound to an interface, as a NIC
(see ``drivers.nic``). The socket sees every frame the interface receives."""

from drivers.nic import FrameNic


class AfPacket(FrameNic):
    DEVICE = "afpacket"
