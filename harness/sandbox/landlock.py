"""Landlock through its raw syscalls (ctypes): a domain of the process's own with no rules.

The ruleset handles every access right the running kernel's ABI knows, and grants none, so:
no path can be opened, created, removed, executed or truncated (ABI 1-3), no device ioctl on a
newly opened file (ABI 5), no TCP bind or connect (ABI 4), and no signal or abstract Unix socket
reaching a process outside the domain (ABI 6). Descriptors opened before ``restrict_self`` keep
the rights they were opened with: that is how grants reach a confined component.
"""

from __future__ import annotations

import ctypes
import os

SYS_CREATE_RULESET, SYS_RESTRICT_SELF = 444, 446   # same numbers on every architecture
CREATE_RULESET_VERSION = 1

# handled_access_fs: bits 0-12 since ABI 1, REFER (13) ABI 2, TRUNCATE (14) ABI 3,
# IOCTL_DEV (15) ABI 5
_FS_BITS_BY_ABI = ((1, 13), (2, 14), (3, 15), (5, 16))
ACCESS_NET_BIND_TCP, ACCESS_NET_CONNECT_TCP = 1 << 0, 1 << 1                    # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1                        # ABI 6


class RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi_version() -> int:
    """The running kernel's Landlock ABI version; 0 when Landlock is absent or disabled."""
    version = _libc.syscall(ctypes.c_long(SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                            ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(0, int(version))


def handled_rights(abi: int) -> tuple[int, int, int, int]:
    """(fs, net, scoped, struct size) for a ruleset that handles everything ``abi`` knows."""
    if abi < 1:
        raise ValueError("Landlock ABI must be >= 1")
    fs_bits = max(bits for version, bits in _FS_BITS_BY_ABI if version <= abi)
    fs = (1 << fs_bits) - 1
    net = ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    return fs, net, scoped, size


def restrict_self(abi: int) -> dict:
    """Enforce a rule-less ruleset on the calling thread. Needs no_new_privs (or CAP_SYS_ADMIN)."""
    fs, net, scoped, size = handled_rights(abi)
    attr = RulesetAttr(fs, net, scoped)
    fd = _libc.syscall(ctypes.c_long(SYS_CREATE_RULESET), ctypes.byref(attr),
                       ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset failed: {os.strerror(err)}")
    try:
        if _libc.syscall(ctypes.c_long(SYS_RESTRICT_SELF), ctypes.c_int(fd),
                         ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self failed: {os.strerror(err)}")
    finally:
        os.close(fd)
    return {"landlock": "enforced", "landlock_abi": abi,
            "landlock_handled": {"fs": fs, "net": net, "scoped": scoped}}
