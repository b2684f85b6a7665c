"""Hostile components: each tries one way out of its protection domain.

Every attack prints ``ATTACK <name> blocked: <why>`` when the kernel refuses it and
``ATTACK <name> SUCCEEDED`` if it ever worked; attacks that the sandbox answers by killing the
process (seccomp) never print at all, and the supervisor reports the signal instead. Everything an
attack needs (ctypes, libc) is loaded at import time, before confinement, as a real attacker's
program would.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import signal
import socket

import numpy as np
import numpy.random  # noqa: F401  (loaded before confinement, like everything a component uses)

from harness import Component

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)

SYS_process_vm_readv = 310
SYS_pidfd_open = 434
SYS_pidfd_getfd = 438


def report(name: str, ok: bool, why: str = "") -> None:
    print(f"ATTACK {name} {'SUCCEEDED' if ok else 'blocked: ' + why}", flush=True)


def _frames(component: Component):
    return next(iter(component.regions.values()))


class OpenFile(Component):
    def init(self) -> None:
        try:
            with open("/etc/hostname", "rb") as fh:
                fh.read()
            report("open-file", True)
        except OSError as exc:
            report("open-file", False, errno.errorcode.get(exc.errno, str(exc)))


class ReopenReadOnlyRegion(Component):
    def init(self) -> None:
        region = _frames(self)
        try:
            fd = os.open(f"/proc/self/fd/{region.fd}", os.O_RDWR)
            os.close(fd)
            report("reopen-region-rw", True)
        except OSError as exc:
            report("reopen-region-rw", False, errno.errorcode.get(exc.errno, str(exc)))
        try:
            mm = mmap.mmap(region.fd, region.size, mmap.MAP_SHARED,
                           mmap.PROT_READ | mmap.PROT_WRITE)
            mm.close()
            report("map-region-rw", True)
        except OSError as exc:
            report("map-region-rw", False, errno.errorcode.get(exc.errno, str(exc)))


class MprotectReadOnlyRegion(Component):
    def init(self) -> None:
        address = _frames(self).array.ctypes.data
        if libc.mprotect(address, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE) == 0:
            report("mprotect-rw", True)
        else:
            report("mprotect-rw", False, errno.errorcode[ctypes.get_errno()])


class StoreIntoReadOnlyRegion(Component):
    """Dies with SIGSEGV: the store reaches a page mapped without write permission."""

    def init(self) -> None:
        address = _frames(self).array.ctypes.data
        libc.memset(address, 0x41, 64)
        report("store-read-only", True)


class OpenSocket(Component):
    """Dies with SIGSYS (seccomp)."""

    def init(self) -> None:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        report("socket", True)


class ReadSiblingMemory(Component):
    """Tries /proc/PID/mem of its neighbours (refused), then process_vm_readv (SIGSYS)."""

    def init(self) -> None:
        me = os.getpid()
        for pid in (me - 1, me + 1, os.getppid()):
            try:
                with open(f"/proc/{pid}/mem", "rb") as fh:
                    fh.read(1)
                report("proc-pid-mem", True)
                return
            except OSError as exc:
                report("proc-pid-mem", False, errno.errorcode.get(exc.errno, str(exc)))
        buf = ctypes.create_string_buffer(16)
        local = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 16)
        remote = (ctypes.c_void_p * 2)(0x400000, 16)
        libc.syscall(SYS_process_vm_readv, me - 1, local, 1, remote, 1, 0)
        report("process_vm_readv", True)


class StealSiblingFd(Component):
    """pidfd_open is outside the allow-list: SIGSYS before any fd can be taken."""

    def init(self) -> None:
        pidfd = libc.syscall(SYS_pidfd_open, os.getpid() - 1, 0)
        if pidfd >= 0:
            libc.syscall(SYS_pidfd_getfd, pidfd, 3, 0)
        report("pidfd_getfd", True)


class SignalSibling(Component):
    def init(self) -> None:
        try:
            os.kill(os.getppid(), signal.SIGCONT)
            report("signal-supervisor", True)
        except OSError as exc:
            report("signal-supervisor", False, errno.errorcode.get(exc.errno, str(exc)))


class RingScribbler(Component):
    """Consumer of one queue and producer of another that lies on every shared index and slot:
    head/tail set to garbage, descriptors out of bounds, misaligned, oversized and duplicated."""

    def init(self) -> None:
        self.rng = np.random.default_rng(7)
        self.turns = 0
        self.set_timer(self.now(), "scribble")

    def timeout(self, token) -> None:
        for q in self.queues.values():
            words = q.rings.array.view(np.uint64)
            # garbage over the whole ring region: indices, signal flags and every slot
            words[:] = self.rng.integers(0, 2**63, size=len(words), dtype=np.uint64)
        self.turns += 1
        if self.turns < 200:
            self.set_timer(self.now() + 1_000_000, "scribble")
        else:
            print("ATTACK scribble done", flush=True)


class NotificationFlood(Component):
    """Notifies its channel as fast as it can; the victim must keep working."""

    def init(self) -> None:
        self.sent = 0
        self.set_timer(self.now(), "flood")

    def timeout(self, token) -> None:
        channel = next(iter(self.channels.values()))
        fd = channel.notify_fd
        one = (1).to_bytes(8, "little")
        for _ in range(20000):
            try:
                os.write(fd, one)
            except BlockingIOError:
                pass
        self.sent += 20000
        if self.sent < 400000:
            self.set_timer(self.now(), "flood")
        else:
            print("ATTACK flood done", flush=True)


class FloodVictim(Component):
    """Counts the notifications it is woken for while its real work (a sink) goes on."""

    def init(self) -> None:
        self.wakeups = 0

    def notified(self, channel) -> None:
        if channel.kind == "channel":
            self.wakeups += 1
            return
        q = self.queues[channel.name]
        batch = q.receive()
        self.count("in", len(batch))
        self.count("out", len(batch))
        q.release(batch)

    def stats(self) -> dict:
        return {"wakeups": self.wakeups}
