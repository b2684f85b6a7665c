"""The ARP core (RFC 826, RFC 1122 section 2.3.2) and its neighbour-cache state machine."""

from __future__ import annotations

from ipaddress import IPv4Address

from netstack.arp import DELAY, PROBE, REACHABLE, SECOND, STALE, ArpResolver, ResolutionFailed
from netstack.wire import ARP_REPLY, ARP_REQUEST, BROADCAST, Arp, Ethernet

OUR_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
OUR_IP, PEER_IP = IPv4Address("10.0.0.2"), IPv4Address("10.0.0.1")


def resolver(**limits) -> ArpResolver:
    return ArpResolver(OUR_MAC, OUR_IP, **limits)


def arp_of(frame: bytes) -> tuple[Ethernet, Arp]:
    eth = Ethernet.parse(frame)
    return eth, Arp.parse(eth.payload)


def reply(now_resolver: ArpResolver, now: int, ip=PEER_IP, mac=PEER_MAC) -> str:
    return now_resolver.receive(Arp(ARP_REPLY, mac, ip, OUR_MAC, OUR_IP).emit(), now)


def test_rfc5227_gratuitous_arp_on_start_announces_our_address():
    arp = resolver()
    arp.announce(0)
    eth, packet = arp_of(arp.frames.pop())
    assert eth.dst == BROADCAST and packet.op == ARP_REQUEST
    assert packet.sender_ip == packet.target_ip == OUR_IP and packet.sender_mac == OUR_MAC


def test_rfc826_request_for_us_is_answered_and_sender_learned():
    arp = resolver()
    fate = arp.receive(Arp(ARP_REQUEST, PEER_MAC, PEER_IP, b"\0" * 6, OUR_IP).emit(), 0)
    assert fate == "delivered.arp"
    eth, answer = arp_of(arp.frames.pop())
    assert eth.dst == PEER_MAC
    assert (answer.op, answer.sender_mac, answer.sender_ip, answer.target_mac,
            answer.target_ip) == (ARP_REPLY, OUR_MAC, OUR_IP, PEER_MAC, PEER_IP)
    assert arp.lookup(PEER_IP) == PEER_MAC


def test_rfc826_request_for_someone_else_teaches_nothing_new():
    arp = resolver()
    other = IPv4Address("10.0.0.9")
    assert arp.receive(Arp(ARP_REQUEST, PEER_MAC, PEER_IP, b"\0" * 6, other).emit(), 0) == \
        "drop.not_for_us"
    assert arp.frames == [] and arp.lookup(PEER_IP) is None


def test_rfc826_merge_updates_a_known_sender_even_when_not_the_target():
    arp = resolver()
    reply(arp, 0)
    new_mac = bytes.fromhex("0200000000ff")
    arp.receive(Arp(ARP_REQUEST, new_mac, PEER_IP, b"\0" * 6, IPv4Address("10.0.0.9")).emit(), 1)
    assert arp.lookup(PEER_IP) == new_mac


def test_rfc1122_2_3_2_2_packets_wait_for_resolution_and_go_out_after_the_reply():
    arp = resolver()
    assert arp.output(PEER_IP, 0x0800, b"first", 0)
    assert arp.output(PEER_IP, 0x0800, b"second", 0)
    eth, request = arp_of(arp.frames.pop())
    assert eth.dst == BROADCAST and request.target_ip == PEER_IP
    assert arp.frames == []
    reply(arp, 5)
    sent = [Ethernet.parse(f) for f in arp.frames]
    assert [(f.dst, f.payload) for f in sent] == [(PEER_MAC, b"first"), (PEER_MAC, b"second")]


def test_rfc1122_2_3_2_2_queue_is_bounded_per_neighbour_and_in_total():
    arp = resolver(queue_per_neighbour=2, queue_total=3)
    assert arp.output(PEER_IP, 0x0800, b"1", 0) and arp.output(PEER_IP, 0x0800, b"2", 0)
    assert not arp.output(PEER_IP, 0x0800, b"3", 0)
    assert arp.output(IPv4Address("10.0.0.7"), 0x0800, b"4", 0)
    assert not arp.output(IPv4Address("10.0.0.8"), 0x0800, b"5", 0)
    assert arp.counters["tx.drop.arp_queue_full"] == 2


def test_rfc1122_2_3_2_1_requests_are_retried_then_resolution_fails():
    arp = resolver(retrans_ns=SECOND, max_probes=3)
    arp.output(PEER_IP, 0x0800, b"x", 0)
    now = 0
    while (deadline := arp.next_deadline()) is not None:
        now = deadline
        arp.handle_timeout(now)
    requests = [arp_of(f)[1] for f in arp.frames]
    assert len(requests) == 3 and all(r.target_ip == PEER_IP for r in requests)
    assert now == 3 * SECOND                    # three requests one second apart, then give up
    assert arp.events == [ResolutionFailed(PEER_IP, 1)]
    assert arp.counters["tx.drop.unresolved"] == 1 and arp.queued == 0


def test_rfc1122_2_3_2_1_entries_age_and_are_refreshed_by_unicast_probes():
    arp = resolver(reachable_ns=30 * SECOND, delay_ns=5 * SECOND, retrans_ns=SECOND)
    arp.output(PEER_IP, 0x0800, b"x", 0)
    arp.receive(Arp(ARP_REPLY, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP).emit(), 0)
    arp.frames.clear()
    assert arp.entries[PEER_IP].state == REACHABLE
    arp.handle_timeout(30 * SECOND)
    assert arp.entries[PEER_IP].state == STALE
    arp.output(PEER_IP, 0x0800, b"y", 31 * SECOND)  # a stale entry is still used ...
    assert Ethernet.parse(arp.frames.pop()).payload == b"y"
    assert arp.entries[PEER_IP].state == DELAY      # ... and checked a little later
    arp.handle_timeout(36 * SECOND)
    assert arp.entries[PEER_IP].state == PROBE
    eth, probe = arp_of(arp.frames.pop())
    assert eth.dst == PEER_MAC and probe.target_ip == PEER_IP   # unicast refresh
    reply(arp, 36 * SECOND + 1)
    assert arp.entries[PEER_IP].state == REACHABLE


def test_address_conflict_is_counted_and_not_learned():
    arp = resolver()
    fate = arp.receive(Arp(ARP_REQUEST, PEER_MAC, OUR_IP, b"\0" * 6, OUR_IP).emit(), 0)
    assert fate == "drop.arp_conflict" and arp.counters["arp.address_conflict"] == 1
    assert arp.frames == []
