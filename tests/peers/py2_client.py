#!/usr/bin/env python3
"""Interop peer: the official Python MCP client, SDK 2.3.0 (speaks 2026-07-28, falls back).

    .cache/peers/py2/bin/python tests/peers/py2_client.py [--mode auto|legacy|2026-07-28] URL TOOL ARGS_JSON

Streamable HTTP only (URL is the MCP endpoint). Uses `mcp.Client`:
  --mode auto (default): probe `server/discover` at 2026-07-28 and fall back to the
          `initialize` handshake when the server is not modern;
  --mode legacy: `initialize` handshake only;
  --mode 2026-07-28: adopt the modern version with no probe.
Lists tools, calls TOOL with the JSON object ARGS_JSON, then prints ONE line:

    {"tools": [...], "result": <CallToolResult>, "protocolVersion": "...",
     "era": "modern"|"handshake", "mode": "...", "serverInfo": {...}|null}

"era" is "modern" when the negotiated version is a stateless (2026-07-28+) one, else
"handshake" (initialize + session). A tool error (`isError: true`) exits 0. Any other failure
prints `py2_client: ...` on stderr and exits 1.

Environment: PEER_TIMEOUT (seconds, default 20); PEER_HEADERS (JSON object of extra headers).
"""
import asyncio
import json
import os
import sys

import peer_common  # tests/peers/: how every peer fails and runs

NAME = "py2_client"
TIMEOUT = float(os.environ.get("PEER_TIMEOUT", "20"))


def die(msg: str, code: int = 1) -> None:
    peer_common.die(NAME, msg, code)


async def run(url: str, mode: str, tool: str, args: dict, headers: dict | None) -> dict:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    http = create_mcp_http_client(headers=headers)
    async with http:
        # cache=None: a peer should hit the server on every call, never answer from a cache.
        async with Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
            tools = await client.list_tools()
            result = await client.call_tool(tool, args)
            version = client.protocol_version
            info = client.server_info
            return {
                "tools": [t.name for t in tools.tools],
                "result": result.model_dump(mode="json", by_alias=True, exclude_none=True),
                "protocolVersion": version,
                "era": "modern" if version in MODERN_PROTOCOL_VERSIONS else "handshake",
                "mode": mode,
                "serverInfo": info.model_dump(mode="json", exclude_none=True) if info else None,
            }


def main() -> None:
    argv = sys.argv[1:]
    mode = "auto"
    if len(argv) >= 2 and argv[0] == "--mode":
        mode, argv = argv[1], argv[2:]
    elif argv and argv[0].startswith("--mode="):
        mode, argv = argv[0].split("=", 1)[1], argv[1:]
    if len(argv) != 3:
        die("usage: py2_client.py [--mode auto|legacy|2026-07-28] URL TOOL ARGS_JSON", 2)
    url, tool, raw = argv
    try:
        args = json.loads(raw)
        headers = json.loads(os.environ["PEER_HEADERS"]) if os.environ.get("PEER_HEADERS") else None
    except json.JSONDecodeError as e:
        die(f"bad JSON argument: {e}", 2)
    if not isinstance(args, dict):
        die("ARGS_JSON must be a JSON object", 2)

    peer_common.run(NAME, run(url, mode, tool, args, headers), TIMEOUT, f"mode {mode} {url}")


if __name__ == "__main__":
    main()
