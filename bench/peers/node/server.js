// The Node socket.io peer of tether's benchmarks (issue 9): same protocol as
// examples/bench_server.rs.
//
//   node server.js PORT
//
// - event `echo`: emitted back to the sender with the same arguments;
// - event `bcast`: broadcast to every other socket of `/`, same arguments.
//
// socket.io 4.8.4 on Node's http server, `ws` with `bufferutil` (checked at start-up),
// defaults otherwise (maxHttpBufferSize 1e6, pingInterval 25 s, no per-message deflate).
// Prints `listening on http://127.0.0.1:PORT` once listening. Node is single-threaded.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] ?? "0");
if (!Number.isInteger(port) || port < 0) {
  console.error("usage: node server.js PORT");
  process.exit(2);
}
try {
  require("bufferutil");
} catch (e) {
  console.error("bufferutil is not installed: npm ci in bench/peers/node");
  process.exit(1);
}

const httpServer = http.createServer();
const io = new Server(httpServer, {
  serveClient: false,
  pingInterval: 25000,
  pingTimeout: 20000,
  maxHttpBufferSize: 1e6,
});

io.on("connection", (socket) => {
  socket.on("echo", (...args) => {
    socket.emit("echo", ...args);
  });
  socket.on("bcast", (...args) => {
    socket.broadcast.emit("bcast", ...args);
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening on http://127.0.0.1:${httpServer.address().port}\n`);
});

const stop = () => {
  io.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
