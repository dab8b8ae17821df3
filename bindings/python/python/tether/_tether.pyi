"""The native core of `tether` (hand-written stubs, checked with mypy.stubtest)."""

import builtins
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union, final

from typing_extensions import disjoint_base

__version__: str
__all__ = [
    "Ack",
    "BadNamespaceError",
    "Client",
    "ConnectionError",
    "ConnectionRefusedError",
    "DisconnectedError",
    "ForkedProcessError",
    "QueueFullError",
    "RedisEmitter",
    "Server",
    "ShutDownError",
    "TetherError",
    "TimeoutError",
    "WsConnection",
    "WsServer",
    "_after_fork",
    "_report",
    "_shutdown",
    "version",
    "ws_connect",
    "__version__",
]

def version() -> str: ...
def _shutdown(timeout: float = 5.0) -> None: ...
def _after_fork() -> None: ...
def _report(exc: BaseException, context: str) -> None: ...
def ws_connect(
    url: str,
    headers: Optional[List[Tuple[str, str]]] = None,
    subprotocols: Optional[List[str]] = None,
    timeout: float = 10.0,
    ssl_verify: Union[bool, str, None] = None,
) -> WsConnection: ...

class TetherError(Exception): ...
class ConnectionError(TetherError, builtins.ConnectionError): ...

class ConnectionRefusedError(ConnectionError, builtins.ConnectionRefusedError):
    message: str
    data: Any
    error_args: Dict[str, Any]

class TimeoutError(TetherError, builtins.TimeoutError): ...
class DisconnectedError(TetherError): ...
class BadNamespaceError(TetherError): ...
class QueueFullError(TetherError): ...
class ShutDownError(TetherError): ...
class ForkedProcessError(TetherError): ...

@final
class Ack:
    """The right to answer one acknowledgement, once, from any thread."""

    def send(self, *args: Any) -> bool: ...
    def __call__(self, *args: Any) -> bool: ...
    @property
    def sent(self) -> bool: ...
    def _answer(self, value: Any) -> bool: ...

_Rooms = Union[str, List[str], None]

@disjoint_base
class Server:
    def __new__(
        cls,
        cors_allowed_origins: Union[str, List[str], None] = None,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        max_http_buffer_size: int = 1000000,
        connect_timeout: float = 45.0,
        path: str = "socket.io",
        namespaces: Union[str, List[str], None] = None,
        serve_client: bool = True,
        transports: Optional[List[str]] = None,
        cors_credentials: bool = False,
        client_manager: Any = None,
        certfile: Optional[str] = None,
        keyfile: Optional[str] = None,
        **_options: Any,
    ) -> Server: ...
    def _on(
        self,
        event: str,
        handler: Callable[..., Any],
        namespace: Optional[str] = None,
        wants_ack: bool = False,
        is_coro: bool = False,
        nargs: int = ...,
    ) -> None: ...
    def add_route(
        self, url_path: str, body: Union[str, bytes], content_type: str = "text/html; charset=utf-8"
    ) -> None: ...
    def listen(self, host: str = "127.0.0.1", port: int = 0) -> int: ...
    def _listen(self, host: str, port: int, event_loop: Any) -> int: ...
    def emit(
        self,
        event: str,
        data: Any = None,
        to: _Rooms = None,
        room: _Rooms = None,
        skip_sid: _Rooms = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
    ) -> None: ...
    def send(
        self,
        data: Any,
        to: _Rooms = None,
        room: _Rooms = None,
        skip_sid: _Rooms = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
    ) -> None: ...
    def call(
        self,
        event: str,
        data: Any = None,
        to: Optional[str] = None,
        sid: Optional[str] = None,
        namespace: Optional[str] = None,
        timeout: float = 60.0,
    ) -> Any: ...
    def _call_cb(
        self,
        event: str,
        data: Any,
        to: Optional[str],
        namespace: Optional[str],
        timeout: float,
        on_reply: Callable[[bool, Any], None],
    ) -> None: ...
    def enter_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None: ...
    def leave_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None: ...
    def close_room(self, room: str, namespace: Optional[str] = None) -> None: ...
    def rooms(self, sid: str, namespace: Optional[str] = None) -> List[str]: ...
    def sids(self, namespace: Optional[str] = None) -> List[str]: ...
    def disconnect(self, sid: str, namespace: Optional[str] = None) -> None: ...
    def shutdown(self) -> None: ...
    def wait(self) -> None: ...
    def serve_forever(self) -> None: ...
    @property
    def closed(self) -> bool: ...

