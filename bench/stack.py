"""`capnet bench stack`: the capnet TCP/IP stack against the Linux kernel's, in one run.

1. Bulk TCP, kernel -> capnet over TAP (examples/tap-http.toml's system, its ``bulk-recv``
   app, which digests the stream and answers its SHA-256: checked against the pattern; by
   default with the TAP's offloads on: virtio-net header, 64 KiB buffers, GRO/TSO segments
   and a 1 MiB receive window; ``--no-offload`` runs the example as it is) against
   kernel -> kernel over a veth pair between two namespaces (the same client; the server a
   Python socket digesting the stream the same way). Goodput in Mbit/s; capnet's ratio.
2. Request/response latency: a kernel client sends 64-byte messages one at a time
   (TCP_NODELAY) to capnet's TCP echo, and to a kernel echo over veth; p50 and p99 in µs;
   the ratio of the p50s. Twice for capnet: as the example runs (spin-then-block waiting), and
   with the NIC and the stack busy-polling (``--set nic.wait=poll --set stack.wait=poll``),
   where no hop waits for a wake-up. In alternating rounds of the three (``--rr-rounds``,
   default 3), each capnet round a fresh system; the ratios of the medians.
3. Goodput under loss: two capnet stacks over drivers.wire:Wire (examples/stack-wire.toml),
   loss-free and with 1% seeded loss, in alternating rounds (``--wire-rounds``, default 3);
   the ratio of the medians.

The namespaces, veth pair and systems are created here and removed at the end. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.running import stop_run, wait_for
from harness.control import ControlError, request
from netstack.apps.pattern import pattern_sha256

ROOT = Path(__file__).resolve().parent.parent
US, KERNEL = "10.77.0.2", "10.77.0.1"
VETH_SERVER = "10.88.0.2"

# kernel-side programs: the same client against capnet and against the kernel
PEER = r'''
import hashlib, json, socket, statistics, sys, threading, time


def chunks(n):
    index = 0
    while n > 0:
        block = hashlib.shake_128(b"capnet-bytes" + index.to_bytes(8, "big")).digest(65536)
        yield block[:n]
        n -= 65536
        index += 1


def send(host, port, nbytes):
    data = list(chunks(int(nbytes)))
    conn = socket.create_connection((host, int(port)), timeout=600)
    start = time.perf_counter()
    for chunk in data:
        conn.sendall(chunk)
    conn.shutdown(socket.SHUT_WR)
    answer = b""
    while part := conn.recv(4096):
        answer += part
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "answer": answer.decode().strip()}))


def rr(host, port, count, size):
    conn = socket.create_connection((host, int(port)), timeout=60)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    message = b"m" * int(size)
    times = []
    for i in range(int(count) + 20):
        start = time.perf_counter_ns()
        conn.sendall(message)
        got = 0
        while got < len(message):
            got += len(conn.recv(65536))
        if i >= 20:                                  # the first ones warm up
            times.append(time.perf_counter_ns() - start)
    conn.close()
    times.sort()
    print(json.dumps({"p50_us": times[len(times) // 2] / 1000,
                      "p99_us": times[len(times) * 99 // 100] / 1000}))


def serve(port):
    """A kernel-side server: digests streams on PORT, echoes on PORT + 1."""
    def digest(conn):
        h, total = hashlib.sha256(), 0
        while data := conn.recv(1 << 18):
            h.update(data)
            total += len(data)
        conn.sendall(f"{total} {h.hexdigest()}\n".encode())
        conn.close()

    def echo(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.close()

    def accept(server, handler):
        while True:
            conn, _ = server.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    servers = [(socket.create_server(("0.0.0.0", int(port))), digest),
               (socket.create_server(("0.0.0.0", int(port) + 1)), echo)]
    for server, handler in servers:
        threading.Thread(target=accept, args=(server, handler), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()


globals()[sys.argv[1]](*sys.argv[2:])
'''


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _peer(ns: str, *args: object, timeout: float = 900) -> dict:
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PEER,
                           *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"kernel-side peer {args[0]} failed: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _capnet(description: Path, control: str, *sets: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "harness.cli", "run", str(description), "--control", control]
    for s in sets:
        args += ["--set", s]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _stack_stats(control: str) -> dict | None:
    try:
        return request(control, {"op": "stats"})["ok"]["components"]
    except (ControlError, KeyError):
        return None


def tap_description(ns: str, offload: bool) -> str:
    """examples/tap-http.toml in namespace ``ns``; with ``offload``, the TAP's virtio-net header
    and segmentation offload on both ways (the TAP's and the stack's ``offload = true``), 64 KiB
    buffers and a 1 MiB TCP receive window."""
    text = (ROOT / "examples" / "tap-http.toml").read_text().replace(
        'netns = "capnet"', f'netns = "{ns}"')
    if offload:
        for old, new in (('size = "8 MiB"\nbuffer_size = 2048',
                          'size = "32 MiB"\nbuffer_size = 65536'),
                         ('address = "10.77.0.1/24" }', 'address = "10.77.0.1/24", offload = true }'),
                         ("capacity = 2048", "capacity = 512"),
                         ("mtu = 1500,",
                          "mtu = 1500, offload = true, tcp = { recv_buffer = 1048576 },")):
            if old not in text:
                raise RuntimeError(f"examples/tap-http.toml changed: no {old!r} to adapt")
            text = text.replace(old, new)
    return text


def _over_tap(tmp: Path, size: int | None, count: int, offload: bool = True,
              poll: bool = False) -> dict:
    """Bulk (unless ``size`` is None) and request/response from the kernel to capnet over TAP;
    with ``poll``, the NIC and the stack busy-poll (``wait = "poll"``)."""
    ns = f"cnbench{uuid.uuid4().hex[:6]}"
    _ip("netns", "add", ns)
    description = tmp / "tap.toml"
    description.write_text(tap_description(ns, offload))
    control = str(tmp / "ctl" / "tap.sock")
    waits = ("nic.wait=poll", "stack.wait=poll") if poll else ()
    proc = _capnet(description, control,
                   'stack.apps=["tcp-echo:9", "bulk-recv:5001", "http:80"]', *waits)
    try:
        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"capnet run failed: {proc.stderr.read()}")
            probe = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", "1",
                                    f"http://{US}/"], capture_output=True)
            return probe.returncode == 0
        wait_for(listening, 60, "the capnet stack")
        bulk = _peer(ns, "send", US, 5001, size) if size is not None else None
        latency = _peer(ns, "rr", US, 9, count, 64)
        return {"bulk": bulk, "latency": latency}
    finally:
        stop_run(proc, control)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


@contextlib.contextmanager
def _veth():
    """Two namespaces joined by a veth pair, a kernel-side server in one (digest on 5001, echo
    on 5002); yields the client's namespace."""
    tag = uuid.uuid4().hex[:6]
    client, server = f"cnbc{tag}", f"cnbs{tag}"
    _ip("netns", "add", client)
    _ip("netns", "add", server)
    peer = None
    try:
        _ip("-n", client, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
            "netns", server)
        _ip("-n", client, "addr", "add", "10.88.0.1/24", "dev", "v0")
        _ip("-n", server, "addr", "add", f"{VETH_SERVER}/24", "dev", "v1")
        _ip("-n", client, "link", "set", "v0", "up")
        _ip("-n", server, "link", "set", "v1", "up")
        peer = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-c", PEER,
                                 "serve", "5001"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        if peer.stdout.readline().strip() != "ready":
            raise RuntimeError("the kernel-side server did not start")
        yield client
    finally:
        if peer is not None:
            peer.kill()
            peer.wait()
        subprocess.run(["ip", "netns", "delete", client], capture_output=True)
        subprocess.run(["ip", "netns", "delete", server], capture_output=True)


