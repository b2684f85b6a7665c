"""Cookie replies with the real wireguard-go: put it under load, then let capnet's handshake
core (the code the key component runs) initiate. wireguard-go answers with a cookie reply
(type 3); our initiator must take the cookie and get through with mac2.

wireguard-go is "under load" while 1/8 of its handshake queue (128 messages) is waiting; a
burst of initiations with a valid mac1 but garbage inside, sent from another source address
(its per-address rate limiter applies to messages with a valid mac2), makes it so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from gateway.wireguard import encode_key, noise
from tests.capnet_run import ROOT, wait_for

SCRIPT = r"""
import os, socket, sys, time
from gateway.wireguard import Handshaker, messages as wm
from gateway.wireguard.macs import mac1_key
from gateway.wireguard.noise import mac
ours, theirs = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
dst = ('127.0.0.1', 51840)
hs = Handshaker(ours, {theirs: bytes(32)})
flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); flood.bind(('127.0.0.2', 0))
key = mac1_key(theirs)
junk = []
for _ in range(3000):
    m = bytearray(os.urandom(148)); m[0:4] = b'\x01\0\0\0'
    m[116:132] = mac(key, bytes(m[:116])); m[132:148] = bytes(16)
    junk.append(bytes(m))
me = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); me.bind(('127.0.0.1', 0))
me.settimeout(0.5)
events = []
deadline = time.monotonic() + 20
while time.monotonic() < deadline and 'response_accepted' not in events:
    if 'cookie_received' not in events:
        for m in junk:
            flood.sendto(m, dst)
    me.sendto(hs.initiate(theirs, time.monotonic_ns()), dst)
    try:
        while True:
            d = me.recv(2000)
            out = hs.receive(d, b'', time.monotonic_ns(), False)
            events.append(out.event)
            if out.event in ('cookie_received', 'response_accepted'):
                break
    except socket.timeout:
        pass
    time.sleep(0.05)        # wireguard-go takes at most 50 initiations/s from one peer
print(' '.join(events))
"""


@pytest.fixture
def wireguard_go_on_loopback():
    missing = [t for t in ("ip", "wireguard-go", "wg") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"required tools missing: {missing}")
    tag = uuid.uuid4().hex[:6]
    ns, iface = f"capnet-ck{tag}", f"wgc{tag}"
    ours, theirs = noise.generate_private_key(), noise.generate_private_key()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    wg = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "127.0.0.2/8", "dev", "lo"], check=True)
        wg = subprocess.Popen(["ip", "netns", "exec", ns, "wireguard-go", "-f", iface],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(Path(f"/var/run/wireguard/{iface}.sock").exists, what="wireguard-go")
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write(f"[Interface]\nPrivateKey = {encode_key(theirs)}\nListenPort = 51840\n"
                    f"[Peer]\nPublicKey = {encode_key(noise.public_key(ours))}\n"
                    "AllowedIPs = 10.202.0.1/32\n")
            f.flush()
            subprocess.run(["ip", "netns", "exec", ns, "wg", "setconf", iface, f.name],
                           check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", iface, "up"], check=True)
        yield ns, ours, noise.public_key(theirs)
    finally:
        if wg is not None and wg.poll() is None:
            wg.terminate()
            wg.wait(timeout=10)
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_our_initiator_answers_wireguard_gos_cookie_reply(wireguard_go_on_loopback):
    ns, ours, theirs = wireguard_go_on_loopback
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SCRIPT, ours.hex(),
                           theirs.hex()], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    events = done.stdout.split()
    assert "cookie_received" in events, events
    assert events[-1] == "response_accepted", events
    assert events.index("cookie_received") < events.index("response_accepted")
