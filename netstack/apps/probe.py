"""Probes the stack can send out: ICMP echo (``ping:HOST:COUNT``) and UDP datagrams that an
echo server sends back (``udp-send:HOST:PORT:COUNT``). Results: replies and round-trip times."""

from __future__ import annotations

import asyncio

from netstack import aio
from netstack.apps.context import AppContext

INTERVAL = 0.2


async def ping(ctx: AppContext, host: str, count: int) -> None:
    rtts = []
    for seq in range(1, count + 1):
        for _attempt in range(3):       # the first may wait for ARP; retry like ping does
            try:
                rtts.append(await aio.ping(host, seq=seq, timeout=1.0))
                ctx.log(f"echo reply from {host} seq {seq}")
                break
            except TimeoutError:
                ctx.add("timeouts")
        await asyncio.sleep(INTERVAL)
    ctx.results.update(replies=len(rtts), rtt_us=[round(r * 1e6, 1) for r in rtts])


class _Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr) -> None:
        self.replies.put_nowait(data)


async def udp_send(ctx: AppContext, host: str, port: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Collect, remote_addr=(host, port))
    replies = 0
    for seq in range(1, count + 1):
        message = f"capnet udp {seq}".encode()
        for _attempt in range(5):
            transport.sendto(message)
            try:
                if await asyncio.wait_for(proto.replies.get(), 1.0) == message:
                    replies += 1
                    ctx.log(f"udp reply from {host}:{port}: {message.decode()}")
                    break
            except TimeoutError:
                ctx.add("timeouts")
    transport.close()
    ctx.results["replies"] = replies