def _latency_rounds(tmp: Path, client: str, count: int, offload: bool, rounds: int,
                    first_blocking: dict) -> dict[str, list[dict]]:
    """Request/response in alternating rounds — kernel over veth, capnet polling, capnet
    spin-then-block — so all three see the same background load; ``first_blocking`` is the
    bulk system's own round."""
    out: dict[str, list[dict]] = {"kernel_veth": [], "capnet_tap_polling": [],
                                  "capnet_tap": [first_blocking]}
    for r in range(rounds):
        out["kernel_veth"].append(_peer(client, "rr", VETH_SERVER, 5002, count, 64))
        out["capnet_tap_polling"].append(
            _over_tap(tmp, None, count, offload, poll=True)["latency"])
        if r:
            out["capnet_tap"].append(_over_tap(tmp, None, count, offload)["latency"])
    return out


def _median_latency(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in ("p50_us", "p99_us")}


def _over_wire(tmp: Path, size: int, loss: float) -> dict:
    """Two capnet stacks over the wire; returns the sender's result."""
    send = f"bulk-send:10.78.0.2:5001:{size}"
    links = (f'[{{ from = "a_tx", to = "b_rx", loss = {loss} }}, '
             f'{{ from = "b_tx", to = "a_rx", loss = {loss} }}]')
    control = str(tmp / "ctl" / f"wire{loss}.sock")
    proc = _capnet(ROOT / "examples" / "stack-wire.toml", control, f"wire.links={links}",
                   f'a.apps=["{send}"]', 'b.apps=["bulk-recv:5001"]')
    try:
        def done() -> dict | None:
            if proc.poll() is not None:
                raise RuntimeError(f"capnet run failed: {proc.stderr.read()}")
            comps = _stack_stats(control) or {}
            app = (((comps.get("a") or {}).get("stats") or {}).get("extra") or {}).get(
                "apps", {}).get(send, {})
            return app if app.get("done") or app.get("error") else None
        return wait_for(done, 900, f"the transfer at {loss:.0%} loss")
    finally:
        stop_run(proc, control)


