"""The sans-I/O WireGuard core: known answers, formats, replay window, handshakes, transport,
negative cases, cookies, timers and configuration."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wireguard import (
    ConfigError,
    Device,
    Handshaker,
    Outcome,
    ReplayWindow,
    Timing,
    noise,
    parse_config,
)
from gateway.wireguard import messages as wm
from gateway.wireguard.config import PeerConfig, WgConfig
from gateway.wireguard.replay import REJECT_AFTER_MESSAGES, WINDOW
from gateway.wireguard.timers import SECOND

ROOT = Path(__file__).resolve().parent.parent

# wireguard-go device/kdf_test.go: (key, input, t0, t1, t2)
KDF_VECTORS = [
    ("746573742d6b6579", "746573742d696e707574",
     "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633",
     "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a",
     "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24"),
    ("776972656775617264", "776972656775617264",
     "491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8",
     "1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f",
     "31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160"),
    ("", "",
     "8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0",
     "58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e",
     "0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e"),
]

# cacophony vectors/cacophony.txt, protocol Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s
CACOPHONY = {
    "prologue": "4a6f686e2047616c74",
    "psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
    "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
    "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
    "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    "handshake_hash": "f5191b875290abcd41347ac3622d9679688a7e980229cb937ef748336cfde0e5",
    "messages": [
        ("4c756477696720766f6e204d69736573",
         "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944001e21de9f98ddd8e2ad5"
         "7527207feb56253c9c94a9e496782ecfcb2a75fbcaf1b52948cc48daefe660c62119ab5000980c848312"
         "15f2441eba616548e832985464cf17e51ee93109008399a21f7e13f"),
        ("4d757272617920526f746862617264",
         "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843cb765f2caef0751b8f00"
         "7572dab0322217755c0632f365717edbf34d33e87a"),
        ("462e20412e20486179656b", "8153ca9833bc3c1b91a7e66e5f4d4f5b59bf9e64c2f20d15f0bba7"),
        ("4361726c204d656e676572", "07af0c9c86e1b4e80f36b04ff7688d51141af3debd0332f0a705ef"),
        ("4a65616e2d426170746973746520536179",
         "6ab1467c0448cc78394494abaaf23afce0e234315d6e2624dcbfa8a21c1c4d073d"),
        ("457567656e2042f6686d20766f6e2042617765726b",
         "dfc346c0d2296ae6cf1acf6f12b8456a1dba228cf8d8b774aacf1c47fc53aa80ebc7a4c292"),
    ],
}


@pytest.mark.parametrize("key,data,t0,t1,t2", KDF_VECTORS)
def test_kdf_matches_wireguard_go_vectors(key, data, t0, t1, t2):
    out = noise.kdf(bytes.fromhex(key), bytes.fromhex(data), 3)
    assert [o.hex() for o in out] == [t0, t1, t2]
    assert noise.kdf(bytes.fromhex(key), bytes.fromhex(data), 1)[0].hex() == t0


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=130), data=st.binary(max_size=300))
def test_hmac_is_the_standard_librarys_hmac_blake2s(key, data):
    import hashlib
    import hmac
    assert noise.hmac(key, data) == hmac.new(key, data, hashlib.blake2s).digest()


def test_handshake_and_transport_match_the_cacophony_ikpsk2_vector():
    v, h = CACOPHONY, bytes.fromhex
    msgs = [(h(p), h(c)) for p, c in v["messages"]]
    ini = noise.Initiation(h(v["init_static"]), h(v["init_remote_static"]), h(v["psk"]),
                           h(v["init_ephemeral"]), prologue=h(v["prologue"]))
    assert ini.create(msgs[0][0]) == msgs[0][1]
    resp = noise.Response(h(v["resp_static"]), prologue=h(v["prologue"]))
    assert resp.consume(msgs[0][1]) == msgs[0][0]
    assert resp.remote_static == noise.public_key(h(v["init_static"]))
    body, r_keys = resp.create(msgs[1][0], h(v["psk"]), h(v["resp_ephemeral"]))
    assert body == msgs[1][1]
    payload, i_keys = ini.consume_response(body)
    assert payload == msgs[1][0]
    assert i_keys.handshake_hash.hex() == r_keys.handshake_hash.hex() == v["handshake_hash"]
    assert (i_keys.send, i_keys.recv) == (r_keys.recv, r_keys.send)
    # transport: initiator and responder alternate, each counting from 0
    for i, (plain, cipher) in enumerate(msgs[2:]):
        key = i_keys.send if i % 2 == 0 else r_keys.send
        assert noise.aead_encrypt(key, i // 2, plain, b"") == cipher


def test_a_wrong_psk_fails_the_vector_handshake():
    v, h = CACOPHONY, bytes.fromhex
    ini = noise.Initiation(h(v["init_static"]), h(v["init_remote_static"]), h(v["psk"]),
                           h(v["init_ephemeral"]), prologue=h(v["prologue"]))
    resp = noise.Response(h(v["resp_static"]), prologue=h(v["prologue"]))
    resp.consume(ini.create(b""))
    body, _ = resp.create(b"", bytes(32), h(v["resp_ephemeral"]))
    with pytest.raises(noise.HandshakeError):
        ini.consume_response(body)


def test_tai64n_is_big_endian_seconds_plus_offset():
    assert noise.tai64n(1_500_000_000_123_456_789) == struct.pack(
        ">QI", 0x400000000000000A + 1_500_000_000, 123_456_789)


# -- a pair of devices -------------------------------------------------------------------------
A_EP, B_EP = ("192.0.2.1", 51821), ("192.0.2.2", 51820)


def make_pair(timing=None, psk_b=None, b_knows=None, load_threshold=128, a_endpoint=None):
    a_key, b_key = noise.generate_private_key(), noise.generate_private_key()
    psk = b"\x07" * 32
    net = ipaddress.ip_network
    a = WgConfig(a_key, 51821, (PeerConfig(noise.public_key(b_key), psk, (net("10.0.0.2/32"),
                                                                       net("10.9.0.0/16")),
                                           B_EP),))
    b = WgConfig(b_key, 51820, (PeerConfig(b_knows or noise.public_key(a_key),
                                           psk if psk_b is None else psk_b,
                                           (net("10.0.0.1/32"),), a_endpoint),))
    return (Device.local(a, timing=timing), Device.local(b, timing=timing,
                                                         load_threshold=load_threshold))


def ip_packet(src: str, dst: str, payload: bytes = b"hello") -> bytes:
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 17, 0,
                       ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return head + payload


def handshake(a, b, now):
    """A sends a packet to B's side; the handshake runs; returns the datagram carrying it."""
    out = a.send(ip_packet("10.0.0.1", "10.0.0.2"), now)
    (_, init), = out.datagrams
    (_, resp), = b.receive(init, A_EP, now).datagrams
    (_, data), = a.receive(resp, B_EP, now).datagrams
    return data


