"""filter.nat: SNAT / DNAT / masquerade round trips through the connection table, checksums
verified by tshark and by scapy's full recomputation; UDP zero checksums; ICMP errors whose
quoted header is translated back; ICMP identifier mapping; port exhaustion; TTL and DSCP."""

from __future__ import annotations

import os
import shutil
import subprocess
from ipaddress import ip_address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import (
    ICMP,
    IP,
    TCP,
    UDP,
    Ether,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    IPv6,
    defragment,
    fragment,
    raw,
    wrpcap,
)

from filter.conntrack import ConnTracker, CtConfig, CtState
from filter.nat import NatAction, dec_ttl, set_dscp, set_hoplimit, set_ttl, translate
from filter.packet import locate

MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
LAN, SERVER, PUBLIC = "10.0.0.5", "198.51.100.20", "203.0.113.1"
LAN6, SERVER6, PUBLIC6 = "fd00::5", "2001:db8:5::20", "2001:db8:ff::1"


def packed(text: str) -> bytes:
    return ip_address(text).packed


class Nat:
    """A firewall's per-frame path: locate, lookup, confirm (with NAT on new), translate."""

    def __init__(self, action, **config):
        self.tracker = ConnTracker(CtConfig(**config))
        self.action = action
        self.now = 1
        self.out: list[bytes] = []

    def pass_(self, packet) -> tuple[bytes, object]:
        buf = bytearray(raw(Ether(**MAC) / packet))
        info = locate(buf, 1)
        match = self.tracker.lookup(info, self.now)
        assert match.state not in (CtState.INVALID, CtState.UNTRACKED), match
        entry = self.tracker.confirm(info, match, self.now,
                                     self.action if match.state == CtState.NEW else None)
        assert entry is not None, self.tracker.stats()
        translate(buf, info, entry, match.direction)
        self.out.append(bytes(buf))
        return Ether(bytes(buf)), entry


