"""Bulk transfer: a receiver that digests whole streams and a sender of pattern bytes.

``bulk-recv:PORT[:STREAMS]`` reads each connection to its end, then answers
``"<bytes> <sha256 hex>\\n"`` and closes (and ends after STREAMS streams, if given), so the
sender can check the transfer itself. ``bulk-send:HOST:PORT:BYTES`` connects, sends BYTES
pattern bytes (``netstack.apps.pattern``), shuts its side down and reads the receiver's answer
(if any) before closing. Both record what they did in the app's results.
"""

from __future__ import annotations

import asyncio
import hashlib

from netstack.apps.context import AppContext
from netstack.apps.pattern import chunks

READ = 1 << 18


async def bulk_recv(ctx: AppContext, port: int, streams: int = 0) -> None:
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = asyncio.get_running_loop().time()
        digest, total = hashlib.sha256(), 0
        try:
            while data := await reader.read(READ):
                digest.update(data)
                total += len(data)
            seconds = asyncio.get_running_loop().time() - start
            writer.write(f"{total} {digest.hexdigest()}\n".encode())
            await writer.drain()
            ctx.add("streams")
            ctx.add("bytes", total)
            ctx.results["last"] = {"bytes": total, "sha256": digest.hexdigest(),
                                   "seconds": round(seconds, 6)}
            ctx.log(f"received {total} bytes sha256 {digest.hexdigest()}")
        except ConnectionError:
            ctx.add("reset")
        finally:
            writer.close()
            if streams and ctx.results.get("streams", 0) + ctx.results.get("reset", 0) >= streams:
                done.set()

    server = await asyncio.start_server(serve, "0.0.0.0", port, limit=READ, backlog=1024)
    ctx.log(f"bulk receiver on port {port}")
    if not streams:
        await server.serve_forever()
    await done.wait()
    server.close()


async def bulk_send(ctx: AppContext, host: str, port: int, nbytes: int) -> None:
    loop = asyncio.get_running_loop()
    for attempt in range(50):          # the peer's server may still be starting
        try:
            reader, writer = await asyncio.open_connection(host, port)
            break
        except ConnectionRefusedError:
            await asyncio.sleep(0.1 * (attempt + 1))
    else:
        ctx.results["error"] = "connection refused"
        ctx.log(f"cannot connect to {host}:{port}")
        return
    start = loop.time()
    digest = hashlib.sha256()
    for chunk in chunks(nbytes):
        digest.update(chunk)
        writer.write(chunk)
        await writer.drain()
    writer.write_eof()
    answer = await reader.read(4096)
    seconds = loop.time() - start
    writer.close()
    ctx.results.update(bytes=nbytes, sha256=digest.hexdigest(), seconds=round(seconds, 6),
                       answer=answer.decode(errors="replace").strip())
    ctx.log(f"sent {nbytes} bytes sha256 {digest.hexdigest()} in {seconds:.3f} s; "
            f"peer said {answer.decode(errors='replace').strip()!r}")
