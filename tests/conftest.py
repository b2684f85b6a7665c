"""Fixtures shared by the test files."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest


@pytest.fixture
def netns():
    """A network namespace of this test's own, deleted afterwards even on failure."""
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is required (bash scripts/dev installs it)")
    name = f"capnet-t{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
