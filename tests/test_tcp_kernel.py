"""netstack.tcp against the Linux kernel's TCP, the TCP core alone.

A TUN device (bare IPv4 packets) is created by the harness's own device opener inside a network
namespace this test makes (kernel side 10.99.0.1/24), and driven from here with a minimal IPv4 shim around a TcpLayer
(10.99.0.2) on the real clock, with seeded loss on our side of the device. The kernel's own
sockets (a Python client or server run in the namespace) are the peer.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import struct
import subprocess
import sys
import time
from ipaddress import ip_address
from pathlib import Path

import pytest

from harness.description import DeviceSpec
from harness.devices import open_device
from netstack.tcp import Accepted, PeerClosed, TcpConfig, TcpLayer
from netstack.wire.checksum import internet_checksum

KERNEL, US = ip_address("10.99.0.1"), ip_address("10.99.0.2")
SIZE = 2_000_000


def _require_tools() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("root and iproute2 are required")
        pytest.skip("needs root and iproute2")


class KernelPeer:
    """A TcpLayer wired to the kernel through a TUN device in a fresh namespace."""

    def __init__(self, loss: float) -> None:
        tag = f"{os.getpid()}{random.randrange(1000)}"
        self.ns, self.dev = f"tcpk{tag}", f"tk{tag}"
        self.fd = None
        self.rng = random.Random(1)
        self.loss = loss
        self.tcp = TcpLayer(TcpConfig(rto_min_ns=200_000_000), secret=os.urandom(32))
        self.t0 = time.monotonic_ns()
        self.ident = 0
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        try:
            self.fd = open_device(Path("."), DeviceSpec("tun", "rw", "", self.dev, self.ns,
                                                        f"{KERNEL}/24"))
            subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        subprocess.run(["ip", "netns", "del", self.ns], check=False)

    def now(self) -> int:
        return time.monotonic_ns() - self.t0

    def run_in_ns(self, code: str) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-c", code],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def flush(self) -> None:
        for src, dst, seg in self.tcp.segments_to_send():
            self.ident = (self.ident + 1) & 0xFFFF
            head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), self.ident, 0x4000, 64,
                               6, 0, src.packed, dst.packed)
            head = head[:10] + internet_checksum(head).to_bytes(2, "big") + head[12:]
            if self.rng.random() >= self.loss:
                os.write(self.fd, head + seg)

    def pump(self) -> None:
        """Wait up to 10 ms for packets or the next timer; feed the layer; send its output."""
        deadline = self.tcp.next_deadline()
        wait = 0.01 if deadline is None else max(0.0, min(0.01, (deadline - self.now()) / 1e9))
        if select.select([self.fd], [], [], wait)[0]:
            while True:
                try:
                    pkt = os.read(self.fd, 65536)
                except BlockingIOError:
                    break
                if self.rng.random() < self.loss:
                    continue
                if len(pkt) >= 20 and pkt[0] >> 4 == 4 and pkt[9] == 6:
                    end = int.from_bytes(pkt[2:4], "big")
                    self.tcp.receive(ip_address(pkt[12:16]), ip_address(pkt[16:20]),
                                     memoryview(pkt)[(pkt[0] & 15) * 4:end], self.now())
        deadline = self.tcp.next_deadline()
        if deadline is not None and deadline <= self.now():
            self.tcp.handle_timeout(self.now())
        self.flush()


@pytest.fixture(params=[0.0, 0.01], ids=["no-loss", "1%-loss"])
def kernel(request):
    _require_tools()
    peer = KernelPeer(request.param)
    try:
        yield peer
    finally:
        peer.close()


def _until(peer: KernelPeer, done, seconds: float = 60.0) -> None:
    give_up = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < give_up, "the kernel peer did not finish in time"
        peer.pump()


def test_kernel_client_echoes_through_a_capnet_server(kernel):
    """RFC 9293 interop: the kernel connects, sends 2 MB, half-closes, reads the echo."""
    tcp = kernel.tcp
    tcp.listen((None, 7))
    client = kernel.run_in_ns(f"""
import random, socket, threading
data = random.Random(5).randbytes({SIZE})
s = socket.create_connection(("{US}", 7), timeout=60)
def writer():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=writer).start()
got = bytearray()
while chunk := s.recv(65536):
    got += chunk
print("ok" if bytes(got) == data else f"bad {{len(got)}}")
""")
    backlog: dict[int, bytearray] = {}

    def echo() -> bool:
        for ev in tcp.events():
            if isinstance(ev, Accepted):
                backlog[ev.conn] = bytearray()
        for conn, pending in list(backlog.items()):
            if conn not in tcp.connections():
                del backlog[conn]
                continue
            pending += tcp.recv(conn, 1 << 20)
            if pending:
                del pending[:tcp.send(conn, bytes(pending), kernel.now())]
            if tcp.eof(conn) and not pending and tcp.info(conn)["state"] == "CLOSE-WAIT":
                tcp.close(conn, kernel.now())
        kernel.flush()
        return client.poll() is not None

    _until(kernel, echo)
    out, err = client.communicate()
    assert out.strip() == "ok", err
    if kernel.loss:
        assert tcp.counters["retransmitted_segments"] > 0


def test_capnet_client_downloads_from_a_kernel_server(kernel):
    """Our active open to the kernel, window scaling and SACK negotiated, 2 MB intact."""
    server = kernel.run_in_ns(f"""
import random, socket
data = random.Random(6).randbytes({SIZE})
listener = socket.create_server(("{KERNEL}", 9000))
print("ready", flush=True)
conn, _ = listener.accept()
conn.sendall(data)
conn.close()
""")
    assert server.stdout.readline().strip() == "ready"
    tcp = kernel.tcp
    conn = tcp.connect((US, 0), (KERNEL, 9000), kernel.now())
    got = bytearray()
    closed = []

    def download() -> bool:
        closed.extend(e for e in tcp.events() if isinstance(e, PeerClosed))
        got.extend(tcp.recv(conn, 1 << 22))
        return bool(closed) and tcp.eof(conn)

    _until(kernel, download)
    info = tcp.info(conn)
    assert bytes(got) == random.Random(6).randbytes(SIZE)
    assert info["sack"] and info["timestamps"] and info["snd_wscale"] > 0
    tcp.close(conn, kernel.now())
    _until(kernel, lambda: conn not in tcp.connections())        # LAST-ACK answered
    assert server.wait(10) == 0


def test_capnet_abort_resets_the_kernel_socket(kernel):
    """RFC 9293 3.10.4: our ABORT's RST makes the kernel's recv fail with ECONNRESET."""
    client = kernel.run_in_ns(f"""
import socket
s = socket.create_connection(("{US}", 7), timeout=30)
s.sendall(b"hello")
try:
    print("eof" if s.recv(100) == b"" else "data")
except ConnectionResetError:
    print("reset")
""")
    tcp = kernel.tcp
    tcp.listen((None, 7))
    accepted = []

    def got_hello() -> bool:
        accepted.extend(e.conn for e in tcp.events() if isinstance(e, Accepted))
        return bool(accepted) and tcp.info(accepted[0])["recv_buffered"] == 5

    _until(kernel, got_hello)
    kernel.loss = 0.0                     # a RST is never retransmitted: let this one through
    tcp.abort(accepted[0], kernel.now())
    kernel.flush()
    _until(kernel, lambda: client.poll() is not None)
    assert client.communicate()[0].strip() == "reset"
