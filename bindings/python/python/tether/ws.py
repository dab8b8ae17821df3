"""Plain WebSocket (RFC 6455), server and client, blocking style.

Server: ``handler(conn)`` runs in its own thread for each connection::

    def echo(conn):
        for message in conn:          # str or bytes, until the peer closes
            conn.send(message)

    server = tether.ws.Server(echo)
    port = server.listen("127.0.0.1", 0)

Client::

    with tether.ws.connect(f"ws://127.0.0.1:{port}") as conn:
        conn.send("hello")
        print(conn.recv(timeout=5))

``recv`` waits without the GIL and raises ``tether.DisconnectedError`` once the connection
closed (iteration just stops), ``tether.TimeoutError`` on timeout; ``send`` raises
``tether.QueueFullError`` when the peer reads too slowly.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from ._tether import WsConnection as Connection
from ._tether import WsServer as Server
from ._tether import ws_connect as _ws_connect

__all__ = ["Connection", "Server", "connect"]


def connect(
    url: str,
    headers: Optional[Dict[str, str]] = None,
    subprotocols: Optional[List[str]] = None,
    timeout: float = 10.0,
) -> Connection:
    """Open a WebSocket connection to `url` (``ws://`` or ``wss://``)."""
    return _ws_connect(url, list((headers or {}).items()), subprotocols, timeout)

