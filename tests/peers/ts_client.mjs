#!/usr/bin/env node
// Interop peer: the official TypeScript MCP client, @modelcontextprotocol/sdk 1.32.2.
//
//   node tests/peers/ts_client.mjs [--transport streamable-http|sse|websocket|stdio]
//        [--refusal TOOL2 ARGS2_JSON] URL TOOL ARGS_JSON
//
// Default transport is Streamable HTTP (Client + StreamableHTTPClientTransport; URL is the
// MCP endpoint, e.g. http://127.0.0.1:PORT/mcp); `--transport sse` uses the legacy
// SSEClientTransport (URL is the SSE endpoint, e.g. http://127.0.0.1:PORT/sse);
// `websocket` the SDK's WebSocketClientTransport (subprotocol `mcp`; URL is ws://… or
// wss://…; Node 20 has no global WebSocket, so undici's is used); `stdio` the
// StdioClientTransport (URL is the server command as a JSON array argv, e.g.
// '["mcp-edge","stdio","r.toml"]'; the server inherits this environment, and its stderr
// goes to ours). Options come first, in any order.
// Connects (initialize + initialized), lists tools, calls TOOL with the JSON object
// ARGS_JSON, then prints ONE line:
//
//   {"tools": [...], "result": <CallToolResult>, "protocolVersion": "...",
//    "serverInfo": {...}, "transport": "...", "sessionId": "..."|null}
//
// --refusal TOOL2 ARGS2_JSON: then, with the same client, calls TOOL2 up to 6 times until
// one fails with a JSON-RPC error (McpError), waits its data.retry_after_ms + 100 ms (1000 ms
// without one) and calls TOOL2 once more; the line gains "refused": {"code", "message",
// "data"} and "after": <CallToolResult>. Exits 1 when no call was refused or the call after
// the refusal fails (the session did not survive it).
//
// A tool error (isError: true) exits 0. Any other failure prints `ts_client: ...` on stderr
// and exits 1 (124 on timeout).
//
// Environment: PEER_TIMEOUT (seconds, default 20); PEER_HEADERS (JSON object of extra
// headers; also on the WebSocket handshake); PEER_CA, PEER_CERT, PEER_KEY (PEM files: the
// CA to trust, and a client certificate and key for mTLS; Node's own fetch cannot present
// one, so then every request goes through an undici Agent, from the undici package
// tests/peers/install adds); PEER_HTTP2=1 (the same Agent with allowH2: HTTP/2 when the
// server offers it by ALPN; the line gains "httpVersions": [the HTTP versions of the
// connections]); PEERS_NODE_DIR (default <repo>/.cache/peers/node, where tests/peers/install
// puts the SDK — ESM imports do not honour NODE_PATH, so the SDK is imported by file path).
import { fileURLToPath, pathToFileURL } from "node:url";
import path from "node:path";

const NAME = "ts_client";
const TIMEOUT = Number(process.env.PEER_TIMEOUT || "20");

function die(msg, code = 1) {
  process.stderr.write(`${NAME}: ${msg}\n`);
  process.exit(code);
}

setTimeout(() => die(`timed out after ${TIMEOUT}s`, 124), TIMEOUT * 1000);

const TRANSPORTS = ["streamable-http", "sse", "websocket", "stdio"];
const USAGE =
  "usage: ts_client.mjs [--transport streamable-http|sse|websocket|stdio] [--refusal TOOL ARGS_JSON] URL TOOL ARGS_JSON";