def tshark_checksums(frames: list[bytes], tmp_path) -> list[list[str]]:
    """Per frame, every checksum status tshark reports (1 good, 0 bad)."""
    if shutil.which("tshark") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tshark is required under CI")
        pytest.skip("tshark not installed")
    path = tmp_path / "nat.pcap"
    wrpcap(str(path), [Ether(f) for f in frames])
    fields = ("ip.checksum.status", "tcp.checksum.status", "udp.checksum.status",
              "icmp.checksum.status", "icmpv6.checksum.status")
    cmd = ["tshark", "-r", str(path), "-o", "ip.check_checksum:TRUE",
           "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert len(rows) == len(frames)
    return [[v for col in row for v in col.split(",") if v] for row in rows]


def assert_all_good(frames, tmp_path, expect_verified=1):
    for number, statuses in enumerate(tshark_checksums(frames, tmp_path), 1):
        assert "0" not in statuses, f"frame {number}: bad checksum {statuses}"
        assert statuses.count("1") >= expect_verified, f"frame {number}: {statuses}"


def scapy_recomputed(frame: Ether):
    """The frame rebuilt by scapy with every checksum computed afresh."""
    copy = Ether(raw(frame))
    for layer in (IP, TCP, UDP, ICMP):
        for n in range(2):
            try:
                target = copy.getlayer(layer, n + 1)
            except IndexError:
                target = None
            if target is not None and "chksum" in target.fields:
                del target.chksum
    return Ether(raw(copy))


def test_snat_tcp_round_trip_checksums(tmp_path):
    nat = Nat(NatAction.snat(PUBLIC, (40000, 40099)))
    c, s = LAN, SERVER
    syn, entry = nat.pass_(IP(src=c, dst=s) / TCP(sport=33000, dport=443, flags="S", seq=10,
                                                   options=[("WScale", 7), ("MSS", 1460)]))
    port = entry.reply.dport
    assert syn[IP].src == PUBLIC and syn[TCP].sport == port and 40000 <= port <= 40099
    synack, _ = nat.pass_(IP(src=s, dst=PUBLIC) / TCP(sport=443, dport=port, flags="SA",
                                                       seq=500, ack=11, options=[("WScale", 7)]))
    assert synack[IP].dst == c and synack[TCP].dport == 33000
    nat.pass_(IP(src=c, dst=s) / TCP(sport=33000, dport=443, flags="A", seq=11, ack=501))
    data, _ = nat.pass_(IP(src=c, dst=s) / TCP(sport=33000, dport=443, flags="PA", seq=11,
                                                ack=501) / (b"hello" * 100))
    back, _ = nat.pass_(IP(src=s, dst=PUBLIC) / TCP(sport=443, dport=port, flags="PA",
                                                     seq=501, ack=511) / b"world")
    assert (back[IP].dst, back[TCP].dport) == (c, 33000)
    assert (data[IP].src, data[IP].dst, data[TCP].sport) == (PUBLIC, s, port)
    for frame in map(Ether, nat.out):
        fresh = scapy_recomputed(frame)
        assert (frame[IP].chksum, frame[TCP].chksum) == (fresh[IP].chksum, fresh[TCP].chksum)
    assert_all_good(nat.out, tmp_path, expect_verified=2)


def test_udp_zero_checksum_stays_zero_and_real_one_is_updated(tmp_path):
    nat = Nat(NatAction.masquerade(PUBLIC))
    zero = IP(src=LAN, dst=SERVER) / UDP(sport=5353, dport=53, chksum=0) / b"no checksum"
    out, entry = nat.pass_(zero)
    assert out[UDP].chksum == 0 and out[IP].src == PUBLIC
    assert out[UDP].sport == 5353                  # masquerade keeps a free port
    reply, _ = nat.pass_(IP(src=SERVER, dst=PUBLIC) / UDP(sport=53, dport=5353) / b"answer")
    assert reply[IP].dst == LAN
    assert reply[UDP].chksum == scapy_recomputed(reply)[UDP].chksum != 0
    assert_all_good(nat.out[1:], tmp_path, expect_verified=2)
    assert_all_good(nat.out[:1], tmp_path, expect_verified=1)   # IP header only


def test_icmp_error_quoting_translated_packet_is_translated_back(tmp_path):
    nat = Nat(NatAction.snat(PUBLIC, (20000, 20000)))
    sent, entry = nat.pass_(IP(src=LAN, dst=SERVER, ttl=3) / UDP(sport=7777, dport=33434)
                            / b"traceroute probe")
    assert (sent[IP].src, sent[UDP].sport) == (PUBLIC, 20000)
    # a router on the way answers the translated datagram with time exceeded, quoting it all
    router = "192.0.2.254"
    error = IP(src=router, dst=PUBLIC) / ICMP(type=11, code=0) / raw(sent[IP])
    out, related = nat.pass_(error)
    assert related is entry
    assert out[IP].src == router and out[IP].dst == LAN     # the router's address stays
    quoted = IP(raw(out[ICMP].payload))
    assert (quoted.src, quoted.dst, quoted[UDP].sport, quoted[UDP].dport) == (
        LAN, SERVER, 7777, 33434)
    original = IP(src=LAN, dst=SERVER, ttl=3) / UDP(sport=7777, dport=33434) / b"traceroute probe"
    assert raw(quoted) == raw(original)      # header checksum and UDP checksum restored too
    assert out[ICMP].chksum == scapy_recomputed(out)[ICMP].chksum
    # the server's port unreachable quotes only the first 8 bytes of the datagram
    unreach = IP(src=SERVER, dst=PUBLIC) / ICMP(type=3, code=3) / raw(sent[IP])[:28]
    out2, _ = nat.pass_(unreach)
    assert out2[IP].src == SERVER and out2[IP].dst == LAN
    assert raw(out2[ICMP].payload)[:28] == raw(original)[:28]
    assert_all_good(nat.out, tmp_path)


def test_dnat_tcp_and_frag_needed_quoting_it(tmp_path):
    inside = "10.9.0.80"
    nat = Nat(NatAction.dnat(inside, (8080, 8080)))
    client = "192.0.2.77"
    syn, entry = nat.pass_(IP(src=client, dst=PUBLIC) / TCP(sport=50000, dport=80, flags="S"))
    assert (syn[IP].dst, syn[TCP].dport, syn[IP].src, syn[TCP].sport) == (
        inside, 8080, client, 50000)
    synack, _ = nat.pass_(IP(src=inside, dst=client) / TCP(sport=8080, dport=50000,
                                                           flags="SA", seq=9, ack=1))
    assert (synack[IP].src, synack[TCP].sport) == (PUBLIC, 80)
    # the client's side reports "fragmentation needed" about the server's segment as the
    # client saw it (from PUBLIC:80); it must reach the server quoting inside:8080
    seen = IP(src=PUBLIC, dst=client) / TCP(sport=80, dport=50000, flags="PA", seq=10,
                                            ack=1) / bytes(200)
    as_sent = IP(src=inside, dst=client) / TCP(sport=8080, dport=50000, flags="PA", seq=10,
                                               ack=1) / bytes(200)
    for quote in (len(raw(seen)), 60):              # quoted in full, and truncated
        needed = IP(src=client, dst=PUBLIC) / ICMP(type=3, code=4, nexthopmtu=1280) / raw(
            seen)[:quote]
        out, related = nat.pass_(needed)
        assert related is entry and out[IP].dst == inside and out[IP].src == client
        # every quoted byte, the TCP checksum over the whole segment included, is restored
        assert raw(out[IP])[28:] == raw(as_sent)[:quote]
    assert_all_good(nat.out[:-1], tmp_path)    # tshark cannot verify a truncated quote


def test_icmp_echo_identifiers_are_mapped_apart(tmp_path):
    nat = Nat(NatAction.snat(PUBLIC))
    a, _ = nat.pass_(IP(src="10.0.0.1", dst=SERVER) / ICMP(type=8, id=77, seq=1) / b"ping")
    b, _ = nat.pass_(IP(src="10.0.0.2", dst=SERVER) / ICMP(type=8, id=77, seq=1) / b"ping")
    assert a[IP].src == b[IP].src == PUBLIC
    assert a[ICMP].id == 77 and b[ICMP].id != 77           # the second one had to move
    reply_b, _ = nat.pass_(IP(src=SERVER, dst=PUBLIC) / ICMP(type=0, id=b[ICMP].id, seq=1)
                           / b"ping")
    reply_a, _ = nat.pass_(IP(src=SERVER, dst=PUBLIC) / ICMP(type=0, id=77, seq=1) / b"ping")
    assert (reply_b[IP].dst, reply_b[ICMP].id) == ("10.0.0.2", 77)
    assert (reply_a[IP].dst, reply_a[ICMP].id) == ("10.0.0.1", 77)
    # host unreachable about the second ping: the quoted request gets its id back
    unreach, _ = nat.pass_(IP(src=SERVER, dst=PUBLIC) / ICMP(type=3, code=1) / raw(b[IP]))
    assert unreach[IP].dst == "10.0.0.2"
    quoted = IP(raw(unreach[IP])[28:])
    assert (quoted.src, quoted[ICMP].id) == ("10.0.0.2", 77)
    assert raw(quoted) == raw(IP(src="10.0.0.2", dst=SERVER) / ICMP(type=8, id=77, seq=1)
                              / b"ping")
    assert_all_good(nat.out, tmp_path, expect_verified=2)


def test_ipv6_snat_tcp_echo_and_packet_too_big(tmp_path):
    nat = Nat(NatAction.snat(PUBLIC6, (1024, 65535)))
    syn, entry = nat.pass_(IPv6(src=LAN6, dst=SERVER6) / TCP(sport=1111, dport=22, flags="S"))
    assert syn[IPv6].src == PUBLIC6
    synack, _ = nat.pass_(IPv6(src=SERVER6, dst=PUBLIC6) / TCP(
        sport=22, dport=syn[TCP].sport, flags="SA", seq=5, ack=1))
    assert synack[IPv6].dst == LAN6 and synack[TCP].dport == 1111
    data = IPv6(src=PUBLIC6, dst=SERVER6) / TCP(sport=syn[TCP].sport, dport=22, flags="PA",
                                                 seq=1, ack=6) / bytes(900)
    as_sent = IPv6(src=LAN6, dst=SERVER6) / TCP(sport=1111, dport=22, flags="PA", seq=1,
                                                ack=6) / bytes(900)
    for quote in (len(raw(data)), 48):               # quoted in full, and truncated
        ptb, related = nat.pass_(IPv6(src="2001:db8:ff::fe", dst=PUBLIC6)
                                 / ICMPv6PacketTooBig(mtu=1280) / raw(data)[:quote])
        assert related is entry and ptb[IPv6].dst == LAN6
        assert raw(ptb[ICMPv6PacketTooBig].payload) == raw(as_sent)[:quote]
        assert ptb[ICMPv6PacketTooBig].cksum == IPv6(raw(ptb[IPv6]))[ICMPv6PacketTooBig].cksum
    echo, _ = nat.pass_(IPv6(src=LAN6, dst=SERVER6) / ICMPv6EchoRequest(id=5, seq=1))
    assert echo[IPv6].src == PUBLIC6
    pong, _ = nat.pass_(IPv6(src=SERVER6, dst=PUBLIC6) / ICMPv6EchoReply(
        id=echo[ICMPv6EchoRequest].id, seq=1))
    assert pong[IPv6].dst == LAN6 and pong[ICMPv6EchoReply].id == 5
    del nat.out[3]                                  # tshark cannot verify a truncated quote
    assert_all_good(nat.out, tmp_path)


def test_port_range_exhaustion_refuses_new_connections():
    nat = Nat(NatAction.snat(PUBLIC, (5000, 5001)))
    for host in ("10.0.0.1", "10.0.0.2"):
        nat.pass_(IP(src=host, dst=SERVER) / UDP(sport=999, dport=53))
    ports = {e.reply.dport for e in nat.tracker.entries()}
    assert ports == {5000, 5001}
    info = locate(raw(Ether(**MAC) / IP(src="10.0.0.3", dst=SERVER) / UDP(sport=999, dport=53)),
                  1)
    match = nat.tracker.lookup(info, 1)
    assert nat.tracker.confirm(info, match, 1, nat.action) is None
    assert nat.tracker.stats()["refused_nat_exhausted"] == 1
    # another destination has the whole range again (the reply tuple differs)
    nat.pass_(IP(src="10.0.0.3", dst="198.51.100.21") / UDP(sport=999, dport=53))


def test_nat_action_validation():
    with pytest.raises(ValueError, match="kind"):
        NatAction("redirect", (packed(PUBLIC),))
    with pytest.raises(ValueError, match="port range"):
        NatAction.snat(PUBLIC, (0, 10))
    with pytest.raises(ValueError, match="lower to the higher"):
        NatAction.snat(("10.0.0.9", "10.0.0.1"))
    assert str(NatAction.snat(("10.0.0.1", "10.0.0.9"), (1, 2))) == "snat to 10.0.0.1-10.0.0.9:1-2"


def test_ttl_hoplimit_and_dscp_edits(tmp_path):
    buf = bytearray(raw(Ether(**MAC) / IP(src=LAN, dst=SERVER, ttl=64, tos=0x03) / UDP()))
    info = locate(buf, 1)
    assert dec_ttl(buf, info) == 63
    set_dscp(buf, info, 46)
    frame = Ether(bytes(buf))
    assert frame[IP].ttl == 63 and frame[IP].tos == (46 << 2) | 3
    assert frame[IP].chksum == scapy_recomputed(frame)[IP].chksum
    set_ttl(buf, info, 1)
    assert dec_ttl(buf, info, 5) == 0
    buf6 = bytearray(raw(Ether(**MAC) / IPv6(src=LAN6, dst=SERVER6, hlim=9, tc=0x01) / UDP()))
    info6 = locate(buf6, 1)
    set_hoplimit(buf6, info6, 200)
    set_dscp(buf6, info6, 10)
    frame6 = Ether(bytes(buf6))
    assert frame6[IPv6].hlim == 200 and frame6[IPv6].tc == (10 << 2) | 1
    assert frame6[IPv6].fl == 0 and frame6[IPv6].version == 6
    assert_all_good([bytes(buf), bytes(buf6)], tmp_path, expect_verified=0)
    with pytest.raises(ValueError, match="DSCP"):
        set_dscp(buf, info, 64)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([4, 6]), st.sampled_from(["tcp", "udp"]), st.binary(max_size=64),
       st.integers(1, 65535), st.integers(1, 65535), st.integers(1, 65535),
       st.sampled_from(["snat", "dnat"]), st.integers(0, 2**32 - 1))
