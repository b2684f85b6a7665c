"""``gateway.attester:Attester`` — the one component that holds the attestation signing key.

Grants: exactly one device, the Ed25519 key file (``kind = "file"``, mode ``r``; its format is in
``gateway.attest``), and nothing else is needed. Give it the highest priority of the system, so
that any component may be granted a protected call to it. The harness (``capnet attest``)
measures the system before anything starts and hands the measurement to the attester in its
config (``measurement``, bytes, set by the harness only: a description that sets it is refused).

Protected call (a ``pp`` channel, or the operator through the control socket):
``{"nonce": BYTES or HEX}`` -> ``{"report": BYTES}`` (hex text when the nonce came as hex, as
from ``capnet call``), the signed report over that nonce and the measurement. A nonce is 16..64
bytes and is answered once: a nonce seen before is refused (the verifier's freshness check is
the nonce it sent; this one keeps the attester from re-signing a challenge someone replays). A
bad request raises ``ProtectedCallError`` (an error reply); nothing a caller sends can make the
attester fail. Counters: ``requests``, ``signed``, ``refused``.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from nacl.signing import SigningKey

from gateway import attest
from harness import Component, ProtectedCallError

SEEN_MAX = 65536          # nonces remembered (oldest forgotten first)


class Attester(Component):
    @classmethod
    def preflight(cls, config: dict, files: dict) -> list[str]:
        problems = []
        if "measurement" in config:
            problems.append("'measurement' is set by the harness at build time (capnet attest), "
                            "never by the description")
        if len(files) != 1:
            problems.append(f"the attester is granted exactly one file device, its signing key; "
                            f"got {len(files)}")
        for path in files.values():
            try:
                attest.read_key(path.read_text("ascii", "replace")[:200], str(path))
            except (OSError, attest.AttestError) as exc:
                problems.append(str(exc))
        return problems

    def init(self) -> None:
        files = [d for d in self.devices if d.kind == "file" and d.mode == "r"]
        if len(files) != 1:
            raise ValueError(f"{self.name}: needs exactly one file device, the signing key")
        seed = attest.read_key(os.pread(files[0].fd, 256, 0), files[0].path)
        self.signing = SigningKey(seed)
        self.measurement = self.config.get("measurement")
        if self.measurement is not None:
            self.measurement = bytes(self.measurement)
            attest.decode_measurement(self.measurement)      # refuse to start on a bad one
        self.seen: OrderedDict[bytes, None] = OrderedDict()

    def protected(self, channel, msg) -> object:
        self.count("requests")
        nonce = msg.get("nonce") if isinstance(msg, dict) else None
        as_hex = isinstance(nonce, str)     # answer in the form asked (JSON callers: hex)
        if as_hex:
            try:
                nonce = bytes.fromhex(nonce)
            except ValueError:
                nonce = None
        if not isinstance(nonce, bytes):
            self.count("refused")
            raise ProtectedCallError('a request is {"nonce": BYTES or HEX}')
        if not attest.NONCE_MIN <= len(nonce) <= attest.NONCE_MAX:
            self.count("refused")
            raise ProtectedCallError(f"a nonce is {attest.NONCE_MIN}..{attest.NONCE_MAX} bytes, "
                                     f"got {len(nonce)}")
        if self.measurement is None:
            self.count("refused")
            raise ProtectedCallError("no measurement: start the system with `capnet attest` "
                                     "so that the harness measures it")
        if nonce in self.seen:
            self.count("refused")
            raise ProtectedCallError("nonce already answered: a verifier sends a fresh one")
        self.seen[nonce] = None
        if len(self.seen) > SEEN_MAX:
            self.seen.popitem(last=False)
        self.count("signed")
        report = attest.sign_report(self.signing, nonce, self.measurement)
        return {"report": report.hex() if as_hex else report}

    def stats(self) -> dict:
        signing = getattr(self, "signing", None)
        return {"public_key": bytes(signing.verify_key).hex() if signing else None,
                "measured": getattr(self, "measurement", None) is not None}
