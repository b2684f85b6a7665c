"""Connection behaviour, each test named after the RFC requirement it checks.

Two TcpLayers over the in-memory link of test_tcp_link (virtual clock), plus segments crafted
with netstack.wire.tcp where a test must play a misbehaving or hostile peer.
"""

from __future__ import annotations

import random
from ipaddress import ip_address

import pytest

from netstack.tcp import (
    Accepted,
    Closed,
    Connected,
    DataReady,
    PeerClosed,
    Reset,
    SendSpace,
    TcpConfig,
    TcpLayer,
    TimedOut,
)
from netstack.tcp.seq import seq_le
from netstack.wire.tcp import ACK, FIN, RST, SYN, Tcp, TcpOptions
from tests.test_tcp_link import MS, A, B, Collector, Link, pair

SECOND = 1_000_000_000


def established(config_a=None, config_b=None, **faults):
    """A connected pair: (a, b, link, client conn on a, server conn on b, collectors)."""
    a, b, link = pair(config_a, config_b, **faults)
    b.listen((None, 80))
    conn = a.connect((A, 40000), (B, 80), now=0)
    ca, cb = Collector(a), Collector(b)
    link.run(lambda: bool(ca.of(Connected)) and bool(cb.of(Accepted)))
    server = cb.of(Accepted)[0].conn
    return a, b, link, conn, server, ca, cb


def parsed(link: Link, src, since: int = 0) -> list[Tcp]:
    """Segments ``src`` put on the wire (from trace index ``since``), parsed."""
    return [Tcp.parse(d) for _, s, _, d in link.trace[since:] if s == src]


def inject(link: Link, src, dst, seg: Tcp) -> None:
    """Put a crafted segment on the wire now (delivered after the link delay)."""
    link._put(link.now, src, dst, seg.emit(src, dst))


def test_rfc9293_3_5_handshake_negotiates_rfc7323_and_rfc2018_options():
    a, b, link, conn, server, ca, cb = established()
    for info in (a.info(conn), b.info(server)):
        assert info["state"] == "ESTABLISHED"
        assert info["timestamps"] and info["sack"] and info["mss"] == 1460
        assert info["snd_wscale"] == info["rcv_wscale"] == 3      # 256 KiB >> 3 fits 16 bits
    syn, synack = parsed(link, A)[0], parsed(link, B)[0]
    assert syn.flags == SYN and synack.flags == SYN | ACK
    assert synack.ack == (syn.seq + 1) & 0xFFFFFFFF
    assert syn.options.wscale == 3 and syn.options.sack_permitted and syn.options.timestamp


def test_rfc9293_3_5_simultaneous_open_connects_both_ends():
    a, b, link = pair()
    ca, cb = Collector(a), Collector(b)
    c1 = a.connect((A, 5000), (B, 6000), now=0)
    c2 = b.connect((B, 6000), (A, 5000), now=0)
    link.run(lambda: bool(ca.of(Connected)) and bool(cb.of(Connected)))
    assert a.info(c1)["state"] == b.info(c2)["state"] == "ESTABLISHED"
    a.send(c1, b"ping", link.now)
    link.run(lambda: cb.got(c2) == b"ping")
    # both SYNs crossed: each side sent a SYN and then a SYN-ACK
    assert [s.flags & (SYN | ACK) for s in parsed(link, A)[:2]] == [SYN, SYN | ACK]


def test_rfc9293_3_6_simultaneous_close_passes_closing_to_time_wait():
    a, b, link, conn, server, ca, cb = established()
    a.close(conn, link.now)
    b.close(server, link.now)
    assert a.info(conn)["state"] == b.info(server)["state"] == "FIN-WAIT-1"
    link.run(lambda: bool(ca.of(Closed)) and bool(cb.of(Closed)))
    assert a.info(conn)["state"] == b.info(server)["state"] == "TIME-WAIT"
    assert ca.of(PeerClosed) and cb.of(PeerClosed)


