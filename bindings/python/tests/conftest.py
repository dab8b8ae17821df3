"""Fixtures of the Python binding's tests: peer servers in child processes (the Node
`socket.io` reference server, a python-socketio server, tether's own protocol server),
and small helpers. Every child is killed at the end; every wait is bounded."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
INTEROP = ROOT / "tests" / "interop"
EXAMPLES = ROOT / "examples" / "python"
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")


def node() -> str:
    exe = shutil.which("node")
    if exe is None or not (INTEROP / "node_modules" / "socket.io").is_dir():
        pytest.skip("node or tests/interop/node_modules is missing")
    return exe


class Child:
    """A child process that prints `listening on http://127.0.0.1:PORT`."""

    def __init__(self, cmd: List[str], cwd: Optional[Path] = None, env: Optional[dict] = None):
        self.cmd = cmd
        self.url: Optional[str] = None
        self.port: Optional[int] = None
        self.output: List[str] = []
        self._found = threading.Event()
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(cwd) if cwd else None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            del self.output[:-300]
            if self.url is None:
                m = LISTENING.search(line)
                if m:
                    self.url = m.group(1)
                    self.port = int(m.group(2))
                    self._found.set()
        self._found.set()

    def wait_listening(self, timeout: float = 20.0) -> "Child":
        self._found.wait(timeout)
        if self.url is None:
            self.stop()
            raise RuntimeError(f"{self.cmd} did not start:\n" + "\n".join(self.output[-40:]))
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()


@pytest.fixture
def spawn():
    """spawn(cmd) -> Child (listening); every child is stopped after the test."""
    children: List[Child] = []

    def start(cmd: List[str], **kw) -> Child:
        c = Child(cmd, **kw)
        children.append(c)
        return c.wait_listening()

    yield start
    for c in children:
        c.stop()


def node_server_cmd(port: int = 0) -> List[str]:
    return [node(), str(INTEROP / "reference_server.js"), "--port", str(port)]


def python_server_cmd(port: int = 0) -> List[str]:
    return [sys.executable, str(INTEROP / "python_server.py"), "--port", str(port)]


PEERS = {"node": node_server_cmd, "python-socketio": python_server_cmd}


@pytest.fixture(params=sorted(PEERS))
def peer(request, spawn):
    """A reference server (Node socket.io or python-socketio) following PROTOCOL.md:
    returns (name, Child, command maker)."""
    make = PEERS[request.param]
    return request.param, spawn(make(0)), make


def wait_for(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Inbox:
    """Events received by handlers (any thread), with bounded waits."""

    def __init__(self) -> None:
        self.items: List[tuple] = []
        self.cv = threading.Condition()

    def put(self, *item) -> None:
        with self.cv:
            self.items.append(item)
            self.cv.notify_all()

    def handler(self, name: str):
        def h(*args):
            self.put(name, *args)

        return h

    def next(self, name: str, timeout: float = 5.0) -> tuple:
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for i, it in enumerate(self.items):
                    if it[0] == name:
                        del self.items[i]
                        return it[1:]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {name!r}; have {self.items!r}")
                self.cv.wait(left)

    def count(self, name: str) -> int:
        with self.cv:
            return sum(1 for it in self.items if it[0] == name)


@pytest.fixture
def inbox():
    return Inbox()


@pytest.fixture
def wrapper(tmp_path):
    """wrapper(*args) -> path of an executable running tests/protocol_server.py with args
    (for suites that take a server executable in $TETHER_TEST_SERVER)."""

    def make(*args: str) -> str:
        p = tmp_path / f"server{'_'.join(a.strip('-') for a in args)}.sh"
        extra = " ".join(args)
        p.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "protocol_server.py"}" {extra} "$@"\n'
        )
        p.chmod(0o755)
        return str(p)

    return make