def test_translated_checksums_equal_full_recomputation(family, proto, payload, sport, dport,
                                                      new_port, kind, seed):
    """Incremental updates after any address/port rewrite equal scapy's recomputation."""
    if family == 4:
        net = IP(src=LAN, dst=SERVER)
        target = ip_address(seed).packed
    else:
        net = IPv6(src=LAN6, dst=SERVER6)
        target = (seed * 0x9E3779B97F4A7C15 % 2**128).to_bytes(16, "big")
    l4 = TCP(sport=sport, dport=dport, flags="S") if proto == "tcp" else UDP(sport=sport,
                                                                             dport=dport)
    action = NatAction(kind, (target,), (new_port, new_port))
    tracker = ConnTracker()
    buf = bytearray(raw(Ether(**MAC) / net / l4 / payload))
    info = locate(buf, 1)
    match = tracker.lookup(info, 1)
    entry = tracker.confirm(info, match, 1, action)
    assert entry is not None
    translate(buf, info, entry, match.direction)
    out = Ether(bytes(buf))
    layer = TCP if proto == "tcp" else UDP
    fresh = scapy_recomputed(out)
    got, want = out[layer].chksum, fresh[layer].chksum
    assert got == want or (layer is UDP and {got, want} == {0, 0xFFFF})
    assert got != 0 or layer is TCP
    if family == 4:
        assert out[IP].chksum == fresh[IP].chksum
    moved = out[layer].sport if kind == "snat" else out[layer].dport
    assert moved == new_port


