"""The capnet stack against the real Linux kernel: examples/tap-http.toml run by ``capnet run``
in a network namespace the test creates, the kernel's own tools (ping, curl, ip neigh) and Python
sockets on the kernel side, the stack's apps (ping, udp-send, bulk-send) on ours.

One system serves the whole module (starting it costs about a second); every test checks one
interop behaviour. Transfers use 8 MiB each way here; the issue's 100 MiB runs in
``capnet bench stack``. 1,000 concurrent connections are opened at once, as the issue asks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from harness.control import request
from netstack.apps.pattern import pattern_sha256
from tests.capnet_run import ROOT, start, stop_run, wait_for

US, KERNEL = "10.77.0.2", "10.77.0.1"
OUR_MAC = "02:00:0a:4d:00:02"
BULK = 8 << 20
MANY = 1000
APPS = ["udp-echo:7", "tcp-echo:9", "http:80", "bulk-recv:5001", f"ping:{KERNEL}:3",
        f"udp-send:{KERNEL}:7777:3", f"bulk-send:{KERNEL}:5002:{BULK}"]


# -- kernel-side peers: plain Python run inside the namespace with `python -c` ----------------
# Only the standard library, so that each starts fast; the pattern stream is re-derived here
# from its definition (netstack/apps/pattern.py), an independent check of the stack's bytes.

PEER_SOURCE = r'''
import asyncio, hashlib, json, socket, struct, sys


def chunks(n):
    index = 0
    while n > 0:
        block = hashlib.shake_128(b"capnet-bytes" + index.to_bytes(8, "big")).digest(65536)
        yield block[:n]
        n -= 65536
        index += 1


def _ping(host: str, count: str) -> None:
    """ICMP echo through the kernel's raw socket (iputils' ping is not among the tools)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(2.0)
    replies = 0
    for seq in range(1, int(count) + 1):
        payload = b"kernel-ping-%d" % seq
        header = struct.pack("!BBHHH", 8, 0, 0, 0x5151, seq)
        data = header + payload + b"\0" * (len(payload) % 2)
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        total = (total & 0xFFFF) + (total >> 16)
        total += total >> 16
        packet = header[:2] + struct.pack("!H", ~total & 0xFFFF) + header[4:] + payload
        sock.sendto(packet, (host, 0))
        try:
            while True:
                data, addr = sock.recvfrom(2048)
                icmp = data[(data[0] & 15) * 4:]
                if addr[0] == host and icmp[0] == 0 and icmp[4:8] == packet[4:8]:
                    replies += icmp[8:] == payload
                    break
        except TimeoutError:
            pass
    print(json.dumps({"replies": replies}))


