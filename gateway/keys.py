"""``gateway.keys:KeyStore`` — the KEY component: the only holder of the WireGuard private key.

Its one device is the ``wg``-format configuration file (``{ kind = "file", mode = "r" }``),
opened by the harness and granted to this component alone; it is read once in ``init``. The
component has no queues: it serves protected calls from the (lower-priority) data path:

- ``{"op": "peers"}`` -> the public half of the configuration: our public key, ListenPort, and
  each peer's public key, AllowedIPs, Endpoint and PersistentKeepalive (never a private or
  pre-shared key);
- ``{"op": "initiate", "peer": pub}`` -> a handshake initiation (bytes) to that peer
  (``"prefetch"``: the same, asked for ahead of need; see ``gateway.remote``);
- ``{"op": "receive", "datagram": b, "source": b, "under_load": bool}`` -> an ``Outcome`` as a
  dict: the event, the reply to send (a response or cookie reply) and, when a handshake
  completed, the session (two transport keys and two indices) — the only secrets that leave.

Time is this component's own clock; the caller's is not trusted.

Latency (the handshake is on the first packet's path): the handshake code runs once at
``init`` on throwaway keys (warm), and each peer's next initiation is made ahead of time — in
``init`` and on a timer right after each ``initiate`` call is answered — so a call only seals
the TAI64N timestamp. ``stats()`` gives the CPU time spent per kind of call.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from gateway.wireguard.config import ConfigError, WgConfig, parse
from gateway.wireguard.handshaker import Handshaker, warm_up
from harness import Component

MAX_CONFIG = 1 << 20
PREPARE = "prepare"


class KeyStore(Component):
    @classmethod
    def preflight(cls, config: dict, files: dict[str, Path]) -> list[str]:
        readable = [p for p in files.values()]
        if len(readable) != 1:
            return [f"needs exactly one file device (the wg config), has {len(readable)}"]
        path = readable[0]
        try:
            parse(path.read_text(), str(path))
        except ConfigError as exc:
            return exc.problems
        except OSError as exc:
            return [f"{path}: cannot read: {exc.strerror}"]
        return []

    def init(self) -> None:
        files = [d for d in self.devices if d.kind == "file" and d.mode == "r"]
        if len(files) != 1:
            raise ValueError(f"{self.name}: needs exactly one readable file device (wg config)")
        chunks = []
        while chunk := os.read(files[0].fd, 65536):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_CONFIG:
                raise ValueError(f"{self.name}: configuration larger than {MAX_CONFIG} bytes")
        os.close(files[0].fd)
        self.wg: WgConfig = parse(b"".join(chunks).decode(), files[0].path)
        self.cpu: dict[str, list[int]] = {}      # op -> [calls, total ns, longest ns]
        self.handshaker = Handshaker(self.wg.private_key,
                                     {p.public_key: p.preshared_key for p in self.wg.peers})
        warm_up()                 # the first real handshake then runs warm code
        self.handshaker.prepare()  # and its initiation needs only the timestamp sealed

    def protected(self, channel, msg) -> object:
        """Serve the data path. A malformed request is refused (an error reply, counted); it
        never takes this component down."""
        start = time.thread_time_ns()
        try:
            return self._serve(msg)
        except (KeyError, TypeError, ValueError) as exc:
            self.count("bad_requests")
            raise ValueError(f"bad request: {exc!r}") from None
        finally:
            op = msg.get("op") if isinstance(msg, dict) else None
            op = op if op in ("peers", "initiate", "prefetch", "receive") else "other"
            entry = self.cpu.setdefault(op, [0, 0, 0])
            took = time.thread_time_ns() - start
            entry[0] += 1
            entry[1] += took
            entry[2] = max(entry[2], took)

    def timeout(self, token) -> None:
        if token == PREPARE:
            self.count("initiations_prepared", self.handshaker.prepare())

    def stats(self) -> dict:
        """CPU time spent serving each kind of call (calls, mean and longest ns)."""
        return {"cpu": {op: {"calls": n, "mean_ns": total // n, "max_ns": longest}
                        for op, (n, total, longest) in self.cpu.items()}}

    def _serve(self, msg) -> object:
        if not isinstance(msg, dict):
            raise ValueError("expected a dict with 'op'")
        op = msg.get("op")
        if op == "peers":
            self.count("peers_calls")
            return self._public_view()
        if op in ("initiate", "prefetch"):
            self.count("initiations" if op == "initiate" else "initiations_made_ahead")
            datagram = self.handshaker.initiate(bytes(msg["peer"]), self.now())
            self.set_timer(self.now(), PREPARE)    # the next one, after this call is answered
            return datagram
        if op == "receive":
            outcome = self.handshaker.receive(bytes(msg["datagram"]), bytes(msg["source"]),
                                              self.now(), bool(msg.get("under_load")))
            self.count("handshake." + outcome.event)
            return outcome.to_wire()
        raise ValueError(f"unknown op {op!r}")

    def _public_view(self) -> dict:
        return {
            "public_key": self.wg.public_key,
            "listen_port": self.wg.listen_port,
            "peers": [{"public_key": p.public_key,
                       "allowed_ips": [str(n) for n in p.allowed_ips],
                       "endpoint": list(p.endpoint) if p.endpoint else None,
                       "persistent_keepalive": p.persistent_keepalive} for p in self.wg.peers],
        }
