#!/usr/bin/env python3
"""The peer of tether's Python binding in tether's benchmarks (issue 9, S4): the same
protocol as examples/bench_server.rs, written the way a python-socketio user writes it.

    python bench/peers/tether_py/echo_server.py PORT      (0: pick a free port)

- event `echo`: emitted back to the sender with the same arguments;
- event `bcast`: broadcast to every other socket of `/`, same arguments.

python-socketio's defaults otherwise (ping_interval 25 s, max_http_buffer_size 1e6).
One runtime thread (TETHER_WORKERS=1, unless set) plus the thread that runs the
handlers. Prints `listening on http://127.0.0.1:PORT` (flushed) once it accepts
connections; SIGTERM or Ctrl-C stops it.

The Python interpreter must have the package installed (bench/run.sh builds it into
the repository's .venv: bindings/python/build.sh).
"""

import os
import signal
import sys

os.environ.setdefault("TETHER_WORKERS", "1")

import tether  # noqa: E402


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    sio = tether.Server(ping_interval=25, ping_timeout=20, max_http_buffer_size=1_000_000)

    @sio.on("echo")
    def echo(sid, *args):
        sio.emit("echo", args, to=sid)

    @sio.on("bcast")
    def bcast(sid, *args):
        sio.emit("bcast", args, skip_sid=sid)

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
