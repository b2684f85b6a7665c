"""Capture files as components: ``Replay`` puts a pcap/pcapng into a system, ``Capture`` takes
frames out into one. Both are handed their files as devices (the harness opens them).

Replay (devices: the capture, ``r``). Config:
- ``mode``: ``topspeed`` (default), ``original`` (the capture's own gaps), ``multiplier``
  (original gaps divided by ``multiplier``), ``pps`` (``pps`` frames/s), ``mbps`` (``mbps``
  Mbit/s of frame bytes) — tcpreplay's ``-t``, default, ``-x``, ``-p`` and ``-M``;
- ``maxsleep_ms``: with the capture's own gaps, no gap longer than this (tcpreplay's
  ``--maxsleep``); a timestamp earlier than the one before it means no gap, as in tcpreplay;
- ``loop`` (times through the file, default 1), ``duration`` (s, 0 = no limit),
  ``preload`` (load the frames before starting, as tcpreplay's ``-K``), ``batch`` (frames per
  enqueue, default 32).
Each frame is copied once, from the mapped file straight into a buffer of the data region. Its
descriptor carries the ingress time (``timestamp``, monotonic ns) and the record's index in the
file (``meta``). With ``preload``, when the region has a buffer for every frame, the frames are
copied into the region before the clock starts and stay *resident*: each replay (every loop)
sends a descriptor for a frame already in place, once its buffer has come back — no copy at
all while replaying. A corrupt or truncated file is replayed up to its first bad record, whose byte
offset is reported; frames longer than the region's buffers are dropped (``oversize``).

Capture (devices: the output, ``w`` — without one it only measures; optionally the replayed
input, ``r``, to keep each frame's original timestamp, length and interface). Config: ``format`` (``pcap``/``pcapng``) and
``nanosecond`` when there is no input to follow; ``timestamps``: ``original`` (the input's own,
the default when there is an input), ``ingress`` (when the frame entered the system) or
``egress`` (when it reached the capture), both as wall-clock time; ``drops = true`` when what it records was dropped upstream (counted
there; here also as ``recorded_drops``). Records each frame's latency
(now − ingress) in an HDR histogram, reported by ``stats()``.
"""

from __future__ import annotations

import os
import struct
import time

import numpy as np

from drivers.capture import CaptureWriter, copy_frames, map_fd, scan
from drivers.hdrhist import Histogram
from harness import Component
from harness.origin import Origin
from shmring.descriptor import DESC_DTYPE
from shmring.ledger import SMALL as FEW  # batches up to this size: struct, not numpy
from shmring.ring import SLOT

MODES = ("topspeed", "original", "multiplier", "pps", "mbps")
STAMPS = ("original", "ingress", "egress")
_STAMP = struct.Struct("<Q")      # a descriptor's ingress time, written in place
_DESC = struct.Struct("<QIIQQ")   # a whole descriptor (shmring.descriptor)
_I64_END, _U64_END = 1 << 63, 1 << 64
_STAMP_AT = DESC_DTYPE.fields["timestamp"][1]
TURN_FRAMES = 1024          # frames per entry point, so control messages stay responsive


def original_schedule(ts_ns: np.ndarray, factor: float = 1.0,
                      maxsleep_ms: float | None = None) -> np.ndarray:
    """Due time (ns after the first) of each record at the capture's own timing divided by
    ``factor``: each gap is the step from the record before, none below zero (a capture's
    clock may go back) and, with ``maxsleep_ms``, none above that."""
    if not len(ts_ns):
        return np.zeros(0, np.int64)
    ts = ts_ns.astype(np.int64)
    step = np.diff(ts, prepend=ts[0]).clip(min=0) / factor
    if maxsleep_ms is not None:
        step = np.minimum(step, float(maxsleep_ms) * 1e6)
    return np.cumsum(step).astype(np.int64)


def _device(component: Component, mode: str, required: bool = True):
    found = [d for d in component.devices if d.mode == mode]
    if not found and required:
        raise ValueError(f"{component.name}: needs a file device with mode '{mode}'")
    return found[0] if found else None


