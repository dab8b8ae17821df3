"""tether.ws: the plain WebSocket server and client, with each other and with the
`websockets` package."""

import threading

import pytest

import tether
import tether.ws


@pytest.fixture
def echo_server():
    seen = []

    def handler(conn):
        seen.append((conn.path, conn.request_headers.get("x-test")))
        conn.send("welcome")
        for m in conn:
            if m == "close-me":
                conn.close(4000, "asked")
                return
            conn.send(m)

    s = tether.ws.Server(handler)
    port = s.listen()
    yield port, seen
    s.shutdown()


def test_text_binary_and_close(echo_server):
    port, seen = echo_server
    with tether.ws.connect(f"ws://127.0.0.1:{port}/?q=1", headers={"X-Test": "yes"}) as c:
        assert c.recv(timeout=5) == "welcome"
        c.send("hello")
        assert c.recv(timeout=5) == "hello"
        c.send(b"\x00\x01" * 1000)
        assert c.recv(timeout=5) == b"\x00\x01" * 1000
        c.send(bytearray(b"ba"))
        assert c.recv(timeout=5) == b"ba"
        with pytest.raises(tether.TimeoutError):
            c.recv(timeout=0.1)
        c.send("close-me")
        with pytest.raises(tether.DisconnectedError):
            c.recv(timeout=5)
        assert c.closed and c.close_code == 4000 and c.close_reason == "asked"
    assert seen == [("/?q=1", "yes")]


def test_many_threads_send(echo_server):
    port, _ = echo_server
    c = tether.ws.connect(f"ws://127.0.0.1:{port}")
    assert c.recv(timeout=5) == "welcome"
    N = 100

    def worker(t):
        for i in range(N):
            c.send(f"{t}:{i}")

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    got = [c.recv(timeout=5) for _ in range(8 * N)]
    for t in range(8):
        assert [int(m.split(":")[1]) for m in got if m.startswith(f"{t}:")] == list(range(N))
    c.close()


def test_interop_with_websockets_package(echo_server):
    from websockets.sync.client import connect as ws_connect
    from websockets.sync.server import serve

    port, _ = echo_server
    with ws_connect(f"ws://127.0.0.1:{port}") as w:
        assert w.recv(timeout=5) == "welcome"
        w.send(b"bin")
        assert w.recv(timeout=5) == b"bin"

    def handler(ws):
        for m in ws:
            ws.send(m)

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        p = server.socket.getsockname()[1]
        c = tether.ws.connect(f"ws://127.0.0.1:{p}")
        c.send("to websockets")
        assert c.recv(timeout=5) == "to websockets"
        c.close()
        server.shutdown()


def test_connect_refused():
    with pytest.raises(tether.ConnectionError):
        tether.ws.connect("ws://127.0.0.1:9", timeout=2)
    with pytest.raises(ValueError):
        tether.ws.connect("http://nope")
