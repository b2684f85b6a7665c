"""``RemoteHandshaker``: the ``Handshaker`` interface as the data path sees it, answered by the
key component (``gateway.keys:KeyStore``) over a protected call.

If the key component cannot answer (restarting, or already stopped during an orderly
shutdown), no handshake happens: ``initiate`` returns None and ``receive`` an outcome
``keys_unavailable``; sessions already made keep working.

Initiations made ahead: a handshake is on the path of the packet that needs it, and a
protected call costs two cross-process wake-ups. So the data path holds, per peer, one
initiation the key component made earlier (``prefetch``, called at the end of a turn: at
start and after each handshake we initiated completes, when no handshake of ours is pending
in the key component) and sends it at once when a handshake is needed. This changes nothing a
peer checks: the message is fresh to it (never sent before; its TAI64N timestamp, whitepaper
§5.1, is newer than any earlier one of ours, since one is fetched only after the last was
used), its state waits in the key component like any pending initiation, and the data path
learns nothing secret (it could already ask for an initiation at any time). Retries
(REKEY_TIMEOUT) ask for a new one, as does any initiation needed while none is ready.
"""

from __future__ import annotations

import time

from gateway.wireguard.handshaker import Outcome
from harness import Component, ProtectedCallError


class RemoteHandshaker:
    def __init__(self, component: Component, channel: str) -> None:
        self.component, self.channel = component, channel
        self.calls: dict[str, list[int]] = {}    # op -> [calls, total ns, longest ns] (wall)
        self.ready: dict[bytes, bytes] = {}      # peer -> an initiation made ahead
        self.wanted: set[bytes] = set()          # peers to fetch one for, at the turn's end
        self.used_ready = 0                      # handshakes started with one made ahead

    def _call(self, msg: dict):
        start = time.monotonic_ns()
        try:
            return self.component.ppcall(self.channel, msg)
        finally:
            took = time.monotonic_ns() - start
            entry = self.calls.setdefault(msg["op"], [0, 0, 0])
            entry[0] += 1
            entry[1] += took
            entry[2] = max(entry[2], took)

    def initiate(self, peer: bytes, now: int) -> bytes | None:
        """An initiation to ``peer``: the one made ahead if unused, else a new one (which
        replaces it in the key component)."""
        ready = self.ready.pop(peer, None)
        if ready is not None:
            self.used_ready += 1
            return ready
        try:
            return bytes(self._call({"op": "initiate", "peer": peer}))
        except ProtectedCallError:
            return None

    def receive(self, datagram: bytes, source: bytes, now: int, under_load: bool) -> Outcome:
        try:
            reply = self._call({"op": "receive", "datagram": datagram, "source": source,
                                "under_load": under_load})
        except ProtectedCallError:
            return Outcome("keys_unavailable")
        outcome = Outcome.from_wire(reply)
        if outcome.session is not None and outcome.session.initiator:
            self.wanted.add(outcome.peer)        # ours completed: nothing of ours pending
        return outcome

    def prefetch(self) -> int:
        """Fetch an initiation for each wanted peer (call it when the turn's frames are out);
        returns how many were fetched."""
        fetched = 0
        while self.wanted:
            peer = self.wanted.pop()
            if peer in self.ready:
                continue
            try:
                self.ready[peer] = bytes(self._call({"op": "prefetch", "peer": peer}))
            except (ProtectedCallError, TypeError, ValueError):
                continue                         # no initiation made ahead: one on demand
            fetched += 1
        return fetched
