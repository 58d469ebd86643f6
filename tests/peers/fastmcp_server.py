#!/usr/bin/env python3
"""Interop peer: a FastMCP server (Python SDK 1.30, session era) with two tools.

    .cache/peers/py1/bin/python tests/peers/fastmcp_server.py                 # stdio
    .cache/peers/py1/bin/python tests/peers/fastmcp_server.py --http PORT     # Streamable HTTP
    .cache/peers/py1/bin/python tests/peers/fastmcp_server.py --sse PORT      # legacy HTTP+SSE

Tools: echo(message: str) -> str   returns message unchanged
       add(a: int, b: int) -> int  returns a + b
       lookup(key: str) -> str     annotated readOnlyHint (safe to repeat)
       write(key: str) -> str      annotated neither read-only nor idempotent
       ask(question: str) -> str   elicits an answer from the client on the call's stream
       roots() -> str              asks the client for its roots with no related request
       roots_later() -> str        answers, then asks for roots from outside any call
       last_roots() -> str         what that late question got back (or "pending")
       touch(uri: str) -> str      "notified" (and notifications/resources/updated) when this
                                   session subscribed to uri, else "not subscribed"
Resources: peer://note (subscribe/unsubscribe tracked per session).

stdio: newline-delimited JSON-RPC on stdin/stdout; logs only on stderr.
--http PORT: endpoint http://127.0.0.1:PORT/mcp (POST/GET/DELETE).
--sse PORT:  GET http://127.0.0.1:PORT/sse, POST /messages/?session_id=<hex>.
--ws PORT:   WebSocket ws://127.0.0.1:PORT/ws, subprotocol `mcp` (the SDK's own transport).
PORT 0 picks a free port. HTTP modes bind 127.0.0.1 only and, once listening, print
    fastmcp_server: listening 127.0.0.1:<port>
on stderr (read the port from there). FastMCP's DNS-rebinding protection is on, as it is
for any FastMCP bound to 127.0.0.1: Host must be 127.0.0.1:*/localhost:*/[::1]:* (else 421)
and a present Origin must be http://127.0.0.1:*/localhost:*/[::1]:* (else 403).
Extra HTTP flags: --stateless (stateless_http=True, no session ids),
--json-response (JSON bodies instead of SSE), --resumable (an event store, retry 100 ms, and a
tool detach(message) that closes its own stream before answering: resumption with
Last-Event-ID is the only way to get its answer), --tls-cert/--tls-key (HTTPS) and
--tls-client-ca (require client certificates), --fail-while FILE [--fail-status N]
[--retry-after S] (while FILE exists, tools/call POSTs get status N; GET /counts tells
what arrived per tool, with the idempotency keys seen), --tls-max-version 1.0|1.1 (an outdated server). Stop it with SIGTERM/SIGINT.
"""
import argparse
import socket
import sys

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.streamable_http import EventMessage, EventStore


