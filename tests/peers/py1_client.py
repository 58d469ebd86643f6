#!/usr/bin/env python3
"""Interop peer: the official Python MCP client, SDK 1.30 (session era).

    .cache/peers/py1/bin/python tests/peers/py1_client.py URL MODE TOOL ARGS_JSON

MODE is `streamable-http` (URL is the MCP endpoint, e.g. http://127.0.0.1:PORT/mcp) or
`sse` (legacy 2024-11-05 HTTP+SSE; URL is the SSE endpoint, e.g. http://127.0.0.1:PORT/sse).
Initializes, lists tools, calls TOOL with the JSON object ARGS_JSON, then prints ONE line:

    {"tools": [...], "result": <CallToolResult>, "protocolVersion": "...",
     "serverInfo": {...}, "transport": MODE}

A tool error (`isError: true`) is still a result and exits 0. Any other failure (connect,
HTTP status, protocol error, timeout) prints `py1_client: ...` on stderr and exits 1.

TLS: PEER_CA (CA bundle to verify an https:// server), PEER_CERT and PEER_KEY (a client
certificate for mTLS).
Environment: PEER_TIMEOUT (seconds, default 20) bounds the whole run; PEER_HEADERS, a JSON
object of extra HTTP headers sent on every request (e.g. {"Authorization": "Bearer x"}).
"""
import asyncio
import json
import os
import sys

import peer_common  # tests/peers/: how every peer fails and runs

NAME = "py1_client"
TIMEOUT = float(os.environ.get("PEER_TIMEOUT", "20"))


def die(msg: str, code: int = 1) -> None:
    peer_common.die(NAME, msg, code)


def tls_context():
    """PEER_CA (CA bundle to verify the server), PEER_CERT and PEER_KEY (client certificate)."""
    import ssl

    ca = os.environ.get("PEER_CA")
    if not ca:
        return None
    ctx = ssl.create_default_context(cafile=ca)
    if os.environ.get("PEER_CERT"):
        ctx.load_cert_chain(os.environ["PEER_CERT"], os.environ.get("PEER_KEY"))
    return ctx


def http_factory(ctx):
    import httpx
    from mcp.shared._httpx_utils import create_mcp_http_client

    def factory(headers=None, timeout=None, auth=None):
        if ctx is None:
            return create_mcp_http_client(headers=headers, timeout=timeout, auth=auth)
        return httpx.AsyncClient(
            headers=headers,
            timeout=timeout or httpx.Timeout(30.0, read=300.0),
            auth=auth,
            verify=ctx,
            follow_redirects=False,
        )

    return factory


async def run(url: str, mode: str, tool: str, args: dict, headers: dict | None) -> dict:
    from mcp import ClientSession

    factory = http_factory(tls_context())
    if mode == "streamable-http":
        from mcp.client.streamable_http import streamable_http_client

        http = factory(headers=headers)
        async with http, streamable_http_client(url, http_client=http) as (read, write, _sid):
            return await session_work(ClientSession, read, write, tool, args, mode)
    else:
        from mcp.client.sse import sse_client

        async with sse_client(url, headers=headers, timeout=TIMEOUT, httpx_client_factory=factory) as (read, write):
            return await session_work(ClientSession, read, write, tool, args, mode)


async def session_work(ClientSession, read, write, tool, args, mode) -> dict:
    async with ClientSession(read, write) as session:
        init = await session.initialize()
        tools = await session.list_tools()
        result = await session.call_tool(tool, args)
        return {
            "tools": [t.name for t in tools.tools],
            "result": result.model_dump(mode="json", by_alias=True, exclude_none=True),
            "protocolVersion": init.protocolVersion,
            "serverInfo": init.serverInfo.model_dump(mode="json", exclude_none=True),
            "transport": mode,
        }


def main() -> None:
    if len(sys.argv) != 5 or sys.argv[2] not in ("streamable-http", "sse"):
        die("usage: py1_client.py URL streamable-http|sse TOOL ARGS_JSON", 2)
    url, mode, tool, raw = sys.argv[1:]
    try:
        args = json.loads(raw)
        headers = json.loads(os.environ["PEER_HEADERS"]) if os.environ.get("PEER_HEADERS") else None
    except json.JSONDecodeError as e:
        die(f"bad JSON argument: {e}", 2)
    if not isinstance(args, dict):
        die("ARGS_JSON must be a JSON object", 2)

    # Backstop: whatever happens inside the event loop, the process ends.
    peer_common.run(NAME, run(url, mode, tool, args, headers), TIMEOUT, f"{mode} {url}")


if __name__ == "__main__":
    main()
