"""Information flows: each mechanism's derived flows, influence and paths, a property test that
the policy checker agrees with brute-force reachability on random systems, and graph output."""

from __future__ import annotations

import dataclasses
import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import graph as graph_module
from harness.description import (
    ChannelSpec,
    ComponentSpec,
    DeviceSpec,
    MapSpec,
    QueueSpec,
    RegionSpec,
    System,
    load,
)
from harness.flows import (
    OUTSIDE,
    derive,
    hops,
    influence,
    passes_through,
    paths,
    reachable_from,
)
from harness.graph import GraphError, dot_text, write_graph
from harness.policy import Policy, check

PROG = "json:JSONDecoder"  # a program that certainly exists, for the loader's find_spec


def system_from(tmp_path: Path, body: str) -> System:
    path = tmp_path / "system.toml"
    path.write_text('[system]\nname = "t"\n\n' + body)
    return load(path)


def component(name: str, priority: int, maps: str = "") -> str:
    return (f'[components.{name}]\nprogram = "{PROG}"\npriority = {priority}\n'
            f"maps = [{maps}]\n\n")


def triples(flows) -> set[tuple[str, str, str]]:
    return {(f.source, f.target, f.mechanism) for f in flows}


def with_devices(system: System, **devices: tuple[DeviceSpec, ...]) -> System:
    """The system with devices granted (also modes the loader does not offer yet, e.g. rw)."""
    comps = dict(system.components)
    for name, devs in devices.items():
        comps[name] = dataclasses.replace(comps[name], devices=devs)
    return dataclasses.replace(system, components=comps)


# -- each mechanism --------------------------------------------------------------------------

def test_region_rw_writer_flows_to_every_other_mapper(tmp_path):
    s = system_from(tmp_path, '[regions.shared]\nsize = "64 KiB"\n[regions.ro]\nsize = "64 KiB"\n\n'
                    + component("a", 100, '{ region = "ro", perms = "r" }, '
                                          '{ region = "shared", perms = "rw" }')
                    + component("b", 100, '{ region = "shared", perms = "r" }, '
                                          '{ region = "ro", perms = "r" }')
                    + component("c", 100, '{ region = "shared", perms = "rw" }'))
    flows = derive(s)
    assert triples(flows) == {("a", "b", "region"), ("a", "c", "region"),
                              ("c", "a", "region"), ("c", "b", "region")}
    ab = hops(flows, "a", "b")[0]
    assert ab.key == "components.a.maps[1]"           # the writer's map
    assert "components.b.maps[0]" in ab.detail        # and the reader's, in the detail
    assert ab.detail.startswith("region 'shared' (rw by a, r by b")


def test_pair_queue_flows_both_ways(tmp_path):
    s = system_from(tmp_path, '[regions.frames]\nsize = "64 KiB"\n\n'
                    + component("p", 200, '{ region = "frames", perms = "rw" }')
                    + component("c", 100, '{ region = "frames", perms = "r" }')
                    + '[[queues]]\nname = "q"\nproducer = "p"\nconsumer = "c"\n'
                      'data = "frames"\ncapacity = 64\n')
    queue_flows = [f for f in derive(s) if f.key == "queues[0]"]
    assert triples(queue_flows) == {
        ("p", "c", "active-ring"), ("p", "c", "notification"),
        ("c", "p", "ring-indices"), ("c", "p", "free-ring"), ("c", "p", "notification")}
    assert triples(f for f in derive(s) if f.mechanism == "region") == {("p", "c", "region")}
    assert influence(derive(s), "p") == {"c"}


def test_diode_queue_flows_one_way_only(tmp_path):
    s = system_from(tmp_path, '[regions.frames]\nsize = "64 KiB"\n\n'
                    + component("p", 200, '{ region = "frames", perms = "rw" }')
                    + component("c", 100, '{ region = "frames", perms = "r" }')
                    + '[[queues]]\nname = "q"\nproducer = "p"\nconsumer = "c"\n'
                      'data = "frames"\ncapacity = 16\nkind = "diode"\n')
    flows = derive(s)
    assert triples(flows) == {("p", "c", "diode"), ("p", "c", "notification"),
                              ("p", "c", "region")}
    assert influence(flows, "p") == set()
    assert reachable_from(flows, "c") == set()


