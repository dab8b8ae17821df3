// Interop: real third-party clients against tether's plain WebSocket and TLS examples.
//
// - The Node `ws` client against `examples/ws_echo` (binary in TETHER_WS_ECHO_BIN):
//   greeting, `You said: m`, binary echo, 1 MiB messages, fragmented messages, ping/pong,
//   close code and reason.
// - The official `socket.io-client` over `https://` polling and `wss://` against
//   `examples/wss_chat` (binary in TETHER_WSS_CHAT_BIN), trusting the certificate the
//   example writes to `$TMPDIR/tether-wss-chat-cert.pem` (a fresh TMPDIR per run).
//
// Each part is skipped, with the reason, when its variable is unset (scripts/test.sh sets
// them to `$TARGET/debug/examples/...`). The Rust side of these checks (the server's view
// of close codes, subprotocols, their servers for our client) is in tests/ws.rs.
//
// Run: TETHER_WS_ECHO_BIN=... TETHER_WSS_CHAT_BIN=... node --test tests/interop/ws_peers.test.mjs

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { io } from "socket.io-client";
import WebSocket from "ws";

const WAIT = 5_000; // bound for one expected event
const TEST_TIMEOUT = 15_000;

const ECHO_BIN = process.env.TETHER_WS_ECHO_BIN;
const CHAT_BIN = process.env.TETHER_WSS_CHAT_BIN;

/** Start `exe --port 0` and resolve with { proc, url } once it prints `pattern`. */
function startServer(exe, pattern, env = process.env) {
  const proc = spawn(exe, ["--port", "0"], { stdio: ["pipe", "pipe", "pipe"], env });
  let stderr = "";
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (c) => {
    stderr = (stderr + c).slice(-20_000);
  });
  return new Promise((resolve, reject) => {
    let out = "";
    let url = "";
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${exe} printed no listening line within 15 s\n${out}\n${stderr}`));
    }, 15_000);
    proc.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${exe}: ${err.message}`));
    });
    proc.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (!url) reject(new Error(`${exe} exited (${code ?? signal}) before listening\n${stderr}`));
    });
    proc.stdout.setEncoding("utf8");
    proc.stdout.on("data", (chunk) => {
      if (url) return; // keep draining
      out += chunk;
      const m = out.match(pattern);
      if (m) {
        url = m[1];
        clearTimeout(timer);
        resolve({ proc, url });
      }
    });
  });
}

/** Reject after `ms` with `what`, unless `promise` settles first. */
function within(promise, what, ms = WAIT) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A `ws` client with a queue of incoming messages. */
async function openClient(url, options = {}) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 8 << 20, ...options });
  const queue = [];
  const waiters = [];
  ws.on("message", (data, isBinary) => {
    const m = { data: Buffer.from(data), isBinary };
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  const closed = new Promise((resolve) => {
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString("utf8") }));
  });
  await within(
    new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    }),
    `open ${url}`,
  );
  const next = (what = "a message") =>
    within(
      queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)),
      what,
    );
  return { ws, next, closed };
}

