"""A WireGuard interface, sans-I/O: plaintext IP packets and UDP datagrams in, with ``now``
(monotonic ns); datagrams to send, packets to deliver and the next deadline out.

- ``send(packet, now)``: a packet from the plaintext side. Cryptokey routing (whitepaper §2):
  the peer is the one whose allowed-IPs hold the destination by longest prefix.
- ``send_batch(packets, now, out)``: ``send`` for each packet, with the per-packet lookups of
  the common case (a usable session) hoisted out of the loop; ``send_batch_into(packets, now,
  out, buf, offsets, room)`` writes those messages straight into a caller's buffers
  (``encrypt_into``: no intermediate bytes; the gateway's fast path).
- ``receive(datagram, source, now)``: a UDP payload from ``source`` = (host, port). Transport
  data is decrypted, checked against the replay window and the peer's allowed-IPs (§2: "the
  source IP of the decrypted packet must be in the sending peer's allowed IPs"); handshake
  messages go to the handshaker. An authenticated packet moves the peer's endpoint to its
  source (roaming, §2.1).
- ``tick(now)``: runs the timers due; ``next_deadline()`` says when to call it next.

Each call returns an ``Output``: ``datagrams`` [(endpoint, bytes)] and ``packets`` [bytes].
Every datagram or packet taken in is counted once in ``counters`` under what became of it.
The handshaker (``handshaker.Handshaker`` or a proxy to the key component) holds every secret
but the session keys.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag

from gateway.wireguard import messages as wm
from gateway.wireguard.handshaker import Handshaker, Session
from gateway.wireguard.peer import Keypair, Peer
from gateway.wireguard.timers import SECOND, PeerTimers, Timing

TAG_LEN = 16                                   # the AEAD tag
PADDING = 16                                   # §5.4.6: plaintext padded to a multiple of 16
_ZEROS = bytes(PADDING)
_NONCE = struct.Struct("<4xQ")                 # 32 zero bits, then the counter (§5.4.6)
_HEADER = struct.Struct("<IIQ")
LOAD_WINDOW = SECOND                           # handshake messages counted per second
UNDER_LOAD_FOR = SECOND                        # wireguard-go's UnderLoadAfterTime


@dataclass
class Output:
    datagrams: list = field(default_factory=list)
    packets: list = field(default_factory=list)


def address_bytes(source: tuple[str, int]) -> bytes:
    """The cookie's input A_m': the sender's IP address and port."""
    return ipaddress.ip_address(source[0]).packed + struct.pack(">H", source[1])


def packet_addresses(packet) -> tuple[int, int, int] | None:
    """(version, source, destination) of an IPv4/IPv6 packet as integers, or None."""
    n = len(packet)
    if n >= 20 and packet[0] >> 4 == 4:
        return 4, int.from_bytes(packet[12:16], "big"), int.from_bytes(packet[16:20], "big")
    if n >= 40 and packet[0] >> 4 == 6:
        return 6, int.from_bytes(packet[8:24], "big"), int.from_bytes(packet[24:40], "big")
    return None


def ip_length(packet) -> int:
    """The length an IP header declares (0 if unreadable)."""
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        return int.from_bytes(packet[2:4], "big")
    if len(packet) >= 40 and packet[0] >> 4 == 6:
        return 40 + int.from_bytes(packet[4:6], "big")
    return 0


class AllowedIPs:
    """Longest-prefix match from addresses to peers (one table per IP version)."""

    def __init__(self) -> None:
        self._tables = {4: {}, 6: {}}        # version -> {prefix length: {network int: peer}}
        self._cache: dict = {}
        self._raw: dict = {}

    def insert(self, network, peer) -> None:
        v = network.version
        table = self._tables[v].setdefault(network.prefixlen, {})
        table[int(network.network_address)] = peer
        self._tables[v] = dict(sorted(self._tables[v].items(), reverse=True))
        self._cache.clear()
        self._raw.clear()

    def lookup_raw(self, raw: bytes):
        """The peer for a packed IPv4 (4 bytes) or IPv6 (16 bytes) address."""
        hit = self._raw.get(raw)
        if hit is None and raw not in self._raw:
            if len(self._raw) > 65536:
                self._raw.clear()
            hit = self._raw[bytes(raw)] = self.lookup(4 if len(raw) == 4 else 6,
                                                      int.from_bytes(raw, "big"))
        return hit

    def lookup(self, version: int, address: int):
        key = (version, address)
        hit = self._cache.get(key)
        if hit is not None or key in self._cache:
            return hit
        bits = 32 if version == 4 else 128
        found = None
        for length, table in self._tables[version].items():
            mask = ((1 << length) - 1) << (bits - length)
            found = table.get(address & mask)
            if found is not None:
                break
        if len(self._cache) > 65536:
            self._cache.clear()
        self._cache[key] = found
        return found


