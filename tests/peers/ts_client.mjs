#!/usr/bin/env node
// Interop peer: the official TypeScript MCP client, @modelcontextprotocol/sdk 1.32.2.
//
//   node tests/peers/ts_client.mjs [--transport streamable-http|sse] URL TOOL ARGS_JSON
//
// Default transport is Streamable HTTP (Client + StreamableHTTPClientTransport; URL is the
// MCP endpoint, e.g. http://127.0.0.1:PORT/mcp); `--transport sse` uses the legacy
// SSEClientTransport (URL is the SSE endpoint, e.g. http://127.0.0.1:PORT/sse).
// Connects (initialize + initialized), lists tools, calls TOOL with the JSON object
// ARGS_JSON, then prints ONE line:
//
//   {"tools": [...], "result": <CallToolResult>, "protocolVersion": "...",
//    "serverInfo": {...}, "transport": "...", "sessionId": "..."|null}
//
// A tool error (isError: true) exits 0. Any other failure prints `ts_client: ...` on stderr
// and exits 1 (124 on timeout).
//
// Environment: PEER_TIMEOUT (seconds, default 20); PEER_HEADERS (JSON object of extra
// headers); PEER_CA, PEER_CERT, PEER_KEY (PEM files: the CA to trust, and a client
// certificate and key for mTLS; Node's own fetch cannot present one, so then every request
// goes through an undici Agent, from the undici package tests/peers/install adds); PEERS_NODE_DIR (default <repo>/.cache/peers/node, where tests/peers/install puts
// the SDK — ESM imports do not honour NODE_PATH, so the SDK is imported by file path).
import { fileURLToPath, pathToFileURL } from "node:url";
import path from "node:path";

const NAME = "ts_client";
const TIMEOUT = Number(process.env.PEER_TIMEOUT || "20");

function die(msg, code = 1) {
  process.stderr.write(`${NAME}: ${msg}\n`);
  process.exit(code);
}

setTimeout(() => die(`timed out after ${TIMEOUT}s`, 124), TIMEOUT * 1000);

let argv = process.argv.slice(2);
let transportName = "streamable-http";
if (argv[0] === "--transport" && argv.length >= 2) {
  transportName = argv[1];
  argv = argv.slice(2);
} else if (argv[0]?.startsWith("--transport=")) {
  transportName = argv[0].split("=", 2)[1];
  argv = argv.slice(1);
}
if (argv.length !== 3 || !["streamable-http", "sse"].includes(transportName)) {
  die("usage: ts_client.mjs [--transport streamable-http|sse] URL TOOL ARGS_JSON", 2);
}
const [url, tool, rawArgs] = argv;
let args, headers;
try {
  args = JSON.parse(rawArgs);
  headers = process.env.PEER_HEADERS ? JSON.parse(process.env.PEER_HEADERS) : undefined;
} catch (e) {
  die(`bad JSON argument: ${e.message}`, 2);
}
if (!args || typeof args !== "object" || Array.isArray(args)) die("ARGS_JSON must be a JSON object", 2);

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

/// A fetch that trusts PEER_CA and presents PEER_CERT/PEER_KEY, or undefined (Node's own).
async function tlsFetch() {
  const { PEER_CA: ca, PEER_CERT: cert, PEER_KEY: key } = process.env;
  if (!ca && !cert) return undefined;
  const fs = await import("node:fs");
  const undici = await import(pathToFileURL(path.join(nodeDir, "node_modules/undici/index.js")).href);
  const connect = {};
  if (ca) connect.ca = fs.readFileSync(ca);
  if (cert) connect.cert = fs.readFileSync(cert);
  if (key) connect.key = fs.readFileSync(key);
  const dispatcher = new undici.Agent({ connect });
  return (u, init) => undici.fetch(u, { ...init, dispatcher });
}

try {
  const { Client } = await import(sdk("client/index.js"));
  const requestInit = headers ? { headers } : undefined;
  const viaTls = await tlsFetch();
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
  } else {
    const { StreamableHTTPClientTransport } = await import(sdk("client/streamableHttp.js"));
    transport = new StreamableHTTPClientTransport(new URL(url), { requestInit, fetch: viaTls });
  }
  const client = new Client({ name: "mcp-edge-ts-peer", version: "1.0.0" });
  const opts = { timeout: TIMEOUT * 1000 };
  await client.connect(transport, opts);
  const tools = await client.listTools(undefined, opts);
  const result = await client.callTool({ name: tool, arguments: args }, undefined, opts);
  const out = {
    tools: tools.tools.map((t) => t.name),
    result,
    // Both transports record the version the initialize result named (setProtocolVersion);
    // only the streamable one exposes a getter for it.
    protocolVersion: transport.protocolVersion ?? transport._protocolVersion ?? null,
    serverInfo: client.getServerVersion() ?? null,
    transport: transportName,
    sessionId: transport.sessionId ?? null,
  };
  // Close politely (DELETE for streamable HTTP); never let that decide the exit code.
  if (transportName === "streamable-http") await transport.terminateSession().catch(() => {});
  await client.close().catch(() => {});
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
} catch (e) {
  die(`${transportName} ${url}: ${describe(e)}`);
}