class MemoryEventStore(EventStore):
    """The smallest EventStore: every event of every stream, kept in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []  # (event id, stream id, message)

    async def store_event(self, stream_id, message):
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        index = next((i for i, e in enumerate(self.events) if e[0] == last_event_id), None)
        if index is None:
            return None
        stream_id = self.events[index][1]
        for event_id, sid, message in self.events[index + 1 :]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


class Faults:
    """ASGI middleware for policy tests: while the file `flag` exists, every POSTed
    `tools/call` is answered `status` (with `Retry-After: retry_after` when given)
    without reaching the server. GET /counts answers what arrived, per tool:
    {"lookup": {"calls": N, "refused": M, "keys": [distinct idempotency keys],
                "traceparents": [the traceparent header of each call]}}."""

    def __init__(self, app, flag: str, status: int, retry_after: str | None) -> None:
        self.app, self.flag, self.status, self.retry_after = app, flag, status, retry_after
        self.counts: dict[str, dict] = {}

    async def __call__(self, scope, receive, send):
        import json
        import os

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "GET" and scope["path"] == "/counts":
            body = json.dumps(
                {
                    k: {"calls": v["calls"], "refused": v["refused"], "keys": sorted(v["keys"]), "traceparents": v["traceparents"]}
                    for k, v in self.counts.items()
                }
            ).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            return await send({"type": "http.response.body", "body": body})
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            request = json.loads(body)
        except ValueError:
            request = {}
        if isinstance(request, dict) and request.get("method") == "tools/call":
            params = request.get("params") or {}
            entry = self.counts.setdefault(
                params.get("name", "?"), {"calls": 0, "refused": 0, "keys": set(), "traceparents": []}
            )
            entry["calls"] += 1
            for name, value in scope.get("headers", []):
                if name == b"traceparent":
                    entry["traceparents"].append(value.decode())
            key = (params.get("_meta") or {}).get("dev.mcp-edge/idempotency-key")
            if key:
                entry["keys"].add(key)
            if os.path.exists(self.flag):
                entry["refused"] += 1
                headers = [(b"content-type", b"text/plain")]
                if self.retry_after:
                    headers.append((b"retry-after", self.retry_after.encode()))
                await send({"type": "http.response.start", "status": self.status, "headers": headers})
                return await send({"type": "http.response.body", "body": b"overloaded (test fault)"})
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def build(stateless: bool = False, json_response: bool = False, resumable: bool = False) -> FastMCP:
    extra = {}
    if resumable:
        extra = {"event_store": MemoryEventStore(), "retry_interval": 100}
    mcp = FastMCP(
        "mcp-edge-fastmcp-peer",
        host="127.0.0.1",
        log_level="WARNING",
        stateless_http=stateless,
        json_response=json_response,
        **extra,
    )

    if resumable:

        @mcp.tool()
        async def detach(message: str, ctx: Context) -> str:
            """Close this call's event stream (SEP-1699 polling), then answer on the resumed one."""
            import anyio

            await ctx.close_sse_stream()
            await anyio.sleep(0.3)
            return message

    from mcp.types import ToolAnnotations

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def lookup(key: str) -> str:
        """Read-only: safe to repeat."""
        return f"value of {key}"

    written: list[str] = []

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=False))
    def write(key: str) -> str:
        """Changes something each time: never repeated by a gateway."""
        written.append(key)
        return f"wrote {key}"

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def writes() -> str:
        """Every key `write` was called with, in order."""
        return ",".join(written)

    @mcp.tool()
    async def add_tool(name: str, ctx: Context) -> str:
        """Add a tool called `name` (it echoes), then say the tool list changed."""

        def added(message: str) -> str:
            return message

        mcp.add_tool(added, name=name, description=f"added at run time as {name}")
        await ctx.session.send_tool_list_changed()
        return f"added {name}"

    @mcp.tool()
    async def announce_tools(ctx: Context) -> str:
        """Say the tool list changed, without changing it."""
        await ctx.session.send_tool_list_changed()
        return "announced"

    # State kept per upstream session, as a stateful server keeps it.
    notes: dict[int, str] = {}
    pending: set = set()

    @mcp.tool()
    def remember(value: str, ctx: Context) -> str:
        """Keep `value` for this session."""
        notes[id(ctx.session)] = value
        return "remembered"

    @mcp.tool()
    def recall(ctx: Context) -> str:
        """What this session kept, or `nothing`."""
        return notes.get(id(ctx.session), "nothing")

    levels: dict[int, str] = {}

    @mcp._mcp_server.set_logging_level()
    async def on_set_level(level) -> None:
        levels[id(mcp._mcp_server.request_context.session)] = str(level)

    @mcp.tool()
    def my_level(ctx: Context) -> str:
        """The log level this session set with logging/setLevel, or `unset`."""
        return levels.get(id(ctx.session), "unset")

    @mcp.tool()
    def open_sessions() -> str:
        """How many sessions the server holds."""
        return str(len(mcp.session_manager._server_instances))

    @mcp.tool()
    async def tell_me_later(message: str, ctx: Context) -> str:
        """After the call, send `message` as a log notification to this session only (on its GET stream)."""
        import anyio

        session = ctx.session

        async def later() -> None:
            await anyio.sleep(0.3)
            await session.send_log_message(level="info", data=message, logger="peer")

        import asyncio

        task = asyncio.get_running_loop().create_task(later())
        pending.add(task)
        task.add_done_callback(pending.discard)
        return "will tell"

    @mcp.tool()
    def forget_sessions() -> str:
        """Forget every session, as a restarted server would: the SDK then answers 404 to their ids."""
        instances = mcp.session_manager._server_instances
        n = len(instances)
        instances.clear()
        return f"forgot {n}"

    @mcp.tool()
    def echo(message: str) -> str:
        """Echo the message back unchanged."""
        return message

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    from pydantic import BaseModel

    class Answer(BaseModel):
        answer: str

    @mcp.tool()
    async def ask(question: str, ctx: Context) -> str:
        """Ask the client mid-call (an elicitation, on this call's own stream)."""
        result = await ctx.elicit(message=question, schema=Answer)
        if result.action != "accept":
            return f"declined: {result.action}"
        return f"answer: {result.data.answer}"

    @mcp.tool()
    async def roots(ctx: Context) -> str:
        """Ask the client for its roots the way the SDK's `list_roots()` does: with no
        related request, so over Streamable HTTP it travels on the GET stream."""
        result = await ctx.session.list_roots()
        return "roots: " + ", ".join(str(root.uri) for root in result.roots)

    later: dict[str, str] = {}

    @mcp.tool()
    async def roots_later(ctx: Context) -> str:
        """Answer at once, then ask the client for its roots from outside any call (a
        background task); `last_roots` tells what came back."""
        import asyncio

        session = ctx.session

        async def ask() -> None:
            await asyncio.sleep(0.3)
            try:
                result = await session.list_roots()
                later["roots"] = "roots: " + ", ".join(str(root.uri) for root in result.roots)
            except Exception as e:  # noqa: BLE001 - reported through last_roots
                later["roots"] = f"failed: {e}"

        asyncio.get_running_loop().create_task(ask())
        return "asked"

    @mcp.tool()
    def last_roots() -> str:
        """What the last `roots_later` got back, or `pending`."""
        return later.get("roots", "pending")

    # Resources with subscriptions, kept per upstream session as a real server keeps
    # them: `touch(uri)` tells a session that subscribed that the resource changed.
    @mcp.resource("peer://note", name="note", mime_type="text/plain")
    def note() -> str:
        return "a note"

    subscribed: dict[int, set[str]] = {}
    lowlevel = mcp._mcp_server

    @lowlevel.subscribe_resource()
    async def on_subscribe(uri) -> None:
        session = lowlevel.request_context.session
        subscribed.setdefault(id(session), set()).add(str(uri))

    @lowlevel.unsubscribe_resource()
    async def on_unsubscribe(uri) -> None:
        session = lowlevel.request_context.session
        subscribed.setdefault(id(session), set()).discard(str(uri))

    @mcp.tool()
    async def touch(uri: str, ctx: Context) -> str:
        """Change a resource: its subscribers hear `notifications/resources/updated`."""
        if uri not in subscribed.get(id(ctx.session), set()):
            return "not subscribed"
        await ctx.session.send_resource_updated(uri)
        return "notified"

    return mcp


