"""The raw-bytes calls (send_bytes, receive_bytes, release_bytes, reclaim_bytes) are the numpy
calls without the array: on any input, hostile or not, both reach the same descriptors, counts
and ownership."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shmring import BufferLedger, BufferPool, QueueEnd, Region, descriptors, queue_bytes
from shmring.ledger import SMALL
from tests.test_ledger_paths import BUF, NBUF, REGION, lengths, offsets

CAP = 8
rows = st.lists(st.tuples(offsets, lengths, st.integers(0, 2**64 - 1)), min_size=1,
                max_size=2 * SMALL)


class _Pair:
    def __init__(self, held: list[bool]) -> None:
        self.rings = Region.create("q.rings", queue_bytes(CAP))
        self.data = Region.create("q.data", REGION)
        origin = BufferLedger(REGION, BUF)
        origin.held[:] = held
        self.producer = QueueEnd("q", "producer", self.rings, self.data, CAP, origin, None, None)
        self.consumer = QueueEnd("q", "consumer", self.rings, self.data, CAP,
                                 BufferLedger(REGION, BUF), None, None)

    def state(self) -> tuple:
        return (self.producer.stats(), self.consumer.stats(), self.producer.ledger.held.tolist(),
                self.consumer.ledger.held.tolist())

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()
        self.rings.close()
        self.data.close()


def _batch(batch_rows) -> np.ndarray:
    batch = descriptors(len(batch_rows))
    batch["offset"] = [r[0] for r in batch_rows]
    batch["length"] = [r[1] for r in batch_rows]
    batch["timestamp"] = [r[2] for r in batch_rows]
    return batch


@settings(max_examples=300, deadline=None)
@given(rows, st.lists(st.booleans(), min_size=NBUF, max_size=NBUF),
       st.integers(0, 2 * SMALL))
def test_bytes_and_arrays_reach_the_same_verdicts(batch_rows, held, take):
    batch = _batch(batch_rows)
    arrays, raw = _Pair(held), _Pair(held)
    try:
        assert arrays.producer.send(batch) == raw.producer.send_bytes(batch.tobytes())
        got = arrays.consumer.receive(take)
        got_raw = raw.consumer.receive_bytes(take)
        assert got.tobytes() == bytes(got_raw)
        assert arrays.consumer.release(got) == raw.consumer.release_bytes(got_raw)
        assert arrays.consumer.settle() == raw.consumer.settle()
        assert arrays.producer.reclaim().tobytes() == bytes(raw.producer.reclaim_bytes())
        assert arrays.state() == raw.state()
    finally:
        arrays.close()
        raw.close()


def test_a_raw_release_the_free_ring_cannot_take_waits_in_order():
    pair = _Pair([True] * NBUF)
    try:
        pool = BufferPool(pair.producer.ledger)
        held = []
        for _ in range(2):
            assert pair.producer.send_bytes(pool.take(CAP).tobytes()) == CAP
            held.append(bytes(pair.consumer.receive_bytes()))
        assert pair.consumer.release_bytes(held[0] + held[1]) == CAP   # 16 wait, still held
        assert pair.consumer.settle() == CAP
        assert bytes(pair.producer.reclaim_bytes()) == held[0]
        assert pair.consumer.settle() == 0
        assert bytes(pair.producer.reclaim_bytes()) == held[1]
        assert pair.consumer.ledger.held_count() == 0
    finally:
        pair.close()
