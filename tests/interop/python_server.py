#!/usr/bin/env python3
"""The interop test server contract (PROTOCOL.md) on python-socketio's AsyncServer (aiohttp).

A third, independent server implementation for tether's client tests (`tests/client.rs`).

    .venv/bin/python tests/interop/python_server.py --port 0

Prints `listening on http://127.0.0.1:PORT` (flushed) once it accepts connections.

Differences from the Node reference server, all python-socketio's own behaviour:
- pingInterval 1000 ms and pingTimeout 1000 ms (python-engineio cannot announce 300 ms);
- an event that asked for an ack is always acknowledged (with `[]` when the handler
  returns nothing), `message` included;
- an unknown namespace is refused with the plain message `Unable to connect` (no data);
- `/refuse` refuses with `ConnectionRefusedError("not authorized", {"reason": "bad token"})`,
  which python-socketio sends as `{"message": "not authorized", "data": {"reason": "bad token"}}`.
"""

import argparse
import asyncio
import os
import signal
import sys

import socketio
from aiohttp import web
from engineio.async_drivers import aiohttp as eio_aiohttp

NAMESPACES = ["/", "/custom", "/refuse"]


class _ReadExactly:
    """The request body stream, read to the end.

    python-engineio's aiohttp driver reads a polling POST with
    `request.content.read(content_length)`, which returns whatever has arrived so far: a
    large payload (a 200 kB binary is ~270 kB of base64) is cut short and the server
    fails to decode it. `readexactly` waits for the whole body.
    """

    def __init__(self, stream):
        self._stream = stream

    async def read(self, n=-1):
        if n is None or n < 0:
            return await self._stream.read()
        return await self._stream.readexactly(n)


def _translate_request(request, _orig=eio_aiohttp.translate_request):
    environ = _orig(request)
    environ["wsgi.input"] = _ReadExactly(request.content)
    return environ


eio_aiohttp._async["translate_request"] = _translate_request


def build_server():
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        cors_allowed_origins="*",
        # python-engineio announces int(ping_interval) * 1000 ms: whole seconds only
        # (0.3 would be announced as pingInterval 0, which clients rightly refuse).
        ping_interval=1,
        ping_timeout=1,
        max_http_buffer_size=1_000_000,
        # Handlers run as tasks: `request-ack` waits for the client's ack meanwhile.
        async_handlers=True,
        # PYTHON_SERVER_LOG=1: log every packet to stderr.
        logger=bool(os.environ.get("PYTHON_SERVER_LOG")),
        engineio_logger=bool(os.environ.get("PYTHON_SERVER_LOG")),
    )

    def attach(ns):
        async def send_auth(sid, auth):
            # The connect handler runs before python-socketio sends the CONNECT packet;
            # an emit from it would reach the client first. Wait until connected.
            for _ in range(200):
                if sio.manager.is_connected(sid, ns):
                    break
                await asyncio.sleep(0.005)
            await sio.emit("auth", auth, to=sid, namespace=ns)

        async def on_connect(sid, environ, auth=None):
            auth = auth if auth is not None else {}
            if ns == "/refuse" and not (isinstance(auth, dict) and auth.get("token") == "good"):
                raise socketio.exceptions.ConnectionRefusedError(
                    "not authorized", {"reason": "bad token"}
                )
            sio.start_background_task(send_auth, sid, auth)

        async def on_message(sid, *args):
            await sio.emit("message-back", tuple(args), to=sid, namespace=ns)

        async def on_message_with_ack(sid, *args):
            return tuple(args)

        async def on_binary_echo(sid, *args):
            await sio.emit("binary-back", tuple(args), to=sid, namespace=ns)

        async def on_request_ack(sid, timeout_ms=1000, *_rest):
            loop = asyncio.get_running_loop()
            reply = loop.create_future()

            def callback(*args):
                if not reply.done():
                    reply.set_result(list(args))

            await sio.emit("need-ack", "please", to=sid, namespace=ns, callback=callback)
            try:
                args = await asyncio.wait_for(reply, float(timeout_ms) / 1000.0)
                result = {"ok": True, "args": args}
            except asyncio.TimeoutError:
                result = {"ok": False, "error": "timeout"}
            await sio.emit("ack-result", result, to=sid, namespace=ns)

        async def on_join(sid, room=None, *_rest):
            if room is not None:
                await sio.enter_room(sid, room, namespace=ns)
            return True

        async def on_leave(sid, room=None, *_rest):
            if room is not None:
                await sio.leave_room(sid, room, namespace=ns)
            return True

        async def on_to_room(sid, room=None, *args):
            if room is not None:
                await sio.emit("room-message", tuple(args), room=room, namespace=ns)

        async def on_broadcast(sid, *args):
            await sio.emit("broadcast-message", tuple(args), namespace=ns, skip_sid=sid)

        async def on_private(sid, target=None, *args):
            if target is not None:
                await sio.emit("private-message", (sid, *args), to=target, namespace=ns)

        async def on_disconnect_me(sid, *_args):
            await sio.disconnect(sid, namespace=ns)

        async def on_rooms(sid, *_args):
            return sorted(sio.rooms(sid, namespace=ns))

        handlers = {
            "connect": on_connect,
            "message": on_message,
            "message-with-ack": on_message_with_ack,
            "binary-echo": on_binary_echo,
            "request-ack": on_request_ack,
            "join": on_join,
            "leave": on_leave,
            "to-room": on_to_room,
            "broadcast": on_broadcast,
            "private": on_private,
            "disconnect-me": on_disconnect_me,
            "rooms": on_rooms,
        }
        for event, handler in handlers.items():
            sio.on(event, handler=handler, namespace=ns)

    for ns in NAMESPACES:
        attach(ns)
    return sio


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    opts = parser.parse_args()

    sio = build_server()
    app = web.Application()
    sio.attach(app, socketio_path="socket.io")
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", opts.port, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    sys.stdout.write(f"listening on http://127.0.0.1:{port}\n")
    sys.stdout.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
