"""``drivers.wire:Wire`` — a cable between queues, with seeded fault injection (no netem here).

Config: ``seed`` and ``links``, each ``{ from = QUEUE_IN, to = QUEUE_OUT, loss, duplicate,
reorder, corrupt (probabilities 0..1), delay_us, jitter_us, reorder_us }``. A link takes every
frame arriving on ``from``, copies it out of the sender's region (the wire joins separate
regions, as a cable joins two machines), and after the faults delivers it on ``to``, whose
region the wire originates. Loss drops the frame (``dropped.loss``); duplicate sends it twice
(the copy is counted ``in`` and ``created``, and as ``duplicated``); corrupt flips one random bit
(``corrupted``); reorder holds it back ``reorder_us`` longer than its neighbours
(``reordered``); every frame waits ``delay_us`` ± ``jitter_us``. Frames waiting are counted as
``pending`` so conservation holds at any moment: in = out + dropped + pending.
"""

from __future__ import annotations

import heapq
import itertools

import numpy as np

from harness import Component

FAULTS = ("loss", "duplicate", "reorder", "corrupt")
LINK_KEYS = {"from", "to", "delay_us", "jitter_us", "reorder_us", *FAULTS}


class _Link:
    def __init__(self, wire: Wire, spec: dict, rng: np.random.Generator) -> None:
        unknown = set(spec) - LINK_KEYS
        if unknown:
            raise ValueError(f"{wire.name}: unknown link keys {sorted(unknown)}")
        self.source, self.target = wire.queues[spec["from"]], wire.queues[spec["to"]]
        if self.source.role != "consumer" or self.target.role != "producer":
            raise ValueError(f"{wire.name}: a link goes from a queue it consumes to one it "
                             "produces")
        self.pool = wire.pools[self.target.data.name]
        self.p = {k: float(spec.get(k, 0.0)) for k in FAULTS}
        self.delay = int(float(spec.get("delay_us", 0)) * 1000)
        self.jitter = int(float(spec.get("jitter_us", 0)) * 1000)
        self.reorder = int(float(spec.get("reorder_us", 500)) * 1000)
        self.rng = rng
        self.waiting: list[tuple[int, int, bytes, int]] = []   # (due, seq, frame, ingress)
        self.seq = itertools.count()


class Wire(Component):
    def init(self) -> None:
        rng = np.random.default_rng(int(self.config.get("seed", 1)))
        self.links = [_Link(self, spec, rng) for spec in self.config.get("links", [])]
        if not self.links:
            raise ValueError(f"{self.name}: config needs links = [{{ from = ..., to = ... }}]")
        self.by_source = {link.source.name: link for link in self.links}
        self.by_target = {link.target.name: link for link in self.links}

    def notified(self, channel) -> None:
        if channel.name in self.by_target:           # empty buffers came back
            link = self.by_target[channel.name]
            link.pool.give(link.target.reclaim())
            self._deliver(link)
        if channel.name in self.by_source:
            self._take(self.by_source[channel.name])

    def timeout(self, token) -> None:
        for link in self.links:
            if token == ("deliver", id(link)):
                self._deliver(link)

    def _take(self, link: _Link) -> None:
        batch = link.source.receive()
        if not len(batch):
            return
        now, data, p = self.now(), link.source.data.array, link.p
        # six draws per frame, whatever the batching: the same seed gives the same faults
        draws = link.rng.random((len(batch), 6)).tolist()
        for (loss, dup, reorder, corrupt, where, jitter), offset, length, ingress in zip(
                draws, batch["offset"].tolist(), batch["length"].tolist(),
                batch["timestamp"].tolist(), strict=True):
            self.count("in")
            if loss < p["loss"]:
                self.drop("loss")
                continue
            frame = bytearray(data[offset:offset + length])
            if corrupt < p["corrupt"] and length:
                bit = int(where * length * 8)
                frame[bit // 8] ^= 1 << (bit % 8)
                self.count("corrupted")
            due = now + link.delay + int((2 * jitter - 1) * link.jitter)
            if reorder < p["reorder"]:
                due += link.reorder
                self.count("reordered")
            copies = 2 if dup < p["duplicate"] else 1
            if copies == 2:
                self.count("in")
                self.count("created")
                self.count("duplicated")
            for _ in range(copies):
                heapq.heappush(link.waiting, (due, next(link.seq), bytes(frame), ingress))
        link.source.release(batch)
        self._deliver(link)

    def _deliver(self, link: _Link) -> None:
        now = self.now()
        due = []
        while link.waiting and link.waiting[0][0] <= now:
            due.append(heapq.heappop(link.waiting))
        if due:
            buffers = link.pool.take(min(len(due), link.target.space()))
            data = link.target.data.array
            for i, (_due, _seq, frame, ingress) in enumerate(due[:len(buffers)]):
                offset = int(buffers["offset"][i])
                data[offset:offset + len(frame)] = np.frombuffer(frame, np.uint8)
                buffers["length"][i] = len(frame)
                buffers["timestamp"][i] = ingress
            sent = link.target.send(buffers)
            link.pool.give(buffers[sent:])
            self.count("out", sent)
            for item in due[sent:]:               # no room yet: keep them, in order
                heapq.heappush(link.waiting, item)
        self.counters["pending"] = sum(len(k.waiting) for k in self.links)
        if link.waiting:
            self.set_timer(max(link.waiting[0][0], now + 50_000), ("deliver", id(link)))