class Replay(Origin):
    def init(self) -> None:
        super().init()
        cfg = self.config
        self.mode = cfg.get("mode", "topspeed")
        if self.mode not in MODES:
            raise ValueError(f"{self.name}: mode must be one of {', '.join(MODES)}")
        self.loops = int(cfg.get("loop", 1))
        self.batch = int(cfg.get("batch", 32))
        self.deadline = self.now() + int(float(cfg.get("duration", 0)) * 1e9) \
            if cfg.get("duration") else None
        source = _device(self, "r")
        self.file = map_fd(source.fd)
        if cfg.get("preload"):
            self.file = bytes(self.file)
        result = scan(self.file)
        self.records = result.records
        if result.error is not None:
            print(f"{source.path}: {result.error}; the {len(self.records)} records before it "
                  "are replayed", flush=True)
        self.n = len(self.records)
        self.buffer_size = self.out.ledger.buffer_size
        self.resident = bool(cfg.get("preload")) and self._load_resident()
        self._schedule()
        self.k = 0                       # frames offered so far, over all loops
        self.started = self.now()
        self.set_timer(self.started, "produce")

    def _load_resident(self) -> bool:
        """Copy every frame into a buffer of its own, if the pool has enough and all fit."""
        r = self.records
        if self.n == 0 or self.n > len(self.pool) or int(r["caplen"].max()) > self.buffer_size:
            return False
        slots = self.pool.take(self.n)
        self.slot = slots["offset"].astype(np.uint64)           # record -> its buffer
        self.record_of = np.full(self.out.ledger.nbuf, -1, np.int64)   # buffer -> record
        self.record_of[(self.slot // np.uint64(self.buffer_size)).astype(np.int64)] = \
            np.arange(self.n)
        copy_frames(self.file, r, self.out.data.array, self.slot.astype(np.int64))
        self.home = np.ones(self.n, bool)                        # buffer back with us
        self.resident_desc = np.zeros(self.n, DESC_DTYPE)        # each frame's descriptor
        self.resident_desc["offset"] = self.slot
        self.resident_desc["length"] = r["caplen"]
        self.resident_desc["meta"] = np.arange(self.n)
        self.resident_desc["flags"] = r["interface"]
        self.resident_bytes = memoryview(self.resident_desc.view(np.uint8))
        self.caplen_sum = np.concatenate(([0], np.cumsum(r["caplen"], dtype=np.int64)))
        self.batch = max(self.batch, 256)
        return True

    def notified(self, channel) -> None:
        if self.resident and channel == self.out.name:
            back = self.out.reclaim_bytes()
            shift = self.buffer_size.bit_length() - 1
            if len(back) <= FEW * SLOT:         # a few: no arrays
                for offset, *_rest in _DESC.iter_unpack(back):
                    self.home[self.record_of[offset >> shift]] = True
            else:
                offsets = np.frombuffer(back, dtype=DESC_DTYPE)["offset"]
                self.home[self.record_of[(offsets >> np.uint64(shift)).astype(np.int64)]] = True
            self.produce()
            return
        super().notified(channel)

    def _schedule(self) -> None:
        """Due time of each record within one pass (ns after the start) and a pass's length."""
        r, cfg = self.records, self.config
        if self.n == 0 or self.mode == "topspeed":
            self.due = None
            return
        if self.mode in ("original", "multiplier"):
            factor = float(cfg.get("multiplier", 1.0)) if self.mode == "multiplier" else 1.0
            self.due = original_schedule(r["ts_ns"], factor, cfg.get("maxsleep_ms"))
            mean_gap = int(self.due[-1] / max(1, self.n - 1))
            self.period = int(self.due[-1]) + mean_gap
        elif self.mode == "pps":
            step = 1e9 / float(cfg["pps"])
            self.due = (np.arange(self.n) * step).astype(np.int64)
            self.period = int(self.n * step)
        else:
            bits = np.cumsum(r["caplen"].astype(np.int64) * 8)
            rate = float(cfg["mbps"]) * 1e6
            self.due = np.concatenate(([0], bits[:-1])) * 1e9 / rate
            self.due = self.due.astype(np.int64)
            self.period = int(bits[-1] * 1e9 / rate)

    def produce(self) -> None:
        total = self.n * self.loops
        sent_this_turn = 0
        while self.k < total and sent_this_turn < TURN_FRAMES:
            now = self.now()
            if self.deadline is not None and now >= self.deadline:
                break
            want = min(self.batch, total - self.k)
            if self.due is not None:
                want = min(want, self._due_count(now))
                if want == 0:
                    # paced, and the next frame's buffer is here: no wake-up for returns
                    self.out.want_returns = not self._sendable()
                    self.set_timer(self.started + self._due_at(self.k), "produce")
                    return
            if self.resident:
                sent = self._send_resident(min(want, self.out.space()), now)
            else:
                buffers = self.pool.take(min(want, self.out.space()))
                if not len(buffers):
                    self.out.want_returns = True
                    return                    # wait for buffers to come back
                sent = self._send(buffers, now)
            sent_this_turn += sent
            if sent == 0:
                self.out.want_returns = True     # out of buffers or ring room: wake on returns
                return
        if self.k >= total or (self.deadline is not None and self.now() >= self.deadline):
            self.finish()
            self.k = total
            return
        self.set_timer(self.now(), "produce")

    def _sendable(self) -> bool:
        """Whether the next frame could go now (its buffer is here and the ring has room)."""
        if self.out.space() == 0:
            return False
        return bool(self.home[self.k % self.n]) if self.resident else len(self.pool) > 0

    def _due_at(self, k: int) -> int:
        loop, i = divmod(k, self.n)
        return loop * self.period + int(self.due[i])

    def _due_count(self, now: int) -> int:
        """How many frames from ``k`` on are due by ``now`` (within this pass)."""
        loop, i = divmod(self.k, self.n)
        elapsed = now - self.started - loop * self.period
        if self.due[i] > elapsed:
            return 0
        if i + 1 == self.n or self.due[i + 1] > elapsed:     # the usual paced case: one
            return 1
        return int(np.searchsorted(self.due, elapsed, side="right")) - i

    def _send_resident(self, want: int, now: int) -> int:
        """Send descriptors for the next ``want`` frames whose buffers are home (up to the end
        of the file: the next pass starts at the next call)."""
        first = self.k % self.n
        end = min(first + want, self.n)
        if end - first == 1:        # a paced replay's usual turn: one frame, no numpy arrays
            if not self.home[first]:
                return 0
            raw = bytearray(self.resident_bytes[first * SLOT:end * SLOT])
            _STAMP.pack_into(raw, _STAMP_AT, now)
            sent = self.out.send_bytes(raw)
        else:
            home = self.home[first:end]
            if np.count_nonzero(home) < end - first:
                end = first + int(np.argmin(home))      # in order: stop at the first still out
            if end == first:
                return 0
            batch = self.resident_desc[first:end].copy()
            batch["timestamp"] = now
            sent = self.out.send(batch)
        self.home[first:first + sent] = False
        self.count("in", sent)
        self.count("out", sent)
        self.count("bytes", int(self.caplen_sum[first + sent] - self.caplen_sum[first]))
        self.k += sent
        return sent

    def _send(self, buffers: np.ndarray, now: int) -> int:
        n = len(buffers)
        index = (self.k + np.arange(n)) % self.n
        recs = self.records[index]
        fits = recs["caplen"] <= self.buffer_size
        if not fits.all():
            self.drop("oversize", int(np.count_nonzero(~fits)))
            self.count("in", int(np.count_nonzero(~fits)))
        good = buffers[:int(np.count_nonzero(fits))]
        recs_ok, index_ok = recs[fits], index[fits]
        copy_frames(self.file, recs_ok, self.out.data.array, good["offset"].astype(np.int64))
        good["length"] = recs_ok["caplen"]
        good["timestamp"] = now
        good["meta"] = index_ok
        good["flags"] = recs_ok["interface"]
        sent = self.out.send(good)
        self.pool.give(good[sent:])
        self.pool.give(buffers[len(good):])
        self.count("in", sent)
        self.count("out", sent)
        self.count("bytes", int(recs_ok["caplen"][:sent].sum()))
        self.k += sent + (n - len(good))
        return sent + (n - len(good))


class Capture(Component):
    def init(self) -> None:
        out = _device(self, "w", required=False)
        source = _device(self, "r", required=False)
        self.inputs = [q for q in self.queues.values() if q.role == "consumer"]
        self.records = self.writer = None
        if source is not None:
            result = scan(map_fd(source.fd))
            self.records = result.records
            os.close(source.fd)
            if out is not None:
                self.writer = CaptureWriter(out.fd, result.format, interfaces=result.interfaces)
        elif out is not None:
            self.writer = CaptureWriter(out.fd, self.config.get("format", "pcap"),
                                        nanosecond=bool(self.config.get("nanosecond", False)))
        self.stamp = self.config.get("timestamps", "original" if source else "ingress")
        if self.stamp not in STAMPS:
            raise ValueError(f"{self.name}: timestamps must be one of {', '.join(STAMPS)}")
        if self.stamp == "original" and self.records is None:
            raise ValueError(f"{self.name}: timestamps = 'original' needs the replayed input "
                             "as an 'r' device")
        self.wall_offset = time.time_ns() - time.monotonic_ns()   # monotonic -> wall clock
        self.latency = Histogram(lowest=100, highest=60_000_000_000, significant_digits=3)
        self.first_ingress = self.last_ingress = None

    def notified(self, channel) -> None:
        q = self.queues.get(channel.name)
        if q is None or q.role != "consumer":
            return
        raw = q.receive_bytes()
        if not raw:
            return
        now = self.now()
        n = len(raw) // SLOT
        batch = None
        if n <= FEW:        # a paced replay's usual turn: a few frames, read without arrays
            rows = [(length, stamp if stamp < _I64_END else stamp - _U64_END)  # as astype(int64)
                    for _offset, length, _flags, stamp, _meta in _DESC.iter_unpack(raw)]
            self.latency.record_few([now - stamp for _length, stamp in rows])
            first, last = rows[0][1], rows[-1][1]
            nbytes = sum(length for length, _stamp in rows)
        else:
            batch = np.frombuffer(raw, dtype=DESC_DTYPE)
            ingress = batch["timestamp"].astype(np.int64)
            self.latency.record_many(now - ingress)
            first, last = int(ingress[0]), int(ingress[-1])
            nbytes = int(batch["length"].sum(dtype=np.int64))
        if self.first_ingress is None:
            self.first_ingress = first
        self.last_ingress = last
        if self.writer is not None:
            if batch is None:
                batch = np.frombuffer(raw, dtype=DESC_DTYPE)
                ingress = batch["timestamp"].astype(np.int64)
            self._write(q.data.array, batch, batch["offset"].astype(np.int64),
                        batch["length"].astype(np.int64), ingress, now)
        self.count("in", n)
        self.count("out", n)
        if self.config.get("drops"):
            self.count("recorded_drops", n)
        self.count("bytes", nbytes)
        q.release_bytes(raw)

    def _write(self, data, batch, offsets, lengths, ingress, now: int) -> None:
        if self.stamp == "ingress":
            stamps = ingress + self.wall_offset
        else:
            stamps = np.full(len(batch), now + self.wall_offset, np.int64)
        if self.records is None:
            self.writer.write_batch(data, offsets, lengths, stamps)
            return
        recs = self.records[batch["meta"].astype(np.int64) % len(self.records)]
        if self.stamp == "original":
            stamps = recs["ts_ns"]
        self.writer.write_batch(data, offsets, lengths, stamps, recs["origlen"],
                                recs["interface"])

    def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def stats(self) -> dict:
        return {"latency_ns": self.latency.summary() if self.latency.count else None,
                "histogram": self.latency.to_dict(),
                "first_ingress_ns": self.first_ingress, "last_ingress_ns": self.last_ingress}
