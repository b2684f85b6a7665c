"""``Device.send_batch`` (the gateway's fast path) against ``Device.send`` one packet at a time:
the same datagrams (endpoint, message type, length), the same counters, the same rekeying,
and ciphertext the peer opens to the very packets sent."""

from __future__ import annotations

from gateway.wireguard import Output
from gateway.wireguard import messages as wm
from gateway.wireguard.timers import SECOND, Timing
from tests.test_wireguard_core import A_EP, B_EP, handshake, ip_packet, make_pair


def _shape(out: Output) -> list:
    return [(ep, wm.message_type(d), len(d)) for ep, d in out.datagrams]


def _run_both(timing, rounds):
    """Feed the same packets to two fresh pairs: one by ``send``, one by ``send_batch``."""
    results = []
    for batched in (False, True):
        a, b = make_pair(timing=timing)
        shapes, opened = [], []
        steps = rounds(a, b)
        out = None
        while True:
            try:
                now, packets = steps.send(out)
            except StopIteration:
                break
            out = Output()
            if batched:
                a.send_batch(packets, now, out)
            else:
                for p in packets:
                    a.send(p, now, out)
            shapes.append(_shape(out))
            for _, d in out.datagrams:
                if wm.message_type(d) == wm.TRANSPORT_TYPE:
                    opened += b.receive(d, A_EP, now).packets
        results.append((shapes, opened, dict(a.counters)))
    return results


def test_batch_equals_one_by_one_before_and_after_the_handshake():
    sizes = [0, 1, 15, 16, 17, 100, 1379, 1380, 1392]
    data = [ip_packet("10.0.0.1", "10.0.0.2", bytes([n % 251]) * n) for n in sizes]
    other = ip_packet("10.0.0.1", "10.9.3.4", b"to the /16")
    odd = [b"", b"\x45" * 10, b"\x60" * 30, ip_packet("10.0.0.1", "192.0.2.9")]  # not IP, no route

    def rounds(a, b):
        out = yield SECOND, odd + data[:2]             # no session yet: staged, one initiation
        (_, init), = out.datagrams
        yield 2 * SECOND, [data[2]]
        (_, resp), = b.receive(init, A_EP, 2 * SECOND).datagrams
        for _, d in a.receive(resp, B_EP, 2 * SECOND).datagrams:    # the staged packets
            b.receive(d, A_EP, 2 * SECOND)
        yield 3 * SECOND, data + [other] + odd

    (shapes1, opened1, counters1), (shapes2, opened2, counters2) = _run_both(None, rounds)
    assert shapes1 == shapes2 and counters1 == counters2
    assert opened2 == opened1 == data + [other]
    assert counters2["dropped.not_ip"] == 6 and counters2["dropped.no_route"] == 2
    assert counters2["staged"] == 3 and counters2["initiation_sent"] >= 1


def test_batch_rekeys_after_messages_and_stages_when_the_key_is_spent():
    timing = Timing(rekey_after_messages=5, reject_after_messages=8)
    packets = [ip_packet("10.0.0.1", "10.0.0.2", bytes([i]) * 40) for i in range(12)]

    def rounds(a, b):
        handshake(a, b, SECOND)
        yield 20 * SECOND, packets                     # initiations are rate-limited

    (shapes1, opened1, counters1), (shapes2, opened2, counters2) = _run_both(timing, rounds)
    assert shapes1 == shapes2 and counters1 == counters2 and opened1 == opened2
    kinds = [kind for _, kind, _ in shapes2[0]]
    assert wm.INITIATION_TYPE in kinds                  # rekey after 5 messages
    assert counters2["staged"] > 0                      # after 8, the key is rejected
    assert opened2 == packets[:len(opened2)] and B_EP == shapes2[0][0][0]


