"""A Stack's configuration is checked before anything starts: one message per problem naming
the component's config, exit status 2 (``capnet check`` and ``capnet run`` alike)."""

from __future__ import annotations

import pytest

from netstack.stack import Stack
from tests.capnet_run import ROOT, capnet

WIRE = str(ROOT / "examples" / "stack-wire.toml")


@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_stack_config_is_named_and_nothing_starts(command, tmp_path):
    extra = ["--control", str(tmp_path / "c.sock")] if command == "run" else []
    done = capnet(command, WIRE, "--set", 'a.apps=["http:80", "gopher:70"]',
                  "--set", "a.mtu=10", "--set", 'b.ipv4="10.78.0.2"', *extra)
    assert done.returncode == 2, done.stdout + done.stderr
    err = done.stderr
    assert "components.a.config" in err and "apps[1]: unknown app 'gopher'" in err
    assert "mtu: expected 576..9000, got 10" in err
    assert "components.b.config" in err and "ipv4: " in err
    assert "running" not in done.stdout


@pytest.mark.parametrize("config, message", [
    ({"ipv4": "10.0.0.1/24", "mac": "01:00:00:00:00:01"}, "multicast"),
    ({"ipv4": "10.0.0.0/24"}, "not a host address"),
    ({"ipv4": "10.0.0.1/24", "gateway": "nowhere"}, "gateway: expected an IPv4 address"),
    ({"ipv4": "10.0.0.1/24", "tcp": {"congestion": "vegas"}}, "congestion"),
    ({"ipv4": "10.0.0.1/24", "tcp": {"window": 5}}, "tcp.window: unknown"),
    ({"ipv4": "10.0.0.1/24", "colour": "red"}, "unknown key 'colour'"),
    ({"ipv4": "10.0.0.1/24", "offload": "yes"}, "offload: expected true or false"),
])
def test_preflight_names_each_problem(config, message):
    problems = Stack.preflight(config, {})
    assert any(message in p for p in problems), problems


def test_good_config_has_no_problems():
    assert Stack.preflight({"ipv4": "10.77.0.2/24", "gateway": "10.77.0.1", "mtu": 1500,
                            "apps": ["udp-echo:7", "http:80"],
                            "tcp": {"congestion": "newreno", "rto_min_ms": 200}}, {}) == []


def test_bench_rejects_bad_arguments():
    done = capnet("bench", "stack", "--size", "0")
    assert done.returncode == 2
    assert "--size must be at least 1, got 0" in done.stderr
