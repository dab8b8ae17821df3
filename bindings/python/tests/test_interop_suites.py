"""The repository's interop suites, unchanged, against tether's Python server
(tests/protocol_server.py): the official Node `socket.io-client` suite (websocket only,
polling only, polling upgraded) and the python-socketio client suite, each on the
synchronous `tether.Server` and on `tether.AsyncServer` with coroutine handlers."""

import os
import subprocess
import sys

import pytest

from conftest import INTEROP, ROOT, node

MODES = {"sync": (), "async": ("--async",)}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", sorted(MODES))
def test_official_socketio_client_suite(mode, wrapper):
    exe = node()
    env = dict(os.environ, TETHER_TEST_SERVER=wrapper(*MODES[mode]))
    p = subprocess.run(
        [exe, "--test", "--test-concurrency=1", str(INTEROP / "sio_client.test.mjs")],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    tail = "\n".join(p.stdout.splitlines()[-40:])
    assert p.returncode == 0, f"node suite failed:\n{tail}\n{p.stderr[-3000:]}"
    assert "# fail 0" in p.stdout, tail


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", sorted(MODES))
def test_python_socketio_client_suite(mode, wrapper):
    env = dict(os.environ, TETHER_TEST_SERVER=wrapper(*MODES[mode]))
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_python_client.py"],
        cwd=str(INTEROP),
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert " passed" in p.stdout and " failed" not in p.stdout, p.stdout[-2000:]
