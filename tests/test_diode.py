"""Diodes: one-way queues. Whatever the consumer does, the producer observes nothing of it."""

from __future__ import annotations

import numpy as np
import pytest

from shmring import Region, descriptors
from shmring.diode import DiodeConsumer, DiodeProducer, diode_bytes
from tests.capnet_run import run_system

DIODE = """
[system]
name = "diode"

[regions.frames]
size = "256 KiB"
[regions.oneway]
size = "256 KiB"

[components.gen]
program = "drivers.synthetic:Source"
priority = 200
config = { count = 5000, size = 100, batch = 16 }
maps = [{ region = "frames", perms = "rw" }]

[components.fwd]
program = "harness.forward:Forward"
priority = 150
maps = [{ region = "frames", perms = "r" }, { region = "oneway", perms = "rw" }]

[components.far]
program = "CONSUMER"
priority = 100
maps = [{ region = "oneway", perms = "r" }]

[[queues]]
name = "in"
producer = "gen"
consumer = "fwd"
data = "frames"
capacity = 64

[[queues]]
name = "out"
producer = "fwd"
consumer = "far"
data = "oneway"
capacity = 64
kind = "diode"
"""


def _pair(capacity=8, buffer_size=256):
    rings = Region.create("r", diode_bytes(capacity))
    data = Region.create("d", capacity * buffer_size)
    return DiodeProducer("x", rings, data, capacity, buffer_size, None), \
        DiodeConsumer("x", rings, data, capacity, buffer_size)


def _frames(n, start=0):
    source = np.zeros(n * 64, dtype=np.uint8)
    batch = descriptors(n)
    batch["offset"] = np.arange(n) * 64
    batch["length"] = 8
    source.view(np.uint64)[::8] = np.arange(start, start + n)
    return source, batch


def test_frames_cross_in_order_and_are_copied_out():
    producer, consumer = _pair()
    source, batch = _frames(5)
    assert producer.send_frames(source, batch) == 5
    got = consumer.receive()
    assert len(got) == 5
    seqs = consumer.data.array.view(np.uint64)[got["offset"].astype(np.int64) // 8]
    assert seqs.tolist() == [0, 1, 2, 3, 4]


def test_a_slow_consumer_loses_the_oldest_frames_and_counts_them():
    producer, consumer = _pair(capacity=8)
    for i in range(4):
        source, batch = _frames(5, start=5 * i)
        producer.send_frames(source, batch)       # never blocks, never reads the consumer
    got = consumer.receive()
    seqs = consumer.data.array.view(np.uint64)[got["offset"].astype(np.int64) // 8]
    assert seqs.tolist() == list(range(12, 20))   # the newest capacity frames
    assert consumer.stats()["overrun"] == 12


def test_the_consumer_maps_the_diode_read_only():
    _producer, consumer = _pair()
    view = Region.attach("r", consumer.rings.grant_fd("r"), "r")
    assert not view.array.flags.writeable
    with pytest.raises(ValueError):
        view.array[0] = 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for consumer in ("drivers.synthetic:Sink", "tests.components:IdleConsumer",
                     "tests.components:DiodeScribbler"):
        tmp = tmp_path_factory.mktemp("diode")
        out[consumer] = run_system(tmp, DIODE.replace("CONSUMER", consumer))
    return out


def test_producer_observes_nothing_of_its_consumer(runs):
    seen = set()
    for consumer, (proc, summary) in runs.items():
        assert proc.returncode in (0, 1), proc.stderr
        fwd = summary["components"]["fwd"]
        assert fwd["faults"] == [], consumer
        # everything the producer knows of its diode end, and its own counters
        seen.add(repr((fwd["stats"]["counters"], fwd["stats"]["queues"]["out"])))
    assert len(seen) == 1, seen


def test_the_consumer_receives_through_the_diode(runs):
    _proc, summary = runs["drivers.synthetic:Sink"]
    sink = summary["components"]["far"]["stats"]["counters"]
    assert sink["in"] + sink.get("overrun", 0) <= 5000 and sink["in"] > 0
    assert sink["corrupt"] == 0 and sink["reordered"] == 0


def test_a_consumer_writing_into_the_diode_is_killed(runs):
    proc, summary = runs["tests.components:DiodeScribbler"]
    assert "[far] ring mapping writable: False" in proc.stdout
    assert "scribbled the diode" not in proc.stdout
    assert [f["signal"] for f in summary["components"]["far"]["faults"]] == ["SIGSEGV"]
