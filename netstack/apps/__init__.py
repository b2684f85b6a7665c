"""Applications that run inside the stack component, written in plain asyncio.

An app is named in the component's config by a spec string ``NAME:ARG:ARG...``:

    udp-echo:PORT                 echo UDP datagrams (netstack.apps.echo)
    tcp-echo:PORT                 echo TCP streams
    http:PORT                     HTTP/1.1: /, /bytes/N, POST /sha256, /reset (netstack.apps.http)
    bulk-recv:PORT[:STREAMS]      digest whole streams, answer "<bytes> <sha256>"; with STREAMS,
                                  end after that many
    bulk-send:HOST:PORT:BYTES     send pattern bytes to HOST:PORT (netstack.apps.bulk)
    ping:HOST:COUNT               ICMP echo requests (netstack.apps.probe)
    udp-send:HOST:PORT:COUNT      UDP datagrams to an echo server

``parse_app(spec)`` checks a spec (ValueError naming what is wrong) and returns
``(name, coroutine function, args)``; the coroutine is called as ``fn(ctx, *args)``.
An IPv6 HOST is written in brackets: ``ping:[fe80::1]:3``.
"""

from __future__ import annotations

import ipaddress
import re

from netstack.apps.bulk import bulk_recv, bulk_send
from netstack.apps.context import AppContext
from netstack.apps.echo import tcp_echo, udp_echo
from netstack.apps.http import http_server
from netstack.apps.pattern import pattern_bytes, pattern_sha256
from netstack.apps.probe import ping, udp_send

APPS = {
    "udp-echo": (udp_echo, ("port",)),
    "tcp-echo": (tcp_echo, ("port",)),
    "http": (http_server, ("port",)),
    "bulk-recv": (bulk_recv, ("port", "streams?")),
    "bulk-send": (bulk_send, ("host", "port", "bytes")),
    "ping": (ping, ("host", "count")),
    "udp-send": (udp_send, ("host", "port", "count")),
}
_ARG = re.compile(r"\[[^\]]*\]|[^:]+")


def _value(kind: str, text: str, spec: str):
    if kind == "host":
        try:
            return str(ipaddress.ip_address(text.strip("[]")))
        except ValueError:
            raise ValueError(f"app {spec!r}: {text!r} is not a numeric IP address") from None
    if not text.isdigit():
        raise ValueError(f"app {spec!r}: {kind} must be a number, got {text!r}")
    value = int(text)
    if kind == "port" and not 1 <= value <= 65535:
        raise ValueError(f"app {spec!r}: port must be 1..65535, got {value}")
    if kind in ("count", "streams") and not 1 <= value <= 100000:
        raise ValueError(f"app {spec!r}: count must be 1..100000, got {value}")
    return value


def parse_app(spec: object):
    """``"http:80"`` -> ("http", http_server, (80,)); ValueError naming the problem."""
    if not isinstance(spec, str):
        raise ValueError(f"app spec must be a string like 'http:80', got {spec!r}")
    name, _, rest = spec.partition(":")
    if name not in APPS:
        raise ValueError(f"unknown app {name!r} in {spec!r}; known: {', '.join(APPS)}")
    fn, kinds = APPS[name]
    args = _ARG.findall(rest) if rest else []
    required = [k for k in kinds if not k.endswith("?")]
    if not len(required) <= len(args) <= len(kinds) or ":".join(args) != rest:
        usage = ":".join(k.upper() if not k.endswith("?") else f"[{k[:-1].upper()}]"
                         for k in kinds)
        raise ValueError(f"app {spec!r}: expected {name}:{usage}")
    return name, fn, tuple(_value(k.rstrip("?"), a, spec) for k, a in zip(kinds, args, strict=False))


__all__ = ["APPS", "AppContext", "parse_app", "pattern_bytes", "pattern_sha256"]