def _udp_client(host: str, port: str, message: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    for _ in range(5):
        sock.sendto(message.encode(), (host, int(port)))
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            continue
        print(json.dumps({"data": data.decode(), "from": list(addr)}))
        return
    print(json.dumps({"data": None}))


def _udp_echo(port: str, count: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", int(port)))
    print("ready", flush=True)
    for _ in range(int(count)):
        data, addr = sock.recvfrom(2048)
        sock.sendto(data, addr)


def _bulk_sink(port: str) -> None:
    server = socket.create_server(("0.0.0.0", int(port)))
    print("ready", flush=True)
    conn, addr = server.accept()
    digest, total = hashlib.sha256(), 0
    while data := conn.recv(1 << 16):
        digest.update(data)
        total += len(data)
    conn.sendall(f"{total} {digest.hexdigest()}\n".encode())
    conn.close()
    print(json.dumps({"bytes": total, "sha256": digest.hexdigest(), "from": addr[0]}))


def _bulk_send(host: str, port: str, nbytes: str) -> None:
    conn = socket.create_connection((host, int(port)), timeout=60)
    for chunk in chunks(int(nbytes)):
        conn.sendall(chunk)
    conn.shutdown(socket.SHUT_WR)
    answer = b""
    while data := conn.recv(4096):
        answer += data
    print(json.dumps({"answer": answer.decode()}))


def _many(host: str, port: str, n: str) -> None:
    async def one(i: int) -> bool:
        reader, writer = await asyncio.open_connection(host, int(port))
        message = f"connection {i:05d}\n".encode()
        writer.write(message)
        await writer.drain()
        echoed = await reader.readexactly(len(message))
        writer.close()
        await writer.wait_closed()
        return echoed == message

    async def main() -> list:
        return await asyncio.gather(*(one(i) for i in range(int(n))), return_exceptions=True)

    results = asyncio.run(main())
    errors = sorted({repr(r) for r in results if isinstance(r, BaseException)})
    print(json.dumps({"ok": sum(r is True for r in results), "errors": errors[:5]}))


def _orderly(host: str, port: str) -> None:
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(b"last words")
    conn.shutdown(socket.SHUT_WR)                # our FIN; the echo server answers, then FINs
    got = b""
    while data := conn.recv(4096):
        got += data
    print(json.dumps({"got": got.decode(), "eof": True}))


def _linger_reset(host: str, port: str) -> None:
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(b"x" * 100)
    conn.recv(100)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()                                 # SO_LINGER 0: the kernel sends a RST
    print(json.dumps({"closed": True}))


def _hold(host: str, port: str) -> None:
    conn = socket.create_connection((host, int(port)), timeout=10)
    print(json.dumps({"local": list(conn.getsockname())}), flush=True)
    sys.stdin.read()
    conn.close()


def _reset_page(host: str) -> None:
    conn = socket.create_connection((host, 80), timeout=10)
    conn.sendall(b"GET /reset HTTP/1.1\r\nHost: capnet\r\n\r\n")
    try:
        data = conn.recv(4096)
        print(json.dumps({"reset": False, "data": data.decode(errors="replace")}))
    except ConnectionResetError:
        print(json.dumps({"reset": True}))


globals()["_" + sys.argv[1]](*sys.argv[2:])
'''


# -- the system --------------------------------------------------------------------------------------

def _peer_cmd(ns: str, name: str, *args: object) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-c", PEER_SOURCE, name, *map(str, args)]


def _peer(ns: str, name: str, *args: object, timeout: float = 60) -> dict:
    done = subprocess.run(_peer_cmd(ns, name, *args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


class System:
    def __init__(self, ns: str, control: str, proc: subprocess.Popen) -> None:
        self.ns, self.control, self.proc = ns, control, proc

    def stats(self) -> dict:
        reply = request(self.control, {"op": "stats"})
        return reply["ok"]["components"]["stack"]["stats"]

    def app(self, spec: str) -> dict:
        return self.stats()["extra"]["apps"][spec]

    def ns_run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns, *cmd], capture_output=True,
                              timeout=timeout)


def _tools() -> None:
    for tool in ("ip", "curl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required (bash scripts/dev installs it)")


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    _tools()
    tmp = tmp_path_factory.mktemp("stack")
    ns = f"cnst{os.getpid() % 100000}{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    peers: list[subprocess.Popen] = []
    proc = None
    try:
        text = (ROOT / "examples" / "tap-http.toml").read_text()
        apps = 'apps = ["udp-echo:7", "tcp-echo:9", "http:80"]'
        assert apps in text
        text = text.replace(apps, "apps = " + json.dumps(APPS))
        description = tmp / "tap-http.toml"
        description.write_text(text)
        for name, args in (("udp_echo", (7777, 3)), ("bulk_sink", (5002,))):
            peer = subprocess.Popen(_peer_cmd(ns, name, *args), cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert peer.stdout.readline().strip() == "ready", peer.stderr.read()
            peers.append(peer)
        control = str(tmp / "ctl" / "stack.sock")
        proc = start("run", str(description), "--control", control, "--set", f"nic.netns={ns}",
                     "--stats-json", str(tmp / "stats.json"))
        sys_ = System(ns, control, proc)
        sys_.peers = peers

        def serving() -> bool:
            if proc.poll() is not None:
                raise AssertionError(proc.communicate()[1])
            done = sys_.ns_run("curl", "-s", "-m", "2", f"http://{US}/", timeout=10)
            return done.returncode == 0 and b"capnet" in done.stdout

        wait_for(serving, timeout=30, what="the stack's HTTP server")
        yield sys_
    finally:
        stop_run(proc, control)
        for peer in peers:
            if peer.poll() is None:
                peer.kill()
            peer.wait()
        subprocess.run(["ip", "netns", "delete", ns], check=False)


# -- the tests ----------------------------------------------------------------------------------------

def test_kernel_pings_us(system):
    assert _peer(system.ns, "ping", US, 3) == {"replies": 3}


def test_arp_both_ways(system):
    """The kernel learned our MAC by ARP; we learned the kernel's (our pings got answers)."""
    _peer(system.ns, "ping", US, 1)
    neigh = system.ns_run("ip", "neigh", "show", US).stdout.decode()
    assert OUR_MAC in neigh, neigh
    wait_for(lambda: system.app(f"ping:{KERNEL}:3").get("replies") == 3, timeout=30,
             what="our three echo replies from the kernel")
    counters = system.stats()["extra"]["interface"]
    assert counters.get("tx.arp.reply", 0) >= 1          # we answered the kernel's request


def test_we_ping_the_kernel(system):
    wait_for(lambda: system.app(f"ping:{KERNEL}:3").get("replies") == 3, timeout=30,
             what="echo replies")
    assert len(system.app(f"ping:{KERNEL}:3")["rtt_us"]) == 3


def test_kernel_udp_to_our_echo(system):
    reply = _peer(system.ns, "udp_client", US, 7, "capnet, are you there?")
    assert reply == {"data": "capnet, are you there?", "from": [US, 7]}


def test_our_udp_to_a_kernel_server(system):
    wait_for(lambda: system.app(f"udp-send:{KERNEL}:7777:3").get("replies") == 3, timeout=30,
             what="UDP replies from the kernel-side echo server")


def test_curl_gets_the_page_and_pattern_bytes(system):
    page = system.ns_run("curl", "-s", "-f", f"http://{US}/")
    assert page.returncode == 0 and b"<h1>capnet</h1>" in page.stdout
    missing = system.ns_run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            f"http://{US}/nothing")
    assert missing.stdout == b"404"
    body = system.ns_run("curl", "-s", "-f", f"http://{US}/bytes/{BULK}", timeout=120)
    assert body.returncode == 0, body.stderr
    assert len(body.stdout) == BULK
    assert hashlib.sha256(body.stdout).hexdigest() == pattern_sha256(BULK)


def test_curl_posts_a_body_for_its_sha256(system, tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / "body").write_bytes(data)
    done = system.ns_run("curl", "-s", "-f", "--data-binary", f"@{tmp_path / 'body'}",
                         f"http://{US}/sha256", timeout=120)
    assert done.stdout.decode().strip() == hashlib.sha256(data).hexdigest()


def test_bulk_kernel_to_capnet(system):
    answer = _peer(system.ns, "bulk_send", US, 5001, BULK, timeout=120)["answer"]
    assert answer == f"{BULK} {pattern_sha256(BULK)}\n"


def test_bulk_capnet_to_kernel(system):
    sink = system.peers[1]
    out, err = sink.communicate(timeout=120)
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"bytes": BULK, "sha256": pattern_sha256(BULK), "from": US}, err
    wait_for(lambda: system.app(f"bulk-send:{KERNEL}:5002:{BULK}").get("done"), timeout=30,
             what="the bulk sender to finish")
    sent = system.app(f"bulk-send:{KERNEL}:5002:{BULK}")
    assert sent["answer"] == f"{BULK} {pattern_sha256(BULK)}"
    # full-size segments (with the timestamp option) fit the MTU: IP never fragments them
    assert system.stats()["extra"]["interface"].get("tx.ipv4.fragments", 0) == 0


def test_many_concurrent_connections(system):
    before = system.app("tcp-echo:9").get("connections", 0)
    result = _peer(system.ns, "many", US, 9, MANY, timeout=120)
    assert result == {"ok": MANY, "errors": []}
    assert system.app("tcp-echo:9")["connections"] - before == MANY


def test_operator_lists_connections(system):
    """A protected call through the control socket lists the stack's TCP connections."""
    holder = subprocess.Popen(_peer_cmd(system.ns, "hold", US, 9), cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        local = json.loads(holder.stdout.readline())["local"]
        remote = f"{local[0]}:{local[1]}"

        def listed() -> dict | None:      # the kernel's connect() may return before our
            reply = request(system.control, {"op": "call", "component": "stack",  # ACK is in
                                             "msg": {"op": "connections"}})
            found = {c["remote"]: c for c in reply["ok"]}.get(remote)
            return found if found and found["state"] == "ESTABLISHED" else None
        held = wait_for(listed, timeout=10, what="the connection to be listed established")
    finally:
        holder.communicate("", timeout=10)
    assert held["state"] == "ESTABLISHED" and held["local"] == f"{US}:9"
    assert held["cwnd"] > 0
    bad = request(system.control, {"op": "call", "component": "stack", "msg": {"op": "x"}})
    assert "expected" in bad["error"]


def test_orderly_close_both_directions(system):
    """Kernel FIN -> our echo sees EOF and closes -> the kernel reads the echo then EOF."""
    before = system.app("tcp-echo:9").get("closed", 0)
    assert _peer(system.ns, "orderly", US, 9) == {"got": "last words", "eof": True}
    wait_for(lambda: system.app("tcp-echo:9").get("closed", 0) > before, timeout=10,
             what="the echo server to see the orderly close")


def test_abortive_close_both_directions(system):
    before = system.app("tcp-echo:9").get("reset", 0)
    assert _peer(system.ns, "linger_reset", US, 9) == {"closed": True}
    wait_for(lambda: system.app("tcp-echo:9").get("reset", 0) > before, timeout=10,
             what="the echo server to see the kernel's RST")
    assert _peer(system.ns, "reset_page", US) == {"reset": True}      # our RST


def test_stack_counts_every_frame(system):
    counters = system.stats()["counters"]
    dropped = sum(v for k, v in counters.items() if k.startswith("dropped."))
    assert counters["in"] == counters["out"] + dropped + counters.get("pending", 0)
    assert counters["in"] > 1000


def test_kernel_reaches_us_over_ipv6_link_local(system):
    addresses = system.stats()["extra"]["addresses"]
    link_local = next(a.split("/")[0] for a in addresses if a.startswith("fe80:"))
    size = 1 << 20
    body = system.ns_run("curl", "-s", "-f", "-g", f"http://[{link_local}%capnet0]/bytes/{size}")
    assert body.returncode == 0, body.stderr
    assert hashlib.sha256(body.stdout).hexdigest() == pattern_sha256(size)
    assert system.stats()["extra"]["interface"].get("tx.ipv6.fragments", 0) == 0
