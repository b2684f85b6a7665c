"""Named NAT data maps (``map NAME { type KEY : ipv4_addr . inet_service; ... }`` with
``dnat to KEY map @NAME``): parsed as nftables writes them, bad ones refused with their place,
the reference evaluator and the compiled classifier agreeing through run-time changes, and a
running firewall where ``capnet filter set add`` sends new connections to a new target while
an existing connection keeps its own (checked on the frames that come out, by tshark)."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filter.classify import VERDICTS, Classifier, Limits
from filter.reference import Reference
from filter.rules import Nat, RuleError, add_elements, delete_elements, parse
from harness.control import request
from tests.capnet_run import ROOT, start, wait_for, write_system

RULES = """\
table ip nat {
map fwd { type inet_service : ipv4_addr . inet_service; flags interval
  elements = { 80 : 10.0.0.80 . 8080, 1000-1999 : 10.0.0.9 . 99 } }
map by_src { type ipv4_addr : ipv4_addr; elements = { 192.0.2.0/24 : 198.51.100.7 } }
map v6 { type ipv6_addr . inet_service : ipv6_addr . inet_service
  elements = { 2001:db8::/64 . 53 : fd00::53 . 5353 } }
chain pre {
  policy drop
  ct state new dnat to tcp dport map @fwd accept
  snat ip to ip saddr map @by_src accept
  dnat ip6 to ip6 saddr . udp dport map @v6 accept
  snat to ip6 saddr map @v6a accept
  tcp dport vmap @verdicts
}
map v6a { type ipv6_addr : ipv6_addr; elements = { fd00::/64 : 2001:db8:ff::1 } }
map verdicts { type inet_service : verdict; elements = { 22 : accept, 23 : drop } }
}
"""


def _nats(rs) -> list[Nat]:
    return [s for r in rs.chains["pre"].rules for s in r.statements if isinstance(s, Nat)]


def test_named_data_maps_parse_as_nftables_writes_them():
    rs = parse(RULES, "nat.rules")
    fwd, by_src, v6, v6a = _nats(rs)
    assert [(n.kind, n.family, n.mapref) for n in (fwd, by_src, v6, v6a)] == [
        ("dnat", 4, "fwd"), ("snat", 4, "by_src"), ("dnat", 6, "v6"), ("snat", 6, "v6a")]
    assert rs.sets["fwd"].target == "ipv4_addr . inet_service"
    assert rs.sets["v6a"].target == "ipv6_addr" and rs.sets["verdicts"].target == ""
    ip4 = int(ipaddress.ip_address("10.0.0.80"))
    assert fwd.resolve((80,)) == Nat("dnat", ip4, (8080, 8080), 4)
    assert fwd.resolve((1500,)).address == ip4 - 71 and fwd.resolve((2000,)) is None
    assert by_src.resolve((int(ipaddress.ip_address("192.0.2.9")),)) == \
        Nat("snat", int(ipaddress.ip_address("198.51.100.7")), None, 4)
    key = (int(ipaddress.ip_address("2001:db8::1")), 53)
    assert v6.resolve(key) == Nat("dnat", int(ipaddress.ip_address("fd00::53")),
                                  (5353, 5353), 6)
    # each rule implies its family, the key's protocol and the key in the map
    first = rs.chains["pre"].rules[0].matches
    assert [(m.fields, m.setref) for m in first] == [
        (("meta.l4proto",), None), (("meta.nfproto",), None), (("th.dport",), "fwd")]


def test_nftables_addr_dot_port_spelling_is_accepted_with_a_map():
    text = ("map pm { type inet_service : ipv4_addr . inet_service; elements = { 80 : "
            "10.0.0.1 . 8080 } }\nchain c {\n policy drop\n RULE\n}\n")
    rs = parse(text.replace("RULE", "dnat ip addr . port to tcp dport map @pm"), "a.rules")
    nat = rs.chains["c"].rules[0].statements[0]
    assert nat.resolve((80,)).ports == (8080, 8080)
    with pytest.raises(RuleError) as info:
        parse(text.replace("RULE", "dnat ip addr . port to 10.0.0.1:80"), "a.rules")
    assert str(info.value).startswith("a.rules:4:10: error: 'addr . port' goes with a map")


def test_run_time_changes_are_read_by_the_linked_statement():
    rs = parse(RULES, "nat.rules")
    fwd = _nats(rs)[0]
    assert add_elements(rs, "fwd", "80 : 10.0.0.90 . 9090, 81 : 10.0.0.81 . 81") == 2
    assert add_elements(rs, "fwd", "80 : 10.0.0.90 . 9090") == 0          # nothing new
    assert fwd.resolve((80,)).ports == (9090, 9090)
    assert fwd.resolve((81,)).address == int(ipaddress.ip_address("10.0.0.81"))
    assert delete_elements(rs, "fwd", "80, 1000-1999") == 2
    assert fwd.resolve((80,)) is None and rs.sets["fwd"].elements == [(((81, 81),),)]


BAD = [  # (rule-file text, line, column, words of the message)
    ("map v { type inet_service : verdict }\nchain c {\n policy drop\n"
     " dnat to tcp dport map @v\n}\n", 4, 25, "map 'v' is a verdict map; dnat needs a data map"),
    ("map d { type inet_service : ipv4_addr }\nchain c {\n policy drop\n"
     " tcp dport vmap @d\n}\n", 4, 18, "map 'd' is a data map (of ipv4_addr); 'vmap' needs"),
    ("map d { type inet_service : ipv4_addr }\nchain c {\n policy drop\n"
     " snat ip6 to tcp dport map @d\n}\n", 4, 29, "snat ip6: map 'd' holds ipv4_addr targets"),
    ("map d { type inet_service : ipv4_addr }\nchain c {\n policy drop\n"
     " dnat to ip saddr map @d\n}\n", 4, 24,
     "map 'd' has inet_service keys, this key is ipv4_addr"),
    ("set s { type inet_service }\nchain c {\n policy drop\n"
     " dnat to tcp dport map @s\n}\n", 4, 25, "no data map named 's'"),
    ("map d { type inet_service : ipv4_addr }\nchain c {\n policy drop\n"
     " dnat to tcp dport map @nope\n}\n", 4, 25, "no data map named 'nope' (defined: d)"),
    ("map d { type inet_service : inet_service }\nchain c {\n policy drop\n}\n", 1, 29,
     "a map holds 'verdict' or a NAT target"),
    ("map d { type inet_service : ipv4_addr . inet_service\n"
     "  elements = { 80 : 10.0.0.1-10.0.0.5 . 80 } }\nchain c {\n policy drop\n}\n", 2, 21,
     "'10.0.0.1-10.0.0.5' is not an IPv4 address"),
    ("map d { type inet_service : ipv4_addr . inet_service\n"
     "  elements = { 80 : 10.0.0.1 } }\nchain c {\n policy drop\n}\n", 2, 30,
     "expected '.' and a port"),
    ("map d { type inet_service : ipv6_addr\n"
     "  elements = { 80 : 10.0.0.1 } }\nchain c {\n policy drop\n}\n", 2, 21,
     "'10.0.0.1' is not an IPv6 address"),
    ("map d { type inet_service : ipv4_addr . inet_service\n"
     "  elements = { 80 : 10.0.0.1 . 80-90 } }\nchain c {\n policy drop\n}\n", 2, 32,
     "a map value's port is one port"),
]


@pytest.mark.parametrize("text,line,col,words", BAD)
def test_bad_named_maps_are_located_errors_with_a_caret(text, line, col, words):
    with pytest.raises(RuleError) as info:
        parse(text, "bad.rules")
    message = str(info.value)
    assert message.startswith(f"bad.rules:{line}:{col}: error: "), message
    assert words in message, message
    source, caret = message.splitlines()[1:3]
    assert source == text.splitlines()[line - 1]
    assert caret.index("^") == col - 1


def test_bad_run_time_elements_name_their_column_and_change_nothing():
    rs = parse(RULES, "nat.rules")
    before = list(rs.sets["fwd"].elements), list(rs.sets["fwd"].verdicts)
    for text, col in (("81 : 10.0.0.81 . 81, 82 : 10.0.0.82", 36), ("81 : accept", 6),
                      ("81 : 10.0.0.81 . 0", 18)):
        with pytest.raises(RuleError) as info:
            add_elements(rs, "fwd", text)
        assert info.value.col == col, str(info.value)
        assert (rs.sets["fwd"].elements, rs.sets["fwd"].verdicts) == before


NFT_CASES = [  # (map declaration, rule): accepted by nft -c exactly when parse accepts them
    ("type inet_service : ipv4_addr . inet_service; elements = { 80 : 10.0.0.80 . 8080 }",
     "dnat ip to tcp dport map @m"),
    ("type ipv4_addr . inet_service : ipv4_addr; flags interval\n"
     "elements = { 192.0.2.0/24 . 80 : 10.0.0.1 }", "dnat ip to ip saddr . tcp dport map @m"),
    ("type ipv6_addr : ipv6_addr . inet_service; elements = { 2001:db8::1 : fd00::1 . 53 }",
     "meta l4proto tcp dnat ip6 to ip6 saddr map @m"),     # nft: ports need a protocol
    ("type ipv4_addr : ipv4_addr . inet_service; elements = { 10.0.0.1 : 192.0.2.1 . 99 }",
     "meta l4proto udp snat ip addr . port to ip saddr map @m"),
    ("type ipv4_addr : ipv4_addr; elements = { 10.0.0.1 : 192.0.2.1 }",
     "meta l4proto udp snat ip addr . port to ip saddr map @m"),
    ("type inet_service : ipv4_addr; elements = { 80 : 10.0.0.1-10.0.0.5 }",
     "dnat ip to tcp dport map @m"),
    ("type inet_service : verdict; elements = { 80 : accept }", "dnat ip to tcp dport map @m"),
    ("type inet_service : ipv4_addr", "dnat ip6 to tcp dport map @m"),
    ("type inet_service : ipv4_addr", "dnat ip to ip saddr map @m"),
    ("type inet_service : ipv4_addr . inet_service; elements = { 80 : 10.0.0.80 }",
     "dnat ip to tcp dport map @m"),
]


def test_nftables_accepts_the_named_maps_we_accept(tmp_path, netns):
    nft = _tool("nft")
    for decl, rule in NFT_CASES:
        try:
            parse(f"map m {{ {decl} }}\nchain c {{\n policy accept\n {rule}\n}}\n", "m.rules")
            ours = True
        except RuleError:
            ours = False
        path = tmp_path / "m.nft"
        path.write_text(f"table inet capnet_maps {{\n map m {{\n {decl}\n }}\n chain c {{\n"
                        f"  type nat hook prerouting priority -100\n  {rule}\n }}\n}}\n")
        kernel = subprocess.run(["ip", "netns", "exec", netns, nft, "-c", "-f", str(path)],
                                capture_output=True, text=True)
        assert (kernel.returncode == 0) == ours, (decl, rule, kernel.stderr)


# -- the reference evaluator and the compiled classifier agree -------------------------------
AGREE_RULES = """\
map fwd { type inet_service : ipv4_addr . inet_service; elements = { 80 : 10.0.0.80 . 8080 } }
map pair { type ipv4_addr . inet_service : ipv4_addr
  elements = { 192.0.2.0/24 . 1000-1999 : 10.0.0.1 } }