def test_rfc9293_3_6_orderly_close_delivers_all_data_then_eof():
    a, b, link, conn, server, ca, cb = established()
    payload = random.Random(1).randbytes(50_000)
    assert a.send(conn, payload, link.now) == len(payload)
    a.close(conn, link.now)
    link.run(lambda: bool(cb.of(PeerClosed)))
    assert bytes(cb.data[server]) == payload and b.eof(server)
    link.run(lambda: a.info(conn)["state"] == "FIN-WAIT-2")
    assert b.info(server)["state"] == "CLOSE-WAIT"
    assert b.send(server, b"late reply", link.now) == 10     # half-close: B may still send
    b.close(server, link.now)
    link.run(lambda: bool(cb.of(Closed)) and bool(ca.of(Closed)))
    assert bytes(ca.data[conn]) == b"late reply"
    with pytest.raises(KeyError):                # LAST-ACK -> CLOSED: B forgot it
        b.info(server)


def test_rfc9293_3_10_4_abort_sends_rst_and_peer_reports_reset():
    a, b, link, conn, server, ca, cb = established()
    a.send(conn, b"x" * 5000, link.now)
    a.abort(conn, link.now)
    assert ca.of(Closed)
    with pytest.raises(KeyError):
        a.info(conn)
    link.run(lambda: bool(cb.of(Reset)))
    assert cb.of(Reset)[0].reason == "reset"
    assert server not in b.connections()
    assert any(s.flags & RST for s in parsed(link, A))


def test_rfc9293_3_10_7_1_segment_to_no_connection_gets_rst():
    a, b, link = pair()
    ca = Collector(a)
    conn = a.connect((A, 0), (B, 9), now=0)               # nobody listens on B:9
    link.run(lambda: bool(ca.of(Reset)))
    assert ca.of(Reset)[0] == Reset(conn, "refused")
    rst = parsed(link, B)[0]
    syn = parsed(link, A)[0]
    assert rst.flags == RST | ACK and rst.seq == 0 and rst.ack == (syn.seq + 1) & 0xFFFFFFFF
    assert b.counters["dropped.no_connection"] == 1


def test_rfc9293_3_4_2_time_wait_lasts_2msl_and_reacks_a_retransmitted_fin():
    cfg = TcpConfig(msl_ns=2 * SECOND)
    a, b, link, conn, server, ca, cb = established(cfg, cfg)
    a.close(conn, link.now)
    link.run(lambda: bool(cb.of(PeerClosed)))
    b.close(server, link.now)
    link.run(lambda: bool(ca.of(Closed)))
    assert a.info(conn)["state"] == "TIME-WAIT"
    entered = link.now
    fin = [s for s in parsed(link, B) if s.flags & FIN][-1]
    mark = len(link.trace)
    link.advance(entered + SECOND)
    inject(link, B, A, fin)                       # the peer retransmits its FIN
    link.run(lambda: any(s.flags == ACK for s in parsed(link, A, mark)))
    restarted = link.now
    assert a.info(conn)["state"] == "TIME-WAIT"
    link.run(lambda: conn not in a.connections())
    assert link.now >= restarted + 2 * cfg.msl_ns - 10 * MS      # the 2 MSL timer restarted


def test_rfc9293_3_8_6_1_zero_window_is_probed_until_it_opens():
    small = TcpConfig(recv_buffer=8192)
    a, b, link, conn, server, ca, _ = established(None, small)
    payload = random.Random(2).randbytes(60_000)
    sent = a.send(conn, payload, link.now)
    link.run(lambda: a.counters["zero_window_probes"] >= 3)   # B's app reads nothing
    assert a.info(conn)["snd_wnd"] == 0 and b.info(server)["rcv_wnd"] == 0
    assert b.info(server)["recv_buffered"] == 8192
    probes = [s for s in parsed(link, A) if len(s.payload) == 1]
    assert probes, "a zero-window probe carries one byte"
    got = bytearray()

    def drained() -> bool:
        nonlocal sent
        got.extend(b.recv(server, 1 << 20))
        if sent < len(payload):
            sent += a.send(conn, payload[sent:], link.now)
        return len(got) == len(payload)

    link.run(drained)
    assert bytes(got) == payload


