"""System descriptions: loading, every check (key path, message, line), overrides, buffers,
capability tables, and a property test that random valid descriptions load cleanly."""

from __future__ import annotations

import hashlib
import io
import json
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from harness.captable import capabilities, render_check
from harness.description import (
    PAGE,
    ChannelSpec,
    ComponentSpec,
    Limits,
    MapSpec,
    _check_call_cycles,
    _Checker,
    load,
    parse_override,
)
from harness.problems import DescriptionError, Problem

ROOT = Path(__file__).resolve().parent.parent
BROKEN = ROOT / "examples" / "broken"
PROG = "json:JSONDecoder"  # a program that certainly exists, for find_spec

HEAD = f"""[system]
name = "t"

[regions.frames]
size = "1 MiB"

[components.gen]
program = "{PROG}"
priority = 200
maps = [{{ region = "frames", perms = "rw" }}]

[components.sink]
program = "{PROG}"
priority = 100
maps = [{{ region = "frames", perms = "r" }}]
"""
QUEUE = """
[[queues]]
name = "ingress"
producer = "gen"
consumer = "sink"
data = "frames"
"""


def write(tmp_path: Path, text: str, name: str = "sys.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str, overrides=()) -> list[Problem]:
    with pytest.raises(DescriptionError) as info:
        load(write(tmp_path, text), overrides)
    return info.value.problems


def only(tmp_path: Path, text: str, overrides=()) -> Problem:
    found = problems(tmp_path, text, overrides)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def line_in(text: str, key: str) -> int:
    """Line of ``key = `` inside the table named by a key path like ``components.sink.x.y``."""
    section, name, leaf = key.split(".")[:3]
    lines = text.splitlines()
    start = lines.index(f"[{section}.{name}]")
    return next(i for i, line in enumerate(lines[start:], start + 1)
                if line.startswith(f"{leaf} ="))


def line_of(text: str, needle: str, nth: int = 0) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return lines[nth]


# -- good descriptions ---------------------------------------------------------------------------

def test_pipeline_example_loads():
    system = load(ROOT / "examples" / "pipeline.toml")
    assert system.name == "pipeline"
    assert set(system.components) == {"gen", "fwd", "sink"}
    assert system.regions["frames"].size == 4 << 20
    assert system.origins("frames") == ["gen"]
    assert system.initial_buffers("frames") == {"gen": (0, 2048)}
    assert system.warnings == ()
    fwd = system.components["fwd"]
    assert (fwd.module, fwd.classname) == ("harness.forward", "Forward")
    assert fwd.perms_for("frames") == "r" and fwd.perms_for("nope") is None
    assert fwd.restart == "on-failure"


def test_full_description_loads_with_defaults_and_every_field(tmp_path):
    text = HEAD.replace('priority = 100\n', 'priority = 100\nrestart = "always"\n'
                        'max_restarts = 7\nconfig = { n = 5, deep = { x = "y" } }\n'
                        'limits = { memory = "512 MiB", cpu_seconds = 60, open_files = 64 }\n') \
        + QUEUE + 'capacity = 64\nkind = "diode"\n' + """
[[channels]]
name = "ctl"
ends = ["sink", "gen"]
pp = "sink"
"""
    path = write(tmp_path, text)
    system = load(path)
    sink = system.components["sink"]
    assert sink == ComponentSpec("sink", PROG, 100, {}, (MapSpec("frames", "r"),), "always", 7,
                                 Limits(512 << 20, 60, 64))
    assert sink.config == {"n": 5, "deep": {"x": "y"}}
    gen = system.components["gen"]
    assert (gen.restart, gen.max_restarts, gen.limits) == ("never", 3, Limits())
    assert system.regions["frames"].buffer_size == 2048
    q = system.queues["ingress"]
    assert (q.producer, q.consumer, q.data, q.capacity, q.kind) == \
        ("gen", "sink", "frames", 64, "diode")
    assert system.channels["ctl"] == ChannelSpec("ctl", ("sink", "gen"), "sink")
    assert system.queues_of("gen") == [q] and system.channels_of("gen") == [system.channels["ctl"]]
    assert system.text == text and system.path == str(path)
    assert system.sha256 == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("size, expected", [
    ("4 MiB", 4 << 20), ("4MiB", 4 << 20), ("1 GiB", 1 << 30), ("3K", PAGE), ("12K", 12 << 10),
    ("2 M", 2 << 20), ("100 B", PAGE), (5000, 2 * PAGE), (PAGE, PAGE), ("64 KiB", 64 << 10),
])
def test_region_sizes_are_read_and_rounded_up_to_pages(tmp_path, size, expected):
    text = HEAD.replace('size = "1 MiB"', f"size = {json.dumps(size)}\nbuffer_size = 64") + QUEUE
    assert load(write(tmp_path, text)).regions["frames"].size == expected


# -- the broken examples -------------------------------------------------------------------------

@pytest.mark.parametrize("name, key, message, nth", [
    ("unknown-key", "components.fwd.priorty", "unknown key 'priorty'", 0),
    ("bad-priority", "components.gen.priority", "must be an integer 0..254, got 300", 0),
    ("pp-lower-priority", "channels[0].pp",
     "'gen' (priority 200) may not call 'sink' (priority 100)", 0),
    ("queue-unmapped", "queues[1].consumer",
     "'sink' does not map the queue's data region 'frames'", 1),
    ("two-producers", "queues[1].name", "ring 'ingress' already has producer 'gen'", 2),
    ("dangling-region", "queues[0].data", "no region named 'rx'", 0),
])
def test_broken_examples_report_key_message_and_line(name, key, message, nth):
    path = BROKEN / f"{name}.toml"
    text = path.read_text()
    assert text.startswith("# Broken: ")
    with pytest.raises(DescriptionError) as info:
        load(path)
    [problem] = info.value.problems
    assert problem.key == key
    assert message in problem.message
    assert problem.file == str(path)
    expected = line_of(text, f"{key.rsplit('.', 1)[-1]} =", nth)
    assert problem.line == expected
    assert str(problem).startswith(f"{path}:{expected}:1: error: {key}: ")


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(DescriptionError) as info:
        load(BROKEN / "unknown-key.toml")
    assert "valid: program, priority, config, maps, restart, max_restarts, limits" in \
        str(info.value)


# -- unknown keys, types and ranges --------------------------------------------------------------

@pytest.mark.parametrize("old, new, key, valid", [
    ('name = "t"', 'name = "t"\ncolour = 1', "system.colour", "name, description"),
    ('size = "1 MiB"', 'size = "1 MiB"\nsise = 1', "regions.frames.sise", "size, buffer_size"),
    ('perms = "r" }', 'perms = "r", mode = 1 }', "components.sink.maps[0].mode",
     "region, perms"),
    ('priority = 100', 'priority = 100\nlimits = { cpu = 1 }', "components.sink.limits.cpu",
     "memory, cpu_seconds, open_files"),
    ('[system]', 'extra = 1\n[system]', "extra", "system, regions, components"),
])
def test_unknown_keys_at_every_level(tmp_path, old, new, key, valid):
    text = (HEAD + QUEUE).replace(old, new, 1)
    p = only(tmp_path, text)
    assert p.key == key and "unknown key" in p.message and valid in p.hint
    assert p.line is not None


def test_unknown_keys_in_queues_and_channels(tmp_path):
    text = HEAD + QUEUE + "depth = 3\n" + '\n[[channels]]\nname = "c"\nends = ["gen", "sink"]\n' \
        'ppc = "gen"\n'
    found = problems(tmp_path, text)
    assert [(p.key, p.line) for p in found] == [
        ("queues[0].depth", line_of(text, "depth =")),
        ("channels[0].ppc", line_of(text, "ppc =")),
    ]
    assert "name, producer, consumer, data, capacity, kind" in found[0].hint
    assert "name, ends, pp" in found[1].hint


@pytest.mark.parametrize("old, new, key, message", [
    ("priority = 100", 'priority = "high"', "components.sink.priority",
     "must be an integer 0..254, got a string 'high'"),
    ("priority = 100", "priority = true", "components.sink.priority", "got a boolean"),
    ("priority = 100", "priority = -1", "components.sink.priority", "0..254, got -1"),
    ("priority = 100", "priority = 100\nmax_restarts = 101", "components.sink.max_restarts",
     "0..100, got 101"),
    ("priority = 100", 'priority = 100\nrestart = "sometimes"', "components.sink.restart",
     "must be one of 'never', 'on-failure', 'always', got 'sometimes'"),
    ("priority = 100", 'priority = 100\nconfig = "x"', "components.sink.config",
     "must be a table, got a string"),
    ('maps = [{ region = "frames", perms = "r" }]', 'maps = "frames"', "components.sink.maps",
     "must be an array"),
    ('size = "1 MiB"', "size = 0", "regions.frames.size", "got 0"),
    ('size = "1 MiB"', 'size = "2 GiB"', "regions.frames.size", f"1..{1 << 30}, got {2 << 30}"),
    ('size = "1 MiB"', 'size = "lots"', "regions.frames.size", "cannot read size 'lots'"),
    ('size = "1 MiB"', 'size = "4 TiB"', "regions.frames.size", "cannot read size"),
    ('size = "1 MiB"', 'size = "1 MiB"\nbuffer_size = 1000', "regions.frames.buffer_size",
     "must be a power of two, got 1000"),
    ('size = "1 MiB"', 'size = "1 MiB"\nbuffer_size = 32', "regions.frames.buffer_size",
     "64..262144, got 32"),
    ('size = "1 MiB"', 'size = 4096\nbuffer_size = 8192', "regions.frames.buffer_size",
     "exceeds the region's 4096 bytes"),
    ('program = "json:JSONDecoder"\npriority = 100', 'program = "json"\npriority = 100',
     "components.sink.program", 'must be "module.path:ClassName"'),
    ('program = "json:JSONDecoder"\npriority = 100',
     'program = "no_such_module_xyz.sub:Thing"\npriority = 100', "components.sink.program",
     "module 'no_such_module_xyz.sub' not found"),
    ('program = "json:JSONDecoder"\npriority = 100',
     'program = "json.nothing_here:Thing"\npriority = 100', "components.sink.program",
     "not found"),
    ("priority = 100", 'priority = 100\nlimits = { memory = "1 KiB" }',
     "components.sink.limits.memory", "got 1024"),
    ("priority = 100", "priority = 100\nlimits = { open_files = 1 }",
     "components.sink.limits.open_files", "16..65536, got 1"),
    ("priority = 100", 'priority = 100\nwait = "spin"', "components.sink.wait",
     "must be one of 'block', 'poll', got 'spin'"),
])
def test_wrong_types_and_ranges(tmp_path, old, new, key, message):
    text = (HEAD + QUEUE).replace(old, new, 1)
    p = only(tmp_path, text)
    assert p.key == key and message in p.message, str(p)
    assert p.line == line_in(text, key)


@pytest.mark.parametrize("old, new, key, message", [
    ("capacity = 1024", "capacity = 1000", "queues[0].capacity", "power of two, got 1000"),
    ("capacity = 1024", "capacity = 1", "queues[0].capacity", "2..1048576, got 1"),
    ("capacity = 1024", "capacity = 2097152", "queues[0].capacity", "got 2097152"),
    ("capacity = 1024", 'kind = "bus"', "queues[0].kind", "must be one of 'pair', 'diode'"),
])
def test_queue_ranges(tmp_path, old, new, key, message):
    text = HEAD + (QUEUE + "capacity = 1024\n").replace(old, new)
    p = only(tmp_path, text)
    assert p.key == key and message in p.message
    assert p.line == line_of(text, new.split("=")[0])


@pytest.mark.parametrize("bad", ["9lives", "has space", "x" * 64, "dot.ted"])
def test_names_must_be_identifiers(tmp_path, bad):
    text = HEAD.replace('name = "t"', f"name = {json.dumps(bad)}")
    p = only(tmp_path, text + QUEUE)
    assert p.key == "system.name" and "must be a name of letters" in p.message
    assert p.line == 2


def test_bad_region_and_queue_names(tmp_path):
    text = HEAD + QUEUE.replace('name = "ingress"', 'name = "in gress"') + \
        '\n[regions."bad name"]\nsize = 4096\n'
    keys = {p.key for p in problems(tmp_path, text)}
    assert keys == {"queues[0].name", 'regions.bad name'}


def test_duplicate_table_is_a_problem_with_line_and_column(tmp_path):
    text = HEAD + QUEUE + '\n[components.gen]\nprogram = "json:JSONDecoder"\n'
    p = only(tmp_path, text)
    assert "not valid TOML" in p.message
    assert p.line == line_of(text, "[components.gen]", 1) and p.column is not None
    assert str(p).startswith(f"{tmp_path / 'sys.toml'}:{p.line}:{p.column}: error: not valid")


def test_missing_required_keys(tmp_path):
    text = HEAD.replace('name = "t"\n', "").replace('size = "1 MiB"', "buffer_size = 64") \
        + '\n[components.idle]\npriority = 1\n' + '\n[[queues]]\nname = "q"\n'
    found = {p.key: p.message for p in problems(tmp_path, text)}
    assert found["system"] == "missing 'name'"
    assert found["regions.frames"] == "missing 'size'"
    assert found["components.idle"] == "missing 'program'"
    assert found["queues[0]"] == "missing 'producer', 'consumer', 'data'"


def test_no_components_is_an_error(tmp_path):
    p = only(tmp_path, '[system]\nname = "empty"\n')
    assert (p.key, p.message) == ("components", "no components defined")


def test_all_problems_are_reported_together(tmp_path):
    text = (HEAD + QUEUE).replace("priority = 200", "priority = 999").replace(
        'perms = "r" }', 'perms = "x" }').replace('data = "frames"', 'data = "rx"')
    found = problems(tmp_path, text)
    assert [p.key for p in found] == ["components.gen.priority", "components.sink.maps[0].perms",
                                      "queues[0].data"]
    assert "\n".join(str(p) for p in found) == str(DescriptionError(found))


def test_unreadable_file_is_a_description_error(tmp_path):
    with pytest.raises(DescriptionError) as info:
        load(tmp_path / "absent.toml")
    [p] = info.value.problems
    assert p.file == str(tmp_path / "absent.toml") and "cannot read" in p.message
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe[system]")
    with pytest.raises(DescriptionError):
        load(bad)


# -- maps and references -------------------------------------------------------------------------

@pytest.mark.parametrize("perms, message", [
    ("w", "write-only mappings are not supported"),
    ("x", "executable mappings are not supported"),
    ("rwx", "executable mappings are not supported"),
    ("rx", "executable mappings are not supported"),
    ("read", "must be 'r' or 'rw', got 'read'"),
])
def test_map_permissions(tmp_path, perms, message):
    text = HEAD.replace('perms = "r" }', f'perms = "{perms}" }}') + QUEUE
    p = only(tmp_path, text)
    assert (p.key, p.message) == ("components.sink.maps[0].perms", message)
    assert p.line == line_of(text, "maps =", 1)


def test_same_region_mapped_twice(tmp_path):
    text = HEAD.replace('perms = "r" }]', 'perms = "r" }, { region = "frames", perms = "rw" }]')
    p = only(tmp_path, text + QUEUE)
    assert p.key == "components.sink.maps[1].region"
    assert p.message == "region 'frames' is mapped twice by 'sink'"


def test_dangling_references_list_the_valid_names(tmp_path):
    text = HEAD.replace('region = "frames", perms = "r"', 'region = "tx", perms = "r"') + \
        QUEUE.replace('consumer = "sink"', 'consumer = "snk"')
    found = {p.key: p for p in problems(tmp_path, text)}
    assert found["components.sink.maps[0].region"].message == "no region named 'tx'"
    assert found["components.sink.maps[0].region"].hint == "regions: frames"
    assert found["queues[0].consumer"].message == "no component named 'snk'"
    assert found["queues[0].consumer"].hint == "components: gen, sink"
    assert found["queues[0].consumer"].line == line_of(text, "consumer =")


def test_an_invalid_region_is_reported_once_not_again_by_its_users(tmp_path):
    p = only(tmp_path, HEAD.replace('size = "1 MiB"', "size = 0") + QUEUE)
    assert p.key == "regions.frames.size"


def test_a_bad_map_is_reported_once_not_again_by_the_queue_check(tmp_path):
    p = only(tmp_path, HEAD.replace('perms = "r" }', 'perms = "w" }') + QUEUE)
    assert p.key == "components.sink.maps[0].perms"


def test_a_reference_that_is_not_a_name(tmp_path):
    p = only(tmp_path, HEAD.replace('region = "frames", perms = "r"', "region = { a = 1 }")
             + QUEUE)
    assert p.key == "components.sink.maps[0].region"
    assert p.message == "must be the name of a region, got a table"
    assert p.hint == "regions: frames"


def test_a_list_of_producers_is_rejected(tmp_path):
    text = HEAD + QUEUE.replace('producer = "gen"', 'producer = ["gen", "sink"]')
    p = only(tmp_path, text)
    assert p.key == "queues[0].producer"
    assert p.message.startswith("a ring has exactly one producer")


def test_producer_must_differ_from_consumer(tmp_path):
    p = only(tmp_path, HEAD + QUEUE.replace('consumer = "sink"', 'consumer = "gen"'))
    assert p.key == "queues[0].consumer" and "both 'gen'" in p.message


def test_queue_producer_must_map_the_data_region(tmp_path):
    text = HEAD.replace('maps = [{ region = "frames", perms = "rw" }]', "") + QUEUE
    p = only(tmp_path, text)
    assert p.key == "queues[0].producer"
    assert p.message == "'gen' does not map the queue's data region 'frames'"
    assert "components.gen.maps" in p.hint


def test_queue_and_channel_names_share_one_namespace(tmp_path):
    text = HEAD + QUEUE + '\n[[channels]]\nname = "ingress"\nends = ["gen", "sink"]\n'
    p = only(tmp_path, text)
    assert p.key == "channels[0].name" and "already used" in p.message


# -- buffer origins ------------------------------------------------------------------------------

def test_origin_must_map_its_region_rw(tmp_path):
    text = HEAD.replace('perms = "rw"', 'perms = "r"') + QUEUE
    p = only(tmp_path, text)
    assert p.key == "components.gen.maps"
    assert p.message == "'gen' originates frames in 'frames' and must map it 'rw'"
    assert p.line == line_of(text, "maps =")


def test_region_without_origin_is_an_error(tmp_path):
    text = HEAD + QUEUE + QUEUE.replace("ingress", "back").replace(
        'producer = "gen"', 'producer = "x"').replace('consumer = "sink"', 'consumer = "gen"') \
        .replace('producer = "x"', 'producer = "sink"')
    p = only(tmp_path, text)
    assert (p.key, p.message) == ("regions.frames", "no component originates buffers of 'frames'")


def test_initial_buffers_split_evenly_with_remainder_to_the_first(tmp_path):
    comps = "".join(f'\n[components.{n}]\nprogram = "{PROG}"\nmaps = [{{ region = "r", '
                    f'perms = "{"r" if n == "sink" else "rw"}" }}]\n'
                    for n in ("c", "a", "b", "sink"))
    queues = "".join(f'\n[[queues]]\nname = "q{n}"\nproducer = "{n}"\nconsumer = "sink"\n'
                     f'data = "r"\n' for n in ("c", "a", "b"))
    text = '[system]\nname = "s"\n[regions.r]\nsize = 20480\nbuffer_size = 1024\n' + comps + queues
    system = load(write(tmp_path, text))
    assert system.origins("r") == ["a", "b", "c"]
    # 20480 // 1024 = 20 buffers over 3 origins: 6 each, the remainder 2 to the first.
    assert system.initial_buffers("r") == {"a": (0, 8), "b": (8, 6), "c": (14, 6)}
    assert system.origins("nothing") == [] and system.initial_buffers("nothing") == {}


def test_forwarder_is_not_an_origin():
    system = load(ROOT / "examples" / "pipeline.toml")
    assert "fwd" not in system.origins("frames")


# -- protected calls -----------------------------------------------------------------------------

@pytest.mark.parametrize("caller_priority", [100, 150])
def test_protected_call_needs_strictly_higher_callee(tmp_path, caller_priority):
    text = HEAD.replace("priority = 200", f"priority = {caller_priority}", 1) + QUEUE + \
        '\n[[channels]]\nname = "ctl"\nends = ["gen", "sink"]\npp = "gen"\n'
    p = only(tmp_path, text)
    assert p.key == "channels[0].pp" and "may not call 'sink' (priority 100)" in p.message
    assert p.line == line_of(text, "pp =")


@pytest.mark.parametrize("ends, pp, key, message", [
    ('["gen"]', None, "channels[0].ends", "exactly two different components"),
    ('["gen", "gen"]', None, "channels[0].ends", "exactly two different components"),
    ('["gen", "ghost"]', None, "channels[0].ends[1]", "no component named 'ghost'"),
    ('["gen", "sink"]', '"other"', "channels[0].pp", "must be one of the channel's ends"),
])
def test_channel_shape(tmp_path, ends, pp, key, message):
    text = HEAD + QUEUE + f'\n[[channels]]\nname = "ctl"\nends = {ends}\n' + \
        (f"pp = {pp}\n" if pp else "")
    p = only(tmp_path, text)
    assert p.key == key and message in p.message


def test_call_cycle_is_reported(tmp_path):
    checker = _Checker("x.toml", "")
    channels = {"a": ChannelSpec("a", ("p", "q"), "p"), "b": ChannelSpec("b", ("q", "r"), "q"),
                "c": ChannelSpec("c", ("r", "p"), "r")}
    _check_call_cycles(checker, {}, channels)
    [p] = checker.problems
    assert p.key == "channels" and p.message == "protected calls form a cycle: p -> q -> r -> p"
    acyclic = _Checker("x.toml", "")
    _check_call_cycles(acyclic, {}, {"a": channels["a"], "b": channels["b"]})
    assert acyclic.problems == []


# -- warnings ------------------------------------------------------------------------------------

def test_unused_region_and_idle_component_are_warnings(tmp_path):
    text = HEAD + QUEUE + '\n[regions.spare]\nsize = 4096\n' + \
        f'\n[components.idle]\nprogram = "{PROG}"\n'
    system = load(write(tmp_path, text))
    assert [(w.key, w.message, w.severity) for w in system.warnings] == [
        ("regions.spare", "region 'spare' is not mapped by any component", "warning"),
        ("components.idle", "component 'idle' has no regions, queues or channels", "warning"),
    ]
    assert system.warnings[0].line == line_of(text, "[regions.spare]")
    assert ": warning: regions.spare: " in str(system.warnings[0])


# -- overrides -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("gen.count=10", ("gen", ["count"], 10)),
    ("gen.rate=1.5", ("gen", ["rate"], 1.5)),
    ("gen.on=true", ("gen", ["on"], True)),
    ("gen.mode=fast", ("gen", ["mode"], "fast")),
    ('gen.mode="a b"', ("gen", ["mode"], "a b")),
    ("gen.ports=[1, 2]", ("gen", ["ports"], [1, 2])),
    ("gen.a.b.c=x=y", ("gen", ["a", "b", "c"], "x=y")),
    ("gen.file=/tmp/out.pcap", ("gen", ["file"], "/tmp/out.pcap")),
])
def test_parse_override(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("bad", ["gen=1", "gen.count", ".count=1", "gen..x=1"])
def test_parse_override_rejects_malformed(bad):
    with pytest.raises(ValueError):
        parse_override(bad)


def test_overrides_apply_to_config_before_validation(tmp_path):
    text = HEAD.replace("priority = 200", 'priority = 200\nconfig = { count = 5, sub = { k = 1 } }'
                        ) + QUEUE
    system = load(write(tmp_path, text), ["gen.count=7", "gen.sub.k=2", "gen.sub.new=x",
                                          "sink.deep.er=3"])
    assert system.components["gen"].config == {"count": 7, "sub": {"k": 2, "new": "x"}}
    assert system.components["sink"].config == {"deep": {"er": 3}}


def test_override_of_unknown_component(tmp_path):
    p = only(tmp_path, HEAD + QUEUE, ["nic.count=1"])
    assert p.key == "--set" and "no component 'nic'" in p.message
    assert p.hint == "components: gen, sink"
    p = only(tmp_path, HEAD + QUEUE, ["nonsense"])
    assert p.key == "--set"


# -- capability tables ---------------------------------------------------------------------------

def test_capabilities_rows(tmp_path):
    text = HEAD.replace('size = "1 MiB"', 'size = "4 MiB"') + QUEUE + \
        '\n[[channels]]\nname = "ctl"\nends = ["sink", "gen"]\npp = "sink"\n'
    system = load(write(tmp_path, text))
    assert capabilities(system, "gen") == [
        ("region", "frames", "rw 4 MiB, buffers of 2048 B"),
        ("queue", "ingress", "producer -> sink over frames, capacity 1024"),
        ("channel", "ctl", "notify <-> sink; called by sink"),
        ("buffers", "frames", "origin of 2048 buffers (0..2047)"),
    ]
    assert capabilities(system, "sink") == [
        ("region", "frames", "r 4 MiB, buffers of 2048 B"),
        ("queue", "ingress", "consumer <- gen over frames, capacity 1024"),
        ("channel", "ctl", "notify <-> gen; may call gen"),
    ]


def test_render_check_prints_summary_warnings_and_tables(tmp_path):
    text = HEAD + QUEUE + '\n[regions.spare]\nsize = 4096\n'
    system = load(write(tmp_path, text))
    out = io.StringIO()
    render_check(system, Console(file=out, width=200))
    shown = out.getvalue()
    assert "system 't'" in shown and "2 components, 2 regions, 1 queues" in shown
    assert "region 'spare' is not mapped by any component" in shown
    assert shown.index("gen: json:JSONDecoder, priority 200") < \
        shown.index("sink: json:JSONDecoder, priority 100")
    assert "origin of 512 buffers (0..511)" in shown


# -- property: random valid descriptions load without problems ------------------------------------

def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"


def to_toml(doc: dict) -> str:
    """A tiny TOML writer for the shape of a description."""
    lines = ["[system]"] + [f"{k} = {toml_value(v)}" for k, v in doc["system"].items()]
    for section in ("regions", "components"):
        for name, table in doc[section].items():
            lines += ["", f"[{section}.{name}]"]
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    for section in ("queues", "channels"):
        for table in doc[section]:
            lines += ["", f"[[{section}]]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True)


@st.composite
def descriptions(draw):
    names = draw(st.lists(NAMES, min_size=3, max_size=10, unique_by=str.lower))
    n_regions = draw(st.integers(1, min(3, len(names) - 2)))
    region_names, comp_names = names[:n_regions], names[n_regions:]
    regions = {}
    for r in region_names:
        buf = 1 << draw(st.integers(6, 16))
        size = draw(st.integers(buf, 1 << 22))
        regions[r] = {"size": size, "buffer_size": buf} if draw(st.booleans()) else \
            {"size": f"{-(-size // 1024)} KiB", "buffer_size": buf}
    priorities = {c: draw(st.integers(0, 254)) for c in comp_names}
    components = {c: {"program": PROG, "priority": priorities[c], "maps": [],
                      "config": {"n": draw(st.integers(0, 9))},
                      "restart": draw(st.sampled_from(["never", "on-failure", "always"]))}
                  for c in comp_names}
    queues, qnum = [], 0
    for r in region_names:
        chain = draw(st.lists(st.sampled_from(comp_names), max_size=4, unique=True))
        for i, c in enumerate(chain):
            components[c]["maps"].append({"region": r, "perms": "rw" if i == 0 else
                                          draw(st.sampled_from(["r", "rw"]))})
        for a, b in pairwise(chain):
            queues.append({"name": f"q{qnum}", "producer": a, "consumer": b, "data": r,
                           "capacity": 1 << draw(st.integers(1, 20))})
            qnum += 1
    channels = []
    for i, (a, b) in enumerate(pairwise(comp_names)):
        channel = {"name": f"ch{i}", "ends": [a, b]}
        if priorities[a] != priorities[b]:
            channel["pp"] = a if priorities[a] < priorities[b] else b
        channels.append(channel)
    return {"system": {"name": names[0], "description": "random"}, "regions": regions,
            "components": components, "queues": queues, "channels": channels}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(doc=descriptions())
def test_random_valid_descriptions_round_trip(tmp_path, doc):
    system = load(write(tmp_path, to_toml(doc)))
    assert system.name == doc["system"]["name"]
    for name, raw in doc["regions"].items():
        region = system.regions[name]
        assert region.size % PAGE == 0 and region.size >= region.buffer_size == raw["buffer_size"]
    for name, raw in doc["components"].items():
        spec = system.components[name]
        assert (spec.priority, spec.restart, spec.config) == \
            (raw["priority"], raw["restart"], raw["config"])
        assert [(m.region, m.perms) for m in spec.maps] == \
            [(m["region"], m["perms"]) for m in raw["maps"]]
    assert [(q.name, q.producer, q.consumer, q.data, q.capacity) for q in system.queues.values()] \
        == [(q["name"], q["producer"], q["consumer"], q["data"], q["capacity"])
            for q in doc["queues"]]
    assert [c.pp for c in system.channels.values()] == [c.get("pp") for c in doc["channels"]]
    for name in doc["regions"]:
        shares = system.initial_buffers(name)
        if shares:
            spec = system.regions[name]
            assert sum(count for _, count in shares.values()) == spec.size // spec.buffer_size
    assert all(w.severity == "warning" for w in system.warnings)
