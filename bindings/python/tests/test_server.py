"""tether.Server with the python-socketio client (in process) and with the official Node
socket.io-client: events, acks both ways (late acks from another thread), binary, rooms,
namespaces, connect refusal with data, disconnect reasons, errors in handlers."""

import json
import logging
import subprocess
import threading
import time
import urllib.request

import pytest
import socketio

import tether
from conftest import INTEROP, node, wait_for


@pytest.fixture
def sio():
    s = tether.Server(ping_interval=1, ping_timeout=1)
    yield s
    s.shutdown()


def client(port, **kw):
    c = socketio.Client(reconnection=False)
    return c


def join_server(c, port, **kw):
    kw.setdefault("wait_timeout", 5)
    c.connect(f"http://127.0.0.1:{port}", **kw)
    return c


def test_events_acks_binary_both_ways(sio, inbox):
    @sio.on("echo")
    def echo(sid, *args):
        inbox.put("server-echo", threading.current_thread().name)
        sio.emit("echo", args, to=sid)

    @sio.on("sum")
    def add(sid, a, b):
        return a + b

    @sio.on("pair")
    def pair(sid):
        return "one", 2  # a tuple: several ack arguments

    port = sio.listen()
    c = client(port)
    c.on("echo", inbox.handler("echo"))
    join_server(c, port)
    payload = ("text", 7, 1.5, None, True, [1, {"x": b"\x00\xff"}], {"bin": b"abc"}, b"\x01\x02")
    c.emit("echo", payload)
    assert inbox.next("echo") == payload
    assert inbox.next("server-echo") == ("tether-dispatch",)
    assert c.call("sum", (2, 3), timeout=5) == 5
    assert c.call("pair", timeout=5) == ("one", 2)
    c.disconnect()


def test_wire_order_is_kept(sio, inbox):
    seen = []

    @sio.on("n")
    def n(sid, i):
        seen.append(i)

    port = sio.listen()
    c = join_server(client(port), port)
    for i in range(500):
        c.emit("n", i)
    wait_for(lambda: len(seen) == 500, what="500 events")
    assert seen == list(range(500))
    c.disconnect()


def test_late_ack_from_another_thread(sio):
    @sio.on("slow")
    def slow(sid, x, ack):
        assert isinstance(ack, tether.Ack)
        threading.Timer(0.2, lambda: ack(x * 2, "late")).start()

    @sio.on("no-ack-asked")
    def no_ack(sid, ack=None):
        assert ack is None

    port = sio.listen()
    c = join_server(client(port), port)
    t = time.monotonic()
    assert c.call("slow", 21, timeout=5) == (42, "late")
    assert time.monotonic() - t >= 0.15
    c.emit("no-ack-asked")
    c.disconnect()


def test_server_to_client_acks(sio, inbox):
    @sio.event
    def connect(sid, environ, auth):
        inbox.put("connected", sid)

    port = sio.listen()
    c = client(port)
    c.on("question", lambda x: ("answer", x + 1))
    connect_c = join_server(c, port)
    sio_sid = c.get_sid()
    wait_for(lambda: sio_sid in sio.sids(), what="socket listed")
    # blocking call, from this (non-handler) thread
    assert sio.call("question", 1, to=sio_sid, timeout=5) == ("answer", 2)
    # callback form
    sio.emit("question", 10, to=sio_sid, callback=inbox.handler("cb"))
    assert inbox.next("cb") == ("answer", 11)
    # timeout (python-socketio answers every ack when its handler returns: a slow one)
    c.on("slow", lambda: time.sleep(0.5))
    with pytest.raises(tether.TimeoutError):
        sio.call("slow", to=sio_sid, timeout=0.2)
    with pytest.raises(TimeoutError):  # also the builtin
        sio.call("slow", to=sio_sid, timeout=0.2)
    connect_c.disconnect()


