#!/usr/bin/env python3
"""The benchmark peer of tether's Python binding (bench/run.py's S4 hook):

    TETHER_BENCH_PY_CMD="/work/main/.venv/bin/python bindings/python/bench/echo_server.py" bench/run.sh

    python bindings/python/bench/echo_server.py PORT [ignored...]

- event `echo`: emitted back to the sender with the same arguments;
- event `bcast`: broadcast to every other socket of `/`, same arguments.

python-socketio's defaults otherwise (ping_interval 25 s, max_http_buffer_size 1e6).
Prints `listening on http://127.0.0.1:PORT` (flushed) once it accepts connections.
"""

import signal
import sys

import tether


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    sio = tether.Server(ping_interval=25, ping_timeout=20, max_http_buffer_size=1_000_000)
    emit = sio.emit

    @sio.on("echo")
    def echo(sid, *args):
        emit("echo", args, to=sid)

    @sio.on("bcast")
    def bcast(sid, *args):
        emit("bcast", args, skip_sid=sid)

    port = sio.listen("127.0.0.1", port)
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sio.shutdown())
    try:
        sio.wait()
    except KeyboardInterrupt:
        pass
    sio.shutdown()


if __name__ == "__main__":
    main()
