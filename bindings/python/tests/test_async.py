"""asyncio: tether.AsyncServer with python-socketio's AsyncClient and with tether.AsyncClient;
tether.AsyncClient against the Node and python-socketio reference servers. Handlers are
coroutines (and plain functions) running on the caller's loop."""

import asyncio
import threading

import pytest
import socketio

import tether


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_async_server_with_python_socketio_async_client():
    async def main():
        sio = tether.AsyncServer()
        loop = asyncio.get_running_loop()
        seen = []

        @sio.event
        async def connect(sid, environ, auth):
            assert asyncio.get_running_loop() is loop
            if auth and auth.get("token") == "bad":
                raise tether.ConnectionRefusedError("nope", {"why": "bad"})
            await sio.enter_room(sid, "room1")

        @sio.on("echo")
        async def echo(sid, *args):
            assert asyncio.get_running_loop() is loop
            await asyncio.sleep(0.01)
            await sio.emit("echo", args, to=sid)

        @sio.on("add")
        async def add(sid, a, b):
            await asyncio.sleep(0)
            return a + b

        @sio.on("plain")
        def plain(sid, x):  # a plain function on an AsyncServer runs on the loop too
            seen.append(threading.current_thread() is threading.main_thread())
            return x

        @sio.on("late")
        async def late(sid, x, ack):
            loop.call_later(0.1, ack, "late", x)

        port = await sio.listen()
        c = socketio.AsyncClient(reconnection=False)
        got = asyncio.Queue()
        c.on("echo", lambda *a: got.put_nowait(a))
        c.on("q", lambda x: ("a", x))
        await c.connect(f"http://127.0.0.1:{port}", wait_timeout=5)
        await c.emit("echo", ("x", b"\x00\x01", {"k": [1]}))
        assert await asyncio.wait_for(got.get(), 5) == ("x", b"\x00\x01", {"k": [1]})
        assert await c.call("add", (2, 3), timeout=5) == 5
        assert await c.call("plain", "p", timeout=5) == "p"
        assert seen == [True]
        assert await c.call("late", 1, timeout=5) == ("late", 1)
        sid = c.get_sid()
        assert sorted(sio.rooms(sid)) == sorted([sid, "room1"])
        assert await sio.call("q", 9, to=sid, timeout=5) == ("a", 9)
        with pytest.raises(tether.DisconnectedError):
            await sio.call("never", to="no-such-sid", timeout=0.2)
        bad = socketio.AsyncClient(reconnection=False)
        errors = asyncio.Queue()
        bad.on("connect_error", lambda data: errors.put_nowait(data))
        with pytest.raises(socketio.exceptions.ConnectionError):
            await bad.connect(f"http://127.0.0.1:{port}", auth={"token": "bad"}, wait_timeout=5)
        assert await asyncio.wait_for(errors.get(), 5) == {"message": "nope", "data": {"why": "bad"}}
        await c.disconnect()
        await sio.shutdown()
        await asyncio.wait_for(sio.wait(), 5)

    run(main())


def test_async_server_with_async_client():
    async def main():
        sio = tether.AsyncServer()
        loop = asyncio.get_running_loop()

        @sio.on("hello", namespace="/ns")
        async def hello(sid, name):
            return f"hi {name}"

        @sio.on("bin")
        async def binary(sid, data):
            await sio.emit("bin", data[::-1], to=sid)

        port = await sio.listen()
        c = tether.AsyncClient(reconnection=False)
        got = asyncio.Queue()

        @c.on("bin")
        async def on_bin(data):
            assert asyncio.get_running_loop() is loop
            got.put_nowait(data)

        await c.connect(f"http://127.0.0.1:{port}", namespaces=["/", "/ns"], wait_timeout=5)
        assert c.connected and c.get_sid("/ns")
        assert await c.call("hello", "bob", namespace="/ns", timeout=5) == "hi bob"
        await c.emit("bin", b"abc")
        assert await asyncio.wait_for(got.get(), 5) == b"cba"
        await c.disconnect()
        await asyncio.wait_for(c.wait(), 5)
        await sio.shutdown()

    run(main())


def test_async_client_against_reference_servers(peer):
    _, srv, _ = peer

    async def main():
        c = tether.AsyncClient(reconnection=False)
        got = asyncio.Queue()
        c.on("auth", lambda a: got.put_nowait(("auth", a)))
        c.on("message-back", lambda *a: got.put_nowait(("back", a)))
        c.on("ack-result", lambda r: got.put_nowait(("result", r)))

        @c.on("need-ack")
        async def need_ack(arg):
            await asyncio.sleep(0.05)
            return "late", arg

        await c.connect(srv.url, auth={"a": 1}, wait_timeout=5)
        assert await asyncio.wait_for(got.get(), 5) == ("auth", {"a": 1})
        await c.emit("message", (1, b"\x02"))
        assert await asyncio.wait_for(got.get(), 5) == ("back", (1, b"\x02"))
        assert await c.call("message-with-ack", ("x", 2), timeout=5) == ("x", 2)
        await c.emit("request-ack", 3000)
        assert await asyncio.wait_for(got.get(), 5) == ("result", {"ok": True, "args": ["late", "please"]})
        with pytest.raises(tether.ConnectionRefusedError) as e:
            c2 = tether.AsyncClient(reconnection=False)
            await c2.connect(srv.url, namespaces=["/refuse"], wait_timeout=5)
        assert e.value.data == {"reason": "bad token"}
        await c.disconnect()

    run(main())
