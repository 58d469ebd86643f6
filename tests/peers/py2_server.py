#!/usr/bin/env python3
"""Interop peer: an MCPServer (Python SDK 2.3.0) that speaks 2026-07-28, with two tools.

    .cache/peers/py2/bin/python tests/peers/py2_server.py                # stdio
    .cache/peers/py2/bin/python tests/peers/py2_server.py --stdio        # the same
    .cache/peers/py2/bin/python tests/peers/py2_server.py --http PORT    # Streamable HTTP

Tools: echo(message: str) -> str   returns message unchanged
       add(a: int, b: int) -> int  returns a + b

Both transports serve both eras, as the SDK does:
- modern (2026-07-28): `server/discover`, then self-contained requests, no session;
  on HTTP a POST whose MCP-Protocol-Version header names a modern version is answered
  by itself (no Mcp-Session-Id);
- handshake (2025-11-25 and earlier): `initialize` + session, as for a 1.x client.

--http PORT: endpoint http://127.0.0.1:PORT/mcp (POST/GET/DELETE). PORT 0 picks a free
port. It binds 127.0.0.1 only and, once listening, prints
    py2_server: listening 127.0.0.1:<port>
on stderr (read the port from there). The SDK's DNS-rebinding protection is on, as for
any server bound to 127.0.0.1: Host must be 127.0.0.1:*/localhost:*/[::1]:* (else 421)
and a present Origin must be http://127.0.0.1:*/localhost:*/[::1]:* (else 403).
Extra HTTP flags: --stateless (handshake era without session ids; the modern era never has
one), --json-response (JSON bodies instead of SSE).
stdio: newline-delimited JSON-RPC on stdin/stdout; logs only on stderr.
Stop it with SIGTERM/SIGINT.
"""
import argparse
import socket
import sys

NAME = "py2_server"


def build():
    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("mcp-edge-py2-peer", version="2.3.0", log_level="WARNING")

    @mcp.tool()
    def echo(message: str) -> str:
        """Echo the message back unchanged."""
        return message

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return mcp


def serve_http(app, port: int) -> None:
    import anyio
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))

    async def main() -> None:
        # Announce only once uvicorn has started (lifespan done, accepting).
        async def announce() -> None:
            while not server.started:
                await anyio.sleep(0.02)
            sys.stderr.write(f"{NAME}: listening 127.0.0.1:{bound}\n")
            sys.stderr.flush()

        async with anyio.create_task_group() as tg:
            tg.start_soon(announce)
            await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()

    anyio.run(main)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--http", type=int, metavar="PORT", help="serve Streamable HTTP on 127.0.0.1:PORT/mcp")
    g.add_argument("--stdio", action="store_true", help="serve on stdin/stdout (the default)")
    p.add_argument("--stateless", action="store_true", help="handshake era: stateless Streamable HTTP (no session id)")
    p.add_argument("--json-response", action="store_true", help="answer POSTs with JSON instead of SSE")
    a = p.parse_args()

    mcp = build()
    if a.http is not None:
        app = mcp.streamable_http_app(stateless_http=a.stateless, json_response=a.json_response, host="127.0.0.1")
        serve_http(app, a.http)
    else:
        mcp.run("stdio")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