map six { type ipv6_addr : ipv6_addr . inet_service; elements = { 2001:db8::/32 : fd00::1 . 99 } }
map v { type inet_service : verdict; elements = { 22 : accept } }
chain input {
  policy accept
  tcp dport vmap @v
  ip saddr 192.0.2.128/25 jump inner
  dnat to th dport map @fwd counter
  snat ip to ip saddr . udp dport map @pair accept
  dnat ip6 to ip6 saddr map @six drop
  tcp dport 80 reject
}
chain inner {
  dnat to tcp dport map @fwd accept
}
"""
PORTS = [22, 80, 81, 1000, 1500, 1999, 2000, 53]
OPS = [("add", "fwd", "81 : 10.0.0.81 . 81"), ("add", "fwd", "80 : 10.0.0.90 . 9090"),
       ("delete", "fwd", "80"), ("add", "pair", "192.0.2.0/24 . 53 : 10.0.0.53"),
       ("delete", "pair", "192.0.2.0/24 . 1000-1999"), ("add", "six", "::/0 : fd00::2 . 1"),
       ("delete", "six", "2001:db8::/32"), ("add", "v", "80 : drop")]


@st.composite
def _frame(draw) -> bytes:
    from scapy.all import IP, TCP, UDP, Ether, IPv6
    l4 = draw(st.sampled_from([TCP, UDP]))(sport=draw(st.sampled_from(PORTS)),
                                            dport=draw(st.sampled_from(PORTS)))
    if draw(st.booleans()):
        l3 = IP(src=draw(st.sampled_from(["192.0.2.9", "192.0.2.200", "203.0.113.1"])),
                dst="198.51.100.1")
    else:
        l3 = IPv6(src=draw(st.sampled_from(["2001:db8::5", "fd00::5"])), dst="2001:db8:ff::1")
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3 / l4)


def _batch(frames: list[bytes], slot: int = 256):
    data = np.zeros(slot * len(frames), dtype=np.uint8)
    for i, f in enumerate(frames):
        data[i * slot:i * slot + len(f)] = np.frombuffer(f, dtype=np.uint8)
    return data, np.arange(len(frames), dtype=np.int64) * slot, \
        np.array([len(f) for f in frames], dtype=np.int64)


def _decisions(rs, frames):
    """(reference decisions, compiled decisions) of ``frames``: verdict, line, NAT."""
    ref = Reference(rs, limits=Limits())
    want = []
    for f in frames:
        d = ref.decide(f)
        want.append((d.verdict, d.line, d.nat))
    res = Classifier(rs, limits=Limits()).classify(*_batch(frames))
    got = [(VERDICTS[v], int(n), [(line, x) for p, line, x in res.nat if p == i])
           for i, (v, n) in enumerate(zip(res.verdict, res.line, strict=True))]
    return want, got


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frame(), min_size=1, max_size=30), st.lists(st.sampled_from(OPS), max_size=5))
def test_compiled_agrees_with_reference_through_map_changes(frames, ops):
    rs = parse(AGREE_RULES, "agree.rules")
    want, got = _decisions(rs, frames)
    assert got == want
    for action, name, text in ops:
        (add_elements if action == "add" else delete_elements)(rs, name, text)
        want, got = _decisions(rs, frames)
        assert got == want, (action, name, text)


def test_a_map_change_changes_both_evaluators():
    from scapy.all import IP, TCP, Ether
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
                  IP(src="203.0.113.1", dst="198.51.100.1") / TCP(dport=80))
    rs = parse(AGREE_RULES, "agree.rules")
    fwd = (10, Nat("dnat", int(ipaddress.ip_address("10.0.0.80")), (8080, 8080), 4))
    assert _decisions(rs, [frame]) == ([("reject", 13, [fwd])],) * 2
    add_elements(rs, "fwd", "80 : 10.0.0.90 . 9090")
    moved = (10, Nat("dnat", int(ipaddress.ip_address("10.0.0.90")), (9090, 9090), 4))
    assert _decisions(rs, [frame]) == ([("reject", 13, [moved])],) * 2
    delete_elements(rs, "fwd", "80")
    assert _decisions(rs, [frame]) == ([("reject", 13, [])],) * 2


# -- a running firewall ----------------------------------------------------------------------
FW_RULES = """\
map fwd { type inet_service : ipv4_addr . inet_service; elements = { 80 : 10.0.0.80 . 8080 } }
chain forward {
  policy drop
  ct state established,related accept
  ct state new dnat to tcp dport map @fwd accept
}
"""

SYSTEM = """
[system]
name = "namedmaps"

