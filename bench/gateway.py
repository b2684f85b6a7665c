"""``capnet bench gateway [--json FILE] [--seconds S] [--rounds N] [--handshake-seconds S]``:
the WireGuard gateway against wireguard-go, measured in the same run.

1. core: the sans-I/O ``Device`` sealing 1420-byte packets in one process (packets per
   second of CPU time);
2. gateway: UDP packets of 1420 bytes (IP) flooded from the red namespace through capnet's
   gateway system to wireguard-go; the rate that arrives behind wireguard-go (median of N
   floods), and the gw component's own capacity (packets it sealed per second of its busy
   time);
3. wireguard-go: the same flood between two wireguard-go instances in two namespaces joined by
   a veth pair, set up alongside and flooded alternately with 2. (capnet, wg-go, wg-go,
   capnet, …) so both see the same background load; the ratio is of the two medians, and
   each round's ratio is listed;
4. handshake: capnet's handshake core against wireguard-go over UDP (median of 20, with its
   parts), and through the whole system (gw -> black NIC -> wireguard-go -> black NIC -> gw ->
   key component by protected call): a gateway rekeying every second carries pings for
   ``--handshake-seconds``, and each handshake is timed inside the gw component from its need
   to its keys in use (``Gateway.stats()["handshakes_us"]``; median, max, and the first,
   which a packet waited for); also the first ping's round trip minus the median of the next
   ten, and the first handshake's timeline (``first_handshake_us``), with the key calls' wall
   and CPU time;
5. component: the gw component alone in one process on real queues (``bench.gateway_component``):
   packets sealed per second of its CPU time, without the other processes' load.

Needs root, iproute2, wireguard-go and wg. The ratio gateway / wireguard-go is reported, and
how often the red NIC paused reading for want of buffers (``red_nic_rx_pauses``: the gateway
path was the bottleneck that often).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import gateway_component
from bench.wgpeer import Tunnel
from gateway.wireguard import Device, encode_key, noise
from gateway.wireguard.config import PeerConfig, WgConfig

PACKET = 1420                    # IP packet size inside the tunnel
PAYLOAD = PACKET - 28

FLOOD = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
data = b'x' * int(sys.argv[3]); end = time.monotonic() + float(sys.argv[2]); n = 0
while time.monotonic() < end:
    for _ in range(64):
        try:
            s.sendto(data, (sys.argv[1], 5002)); n += 1
        except OSError:
            pass
print(n)
"""

SINK = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], 5002)); print('ready', flush=True)
s.settimeout(5); n = b = 0; first = last = None
try:
    while True:
        d = s.recv(65536); now = time.monotonic()
        first = first or now; last = now; n += 1; b += len(d)
        s.settimeout(0.5)
except socket.timeout:
    pass
print(n, (last - first) if first else 0.0)
"""


def _ns_run(ns: str, *cmd: str, **kw):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True,
                          text=True, **kw)


def _flood(src_ns: str, dst_ns: str, dst: str, seconds: float) -> float:
    """Packets/s that reached ``dst`` in ``dst_ns`` from a UDP flood in ``src_ns``."""
    sink = subprocess.Popen(["ip", "netns", "exec", dst_ns, sys.executable, "-c", SINK, dst],
                            stdout=subprocess.PIPE, text=True)
    try:
        sink.stdout.readline()
        _ns_run(src_ns, sys.executable, "-c", FLOOD, dst, str(seconds), str(PAYLOAD),
                timeout=seconds + 30)
        out, _ = sink.communicate(timeout=30)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.communicate()
    n, span = out.split()
    return int(n) / float(span) if float(span) > 0 else 0.0


def bench_core(count: int = 50000) -> float:
    a, b = noise.generate_private_key(), noise.generate_private_key()
    cfg = WgConfig(a, 1, (PeerConfig(noise.public_key(b), allowed_ips=(
        ipaddress.ip_network("10.0.0.0/8"),), endpoint=("192.0.2.1", 1)),))
    responder = Device.local(WgConfig(b, 1, (PeerConfig(noise.public_key(a)),)))
    dev = Device.local(cfg)
    packet = bytes([0x45, 0]) + PACKET.to_bytes(2, "big") + bytes(8) + bytes([10, 0, 0, 1]) + \
        bytes([10, 0, 0, 2]) + bytes(PACKET - 20)
    (_, init), = dev.send(packet, 1).datagrams
    (_, resp), = responder.receive(init, ("192.0.2.2", 1), 1).datagrams
    dev.receive(resp, ("192.0.2.1", 1), 1)
    start = time.thread_time()          # CPU time: a shared machine's other load stays out
    for _ in range(count):
        dev.send(packet, 2)
    return count / (time.thread_time() - start)


# ping DST [COUNT [GAP_S]]: round trips in ms, one per line (11, back to back, by default)
RTTS = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(3)
count = int(sys.argv[2]) if len(sys.argv) > 2 else 11
gap = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
def csum(b):
    v = sum(struct.unpack('!%dH' % (len(b) // 2), b)); v = (v >> 16) + (v & 0xffff)
    return ~(v + (v >> 16)) & 0xffff
for seq in range(count):
    h = struct.pack('!BBHHH', 8, 0, 0, 0x4343, seq & 0xffff) + b'rtt!'
    t = time.perf_counter()
    s.sendto(h[:2] + struct.pack('!H', csum(h)) + h[4:], (sys.argv[1], 0))
    while True:
        d = s.recv(2000)
        if d[20] == 0 and d[24:28] == struct.pack('!HH', 0x4343, seq & 0xffff):
            break
    print((time.perf_counter() - t) * 1000)
    time.sleep(gap)
"""