describe("Node ws client against examples/ws_echo", {
  skip: ECHO_BIN ? false : "TETHER_WS_ECHO_BIN is unset (path of the built ws_echo example)",
}, () => {
  let server;
  const clients = [];

  async function client() {
    const c = await openClient(server.url);
    clients.push(c);
    const hello = await c.next("the greeting");
    assert.equal(hello.isBinary, false);
    assert.equal(hello.data.toString("utf8"), "Hello from the server!");
    return c;
  }

  before(async () => {
    server = await startServer(ECHO_BIN, /listening on (ws:\/\/127\.0\.0\.1:\d+\/)/);
  });
  after(() => {
    for (const c of clients) c.ws.terminate();
    server?.proc.kill("SIGKILL");
  });

  test("greets, and answers text with `You said: m`", { timeout: TEST_TIMEOUT }, async () => {
    const c = await client();
    for (const m of ["hello", "héllo ✓ wörld 🎉", ""]) {
      c.ws.send(m);
      const r = await c.next(`the answer to ${JSON.stringify(m)}`);
      assert.equal(r.isBinary, false);
      assert.equal(r.data.toString("utf8"), `You said: ${m}`);
    }
  });

  test("echoes binary messages unchanged", { timeout: TEST_TIMEOUT }, async () => {
    const c = await client();
    const bytes = Buffer.from([0, 1, 2, 127, 128, 254, 255]);
    c.ws.send(bytes, { binary: true });
    const r = await c.next("the binary echo");
    assert.equal(r.isBinary, true);
    assert.deepEqual(r.data, bytes);
    c.ws.send(Buffer.alloc(0), { binary: true });
    const empty = await c.next("the empty binary echo");
    assert.equal(empty.isBinary, true);
    assert.equal(empty.data.length, 0);
  });

  test("1 MiB text and binary messages", { timeout: TEST_TIMEOUT }, async () => {
    const c = await client();
    const text = "abcdefghijklmnopqrstuvwxyz".repeat(40330).slice(0, 1 << 20);
    c.ws.send(text);
    const r = await c.next("the 1 MiB text answer");
    assert.equal(r.data.length, (1 << 20) + "You said: ".length);
    assert.ok(r.data.toString("utf8") === `You said: ${text}`, "1 MiB text came back changed");
    const bin = Buffer.alloc(1 << 20);
    for (let i = 0; i < bin.length; i++) bin[i] = (i * 7) % 251;
    c.ws.send(bin, { binary: true });
    const b = await c.next("the 1 MiB binary echo");
    assert.equal(b.isBinary, true);
    assert.ok(b.data.equals(bin), "1 MiB binary came back changed");
  });

  test("fragmented messages are reassembled", { timeout: TEST_TIMEOUT }, async () => {
    const c = await client();
    c.ws.send("frag-", { fin: false });
    c.ws.send("ment", { fin: false });
    c.ws.send("ed", { fin: true });
    assert.equal((await c.next("the fragmented text answer")).data.toString("utf8"),
      "You said: frag-mented");
    // A multi-byte character split across two frames.
    const euro = Buffer.from("€", "utf8");
    c.ws.send(Buffer.concat([Buffer.from("price: "), euro.subarray(0, 2)]), { binary: false, fin: false });
    c.ws.send(euro.subarray(2), { binary: false, fin: true });
    assert.equal((await c.next("the split-character answer")).data.toString("utf8"),
      "You said: price: €");
    c.ws.send(Buffer.from([1, 2]), { binary: true, fin: false });
    c.ws.send(Buffer.from([3]), { binary: true, fin: false });
    c.ws.send(Buffer.from([4, 5]), { binary: true, fin: true });
    const b = await c.next("the fragmented binary echo");
    assert.equal(b.isBinary, true);
    assert.deepEqual(b.data, Buffer.from([1, 2, 3, 4, 5]));
  });

  test("a ping gets a pong with the same payload", { timeout: TEST_TIMEOUT }, async () => {
    const c = await client();
    const pong = new Promise((resolve) => c.ws.once("pong", (d) => resolve(d.toString("utf8"))));
    c.ws.ping("are you there");
    assert.equal(await within(pong, "the pong"), "are you there");
    // Still usable afterwards.
    c.ws.send("after ping");
    assert.equal((await c.next()).data.toString("utf8"), "You said: after ping");
  });

  test("close 4001 'bye' is answered with the same code", { timeout: TEST_TIMEOUT }, async () => {
    const c = await client();
    c.ws.close(4001, "bye");
    const closed = await within(c.closed, "the close");
    assert.deepEqual(closed, { code: 4001, reason: "bye" });
  });

  test("a permessage-deflate offer is declined; messages flow uncompressed", { timeout: TEST_TIMEOUT }, async () => {
    // tether does not implement RFC 7692; `ws` offers it by default.
    const c = await openClient(server.url, { perMessageDeflate: true });
    clients.push(c);
    assert.equal(c.ws.extensions, "");
    assert.equal((await c.next("the greeting")).data.toString("utf8"), "Hello from the server!");
    const text = "y".repeat(10_000);
    c.ws.send(text);
    assert.equal((await c.next()).data.toString("utf8"), `You said: ${text}`);
  });

  test("the server keeps serving others after an abrupt disconnect", { timeout: TEST_TIMEOUT }, async () => {
    const a = await client();
    a.ws.terminate();
    const b = await client();
    b.ws.send("still here");
    assert.equal((await b.next()).data.toString("utf8"), "You said: still here");
  });
});

