"""The TCP segment codec (netstack.wire.tcp): round trips, scapy interop, fuzzing.

scapy is the independent oracle: segments we emit must parse in scapy with the checksum scapy
computes itself, and segments scapy builds (a Linux SYN's option layout) must be accepted by
a TcpLayer. Random and mutated segments never make the codec or the layer raise.
"""

from __future__ import annotations

import random
from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import raw

from netstack.tcp import Accepted, TcpConfig, TcpLayer
from netstack.wire import WireError
from netstack.wire.checksum import transport_checksum
from netstack.wire.tcp import ACK, PSH, SYN, Tcp, TcpOptions, TcpView
from tests.test_tcp_connection import established

A4, B4 = ip_address("192.0.2.1"), ip_address("192.0.2.2")
A6, B6 = ip_address("2001:db8::1"), ip_address("2001:db8::2")

def _fits(opts: TcpOptions) -> bool:
    try:
        opts.emit()
    except WireError:
        return False
    return True


u32 = st.integers(0, 0xFFFFFFFF)
u16 = st.integers(0, 0xFFFF)
options = st.builds(
    TcpOptions,
    mss=st.none() | u16,
    wscale=st.none() | st.integers(0, 14),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(u32, u32), max_size=3).map(tuple),
    timestamp=st.none() | st.tuples(u32, u32),
).filter(_fits)


segments = st.builds(Tcp, u16, u16, u32, u32, st.integers(0, 0xFF), u16, options,
                     st.binary(max_size=200), u16)


@settings(max_examples=300, deadline=None)
@given(segments, st.booleans())
def test_rfc9293_3_1_header_round_trips_through_emit_and_parse(seg, v6):
    src, dst = (A6, B6) if v6 else (A4, B4)
    data = seg.emit(src, dst)
    assert Tcp.parse(data, src, dst) == seg
    view = TcpView(data)
    assert (view.src_port, view.dst_port, view.seq, view.ack, view.flags, view.window) == \
        (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window)
    assert view.checksum_valid(src, dst)


@settings(max_examples=100, deadline=None)
@given(segments)
def test_rfc9293_3_1_checksum_agrees_with_scapy(seg):
    for src, dst, ip_layer in ((A4, B4, IP), (A6, B6, IPv6)):
        data = seg.emit(src, dst)
        theirs = TCP(data)
        del theirs.chksum                          # let scapy compute it from scratch
        rebuilt = ip_layer(raw(ip_layer(src=str(src), dst=str(dst)) / theirs))
        assert rebuilt[TCP].chksum == int.from_bytes(data[16:18], "big")


def test_rfc7323_rfc2018_options_parse_in_scapy():
    seg = Tcp(1, 2, 3, 4, SYN | ACK, 5, TcpOptions(mss=1460, wscale=7, sack_permitted=True,
                                                   timestamp=(11, 22)))
    opts = dict(TCP(seg.emit(A4, B4)).options)
    assert opts["MSS"] == 1460 and opts["WScale"] == 7 and "SAckOK" in opts
    assert opts["Timestamp"] == (11, 22)
    sack = Tcp(1, 2, 3, 4, ACK, 5, TcpOptions(timestamp=(1, 2), sack_blocks=((100, 200),
                                                                           (300, 400))))
    assert dict(TCP(sack.emit(A4, B4)).options)["SAck"] == (100, 200, 300, 400)


def test_rfc9293_3_1_bad_checksum_is_dropped():
    layer = TcpLayer(TcpConfig(), secret=b"k" * 32)
    layer.listen((None, 80))
    syn = bytearray(Tcp(1234, 80, 1, 0, SYN, 1000).emit(A4, B4))
    syn[17] ^= 0x01
    layer.receive(A4, B4, bytes(syn), 0)
    assert layer.counters["dropped.bad_checksum"] == 1 and not layer.segments_to_send()