def test_rfc9293_3_8_4_keepalive_probes_an_idle_peer_and_times_out_a_dead_one():
    cfg = TcpConfig(keepalive_idle_ns=10 * SECOND, keepalive_interval_ns=SECOND,
                    keepalive_probes=3)
    a, b, link, conn, server, ca, cb = established(cfg, None)
    start = link.now
    link.run(lambda: a.counters["keepalive_probes"] >= 2)
    assert link.now >= start + 10 * SECOND
    assert a.info(conn)["state"] == "ESTABLISHED"               # answered: still up
    probe = [s for s in parsed(link, A) if not s.payload][-1]
    assert probe.seq == (a.info(conn)["snd_una"] - 1) & 0xFFFFFFFF
    link.advance(link.now + 100 * MS)                           # the last probe is answered
    link.tap = lambda src, dst, data: None                      # the peer vanishes
    link.run(lambda: bool(ca.of(TimedOut)))
    assert a.counters["keepalive_probes"] >= 2 + 3
    assert conn not in a.connections()


def test_rfc7323_5_3_paws_drops_a_segment_with_an_old_timestamp():
    a, b, link, conn, server, ca, cb = established()
    a.send(conn, b"fresh", link.now)
    link.run(lambda: cb.got(server) == b"fresh")
    ia, ib = a.info(conn), b.info(server)
    old = Tcp(40000, 80, ib["rcv_nxt"], ia["rcv_nxt"], ACK, 1000,
              TcpOptions(timestamp=((ib["ts_recent"] - 5000) & 0xFFFFFFFF, 0)), b"stale")
    mark = len(link.trace)
    inject(link, A, B, old)
    link.run(lambda: b.counters["dropped.paws"] == 1)
    link.advance(link.now + 100 * MS)
    cb.poll()
    assert bytes(cb.data[server]) == b"fresh"                   # "stale" never delivered
    assert any(s.flags == ACK for s in parsed(link, B, mark))   # R1: send an ACK


def test_rfc7323_5_4_timestamp_clock_never_runs_backwards():
    """A segment stamped from a ``now`` read before the last one sent keeps the newer TSval;
    with an older one the peer's PAWS test would drop in-order data (it did: the socket layer
    reads the clock afresh while a turn's batch shares an earlier ``now``)."""
    a, b, link, conn, server, ca, cb = established(TcpConfig(nagle=False))
    mark = len(link.trace)
    a.send(conn, b"late", link.now + 5 * MS)
    a.send(conn, b"early", link.now + 1 * MS)       # an earlier reading of the clock
    link.run(lambda: cb.got(server) == b"lateearly")
    stamps = [s.options.timestamp[0] for s in parsed(link, A, mark) if s.payload]
    assert len(stamps) == 2 and stamps[1] == stamps[0]
    assert b.counters["dropped.paws"] == 0


def test_rfc5961_3_2_in_window_rst_not_at_rcv_nxt_gets_a_challenge_ack():
    a, b, link, conn, server, ca, cb = established()
    ib = b.info(server)
    mark = len(link.trace)
    inject(link, A, B, Tcp(40000, 80, (ib["rcv_nxt"] + 100) & 0xFFFFFFFF, 0, RST, 0))
    link.run(lambda: b.counters["challenge_acks"] == 1)
    assert b.info(server)["state"] == "ESTABLISHED"
    (challenge,) = [s for s in parsed(link, B, mark) if s.flags == ACK]
    assert challenge.ack == ib["rcv_nxt"] and challenge.seq == ib["snd_nxt"]
    inject(link, A, B, Tcp(40000, 80, ib["rcv_nxt"], 0, RST, 0))      # exactly RCV.NXT
    link.run(lambda: bool(cb.of(Reset)))
    assert server not in b.connections()


def test_rfc5961_4_2_syn_in_established_gets_a_challenge_ack():
    a, b, link, conn, server, ca, cb = established()
    ib = b.info(server)
    mark = len(link.trace)
    inject(link, A, B, Tcp(40000, 80, 12345, 0, SYN, 1000, TcpOptions(mss=1460)))
    link.run(lambda: b.counters["challenge_acks"] == 1)
    assert b.info(server)["state"] == "ESTABLISHED" and not cb.of(Reset)
    (challenge,) = [s for s in parsed(link, B, mark) if s.flags == ACK]
    assert challenge.ack == ib["rcv_nxt"]


