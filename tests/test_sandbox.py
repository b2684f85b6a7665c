"""The component sandbox: each test confines a fresh child interpreter and tries one thing.

The child prints result lines; attacks the sandbox answers with KILL_PROCESS must end the child
with SIGSYS before it prints the line after the attempt. The seccomp program itself is also run
through a small classic-BPF interpreter to check every syscall in the policy tables gets its
intended action.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.sandbox import landlock, seccomp, syscalls

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.sandbox

PRELUDE = """
import ctypes, errno, fcntl, json, mmap, os, resource, select, signal, socket, sys, threading
import traceback
import msgpack, numpy
from harness.sandbox import Confinement, SandboxError, confine
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def say(*parts):
    print(*parts, flush=True)

def attempt(name, call):
    try:
        call()
        say(name, "ok")
    except OSError as exc:
        say(name, type(exc).__name__, errno.errorcode.get(exc.errno, exc.errno))
"""


def child(code: str, pass_fds: tuple[int, ...] = (), env: dict | None = None,
          popen: bool = False):
    """Run ``code`` after the prelude in a fresh interpreter (root, single-threaded numpy)."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
                "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    argv = [sys.executable, "-c", PRELUDE + textwrap.dedent(code)]
    if popen:
        return subprocess.Popen(argv, pass_fds=pass_fds, env=full_env, cwd=ROOT, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    return subprocess.run(argv, pass_fds=pass_fds, env=full_env, cwd=ROOT, text=True,
                          capture_output=True, timeout=60)


def lines(proc) -> list[str]:
    return proc.stdout.splitlines()


def assert_ok(proc) -> None:
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"


# --- identity, limits and the report ------------------------------------------------------------

def test_identity_capabilities_and_limits_seen_from_outside():
    keep_r, keep_w = os.pipe()
    drop_r, drop_w = os.pipe()
    try:
        proc = child(f"""
            report = confine(Confinement(keep_fds=({keep_r},)))
            say("REPORT", json.dumps(report))
            os.read({keep_r}, 1)        # wait while the parent inspects /proc/<pid>
            say("done")
        """, pass_fds=(keep_r, drop_r), popen=True)
        first = proc.stdout.readline()
        assert first.startswith("REPORT "), first + proc.stderr.read()
        report = json.loads(first.split(" ", 1)[1])
        status = Path(f"/proc/{proc.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        os.write(keep_w, b"x")
        out, err = proc.communicate(timeout=30)
    finally:
        for fd in (keep_r, keep_w, drop_r, drop_w):
            os.close(fd)
    assert proc.returncode == 0, err
    assert out.strip() == "done"
    assert fields["Uid"].split() == ["65534"] * 4 and fields["Gid"].split() == ["65534"] * 4
    assert fields["Groups"].strip() == ""
    for cap in ("CapEff", "CapPrm", "CapAmb"):
        assert int(fields[cap], 16) == 0, cap
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"]
    assert report["uid"] == 65534 and report["gid"] == 65534 and report["capabilities"] == 0
    assert report["landlock_abi"] == landlock.abi_version() >= 1
    assert report["landlock"] == "enforced"
    assert report["seccomp"].startswith("allow-list, ")
    assert report["closed_fds"] >= 1                      # drop_r was not kept
    assert report["kept_fds"] == [0, 1, 2, keep_r]
    assert report["rlimits"]["CORE"] == 0 and report["rlimits"]["FSIZE"] == 0
    assert report["rlimits"]["NOFILE"] == max(64, keep_r + 16)
    assert report["no_new_privs"] is True


def test_rlimits_inside_and_file_size():
    with open(os.devnull, "rb"):
        pass
    path = Path(f"/tmp/capnet-sandbox-{os.getpid()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        proc = child(f"""
            confine(Confinement(keep_fds=({fd},), memory=4 << 30, cpu_seconds=30,
                                open_files=100))
            say("core", resource.getrlimit(resource.RLIMIT_CORE))
            say("nofile", resource.getrlimit(resource.RLIMIT_NOFILE))
            say("as", resource.getrlimit(resource.RLIMIT_AS))
            say("cpu", resource.getrlimit(resource.RLIMIT_CPU))
            attempt("grow-file", lambda: os.write({fd}, b"x"))
        """, pass_fds=(fd,))
        assert_ok(proc)
        assert lines(proc) == ["core (0, 0)", "nofile (100, 100)",
                               f"as ({4 << 30}, {4 << 30})", "cpu (30, 31)",
                               "grow-file OSError EFBIG"]
        proc = child(f"""
            confine(Confinement(keep_fds=({fd},), file_size=None))
            attempt("grow-file", lambda: os.write({fd}, b"capture"))
        """, pass_fds=(fd,))
        assert_ok(proc)
        assert lines(proc) == ["grow-file ok"]
        assert path.read_bytes() == b"capture"
    finally:
        os.close(fd)
        path.unlink()


# --- the file system ------------------------------------------------------------------------------

def test_open_file_is_permission_error():
    proc = child("""
        confine(Confinement())
        attempt("open", lambda: open("/etc/hostname", "rb").read())
        attempt("stat", lambda: os.stat("/etc/hostname"))
        attempt("listdir", lambda: os.listdir("/"))
        attempt("getcwd", os.getcwd)
    """)
    assert_ok(proc)
    assert lines(proc) == ["open PermissionError EPERM", "stat PermissionError EPERM",
                           "listdir PermissionError EPERM", "getcwd PermissionError EPERM"]


def test_inherited_memfd_cannot_be_reopened_through_proc():
    fd = os.memfd_create("region")
    os.ftruncate(fd, 4096)
    try:
        proc = child(f"""
            confine(Confinement(keep_fds=({fd},)))
            attempt("reopen", lambda: os.open("/proc/self/fd/{fd}", os.O_RDWR))
            say("fstat", os.fstat({fd}).st_size)
        """, pass_fds=(fd,))
    finally:
        os.close(fd)
    assert_ok(proc)
    assert lines(proc) == ["reopen PermissionError EPERM", "fstat 4096"]


def test_parent_memory_cannot_be_opened():
    proc = child("""
        confine(Confinement())
        attempt("parent-mem", lambda: open(f"/proc/{os.getppid()}/mem", "rb"))
    """)
    assert_ok(proc)
    assert lines(proc) == ["parent-mem PermissionError EPERM"]


# --- calls that kill ------------------------------------------------------------------------------

KILLING = {
    "socket": "socket.socket(socket.AF_INET, socket.SOCK_STREAM)",
    "socketpair": "socket.socketpair()",
    "execve": "os.execv('/bin/true', ['true'])",
    "fork": "os.fork()",
    "thread": "threading.Thread(target=print).start()",
    "memfd": "os.memfd_create('x')",
    "setrlimit": "resource.setrlimit(resource.RLIMIT_NOFILE, (10, 10))",
    "x32-getpid": "libc.syscall(0x40000000 | 39)",
    "process_vm_readv": """
        buf = ctypes.create_string_buffer(64)
        local = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 64)
        remote = (ctypes.c_void_p * 2)(0x400000, 64)
        libc.syscall(310, os.getppid(), local, 1, remote, 1, 0)
    """,
    "pidfd_getfd": "libc.syscall(438, PIDFD, 0, 0)",
}


@pytest.mark.parametrize("attack", sorted(KILLING))
def test_forbidden_call_kills_with_sigsys(attack):
    setup = ("PIDFD = os.pidfd_open(os.getppid())\n"
             "confine(Confinement(keep_fds=(PIDFD,)))\n"
             "say('confined')\n")
    proc = child(setup + textwrap.dedent(KILLING[attack]).strip() + "\nsay('survived')\n")
    assert proc.returncode == -signal.SIGSYS, (proc.returncode, proc.stdout, proc.stderr)
    assert lines(proc) == ["confined"]


# --- signals --------------------------------------------------------------------------------------

def test_signals_stay_inside_the_domain():
    # a victim with the same uid as the confined child: only Landlock's signal scope protects it
    victim = subprocess.Popen([sys.executable, "-c",
                               "import os, sys; os.setresgid(65534, 65534, 65534); "
                               "os.setresuid(65534, 65534, 65534); print('up', flush=True); "
                               "sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout.readline().strip() == "up"
        proc = child(f"""
            got = []
            signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
            confine(Confinement())
            attempt("kill-parent", lambda: os.kill(os.getppid(), signal.SIGTERM))
            attempt("kill-sibling", lambda: os.kill({victim.pid}, signal.SIGTERM))
            os.kill(os.getpid(), signal.SIGUSR1)
            say("self-signal", got)
        """)
        assert_ok(proc)
        assert lines(proc) == ["kill-parent PermissionError EPERM",
                               "kill-sibling PermissionError EPERM", "self-signal [1]"]
        assert victim.poll() is None
    finally:
        victim.stdin.close()
        victim.wait(timeout=30)
    assert victim.returncode == 0


# --- descriptors ----------------------------------------------------------------------------------

def test_unkept_fd_closed_and_kept_eventfd_works():
    kept, dropped = os.eventfd(0), os.eventfd(0)
    os.eventfd_write(kept, 5)
    try:
        proc = child(f"""
            confine(Confinement(keep_fds=({kept},)))
            attempt("dropped", lambda: os.fstat({dropped}))
            say("kept", os.eventfd_read({kept}))
            os.eventfd_write({kept}, 7)
        """, pass_fds=(kept, dropped))
        assert_ok(proc)
        assert lines(proc) == ["dropped OSError EBADF", "kept 5"]
        assert os.eventfd_read(kept) == 7
    finally:
        os.close(kept)
        os.close(dropped)


def test_keeping_a_closed_fd_is_refused():
    proc = child("""
        try:
            confine(Confinement(keep_fds=(77,)))
        except SandboxError as exc:
            say("refused", "77" in str(exc), os.getuid())
    """)
    assert_ok(proc)
    assert lines(proc) == ["refused True 0"]


# --- what a component needs still works -----------------------------------------------------------

def test_event_loop_numpy_msgpack_mmap_and_tracebacks_work():
    efd = os.eventfd(0)
    mfd = os.memfd_create("frames")
    os.ftruncate(mfd, 65536)
    os.pwrite(mfd, b"from-parent", 0)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.send(b"hello")
    os.eventfd_write(efd, 1)
    try:
        proc = child(f"""
            import time
            sock = socket.socket(fileno={theirs.fileno()})
            confine(Confinement(keep_fds=({efd}, {mfd}, {theirs.fileno()})))
            ep = select.epoll()
            ep.register({efd}, select.EPOLLIN)
            ep.register(sock.fileno(), select.EPOLLIN)
            say("epoll", sorted(fd for fd, _ in ep.poll(5)) == sorted([{efd}, sock.fileno()]))
            msg, anc, flags, addr = sock.recvmsg(64, socket.CMSG_SPACE(8))
            sock.sendmsg([msg.upper()])
            region = mmap.mmap({mfd}, 65536)
            say("mmap", bytes(region[:11]))
            view = numpy.frombuffer(region, dtype=numpy.uint8)
            region[100:104] = bytes([1, 2, 3, 4])
            say("numpy", int(view[100:104].astype(numpy.int64).sum()),
                float(numpy.linalg.norm(numpy.ones(4))), numpy.sort(numpy.array([3, 1, 2])))
            say("msgpack", msgpack.unpackb(msgpack.packb({{"k": [1, b"v"]}})))
            t0 = time.monotonic_ns(); time.sleep(0.001)
            say("clock", time.monotonic_ns() > t0, len(os.urandom(8)))
            try:
                {{}}["missing"]
            except KeyError:
                traceback.print_exc()
            say("after-traceback")
            raise ValueError("uncaught at the top")
        """, pass_fds=(efd, mfd, theirs.fileno()))
        assert ours.recv(64) == b"HELLO"
        assert os.pread(mfd, 4, 100) == bytes([1, 2, 3, 4])
    finally:
        for fd in (efd, mfd):
            os.close(fd)
        ours.close()
        theirs.close()
    assert proc.returncode == 1, proc.stderr
    assert lines(proc) == ["epoll True", "mmap b'from-parent'", "numpy 10 2.0 [1 2 3]",
                           "msgpack {'k': [1, b'v']}", "clock True 8", "after-traceback"]
    assert "Traceback (most recent call last)" in proc.stderr
    assert "KeyError: 'missing'" in proc.stderr
    assert "ValueError: uncaught at the top" in proc.stderr


def test_ioctl_policy():
    r, w = os.pipe()
    os.write(w, b"abc")
    try:
        code = f"""
            import termios
            confine(Confinement(keep_fds=({r},), allow_ioctl=ALLOW))
            attempt("fionread", lambda: fcntl.ioctl({r}, termios.FIONREAD, b"0000"))
            attempt("tiocsti", lambda: fcntl.ioctl({r}, termios.TIOCSTI, b"x"))
        """
        allowed = child("ALLOW = True\n" + textwrap.dedent(code), pass_fds=(r,))
        denied = child("ALLOW = False\n" + textwrap.dedent(code), pass_fds=(r,))
    finally:
        os.close(r)
        os.close(w)
    assert_ok(allowed)
    assert_ok(denied)
    assert lines(allowed) == ["fionread ok", "tiocsti PermissionError EPERM"]
    assert lines(denied) == ["fionread PermissionError EPERM", "tiocsti PermissionError EPERM"]


# --- refusals -------------------------------------------------------------------------------------

def test_without_landlock_confine_is_refused_unless_allowed():
    code = """
        import harness.sandbox.landlock as ll
        ll.abi_version = lambda: 0
        try:
            report = confine(Confinement())
        except SandboxError as exc:
            say("refused", "Landlock" in str(exc), os.getuid())
            raise SystemExit(0)
        say("landlock", report["landlock"], report["landlock_abi"], report["uid"])
        attempt("open", lambda: open("/etc/hostname"))
        socket.socket()
        say("survived")
    """
    refused = child(code)
    assert_ok(refused)
    assert lines(refused) == ["refused True 0"]       # nothing was applied: still root
    allowed = child(code, env={"CAPNET_ALLOW_NO_LANDLOCK": "1"})
    assert allowed.returncode == -signal.SIGSYS, allowed.stderr
    assert lines(allowed) == ["landlock unavailable 0 65534", "open PermissionError EPERM"]


def test_multithreaded_process_is_refused():
    proc = child("""
        import threading
        stop = threading.Event()
        threading.Thread(target=stop.wait).start()
        try:
            confine(Confinement())
        except SandboxError as exc:
            say("refused", "single-threaded" in str(exc))
        stop.set()
    """)
    assert_ok(proc)
    assert lines(proc) == ["refused True"]


# --- the BPF program, evaluated for every syscall --------------------------------------------------

def run_bpf(prog, nr: int, arch: int, args=(0, 0, 0, 0, 0, 0)) -> int:
    """A classic-BPF interpreter for the opcodes seccomp.build emits, over seccomp_data."""
    words = {0: nr, 4: arch}
    for i, value in enumerate(args):
        words[16 + 8 * i] = value & 0xFFFFFFFF
        words[20 + 8 * i] = (value >> 32) & 0xFFFFFFFF
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == seccomp.LD_W_ABS:
            acc, pc = words[k], pc + 1
        elif code == seccomp.RET:
            return k
        elif code in (seccomp.JEQ, seccomp.JGE):
            hit = acc == k if code == seccomp.JEQ else acc >= k
            pc += 1 + (jt if hit else jf)
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def test_bpf_program_gives_every_syscall_its_action():
    prog = seccomp.build("x86_64")
    assert len(prog) < 4096 and all(0 <= jt < 256 and 0 <= jf < 256 for _, jt, jf, _ in prog)
    x86 = seccomp.AUDIT_ARCH["x86_64"]
    table = syscalls.X86_64
    for name in syscalls.ALLOWED:
        assert run_bpf(prog, table[name], x86) == seccomp.RET_ALLOW, name
    for name in syscalls.PROBING:
        assert run_bpf(prog, table[name], x86) == seccomp.RET_EPERM, name
    listed = set(syscalls.ALLOWED) | set(syscalls.PROBING) | set(syscalls.ARGUMENT_CHECKED)
    for name, nr in table.items():
        if name not in listed:
            assert run_bpf(prog, nr, x86) == seccomp.RET_KILL_PROCESS, name
    assert run_bpf(prog, table["read"] | 0x40000000, x86) == seccomp.RET_KILL_PROCESS
    assert run_bpf(prog, table["read"], 0xC00000B7) == seccomp.RET_KILL_PROCESS   # aarch64
    fstatat, at_fdcwd = table["newfstatat"], -100 & 0xFFFFFFFF
    assert run_bpf(prog, fstatat, x86, (3, 0, 0, 0x1000)) == seccomp.RET_ALLOW
    assert run_bpf(prog, fstatat, x86, (at_fdcwd, 0, 0, 0x1000)) == seccomp.RET_EPERM
    assert run_bpf(prog, fstatat, x86, (3, 0, 0, 0)) == seccomp.RET_EPERM
    prlimit = table["prlimit64"]
    assert run_bpf(prog, prlimit, x86, (0, 7, 0, 1234)) == seccomp.RET_ALLOW
    assert run_bpf(prog, prlimit, x86, (0, 7, 1234, 0)) == seccomp.RET_KILL_PROCESS
    assert run_bpf(prog, prlimit, x86, (1 << 32, 7, 0, 0)) == seccomp.RET_KILL_PROCESS
    assert run_bpf(prog, table["ioctl"], x86, (0, seccomp.TIOCSTI)) == seccomp.RET_EPERM
    denied = seccomp.build("x86_64", allow_ioctl=False)
    assert run_bpf(denied, table["ioctl"], x86, (0, 0x541B)) == seccomp.RET_EPERM


def test_policy_tables_are_consistent():
    classes = [set(syscalls.ALLOWED), set(syscalls.PROBING), set(syscalls.KILLED),
               set(syscalls.ARGUMENT_CHECKED)]
    for i, a in enumerate(classes):
        assert a <= set(syscalls.X86_64)
        for b in classes[i + 1:]:
            assert not a & b
    assert len(set(syscalls.X86_64.values())) == len(syscalls.X86_64)
    with pytest.raises(ValueError):
        seccomp.build("riscv64")
