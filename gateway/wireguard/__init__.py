"""WireGuard as a sans-I/O core (whitepaper: "WireGuard: Next Generation Kernel Network Tunnel").

Public API:
- ``parse_config(text, filename) -> WgConfig`` / ``ConfigError`` — the ``wg`` file format;
- ``Handshaker`` — holds the private key; makes and consumes handshake messages, hands out
  ``Session``s (transport keys + indices) and ``Outcome``s; ``prepare()`` makes each peer's
  next initiation ahead of time (all but its timestamp); ``handshaker.warm_up()``;
- ``Device`` — peers, cryptokey routing, transport data, replay window, timers; ``Output``;
  ``send_batch_into`` seals straight into a caller's buffers;
- ``Timing`` — the protocol's time and message limits (§6.1), overridable;
- ``ReplayWindow`` — RFC 6479; ``noise`` and ``messages`` modules for the primitives and formats.
"""

from gateway.wireguard import messages, noise
from gateway.wireguard.config import ConfigError, PeerConfig, WgConfig, decode_key, encode_key
from gateway.wireguard.config import parse as parse_config
from gateway.wireguard.device import Device, Output
from gateway.wireguard.handshaker import Handshaker, Outcome, Session
from gateway.wireguard.replay import ReplayWindow
from gateway.wireguard.timers import Timing

__all__ = ["ConfigError", "Device", "Handshaker", "Outcome", "Output", "PeerConfig",
           "ReplayWindow", "Session", "Timing", "WgConfig", "decode_key", "encode_key",
           "messages", "noise", "parse_config"]
