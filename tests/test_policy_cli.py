"""`capnet check --policy/--path` and `capnet graph` as a user runs them."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.capnet_run import capnet

POLICY = "examples/policy/redblack.policy.toml"


def test_a_conforming_system_passes():
    proc = capnet("check", "examples/policy/redblack.toml", "--policy", POLICY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reachable from the outside world: nic" in proc.stdout


def test_a_violation_exits_2_naming_mechanism_components_and_key():
    proc = capnet("check", "examples/policy/redblack-bypass.toml", "--policy", POLICY)
    assert proc.returncode == 2
    assert "components.app.maps[1]: region 'leak'" in proc.stdout
    assert "flow app (red) -> nic (black) is not allowed" in proc.stdout


def test_paths_between_two_components():
    proc = capnet("check", "examples/policy/redblack-bypass.toml", "--path", "app:nic")
    assert proc.returncode == 0
    assert "app -[region]-> nic" in proc.stdout
    assert capnet("check", "examples/policy/redblack.toml", "--path", "app:nobody").returncode == 2


def test_a_broken_policy_is_bad_input(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text('[partitions]\nred = ["app"]\n[flows]\nallow = ["red => black"]\n')
    proc = capnet("check", "examples/policy/redblack.toml", "--policy", str(bad))
    assert proc.returncode == 2 and str(bad) in proc.stderr


def test_graph_draws_svg_with_the_violation(tmp_path):
    out = tmp_path / "g.svg"
    proc = capnet("graph", "examples/policy/redblack-bypass.toml", "--policy", POLICY,
                  "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    ET.fromstring(text)                              # well-formed SVG
    assert "not allowed" in text and "partition red" in text
