"""capnet's crypto gateway: WireGuard, interoperable with wireguard-go, with isolated keys.

Components:
- ``gateway.keys:KeyStore`` (KEY) — alone granted the ``wg``-format config file (a file device,
  so alone holds the private and pre-shared keys); runs every handshake; no queues.
- ``gateway.datapath:Gateway`` (GATEWAY) — between a red queue pair (bare IP packets) and a
  black queue pair (bare IPv4/UDP packets for a TUN NIC); seals and opens transport data.

How session keys reach the data path (decided here): the data path has strictly lower priority
than KEY and reaches it only by protected call on a channel (``[[channels]] ends = ["gw",
"keys"], pp = "gw"``). Handshake messages from the black side are passed to KEY; KEY answers
with the datagram to send back and, once a handshake completes, the two transport keys and two
indices as bytes in the reply. No region is shared with KEY. So a compromised data path never
holds the static private key or a pre-shared key: it cannot impersonate the gateway anywhere
else, nor after it is cut off from KEY; while it runs it can only ask KEY for sessions with the
peers the configuration names (sessions that expire after REJECT_AFTER_TIME).

The protocol core is sans-I/O in ``gateway.wireguard`` (see its docstring for its API);
``gateway.remote.RemoteHandshaker`` is the data path's side of the protected call (with one
initiation per peer made ahead of need).
"""

from gateway.datapath import Gateway
from gateway.keys import KeyStore
from gateway.wireguard import ConfigError, Device, Handshaker, Timing, parse_config

__all__ = ["ConfigError", "Device", "Gateway", "Handshaker", "KeyStore", "Timing",
           "parse_config"]

# -- attestation (H8) -------------------------------------------------------------------------
# ``gateway.attester:Attester`` (ATTESTER) alone holds the Ed25519 signing key (a file device)
# and signs the harness's measurement with a verifier's nonce; ``gateway.attest`` defines the
# measurement, the report format and its verification; ``capnet attest`` is
# ``gateway.attest_cli``.
from gateway.attest import (  # noqa: E402
    AttestError,
    Verdict,
    keygen,
    measure,
    parse_report,
    sign_report,
    verify,
)
from gateway.attester import Attester  # noqa: E402

__all__ += ["AttestError", "Attester", "Verdict", "keygen", "measure", "parse_report",
            "sign_report", "verify"]
