"""Interop tests: the python-socketio client (sync `socketio.Client`) against the server.

The server under test comes from conftest.py (`TETHER_TEST_SERVER` or the Node reference
server) and implements PROTOCOL.md. Every test runs over websocket and over polling.
"""

import threading
import time

import pytest
import socketio

WAIT = 3.0  # bound for one expected event
QUIET = 0.3  # how long "receives nothing" is watched


class Inbox:
    """Records every event a namespace receives (catch-all handler), in order."""

    def __init__(self, sio, namespace="/"):
        self.namespace = namespace
        self._cond = threading.Condition()
        self._events = []
        sio.on("*", self._on_any, namespace=namespace)

    def _on_any(self, event, *args):
        with self._cond:
            self._events.append((event, args))
            self._cond.notify_all()

    def next(self, event, timeout=WAIT):
        """The args (a tuple) of the next `event`, consumed; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, (name, args) in enumerate(self._events):
                    if name == event:
                        del self._events[i]
                        return args
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [name for name, _ in self._events]
                    pytest.fail(f'no "{event}" on {self.namespace} within {timeout} s; seen {seen}')
                self._cond.wait(left)

    def none(self, event, wait=QUIET):
        time.sleep(wait)
        with self._cond:
            got = [args for name, args in self._events if name == event]
        assert got == [], f'{self.namespace} must not receive "{event}"'


@pytest.fixture(params=["websocket", "polling"])
def transport(request):
    return request.param


@pytest.fixture
def make_client(server_url, transport):
    """make_client(namespaces=["/"], auth=None, connect=True) -> (sio, {ns: Inbox})."""
    clients = []

    def make(namespaces=("/",), auth=None, connect=True, setup=None):
        sio = socketio.Client(reconnection=False)
        clients.append(sio)
        inboxes = {ns: Inbox(sio, ns) for ns in namespaces}
        if setup is not None:
            setup(sio)
        if connect:
            sio.connect(
                server_url,
                auth=auth,
                transports=[transport],
                namespaces=list(namespaces),
                wait_timeout=WAIT,
            )
        return sio, inboxes

    yield make
    for sio in clients:
        try:
            sio.disconnect()
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass


def test_connect_with_auth(make_client, transport):
    auth = {"token": "abc", "n": 1}
    sio, inbox = make_client(auth=auth)
    assert inbox["/"].next("auth") == (auth,)
    sid = sio.get_sid("/")
    assert isinstance(sid, str) and sid
    assert sio.transport() == transport


def test_connect_without_auth(make_client):
    _, inbox = make_client()
    assert inbox["/"].next("auth") == ({},)


def test_message_back(make_client):
    sio, inbox = make_client()
    args = ("hello", 1, {"a": [1, 2]}, None, True)
    sio.emit("message", args)
    assert inbox["/"].next("message-back") == args
    for i in range(5):
        sio.emit("message", i)
    for i in range(5):
        assert inbox["/"].next("message-back") == (i,)


def test_client_to_server_ack(make_client):
    sio, _ = make_client()
    assert sio.call("message-with-ack", (1, "2", {"x": 3}), timeout=WAIT) == (1, "2", {"x": 3})
    assert sio.call("message-with-ack", "only", timeout=WAIT) == "only"

    got = []
    done = threading.Event()

    def cb(*args):
        got.append(args)
        done.set()

    sio.emit("message-with-ack", ("a", [1]), callback=cb)
    assert done.wait(WAIT), "ack callback not called"
    assert got == [("a", [1])]


def test_server_to_client_ack(make_client):
    asked = []

    def setup(sio):
        @sio.on("need-ack")
        def need_ack(arg):
            asked.append(arg)
            time.sleep(0.1)
            return "late", 42

    sio, inbox = make_client(setup=setup)
    sio.emit("request-ack", 2000)
    assert inbox["/"].next("ack-result") == ({"ok": True, "args": ["late", 42]},)
    assert asked == ["please"]


def test_server_to_client_ack_timeout(make_client):
    # python-socketio always acks (with no args when a handler returns None), so
    # "never answers in time" is an answer that comes after the server's timeout;
    # the late ack must be ignored by the server.
    def setup(sio):
        @sio.on("need-ack")
        def need_ack(arg):
            time.sleep(0.6)
            return "too-late"

    sio, inbox = make_client(setup=setup)
    started = time.monotonic()
    sio.emit("request-ack", 300)
    assert inbox["/"].next("ack-result") == ({"ok": False, "error": "timeout"},)
    took = time.monotonic() - started
    assert 0.25 <= took < 1.0, f"ack timeout after {took:.3f} s, expected about 0.3 s"
    inbox["/"].none("ack-result", wait=0.6)
    sio.emit("message", "still-fine")
    assert inbox["/"].next("message-back") == ("still-fine",)


def test_binary_both_ways(make_client):
    sio, inbox = make_client()
    args = (b"\x01\x02\x03", {"nested": b"xyz", "s": "t"}, "text")
    sio.emit("binary-echo", args)
    got = inbox["/"].next("binary-back")
    assert got == args
    assert isinstance(got[0], bytes) and isinstance(got[1]["nested"], bytes)
    every = bytes(range(256))
    sio.emit("binary-echo", (every, [b"\xff"]))
    assert inbox["/"].next("binary-back") == (every, [b"\xff"])


def test_rooms_two_clients(make_client):
    a, ia = make_client()
    b, ib = make_client()
    a_sid, b_sid = a.get_sid("/"), b.get_sid("/")
    assert a.call("join", "r1", timeout=WAIT) is True
    assert a.call("rooms", timeout=WAIT) == sorted([a_sid, "r1"])
    assert b.call("rooms", timeout=WAIT) == [b_sid]

    a.emit("to-room", ("r1", "hi", 2))
    assert ia["/"].next("room-message") == ("hi", 2)
    ib["/"].none("room-message")

    b.emit("to-room", ("r1", "from-b"))  # a non-member may send to a room
    assert ia["/"].next("room-message") == ("from-b",)

    b.emit("broadcast", "all")
    assert ia["/"].next("broadcast-message") == ("all",)
    ib["/"].none("broadcast-message")

    a.emit("private", (b_sid, "psst"))
    assert ib["/"].next("private-message") == (a_sid, "psst")
    ia["/"].none("private-message")

    assert a.call("leave", "r1", timeout=WAIT) is True
    assert a.call("rooms", timeout=WAIT) == [a_sid]
    b.emit("to-room", ("r1", "nobody"))
    ia["/"].none("room-message")


def test_custom_namespace(make_client):
    sio, inbox = make_client(namespaces=("/", "/custom"), auth={"token": "x"})
    assert inbox["/custom"].next("auth") == ({"token": "x"},)
    assert inbox["/"].next("auth") == ({"token": "x"},)
    assert sio.get_sid("/custom") != sio.get_sid("/")
    sio.emit("message", ("c", 1), namespace="/custom")
    sio.emit("message", ("r", 2), namespace="/")
    assert inbox["/custom"].next("message-back") == ("c", 1)
    assert inbox["/"].next("message-back") == ("r", 2)
    inbox["/custom"].none("message-back")
    inbox["/"].none("message-back")
    assert sio.call("message-with-ack", "k", namespace="/custom", timeout=WAIT) == "k"


def _connect_errors(sio, namespace):
    errors = []
    sio.on("connect_error", lambda *data: errors.append(data), namespace=namespace)
    return errors


def test_unknown_namespace(make_client):
    holder = {}

    def setup(sio):
        holder["errors"] = _connect_errors(sio, "/nope")

    with pytest.raises(socketio.exceptions.ConnectionError):
        make_client(namespaces=("/nope",), setup=setup)
    assert holder["errors"] == [({"message": "Invalid namespace"},)]


def test_refuse_bad_token(make_client):
    holder = {}

    def setup(sio):
        holder["errors"] = _connect_errors(sio, "/refuse")

    with pytest.raises(socketio.exceptions.ConnectionError):
        make_client(namespaces=("/refuse",), auth={"token": "bad"}, setup=setup)
    assert holder["errors"] == [({"message": "not authorized", "data": {"reason": "bad token"}},)]


def test_refuse_good_token(make_client):
    sio, inbox = make_client(namespaces=("/refuse",), auth={"token": "good"})
    assert inbox["/refuse"].next("auth") == ({"token": "good"},)
    sio.emit("message", ("through", {"ok": 1}), namespace="/refuse")
    assert inbox["/refuse"].next("message-back") == ("through", {"ok": 1})


def test_server_disconnect(make_client):
    reasons = []
    gone = threading.Event()

    def setup(sio):
        @sio.on("disconnect")
        def on_disconnect(reason):
            reasons.append(reason)
            gone.set()

    sio, _ = make_client(setup=setup)
    sio.emit("disconnect-me")
    assert gone.wait(WAIT), "no disconnect"
    # python-socketio names a namespace DISCONNECT packet from the server "server disconnect"
    assert reasons == [socketio.Client.reason.SERVER_DISCONNECT]
    assert not sio.connected


def test_server_disconnect_one_namespace(make_client):
    """disconnect-me on /custom ends that namespace only, not the shared connection."""
    reasons = []
    gone = threading.Event()

    def setup(sio):
        @sio.on("disconnect", namespace="/custom")
        def on_disconnect(reason):
            reasons.append(reason)
            gone.set()

    sio, inbox = make_client(namespaces=("/", "/custom"), setup=setup)
    sio.emit("disconnect-me", namespace="/custom")
    assert gone.wait(WAIT), "no disconnect on /custom"
    assert reasons == [socketio.Client.reason.SERVER_DISCONNECT]
    assert sio.connected
    sio.emit("message", "alive")
    assert inbox["/"].next("message-back") == ("alive",)
