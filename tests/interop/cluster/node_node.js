#!/usr/bin/env node
// A Node `socket.io` node of a mixed cluster: the official server with
// `@socket.io/redis-adapter` (node-redis v4 clients), the chat example's events, and
// control events the cluster tests (tests/cluster.rs) drive it with.
//
// Usage: node node_node.js --port 0 --redis redis://127.0.0.1:6379 [--sharded [--mode M]]
// With --sharded (or TETHER_SHARDED=1) the adapter is `createShardedAdapter` (Redis >= 7
// sharded pub/sub) with subscriptionMode M (static | dynamic | dynamic-private, default
// dynamic); without, the classic `createAdapter`.
// Prints `listening on http://127.0.0.1:PORT` once it accepts connections.
//
// Control events (from any client; the answer is the acknowledgement), each with one
// object argument:
//   ctl:emit            {rooms?, except?, event, args}         -> io.to(..).except(..).emit
//   ctl:socketsJoin     {rooms?, room}                          -> io.in(..).socketsJoin(room)
//   ctl:socketsLeave    {rooms?, room}                          -> io.in(..).socketsLeave(room)
//   ctl:disconnectSockets {rooms?, close?}                      -> io.in(..).disconnectSockets
//   ctl:fetchSockets    {rooms?}                                -> [{id, rooms, data}]
//   ctl:emitWithAck     {rooms?, event, args, timeout}          -> {responses} | {error, responses}
//   ctl:serverSideEmit  {event, args}                           -> io.serverSideEmit
//   ctl:serverSideEmitWithAck {event, args}                     -> {responses} | {error}
//   ctl:serverSideLog   {}                                      -> server-side events received
//   ctl:serverCount     {}                                      -> io.of("/").adapter.serverCount()
//   ctl:allRooms        {}                                      -> [...rooms of the cluster]
//   ctl:join            {room}                                  -> this socket joins room
// Server-side event `ping-server` (arg, cb) answers cb({node: "node", arg}).

import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

function arg(name, fallback) {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(name);
  if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
  const eq = argv.find((a) => a.startsWith(name + "="));
  if (eq) return eq.slice(name.length + 1);
  return fallback;
}

const port = Number(arg("--port", "0"));
const redisUrl = arg("--redis", "redis://127.0.0.1:6379");
const sharded = process.argv.includes("--sharded") || process.env.TETHER_SHARDED === "1";
const mode = arg("--mode", "dynamic");

const pubClient = createClient({ url: redisUrl });
const subClient = pubClient.duplicate();
pubClient.on("error", (e) => console.error("redis pub error:", e.message));
subClient.on("error", (e) => console.error("redis sub error:", e.message));
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, {
  adapter: sharded
    ? createShardedAdapter(pubClient, subClient, { subscriptionMode: mode })
    : createAdapter(pubClient, subClient, { requestsTimeout: 2000 }),
  cors: { origin: "*" },
  pingInterval: 5000,
  pingTimeout: 5000,
});

const serverSideLog = [];

io.on("ping-server", (arg, cb) => {
  serverSideLog.push({ event: "ping-server", args: [arg] });
  if (typeof cb === "function") cb({ node: "node", arg });
});
io.on("hello", (...args) => {
  serverSideLog.push({ event: "hello", args });
});

function target(o) {
  let op = io;
  for (const r of o?.rooms ?? []) op = op.to(r);
  for (const r of o?.except ?? []) op = op.except(r);
  return op;
}

io.on("connection", (socket) => {
  socket.data = { node: "node", auth: socket.handshake.auth ?? {} };

  // The chat example's events.
  socket.on("chat message", (...args) => {
    if (typeof args[args.length - 1] === "function") args.pop();
    io.emit("chat message", ...args);
  });
  socket.on("joinRoom", (room) => {
    if (typeof room === "string") socket.join(room);
  });
  socket.on("roomMessage", (m) => {
    if (m && typeof m.room === "string") {
      io.to(m.room).emit("roomMessage", { sender: socket.id, message: m.message });
    }
  });
  socket.on("privateMessage", (m) => {
    if (m && typeof m.recipientId === "string") {
      io.to(m.recipientId).emit("privateMessage", { sender: socket.id, message: m.message });
    }
  });

  // Control.
  socket.on("ctl:emit", (o, ack) => {
    target(o).emit(o.event, ...(o.args ?? []));
    ack?.(true);
  });
  socket.on("ctl:socketsJoin", (o, ack) => {
    target(o).socketsJoin(o.room);
    ack?.(true);
  });
  socket.on("ctl:socketsLeave", (o, ack) => {
    target(o).socketsLeave(o.room);
    ack?.(true);
  });
  socket.on("ctl:disconnectSockets", (o, ack) => {
    target(o).disconnectSockets(!!o.close);
    ack?.(true);
  });
  socket.on("ctl:fetchSockets", async (o, ack) => {
    try {
      const sockets = await target(o).fetchSockets();
      ack?.(sockets.map((s) => ({ id: s.id, rooms: [...s.rooms], data: s.data, auth: s.handshake.auth ?? null })));
    } catch (e) {
      ack?.({ error: e.message });
    }
  });
  socket.on("ctl:emitWithAck", async (o, ack) => {
    try {
      const responses = await target(o)
        .timeout(o.timeout ?? 2000)
        .emitWithAck(o.event, ...(o.args ?? []));
      ack?.({ responses });
    } catch (e) {
      ack?.({ error: e.message });
    }
  });
  socket.on("ctl:serverSideEmit", (o, ack) => {
    io.serverSideEmit(o.event, ...(o.args ?? []));
    ack?.(true);
  });
  socket.on("ctl:serverSideEmitWithAck", async (o, ack) => {
    try {
      const responses = await io.serverSideEmitWithAck(o.event, ...(o.args ?? []));
      ack?.({ responses });
    } catch (e) {
      ack?.({ error: e.message });
    }
  });
  socket.on("ctl:join", (o, ack) => {
    socket.join(o.room);
    ack?.(true);
  });
  socket.on("ctl:serverSideLog", (_o, ack) => ack?.(serverSideLog));
  socket.on("ctl:serverCount", async (_o, ack) => ack?.(await io.of("/").adapter.serverCount()));
  socket.on("ctl:allRooms", async (_o, ack) => ack?.([...(await io.of("/").adapter.allRooms())]));
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${httpServer.address().port}`);
});

function shutdown() {
  io.close();
  Promise.allSettled([pubClient.quit(), subClient.quit()]).finally(() => process.exit(0));
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
