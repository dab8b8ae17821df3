"""Fixtures of the Python interop suites: the server under test.

The server is `$TETHER_TEST_SERVER --port 0` (tether's conformance_server) or, when the
variable is unset, `node reference_server.js --port 0` next to this file. It prints
`listening on http://127.0.0.1:PORT` once it accepts connections (PROTOCOL.md).
"""

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")
START_TIMEOUT = 15.0


def server_command():
    exe = os.environ.get("TETHER_TEST_SERVER")
    if exe:
        return [exe, "--port", "0"]
    node = shutil.which("node")
    if node is None:
        pytest.exit("node is not installed and TETHER_TEST_SERVER is unset", returncode=2)
    return [node, str(HERE / "reference_server.js"), "--port", "0"]


class RunningServer:
    def __init__(self, cmd):
        self.cmd = cmd
        self.url = None
        self.output = []  # stdout and stderr lines, for failure messages
        self._found = threading.Event()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._drain, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr, False), daemon=True).start()

    def _drain(self, stream, is_stdout):
        for line in stream:
            self.output.append(line.rstrip("\n"))
            del self.output[:-200]
            if is_stdout and self.url is None:
                m = LISTENING.search(line)
                if m:
                    self.url = m.group(1)
                    self._found.set()
        if is_stdout:
            self._found.set()  # EOF: the server exited

    def wait_listening(self):
        self._found.wait(START_TIMEOUT)
        if self.url is None:
            self.stop()
            raise RuntimeError(f"server {self.cmd} did not print its listening line:\n{self.tail()}")

    def alive(self):
        return self.proc.poll() is None

    def tail(self, lines=50):
        return "\n".join(self.output[-lines:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="session")
def server():
    """The running server under test (a RunningServer)."""
    running = RunningServer(server_command())
    try:
        running.wait_listening()
        yield running
        if not running.alive():
            pytest.fail(f"server exited during the tests ({running.proc.returncode}):\n{running.tail()}")
    finally:
        running.stop()


@pytest.fixture
def server_url(server):
    """`http://127.0.0.1:PORT` of the server under test; fails at once if it is gone."""
    if not server.alive():
        pytest.fail(f"server is not running (exit {server.proc.returncode}):\n{server.tail()}")
    return server.url
