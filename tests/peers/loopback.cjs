// Preload that keeps Node servers on loopback.
//
// server-everything and supergateway call `app.listen(PORT)` without a host, which binds
// every interface. Loaded with `node --require ./tests/peers/loopback.cjs ...`, this rewrites
// net.Server.prototype.listen (which http.Server and Express inherit) so that every TCP
// listen binds 127.0.0.1 (or LOOPBACK_HOST, which must itself be a loopback address).
// Unix-socket paths and handles pass through untouched.
//
// Once a TCP server is listening it prints one line to stderr:
//     loopback.cjs: listening 127.0.0.1:43117
// so a test can start the server with PORT=0 and read the real port from stderr
// (server-everything itself would report "port 0"). If LOOPBACK_PORT_FILE is set, the
// port number is also written to that file.
//
// Launching server-everything (paths relative to the repo root):
//   PORT=0 node --require ./tests/peers/loopback.cjs \
//     .cache/peers/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp
//       -> endpoint http://127.0.0.1:<port>/mcp        (POST/GET/DELETE)
//   PORT=0 node --require ./tests/peers/loopback.cjs \
//     .cache/peers/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js sse
//       -> GET http://127.0.0.1:<port>/sse, POST /message?sessionId=<uuid>
"use strict";
const net = require("node:net");
const fs = require("node:fs");

const HOST = process.env.LOOPBACK_HOST || "127.0.0.1";
if (!/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(HOST)) {
  throw new Error(`loopback.cjs: LOOPBACK_HOST=${HOST} is not a loopback address`);
}

const origListen = net.Server.prototype.listen;
const isPort = (v) =>
  typeof v === "number" || (typeof v === "string" && /^\d+$/.test(v));

net.Server.prototype.listen = function (...args) {
  const first = args[0];
  let tcp = false;
  if (isPort(first)) {
    tcp = true;
    // listen(port[, host][, backlog][, callback])
    if (typeof args[1] === "string") args[1] = HOST;
    else args.splice(1, 0, HOST);
  } else if (first === undefined || typeof first === "function") {
    // listen() / listen(callback): random port on all interfaces -> loopback.
    tcp = true;
    args.splice(0, first === undefined ? 1 : 0, 0, HOST);
  } else if (first && typeof first === "object" && !(first instanceof net.Server) &&
             first.path === undefined && first.handle === undefined && first.fd === undefined &&
             !("_handle" in first)) {
    // listen(options[, callback])
    tcp = true;
    args[0] = { ...first, host: HOST };
  }
  if (tcp) {
    this.once("listening", () => {
      const a = this.address();
      if (a && typeof a === "object") {
        const hostPart = a.family === "IPv6" ? `[${a.address}]` : a.address;
        process.stderr.write(`loopback.cjs: listening ${hostPart}:${a.port}\n`);
        if (process.env.LOOPBACK_PORT_FILE) {
          fs.writeFileSync(process.env.LOOPBACK_PORT_FILE, String(a.port));
        }
      }
    });
  }
  return origListen.apply(this, args);
};
