#!/usr/bin/env python3
"""A Socket.IO client on tether's Python binding, for the chat example (or any server
of the tutorials' chat):

    python examples/python/client.py [--url http://127.0.0.1:3000] [--room lobby] [--count 3]

Connects, joins a room, sends `chat message`s and a `roomMessage`, sends itself a
`privateMessage`, prints what comes back, and disconnects.
"""

import argparse
import threading

import tether


def main():
    parser = argparse.ArgumentParser(description="tether chat client example")
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=5.0)
    opts = parser.parse_args()

    sio = tether.Client(reconnection_attempts=3)
    got_private = threading.Event()
    got_room = threading.Event()
    chat = []
    all_chat = threading.Event()

    @sio.event
    def connect():
        print(f"connected as {sio.sid}", flush=True)

    @sio.on("chat message")
    def chat_message(msg):
        print(f"chat message: {msg}", flush=True)
        chat.append(msg)
        if len(chat) >= opts.count:
            all_chat.set()

    @sio.on("roomMessage")
    def room_message(data):
        print(f"roomMessage from {data['sender']}: {data['message']}", flush=True)
        got_room.set()

    @sio.on("privateMessage")
    def private_message(data):
        print(f"privateMessage from {data['sender']}: {data['message']}", flush=True)
        got_private.set()

    @sio.event
    def disconnect(reason):
        print(f"disconnected: {reason}", flush=True)

    sio.connect(opts.url, wait_timeout=opts.timeout)
    for i in range(opts.count):
        sio.emit("chat message", f"hello {i} from python")
    sio.emit("joinRoom", opts.room)
    sio.emit("roomMessage", {"room": opts.room, "message": "hi room"})
    sio.emit("privateMessage", {"recipientId": sio.sid, "message": "note to self"})
    ok = all_chat.wait(opts.timeout) and got_room.wait(opts.timeout) and got_private.wait(opts.timeout)
    sio.disconnect()
    print("ok" if ok else "missing replies", flush=True)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
