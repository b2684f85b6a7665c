"""A small HTTP/1.1 server (RFC 9112) in plain asyncio streams.

Routes: ``GET /`` a static page; ``GET /bytes/N`` N deterministic pseudo-random bytes
(``netstack.apps.pattern``, for transfer tests); ``POST /sha256`` the hex SHA-256 of the request
body (Content-Length or chunked); ``GET /reset`` aborts the connection with a RST (to test
abortive close). Persistent connections (RFC 9112 section 9.3) unless ``Connection: close``
or HTTP/1.0; ``HEAD`` answers like ``GET`` without the body; ``Expect: 100-continue`` gets its
interim answer at once (curl waits a second for it before sending a large body).
"""

from __future__ import annotations

import asyncio
import hashlib
import re

from netstack.apps.context import AppContext
from netstack.apps.pattern import chunks

MAX_HEAD = 64 * 1024
MAX_BYTES = 1 << 34
PAGE = (b"<!doctype html>\n<html><head><title>capnet</title></head>\n<body><h1>capnet</h1>\n"
        b"<p>Served by the capnet TCP/IP stack, a user-level component.</p>\n"
        b"<p>Try <code>/bytes/1000</code> or <code>POST /sha256</code>.</p></body></html>\n")
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 413: "Content Too Large", 501: "Not Implemented"}
BYTES_PATH = re.compile(r"/bytes/(\d{1,12})")


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, str, dict] | None:
    """Request line and header fields (RFC 9112 sections 3 and 5); None at a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest(400, "truncated request head") from None
    except asyncio.LimitOverrunError:
        raise BadRequest(400, "request head too long") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "bad request line")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "bad header field")      # RFC 9112 5.1: no space before ':'
        fields[name.lower()] = value.strip()
    return parts[0], parts[1], parts[2], fields


async def _body_sha256(reader: asyncio.StreamReader, fields: dict) -> tuple[str, int]:
    digest, total = hashlib.sha256(), 0
    if "chunked" in fields.get("transfer-encoding", "").lower():   # RFC 9112 section 7.1
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest(400, "bad chunk size") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass                                       # trailer fields, ignored
                return digest.hexdigest(), total
            data = await reader.readexactly(size)
            digest.update(data)
            total += size
            if await reader.readexactly(2) != b"\r\n":
                raise BadRequest(400, "bad chunk end")
    length = fields.get("content-length")
    if length is None:
        raise BadRequest(411, "Content-Length required")
    if not length.isdigit():
        raise BadRequest(400, "bad Content-Length")
    remaining = int(length)
    while remaining:
        data = await reader.read(min(remaining, 1 << 18))
        if not data:
            raise BadRequest(400, "body ended early")
        digest.update(data)
        remaining -= len(data)
        total += len(data)
    return digest.hexdigest(), total


def _head(status: int, length: int, keep_alive: bool, kind: str = "text/plain") -> bytes:
    return (f"HTTP/1.1 {status} {REASONS[status]}\r\nServer: capnet\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {length}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode()


async def _respond(ctx: AppContext, reader, writer, method: str, path: str, version: str,
                   fields: dict) -> bool:
    """Answer one request; returns whether the connection stays open."""
    keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
    body = method != "HEAD"
    if method == "POST" and path == "/sha256":
        if fields.get("expect", "").lower() == "100-continue":     # RFC 9110 section 10.1.1
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        hexdigest, total = await _body_sha256(reader, fields)
        ctx.add("body_bytes", total)
        answer = (hexdigest + "\n").encode()
        writer.write(_head(200, len(answer), keep) + answer)
        return keep
    if method not in ("GET", "HEAD"):
        raise BadRequest(405, f"{method} not allowed here")
    if path == "/":
        writer.write(_head(200, len(PAGE), keep, "text/html") + (PAGE if body else b""))
        return keep
    if path == "/reset":
        ctx.add("resets")
        writer.transport.abort()
        return False
    match = BYTES_PATH.fullmatch(path)
    if match is None:
        raise BadRequest(404, f"no such page: {path}")
    n = int(match.group(1))
    if n > MAX_BYTES:
        raise BadRequest(413, f"at most {MAX_BYTES} bytes")
    writer.write(_head(200, n, keep, "application/octet-stream"))
    if body:
        for chunk in chunks(n):
            writer.write(chunk)
            await writer.drain()
        ctx.add("bytes_sent", n)
    return keep


async def http_server(ctx: AppContext, port: int) -> None:
    """Serve the routes of the module docstring on ``port``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx.add("connections")
        try:
            while (request := await _read_head(reader)) is not None:
                method, path, version, fields = request
                ctx.add("requests")
                if not await _respond(ctx, reader, writer, method, path, version, fields):
                    break
                await writer.drain()
        except BadRequest as exc:
            message = (str(exc) + "\n").encode()
            writer.write(_head(exc.status, len(message), False) + message)
            ctx.add(f"status_{exc.status}")
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            ctx.add("broken")
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "0.0.0.0", port, limit=MAX_HEAD, backlog=1024)
    ctx.log(f"HTTP on port {port}")
    await server.serve_forever()
