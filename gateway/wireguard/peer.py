"""A peer as the data path sees it: allowed IPs, endpoint, transport keypairs, timers, staged
packets. No private key here — only the session keys a handshake produced.

Keypairs rotate as in whitepaper §5.4.8 / wireguard-go: a session we initiated becomes
``current`` at once (the old ``current`` becomes ``previous``); a session we answered waits as
``next`` until the initiator's first transport message arrives on it (key confirmation), then
moves to ``current``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from gateway.wireguard.replay import ReplayWindow
from gateway.wireguard.timers import PeerTimers

MAX_STAGED = 128                     # packets kept while a handshake is under way


class Keypair:
    __slots__ = ("sender", "receiver", "local_index", "remote_index", "created", "initiator",
                 "send_counter", "replay")

    def __init__(self, session, now: int) -> None:
        self.sender = ChaCha20Poly1305(session.send_key)
        self.receiver = ChaCha20Poly1305(session.recv_key)
        self.local_index = session.local_index
        self.remote_index = session.remote_index
        self.initiator = session.initiator
        self.created = now
        self.send_counter = 0
        self.replay = ReplayWindow()


@dataclass(eq=False)
class Peer:
    public_key: bytes
    allowed_ips: tuple
    endpoint: tuple[str, int] | None
    timers: PeerTimers
    current: Keypair | None = None
    previous: Keypair | None = None
    next: Keypair | None = None
    staged: deque = field(default_factory=lambda: deque(maxlen=MAX_STAGED))
    handshake_started: int | None = None      # first attempt of the handshake under way
    last_initiation: int | None = None
    handshakes: int = 0
    last_handshake: int | None = None
    handshake_ns: int | None = None           # our last handshake: first initiation to keys
    rx_bytes: int = 0
    tx_bytes: int = 0

    def keypairs(self):
        return [k for k in (self.current, self.previous, self.next) if k is not None]