@final
class RedisEmitter:
    """Publishes to a cluster's rooms through Redis (use tether.RedisManager)."""

    def __new__(cls, url: str, channel: str = "socket.io", timeout: float = 5.0) -> RedisEmitter: ...
    def emit(
        self,
        event: str,
        data: Any = None,
        to: _Rooms = None,
        skip_sid: _Rooms = None,
        namespace: Optional[str] = None,
    ) -> None: ...

@disjoint_base
class Client:
    def __new__(
        cls,
        reconnection: bool = True,
        reconnection_attempts: int = 0,
        reconnection_delay: float = 1.0,
        reconnection_delay_max: float = 5.0,
        randomization_factor: float = 0.5,
        ssl_verify: Union[bool, str, None] = None,
        **_options: Any,
    ) -> Client: ...
    def _on(
        self,
        event: str,
        handler: Callable[..., Any],
        namespace: Optional[str] = None,
        wants_ack: bool = False,
        is_coro: bool = False,
        nargs: int = ...,
    ) -> None: ...
    def _handler_namespaces(self) -> List[str]: ...
    def connect(
        self,
        url: str,
        headers: Optional[Dict[str, str]] = None,
        auth: Any = None,
        transports: Union[str, List[str], None] = None,
        namespaces: Union[str, List[str], None] = None,
        socketio_path: str = "socket.io",
        wait: bool = True,
        wait_timeout: float = 5.0,
    ) -> None: ...
    def _connect_cb(
        self,
        url: str,
        headers: Optional[Dict[str, str]],
        auth: Any,
        transports: Union[str, List[str], None],
        namespaces: Union[str, List[str], None],
        socketio_path: str,
        wait_timeout: float,
        event_loop: Any,
        on_done: Callable[[bool, Any], None],
    ) -> None: ...
    def emit(
        self,
        event: str,
        data: Any = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
    ) -> None: ...
    def send(
        self,
        data: Any,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
    ) -> None: ...
    def call(
        self,
        event: str,
        data: Any = None,
        namespace: Optional[str] = None,
        timeout: float = 60.0,
    ) -> Any: ...
    def _call_cb(
        self,
        event: str,
        data: Any,
        namespace: Optional[str],
        timeout: float,
        on_reply: Callable[[bool, Any], None],
    ) -> None: ...
    def disconnect(self) -> None: ...
    def wait(self, timeout: Optional[float] = None) -> bool: ...
    def get_sid(self, namespace: Optional[str] = None) -> Optional[str]: ...
    @property
    def sid(self) -> Optional[str]: ...
    @property
    def connected(self) -> bool: ...
    @property
    def namespaces(self) -> Dict[str, str]: ...
    def transport(self) -> Optional[str]: ...

@final
class WsConnection:
    def send(self, data: Union[str, bytes, bytearray]) -> None: ...
    def recv(self, timeout: Optional[float] = None) -> Union[str, bytes]: ...
    def close(self, code: int = 1000, reason: str = "") -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def close_code(self) -> Optional[int]: ...
    @property
    def close_reason(self) -> Optional[str]: ...
    @property
    def id(self) -> int: ...
    @property
    def subprotocol(self) -> Optional[str]: ...
    @property
    def path(self) -> Optional[str]: ...
    @property
    def request_headers(self) -> Dict[str, str]: ...
    def __iter__(self) -> Iterator[Union[str, bytes]]: ...
    def __next__(self) -> Union[str, bytes]: ...
    def __enter__(self) -> WsConnection: ...
    def __exit__(self, *_exc: Any) -> None: ...

@final
class WsServer:
    def __new__(
        cls,
        handler: Callable[[WsConnection], None],
        subprotocols: Optional[List[str]] = None,
        max_message_size: int = 16777216,
        certfile: Optional[str] = None,
        keyfile: Optional[str] = None,
    ) -> WsServer: ...
    def listen(self, host: str = "127.0.0.1", port: int = 0) -> int: ...
    def shutdown(self) -> None: ...
    def wait(self) -> None: ...