def test_handshake_then_data_both_ways():
    a, b = make_pair()
    data = handshake(a, b, SECOND)
    assert b.receive(data, A_EP, SECOND).packets == [ip_packet("10.0.0.1", "10.0.0.2")]
    back = b.send(ip_packet("10.0.0.2", "10.0.0.1", b"x" * 100), SECOND)
    (ep, d), = back.datagrams
    assert ep == A_EP and len(d) == 16 + 128 + 16          # padded to a multiple of 16
    assert a.receive(d, B_EP, SECOND).packets == [ip_packet("10.0.0.2", "10.0.0.1", b"x" * 100)]
    assert b.counters["handshake.initiation_accepted"] == 1 and a.counters["received"] == 1


def test_messages_construct_and_fast_views_agree():
    a, b = make_pair()
    out = a.send(ip_packet("10.0.0.1", "10.0.0.2"), SECOND)
    (_, init), = out.datagrams
    parsed = wm.INITIATION.parse(init)
    assert wm.message_type(init) == wm.INITIATION_TYPE and len(init) == wm.INITIATION_LEN
    assert parsed.sender == wm.initiation_sender(init)
    assert parsed.ephemeral + parsed.static + parsed.timestamp == wm.initiation_body(init)
    assert parsed.mac2 == bytes(16)
    assert wm.INITIATION.build(parsed) == init
    (_, resp), = b.receive(init, A_EP, SECOND).datagrams
    p = wm.RESPONSE.parse(resp)
    assert (p.sender, p.receiver) == wm.response_indices(resp)
    assert p.receiver == parsed.sender and wm.receiver_index(resp) == p.receiver
    (_, data), = a.receive(resp, B_EP, SECOND).datagrams
    t = wm.TRANSPORT.parse(data)
    assert (t.receiver, t.counter) == wm.transport_header(data) == (p.sender, 0)
    assert wm.pack_transport_header(t.receiver, t.counter) == data[:16]
    cookie = wm.pack_cookie_reply(5, b"n" * 24, b"c" * 32)
    c = wm.COOKIE_REPLY.parse(cookie)
    assert (c.receiver, c.nonce, c.cookie) == wm.cookie_reply_fields(cookie)
    for bad in (init[:-1], b"\x01\x01\x00\x00" + init[4:], resp + b"\0", data[:31], b""):
        assert wm.message_type(bad) == 0


