"""A scripted Python `websockets` client, driven by tests/ws.rs against in-process tether
servers (the same contract as peer_client.mjs: JSON commands on stdin, JSON events on
stdout).

    .venv/bin/python tests/interop/ws/peer_client.py --url wss://localhost:P/ \
        [--ca ca.pem] [--protocols chat,superchat]

Commands: {"send": "text"} {"send_hex": "0102"} {"send_fragments": ["a", "b"]}
          {"ping": "data"} {"close": [4001, "bye"]}
Events:   {"event": "open", "protocol": ...} {"event": "message", "text": ...}
          {"event": "message", "hex": ...} {"event": "pong", "data": ...}
          {"event": "close", "code": ..., "reason": ...} {"event": "error", "message": ...}
"""

import argparse
import json
import os
import ssl
import sys
import threading

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

OUT = threading.Lock()


def emit(obj):
    with OUT:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca")
    parser.add_argument("--protocols", default="")
    args = parser.parse_args()
    ctx = None
    if args.url.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=args.ca) if args.ca else ssl.create_default_context()
    protocols = [p for p in args.protocols.split(",") if p] or None
    try:
        ws = connect(
            args.url,
            ssl=ctx,
            subprotocols=protocols,
            compression=None,
            proxy=None,
            max_size=64 << 20,
            open_timeout=5,
            ping_interval=None,
            close_timeout=5,
            legacy=True,  # a connection object, not a context manager (websockets 17)
        )
    except Exception as e:  # noqa: BLE001 - reported to the test
        emit({"event": "error", "message": f"{type(e).__name__}: {e}"})
        return 1
    emit({"event": "open", "protocol": ws.subprotocol})

    def reader():
        try:
            for msg in ws:
                if isinstance(msg, bytes):
                    emit({"event": "message", "hex": msg.hex()})
                else:
                    emit({"event": "message", "text": msg})
        except ConnectionClosed:
            pass
        rcvd = ws.protocol.close_rcvd
        code = rcvd.code if rcvd is not None else 1006
        reason = rcvd.reason if rcvd is not None else ""
        emit({"event": "close", "code": code, "reason": reason})
        os._exit(0)

    threading.Thread(target=reader, daemon=True).start()

    def pinger(data):
        if ws.ping(data.encode()).wait(5):
            emit({"event": "pong", "data": data})

    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            if "send" in cmd:
                ws.send(cmd["send"])
            elif "send_hex" in cmd:
                ws.send(bytes.fromhex(cmd["send_hex"]))
            elif "send_fragments" in cmd:
                ws.send(list(cmd["send_fragments"]))
            elif "ping" in cmd:
                threading.Thread(target=pinger, args=(cmd["ping"],), daemon=True).start()
            elif "close" in cmd:
                code, reason = cmd["close"]
                ws.close(code, reason)
        except ConnectionClosed:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
