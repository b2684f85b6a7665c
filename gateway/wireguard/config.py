"""WireGuard configuration files in the ``wg`` tool's own format (wg(8), "CONFIGURATION FILE
FORMAT"), so that existing configs work unchanged.

    [Interface]  PrivateKey, ListenPort, FwMark
    [Peer]       PublicKey, PresharedKey, AllowedIPs, Endpoint, PersistentKeepalive

Keys are case-insensitive, ``#`` starts a comment, ``AllowedIPs`` may repeat and holds a
comma-separated list. wg-quick's own keys (Address, DNS, MTU, Table, PreUp, PostUp, PreDown,
PostDown, SaveConfig) are accepted and kept in ``quick`` but not acted on. Every problem is
reported as ``file:line: error: message``; ``parse`` raises ``ConfigError`` with all of them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass, field

from gateway.wireguard.noise import ZERO_KEY, public_key

INTERFACE_KEYS = {"privatekey", "listenport", "fwmark"}
PEER_KEYS = {"publickey", "presharedkey", "allowedips", "endpoint", "persistentkeepalive"}
QUICK_KEYS = {"address", "dns", "mtu", "table", "preup", "postup", "predown", "postdown",
              "saveconfig"}


class ConfigError(ValueError):
    """A configuration file is invalid; ``problems`` holds every message."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class PeerConfig:
    public_key: bytes
    preshared_key: bytes = ZERO_KEY
    allowed_ips: tuple = ()
    endpoint: tuple[str, int] | None = None
    persistent_keepalive: int = 0         # seconds, 0 = off


@dataclass(frozen=True)
class WgConfig:
    private_key: bytes
    listen_port: int | None = None
    peers: tuple[PeerConfig, ...] = ()
    quick: dict = field(default_factory=dict)

    @property
    def public_key(self) -> bytes:
        return public_key(self.private_key)


def decode_key(text: str) -> bytes:
    """A base64 key of 32 bytes (wg(8) "base64-encoded"). Raises ValueError."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"'{text}' is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"a key is 32 bytes in base64 (44 characters), got {len(raw)} bytes")
    return raw


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def parse_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``; the host must be an IP address (no DNS here)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        raise ValueError(f"endpoint '{text}' needs host:port")
    host = host.strip("[]")
    ipaddress.ip_address(host)
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} out of range 1..65535")
    return host, number


def parse(text: str, filename: str = "<config>") -> WgConfig:
    problems: list[str] = []
    iface: dict = {}
    peers: list[dict] = []
    quick: dict = {}
    section = None

    def err(line: int, msg: str) -> None:
        problems.append(f"{filename}:{line}: error: {msg}")

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            name = line.strip("[]").strip().lower()
            if line[-1] != "]" or name not in ("interface", "peer"):
                err(number, f"unknown section {line!r}: expected [Interface] or [Peer]")
                section = None
                continue
            if name == "interface" and iface:
                err(number, "a second [Interface] section")
            section = name
            if name == "peer":
                peers.append({"_line": number})
            else:
                iface["_line"] = number
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            err(number, f"expected 'Key = Value', got {line!r}")
            continue
        if section is None:
            err(number, f"'{key}' outside [Interface] or [Peer]")
            continue
        try:
            if section == "interface":
                _interface_key(iface, quick, key, value)
            else:
                _peer_key(peers[-1], key, value)
        except ValueError as exc:
            err(number, str(exc))
    if "privatekey" not in iface:
        problems.append(f"{filename}:{iface.get('_line', 1)}: error: [Interface] needs a "
                        "PrivateKey")
    seen = set()
    for p in peers:
        if "publickey" not in p:
            err(p["_line"], "[Peer] needs a PublicKey")
        elif p["publickey"] in seen:
            err(p["_line"], "the same PublicKey appears in two [Peer] sections")
        seen.add(p.get("publickey"))
    if problems:
        raise ConfigError(problems)
    return WgConfig(
        private_key=iface["privatekey"], listen_port=iface.get("listenport"),
        peers=tuple(PeerConfig(p["publickey"], p.get("presharedkey", ZERO_KEY),
                               tuple(p.get("allowedips", ())), p.get("endpoint"),
                               p.get("persistentkeepalive", 0)) for p in peers),
        quick=quick)


def _interface_key(iface: dict, quick: dict, key: str, value: str) -> None:
    if key == "privatekey":
        iface[key] = decode_key(value)
    elif key == "listenport":
        port = int(value)
        if not 0 <= port < 65536:
            raise ValueError(f"ListenPort {port} out of range 0..65535")
        iface[key] = port
    elif key == "fwmark":
        iface[key] = 0 if value == "off" else int(value, 0)
    elif key in QUICK_KEYS:
        quick[key] = value
    else:
        raise ValueError(f"unknown [Interface] key '{key}'; valid: PrivateKey, ListenPort, "
                         "FwMark")


def _peer_key(peer: dict, key: str, value: str) -> None:
    if key == "publickey":
        peer[key] = decode_key(value)
    elif key == "presharedkey":
        peer[key] = decode_key(value)
    elif key == "allowedips":
        nets = peer.setdefault(key, [])
        for item in filter(None, (v.strip() for v in value.split(","))):
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"'{item}' is not an IP prefix (like 10.0.0.0/24)") from None
    elif key == "endpoint":
        try:
            peer[key] = parse_endpoint(value)
        except ValueError as exc:
            raise ValueError(f"Endpoint: {exc}") from None
    elif key == "persistentkeepalive":
        seconds = 0 if value == "off" else int(value)
        if not 0 <= seconds <= 65535:
            raise ValueError(f"PersistentKeepalive {seconds} out of range 0..65535")
        peer[key] = seconds
    else:
        raise ValueError(f"unknown [Peer] key '{key}'; valid: PublicKey, PresharedKey, "
                         "AllowedIPs, Endpoint, PersistentKeepalive")
