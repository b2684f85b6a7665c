"""Echo servers: UDP (RFC 862 over UDP) and TCP (RFC 862 over TCP), in plain asyncio."""

from __future__ import annotations

import asyncio

from netstack.apps.context import AppContext


class _UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.ctx.add("datagrams")
        self.transport.sendto(data, addr)


async def udp_echo(ctx: AppContext, port: int) -> None:
    """Send every datagram back to where it came from."""
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: _UdpEcho(ctx), local_addr=("0.0.0.0", port))
    ctx.log(f"UDP echo on port {port}")
    await asyncio.Event().wait()


class _TcpEcho(asyncio.Protocol):
    """One connection: every byte goes back in the callback that brought it (no task, no
    stream buffer between: an exchange costs one turn of the loop); reading pauses while
    the peer is not taking the echo (the transport's buffer is over its high-water mark)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.ctx.add("connections")

    def data_received(self, data: bytes) -> None:
        self.ctx.add("bytes", len(data))
        self.transport.write(data)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.ctx.add("closed")
        return False                    # the transport closes: the echo, then our FIN

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.ctx.add("reset")


async def tcp_echo(ctx: AppContext, port: int) -> None:
    """Send every byte back; close when the client does (orderly), or follow its reset."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _TcpEcho(ctx), "0.0.0.0", port, backlog=1024)
    ctx.log(f"TCP echo on port {port}")
    await server.serve_forever()
