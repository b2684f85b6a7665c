"""The key holder's half of WireGuard: the static private key, the handshake and the MACs.

A ``Handshaker`` alone sees the private key and the pre-shared keys. It makes initiations,
consumes initiations, responses and cookie replies, and hands out only what the data path
needs: the datagram to send and, once a handshake completes, a ``Session`` (the two transport
keys and the two indices). ``device.Device`` drives it through the same three methods whether it
lives in the same process (tests, ``Device.local``) or behind a protected call (``gateway.keys``).

Checks on incoming messages, in wireguard-go's order (whitepaper §5.3, §5.4.2–§5.4.4):
mac1 must be valid; under load a message without a valid mac2 gets a cookie reply and nothing
else; an initiation whose TAI64N timestamp is not newer than the last one accepted from that
peer is a replay (§5.1 "replay attack"), one sooner than 1/50 s after the last is a flood.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

from gateway.wireguard import messages as wm
from gateway.wireguard.macs import MacChecker, MacSigner
from gateway.wireguard.noise import (
    ZERO_KEY,
    HandshakeError,
    Initiation,
    Response,
    dh,
    public_key,
    tai64n,
)

INITIATION_RATE = 10**9 // 50             # wireguard-go's HandshakeInitationRate


@dataclass(frozen=True)
class Session:
    """Transport keys of one completed handshake, as handed to the data path."""

    peer: bytes                 # the peer's public key
    local_index: int
    remote_index: int
    send_key: bytes
    recv_key: bytes
    initiator: bool


@dataclass(frozen=True)
class Outcome:
    """What one handshake message led to. ``event`` names it (for counters)."""

    event: str
    reply: bytes | None = None
    session: Session | None = None
    peer: bytes | None = None   # the authenticated peer, if any

    def to_wire(self) -> dict:
        s = self.session
        return {"event": self.event, "reply": self.reply, "peer": self.peer,
                "session": None if s is None else {
                    "peer": s.peer, "local_index": s.local_index, "remote_index": s.remote_index,
                    "send_key": s.send_key, "recv_key": s.recv_key, "initiator": s.initiator}}

    @classmethod
    def from_wire(cls, d: dict) -> Outcome:
        s = d.get("session")
        return cls(d["event"], d.get("reply"), Session(**s) if s else None, d.get("peer"))


@dataclass
class _PeerState:
    psk: bytes
    signer: MacSigner
    pending: Initiation | None = None
    prepared: Initiation | None = None        # the next initiation, all but its timestamp
    pending_index: int = 0
    last_timestamp: bytes = b""
    last_initiation_at: int | None = None


class Handshaker:
    def __init__(self, private_key: bytes, peers: dict[bytes, bytes], *, random=os.urandom,
                 wall_ns=time.time_ns) -> None:
        """``peers`` maps each peer's public key to its pre-shared key (zeros if none)."""
        self._private = private_key
        self.public = public_key(private_key)
        self._peers = {pub: _PeerState(psk or ZERO_KEY, MacSigner(pub))
                       for pub, psk in peers.items()}
        self._checker = MacChecker(self.public, random)
        self._random = random
        self._wall_ns = wall_ns
        self._index_peer: dict[int, bytes] = {}    # our handshake indices still awaited
        self._static_static = {}                    # peer -> DH(S_priv, S_pub_peer), constant
        for pub in peers:
            try:
                self._static_static[pub] = dh(private_key, pub)
            except HandshakeError:                  # a low-order key: fails at use, as before
                pass

    def _new_index(self, peer: bytes) -> int:
        while True:
            index = struct.unpack("<I", self._random(4))[0]
            if index and index not in self._index_peer:
                break
        if len(self._index_peer) > 4096:             # forget the oldest indices
            for old in list(self._index_peer)[:1024]:
                del self._index_peer[old]
        self._index_peer[index] = peer
        return index

    def _new_initiation(self, peer: bytes, state: _PeerState) -> Initiation:
        return Initiation(self._private, peer, state.psk, static_public=self.public,
                          static_static=self._static_static.get(peer))

    def prepare(self) -> int:
        """Make each peer's next initiation ahead of time, all but its timestamp (a fresh
        ephemeral key each, used once): ``initiate`` then only seals the timestamp. Returns
        how many were made. Call it when idle, e.g. after ``initiate``."""
        made = 0
        for peer, state in self._peers.items():
            if state.prepared is None:
                try:
                    state.prepared = self._new_initiation(peer, state)
                    state.prepared.prepare()
                except HandshakeError:              # a low-order peer key: fails at use
                    state.prepared = None
                    continue
                made += 1
        return made

    def initiate(self, peer: bytes, now: int) -> bytes:
        """A fresh initiation (message 1) to ``peer``; replaces any pending one."""
        state = self._peers[peer]
        if state.pending_index:
            self._index_peer.pop(state.pending_index, None)
        hs, state.prepared = state.prepared or self._new_initiation(peer, state), None
        body = hs.create(tai64n(self._wall_ns()))
        state.pending, state.pending_index = hs, self._new_index(peer)
        msg = wm.pack_initiation(state.pending_index, body)
        return bytes(state.signer.stamp(msg, now))

    def receive(self, datagram: bytes, source: bytes, now: int, under_load: bool) -> Outcome:
        """Consume a handshake message (type 1, 2 or 3) that arrived from ``source`` (bytes
        naming the sender's address, the cookie's input)."""
        kind = wm.message_type(datagram)
        if kind == wm.COOKIE_REPLY_TYPE:
            return self._cookie_reply(datagram, now)
        if kind not in (wm.INITIATION_TYPE, wm.RESPONSE_TYPE):
            return Outcome("malformed")
        if not self._checker.mac1_ok(datagram):
            return Outcome("bad_mac1")
        if under_load and not self._checker.mac2_ok(datagram, source, now):
            return Outcome("cookie_sent", reply=self._checker.cookie_reply(datagram, source, now))
        if kind == wm.INITIATION_TYPE:
            return self._initiation(datagram, now)
        return self._response(datagram, now)

    def _initiation(self, datagram: bytes, now: int) -> Outcome:
        hs = Response(self._private, static_public=self.public,
                      static_static=self._static_static)
        try:
            timestamp = hs.consume(wm.initiation_body(datagram))
        except HandshakeError:
            return Outcome("initiation_auth_failed")
        state = self._peers.get(hs.remote_static)
        if state is None:
            return Outcome("unknown_peer")
        if state.last_timestamp and timestamp <= state.last_timestamp:
            return Outcome("initiation_replayed", peer=hs.remote_static)
        if state.last_initiation_at is not None and \
                now - state.last_initiation_at < INITIATION_RATE:
            return Outcome("initiation_flood", peer=hs.remote_static)
        state.last_timestamp, state.last_initiation_at = timestamp, now
        try:
            body, keys = hs.create(b"", state.psk)
        except HandshakeError:
            return Outcome("initiation_auth_failed")
        sender = wm.initiation_sender(datagram)
        index = self._new_index(hs.remote_static)
        self._index_peer.pop(index, None)           # responses are not awaited
        reply = bytes(state.signer.stamp(wm.pack_response(index, sender, body), now))
        session = Session(hs.remote_static, index, sender, keys.send, keys.recv, False)
        return Outcome("initiation_accepted", reply=reply, session=session,
                       peer=hs.remote_static)

    def _response(self, datagram: bytes, now: int) -> Outcome:
        sender, receiver = wm.response_indices(datagram)
        peer = self._index_peer.get(receiver)
        state = self._peers.get(peer) if peer else None
        if state is None or state.pending is None or state.pending_index != receiver:
            return Outcome("unexpected_response")
        try:
            _payload, keys = state.pending.consume_response(wm.response_body(datagram))
        except HandshakeError:
            return Outcome("response_auth_failed")
        state.pending, state.pending_index = None, 0
        del self._index_peer[receiver]
        return Outcome("response_accepted",
                       session=Session(peer, receiver, sender, keys.send, keys.recv, True),
                       peer=peer)

    def _cookie_reply(self, datagram: bytes, now: int) -> Outcome:
        peer = self._index_peer.get(wm.cookie_reply_receiver(datagram))
        if peer is None:
            return Outcome("unexpected_cookie_reply")
        try:
            self._peers[peer].signer.consume_cookie_reply(datagram, now)
        except HandshakeError:
            return Outcome("cookie_reply_auth_failed")
        return Outcome("cookie_received", peer=peer)


def warm_up() -> None:
    """One whole handshake (initiation, response, consumed response) between two throwaway
    keys: a process that will answer handshakes runs every path once ahead of the first real
    one (lazily set-up backends, Python's specialising interpreter), off its critical path."""
    a, b = os.urandom(32), os.urandom(32)
    pa, pb = public_key(a), public_key(b)
    ours, theirs = Handshaker(a, {pb: ZERO_KEY}), Handshaker(b, {pa: ZERO_KEY})
    for second in (1, 2):
        now = second * 10**9
        answer = theirs.receive(ours.initiate(pb, now), bytes(6), now, False)
        done = ours.receive(answer.reply, bytes(6), now, False)
        Outcome.from_wire(done.to_wire())