def _scapy_handshake(src, dst, ip_layer) -> None:
    layer = TcpLayer(TcpConfig(), secret=b"k" * 32)
    lid = layer.listen((None, 8080))
    # a Linux SYN: MSS, SACK-permitted, timestamps, NOP, window scale 7
    syn = TCP(sport=51000, dport=8080, seq=1000, flags="S", window=64240,
              options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (555, 0)), ("NOP", None),
                       ("WScale", 7)])
    layer.receive(src, dst, raw(ip_layer / syn)[len(raw(ip_layer)):], 0)
    ((s, d, data),) = layer.segments_to_send()
    synack = TCP(data)
    assert (s, d) == (dst, src) and synack.flags == "SA" and synack.ack == 1001
    opts = dict(synack.options)
    assert opts["MSS"] == 1460 and opts["Timestamp"][1] == 555 and "SAckOK" in opts
    ack = TCP(sport=51000, dport=8080, seq=1001, ack=synack.seq + 1, flags="A", window=502,
              options=[("NOP", None), ("NOP", None), ("Timestamp", (556, opts["Timestamp"][0]))])
    layer.receive(src, dst, raw(ip_layer / ack)[len(raw(ip_layer)):], 1_000_000)
    data_seg = TCP(sport=51000, dport=8080, seq=1001, ack=synack.seq + 1, flags="PA",
                   window=502, options=[("NOP", None), ("NOP", None),
                                        ("Timestamp", (557, opts["Timestamp"][0]))]) / b"hello"
    layer.receive(src, dst, raw(ip_layer / data_seg)[len(raw(ip_layer)):], 2_000_000)
    (accepted,) = [e for e in layer.events() if isinstance(e, Accepted)]
    assert accepted.listener == lid and accepted.remote == (src, 51000)
    assert layer.recv(accepted.conn, 100) == b"hello"
    info = layer.info(accepted.conn)
    assert info["snd_wscale"] == 7 and info["snd_wnd"] == 502 << 7 and info["sack"]


def test_scapy_crafted_linux_syn_is_accepted_over_ipv4():
    _scapy_handshake(A4, B4, IP(src=str(A4), dst=str(B4)))


def test_scapy_crafted_linux_syn_is_accepted_over_ipv6():
    _scapy_handshake(A6, B6, IPv6(src=str(A6), dst=str(B6)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_never_raise(data):
    try:
        Tcp.parse(data)
    except WireError:
        pass
    layer = TcpLayer(TcpConfig(), secret=b"k" * 32)
    layer.listen((None, 80))
    layer.receive(A4, B4, data, 0)
    layer.segments_to_send()


def _fix_checksum(data: bytearray, src, dst) -> bytes:
    """Recompute the checksum of a mutated segment so that it reaches the state machine."""
    if len(data) < 20:
        return bytes(data)
    data[16:18] = b"\0\0"
    data[16:18] = transport_checksum(src, dst, 6, bytes(data)).to_bytes(2, "big")
    return bytes(data)


def test_mutated_segments_with_valid_checksums_never_raise():
    """Fuzz an established connection (both ends) with mutated copies of real segments."""
    rng = random.Random(1234)
    for round_ in range(6):
        a, b, link, conn, server, ca, cb = established()
        a.send(conn, rng.randbytes(20_000), link.now)
        b.send(server, rng.randbytes(5_000), link.now)
        link.advance(link.now + 30_000_000)
        samples = [(s, d, bytearray(data)) for _, s, d, data in link.trace]
        for _ in range(400):
            src, dst, data = rng.choice(samples)
            data = bytearray(data)
            for _ in range(rng.randrange(1, 4)):
                kind = rng.randrange(4)
                if kind == 0 and data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
                elif kind == 1:
                    data = data[:rng.randrange(len(data) + 1)]
                elif kind == 2 and len(data) >= 14:
                    data[13] = rng.randrange(256)                    # flags
                elif kind == 3 and len(data) >= 13:
                    data[12] = rng.randrange(256)                    # data offset
            link.hosts[dst].receive(src, dst, _fix_checksum(data, src, dst), link.now)
            link.step()
        for layer in (a, b):
            layer.segments_to_send()
            layer.events()
        assert a.counters["segments_in"] > 0, round_


def test_parse_rejects_truncated_and_malformed_options():
    base = Tcp(1, 2, 3, 4, ACK | PSH, 5, TcpOptions(timestamp=(1, 2))).emit(A4, B4)
    bad = bytearray(base)
    bad[12] = 0xF0                                   # data offset 60 > length
    for data in (base[:10], bytes(bad)):
        try:
            Tcp.parse(data)
        except WireError:
            continue
        raise AssertionError("accepted a malformed segment")
    opts = bytearray(base)
    opts[22] = 8
    opts[23] = 30                                    # timestamp option longer than the list
    try:
        Tcp.parse(bytes(opts))
    except WireError as err:
        assert "option" in str(err)
    else:
        raise AssertionError("accepted a bad option length")
