"""Regions: sealed memfds mapped with the permissions of a grant.

A region is created by the harness with ``memfd_create`` and sealed against shrinking, growing
and further sealing, so no holder can truncate it under another (which would turn the other's
reads into SIGBUS). A read-only grant is a separate ``O_RDONLY`` descriptor of the same memfd
(opened through ``/proc/self/fd``): the kernel refuses ``PROT_WRITE`` shared mappings of it and
``mprotect`` to writable on them, and a store into the read-only mapping faults. Reopening the
descriptor writable through ``/proc/self/fd/N`` is refused by the component sandbox (seccomp and
Landlock), which ``tests/test_hostile.py`` proves.
"""

from __future__ import annotations

import fcntl
import mmap
import os

import numpy as np

PAGE = mmap.PAGESIZE
REQUIRED_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


class RegionError(Exception):
    """A region could not be created, granted or attached as asked."""


def _round_up(size: int) -> int:
    return (size + PAGE - 1) // PAGE * PAGE


class Region:
    def __init__(self, name: str, fd: int, size: int, perms: str) -> None:
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if perms == "rw" else 0)
        self.name, self.fd, self.size, self.perms = name, fd, size, perms
        self.mem = mmap.mmap(fd, size, mmap.MAP_SHARED, prot)
        self.array = np.frombuffer(self.mem, dtype=np.uint8)
        if perms == "r":
            self.array.flags.writeable = False

    @classmethod
    def create(cls, name: str, size: int) -> Region:
        if size <= 0:
            raise RegionError(f"region '{name}': size must be > 0, got {size}")
        size = _round_up(size)
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, REQUIRED_SEALS)
            return cls(name, fd, size, "rw")
        except BaseException:
            os.close(fd)
            raise

    def grant_fd(self, perms: str) -> int:
        """A new descriptor to hand to a component; the caller closes it after sending."""
        if perms == "rw":
            return os.dup(self.fd)
        if perms == "r":
            return os.open(f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC)
        raise RegionError(f"region '{self.name}': perms must be 'r' or 'rw', got {perms!r}")

    @classmethod
    def attach(cls, name: str, fd: int, perms: str, size: int | None = None) -> Region:
        if perms not in ("r", "rw"):
            raise RegionError(f"region '{name}': perms must be 'r' or 'rw', got {perms!r}")
        actual = os.fstat(fd).st_size
        if size is not None and actual != size:
            raise RegionError(f"region '{name}': expected {size} bytes, the memfd has {actual}")
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        if seals & REQUIRED_SEALS != REQUIRED_SEALS:
            raise RegionError(f"region '{name}': memfd is not sealed against resizing")
        return cls(name, fd, actual, perms)

    def close(self) -> None:
        if self.fd < 0:
            return
        self.array = np.empty(0, dtype=np.uint8)
        try:
            self.mem.close()
        except BufferError:      # a view is still alive elsewhere; the mapping goes with it
            pass
        os.close(self.fd)
        self.fd = -1

    def __repr__(self) -> str:
        return f"Region({self.name!r}, {self.size} bytes, {self.perms})"
