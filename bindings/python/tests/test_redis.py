"""Redis from Python: two tether Servers sharing rooms and broadcasts through a real
redis-server (tether.RedisManager as client_manager), and the write-only emitter
(RedisManager(url, write_only=True).emit) reaching a python-socketio client."""

import shutil
import socket
import subprocess
import time

import pytest
import socketio

import tether
from conftest import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url():
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def node_server(url, inbox, name):
    sio = tether.Server(client_manager=tether.RedisManager(url))

    @sio.event
    def connect(sid, environ, auth):
        inbox.put(f"{name}-connect", sid)

    @sio.on("join")
    def join(sid, room):
        sio.enter_room(sid, room)
        return "joined"

    return sio


def sio_client(port, inbox, tag):
    c = socketio.Client(reconnection=False)
    for ev in ("news", "room-news", "from-emitter", "room-emitter"):
        c.on(ev, (lambda ev: lambda *a: inbox.put(f"{tag}:{ev}", *a))(ev))
    c.connect(f"http://127.0.0.1:{port}", wait_timeout=5)
    return c


def test_broadcast_and_room_across_two_servers(redis_url, inbox):
    a = node_server(redis_url, inbox, "a")
    b = node_server(redis_url, inbox, "b")
    try:
        pa, pb = a.listen(), b.listen()
        ca = sio_client(pa, inbox, "ca")
        cb = sio_client(pb, inbox, "cb")
        try:
            # A broadcast emitted on B reaches the client of A (and B's own).
            b.emit("news", {"n": 1, "bin": b"\x00\x01"})
            assert inbox.next("ca:news") == ({"n": 1, "bin": b"\x00\x01"},)
            assert inbox.next("cb:news") == ({"n": 1, "bin": b"\x00\x01"},)
            # A room joined on A, broadcast to from B: only A's client is in it.
            assert ca.call("join", "lobby", timeout=5) == "joined"
            b.emit("room-news", ("hello", 2), room="lobby")
            assert inbox.next("ca:room-news") == ("hello", 2)
            # skip_sid across nodes: B's client is left out, A's gets it.
            sid_b = cb.get_sid()
            a.emit("news", "skip-b", skip_sid=sid_b)
            assert inbox.next("ca:news") == ("skip-b",)
            time.sleep(0.2)
            assert inbox.count("cb:news") == 0
            assert inbox.count("cb:room-news") == 0
        finally:
            ca.disconnect()
            cb.disconnect()
    finally:
        a.shutdown()
        b.shutdown()


def test_write_only_emitter_reaches_clients(redis_url, inbox):
    a = node_server(redis_url, inbox, "a")
    try:
        pa = a.listen()
        ca = sio_client(pa, inbox, "ca")
        try:
            assert ca.call("join", "vip", timeout=5) == "joined"
            mgr = tether.RedisManager(redis_url, write_only=True)
            mgr.emit("from-emitter", {"x": [1, 2]})
            assert inbox.next("ca:from-emitter") == ({"x": [1, 2]},)
            mgr.emit("room-emitter", ("a", b"\xff"), room="vip", namespace="/")
            assert inbox.next("ca:room-emitter") == ("a", b"\xff")
            mgr.emit("room-emitter", "nobody", room="empty-room")
            mgr.emit("room-emitter", "skipped", to="vip", skip_sid=ca.get_sid())
            mgr.emit("from-emitter", "last")
            assert inbox.next("ca:from-emitter") == ("last",)
            assert inbox.count("ca:room-emitter") == 0
            with pytest.raises(ValueError):
                mgr.emit("x", 1, callback=lambda *a: None)
        finally:
            ca.disconnect()
    finally:
        a.shutdown()


def test_bad_managers():
    with pytest.raises(ValueError):
        tether.Server(client_manager=tether.RedisManager("redis://127.0.0.1:1", write_only=True))
    with pytest.raises(tether.ConnectionError):
        tether.Server(client_manager=tether.RedisManager(f"redis://127.0.0.1:{free_port()}", connect_timeout=1))
    with pytest.raises(TypeError):
        tether.Server(client_manager=object())
    with pytest.raises(tether.ConnectionError):
        tether.RedisManager(f"redis://127.0.0.1:{free_port()}", write_only=True).emit("x")




def test_async_servers_and_async_emitter(redis_url):
    import asyncio

    async def main():
        servers = [tether.AsyncServer(client_manager=tether.AsyncRedisManager(redis_url)) for _ in range(2)]
        a, b = servers

        @a.on("join")
        async def join(sid, room):
            await a.enter_room(sid, room)
            return "ok"

        pa = await a.listen()
        await b.listen()
        c = socketio.AsyncClient(reconnection=False)
        got: asyncio.Queue = asyncio.Queue()
        c.on("news", lambda *x: got.put_nowait(x))
        await c.connect(f"http://127.0.0.1:{pa}", wait_timeout=5)
        assert await c.call("join", "r1", timeout=5) == "ok"
        await b.emit("news", "from-b", room="r1")
        assert await asyncio.wait_for(got.get(), 5) == ("from-b",)
        mgr = tether.AsyncRedisManager(redis_url, write_only=True)
        await mgr.emit("news", {"e": 1}, room="r1")
        assert await asyncio.wait_for(got.get(), 5) == ({"e": 1},)
        await c.disconnect()
        for s in servers:
            await s.shutdown()

    asyncio.run(asyncio.wait_for(main(), 30))