[regions.frames]
size = "1 MiB"

[components.nic]
program = "drivers.afpacket:AfPacket"
priority = 200
maps = [{{ region = "frames", perms = "rw" }}]
devices = [{{ kind = "afpacket", name = "v0", netns = "{netns}" }}]

[components.fw]
program = "filter:Firewall"
priority = 150
config = {{ rules = "fw.rules" }}
maps = [{{ region = "frames", perms = "rw" }}]
devices = [{{ kind = "file", path = "fw.rules", mode = "r" }}]

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
capacity = 64

[[queues]]
name = "egress"
producer = "fw"
consumer = "out"
data = "frames"
capacity = 64
"""

SEND = """\
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("v1", 0))
for h in sys.argv[1:]:
    s.send(bytes.fromhex(h))
"""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI")
        pytest.skip(f"{name} not installed")
    return path


def test_set_add_moves_new_connections_and_keeps_the_existing_one(tmp_path, netns):
    tshark = _tool("tshark")
    from scapy.all import IP, TCP, Ether

    def ns(*args):
        subprocess.run(["ip", "netns", "exec", netns, *args], check=True, capture_output=True)
    ns("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")   # no stray ND/MLD frames
    ns("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    ns("ip", "link", "set", "v0", "up")
    ns("ip", "link", "set", "v1", "up")

    def send(*frames):
        ns(sys.executable, "-c", SEND, *(bytes(f).hex() for f in frames))

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    client, public, old, new = "203.0.113.7", "198.51.100.1", "10.0.0.80", "10.0.0.90"
    (tmp_path / "fw.rules").write_text(FW_RULES)
    system = write_system(tmp_path / "system.toml", SYSTEM.format(netns=netns))
    ctl, stats = str(tmp_path / "ctl" / "system.sock"), tmp_path / "stats.json"
    proc = start("run", str(system), "--control", ctl, "--stats-json", str(stats))
    try:
        wait_for(lambda: os.path.exists(ctl), 30, "the control socket")

        def hits() -> dict:
            reply = request(ctl, {"op": "call", "component": "fw", "msg": {"op": "rules"}})
            return {r["line"]: r["hits"] for r in reply["ok"]["rules"]} | \
                {0: reply["ok"]["policy_hits"]}

        def filter_set(*args):
            return subprocess.run([sys.executable, "-m", "harness.cli", "filter", "set", *args,
                                   "--control", ctl], cwd=ROOT, capture_output=True, text=True)

        wait_for(lambda: hits() == {4: 0, 5: 0, 0: 0}, 30, "the firewall's rules")
        send(eth / IP(src=client, dst=public) / TCP(sport=41000, dport=80, flags="S",
                                                    seq=1000))
        wait_for(lambda: hits()[5] == 1, 30, "the first connection's SYN")
        moved = filter_set("add", "fwd", f"80 : {new} . 9090")
        assert moved.returncode == 0 and "fwd: add: 1 changed, 1 elements now" in moved.stdout, \
            moved.stderr
        bad = filter_set("add", "fwd", "80 : 10.0.0.1")
        assert bad.returncode == 2 and "<elements>:1:14: error: expected '.' and a port" \
            in bad.stderr, bad.stderr
        send(eth / IP(src=old, dst=client) / TCP(sport=8080, dport=41000, flags="SA", seq=5000,
                                                 ack=1001),
             eth / IP(src=client, dst=public) / TCP(sport=41000, dport=80, flags="A", seq=1001,
                                                    ack=5001),
             eth / IP(src=client, dst=public) / TCP(sport=41001, dport=80, flags="S", seq=7))
        wait_for(lambda: hits()[4] == 2 and hits()[5] == 2, 30, "the second connection")
        gone = filter_set("delete", "fwd", "80")
        assert gone.returncode == 0 and "1 changed, 0 elements now" in gone.stdout, gone.stderr
        send(eth / IP(src=client, dst=public) / TCP(sport=41002, dport=80, flags="S", seq=9),
             eth / IP(src=client, dst=public) / TCP(sport=41000, dport=80, flags="PA", seq=1001,
                                                    ack=5001) / b"still here")
        wait_for(lambda: hits()[0] == 1 and hits()[4] == 3, 30, "the frames after the delete")
        request(ctl, {"op": "stop"})
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
    output = proc.stdout.read() + proc.stderr.read()
    assert proc.returncode == 0, output
    summary = json.loads(stats.read_text())
    fw = summary["conservation"]["components"]["fw"]
    assert summary["conservation"]["balanced"] and fw["dropped"] == {"policy": 1}, fw
    out = subprocess.run(
        [tshark, "-r", str(tmp_path / "out.pcap"), "-o", "tcp.check_checksum:TRUE",
         "-o", "ip.check_checksum:TRUE", "-T", "fields", "-E", "separator=,", "-e", "ip.src",
         "-e", "ip.dst", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "ip.checksum.status",
         "-e", "tcp.checksum.status"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    assert [line.split(",") for line in out] == [
        [client, old, "41000", "8080", "1", "1"],      # the first connection, before the add
        [public, client, "80", "41000", "1", "1"],     # its reply, translated back
        [client, old, "41000", "8080", "1", "1"],      # it keeps its target after the add
        [client, new, "41001", "9090", "1", "1"],      # a new connection: the new target
        [client, old, "41000", "8080", "1", "1"]]      # after the delete: still translated
    extra = summary["components"]["fw"]["stats"]["extra"]
    assert extra["conntrack"]["translated"] == 5
