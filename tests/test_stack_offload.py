"""The TAP's offloads (virtio-net header, checksum and segmentation offload) against the real
Linux kernel: the stack of examples/tap-http.toml with ``offload = true`` on its TAP and 64 KiB
buffers, in a namespace the test creates; plus the checksum completion against scapy and the
description's check of the key."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from bench.stack import tap_description
from drivers.tap import complete_checksum
from harness.control import request
from netstack.apps.pattern import pattern_sha256
from netstack.wire.checksum import NUMPY_FROM, ones_sum
from tests.capnet_run import ROOT, STACK_ADDRESS, capnet, serving_stack

US = STACK_ADDRESS
BULK = 12 << 20

SENDER = r'''
import hashlib, socket, sys
n = int(sys.argv[2])
conn = socket.create_connection((sys.argv[1], 5001), timeout=60)
index = 0
while n > 0:
    block = hashlib.shake_128(b"capnet-bytes" + index.to_bytes(8, "big")).digest(65536)
    conn.sendall(block[:n])
    n -= 65536
    index += 1
conn.shutdown(socket.SHUT_WR)
answer = b""
while part := conn.recv(4096):
    answer += part
print(answer.decode().strip())
'''


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    apps = 'stack.apps=["udp-echo:7", "tcp-echo:9", "http:80", "bulk-recv:5001"]'
    with serving_stack(tmp_path_factory.mktemp("offload"), "cnof",
                       lambda ns: tap_description(ns, offload=True), "--set", apps) as running:
        yield running


def _nic_counters(control: str) -> dict:
    return request(control, {"op": "stats"})["ok"]["components"]["nic"]["stats"]["counters"]


def test_kernel_bulk_arrives_intact_in_offloaded_segments(system):
    ns, control = system
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SENDER, US,
                           str(BULK)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{BULK} {pattern_sha256(BULK)}"
    counters = _nic_counters(control)
    # the kernel handed over segments larger than one MTU, with checksums left to complete
    assert counters.get("offload.gso_frames", 0) > 0, counters
    assert counters.get("offload.csum_completed", 0) > 0, counters
    assert counters.get("dropped.rx_malformed", 0) == 0


def test_kernel_downloads_our_offloaded_segments_intact(system):
    ns, _control = system
    size = 3_000_000
    done = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", "60",
                           f"http://{US}/bytes/{size}"], capture_output=True, timeout=90)
    assert done.returncode == 0
    assert hashlib.sha256(done.stdout).hexdigest() == pattern_sha256(size)
    # the stack sent segments of several MSS, which the kernel cut (TSO)
    assert _nic_counters(system[1]).get("offload.gso_sent", 0) > 0


def test_udp_echo_and_ping_through_the_virtio_header(system):
    ns, _control = system
    ping = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                           "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                           "s.settimeout(2); s.sendto(b'over-vnet', ('10.77.0.2', 7));"
                           "print(s.recvfrom(100)[0].decode())"],
                          capture_output=True, text=True, timeout=30)
    assert ping.stdout.strip() == "over-vnet", ping.stderr


@pytest.mark.parametrize("payload", [b"", b"x", b"odd-length!", bytes(range(256)) * 7])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_partial_checksum_completed_as_the_kernel_would(payload, proto):
    """VIRTIO_NET_HDR_F_NEEDS_CSUM: the field holds the pseudo-header sum; completing it over
    csum_start.. gives the checksum scapy computes for the whole segment."""
    l4 = TCP(sport=1234, dport=80, seq=7, flags="PA") if proto == "tcp" else UDP(sport=5, dport=7)
    packet = Ether() / IP(src="10.77.0.1", dst="10.77.0.2") / l4 / payload
    wire = bytearray(bytes(packet))
    expected = Ether(bytes(wire))[TCP if proto == "tcp" else UDP].chksum
    start, where = 14 + 20, 16 if proto == "tcp" else 6
    length = len(wire) - start
    pseudo = (0x0A4D + 0x0001 + 0x0A4D + 0x0002 + (6 if proto == "tcp" else 17) + length)
    pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    wire[start + where:start + where + 2] = pseudo.to_bytes(2, "big")
    assert complete_checksum(memoryview(wire), start, where)
    assert int.from_bytes(wire[start + where:start + where + 2], "big") == expected


def test_partial_checksum_outside_the_frame_is_refused():
    frame = bytearray(60)
    assert not complete_checksum(memoryview(frame), 50, 16)
    assert not complete_checksum(memoryview(frame), 70, 0)
    assert frame == bytearray(60)


def test_offload_on_a_non_tap_device_is_a_clear_error(tmp_path):
    text = tap_description("capnet", offload=True).replace('kind = "tap"', 'kind = "tun"')
    text = text.replace('config = { netns = "capnet" }', "config = {}")
    path = tmp_path / "bad.toml"
    path.write_text(text)
    done = capnet("check", str(path), cwd=ROOT)
    assert done.returncode == 2
    assert "offload" in done.stdout + done.stderr


def _rfc1071_words(data: bytes, initial: int) -> int:
    """RFC 1071 section 4.1's loop: 16-bit words added with end-around carry."""
    padded = data + b"\0" * (len(data) & 1)
    total = initial
    for i in range(0, len(padded), 2):
        total += padded[i] << 8 | padded[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=NUMPY_FROM - 9, max_size=NUMPY_FROM + 70_000),
       st.integers(0, 0xFFFF), st.integers(0, 7))
def test_wide_ones_sum_matches_the_rfc_1071_loop(data, initial, skip):
    """The numpy path (64 KiB segments) agrees with the word loop, at any alignment."""
    view = memoryview(data)[skip:]
    expected = _rfc1071_words(bytes(view), initial)
    got = ones_sum(view, initial)
    assert got % 0xFFFF == expected % 0xFFFF and (got == 0) == (expected == 0)