def test_rfc5961_5_2_ack_beyond_snd_nxt_is_dropped():
    a, b, link, conn, server, ca, cb = established()
    ib = b.info(server)
    inject(link, A, B, Tcp(40000, 80, ib["rcv_nxt"], (ib["snd_nxt"] + 50_000) & 0xFFFFFFFF,
                           ACK, 1000, payload=b"evil"))
    link.run(lambda: b.counters["dropped.ack_beyond_snd_nxt"] == 1)
    cb.poll()
    assert server not in cb.data                                # the data was not accepted


def test_rfc4987_syn_cookies_complete_a_connection_when_the_backlog_is_full():
    a, b, link = pair()
    b.listen((None, 80), backlog=1)
    c = ip_address("10.0.0.3")
    link.hosts[c] = TcpLayer(TcpConfig(), secret=b"c" * 32)
    link.tap = lambda src, dst, data: None if dst == c else data    # C never answers
    link.hosts[c].connect((c, 1111), (B, 80), now=0)                # holds the backlog slot
    link.run(lambda: b.counters["segments_in"] >= 1)
    ca, cb = Collector(a), Collector(b)
    conn = a.connect((A, 0), (B, 80), now=link.now)
    link.run(lambda: bool(ca.of(Connected)) and bool(cb.of(Accepted)))
    assert b.counters["syn_cookies_sent"] >= 1 and b.counters["syn_cookies_accepted"] == 1
    server = cb.of(Accepted)[0].conn
    info = b.info(server)
    assert info["snd_wscale"] == 3 and info["sack"]                 # carried in the TSecr
    payload = random.Random(3).randbytes(300_000)
    sent = 0

    def done() -> bool:
        nonlocal sent
        if sent < len(payload):
            sent += a.send(conn, payload[sent:], link.now)
        return cb.got(server) == payload

    link.run(done)
    tsvals = [s.options.timestamp[0] for s in parsed(link, B) if s.dst_port != 1111]
    assert all(seq_le(x, y) for x, y in zip(tsvals, tsvals[1:], strict=False))   # RFC 7323
    assert a.counters["dropped.paws"] == 0


def test_rfc4987_forged_cookie_ack_is_refused_with_rst():
    a, b, link = pair()
    b.listen((None, 80), backlog=0)
    inject(link, A, B, Tcp(40001, 80, 1000, 0xDEADBEEF, ACK, 1000))
    link.run(lambda: b.counters["dropped.ack_to_listener"] == 1)
    link.pump()
    assert not b.connections()
    rst = parsed(link, B)[-1]
    assert rst.flags == RST and rst.seq == 0xDEADBEEF


def test_rfc2018_receiver_reports_sack_blocks_and_sender_resends_only_holes():
    a, b, link, conn, server, ca, cb = established()
    dropped: set[int] = set()
    seen: dict[int, int] = {}

    def lose_two(src, dst, data):
        seg = Tcp.parse(data)
        if src == A and seg.payload:
            seen[seg.seq] = seen.get(seg.seq, 0) + 1
            index = sorted(seen).index(seg.seq)
            if seen[seg.seq] == 1 and index in (3, 8):
                dropped.add(seg.seq)
                return None
        return data

    link.tap = lose_two
    payload = random.Random(4).randbytes(40 * 1448)
    a.send(conn, payload, link.now)
    link.run(lambda: cb.got(server) == payload)
    assert len(dropped) == 2
    resent = {s for s, n in seen.items() if n > 1}
    assert resent == dropped                                    # only the holes went again
    assert a.counters["rto_expirations"] == 0
    blocks = [s.options.sack_blocks for s in parsed(link, B) if s.options.sack_blocks]
    assert blocks, "the receiver reported SACK blocks"
    first_hole = min(dropped)
    assert any(left == (first_hole + 1448) & 0xFFFFFFFF for left, _ in blocks[0])
    # RFC 6691: MSS 1460 less 12 bytes of timestamps (and 20 more once SACK blocks ride along)
    sizes = {len(s.payload) for s in parsed(link, A) if s.payload}
    assert max(sizes) == 1448
    assert all(len(d) <= 20 + 1460 for _, _, _, d in link.trace)


