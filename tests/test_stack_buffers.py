"""Buffers come back when they are short: the TAP driver and the stack ask for no wake-up when
the other side returns buffers while they hold enough (``want_returns``), and take them back
lazily. Here examples/tap-http.toml runs with 64 buffers each way (a quarter of them the low
water mark), against the real kernel in a namespace the test creates: far more frames than
buffers go each way, in request/response exchanges (one frame at a time) and in bulk. Plus
the TAP's checksum sum against the RFC 1071 loop on both of its paths (int and numpy)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.stack import tap_description
from drivers.tap import ones_sum as tap_ones_sum
from harness.control import request
from netstack.apps.pattern import pattern_sha256
from netstack.wire.checksum import NUMPY_FROM
from tests.capnet_run import ROOT, STACK_ADDRESS, serving_stack

US = STACK_ADDRESS
BUFFERS = 64
EXCHANGES = 600
DOWNLOAD = 3_000_000

ECHO_CLIENT = r'''
import socket, sys
conn = socket.create_connection((sys.argv[1], 9), timeout=30)
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
good = 0
for i in range(int(sys.argv[2])):
    message = b"%063d" % i + b"\n"
    conn.sendall(message)
    got = b""
    while len(got) < len(message):
        got += conn.recv(4096)
    good += got == message
conn.close()
print(good)
'''


def small_pools(ns: str) -> str:
    """tap-http with ``BUFFERS`` 2 KiB buffers in each region and rings of that size."""
    text = tap_description(ns, offload=False)
    for old, new in (('size = "8 MiB"\nbuffer_size = 2048',
                      f'size = "{BUFFERS * 2} KiB"\nbuffer_size = 2048'),
                     ("capacity = 2048", f"capacity = {BUFFERS}")):
        assert text.count(old) == 2, f"examples/tap-http.toml changed: {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    with serving_stack(tmp_path_factory.mktemp("buffers"), "cnbf", small_pools) as running:
        yield running


def _components(control: str) -> dict:
    return request(control, {"op": "stats"})["ok"]["components"]


def test_exchanges_outnumbering_the_buffers_all_get_answers(system):
    """Each exchange takes an RX and a TX buffer; ten times more exchanges than buffers
    succeed, so returned buffers are taken back although no return woke anyone."""
    ns, control = system
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", ECHO_CLIENT, US,
                           str(EXCHANGES)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == EXCHANGES
    stack = _components(control)["stack"]["stats"]
    assert stack["queues"]["tx"]["sent"] >= EXCHANGES


def test_bulk_download_through_small_pools_arrives_intact(system):
    """A download of thousands of frames through 64 TX buffers: the stack runs short, asks
    for the returns, and goes on."""
    ns, control = system
    done = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", "60",
                           f"http://{US}/bytes/{DOWNLOAD}"], capture_output=True, timeout=90)
    assert done.returncode == 0
    assert hashlib.sha256(done.stdout).hexdigest() == pattern_sha256(DOWNLOAD)
    stack = _components(control)["stack"]["stats"]
    assert stack["counters"].get("dropped.tx_full", 0) == 0


def _rfc1071_words(data: bytes) -> int:
    """RFC 1071 section 4.1's loop: 16-bit words added with end-around carry."""
    padded = data + b"\0" * (len(data) & 1)
    total = 0
    for i in range(0, len(padded), 2):
        total += padded[i] << 8 | padded[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.binary(min_size=NUMPY_FROM - 9,
                                                    max_size=NUMPY_FROM + 3000)),
       st.integers(0, 7))
def test_tap_ones_sum_matches_the_rfc_1071_loop(data, skip):
    """Short frames (a big-endian int mod 0xFFFF) and long ones (numpy words) alike."""
    view = memoryview(data)[skip:]
    expected = _rfc1071_words(bytes(view))
    got = tap_ones_sum(view)
    assert got % 0xFFFF == expected % 0xFFFF and (got == 0) == (expected == 0)
