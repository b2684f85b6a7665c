"""Confinement of a component process: what it may still do once its program is imported.

``confine()`` runs after the grants (fds) are received and before any component code, in a
single-threaded process (Landlock and seccomp bind the calling thread only, so a second thread
would stay free: it is refused; the launcher sets OPENBLAS_NUM_THREADS=1 for numpy). In order:

1. close every descriptor above 2 not in ``keep_fds`` (listed from /proc/self/fd);
2. rlimits: CORE=0, FSIZE=``file_size`` (0: no file grows through any fd; None: unchanged),
   NPROC=0, and AS / CPU / NOFILE when asked (NOFILE defaults to max(64, highest kept fd + 16));
3. PR_SET_DUMPABLE=0 (no /proc/PID/mem, no core, /proc/PID owned by root);
4. if root: no supplementary groups, gid and uid 65534 (nobody): every capability set is
   emptied, and CapEff/CapPrm/CapAmb are checked to be 0 or SandboxError is raised;
5. PR_SET_NO_NEW_PRIVS=1;
6. Landlock: a domain handling every right of the running ABI with no rules (``landlock.py``);
   without Landlock (ABI 0) SandboxError, unless CAPNET_ALLOW_NO_LANDLOCK=1;
7. the seccomp filter (``seccomp.py``, policy in ``syscalls.py``): allowed calls run, file-system
   probing fails with EPERM, anything else kills the process with SIGSYS.

After it, the process can run an event loop over its fds (read/write, sendmsg/recvmsg, epoll,
mmap, eventfds, timers, signals to itself), numpy and msgpack work, and exceptions print their
tracebacks (without source lines). It cannot open, create, execute or stat paths, make sockets,
start processes or threads, touch another process's memory or descriptors, or signal outside
its own Landlock domain. Residual: ``newfstatat(fd, "/abs/path", AT_EMPTY_PATH)`` reveals file
metadata (see ``syscalls.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.sandbox import landlock, privileges, seccomp

SUPPORTED_ARCHES = ("x86_64",)


class SandboxError(Exception):
    """Confinement could not be completed; the component must not run."""


@dataclass(frozen=True)
class Confinement:
    keep_fds: tuple[int, ...] = ()       # everything else above 2 is closed
    memory: int | None = None            # RLIMIT_AS, bytes
    cpu_seconds: int | None = None       # RLIMIT_CPU
    open_files: int | None = None        # RLIMIT_NOFILE; default max(64, highest kept fd + 16)
    allow_ioctl: bool = True             # False: ioctl fails with EPERM
    file_size: int | None = 0            # RLIMIT_FSIZE bytes; None leaves it unlimited


def _limits(c: Confinement, keep: set[int]) -> dict[str, int]:
    limits = {"CORE": 0, "NPROC": 0,
              "NOFILE": c.open_files or max(64, max(keep, default=2) + 16)}
    if c.file_size is not None:
        limits["FSIZE"] = c.file_size
    if c.memory is not None:
        limits["AS"] = c.memory
    if c.cpu_seconds is not None:
        limits["CPU"] = c.cpu_seconds
    return limits


def _check_capabilities() -> int:
    status = privileges.status_fields("CapEff", "CapPrm", "CapAmb")
    left = {k: int(v, 16) for k, v in status.items() if int(v, 16)}
    if len(status) != 3 or left:
        raise SandboxError(f"capabilities remain after dropping privileges: {left or status}")
    return 0


def confine(c: Confinement) -> dict:
    """Give up every authority but the kept fds; returns a report of what was applied."""
    arch = os.uname().machine
    if arch not in SUPPORTED_ARCHES:
        raise SandboxError(f"no seccomp policy for {arch}; supported: {SUPPORTED_ARCHES}")
    threads = privileges.thread_count()
    if threads != 1:
        raise SandboxError(f"confine() needs a single-threaded process, this one has {threads} "
                           "threads (for numpy set OPENBLAS_NUM_THREADS=1)")
    abi = landlock.abi_version()
    if abi < 1 and os.environ.get("CAPNET_ALLOW_NO_LANDLOCK") != "1":
        raise SandboxError("Landlock is unavailable in this kernel; refusing to confine without "
                           "it (set CAPNET_ALLOW_NO_LANDLOCK=1 to accept seccomp alone)")
    try:
        return _apply(c, abi)
    except (OSError, ValueError) as exc:
        raise SandboxError(f"confinement failed: {exc}") from exc


def _apply(c: Confinement, abi: int) -> dict:
    keep = {fd for fd in c.keep_fds if fd > 2}
    closed = privileges.close_other_fds(keep)
    limits = _limits(c, keep)
    privileges.set_limits(limits)
    privileges.prctl(privileges.PR_SET_DUMPABLE, 0)
    privileges.drop_identity()
    report: dict = {"closed_fds": closed, "kept_fds": sorted(keep | {0, 1, 2}),
                    "rlimits": limits, "dumpable": False, "uid": os.getuid(),
                    "gid": os.getgid(), "groups": os.getgroups(),
                    "capabilities": _check_capabilities()}
    privileges.prctl(privileges.PR_SET_NO_NEW_PRIVS, 1)
    report["no_new_privs"] = privileges.prctl(privileges.PR_GET_NO_NEW_PRIVS, 0) == 1
    if abi >= 1:
        report.update(landlock.restrict_self(abi))
    else:
        report.update({"landlock": "unavailable", "landlock_abi": 0})
    report.update(seccomp.install(c.allow_ioctl))
    return report


__all__ = ["Confinement", "SandboxError", "confine"]
