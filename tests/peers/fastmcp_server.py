#!/usr/bin/env python3
"""Interop peer: a FastMCP server (Python SDK 1.30, session era) with two tools.

    .cache/peers/py1/bin/python tests/peers/fastmcp_server.py                 # stdio
    .cache/peers/py1/bin/python tests/peers/fastmcp_server.py --http PORT     # Streamable HTTP
    .cache/peers/py1/bin/python tests/peers/fastmcp_server.py --sse PORT      # legacy HTTP+SSE

Tools: echo(message: str) -> str   returns message unchanged
       add(a: int, b: int) -> int  returns a + b

stdio: newline-delimited JSON-RPC on stdin/stdout; logs only on stderr.
--http PORT: endpoint http://127.0.0.1:PORT/mcp (POST/GET/DELETE).
--sse PORT:  GET http://127.0.0.1:PORT/sse, POST /messages/?session_id=<hex>.
PORT 0 picks a free port. HTTP modes bind 127.0.0.1 only and, once listening, print
    fastmcp_server: listening 127.0.0.1:<port>
on stderr (read the port from there). FastMCP's DNS-rebinding protection is on, as it is
for any FastMCP bound to 127.0.0.1: Host must be 127.0.0.1:*/localhost:*/[::1]:* (else 421)
and a present Origin must be http://127.0.0.1:*/localhost:*/[::1]:* (else 403).
Extra HTTP flags: --stateless (stateless_http=True, no session ids),
--json-response (JSON bodies instead of SSE), --tls-cert/--tls-key (HTTPS) and
--tls-client-ca (require client certificates). Stop it with SIGTERM/SIGINT.
"""
import argparse
import socket
import sys

from mcp.server.fastmcp import FastMCP


def build(stateless: bool = False, json_response: bool = False) -> FastMCP:
    mcp = FastMCP(
        "mcp-edge-fastmcp-peer",
        host="127.0.0.1",
        log_level="WARNING",
        stateless_http=stateless,
        json_response=json_response,
    )

    @mcp.tool()
    def echo(message: str) -> str:
        """Echo the message back unchanged."""
        return message

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return mcp


def serve_http(app, port: int, tls: dict | None = None) -> None:
    import anyio
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **(tls or {}))
    server = uvicorn.Server(config)

    async def main() -> None:
        # Announce only once uvicorn has started (lifespan done, accepting).
        async def announce() -> None:
            while not server.started:
                await anyio.sleep(0.02)
            sys.stderr.write(f"fastmcp_server: listening 127.0.0.1:{bound}\n")
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
    g.add_argument("--sse", type=int, metavar="PORT", help="serve legacy HTTP+SSE on 127.0.0.1:PORT/sse")
    p.add_argument("--stateless", action="store_true", help="stateless Streamable HTTP (no session id)")
    p.add_argument("--json-response", action="store_true", help="answer POSTs with JSON instead of SSE")
    p.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate chain")
    p.add_argument("--tls-key", help="... and this PEM private key")
    p.add_argument("--tls-client-ca", help="require client certificates issued by this CA (mTLS)")
    a = p.parse_args()

    tls = None
    if a.tls_cert:
        import ssl

        tls = {"ssl_certfile": a.tls_cert, "ssl_keyfile": a.tls_key}
        if a.tls_client_ca:
            tls.update(ssl_ca_certs=a.tls_client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)

    mcp = build(stateless=a.stateless, json_response=a.json_response)
    if a.http is not None:
        serve_http(mcp.streamable_http_app(), a.http, tls)
    elif a.sse is not None:
        serve_http(mcp.sse_app(), a.sse, tls)
    else:
        mcp.run("stdio")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
