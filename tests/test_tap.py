"""The TAP and AF_PACKET drivers against the real Linux kernel, in network namespaces (and a
veth pair) the tests create."""

from __future__ import annotations

import os
import subprocess

from tests.capnet_run import run_system

SYSTEM = """
[system]
name = "nic"

[regions.rx]
size = "256 KiB"
[regions.tx]
size = "256 KiB"

[components.nic]
program = "PROGRAM"
priority = 200
maps = [{ region = "rx", perms = "rw" }, { region = "tx", perms = "r" }]
devices = [DEVICE]

[components.probe]
program = "tests.components:TapProbe"
priority = 100
config = { address = "10.77.9.2", peer = "10.77.9.1" }
maps = [{ region = "rx", perms = "r" }, { region = "tx", perms = "rw" }]

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
"""


def _assert_kernel_answered(proc, summary) -> None:
    assert "[probe] ARP reply: 10.77.9.1 is at" in proc.stdout, proc.stdout + proc.stderr
    assert "[probe] echo reply from 10.77.9.1 id 0x4242 seq 1 payload capnet-probe" \
        in proc.stdout
    nic = summary["components"]["nic"]
    assert nic["faults"] == [] and summary["conservation"]["components"]["nic"]["balanced"]
    # frames crossed the system's edge only at the NIC, and all are accounted for
    cons = summary["conservation"]
    assert cons["in"] >= 1 and cons["out"] >= 2 and cons["balanced"], cons


def test_kernel_answers_arp_and_ping_written_by_the_tap_driver(tmp_path, netns):
    tap = f"cn{os.getpid() % 100000}"
    device = f'{{ kind = "tap", name = "{tap}", netns = "{netns}", address = "10.77.9.1/24" }}'
    proc, summary = run_system(tmp_path, SYSTEM.replace("PROGRAM", "drivers.tap:Tap")
                               .replace("DEVICE", device), "--duration", "3")
    _assert_kernel_answered(proc, summary)
    # the interface went away with its descriptor
    links = subprocess.run(["ip", "-n", netns, "link"], capture_output=True, text=True).stdout
    assert tap not in links


def test_kernel_answers_through_af_packet_on_a_veth_pair(tmp_path, netns):
    def ip(*args):
        subprocess.run(["ip", "-n", netns, *args], check=True)
    ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
    ip("addr", "add", "10.77.9.1/24", "dev", "v1")
    ip("link", "set", "v0", "up")
    ip("link", "set", "v1", "up")
    device = f'{{ kind = "afpacket", name = "v0", netns = "{netns}" }}'
    proc, summary = run_system(tmp_path, SYSTEM.replace("PROGRAM", "drivers.afpacket:AfPacket")
                               .replace("DEVICE", device), "--duration", "3")
    _assert_kernel_answered(proc, summary)


def test_kernel_answers_ping_written_by_the_tun_driver(tmp_path, netns):
    tun = f"cu{os.getpid() % 100000}"
    device = f'{{ kind = "tun", name = "{tun}", netns = "{netns}", address = "10.77.9.1/24" }}'
    system = (SYSTEM.replace("PROGRAM", "drivers.tap:Tun").replace("DEVICE", device)
              .replace('peer = "10.77.9.1" }', 'peer = "10.77.9.1", tun = true }'))
    proc, summary = run_system(tmp_path, system, "--duration", "3")
    assert "[probe] echo reply from 10.77.9.1 id 0x4242 seq 1 payload capnet-probe" \
        in proc.stdout, proc.stdout + proc.stderr
    assert "ARP" not in proc.stdout
    nic = summary["components"]["nic"]
    assert nic["faults"] == [] and summary["conservation"]["components"]["nic"]["balanced"]
    # frames crossed the system's edge only at the NIC, and all are accounted for
    cons = summary["conservation"]
    assert cons["in"] >= 1 and cons["out"] >= 2 and cons["balanced"], cons
