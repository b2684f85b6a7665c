"""SPSC rings: a deque is the model; indices start near 2**64; a scribbling peer is harmless."""

from __future__ import annotations

import collections
import mmap
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shmring import RingConsumer, RingProducer, descriptors, ring_bytes
from shmring.ring import M64

TAIL, HEAD = 0, 64


def make_ring(capacity: int, start: int = 0):
    buf = mmap.mmap(-1, ring_bytes(capacity) + 64)
    struct.pack_into("<Q", buf, 64 + TAIL, start)
    struct.pack_into("<Q", buf, 64 + HEAD, start)
    return buf, RingProducer(buf, 64, capacity), RingConsumer(buf, 64, capacity)


def numbered(first: int, n: int) -> np.ndarray:
    batch = descriptors(n)
    batch["offset"] = np.arange(first, first + n, dtype=np.uint64)
    batch["timestamp"] = batch["offset"] * np.uint64(3)
    return batch


ops = st.lists(st.tuples(st.sampled_from(["put", "get"]), st.integers(0, 40)), max_size=60)
starts = st.one_of(st.just(0), st.integers(M64 - 80, M64), st.integers(0, M64))


@settings(max_examples=150, deadline=None)
@given(capacity=st.sampled_from([2, 8, 32]), start=starts, steps=ops)
def test_ring_matches_a_bounded_fifo_model(capacity, start, steps):
    _, producer, consumer = make_ring(capacity, start)
    model: collections.deque[int] = collections.deque()
    counter = 0
    for op, n in steps:
        if op == "put":
            went = producer.enqueue(numbered(counter, n))
            assert went == min(n, capacity - len(model))
            model.extend(range(counter, counter + went))
            counter += went
        else:
            got = consumer.dequeue(n)
            expect = [model.popleft() for _ in range(min(n, len(model)))]
            assert got["offset"].tolist() == expect
            assert (got["timestamp"] == got["offset"] * np.uint64(3)).all()
        assert consumer.available() == len(model)
        assert producer.free_space() == capacity - len(model)
    assert producer.index_faults == consumer.index_faults == 0


def test_dequeue_returns_a_private_copy():
    buf, producer, consumer = make_ring(4)
    producer.enqueue(numbered(10, 2))
    got = consumer.dequeue()
    producer.enqueue(numbered(500, 4))       # slots are rewritten after the copy was taken
    assert got["offset"].tolist() == [10, 11]
    got["length"] = 7                        # and the copy is the caller's to edit
    assert consumer.dequeue()["length"].tolist() == [0, 0, 0, 0]


def test_raw_byte_paths_match_array_paths_across_the_wrap():
    _, producer, consumer = make_ring(8, start=M64 - 2)
    producer.enqueue(numbered(0, 5))
    consumer.dequeue(5)
    raw = numbered(100, 8).tobytes()
    assert producer.enqueue_bytes(memoryview(raw)) == 8
    into = bytearray(32 * 3)
    assert consumer.dequeue_into(memoryview(into)) == 3
    assert np.frombuffer(into, dtype=descriptors(0).dtype)["offset"].tolist() == [100, 101, 102]
    assert consumer.dequeue()["offset"].tolist() == list(range(103, 108))


def test_batch_of_another_layout_is_converted():
    _, producer, consumer = make_ring(4)
    other = np.zeros(2, dtype=[("offset", "<u8"), ("length", "<u4")])
    other["offset"] = [4096, 8192]
    other["length"] = [60, 1500]
    assert producer.enqueue(other) == 2
    got = consumer.dequeue()
    assert got["offset"].tolist() == [4096, 8192] and got["length"].tolist() == [60, 1500]


def test_capacity_is_checked_and_must_fit_the_buffer():
    for bad in (0, 1, 3, 6, 1 << 21):
        with pytest.raises(ValueError):
            ring_bytes(bad)
    with pytest.raises(ValueError):
        RingProducer(bytearray(ring_bytes(8) - 1), 0, 8)
    with pytest.raises(ValueError):
        RingConsumer(bytes(ring_bytes(8)), 0, 8)


def test_signal_request_is_set_by_consumer_and_cleared_by_producer():
    _, producer, consumer = make_ring(4)
    assert consumer.request_signal() == 0 and producer.signal_requested()
    producer.clear_signal_request()
    assert not producer.signal_requested()
    producer.enqueue(numbered(0, 1))
    assert consumer.request_signal() == 1        # the re-check sees the work: do not sleep
    consumer.cancel_signal()
    assert not producer.signal_requested()


@settings(max_examples=150, deadline=None)
@given(capacity=st.sampled_from([2, 8, 32]), start=starts,
       plan=st.lists(st.tuples(st.integers(0, 12), st.integers(0, M64), st.integers(0, M64),
                               st.integers(0, 12)), max_size=25))
def test_a_scribbling_peer_never_raises_or_yields_foreign_descriptors(capacity, start, plan):
    # A lying tail can make the consumer take slots the producer never filled, but what it
    # yields is always something that is in the slots: enqueued descriptors or the initial
    # zeros, never bytes from outside the ring.
    buf, producer, consumer = make_ring(capacity, start)
    sent: set[int] = {0}
    counter = 1000
    for put, bad_tail, bad_head, get in plan:
        went = producer.enqueue(numbered(counter, put))
        sent.update(range(counter, counter + went))
        counter += went
        struct.pack_into("<Q", buf, 64 + TAIL, bad_tail)     # the consumer's peer lies ...
        got = consumer.dequeue(get)
        assert len(got) <= capacity and set(got["offset"].tolist()) <= sent
        struct.pack_into("<Q", buf, 64 + HEAD, bad_head)     # ... and so does the producer's
        assert 0 <= producer.free_space() <= capacity
        assert 0 <= consumer.available() <= capacity


def test_index_faults_are_counted_and_last_good_value_kept():
    buf, producer, consumer = make_ring(8)
    producer.enqueue(numbered(0, 3))
    assert consumer.available() == 3
    struct.pack_into("<Q", buf, 64 + TAIL, 1000)              # beyond head + capacity
    assert consumer.available() == 3 and consumer.index_faults == 1
    struct.pack_into("<Q", buf, 64 + HEAD, 5)                 # beyond the producer's tail
    assert producer.free_space() == 5 and producer.index_faults == 1
    struct.pack_into("<Q", buf, 64 + TAIL, 3)                 # the truth again
    assert consumer.dequeue()["offset"].tolist() == [0, 1, 2]
