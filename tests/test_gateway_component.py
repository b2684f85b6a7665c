"""The gateway component's seal path in one process, on real shmring queues (the set-up of
``bench.gateway_component``): after a handshake with a peer, a flood of 1420-byte packets is
sealed in whole batches straight into black buffers — every frame an IPv4/UDP transport
message to the peer's endpoint, which the peer opens to the packet sent — and conserved."""

from __future__ import annotations

from bench import gateway_component


def test_a_flood_is_sealed_in_whole_batches_into_black_buffers_and_conserved():
    result = gateway_component.run(packets=20 * gateway_component.BATCH)
    assert result["sealed"] == 20 * gateway_component.BATCH
    wg = result["wireguard"]
    assert wg["sent"] == result["sealed"]
    assert wg["handshake.response_accepted"] == 1
    assert wg["staged"] == wg["staged_sent"] == 1      # the packet that waited for the keys
    counters = result["counters"]
    dropped = sum(v for k, v in counters.items() if k.startswith("dropped."))
    assert counters["in"] == counters["out"] + dropped + counters["pending"]
    assert dropped == counters["dropped.handshake_consumed"] == 1
    # 20 whole batches, and the batch of the packet that started the handshake
    assert result["batch_mean"] == 20 * gateway_component.BATCH / 21   # staged_sent aside


def test_a_packet_too_big_for_a_black_buffer_is_dropped_and_counted_not_written_over():
    # 2040 bytes fit a 2048-byte red buffer, but not sealed behind the headers in a black one
    def packet(size, fill):
        head = bytes.fromhex("4500") + size.to_bytes(2, "big") + bytes.fromhex(
            "000040004011 0000 0ac80001 0ac80002".replace(" ", ""))
        return head + bytes([fill]) * (size - 20)
    small, big, other = packet(100, 1), packet(2040, 2), packet(1400, 3)
    result = gateway_component.seal([small, big, other])
    assert result["opened"] == [[small], [other]]
    counters = result["counters"]
    assert counters["dropped.too_big"] == 1
    dropped = sum(v for k, v in counters.items() if k.startswith("dropped."))
    assert counters["in"] == counters["out"] + dropped + counters["pending"]


def test_the_peers_packets_are_opened_straight_into_red_buffers_and_a_forgery_is_not():
    def packet(size, fill):
        return gateway_component._ip(gateway_component.RED_DST, gateway_component.RED_SRC, 17,
                                     bytes([fill]) * (size - 20))
    packets = [packet(n, i + 1) for i, n in enumerate((28, 100, 1400, 1420, 64))]
    result = gateway_component.open_sealed(packets, forge=(2,))
    assert result["delivered"] == packets[:2] + packets[3:]      # in order, byte for byte
    assert result["wireguard"]["dropped.auth_failed"] == 1
    assert result["wireguard"]["received"] == 4
    counters = result["counters"]
    dropped = sum(v for k, v in counters.items() if k.startswith("dropped."))
    assert counters["in"] == counters["out"] + dropped + counters["pending"]
