"""Policies: the example systems' verdicts, what the report says, and policy file errors named
by file, line and key path."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from harness.description import load
from harness.flows import OUTSIDE, derive, passes_through, paths
from harness.policy import check, load_policy, render
from harness.problems import DescriptionError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "policy"


def verdict_of(system_name: str, policy_name: str):
    system = load(EXAMPLES / f"{system_name}.toml")
    policy = load_policy(EXAMPLES / f"{policy_name}.policy.toml", system)
    return system, check(system, policy, derive(system))


def report(verdict, pairs=()) -> str:
    out = io.StringIO()
    render(verdict, Console(file=out, width=300, color_system=None), pairs)
    return out.getvalue()


# -- the examples ----------------------------------------------------------------------------

def test_firewall_passes_and_its_inside_influences_nothing():
    system, verdict = verdict_of("firewall", "firewall")
    assert verdict.ok and verdict.messages() == []
    assert verdict.reachable_from_outside == {"nic", "fw", "sink"}
    assert verdict.influence["sink"] == {OUTSIDE, "nic", "fw"}
    assert all("sink" not in sources for node, sources in verdict.influence.items()
               if node != "sink")
    assert passes_through(verdict.flows, OUTSIDE, "sink") == {"nic", "fw"}
    text = report(verdict, [("nic", "sink")])
    assert "every flow is allowed by the policy" in text
    assert "nic -[" in text and "every path passes through: fw" in text


def test_zero_copy_firewall_is_rejected_naming_region_and_queue():
    _, verdict = verdict_of("firewall-zerocopy", "firewall")
    assert not verdict.ok
    assert verdict.messages()[0] == (
        "components.nic.maps[0]: region 'frames' (rw by nic, r by sink at "
        "components.sink.maps[0]): flow nic (wire) -> sink (inside) is not allowed by the policy")
    back = {(f.mechanism, f.key, sp, dp) for f, sp, dp in verdict.violations[1:]}
    assert back == {(m, "queues[1]", "inside", "filter")
                    for m in ("ring-indices", "free-ring", "notification")}
    assert "4 flows violate the policy" in report(verdict)


def test_redblack_passes_and_outside_cannot_reach_the_keys():
    _, verdict = verdict_of("redblack", "redblack")
    assert verdict.ok
    assert verdict.reachable_from_outside == {"nic"}
    assert OUTSIDE not in verdict.influence["keys"] and "nic" not in verdict.influence["keys"]
    assert verdict.influence[OUTSIDE] == {"app", "gw", "keys", "nic"}
    assert passes_through(verdict.flows, "app", "nic") == {"gw"}
    assert paths(verdict.flows, OUTSIDE, "keys") == []
    text = report(verdict, [("app", "nic"), ("outside", "keys")])
    assert "paths outside -> keys: no path" in text
    assert "gw -[diode, notification, region]-> nic" in text


def test_redblack_bypass_is_rejected_at_the_leaking_map():
    _, verdict = verdict_of("redblack-bypass", "redblack")
    assert [(f.source, f.target, f.mechanism, f.key, sp, dp)
            for f, sp, dp in verdict.violations] == [
        ("app", "nic", "region", "components.app.maps[1]", "red", "black")]
    assert "components.nic.maps[1]" in verdict.violations[0][0].detail


def test_redblack_pp_back_is_rejected_and_lets_outside_reach_the_keys():
    _, verdict = verdict_of("redblack-pp-back", "redblack")
    assert {(f.source, f.target, f.mechanism, f.key) for f, _, _ in verdict.violations} == {
        ("nic", "keys", "notification", "channels[1]"),
        ("keys", "nic", "notification", "channels[1]")}
    assert OUTSIDE in verdict.influence["keys"]
    assert [[h.mechanism for h in p] for p in paths(verdict.flows, OUTSIDE, "keys")] == [
        ["device", "notification"]]


def test_redblack_pair_is_rejected_for_its_back_channels():
    _, verdict = verdict_of("redblack-pair", "redblack")
    assert {(f.source, f.target, f.mechanism, sp, dp) for f, sp, dp in verdict.violations} == {
        ("nic", "gw", m, "black", "gateway") for m in ("ring-indices", "free-ring", "notification")}
    assert OUTSIDE in verdict.influence["keys"]


def test_without_a_policy_nothing_is_a_violation():
    system = load(EXAMPLES / "redblack-bypass.toml")
    verdict = check(system, None, derive(system))
    assert verdict.ok and verdict.matrix == {}
    assert "nic" in verdict.influence and "(no policy)" in report(verdict)


# -- policy file errors ----------------------------------------------------------------------

@pytest.fixture
def redblack():
    return load(EXAMPLES / "redblack.toml")


def problems(tmp_path, system, text: str):
    path = tmp_path / "p.policy.toml"
    path.write_text(text)
    with pytest.raises(DescriptionError) as err:
        load_policy(path, system)
    return [(p.key, p.line, p.message) for p in err.value.problems]


GOOD_PARTITIONS = ('[partitions]\nred = ["app"]\ngateway = ["gw", "keys"]\n'
                   'black = ["nic"]\n\n')


def test_a_good_policy_loads(tmp_path, redblack):
    path = tmp_path / "p.toml"
    path.write_text(GOOD_PARTITIONS + '[flows]\nallow = ["red -> gateway", " black->outside "]\n')
    policy = load_policy(path, redblack)
    assert policy.partition("keys") == "gateway" and policy.partition(OUTSIDE) == OUTSIDE
    assert policy.allowed == {("red", "gateway"), ("black", "outside")}
    assert policy.allows("gateway", "gateway") and not policy.allows("gateway", "red")


def test_unknown_keys_are_named_with_their_lines(tmp_path, redblack):
    found = problems(tmp_path, redblack, GOOD_PARTITIONS + '[flows]\nallow = []\ndeny = []\n\n'
                                        '[extra]\nx = 1\n')
    assert ("flows.deny", 8, "unknown key 'deny'") in found
    assert ("extra", 10, "unknown key 'extra'") in found


def test_component_in_two_partitions_or_in_none(tmp_path, redblack):
    found = problems(tmp_path, redblack, '[partitions]\nred = ["app", "gw"]\n'
                                        'gateway = ["gw"]\n')
    assert ("partitions.gateway", 3,
            "component 'gw' is in two partitions: 'red' and 'gateway'") in found
    assert ("partitions", 1, "component 'keys' is in no partition") in found
    assert ("partitions", 1, "component 'nic' is in no partition") in found


def test_unknown_component_and_bad_partition_value(tmp_path, redblack):
    found = problems(tmp_path, redblack, GOOD_PARTITIONS.replace('"nic"]', '"nic", "nope"]')
                     + 'odd = "app"\n')
    assert ("partitions.black", 4, "no component named 'nope' in system 'redblack'") in found
    assert [f for f in found if f[0] == "partitions.odd"][0][1] == 6


def test_flow_errors_point_at_the_offending_entry(tmp_path, redblack):
    found = problems(tmp_path, redblack, GOOD_PARTITIONS + '[flows]\nallow = [\n'
                                        '    "red -> gateway",\n    "red => black",\n'
                                        '    "red -> purple",\n    42,\n]\n')
    assert ("flows.allow[1]", 9, "cannot read 'red => black'") in found
    assert ("flows.allow[2]", 10, "no partition named 'purple' in 'red -> purple'") in found
    assert ("flows.allow[3]", 7, "cannot read 42") in found
    assert len(found) == 3


def test_invalid_toml_names_line_and_column(tmp_path, redblack):
    assert problems(tmp_path, redblack, '[partitions]\nred = ["app"\n') == [
        ("", 2, "not valid TOML: Unclosed array (at end of document)")]


def test_problem_text_names_file_line_and_key(tmp_path, redblack):
    path = tmp_path / "p.toml"
    path.write_text(GOOD_PARTITIONS + '[flows]\nallow = ["red ->"]\n')
    with pytest.raises(DescriptionError) as err:
        load_policy(path, redblack)
    assert str(err.value).startswith(f"{path}:7:10: error: flows.allow[0]: cannot read 'red ->'")