# -- RFC 6479 replay window ---------------------------------------------------------------------
def test_replay_window_rfc6479_cases():
    w = ReplayWindow()
    assert all(w.accept(n) for n in range(0, 100))            # in order
    assert not w.accept(50) and not w.accept(99)              # duplicates
    assert w.accept(200) and w.accept(150) and not w.accept(150)   # out of order, once
    assert w.accept(200 + WINDOW) and w.accept(201)           # edge of the window still in
    assert not w.accept(200)                                  # at the edge, already seen
    assert not w.accept(199)                                  # older than the window
    assert w.accept(10**6)                                    # a jump clears every block
    assert w.accept(10**6 - WINDOW) and not w.accept(10**6 - WINDOW - 1)
    assert not w.accept(REJECT_AFTER_MESSAGES)
    assert not w.accept(10**6)


# -- negative cases: dropped and counted ---------------------------------------------------------
def test_replayed_truncated_forged_reordered_are_dropped_and_counted():
    a, b = make_pair()
    first = handshake(a, b, SECOND)
    assert b.receive(first, A_EP, SECOND).packets
    datagrams = [a.send(ip_packet("10.0.0.1", "10.0.0.2", bytes([i])), SECOND).datagrams[0][1]
                 for i in range(5)]
    # reordered: each arrives once, in any order
    for d in (datagrams[3], datagrams[0], datagrams[4], datagrams[1], datagrams[2]):
        assert len(b.receive(d, A_EP, SECOND).packets) == 1
    assert b.receive(datagrams[2], A_EP, SECOND).packets == []          # replayed
    assert b.counters["dropped.replayed"] == 1
    assert b.receive(datagrams[0][:31], A_EP, SECOND).packets == []     # truncated
    assert b.counters["dropped.malformed"] == 1
    forged = bytearray(a.send(ip_packet("10.0.0.1", "10.0.0.2"), SECOND).datagrams[0][1])
    forged[-1] ^= 1
    assert b.receive(bytes(forged), A_EP, SECOND).packets == []
    assert b.counters["dropped.auth_failed"] == 1
    forged[4:8] = b"\xde\xad\xbe\xef"                                    # unknown index
    assert b.receive(bytes(forged), A_EP, SECOND).packets == []
    assert b.counters["dropped.unknown_index"] == 1
    # a packet whose inner source is not in the sender's allowed IPs
    spoof = a.send(ip_packet("10.0.0.66", "10.0.0.2"), SECOND).datagrams[0][1]
    assert b.receive(spoof, A_EP, SECOND).packets == []
    assert b.counters["dropped.allowed_ips"] == 1
    for junk in (b"", b"\x04", b"\x04\0\0\0" + bytes(10), b"\x09" * 200, b"\x01\0\0\0" * 37):
        b.receive(junk, A_EP, SECOND)
    assert b.counters["dropped.malformed"] == 5


def test_a_replayed_initiation_is_refused():
    a, b = make_pair()
    (_, init), = a.send(ip_packet("10.0.0.1", "10.0.0.2"), SECOND).datagrams
    assert b.receive(init, A_EP, SECOND).datagrams
    assert b.receive(init, A_EP, 2 * SECOND).datagrams == []
    assert b.counters["handshake.initiation_replayed"] == 1


def test_prepared_initiations_complete_handshakes_each_with_a_fresh_ephemeral():
    # the key component makes each next initiation ahead of time (all but the timestamp)
    a, b = noise.generate_private_key(), noise.generate_private_key()
    pa, pb = noise.public_key(a), noise.public_key(b)
    psk = b"\x05" * 32
    ours, theirs = Handshaker(a, {pb: psk}), Handshaker(b, {pa: psk})
    ephemerals = set()
    for round_ in range(1, 4):
        assert ours.prepare() == (1 if round_ != 2 else 0)
        now = round_ * SECOND
        init = ours.initiate(pb, now)
        ephemerals.add(wm.initiation_body(init)[:32])
        answer = theirs.receive(init, bytes(6), now, False)
        done = ours.receive(answer.reply, bytes(6), now, False)
        assert answer.event == "initiation_accepted" and done.event == "response_accepted"
        assert done.session.send_key == answer.session.recv_key
        if round_ == 1:
            ours.initiate(pb, now)             # nothing prepared: made on the spot
            assert ours.prepare() == 1         # and a fresh one prepared for round 2
    assert len(ephemerals) == 3


