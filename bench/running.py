"""Waiting on, and stopping, systems the benchmarks (and the tests) start with ``capnet run``."""

from __future__ import annotations

import subprocess
import time

from harness.control import ControlError, request


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    """Poll ``predicate`` until it is true (returned) or ``timeout`` seconds pass (raises
    TimeoutError naming ``what``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def stop_run(proc: subprocess.Popen | None, control: str, timeout: float = 30) -> None:
    """Stop a running ``capnet run`` in order through its control socket; kill it if that
    cannot be done within ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    try:
        request(control, {"op": "stop"})
        proc.wait(timeout=timeout)
    except (ControlError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
