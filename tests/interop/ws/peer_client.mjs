// A scripted Node `ws` client, driven by tests/ws.rs against in-process tether servers
// (where the test must also see the server's side: close codes, subprotocols, TLS).
//
//   node tests/interop/ws/peer_client.mjs --url wss://localhost:P/ [--ca ca.pem]
//        [--protocols chat,superchat]
//
// Commands arrive on stdin, one JSON object a line:
//   {"send": "text"} {"send_hex": "0102"} {"send_fragments": ["a", "b"]}
//   {"ping": "data"} {"close": [4001, "bye"]}
// Events leave on stdout, one JSON object a line:
//   {"event":"open","protocol":"superchat"} {"event":"message","text":"..."}
//   {"event":"message","hex":"0102"} {"event":"pong","data":"..."}
//   {"event":"close","code":4001,"reason":"bye"} {"event":"error","message":"..."}
// The process exits after the close event (or an error), or when stdin ends.

import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import WebSocket from "ws";

let url = "";
let ca = null;
let protocols = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--url") url = argv[++i];
  else if (a === "--ca") ca = readFileSync(argv[++i]);
  else if (a === "--protocols") protocols = argv[++i].split(",").filter(Boolean);
  else {
    console.error(`unknown argument ${a}`);
    process.exit(2);
  }
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const ws = new WebSocket(url, protocols, {
  ca: ca ?? undefined,
  perMessageDeflate: false,
  maxPayload: 64 << 20,
  handshakeTimeout: 5000,
});
ws.on("open", () => emit({ event: "open", protocol: ws.protocol || null }));
ws.on("message", (data, isBinary) => {
  if (isBinary) emit({ event: "message", hex: Buffer.from(data).toString("hex") });
  else emit({ event: "message", text: data.toString("utf8") });
});
ws.on("pong", (data) => emit({ event: "pong", data: data.toString("utf8") }));
ws.on("error", (err) => {
  emit({ event: "error", message: String(err?.message ?? err) });
  process.exit(1);
});
ws.on("close", (code, reason) => {
  emit({ event: "close", code, reason: reason.toString("utf8") });
  process.exit(0);
});

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  if ("send" in cmd) ws.send(cmd.send);
  else if ("send_hex" in cmd) ws.send(Buffer.from(cmd.send_hex, "hex"), { binary: true });
  else if ("send_fragments" in cmd) {
    const parts = cmd.send_fragments;
    parts.forEach((p, i) => ws.send(p, { fin: i === parts.length - 1 }));
  } else if ("ping" in cmd) ws.ping(cmd.ping);
  else if ("close" in cmd) ws.close(cmd.close[0], cmd.close[1]);
});
rl.on("close", () => process.exit(0));
