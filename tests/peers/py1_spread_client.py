#!/usr/bin/env python3
"""Interop peer: the official Python MCP client (SDK 1.30) with its requests spread over
several mcp-edge replicas, as a load balancer would.

    .cache/peers/py1/bin/python tests/peers/py1_spread_client.py PORTS CALLS PAUSE_AFTER

PORTS is a comma-separated list of 127.0.0.1 ports serving /mcp. Every HTTP request of
the one MCP session goes to the next port in turn; a port that refuses the connection
(a replica that stopped) is skipped. Initializes, then calls `demo__echo` CALLS times;
after PAUSE_AFTER calls it prints `paused` on stdout and waits for a line on stdin (the
test stops a replica meanwhile). Then prints ONE JSON line:

    {"results": ["echo 0", ...], "served": {"PORT": n, ...}, "session": "<Mcp-Session-Id>"}

Any failure prints `py1_spread_client: ...` on stderr and exits 1. PEER_TIMEOUT (s, default
30) bounds the run.
"""
import asyncio
import collections
import json
import os
import sys

import peer_common  # tests/peers/: how every peer fails and runs

NAME = "py1_spread_client"
TIMEOUT = float(os.environ.get("PEER_TIMEOUT", "30"))


def die(msg: str, code: int = 1) -> None:
    peer_common.die(NAME, msg, code)


async def run(ports: list[int], calls: int, pause_after: int) -> dict:
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    class Spread(httpx.AsyncBaseTransport):
        """Round robin over the replicas, skipping one that refuses connections."""

        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()
            self.next = 0
            self.served: collections.Counter = collections.Counter()

        async def handle_async_request(self, request):
            last = None
            for _ in range(len(ports)):
                port = ports[self.next % len(ports)]
                self.next += 1
                request.url = request.url.copy_with(port=port)
                request.headers["host"] = f"127.0.0.1:{port}"
                try:
                    response = await self.inner.handle_async_request(request)
                except httpx.ConnectError as e:
                    last = e
                    continue
                self.served[port] += 1
                return response
            raise last

        async def aclose(self) -> None:
            await self.inner.aclose()

    spread = Spread()
    http = httpx.AsyncClient(transport=spread, timeout=httpx.Timeout(30.0, read=300.0))
    url = f"http://127.0.0.1:{ports[0]}/mcp"
    results = []
    async with http, streamable_http_client(url, http_client=http) as (read, write, get_session_id):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for i in range(calls):
                if i == pause_after:
                    sys.stdout.write("paused\n")
                    sys.stdout.flush()
                    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
                result = await session.call_tool("demo__echo", {"message": f"echo {i}"})
                if result.isError:
                    raise RuntimeError(f"call {i} failed: {result.content}")
                results.append(result.content[0].text)
            session_id = get_session_id()
    return {"results": results, "served": {str(k): v for k, v in spread.served.items()}, "session": session_id}


def main() -> None:
    if len(sys.argv) != 4:
        die("usage: py1_spread_client.py PORTS CALLS PAUSE_AFTER", 2)
    ports = [int(p) for p in sys.argv[1].split(",")]
    calls, pause_after = int(sys.argv[2]), int(sys.argv[3])
    peer_common.run(NAME, run(ports, calls, pause_after), TIMEOUT, "the spread session")


if __name__ == "__main__":
    main()