def test_rooms_broadcast_skip_sid_private(sio, inbox):
    @sio.on("join")
    def join(sid, room):
        sio.enter_room(sid, room)
        return sorted(sio.rooms(sid))

    @sio.on("leave")
    def leave(sid, room):
        sio.leave_room(sid, room)
        return sorted(sio.rooms(sid))

    @sio.on("to-room")
    def to_room(sid, room, msg):
        sio.emit("room-message", msg, room=room)

    @sio.on("broadcast")
    def broadcast(sid, msg):
        sio.emit("broadcast-message", msg, skip_sid=sid)

    @sio.on("private")
    def private(sid, target, msg):
        sio.emit("private-message", (sid, msg), to=target)

    port = sio.listen()
    cs = []
    for i in range(3):
        c = client(port)
        for ev in ("room-message", "broadcast-message", "private-message"):
            c.on(ev, (lambda i, ev: lambda *a: inbox.put(f"{ev}-{i}", *a))(i, ev))
        cs.append(join_server(c, port))
    a, b, c3 = cs
    assert a.call("join", "r", timeout=5) == sorted([a.get_sid(), "r"])
    assert b.call("join", "r", timeout=5) == sorted([b.get_sid(), "r"])
    a.emit("to-room", ("r", "hi"))
    assert inbox.next("room-message-0") == ("hi",)
    assert inbox.next("room-message-1") == ("hi",)
    a.emit("broadcast", "all")
    assert inbox.next("broadcast-message-1") == ("all",)
    assert inbox.next("broadcast-message-2") == ("all",)
    a.emit("private", (c3.get_sid(), "psst"))
    assert inbox.next("private-message-2") == (a.get_sid(), "psst")
    assert b.call("leave", "r", timeout=5) == [b.get_sid()]
    time.sleep(0.3)
    assert inbox.count("room-message-2") == 0 and inbox.count("broadcast-message-0") == 0
    assert inbox.count("private-message-0") == 0 and inbox.count("private-message-1") == 0
    sio.close_room("r")
    for c in cs:
        c.disconnect()


def test_namespaces_and_catch_all(sio, inbox):
    @sio.on("hello", namespace="/chat")
    def hello(sid, x):
        return f"chat:{x}"

    @sio.on("hello")
    def hello_root(sid, x):
        return f"root:{x}"

    @sio.on("*", namespace="/chat")
    def any_event(event, sid, *args):
        inbox.put("any", event, *args)

    port = sio.listen()
    c = join_server(client(port), port, namespaces=["/", "/chat"])
    assert c.get_sid("/chat") and c.get_sid("/chat") != c.get_sid("/")
    assert c.call("hello", 1, namespace="/chat", timeout=5) == "chat:1"
    assert c.call("hello", 2, timeout=5) == "root:2"
    c.emit("other", (1, 2), namespace="/chat")
    assert inbox.next("any") == ("other", 1, 2)
    c.disconnect()
    # an unknown namespace is refused
    c2 = client(port)
    with pytest.raises(socketio.exceptions.ConnectionError):
        join_server(c2, port, namespaces=["/nope"], wait_timeout=2)


def test_connect_refusal_with_data_and_false(inbox):
    sio = tether.Server()

    @sio.event
    def connect(sid, environ, auth):
        if not auth:
            return False
        if auth.get("token") != "good":
            raise tether.ConnectionRefusedError("not authorized", {"reason": "bad token"})
        if auth.get("kick"):
            sio.disconnect(sid)  # before the socket exists: a refusal
            return
        sio.enter_room(sid, "vip")  # applied once the socket exists, before its events
        sio.emit("welcome", "in", to=sid)
        inbox.put("ok", sid, environ["REQUEST_METHOD"], environ["HTTP_X_TEST"])

    port = sio.listen()
    try:
        # python-socketio client: the connect_error handler gets message and data
        c = client(port)
        c.on("connect_error", inbox.handler("connect_error"))
        with pytest.raises(socketio.exceptions.ConnectionError):
            join_server(c, port, auth={"token": "bad"})
        assert inbox.next("connect_error") == ({"message": "not authorized", "data": {"reason": "bad token"}},)
        c = client(port)
        c.on("connect_error", inbox.handler("connect_error"))
        with pytest.raises(socketio.exceptions.ConnectionError):
            join_server(c, port)
        assert inbox.next("connect_error") == ({"message": "Connection rejected by server"},)
        c = client(port)
        c.on("welcome", inbox.handler("welcome"))
        join_server(c, port, auth={"token": "good"}, headers={"X-Test": "yes"})
        assert inbox.next("ok") == (c.get_sid(), "GET", "yes")  # the sid the client sees
        assert inbox.next("welcome") == ("in",)
        assert sorted(sio.rooms(c.get_sid())) == sorted([c.get_sid(), "vip"])
        c.disconnect()
        c = client(port)
        c.on("connect_error", inbox.handler("connect_error"))
        with pytest.raises(socketio.exceptions.ConnectionError):
            join_server(c, port, auth={"token": "good", "kick": True})
        assert inbox.next("connect_error") == ({"message": "Connection rejected by server"},)
        # the Node client sees err.message and err.data
        script = (
            "import { io } from 'socket.io-client';"
            f"const s = io('http://127.0.0.1:{port}', {{ auth: {{ token: 'bad' }}, reconnection: false }});"
            "s.on('connect_error', (e) => { console.log(JSON.stringify({ m: e.message, d: e.data })); process.exit(0); });"
            "setTimeout(() => process.exit(3), 5000);"
        )
        p = subprocess.run([node(), "--input-type=module", "-e", script], cwd=str(INTEROP),
                           capture_output=True, text=True, timeout=20)
        assert json.loads(p.stdout) == {"m": "not authorized", "d": {"reason": "bad token"}}
    finally:
        sio.shutdown()


