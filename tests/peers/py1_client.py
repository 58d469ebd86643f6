#!/usr/bin/env python3
"""Interop peer: the official Python MCP client, SDK 1.30 (session era).

    .cache/peers/py1/bin/python tests/peers/py1_client.py [--refusal TOOL2 ARGS2_JSON] URL MODE TOOL ARGS_JSON

MODE is `streamable-http` (URL is the MCP endpoint, e.g. http://127.0.0.1:PORT/mcp),
`sse` (legacy 2024-11-05 HTTP+SSE; URL is the SSE endpoint, e.g. http://127.0.0.1:PORT/sse),
`websocket` (the SDK's WebSocket transport, subprotocol `mcp`; URL is ws://… or wss://…) or
`stdio` (URL is the server command as a JSON array argv, e.g. '["mcp-edge","stdio","r.toml"]';
the server inherits this environment, and its stderr goes to ours).
Initializes, lists tools, calls TOOL with the JSON object ARGS_JSON, then prints ONE line:

    {"tools": [...], "result": <CallToolResult>, "protocolVersion": "...",
     "serverInfo": {...}, "transport": MODE}

--refusal TOOL2 ARGS2_JSON: then, on the same session, calls TOOL2 up to 6 times until one
fails with a JSON-RPC error (McpError), waits its data.retry_after_ms + 100 ms (1000 ms
without one) and calls TOOL2 once more; the line gains "refused": {"code", "message",
"data"} and "after": <CallToolResult>. Exits 1 when no call was refused or the call after
the refusal fails (the session did not survive it).

A tool error (`isError: true`) is still a result and exits 0. Any other failure (connect,
HTTP status, protocol error, timeout) prints `py1_client: ...` on stderr and exits 1.

TLS: PEER_CA (CA bundle to verify an https:// or wss:// server), PEER_CERT and PEER_KEY (a
client certificate for mTLS). PEER_HTTP2=1: HTTP clients offer HTTP/2 (ALPN h2, needs the
`h2` package), and the line gains "httpVersions": [the HTTP versions of the responses].
Environment: PEER_TIMEOUT (seconds, default 20) bounds the whole run; PEER_HEADERS, a JSON
object of extra HTTP headers sent on every request (e.g. {"Authorization": "Bearer x"};
also on the WebSocket handshake).
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


def http_factory(ctx, versions: set | None):
    """httpx clients for the HTTP transports: the SDK's own, unless TLS or HTTP/2 asks
    for more. `versions`, when given, collects the HTTP version of every response."""
    import httpx
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def record(response):
        versions.add(response.http_version)

    def factory(headers=None, timeout=None, auth=None):
        if ctx is None and versions is None:
            return create_mcp_http_client(headers=headers, timeout=timeout, auth=auth)
        extra = {}
        if ctx is not None:
            extra["verify"] = ctx
        if versions is not None:
            extra["http2"] = True
            extra["event_hooks"] = {"response": [record]}
        return httpx.AsyncClient(
            headers=headers,
            timeout=timeout or httpx.Timeout(30.0, read=300.0),
            auth=auth,
            follow_redirects=False,
            **extra,
        )

    return factory


def websocket_transport(url: str, headers: dict | None, ctx):
    """The SDK's websocket_client, with PEER_HEADERS on the handshake and PEER_CA for wss://
    (it takes neither itself, so its `ws_connect` gets them)."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import mcp.client.websocket as ws

    plain = ws.ws_connect

    def connect(uri, **kwargs):
        if headers:
            kwargs["additional_headers"] = headers
        if ctx is not None and uri.startswith("wss:"):
            kwargs["ssl"] = ctx
        return plain(uri, **kwargs)

    ws.ws_connect = connect
    return ws.websocket_client(url)


async def run(url: str, mode: str, tool: str, args: dict, headers: dict | None, refusal) -> dict:
    from mcp import ClientSession

    ctx = tls_context()
    versions = set() if os.environ.get("PEER_HTTP2") == "1" else None
    factory = http_factory(ctx, versions)
    if mode == "streamable-http":
        from mcp.client.streamable_http import streamable_http_client

        http = factory(headers=headers)
        async with http, streamable_http_client(url, http_client=http) as (read, write, _sid):
            out = await session_work(ClientSession, read, write, tool, args, mode, refusal)
    elif mode == "sse":
        from mcp.client.sse import sse_client

        async with sse_client(url, headers=headers, timeout=TIMEOUT, httpx_client_factory=factory) as (read, write):
            out = await session_work(ClientSession, read, write, tool, args, mode, refusal)
    elif mode == "websocket":
        async with websocket_transport(url, headers, ctx) as (read, write):
            return await session_work(ClientSession, read, write, tool, args, mode, refusal)
    else:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        argv = peer_common.stdio_argv(url)
        server = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ))
        async with stdio_client(server) as (read, write):
            return await session_work(ClientSession, read, write, tool, args, mode, refusal)
    if versions is not None:
        out["httpVersions"] = sorted(versions)
    return out


def dump(result) -> dict:
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


async def session_work(ClientSession, read, write, tool, args, mode, refusal) -> dict:
    from mcp.shared.exceptions import McpError

    async with ClientSession(read, write) as session:
        init = await session.initialize()
        tools = await session.list_tools()
        result = await session.call_tool(tool, args)
        out = {
            "tools": [t.name for t in tools.tools],
            "result": dump(result),
            "protocolVersion": init.protocolVersion,
            "serverInfo": init.serverInfo.model_dump(mode="json", exclude_none=True),
            "transport": mode,
        }
        if refusal is not None:

            async def call(name, arguments):
                return dump(await session.call_tool(name, arguments))

            def fields(e):
                return e.error.model_dump(mode="json", exclude_none=False, include={"code", "message", "data"})

            out.update(await peer_common.prove_refusal(call, McpError, fields, *refusal))
        return out


MODES = ("streamable-http", "sse", "websocket", "stdio")
USAGE = "usage: py1_client.py [--refusal TOOL ARGS_JSON] URL streamable-http|sse|websocket|stdio TOOL ARGS_JSON"


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
        opts, argv = peer_common.split_options(sys.argv[1:], {"--refusal": 2})
    except ValueError as e:
        die(f"{e}; {USAGE}", 2)
    if len(argv) != 4 or argv[1] not in MODES:
        die(USAGE, 2)
    url, mode, tool, raw = argv
    args = json_object(raw)
    refusal = None
    if "--refusal" in opts:
        refusal = (opts["--refusal"][0], json_object(opts["--refusal"][1]))
    if mode == "stdio":
        try:
            peer_common.stdio_argv(url)
        except ValueError as e:
            die(str(e), 2)
    try:
        headers = json.loads(os.environ["PEER_HEADERS"]) if os.environ.get("PEER_HEADERS") else None
    except json.JSONDecodeError as e:
        die(f"bad JSON argument: {e}", 2)

    # Backstop: whatever happens inside the event loop, the process ends.
    peer_common.run(NAME, run(url, mode, tool, args, headers, refusal), TIMEOUT, f"{mode} {url}")


if __name__ == "__main__":
    main()
