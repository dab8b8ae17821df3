"""tether: Socket.IO (v5 over Engine.IO v4) and WebSocket, server and client, on a
native core, with python-socketio's API.

Synchronous::

    import tether

    sio = tether.Server(cors_allowed_origins="*")

    @sio.event
    def connect(sid, environ, auth):
        print("connected", sid)

    @sio.on("chat message")
    def chat_message(sid, msg):
        sio.emit("chat message", msg)          # to everyone, the sender included

    sio.listen("127.0.0.1", 3000)
    sio.wait()

asyncio: ``tether.AsyncServer`` / ``tether.AsyncClient``, the same names with awaitable
``listen`` / ``emit`` / ``call`` / ``connect``; handlers may be coroutines and run on the
loop that called ``listen`` / ``connect``.

Threads: synchronous handlers run on one thread (``tether-dispatch``), in wire order
for each socket, never two at once; every blocking call (``connect``, ``call``,
``wait``) releases the GIL; ``emit`` is thread-safe. A handler that blocks (a ``call``
inside a handler) delays the handlers after it: prefer ``emit(..., callback=...)`` there.
An exception in a handler is logged on the ``tether`` logger (and passed to
``sys.unraisablehook`` when one is installed); it never stops the server.

Process: one runtime per process (``TETHER_WORKERS`` worker threads, default 2), shut
down by an ``atexit`` hook (live connections are closed, their disconnect handlers run).
After ``os.fork()``, objects made before the fork raise ``tether.ForkedProcessError`` in
the child; new ones work there.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import inspect
import mimetypes
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union, overload

from . import _tether
from ._glue import _resolve
from ._tether import (
    Ack,
    BadNamespaceError,
    ConnectionError,
    ConnectionRefusedError,
    DisconnectedError,
    ForkedProcessError,
    QueueFullError,
    ShutDownError,
    TetherError,
    TimeoutError,
    __version__,
)

__all__ = [
    "Ack",
    "AsyncClient",
    "AsyncServer",
    "BadNamespaceError",
    "Client",
    "ConnectionError",
    "ConnectionRefusedError",
    "DisconnectedError",
    "ForkedProcessError",
    "QueueFullError",
    "AsyncRedisManager",
    "RedisManager",
    "Server",
    "ShutDownError",
    "TetherError",
    "TimeoutError",
    "__version__",
    "ws",
]

# Close every server and client, run their last handlers and stop the runtime's threads
# before the interpreter finalizes (no runtime thread ever attaches to a dying
# interpreter; live connections do not hang the exit).
atexit.register(_tether._shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_tether._after_fork)

F = TypeVar("F", bound=Callable[..., Any])


def _describe(handler: Callable[..., Any]) -> Tuple[bool, bool, int]:
    """What the core needs to know about a handler: (takes `ack`, is a coroutine
    function, number of positional parameters or -1 for *args)."""
    if not callable(handler):
        raise TypeError(f"handler must be callable, not {type(handler).__name__}")
    is_coro = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)
    )
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return False, is_coro, -1
    wants_ack = False
    nargs = 0
    P = inspect.Parameter
    for name, p in sig.parameters.items():
        if name == "ack" and p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY):
            wants_ack = True
            continue
        if p.kind == P.VAR_POSITIONAL:
            nargs = -1
        elif p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD) and nargs >= 0:
            nargs += 1
    return wants_ack, is_coro, nargs


class _Handlers:
    """`on` and `event`, as python-socketio spells them."""

    def _register(self, event: str, handler: Callable[..., Any], namespace: Optional[str]) -> None:
        raise NotImplementedError

    @overload
    def on(self, event: str, handler: None = None, namespace: Optional[str] = None) -> Callable[[F], F]: ...

    @overload
    def on(self, event: str, handler: F, namespace: Optional[str] = None) -> F: ...

    def on(
        self,
        event: str,
        handler: Optional[Callable[..., Any]] = None,
        namespace: Optional[str] = None,
    ) -> Any:
        """Register `handler` for `event` (as a decorator when `handler` is omitted).

        `"connect"`, `"disconnect"` (and, on clients, `"connect_error"`) are the
        lifecycle events; `"*"` catches the events that have no handler of their own.
        A handler with a parameter named `ack` receives a :class:`tether.Ack` (or None
        when no acknowledgement was asked for) to answer now or later from any thread;
        otherwise its return value is the acknowledgement (a tuple for several values).
        """

        def set_handler(h: F) -> F:
            self._register(event, h, namespace)
            return h

        if handler is None:
            return set_handler
        return set_handler(handler)

    def event(self, *args: Any, **kwargs: Any) -> Any:
        """Register a handler named after the function: ``@sio.event`` or
        ``@sio.event(namespace="/chat")``."""
        if len(args) == 1 and not kwargs and callable(args[0]):
            return self.on(args[0].__name__)(args[0])

        def set_handler(h: F) -> F:
            return self.on(h.__name__, *args, **kwargs)(h)  # type: ignore[no-any-return]

        return set_handler


def _read_static(filename: str, content_type: Optional[str]) -> Tuple[bytes, str]:
    with open(filename, "rb") as f:
        body = f.read()
    if content_type is None:
        guessed, _ = mimetypes.guess_type(filename)
        content_type = guessed or "application/octet-stream"
        if content_type.startswith("text/") or content_type in (
            "application/javascript",
            "application/json",
        ):
            content_type += "; charset=utf-8"
    return body, content_type


class ServerReason:
    """The `reason` a server's disconnect handler receives (python-socketio's names)."""

    CLIENT_DISCONNECT = "client disconnect"
    SERVER_DISCONNECT = "server disconnect"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"


class ClientReason:
    """The `reason` a client's disconnect handler receives (python-socketio's names)."""

    CLIENT_DISCONNECT = "io client disconnect"
    SERVER_DISCONNECT = "io server disconnect"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"


class Server(_tether.Server, _Handlers):
    """A Socket.IO server (python-socketio's ``socketio.Server``).

    Arguments (python-socketio's names and defaults): ``cors_allowed_origins`` (None:
    no CORS headers; ``"*"`` or a list of origins), ``ping_interval`` and
    ``ping_timeout`` (seconds), ``max_http_buffer_size`` (bytes), ``connect_timeout``
    (seconds to join a namespace), ``path`` (``"socket.io"``), ``namespaces`` (None:
    ``"/"`` plus those with handlers; ``"*"``: any), ``serve_client`` (serve a small
    browser client at ``/socket.io/socket.io.js``), ``transports``,
    ``client_manager`` (a :class:`RedisManager`: share rooms and broadcasts with other
    servers). Other python-socketio options (``async_mode``, ``logger``...) are accepted
    and ignored.

    TLS (https / wss): ``certfile`` and ``keyfile``, PEM files (the certificate chain,
    leaf first, and its private key), as uvicorn's ``ssl_certfile`` / ``ssl_keyfile``;
    a bad or missing file raises ValueError here.

    ``listen(host, port)`` serves without blocking and returns the port; ``wait()``
    blocks until ``shutdown()``.
    """

    reason = ServerReason

    def _register(self, event: str, handler: Callable[..., Any], namespace: Optional[str]) -> None:
        wants_ack, is_coro, nargs = _describe(handler)
        self._on(event, handler, namespace, wants_ack, is_coro, nargs)

    def static_file(self, url_path: str, filename: str, content_type: Optional[str] = None) -> None:
        """Serve the file `filename` (read now) at ``GET url_path``."""
        body, ct = _read_static(filename, content_type)
        self.add_route(url_path, body, ct)

    def listen(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        static_files: Optional[Dict[str, str]] = None,
    ) -> int:
        """Serve on `host:port` (0: a free port) without blocking; returns the port.
        `static_files` maps URL paths to files to serve beside Socket.IO."""
        for url_path, filename in (static_files or {}).items():
            self.static_file(url_path, filename)
        return super().listen(host, port)

    def sleep(self, seconds: float = 0) -> None:
        """python-socketio's ``sleep``."""
        time.sleep(seconds)

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
        """Run `target(*args, **kwargs)` in a daemon thread (python-socketio's name)."""
        t = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
        t.start()
        return t

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


class AsyncServer(_Handlers):
    """The asyncio Socket.IO server (python-socketio's ``socketio.AsyncServer``).

    Same arguments as :class:`Server`. ``await sio.listen(host, port)`` binds on the
    running loop; handlers (plain or ``async def``) run on that loop. ``emit``,
    ``send``, ``call``, ``enter_room``, ``leave_room``, ``close_room``, ``disconnect``,
    ``shutdown`` and ``wait`` are coroutines, as in python-socketio.
    """

    reason = ServerReason

    def __init__(self, **options: Any) -> None:
        self._core = _tether.Server(**options)

    def _register(self, event: str, handler: Callable[..., Any], namespace: Optional[str]) -> None:
        wants_ack, is_coro, nargs = _describe(handler)
        self._core._on(event, handler, namespace, wants_ack, is_coro, nargs)

    def add_route(self, url_path: str, body: Union[str, bytes], content_type: str = "text/html; charset=utf-8") -> None:
        """Answer ``GET url_path`` with `body` (before `listen`)."""
        self._core.add_route(url_path, body, content_type)

    def static_file(self, url_path: str, filename: str, content_type: Optional[str] = None) -> None:
        """Serve the file `filename` (read now) at ``GET url_path``."""
        body, ct = _read_static(filename, content_type)
        self._core.add_route(url_path, body, ct)

    async def listen(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        static_files: Optional[Dict[str, str]] = None,
    ) -> int:
        """Serve on `host:port` (0: a free port); returns the port. Handlers run on the
        running loop."""
        for url_path, filename in (static_files or {}).items():
            self.static_file(url_path, filename)
        return self._core._listen(host, port, asyncio.get_running_loop())

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: Union[str, List[str], None] = None,
        room: Union[str, List[str], None] = None,
        skip_sid: Union[str, List[str], None] = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
    ) -> None:
        """Emit `event` (see :meth:`Server.emit`); `callback` runs on the loop."""
        self._core.emit(event, data, to, room, skip_sid, namespace, callback)

    async def send(
        self,
        data: Any,
        to: Union[str, List[str], None] = None,
        room: Union[str, List[str], None] = None,
        skip_sid: Union[str, List[str], None] = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
    ) -> None:
        """``emit("message", data, ...)``."""
        self._core.emit("message", data, to, room, skip_sid, namespace, callback)

    async def call(
        self,
        event: str,
        data: Any = None,
        to: Optional[str] = None,
        sid: Optional[str] = None,
        namespace: Optional[str] = None,
        timeout: float = 60,
    ) -> Any:
        """Emit to one client and await its acknowledgement (None, a value, or a tuple).
        Raises tether.TimeoutError."""
        fut = asyncio.get_running_loop().create_future()
        self._core._call_cb(event, data, to or sid, namespace, timeout, functools.partial(_resolve, fut))
        return await fut

    async def enter_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        self._core.enter_room(sid, room, namespace)

    async def leave_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        self._core.leave_room(sid, room, namespace)

    async def close_room(self, room: str, namespace: Optional[str] = None) -> None:
        self._core.close_room(room, namespace)

    def rooms(self, sid: str, namespace: Optional[str] = None) -> List[str]:
        """The rooms `sid` is in (its own sid included)."""
        return self._core.rooms(sid, namespace)

    def sids(self, namespace: Optional[str] = None) -> List[str]:
        """The sids connected to `namespace`."""
        return self._core.sids(namespace)

    async def disconnect(self, sid: str, namespace: Optional[str] = None) -> None:
        self._core.disconnect(sid, namespace)

    async def shutdown(self) -> None:
        """Stop listening and disconnect everyone."""
        self._core.shutdown()

    async def wait(self) -> None:
        """Wait until `shutdown()`."""
        while not self._core.closed:
            await asyncio.sleep(0.1)

    serve_forever = wait

    @property
    def closed(self) -> bool:
        return self._core.closed

    async def sleep(self, seconds: float = 0) -> None:
        await asyncio.sleep(seconds)

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> "asyncio.Task[Any]":
        """Run the coroutine function `target(*args, **kwargs)` as a task."""
        return asyncio.ensure_future(target(*args, **kwargs))