REKEYING = "{ rekey_after_time = 1, rekey_timeout = 1 }"   # a handshake every second of traffic


def bench_system_handshakes(seconds: float) -> dict:
    """Handshakes with wireguard-go through the whole system, timed inside the gw component
    (from the need for one to its keys in use: the initiation out through the black NIC,
    wireguard-go's answer back through it, the response's call to the key component): a
    gateway that rekeys every second (``REKEYING``) carries a ping every 20 ms for ``seconds``;
    the first handshake (a packet waiting for it) and each rekey after it are counted."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Tunnel(Path(tmp), timing=REKEYING)
        try:
            done = t.in_ns(t.red_ns, RTTS, "10.200.0.2", str(int(seconds / 0.02)), "0.02",
                           timeout=seconds * 10 + 60)
            if done.returncode != 0:
                raise RuntimeError("pings through the tunnel failed: " + done.stderr)
            gw = t.stop()["components"]["gw"]["stats"]["extra"]
        finally:
            t.close()
    times = [us / 1000 for us in gw["handshakes_us"]]
    if not times:
        raise RuntimeError("no handshake completed")
    return {"count": len(times), "first_ms": times[0], "median_ms": statistics.median(times),
            "max_ms": max(times), "all_ms": [round(x, 3) for x in times]}


def bench_gateway(seconds: float, rounds: int) -> dict:
    """Through the capnet gateway system: packets/s arriving behind wireguard-go, against two
    wireguard-go instances flooded the same way, in alternating floods (ABBA…) so both see the
    same background load; packets/s the gw component seals per second of its own CPU time;
    and the handshake's cost as seen by the first ping (first round trip minus the median of
    the next ten) and inside the gw component."""
    rates, wgo = [], []
    with tempfile.TemporaryDirectory() as tmp, wireguard_go_pair() as wgo_flood:
        t = Tunnel(Path(tmp))
        try:
            rtts = [float(x) for x in t.in_ns(t.red_ns, RTTS, "10.200.0.2").stdout.split()]
            if len(rtts) != 11:
                raise RuntimeError("no tunnel: " + " ".join(map(str, rtts)))
            capnet_flood = lambda: _flood(t.red_ns, t.black_ns, "10.200.0.2", seconds)  # noqa: E731
            for r in range(rounds):
                if r % 2:
                    wgo.append(wgo_flood(seconds))
                    rates.append(capnet_flood())
                else:
                    rates.append(capnet_flood())
                    wgo.append(wgo_flood(seconds))
            components = t.stop()["components"]
            extra = components["gw"]["stats"]["extra"]
            keys = components["keys"]["stats"]["extra"].get("cpu", {})
            pauses = components["red"]["stats"]["extra"].get("rx_pauses", 0)
        finally:
            t.close()
    busy = extra["busy_seal_ns"] / 1e9
    sent = extra["wireguard"].get("sent", 0)
    timeline = extra["first_handshake_us"]
    span = lambda a, b: (timeline[b] - timeline[a]) / 1000   # noqa: E731
    calls = extra.get("key_calls", {})
    ms = lambda ns: ns / 1e6 if ns is not None else float("nan")  # noqa: E731
    return {"rate": statistics.median(rates), "rates": rates, "wgo": wgo,
            "capacity": sent / busy if busy else 0.0,
            "first_ping_ms": rtts[0], "handshake_ms": rtts[0] - statistics.median(rtts[1:]),
            "red_rx_pauses": pauses,
            "seal_batch_mean": sent / extra["seal_batches"] if extra.get("seal_batches") else 0,
            # timestamps inside the components: from the first packet staged to it leaving
            # for the black NIC (the delay the handshake adds to it), of which the initiation's
            # trip out and the response's trip in (black NIC twice and wireguard-go); each key
            # call as the gw waited for it, and the key component's CPU time for it (the
            # initiation was made ahead: only the response's call is on the path)
            "handshake_in_gw_ms": span("staged", "data_out"),
            "handshake_initiation_out_ms": span("staged", "initiation_out"),
            "handshake_black_and_peer_ms": span("initiation_out", "response_in"),
            "handshake_response_to_data_ms": span("response_in", "data_out"),
            "key_call_receive_ms": ms(calls.get("receive", {}).get("mean_ns")),
            "key_cpu_receive_ms": ms(keys.get("receive", {}).get("mean_ns")),
            "key_call_prefetch_ms": ms(calls.get("prefetch", {}).get("mean_ns")),
            "initiations_made_ahead_used": extra.get("initiations_made_ahead_used", 0)}


def bench_handshake(rounds: int = 20) -> dict:
    """Median time (ms) for capnet's handshake core to complete a handshake with wireguard-go:
    ``total``, and its parts ``initiate`` (making message 1), ``peer_and_wire`` (sendto until
    wireguard-go's response is read) and ``consume`` (message 2 to transport keys)."""
    tag = uuid.uuid4().hex[:6]
    ns, iface = f"capnet-bh{tag}", f"wgh{tag}"
    ours, theirs = noise.generate_private_key(), noise.generate_private_key()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    wg = None
    try:
        _ns_run(ns, "ip", "link", "set", "lo", "up")
        wg = subprocess.Popen(["ip", "netns", "exec", ns, "wireguard-go", "-f", iface],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sock_path = Path(f"/var/run/wireguard/{iface}.sock")
        deadline = time.monotonic() + 10
        while not sock_path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write(f"[Interface]\nPrivateKey = {encode_key(theirs)}\nListenPort = 51830\n"
                    f"[Peer]\nPublicKey = {encode_key(noise.public_key(ours))}\n"
                    "AllowedIPs = 10.201.0.1/32\n")
            f.flush()
            _ns_run(ns, "wg", "setconf", iface, f.name)
        _ns_run(ns, "ip", "link", "set", iface, "up")
        script = HANDSHAKE.format(ours=ours.hex(), theirs=noise.public_key(theirs).hex(),
                                  rounds=rounds)
        out = _ns_run(ns, sys.executable, "-c", script, cwd=str(Path(__file__).parent.parent))
        rows = [[float(x) for x in line.split()] for line in out.stdout.splitlines()]
        if not rows:
            return {"total": float("nan")}
        return {part: statistics.median(r[i] for r in rows)
                for i, part in enumerate(("total", "initiate", "peer_and_wire", "consume"))}
    finally:
        if wg is not None and wg.poll() is None:
            wg.terminate()
            wg.wait(timeout=10)
        subprocess.run(["ip", "netns", "delete", ns], check=False)


HANDSHAKE = r"""
import socket, time
from gateway.wireguard import Handshaker
hs = Handshaker(bytes.fromhex('{ours}'), {{bytes.fromhex('{theirs}'): bytes(32)}})
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); s.settimeout(2)
hs.prepare()                # as the key component does, ahead of each initiation
for i in range({rounds}):
    time.sleep(0.03)        # wireguard-go accepts at most 50 initiations/s from a peer
    t0 = time.perf_counter()
    m = hs.initiate(bytes.fromhex('{theirs}'), time.monotonic_ns())
    t1 = time.perf_counter()
    s.sendto(m, ('127.0.0.1', 51830))
    d = s.recv(2000)
    t2 = time.perf_counter()
    o = hs.receive(d, b'', time.monotonic_ns(), False)
    t3 = time.perf_counter()
    if o.session is not None:   # total, our initiation, wireguard-go and the wire, our consume
        print(*((b - a) * 1000 for a, b in ((t0, t3), (t0, t1), (t1, t2), (t2, t3))))
    hs.prepare()
"""


@contextlib.contextmanager
def wireguard_go_pair():
    """Two wireguard-go instances in two namespaces joined by a veth pair; yields
    ``flood(seconds)`` -> packets/s through their tunnel."""
    tag = uuid.uuid4().hex[:6]
    nss = [f"capnet-ga{tag}", f"capnet-gb{tag}"]
    keys = [noise.generate_private_key() for _ in nss]
    procs = []
    try:
        for ns in nss:
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "link", "add", f"va{tag}", "netns", nss[0], "type", "veth", "peer",
                        "name", f"vb{tag}", "netns", nss[1]], check=True)
        for i, ns in enumerate(nss):
            veth, iface = f"v{'ab'[i]}{tag}", f"w{'ab'[i]}{tag}"
            _ns_run(ns, "ip", "addr", "add", f"10.98.0.{i + 1}/24", "dev", veth)
            _ns_run(ns, "ip", "link", "set", veth, "up")
            _ns_run(ns, "ip", "link", "set", "lo", "up")
            procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "wireguard-go", "-f", iface],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            sock = Path(f"/var/run/wireguard/{iface}.sock")
            deadline = time.monotonic() + 10
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            other = 1 - i
            with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
                f.write(f"[Interface]\nPrivateKey = {encode_key(keys[i])}\nListenPort = 51820\n"
                        f"[Peer]\nPublicKey = {encode_key(noise.public_key(keys[other]))}\n"
                        f"AllowedIPs = 10.201.0.{other + 1}/32\n"
                        f"Endpoint = 10.98.0.{other + 1}:51820\n")
                f.flush()
                _ns_run(ns, "wg", "setconf", iface, f.name)
            _ns_run(ns, "ip", "addr", "add", f"10.201.0.{i + 1}/24", "dev", iface)
            _ns_run(ns, "ip", "link", "set", iface, "mtu", "1420", "up")
        _ns_run(nss[0], sys.executable, "-c", "import socket; s=socket.socket(2,2); "
                "s.sendto(b'x', ('10.201.0.2', 9))")
        yield lambda seconds: _flood(nss[0], nss[1], "10.201.0.2", seconds)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
        for ns in nss:
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="capnet bench gateway",
        description="WireGuard tunnel throughput and handshake time: capnet vs wireguard-go")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each flood")
    parser.add_argument("--rounds", type=int, default=2,
                        help="floods of each kind, alternating capnet and wireguard-go")
    parser.add_argument("--handshake-seconds", type=float, default=8.0,
                        help="how long the rekeying gateway carries pings (a handshake a second)")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if os.geteuid() != 0:
        print("capnet bench gateway: needs root (network namespaces)", file=sys.stderr)
        return 2
    core = bench_core()
    component = gateway_component.run()
    # the handshakes before the floods: measured after them (and after their namespaces were
    # deleted), one run's median was 4.7 ms and its slowest 10.8; measured first, 2.5-2.9 ms
    # and 3.4-3.7 in two runs
    handshakes = bench_system_handshakes(args.handshake_seconds)
    system = bench_gateway(args.seconds, args.rounds)
    gw, gw_capacity = system["rate"], system["capacity"]
    wgo = statistics.median(system["wgo"])
    handshake = bench_handshake()
    gbit = lambda pps: pps * PACKET * 8 / 1e9   # noqa: E731
    result = {
        "packet_bytes": PACKET,
        "core_seal_pps": round(core), "core_seal_gbit": round(gbit(core), 3),
        "gateway_pps": round(gw), "gateway_gbit": round(gbit(gw), 3),
        "gw_component_seal_pps": round(gw_capacity),
        "gw_component_seal_gbit": round(gbit(gw_capacity), 3),
        "gw_component_alone_seal_pps": round(component["pps"]),
        "gw_component_alone_seal_gbit": round(gbit(component["pps"]), 3),
        "wireguard_go_pps": round(wgo), "wireguard_go_gbit": round(gbit(wgo), 3),
        "ratio_gateway_to_wireguard_go": round(gw / wgo, 3) if wgo else None,
        "ratio_per_round": [round(a / b, 3) if b else None
                            for a, b in zip(system["rates"], system["wgo"], strict=True)],
        "handshake_with_wireguard_go_ms": round(handshake["total"], 3),
        **{f"core_handshake_{k}_ms": round(v, 3) for k, v in handshake.items() if k != "total"},
        "system_handshakes": handshakes["count"],
        "system_handshake_median_ms": round(handshakes["median_ms"], 3),
        "system_handshake_max_ms": round(handshakes["max_ms"], 3),
        "system_handshake_first_ms": round(handshakes["first_ms"], 3),
        "system_handshakes_ms": handshakes["all_ms"],
        "system_first_ping_extra_ms": round(system["handshake_ms"], 3),
        "system_first_ping_ms": round(system["first_ping_ms"], 3),
        **{f"system_{k}": round(system[k], 3) for k in (
            "handshake_in_gw_ms", "handshake_initiation_out_ms", "handshake_black_and_peer_ms",
            "handshake_response_to_data_ms", "key_call_receive_ms",
            "key_cpu_receive_ms", "key_call_prefetch_ms", "initiations_made_ahead_used",
            "seal_batch_mean")},
        "red_nic_rx_pauses": system["red_rx_pauses"],
    }
    for key, value in result.items():
        print(f"{key:32} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
