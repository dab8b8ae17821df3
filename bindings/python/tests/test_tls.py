"""TLS from Python: tether.Server(certfile=, keyfile=) serving https / wss to tether's
client (ssl_verify with a CA bundle, False, and the default trust that must refuse a
private CA), to python-socketio's client with an ssl-verifying session, and tether.ws
over wss. The certificates are made for each test run with the openssl CLI."""

import shutil
import subprocess

import pytest
import requests
import socketio

import tether
import tether.ws


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A private CA and a certificate for 127.0.0.1 / localhost signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tether test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "key.pem", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf")
    return {"ca": str(d / "ca.pem"), "cert": str(d / "cert.pem"), "key": str(d / "key.pem")}


@pytest.fixture
def https_server(certs):
    sio = tether.Server(certfile=certs["cert"], keyfile=certs["key"])
    schemes = []

    @sio.event
    def connect(sid, environ, auth):
        schemes.append(environ["wsgi.url_scheme"])

    @sio.on("echo")
    def echo(sid, *args):
        return args

    port = sio.listen()
    yield f"https://127.0.0.1:{port}", schemes
    sio.shutdown()


def test_tether_client_with_ca_bundle_and_danger_flag(https_server, certs):
    url, schemes = https_server
    for verify in (certs["ca"], False):
        c = tether.Client(reconnection=False, ssl_verify=verify)
        for transports in (["websocket"], ["polling"]):
            c.connect(url, transports=transports, wait_timeout=5)
            assert c.call("echo", ("x", b"\x01"), timeout=5) == ("x", b"\x01")
            c.disconnect()
    assert schemes and set(schemes) == {"https"}


def test_tether_client_refuses_an_unknown_ca(https_server):
    url, _ = https_server
    c = tether.Client(reconnection=False)  # Mozilla roots: the test CA is not one
    with pytest.raises(tether.ConnectionError):
        c.connect(url, transports=["websocket"], wait_timeout=5)
    c.disconnect()


def test_python_socketio_client_verifying(https_server, certs):
    url, _ = https_server
    session = requests.Session()
    session.verify = certs["ca"]
    session.trust_env = False  # REQUESTS_CA_BUNDLE would win over session.verify
    c = socketio.Client(reconnection=False, http_session=session)
    c.connect(url, wait_timeout=5)  # polling, then the upgrade to wss (same CA)
    try:
        assert c.call("echo", "hi", timeout=5) == "hi"
    finally:
        c.disconnect()


def test_bad_tls_arguments(certs):
    with pytest.raises(ValueError):
        tether.Server(certfile=certs["cert"])
    with pytest.raises(ValueError):
        tether.Server(certfile=certs["cert"], keyfile="/nonexistent/key.pem")
    with pytest.raises(TypeError):
        tether.Client(ssl_verify=3)
    with pytest.raises(ValueError):
        tether.Client(ssl_verify="/nonexistent/ca.pem")


def test_ws_over_tls(certs):
    def handler(conn):
        for m in conn:
            conn.send(m)

    s = tether.ws.Server(handler, certfile=certs["cert"], keyfile=certs["key"])
    port = s.listen()
    try:
        with tether.ws.connect(f"wss://127.0.0.1:{port}/", ssl_verify=certs["ca"]) as c:
            c.send("over tls")
            assert c.recv(timeout=5) == "over tls"
        with tether.ws.connect(f"wss://localhost:{port}/", ssl_verify=False) as c:
            c.send(b"\x00")
            assert c.recv(timeout=5) == b"\x00"
        with pytest.raises(tether.ConnectionError):
            tether.ws.connect(f"wss://127.0.0.1:{port}/", timeout=5)
    finally:
        s.shutdown()
