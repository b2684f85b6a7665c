"""Capture builder and tcpdump oracle for the pcap-filter expression tests.

`ethernet_frames()` builds a varied Ethernet corpus with scapy (IPv4/IPv6 TCP/UDP/ICMP/
ICMPv6/SCTP/IGMP, ARP/RARP, VLAN and QinQ, MPLS, fragments, IPv6 extension headers,
broadcast/multicast, LLC, truncated frames and junk); `raw_frames` and `sll_frames` carry the
same traffic as LINKTYPE_RAW and LINKTYPE_LINUX_SLL. `tcpdump_matches` runs the real tcpdump
on a capture and returns the indices of the frames it accepts.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess

from scapy.contrib.mpls import MPLS
from scapy.layers.igmp import IGMP
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, LLC, STP, Dot1AD, Dot1Q, Dot3, Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
BCAST = "ff:ff:ff:ff:ff:ff"
V4 = ["10.0.0.1", "10.0.0.2", "192.168.1.10", "172.16.5.4", "10.1.2.3", "8.8.8.8"]
V6 = ["2001:db8::1", "2001:db8::2", "fe80::1", "2001:db8:1::53", "fe80::d6ca:6dff:fe66:cf60"]
PORTS = [80, 443, 22, 53, 123, 8080, 25, 5353, 67, 68, 1024, 65535]


def _l4(rng: random.Random, v6: bool):
    kind = rng.choice(["tcp", "tcp", "udp", "icmp", "sctp"])
    sport, dport = rng.choice(PORTS), rng.choice(PORTS)
    if kind == "tcp":
        return TCP(sport=sport, dport=dport, flags=rng.choice(["S", "SA", "A", "PA", "R", "FA"]))
    if kind == "udp":
        return UDP(sport=sport, dport=dport) / (b"x" * rng.randint(0, 20))
    if kind == "sctp":
        return SCTP(sport=sport, dport=dport) / SCTPChunkInit()
    if v6:
        return rng.choice([ICMPv6EchoRequest(), ICMPv6EchoReply()])
    return ICMP(type=rng.choice([0, 3, 8, 11]))


def _ip(rng: random.Random):
    if rng.random() < 0.35:
        return IPv6(src=rng.choice(V6), dst=rng.choice(V6 + ["ff02::1"])), True
    return IP(src=rng.choice(V4), dst=rng.choice(V4 + ["224.0.0.251", "255.255.255.255"])), False


def _fixed_frames() -> list[bytes]:
    e = Ether(src=MAC_A, dst=MAC_B)
    frames = [
        e / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags="S"),
        e / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=1234, flags="SA"),
        e / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00") / TCP(dport=80),
        e / IP(src="192.168.1.10", dst="8.8.8.8") / UDP(sport=5353, dport=53) / b"q",
        e / IP(src="8.8.8.8", dst="192.168.1.10") / UDP(sport=53, dport=5353) / b"a",
        e / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8),
        e / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=0),
        e / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=3, code=3),
        Ether(src=MAC_A, dst="01:00:5e:00:00:16") / IP(src="10.0.0.1", dst="224.0.0.22")
        / IGMP(type=0x16, gaddr="224.0.0.251"),
        e / IP(src="10.0.0.1", dst="10.0.0.2") / SCTP(sport=5000, dport=80) / SCTPChunkInit(),
        Ether(src=MAC_A, dst=BCAST) / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67) / (b"\x00" * 40),
        Ether(src=MAC_A, dst="01:00:5e:00:00:fb") / IP(src="10.0.0.1", dst="224.0.0.251")
        / UDP(sport=5353, dport=5353),
        # IPv4 fragments: the first carries the TCP header; a later one has offset 185.
        e / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", frag=0, proto=6)
        / TCP(sport=2000, dport=80),
        e / IP(src="10.0.0.1", dst="10.0.0.2", frag=185, proto=6) / (b"\x00\x50\x00\x50" * 8),
        e / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", frag=0, proto=17)
        / UDP(sport=53, dport=53) / (b"z" * 16),
        e / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=40000, dport=443, flags="S"),
        e / IPv6(src="2001:db8::2", dst="2001:db8::1") / UDP(sport=53, dport=40001),
        e / IPv6(src="fe80::1", dst="ff02::1") / ICMPv6EchoRequest(),
        Ether(src=MAC_A, dst="33:33:ff:00:00:02") / IPv6(src="fe80::1", dst="ff02::1:ff00:2")
        / ICMPv6ND_NS(tgt="fe80::2"),
        e / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / TCP(dport=80),
        e / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(offset=0, m=1)
        / UDP(sport=53, dport=53),
        e / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(nh=58)
        / ICMPv6EchoRequest(),
        e / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrDestOpt() / UDP(dport=53),
        Ether(src=MAC_A, dst=BCAST) / ARP(op=1, psrc="10.0.0.1", pdst="10.0.0.2"),
        e / ARP(op=2, psrc="10.0.0.2", pdst="10.0.0.1", hwsrc=MAC_B, hwdst=MAC_A),
        Ether(src=MAC_A, dst=BCAST, type=0x8035) / ARP(op=3, psrc="10.1.1.10", pdst="10.1.1.100"),
        e / Dot1Q(vlan=5) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=80),
        e / Dot1Q(vlan=100) / IP(src="10.0.0.2", dst="8.8.8.8") / UDP(sport=53, dport=53),
        e / Dot1Q(vlan=8) / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(dport=22),
        e / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=53),
        Ether(src=MAC_A, dst=MAC_B, type=0x9100) / Dot1Q(vlan=30) / IP(src="10.0.0.1") / ICMP(),
        e / Dot1Q(vlan=5) / ARP(op=1, psrc="10.0.0.1", pdst="10.0.0.2"),
        Ether(src=MAC_A, dst=MAC_B, type=0x8847) / MPLS(label=100, s=1)
        / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=80),
        Ether(src=MAC_A, dst=MAC_B, type=0x8847) / MPLS(label=100, s=0) / MPLS(label=200, s=1)
        / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=53),
        Ether(src=MAC_A, dst=MAC_B, type=0x8847) / MPLS(label=300, s=1)
        / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(dport=80),
        Dot3(src=MAC_A, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP(),
        Dot3(src=MAC_A, dst=MAC_B) / LLC(dsap=0x64, ssap=0x64, ctrl=3) / (b"\x00" * 30),
        Dot3(src=MAC_A, dst=MAC_B) / LLC(dsap=0xFE, ssap=0xFE, ctrl=3) / (b"\x00" * 30),
        Ether(src=MAC_A, dst=MAC_B, type=0x9000) / (b"\x00" * 46),
    ]
    out = [bytes(f) for f in frames]
    tcp_syn = out[0]
    out += [
        tcp_syn[:14 + 20 + 2],           # truncated inside the TCP header
        tcp_syn[:14 + 10],               # truncated inside the IPv4 header
        tcp_syn[:13],                    # shorter than an Ethernet header
        bytes(out[15])[:14 + 40 + 1],    # IPv6/TCP cut after one byte of TCP
        bytes(out[15])[:48],             # IPv6 cut inside the destination address
        b"\xff" * 6 + b"\x02" * 6 + b"\x08\x00" + b"\x40" + b"\x00" * 40,  # IHL 0
        b"\x02" * 12 + b"\x08\x00" + b"\x4f" + b"\x00" * 8 + b"\x06" + b"\x00" * 10,  # IHL 15
        bytes(range(64)),                # junk
        b"",                             # empty
    ]
    return out


def ethernet_frames(count: int = 220, seed: int = 7) -> list[bytes]:
    """The fixed frames, then `count` random ones (seeded)."""
    rng = random.Random(seed)
    frames = _fixed_frames()
    for _ in range(count):
        ip, v6 = _ip(rng)
        pkt = ip / _l4(rng, v6)
        dst = BCAST if rng.random() < 0.1 else rng.choice([MAC_A, MAC_B, "01:00:5e:00:00:01"])
        layers = Ether(src=rng.choice([MAC_A, MAC_B]), dst=dst)
        r = rng.random()
        if r < 0.15:
            layers = layers / Dot1Q(vlan=rng.choice([5, 8, 100, 4095]))
        elif r < 0.2:
            layers = layers / MPLS(label=rng.choice([100, 200, 1048575]), s=1)
        frame = bytes(layers / pkt)
        if rng.random() < 0.1:
            frame = frame[: rng.randint(0, len(frame))]
        elif rng.random() < 0.05:
            frame = bytearray(frame)
            for _ in range(rng.randint(1, 4)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            frame = bytes(frame)
        frames.append(frame)
    return frames


def _ip_payload(frame: bytes) -> bytes | None:
    """The IP datagram inside an Ethernet frame (after VLAN/MPLS), or None."""
    pos, etype = 12, None
    while pos + 2 <= len(frame):
        etype = int.from_bytes(frame[pos:pos + 2], "big")
        if etype in (0x8100, 0x88A8, 0x9100):
            pos += 4
            continue
        break
    if etype in (0x0800, 0x86DD):
        return frame[pos + 2:]
    return None


def raw_frames(eth: list[bytes]) -> list[bytes]:
    """LINKTYPE_RAW frames: the IP datagrams of the Ethernet corpus, plus some junk."""
    out = [p for p in (_ip_payload(f) for f in eth) if p is not None]
    return out + [b"", b"\x45", bytes(range(40)), b"\x60" + b"\x00" * 10]


def sll_frames(eth: list[bytes]) -> list[bytes]:
    """LINKTYPE_LINUX_SLL frames: a 16-byte cooked header in place of the Ethernet one."""
    out = []
    for f in eth:
        if len(f) < 14:
            continue
        etype = int.from_bytes(f[12:14], "big")
        if etype in (0x8100, 0x88A8, 0x9100):
            continue
        payload = f[14:]
        proto = etype if etype > 1500 else 4
        pkttype = 1 if f[0:6] == b"\xff" * 6 else (2 if f[0] & 1 else 0)
        out.append(struct.pack(">HHH8sH", pkttype, 1, 6, f[6:12], proto) + payload)
    return out + [b"", b"\x00" * 15, b"\x00\x00\x00\x01\x00\x06" + b"\x00" * 8 + b"\x08\x00"]


def write_pcap(path: str, frames: list[bytes], linktype: int) -> None:
    """A classic pcap; frame i gets timestamp i seconds so tcpdump's output maps back."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", i + 1, 0, len(frame), len(frame)))
            f.write(frame)


