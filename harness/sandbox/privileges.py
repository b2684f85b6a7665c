"""The plain-Unix parts of confinement: descriptors, resource limits, prctl flags and identity."""

from __future__ import annotations

import ctypes
import os
import resource

NOBODY = 65534
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong)


def open_fds() -> list[int]:
    """Every descriptor open in this process (from /proc/self/fd, else by probing)."""
    try:
        names = os.listdir("/proc/self/fd")       # its own directory fd shows up, then closes
    except OSError:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        names = [str(fd) for fd in range(min(soft, 65536)) if _is_open(fd)]
    return sorted(fd for fd in map(int, names) if _is_open(fd))


def _is_open(fd: int) -> bool:
    try:
        os.get_inheritable(fd)
    except OSError:
        return False
    return True


def close_other_fds(keep: set[int]) -> int:
    """Close every descriptor above 2 that is not in ``keep``; returns how many were closed."""
    missing = sorted(fd for fd in keep if not _is_open(fd))
    if missing:
        raise ValueError(f"descriptors to keep are not open: {missing}")
    closed = 0
    for fd in open_fds():
        if fd > 2 and fd not in keep:
            os.close(fd)
            closed += 1
    return closed


def set_limits(limits: dict[str, int]) -> None:
    """Set each ``RLIMIT_<name>`` to ``value`` (soft and hard; CPU gets hard = soft + 1 so a
    process that ignores SIGXCPU is still killed)."""
    for name, value in limits.items():
        hard = value + 1 if name == "CPU" else value
        resource.setrlimit(getattr(resource, "RLIMIT_" + name), (value, hard))


def prctl(option: int, value: int) -> int:
    result = _libc.prctl(option, value, 0, 0, 0)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {value}) failed: {os.strerror(err)}")
    return result


def drop_identity() -> None:
    """As root (any of the real, effective or saved ids), become nobody:nogroup with no
    supplementary groups. Changing every uid from 0 clears all capability sets."""
    if 0 in os.getresuid():
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)


def status_fields(*names: str) -> dict[str, str]:
    """Selected fields of /proc/self/status (e.g. CapEff, Uid, Threads)."""
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in names:
                fields[key] = value.strip()
    return fields


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))
