"""`capnet bench rings`: capnet's rings and notifications against multiprocessing, one run.

Throughput: descriptors/s from one process to another at batch sizes 1, 32 and 256, through a
capnet ring (both ends polling, raw descriptor bytes), ``multiprocessing.Queue`` (one put per
batch) and ``multiprocessing.Pipe`` (one send_bytes per batch). Round trip: median µs of a
ping-pong of one descriptor through capnet rings with the runtime's signalling (consumer-
signalled eventfds, spin-then-block ``Waiter``), against a raw blocking eventfd, a pipe and a
``multiprocessing.Queue`` carrying one token. Reports each rate and capnet's ratio to each contender.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from shmring import Region, RingConsumer, RingProducer, Waiter, descriptors, ring_bytes
from shmring.notify import drain, make_eventfd, signal

BATCHES = (1, 32, 256)
CAPACITY = 4096


def _count_for(batch: int, seconds: float) -> int:
    per_second = {1: 400_000, 32: 8_000_000, 256: 25_000_000}[batch]
    return max(batch * 100, int(per_second * seconds) // batch * batch)


# -- throughput ----------------------------------------------------------------------------------

def _ring_consumer(region: Region, total: int, done) -> None:
    consumer = RingConsumer(region.mem, 0, CAPACITY)
    into = memoryview(bytearray(CAPACITY * 32))
    done.send("ready")
    got = 0
    while got < total:
        got += consumer.dequeue_into(into)
    done.send(time.perf_counter())


def _ring_rate(batch_size: int, total: int, ctx) -> float:
    region = Region.create("bench", ring_bytes(CAPACITY))
    producer = RingProducer(region.mem, 0, CAPACITY)
    theirs, ours = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_ring_consumer, args=(region, total, ours))
    child.start()
    batch = descriptors(batch_size)
    batch["length"] = 64
    raw = batch.view(np.uint8).data
    theirs.recv()                      # the consumer is running: start the clock
    start = time.perf_counter()
    sent = 0
    while sent < total:
        sent += producer.enqueue_bytes(raw)
    end = theirs.recv()
    child.join()
    region.close()
    return total / (end - start)


def _queue_consumer(queue, total: int, batch_size: int, done) -> None:
    done.send("ready")
    got = 0
    while got < total:
        item = queue.get()
        got += len(item) // 32
    done.send(time.perf_counter())


def _queue_rate(batch_size: int, total: int, ctx) -> float:
    queue = ctx.Queue(maxsize=CAPACITY // batch_size + 1)
    theirs, ours = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_queue_consumer, args=(queue, total, batch_size, ours))
    child.start()
    item = descriptors(batch_size).tobytes()
    theirs.recv()
    start = time.perf_counter()
    for _ in range(total // batch_size):
        queue.put(item)
    end = theirs.recv()
    child.join()
    return total / (end - start)


def _pipe_consumer(conn, total: int, done) -> None:
    done.send("ready")
    got = 0
    while got < total:
        got += len(conn.recv_bytes()) // 32
    done.send(time.perf_counter())


def _pipe_rate(batch_size: int, total: int, ctx) -> float:
    reader, writer = ctx.Pipe(duplex=False)
    theirs, ours = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_pipe_consumer, args=(reader, total, ours))
    child.start()
    item = descriptors(batch_size).tobytes()
    theirs.recv()
    start = time.perf_counter()
    for _ in range(total // batch_size):
        writer.send_bytes(item)
    end = theirs.recv()
    child.join()
    return total / (end - start)


# -- round trips ---------------------------------------------------------------------------------

class _Link:
    """One direction of a ping-pong: a ring plus the consumer-signalled eventfd protocol."""

    def __init__(self, region: Region, offset: int, fd: int) -> None:
        self.producer = RingProducer(region.mem, offset, 8)
        self.consumer = RingConsumer(region.mem, offset, 8)
        self.fd = fd

    def send(self, raw: memoryview) -> None:
        self.producer.enqueue_bytes(raw)
        if self.producer.signal_requested():
            self.producer.clear_signal_request()
            signal(self.fd)

    def receive(self, waiter: Waiter, into: memoryview) -> None:
        while not self.consumer.dequeue_into(into):
            if self.consumer.request_signal():
                self.consumer.cancel_signal()
                continue
            waiter.wait(None, spin_ns=50_000, poll=self.consumer.available)
            drain(self.fd)


def _capnet_echo(region: Region, fds: tuple[int, int], rounds: int) -> None:
    ping, pong = _Link(region, 0, fds[0]), _Link(region, 4096, fds[1])
    waiter = Waiter()
    waiter.register(fds[0], "ping")
    into = memoryview(bytearray(8 * 32))
    for _ in range(rounds):
        ping.receive(waiter, into)
        pong.send(into[:32])


def _capnet_rtt(rounds: int, ctx) -> list[float]:
    region = Region.create("rtt", 8192)
    fds = (make_eventfd(), make_eventfd())
    child = ctx.Process(target=_capnet_echo, args=(region, fds, rounds))
    child.start()
    ping, pong = _Link(region, 0, fds[0]), _Link(region, 4096, fds[1])
    waiter = Waiter()
    waiter.register(fds[1], "pong")
    into = memoryview(bytearray(8 * 32))
    token = descriptors(1).view(np.uint8).data
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        ping.send(token)
        pong.receive(waiter, into)
        out.append((time.perf_counter_ns() - t0) / 1000)
    child.join()
    region.close()
    return out


def _blocking_echo(rfd: int, wfd: int, rounds: int, size: int) -> None:
    for _ in range(rounds):
        os.read(rfd, size)
        os.write(wfd, b"\1" * (size if size != 8 else 1) if size != 8 else (1).to_bytes(8, "little"))


def _fd_rtt(kind: str, rounds: int, ctx) -> list[float]:
    if kind == "eventfd":
        a, b = os.eventfd(0), os.eventfd(0)
        ra, wa, rb, wb, size = a, a, b, b, 8
        token = (1).to_bytes(8, "little")
    else:
        ra, wa = os.pipe()
        rb, wb = os.pipe()
        size, token = 1, b"\1"
    child = ctx.Process(target=_blocking_echo, args=(ra, wb, rounds, size))
    child.start()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        os.write(wa, token)
        os.read(rb, size)
        out.append((time.perf_counter_ns() - t0) / 1000)
    child.join()
    return out


def _queue_echo(q_in, q_out, rounds: int) -> None:
    for _ in range(rounds):
        q_out.put(q_in.get())


def _queue_rtt(rounds: int, ctx) -> list[float]:
    q_in, q_out = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=_queue_echo, args=(q_in, q_out, rounds))
    child.start()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        q_in.put(1)
        q_out.get()
        out.append((time.perf_counter_ns() - t0) / 1000)
    child.join()
    return out


# -- report ----------------------------------------------------------------------------------

def run(seconds: float) -> dict:
    ctx = mp.get_context("fork")
    result: dict = {"throughput": {}, "round_trip_us": {}}
    for b in BATCHES:
        total = _count_for(b, seconds)
        capnet = _ring_rate(b, total, ctx)
        queue = _queue_rate(b, max(b, total // 10 // b * b), ctx)
        pipe = _pipe_rate(b, max(b, total // 10 // b * b), ctx)
        result["throughput"][str(b)] = {
            "capnet": round(capnet), "mp_queue": round(queue), "mp_pipe": round(pipe),
            "ratio_queue": round(capnet / queue, 2), "ratio_pipe": round(capnet / pipe, 2)}
    rounds = max(200, int(4000 * seconds))
    rtt = {"capnet": _capnet_rtt(rounds, ctx), "eventfd": _fd_rtt("eventfd", rounds, ctx),
           "pipe": _fd_rtt("pipe", rounds, ctx), "mp_queue": _queue_rtt(rounds, ctx)}
    med = {k: round(statistics.median(v), 2) for k, v in rtt.items()}
    result["round_trip_us"] = dict(med, **{f"ratio_{k}": round(med["capnet"] / med[k], 2)
                                           for k in ("eventfd", "pipe", "mp_queue")})
    return result


def render(result: dict, console: Console) -> None:
    t = Table(title="cross-process throughput, descriptors/s (capnet ring vs multiprocessing)")
    for col in ("batch", "capnet ring", "mp.Queue", "mp.Pipe", "× Queue", "× Pipe"):
        t.add_column(col, justify="right")
    for b, r in result["throughput"].items():
        t.add_row(b, f"{r['capnet']:,}", f"{r['mp_queue']:,}", f"{r['mp_pipe']:,}",
                  f"{r['ratio_queue']}", f"{r['ratio_pipe']}")
    console.print(t)
    r = result["round_trip_us"]
    t = Table(title="notification round trip, median µs (capnet / contender: lower is better)")
    for col in ("capnet", "raw eventfd", "pipe", "mp.Queue"):
        t.add_column(col, justify="right")
    t.add_row(f"{r['capnet']}", f"{r['eventfd']} ({r['ratio_eventfd']}×)",
              f"{r['pipe']} ({r['ratio_pipe']}×)", f"{r['mp_queue']} ({r['ratio_mp_queue']}×)")
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="capnet bench rings", description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--seconds", type=float, default=1.0,
                   help="rough time per capnet measurement (default 1)")
    args = p.parse_args(argv)
    if args.seconds <= 0:
        p.error("--seconds must be > 0")
    result = run(args.seconds)
    render(result, Console())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0