let argv = process.argv.slice(2);
let transportName = "streamable-http";
let refusal;
while (argv[0]?.startsWith("--")) {
  if (argv[0] === "--transport" && argv.length >= 2) {
    transportName = argv[1];
    argv = argv.slice(2);
  } else if (argv[0].startsWith("--transport=")) {
    transportName = argv[0].split("=", 2)[1];
    argv = argv.slice(1);
  } else if (argv[0] === "--refusal" && argv.length >= 3) {
    refusal = { tool: argv[1], raw: argv[2] };
    argv = argv.slice(3);
  } else {
    die(USAGE, 2);
  }
}
if (argv.length !== 3 || !TRANSPORTS.includes(transportName)) die(USAGE, 2);
const [url, tool, rawArgs] = argv;
function jsonObject(raw) {
  let value;
  try {
    value = JSON.parse(raw);
  } catch (e) {
    die(`bad JSON argument: ${e.message}`, 2);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) die("ARGS_JSON must be a JSON object", 2);
  return value;
}
const args = jsonObject(rawArgs);
if (refusal) refusal.args = jsonObject(refusal.raw);
let headers, serverArgv;
try {
  headers = process.env.PEER_HEADERS ? JSON.parse(process.env.PEER_HEADERS) : undefined;
} catch (e) {
  die(`bad JSON argument: ${e.message}`, 2);
}
if (transportName === "stdio") {
  try {
    serverArgv = JSON.parse(url);
  } catch (e) {
    die(`for stdio, URL must be a JSON array argv: ${e.message}`, 2);
  }
  if (!Array.isArray(serverArgv) || !serverArgv.length || !serverArgv.every((a) => typeof a === "string")) {
    die("for stdio, URL must be a non-empty JSON array of strings", 2);
  }
}

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeDir = process.env.PEERS_NODE_DIR || path.resolve(here, "../../.cache/peers/node");
const sdk = (p) =>
  pathToFileURL(path.join(nodeDir, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href;

function describe(e) {
  const parts = [e?.name && e.name !== "Error" ? `${e.name}: ${e.message}` : String(e?.message ?? e)];
  if (e?.code !== undefined) parts.push(`code=${e.code}`);
  if (e?.cause) parts.push(`cause: ${describe(e.cause)}`);
  return parts.join(" ");
}

const undiciModule = () => import(pathToFileURL(path.join(nodeDir, "node_modules/undici/index.js")).href);

/// The undici `connect` options for PEER_CA, PEER_CERT and PEER_KEY, or undefined.
async function tlsConnect() {
  const { PEER_CA: ca, PEER_CERT: cert, PEER_KEY: key } = process.env;
  if (!ca && !cert) return undefined;
  const fs = await import("node:fs");
  const connect = {};
  if (ca) connect.ca = fs.readFileSync(ca);
  if (cert) connect.cert = fs.readFileSync(cert);
  if (key) connect.key = fs.readFileSync(key);
  return connect;
}

const HTTP2 = process.env.PEER_HTTP2 === "1";
/// With PEER_HTTP2=1: the HTTP version of every connection undici makes (from its ALPN).
const httpVersions = new Set();
if (HTTP2) {
  // undici warns on stderr that its HTTP/2 is experimental; the peer's stderr is for failures.
  const emitWarning = process.emitWarning;
  process.emitWarning = (warning, ...rest) =>
    rest[0]?.code === "UNDICI-H2" ? undefined : emitWarning.call(process, warning, ...rest);
  const dc = await import("node:diagnostics_channel");
  dc.channel("undici:client:connected").subscribe(({ socket }) => {
    httpVersions.add(socket?.alpnProtocol === "h2" ? "HTTP/2" : "HTTP/1.1");
  });
}

/// A fetch that trusts PEER_CA, presents PEER_CERT/PEER_KEY and, with PEER_HTTP2=1, allows
/// HTTP/2; or undefined (Node's own).
async function tlsFetch(connect) {
  if (!connect && !HTTP2) return undefined;
  const undici = await undiciModule();
  const dispatcher = new undici.Agent({ connect: connect ?? {}, ...(HTTP2 ? { allowH2: true } : {}) });
  return (u, init) => undici.fetch(u, { ...init, dispatcher });
}

/// What `new WebSocket(url, "mcp")` in the SDK's WebSocketClientTransport gets: undici's
/// WebSocket (Node 20 has no global one), with PEER_HEADERS and the TLS options.
async function installWebSocket(connect) {
  const undici = await undiciModule();
  const dispatcher = connect ? new undici.Agent({ connect }) : undefined;
  globalThis.WebSocket = class extends undici.WebSocket {
    constructor(u, protocols) {
      super(u, { protocols, ...(dispatcher ? { dispatcher } : {}), ...(headers ? { headers } : {}) });
    }
  };
}

/// McpError's message is "MCP error <code>: <message>"; the refusal records the message.
function errorFields(e) {
  const prefix = `MCP error ${e.code}: `;
  const message = e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
  return { code: e.code, message, data: e.data ?? null };
}

const MAX_REFUSAL_TRIES = 6;

/// --refusal: up to 6 calls until one fails with a JSON-RPC error, a wait of its
/// retry_after_ms + 100 ms, then one more call on the same client, which must succeed.
async function proveRefusal(client, McpError, opts) {
  const call = () => client.callTool({ name: refusal.tool, arguments: refusal.args }, undefined, opts);
  let refused;
  for (let i = 0; i < MAX_REFUSAL_TRIES && !refused; i++) {
    try {
      await call();
    } catch (e) {
      if (!(e instanceof McpError)) throw e;
      refused = errorFields(e);
    }
  }
  if (!refused) die(`${transportName} ${url}: no call was refused (${MAX_REFUSAL_TRIES} calls of ${refusal.tool} all answered)`);
  const retry = refused.data?.retry_after_ms;
  const waitMs = typeof retry === "number" ? retry + 100 : 1000;
  await new Promise((resolve) => setTimeout(resolve, waitMs));
  try {
    return { refused, after: await call() };
  } catch (e) {
    die(
      `${transportName} ${url}: the session did not survive the refusal (refused ${refused.code} ` +
        `${JSON.stringify(refused.message)}, then ${refusal.tool} after ${waitMs} ms failed: ${describe(e)})`,
    );
  }
}

try {
  const { Client } = await import(sdk("client/index.js"));
  const { McpError } = await import(sdk("types.js"));
  const requestInit = headers ? { headers } : undefined;
  const connect = await tlsConnect();
  const viaTls = transportName === "websocket" || transportName === "stdio" ? undefined : await tlsFetch(connect);
  const fetch = viaTls ?? globalThis.fetch;
  let transport;
  if (transportName === "sse") {
    const { SSEClientTransport } = await import(sdk("client/sse.js"));
    transport = new SSEClientTransport(new URL(url), {
      requestInit,
      fetch: viaTls,
      eventSourceInit:
        headers || viaTls
          ? { fetch: (u, init) => fetch(u, { ...init, headers: { ...init?.headers, ...headers } }) }
          : undefined,
    });
  } else if (transportName === "websocket") {
    await installWebSocket(connect);
    const { WebSocketClientTransport } = await import(sdk("client/websocket.js"));
    transport = new WebSocketClientTransport(new URL(url));
  } else if (transportName === "stdio") {
    const { StdioClientTransport } = await import(sdk("client/stdio.js"));
    transport = new StdioClientTransport({
      command: serverArgv[0],
      args: serverArgv.slice(1),
      env: { ...process.env },
      stderr: "inherit",
    });
  } else {
    const { StreamableHTTPClientTransport } = await import(sdk("client/streamableHttp.js"));
    transport = new StreamableHTTPClientTransport(new URL(url), { requestInit, fetch: viaTls });
  }
  // The WebSocket and stdio transports keep no protocol version; record the one Client sets.
  if (!transport.setProtocolVersion) transport.setProtocolVersion = (v) => (transport._protocolVersion = v);
  const client = new Client({ name: "mcp-edge-ts-peer", version: "1.0.0" });
  const opts = { timeout: TIMEOUT * 1000 };
  await client.connect(transport, opts);
  const tools = await client.listTools(undefined, opts);
  const result = await client.callTool({ name: tool, arguments: args }, undefined, opts);
  const out = {
    tools: tools.tools.map((t) => t.name),
    result,
    // Both HTTP transports record the version the initialize result named
    // (setProtocolVersion); only the streamable one exposes a getter for it.
    protocolVersion: transport.protocolVersion ?? transport._protocolVersion ?? null,
    serverInfo: client.getServerVersion() ?? null,
    transport: transportName,
    sessionId: transport.sessionId ?? null,
  };
  if (refusal) Object.assign(out, await proveRefusal(client, McpError, opts));
  if (HTTP2 && viaTls) out.httpVersions = [...httpVersions].sort();
  // Close politely (DELETE for streamable HTTP); never let that decide the exit code.
  if (transportName === "streamable-http") await transport.terminateSession().catch(() => {});
  await client.close().catch(() => {});
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
} catch (e) {
  die(`${transportName} ${url}: ${describe(e)}`);
}
