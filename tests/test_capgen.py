"""The traffic generator: valid frames (tcpdump checksums, dpkt parsing), flows, determinism,
proportions, timestamps and the command line."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import struct
import subprocess

import numpy as np
import pytest

from drivers import capgen
from drivers.capture import scan_file

try:
    import dpkt
except ImportError:                     # pip install dpkt (test-only dependency)
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("dpkt not installed", allow_module_level=True)

DOC_NETS = [ipaddress.ip_network(n) for n in
            ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI (apt-get install tcpdump)")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "t.pcap"
    assert capgen.main([str(path), "--count", "4000", "--flows", "60", "--seed", "5"]) == 0
    return path, capgen.generate(4000, 60, "imix", 5)


def frames_of(traffic):
    return [traffic.data[o:o + n].tobytes()
            for o, n in zip(traffic.offsets.tolist(), traffic.lengths.tolist(), strict=True)]


def test_tcpdump_finds_every_checksum_correct(capture):
    path, traffic = capture
    out = subprocess.run([need_tool("tcpdump"), "-r", str(path), "-vv", "-nn"],
                         capture_output=True, text=True, check=True).stdout
    for bad in ("incorrect", "bad cksum", "bad udp cksum", "wrong icmp cksum", "bad icmp6"):
        assert bad not in out
    kinds = traffic.flows.kind[traffic.flow]
    v6 = traffic.flows.ipv6[traffic.flow]
    assert out.count("(correct)") == int((kinds == capgen.TCP).sum())
    assert out.count("[udp sum ok]") == int((kinds == capgen.UDP).sum())
    assert out.count("[icmp6 sum ok]") == int(((kinds == capgen.ICMP) & v6).sum())
    assert out.count("ICMP echo request") == int(((kinds == capgen.ICMP) & ~v6).sum())


def five_tuple(frame: bytes):
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    l4 = ip.data
    proto = ip.p if isinstance(ip, dpkt.ip.IP) else ip.nxt
    family = socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6
    if isinstance(l4, dpkt.icmp.ICMP | dpkt.icmp6.ICMP6):
        ports = (l4.data.id, 0)
    else:
        ports = (l4.sport, l4.dport)
    return (socket.inet_ntop(family, ip.src), socket.inet_ntop(family, ip.dst), proto) + ports


def expected_tuple(flows, i):
    size = 16 if flows.ipv6[i] else 4
    family = socket.AF_INET6 if flows.ipv6[i] else socket.AF_INET
    return (socket.inet_ntop(family, flows.src[i, :size].tobytes()),
            socket.inet_ntop(family, flows.dst[i, :size].tobytes()),
            int(flows.proto()[i]), int(flows.sport[i]), int(flows.dport[i]))


def test_dpkt_parses_every_frame_and_agrees_on_five_tuples(capture):
    path, traffic = capture
    frames = frames_of(traffic)
    result, buf = scan_file(path)
    assert len(result.records) == len(frames)
    for i, (frame, rec) in enumerate(zip(frames, result.records, strict=True)):
        start = int(rec["data_offset"])
        assert bytes(buf[start:start + int(rec["caplen"])]) == frame
        assert five_tuple(frame) == expected_tuple(traffic.flows, int(traffic.flow[i]))
        eth = dpkt.ethernet.Ethernet(frame)
        assert eth.src[0] & 0x03 == 0x02 and eth.dst[0] & 0x03 == 0x02
        for addr in (eth.data.src, eth.data.dst):
            assert any(ipaddress.ip_address(addr) in net for net in DOC_NETS)


def test_tcp_flows_open_with_syn_carry_consistent_sequence_and_close_with_fin(capture):
    _, traffic = capture
    frames = frames_of(traffic)
    by_flow: dict[int, list] = {}
    for frame, flow in zip(frames, traffic.flow.tolist(), strict=True):
        if traffic.flows.kind[flow] == capgen.TCP:
            by_flow.setdefault(flow, []).append(dpkt.ethernet.Ethernet(frame).data.data)
    assert len(by_flow) > 10
    for segments in by_flow.values():
        assert segments[0].flags == dpkt.tcp.TH_SYN
        expected_seq = segments[0].seq + 1
        for seg in segments[1:]:
            assert seg.seq == expected_seq & 0xFFFFFFFF
            assert seg.flags & dpkt.tcp.TH_ACK
            expected_seq += len(seg.data)
        if len(segments) >= 3:
            assert segments[-1].flags == dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK
        middle = segments[1:-1] if len(segments) >= 3 else segments[1:]
        for seg in middle:
            assert not seg.flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN)
            assert bool(seg.flags & dpkt.tcp.TH_PUSH) == bool(seg.data)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    paths = [tmp_path / f"{i}.pcap" for i in range(3)]
    for path, seed in zip(paths, (3, 3, 4), strict=True):
        assert capgen.main([str(path), "--count", "500", "--seed", str(seed)]) == 0
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b and a != c


def test_proportions_of_versions_protocols_sizes_and_popularity():
    traffic = capgen.generate(30_000, 4000, "imix", 11)
    flows = traffic.flows
    assert abs(flows.ipv6.mean() - 0.20) < 0.03
    shares = np.bincount(flows.kind, minlength=3) / flows.kind.size
    assert np.allclose(shares, [0.70, 0.25, 0.05], atol=0.03)
    v4_udp = (flows.kind[traffic.flow] == capgen.UDP) & ~flows.ipv6[traffic.flow]
    sizes = traffic.lengths[v4_udp]
    assert set(np.unique(sizes).tolist()) == {64, 576, 1500}
    assert np.allclose([np.mean(sizes == s) for s in (64, 576, 1500)], [7 / 12, 4 / 12, 1 / 12],
                       atol=0.03)
    per_flow = np.bincount(traffic.flow, minlength=4000)
    assert per_flow[0] > per_flow[10] > per_flow[1000:].mean()
    for mix, size in (("small", 64), ("large", 1500)):
        t = capgen.generate(2000, 50, mix, 1)
        plain = (t.flows.kind[t.flow] == capgen.UDP) & ~t.flows.ipv6[t.flow]
        assert (t.lengths[plain] == size).all()
        assert (t.lengths >= 60).all()


def test_timestamps_increase_at_the_stated_mean_rate():
    traffic = capgen.generate(20_000, 100, "imix", 2, rate=50_000)
    gaps = np.diff(traffic.ts_ns.astype(np.int64))
    assert (gaps > 0).all()
    assert abs(gaps.mean() - 20_000) < 0.03 * 20_000
    assert abs(gaps.std() / gaps.mean() - 1) < 0.05          # exponential: cv == 1


def test_command_line_formats_and_errors(tmp_path, capsys):
    ng, nano = tmp_path / "a.pcapng", tmp_path / "n.pcap"
    assert capgen.main([str(ng), "--count", "50", "--mix", "small"]) == 0
    assert capgen.main([str(nano), "--count", "50", "--nano"]) == 0
    result, _ = scan_file(ng)
    assert result.format == "pcapng" and len(result.records) == 50 and result.nanosecond
    assert struct.unpack_from("<I", nano.read_bytes())[0] == 0xA1B23C4D
    assert capgen.main([str(tmp_path / "x.pcap"), "--flows", "0"]) == 2
    assert capgen.main([str(tmp_path / "x.pcap"), "--mix", "huge"]) == 2
    assert capgen.main([str(tmp_path / "no" / "such" / "x.pcap")]) == 2
    assert "capnet gen" in capsys.readouterr().err
