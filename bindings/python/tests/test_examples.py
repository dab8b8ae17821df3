"""examples/python: the chat server (the tutorials' chat, the Rust example's page) driven
by python-socketio clients and by examples/python/client.py."""

import subprocess
import sys
import urllib.request

import socketio

from conftest import EXAMPLES, ROOT, Inbox


def test_chat_server_and_client_example(spawn):
    srv = spawn([sys.executable, str(EXAMPLES / "chat_server.py"), "--port", "0"])
    page = (ROOT / "examples" / "chat" / "index.html").read_bytes()
    with urllib.request.urlopen(srv.url + "/", timeout=5) as r:
        assert r.read() == page
    inbox = Inbox()
    a = socketio.Client(reconnection=False)
    b = socketio.Client(reconnection=False)
    for name, c in (("a", a), ("b", b)):
        for ev in ("chat message", "roomMessage", "privateMessage"):
            c.on(ev, (lambda n, e: lambda *args: inbox.put(f"{e}-{n}", *args))(name, ev))
        c.connect(srv.url, wait_timeout=5)
    try:
        a.emit("chat message", "hello all")
        assert inbox.next("chat message-a") == ("hello all",)  # the sender included
        assert inbox.next("chat message-b") == ("hello all",)
        b.emit("joinRoom", "room1")
        import time

        time.sleep(0.2)
        a.emit("roomMessage", {"room": "room1", "message": "to the room"})
        assert inbox.next("roomMessage-b") == ({"sender": a.get_sid(), "message": "to the room"},)
        a.emit("privateMessage", {"recipientId": b.get_sid(), "message": "psst"})
        assert inbox.next("privateMessage-b") == ({"sender": a.get_sid(), "message": "psst"},)
        time.sleep(0.2)
        assert inbox.count("roomMessage-a") == 0 and inbox.count("privateMessage-a") == 0
        p = subprocess.run(
            [sys.executable, str(EXAMPLES / "client.py"), "--url", srv.url, "--count", "2"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        assert "roomMessage from" in p.stdout and "privateMessage from" in p.stdout
        assert inbox.next("chat message-a") == ("hello 0 from python",)
    finally:
        a.disconnect()
        b.disconnect()


def test_bench_echo_server_smoke(spawn):
    from conftest import HERE

    srv = spawn([sys.executable, str(HERE.parents[2] / "bench" / "peers" / "tether_py" / "echo_server.py"), "0"])
    inbox = Inbox()
    a = socketio.Client(reconnection=False)
    b = socketio.Client(reconnection=False)
    a.on("echo", inbox.handler("echo"))
    b.on("bcast", inbox.handler("bcast"))
    a.on("bcast", inbox.handler("bcast-self"))
    a.connect(srv.url, wait_timeout=5)
    b.connect(srv.url, wait_timeout=5)
    try:
        a.emit("echo", {"n": 1})
        assert inbox.next("echo") == ({"n": 1},)
        a.emit("bcast", "x")
        assert inbox.next("bcast") == ("x",)
        assert inbox.count("bcast-self") == 0
    finally:
        a.disconnect()
        b.disconnect()
