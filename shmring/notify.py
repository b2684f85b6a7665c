"""Notifications (eventfds) and spin-then-block waiting.

Only producers notify, and only when the consumer asked to be woken (sDDF's consumer-signalled
protocol, see ``shmring.ring``). A waiter first polls for a bounded time (cheap when traffic is
steady), then blocks in epoll. The block is bounded too (``MAX_BLOCK_NS``): the signal protocol's
store-then-load pairs are not fenced from Python, so a rare lost wake-up costs at most that long.
"""

from __future__ import annotations

import os
import select
import time

MAX_BLOCK_NS = 20_000_000
_ONE = (1).to_bytes(8, "little")


def make_eventfd() -> int:
    return os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)


def signal(fd: int) -> None:
    """Wake the waiter on ``fd``; repeated signals before it wakes coalesce into one."""
    try:
        os.write(fd, _ONE)
    except BlockingIOError:     # counter saturated: the waiter is already due to wake
        pass


def drain(fd: int) -> int:
    """Consume pending signals on ``fd``; returns how many had accumulated (0 if none)."""
    try:
        return int.from_bytes(os.read(fd, 8), "little")
    except BlockingIOError:
        return 0


class Waiter:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._keys: dict[int, object] = {}

    def register(self, fd: int, key) -> None:
        self._keys[fd] = key
        self._epoll.register(fd, select.EPOLLIN)

    def unregister(self, fd: int) -> None:
        if self._keys.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def wait(self, timeout_ns: int | None, spin_ns: int = 20_000, poll=None) -> list:
        """Keys of ready fds; [] if ``poll()`` found work while spinning or the wait timed out."""
        if poll is not None and spin_ns > 0:
            end = time.monotonic_ns() + spin_ns
            while time.monotonic_ns() < end:
                if poll():
                    return []
        block = MAX_BLOCK_NS if timeout_ns is None else min(timeout_ns, MAX_BLOCK_NS)
        events = self._epoll.poll(block / 1e9)
        return [self._keys[fd] for fd, _ in events if fd in self._keys]

    def close(self) -> None:
        self._epoll.close()
