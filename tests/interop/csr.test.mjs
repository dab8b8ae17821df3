// Connection state recovery with the official socket.io-client: against tether's
// conformance_server --recovery ($TETHER_TEST_SERVER) and, to prove the test, against the
// Node reference server with connectionStateRecovery (always run).
//
// A joins room "r1"; the server drops A's connection (`drop-connection`); while A is away
// B broadcasts to r1 and to everyone; A comes back with the same id, `recovered` true, and
// gets exactly the missed broadcasts, in order, each with the offset as its last argument.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";

const HERE = dirname(fileURLToPath(import.meta.url));
const WAIT = 5_000;

function start(cmd, args) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start`)), 15_000);
    proc.stdout.setEncoding("utf8");
    proc.stdout.on("data", (chunk) => {
      out += chunk;
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1] });
      }
    });
    proc.on("error", reject);
  });
}

function once(socket, event, ms = WAIT) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), ms);
    socket.once(event, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
}

async function scenario(url, transports) {
  const opts = { forceNew: true, transports, reconnectionDelay: 300, reconnectionDelayMax: 300 };
  const a = io(url, opts);
  const b = io(url, opts);
  try {
    await Promise.all([once(a, "connect"), once(b, "connect")]);
    const firstId = a.id;
    assert.equal(a.recovered, false);
    assert.equal(await a.timeout(WAIT).emitWithAck("join", "r1"), true);
    // One broadcast before the drop, so the client holds an offset.
    const warm = once(a, "room-message");
    b.emit("to-room", "r1", "before");
    const [w, wOffset] = await warm;
    assert.equal(w, "before");
    assert.equal(typeof wOffset, "string", "broadcasts carry an offset");

    const seen = [];
    a.on("room-message", (...args) => seen.push(["room", ...args]));
    a.on("broadcast-message", (...args) => seen.push(["all", ...args]));
    const down = once(a, "disconnect");
    a.emit("drop-connection");
    const [reason] = await down;
    assert.equal(reason, "transport close");
    // While A is away.
    b.emit("to-room", "r1", "missed-1");
    b.emit("to-room", "r2", "not-for-a");
    b.emit("broadcast", "missed-2");
    await new Promise((r) => setTimeout(r, 50));
    await once(a, "connect");
    assert.equal(a.recovered, true, "state recovered");
    assert.equal(a.id, firstId, "same id after recovery");
    const [rec, sid] = await new Promise((resolve, reject) => {
      a.timeout(WAIT).emit("recovered", (err, ...args) => (err ? reject(err) : resolve(args)));
    });
    assert.equal(rec, true);
    assert.equal(sid, firstId);
    // Missed broadcasts arrive exactly once, in order (the offset is the last argument).
    const deadline = Date.now() + WAIT;
    while (seen.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(seen.map((s) => s.slice(0, 2)), [["room", "missed-1"], ["all", "missed-2"]]);
    // The room was restored: new room messages still arrive.
    const again = once(a, "room-message");
    b.emit("to-room", "r1", "after");
    assert.equal((await again)[0], "after");
  } finally {
    a.close();
    b.close();
  }
}

function suite(name, startServer) {
  describe(name, () => {
    let server;
    before(async () => {
      server = await startServer();
    });
    after(() => server?.proc.kill("SIGKILL"));
    for (const t of [["websocket"], ["polling"], ["polling", "websocket"]]) {
      test(`recovers after a dropped connection (${t.join("→")})`, { timeout: 20_000 }, () =>
        scenario(server.url, t));
    }
  });
}

suite("connection state recovery: Node reference server", () =>
  start(process.execPath, [join(HERE, "reference_server.js"), "--port", "0", "--recovery"]));

const tether = process.env.TETHER_TEST_SERVER;
if (tether) {
  suite("connection state recovery: tether", () => start(tether, ["--port", "0", "--recovery"]));
}