class Device:
    def __init__(self, peers, handshaker, *, timing: Timing | None = None, mtu: int = 1420,
                 load_threshold: int = 128, rng=None) -> None:
        """``peers``: objects with public_key, allowed_ips, endpoint, persistent_keepalive (s)."""
        self.timing = timing or Timing()
        self.handshaker = handshaker
        self.mtu = mtu
        self.load_threshold = load_threshold
        self.peers: dict[bytes, Peer] = {}
        self.routes = AllowedIPs()
        self.index: dict[int, tuple[Peer, Keypair]] = {}
        self.counters: dict[str, int] = {}
        self._load_start, self._load_count, self._under_load_until = 0, 0, -1
        for pc in peers:
            timers = PeerTimers(self.timing, pc.persistent_keepalive * SECOND)
            if rng is not None:
                timers.rng = rng
            peer = Peer(pc.public_key, tuple(pc.allowed_ips), pc.endpoint, timers)
            self.peers[pc.public_key] = peer
            for net in peer.allowed_ips:
                self.routes.insert(net, peer)

    @classmethod
    def local(cls, config, **kwargs) -> Device:
        """A device holding its own private key (one process: tests, tools)."""
        hs = Handshaker(config.private_key, {p.public_key: p.preshared_key for p in config.peers},
                        **{k: kwargs.pop(k) for k in ("random", "wall_ns") if k in kwargs})
        return cls(config.peers, hs, **kwargs)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # -- plaintext side ------------------------------------------------------------------------
    def send(self, packet: bytes, now: int, out: Output | None = None) -> Output:
        out = out or Output()
        version = packet[0] >> 4 if packet else 0
        if version == 4 and len(packet) >= 20:
            peer = self.routes.lookup_raw(packet[16:20])
        elif version == 6 and len(packet) >= 40:
            peer = self.routes.lookup_raw(packet[24:40])
        else:
            self.count("dropped.not_ip")
            return out
        if peer is None:
            self.count("dropped.no_route")
            return out
        self._send_to(peer, packet, now, out)
        return out

    def send_batch(self, packets, now: int, out: Output) -> None:
        """``send`` for each of ``packets`` in turn, with the same outcome and counters: the
        common case (a usable session, an endpoint) is sealed here with its per-packet lookups
        hoisted out of the loop; every other packet takes ``send``'s own path."""
        self.send_batch_into(packets, now, out)

    def send_batch_into(self, packets, now: int, out: Output, buf=None, offsets=(),
                        room: int = 0) -> list:
        """``send_batch`` that writes each common-case transport message (header, ciphertext,
        tag) straight into the writable buffer ``buf`` at the next of ``offsets``, if it fits in
        ``room`` bytes, instead of appending it to ``out.datagrams``. Returns the
        [(endpoint, message length)] written, one per offset used, in order. With ``buf`` None
        every datagram goes to ``out``. ``packets`` may be views of memory the caller reuses:
        only copies are kept (staged packets).

        A run of packets to one peer is the common case: the peer, its keypair and what stays
        true for the whole batch (``now`` is one instant) are looked up once per run."""
        lookup, datagrams, counters = self.routes.lookup_raw, out.datagrams, self.counters
        timing = self.timing
        reject_time, reject_messages = timing.reject_after_time, timing.reject_after_messages
        rekey_time, rekey_messages = timing.rekey_after_time, timing.rekey_after_messages
        mtu, pack_nonce, pack_header = self.mtu, _NONCE.pack, _HEADER.pack
        header_into = _HEADER.pack_into
        transport, head = wm.TRANSPORT_TYPE, wm.TRANSPORT_HEADER_LEN
        written: list = []
        free = len(offsets) if buf is not None else 0
        last_key = peer = kp = endpoint = encrypt = encrypt_into = None
        remote = rekey_at = 0
        rekey_now = timers_due = False
        sent = used = 0
        for packet in packets:
            n = len(packet)
            if n >= 20 and packet[0] >> 4 == 4:
                key = bytes(packet[16:20])
            elif n >= 40 and packet[0] >> 4 == 6:
                key = bytes(packet[24:40])
            else:
                self.send(bytes(packet), now, out)          # counted there: not IP
                continue
            if key != last_key:                             # a new run: look the peer up
                peer = lookup(key)
                kp = peer.current if peer is not None else None
                if kp is None or peer.endpoint is None or now - kp.created >= reject_time:
                    last_key = None
                    self.send(bytes(packet), now, out)      # no route, or needs a handshake
                    continue
                last_key, endpoint, remote = key, peer.endpoint, kp.remote_index
                encrypt, encrypt_into = kp.sender.encrypt, kp.sender.encrypt_into
                rekey_now = kp.initiator and now - kp.created >= rekey_time
                rekey_at = rekey_messages - 1 if kp.initiator else reject_messages
                timers_due = True
            counter = kp.send_counter
            if counter >= reject_messages:
                last_key = None
                self.send(bytes(packet), now, out)          # the key is spent: a handshake
                continue
            kp.send_counter = counter + 1
            if timers_due:                                  # same ``now``: once per run
                timers_due = False
                timers = peer.timers
                timers.data_sent(now)
                if timers.persistent_interval:
                    timers.authenticated_traversed(now)
            if n & 15 and n < mtu:                          # §5.4.6 padding, up to the MTU
                padded = min(n + 16 - (n & 15), mtu)
                packet = bytes(packet) + _ZEROS[:padded - n]
            else:
                padded = n
            size = head + padded + TAG_LEN
            if used < free and size <= room:
                at = offsets[used]
                used += 1
                header_into(buf, at, transport, remote, counter)
                encrypt_into(pack_nonce(counter), packet, None, buf[at + head:at + size])
                written.append((endpoint, size))
            else:
                datagrams.append((endpoint, pack_header(transport, remote, counter)
                                  + encrypt(pack_nonce(counter), packet, None)))
            sent += 1
            peer.tx_bytes += n
            if rekey_now or counter >= rekey_at:
                self._initiate(peer, now, out)              # §6.2: the initiator rekeys
        if sent:
            counters["sent"] = counters.get("sent", 0) + sent
        return written

    def _usable(self, kp: Keypair | None, now: int) -> bool:
        return kp is not None and now - kp.created < self.timing.reject_after_time and \
            kp.send_counter < self.timing.reject_after_messages

    def _send_to(self, peer: Peer, packet: bytes, now: int, out: Output) -> None:
        kp = peer.current
        if not self._usable(kp, now) or peer.endpoint is None:
            if len(peer.staged) == peer.staged.maxlen:
                self.count("dropped.staged_overflow")
            peer.staged.append(packet)
            self.count("staged")
            self._initiate(peer, now, out)
            return
        out.datagrams.append((peer.endpoint, self._seal(peer, kp, packet, now)))
        self.count("sent")
        self._maybe_rekey(peer, kp, now, out)

    def _maybe_rekey(self, peer: Peer, kp: Keypair, now: int, out: Output) -> None:
        """§6.2: the initiator of a session rekeys after REKEY_AFTER_TIME or _MESSAGES."""
        if kp.initiator and (now - kp.created >= self.timing.rekey_after_time
                             or kp.send_counter >= self.timing.rekey_after_messages):
            self._initiate(peer, now, out)

    def _seal(self, peer: Peer, kp: Keypair, packet: bytes, now: int) -> bytes:
        counter = kp.send_counter
        kp.send_counter += 1
        n = len(packet)
        padded = min(-(-n // PADDING) * PADDING, max(self.mtu, n))
        if padded > n:
            packet = bytes(packet) + _ZEROS[:padded - n]
        sealed = kp.sender.encrypt(_NONCE.pack(counter), packet, None)
        peer.tx_bytes += n
        timers = peer.timers
        if n:
            timers.data_sent(now)
        if timers.persistent_interval:
            timers.authenticated_traversed(now)
        return _HEADER.pack(wm.TRANSPORT_TYPE, kp.remote_index, counter) + sealed

    def _keepalive(self, peer: Peer, now: int, out: Output) -> None:
        if self._usable(peer.current, now) and peer.endpoint is not None:
            out.datagrams.append((peer.endpoint, self._seal(peer, peer.current, b"", now)))
            self.count("keepalive_sent")
            self._maybe_rekey(peer, peer.current, now, out)
        else:
            self._initiate(peer, now, out)

    # -- handshakes ----------------------------------------------------------------------------
    def _initiate(self, peer: Peer, now: int, out: Output, retry: bool = False) -> None:
        if peer.endpoint is None:
            self.count("handshake_no_endpoint")
            return
        if not retry:
            if peer.timers.deadlines["retransmit"] is not None:
                return                               # one under way: its timer retries
            if peer.last_initiation is not None and \
                    now - peer.last_initiation < self.timing.rekey_timeout:
                return                               # §6.4: at most one per REKEY_TIMEOUT
            peer.handshake_started = now
            peer.timers.attempts = 0
        datagram = self.handshaker.initiate(peer.public_key, now)
        peer.last_initiation = now
        peer.timers.initiation_sent(now)             # retried by the timer either way
        if datagram is None:                         # the key holder could not answer
            self.count("initiation_unavailable")
            return
        out.datagrams.append((peer.endpoint, datagram))
        self.count("initiation_sent")

    def _under_load(self, now: int) -> bool:
        if now - self._load_start >= LOAD_WINDOW:
            self._load_start, self._load_count = now, 0
        self._load_count += 1
        if self._load_count > self.load_threshold:
            self._under_load_until = now + UNDER_LOAD_FOR
        return now < self._under_load_until

    def _handshake(self, datagram: bytes, source, now: int, out: Output) -> None:
        try:
            src = address_bytes(source)
        except ValueError:
            self.count("dropped.bad_source")
            return
        outcome = self.handshaker.receive(bytes(datagram), src, now, self._under_load(now))
        self.count("handshake." + outcome.event)
        if outcome.reply is not None:
            out.datagrams.append((source, outcome.reply))
            self.count("handshake_reply_sent")
        peer = self.peers.get(outcome.peer) if outcome.peer else None
        if peer is None or outcome.session is None:
            return
        peer.endpoint = source                       # §2.1 roaming: authenticated source
        peer.timers.authenticated_received(now)
        peer.timers.authenticated_traversed(now)
        self.install(peer, outcome.session, now, out)

    def install(self, peer: Peer, session: Session, now: int, out: Output) -> None:
        """Take a completed handshake's session into use (§5.4.8)."""
        kp = Keypair(session, now)
        self.index[kp.local_index] = (peer, kp)
        peer.handshakes += 1
        peer.last_handshake = now
        peer.timers.arm("zero_keys", now + 3 * self.timing.reject_after_time)
        if session.initiator:
            self._retire(peer.previous)
            if peer.next is not None:                # an answered handshake never confirmed
                self._retire(peer.next)
                peer.next = None
            peer.previous, peer.current = peer.current, kp
            peer.timers.handshake_complete(now)
            if peer.handshake_started is not None:
                peer.handshake_ns = now - peer.handshake_started
            peer.handshake_started = None
            self._flush_staged(peer, now, out)
        else:
            self._retire(peer.next)
            peer.next = kp

    def _retire(self, kp: Keypair | None) -> None:
        if kp is not None:
            self.index.pop(kp.local_index, None)

    def _flush_staged(self, peer: Peer, now: int, out: Output) -> None:
        if not peer.staged:
            self._keepalive(peer, now, out)          # confirm the new keys to the responder
            return
        while peer.staged and self._usable(peer.current, now):
            out.datagrams.append((peer.endpoint,
                                  self._seal(peer, peer.current, peer.staged.popleft(), now)))
            self.count("staged_sent")

    # -- ciphertext side -----------------------------------------------------------------------
    def receive(self, datagram, source: tuple[str, int], now: int,
                out: Output | None = None) -> Output:
        out = out or Output()
        kind = wm.message_type(datagram)
        if kind == wm.TRANSPORT_TYPE:
            self._transport(datagram, source, now, out)
        elif kind:
            self._handshake(datagram, source, now, out)
        else:
            self.count("dropped.malformed")
        return out

    def receive_into(self, datagram, source: tuple[str, int], now: int, out: Output,
                     into) -> int:
        """``receive`` that decrypts a transport message's packet straight into the writable
        buffer ``into`` when it fits; returns the packet's length there (0: nothing was
        delivered into it; what else came out is in ``out``). Whatever fails a check after
        decryption (tag, replay window, allowed IPs) is wiped from ``into``."""
        if wm.message_type(datagram) != wm.TRANSPORT_TYPE:
            self.receive(datagram, source, now, out)
            return 0
        return self._transport(datagram, source, now, out, into)

    def _transport(self, datagram, source, now: int, out: Output, into=None) -> int:
        receiver, counter = wm.transport_header(datagram)
        found = self.index.get(receiver)
        if found is None:
            self.count("dropped.unknown_index")
            return 0
        peer, kp = found
        if now - kp.created >= self.timing.reject_after_time or \
                counter >= self.timing.reject_after_messages:
            self.count("dropped.expired_key")
            return 0
        sealed = memoryview(datagram)[wm.TRANSPORT_HEADER_LEN:]
        size = len(sealed) - TAG_LEN
        if into is not None and 0 < size <= len(into):
            plain = into[:size]
            try:
                kp.receiver.decrypt_into(_NONCE.pack(counter), sealed, None, plain)
            except InvalidTag:
                plain[:] = bytes(size)
                self.count("dropped.auth_failed")
                return 0
            length = self._accept(peer, kp, counter, plain, source, now, out)
            if not length:
                plain[:] = bytes(size)
            return length
        try:
            plain = kp.receiver.decrypt(_NONCE.pack(counter), sealed, None)
        except InvalidTag:
            self.count("dropped.auth_failed")
            return 0
        length = self._accept(peer, kp, counter, plain, source, now, out)
        if length:
            out.packets.append(plain[:length])
        return 0

    def _accept(self, peer: Peer, kp: Keypair, counter: int, plain, source, now: int,
                out: Output) -> int:
        """The checks after decryption (§5.4.6, §2): the replay window, key confirmation, the
        timers, the inner packet and its source in the peer's allowed IPs; returns the inner
        packet's length, or 0 if nothing is to be delivered (dropped, or a keepalive)."""
        if not kp.replay.accept(counter):
            self.count("dropped.replayed")
            return 0
        if kp is peer.next:                          # key confirmation: rotate (§5.4.8)
            self._retire(peer.previous)
            peer.previous, peer.current, peer.next = peer.current, kp, None
            peer.timers.handshake_complete(now)
        peer.endpoint = source
        timers = peer.timers
        timers.deadlines["new_handshake"] = None      # authenticated_received
        if timers.persistent_interval:
            timers.authenticated_traversed(now)
        if kp is peer.current and kp.initiator and now - kp.created >= (
                self.timing.reject_after_time - self.timing.keepalive_timeout
                - self.timing.rekey_timeout):
            self._initiate(peer, now, out)           # §6.2: the initiator rekeys in time
        if not plain:
            self.count("keepalive_received")
            return 0
        length = ip_length(plain)
        addrs = packet_addresses(plain)
        if addrs is None or not 0 < length <= len(plain):
            self.count("dropped.bad_inner_packet")
            return 0
        if self.routes.lookup(addrs[0], addrs[1]) is not peer:
            self.count("dropped.allowed_ips")
            return 0
        peer.rx_bytes += length
        peer.timers.data_received(now)
        self.count("received")
        return length

    # -- time ----------------------------------------------------------------------------------
    def next_deadline(self) -> int | None:
        deadlines = [d for p in self.peers.values() if (d := p.timers.next_deadline()) is not None]
        return min(deadlines) if deadlines else None

    def tick(self, now: int, out: Output | None = None) -> Output:
        out = out or Output()
        for peer in self.peers.values():
            for name in peer.timers.expired(now):
                self._timer(peer, name, now, out)
        return out

    def _timer(self, peer: Peer, name: str, now: int, out: Output) -> None:
        if name == "retransmit":
            if peer.timers.attempts + 1 >= self.timing.max_handshake_attempts:
                self.count("handshake_gave_up")      # §6.4: REKEY_ATTEMPT_TIME is over
                self.count("dropped.handshake_gave_up", len(peer.staged))
                peer.staged.clear()
                peer.timers.disarm("keepalive")
                peer.timers.disarm("new_handshake")
                peer.handshake_started = None
                return
            peer.timers.attempts += 1
            self._initiate(peer, now, out, retry=True)
        elif name == "keepalive":
            self._keepalive(peer, now, out)
        elif name == "new_handshake":
            self._initiate(peer, now, out)
        elif name == "zero_keys":
            for kp in peer.keypairs():
                self._retire(kp)
            peer.current = peer.previous = peer.next = None
            self.count("keys_zeroed")
        elif name == "persistent":
            self._keepalive(peer, now, out)
