"""Interop: the Python `websockets` client against tether's `examples/ws_echo`.

The server is `$TETHER_WS_ECHO_BIN --port 0` (the built ws_echo example; scripts/test.sh
sets it); the module is skipped, with that reason, when the variable is unset. The echo:
greets with `Hello from the server!`, answers text `m` with `You said: m`, echoes binary.
The server's side of close codes and subprotocols, and `websockets` over `wss://`, are
checked in tests/ws.rs (with tests/interop/ws/peer_client.py).

    TETHER_WS_ECHO_BIN=... .venv/bin/python -m pytest tests/interop/test_ws_python.py -q
"""

import os
import re
import subprocess
import threading

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ECHO_BIN = os.environ.get("TETHER_WS_ECHO_BIN")
LISTENING = re.compile(r"listening on (ws://127\.0\.0\.1:\d+/)")
WAIT = 5.0

pytestmark = pytest.mark.skipif(
    not ECHO_BIN, reason="TETHER_WS_ECHO_BIN is unset (path of the built ws_echo example)"
)


@pytest.fixture(scope="module")
def echo_url():
    proc = subprocess.Popen(
        [ECHO_BIN, "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    found = {}
    ready = threading.Event()

    def drain():
        for line in proc.stdout:
            m = LISTENING.search(line)
            if m and "url" not in found:
                found["url"] = m.group(1)
                ready.set()
        ready.set()  # EOF: the server exited

    threading.Thread(target=drain, daemon=True).start()
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
    try:
        ready.wait(15)
        if "url" not in found:
            pytest.fail(f"{ECHO_BIN} printed no listening line (exit {proc.poll()})")
        yield found["url"]
        assert proc.poll() is None, f"ws_echo exited during the tests ({proc.returncode})"
    finally:
        proc.kill()
        proc.wait(5)


def open_client(url, **kwargs):
    kwargs.setdefault("compression", None)
    ws = connect(
        url,
        proxy=None,
        open_timeout=WAIT,
        close_timeout=WAIT,
        ping_interval=None,
        max_size=4 << 20,
        legacy=True,  # a connection object, not a context manager (websockets 17)
        **kwargs,
    )
    assert ws.recv(timeout=WAIT) == "Hello from the server!"
    return ws


def test_greeting_and_text_echo(echo_url):
    with open_client(echo_url) as ws:
        for m in ["hello", "héllo ✓ wörld 🎉", ""]:
            ws.send(m)
            assert ws.recv(timeout=WAIT) == f"You said: {m}"


def test_binary_echo(echo_url):
    with open_client(echo_url) as ws:
        data = bytes([0, 1, 2, 127, 128, 254, 255])
        ws.send(data)
        assert ws.recv(timeout=WAIT) == data
        ws.send(b"")
        assert ws.recv(timeout=WAIT) == b""


def test_one_mebibyte_messages(echo_url):
    with open_client(echo_url) as ws:
        text = ("abcdefghijklmnopqrstuvwxyz" * 40330)[: 1 << 20]
        ws.send(text)
        reply = ws.recv(timeout=WAIT)
        assert len(reply) == len(text) + len("You said: ")
        assert reply == f"You said: {text}"
        data = bytes((i * 7) % 251 for i in range(1 << 20))
        ws.send(data)
        assert ws.recv(timeout=WAIT) == data


def test_fragmented_messages(echo_url):
    with open_client(echo_url) as ws:
        # An iterable is sent as one message in several frames.
        ws.send(["frag-", "ment", "ed"])
        assert ws.recv(timeout=WAIT) == "You said: frag-mented"
        # A multi-byte character split across two frames.
        euro = "€".encode()
        ws.send([b"price: " + euro[:2], euro[2:]], text=True)
        assert ws.recv(timeout=WAIT) == "You said: price: €"
        ws.send([b"\x01\x02", b"\x03", b"\x04\x05"])
        assert ws.recv(timeout=WAIT) == b"\x01\x02\x03\x04\x05"


def test_ping_gets_pong(echo_url):
    with open_client(echo_url) as ws:
        assert ws.ping(b"are you there").wait(WAIT), "no pong"
        ws.send("after ping")
        assert ws.recv(timeout=WAIT) == "You said: after ping"


def test_close_code_and_reason_are_echoed(echo_url):
    ws = open_client(echo_url)
    ws.close(4001, "bye")
    rcvd = ws.protocol.close_rcvd
    assert rcvd is not None, "the server sent no close frame"
    assert (rcvd.code, rcvd.reason) == (4001, "bye")
    with pytest.raises(ConnectionClosed):
        ws.send("late")


def test_no_subprotocol_is_chosen_when_none_is_configured(echo_url):
    # ws_echo configures no subprotocols: the offer is ignored, the connection works.
    with open_client(echo_url, subprotocols=["chat", "superchat"]) as ws:
        assert ws.subprotocol is None
        ws.send("x")
        assert ws.recv(timeout=WAIT) == "You said: x"


def test_permessage_deflate_offer_is_declined(echo_url):
    # tether does not implement permessage-deflate (RFC 7692): an offer is declined and
    # the connection works uncompressed.
    with open_client(echo_url, compression="deflate") as ws:
        assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send("x" * 10_000)
        assert ws.recv(timeout=WAIT) == "You said: " + "x" * 10_000


def test_many_clients_at_once(echo_url):
    errors = []

    def one(i):
        try:
            with open_client(echo_url) as ws:
                ws.send(f"client {i}")
                assert ws.recv(timeout=WAIT) == f"You said: client {i}"
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert not errors, errors
