"""``drivers.tap:Tap`` — a Linux TAP interface as a NIC (see ``drivers.nic``)."""

from drivers.nic import FrameNic


class Tap(FrameNic):
    DEVICE = "tap"
