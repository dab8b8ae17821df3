#!/usr/bin/env node
// Reference implementation of the interop test server contract (PROTOCOL.md) on the
// official Node `socket.io` server. The interop suites are proven against this server
// first, then run unchanged against tether's `examples/conformance_server.rs`.
//
// Usage: node reference_server.js --port 0
// Prints `listening on http://127.0.0.1:PORT` once it accepts connections.

import { createServer } from "node:http";
import { Server } from "socket.io";

function parsePort(argv) {
  const i = argv.indexOf("--port");
  if (i >= 0 && i + 1 < argv.length) return Number(argv[i + 1]);
  const eq = argv.find((a) => a.startsWith("--port="));
  if (eq) return Number(eq.slice("--port=".length));
  return 0;
}

const port = parsePort(process.argv.slice(2));
const httpServer = createServer();
const io = new Server(httpServer, {
  path: "/socket.io/",
  pingInterval: 300,
  pingTimeout: 200,
  connectTimeout: 1000,
  maxHttpBufferSize: 1e6,
  cors: { origin: "*" },
  // --recovery: connection state recovery (socket.io 4.6+).
  ...(process.argv.includes("--recovery")
    ? { connectionStateRecovery: { maxDisconnectionDuration: 30_000 } }
    : {}),
});

/** Splits a trailing ack callback off the event arguments. */
function splitAck(args) {
  if (args.length > 0 && typeof args[args.length - 1] === "function") {
    return [args.slice(0, -1), args[args.length - 1]];
  }
  return [args, null];
}

function attachHandlers(nsp) {
  nsp.on("connection", (socket) => {
    socket.emit("auth", socket.handshake.auth ?? {});

    socket.on("message", (...raw) => {
      const [args] = splitAck(raw);
      socket.emit("message-back", ...args);
    });

    socket.on("message-with-ack", (...raw) => {
      const [args, ack] = splitAck(raw);
      if (ack) ack(...args);
    });

    socket.on("request-ack", (timeoutMs) => {
      socket.timeout(Number(timeoutMs)).emit("need-ack", "please", (err, ...reply) => {
        if (err) socket.emit("ack-result", { ok: false, error: "timeout" });
        else socket.emit("ack-result", { ok: true, args: reply });
      });
    });

    socket.on("binary-echo", (...raw) => {
      const [args] = splitAck(raw);
      socket.emit("binary-back", ...args);
    });

    socket.on("join", (room, ack) => {
      socket.join(room);
      if (typeof ack === "function") ack(true);
    });

    socket.on("leave", (room, ack) => {
      socket.leave(room);
      if (typeof ack === "function") ack(true);
    });

    socket.on("to-room", (room, ...raw) => {
      const [args] = splitAck(raw);
      nsp.to(room).emit("room-message", ...args);
    });

    socket.on("broadcast", (...raw) => {
      const [args] = splitAck(raw);
      socket.broadcast.emit("broadcast-message", ...args);
    });

    socket.on("private", (target, ...raw) => {
      const [args] = splitAck(raw);
      nsp.to(target).emit("private-message", socket.id, ...args);
    });

    socket.on("disconnect-me", () => {
      socket.disconnect();
    });

    socket.on("drop-connection", () => {
      socket.conn.close();
    });

    socket.on("recovered", (ack) => {
      if (typeof ack === "function") ack(socket.recovered, socket.id);
    });

    socket.on("rooms", (ack) => {
      if (typeof ack === "function") ack([...socket.rooms].sort());
    });
  });
}

attachHandlers(io.of("/"));
attachHandlers(io.of("/custom"));

const refuse = io.of("/refuse");
refuse.use((socket, next) => {
  const auth = socket.handshake.auth ?? {};
  if (auth.token === "good") return next();
  const err = new Error("not authorized");
  err.data = { reason: "bad token" };
  next(err);
});
attachHandlers(refuse);

httpServer.listen(port, "127.0.0.1", () => {
  const { port: bound } = httpServer.address();
  process.stdout.write(`listening on http://127.0.0.1:${bound}\n`);
});

function shutdown() {
  io.close();
  httpServer.close();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