def test_batch_into_buffers_writes_what_send_batch_would_and_keeps_copies_of_staged_packets():
    # the gateway's fast path: ciphertext written straight into a caller's buffers
    sizes = [0, 17, 100, 1380, 1392]
    data = [ip_packet("10.0.0.1", "10.0.0.2", bytes([n % 251]) * n) for n in sizes]
    slot, headroom = 2048, 28
    results = []
    for into in (False, True):
        a, b = make_pair()
        red = bytearray(b"".join(data))                 # the packets as views of one buffer
        views, at = [], 0
        for p in data:
            views.append(memoryview(red)[at:at + len(p)])
            at += len(p)
        staged_out = Output()
        a.send_batch_into(views[:2], SECOND, staged_out)    # no session: staged, initiation
        red[:] = bytes(len(red))                        # the caller reuses its buffers
        (_, init), = staged_out.datagrams
        (_, resp), = b.receive(init, A_EP, SECOND).datagrams
        flushed = a.receive(resp, B_EP, SECOND).datagrams   # the staged packets, as copies
        assert [p for _, d in flushed for p in b.receive(d, A_EP, SECOND).packets] == data[:2]
        red[:] = b"".join(data)
        out = Output()
        if into:
            black = bytearray(slot * len(views))
            offsets = [i * slot + headroom for i in range(len(views))]
            room = 16 + 1408 + 16                       # the last (1412-byte) packet does not fit
            written = a.send_batch_into(views, 2 * SECOND, out, memoryview(black), offsets,
                                        room)
            got = [(ep, bytes(black[o:o + n]))
                   for (ep, n), o in zip(written, offsets[:len(written)], strict=True)]
            assert len(written) == len(data) - 1 and len(out.datagrams) == 1
            datagrams = got + out.datagrams
        else:
            a.send_batch(views, 2 * SECOND, out)
            datagrams = out.datagrams
        assert [p for _, d in datagrams for p in b.receive(d, A_EP, 2 * SECOND).packets] == data
        results.append(([(ep, len(d)) for ep, d in datagrams], dict(a.counters)))
    assert results[0] == results[1]


def test_receive_into_delivers_what_receive_would_and_wipes_what_it_refuses():
    # the gateway's fast path the other way: a packet decrypted straight into a red buffer
    sizes = [0, 17, 100, 1380, 1392]
    data = [ip_packet("10.0.0.1", "10.0.0.2", bytes([n % 251 + 1]) * n) for n in sizes]
    spoofed = ip_packet("10.7.7.7", "10.0.0.2", b"not from an allowed IP")
    results = []
    for into in (False, True):
        a, b = make_pair()
        handshake(a, b, SECOND)
        out = Output()
        a.send_batch(data + [spoofed], 2 * SECOND, out)
        keepalive = Output()
        a._keepalive(next(iter(a.peers.values())), 2 * SECOND, keepalive)
        sealed, keepalive = out.datagrams, keepalive.datagrams
        forged = bytearray(sealed[1][1])
        forged[-1] ^= 1                                   # the tag no longer matches
        arrivals = [d for _, d in sealed] + [bytes(forged), sealed[0][1]] + \
            [d for _, d in keepalive]                      # ... and a replay, a keepalive
        delivered = []
        for d in arrivals:
            out = Output()
            if into:
                red = bytearray(b"\xee" * 2048)
                n = b.receive_into(d, A_EP, 2 * SECOND, out, memoryview(red)[:1500])
                if n:
                    delivered.append(bytes(red[:n]))
                else:                   # refused: no byte of its plaintext is left there
                    size = max(0, len(d) - 32)
                    assert red[:size] in (bytes(size), b"\xee" * size)
                    assert red[size:] == b"\xee" * (2048 - size)
                delivered += out.packets
            else:
                delivered += b.receive(d, A_EP, 2 * SECOND, out).packets
        results.append((delivered, dict(b.counters)))
    assert results[0] == results[1]
    assert results[0][0] == data
    counters = results[0][1]
    assert counters["dropped.auth_failed"] == counters["dropped.replayed"] == 1
    assert counters["dropped.allowed_ips"] == counters["keepalive_received"] == 1