def test_a_cookie_reply_to_an_initiation_made_ahead_is_taken_after_a_later_response():
    # the gw holds an initiation made ahead; meanwhile the key holder answered the peer's own
    # initiation (stamping a later mac1); the peer, under load, answers the held one's mac1
    a, b = noise.generate_private_key(), noise.generate_private_key()
    pa, pb = noise.public_key(a), noise.public_key(b)
    ours, theirs = Handshaker(a, {pb: bytes(32)}), Handshaker(b, {pa: bytes(32)})
    held = ours.initiate(pb, SECOND)
    answer = ours.receive(theirs.initiate(pa, SECOND), bytes(6), SECOND, False)
    assert answer.event == "initiation_accepted"
    cookie = theirs.receive(held, bytes(6), 2 * SECOND, True)
    assert cookie.event == "cookie_sent"
    assert ours.receive(cookie.reply, bytes(6), 2 * SECOND, False).event == "cookie_received"
    forged = bytearray(cookie.reply)
    forged[-1] ^= 1
    assert ours.receive(bytes(forged), bytes(6), 2 * SECOND, False).event == \
        "cookie_reply_auth_failed"


def test_wrong_psk_and_wrong_key_give_no_session():
    a, b = make_pair(psk_b=b"\x08" * 32)
    (_, init), = a.send(ip_packet("10.0.0.1", "10.0.0.2"), SECOND).datagrams
    (_, resp), = b.receive(init, A_EP, SECOND).datagrams   # B cannot tell before message 2
    assert a.receive(resp, B_EP, SECOND).datagrams == []
    assert a.counters["handshake.response_auth_failed"] == 1
    assert a.peers[next(iter(a.peers))].current is None
    a, b = make_pair(b_knows=noise.public_key(noise.generate_private_key()))
    (_, init), = a.send(ip_packet("10.0.0.1", "10.0.0.2"), SECOND).datagrams
    assert b.receive(init, A_EP, SECOND).datagrams == []
    assert b.counters["handshake.unknown_peer"] == 1


def test_cookie_reply_under_load_then_mac2_gets_through():
    a, b = make_pair(load_threshold=0)
    (_, init), = a.send(ip_packet("10.0.0.1", "10.0.0.2"), SECOND).datagrams
    (_, cookie), = b.receive(init, A_EP, SECOND).datagrams
    assert wm.message_type(cookie) == wm.COOKIE_REPLY_TYPE
    assert b.counters["handshake.cookie_sent"] == 1
    assert a.receive(cookie, B_EP, SECOND).datagrams == []
    assert a.counters["handshake.cookie_received"] == 1
    forged = bytearray(cookie)
    forged[40] ^= 1
    a.receive(bytes(forged), B_EP, SECOND)
    assert a.counters["handshake.cookie_reply_auth_failed"] == 1
    # the retransmit timer sends a new initiation, now with mac2: the loaded responder answers
    later = a.next_deadline()
    (_, init2), = a.tick(later).datagrams
    assert wm.INITIATION.parse(init2).mac2 != bytes(16)
    (_, resp), = b.receive(init2, A_EP, later).datagrams
    assert wm.message_type(resp) == wm.RESPONSE_TYPE
    (_, data), = a.receive(resp, B_EP, later).datagrams
    assert b.receive(data, A_EP, later).packets == [ip_packet("10.0.0.1", "10.0.0.2")]
    # from another address the cookie does not hold: a new cookie reply
    (_, init3), = a.tick(a.next_deadline() or later).datagrams or [(None, init2)]
    assert wm.message_type(b.receive(init3, ("192.0.2.9", 1), later + SECOND)
                           .datagrams[0][1]) == wm.COOKIE_REPLY_TYPE


def test_roaming_moves_the_endpoint_to_an_authenticated_source():
    a, b = make_pair()
    data = handshake(a, b, SECOND)
    b.receive(data, ("198.51.100.7", 4000), SECOND)
    peer = next(iter(b.peers.values()))
    assert peer.endpoint == ("198.51.100.7", 4000)
    forged = bytearray(data)
    forged[-1] ^= 1
    b.receive(bytes(forged), ("203.0.113.1", 1), SECOND)
    assert peer.endpoint == ("198.51.100.7", 4000)


