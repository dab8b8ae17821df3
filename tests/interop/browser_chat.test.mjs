// Browser test of the chat example: two headless Chromium pages use examples/chat/index.html
// (served with assets/socket.io.js) against a chat server.
//
//   node --test tests/interop/browser_chat.test.mjs
//
// Server: $TETHER_CHAT_BIN (an executable run as `<exe> --port 0`, e.g. the built
// `examples/chat.rs`), else `node reference_chat_server.js --port 0` (official socket.io).
// Browser: /usr/bin/chromium through playwright-core (apt-get install -y chromium).
// Leaves one screenshot at /tmp/chat.png.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const WAIT_MS = 10_000;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SCREENSHOT = "/tmp/chat.png";

let server; // { proc, url, log: string[] }
let browser;
let p1, p2; // { page, id, errors: string[] }

/** Starts the chat server and resolves once it printed `listening on http://...`. */
function startServer() {
  const bin = process.env.TETHER_CHAT_BIN;
  const [cmd, args] = bin
    ? [bin, ["--port", "0"]]
    : [process.execPath, [fileURLToPath(new URL("./reference_chat_server.js", import.meta.url)), "--port", "0"]];
  const proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  const log = [];
  const keep = (chunk) => {
    log.push(...chunk.toString().split("\n").filter(Boolean));
    if (log.length > 200) log.splice(0, log.length - 200);
  };
  proc.stderr.on("data", keep);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`no "listening on" line within ${WAIT_MS} ms`)), WAIT_MS);
    const fail = (err) => {
      clearTimeout(timer);
      proc.kill("SIGKILL");
      err.message += `\ncommand: ${cmd} ${args.join(" ")}\nserver output:\n${log.join("\n")}`;
      reject(err);
    };
    let out = "";
    proc.stdout.on("data", (chunk) => {
      keep(chunk);
      out += chunk;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1].replace(/\/$/, ""), log });
      }
    });
    proc.on("error", fail);
    proc.on("exit", (code, signal) => fail(new Error(`server exited early (code ${code}, signal ${signal})`)));
  });
}

async function stopServer() {
  if (!server || server.proc.exitCode !== null || server.proc.signalCode !== null) return;
  const exited = new Promise((resolve) => server.proc.once("exit", resolve));
  server.proc.kill("SIGTERM");
  const timer = setTimeout(() => server.proc.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

/** Opens the chat page in a fresh browser context and waits until it shows its socket id. */
async function openChat() {
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
  });
  await page.goto(server.url + "/", { timeout: WAIT_MS });
  await page.waitForSelector("#status[data-id]", { timeout: WAIT_MS });
  const id = await page.getAttribute("#status", "data-id");
  return { page, id, errors };
}

const messages = (who) => who.page.$$eval("#messages li", (items) => items.map((li) => li.textContent));

/** Waits until the page's message list holds an item whose text is exactly `text`. */
async function waitForMessage(who, text) {
  try {
    await who.page.waitForFunction(
      (t) => [...document.querySelectorAll("#messages li")].some((li) => li.textContent === t),
      text,
      { timeout: WAIT_MS },
    );
  } catch (err) {
    err.message += `\nwanted: ${JSON.stringify(text)}\npage ${who.id} shows: ${JSON.stringify(await messages(who))}` +
      `\npage errors: ${JSON.stringify(who.errors)}\nserver output:\n${server.log.slice(-20).join("\n")}`;
    throw err;
  }
}

async function submit(who, fields, button) {
  for (const [selector, value] of Object.entries(fields)) await who.page.fill(selector, value);
  await who.page.click(button);
}

const unique = (text) => `${text} ${Math.random().toString(36).slice(2, 8)}`;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install it (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  server = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: WAIT_MS,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  p1 = await openChat();
  p2 = await openChat();
});

after(async () => {
  try {
    if (browser) await browser.close();
  } finally {
    await stopServer();
  }
});

test("serves the page at / and the client at /socket.io/socket.io.js", async () => {
  const page = await fetch(server.url + "/", { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /^text\/html/);
  assert.match(await page.text(), /<script src="\/socket\.io\/socket\.io\.js"><\/script>/);
  const client = await fetch(server.url + "/socket.io/socket.io.js", { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(client.status, 200);
  assert.match(client.headers.get("content-type"), /^(application|text)\/javascript/);
  assert.match(await client.text(), /global\.io = io/);
});

test("both pages connect and show their own socket id", async () => {
  assert.ok(p1.id && p2.id, "both pages have an id");
  assert.notEqual(p1.id, p2.id);
  assert.equal(await p1.page.textContent("#status"), p1.id);
  assert.equal(await p2.page.textContent("#status"), p2.id);
  assert.match(await p1.page.textContent("#conn"), new RegExp(`Connected as\\s+${p1.id}`));
});

test("a chat message sent through the form reaches both pages", async () => {
  const text = unique("hello everyone");
  await submit(p1, { "#input": text }, "#send");
  await Promise.all([waitForMessage(p1, text), waitForMessage(p2, text)]);
  assert.equal(await p1.page.inputValue("#input"), "", "the input is cleared after sending");
});

test("a room message reaches the room's members", async () => {
  await submit(p2, { "#room": "lobby" }, "#join");
  // Barrier: the server handles a socket's events in order, so once page 2's next chat
  // message comes back, its joinRoom was processed.
  const ready = unique("page 2 is in the lobby");
  await submit(p2, { "#input": ready }, "#send");
  await waitForMessage(p2, ready);

  await submit(p1, { "#room": "lobby" }, "#join");
  const text = unique("hi lobby");
  await submit(p1, { "#roomText": text }, "#sendRoom");
  const expected = `[room] ${p1.id}: ${text}`;
  await Promise.all([waitForMessage(p2, expected), waitForMessage(p1, expected)]);
});

test("a private message reaches only its recipient", async () => {
  const text = unique("psst, just for you");
  await submit(p1, { "#recipient": p2.id, "#privateText": text }, "#sendPrivate");
  await waitForMessage(p2, `[private] ${p1.id}: ${text}`);

  // Barrier: a later broadcast from page 1 arrives after anything the private message caused.
  const barrier = unique("after the private message");
  await submit(p1, { "#input": barrier }, "#send");
  await Promise.all([waitForMessage(p1, barrier), waitForMessage(p2, barrier)]);
  const seenBySender = (await messages(p1)).filter((m) => m.includes(text));
  assert.deepEqual(seenBySender, [], "the sender's page does not show the private message");

  await p2.page.screenshot({ path: SCREENSHOT });
});

test("no errors in the pages", () => {
  assert.deepEqual(p1.errors, []);
  assert.deepEqual(p2.errors, []);
});
