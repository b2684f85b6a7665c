"""Helpers for tests that run whole systems through the real ``capnet`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
