"""Queue pairs, buffer ownership (ledger and pool) and notifications, within one process."""

from __future__ import annotations

import os

import numpy as np
import pytest

from shmring import (
    BufferLedger,
    BufferPool,
    QueueEnd,
    Region,
    Waiter,
    descriptors,
    drain,
    make_eventfd,
    queue_bytes,
    signal,
)

BUF = 2048
NBUF = 64
CAP = 16


def batch_at(*offsets: int, length: int = 60) -> np.ndarray:
    batch = descriptors(len(offsets))
    batch["offset"] = offsets
    batch["length"] = length
    return batch


@pytest.fixture
def pair():
    rings = Region.create("q.rings", queue_bytes(CAP))
    data = Region.create("q.data", NBUF * BUF)
    up_bell, down_bell = make_eventfd(), make_eventfd()
    origin = BufferLedger(data.size, BUF)
    origin.hold_initial(0, NBUF)
    producer = QueueEnd("q", "producer", rings, data, CAP, origin, down_bell, up_bell)
    consumer = QueueEnd("q", "consumer", rings, data, CAP, BufferLedger(data.size, BUF),
                        up_bell, down_bell)
    yield producer, consumer
    producer.close()
    consumer.close()
    for fd in (up_bell, down_bell):
        os.close(fd)
    rings.close()
    data.close()


def test_ledger_rejects_each_bad_kind_and_counts_the_reason():
    ledger = BufferLedger(NBUF * BUF, BUF)
    ledger.hold_initial(0, 1)
    counters: dict = {}
    bad = batch_at(0, BUF, BUF, 3 * BUF + 1, NBUF * BUF, 2**64 - BUF, 5 * BUF, 6 * BUF)
    bad["length"][6] = BUF + 1
    good = ledger.accept(bad, counters)
    assert good["offset"].tolist() == [BUF, 6 * BUF]
    assert counters == {"duplicate": 2, "bad_alignment": 1, "bad_offset": 2, "bad_length": 1}
    assert ledger.held_count() == 3 and ledger.held[[0, 1, 6]].all()


def test_ledger_lets_only_held_buffers_leave_and_only_once():
    ledger = BufferLedger(NBUF * BUF, BUF)
    ledger.hold_initial(2, 2)
    counters: dict = {}
    out = ledger.surrender(batch_at(2 * BUF, 2 * BUF, 3 * BUF, 9 * BUF), counters)
    assert out["offset"].tolist() == [2 * BUF, 3 * BUF]
    assert counters == {"not_held": 2} and ledger.held_count() == 0
    with pytest.raises(ValueError):
        ledger.hold_initial(NBUF - 1, 2)


def test_pool_hands_out_each_held_buffer_once():
    ledger = BufferLedger(NBUF * BUF, BUF)
    ledger.hold_initial(0, 10)
    pool = BufferPool(ledger)
    first, second = pool.take(6), pool.take(6)
    assert len(first) == 6 and len(second) == 4 and len(pool) == 0
    offsets = np.concatenate((first["offset"], second["offset"]))
    assert sorted(offsets.tolist()) == [i * BUF for i in range(10)]
    assert (first["length"] == 0).all()
    pool.give(first[:2])
    assert len(pool) == 2 and set(pool.take(5)["offset"].tolist()) == set(first["offset"][:2])


def test_frames_go_down_and_buffers_come_back_through_many_wraps(pair):
    producer, consumer = pair
    pool = BufferPool(producer.ledger)
    expect_next = 0
    for round_ in range(40):
        batch = pool.take(5 + round_ % 7)
        batch["timestamp"] = np.arange(expect_next, expect_next + len(batch), dtype=np.uint64)
        assert producer.send(batch) == len(batch)
        got = consumer.receive()
        assert got["timestamp"].tolist() == list(range(expect_next, expect_next + len(batch)))
        expect_next += len(batch)
        assert consumer.release(got) == len(got)
        pool.give(producer.reclaim())
    assert len(pool) == NBUF and producer.ledger.held_count() == NBUF
    assert consumer.ledger.held_count() == 0
    p, c = producer.stats(), consumer.stats()
    assert p["sent"] == c["received"] == c["released"] == p["reclaimed"] == expect_next
    assert p["index_faults"] == c["index_faults"] == p["full"] == 0


