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


async def tcp_echo(ctx: AppContext, port: int) -> None:
    """Send every byte back; close when the client does (orderly), or follow its reset."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx.add("connections")
        try:
            while data := await reader.read(65536):
                ctx.add("bytes", len(data))
                writer.write(data)
                await writer.drain()
            ctx.add("closed")
        except ConnectionError:
            ctx.add("reset")
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "0.0.0.0", port, backlog=1024)
    ctx.log(f"TCP echo on port {port}")
    await server.serve_forever()
