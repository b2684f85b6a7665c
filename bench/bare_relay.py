"""The floor under any Python pipeline on this machine: three bare processes relaying timestamps.

A sender paced at the offered rate writes its send time into a ring of slots in shared memory and
advances a counter; a relay copies each new slot into a second ring; a sink takes each and records
now − send time. No validation, no descriptors, no notifications: each process busy-polls its
counter (yielding the CPU between looks), as capnet's components do with ``wait = "poll"``. With
``pinned`` the sender has a core of its own and relay and sink share another (the best placement
of three on two cores). What this measures is what three Python processes on this machine's
cores can do at best, so capnet's latency can be read against it.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import time

import numpy as np

SLOTS = 4096
_SENT, _RELAYED = 0, 1              # counter words at the head of the shared page
_RING_A, _RING_B = 8, 8 + SLOTS     # word offsets of the two rings of send times


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _follow(words, counter: int, total: int, take) -> None:
    """Busy-poll ``words[counter]`` (yielding between looks) until it reaches ``total``; hand
    each new range of sequence numbers to ``take(first, end)``."""
    done = 0
    while done < total:
        seen = words[counter]
        if seen == done:
            os.sched_yield()
            continue
        take(done, seen)
        done = seen


def _relay(mem: mmap.mmap, total: int, cpu: int | None) -> None:
    _pin(cpu)
    words = memoryview(mem).cast("Q")

    def take(first: int, end: int) -> None:
        for seq in range(first, end):
            words[_RING_B + seq % SLOTS] = words[_RING_A + seq % SLOTS]
        words[_RELAYED] = end

    _follow(words, _SENT, total, take)


def _sink(mem: mmap.mmap, total: int, out, cpu: int | None) -> None:
    _pin(cpu)
    words = memoryview(mem).cast("Q")
    sent, arrived = np.zeros(total, np.int64), np.zeros(total, np.int64)

    def take(first: int, end: int) -> None:
        now = time.monotonic_ns()
        for seq in range(first, end):
            sent[seq] = words[_RING_B + seq % SLOTS]
            arrived[seq] = now

    _follow(words, _RELAYED, total, take)
    out.send((sent, arrived))


def measure(rate: float, seconds: float, pinned: bool = False) -> dict:
    """p50/p90/p99 (µs) of sender → relay → sink at ``rate`` frames/s for ``seconds``, and
    whether the sink saw every send time, in order."""
    cpus = sorted(os.sched_getaffinity(0))
    if pinned and len(cpus) < 2:
        return {"error": "pinning needs two CPUs"}
    mine, theirs_cpu = (cpus[0], cpus[1]) if pinned else (None, None)
    total = max(1000, int(rate * seconds))
    mem = mmap.mmap(-1, (_RING_B + SLOTS) * 8)
    words = memoryview(mem).cast("Q")
    ctx = mp.get_context("fork")
    theirs, ours = ctx.Pipe(duplex=False)
    relay = ctx.Process(target=_relay, args=(mem, total, theirs_cpu))
    sink = ctx.Process(target=_sink, args=(mem, total, ours, theirs_cpu))
    relay.start()
    sink.start()
    before = os.sched_getaffinity(0)
    _pin(mine)
    try:
        step = 1e9 / rate
        start = time.monotonic_ns() + 50_000_000      # let both settle first
        for seq in range(total):
            due = start + int(seq * step)
            while time.monotonic_ns() < due or seq - words[_RELAYED] >= SLOTS:
                pass                                    # (never overwrite what is not relayed)
            words[_RING_A + seq % SLOTS] = time.monotonic_ns()
            words[_SENT] = seq + 1
        got = theirs.recv() if theirs.poll(30) else None
    finally:
        os.sched_setaffinity(0, before)
        for proc in (relay, sink):
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        words.release()
        mem.close()
    if got is None:
        return {"error": "the sink did not finish"}
    sent, arrived = got
    latency = (arrived - sent) / 1000
    return {"offered_fps": rate, "pinned": pinned, "frames": int(len(latency)),
            "in_order": bool(np.all(np.diff(sent) > 0)),
            **{k: round(float(np.percentile(latency, q)), 1)
               for k, q in (("p50", 50), ("p90", 90), ("p99", 99))}}
