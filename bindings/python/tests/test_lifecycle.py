"""Process lifetime: interpreter exit with live connections neither hangs nor crashes;
after fork() the parent's objects raise a clear error and new ones work; the stubs match
the module (mypy.stubtest)."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import HERE


def run_script(code: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_exit_with_live_connections_is_clean():
    t = time.monotonic()
    p = run_script(
        """
        import threading, time, tether, socketio
        sio = tether.Server()
        done = []

        @sio.on("hold")
        def hold(sid):
            time.sleep(0.2)          # a handler still running at exit
            sio.emit("held", to=sid)

        @sio.event
        def disconnect(sid, reason):
            done.append(reason)      # runs during the atexit shutdown

        port = sio.listen()
        url = f"http://127.0.0.1:{port}"
        a = tether.Client()
        a.on("held", lambda: None)
        a.connect(url)
        b = socketio.Client()
        b.connect(url, wait_timeout=5)
        a.emit("hold")
        b.emit("hold")
        ws = tether.ws.Server(lambda conn: [conn.send(m) for m in conn])
        wport = ws.listen()
        conn = tether.ws.connect(f"ws://127.0.0.1:{wport}")
        conn.send("x")
        print("exiting", flush=True)
        # no shutdown, no disconnect: the interpreter just exits
        """
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "exiting" in p.stdout
    assert "Fatal" not in p.stderr and "panicked" not in p.stderr, p.stderr
    assert time.monotonic() - t < 25


def test_exit_from_a_blocked_wait_via_signal_handler():
    p = run_script(
        """
        import os, signal, threading, tether
        sio = tether.Server()
        sio.listen()
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            sio.wait()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    assert p.returncode == 0, p.stderr
    assert "interrupted" in p.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_fork_gives_a_clear_error_and_new_objects_work():
    p = run_script(
        """
        import os, sys, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        import tether, socketio
        sio = tether.Server()
        @sio.on("ping")
        def ping(sid):
            return "pong"
        port = sio.listen()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                sio.emit("x")
                code = 10
            except tether.ForkedProcessError as e:
                print("child error:", e, flush=True)
            except BaseException as e:
                print("child other:", type(e), e, flush=True)
                code = 11
            try:
                s2 = tether.Server()
                @s2.on("ping")
                def ping2(sid):
                    return "child-pong"
                p2 = s2.listen()
                c = socketio.Client(reconnection=False)
                c.connect(f"http://127.0.0.1:{p2}", wait_timeout=5)
                r = c.call("ping", timeout=5)
                c.disconnect()
                print("child call:", r, flush=True)
                if r != "child-pong":
                    code = 12
            except BaseException as e:
                print("child new server failed:", type(e), e, flush=True)
                code = 13
            sys.stdout.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        c = socketio.Client(reconnection=False)
        c.connect(f"http://127.0.0.1:{port}", wait_timeout=5)
        print("parent call:", c.call("ping", timeout=5), flush=True)
        c.disconnect()
        print("child status:", os.waitstatus_to_exitcode(status), flush=True)
        """,
        timeout=60,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "child error: this tether object was created before os.fork()" in p.stdout, p.stdout
    assert "child call: child-pong" in p.stdout, p.stdout
    assert "parent call: pong" in p.stdout
    assert "child status: 0" in p.stdout, p.stdout


def test_stubtest():
    p = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "tether._tether"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(HERE.parent),
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_package_typechecks_strict():
    p = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "python/tether"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(HERE.parent),
    )
    assert p.returncode == 0, p.stdout + p.stderr
