// A plain WebSocket echo server on the Node `ws` package: the peer server for tether's
// `WsClient` in tests/ws.rs (see README.md next to this file for the contract).
//
//   node tests/interop/ws/echo_server.mjs --port 0
//
// Prints `listening on ws://127.0.0.1:PORT/` once it accepts connections, then one JSON
// line per observed event (`{"event":"close","code":4001,"reason":"bye"}` ...).

import { WebSocketServer } from "ws";

let port = 0;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--port") port = Number(argv[++i]);
  else {
    console.error(`unknown argument ${argv[i]}; usage: echo_server.mjs [--port N]`);
    process.exit(2);
  }
}

const SUPPORTED = ["superchat", "chat"];

function log(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  maxPayload: 64 << 20,
  perMessageDeflate: false,
  // The first protocol the client offers that we support; `?proto=X` forces X (even one
  // the client did not offer: the client must refuse it).
  handleProtocols(protocols, req) {
    const forced = new URL(req.url, "ws://x").searchParams.get("proto");
    if (forced) return forced;
    for (const p of protocols) if (SUPPORTED.includes(p)) return p;
    return false;
  },
});

wss.on("connection", (ws, req) => {
  let pings = 0;
  ws.on("ping", () => {
    pings += 1;
  });
  ws.send(
    JSON.stringify({
      hello: "node",
      protocol: ws.protocol || null,
      header: req.headers["x-tether-test"] ?? null,
      path: req.url,
    }),
  );
  ws.on("message", (data, isBinary) => {
    if (isBinary) {
      ws.send(data, { binary: true });
      return;
    }
    const text = data.toString("utf8");
    const [cmd, ...rest] = text.split(" ");
    if (cmd === "ping-me") {
      const payload = rest.join(" ") || "hi";
      ws.once("pong", (p) => ws.send(`pong:${p.toString("utf8")}`));
      ws.ping(payload);
    } else if (cmd === "close-me") {
      ws.close(Number(rest[0]), rest.slice(1).join(" "));
    } else if (cmd === "fragments") {
      // One text message in three frames, then one binary message in three frames.
      ws.send("frag-", { fin: false });
      ws.send("ment", { fin: false });
      ws.send("ed", { fin: true });
      ws.send(Buffer.from([1, 2]), { binary: true, fin: false });
      ws.send(Buffer.from([3]), { binary: true, fin: false });
      ws.send(Buffer.from([4, 5]), { binary: true, fin: true });
    } else if (cmd === "pings?") {
      ws.send(`pings:${pings}`);
    } else {
      ws.send(text);
    }
  });
  ws.on("close", (code, reason) => {
    log({ event: "close", code, reason: reason.toString("utf8") });
  });
});

wss.on("listening", () => {
  console.log(`listening on ws://127.0.0.1:${wss.address().port}/`);
});

process.on("SIGTERM", () => process.exit(0));
// Exit with the test process that spawned us (its end of our stdin closes).
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
