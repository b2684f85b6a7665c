"""A full memory barrier, from Python.

The consumer-signalled protocol (``shmring.ring``) is a pair of store-then-load sequences in two
processes: the consumer stores its wake-up request, then loads the ring's tail; the producer
stores the tail, then loads the request. x86-64 may let a load pass an earlier store to another
address, and then both sides see stale values: the producer does not signal, the consumer
sleeps, and the frame waits for the bounded sleep to end — a lost wake-up. A full barrier
between each store and its load rules that out.

Python has no fence, but an uncontended lock's acquire and release are locked read-modify-write
instructions (glibc semaphores: compare-exchange, fetch-add), which x86-64 orders against every
earlier store and later load. About 0.1 µs.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()


def full_fence() -> None:
    """Order every store before this call against every load after it."""
    _LOCK.acquire()
    _LOCK.release()
