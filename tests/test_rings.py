"""Rings and queue pairs: model-based properties, ownership, and hostile peers."""

from __future__ import annotations

import collections
import ctypes
import json
import mmap
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shmring import (
    BufferLedger,
    BufferPool,
    QueueEnd,
    Region,
    RegionError,
    RingConsumer,
    RingProducer,
    descriptors,
    queue_bytes,
    ring_bytes,
)
from shmring.ring import M64

# -- rings -----------------------------------------------------------------------------------


def _ring(capacity: int, start: int = 0):
    buf = bytearray(ring_bytes(capacity))
    hdr = np.ndarray(3, dtype=np.uint64, buffer=buf, offset=0)
    hdr[0] = start      # tail
    np.ndarray(1, dtype=np.uint64, buffer=buf, offset=64)[0] = start   # head
    del hdr
    return buf, RingProducer(buf, 0, capacity), RingConsumer(buf, 0, capacity)


def _batch(values):
    batch = descriptors(len(values))
    batch["offset"] = values
    batch["timestamp"] = values
    return batch


@settings(max_examples=200, deadline=None)
@given(capacity=st.sampled_from([2, 4, 8, 64]),
       start=st.one_of(st.just(0), st.integers(M64 - 300, M64)),
       ops=st.lists(st.tuples(st.booleans(), st.integers(0, 70)), max_size=60))
def test_ring_behaves_like_a_bounded_fifo(capacity, start, ops):
    """Against a deque model, with indices that wrap past 2**64 during the run."""
    _, producer, consumer = _ring(capacity, start)
    model: collections.deque[int] = collections.deque()
    counter = 0
    for is_enqueue, n in ops:
        if is_enqueue:
            values = list(range(counter, counter + n))
            done = producer.enqueue(_batch(values))
            assert done == min(n, capacity - len(model))      # full: takes what fits
            model.extend(values[:done])
            counter += n
        else:
            got = consumer.dequeue(n)
            want = [model.popleft() for _ in range(min(n, len(model)))]
            assert got["offset"].tolist() == want
        assert consumer.available() == len(model)
        assert producer.free_space() == capacity - len(model)
    assert producer.index_faults == consumer.index_faults == 0


def test_capacity_must_be_a_power_of_two():
    with pytest.raises(ValueError):
        ring_bytes(1000)


@settings(max_examples=200, deadline=None)
@given(garbage=st.lists(st.integers(0, M64), min_size=1, max_size=20),
       queued=st.integers(0, 8))
def test_scribbled_indices_never_yield_foreign_descriptors(garbage, queued):
    """A peer writing any values into head and tail cannot make an end raise, read outside its
    slots, or take more than a ring's worth at once. (What a plausible forged tail exposes is
    stale slot contents, which is why queue ends validate every descriptor: next tests.)"""
    buf, producer, consumer = _ring(8)
    producer.enqueue(_batch(list(range(100, 100 + queued))))
    words = np.ndarray(9, dtype=np.uint64, buffer=buf, offset=0)
    seen = []
    for value in garbage:
        words[0] = value        # the consumer's view of tail
        got = consumer.dequeue()
        assert len(got) <= 8
        seen.extend(got["offset"].tolist())
        words[8] = value        # the producer's view of head
        assert 0 <= producer.free_space() <= 8
    assert set(seen) <= set(range(100, 100 + queued)) | {0}     # enqueued, or a slot's zeros


def test_signal_request_protocol():
    _, producer, consumer = _ring(4)
    assert consumer.request_signal() == 0          # nothing there: safe to sleep
    assert producer.signal_requested()
    producer.enqueue(_batch([1]))
    producer.clear_signal_request()
    assert not producer.signal_requested()
    assert consumer.request_signal() == 1          # re-check sees the frame: do not sleep


# -- ownership ---------------------------------------------------------------------------------


def _pair(nbuf=16, buffer_size=256, capacity=8):
    data = Region.create("data", nbuf * buffer_size)
    rings = Region.create("rings", queue_bytes(capacity))
    mine, theirs = BufferLedger(data.size, buffer_size), BufferLedger(data.size, buffer_size)
    mine.hold_initial(0, nbuf)
    producer = QueueEnd("q", "producer", rings, data, capacity, mine, None, None)
    consumer = QueueEnd("q", "consumer", rings, data, capacity, theirs, None, None)
    return producer, consumer, BufferPool(mine)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["send", "receive", "release", "reclaim"]),
                                st.integers(0, 10)), max_size=50))