def test_translate_finds_the_direction_itself():
    """A stale or missing direction (a batch looked up before its first packet was
    confirmed) is corrected from the packet; a packet of another flow is left alone."""
    nat = Nat(NatAction.snat(PUBLIC, (40000, 40000)))
    _, entry = nat.pass_(IP(src=LAN, dst=SERVER) / UDP(sport=6000, dport=53) / b"q")
    for direction in (None, 0, 1):
        buf = bytearray(raw(Ether(**MAC) / IP(src=SERVER, dst=PUBLIC) / UDP(sport=53,
                                                                           dport=40000)))
        assert translate(buf, locate(buf, 1), entry, direction)
        out = Ether(bytes(buf))
        assert (out[IP].dst, out[UDP].dport) == (LAN, 6000)
        assert out[UDP].chksum == scapy_recomputed(out)[UDP].chksum
    stranger = bytearray(raw(Ether(**MAC) / IP(src=SERVER, dst=PUBLIC) / UDP(sport=53,
                                                                             dport=40001)))
    before = bytes(stranger)
    assert not translate(stranger, locate(stranger, 1), entry, 1)
    assert bytes(stranger) == before


def test_fragmented_datagram_translated_piece_by_piece(tmp_path):
    """The first fragment carries the ports and the checksum over the whole datagram; the
    later ones only need their addresses (and IPv4 header checksum) rewritten."""
    nat = Nat(NatAction.snat(PUBLIC, (30000, 30000)))
    datagram = IP(src=LAN, dst=SERVER, id=555) / UDP(sport=4000, dport=9999) / (
        bytes(range(256)) * 12)
    for piece in fragment(datagram, 1000):
        out, _ = nat.pass_(piece)
        assert out[IP].src == PUBLIC
    whole = defragment([Ether(f)[IP] for f in nat.out])
    assert len(whole) == 1
    got = IP(raw(whole[0]))
    assert (got.src, got[UDP].sport, got[UDP].dport) == (PUBLIC, 30000, 9999)
    assert got[UDP].chksum == scapy_recomputed(Ether(**MAC) / got)[UDP].chksum
    assert_all_good(nat.out, tmp_path)
