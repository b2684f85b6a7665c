"""Notifications (eventfds) and spin-then-block waiting.

Only producers notify, and only when the consumer asked to be woken (sDDF's consumer-signalled
protocol, see ``shmring.ring``). A waiter first polls for a bounded time (cheap when traffic is
steady), then blocks in epoll. The block is bounded too (``MAX_BLOCK_NS``): the signal protocol's
store-then-load pairs are not fenced from Python, so a rare lost wake-up costs at most that long.
A deadline closer than that is kept by a timerfd in the same epoll set: epoll's own timeout
counts whole milliseconds, a timerfd nanoseconds (so a replay paced at 10 µs gaps keeps time).
"""

from __future__ import annotations

import ctypes
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


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(None, use_errno=True)    # the running libc: no file is opened
CLOCK_MONOTONIC = 1
TFD_NONBLOCK, TFD_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC


class _TimerFd:
    """A one-shot CLOCK_MONOTONIC timerfd (timerfd_create(2))."""

    def __init__(self) -> None:
        self.fd = _libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")

    def arm(self, after_ns: int) -> None:
        after_ns = max(1, after_ns)           # zero would disarm it
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(after_ns // 10**9, after_ns % 10**9))
        if _libc.timerfd_settime(self.fd, 0, ctypes.byref(spec), None) < 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime")

    def close(self) -> None:
        os.close(self.fd)


class Waiter:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._keys: dict[int, object] = {}
        self._timer: _TimerFd | None = None      # made when a short deadline first needs it

    def register(self, fd: int, key) -> None:
        self._keys[fd] = key
        self._epoll.register(fd, select.EPOLLIN)

    def unregister(self, fd: int) -> None:
        if self._keys.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def wait(self, timeout_ns: int | None, spin_ns: int = 20_000, poll=None) -> list:
        """Keys of ready fds; [] if ``poll()`` found work while spinning or the wait timed out.
        The timeout counts from the call: spinning uses it up first."""
        start = time.monotonic_ns()
        if poll is not None and spin_ns > 0:
            if self.spin(spin_ns if timeout_ns is None else min(spin_ns, timeout_ns), poll):
                return []
        if timeout_ns is not None and timeout_ns < MAX_BLOCK_NS:
            left = start + timeout_ns - time.monotonic_ns()
            if left <= 0:
                events = self._epoll.poll(0)
            else:
                timer = self._timerfd()
                timer.arm(left)
                events = self._epoll.poll(MAX_BLOCK_NS / 1e9)
                drain(timer.fd)
        else:
            events = self._epoll.poll(MAX_BLOCK_NS / 1e9)
        return [self._keys[fd] for fd, _ in events if fd in self._keys]

    @staticmethod
    def spin(budget_ns: int, poll, yield_cpu: bool = False) -> bool:
        """Poll ``poll()`` for up to ``budget_ns``; whether it found work. With ``yield_cpu``,
        give the CPU to whatever else is runnable on it between polls (``sched_yield(2)``)."""
        end = time.monotonic_ns() + budget_ns
        while time.monotonic_ns() < end:
            if poll():
                return True
            if yield_cpu:
                os.sched_yield()
        return False

    def ready(self) -> list:
        """Keys of the fds ready now, without waiting."""
        return [self._keys[fd] for fd, _ in self._epoll.poll(0) if fd in self._keys]

    def _timerfd(self) -> _TimerFd:
        if self._timer is None:
            self._timer = _TimerFd()
            self._epoll.register(self._timer.fd, select.EPOLLIN)
        return self._timer

    def close(self) -> None:
        if self._timer is not None:
            self._timer.close()
        self._epoll.close()
