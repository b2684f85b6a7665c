"""filter:Firewall in whole systems under ``capnet run``: replay -> filter -> capture, checked
against tcpdump and the reference evaluator; rejects read by tshark; reloads and set changes
while traffic flows; bad configurations refused before anything starts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from filter.reference import Reference
from filter.rules import parse
from harness.control import request
from tests.capnet_run import ROOT, capnet, run_system, start, wait_for, write_system

IMIX = ROOT / "examples" / "imix.pcap"
FRAMES = [bytes(b) for _, b in dpkt.pcap.Reader(open(IMIX, "rb"))]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI")
        pytest.skip(f"{name} not installed")
    return path


def _system(fw_config: str, devices: str = "", replay: str = "", reject: bool = False,
            capture: Path = IMIX, fw_perms: str = "r") -> str:
    text = f"""
    [system]
    name = "fwtest"

    [regions.frames]
    size = "4 MiB"

    [components.nic]
    program = "drivers.pcap:Replay"
    priority = 200
    config = {{ {replay} }}
    maps = [{{ region = "frames", perms = "rw" }}]
    devices = [{{ kind = "file", path = "{capture}", mode = "r" }}]

    [components.fw]
    program = "filter:Firewall"
    priority = 150
    config = {{ {fw_config} }}
    maps = [{{ region = "frames", perms = "{fw_perms}" }}{', { region = "replies", perms = "rw" }' if reject else ''}]
    devices = [{devices}]

    [components.out]
    program = "drivers.pcap:Capture"
    priority = 100
    maps = [{{ region = "frames", perms = "r" }}]
    devices = [{{ kind = "file", path = "out.pcap", mode = "w" }}]

    [[queues]]
    name = "ingress"
    producer = "nic"
    consumer = "fw"
    data = "frames"
    capacity = 512

    [[queues]]
    name = "egress"
    producer = "fw"
    consumer = "out"
    data = "frames"
    capacity = 512
    """
    if reject:
        text += """
    [regions.replies]
    size = "1 MiB"

    [components.rej]
    program = "drivers.pcap:Capture"
    priority = 90
    maps = [{ region = "replies", perms = "r" }]
    devices = [{ kind = "file", path = "rej.pcap", mode = "w" }]

    [[queues]]
    name = "replies"
    producer = "fw"
    consumer = "rej"
    data = "replies"
    capacity = 256
    """
    return text


def _frames(path: Path) -> list[bytes]:
    return [bytes(b) for _, b in dpkt.pcap.Reader(open(path, "rb"))]


def _balanced(summary: dict) -> None:
    cons = summary["conservation"]
    assert cons["balanced"], cons
    fw = cons["components"]["fw"]
    assert fw["in"] == fw["out"] + sum(fw["dropped"].values()) + fw["pending"]


def test_pcap_filter_stage_passes_what_tcpdump_passes(tmp_path):
    tcpdump = _tool("tcpdump")
    expr = "tcp port 443 or (udp and not port 9000) or icmp6"
    proc, summary = run_system(tmp_path, _system(f'filter = "{expr}"'))
    assert proc.returncode == 0, proc.stderr
    want = tmp_path / "want.pcap"
    subprocess.run([tcpdump, "-r", str(IMIX), "-w", str(want), expr], check=True,
                   capture_output=True)
    got = _frames(tmp_path / "out.pcap")
    assert got == _frames(want) and len(got) > 1000
    _balanced(summary)
    assert summary["conservation"]["components"]["fw"]["dropped"] == \
        {"policy": len(FRAMES) - len(got)}


RULES = """\
set blocked { type ipv4_addr; elements = { 198.51.100.0/24 } }
chain input {
  policy drop
  ip saddr @blocked counter drop
  ip daddr . tcp dport { 203.0.113.175 . 5001, 203.0.113.192 . 50000 } accept
  tcp dport vmap { 443 : accept, 993 : jump mail, 8443 : drop }
  udp dport 40000-60000 accept
  ip6 saddr 2001:db8::/32 meta l4proto tcp accept
}
chain mail {
  ip saddr 203.0.113.0/24 accept
}
"""


def test_rule_file_stage_matches_the_reference_evaluator(tmp_path):
    (tmp_path / "fw.rules").write_text(RULES)
    proc, summary = run_system(tmp_path, _system(
        'rules = "fw.rules"', '{ kind = "file", path = "fw.rules", mode = "r" }'))
    assert proc.returncode == 0, proc.stderr
    ref = Reference(parse(RULES))
    decisions = [ref.decide(f, "ingress") for f in FRAMES]
    want = [f for f, d in zip(FRAMES, decisions, strict=True) if d.verdict == "accept"]
    assert _frames(tmp_path / "out.pcap") == want
    _balanced(summary)
    dropped = summary["conservation"]["components"]["fw"]["dropped"]
    expect: dict = {}
    for d in decisions:
        if d.verdict != "accept":
            key = f"rule:{d.line}" if d.line else "policy"
            expect[key] = expect.get(key, 0) + 1
    assert dropped == expect and "rule:4" in dropped and "rule:6" in dropped
    fw = summary["components"]["fw"]["stats"]
    assert fw["extra"]["counters"]["4"][0] == expect["rule:4"]


def test_rejects_go_back_as_tcp_resets_and_icmp_unreachables(tmp_path):
    tshark = _tool("tshark")
    rules = "chain input {\n  policy accept\n  tcp dport 5201 reject\n  udp dport 9000 reject\n}\n"
    (tmp_path / "fw.rules").write_text(rules)
    proc, summary = run_system(tmp_path, _system(
        'rules = "fw.rules", reject = "replies"',
        '{ kind = "file", path = "fw.rules", mode = "r" }', reject=True))
    assert proc.returncode == 0, proc.stderr
    _balanced(summary)
    fw = summary["conservation"]["components"]["fw"]
    rejected = fw["dropped"]["rule:3"] + fw["dropped"]["rule:4"]
    assert fw["created"] == rejected > 0
    out = subprocess.run(
        [tshark, "-r", str(tmp_path / "rej.pcap"), "-o", "tcp.check_checksum:TRUE",
         "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=,", "-E", "aggregator=;",
         "-e", "tcp.srcport", "-e", "tcp.flags.reset", "-e", "tcp.checksum.status",
         "-e", "icmp.type", "-e", "icmp.code", "-e", "icmp.checksum.status",
         "-e", "icmpv6.type", "-e", "icmpv6.code", "-e", "icmpv6.checksum.status",
         "-e", "ip.checksum.status", "-e", "udp.dstport"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == rejected
    resets = [x for x in out if x.startswith("5201,")]
    unreach = [x for x in out if not x.startswith("5201,")]
    assert resets and unreach
    for line in resets:
        port, rst, status = line.split(",")[:3]
        assert rst in ("1", "True") and status in ("2", "Good") or status == "1", line
    for line in unreach:
        f = line.split(",")
        kind = (f[3], f[4]) if f[3] else (f[6], f[7])
        assert kind in (("3", "3"), ("1", "4")), line     # port unreachable, v4 or v6
        assert "1" in (f[5], f[8]), line                  # its checksum is good
        assert f[10].split(";")[-1] == "9000", line       # quoting the rejected datagram


def test_reload_and_set_changes_while_traffic_flows(tmp_path):
    (tmp_path / "fw.rules").write_text(
        "set blocked { type ipv4_addr; elements = { 192.0.2.250 } }\n"
        "chain input {\n  policy accept\n  ip saddr @blocked drop\n}\n")
    new_rules = tmp_path / "new.rules"
    new_rules.write_text("set blocked { type ipv4_addr }\n"
                         "chain input {\n  policy accept\n  ip saddr @blocked drop\n"
                         "  meta l4proto udp counter drop\n}\n")
    broken = tmp_path / "broken.rules"
    broken.write_text("chain input {\n  policy accept\n  udp dport 99999 drop\n}\n")
    system = write_system(tmp_path / "system.toml", _system(
        'rules = "fw.rules"', '{ kind = "file", path = "fw.rules", mode = "r" }',
        'mode = "pps", pps = 20000, loop = 1000, duration = 20'))
    ctl = str(tmp_path / "ctl" / "fw.sock")
    stats = tmp_path / "stats.json"
    proc = start("run", str(system), "--control", ctl, "--stats-json", str(stats))
    try:
        wait_for(lambda: os.path.exists(ctl), 30, "the control socket")

        def filter_cli(*args):
            return subprocess.run([sys.executable, "-m", "harness.cli", "filter", *args,
                                   "--control", ctl], cwd=ROOT, capture_output=True, text=True)

        def call(msg):
            reply = request(ctl, {"op": "call", "component": "fw", "msg": msg})
            return reply["ok"]

        def show():
            return call({"op": "rules"})
        wait_for(lambda: show()["policy_hits"] > 2000, 30, "traffic through the firewall")
        bad = filter_cli("load", str(broken))
        assert bad.returncode == 2 and "broken.rules:3:13: error:" in bad.stderr
        assert "^" in bad.stderr
        refused = call({"op": "load", "text": "chain x { policy maybe }"})
        assert not refused["ok"] and "policy is 'accept' or 'drop'" in refused["error"]
        assert show()["rules"][0]["rule"] == "ip saddr @blocked drop"     # old rules kept
        ok = filter_cli("load", str(new_rules))
        assert ok.returncode == 0, ok.stderr
        wait_for(lambda: show()["rules"][1]["hits"] > 100, 30, "udp dropped by the new rules")
        added = filter_cli("set", "add", "blocked", "203.0.113.0/24, 192.0.2.35")
        assert added.returncode == 0 and "2 changed" in added.stdout, added.stderr
        wait_for(lambda: show()["rules"][0]["hits"] > 100, 30, "the set change in force")
        assert show()["sets"] == {"blocked": 2}
        gone = call({"op": "set", "action": "delete", "set": "blocked",
                     "elements": "192.0.2.35"})
        assert gone["ok"] and gone["changed"] == 1 and gone["size"] == 1
        unknown = call({"op": "set", "action": "add", "set": "nosuch", "elements": "10.0.0.1"})
        assert not unknown["ok"] and "no set or map named 'nosuch'" in unknown["error"]
    finally:
        try:
            proc.wait(timeout=120)              # the replay ends by itself (duration)
        except subprocess.TimeoutExpired:
            proc.terminate()
            raise
    output = proc.stdout.read() + proc.stderr.read()
    assert proc.returncode == 0, output
    summary = json.loads(stats.read_text())
    assert summary["conservation"]["balanced"], output
    fw = summary["conservation"]["components"]["fw"]
    nic = summary["conservation"]["components"]["nic"]
    assert fw["in"] == nic["out"] > 20000                 # every frame accounted for
    assert fw["dropped"]["rule:5"] > 0 and fw["dropped"]["rule:4"] > 0
    extra = summary["components"]["fw"]["stats"]["extra"]
    assert extra["counters"]["5"][0] == fw["dropped"]["rule:5"]


def test_broken_rule_file_stops_the_system_before_it_starts(tmp_path):
    (tmp_path / "fw.rules").write_text("chain input {\n  policy drop\n  tcp dport 22 acept\n}\n")
    system = write_system(tmp_path / "system.toml", _system(
        'rules = "fw.rules"', '{ kind = "file", path = "fw.rules", mode = "r" }'))
    for command in ("check", "run"):
        r = capnet(command, str(system))
        assert r.returncode == 2, r.stdout + r.stderr
        text = r.stdout + r.stderr
        flat = " ".join(text.split())            # the harness wraps long lines
        assert "fw.rules:3:16: error: unknown word 'acept': did you mean 'accept'?" in flat
        assert "tcp dport 22 acept" in text and "^" in text
    assert not (tmp_path / "out.pcap").exists()
    bad_expr = write_system(tmp_path / "expr.toml", _system('filter = "tcp and and udp"'))
    r = capnet("check", str(bad_expr))
    assert r.returncode == 2 and "filter:1:" in r.stdout + r.stderr
    missing = write_system(tmp_path / "missing.toml", _system('rules = "fw.rules"'))
    r = capnet("check", str(missing))
    assert r.returncode == 2 and "must also be a file device" in " ".join(r.stderr.split())


def test_snat_round_trip_through_connection_tracking(tmp_path):
    tshark = _tool("tshark")
    from scapy.all import IP, TCP, UDP, Ether, wrpcap
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    inside, server, public = "10.0.0.5", "192.0.2.10", "198.51.100.1"
    flow = [
        eth / IP(src=inside, dst=server) / TCP(sport=40000, dport=80, flags="S", seq=100),
        eth / IP(src=server, dst=public) / TCP(sport=80, dport=40000, flags="SA", seq=500,
                                               ack=101),
        eth / IP(src=inside, dst=server) / TCP(sport=40000, dport=80, flags="A", seq=101,
                                               ack=501),
        eth / IP(src=inside, dst=server) / TCP(sport=40000, dport=80, flags="PA", seq=101,
                                               ack=501) / b"GET / HTTP/1.0\r\n\r\n",
        eth / IP(src=server, dst=public) / TCP(sport=80, dport=40000, flags="R", seq=501),
        eth / IP(src=inside, dst=server) / UDP(sport=5353, dport=53) / b"query",
        eth / IP(src=server, dst=public) / TCP(sport=80, dport=40000, flags="R", seq=99999),
        eth / IP(src="203.0.113.9", dst=public) / TCP(sport=1, dport=40000, flags="SA"),
    ]
    wrpcap(str(tmp_path / "flow.pcap"), flow)
    (tmp_path / "nat.rules").write_text(
        "chain fwd {\n  policy drop\n  ct state established,related accept\n"
        "  ip saddr 10.0.0.0/8 ct state new snat to 198.51.100.1 accept\n}\n")
    proc, summary = run_system(tmp_path, _system(
        'rules = "nat.rules"', '{ kind = "file", path = "nat.rules", mode = "r" }',
        capture=tmp_path / "flow.pcap", fw_perms="rw"))
    assert proc.returncode == 0, proc.stderr
    _balanced(summary)
    out = subprocess.run(
        [tshark, "-r", str(tmp_path / "out.pcap"), "-o", "tcp.check_checksum:TRUE",
         "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-T", "fields",
         "-E", "separator=,", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport",
         "-e", "tcp.dstport", "-e", "ip.checksum.status", "-e", "tcp.checksum.status",
         "-e", "udp.checksum.status"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [line.split(",") for line in out]
    # the out-of-window RST and the out-of-the-blue SYN-ACK (last two) are invalid: dropped
    assert [r[:2] for r in rows] == [[public, server], [server, inside], [public, server],
                                     [public, server], [server, inside], [public, server]]
    assert rows[1][3] == "40000" and rows[0][2] == rows[2][2]   # the same mapped port
    for r in rows:
        assert r[4] == "1" and "1" in (r[5], r[6]), r           # checksums good after NAT
    fw = summary["components"]["fw"]["stats"]["extra"]
    assert fw["conntrack"]["translated"] == 6


def test_ipv6_snat_round_trip_and_family_of_nat_rules(tmp_path):
    tshark = _tool("tshark")
    from scapy.all import IP, TCP, Ether, IPv6, wrpcap
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    inside, server, public = "fd00::5", "2001:db8::10", "2001:db8:ff::1"
    flow = [
        eth / IPv6(src=inside, dst=server) / TCP(sport=40000, dport=80, flags="S", seq=100),
        eth / IPv6(src=server, dst=public) / TCP(sport=80, dport=20000, flags="SA", seq=500,
                                                 ack=101),
        eth / IPv6(src=inside, dst=server) / TCP(sport=40000, dport=80, flags="A", seq=101,
                                                 ack=501),
        eth / IP(src="10.0.0.5", dst="192.0.2.10") / TCP(sport=40001, dport=80, flags="S"),
    ]
    wrpcap(str(tmp_path / "flow6.pcap"), flow)
    # the snat rule holds for IPv6 only (its address's family): the IPv4 SYN passes untouched
    (tmp_path / "nat6.rules").write_text(
        "chain fwd {\n  policy drop\n  ct state established,related accept\n"
        "  ct state new snat to [2001:db8:ff::1]:20000-20000 accept\n"
        "  ip saddr 10.0.0.0/8 accept\n}\n")
    proc, summary = run_system(tmp_path, _system(
        'rules = "nat6.rules"', '{ kind = "file", path = "nat6.rules", mode = "r" }',
        capture=tmp_path / "flow6.pcap", fw_perms="rw"))
    assert proc.returncode == 0, proc.stderr
    _balanced(summary)
    out = subprocess.run(
        [tshark, "-r", str(tmp_path / "out.pcap"), "-o", "tcp.check_checksum:TRUE",
         "-T", "fields", "-E", "separator=,", "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "ip.src",
         "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.checksum.status"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [line.split(",") for line in out]
    assert rows == [[public, server, "", "20000", "80", "1"],
                    [server, inside, "", "80", "40000", "1"],
                    [public, server, "", "20000", "80", "1"],
                    ["", "", "10.0.0.5", "40001", "80", "1"]], rows
    fw = summary["components"]["fw"]["stats"]["extra"]
    assert fw["conntrack"]["translated"] == 3


def test_masquerade_ip6_needs_an_ipv6_masquerade_address(tmp_path):
    (tmp_path / "m.rules").write_text("chain fwd {\n  policy accept\n  masquerade ip6 accept\n}\n")
    dev = '{ kind = "file", path = "m.rules", mode = "r" }'
    for extra, words in (("", "masquerade needs the config key masquerade_address6"),
                         (', masquerade_address6 = "192.0.2.1"', "is not an IPv6 address")):
        system = write_system(tmp_path / "system.toml", _system(f'rules = "m.rules"{extra}', dev))
        r = capnet("check", str(system))
        assert r.returncode == 2, r.stdout + r.stderr
        assert words in " ".join((r.stdout + r.stderr).split())
    good = write_system(tmp_path / "good.toml", _system(
        'rules = "m.rules", masquerade_address6 = "2001:db8::1"', dev))
    r = capnet("check", str(good))
    assert r.returncode == 0, r.stdout + r.stderr


def _replay_and_tcpdump(tmp_path, capture: Path, rules: str, expression: str):
    """(frames ``capnet replay --rules`` passes, frames tcpdump's ``expression`` passes)."""
    tcpdump = _tool("tcpdump")
    (tmp_path / "r.rules").write_text(rules)
    out, want = tmp_path / f"{capture.stem}-out.pcap", tmp_path / f"{capture.stem}-want.pcap"
    proc = capnet("replay", str(capture), "--rules", str(tmp_path / "r.rules"), "-w", str(out),
                  "--topspeed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    subprocess.run([tcpdump, "-r", str(capture), "-w", str(want), expression],
                   capture_output=True, check=True)
    return _frames(out), _frames(want)


def test_vlan_and_linux_cooked_captures_filtered_as_tcpdump_filters_them(tmp_path):
    from scapy.all import IP, TCP, UDP, CookedLinux, Dot1Q, Ether, wrpcap
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    packets = []
    for i in range(120):
        src = f"10.{1 + i % 2}.0.{i}"
        l4 = TCP(sport=1000 + i, dport=(80, 443, 8080)[i // 3 % 3]) if i % 5 else UDP(dport=80)
        packets.append((src, l4, (None, 10, 20)[i % 3]))
    tagged = [eth / Dot1Q(vlan=v) / IP(src=s, dst="192.0.2.1") / l4 if v else
              eth / IP(src=s, dst="192.0.2.1") / l4 for s, l4, v in packets]
    wrpcap(str(tmp_path / "vlan.pcap"), tagged)
    got, want = _replay_and_tcpdump(
        tmp_path, tmp_path / "vlan.pcap",
        "chain c {\n  policy drop\n  vlan id 10 ip saddr 10.1.0.0/16 tcp dport 80 accept\n}\n",
        "vlan 10 and src net 10.1.0.0/16 and tcp dst port 80")
    assert got == want and len(want) >= 3
    cooked = [CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02" * 6 + b"\0\0",
                          proto=0x0800) / IP(src=s, dst="192.0.2.1") / l4 for s, l4, _ in packets]
    wrpcap(str(tmp_path / "sll.pcap"), cooked)
    got, want = _replay_and_tcpdump(
        tmp_path, tmp_path / "sll.pcap",
        "chain c {\n  policy drop\n  ip saddr 10.1.0.0/16 tcp dport { 80, 8080 } accept\n}\n",
        "src net 10.1.0.0/16 and (tcp dst port 80 or tcp dst port 8080)")
    assert got == want and len(want) >= 6


def test_dnat_data_map_forwards_by_port_and_drops_keys_not_in_the_map(tmp_path):
    tshark = _tool("tshark")
    from scapy.all import IP, TCP, Ether, wrpcap
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    client, public = "203.0.113.7", "198.51.100.1"
    flow = [
        eth / IP(src=client, dst=public) / TCP(sport=41000, dport=80, flags="S", seq=1),
        eth / IP(src=client, dst=public) / TCP(sport=41001, dport=2222, flags="S", seq=1),
        eth / IP(src=client, dst=public) / TCP(sport=41002, dport=9999, flags="S", seq=1),
        eth / IP(src="10.0.0.22", dst=client) / TCP(sport=22, dport=41001, flags="SA", seq=9,
                                                    ack=2),
    ]
    wrpcap(str(tmp_path / "fwd.pcap"), flow)
    (tmp_path / "fwd.rules").write_text(
        "chain fwd {\n  policy drop\n  ct state established,related accept\n"
        "  ct state new dnat to tcp dport map { 80 : 10.0.0.80, 2222 : 10.0.0.22:22 } accept\n"
        "}\n")
    proc, summary = run_system(tmp_path, _system(
        'rules = "fwd.rules"', '{ kind = "file", path = "fwd.rules", mode = "r" }',
        capture=tmp_path / "fwd.pcap", fw_perms="rw"))
    assert proc.returncode == 0, proc.stderr
    _balanced(summary)
    out = subprocess.run(
        [tshark, "-r", str(tmp_path / "out.pcap"), "-o", "tcp.check_checksum:TRUE",
         "-o", "ip.check_checksum:TRUE", "-T", "fields", "-E", "separator=,", "-e", "ip.src",
         "-e", "ip.dst", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "ip.checksum.status",
         "-e", "tcp.checksum.status"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    assert [line.split(",") for line in out] == [
        [client, "10.0.0.80", "41000", "80", "1", "1"],
        [client, "10.0.0.22", "41001", "22", "1", "1"],        # port 9999: not in the map
        [public, client, "2222", "41001", "1", "1"]]           # the reply, translated back
    fw = summary["components"]["fw"]["stats"]
    assert summary["conservation"]["components"]["fw"]["dropped"] == {"policy": 1}, fw


def test_kernel_nftables_accepts_what_the_classifier_accepts(tmp_path):
    """The bench's kernel comparison: the same generated ACLs as nftables rules on a veth's
    ingress hook (tcpreplay feeding it, in a namespace of the test's own) accept exactly the
    frames the compiled classifier accepts."""
    for name in ("ip", "nft", "tcpreplay"):
        _tool(name)
    from bench.filter import acl, classifier_rate, nftables_rate
    for seed in (1, 7):
        text, _, _ = acl(100, seed=seed, frames=FRAMES)
        _, accepted, _, _ = classifier_rate(text, FRAMES, 1024, repeat=1)
        kernel = nftables_rate(text, IMIX, 1, tmp_path)
        assert kernel.get("sent") == len(FRAMES), kernel
        assert kernel["accepted"] == accepted and 0 < accepted < len(FRAMES), (seed, kernel)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"capnet-nft-{os.getpid()}-" not in left