def _mbps(nbytes: int, seconds: float) -> float:
    return nbytes * 8 / seconds / 1e6


def _wire_rounds(tmp: Path, size: int, rounds: int) -> tuple[list[float], list[float]]:
    """Goodput (Mbit/s) of loss-free and 1%-loss transfers, in alternating rounds (clean then
    lossy, lossy then clean, ...) so both see the same background load; each transfer's
    digest is checked."""
    expected = f"{size} {pattern_sha256(size)}"
    clean: list[float] = []
    lossy: list[float] = []
    for r in range(rounds):
        order = ((0.0, clean), (0.01, lossy))
        for loss, rates in order if r % 2 == 0 else order[::-1]:
            result = _over_wire(tmp, size, loss)
            if result.get("answer") != expected:
                raise RuntimeError(f"wire transfer ({loss:.0%} loss) failed: {result}")
            rates.append(_mbps(size, result["seconds"]))
    return clean, lossy


def run(size: int, wire_size: int, count: int, offload: bool = True,
        wire_rounds: int = 3, rr_rounds: int = 3) -> dict:
    with tempfile.TemporaryDirectory(prefix="capnet-bench-") as tmp:
        tmp = Path(tmp)
        capnet = _over_tap(tmp, size, count, offload)
        capnet_bulk_seconds = capnet["bulk"]["seconds"]
        with _veth() as client:
            kernel_bulk = _peer(client, "send", VETH_SERVER, 5001, size)
            rr = _latency_rounds(tmp, client, count, offload, rr_rounds, capnet["latency"])
        clean, lossy = _wire_rounds(tmp, wire_size, wire_rounds)
    expected = f"{size} {pattern_sha256(size)}"
    for name, bulk in (("capnet", capnet["bulk"]), ("kernel", kernel_bulk)):
        if bulk["answer"] != expected:
            raise RuntimeError(f"{name} bulk transfer corrupted: {bulk['answer']!r}")
    latency = {name: _median_latency(runs) for name, runs in rr.items()}
    capnet, polling, kernel = (latency["capnet_tap"], latency["capnet_tap_polling"],
                               latency["kernel_veth"])
    out = {
        "bulk_bytes": size,
        "tap_offload": offload,
        "bulk_mbps": {"capnet_tap": _mbps(size, capnet_bulk_seconds),
                      "kernel_veth": _mbps(size, kernel_bulk["seconds"])},
        "latency_us": latency,
        "latency_rounds_us": rr,
        "wire_bytes": wire_size,
        "wire_mbps": {"loss_free": statistics.median(clean),
                      "loss_1pct": statistics.median(lossy)},
        "wire_rounds_mbps": {"loss_free": clean, "loss_1pct": lossy},
    }
    out["ratios"] = {
        "bulk_capnet_over_kernel": out["bulk_mbps"]["capnet_tap"] / out["bulk_mbps"][
            "kernel_veth"],
        "latency_p50_capnet_over_kernel": capnet["p50_us"] / kernel["p50_us"],
        "latency_p50_capnet_polling_over_kernel": polling["p50_us"] / kernel["p50_us"],
        "goodput_1pct_loss_over_loss_free": out["wire_mbps"]["loss_1pct"] / out["wire_mbps"][
            "loss_free"],
    }
    return out


