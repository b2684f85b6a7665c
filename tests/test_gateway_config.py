"""Configuration of the gateway components is checked before anything starts; the black-side
headers the data path builds carry checksums an independent builder (scapy) agrees with."""

from __future__ import annotations

import os
import random

from scapy.layers.inet import IP, UDP

from gateway.datapath import checksum, udp_checksum
from gateway.wireguard import encode_key, noise
from tests.capnet_run import capnet, write_system

KEYS_ONLY = """
[system]
name = "keys-only"
[components.keys]
program = "gateway.keys:KeyStore"
priority = 200
devices = [{ kind = "file", path = "wg0.conf", mode = "r" }]
"""


def test_a_bad_wg_config_is_reported_with_file_and_line_and_nothing_starts(tmp_path):
    (tmp_path / "wg0.conf").write_text(
        f"[Interface]\nPrivateKey = {encode_key(os.urandom(32))}\nListenPort = 70000\n\n"
        "[Peer]\nPublicKey = short\nAllowedIPs = 10.0.0.0/8, nonsense\n")
    system = write_system(tmp_path / "s.toml", KEYS_ONLY)
    proc = capnet("check", str(system))
    assert proc.returncode == 2
    err = proc.stderr
    assert "wg0.conf:3: error: ListenPort 70000 out of range" in err
    assert "wg0.conf:6: error:" in err and "wg0.conf:7: error: 'nonsense'" in err
    proc = capnet("run", str(system), "--duration", "1")
    assert proc.returncode == 2 and "nothing was started" in proc.stderr


def test_a_good_wg_config_passes_the_check(tmp_path):
    peer = encode_key(noise.public_key(noise.generate_private_key()))
    (tmp_path / "wg0.conf").write_text(
        f"[Interface]\nPrivateKey = {encode_key(noise.generate_private_key())}\n"
        f"Address = 10.0.0.1/24   # wg-quick's, accepted and ignored\n\n"
        f"[Peer]\nPublicKey = {peer}\nAllowedIPs = 10.0.0.0/24\nAllowedIPs = fd00::/64\n"
        "Endpoint = [2001:db8::1]:51820\nPersistentKeepalive = 25\n")
    proc = capnet("check", str(write_system(tmp_path / "s.toml", KEYS_ONLY)))
    assert proc.returncode == 0, proc.stderr


def test_ip_and_udp_checksums_agree_with_scapy():
    rng = random.Random(5)
    for size in (0, 1, 31, 148, 1436):
        payload = rng.randbytes(size)
        ref = IP(bytes(IP(src="10.99.0.1", dst="10.99.0.2", flags="DF", ttl=64, id=0)
                       / UDP(sport=51821, dport=51820) / payload))
        raw = bytes(ref)
        header = raw[:10] + b"\0\0" + raw[12:20]
        assert checksum(header) == ref[IP].chksum
        udp = raw[20:26] + b"\0\0" + raw[28:]
        assert udp_checksum(raw[12:16], raw[16:20], udp) == ref[UDP].chksum


def test_the_gateway_batch_option_is_checked_before_anything_starts():
    from gateway.datapath import Gateway
    good = {"address": "10.99.0.1"}
    assert Gateway.preflight({**good, "batch": 256}, {}) == []
    for bad in (0, 5000, "64", True, 1.5):
        (problem,) = Gateway.preflight({**good, "batch": bad}, {})
        assert problem.startswith("batch: ") and repr(bad) in problem
