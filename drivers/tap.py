"""``drivers.tap:Tap`` — a Linux TAP interface as a NIC (Ethernet frames); ``drivers.tap:Tun`` —
a TUN interface (bare IPv4/IPv6 packets). Both are ``drivers.nic.FrameNic``s.

A tap device opened with ``offload = true`` (IFF_VNET_HDR) carries a ``struct virtio_net_hdr``
(10 bytes: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset; virtio 1.x section
5.1.6) before every frame. Reading, ``Tap`` takes the header off into a side buffer (the frame
lands in place in the RX buffer: still one copy) and, when the kernel left the TCP/UDP
checksum to be completed (``VIRTIO_NET_HDR_F_NEEDS_CSUM``: the field holds the pseudo-header
sum, the sum over ``csum_start``.. the end is the checksum), completes it in place, so what goes
up is an ordinary frame, valid for any consumer. Segmentation-offloaded frames (GSO, up to 64
KiB of TCP) go up whole: the stack takes them as one segment. Writing, a frame that fits the
MTU (1500) gets a zero header (no offload requested); a larger IPv4/IPv6 TCP frame (a stack
with ``offload = true`` sends up to 64 KiB) gets a GSO header (TCPV4/TCPV6, ``gso_size`` the
payload that fits the MTU beside its headers) with NEEDS_CSUM, its checksum field replaced on
the way out (the TX region is read-only here: by the iovecs of ``writev``) with the
pseudo-header sum the kernel completes per segment; ``offload.gso_sent`` counts them. Counters: ``offload.gso_frames``, ``offload.csum_completed``;
a frame shorter than its header is dropped (``rx_malformed``).
"""

from __future__ import annotations

import fcntl
import os
import struct

from drivers.nic import TURN_FRAMES, FrameNic

# the Internet checksum is a wire codec: drivers use netstack.wire's as filter and gateway do
# (DESIGN.md names only those two; a pure function with no state, it keeps no layering hazard)
from netstack.wire.checksum import ones_sum

TUNGETIFF = 0x800454D2
IFF_VNET_HDR = 0x4000
VNET_HDR = struct.Struct("<BBHHHH")          # flags, gso_type, hdr_len, gso_size, start, offset
NEEDS_CSUM = 0x01                            # VIRTIO_NET_HDR_F_NEEDS_CSUM
GSO_NONE, GSO_TCPV4, GSO_TCPV6 = 0, 1, 4
MTU = 1500
ETH_HLEN = 14
ZERO_HDR = bytes(VNET_HDR.size)


def has_vnet_header(fd: int) -> bool:
    """True when the TAP behind ``fd`` was opened with IFF_VNET_HDR (TUNGETIFF)."""
    try:
        ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
    except OSError:
        return False
    return bool(struct.unpack_from("H", ifr, 16)[0] & IFF_VNET_HDR)


def complete_checksum(frame, start: int, offset: int) -> bool:
    """RFC 1071 over ``frame[start:]`` (whose checksum field at ``start + offset`` holds the
    pseudo-header sum), stored in that field; False if the offsets do not fit the frame."""
    field = start + offset
    if start < 0 or field + 2 > len(frame):
        return False
    checksum = ~ones_sum(frame[start:]) & 0xFFFF
    frame[field] = checksum >> 8
    frame[field + 1] = checksum & 0xFF
    return True