def test_diode_consumer_mapping_data_rw_is_still_a_flow_back(tmp_path):
    # the loader refuses this; the analysis must not rely on that
    s = system_from(tmp_path, '[regions.frames]\nsize = "64 KiB"\n\n'
                    + component("p", 200, '{ region = "frames", perms = "rw" }')
                    + component("c", 100, '{ region = "frames", perms = "r" }')
                    + '[[queues]]\nname = "q"\nproducer = "p"\nconsumer = "c"\n'
                      'data = "frames"\ncapacity = 16\nkind = "diode"\n')
    comps = dict(s.components, c=dataclasses.replace(s.components["c"],
                                                     maps=(MapSpec("frames", "rw"),)))
    s = dataclasses.replace(s, components=comps)
    back = hops(derive(s), "c", "p")
    assert [(f.mechanism, f.key) for f in back] == [("region", "components.c.maps[0]")]


def test_channel_notifies_both_ways_and_pp_adds_call_and_reply(tmp_path):
    s = system_from(tmp_path, component("lo", 100) + component("hi", 200)
                    + component("x", 50)
                    + '[[channels]]\nname = "ctl"\nends = ["x", "lo"]\n\n'
                    + '[[channels]]\nname = "rpc"\nends = ["hi", "lo"]\npp = "lo"\n')
    flows = derive(s)
    assert triples(f for f in flows if f.key == "channels[0]") == {
        ("x", "lo", "notification"), ("lo", "x", "notification")}
    assert triples(f for f in flows if f.key == "channels[1]") == {
        ("hi", "lo", "notification"), ("lo", "hi", "notification"),
        ("lo", "hi", "protected-call"), ("hi", "lo", "protected-reply")}


def test_devices_join_the_outside_world_by_mode(tmp_path):
    (tmp_path / "in.pcap").write_bytes(b"")
    base = system_from(tmp_path, component("rd", 100)
                       + 'devices = [{ kind = "file", path = "in.pcap", mode = "r" }]\n\n'
                       + component("wr", 100)
                       + 'devices = [{ kind = "file", path = "out.pcap", mode = "w" }]\n\n'
                       + component("both", 100))
    s = with_devices(base, both=(DeviceSpec("file", "r", "in.pcap"),
                                 DeviceSpec("tap", "rw")))
    flows = derive(s)
    assert triples(flows) == {(OUTSIDE, "rd", "device"), ("wr", OUTSIDE, "device"),
                              (OUTSIDE, "both", "device"), ("both", OUTSIDE, "device")}
    assert {f.key for f in flows if f.source == "both" or f.target == "both"} == {
        "components.both.devices[0]", "components.both.devices[1]"}
    assert reachable_from(flows, OUTSIDE) == {"rd", "both"}
    assert influence(flows, OUTSIDE) == {"wr", "both"}


# -- transitive questions --------------------------------------------------------------------

def chain_system(tmp_path) -> System:
    """a -> b -> d and a -> c -> d by diodes, d -> e by a region."""
    regions = "".join(f'[regions.{n}]\nsize = "64 KiB"\n' for n in ("ab", "ac", "bd", "cd", "de"))
    return system_from(tmp_path, regions
                       + component("a", 100, '{ region = "ab", perms = "rw" }, '
                                             '{ region = "ac", perms = "rw" }')
                       + component("b", 100, '{ region = "ab", perms = "r" }, '
                                             '{ region = "bd", perms = "rw" }')
                       + component("c", 100, '{ region = "ac", perms = "r" }, '
                                             '{ region = "cd", perms = "rw" }')
                       + component("d", 100, '{ region = "bd", perms = "r" }, '
                                             '{ region = "cd", perms = "r" }, '
                                             '{ region = "de", perms = "rw" }')
                       + component("e", 100, '{ region = "de", perms = "r" }'))