describe("socket.io-client over TLS against examples/wss_chat", {
  skip: CHAT_BIN ? false : "TETHER_WSS_CHAT_BIN is unset (path of the built wss_chat example)",
}, () => {
  let server;
  let dir;
  let ca;
  let port;
  const sockets = [];

  before(async () => {
    // A private TMPDIR: the example writes its certificate there.
    dir = mkdtempSync(join(tmpdir(), "tether-wss-chat-"));
    server = await startServer(CHAT_BIN, /listening on (https:\/\/127\.0\.0\.1:\d+)/, {
      ...process.env,
      TMPDIR: dir,
    });
    ca = readFileSync(join(dir, "tether-wss-chat-cert.pem"));
    port = new URL(server.url).port;
  });
  after(() => {
    for (const s of sockets) s.disconnect();
    server?.proc.kill("SIGKILL");
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function connect(host, options) {
    const socket = io(`https://${host}:${port}`, {
      forceNew: true,
      reconnection: false,
      timeout: WAIT,
      ...options,
    });
    sockets.push(socket);
    return socket;
  }

  const modes = [
    ["websocket (wss://)", { transports: ["websocket"] }, "websocket"],
    ["polling (https://)", { transports: ["polling"] }, "polling"],
    ["polling upgraded to wss://", { transports: ["polling", "websocket"] }, "websocket"],
  ];
  for (const [name, options, finalTransport] of modes) {
    for (const host of ["127.0.0.1", "localhost"]) {
      test(`${name} to ${host}: a chat message comes back`, { timeout: TEST_TIMEOUT }, async () => {
        const socket = connect(host, { ca, ...options });
        await within(
          new Promise((resolve, reject) => {
            socket.once("connect", resolve);
            socket.once("connect_error", reject);
          }),
          "connect",
        );
        const text = `hello over ${name} at ${Date.now()}`;
        const echoed = new Promise((resolve) => {
          socket.on("chat message", (m) => {
            if (m === text) resolve(m);
          });
        });
        socket.emit("chat message", text);
        assert.equal(await within(echoed, "the chat message back"), text);
        if (finalTransport === "websocket" && socket.io.engine.transport.name !== "websocket") {
          await within(
            new Promise((resolve) => socket.io.engine.once("upgrade", resolve)),
            "the upgrade to websocket",
          );
        }
        assert.equal(socket.io.engine.transport.name, finalTransport);
        socket.disconnect();
      });
    }
  }

  for (const transports of [["websocket"], ["polling"]]) {
    test(`without the certificate as CA, ${transports[0]} is refused`, { timeout: TEST_TIMEOUT }, async () => {
      const socket = connect("localhost", { transports });
      const err = await within(
        new Promise((resolve, reject) => {
          socket.once("connect", () => reject(new Error("connected to a self-signed server")));
          socket.once("connect_error", resolve);
        }),
        "connect_error",
      );
      if (transports[0] === "websocket") {
        assert.equal(err.message, "websocket error");
        assert.match(String(err.description?.message), /self-signed certificate/);
      } else {
        // The XHR polyfill reports only a status 0; the TLS reason is checked below.
        assert.equal(err.message, "xhr poll error");
      }
    });
  }

  test("https GET: the page with the CA, a certificate error without", { timeout: TEST_TIMEOUT }, async () => {
    const get = (options) =>
      within(
        new Promise((resolve, reject) => {
          const req = https.get(`https://localhost:${port}/`, options, (res) => {
            res.resume();
            res.on("end", () => resolve(res));
          });
          req.on("error", reject);
        }),
        "https GET /",
      );
    const res = await get({ ca });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers["content-type"]), /text\/html/);
    await assert.rejects(get({}), (e) => e.code === "DEPTH_ZERO_SELF_SIGNED_CERT");
  });
});
