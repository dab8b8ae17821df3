// Interop tests: the official `socket.io-client` against the server under test.
//
// Server under test: `$TETHER_TEST_SERVER --port 0` (tether's conformance_server), or
// `node reference_server.js --port 0` when the variable is unset. Both implement
// PROTOCOL.md. Every scenario runs under three transport modes (websocket only, polling
// only, polling upgraded to websocket); the dead-client test runs once.
//
// Run: node --test --test-concurrency=1 tests/interop/

import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";
import WebSocket from "ws";

const HERE = dirname(fileURLToPath(import.meta.url));
const TEST_TIMEOUT = 10_000; // per test; every wait inside is bounded far below it
const WAIT = 3_000; // default bound for one expected event
const QUIET = 300; // how long "receives nothing" is watched

// ---------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------

const server = { url: "", proc: null, stderr: "" };

function startServer() {
  const exe = process.env.TETHER_TEST_SERVER;
  const [cmd, args] = exe
    ? [exe, ["--port", "0"]]
    : [process.execPath, [join(HERE, "reference_server.js"), "--port", "0"]];
  const proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  server.proc = proc;
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (chunk) => {
    server.stderr = (server.stderr + chunk).slice(-20_000);
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      reject(new Error(`server did not print its listening line within 15 s: ${cmd}\n` +
        `stdout: ${out}\nstderr: ${server.stderr}`));
    }, 15_000);
    proc.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start server ${cmd}: ${err.message}`));
    });
    proc.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (!server.url) {
        reject(new Error(`server ${cmd} exited (${code ?? signal}) before listening\n` +
          `stdout: ${out}\nstderr: ${server.stderr}`));
      }
    });
    proc.stdout.setEncoding("utf8");
    proc.stdout.on("data", (chunk) => {
      if (server.url) return; // keep draining
      out += chunk;
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:(\d+))/);
      if (m) {
        clearTimeout(timer);
        server.url = m[1];
        resolve();
      }
    });
  });
}

function stopServer() {
  const proc = server.proc;
  if (!proc) return Promise.resolve();
  if (proc.exitCode !== null || proc.signalCode !== null) {
    // the server must outlive every client; a crash is a failure of its own
    return Promise.reject(new Error(
      `server exited during the tests (${proc.exitCode ?? proc.signalCode})\nstderr: ${server.stderr}`));
  }
  return new Promise((resolve) => {
    const kill = setTimeout(() => proc.kill("SIGKILL"), 3_000);
    proc.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    proc.kill("SIGTERM");
  });
}

/** Fails at once (instead of by a timeout) once the server process is gone. */
function assertServerAlive() {
  const proc = server.proc;
  if (proc && (proc.exitCode !== null || proc.signalCode !== null)) {
    throw new Error(`server is not running (exit ${proc.exitCode ?? proc.signalCode})\nstderr: ${server.stderr}`);
  }
}

before(startServer, { timeout: 20_000 });
after(stopServer, { timeout: 10_000 });

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** Fails after `ms` with `what` in the message. */
function withTimeout(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Records every non-reserved event a socket receives, so none is missed by a late wait. */
class Inbox {
  constructor(socket, label) {
    this.label = label;
    this.queue = []; // [event, args]
    this.waiters = []; // {event, resolve}
    socket.onAny((event, ...args) => {
      const i = this.waiters.findIndex((w) => w.event === event);
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(args);
      else this.queue.push([event, args]);
    });
  }

  /** The arguments of the next `event` (consumed), within `ms`. */
  next(event, ms = WAIT) {
    const i = this.queue.findIndex(([e]) => e === event);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0][1]);
    let waiter;
    const p = new Promise((resolve) => {
      waiter = { event, resolve };
      this.waiters.push(waiter);
    });
    return withTimeout(p, ms, `"${event}" on ${this.label}`).catch((err) => {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      throw err;
    });
  }

  /** Asserts that no `event` arrives within `ms`. */
  async none(event, ms = QUIET) {
    await sleep(ms);
    const got = this.queue.filter(([e]) => e === event);
    assert.deepEqual(got, [], `${this.label} must not receive "${event}"`);
  }
}

/** Resolves with the args of the next reserved/engine `event` of `emitter`, within `ms`. */
function once(emitter, event, ms = WAIT, what = event) {
  return withTimeout(new Promise((resolve) => emitter.once(event, (...a) => resolve(a))), ms, what);
}

/** Normalizes every binary value (Buffer, ArrayBuffer, typed array) to a Buffer. */
function bytes(value) {
  if (Buffer.isBuffer(value)) return Buffer.from(value);
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(bytes);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, bytes(v)]));
  }
  return value;
}

const MODES = [
  { name: "websocket only", opts: { transports: ["websocket"] }, transport: "websocket" },
  { name: "polling only", opts: { transports: ["polling"] }, transport: "polling" },
  { name: "polling upgraded to websocket", opts: {}, transport: "upgrade" },
];

function suite(mode) {
  const sockets = [];
  const it = (name, fn) => test(name, { timeout: TEST_TIMEOUT }, fn);

  afterEach(() => {
    for (const s of sockets.splice(0)) {
      s.removeAllListeners();
      s.disconnect();
    }
  });

  /** A socket on `nsp` with its own Manager (no cross-test sharing), not yet awaited. */
  function open(nsp = "/", extra = {}) {
    assertServerAlive();
    const socket = io(server.url + nsp, {
      forceNew: true,
      reconnection: false,
      timeout: WAIT,
      ...mode.opts,
      ...extra,
    });
    sockets.push(socket);
    const inbox = new Inbox(socket, `${nsp} client`);
    return { socket, inbox };
  }

  /** Waits for `connect`; fails on `connect_error`. */
  function connected(socket, ms = WAIT) {
    if (socket.connected) return Promise.resolve();
    return withTimeout(
      new Promise((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("connect_error", (err) =>
          reject(new Error(`connect_error: ${err.message} ${JSON.stringify(err.data)}`)));
      }),
      ms,
      "connect",
    );
  }

  /** Waits for `connect_error` and returns the error; fails if the socket connects. */
  function refused(socket, ms = WAIT) {
    return withTimeout(
      new Promise((resolve, reject) => {
        socket.once("connect_error", resolve);
        socket.once("connect", () => reject(new Error("connected, expected connect_error")));
      }),
      ms,
      "connect_error",
    );
  }

  async function client(nsp = "/", extra = {}) {
    const c = open(nsp, extra);
    await connected(c.socket);
    return c;
  }

  it("connect with auth: auth echoed, id assigned, transport as configured", async (t) => {
    const auth = { token: "abc", n: 1 };
    const { socket, inbox } = open("/", { auth });
    const upgraded = mode.transport === "upgrade"
      ? once(socket.io.engine, "upgrade", WAIT, "engine upgrade")
      : null;
    await connected(socket);
    assert.equal(typeof socket.id, "string");
    assert.ok(socket.id.length > 0, "socket.id is non-empty");
    const [got] = await inbox.next("auth");
    assert.deepEqual(got, auth);
    if (upgraded) {
      const [transport] = await upgraded;
      assert.equal(transport.name, "websocket");
      assert.equal(socket.io.engine.transport.name, "websocket");
    } else {
      await sleep(QUIET); // an unexpected upgrade would show up here
      assert.equal(socket.io.engine.transport.name, mode.transport);
    }
    // still usable after the upgrade
    socket.emit("message", "after-upgrade");
    assert.deepEqual(await inbox.next("message-back"), ["after-upgrade"]);
    t.diagnostic(`socket.id=${socket.id} engine.id=${socket.io.engine.id}`);
  });

  it("connect without auth: auth event carries {}", async () => {
    const { inbox } = await client("/");
    assert.deepEqual(await inbox.next("auth"), [{}]);
  });

  it("events both ways: message -> message-back with the same args", async () => {
    const { socket, inbox } = await client();
    const args = ["hello", 1, { a: [1, 2] }, null, true];
    socket.emit("message", ...args);
    assert.deepEqual(await inbox.next("message-back"), args);
    // order is kept
    for (let i = 0; i < 5; i++) socket.emit("message", i);
    for (let i = 0; i < 5; i++) assert.deepEqual(await inbox.next("message-back"), [i]);
  });

  it("client -> server ack: message-with-ack answers with the same args", async () => {
    const { socket } = await client();
    const first = await withTimeout(socket.emitWithAck("message-with-ack", 1, "2", { x: 3 }), WAIT, "ack");
    assert.equal(first, 1);
    const all = await withTimeout(
      new Promise((resolve) => socket.emit("message-with-ack", 1, "2", { x: 3 }, (...a) => resolve(a))),
      WAIT,
      "ack with all args",
    );
    assert.deepEqual(all, [1, "2", { x: 3 }]);
    const timed = await socket.timeout(2000).emitWithAck("message-with-ack", "t", [true]);
    assert.equal(timed, "t");
  });

  it("server -> client ack: answered late within the timeout", async () => {
    const { socket, inbox } = await client();
    const asked = [];
    socket.on("need-ack", (arg, cb) => {
      asked.push(arg);
      setTimeout(() => cb("late", 42), 100);
    });
    socket.emit("request-ack", 2000);
    assert.deepEqual(await inbox.next("ack-result"), [{ ok: true, args: ["late", 42] }]);
    assert.deepEqual(asked, ["please"]);
  });

  it("server -> client ack: never answered -> timeout result", async () => {
    const { socket, inbox } = await client();
    const started = Date.now();
    socket.emit("request-ack", 300);
    const [needAck] = await inbox.next("need-ack");
    assert.equal(needAck, "please");
    assert.deepEqual(await inbox.next("ack-result"), [{ ok: false, error: "timeout" }]);
    const took = Date.now() - started;
    assert.ok(took >= 250 && took < 1_000, `ack timeout fired after ${took} ms, expected about 300`);
  });

  it("binary both ways: binary-echo -> binary-back keeps bytes", async () => {
    const { socket, inbox } = await client();
    const args = [Buffer.from([1, 2, 3]), { nested: Buffer.from("xyz"), s: "t" }, "text"];
    socket.emit("binary-echo", ...args);
    const got = await inbox.next("binary-back");
    assert.equal(got.length, 3);
    assert.ok(Buffer.isBuffer(got[0]) || got[0] instanceof ArrayBuffer || ArrayBuffer.isView(got[0]),
      `first arg is binary, got ${JSON.stringify(got[0])}`);
    assert.deepEqual(bytes(got), args);
    // all 256 byte values and an empty buffer survive
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    socket.emit("binary-echo", all, Buffer.alloc(0), [Buffer.from([0xff])]);
    assert.deepEqual(bytes(await inbox.next("binary-back")), [all, Buffer.alloc(0), [Buffer.from([0xff])]]);
  });

  it("three clients: rooms, broadcast, private", async () => {
    const [a, b, c] = await Promise.all([client(), client(), client()]);
    assert.equal(await withTimeout(a.socket.emitWithAck("join", "r1"), WAIT, "join ack A"), true);
    assert.equal(await withTimeout(b.socket.emitWithAck("join", "r1"), WAIT, "join ack B"), true);

    a.socket.emit("to-room", "r1", "hi");
    assert.deepEqual(await a.inbox.next("room-message"), ["hi"]);
    assert.deepEqual(await b.inbox.next("room-message"), ["hi"]);
    await c.inbox.none("room-message");

    a.socket.emit("broadcast", "all");
    assert.deepEqual(await b.inbox.next("broadcast-message"), ["all"]);
    assert.deepEqual(await c.inbox.next("broadcast-message"), ["all"]);
    await a.inbox.none("broadcast-message");

    a.socket.emit("private", c.socket.id, "psst");
    assert.deepEqual(await c.inbox.next("private-message"), [a.socket.id, "psst"]);
    await Promise.all([a.inbox.none("private-message"), b.inbox.none("private-message")]);
  });

  it("rooms: own id and joined rooms, gone after leave", async () => {
    const { socket } = await client();
    const rooms = () => withTimeout(socket.emitWithAck("rooms"), WAIT, "rooms ack");
    assert.deepEqual(await rooms(), [socket.id]);
    assert.equal(await withTimeout(socket.emitWithAck("join", "r1"), WAIT, "join ack"), true);
    assert.equal(await withTimeout(socket.emitWithAck("join", "r2"), WAIT, "join ack"), true);
    assert.deepEqual(await rooms(), [socket.id, "r1", "r2"].sort());
    assert.equal(await withTimeout(socket.emitWithAck("leave", "r1"), WAIT, "leave ack"), true);
    assert.deepEqual(await rooms(), [socket.id, "r2"].sort());
    // join/leave without an ack still take effect
    socket.emit("join", "r3");
    socket.emit("leave", "r2");
    assert.deepEqual(await rooms(), [socket.id, "r3"].sort());
  });

  it("namespaces: /custom multiplexed with / on one connection", async () => {
    // A fresh copy of the client module: its Manager cache starts empty, so io(url) and
    // io(url + "/custom") share one Manager as they do by default in an application.
    const fresh = await import(`${import.meta.resolve("socket.io-client")}?mode=${mode.transport}`);
    const root = fresh.io(server.url, { reconnection: false, timeout: WAIT, ...mode.opts });
    const custom = fresh.io(`${server.url}/custom`, { auth: { token: "c" } });
    sockets.push(root, custom);
    const rootInbox = new Inbox(root, "/ client");
    const customInbox = new Inbox(custom, "/custom client");
    assert.equal(custom.io, root.io, "both sockets share one Manager");
    await Promise.all([connected(root), connected(custom)]);
    assert.equal(custom.io.engine.id, root.io.engine.id, "both namespaces on one engine");
    assert.equal(custom.io.engine, root.io.engine);
    assert.notEqual(custom.id, root.id);

    assert.deepEqual(await customInbox.next("auth"), [{ token: "c" }]);
    assert.deepEqual(await rootInbox.next("auth"), [{}]);

    custom.emit("message", "to-custom", 1);
    root.emit("message", "to-root", 2);
    assert.deepEqual(await customInbox.next("message-back"), ["to-custom", 1]);
    assert.deepEqual(await rootInbox.next("message-back"), ["to-root", 2]);
    // replies went to the right namespace only
    await Promise.all([customInbox.none("message-back"), rootInbox.none("message-back")]);

    // ack on /custom works too
    assert.equal(await withTimeout(custom.emitWithAck("message-with-ack", "k"), WAIT, "ack"), "k");
    // leaving one namespace keeps the other alive
    custom.disconnect();
    root.emit("message", "still-here");
    assert.deepEqual(await rootInbox.next("message-back"), ["still-here"]);
  });

  it("namespaces: a socket's rooms are per namespace (/custom room not seen on /)", async () => {
    const [root, custom] = await Promise.all([client("/"), client("/custom")]);
    await withTimeout(custom.socket.emitWithAck("join", "shared"), WAIT, "join ack");
    await withTimeout(root.socket.emitWithAck("join", "shared"), WAIT, "join ack");
    custom.socket.emit("to-room", "shared", "only-custom");
    assert.deepEqual(await custom.inbox.next("room-message"), ["only-custom"]);
    await root.inbox.none("room-message");
  });

  it("namespaces: unknown namespace -> connect_error Invalid namespace", async () => {
    const { socket } = open("/nope");
    const err = await refused(socket);
    assert.equal(err.message, "Invalid namespace");
    assert.equal(socket.connected, false);
  });

  it("middleware: /refuse refuses a bad token with error data", async () => {
    const { socket } = open("/refuse", { auth: { token: "bad" } });
    const err = await refused(socket);
    assert.ok(err instanceof Error);
    assert.equal(err.message, "not authorized");
    assert.deepEqual(err.data, { reason: "bad token" });
    assert.equal(socket.connected, false);
  });

  it("middleware: /refuse without auth is refused too", async () => {
    const { socket } = open("/refuse");
    const err = await refused(socket);
    assert.equal(err.message, "not authorized");
    assert.deepEqual(err.data, { reason: "bad token" });
  });

  it("middleware: /refuse accepts a good token", async () => {
    const { socket, inbox } = await client("/refuse", { auth: { token: "good" } });
    assert.deepEqual(await inbox.next("auth"), [{ token: "good" }]);
    socket.emit("message", "through", { ok: 1 });
    assert.deepEqual(await inbox.next("message-back"), ["through", { ok: 1 }]);
  });

  it("server-side disconnect: disconnect-me -> io server disconnect", async () => {
    const { socket } = await client();
    const bye = once(socket, "disconnect", WAIT, "disconnect");
    socket.emit("disconnect-me");
    const [reason] = await bye;
    assert.equal(reason, "io server disconnect");
    assert.equal(socket.connected, false);
  });

  it("server-side disconnect on /custom keeps / of the same connection", async () => {
    const fresh = await import(`${import.meta.resolve("socket.io-client")}?dm=${mode.transport}`);
    const root = fresh.io(server.url, { reconnection: false, timeout: WAIT, ...mode.opts });
    const custom = fresh.io(`${server.url}/custom`);
    sockets.push(root, custom);
    const rootInbox = new Inbox(root, "/ client");
    await Promise.all([connected(root), connected(custom)]);
    const bye = once(custom, "disconnect", WAIT, "disconnect of /custom");
    custom.emit("disconnect-me");
    const [reason] = await bye;
    assert.equal(reason, "io server disconnect");
    root.emit("message", "alive");
    assert.deepEqual(await rootInbox.next("message-back"), ["alive"]);
    assert.equal(root.connected, true);
  });

  it("oversize message closes that client only", async (t) => {
    const [big, other] = await Promise.all([client(), client()]);
    // just under the limit is fine
    const near = "n".repeat(900_000);
    other.socket.emit("message", near);
    const [echo] = await other.inbox.next("message-back", 5_000);
    assert.equal(echo.length, near.length);

    const bye = once(big.socket, "disconnect", 5_000, "disconnect after oversize message");
    big.socket.emit("message", "x".repeat(1_100_000));
    const [reason] = await bye;
    t.diagnostic(`oversize client disconnect reason (${mode.name}): ${reason}`);
    assert.equal(big.socket.connected, false);
    assert.equal(typeof reason, "string");

    other.socket.emit("message", "still-alive");
    assert.deepEqual(await other.inbox.next("message-back"), ["still-alive"]);
    assert.equal(other.socket.connected, true);
  });
}

for (const mode of MODES) {
  describe(`socket.io-client, ${mode.name}`, { timeout: 120_000 }, () => {
    suite(mode);
  });
}

// ---------------------------------------------------------------------------
// Raw Engine.IO over `ws`: a client that never answers pings is dropped.
// ---------------------------------------------------------------------------

describe("raw engine.io websocket", () => {
  test("dead client: server pings, then closes the WebSocket", { timeout: TEST_TIMEOUT }, async () => {
    const wsUrl = `${server.url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket`;
    assertServerAlive();
    const ws = new WebSocket(wsUrl);
    const frames = [];
    let pings = 0;
    let firstPingAt = 0;
    let connectedAt = 0;
    let openPacket = null;
    let connectPacket = null;
    const closed = new Promise((resolve) => ws.on("close", (code) => resolve({ code, at: Date.now() })));
    ws.on("error", () => {}); // the close event is what is asserted
    try {
      await withTimeout(
        new Promise((resolve, reject) => {
          ws.on("message", (data, isBinary) => {
            const text = isBinary ? `<binary ${data.length}>` : data.toString();
            frames.push(text);
            if (!openPacket && text.startsWith("0")) {
              openPacket = JSON.parse(text.slice(1));
              ws.send("40");
            } else if (!connectPacket && text.startsWith("40")) {
              connectPacket = JSON.parse(text.slice(2));
              connectedAt = Date.now();
              resolve();
            } else if (text === "2") {
              pings += 1;
              if (!firstPingAt) firstPingAt = Date.now();
              // never answer "3"
            }
          });
          ws.on("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
        }),
        WAIT,
        "open and connect packets",
      );
      assert.equal(typeof openPacket.sid, "string");
      assert.ok(openPacket.sid.length > 0);
      assert.equal(openPacket.pingInterval, 300);
      assert.equal(openPacket.pingTimeout, 200);
      assert.equal(openPacket.maxPayload, 1e6);
      assert.deepEqual(openPacket.upgrades, []);
      assert.equal(typeof connectPacket.sid, "string");
      assert.ok(connectPacket.sid.length > 0);
      assert.notEqual(connectPacket.sid, openPacket.sid, "socket id differs from engine sid");

      const { at } = await withTimeout(closed, 2_000, "server to close the WebSocket of a dead client");
      assert.ok(pings >= 1, `at least one ping before the close; frames: ${JSON.stringify(frames)}`);
      assert.ok(firstPingAt < at);
      const afterConnect = at - connectedAt;
      // pingInterval 300 + pingTimeout 200 = 500 ms; generous slack, but not "immediately"
      assert.ok(afterConnect >= 300, `closed ${afterConnect} ms after connect, before a ping cycle`);
    } finally {
      ws.terminate();
    }
  });

  test("live raw client: answering pings keeps the connection open", { timeout: TEST_TIMEOUT }, async () => {
    const wsUrl = `${server.url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket`;
    assertServerAlive();
    const ws = new WebSocket(wsUrl);
    let pings = 0;
    let closed = false;
    ws.on("close", () => { closed = true; });
    ws.on("error", () => {});
    const echoed = [];
    try {
      await withTimeout(
        new Promise((resolve) => {
          ws.on("message", (data) => {
            const text = data.toString();
            if (text.startsWith("0")) ws.send("40");
            else if (text.startsWith("40")) resolve();
            else if (text === "2") {
              pings += 1;
              ws.send("3");
            } else if (text.startsWith("42")) echoed.push(JSON.parse(text.slice(2)));
          });
        }),
        WAIT,
        "connect",
      );
      await sleep(1_200); // more than two ping cycles
      assert.ok(pings >= 2, `got ${pings} pings`);
      assert.equal(closed, false, "connection kept while pongs are sent");
      ws.send('42["message","raw",1]');
      await sleep(200);
      assert.deepEqual(echoed.filter((e) => e[0] === "message-back"), [["message-back", "raw", 1]]);
      assert.deepEqual(echoed.filter((e) => e[0] === "auth"), [["auth", {}]]);
    } finally {
      ws.terminate();
    }
  });
});
