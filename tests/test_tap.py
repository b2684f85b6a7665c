"""The TAP driver against the real Linux kernel, in a network namespace the test creates."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from tests.capnet_run import run_system


@pytest.fixture
def netns():
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is required (bash scripts/dev installs it)")
    name = f"capnet-t{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_kernel_answers_arp_and_ping_written_by_the_tap_driver(tmp_path, netns):
    tap = f"cn{os.getpid() % 100000}"
    proc, summary = run_system(tmp_path, f"""
[system]
name = "tap"

[regions.rx]
size = "256 KiB"
[regions.tx]
size = "256 KiB"

[components.nic]
program = "drivers.tap:Tap"
priority = 200
maps = [{{ region = "rx", perms = "rw" }}, {{ region = "tx", perms = "r" }}]
devices = [{{ kind = "tap", name = "{tap}", netns = "{netns}", address = "10.77.9.1/24" }}]

[components.probe]
program = "tests.components:TapProbe"
priority = 100
config = {{ address = "10.77.9.2", peer = "10.77.9.1" }}
maps = [{{ region = "rx", perms = "r" }}, {{ region = "tx", perms = "rw" }}]

[[queues]]
name = "rx"
producer = "nic"
consumer = "probe"
data = "rx"
capacity = 64

[[queues]]
name = "tx"
producer = "probe"
consumer = "nic"
data = "tx"
capacity = 64
""", "--duration", "3")
    assert "[probe] ARP reply: 10.77.9.1 is at" in proc.stdout, proc.stdout + proc.stderr
    assert "[probe] echo reply from 10.77.9.1 id 0x4242 seq 1 payload capnet-probe" \
        in proc.stdout
    nic = summary["components"]["nic"]
    assert nic["faults"] == [] and summary["conservation"]["components"]["nic"]["balanced"]
    # the interface went away with its descriptor
    links = subprocess.run(["ip", "-n", netns, "link"], capture_output=True, text=True).stdout
    assert tap not in links