def test_a_full_ring_refuses_and_the_caller_keeps_the_rest(pair):
    producer, consumer = pair
    batch = BufferPool(producer.ledger).take(CAP + 4)
    assert producer.send(batch) == CAP
    assert producer.stats()["full"] == 4
    kept = batch[CAP:]["offset"] // BUF
    assert producer.ledger.held[kept.astype(np.intp)].all()
    assert consumer.pending() == CAP


def test_consumer_drops_what_a_hostile_producer_sends(pair):
    producer, consumer = pair
    # write straight into the active ring, bypassing the producer's ledger
    producer._out.enqueue(batch_at(0, 0, 7, NBUF * BUF, BUF))
    got = consumer.receive()
    assert got["offset"].tolist() == [0, BUF]
    stats = consumer.stats()
    assert (stats["duplicate"], stats["bad_alignment"], stats["bad_offset"]) == (1, 1, 1)
    assert stats["received"] == 2


def test_ends_refuse_the_other_roles_calls(pair):
    producer, consumer = pair
    with pytest.raises(RuntimeError):
        producer.receive()
    with pytest.raises(RuntimeError):
        consumer.send(batch_at(0))


def test_producer_notifies_only_an_armed_consumer(pair):
    producer, consumer = pair
    pool = BufferPool(producer.ledger)
    producer.send(pool.take(1))
    assert not producer.flush()                   # the consumer did not ask
    assert drain(consumer.wait_fd) == 0
    consumer.receive()
    assert consumer.arm() == 0                    # nothing pending: safe to sleep
    assert not producer.flush()                   # nothing enqueued since the last flush
    producer.send(pool.take(2))
    assert producer.flush()
    assert drain(consumer.wait_fd) == 1
    producer.send(pool.take(1))
    assert not producer.flush()                   # the request was used up by the first flush
    assert consumer.arm() == 3                    # the re-check sees the work


def test_signals_coalesce_and_drain_resets():
    fd = make_eventfd()
    try:
        assert drain(fd) == 0
        for _ in range(3):
            signal(fd)
        assert drain(fd) == 3 and drain(fd) == 0
    finally:
        os.close(fd)


def test_waiter_returns_at_once_when_polling_finds_work_else_reports_ready_keys():
    waiter, a, b = Waiter(), make_eventfd(), make_eventfd()
    try:
        waiter.register(a, "a")
        waiter.register(b, "b")
        calls = []
        assert waiter.wait(10**9, spin_ns=10**9, poll=lambda: calls.append(1) or True) == []
        assert len(calls) == 1
        signal(b)
        assert waiter.wait(10**9, spin_ns=0) == ["b"]
        assert waiter.wait(10**9, spin_ns=0) == ["b"]      # the caller drains, not the waiter
        drain(b)
        assert waiter.wait(0) == []
        waiter.unregister(b)
        signal(b)
        assert waiter.wait(0) == []
    finally:
        waiter.close()
        os.close(a)
        os.close(b)


def test_a_release_the_free_ring_cannot_take_waits_in_order_and_settles_later(pair):
    producer, consumer = pair
    pool = BufferPool(producer.ledger)
    got = []
    for _ in range(3):                      # 3 × 16 buffers held by the consumer
        assert producer.send(pool.take(CAP)) == CAP
        got.append(consumer.receive())
    held = np.concatenate(got)
    assert consumer.release(held) == CAP    # the free ring takes 16; 32 wait, still held here
    assert consumer.ledger.held_count() == 2 * CAP and consumer.settle() == 2 * CAP
    first = producer.reclaim()
    assert first["offset"].tolist() == held["offset"][:CAP].tolist()
    assert consumer.settle() == CAP         # room again: the next 16 leave, in order
    assert producer.reclaim()["offset"].tolist() == held["offset"][CAP:2 * CAP].tolist()
    assert consumer.settle() == 0
    assert producer.reclaim()["offset"].tolist() == held["offset"][2 * CAP:].tolist()
    assert consumer.ledger.held_count() == 0 and consumer.stats()["released"] == 3 * CAP
