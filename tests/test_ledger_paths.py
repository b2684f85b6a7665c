"""The ledger checks small batches one descriptor at a time and large ones with numpy: both
paths must reach the same verdicts, counts and ownership on any input, hostile or not."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shmring import BufferLedger, descriptors
from shmring.ledger import SMALL

BUF, NBUF = 256, 16
REGION = BUF * NBUF

offsets = st.one_of(
    st.integers(0, NBUF - 1).map(lambda i: i * BUF),         # a buffer of the region
    st.integers(0, REGION + 4 * BUF),                         # anywhere, misaligned or outside
    st.integers(2**63, 2**64 - 1),                            # far outside
)
lengths = st.one_of(st.integers(0, BUF), st.integers(BUF + 1, 2**32 - 1))
rows = st.lists(st.tuples(offsets, lengths, st.integers(0, 2**64 - 1)), min_size=1,
                max_size=SMALL)


def _ledger(held: list[bool]) -> BufferLedger:
    ledger = BufferLedger(REGION, BUF)
    ledger.held[:] = held
    return ledger


@settings(max_examples=400, deadline=None)
@given(rows, st.lists(st.booleans(), min_size=NBUF, max_size=NBUF), st.booleans())
def test_small_and_vectorised_paths_agree(batch_rows, held, leaving):
    batch = descriptors(len(batch_rows))
    batch["offset"] = [r[0] for r in batch_rows]
    batch["length"] = [r[1] for r in batch_rows]
    batch["timestamp"] = [r[2] for r in batch_rows]
    reason = "not_held" if leaving else "duplicate"
    small, vectorised = _ledger(held), _ledger(held)
    small_counts: dict = {}
    vector_counts: dict = {}
    got = small._filter_small(batch.copy(), small_counts, leaving, reason)
    want = vectorised._filter_vectorised(batch.copy(), vector_counts, leaving, reason)
    assert got.tobytes() == want.tobytes()
    assert small_counts == vector_counts
    assert np.array_equal(small.held, vectorised.held)


def test_a_small_batch_naming_a_buffer_twice_keeps_one_and_counts_one():
    ledger = _ledger([False] * NBUF)
    batch = descriptors(3)
    batch["offset"] = [BUF, BUF, 2 * BUF]
    batch["length"] = 60
    batch["timestamp"] = [1, 2, 3]
    counters: dict = {}
    got = ledger.accept(batch, counters)
    assert sorted(got["offset"].tolist()) == [BUF, 2 * BUF]
    assert counters == {"duplicate": 1}
    assert ledger.held_count() == 2