def _table(result: dict) -> Table:
    table = Table(title="capnet bench stack (capnet vs the Linux kernel, one run)")
    for col in ("measure", "capnet", "peer", "ratio", "target"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    b, lat, w, r = (result["bulk_mbps"], result["latency_us"], result["wire_mbps"],
                    result["ratios"])
    tap = "TAP+offload" if result.get("tap_offload") else "TAP"
    table.add_row(f"bulk {result['bulk_bytes'] / 2**20:.0f} MiB into the stack, Mbit/s",
                  f"{b['capnet_tap']:.1f} {tap}", f"{b['kernel_veth']:.1f} veth",
                  f"{r['bulk_capnet_over_kernel']:.3f}", ">= 0.10")
    rr_rounds = len(result["latency_rounds_us"]["kernel_veth"])
    table.add_row(f"request/response 64 B, p50 µs, median of {rr_rounds}",
                  f"{lat['capnet_tap']['p50_us']:.1f}",
                  f"{lat['kernel_veth']['p50_us']:.1f}",
                  f"{r['latency_p50_capnet_over_kernel']:.2f}", "<= 3")
    table.add_row("request/response 64 B, p99 µs", f"{lat['capnet_tap']['p99_us']:.1f}",
                  f"{lat['kernel_veth']['p99_us']:.1f}", "", "")
    polled = lat["capnet_tap_polling"]
    table.add_row("  the same, NIC and stack polling: p50 µs", f"{polled['p50_us']:.1f}",
                  f"{lat['kernel_veth']['p50_us']:.1f}",
                  f"{r['latency_p50_capnet_polling_over_kernel']:.2f}", "<= 3")
    table.add_row("  polling: p99 µs", f"{polled['p99_us']:.1f}",
                  f"{lat['kernel_veth']['p99_us']:.1f}", "", "")
    rounds = len(result["wire_rounds_mbps"]["loss_free"])
    table.add_row(f"stack to stack {result['wire_bytes'] / 1e6:.0f} MB over wire, Mbit/s, "
                  f"median of {rounds}",
                  f"{w['loss_1pct']:.1f} 1% loss", f"{w['loss_free']:.1f} no loss",
                  f"{r['goodput_1pct_loss_over_loss_free']:.2f}", ">= 0.50")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="capnet bench stack", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--size", type=int, default=100 << 20,
                        help="bytes of the kernel->capnet and kernel->kernel bulk transfers "
                             "(default 100 MiB, the issue's figure)")
    parser.add_argument("--wire-size", type=int, default=8_000_000,
                        help="bytes of each stack<->stack transfer over the wire")
    parser.add_argument("--wire-rounds", type=int, default=3,
                        help="loss-free and 1%%-loss transfers each, alternating (medians)")
    parser.add_argument("--count", type=int, default=2000,
                        help="request/response exchanges per latency round")
    parser.add_argument("--rr-rounds", type=int, default=3,
                        help="request/response rounds each (kernel, capnet polling, capnet "
                             "spin-then-block), alternating (medians)")
    parser.add_argument("--no-offload", action="store_true",
                        help="run the TAP without its virtio-net header and segmentation "
                             "offload (2 KiB buffers, one MTU-sized frame per descriptor)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    for name, value, low in (("--size", args.size, 1), ("--wire-size", args.wire_size, 1),
                             ("--wire-rounds", args.wire_rounds, 1), ("--count", args.count, 10),
                             ("--rr-rounds", args.rr_rounds, 1)):
        if value < low:
            print(f"capnet bench stack: {name} must be at least {low}, got {value}",
                  file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("capnet bench stack: needs root (network namespaces, TAP)", file=sys.stderr)
        return 2
    result = run(args.size, args.wire_size, args.count, offload=not args.no_offload,
                 wire_rounds=args.wire_rounds, rr_rounds=args.rr_rounds)
    Console(width=max(Console().width, 110)).print(_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