def read_pcap(data: bytes) -> list[tuple[int, int, bytes]]:
    """(seconds, fraction, frame) records of a classic pcap (either byte order)."""
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    records, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[pos:pos + 16])
        records.append((sec, frac, data[pos + 16:pos + 16 + incl]))
        pos += 16 + incl
    return records


def tcpdump_path() -> str | None:
    return shutil.which("tcpdump") or (
        "/usr/bin/tcpdump" if os.path.exists("/usr/bin/tcpdump") else None)


def tcpdump_matches(pcap: str, expression: str) -> set[int] | str:
    """Indices (0-based) of the frames tcpdump accepts, or its error text if it refuses."""
    proc = subprocess.run([tcpdump_path(), "-r", pcap, "-w", "-", "--", expression],
                          capture_output=True, timeout=60)
    if proc.returncode != 0:
        return proc.stderr.decode(errors="replace").strip().splitlines()[-1]
    records = read_pcap(proc.stdout)
    source = read_pcap(open(pcap, "rb").read())
    out, j = set(), 0
    for rec in records:
        while source[j] != rec:
            j += 1
        out.add(j)
        j += 1
    return out


def tcpdump_rejects(pcap: str, expression: str) -> str | None:
    """tcpdump -d's error message when libpcap refuses the expression, else None."""
    proc = subprocess.run([tcpdump_path(), "-d", "-r", pcap, "--", expression],
                          capture_output=True, timeout=60)
    if proc.returncode == 0:
        return None
    return proc.stderr.decode(errors="replace").strip().splitlines()[-1]