def test_rfc6298_5_retransmission_timer_backs_off_and_gives_up():
    cfg = TcpConfig(max_retransmits=4)
    a, b, link, conn, server, ca, cb = established(cfg, None)
    link.tap = lambda src, dst, data: None if src == A and len(data) > 40 else data
    a.send(conn, b"lost" * 100, link.now)
    link.run(lambda: bool(ca.of(TimedOut)))
    sends = [t for t, s, _, d in link.trace if s == A and Tcp.parse(d).payload]
    gaps = [b_ - a_ for a_, b_ in zip(sends, sends[1:], strict=False)]
    assert len(sends) == 5
    assert gaps == [SECOND, 2 * SECOND, 4 * SECOND, 8 * SECOND]     # RTO 1 s min, doubled
    assert any(s.flags & RST for s in parsed(link, A))


def test_rfc6298_rto_follows_the_measured_rtt():
    cfg = TcpConfig(rto_min_ns=10 * MS)
    a, b, link, conn, server, ca, cb = established(cfg, cfg, delay_ns=50 * MS)
    a.send(conn, b"x" * 100_000, link.now)
    link.run(lambda: a.info(conn)["snd_una"] == a.info(conn)["snd_nxt"])
    info = a.info(conn)
    assert 95 * MS <= info["srtt_ns"] <= 160 * MS               # RTT is 100 ms (+ delayed ACK)
    assert info["rto_ns"] >= info["srtt_ns"] + 1 * MS


def test_rfc9293_3_7_4_nagle_holds_small_segments_while_data_is_unacknowledged():
    a, b, link, conn, server, ca, cb = established()
    mark = len(link.trace)
    for _ in range(10):
        a.send(conn, b"k", link.now)                            # ten 1-byte writes at once
    link.pump()
    first = [s for s in parsed(link, A, mark) if s.payload]
    assert [len(s.payload) for s in first] == [1]               # one segment, the rest held
    link.run(lambda: len(cb.got(server)) == 10)
    assert len([s for s in parsed(link, A, mark) if s.payload]) == 2


def test_rfc1122_4_2_3_2_delayed_ack_acks_every_second_segment():
    a, b, link, conn, server, ca, cb = established()
    mark = len(link.trace)
    a.send(conn, b"z" * (1448 * 6), link.now)              # six full segments (TS on)
    link.run(lambda: len(cb.got(server)) == 1448 * 6)
    link.advance(link.now + 100 * MS)
    acks = [s for s in parsed(link, B, mark) if s.flags == ACK and not s.payload]
    assert len(acks) == 3
    mark = len(link.trace)
    a.send(conn, b"y", link.now)
    link.run(lambda: any(s.flags == ACK for s in parsed(link, B, mark)))
    ack_time = [t for t, s, _, _ in link.trace[mark:] if s == B][0]
    data_time = [t for t, s, _, _ in link.trace[mark:] if s == A][0]
    assert ack_time - data_time == 5 * MS + TcpConfig().delayed_ack_ns   # delay + 40 ms


def test_data_ready_and_send_space_events():
    a, b, link, conn, server, ca, cb = established(TcpConfig(send_buffer=4096))
    assert a.send(conn, b"q" * 10_000, link.now) == 4096
    link.run(lambda: bool(ca.of(SendSpace)))
    assert DataReady(server) in b.events()              # cb never polled: still queued


