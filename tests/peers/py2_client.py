#!/usr/bin/env python3
"""Interop peer: the official Python MCP client, SDK 2.3.0 (speaks 2026-07-28, falls back).

    .cache/peers/py2/bin/python tests/peers/py2_client.py [--mode auto|legacy|2026-07-28]
        [--transport streamable-http|stdio] [--refusal TOOL2 ARGS2_JSON] URL TOOL ARGS_JSON

Uses `mcp.Client` over Streamable HTTP (the default; URL is the MCP endpoint) or, with
`--transport stdio`, over stdio (URL is the server command as a JSON array argv, e.g.
'["mcp-edge","stdio","r.toml"]'; the server inherits this environment, and its stderr
goes to ours). Options come first, in any order.
  --mode auto (default): probe `server/discover` at 2026-07-28 and fall back to the
          `initialize` handshake when the server is not modern;
  --mode legacy: `initialize` handshake only;
  --mode 2026-07-28: adopt the modern version with no probe.
Lists tools, calls TOOL with the JSON object ARGS_JSON, then prints ONE line:

    {"tools": [...], "result": <CallToolResult>, "protocolVersion": "...",
     "era": "modern"|"handshake", "mode": "...", "serverInfo": {...}|null}

plus "transport" when --transport is given. "era" is "modern" when the negotiated version
is a stateless (2026-07-28+) one, else "handshake" (initialize + session).
--refusal TOOL2 ARGS2_JSON: then, with the same client, calls TOOL2 up to 6 times until one
fails with a JSON-RPC error (MCPError), waits its data.retry_after_ms + 100 ms (1000 ms
without one) and calls TOOL2 once more; the line gains "refused": {"code", "message",
"data"} and "after": <CallToolResult>. Exits 1 when no call was refused or the call after
the refusal fails (the session did not survive it).
A tool error (`isError: true`) exits 0. Any other failure prints `py2_client: ...` on
stderr and exits 1.

TLS: PEER_CA (CA bundle to verify an https:// server), PEER_CERT and PEER_KEY (a client
certificate for mTLS). PEER_HTTP2=1: offer HTTP/2 (ALPN h2, needs the `h2` package), and
the line gains "httpVersions": [the HTTP versions of the responses].
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


def http_client(headers: dict | None, versions: set | None):
    """The SDK's own httpx2 client, unless TLS or HTTP/2 asks for more. `versions`, when
    given, collects the HTTP version of every response."""
    import httpx2
    from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT, create_mcp_http_client

    ctx = tls_context()
    if ctx is None and versions is None:
        return create_mcp_http_client(headers=headers)

    async def record(response):
        versions.add(response.http_version)

    extra = {}
    if ctx is not None:
        extra["verify"] = ctx
    if versions is not None:
        extra["http2"] = True
        extra["event_hooks"] = {"response": [record]}
    if headers is not None:
        extra["headers"] = headers
    return httpx2.AsyncClient(timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT), **extra)


async def run(url: str, mode: str, transport: str | None, tool: str, args: dict, headers: dict | None, refusal) -> dict:
    from contextlib import AsyncExitStack

    from mcp import Client

    versions = set() if os.environ.get("PEER_HTTP2") == "1" and transport != "stdio" else None
    async with AsyncExitStack() as stack:
        if transport == "stdio":
            from mcp.client.stdio import StdioServerParameters

            argv = peer_common.stdio_argv(url)
            server = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ))
        else:
            from mcp.client.streamable_http import streamable_http_client

            http = await stack.enter_async_context(http_client(headers, versions))
            server = streamable_http_client(url, http_client=http)
        # cache=None: a peer should hit the server on every call, never answer from a cache.
        client = await stack.enter_async_context(Client(server, mode=mode, cache=None))
        out = await client_work(client, mode, tool, args, refusal)
    if transport is not None:
        out["transport"] = transport
    if versions is not None:
        out["httpVersions"] = sorted(versions)
    return out


def dump(result) -> dict:
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


async def client_work(client, mode: str, tool: str, args: dict, refusal) -> dict:
    from mcp.shared.exceptions import MCPError
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    tools = await client.list_tools()
    result = await client.call_tool(tool, args)
    version = client.protocol_version
    info = client.server_info
    out = {
        "tools": [t.name for t in tools.tools],
        "result": dump(result),
        "protocolVersion": version,
        "era": "modern" if version in MODERN_PROTOCOL_VERSIONS else "handshake",
        "mode": mode,
        "serverInfo": info.model_dump(mode="json", exclude_none=True) if info else None,
    }
    if refusal is not None:

        async def call(name, arguments):
            return dump(await client.call_tool(name, arguments))

        def fields(e):
            return {"code": e.code, "message": e.message, "data": e.data}

        out.update(await peer_common.prove_refusal(call, MCPError, fields, *refusal))
    return out


USAGE = (
    "usage: py2_client.py [--mode auto|legacy|2026-07-28] [--transport streamable-http|stdio] "
    "[--refusal TOOL ARGS_JSON] URL TOOL ARGS_JSON"
)


def json_object(raw: str) -> dict:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        die(f"bad JSON argument: {e}", 2)
    if not isinstance(value, dict):
        die("ARGS_JSON must be a JSON object", 2)
    return value


def main() -> None:
    try:
        opts, argv = peer_common.split_options(sys.argv[1:], {"--mode": 1, "--transport": 1, "--refusal": 2})
    except ValueError as e:
        die(f"{e}; {USAGE}", 2)
    mode = opts.get("--mode", ["auto"])[0]
    transport = opts["--transport"][0] if "--transport" in opts else None
    if len(argv) != 3 or transport not in (None, "streamable-http", "stdio"):
        die(USAGE, 2)
    url, tool, raw = argv
    args = json_object(raw)
    refusal = (opts["--refusal"][0], json_object(opts["--refusal"][1])) if "--refusal" in opts else None
    if transport == "stdio":
        try:
            peer_common.stdio_argv(url)
        except ValueError as e:
            die(str(e), 2)
    try:
        headers = json.loads(os.environ["PEER_HEADERS"]) if os.environ.get("PEER_HEADERS") else None
    except json.JSONDecodeError as e:
        die(f"bad JSON argument: {e}", 2)

    what = f"mode {mode} {url}" if transport is None else f"{transport} mode {mode} {url}"
    peer_common.run(NAME, run(url, mode, transport, tool, args, headers, refusal), TIMEOUT, what)


if __name__ == "__main__":
    main()
