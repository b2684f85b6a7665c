"""``drivers.tap:Tap`` — a Linux TAP interface as a NIC (Ethernet frames); ``drivers.tap:Tun`` —
a TUN interface (bare IPv4/IPv6 packets). Both are ``drivers.nic.FrameNic``s."""

from drivers.nic import FrameNic


class Tap(FrameNic):
    DEVICE = "tap"


class Tun(FrameNic):
    DEVICE = "tun"
