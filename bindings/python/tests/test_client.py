"""tether.Client against the Node `socket.io` reference server and a python-socketio
server (tests/interop/PROTOCOL.md): events, acks both ways (late acks from another
thread), binary, rooms, namespaces, refusal with data, server disconnect, reconnection
after the server restarts."""

import threading
import time

import pytest

import tether
from conftest import wait_for


def make(**kw):
    kw.setdefault("reconnection", False)
    return tether.Client(**kw)


def test_auth_events_and_client_acks(peer, inbox):
    _, srv, _ = peer
    c = make()
    c.on("auth", inbox.handler("auth"))
    c.on("message-back", inbox.handler("message-back"))
    c.connect(srv.url, auth={"token": "abc", "n": 1}, wait_timeout=5)
    try:
        assert inbox.next("auth") == ({"token": "abc", "n": 1},)
        assert c.connected and isinstance(c.sid, str) and c.get_sid("/") == c.sid
        assert c.transport() in ("websocket", "polling")
        args = ("hello", 1, {"a": [1, 2]}, None, True, 2.5)
        c.emit("message", args)
        assert inbox.next("message-back") == args
        for i in range(20):  # order kept
            c.emit("message", i)
        for i in range(20):
            assert inbox.next("message-back") == (i,)
        assert c.call("message-with-ack", (1, "2", {"x": 3}), timeout=5) == (1, "2", {"x": 3})
        assert c.call("message-with-ack", "one", timeout=5) == "one"
        c.emit("message-with-ack", (7, 8), callback=inbox.handler("cb"))
        assert inbox.next("cb") == (7, 8)
    finally:
        c.disconnect()
    assert not c.connected


def test_server_to_client_acks(peer, inbox):
    _, srv, _ = peer
    c = make()
    c.on("ack-result", inbox.handler("ack-result"))

    @c.on("need-ack")
    def need_ack(arg, ack):
        inbox.put("asked", arg, threading.current_thread().name)
        threading.Timer(0.1, lambda: ack("late", 42)).start()  # answered from another thread

    c.connect(srv.url, wait_timeout=5)
    try:
        c.emit("request-ack", 3000)
        assert inbox.next("asked") == ("please", "tether-dispatch")
        assert inbox.next("ack-result") == ({"ok": True, "args": ["late", 42]},)

        @c.on("need-ack")
        def need_ack_now(arg):
            return "now", arg  # the return value answers

        c.emit("request-ack", 3000)
        assert inbox.next("ack-result") == ({"ok": True, "args": ["now", "please"]},)
    finally:
        c.disconnect()


def test_binary_both_ways(peer, inbox):
    _, srv, _ = peer
    c = make()
    c.on("binary-back", inbox.handler("binary-back"))
    c.connect(srv.url, wait_timeout=5)
    try:
        big = bytes(range(256)) * 400
        args = (b"\x00\x01\x02", {"nested": b"xyz", "list": [b"", "text"]}, "plain", big)
        c.emit("binary-echo", args)
        assert inbox.next("binary-back") == args
    finally:
        c.disconnect()


def test_rooms_broadcast_private(peer, inbox):
    _, srv, _ = peer
    a, b = make(), make()
    for name, c in (("a", a), ("b", b)):
        for ev in ("room-message", "broadcast-message", "private-message"):
            c.on(ev, (lambda n, e: lambda *args: inbox.put(f"{e}-{n}", *args))(name, ev))
        c.connect(srv.url, wait_timeout=5)
    try:
        assert a.call("join", "r", timeout=5) is True
        assert b.call("join", "r", timeout=5) is True
        assert a.call("rooms", timeout=5) == sorted([a.sid, "r"])
        a.emit("to-room", ("r", "hi", b"\x01"))
        assert inbox.next("room-message-a") == ("hi", b"\x01")
        assert inbox.next("room-message-b") == ("hi", b"\x01")
        a.emit("broadcast", "all")
        assert inbox.next("broadcast-message-b") == ("all",)
        a.emit("private", (b.sid, "psst"))
        assert inbox.next("private-message-b") == (a.sid, "psst")
        assert b.call("leave", "r", timeout=5) is True
        a.emit("to-room", ("r", "again"))
        assert inbox.next("room-message-a") == ("again",)
        time.sleep(0.2)
        assert inbox.count("room-message-b") == 0 and inbox.count("broadcast-message-a") == 0
    finally:
        a.disconnect()
        b.disconnect()


