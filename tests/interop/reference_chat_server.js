#!/usr/bin/env node
// Reference implementation of the chat example on the official Node `socket.io` server.
// The browser test (browser_chat.test.mjs) is proven against this server first, then runs
// unchanged against tether's `examples/chat.rs` (TETHER_CHAT_BIN).
//
// Serves, like the Rust example:
//   GET /                        examples/chat/index.html   text/html; charset=utf-8
//   GET /socket.io/socket.io.js  assets/socket.io.js        application/javascript; charset=utf-8
//   /socket.io/?EIO=4&...        Socket.IO (Engine.IO v4)
// Events (the tutorials' chat):
//   "chat message" text            -> "chat message" text to everyone, sender included
//   "joinRoom" room                -> the socket joins the room
//   "roomMessage" {room, message}  -> "roomMessage" {sender, message} to the room's members
//   "privateMessage" {recipientId, message} -> "privateMessage" {sender, message} to that socket
//
// Usage: node reference_chat_server.js [--port 3000]   (--port 0 picks a free port)
// Prints `listening on http://127.0.0.1:PORT` once it accepts connections.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { Server } from "socket.io";

function parsePort(argv) {
  const i = argv.indexOf("--port");
  if (i >= 0 && i + 1 < argv.length) return Number(argv[i + 1]);
  const eq = argv.find((a) => a.startsWith("--port="));
  if (eq) return Number(eq.slice("--port=".length));
  return 3000;
}

const root = (rel) => fileURLToPath(new URL(`../../${rel}`, import.meta.url));
const page = readFileSync(root("examples/chat/index.html"));
const client = readFileSync(root("assets/socket.io.js"));

const STATIC = {
  "/": ["text/html; charset=utf-8", page],
  "/index.html": ["text/html; charset=utf-8", page],
  "/socket.io/socket.io.js": ["application/javascript; charset=utf-8", client],
};

const httpServer = createServer((req, res) => {
  res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" }).end("not found\n");
});
const io = new Server(httpServer, { serveClient: false });

// Engine.IO intercepts every request under /socket.io/, so the static files go first.
const engineListeners = httpServer.listeners("request").slice();
httpServer.removeAllListeners("request");
httpServer.on("request", (req, res) => {
  const { pathname } = new URL(req.url, "http://localhost");
  const file = STATIC[pathname];
  if (file && (req.method === "GET" || req.method === "HEAD")) {
    const [type, body] = file;
    res.writeHead(200, { "Content-Type": type, "Content-Length": body.length, "Cache-Control": "no-cache" });
    res.end(req.method === "HEAD" ? undefined : body);
    return;
  }
  for (const listener of engineListeners) listener.call(httpServer, req, res);
});

const isObject = (v) => v !== null && typeof v === "object";

io.on("connection", (socket) => {
  socket.on("chat message", (msg) => {
    io.emit("chat message", msg);
  });

  socket.on("joinRoom", (room) => {
    if (typeof room === "string" && room) socket.join(room);
  });

  socket.on("roomMessage", (data) => {
    if (!isObject(data) || typeof data.room !== "string") return;
    io.to(data.room).emit("roomMessage", { sender: socket.id, message: data.message });
  });

  socket.on("privateMessage", (data) => {
    if (!isObject(data)) return;
    const recipient = io.sockets.sockets.get(data.recipientId);
    recipient?.emit("privateMessage", { sender: socket.id, message: data.message });
  });
});

httpServer.listen(parsePort(process.argv.slice(2)), "127.0.0.1", () => {
  process.stdout.write(`listening on http://127.0.0.1:${httpServer.address().port}\n`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