def test_disconnect_reasons(sio, inbox):
    @sio.event
    def disconnect(sid, reason):
        inbox.put("disconnect", sid, reason)

    @sio.on("kick-me")
    def kick(sid):
        sio.disconnect(sid)

    port = sio.listen()
    c = join_server(client(port), port)
    sid = c.get_sid()
    c.disconnect()
    # python-socketio aborts the transport right after its DISCONNECT packet: either reason
    assert inbox.next("disconnect")[1] in (tether.Server.reason.CLIENT_DISCONNECT, "transport close")
    c = client(port)
    c.on("disconnect", inbox.handler("client-disconnect"))
    join_server(c, port)
    sid = c.get_sid()
    c.emit("kick-me")
    assert inbox.next("disconnect") == (sid, tether.Server.reason.SERVER_DISCONNECT)
    inbox.next("client-disconnect")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_handler_exception_is_logged_and_runtime_survives(sio, inbox, caplog):
    @sio.on("boom")
    def boom(sid):
        raise ValueError("kaboom")

    @sio.on("ping")
    def ping(sid):
        return "pong"

    port = sio.listen()
    c = join_server(client(port), port)
    with caplog.at_level(logging.ERROR, logger="tether"):
        c.emit("boom")
        wait_for(lambda: any("kaboom" in str(r.exc_info) for r in caplog.records), what="log record")
    rec = [r for r in caplog.records if r.name == "tether"][0]
    assert "boom" in rec.getMessage()
    assert c.call("ping", timeout=5) == "pong"
    c.disconnect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_handler_exception_reaches_custom_unraisablehook(sio, inbox, monkeypatch):
    import sys

    monkeypatch.setattr(sys, "unraisablehook", lambda u: inbox.put("hook", type(u.exc_value), str(u.object)))

    @sio.on("boom")
    def boom(sid):
        raise KeyError("x")

    port = sio.listen()
    c = join_server(client(port), port)
    c.emit("boom")
    exc_type, obj = inbox.next("hook")
    assert exc_type is KeyError and "boom" in obj
    c.disconnect()


def test_eight_threads_emit_at_once(sio, inbox):
    port = sio.listen()
    c = client(port)
    got = []
    lock = threading.Lock()

    def on_n(t, i):
        with lock:
            got.append((t, i))

    c.on("n", on_n)
    join_server(c, port)
    sid = c.get_sid()
    wait_for(lambda: sid in sio.sids(), what="socket listed")
    N = 200

    def worker(t):
        for i in range(N):
            sio.emit("n", (t, i), to=sid)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    wait_for(lambda: len(got) == 8 * N, timeout=10, what="all emits")
    for t in range(8):  # each thread's emits arrive in its order
        assert [i for (tt, i) in got if tt == t] == list(range(N))
    c.disconnect()


def test_static_route_and_bundled_client(sio, tmp_path):
    page = tmp_path / "index.html"
    page.write_text("<h1>hi</h1>")
    port = sio.listen(static_files={"/": str(page)})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        assert r.read() == b"<h1>hi</h1>"
        assert r.headers["content-type"].startswith("text/html")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/socket.io/socket.io.js", timeout=5) as r:
        assert r.status == 200


def test_shutdown_wait_and_closed_errors():
    sio = tether.Server()
    sio.listen()
    done = threading.Event()

    def waiter():
        sio.wait()
        done.set()

    threading.Thread(target=waiter, daemon=True).start()
    time.sleep(0.2)
    assert not done.is_set()
    sio.shutdown()
    assert done.wait(5)
    assert sio.closed
    with pytest.raises(tether.ShutDownError):
        sio.emit("x")
    with pytest.raises(tether.TetherError):
        sio.listen()