def gso_request(frame) -> tuple[bytes, int, bytes] | None:
    """For an IPv4/IPv6 TCP frame larger than the MTU: the virtio-net header asking the kernel
    to cut it, the offset of its checksum field and the pseudo-header sum to put there; None
    for any other frame (sent as it is)."""
    if len(frame) < ETH_HLEN + 40 + 20:
        return None
    ethertype = frame[12] << 8 | frame[13]
    if ethertype == 0x0800:
        ihl, proto = (frame[14] & 15) * 4, frame[23]
        addresses, kind = frame[26:34], GSO_TCPV4
        tcp_len = (frame[16] << 8 | frame[17]) - ihl
    elif ethertype == 0x86DD:
        ihl, proto = 40, frame[20]
        addresses, kind = frame[22:54], GSO_TCPV6
        tcp_len = frame[18] << 8 | frame[19]
    else:
        return None
    l4 = ETH_HLEN + ihl
    if proto != 6 or len(frame) < l4 + 20 or tcp_len != len(frame) - l4:
        return None
    thl = (frame[l4 + 12] >> 4) * 4
    if thl < 20 or tcp_len <= thl:
        return None
    pseudo = int.from_bytes(addresses, "big") % 0xFFFF + 6 + tcp_len
    pseudo = pseudo % 0xFFFF or 0xFFFF                # RFC 1071: the sum, not its complement
    header = VNET_HDR.pack(NEEDS_CSUM, kind, l4 + thl, MTU - ihl - thl, l4, 16)
    return header, l4 + 16, pseudo.to_bytes(2, "big")


class Tap(FrameNic):
    DEVICE = "tap"

    def init(self) -> None:
        super().init()
        self.vnet = has_vnet_header(self.fd)
        self.header = bytearray(VNET_HDR.size)
        self.tx_frames = memoryview(self.tx.data.mem) if self.tx is not None else None

    def produce(self) -> None:
        if not self.vnet:
            super().produce()
            return
        header, hlen = self.header, VNET_HDR.size
        read = 0
        while read < TURN_FRAMES:
            buffers = self._rx_buffers()
            if buffers is None:
                return
            good: list[int] = []
            lengths: list[int] = []
            spoilt: list[int] = []
            offsets = buffers["offset"].tolist()
            used = 0
            for offset in offsets:
                frame = self.frames[offset:offset + self.size]
                try:
                    n = os.readv(self.fd, [header, frame]) - hlen
                except BlockingIOError:
                    break
                used += 1
                flags, gso_type, _hlen, _gso, start, where = VNET_HDR.unpack(header)
                if n <= 0 or (flags & NEEDS_CSUM and not complete_checksum(
                        frame[:n], start, where)):
                    spoilt.append(offset)
                    continue
                if flags & NEEDS_CSUM:
                    self.count("offload.csum_completed")
                if gso_type != GSO_NONE:
                    self.count("offload.gso_frames")
                good.append(offset)
                lengths.append(n)
            filled, bad = len(good), len(spoilt)
            read += filled + bad
            self.rx_filled = filled + bad
            if spoilt:                      # the good ones first, in the order read
                buffers["offset"] = good + spoilt + offsets[used:]
            buffers["length"][:filled] = lengths
            if bad:
                self.count("entered", bad)
                self.count("in", bad)
                self.drop("rx_malformed", bad)
            if filled:
                buffers["timestamp"][:filled] = self.now()
                sent = self.out.send(buffers[:filled])
                self.count("entered", filled)
                self.count("in", filled)
                self.count("out", sent)
                if sent < filled:
                    self.drop("rx_full", filled - sent)
            self.pool.give(buffers[filled:])
            if filled + bad < len(buffers):
                return

    def _transmit(self) -> None:
        if not self.vnet:
            super()._transmit()
            return
        batch = self.tx.receive()
        if not len(batch):
            return
        self.count("in", len(batch))
        data = self.tx_frames
        written = 0
        for offset, length in zip(batch["offset"].tolist(), batch["length"].tolist(),
                                  strict=True):
            frame = data[offset:offset + length]
            gso = gso_request(frame) if length > MTU + ETH_HLEN else None
            if gso is None:
                parts = [ZERO_HDR, frame]
            else:
                header, field, pseudo = gso
                parts = [header, frame[:field], pseudo, frame[field + 2:]]
                self.count("offload.gso_sent")
            try:
                os.writev(self.fd, parts)
                written += 1
            except BlockingIOError:
                self.drop("tx_busy")
            except OSError:
                self.drop("tx_error")
        self.count("out", written)
        self.count("left", written)
        self.tx.release(batch)


class Tun(FrameNic):
    DEVICE = "tun"
