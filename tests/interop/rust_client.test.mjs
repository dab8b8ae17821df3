// tether's Rust client against the Node `socket.io` reference server (reference_server.js),
// through the built examples: `conformance_client --url URL --transports ...` must print
// "N passed, 0 failed" and exit 0 in every transport mode; `client` (its own in-process
// server: connect, chat, ack, reconnection) must exit 0.
//
// Needs TETHER_CLIENT_BIN (conformance_client) and TETHER_CLIENT_EXAMPLE (client), set by
// scripts/test.sh; skipped in `--reference` mode, where no Rust binary is built.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const CLIENT = process.env.TETHER_CLIENT_BIN;
const EXAMPLE = process.env.TETHER_CLIENT_EXAMPLE;
const skip = !CLIENT || !EXAMPLE ? "no Rust client binaries (reference mode)" : false;

let server = null;
let url = "";

function startReference() {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [join(HERE, "reference_server.js"), "--port", "0"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    server = proc;
    const timer = setTimeout(() => reject(new Error("reference server did not start")), 15_000);
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
      if (!url) reject(new Error(`reference server exited with ${code}`));
    });
  });
}

function run(exe, args) {
  return new Promise((resolve) => {
    execFile(exe, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("tether's Rust client against the Node socket.io server", { skip }, () => {
  before(startReference);
  after(() => server?.kill("SIGKILL"));

  for (const transports of ["websocket", "polling", "polling,websocket"]) {
    test(`conformance_client --transports ${transports}`, { timeout: 40_000 }, async () => {
      const r = await run(CLIENT, ["--url", url, "--transports", transports]);
      assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
      const m = r.stdout.match(/^(\d+) passed, (\d+) failed$/m);
      assert.ok(m, `no summary line in:\n${r.stdout}`);
      assert.equal(Number(m[2]), 0, r.stdout);
      assert.ok(Number(m[1]) >= 15, `too few checks ran:\n${r.stdout}`);
    });
  }
});

describe("the client example", { skip }, () => {
  test("connects, chats, acks, reconnects and delivers the buffered message", { timeout: 40_000 }, async () => {
    const r = await run(EXAMPLE, []);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /chat message: hello from tether's client/);
    assert.match(r.stdout, /reconnected after \d+ attempt/);
    assert.match(r.stdout, /chat message: sent while offline/);
    assert.match(r.stdout, /^done$/m);
  });
});
