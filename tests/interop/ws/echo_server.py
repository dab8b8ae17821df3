"""A plain WebSocket echo server on Python `websockets`: the peer server for tether's
`WsClient` in tests/ws.rs (the same contract as echo_server.mjs; see README.md here).

    .venv/bin/python tests/interop/ws/echo_server.py --port 0

Prints `listening on ws://127.0.0.1:PORT/` once it accepts connections, then one JSON
line per observed event (`{"event": "close", "code": 4001, "reason": "bye"}` ...).
"""

import argparse
import asyncio
import json
import signal
import sys
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

SUPPORTED = ["superchat", "chat"]


def log(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def select_subprotocol(connection, offered):
    forced = parse_qs(urlsplit(connection.request.path).query).get("proto")
    if forced:
        return forced[0]
    for p in offered:
        if p in SUPPORTED:
            return p
    return None


async def handler(ws):
    await ws.send(
        json.dumps(
            {
                "hello": "python",
                "protocol": ws.subprotocol,
                "header": ws.request.headers.get("X-Tether-Test"),
                "path": ws.request.path,
            }
        )
    )
    try:
        async for msg in ws:
            if isinstance(msg, bytes):
                await ws.send(msg)
                continue
            cmd, _, rest = msg.partition(" ")
            if cmd == "ping-me":
                payload = rest or "hi"
                pong = await ws.ping(payload.encode())
                await pong
                await ws.send(f"pong:{payload}")
            elif cmd == "close-me":
                code, _, reason = rest.partition(" ")
                await ws.close(int(code), reason)
            elif cmd == "fragments":
                await ws.send(["frag-", "ment", "ed"])
                await ws.send([b"\x01\x02", b"\x03", b"\x04\x05"])
            else:
                await ws.send(msg)
    except ConnectionClosed:
        pass
    log({"event": "close", "code": ws.close_code, "reason": ws.close_reason})


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    # Exit with the test process that spawned us (its end of our stdin closes).
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1(4096) or stop.done() or stop.set_result(None))
    async with serve(
        handler,
        "127.0.0.1",
        args.port,
        subprotocols=SUPPORTED,
        select_subprotocol=select_subprotocol,
        compression=None,
        max_size=64 << 20,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}/", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
