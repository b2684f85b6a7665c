"""The Interface core against the real Linux kernel over a TAP device in a test namespace.

The test process is the harness: it opens the TAP (kernel side 10.77.N.1/24), feeds every
frame the kernel writes into ``Interface.receive`` and writes ``frames_to_send()`` back.
The kernel's ping, ping -6 and Python UDP sockets (run with ``ip netns exec``) are the peers.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import subprocess
import sys
import time
import uuid
from ipaddress import ip_address
from pathlib import Path

import pytest

from harness.description import DeviceSpec
from harness.devices import open_device
from netstack import AddressDuplicate, EchoReply, Interface, UdpDatagram

MAC = bytes.fromhex("02aa00000002")


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is required for the kernel interop tests")


class Link:
    """A TAP in a fresh namespace, an Interface, and a pump between them."""

    def __init__(self) -> None:
        _require("ip")
        self.netns = f"h4-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.tap = f"h4t{uuid.uuid4().hex[:8]}"
        self.subnet = random.randrange(100, 250)
        self.kernel_ip = f"10.77.{self.subnet}.1"
        self.our_ip = f"10.77.{self.subnet}.2"
        self.fd = -1
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        try:
            # the kernel side's link-local must not wait for DAD before it can ping us
            self.ns_run("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
            self.fd = open_device(Path("."), DeviceSpec("tap", "rw", "", self.tap, self.netns,
                                                        f"{self.kernel_ip}/24"))
        except BaseException:
            self.close()
            raise
        self.iface = Interface(MAC, ipv4=f"{self.our_ip}/24", strict=True)
        self.events: list[object] = []
        self.iface.start(self.now())
        self.flush()

    def ns_run(self, *cmd, check=True, **kw):
        return subprocess.run(["ip", "netns", "exec", self.netns, *cmd], check=check,
                              capture_output=True, text=True, **kw)

    def ns_popen(self, *cmd):
        return subprocess.Popen(["ip", "netns", "exec", self.netns, *cmd],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def now() -> int:
        return time.monotonic_ns()

    def flush(self) -> None:
        for frame in self.iface.frames_to_send():
            os.write(self.fd, frame)

    def pump(self, done, timeout: float = 10.0) -> None:
        """Move frames both ways and run timers until ``done()`` or the deadline."""
        limit = time.monotonic() + timeout
        while not done():
            if time.monotonic() > limit:
                raise AssertionError(f"condition not reached; counters {dict(self.iface.counters)}")
            select.select([self.fd], [], [], 0.01)
            while True:
                try:
                    frame = os.read(self.fd, 65536)
                except BlockingIOError:
                    break
                self.iface.receive(frame, self.now())
            deadline = self.iface.next_deadline()
            if deadline is not None and deadline <= self.now():
                self.iface.handle_timeout(self.now())
            self.events.extend(self.iface.events())
            self.flush()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        subprocess.run(["ip", "netns", "delete", self.netns], check=False)


@pytest.fixture
def link():
    link = Link()
    try:
        yield link
    finally:
        link.close()


PINGER = """
import socket, struct, sys, time
family, target, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
v6 = family == "6"
if v6:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    addr, _, scope = target.partition("%")
    dest = (addr, 0, 0, socket.if_nametoindex(scope) if scope else 0)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    dest = (target, 0)
s.settimeout(3)
def csum(b):
    b += b"\\0" * (len(b) % 2)
    v = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while v >> 16:
        v = (v & 0xFFFF) + (v >> 16)
    return ~v & 0xFFFF
received = 0
for seq in range(count):
    body = struct.pack("!HH", 0x1234, seq) + b"kernel-ping-%d" % seq
    head = struct.pack("!BBH", 128 if v6 else 8, 0, 0)
    msg = head + body if v6 else head[:2] + struct.pack("!H", csum(head + body)) + body
    s.sendto(msg, dest)
    end = time.monotonic() + 3
    while time.monotonic() < end:
        try:
            data = s.recv(2000)
        except TimeoutError:
            break
        icmp = data if v6 else data[(data[0] & 15) * 4:]
        if icmp[0] == (129 if v6 else 0) and icmp[4:] == body:
            received += 1
            break
