"""TCP segmentation offload in the core (``TcpConfig.segment_offload``): new data leaves in
segments of whole MSS multiples that a NIC cuts; retransmissions stay one MSS; the peer takes
the large segments as any other (as the kernel's GRO hands them up)."""

from __future__ import annotations

import random

import pytest

from netstack.tcp import TcpConfig
from netstack.wire.tcp import Tcp
from tests.test_tcp_connection import established, parsed
from tests.test_tcp_link import A

OFFLOAD = 60_000


def test_new_data_leaves_in_whole_mss_multiples_up_to_the_offload_size():
    a, b, link, conn, server, ca, cb = established(TcpConfig(segment_offload=OFFLOAD))
    payload = random.Random(1).randbytes(250_000)
    a.send(conn, payload, link.now)
    link.run(lambda: cb.got(server) == payload)
    segment = a.info(conn)["segment_size"]
    sizes = [len(s.payload) for s in parsed(link, A) if s.payload]
    assert segment < max(sizes) <= OFFLOAD // segment * segment
    # the congestion window opens in MSS steps: the segments are whole numbers of MSS
    assert sum(n % segment == 0 for n in sizes) >= len(sizes) - 1


def test_retransmissions_are_one_mss_each():
    a, b, link, conn, server, ca, cb = established(TcpConfig(segment_offload=OFFLOAD))
    lost: list[int] = []

    segment = a.info(conn)["segment_size"]

    def lose_one_large(src, dst, data):
        seg = Tcp.parse(data)
        if src == A and len(seg.payload) > segment and not lost:
            lost.append(seg.seq)
            return None
        return data

    link.tap = lose_one_large
    payload = random.Random(2).randbytes(250_000)
    a.send(conn, payload, link.now)
    link.run(lambda: cb.got(server) == payload)
    assert lost
    again = [s for s in parsed(link, A) if s.payload and s.seq == lost[0]][1:]   # not the lost one
    assert again and all(len(s.payload) <= segment for s in again)


def test_offload_size_is_bounded_by_one_ip_datagram():
    with pytest.raises(ValueError, match="segment_offload"):
        TcpConfig(segment_offload=65_500)
    assert TcpConfig(segment_offload=0).segment_offload == 0
