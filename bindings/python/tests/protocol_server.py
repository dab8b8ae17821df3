#!/usr/bin/env python3
"""The interop test server contract (tests/interop/PROTOCOL.md) on tether's Python binding.

    python protocol_server.py --port 0 [--async]

Prints `listening on http://127.0.0.1:PORT` once it accepts connections. With `--async`
it runs on tether.AsyncServer with coroutine handlers. The repository's interop suites
(official socket.io-client, python-socketio) run against it unchanged.
"""

import argparse
import asyncio
import signal
import sys
import threading
from pathlib import Path

try:
    import tether
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import tether

NAMESPACES = ["/", "/custom", "/refuse"]
OPTIONS = dict(
    cors_allowed_origins="*",
    ping_interval=0.3,
    ping_timeout=0.2,
    connect_timeout=1.0,
    max_http_buffer_size=1_000_000,
)


def _refuse(ns, auth):
    if ns == "/refuse" and not (isinstance(auth, dict) and auth.get("token") == "good"):
        raise tether.ConnectionRefusedError("not authorized", {"reason": "bad token"})


def _reply_list(value):
    if value is None:
        return []
    if isinstance(value, tuple):
        return list(value)
    return [value]


def build_sync():
    sio = tether.Server(**OPTIONS)

    def attach(ns):
        def on(event):
            return sio.on(event, namespace=ns)

        @on("connect")
        def connect(sid, environ, auth):
            _refuse(ns, auth)
            sio.emit("auth", auth if auth is not None else {}, to=sid, namespace=ns)

        @on("message")
        def message(sid, *args, ack=None):  # takes the ack: never answers it (as Node)
            sio.emit("message-back", args, to=sid, namespace=ns)

        @on("message-with-ack")
        def message_with_ack(sid, *args):
            return args

        @on("request-ack")
        def request_ack(sid, timeout_ms=1000, *_rest, ack=None):
            # Waits for the client's ack in another thread (the handler thread stays free).
            def wait():
                try:
                    reply = sio.call("need-ack", "please", to=sid, namespace=ns,
                                     timeout=float(timeout_ms) / 1000.0)
                    result = {"ok": True, "args": _reply_list(reply)}
                except tether.TimeoutError:
                    result = {"ok": False, "error": "timeout"}
                except tether.DisconnectedError:
                    return
                sio.emit("ack-result", result, to=sid, namespace=ns)

            threading.Thread(target=wait, daemon=True).start()

        @on("binary-echo")
        def binary_echo(sid, *args, ack=None):
            sio.emit("binary-back", args, to=sid, namespace=ns)

        @on("join")
        def join(sid, room=None, *_rest, ack=None):
            if room is not None:
                sio.enter_room(sid, room, namespace=ns)
            if ack is not None:
                ack(True)

        @on("leave")
        def leave(sid, room=None, *_rest, ack=None):
            if room is not None:
                sio.leave_room(sid, room, namespace=ns)
            if ack is not None:
                ack(True)

        @on("to-room")
        def to_room(sid, room=None, *args, ack=None):
            if room is not None:
                sio.emit("room-message", args, room=room, namespace=ns)

        @on("broadcast")
        def broadcast(sid, *args, ack=None):
            sio.emit("broadcast-message", args, skip_sid=sid, namespace=ns)

        @on("private")
        def private(sid, target=None, *args, ack=None):
            if target is not None:
                sio.emit("private-message", (sid, *args), to=target, namespace=ns)

        @on("disconnect-me")
        def disconnect_me(sid, *_args, ack=None):
            sio.disconnect(sid, namespace=ns)

        @on("rooms")
        def rooms(sid, *_args, ack=None):
            if ack is not None:
                ack(sorted(sio.rooms(sid, namespace=ns)))

    for ns in NAMESPACES:
        attach(ns)
    return sio


def build_async():
    sio = tether.AsyncServer(**OPTIONS)

    def attach(ns):
        def on(event):
            return sio.on(event, namespace=ns)

        @on("connect")
        async def connect(sid, environ, auth):
            _refuse(ns, auth)
            await sio.emit("auth", auth if auth is not None else {}, to=sid, namespace=ns)

        @on("message")
        async def message(sid, *args, ack=None):
            await sio.emit("message-back", args, to=sid, namespace=ns)

        @on("message-with-ack")
        async def message_with_ack(sid, *args):
            return args

        @on("request-ack")
        async def request_ack(sid, timeout_ms=1000, *_rest, ack=None):
            try:
                reply = await sio.call("need-ack", "please", to=sid, namespace=ns,
                                       timeout=float(timeout_ms) / 1000.0)
                result = {"ok": True, "args": _reply_list(reply)}
            except tether.TimeoutError:
                result = {"ok": False, "error": "timeout"}
            except tether.DisconnectedError:
                return
            await sio.emit("ack-result", result, to=sid, namespace=ns)

        @on("binary-echo")
        async def binary_echo(sid, *args, ack=None):
            await sio.emit("binary-back", args, to=sid, namespace=ns)

        @on("join")
        async def join(sid, room=None, *_rest, ack=None):
            if room is not None:
                await sio.enter_room(sid, room, namespace=ns)
            if ack is not None:
                ack(True)

        @on("leave")
        async def leave(sid, room=None, *_rest, ack=None):
            if room is not None:
                await sio.leave_room(sid, room, namespace=ns)
            if ack is not None:
                ack(True)

        @on("to-room")
        async def to_room(sid, room=None, *args, ack=None):
            if room is not None:
                await sio.emit("room-message", args, room=room, namespace=ns)

        @on("broadcast")
        def broadcast(sid, *args, ack=None):  # a plain function on an AsyncServer
            asyncio.ensure_future(sio.emit("broadcast-message", args, skip_sid=sid, namespace=ns))

        @on("private")
        async def private(sid, target=None, *args, ack=None):
            if target is not None:
                await sio.emit("private-message", (sid, *args), to=target, namespace=ns)

        @on("disconnect-me")
        async def disconnect_me(sid, *_args, ack=None):
            await sio.disconnect(sid, namespace=ns)

        @on("rooms")
        async def rooms(sid, *_args, ack=None):
            if ack is not None:
                ack(sorted(sio.rooms(sid, namespace=ns)))

    for ns in NAMESPACES:
        attach(ns)
    return sio


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--async", dest="use_async", action="store_true")
    opts = parser.parse_args()
    if opts.use_async:
        async def run():
            sio = build_async()
            port = await sio.listen("127.0.0.1", opts.port)
            print(f"listening on http://127.0.0.1:{port}", flush=True)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(sio.shutdown()))
            await sio.wait()

        asyncio.run(run())
        return
    sio = build_sync()
    port = sio.listen("127.0.0.1", opts.port)
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sio.shutdown())
    try:
        sio.wait()
    except KeyboardInterrupt:
        sio.shutdown()


if __name__ == "__main__":
    main()