print(received, "received", flush=True)
"""


def _kernel_ping(link: Link, family: str, target: str, count: int) -> subprocess.Popen:
    """The kernel sends ``count`` echo requests (raw ICMP sockets: no ping binary needed)."""
    return link.ns_popen(sys.executable, "-c", PINGER, family, target, str(count))


def _finished(proc) -> bool:
    return proc.poll() is not None


def _udp_peer(link: Link, mode: str, size: int) -> subprocess.Popen:
    """A kernel-side UDP socket: 'echo' answers one datagram, 'client' sends one to our
    port 7 and prints the SHA-256 of what comes back."""
    script = f"""
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
if {mode!r} == "echo":
    s.bind(("{link.kernel_ip}", 9000))
    print("ready", flush=True)
    data, peer = s.recvfrom(65535)
    s.sendto(data[::-1], peer)
    print(hashlib.sha256(data).hexdigest(), flush=True)
else:
    data = bytes(i * 7 % 251 for i in range({size}))
    s.sendto(data, ("{link.our_ip}", 7))
    back, _ = s.recvfrom(65535)
    print(back == data[::-1], len(back), flush=True)
"""
    return link.ns_popen(sys.executable, "-c", script)


def test_kernel_pings_us_and_learns_our_mac_by_arp(link):
    ping = _kernel_ping(link, "4", link.our_ip, 3)
    link.pump(lambda: _finished(ping), timeout=15)
    out = ping.stdout.read()
    assert out.strip() == "3 received", out + ping.stderr.read()
    neigh = link.ns_run("ip", "neigh", "show", link.our_ip).stdout
    assert "02:aa:00:00:00:02" in neigh
    assert link.iface.counters["rx.delivered.icmp_echo"] == 3


def test_we_ping_the_kernel_after_resolving_it_by_arp(link):
    for seq in range(3):
        link.iface.ping(ip_address(link.kernel_ip), 0x4242, seq, b"capnet" * 10, link.now())
    link.flush()
    replies = lambda: [e for e in link.events if isinstance(e, EchoReply)]  # noqa: E731
    link.pump(lambda: len(replies()) == 3)
    assert sorted(r.seq for r in replies()) == [0, 1, 2]
    assert all(r.data == b"capnet" * 10 for r in replies())
    kernel_mac = link.ns_run("cat", f"/sys/class/net/{link.tap}/address").stdout.strip()
    assert link.iface.arp.lookup(ip_address(link.kernel_ip)) == bytes.fromhex(
        kernel_mac.replace(":", ""))


@pytest.mark.parametrize("size", [100, 6000])
def test_udp_we_send_kernel_echoes(link, size):
    """6000 bytes: we fragment and the kernel reassembles; its reply is fragmented by the
    kernel and we reassemble it."""
    port = link.iface.udp_bind(0)
    peer = _udp_peer(link, "echo", size)
    try:
        assert peer.stdout.readline().strip() == "ready"
        data = os.urandom(size)
        link.iface.udp_send(port, ip_address(link.kernel_ip), 9000, data, link.now())
        link.flush()
        got = lambda: [e for e in link.events if isinstance(e, UdpDatagram)]  # noqa: E731
        link.pump(lambda: got())
        assert got()[0].data == data[::-1]
        assert got()[0].src_port == 9000 and got()[0].dst_port == port
        if size > 1500:
            assert link.iface.counters["tx.ipv4.fragments"] >= 5
            assert link.iface.counters["ipv4.reassembly.done"] == 1
    finally:
        link.pump(lambda: _finished(peer), timeout=10)


def test_udp_kernel_sends_fragmented_we_echo(link):
    link.iface.udp_bind(7)
    peer = _udp_peer(link, "client", 20000)

    def answer() -> bool:
        while link.events:
            event = link.events.pop()
            if isinstance(event, UdpDatagram):
                link.iface.udp_send(7, event.src, event.src_port, event.data[::-1], link.now())
        return _finished(peer)

    link.pump(answer, timeout=15)
    assert peer.stdout.read().split() == ["True", "20000"], peer.stderr.read()
    assert link.iface.counters["ipv4.reassembly.done"] == 1


def test_udp_to_closed_port_gives_the_kernel_port_unreachable(link):
    script = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("{link.our_ip}", 9))
s.send(b"anyone?")
try:
    s.recv(100)
except ConnectionRefusedError:
    print("refused")
"""
    peer = link.ns_popen(sys.executable, "-c", script)
    link.pump(lambda: _finished(peer), timeout=10)
    assert peer.stdout.read().strip() == "refused"