def test_a_buffer_is_held_by_exactly_one_place(steps):
    producer, consumer, pool = _pair()
    consumer_held = []
    for op, n in steps:
        if op == "send":
            batch = pool.take(n)
            sent = producer.send(batch)
            pool.give(batch[sent:])
        elif op == "receive":
            consumer_held.extend(consumer.receive(n)["offset"].tolist())
        elif op == "release":
            going, consumer_held = consumer_held[:n], consumer_held[n:]
            batch = descriptors(len(going))
            batch["offset"] = going
            left = consumer.release(batch, defer=False)
            consumer_held = going[left:] + consumer_held
        else:
            pool.give(producer.reclaim(n))
        total = (producer.ledger.held_count() + consumer.ledger.held_count()
                 + consumer.pending() + producer.pending())
        assert total == 16                               # nothing lost, nothing duplicated
        assert not (producer.ledger.held & consumer.ledger.held).any()


def test_bad_descriptors_are_counted_and_dropped():
    producer, consumer, _pool = _pair()
    bad = descriptors(6)
    bad["offset"] = [16 * 256, 100, 0, 256, 512, 1 << 63]   # out, misaligned, ok, ok, ok, out
    bad["length"] = [0, 0, 10, 300, 10, 0]                  # 300 is too long for 256-byte buffers
    # a hostile producer writes them straight into the ring, bypassing its own ledger
    producer._out.enqueue(bad)
    got = consumer.receive()
    assert got["offset"].tolist() == [0, 512]
    stats = consumer.stats()
    assert (stats["bad_offset"], stats["bad_alignment"], stats["bad_length"]) == (2, 1, 1)
    again = descriptors(3)
    again["offset"] = [0, 768, 768]                          # held already; twice in one batch
    producer._out.enqueue(again)
    assert consumer.receive()["offset"].tolist() == [768]
    assert consumer.stats()["duplicate"] == 2


def test_only_held_buffers_may_leave():
    producer, consumer, pool = _pair()
    foreign = descriptors(2)
    foreign["offset"] = [0, 256]
    assert consumer.release(foreign) == 2            # consumed from the caller's view ...
    assert consumer.stats()["not_held"] == 2         # ... but refused, and counted
    assert producer.reclaim().size == 0


# -- regions -----------------------------------------------------------------------------------


def test_regions_are_sealed_against_resizing():
    region = Region.create("sealed", 8192)
    with pytest.raises(PermissionError):
        os.ftruncate(region.fd, 4096)
    with pytest.raises(PermissionError):
        os.ftruncate(region.fd, 1 << 20)
    fd = os.memfd_create("unsealed", os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, 4096)
    with pytest.raises(RegionError, match="not sealed"):
        Region.attach("unsealed", fd, "rw")


def test_a_read_only_grant_cannot_be_mapped_or_protected_writable():
    region = Region.create("ro", 8192)
    fd = region.grant_fd("r")
    with pytest.raises(PermissionError):
        mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    view = Region.attach("ro", fd, "r")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    assert libc.mprotect(view.array.ctypes.data, 4096, mmap.PROT_READ | mmap.PROT_WRITE) == -1
    assert ctypes.get_errno() == 13     # EACCES
    region.array[0] = 7
    assert view.array[0] == 7           # it is the same memory, seen read-only


def test_a_store_into_a_read_only_mapping_faults():
    code = """
import ctypes, sys
from shmring import Region
region = Region.create("ro", 4096)
view = Region.attach("ro", region.grant_fd("r"), "r")
ctypes.memset(view.array.ctypes.data, 1, 1)
print("stored")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == -signal.SIGSEGV and "stored" not in proc.stdout


def test_bench_rings_reports_every_contender(tmp_path):
    out = tmp_path / "rings.json"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "bench", "rings", "--seconds",
                           "0.02", "--json", str(out)], capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result["throughput"]) == {"1", "32", "256"}
    for row in result["throughput"].values():
        assert row["capnet"] > 0 and row["mp_queue"] > 0 and row["mp_pipe"] > 0
        assert row["ratio_queue"] == round(row["capnet"] / row["mp_queue"], 2)
    assert {"capnet", "eventfd", "pipe", "mp_queue", "ratio_eventfd"} <= set(
        result["round_trip_us"])
