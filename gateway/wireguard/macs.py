"""MAC1, MAC2 and cookie replies (whitepaper §5.3 and §5.4.4, §5.4.7).

    msg.mac1 = MAC(HASH(LABEL_MAC1 || S_pub_m'), msg_a)        always
    msg.mac2 = MAC(τ, msg_b) if a cookie τ is fresh, else zeros   (§5.4.4)
    τ = MAC(R_m, A_m')   R_m: a random secret changing every 2 minutes; A_m': the source address
    msg.cookie = XAEAD(HASH(LABEL_COOKIE || S_pub_m), msg.nonce, τ, M)  M: the mac1 replied to

``MacSigner`` stamps our outgoing handshake messages (and remembers a peer's cookie);
``MacChecker`` checks incoming ones and makes cookie replies when we are under load.
"""

from __future__ import annotations

import hmac as _hmac
import os
from collections import deque

from gateway.wireguard import messages as wm
from gateway.wireguard.noise import HandshakeError, hash_, mac, xaead_decrypt, xaead_encrypt

LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"
COOKIE_REFRESH_TIME = 120 * 10**9        # R_m changes, and a received cookie expires, after 2 min
ZERO_MAC = bytes(16)
RECENT_MAC1 = 4                          # our last messages a cookie reply may answer


def mac1_key(public: bytes) -> bytes:
    return hash_(LABEL_MAC1, public)


def cookie_key(public: bytes) -> bytes:
    return hash_(LABEL_COOKIE, public)


class MacSigner:
    """MACs for messages we send to one peer (keyed by the peer's public key)."""

    def __init__(self, peer_public: bytes) -> None:
        self.mac1_key = mac1_key(peer_public)
        self.cookie_key = cookie_key(peer_public)
        self.cookie: bytes | None = None
        self.cookie_time = 0
        self.recent_mac1: deque[bytes] = deque(maxlen=RECENT_MAC1)   # newest last

    def stamp(self, msg: bytearray, now: int) -> bytearray:
        """Fill in mac1 and (with a fresh cookie) mac2 of an initiation or response, in place."""
        kind = msg[0]
        a, b = wm.MAC1_OFFSET[kind], wm.MAC2_OFFSET[kind]
        m1 = mac(self.mac1_key, bytes(msg[:a]))
        msg[a:b] = m1
        self.recent_mac1.append(m1)
        fresh = self.cookie is not None and now - self.cookie_time < COOKIE_REFRESH_TIME
        msg[b:b + 16] = mac(self.cookie, bytes(msg[:b])) if fresh else ZERO_MAC
        return msg

    def consume_cookie_reply(self, datagram: bytes, now: int) -> None:
        """Take the cookie of a reply to one of our recent messages (§5.4.7: its mac1 is the
        AEAD's additional data). Recent, not only the last: an initiation made ahead of need
        (``Handshaker.prepare``, ``gateway.remote``) may be sent after a response stamped
        later. Raises HandshakeError if forged."""
        if not self.recent_mac1:
            raise HandshakeError("cookie reply without a message of ours to answer")
        _receiver, nonce24, sealed = wm.cookie_reply_fields(datagram)
        for m1 in reversed(self.recent_mac1):
            try:
                self.cookie = xaead_decrypt(self.cookie_key, nonce24, sealed, m1)
            except HandshakeError:
                continue
            self.cookie_time = now
            return
        raise HandshakeError("cookie reply to no recent message of ours")


class MacChecker:
    """Checks MACs on handshake messages sent to us; makes cookie replies under load."""

    def __init__(self, our_public: bytes, random=os.urandom) -> None:
        self.mac1_key = mac1_key(our_public)
        self.cookie_key = cookie_key(our_public)
        self.random = random
        self.secret = random(32)
        self.secret_time: int | None = None

    def mac1_ok(self, datagram: bytes) -> bool:
        a = wm.MAC1_OFFSET[datagram[0]]
        return _hmac.compare_digest(mac(self.mac1_key, bytes(datagram[:a])),
                                    bytes(datagram[a:a + 16]))

    def _cookie(self, source: bytes, now: int) -> bytes:
        if self.secret_time is None or now - self.secret_time >= COOKIE_REFRESH_TIME:
            self.secret, self.secret_time = self.random(32), now
        return mac(self.secret, source)

    def mac2_ok(self, datagram: bytes, source: bytes, now: int) -> bool:
        b = wm.MAC2_OFFSET[datagram[0]]
        return _hmac.compare_digest(mac(self._cookie(source, now), bytes(datagram[:b])),
                                    bytes(datagram[b:b + 16]))

    def cookie_reply(self, datagram: bytes, source: bytes, now: int) -> bytes:
        """A cookie reply (type 3) to an initiation or response from ``source``."""
        kind = datagram[0]
        sender = wm.initiation_sender(datagram) if kind == wm.INITIATION_TYPE \
            else wm.response_indices(datagram)[0]
        a = wm.MAC1_OFFSET[kind]
        nonce24 = self.random(24)
        sealed = xaead_encrypt(self.cookie_key, nonce24, self._cookie(source, now),
                               bytes(datagram[a:a + 16]))
        return wm.pack_cookie_reply(sender, nonce24, sealed)
