#!/usr/bin/env python3
"""The chat app of the Socket.IO tutorials on tether's Python binding.

    python examples/python/chat_server.py [--port 3000]

then open http://127.0.0.1:3000 in two browser tabs (the same page as the Rust example,
examples/chat/index.html, served at `/`).

Events (the tutorials' names):
- `chat message` (text): sent to everyone, the sender included;
- `joinRoom` (room name): joins that room;
- `roomMessage` {room, message}: reaches the room's members as `roomMessage` {sender, message};
- `privateMessage` {recipientId, message}: reaches that one socket as `privateMessage` {sender, message}.
"""

import argparse
import logging
import signal
from pathlib import Path

import tether

PAGE = Path(__file__).resolve().parent.parent / "chat" / "index.html"

log = logging.getLogger("chat")
sio = tether.Server()


@sio.event
def connect(sid, environ, auth):
    log.info("user connected")


@sio.on("chat message")
def chat_message(sid, msg):
    sio.emit("chat message", msg)  # everyone, the sender included


@sio.on("joinRoom")
def join_room(sid, room):
    if isinstance(room, str):
        log.info("%s joined room %s", sid, room)
        sio.enter_room(sid, room)


@sio.on("roomMessage")
def room_message(sid, data):
    if isinstance(data, dict) and isinstance(data.get("room"), str):
        sio.emit("roomMessage", {"sender": sid, "message": data.get("message")}, room=data["room"])


@sio.on("privateMessage")
def private_message(sid, data):
    if isinstance(data, dict) and isinstance(data.get("recipientId"), str):
        sio.emit("privateMessage", {"sender": sid, "message": data.get("message")}, to=data["recipientId"])


@sio.event
def disconnect(sid, reason):
    log.info("user %s disconnected (%s)", sid, reason)


def main():
    parser = argparse.ArgumentParser(description="tether chat example")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1")
    opts = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    sio.static_file("/", str(PAGE), "text/html; charset=utf-8")
    port = sio.listen(opts.host, opts.port)
    print(f"listening on http://{opts.host}:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sio.shutdown())
    try:
        sio.wait()
    except KeyboardInterrupt:
        pass
    sio.shutdown()


if __name__ == "__main__":
    main()