def test_kernel_pings_our_ipv6_link_local(link):
    ours = link.iface.ndp.link_local.ip
    ping = _kernel_ping(link, "6", f"{ours}%{link.tap}", 2)
    link.pump(lambda: _finished(ping), timeout=15)
    out = ping.stdout.read()
    assert out.strip() == "2 received", out + ping.stderr.read()
    assert link.iface.counters["tx.ndp.na"] >= 1
    assert link.iface.counters["rx.delivered.icmpv6_echo"] == 2


def _kernel_link_local(link: Link) -> str:
    out = link.ns_run("ip", "-6", "-o", "addr", "show", "dev", link.tap, "scope", "link").stdout
    return out.split("inet6 ")[1].split("/")[0]


def test_we_ping_the_kernel_link_local_after_neighbour_solicitation(link):
    kernel = ip_address(_kernel_link_local(link))
    link.iface.ping(kernel, 7, 1, b"six", link.now())
    link.flush()
    link.pump(lambda: any(isinstance(e, EchoReply) for e in link.events))
    (reply,) = [e for e in link.events if isinstance(e, EchoReply)]
    assert reply.src == kernel and reply.data == b"six"
    assert link.iface.ndp.resolver.lookup(kernel) is not None
    assert link.iface.counters["rx.delivered.ndp"] >= 1       # the kernel's advertisement


def test_udp_over_ipv6_both_ways_with_the_kernel(link):
    """A kernel UDP socket on its link-local address echoes our 3000-byte datagram: both
    sides fragment (IPv6 source fragmentation) and reassemble, and checksums are mandatory."""
    kernel = _kernel_link_local(link)
    script = f"""
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(10)
s.bind(("{kernel}", 9000, 0, socket.if_nametoindex("{link.tap}")))
print("ready", flush=True)
data, peer = s.recvfrom(65535)
s.sendto(data[::-1], peer)
"""
    peer = link.ns_popen(sys.executable, "-c", script)
    try:
        assert peer.stdout.readline().strip() == "ready", peer.stderr.read()
        port = link.iface.udp_bind(0)
        data = os.urandom(3000)
        link.iface.udp_send(port, ip_address(kernel), 9000, data, link.now())
        link.flush()
        got = lambda: [e for e in link.events if isinstance(e, UdpDatagram)]  # noqa: E731
        link.pump(lambda: got())
        assert got()[0].data == data[::-1] and got()[0].src == ip_address(kernel)
        assert link.iface.counters["ipv6.reassembly.done"] == 1
    finally:
        link.pump(lambda: _finished(peer), timeout=10)


def test_slaac_from_a_router_advertisement_the_kernel_sends_then_kernel_pings_it(link):
    """A kernel-side raw ICMPv6 socket plays the router: its RA (hop limit 255, from the
    kernel's link-local) gives us a /64; our SLAAC address then answers the kernel's ping."""
    prefix = f"fd00:77:{link.subnet:x}::"
    link.ns_run("ip", "-6", "addr", "add", f"{prefix}1/64", "dev", link.tap, "nodad")
    script = f"""
import socket, struct
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
prefix = socket.inet_pton(socket.AF_INET6, "{prefix}")
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
pio = struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 3600, 1800, 0) + prefix
s.sendto(ra + pio, ("ff02::1", 0, 0, socket.if_nametoindex("{link.tap}")))
"""
    link.ns_run(sys.executable, "-c", script)
    ours = lambda: [a for a in link.iface.ipv6_addresses if str(a.ip).startswith(prefix[:-1])]  # noqa: E731
    link.pump(lambda: ours())
    address = ours()[0].ip
    assert address.packed[8:] == link.iface.ndp.link_local.ip.packed[8:]      # EUI-64 id
    ping = _kernel_ping(link, "6", str(address), 2)
    link.pump(lambda: _finished(ping), timeout=15)
    out = ping.stdout.read()
    assert out.strip() == "2 received", out + ping.stderr.read()


def test_dad_detects_the_kernel_already_using_our_link_local_address(link):
    """RFC 4862 section 5.4: the kernel owns the address our MAC would give us; its answer
    to our DAD probe marks the address duplicate, and it is never configured."""
    mac = bytes.fromhex("02aa00000077")
    iface = Interface(mac, ipv4=None, dad=True, strict=True)
    taken = iface.ndp.link_local
    link.ns_run("ip", "-6", "addr", "add", str(taken), "dev", link.tap, "nodad")
    link.iface = iface
    iface.start(link.now())
    link.flush()
    link.pump(lambda: any(isinstance(e, AddressDuplicate) for e in link.events))
    assert taken not in iface.ipv6_addresses and iface.counters["ndp.dad_duplicate"] == 1
