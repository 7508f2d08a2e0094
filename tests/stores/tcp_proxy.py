"""A loopback TCP proxy that can be slow and can die: a store that fails mid-transfer, on cue.

Why a separate process: a remote that dies half-way through ``dvc push`` is the failure a
shared store really has, and its timing must not depend on luck. This proxy forwards
``127.0.0.1:PORT`` to an upstream port, throttles the client-to-upstream bytes to ``--rate``
bytes/s (so a push lasts long enough to be interrupted), and with ``--die-after N`` exits
abruptly (``os._exit``: every connection drops at once, as when a machine goes away) once N
bytes have gone upstream. The tests start it like any server and stop it by its PID.

Usage: python tcp_proxy.py --port P --upstream U [--rate B] [--die-after N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


class Budget:
    """Bytes sent upstream, over all connections; the proxy dies past ``limit``."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.sent = 0

    def spend(self, n: int) -> None:
        self.sent += n
        if self.limit is not None and self.sent > self.limit:
            print(f"dying after {self.sent} bytes", flush=True)
            os._exit(3)


async def pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    budget: Budget | None,
    rate: float | None,
) -> None:
    try:
        while data := await reader.read(16384):
            if budget is not None:
                budget.spend(len(data))
            if rate:
                await asyncio.sleep(len(data) / rate)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(port: int, upstream: int, rate: float | None, die_after: int | None) -> None:
    budget = Budget(die_after)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, up_w, budget, rate), pipe(up_r, client_w, None, None))

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)
    print(f"proxy 127.0.0.1:{port} -> 127.0.0.1:{upstream}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--rate", type=float, default=None, help="bytes/s client -> upstream")
    parser.add_argument("--die-after", type=int, default=None, help="bytes upstream, then exit")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.port, args.upstream, args.rate, args.die_after))
    except KeyboardInterrupt:
        sys.exit(0)
