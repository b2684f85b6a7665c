"""Queue pairs between real processes: a faithful echo peer, and a hostile one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from shmring import (
    BufferLedger,
    BufferPool,
    QueueEnd,
    Region,
    Waiter,
    drain,
    make_eventfd,
    queue_bytes,
    ring_bytes,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUF = 2048
NBUF = 512
CAP = 256
TOTAL = 100_000

ECHO = f"""
import json, sys
import numpy as np
from shmring import BufferLedger, QueueEnd, Region, Waiter, descriptors, drain
rings_fd, data_fd, wake_me, wake_peer, total = map(int, sys.argv[1:6])
rings = Region.attach("rings", rings_fd, "rw")
data = Region.attach("data", data_fd, "rw")
q = QueueEnd("q", "consumer", rings, data, {CAP}, BufferLedger(data.size, {BUF}),
             wake_peer, wake_me)
waiter = Waiter()
waiter.register(wake_me, "q")
seen, in_order, backlog = 0, True, descriptors(0)
while seen < total or len(backlog):
    got = q.receive()
    if len(got):
        in_order &= bool((got["timestamp"] == np.arange(seen, seen + len(got))).all())
        # the frame's first byte carries its number too: zero copy, read in place
        marks = data.array[got["offset"].astype(np.intp)]
        in_order &= bool((marks == (got["timestamp"] % 251).astype(np.uint8)).all())
        seen += len(got)
        backlog = np.concatenate((backlog, got))
    if len(backlog):                  # what does not fit on the free ring stays held here
        backlog = backlog[q.release(backlog, defer=False):]
        q.flush()
    if not len(got) and q.arm() == 0:
        waiter.wait(50_000_000, poll=q.pending)
        drain(wake_me)
print(json.dumps({{"seen": seen, "in_order": in_order, "stats": q.stats(),
                  "held": q.ledger.held_count()}}))
"""

HOSTILE = """
import random, struct, sys
import numpy as np
from shmring import Region, RingProducer, descriptors
rings_fd, data_fd, rounds = map(int, sys.argv[1:4])
rings = Region.attach("rings", rings_fd, "rw")
active = RingProducer(rings.mem, 0, %(cap)d)
rng = random.Random(7)
for i in range(rounds):
    junk = descriptors(rng.randrange(1, 40))
    junk["offset"] = [rng.choice([rng.randrange(2**64), rng.randrange(%(size)d),
                                  rng.randrange(%(nbuf)d) * %(buf)d, 0]) for _ in junk]
    junk["length"] = [rng.choice([60, 2**32 - 1, %(buf)d + 1]) for _ in junk]
    active.enqueue(junk)
    what = rng.randrange(4)
    if what == 0:                                   # lie about the active tail
        struct.pack_into("<Q", rings.mem, 0, rng.randrange(2**64))
    elif what == 1:                                 # move the free ring's head
        struct.pack_into("<Q", rings.mem, %(free)d + 64, rng.randrange(2**64))
    elif what == 2:                                 # rewrite slots in place
        start = 192 + rng.randrange(%(cap)d) * 32
        rings.mem[start:start + 32] = rng.randbytes(32)
    else:                                           # an honest tail again
        struct.pack_into("<Q", rings.mem, 0, active._tail)
print("done", flush=True)
"""


def spawn(code: str, fds: tuple[int, ...], *args: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, fds + args)], cwd=ROOT,
                            pass_fds=fds, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def regions():
    rings = Region.create("rings", queue_bytes(CAP))
    data = Region.create("data", NBUF * BUF)
    yield rings, data
    rings.close()
    data.close()


def test_100k_descriptors_round_trip_in_order_and_every_buffer_returns(regions):
    rings, data = regions
    wake_child, wake_me = make_eventfd(), make_eventfd()
    ledger = BufferLedger(data.size, BUF)
    ledger.hold_initial(0, NBUF)
    q = QueueEnd("q", "producer", rings, data, CAP, ledger, wake_child, wake_me)
    pool = BufferPool(ledger)
    child = spawn(ECHO, (rings.fd, data.fd, wake_child, wake_me), TOTAL)
    waiter = Waiter()
    waiter.register(wake_me, "q")
    sent = 0
    deadline = time.monotonic_ns() + 60 * 10**9
    try:
        while sent < TOTAL or len(pool) < NBUF:
            assert time.monotonic_ns() < deadline, "the echo peer stopped answering"
            assert child.poll() is None or sent >= TOTAL, child.communicate()
            pool.give(q.reclaim())
            batch = pool.take(min(64, TOTAL - sent, q.space()))
            if len(batch):
                batch["timestamp"] = np.arange(sent, sent + len(batch), dtype=np.uint64)
                data.array[batch["offset"].astype(np.intp)] = (batch["timestamp"] % 251)
                went = q.send(batch)
                pool.give(batch[went:])
                sent += went
                q.flush()
            elif q.arm() == 0:
                waiter.wait(50_000_000, poll=q.pending)
                drain(wake_me)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        waiter.close()
        os.close(wake_child)
        os.close(wake_me)
        q.close()
    report = json.loads(out)
    assert report["seen"] == TOTAL and report["in_order"], err
    assert report["held"] == 0 and ledger.held_count() == NBUF and len(pool) == NBUF
    mine, theirs = q.stats(), report["stats"]
    assert mine["sent"] == theirs["received"] == theirs["released"] == mine["reclaimed"] == TOTAL
    rejected = ("bad_offset", "bad_alignment", "bad_length", "duplicate", "not_held")
    assert all(mine[k] == theirs[k] == 0 for k in rejected + ("index_faults",))


def test_a_hostile_producer_cannot_make_the_trusted_consumer_fail(regions):
    rings, data = regions
    ledger = BufferLedger(data.size, BUF)
    q = QueueEnd("q", "consumer", rings, data, CAP, ledger, None, None)
    child = spawn(HOSTILE % {"cap": CAP, "buf": BUF, "nbuf": NBUF, "size": data.size,
                             "free": ring_bytes(CAP)},
                  (rings.fd, data.fd), 20_000)
    received = released = 0
    deadline = time.monotonic_ns() + 60 * 10**9
    try:
        while True:
            finished = child.poll() is not None
            got = q.receive()
            assert ((got["offset"] % BUF == 0) & (got["offset"] < data.size)).all()
            assert (got["length"] <= BUF).all()
            received += len(got)
            released += q.release(got[::2], defer=False)
            if finished:
                break
            assert time.monotonic_ns() < deadline
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        q.close()
    assert child.returncode == 0 and out.strip() == "done", err
    stats = q.stats()
    assert stats["received"] == received and received > 0
    assert stats["index_faults"] > 0
    assert stats["bad_offset"] > 0 and stats["bad_alignment"] > 0 and stats["bad_length"] > 0
    assert stats["duplicate"] > 0
    assert ledger.held_count() == received - released

