"""The gateway component's own cost, in one process: the real ``Gateway`` and ``KeyStore``
objects on real shmring queue pairs, with no other process and no wake-up in the way.

The bench plays the red NIC (fills ``red_in`` with 1420-byte IP packets, a gateway batch at a
time) and the black NIC (drains ``black_out``), and a wireguard-go stand-in (a local ``Device``
holding the peer's key) answers the gateway's handshake. Only the gateway's entry points are
timed (``notified`` for the red batch and for the black NIC's returned buffers), in CPU time of
this thread, so the figure is the component's capacity: packets sealed per second of its CPU.
Every sealed frame is checked (IPv4/UDP to the peer's endpoint, a transport message), and a
sample is opened by the peer to the very packet sent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import struct
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from gateway.datapath import BATCH as GW_BATCH
from gateway.datapath import Gateway
from gateway.keys import KeyStore
from gateway.wireguard import Device, Output, encode_key, noise
from gateway.wireguard import messages as wm
from gateway.wireguard.config import PeerConfig, WgConfig
from harness import messages
from shmring import BufferLedger, BufferPool, QueueEnd, Region, queue_bytes

BUF, NBUF, CAP = 2048, 512, 256
BATCH = min(GW_BATCH, CAP)           # what the gateway takes at once (its default), one round
GW, PEER = ("10.99.0.1", 51821), ("10.99.0.2", 51820)
RED_SRC, RED_DST = "10.200.0.1", "10.200.0.2"


class _Runtime:
    """What the two components need of the harness: a protected call (msgpack both ways, as
    over the real channel) and timers, which never fire: a bench run ends long before any of
    the protocol's timers (seconds) is due."""

    def __init__(self, callee: KeyStore | None = None) -> None:
        self.callee = callee

    def ppcall(self, channel, msg):
        reply = self.callee.protected(channel, messages.unpack(messages.pack(msg)))
        return messages.unpack(messages.pack(reply))

    def set_timer(self, deadline, token) -> None:
        """Not fired (see the class)."""

    def cancel_timer(self, token) -> None:
        """Nothing was armed."""


def _component(cls, name: str, config: dict, runtime: _Runtime, **grants):
    c = cls.__new__(cls)
    c.name, c.config, c.priority, c.incarnation = name, config, 100, 0
    c.regions, c.channels, c.devices, c.counters = {}, {}, [], {}
    c.queues, c.pools = grants.get("queues", {}), grants.get("pools", {})
    c.devices = grants.get("devices", [])
    c._runtime = runtime
    return c


class _Link:
    """One queue pair: ``ours`` is the bench's end, ``theirs`` the gateway's."""

    def __init__(self, name: str, gw_produces: bool) -> None:
        self.rings = Region.create(f"{name}.rings", queue_bytes(CAP))
        self.data = Region.create(f"{name}.data", NBUF * BUF)
        origin = BufferLedger(self.data.size, BUF)
        origin.hold_initial(0, NBUF)
        other = BufferLedger(self.data.size, BUF)
        producer = QueueEnd(name, "producer", self.rings, self.data, CAP, origin, None, None)
        consumer = QueueEnd(name, "consumer", self.rings, self.data, CAP, other, None, None)
        self.pool = BufferPool(origin)          # the producer's (the origin's) free buffers
        self.theirs, self.ours = (producer, consumer) if gw_produces else (consumer, producer)
        self.mem = memoryview(self.data.mem)

    def close(self) -> None:
        for end in (self.theirs, self.ours):
            end.close()
        self.rings.close()
        self.data.close()


