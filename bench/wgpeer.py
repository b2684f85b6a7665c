"""A capnet gateway system facing a real wireguard-go peer, in two network namespaces: the
set-up the gateway's interop tests and ``capnet bench gateway`` share.

Namespace "red": a TUN granted to capnet's red NIC (10.200.0.1). Namespace "black": a TUN
granted to capnet's black NIC (kernel side 10.99.0.2, the gateway is 10.99.0.1:51821) and
wireguard-go (``wireguard-go -f``, configured with ``wg setconf``) listening on 51820 with
tunnel address 10.200.0.2. Every packet between the two namespaces passes through capnet's
data path and wireguard-go.

``Tunnel(tmp, timing="{}", mismatch="", gw_extra="")`` starts it all (needs root, iproute2,
wireguard-go, wg); ``in_ns``, ``ping``, ``transfer``, ``black``, ``wg_handshake_time`` drive it;
``stop()`` ends the system and returns its summary; ``close()`` removes everything.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from bench.running import wait_for
from gateway.wireguard import encode_key, noise

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


class MissingTool(RuntimeError):
    """A tool the set-up needs is not installed."""


PING = r"""
import socket, struct, sys
dst = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(float(sys.argv[2]))
def csum(b):
    v = sum(struct.unpack('!%dH' % (len(b) // 2), b)); v = (v >> 16) + (v & 0xffff)
    return ~(v + (v >> 16)) & 0xffff
got = 0
for seq in range(int(sys.argv[3])):
    h = struct.pack('!BBHHH', 8, 0, 0, 0x4242, seq) + b'capnet-wg'
    s.sendto(h[:2] + struct.pack('!H', csum(h + b'\0')) + h[4:], (dst, 0))
    try:
        while True:
            d, a = s.recvfrom(2000)
            if d[20] == 0 and d[24:28] == struct.pack('!HH', 0x4242, seq):
                got += 1; break
    except socket.timeout:
        pass
print(got)
"""

SERVER = r"""
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1); print('ready', flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while (b := c.recv(65536)):
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"""

CLIENT = r"""
import hashlib, random, socket, sys
data = random.Random(7).randbytes(int(sys.argv[2]))
c = socket.create_connection((sys.argv[1], 5001), timeout=30)
c.sendall(data); c.close()
print(len(data), hashlib.sha256(data).hexdigest())
"""

SYSTEM = """
[system]
name = "wg-{tag}"
[regions.red_rx]
size = "2 MiB"
[regions.red_tx]
size = "2 MiB"
[regions.black_rx]
size = "2 MiB"
[regions.black_tx]
size = "2 MiB"

[components.red]
program = "drivers.tap:Tun"
priority = 100
maps = [{{ region = "red_rx", perms = "rw" }}, {{ region = "red_tx", perms = "r" }}]
devices = [{{ kind = "tun", name = "{red_if}", netns = "{red_ns}", address = "10.200.0.1/24" }}]

[components.black]
program = "drivers.tap:Tun"
priority = 100
maps = [{{ region = "black_rx", perms = "rw" }}, {{ region = "black_tx", perms = "r" }}]
devices = [{{ kind = "tun", name = "{black_if}", netns = "{black_ns}", address = "10.99.0.2/24" }}]

[components.gw]
program = "gateway.datapath:Gateway"
priority = 150
config = {{ address = "10.99.0.1", timing = {timing}{gw_extra} }}
maps = [{{ region = "red_rx", perms = "r" }}, {{ region = "red_tx", perms = "rw" }},
        {{ region = "black_rx", perms = "r" }}, {{ region = "black_tx", perms = "rw" }}]

[components.keys]
program = "gateway.keys:KeyStore"
priority = 200
devices = [{{ kind = "file", path = "gateway.conf", mode = "r" }}]

[[queues]]
name = "red_in"
producer = "red"
consumer = "gw"
data = "red_rx"
capacity = 512
[[queues]]
name = "red_out"
producer = "gw"
consumer = "red"
data = "red_tx"
capacity = 512
[[queues]]
name = "black_in"
producer = "black"
consumer = "gw"
data = "black_rx"
capacity = 512
[[queues]]
name = "black_out"
producer = "gw"
consumer = "black"
data = "black_tx"
capacity = 512

[[channels]]
name = "keys"
ends = ["gw", "keys"]
pp = "gw"
"""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(message)


def _need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise MissingTool(f"required tools missing: {missing} (scripts/dev installs them)")


class Tunnel:
    """Namespaces, wireguard-go and a capnet gateway system; ``stop()`` returns the summary."""

    def __init__(self, tmp: Path, timing: str = "{}", mismatch: str = "",
                 gw_extra: str = "") -> None:
        """``mismatch``: "psk" or "key" gives the gateway a wrong PSK or peer public key."""
        _need("ip", "wireguard-go", "wg")
        tag = f"{os.getpid() % 10000}{uuid.uuid4().hex[:4]}"
        self.tmp, self.tag = tmp, tag
        self.red_ns, self.black_ns = f"capnet-wr{tag}", f"capnet-wb{tag}"
        self.wg_if = f"wg{tag}"
        self.proc = self.wg = None
        self.made: list[str] = []
        try:
            self._start(timing, mismatch, gw_extra)
        except BaseException:
            self.close()
            raise

    def _start(self, timing: str, mismatch: str, gw_extra: str) -> None:
        tmp, tag = self.tmp, self.tag
        for ns in (self.red_ns, self.black_ns):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            self.made.append(ns)
        gw_key, peer_key = noise.generate_private_key(), noise.generate_private_key()
        self.gw_key, self.peer_key = gw_key, peer_key
        psk = os.urandom(32)
        wrong = noise.generate_private_key()
        peer_key_seen = wrong if mismatch == "key" else peer_key
        (tmp / "gateway.conf").write_text(
            f"[Interface]\nPrivateKey = {encode_key(gw_key)}\nListenPort = 51821\n\n[Peer]\n"
            f"PublicKey = {encode_key(noise.public_key(peer_key_seen))}\n"
            f"PresharedKey = {encode_key(os.urandom(32) if mismatch == 'psk' else psk)}\n"
            f"AllowedIPs = 10.200.0.2/32\nEndpoint = 10.99.0.2:51820\n")
        (tmp / "peer.conf").write_text(
            f"[Interface]\nPrivateKey = {encode_key(peer_key)}\nListenPort = 51820\n\n[Peer]\n"
            f"PublicKey = {encode_key(noise.public_key(gw_key))}\n"
            f"PresharedKey = {encode_key(psk)}\n"
            f"AllowedIPs = 10.200.0.1/32\nEndpoint = 10.99.0.1:51821\n")
        self.wg = subprocess.Popen(["ip", "netns", "exec", self.black_ns, "wireguard-go", "-f",
                                    self.wg_if], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        sock = Path(f"/var/run/wireguard/{self.wg_if}.sock")
        wait_for(sock.exists, what="wireguard-go's control socket")
        self.black(["wg", "setconf", self.wg_if, str(tmp / "peer.conf")])
        self.black(["ip", "addr", "add", "10.200.0.2/24", "dev", self.wg_if])
        self.black(["ip", "link", "set", self.wg_if, "up"])
        self.black(["ip", "link", "set", "lo", "up"])
        subprocess.run(["ip", "-n", self.red_ns, "link", "set", "lo", "up"], check=True)
        system = tmp / "system.toml"
        system.write_text(SYSTEM.format(tag=tag, red_if=f"cr{tag}", black_if=f"cb{tag}",
                                        red_ns=self.red_ns, black_ns=self.black_ns,
                                        timing=timing, gw_extra=gw_extra))
        self.stats = tmp / "stats.json"
        self.control = tmp / "ctl.sock"
        self.proc = subprocess.Popen(
            [PY, "-m", "harness.cli", "run", str(system), "--stats-json", str(self.stats),
             "--control", str(self.control)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(self._up, timeout=30, what="the gateway system and its TUNs")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("capnet run ended: " + self.proc.communicate()[1])
        links = subprocess.run(["ip", "-n", self.black_ns, "addr"], capture_output=True,
                               text=True).stdout
        return self.control.exists() and "10.99.0.2" in links

    def black(self, cmd, **kw):
        return subprocess.run(["ip", "netns", "exec", self.black_ns, *cmd], check=True,
                              capture_output=True, text=True, **kw)

    def in_ns(self, ns: str, script: str, *args: str, timeout: float = 60):
        return subprocess.run(["ip", "netns", "exec", ns, PY, "-c", script, *args],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def ping(self, from_ns: str, dst: str, count: int = 3, wait: float = 2.0) -> int:
        done = self.in_ns(from_ns, PING, dst, str(wait), str(count))
        _check(done.returncode == 0, done.stderr)
        return int(done.stdout.strip())

    def transfer(self, server_ns: str, server_ip: str, client_ns: str, size: int):
        server = subprocess.Popen(["ip", "netns", "exec", server_ns, PY, "-c", SERVER,
                                   server_ip], stdout=subprocess.PIPE, text=True)
        try:
            _check(server.stdout.readline().strip() == "ready", "the server did not start")
            client = self.in_ns(client_ns, CLIENT, server_ip, str(size), timeout=120)
            _check(client.returncode == 0, client.stderr)
            received, _ = server.communicate(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
                server.communicate()
        return client.stdout.split(), received.split()

    def wg_handshake_time(self) -> int:
        out = self.black(["wg", "show", self.wg_if, "latest-handshakes"]).stdout.split()
        return int(out[1]) if len(out) > 1 else 0

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGINT)
        _out, err = self.proc.communicate(timeout=60)
        _check(self.proc.returncode == 0, err)
        return json.loads(self.stats.read_text())

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        if self.wg is not None and self.wg.poll() is None:
            self.wg.terminate()
            self.wg.wait(timeout=10)
        for ns in self.made:
            subprocess.run(["ip", "netns", "delete", ns], check=False)
        self.made = []