class Client(_tether.Client, _Handlers):
    """A Socket.IO client (python-socketio's ``socketio.Client``).

    Arguments: ``reconnection`` (True), ``reconnection_attempts`` (0: forever),
    ``reconnection_delay`` (1 s), ``reconnection_delay_max`` (5 s),
    ``randomization_factor`` (0.5), ``ssl_verify`` for ``https://`` servers (True:
    check the certificate against the Mozilla roots bundled with tether; a ``str``: the
    path of a PEM bundle of CA certificates trusted instead, as ``requests``' ``verify``;
    False: accept ANY certificate, so the connection is encrypted but anyone on the path
    can read and change it: development only, a warning is logged). Other
    python-socketio options are accepted and ignored. Handlers run on the
    ``tether-dispatch`` thread.
    """

    reason = ClientReason

    def _register(self, event: str, handler: Callable[..., Any], namespace: Optional[str]) -> None:
        wants_ack, is_coro, nargs = _describe(handler)
        self._on(event, handler, namespace, wants_ack, is_coro, nargs)

    def sleep(self, seconds: float = 0) -> None:
        time.sleep(seconds)

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
        t = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
        t.start()
        return t

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()


class AsyncClient(_Handlers):
    """The asyncio Socket.IO client (python-socketio's ``socketio.AsyncClient``).

    Same arguments as :class:`Client`; ``connect``, ``emit``, ``send``, ``call``,
    ``disconnect`` and ``wait`` are coroutines; handlers (plain or ``async def``) run on
    the loop that called ``connect``.
    """

    reason = ClientReason

    def __init__(self, **options: Any) -> None:
        self._core = _tether.Client(**options)

    def _register(self, event: str, handler: Callable[..., Any], namespace: Optional[str]) -> None:
        wants_ack, is_coro, nargs = _describe(handler)
        self._core._on(event, handler, namespace, wants_ack, is_coro, nargs)

    async def connect(
        self,
        url: str,
        headers: Optional[Dict[str, str]] = None,
        auth: Any = None,
        transports: Union[str, List[str], None] = None,
        namespaces: Union[str, List[str], None] = None,
        socketio_path: str = "socket.io",
        wait: bool = True,
        wait_timeout: float = 5,
    ) -> None:
        """Connect and join `namespaces`; raises like :meth:`Client.connect`."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._core._connect_cb(
            url,
            headers,
            auth,
            transports,
            namespaces,
            socketio_path,
            wait_timeout,
            loop,
            functools.partial(_resolve, fut),
        )
        if wait:
            await fut

    async def emit(
        self,
        event: str,
        data: Any = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
    ) -> None:
        self._core.emit(event, data, namespace, callback)

    async def send(
        self, data: Any, namespace: Optional[str] = None, callback: Optional[Callable[..., Any]] = None
    ) -> None:
        self._core.emit("message", data, namespace, callback)

    async def call(
        self,
        event: str,
        data: Any = None,
        namespace: Optional[str] = None,
        timeout: float = 60,
    ) -> Any:
        """Emit and await the acknowledgement (None, a value, or a tuple)."""
        fut = asyncio.get_running_loop().create_future()
        self._core._call_cb(event, data, namespace, timeout, functools.partial(_resolve, fut))
        return await fut

    async def disconnect(self) -> None:
        """Disconnect every namespace (no reconnection)."""
        await asyncio.get_running_loop().run_in_executor(None, self._core.disconnect)

    async def wait(self) -> None:
        """Wait until the client is done (disconnected for good)."""
        while not self._core.wait(0):
            await asyncio.sleep(0.05)

    def get_sid(self, namespace: Optional[str] = None) -> Optional[str]:
        return self._core.get_sid(namespace)

    @property
    def sid(self) -> Optional[str]:
        return self._core.sid

    @property
    def connected(self) -> bool:
        return self._core.connected

    @property
    def namespaces(self) -> Dict[str, str]:
        return self._core.namespaces

    def transport(self) -> Optional[str]:
        return self._core.transport()

    async def sleep(self, seconds: float = 0) -> None:
        await asyncio.sleep(seconds)

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> "asyncio.Task[Any]":
        return asyncio.ensure_future(target(*args, **kwargs))


from . import ws  # noqa: E402  (the submodule, after the names it may use)


class RedisManager:
    """Share a server's rooms and broadcasts with other servers through Redis
    (python-socketio's ``socketio.RedisManager``), or emit to them from a process that is
    not a server (``write_only=True``, Node's ``@socket.io/redis-emitter``).

    The messages on Redis use Node's ``@socket.io/redis-adapter`` format, so tether and
    Node ``socket.io`` servers can form one cluster (python-socketio's own RedisManager
    speaks another format: do not mix the two).

    ``url``: ``redis://[user:password@]host:port[/db]``. ``channel``: the channels'
    prefix, the adapter's ``key`` in Node (default ``"socket.io"``, Node's default;
    python-socketio's is ``"socketio"``); every node of a cluster must use the same.
    ``requests_timeout``: how long a cluster request waits for the other nodes'
    answers; ``connect_timeout``: how long to wait for Redis when connecting.
    ``logger``, ``json`` and ``redis_options`` are accepted for compatibility and
    ignored.

    A server::

        sio = tether.Server(client_manager=tether.RedisManager("redis://127.0.0.1:6379"))

    connects when the server is created (raises ``tether.ConnectionError`` when Redis
    cannot be reached) and waits in ``listen`` until its subscriptions are live.
    Afterwards it reconnects by itself; what is emitted while Redis is down reaches this
    server's clients only (logged on the ``tether`` logger).

    An emitter::

        mgr = tether.RedisManager("redis://127.0.0.1:6379", write_only=True)
        mgr.emit("news", {"text": "hi"}, room="lobby", namespace="/")

    connects on its first ``emit``; ``emit`` blocks (without the GIL) until Redis took
    the message and raises ``tether.ConnectionError`` / ``tether.TimeoutError``. It is
    thread-safe.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        channel: str = "socket.io",
        write_only: bool = False,
        logger: Any = None,
        json: Any = None,
        redis_options: Optional[Dict[str, Any]] = None,
        requests_timeout: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.channel = channel
        self.write_only = write_only
        self.requests_timeout = requests_timeout
        self.connect_timeout = connect_timeout
        self._emitter: Optional[_tether.RedisEmitter] = None
        self._lock = threading.Lock()

    def _get_emitter(self) -> "_tether.RedisEmitter":
        with self._lock:
            if self._emitter is None:
                self._emitter = _tether.RedisEmitter(self.url, self.channel, max(self.connect_timeout, self.requests_timeout))
            return self._emitter

    def emit(
        self,
        event: str,
        data: Any = None,
        namespace: Optional[str] = None,
        room: Union[str, List[str], None] = None,
        skip_sid: Union[str, List[str], None] = None,
        callback: Optional[Callable[..., Any]] = None,
        to: Union[str, List[str], None] = None,
        **kwargs: Any,
    ) -> None:
        """Emit `event` with `data` (a tuple for several arguments) through Redis to the
        sockets of `namespace` in `to` / `room` (None: every socket) except those in
        `skip_sid`, on every server of the cluster. Acknowledgements are not
        supported here (``callback`` raises ValueError): use the server's ``emit``."""
        if callback is not None:
            raise ValueError("callbacks need a server: use Server.emit(..., callback=...)")
        self._get_emitter().emit(event, data, to if to is not None else room, skip_sid, namespace)


class AsyncRedisManager(RedisManager):
    """:class:`RedisManager` for :class:`AsyncServer` (python-socketio's
    ``socketio.AsyncRedisManager``): ``emit`` is a coroutine (the publish runs in a
    worker thread, so the loop keeps running)."""

    async def emit(  # type: ignore[override]
        self,
        event: str,
        data: Any = None,
        namespace: Optional[str] = None,
        room: Union[str, List[str], None] = None,
        skip_sid: Union[str, List[str], None] = None,
        callback: Optional[Callable[..., Any]] = None,
        to: Union[str, List[str], None] = None,
        **kwargs: Any,
    ) -> None:
        """See :meth:`RedisManager.emit`."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, functools.partial(RedisManager.emit, self, event, data, namespace, room, skip_sid, callback, to)
        )
