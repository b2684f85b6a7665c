"""A seccomp-BPF filter of our own, built from the tables in ``syscalls.py`` (no libseccomp).

Program, in order: the architecture must be x86-64 (else KILL_PROCESS); x32 numbers
(``nr & 0x40000000``) kill; the argument-checked calls (``newfstatat``, ``prlimit64``, ``ioctl``)
get their own small blocks; then one ``jeq nr / ret`` pair per allowed call (ALLOW) and per
probing call (ERRNO(EPERM)); everything else falls through to KILL_PROCESS. The result depends
only on the architecture and the number except in the argument blocks, so the kernel's
per-syscall action cache makes every plain allowed call free after the first.
"""

from __future__ import annotations

import ctypes
import errno
import os

from harness.sandbox import syscalls

# classic BPF opcodes
LD_W_ABS = 0x20      # BPF_LD | BPF_W | BPF_ABS
JEQ = 0x15           # BPF_JMP | BPF_JEQ | BPF_K
JGE = 0x35           # BPF_JMP | BPF_JGE | BPF_K
RET = 0x06           # BPF_RET | BPF_K

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
RET_EPERM = RET_ERRNO | errno.EPERM

AUDIT_ARCH = {"x86_64": 0xC000003E}
X32_SYSCALL_BIT = 0x40000000
AT_FDCWD = 0xFFFFFF9C          # -100 as the kernel sees an int argument
AT_EMPTY_PATH = 0x1000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C

# offsets in struct seccomp_data
NR, ARCH = 0, 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i


def _arg_hi(i: int) -> int:
    return 16 + 8 * i + 4


SECCOMP_SET_MODE_FILTER = 1
Instruction = tuple[int, int, int, int]


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def _ld(offset: int) -> Instruction:
    return (LD_W_ABS, 0, 0, offset)


def _ret(action: int) -> Instruction:
    return (RET, 0, 0, action)


def _guarded(nr: int, body: list[Instruction]) -> list[Instruction]:
    """``if nr == NR: body`` (body must end in returns); the accumulator holds nr afterwards."""
    return [(JEQ, 0, len(body), nr), *body]


def _fstat_block(table: dict[str, int]) -> list[Instruction]:
    # allow newfstatat(fd, "", buf, AT_EMPTY_PATH) with fd != AT_FDCWD; else EPERM
    return _guarded(table["newfstatat"], [
        _ld(_arg_lo(3)), (JEQ, 0, 3, AT_EMPTY_PATH),
        _ld(_arg_lo(0)), (JEQ, 1, 0, AT_FDCWD),
        _ret(RET_ALLOW), _ret(RET_EPERM),
    ])


def _prlimit_block(table: dict[str, int]) -> list[Instruction]:
    # allow prlimit64(0, resource, NULL, old): reading one's own limits; else kill
    return _guarded(table["prlimit64"], [
        _ld(_arg_lo(0)), (JEQ, 0, 7, 0), _ld(_arg_hi(0)), (JEQ, 0, 5, 0),
        _ld(_arg_lo(2)), (JEQ, 0, 3, 0), _ld(_arg_hi(2)), (JEQ, 0, 1, 0),
        _ret(RET_ALLOW), _ret(RET_KILL_PROCESS),
    ])


def _ioctl_block(table: dict[str, int], allow_ioctl: bool) -> list[Instruction]:
    if not allow_ioctl:
        return _guarded(table["ioctl"], [_ret(RET_EPERM)])
    return _guarded(table["ioctl"], [
        _ld(_arg_lo(1)), (JEQ, 2, 0, TIOCSTI), (JEQ, 1, 0, TIOCLINUX),
        _ret(RET_ALLOW), _ret(RET_EPERM),
    ])


def build(arch: str = "x86_64", allow_ioctl: bool = True) -> list[Instruction]:
    """The filter program for ``arch`` as (code, jt, jf, k) instructions."""
    if arch not in syscalls.TABLES:
        raise ValueError(f"no seccomp policy for architecture {arch!r} (have: "
                         f"{', '.join(syscalls.TABLES)})")
    table = syscalls.TABLES[arch]
    prog: list[Instruction] = [
        _ld(ARCH), (JEQ, 1, 0, AUDIT_ARCH[arch]), _ret(RET_KILL_PROCESS),
        _ld(NR), (JGE, 0, 1, X32_SYSCALL_BIT), _ret(RET_KILL_PROCESS),
    ]
    prog += _fstat_block(table) + _prlimit_block(table) + _ioctl_block(table, allow_ioctl)
    for names, action in ((syscalls.ALLOWED, RET_ALLOW), (syscalls.PROBING, RET_EPERM)):
        for name in names:
            if name in table:       # a legacy call the architecture lacks is simply absent
                prog += [(JEQ, 0, 1, table[name]), _ret(action)]
    prog.append(_ret(RET_KILL_PROCESS))
    return prog


def install(allow_ioctl: bool = True) -> dict:
    """Install the filter on the calling thread (confine() checks the process has only one).

    Needs no_new_privs. Returns a description for the confinement report.
    """
    arch = os.uname().machine
    prog = build(arch, allow_ioctl)
    filters = (SockFilter * len(prog))(*(SockFilter(*ins) for ins in prog))
    fprog = SockFprog(len(prog), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    nr = syscalls.TABLES[arch]["seccomp"]
    if libc.syscall(ctypes.c_long(nr), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                    ctypes.c_uint(0), ctypes.byref(fprog)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp(SET_MODE_FILTER) failed: {os.strerror(err)}")
    allowed = len(syscalls.ALLOWED) + len(syscalls.ARGUMENT_CHECKED) - (0 if allow_ioctl else 1)
    return {"seccomp": f"allow-list, {allowed} syscalls ({len(syscalls.ARGUMENT_CHECKED)} "
                       f"argument-checked), {len(syscalls.PROBING)} EPERM, others kill",
            "seccomp_instructions": len(prog), "arch": arch}