def test_influence_paths_and_cut_points(tmp_path):
    flows = derive(chain_system(tmp_path))
    assert influence(flows, "e") == {"a", "b", "c", "d"}
    assert influence(flows, "a") == set()
    assert reachable_from(flows, "b") == {"d", "e"}
    found = paths(flows, "a", "e")
    assert [[h.source for h in p] + [p[-1].target] for p in found] == [
        ["a", "b", "d", "e"], ["a", "c", "d", "e"]]
    assert paths(flows, "e", "a") == []
    assert len(paths(flows, "a", "e", limit=1)) == 1
    assert passes_through(flows, "a", "e") == {"d"}
    assert passes_through(flows, "e", "a") is None


# -- property: the checker agrees with brute force -------------------------------------------

@st.composite
def random_systems(draw):
    n = draw(st.integers(1, 6))
    names = [f"c{i}" for i in range(n)]
    region_names = [f"r{i}" for i in range(draw(st.integers(0, 4)))]
    comps = {}
    for name in names:
        maps = tuple(MapSpec(r, draw(st.sampled_from(("r", "rw"))))
                     for r in region_names if draw(st.booleans()))
        devices = tuple(DeviceSpec("file", draw(st.sampled_from(("r", "w", "rw"))))
                        for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0))
        comps[name] = ComponentSpec(name, PROG, maps=maps, devices=devices)
    queues, channels = {}, {}
    if n >= 2:
        ordered = st.lists(st.sampled_from(names), min_size=2, max_size=2, unique=True)
        for i in range(draw(st.integers(0, 4))):
            p, c = draw(ordered)
            queues[f"q{i}"] = QueueSpec(f"q{i}", p, c, "data", 64,
                                        draw(st.sampled_from(("pair", "diode"))))
        for i in range(draw(st.integers(0, 3))):
            a, b = draw(ordered)
            channels[f"ch{i}"] = ChannelSpec(f"ch{i}", (a, b),
                                             draw(st.sampled_from((None, a, b))))
    regions = {r: RegionSpec(r, 65536) for r in region_names}
    system = System("random", "", "random.toml", "", "", regions, comps, queues, channels)
    parts = {name: f"p{draw(st.integers(0, 2))}" for name in names}
    parts[OUTSIDE] = draw(st.sampled_from(("outside", "p0")))
    part_names = sorted(set(parts.values()) | {"outside"})
    allowed = frozenset(draw(st.sets(st.tuples(st.sampled_from(part_names),
                                               st.sampled_from(part_names)))))
    members = {p: tuple(c for c, q in parts.items() if q == p) for p in part_names}
    return system, Policy("random.policy.toml", members, allowed, parts)


def brute_force_adjacency(system: System) -> dict[str, dict[str, bool]]:
    """Direct flows straight from the spec, written independently of flows.derive."""
    nodes = [*system.components, OUTSIDE]
    adj = {a: dict.fromkeys(nodes, False) for a in nodes}
    for a, b in itertools.permutations(system.components.values(), 2):
        if any(ma.perms == "rw" and any(mb.region == ma.region for mb in b.maps)
               for ma in a.maps):
            adj[a.name][b.name] = True
    for q in system.queues.values():
        adj[q.producer][q.consumer] = True
        if q.kind == "pair":
            adj[q.consumer][q.producer] = True
    for ch in system.channels.values():
        adj[ch.ends[0]][ch.ends[1]] = adj[ch.ends[1]][ch.ends[0]] = True
    for c in system.components.values():
        for d in c.devices:
            adj[OUTSIDE][c.name] |= "r" in d.mode
            adj[c.name][OUTSIDE] |= "w" in d.mode
    return adj


