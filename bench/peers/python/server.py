#!/usr/bin/env python3
"""The python-socketio peer of tether's benchmarks (issue 9): same protocol as
examples/bench_server.rs.

    bench/.venv/bin/python bench/peers/python/server.py PORT [--server aiohttp|uvicorn] [--loop uvloop|asyncio]

- event `echo`: emitted back to the sender with the same arguments;
- event `bcast`: broadcast to every other socket of `/`, same arguments.

python-socketio's AsyncServer with its defaults (async_handlers=True, max_http_buffer_size 1e6,
ping_interval 25 s). Prints `listening on http://127.0.0.1:PORT` (flushed) once it accepts
connections. Python runs one thread.
"""

import argparse
import asyncio
import signal
import socket
import sys

import socketio


def build(async_mode):
    sio = socketio.AsyncServer(
        async_mode=async_mode,
        ping_interval=25,
        ping_timeout=20,
        max_http_buffer_size=1_000_000,
    )

    @sio.on("echo")
    async def echo(sid, *args):
        await sio.emit("echo", args, to=sid)

    @sio.on("bcast")
    async def bcast(sid, *args):
        await sio.emit("bcast", args, skip_sid=sid)

    return sio


def listening_socket(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(4096)
    s.setblocking(False)
    return s


def announce(sock):
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)


async def run_aiohttp(sock, stop):
    from aiohttp import web

    sio = build("aiohttp")
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock, backlog=4096)
    await site.start()
    announce(sock)
    await stop.wait()
    await runner.cleanup()


async def run_uvicorn(sock, stop):
    import uvicorn

    sio = build("asgi")
    app = socketio.ASGIApp(sio)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        http="httptools",
        ws="websockets",
        lifespan="off",
        ws_per_message_deflate=False,
        ws_max_size=1_000_000,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    announce(sock)
    await stop.wait()
    server.should_exit = True
    await task


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("threads", type=int, nargs="?", default=1, help="ignored: Python runs one thread")
    p.add_argument("--server", choices=["aiohttp", "uvicorn"], default="aiohttp")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    a = p.parse_args()
    if a.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sock = listening_socket(a.port)

    async def amain():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if a.server == "aiohttp":
            await run_aiohttp(sock, stop)
        else:
            await run_uvicorn(sock, stop)

    asyncio.run(amain())
    return 0


if __name__ == "__main__":
    sys.exit(main())