def websocket_app(mcp: FastMCP):
    """The SDK's WebSocket server transport (subprotocol `mcp`) at /ws."""
    import warnings

    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from mcp.server.websocket import websocket_server

    server = mcp._mcp_server

    async def endpoint(websocket) -> None:
        async with websocket_server(websocket.scope, websocket.receive, websocket.send) as (read, write):
            await server.run(read, write, server.create_initialization_options())

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


def serve_http(app, port: int, tls: dict | None = None, tls_max: str | None = None) -> None:
    import anyio
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **(tls or {}))
    if tls_max:
        import ssl

        config.load()  # uvicorn keeps a loaded config; cap the context it made
        config.ssl.set_ciphers("DEFAULT:@SECLEVEL=0")
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1
        config.ssl.maximum_version = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1}[tls_max]
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
    g.add_argument("--ws", type=int, metavar="PORT", help="serve MCP over WebSocket on 127.0.0.1:PORT/ws")
    p.add_argument("--stateless", action="store_true", help="stateless Streamable HTTP (no session id)")
    p.add_argument("--json-response", action="store_true", help="answer POSTs with JSON instead of SSE")
    p.add_argument(
        "--resumable",
        action="store_true",
        help="keep events for Last-Event-ID resumption; adds detach(message), which drops its stream before answering",
    )
    p.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate chain")
    p.add_argument("--tls-key", help="... and this PEM private key")
    p.add_argument("--fail-while", metavar="FILE", help="while FILE exists, answer every tools/call POST with --fail-status")
    p.add_argument("--fail-status", type=int, default=503, help="the status of --fail-while (default 503)")
    p.add_argument("--retry-after", help="a Retry-After header for --fail-while answers")
    p.add_argument("--tls-max-version", choices=["1.0", "1.1"], help="speak no TLS newer than this (an old server)")
    p.add_argument("--tls-client-ca", help="require client certificates issued by this CA (mTLS)")
    a = p.parse_args()

    tls = None
    if a.tls_cert:
        import ssl

        tls = {"ssl_certfile": a.tls_cert, "ssl_keyfile": a.tls_key}
        if a.tls_client_ca:
            tls.update(ssl_ca_certs=a.tls_client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)

    mcp = build(stateless=a.stateless, json_response=a.json_response, resumable=a.resumable)
    if a.http is not None:
        app = mcp.streamable_http_app()
        if a.fail_while:
            app = Faults(app, a.fail_while, a.fail_status, a.retry_after)
        serve_http(app, a.http, tls, a.tls_max_version)
    elif a.sse is not None:
        serve_http(mcp.sse_app(), a.sse, tls, a.tls_max_version)
    elif a.ws is not None:
        serve_http(websocket_app(mcp), a.ws, tls, a.tls_max_version)
    else:
        mcp.run("stdio")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
