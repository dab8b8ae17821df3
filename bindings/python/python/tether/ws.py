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

TLS: ``Server(handler, certfile="cert.pem", keyfile="key.pem")`` serves ``wss://``
(PEM files: the certificate chain, leaf first, and its private key); ``connect(url,
ssl_verify=...)`` chooses what the client trusts.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Union

from ._tether import WsConnection as Connection
from ._tether import WsServer as Server
from ._tether import ws_connect as _ws_connect

__all__ = ["Connection", "Server", "connect"]


def connect(
    url: str,
    headers: Optional[Dict[str, str]] = None,
    subprotocols: Optional[List[str]] = None,
    timeout: float = 10.0,
    ssl_verify: Union[bool, str] = True,
) -> Connection:
    """Open a WebSocket connection to `url` (``ws://`` or ``wss://``).

    ``ssl_verify`` (``wss://``): True checks the server's certificate against the
    Mozilla roots bundled with tether; a ``str`` is the path of a PEM bundle of CA
    certificates trusted instead (as ``requests``' ``verify``); False accepts ANY
    certificate: the connection is encrypted but anyone on the path can read and change
    it (development only; a warning is logged)."""
    return _ws_connect(url, list((headers or {}).items()), subprotocols, timeout, ssl_verify)

