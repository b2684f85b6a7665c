"""Synthetic frames: a numbered-frame source and a counting, checking sink.

Each frame carries its sequence number in its first 8 bytes (little endian), then a fill byte
derived from it, so a sink can tell lost, duplicated, reordered and corrupted frames apart.

Source config: ``count`` (frames, 0 = until stopped), ``size`` (bytes, 8..buffer size),
``batch`` (frames per enqueue), ``pps`` (frames/s, 0 = as fast as the ring takes them).
Sink config: ``verify`` (check numbering and fill, default true).
"""

from __future__ import annotations

import numpy as np

from harness import Component
from harness.origin import Origin

BATCHES_PER_TURN = 16        # a source yields after this many batches so control stays responsive


class Source(Origin):
    def init(self) -> None:
        super().init()
        cfg = self.config
        self.total = int(cfg.get("count", 1000))
        self.size = int(cfg.get("size", 64))
        self.batch = int(cfg.get("batch", 64))
        if not 8 <= self.size <= self.out.ledger.buffer_size:
            raise ValueError(f"{self.name}: size must be 8..{self.out.ledger.buffer_size}")
        pps = int(cfg.get("pps", 0))
        self.interval_ns = self.batch * 1_000_000_000 // pps if pps else 0
        self.seq = 0
        self.done = False
        self.words = self.out.data.array.view(np.uint64)
        self.set_timer(self.now(), "produce")

    def produce(self) -> None:
        for _ in range(BATCHES_PER_TURN):
            want = self.batch if not self.total else min(self.batch, self.total - self.seq)
            if want <= 0:
                if not self.done:
                    self.done = True
                    self.finish()
                return
            batch = self.pool.take(min(want, self.out.space()))
            if not len(batch):
                return                      # no buffer or no room: wait for the free ring
            seqs = np.arange(self.seq, self.seq + len(batch), dtype=np.uint64)
            offsets = batch["offset"].astype(np.int64)
            self.words[offsets // 8] = seqs
            fill_at = offsets + 8
            fill = (seqs % 251).astype(np.uint8)[:, None]
            self.out.data.array[fill_at[:, None] + np.arange(self.size - 8)] = fill
            batch["length"] = self.size
            batch["timestamp"] = self.now()
            sent = self.out.send(batch)
            if sent < len(batch):
                self.pool.give(batch[sent:])
            self.seq += sent
            self.count("in", sent)
            self.count("out", sent)
            if self.interval_ns:
                self.set_timer(self.now() + self.interval_ns, "produce")
                return
        self.set_timer(self.now(), "produce")


class Sink(Component):
    def init(self) -> None:
        self.verify = bool(self.config.get("verify", True))
        self.expected: dict[str, int] = {}
        self.latency_ns = 0

    def notified(self, channel) -> None:
        q = self.queues.get(channel.name)
        if q is None or q.role != "consumer":
            return
        batch = q.receive()
        if not len(batch):
            return
        self.count("in", len(batch))
        if self.verify:
            self._check(q, batch)
        self.latency_ns += int((self.now() - batch["timestamp"]).sum())
        self.count("out", len(batch))
        q.release(batch)

    def _check(self, q, batch: np.ndarray) -> None:
        words = q.data.array.view(np.uint64)
        offsets = batch["offset"].astype(np.int64)
        seqs = words[offsets // 8].astype(np.int64)
        expected = self.expected.get(q.name, 0)
        steps = np.diff(np.concatenate(([expected - 1], seqs)))
        self.count("gaps", int((steps > 1).sum()))
        self.count("reordered", int((steps < 1).sum()))
        self.expected[q.name] = int(seqs.max()) + 1
        lengths = batch["length"].astype(np.int64)
        first_fill = q.data.array[np.minimum(offsets + 8, offsets + lengths - 1)]
        has_fill = lengths > 8
        self.count("corrupt", int((has_fill & (first_fill != (seqs % 251))).sum()))

    def stats(self) -> dict:
        frames = self.counters.get("in", 0)
        return {"mean_latency_us": round(self.latency_ns / frames / 1000, 2) if frames else None}