def test_namespaces_multiplexed(peer, inbox):
    _, srv, _ = peer
    c = make()
    c.on("auth", inbox.handler("auth-root"))
    c.on("auth", inbox.handler("auth-custom"), namespace="/custom")
    c.connect(srv.url, namespaces=["/", "/custom"], auth={"k": "v"}, wait_timeout=5)
    try:
        assert inbox.next("auth-root") == ({"k": "v"},)
        assert inbox.next("auth-custom") == ({"k": "v"},)
        assert set(c.namespaces) == {"/", "/custom"}
        assert c.get_sid("/custom") not in (None, c.sid)
        assert c.call("message-with-ack", "x", namespace="/custom", timeout=5) == "x"
        assert c.call("join", "only-custom", namespace="/custom", timeout=5) is True
        assert "only-custom" not in c.call("rooms", timeout=5)
        with pytest.raises(tether.BadNamespaceError):
            c.emit("x", namespace="/not-joined")
    finally:
        c.disconnect()


def test_refusal_with_data(peer):
    name, srv, _ = peer
    c = make()
    with pytest.raises(tether.ConnectionRefusedError) as e:
        c.connect(srv.url, namespaces="/refuse", auth={"token": "bad"}, wait_timeout=5)
    assert e.value.message == "not authorized"
    assert e.value.data == {"reason": "bad token"}
    assert e.value.error_args == {"message": "not authorized", "data": {"reason": "bad token"}}
    assert isinstance(e.value, tether.ConnectionError) and isinstance(e.value, ConnectionRefusedError)
    assert not c.connected
    # unknown namespace
    c2 = make()
    with pytest.raises(tether.ConnectionRefusedError):
        c2.connect(srv.url, namespaces=["/nope"], wait_timeout=5)
    # a good token gets in
    c3 = make()
    c3.connect(srv.url, namespaces=["/refuse"], auth={"token": "good"}, wait_timeout=5)
    assert c3.get_sid("/refuse")
    c3.disconnect()


def test_server_disconnect_ends_wait(peer, inbox):
    _, srv, _ = peer
    c = make(reconnection=True)
    c.on("disconnect", inbox.handler("disconnect"))
    c.connect(srv.url, wait_timeout=5)
    c.emit("disconnect-me")
    assert inbox.next("disconnect") == (tether.Client.reason.SERVER_DISCONNECT,)
    assert c.wait(timeout=5) is True
    assert not c.connected


def test_connection_error_when_nobody_listens():
    c = make()
    t = time.monotonic()
    with pytest.raises(tether.ConnectionError):
        c.connect("http://127.0.0.1:9", wait_timeout=2)
    assert time.monotonic() - t < 5


@pytest.mark.timeout(60)
def test_reconnect_after_server_restart(peer, spawn, inbox):
    _, srv, make_cmd = peer
    port = srv.port
    c = tether.Client(reconnection=True, reconnection_delay=0.1, reconnection_delay_max=0.3,
                      randomization_factor=0)
    c.on("connect", lambda: inbox.put("connect"))
    c.on("disconnect", inbox.handler("disconnect"))
    c.on("message-back", inbox.handler("message-back"))
    c.connect(srv.url, wait_timeout=5)
    try:
        inbox.next("connect")
        first_sid = c.sid
        srv.stop()
        reason = inbox.next("disconnect", timeout=10)
        assert reason[0] in ("transport close", "transport error", "ping timeout")
        assert not c.connected
        spawn(make_cmd(port))  # the same port
        inbox.next("connect", timeout=20)
        assert c.connected and c.sid != first_sid
        c.emit("message", "after restart")
        assert inbox.next("message-back") == ("after restart",)
    finally:
        c.disconnect()


def test_gil_released_while_connect_and_wait_block():
    import socket

    # A listener that accepts and never answers: connect() blocks until its timeout.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    port = ls.getsockname()[1]
    ticks = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        c = make()
        before = ticks[0]
        with pytest.raises((tether.TimeoutError, tether.ConnectionError)):
            c.connect(f"http://127.0.0.1:{port}", wait_timeout=1)
        assert ticks[0] - before > 10_000, "the spinning thread was starved"
        before = ticks[0]
        sio = tether.Server()
        sio.listen()
        threading.Timer(0.5, sio.shutdown).start()
        sio.wait()
        assert ticks[0] - before > 10_000
    finally:
        stop.set()
        t.join()
        ls.close()


def test_refused_on_reconnect_ends_wait(inbox):
    first = tether.Server()
    port = first.listen()
    c = tether.Client(reconnection=True, reconnection_delay=0.1, reconnection_delay_max=0.2,
                      randomization_factor=0)
    c.on("connect_error", inbox.handler("connect_error"))
    c.on("disconnect", inbox.handler("disconnect"))
    c.connect(f"http://127.0.0.1:{port}", wait_timeout=5)
    first.shutdown()
    inbox.next("disconnect")
    second = tether.Server()

    @second.event
    def connect(sid, environ, auth):
        raise tether.ConnectionRefusedError("go away", {"n": 1})

    try:
        second.listen(port=port)
        assert inbox.next("connect_error", timeout=10) == ({"message": "go away", "data": {"n": 1}},)
        assert c.wait(timeout=5) is True
        assert not c.connected
    finally:
        c.disconnect()
        second.shutdown()