def floyd_warshall(adj: dict[str, dict[str, bool]]) -> dict[str, dict[str, bool]]:
    reach = {a: dict(row) for a, row in adj.items()}
    for k in reach:
        for i in reach:
            if reach[i][k]:
                for j in reach:
                    reach[i][j] = reach[i][j] or reach[k][j]
    return reach


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_systems())
def test_checker_agrees_with_brute_force_reachability(drawn):
    system, policy = drawn
    verdict = check(system, policy, derive(system))
    adj = brute_force_adjacency(system)
    reach = floyd_warshall(adj)
    part = policy.partition_of
    expected = {(a, b) for a in adj for b in adj if adj[a][b] and part[a] != part[b]
                and (part[a], part[b]) not in policy.allowed}
    assert {(f.source, f.target) for f, _, _ in verdict.violations} == expected
    assert all((sp, dp) == (part[f.source], part[f.target]) for f, sp, dp in verdict.violations)
    assert verdict.ok == (not expected)
    assert verdict.reachable_from_outside == {b for b in adj if b != OUTSIDE
                                             and reach[OUTSIDE][b]}
    for x, sources in verdict.influence.items():
        assert sources == {a for a in adj if a != x and reach[a][x]}
    assert set(system.components) <= set(verdict.influence)
    for (sp, dp), flows in verdict.matrix.items():
        assert sp != dp and all((part[f.source], part[f.target]) == (sp, dp) for f in flows)


# -- graphs ----------------------------------------------------------------------------------

@pytest.fixture
def bypass(tmp_path):
    s = system_from(tmp_path, '[regions.leak]\nsize = "64 KiB"\n\n'
                    + component("red", 100, '{ region = "leak", perms = "rw" }')
                    + component("black", 200, '{ region = "leak", perms = "r" }')
                    + '[[channels]]\nname = "ctl"\nends = ["red", "black"]\npp = "red"\n')
    s = with_devices(s, black=(DeviceSpec("file", "r", "in.pcap"),
                               DeviceSpec("file", "w", "out.pcap")))
    policy = Policy("p.toml", {"r": ("red",), "b": ("black",), OUTSIDE: (OUTSIDE,)},
                    frozenset({("b", "r"), (OUTSIDE, "b"), ("b", OUTSIDE)}),
                    {"red": "r", "black": "b", OUTSIDE: OUTSIDE})
    return s, policy


def test_dot_marks_violating_grants_red(bypass):
    s, policy = bypass
    text = dot_text(s, derive(s), policy)
    red = [line for line in text.splitlines() if graph_module.VIOLATION in line]
    # both maps of the leaking region, the channel, and one summary edge red -> black
    assert any('"c:red" -> "r:leak"' in line for line in red)
    assert any('"r:leak" -> "c:black"' in line for line in red)
    assert any('"c:red" -> "c:black"' in line and "not allowed" in line for line in red)
    assert not any('"outside"' in line for line in red)
    assert 'cluster_' in text and "doubleoctagon" in text


@pytest.mark.skipif(graph_module.shutil.which("dot") is None, reason="needs Graphviz dot")
def test_graph_renders_valid_svg_and_png(bypass, tmp_path):
    s, policy = bypass
    write_graph(s, derive(s), policy, tmp_path / "g.svg")
    root = ET.parse(tmp_path / "g.svg").getroot()
    assert root.tag.endswith("svg")
    texts = {t.text for t in root.iter() if t.tag.endswith("text")}
    assert {"red", "black", "leak", "outside world"} <= texts
    write_graph(s, derive(s), None, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_graph_without_dot_or_with_unknown_format_is_a_clear_error(bypass, tmp_path,
                                                                   monkeypatch):
    s, policy = bypass
    with pytest.raises(GraphError, match="use .svg, .png or .dot"):
        write_graph(s, derive(s), policy, tmp_path / "g.jpeg")
    write_graph(s, derive(s), policy, tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text().startswith('digraph "t"')
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)
    with pytest.raises(GraphError, match="Graphviz 'dot' was not found"):
        write_graph(s, derive(s), policy, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()
