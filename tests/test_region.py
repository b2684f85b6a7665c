"""Regions: sealed memfds, grants, and every route by which a read-only holder might write.

Faulting checks run in a child interpreter so a SIGSEGV kills the child, not pytest. The route
of reopening ``/proc/self/fd/N`` read-write is closed by the component sandbox (seccomp and
Landlock), which the sandbox tests prove; here the fd is inside pytest, unsandboxed.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from shmring import Region, RegionError
from shmring.region import PAGE

CHILD_PRELUDE = """
import ctypes, errno, mmap, os, sys
from shmring import Region
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
fd = int(sys.argv[1])
r = Region.attach("data", fd, "r")
addr = r.array.__array_interface__["data"][0]      # the start of the read-only mapping
"""


def run_child(body: str, fd: int) -> subprocess.CompletedProcess:
    code = CHILD_PRELUDE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code, str(fd)], pass_fds=(fd,),
                          capture_output=True, text=True, timeout=30,
                          cwd=os.path.dirname(os.path.dirname(__file__)))


@pytest.fixture
def region():
    r = Region.create("data", 3 * PAGE + 1)
    r.array[:5] = [1, 2, 3, 4, 5]
    yield r
    r.close()


def test_create_rounds_up_to_pages_and_seals(region):
    assert region.size == 4 * PAGE and region.perms == "rw"
    seals = fcntl.fcntl(region.fd, fcntl.F_GET_SEALS)
    wanted = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
    assert seals & wanted == wanted


def test_rw_grant_shares_memory_both_ways(region):
    fd = region.grant_fd("rw")
    other = Region.attach("data", fd, "rw", size=region.size)
    try:
        assert list(other.array[:5]) == [1, 2, 3, 4, 5]
        other.array[100] = 42
        assert region.array[100] == 42
    finally:
        other.close()


def test_read_only_attach_sees_writes_but_numpy_refuses_stores(region):
    fd = region.grant_fd("r")
    ro = Region.attach("data", fd, "r")
    try:
        region.array[7] = 99
        assert ro.array[7] == 99 and ro.perms == "r"
        with pytest.raises(ValueError):
            ro.array[7] = 1
    finally:
        ro.close()


def test_grant_rejects_unknown_perms(region):
    with pytest.raises(RegionError, match="data"):
        region.grant_fd("w")


def test_attach_checks_size_and_seals(region):
    fd = region.grant_fd("rw")
    with pytest.raises(RegionError, match="data"):
        Region.attach("data", fd, "rw", size=region.size + PAGE)
    os.close(fd)
    plain = os.memfd_create("unsealed", os.MFD_CLOEXEC)
    os.ftruncate(plain, PAGE)
    with pytest.raises(RegionError, match="unsealed"):
        Region.attach("unsealed", plain, "rw")
    os.close(plain)


def test_close_is_idempotent():
    r = Region.create("tmp", PAGE)
    r.close()
    r.close()
    assert r.fd == -1


def test_read_only_fd_cannot_be_mapped_writable(region):
    fd = region.grant_fd("r")
    try:
        with pytest.raises(PermissionError):
            mmap.mmap(fd, region.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)


def test_seals_stop_resizing_and_resealing(region):
    for size in (region.size + PAGE, region.size - PAGE, 0):
        with pytest.raises(OSError) as err:
            os.ftruncate(region.fd, size)
        assert err.value.errno == errno.EPERM
    with pytest.raises(OSError) as err:
        fcntl.fcntl(region.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
    assert err.value.errno == errno.EPERM
    assert region.size == os.fstat(region.fd).st_size


def test_store_through_read_only_mapping_dies_with_sigsegv(region):
    fd = region.grant_fd("r")
    try:
        result = run_child("""
            print("attached", flush=True)
            ctypes.memset(addr, 0x41, 1)
            print("stored", flush=True)
        """, fd)
    finally:
        os.close(fd)
    assert result.returncode == -signal.SIGSEGV, result.stderr
    assert "attached" in result.stdout and "stored" not in result.stdout
    assert region.array[0] == 1


def test_mprotect_to_writable_fails_with_eacces(region):
    fd = region.grant_fd("r")
    try:
        result = run_child("""
            rc = libc.mprotect(addr, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE)
            print(rc, ctypes.get_errno())
        """, fd)
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["-1", str(errno.EACCES)]


def test_read_only_holder_cannot_resize_or_unseal(region):
    fd = region.grant_fd("r")
    try:
        result = run_child("""
            import fcntl
            for attempt in (lambda: os.ftruncate(fd, 0), lambda: os.ftruncate(fd, 1 << 30),
                            lambda: fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)):
                try:
                    attempt()
                    print("allowed")
                except OSError as e:
                    print(errno.errorcode[e.errno])
            print(r.array[:5].tolist())
        """, fd)
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert "allowed" not in lines
    assert lines[3] == "[1, 2, 3, 4, 5]"
    assert np.array_equal(region.array[:5], [1, 2, 3, 4, 5])
    assert os.fstat(region.fd).st_size == region.size
