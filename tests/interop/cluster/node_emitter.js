#!/usr/bin/env node
// Node's `@socket.io/redis-emitter` doing one operation, then exiting (tests/cluster.rs
// checks that tether nodes take what it publishes).
//
// Usage: node node_emitter.js --redis redis://127.0.0.1:6379 --op '{"op":"emit",...}'
//   {"op":"emit", "rooms":[..]?, "except":[..]?, "event":"..", "args":[..], "binary":"base64"?}
//       ("binary" appends a Buffer argument)
//   {"op":"socketsJoin", "rooms":[..]?, "room":".."}
//   {"op":"serverSideEmit", "event":"..", "args":[..]}
// Prints `done` once Redis took the message.

import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";

function arg(name, fallback) {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(name);
  if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
  return fallback;
}

const client = createClient({ url: arg("--redis", "redis://127.0.0.1:6379") });
client.on("error", (e) => console.error("redis error:", e.message));
await client.connect();
const o = JSON.parse(arg("--op", "{}"));
const emitter = new Emitter(client);

let op = emitter;
for (const r of o.rooms ?? []) op = op.to(r);
for (const r of o.except ?? []) op = op.except(r);

switch (o.op) {
  case "emit": {
    const args = [...(o.args ?? [])];
    if (o.binary) args.push(Buffer.from(o.binary, "base64"));
    op.emit(o.event, ...args);
    break;
  }
  case "socketsJoin":
    op.socketsJoin(o.room);
    break;
  case "serverSideEmit":
    emitter.serverSideEmit(o.event, ...(o.args ?? []));
    break;
  default:
    console.error("unknown op", o.op);
    process.exit(2);
}
// A round trip after the publish: the publish was taken.
await client.ping();
console.log("done");
await client.quit();