def _ip(src: str, dst: str, proto: int, body: bytes) -> bytes:
    head = struct.pack(">BBHHHBB2x4s4s", 0x45, 0, 20 + len(body), 0, 0x4000, 64, proto,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return head + body


def _udp(src, dst, payload: bytes) -> bytes:
    return _ip(src[0], dst[0], 17, struct.pack(">HHHH", src[1], dst[1], 8 + len(payload), 0)
               + payload)


def _ipv4_checksum(header: bytes) -> bytes:
    total = sum(struct.unpack(">10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return struct.pack(">H", ~total & 0xFFFF)


def _push(link: _Link, frames: list[bytes]) -> None:
    link.pool.give(link.ours.reclaim())
    bufs = link.pool.take(len(frames))
    for i, frame in enumerate(frames):
        off = int(bufs["offset"][i])
        link.mem[off:off + len(frame)] = frame
        bufs["length"][i] = len(frame)
    if link.ours.send(bufs) != len(frames):
        raise RuntimeError(f"{link.ours.name}: no room for {len(frames)} frames")


def _drain(link: _Link) -> tuple[list[memoryview], object]:
    batch = link.ours.receive()
    frames = [link.mem[o:o + n] for o, n in zip(batch["offset"].tolist(),
                                                batch["length"].tolist(), strict=True)]
    return frames, batch


@contextlib.contextmanager
def _rig():
    """The gateway and key components on their queues, a peer, and a handshake done (carrying
    one 1420-byte packet); yields (gateway, peer device, links)."""
    gw_key, peer_key = noise.generate_private_key(), noise.generate_private_key()
    links = {n: _Link(f"bench-{n}-{os.getpid()}", n in ("red_out", "black_out"))
             for n in ("red_in", "red_out", "black_in", "black_out")}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "gateway.conf"
            conf.write_text(f"[Interface]\nPrivateKey = {encode_key(gw_key)}\nListenPort = "
                            f"{GW[1]}\n[Peer]\nPublicKey = "
                            f"{encode_key(noise.public_key(peer_key))}\n"
                            f"AllowedIPs = {RED_DST}/32\nEndpoint = {PEER[0]}:{PEER[1]}\n")
            fd = os.open(conf, os.O_RDONLY)
            keys = _component(KeyStore, "keys", {}, _Runtime(), devices=[
                SimpleNamespace(kind="file", mode="r", fd=fd, path=str(conf))])
            keys.init()
        gw = _component(Gateway, "gw", {"address": GW[0]}, _Runtime(keys),
                        queues={n: link.theirs for n, link in links.items()},
                        pools={links[n].data.name: links[n].pool      # it originates these
                               for n in ("red_out", "black_out")})
        gw.init()
        peer = Device.local(WgConfig(peer_key, PEER[1], (PeerConfig(
            noise.public_key(gw_key), allowed_ips=(ipaddress.ip_network(f"{RED_SRC}/32"),),
            endpoint=GW),)))
        _handshake(gw, peer, links, _ip(RED_SRC, RED_DST, 17, bytes(1400)))
        yield gw, peer, links
    finally:
        for link in links.values():
            link.close()


def run(packets: int = 100_000, packet_bytes: int = 1420) -> dict:
    """Seal ``packets`` red packets of ``packet_bytes`` (a multiple of 16, or the MTU: no
    padding), rounded up to whole batches, through the gateway component; returns packets
    sealed per second of its CPU time (``pps``), how many were sealed, the mean batch, and the
    component's counters and WireGuard counters. Raises RuntimeError if a frame is not what
    the peer expects."""
    with _rig() as (gw, peer, links):
        packet = _ip(RED_SRC, RED_DST, 17, bytes(packet_bytes - 20))
        expected_header = bytes(_udp(GW, PEER, bytes(packet_bytes + 32))[:28])
        expected_header = expected_header[:10] + _ipv4_checksum(expected_header[:20]) + \
            expected_header[12:]
        busy = sent = 0
        sample = None
        while sent < packets:
            _push(links["red_in"], [packet] * BATCH)
            start = time.thread_time_ns()
            gw.notified(links["red_in"].theirs.name)
            busy += time.thread_time_ns() - start
            frames, batch = _drain(links["black_out"])
            if len(frames) != BATCH:
                raise RuntimeError(f"sealed {len(frames)} of {BATCH} packets")
            sample = bytes(frames[-1])
            if sample[:28] != expected_header or sample[28] != wm.TRANSPORT_TYPE:
                raise RuntimeError("not an IPv4/UDP transport message to the peer")
            links["black_out"].ours.release(batch)
            start = time.thread_time_ns()
            gw.notified(links["black_out"].theirs.name)
            busy += time.thread_time_ns() - start
            sent += len(frames)
        opened = peer.receive(sample[28:], GW, time.monotonic_ns()).packets
        if opened != [packet]:
            raise RuntimeError("the peer did not open the last frame to the packet sent")
        stats = gw.stats()
        return {"pps": sent / (busy / 1e9), "sealed": sent,
                "batch_mean": stats["wireguard"]["sent"] / max(1, gw.seal_batches),
                "counters": dict(gw.counters), "wireguard": stats["wireguard"]}


def seal(packets: list[bytes]) -> dict:
    """Hand ``packets`` to the gateway in one batch (after a handshake); returns the payloads
    of the black frames it produced (``frames``, the peer's view: what it opened, or None)
    and the gateway's counters."""
    with _rig() as (gw, peer, links):
        _push(links["red_in"], packets)
        gw.notified(links["red_in"].theirs.name)
        frames, batch = _drain(links["black_out"])
        opened = [peer.receive(bytes(f[28:]), GW, time.monotonic_ns()).packets
                  for f in frames]
        links["black_out"].ours.release(batch)
        gw.notified(links["black_out"].theirs.name)
        gw.stats()
        return {"opened": opened, "counters": dict(gw.counters)}


def open_sealed(packets: list[bytes], forge: tuple[int, ...] = ()) -> dict:
    """The other way: the peer seals ``packets`` (the ones at the indices in ``forge`` get a
    flipped tag bit), they reach the gateway in one black batch; returns the red frames it
    produced (``delivered``), and its counters and WireGuard counters."""
    with _rig() as (gw, peer, links):
        out = Output()
        peer.send_batch(packets, time.monotonic_ns(), out)
        sealed = [bytearray(d) for _, d in out.datagrams]
        for i in forge:
            sealed[i][-1] ^= 1
        _push(links["black_in"], [_udp(PEER, GW, bytes(d)) for d in sealed])
        gw.notified(links["black_in"].theirs.name)
        frames, batch = _drain(links["red_out"])
        delivered = [bytes(f) for f in frames]
        links["red_out"].ours.release(batch)
        gw.notified(links["red_out"].theirs.name)
        stats = gw.stats()
        return {"delivered": delivered, "counters": dict(gw.counters),
                "wireguard": stats["wireguard"]}


def _handshake(gw: Gateway, peer: Device, links: dict, packet: bytes) -> None:
    """One packet starts the gateway's handshake; the peer answers it; the packet goes."""
    _push(links["red_in"], [packet])
    gw.notified(links["red_in"].theirs.name)
    frames, batch = _drain(links["black_out"])
    (init,) = [bytes(f[28:]) for f in frames]
    links["black_out"].ours.release(batch)
    gw.notified(links["black_out"].theirs.name)
    (_, response), = peer.receive(init, GW, time.monotonic_ns()).datagrams
    _push(links["black_in"], [_udp(PEER, GW, response)])
    gw.notified(links["black_in"].theirs.name)
    frames, batch = _drain(links["black_out"])
    if [peer.receive(bytes(f[28:]), GW, time.monotonic_ns()).packets for f in frames] != \
            [[packet]]:
        raise RuntimeError("the handshake did not carry the first packet")
    links["black_out"].ours.release(batch)
    gw.notified(links["black_out"].theirs.name)