# -- timers -----------------------------------------------------------------------------------
FAST = Timing(rekey_after_time=2 * SECOND, reject_after_time=6 * SECOND,
              rekey_timeout=SECOND, keepalive_timeout=2 * SECOND,
              rekey_attempt_time=3 * SECOND, jitter_max=0)


def test_rekey_after_time_starts_a_new_handshake_and_keys_rotate():
    a, b = make_pair(timing=FAST)
    b.receive(handshake(a, b, SECOND), A_EP, SECOND)
    t = 4 * SECOND
    out = a.send(ip_packet("10.0.0.1", "10.0.0.2"), t)
    kinds = [wm.message_type(d) for _, d in out.datagrams]
    assert kinds == [wm.TRANSPORT_TYPE, wm.INITIATION_TYPE]
    assert b.receive(out.datagrams[0][1], A_EP, t).packets
    (_, resp), = b.receive(out.datagrams[1][1], A_EP, t).datagrams
    (_, keepalive), = a.receive(resp, B_EP, t).datagrams
    b.receive(keepalive, A_EP, t)
    assert b.counters["keepalive_received"] == 1
    pa, pb = next(iter(a.peers.values())), next(iter(b.peers.values()))
    assert pa.current.local_index == pb.current.remote_index and pb.next is None
    assert pb.previous is not None                       # old keys still open late packets


def test_retransmit_gives_up_after_rekey_attempt_time_and_keys_expire():
    a, _b = make_pair(timing=FAST)
    a.send(ip_packet("10.0.0.1", "10.0.0.2"), SECOND)
    sent = 1
    now = SECOND
    while (deadline := a.next_deadline()) is not None:
        now = deadline
        sent += len(a.tick(now).datagrams)
    assert sent == FAST.max_handshake_attempts
    assert a.counters["handshake_gave_up"] == 1 and a.counters["dropped.handshake_gave_up"] == 1


def test_passive_keepalive_and_reject_after_time():
    a, b = make_pair(timing=FAST)
    b.receive(handshake(a, b, SECOND), A_EP, SECOND)     # B received data, sent nothing back
    assert b.next_deadline() == SECOND + FAST.keepalive_timeout
    (_, ka), = b.tick(b.next_deadline()).datagrams
    a.receive(ka, B_EP, 3 * SECOND)
    assert a.counters["keepalive_received"] == 1
    stale = a.send(ip_packet("10.0.0.1", "10.0.0.2"), 3 * SECOND).datagrams[0][1]
    assert b.receive(stale, A_EP, SECOND + FAST.reject_after_time).packets == []
    assert b.counters["dropped.expired_key"] == 1


# -- configuration ------------------------------------------------------------------------------
def test_example_configs_parse():
    gw = parse_config((ROOT / "examples/wg/gateway.conf").read_text(), "gateway.conf")
    peer = parse_config((ROOT / "examples/wg/peer.conf").read_text(), "peer.conf")
    assert gw.peers[0].public_key == peer.public_key
    assert peer.peers[0].public_key == gw.public_key
    assert gw.listen_port == 51821 and gw.peers[0].endpoint == ("10.99.0.2", 51820)
    assert gw.peers[0].preshared_key == peer.peers[0].preshared_key != bytes(32)


