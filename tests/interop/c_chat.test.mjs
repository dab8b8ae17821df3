// The official `socket.io-client` against tether's C chat server (examples/c/chat_server.c),
// in both transport modes: the page is served at "/", "chat message" reaches everyone
// (sender included), "joinRoom" + "roomMessage" reach the room's members only, and
// "privateMessage" reaches the one recipient, each as {sender, message}.
//
// Needs TETHER_C_CHAT_BIN (the built chat_server), set by tests/c/run.sh; skipped when unset.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { io } from "socket.io-client";

const BIN = process.env.TETHER_C_CHAT_BIN;
const skip = !BIN ? "TETHER_C_CHAT_BIN is not set" : false;

let server = null;
let url = "";

function start() {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ["--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
    server = proc;
    const timer = setTimeout(() => reject(new Error("chat server did not start")), 15_000);
    let out = "";
    proc.stdout.setEncoding("utf8");
    proc.stdout.on("data", (chunk) => {
      out += chunk;
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m && !url) {
        url = m[1];
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on("exit", (code) => {
      if (!url) reject(new Error(`chat server exited with ${code}`));
    });
  });
}

function connect(transports) {
  return new Promise((resolve, reject) => {
    const s = io(url, { transports, forceNew: true, reconnection: false, timeout: 5000 });
    s.on("connect", () => resolve(s));
    s.on("connect_error", reject);
  });
}

function next(socket, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
}

function none(socket, event, ms = 300) {
  return new Promise((resolve, reject) => {
    const h = () => reject(new Error(`unexpected ${event}`));
    socket.once(event, h);
    setTimeout(() => {
      socket.off(event, h);
      resolve();
    }, ms);
  });
}

describe("socket.io-client against the C chat server", { skip }, () => {
  before(start);
  after(() => {
    server?.kill("SIGTERM");
  });

  test("serves the chat page at /", async () => {
    const r = await fetch(url + "/");
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type"), /text\/html/);
    assert.match(await r.text(), /socket\.io/);
  });

  for (const transports of [["websocket"], ["polling"], ["polling", "websocket"]]) {
    const name = transports.join("+");

    test(`chat message reaches everyone, sender included (${name})`, async () => {
      const [a, b] = await Promise.all([connect(transports), connect(transports)]);
      try {
        const got = Promise.all([next(a, "chat message"), next(b, "chat message")]);
        a.emit("chat message", "hello from a");
        const [[ma], [mb]] = await got;
        assert.equal(ma, "hello from a");
        assert.equal(mb, "hello from a");
      } finally {
        a.close();
        b.close();
      }
    });

    test(`room and private messages (${name})`, async () => {
      const [a, b, c] = await Promise.all([connect(transports), connect(transports), connect(transports)]);
      try {
        a.emit("joinRoom", "lobby");
        b.emit("joinRoom", "lobby");
        // joinRoom has no ack: a chat message sent after it and seen coming back proves
        // the join was handled (one socket's events are handled in order).
        const settled = (s, tag) => {
          const seen = new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`no echo of ${tag}`)), 5000);
            const h = (m) => {
              if (m === tag) {
                clearTimeout(t);
                s.off("chat message", h);
                resolve();
              }
            };
            s.on("chat message", h);
          });
          s.emit("chat message", tag);
          return seen;
        };
        await Promise.all([settled(a, `joined-a-${name}`), settled(b, `joined-b-${name}`)]);
        const inRoom = Promise.all([next(a, "roomMessage"), next(b, "roomMessage"), none(c, "roomMessage")]);
        c.emit("roomMessage", { room: "lobby", message: "hi lobby" });
        const [[ra], [rb]] = await inRoom;
        assert.deepEqual(ra, { sender: c.id, message: "hi lobby" });
        assert.deepEqual(rb, { sender: c.id, message: "hi lobby" });

        const priv = Promise.all([next(b, "privateMessage"), none(a, "privateMessage"), none(c, "privateMessage")]);
        a.emit("privateMessage", { recipientId: b.id, message: { text: "psst", n: 1 } });
        const [[pb]] = await priv;
        assert.deepEqual(pb, { sender: a.id, message: { text: "psst", n: 1 } });
      } finally {
        a.close();
        b.close();
        c.close();
      }
    });
  }
});