def test_rfc9293_3_10_7_4_rst_to_a_half_open_passive_connection_is_silent():
    """A RST in SYN-RECEIVED ends the embryonic connection (back to LISTEN, RFC 9293
    3.10.7.4); the user never saw it, so no event is reported, and the backlog slot frees."""
    b = TcpLayer(TcpConfig(), secret=b"b" * 32)
    lid = b.listen((None, 80), backlog=1)
    b.receive(A, B, Tcp(5555, 80, 1000, 0, SYN, 65535, TcpOptions(mss=1460)).emit(A, B), 0)
    ((_, _, synack),) = b.segments_to_send()
    assert Tcp.parse(synack).flags == SYN | ACK and len(b.connections()) == 1
    b.receive(A, B, Tcp(5555, 80, 1001, 0, RST, 0).emit(A, B), MS)
    assert not b.connections() and not b.events()
    assert not b._listeners[lid].half_open                      # the slot is free again
    b.receive(A, B, Tcp(5556, 80, 2000, 0, SYN, 65535, TcpOptions(mss=1460)).emit(A, B), 2 * MS)
    assert b.counters["syn_cookies_sent"] == 0 and len(b.connections()) == 1


def test_rfc8985_idea_a_lost_retransmission_is_resent_without_waiting_for_the_rto():
    a, b, link, conn, server, ca, cb = established()
    sends: dict[int, int] = {}
    victim = []

    def lose_twice(src, dst, data):
        seg = Tcp.parse(data)
        if src == A and seg.payload:
            sends[seg.seq] = sends.get(seg.seq, 0) + 1
            if not victim and len(sends) == 5:
                victim.append(seg.seq)
            if victim and seg.seq == victim[0] and sends[seg.seq] <= 2:
                return None                        # the segment and its first retransmission
        return data

    link.tap = lose_twice
    payload = random.Random(6).randbytes(150 * 1448)
    a.send(conn, payload, link.now)
    link.run(lambda: cb.got(server) == payload)
    assert sends[victim[0]] == 3
    assert a.counters["lost_retransmissions"] == 1 and a.counters["rto_expirations"] == 0


def test_rfc6191_a_new_syn_with_newer_timestamp_reuses_a_time_wait_tuple():
    a, b, link, conn, server, ca, cb = established()
    b.close(server, link.now)                          # the server closes first
    link.run(lambda: bool(ca.of(PeerClosed)))
    a.close(conn, link.now)
    link.run(lambda: bool(cb.of(Closed)) and conn not in a.connections())
    assert b.info(server)["state"] == "TIME-WAIT"
    link.advance(link.now + SECOND)                    # later: newer timestamps
    again = a.connect((A, 40000), (B, 80), now=link.now)    # the same 4-tuple
    link.run(lambda: bool(ca.of(Connected)) and len(cb.of(Accepted)) == 2)
    assert server not in b.connections()               # the TIME-WAIT incarnation is gone
    assert a.info(again)["state"] == "ESTABLISHED"


def test_rfc6056_ephemeral_ports_are_distinct_and_in_range():
    a = TcpLayer(TcpConfig(), secret=b"a" * 32)
    ports = {a.info(a.connect((A, 0), (B, 80), now=0))["local"][1] for _ in range(500)}
    assert len(ports) == 500 and all(49152 <= p <= 65535 for p in ports)
    assert len(a.segments_to_send()) == 500                       # one SYN each


def test_rfc9293_3_10_7_2_listener_on_an_address_wins_over_the_wildcard():
    b = TcpLayer(TcpConfig(), secret=b"b" * 32)
    wildcard = b.listen((None, 80))
    specific = b.listen((B, 80))
    other = ip_address("10.0.0.9")
    for dst, sport in ((B, 1000), (other, 1001)):
        b.receive(A, dst, Tcp(sport, 80, 1, 0, SYN, 1000, TcpOptions(mss=1460)).emit(A, dst), 0)
        ((_, _, synack),) = b.segments_to_send()
        b.receive(A, dst, Tcp(sport, 80, 2, (Tcp.parse(synack).seq + 1) & 0xFFFFFFFF, ACK,
                              1000).emit(A, dst), MS)
    listeners = [e.listener for e in b.events() if isinstance(e, Accepted)]
    assert listeners == [specific, wildcard]
    with pytest.raises(ValueError):
        b.listen((B, 80))                                  # already taken