def test_config_errors_name_file_and_line():
    text = ("[Interface]\nPrivateKey = notbase64!\nListenPort = 99999\n\n[Peer]\n"
            "AllowedIPs = 10.0.0.0/33\nEndpoint = 1.2.3.4\nBogus = 1\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "wg0.conf")
    problems = info.value.problems
    assert any(p.startswith("wg0.conf:2: error:") and "base64" in p for p in problems)
    assert any(p.startswith("wg0.conf:3: error:") for p in problems)
    assert any(p.startswith("wg0.conf:6: error:") and "10.0.0.0/33" in p for p in problems)
    assert any(p.startswith("wg0.conf:7: error:") for p in problems)
    assert any(p.startswith("wg0.conf:8: error:") and "Bogus".lower() in p for p in problems)
    assert any(p.startswith("wg0.conf:5: error:") and "PublicKey" in p for p in problems)


def test_a_key_holder_that_cannot_answer_stages_packets_and_retries():
    class Unavailable:
        def initiate(self, peer, now):
            return None

        def receive(self, datagram, source, now, under_load):
            return Outcome("keys_unavailable")

    a, b = make_pair(timing=FAST)
    a.handshaker, real = Unavailable(), a.handshaker
    assert a.send(ip_packet("10.0.0.1", "10.0.0.2"), SECOND).datagrams == []
    assert a.counters["initiation_unavailable"] == 1 and a.counters["staged"] == 1
    a.handshaker = real                                 # back: the retransmit timer retries
    (_, init), = a.tick(a.next_deadline()).datagrams
    assert wm.message_type(init) == wm.INITIATION_TYPE


def test_cryptokey_routing_picks_the_longest_prefix_among_peers():
    keys = [noise.generate_private_key() for _ in range(4)]
    net = ipaddress.ip_network
    peers = (PeerConfig(noise.public_key(keys[1]), allowed_ips=(net("10.0.0.0/8"), net("::/0")),
                        endpoint=("192.0.2.1", 1)),
             PeerConfig(noise.public_key(keys[2]), allowed_ips=(net("10.1.0.0/16"),),
                        endpoint=("192.0.2.2", 2)),
             PeerConfig(noise.public_key(keys[3]), allowed_ips=(net("10.1.2.3/32"),),
                        endpoint=("192.0.2.3", 3)))
    dev = Device.local(WgConfig(keys[0], 1, peers))
    expect = {"10.9.9.9": 1, "10.1.9.9": 2, "10.1.2.3": 3, "10.1.2.4": 2}
    for dst, n in expect.items():
        peer = dev.routes.lookup_raw(ipaddress.ip_address(dst).packed)
        assert peer.public_key == noise.public_key(keys[n]), dst
    now = SECOND
    for dst, n in list(expect.items())[:3]:            # a first packet starts each handshake
        (endpoint, init), = dev.send(ip_packet("10.200.0.1", dst), now).datagrams
        assert endpoint == (f"192.0.2.{n}", n) and wm.message_type(init) == 1
    v6 = bytes([0x60]) + bytes(7) + ipaddress.ip_address("fd00::1").packed + \
        ipaddress.ip_address("2001:db8::5").packed
    dev.peers[noise.public_key(keys[1])].timers.disarm("retransmit")
    (endpoint, _), = dev.send(v6, now + 60 * SECOND).datagrams
    assert endpoint == ("192.0.2.1", 1)
    assert dev.send(ip_packet("10.200.0.1", "192.168.1.1"), now).datagrams == []
    assert dev.counters["dropped.no_route"] == 1


def test_persistent_keepalive_and_zeroing_keys():
    a_key, b_key = noise.generate_private_key(), noise.generate_private_key()
    net = ipaddress.ip_network
    a = Device.local(WgConfig(a_key, 1, (PeerConfig(noise.public_key(b_key), allowed_ips=(
        net("10.0.0.2/32"),), endpoint=B_EP, persistent_keepalive=1),)), timing=FAST)
    b = Device.local(WgConfig(b_key, 1, (PeerConfig(noise.public_key(a_key), allowed_ips=(
        net("10.0.0.1/32"),)),)), timing=FAST)
    b.receive(handshake(a, b, SECOND), A_EP, SECOND)
    keepalives = 0
    while (now := a.next_deadline()) is not None:
        for _, d in a.tick(now).datagrams:
            if wm.message_type(d) == wm.TRANSPORT_TYPE:
                keepalives += 1
                b.receive(d, A_EP, now)
    assert keepalives >= 3 and b.counters["keepalive_received"] == keepalives
    assert a.counters["keys_zeroed"] >= 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([b"", b"\x01\0\0\0", b"\x02\0\0\0",
                                                 b"\x03\0\0\0", b"\x04\0\0\0"]))
def test_any_bytes_are_counted_never_raised(data, prefix):
    a, b = PAIR
    datagram = prefix + data
    before = sum(b.counters.values())
    b.receive(datagram, A_EP, SECOND)
    assert sum(b.counters.values()) > before           # every datagram ends up counted
    kind = wm.message_type(datagram)
    layouts = {1: wm.INITIATION, 2: wm.RESPONSE, 3: wm.COOKIE_REPLY, 4: wm.TRANSPORT}
    if kind:
        layouts[kind].parse(datagram)                   # the fast view and construct agree


PAIR = make_pair()
