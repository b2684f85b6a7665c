"""Key isolation: a hostile data path, confined like every component, cannot read the WireGuard
configuration, gets no secret but session keys from the key component, and cannot take the key
component down with malformed protected calls."""

from __future__ import annotations

import os

import msgpack

from gateway.wireguard import encode_key, noise
from harness import Component, ProtectedCallError
from tests.capnet_run import run_system

BAD_REQUESTS = [None, 5, "peers", {"op": "nope"}, {"op": "initiate"},
                {"op": "initiate", "peer": b"x" * 32}, {"op": "receive", "datagram": 7},
                {"op": "receive", "datagram": b"\x01" + bytes(147)}]


class HostileDataPath(Component):
    """Tries every way at the key it can think of, and counts what happened."""

    def init(self) -> None:
        secret = bytes.fromhex(self.config["secret"])
        for msg in BAD_REQUESTS:
            try:
                self.ppcall("keys", msg)
                self.count("bad_answered")
            except ProtectedCallError:
                self.count("refused")
        public = self.ppcall("keys", {"op": "peers"})
        if secret in msgpack.packb(public):
            self.count("leaked")
        initiation = self.ppcall("keys", {"op": "initiate",
                                          "peer": public["peers"][0]["public_key"]})
        self.count("initiation_bytes", len(initiation))
        try:
            fd = os.open(self.config["steal"], os.O_RDONLY)
            self.count("stolen", len(os.read(fd, 4096)))
        except OSError:
            self.count("open_denied")


SYSTEM = """
[system]
name = "keys-isolation"

[components.keys]
program = "gateway.keys:KeyStore"
priority = 200
devices = [{{ kind = "file", path = "wg0.conf", mode = "r" }}]

[components.gw]
program = "tests.test_gateway_isolation:HostileDataPath"
priority = 100
config = {{ steal = "{steal}", secret = "{secret}" }}

[[channels]]
name = "keys"
ends = ["gw", "keys"]
pp = "gw"
"""


def test_a_hostile_data_path_gets_no_key_and_cannot_break_the_key_component(tmp_path):
    private, psk = noise.generate_private_key(), os.urandom(32)
    conf = tmp_path / "wg0.conf"
    conf.write_text(f"[Interface]\nPrivateKey = {encode_key(private)}\n\n[Peer]\n"
                    f"PublicKey = {encode_key(noise.public_key(noise.generate_private_key()))}\n"
                    f"PresharedKey = {encode_key(psk)}\nAllowedIPs = 10.0.0.0/8\n")
    proc, summary = run_system(tmp_path, SYSTEM.format(steal=conf, secret=private.hex()),
                               "--duration", "2")
    assert proc.returncode == 0, proc.stderr
    gw, keys = summary["components"]["gw"], summary["components"]["keys"]
    assert keys["faults"] == [] and gw["faults"] == [], proc.stderr
    hostile = gw["stats"]["counters"]
    assert hostile["refused"] == len(BAD_REQUESTS) and "bad_answered" not in hostile
    assert "leaked" not in hostile and "stolen" not in hostile
    assert hostile["open_denied"] == 1
    assert hostile["initiation_bytes"] == 148
    assert keys["stats"]["counters"]["bad_requests"] == len(BAD_REQUESTS)
