"""Helpers for tests that run whole systems through the real ``capnet`` command."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from bench.running import stop_run, wait_for  # noqa: F401 -- the tests' too

ROOT = Path(__file__).resolve().parent.parent
STACK_ADDRESS = "10.77.0.2"      # the stack's address in examples/tap-http.toml


def capnet(*args: str, timeout: float = 120, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def start(*args: str, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_system(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def run_system(tmp_path: Path, text: str, *extra: str, timeout: float = 120):
    """Run a description to its end; returns (completed process, summary dict)."""
    system = write_system(tmp_path / "system.toml", text)
    stats = tmp_path / "stats.json"
    proc = capnet("run", str(system), "--stats-json", str(stats),
                  "--control", str(tmp_path / "ctl" / "system.sock"), *extra, timeout=timeout)
    summary = json.loads(stats.read_text()) if stats.exists() else None
    return proc, summary


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def serving_stack(tmp: Path, prefix: str, describe, *run_args: str):
    """examples/tap-http.toml's stack (as ``describe(ns)`` words it) running in a network
    namespace of its own until its HTTP server answers curl there; yields (namespace, control
    socket). The system is stopped and the namespace deleted afterwards, even on failure."""
    for tool in ("ip", "curl"):
        if shutil.which(tool) is None:
            raise AssertionError(f"{tool} is required (bash scripts/dev installs it)")
    ns = f"{prefix}{os.getpid() % 100000}{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    control, proc = str(tmp / "ctl" / "stack.sock"), None
    try:
        description = tmp / "tap.toml"
        description.write_text(describe(ns))
        proc = start("run", str(description), "--control", control, *run_args)

        def serving() -> bool:
            if proc.poll() is not None:
                raise AssertionError(proc.communicate()[1])
            done = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", "2",
                                   f"http://{STACK_ADDRESS}/"], capture_output=True, timeout=10)
            return done.returncode == 0 and b"capnet" in done.stdout

        wait_for(serving, timeout=30, what="the stack's HTTP server")
        yield ns, control
    finally:
        stop_run(proc, control)
        subprocess.run(["ip", "netns", "delete", ns], check=False)
