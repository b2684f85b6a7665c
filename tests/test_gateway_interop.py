"""The gateway against the real wireguard-go, in two network namespaces the tests create
(``bench.wgpeer.Tunnel``: the set-up ``capnet bench gateway`` uses too).
"""

from __future__ import annotations

import pytest

from bench.wgpeer import Tunnel
from gateway.wireguard import decode_key, noise


@pytest.fixture
def tunnel_factory(tmp_path):
    made = []

    def make(**kw):
        t = Tunnel(tmp_path, **kw)
        made.append(t)
        return t
    try:
        yield make
    finally:
        for t in made:
            t.close()


def _gw(summary):
    gw = summary["components"]["gw"]
    assert gw["faults"] == [] and summary["conservation"]["components"]["gw"]["balanced"]
    return gw["stats"]["extra"]["wireguard"]


def test_capnet_initiates_ping_and_tcp_both_ways(tunnel_factory):
    t = tunnel_factory()
    assert t.ping(t.red_ns, "10.200.0.2") == 3
    assert t.wg_handshake_time() > 0
    assert t.ping(t.black_ns, "10.200.0.1") == 3
    size = 3 * 2**20
    sent, got = t.transfer(t.black_ns, "10.200.0.2", t.red_ns, size)
    assert sent == got and int(got[0]) == size
    sent, got = t.transfer(t.red_ns, "10.200.0.1", t.black_ns, size)
    assert sent == got and int(got[0]) == size
    summary = t.stop()
    wg = _gw(summary)
    assert wg["initiation_sent"] >= 1 and wg["handshake.response_accepted"] >= 1
    assert wg["received"] > 1000 and wg["sent"] > 1000
    # the first handshake went out with an initiation the key component made ahead; after it
    # completed the gw fetched the next one
    gw = summary["components"]["gw"]["stats"]["extra"]
    assert gw["initiations_made_ahead_used"] == 1
    assert gw["key_calls"]["prefetch"]["calls"] == 2
    assert summary["components"]["keys"]["stats"]["counters"]["initiations_made_ahead"] == 2
    timeline = gw["first_handshake_us"]
    assert timeline["staged"] <= timeline["initiation_out"] <= timeline["response_in"] \
        <= timeline["data_out"]


def test_wireguard_go_initiates(tunnel_factory):
    t = tunnel_factory()
    assert t.ping(t.black_ns, "10.200.0.1") == 3
    assert t.ping(t.red_ns, "10.200.0.2") == 3
    summary = t.stop()
    wg = _gw(summary)
    assert wg["handshake.initiation_accepted"] >= 1 and wg.get("initiation_sent", 0) == 0
    assert summary["components"]["keys"]["stats"]["counters"][
        "handshake.initiation_accepted"] >= 1


def test_rekey_during_a_transfer(tunnel_factory):
    # shortened timers (component config `timing`, in seconds): capnet, the initiator, rekeys
    # every 0.3 s of a session's life while data flows
    # UDP checksums on: the kernel in the black namespace checks every one we compute
    t = tunnel_factory(timing="{ rekey_after_time = 0.3, rekey_timeout = 0.2 }",
                       gw_extra=", udp_checksum = true")
    assert t.ping(t.red_ns, "10.200.0.2") == 3
    size = 12 * 2**20
    sent, got = t.transfer(t.black_ns, "10.200.0.2", t.red_ns, size)
    assert sent == got and int(got[0]) == size
    summary = t.stop()
    wg = _gw(summary)
    assert wg["handshake.response_accepted"] >= 3, wg
    # each rekey starts with the initiation fetched after the previous handshake completed
    gw = summary["components"]["gw"]["stats"]["extra"]
    assert gw["initiations_made_ahead_used"] >= 2
    # every handshake we initiated and completed is timed, from its need to its keys in use
    assert len(gw["handshakes_us"]) == wg["handshake.response_accepted"]
    assert all(0 < us for us in gw["handshakes_us"])


@pytest.mark.parametrize("mismatch", ["psk", "key"])
def test_wrong_psk_or_key_fails_cleanly(tunnel_factory, mismatch):
    t = tunnel_factory(mismatch=mismatch)
    assert t.ping(t.red_ns, "10.200.0.2", count=1, wait=1.5) == 0
    assert t.wg_handshake_time() == 0
    summary = t.stop()
    wg = _gw(summary)
    assert wg.get("handshake.response_accepted", 0) == 0
    assert wg.get("handshake.initiation_accepted", 0) == 0
    assert wg["initiation_sent"] >= 1
    if mismatch == "psk":       # wireguard-go answers; the response fails to authenticate
        assert wg["handshake.response_auth_failed"] >= 1
    else:                       # mac1 is keyed for another key: wireguard-go stays silent
        assert not any(k.startswith("handshake.") for k in wg)
    assert all(c["faults"] == [] for c in summary["components"].values())


FLOOD = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
data = b'x' * 1392; end = time.monotonic() + float(sys.argv[2]); n = 0
while time.monotonic() < end:
    for _ in range(64):
        try:
            s.sendto(data, (sys.argv[1], 9)); n += 1
        except OSError:
            pass
print(n)
"""


def test_a_flood_through_the_tunnel_is_conserved_and_the_tunnel_recovers(tunnel_factory):
    # the red NIC reads faster than the tunnel drains: it pauses reading while it has no free
    # buffer (drivers.nic FrameNic._pause_rx) and must resume when buffers come back
    t = tunnel_factory()
    assert t.ping(t.red_ns, "10.200.0.2") == 3
    flood = t.in_ns(t.red_ns, FLOOD, "10.200.0.2", "1.0")
    assert flood.returncode == 0 and int(flood.stdout) > 1000, flood.stderr
    assert t.ping(t.red_ns, "10.200.0.2") == 3
    summary = t.stop()
    wg = _gw(summary)
    red = summary["components"]["red"]
    assert summary["conservation"]["components"]["red"]["balanced"] and red["faults"] == []
    assert wg["sent"] >= red["stats"]["counters"]["entered"] - 10 > 1000
    assert "rx_pauses" in red["stats"]["extra"]


COOKIE_CLIENT = r"""
import socket, sys, time
from gateway.wireguard import Handshaker
key, gw = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
hs = Handshaker(key, {gw: bytes.fromhex(sys.argv[3])})
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.99.0.2', 0)); s.settimeout(3)
events = []
for attempt in range(2):
    s.sendto(hs.initiate(gw, time.monotonic_ns()), ('10.99.0.1', 51821))
    events.append(hs.receive(s.recv(2000), b'', time.monotonic_ns(), False).event)
print(' '.join(events))
"""


def test_gateway_under_load_answers_with_a_cookie_reply(tunnel_factory):
    # load_threshold = 0: every handshake message finds the gateway under load
    t = tunnel_factory(gw_extra=", load_threshold = 0")
    psk = (t.tmp / "gateway.conf").read_text().split("PresharedKey = ")[1].split()[0]
    done = t.in_ns(t.black_ns, COOKIE_CLIENT, t.peer_key.hex(),
                   noise.public_key(t.gw_key).hex(), decode_key(psk).hex())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cookie_received", "response_accepted"]
    wg = _gw(t.stop())
    assert wg["handshake.cookie_sent"] == 1 and wg["handshake.initiation_accepted"] == 1
