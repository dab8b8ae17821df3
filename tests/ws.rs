//! Tests of the plain WebSocket server and client (`tether::ws`) and of TLS (`tether::tls`).
//!
//! - **Their clients, our server**: the Node `ws` and Python `websockets` clients, scripted
//!   through `tests/interop/ws/peer_client.{mjs,py}` (JSON commands on stdin, JSON events on
//!   stdout), against in-process tether servers, so that both sides can be checked:
//!   subprotocols, close codes and reasons both ways, fragments, ping/pong, `wss://`.
//!   (`tests/interop/ws_peers.test.mjs` and `test_ws_python.py` run the same clients
//!   against the `ws_echo` example binary.)
//! - **Their servers, our client**: `WsClient` against `tests/interop/ws/echo_server.mjs`
//!   (Node `ws`) and `echo_server.py` (Python `websockets`): text, binary, 1 MiB, fragments,
//!   server pings, close codes both ways, subprotocols, custom request headers.
//! - **TLS** with a CA and server certificates generated here (rcgen): `WsClient` ↔
//!   `WsServer`, the Socket.IO client ↔ server over polling and websocket, a wrong host
//!   name, an untrusted CA, the development opt-out.
//! - **Hostile bytes** on raw TCP against a server with small limits: each case's close code
//!   (or HTTP answer), memory bounded, and the server still serving a well-behaved client.
//! - **The bounded send queue**: a full queue is an error, the high-water callback fires.
//!
//! Node (with `tests/interop/node_modules`) and the Python venv `.venv` are required:
//! `bash scripts/test.sh` installs them. Every wait is bounded; child processes are killed
//! when their guard drops.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};
use tether::engine::TransportType;
use tether::sio::Io;
use tether::sio::client::{Client, Reconnection};
use tether::tls::{ClientTls, ServerTls};
use tether::ws::{
    CloseInfo, WsClient, WsConfig, WsConn, WsConnectError, WsMessage, WsSendError, WsServer,
};
use tether::{EngineConfig, Routes, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// The bound on any single wait.
const WAIT: Duration = Duration::from_secs(5);
/// How to get node, its modules and the Python venv.
const SETUP_HINT: &str = "run `bash scripts/test.sh` once: it installs node's modules \
                          (tests/interop/node_modules) and the Python venv (.venv)";

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Await `f`, failing the test if it takes longer than `d`.
async fn within<T>(d: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {d:?}: {what}"),
    }
}

/// Tests that measure this process's memory, or use a lot of it, run one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `/proc/self/status` field in KiB (0 where there is no /proc).
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            let v = l.strip_prefix(field)?.strip_prefix(':')?.trim();
            v.strip_suffix("kB")?.trim().parse().ok()
        })
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    proc_status_kib("VmRSS")
}

/// Resident memory may grow by at most this much during one hostile case.
const RSS_BOUND_KIB: u64 = 50 * 1024;

/// A unique temporary file path, removed when the guard drops.
struct TempFile(PathBuf);

impl TempFile {
    fn with(contents: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tether-ws-test-{}-{}.pem",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// In-process tether servers
// ---------------------------------------------------------------------------------------

/// What an in-process server's connections report.
#[derive(Debug)]
enum Ev {
    Open(WsConn),
    Msg(WsMessage),
    Close(CloseInfo),
}

/// An echo endpoint: text and binary messages come back unchanged, except the text
/// `close-me CODE REASON`, which makes the server close with that code and reason.
fn echo_endpoint(config: WsConfig) -> (WsServer, mpsc::UnboundedReceiver<Ev>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let ws = WsServer::with_config(config, move |conn| {
        let _ = tx.send(Ev::Open(conn.clone()));
        let t = tx.clone();
        conn.on_message(move |c, msg| {
            match &msg {
                WsMessage::Text(text) => {
                    if let Some(rest) = text.strip_prefix("close-me ") {
                        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                        c.close(code.parse().unwrap_or(1000), reason);
                    } else {
                        let _ = c.send_text(text);
                    }
                }
                WsMessage::Binary(b) => {
                    let _ = c.send_binary(b.clone());
                }
            }
            let _ = t.send(Ev::Msg(msg));
        });
        let t = tx.clone();
        conn.on_close(move |_, info| {
            let _ = t.send(Ev::Close(info.clone()));
        });
    });
    (ws, rx)
}

/// A running in-process server and what its connections report.
struct TestServer {
    handle: ServerHandle,
    events: mpsc::UnboundedReceiver<Ev>,
    _io: Option<Io>,
}

impl TestServer {
    /// `WsServer::listen`, with `routes` (TLS) when given.
    async fn plain(config: WsConfig, routes: Option<Routes>) -> TestServer {
        let (ws, events) = echo_endpoint(config);
        let handle = match routes {
            None => ws.listen("127.0.0.1:0").await,
            Some(r) => ws.listen_with("127.0.0.1:0", r).await,
        }
        .expect("listen");
        TestServer {
            handle,
            events,
            _io: None,
        }
    }

    /// The endpoint at `/` of a Socket.IO server's listener (`Routes::websocket`): the
    /// only way to give a WebSocket endpoint a shorter `header_read_timeout`.
    async fn beside_socketio(config: WsConfig, engine: EngineConfig) -> TestServer {
        let (ws, events) = echo_endpoint(config);
        let io = Io::builder().engine_config(engine).build();
        let handle = io
            .listen_with("127.0.0.1:0", Routes::new().websocket("/", ws))
            .await
            .expect("listen");
        TestServer {
            handle,
            events,
            _io: Some(io),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    fn port(&self) -> u16 {
        self.addr().port()
    }

    async fn next_event(&mut self, what: &str) -> Ev {
        within(WAIT, what, self.events.recv())
            .await
            .unwrap_or_else(|| panic!("server events ended: {what}"))
    }

    async fn next_open(&mut self) -> WsConn {
        loop {
            if let Ev::Open(c) = self.next_event("a server-side connection").await {
                return c;
            }
        }
    }

    async fn next_msg(&mut self) -> WsMessage {
        loop {
            match self.next_event("a message at the server").await {
                Ev::Msg(m) => return m,
                Ev::Close(i) => panic!("server-side connection closed ({i:?}) before a message"),
                Ev::Open(_) => {}
            }
        }
    }

    async fn next_close(&mut self) -> CloseInfo {
        loop {
            if let Ev::Close(i) = self.next_event("a server-side close").await {
                return i;
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

// ---------------------------------------------------------------------------------------
// tether's client
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
enum CEv {
    Msg(WsMessage),
    Close(CloseInfo),
}

struct Conn {
    conn: WsConn,
    events: mpsc::UnboundedReceiver<CEv>,
}

impl Conn {
    async fn next_msg(&mut self) -> WsMessage {
        match within(WAIT, "a message at the client", self.events.recv()).await {
            Some(CEv::Msg(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    async fn next_text(&mut self) -> String {
        match self.next_msg().await {
            WsMessage::Text(t) => t.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    async fn next_binary(&mut self) -> Vec<u8> {
        match self.next_msg().await {
            WsMessage::Binary(b) => b.to_vec(),
            WsMessage::Text(t) => panic!("expected binary, got text {t:?}"),
        }
    }

    async fn next_close(&mut self) -> CloseInfo {
        loop {
            match within(WAIT, "the client's close", self.events.recv()).await {
                Some(CEv::Close(i)) => return i,
                Some(CEv::Msg(_)) => {}
                None => panic!("client events ended without a close"),
            }
        }
    }
}

async fn connect(url: &str, config: WsConfig) -> Result<Conn, WsConnectError> {
    let (tx, events) = mpsc::unbounded_channel();
    let t = tx.clone();
    let client = WsClient::with_config(config)
        .on_message(move |_, m| {
            let _ = t.send(CEv::Msg(m));
        })
        .on_close(move |_, i| {
            let _ = tx.send(CEv::Close(i.clone()));
        });
    let conn = within(WAIT * 2, &format!("connect {url}"), client.connect(url)).await?;
    Ok(Conn { conn, events })
}

/// A well-behaved client still gets its echo from the server at `addr`.
async fn assert_still_serving(addr: SocketAddr) {
    let mut c = connect(&format!("ws://{addr}/"), WsConfig::default())
        .await
        .unwrap_or_else(|e| panic!("a well-behaved client cannot connect any more: {e}"));
    c.conn.send_text("still there?").expect("send");
    assert_eq!(c.next_text().await, "still there?");
    c.conn.close(1000, "done");
    let info = c.next_close().await;
    assert_eq!(info.code, 1000);
}

// ---------------------------------------------------------------------------------------
// Child processes: their servers and their (scripted) clients
// ---------------------------------------------------------------------------------------

/// A child process speaking line by line; killed (SIGKILL) and reaped when dropped.
struct Peer {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Peer {
    fn spawn(name: &str, program: &Path, args: &[&str]) -> Peer {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(root())
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({program:?}): {e}; {SETUP_HINT}"));
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = lock(&sink);
                s.push_str(&line);
                s.push('\n');
            }
        });
        Peer {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    async fn line(&mut self, what: &str) -> String {
        match timeout(WAIT, self.lines.recv()).await {
            Ok(Some(l)) => l,
            Ok(None) => panic!(
                "{} exited before {what}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
            Err(_) => panic!(
                "{} printed nothing for {what} within {WAIT:?}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// The next JSON event line of kind `kind` (skipping the others).
    async fn event(&mut self, kind: &str) -> Value {
        loop {
            let line = self.line(&format!("a {kind:?} event")).await;
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["event"] == kind {
                return v;
            }
            if v["event"] == "error" {
                panic!("{}: {v} while waiting for {kind:?}", self.name);
            }
        }
    }

    fn command(&mut self, cmd: Value) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{cmd}").expect("write a command to the peer");
        stdin.flush().expect("flush");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Node,
    Python,
}

fn node() -> PathBuf {
    let modules = root().join("tests/interop/node_modules/ws");
    assert!(modules.is_dir(), "{modules:?} is missing: {SETUP_HINT}");
    PathBuf::from("node")
}

fn python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    assert!(python.is_file(), "{python:?} is missing: {SETUP_HINT}");
    python
}

/// Their echo server (`tests/interop/ws/echo_server.*`) and its `ws://127.0.0.1:PORT`.
async fn their_server(kind: Kind) -> (Peer, String) {
    let mut peer = match kind {
        Kind::Node => Peer::spawn(
            "node echo_server.mjs",
            &node(),
            &["tests/interop/ws/echo_server.mjs", "--port", "0"],
        ),
        Kind::Python => Peer::spawn(
            "python echo_server.py",
            &python(),
            &["tests/interop/ws/echo_server.py", "--port", "0"],
        ),
    };
    loop {
        let line = peer.line("the listening line").await;
        if let Some(rest) = line.strip_prefix("listening on ") {
            let base = rest.trim_end_matches('/').to_owned();
            return (peer, base);
        }
    }
}

/// Their scripted client (`tests/interop/ws/peer_client.*`), connecting to `url`.
fn their_client(kind: Kind, url: &str, ca: Option<&TempFile>, protocols: &[&str]) -> Peer {
    let mut args: Vec<&str> = Vec::new();
    let protocols = protocols.join(",");
    args.extend(["--url", url]);
    if let Some(ca) = ca {
        args.extend(["--ca", ca.path()]);
    }
    if !protocols.is_empty() {
        args.extend(["--protocols", &protocols]);
    }
    match kind {
        Kind::Node => {
            let mut a = vec!["tests/interop/ws/peer_client.mjs"];
            a.extend(args);
            Peer::spawn("node peer_client.mjs", &node(), &a)
        }
        Kind::Python => {
            let mut a = vec!["tests/interop/ws/peer_client.py"];
            a.extend(args);
            Peer::spawn("python peer_client.py", &python(), &a)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Certificates (rcgen)
// ---------------------------------------------------------------------------------------

/// A test CA.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca certificate");
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names`, signed by this CA.
    fn server(&self, names: &[&str]) -> ServerTls {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        ServerTls::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .expect("ServerTls::from_pem")
    }

    fn trust_only(&self) -> ClientTls {
        ClientTls::only_ca_pem(self.ca_pem.as_bytes()).expect("only_ca_pem")
    }
}

fn tls_config(tls: ClientTls) -> WsConfig {
    WsConfig {
        tls,
        ..WsConfig::default()
    }
}

// =======================================================================================
// Their servers, our client
// =======================================================================================

async fn their_server_text_binary_headers_subprotocol(kind: Kind) {
    let (_server, base) = their_server(kind).await;
    let config = WsConfig {
        subprotocols: vec!["v9.unknown".into(), "superchat".into()],
        headers: vec![("X-Tether-Test".into(), "hello-123".into())],
        ..WsConfig::default()
    };
    let mut c = connect(&format!("{base}/some/path?q=1"), config)
        .await
        .expect("connect");
    assert_eq!(c.conn.protocol(), Some("superchat"));
    let greeting: Value = serde_json::from_str(&c.next_text().await).expect("json greeting");
    assert_eq!(greeting["protocol"], "superchat", "{greeting}");
    assert_eq!(greeting["header"], "hello-123", "{greeting}");
    assert_eq!(greeting["path"], "/some/path?q=1", "{greeting}");

    c.conn.send_text("héllo ✓ wörld").expect("send");
    assert_eq!(c.next_text().await, "héllo ✓ wörld");
    c.conn.send_binary(vec![0u8, 1, 2, 254, 255]).expect("send");
    assert_eq!(c.next_binary().await, vec![0u8, 1, 2, 254, 255]);
    c.conn.send_text("").expect("send empty");
    assert_eq!(c.next_text().await, "");
    c.conn.send_binary(Vec::new()).expect("send empty binary");
    assert_eq!(c.next_binary().await, Vec::<u8>::new());
}

async fn their_server_large_messages(kind: Kind) {
    let _heavy = HEAVY.lock().await;
    let (_server, base) = their_server(kind).await;
    let mut c = connect(&format!("{base}/"), WsConfig::default())
        .await
        .expect("connect");
    let _greeting = c.next_text().await;
    let text: String = (0..(1 << 20))
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    c.conn.send_text(&text).expect("send 1 MiB text");
    assert!(c.next_text().await == text, "1 MiB text came back changed");
    let bin: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    c.conn.send_binary(bin.clone()).expect("send 1 MiB binary");
    assert!(
        c.next_binary().await == bin,
        "1 MiB binary came back changed"
    );
}

async fn their_server_fragments_and_pings(kind: Kind) {
    let (_server, base) = their_server(kind).await;
    let mut c = connect(&format!("{base}/"), WsConfig::default())
        .await
        .expect("connect");
    let _greeting = c.next_text().await;
    // The server sends one text and one binary message, each in three frames.
    c.conn.send_text("fragments").expect("send");
    assert_eq!(c.next_text().await, "frag-mented");
    assert_eq!(c.next_binary().await, vec![1u8, 2, 3, 4, 5]);
    // The server pings with a payload and reports the pong (answered by our client).
    c.conn.send_text("ping-me abc").expect("send");
    assert_eq!(c.next_text().await, "pong:abc");
    c.conn.send_text("ping-me second").expect("send");
    assert_eq!(c.next_text().await, "pong:second");
}

async fn their_server_close_by_client(kind: Kind) {
    let (mut server, base) = their_server(kind).await;
    let mut c = connect(&format!("{base}/"), WsConfig::default())
        .await
        .expect("connect");
    let _greeting = c.next_text().await;
    c.conn.close(4001, "bye");
    let info = c.next_close().await;
    assert_eq!(
        info,
        CloseInfo {
            code: 4001,
            reason: "bye".into(),
            by_peer: false
        }
    );
    let seen = server.event("close").await;
    assert_eq!(seen["code"], 4001, "the server saw {seen}");
    assert_eq!(seen["reason"], "bye", "the server saw {seen}");
    assert!(c.conn.is_closed());
    assert_eq!(c.conn.send_text("late"), Err(WsSendError::Closed));
}

async fn their_server_close_by_server(kind: Kind) {
    let (mut server, base) = their_server(kind).await;
    let mut c = connect(&format!("{base}/"), WsConfig::default())
        .await
        .expect("connect");
    let _greeting = c.next_text().await;
    c.conn
        .send_text("close-me 4002 server says bye")
        .expect("send");
    let info = c.next_close().await;
    assert_eq!(
        info,
        CloseInfo {
            code: 4002,
            reason: "server says bye".into(),
            by_peer: true
        }
    );
    // Our client echoed the close frame: the server completed the closing handshake.
    let seen = server.event("close").await;
    assert_eq!(seen["code"], 4002, "the server saw {seen}");
}

async fn their_server_picks_unoffered_subprotocol(kind: Kind) {
    let (_server, base) = their_server(kind).await;
    let offer_chat = WsConfig {
        subprotocols: vec!["chat".into()],
        ..WsConfig::default()
    };
    // The server answers with a subprotocol we did not offer, or with one when we offered
    // none: both refused.
    for (what, url, config) in [
        ("unoffered", format!("{base}/?proto=bogus"), offer_chat),
        (
            "none offered",
            format!("{base}/?proto=chat"),
            WsConfig::default(),
        ),
    ] {
        if kind == Kind::Node && what == "none offered" {
            continue; // `ws` only asks handleProtocols when the client offers some
        }
        match connect(&url, config).await {
            Err(e) => {
                eprintln!("{kind:?} server, {what}: {e}");
                assert!(
                    e.to_string().to_lowercase().contains("subprotocol"),
                    "{what}: {e}"
                );
            }
            Ok(c) => panic!(
                "{what}: connected although the server chose {:?}",
                c.conn.protocol()
            ),
        }
    }
}

/// A server choosing a subprotocol we did not offer is refused with
/// `WsConnectError::Subprotocol`.
#[tokio::test]
async fn unoffered_subprotocol_is_a_subprotocol_error() {
    let (_server, base) = their_server(Kind::Node).await;
    let config = WsConfig {
        subprotocols: vec!["chat".into()],
        ..WsConfig::default()
    };
    match connect(&format!("{base}/?proto=bogus"), config).await {
        // (tungstenite does not say which one the server chose: the error names ours.)
        Err(WsConnectError::Subprotocol(msg)) => assert!(msg.contains("offered: chat"), "{msg}"),
        Err(other) => panic!("expected WsConnectError::Subprotocol, got {other:?}"),
        Ok(_) => panic!("connected"),
    }
}

#[tokio::test]
async fn node_server_text_binary_headers_subprotocol() {
    their_server_text_binary_headers_subprotocol(Kind::Node).await;
}

#[tokio::test]
async fn python_server_text_binary_headers_subprotocol() {
    their_server_text_binary_headers_subprotocol(Kind::Python).await;
}

#[tokio::test]
async fn node_server_large_messages() {
    their_server_large_messages(Kind::Node).await;
}

#[tokio::test]
async fn python_server_large_messages() {
    their_server_large_messages(Kind::Python).await;
}

#[tokio::test]
async fn node_server_fragments_and_pings() {
    their_server_fragments_and_pings(Kind::Node).await;
}

#[tokio::test]
async fn python_server_fragments_and_pings() {
    their_server_fragments_and_pings(Kind::Python).await;
}

#[tokio::test]
async fn node_server_close_by_client() {
    their_server_close_by_client(Kind::Node).await;
}

#[tokio::test]
async fn python_server_close_by_client() {
    their_server_close_by_client(Kind::Python).await;
}

#[tokio::test]
async fn node_server_close_by_server() {
    their_server_close_by_server(Kind::Node).await;
}

#[tokio::test]
async fn python_server_close_by_server() {
    their_server_close_by_server(Kind::Python).await;
}

#[tokio::test]
async fn node_server_picks_unoffered_subprotocol() {
    their_server_picks_unoffered_subprotocol(Kind::Node).await;
}

#[tokio::test]
async fn python_server_picks_unoffered_subprotocol() {
    their_server_picks_unoffered_subprotocol(Kind::Python).await;
}

/// `WsConfig::keepalive` pings the server (Node counts the pings it receives).
#[tokio::test]
async fn node_server_sees_keepalive_pings() {
    let (_server, base) = their_server(Kind::Node).await;
    let config = WsConfig {
        keepalive: Some(Duration::from_millis(100)),
        ..WsConfig::default()
    };
    let mut c = connect(&format!("{base}/"), config).await.expect("connect");
    let _greeting = c.next_text().await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    c.conn.send_text("pings?").expect("send");
    let reply = c.next_text().await;
    let n: u32 = reply
        .strip_prefix("pings:")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected reply {reply:?}"));
    assert!(
        n >= 2,
        "the server saw {n} keepalive pings in 450 ms at 100 ms"
    );
    assert!(
        !c.conn.is_closed(),
        "pongs arrive, so keepalive must not close"
    );
}

// =======================================================================================
// Their clients, our server
// =======================================================================================

async fn their_client_session(kind: Kind) {
    let config = WsConfig {
        subprotocols: vec!["chat".into(), "superchat".into()],
        ..WsConfig::default()
    };
    let mut server = TestServer::plain(config, None).await;
    let url = format!("ws://127.0.0.1:{}/", server.port());

    // Offering only `superchat`: the server picks it.
    let mut peer = their_client(kind, &url, None, &["superchat"]);
    let open = peer.event("open").await;
    assert_eq!(open["protocol"], "superchat", "{open}");
    let conn = server.next_open().await;
    assert_eq!(conn.protocol(), Some("superchat"));
    assert!(conn.request().is_some_and(|r| r.uri.path() == "/"));

    peer.command(json!({"send": "hi ✓"}));
    assert_eq!(
        server.next_msg().await,
        WsMessage::Text("hi ✓".to_owned().into())
    );
    assert_eq!(peer.event("message").await["text"], "hi ✓");

    peer.command(json!({"send_hex": "00ff10"}));
    assert_eq!(
        server.next_msg().await,
        WsMessage::Binary(vec![0u8, 0xff, 0x10].into())
    );
    assert_eq!(peer.event("message").await["hex"], "00ff10");

    // A message in three frames arrives reassembled.
    peer.command(json!({"send_fragments": ["frag-", "ment", "ed"]}));
    assert_eq!(
        server.next_msg().await,
        WsMessage::Text("frag-mented".to_owned().into())
    );
    assert_eq!(peer.event("message").await["text"], "frag-mented");

    // The peer pings; the server's pong comes back.
    peer.command(json!({"ping": "p1"}));
    assert_eq!(peer.event("pong").await["data"], "p1");

    // The peer closes with 4001 "bye": the server reports exactly that, from the peer.
    peer.command(json!({"close": [4001, "bye"]}));
    let info = server.next_close().await;
    assert_eq!(
        info,
        CloseInfo {
            code: 4001,
            reason: "bye".into(),
            by_peer: true
        }
    );
    let close = peer.event("close").await;
    assert_eq!(
        close["code"], 4001,
        "the server echoes the close code: {close}"
    );
    assert!(conn.is_closed());

    // Offering both in the client's order: the server's preference (`chat`) wins.
    let mut peer = their_client(kind, &url, None, &["superchat", "chat"]);
    assert_eq!(peer.event("open").await["protocol"], "chat");
    assert_eq!(server.next_open().await.protocol(), Some("chat"));
    drop(peer);
    let _ = server.next_close().await;

    // Offering nothing we support: the server answers without a subprotocol (RFC 6455
    // §4.2.2). Python's client accepts that; Node's `ws` client refuses it itself
    // ("Server sent no subprotocol").
    let mut peer = their_client(kind, &url, None, &["other"]);
    assert_eq!(server.next_open().await.protocol(), None);
    match kind {
        Kind::Python => assert_eq!(peer.event("open").await["protocol"], Value::Null),
        Kind::Node => {
            let err = peer.event("error").await;
            assert_eq!(err["message"], "Server sent no subprotocol", "{err}");
        }
    }
}

async fn their_client_sees_server_close(kind: Kind) {
    let mut server = TestServer::plain(WsConfig::default(), None).await;
    let url = format!("ws://127.0.0.1:{}/", server.port());
    let mut peer = their_client(kind, &url, None, &[]);
    peer.event("open").await;
    let conn = server.next_open().await;
    // A reason longer than 123 bytes is cut at a character boundary.
    let long_reason = "é".repeat(100);
    conn.close(4002, &long_reason);
    let close = peer.event("close").await;
    assert_eq!(close["code"], 4002, "{close}");
    let reason = close["reason"].as_str().expect("reason");
    assert!(reason.len() <= 123, "reason of {} bytes", reason.len());
    assert!(
        long_reason.starts_with(reason) && reason.len() >= 122,
        "{reason:?}"
    );
    let info = server.next_close().await;
    assert_eq!(info.code, 4002);
    assert!(!info.by_peer);
}

#[tokio::test]
async fn node_client_session() {
    their_client_session(Kind::Node).await;
}

#[tokio::test]
async fn python_client_session() {
    their_client_session(Kind::Python).await;
}

#[tokio::test]
async fn node_client_sees_server_close() {
    their_client_sees_server_close(Kind::Node).await;
}

#[tokio::test]
async fn python_client_sees_server_close() {
    their_client_sees_server_close(Kind::Python).await;
}

async fn their_client_over_wss(kind: Kind) {
    let pki = Pki::new("tether interop CA");
    let tls = pki.server(&["localhost", "127.0.0.1"]);
    let config = WsConfig {
        subprotocols: vec!["superchat".into()],
        ..WsConfig::default()
    };
    let mut server = TestServer::plain(config, Some(Routes::new().tls(tls))).await;
    let ca = TempFile::with(&pki.ca_pem);
    let url = format!("wss://localhost:{}/", server.port());
    let mut peer = their_client(kind, &url, Some(&ca), &["superchat"]);
    assert_eq!(peer.event("open").await["protocol"], "superchat");
    peer.command(json!({"send": "over tls"}));
    assert_eq!(peer.event("message").await["text"], "over tls");
    peer.command(json!({"close": [4001, "bye"]}));
    assert_eq!(server.next_close().await.code, 4001);
    assert_eq!(peer.event("close").await["code"], 4001);

    // Without our CA the peer refuses the certificate.
    let mut peer = their_client(kind, &url, None, &[]);
    let err = peer.event("error").await;
    let msg = err["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(msg.contains("certificate"), "{err}");
}

#[tokio::test]
async fn node_client_over_wss() {
    their_client_over_wss(Kind::Node).await;
}

#[tokio::test]
async fn python_client_over_wss() {
    their_client_over_wss(Kind::Python).await;
}

// =======================================================================================
// Our client, our server: origins, headers, limits
// =======================================================================================

#[tokio::test]
async fn origin_allowlist_refuses_with_403() {
    let config = WsConfig {
        allowed_origins: Some(vec!["https://good.example".into()]),
        ..WsConfig::default()
    };
    let server = TestServer::plain(config, None).await;
    let url = format!("ws://127.0.0.1:{}/", server.port());
    let with_origin = |o: &str| WsConfig {
        headers: vec![("Origin".into(), o.into())],
        ..WsConfig::default()
    };
    match connect(&url, with_origin("https://evil.example")).await {
        Err(WsConnectError::Refused(403)) => {}
        Err(e) => panic!("expected 403, got {e}"),
        Ok(_) => panic!("a foreign origin connected"),
    }
    match connect(&url, WsConfig::default()).await {
        Err(WsConnectError::Refused(403)) => {}
        Err(e) => panic!("expected 403 without an Origin, got {e}"),
        Ok(_) => panic!("a request without Origin connected to an allowlist"),
    }
    let mut c = connect(&url, with_origin("https://good.example"))
        .await
        .expect("the allowed origin connects");
    c.conn.send_text("ok").expect("send");
    assert_eq!(c.next_text().await, "ok");
}

#[tokio::test]
async fn oversized_message_from_our_client_gets_1009() {
    let config = WsConfig {
        max_message_size: 64 << 10,
        max_frame_size: 16 << 10,
        ..WsConfig::default()
    };
    let mut server = TestServer::plain(config, None).await;
    let mut c = connect(&format!("ws://{}/", server.addr()), WsConfig::default())
        .await
        .expect("connect");
    c.conn.send_text(&"x".repeat(100 << 10)).expect("send");
    let info = c.next_close().await;
    assert_eq!(info.code, 1009, "{info:?}");
    assert!(info.by_peer);
    let at_server = server.next_close().await;
    assert_eq!(at_server.code, 1009);
    assert!(!at_server.by_peer);
    assert_still_serving(server.addr()).await;
}

// =======================================================================================
// TLS
// =======================================================================================

#[tokio::test]
async fn tls_our_client_to_our_server() {
    let pki = Pki::new("tether test CA");
    let tls = pki.server(&["localhost", "127.0.0.1"]);
    let mut server = TestServer::plain(WsConfig::default(), Some(Routes::new().tls(tls))).await;
    let port = server.port();
    for url in [
        format!("wss://localhost:{port}/"),
        format!("wss://127.0.0.1:{port}/"),
    ] {
        let mut c = connect(&url, tls_config(pki.trust_only()))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        c.conn.send_text("secret").expect("send");
        assert_eq!(c.next_text().await, "secret");
        c.conn.send_binary(vec![9u8; 100_000]).expect("send");
        assert_eq!(c.next_binary().await, vec![9u8; 100_000]);
        c.conn.close(4000, "tls bye");
        assert_eq!(server.next_close().await.code, 4000);
    }
    // The CA beside the Mozilla roots works as well.
    let ca_too = ClientTls::with_ca_pem(pki.ca_pem.as_bytes()).expect("with_ca_pem");
    let mut c = connect(&format!("wss://localhost:{port}/"), tls_config(ca_too))
        .await
        .expect("with_ca_pem");
    c.conn.send_text("again").expect("send");
    assert_eq!(c.next_text().await, "again");
}

#[tokio::test]
async fn tls_wrong_hostname_fails_clearly() {
    let pki = Pki::new("tether test CA");
    let tls = pki.server(&["other.example"]);
    let server = TestServer::plain(WsConfig::default(), Some(Routes::new().tls(tls))).await;
    let url = format!("wss://localhost:{}/", server.port());
    let err = match connect(&url, tls_config(pki.trust_only())).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("connected to a certificate for other.example as localhost"),
    };
    eprintln!("wrong host name: {err}");
    let lower = err.to_lowercase();
    assert!(lower.contains("certificate"), "{err}");
    assert!(
        lower.contains("name") || lower.contains("other.example"),
        "the error should name the host name mismatch: {err}"
    );
    // The development opt-out connects anyway.
    let mut c = connect(&url, tls_config(ClientTls::danger_accept_invalid_certs()))
        .await
        .expect("danger_accept_invalid_certs connects");
    c.conn.send_text("insecure but encrypted").expect("send");
    assert_eq!(c.next_text().await, "insecure but encrypted");
}

#[tokio::test]
async fn tls_untrusted_ca_fails_clearly() {
    let pki = Pki::new("tether untrusted CA");
    let tls = pki.server(&["localhost"]);
    let server = TestServer::plain(WsConfig::default(), Some(Routes::new().tls(tls))).await;
    let url = format!("wss://localhost:{}/", server.port());
    // Default trust (the Mozilla roots) and another private CA both refuse it.
    for (what, trust) in [
        ("default webpki roots", ClientTls::default()),
        ("another CA", Pki::new("someone else").trust_only()),
    ] {
        let err = match connect(&url, tls_config(trust)).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{what}: connected to a certificate from an untrusted CA"),
        };
        eprintln!("untrusted CA ({what}): {err}");
        let lower = err.to_lowercase();
        assert!(lower.contains("certificate"), "{err}");
        assert!(
            lower.contains("issuer") || lower.contains("unknown"),
            "the error should say the issuer is unknown: {err}"
        );
    }
    let mut c = connect(&url, tls_config(ClientTls::danger_accept_invalid_certs()))
        .await
        .expect("danger_accept_invalid_certs connects");
    c.conn.send_text("x").expect("send");
    assert_eq!(c.next_text().await, "x");
}

#[tokio::test]
async fn tls_and_plain_mismatches_fail_and_the_server_stays_up() {
    let pki = Pki::new("tether test CA");
    let tls = pki.server(&["localhost", "127.0.0.1"]);
    let tls_server = TestServer::plain(WsConfig::default(), Some(Routes::new().tls(tls))).await;
    let plain_server = TestServer::plain(WsConfig::default(), None).await;
    // ws:// to a TLS port, wss:// to a plain port: errors, not hangs.
    let err = connect(
        &format!("ws://127.0.0.1:{}/", tls_server.port()),
        WsConfig::default(),
    )
    .await
    .err()
    .expect("plain client to a TLS server must fail");
    eprintln!("ws:// to a TLS server: {err}");
    let err = connect(
        &format!("wss://127.0.0.1:{}/", plain_server.port()),
        tls_config(pki.trust_only()),
    )
    .await
    .err()
    .expect("TLS client to a plain server must fail");
    eprintln!("wss:// to a plain server: {err}");
    // Both servers still serve.
    let mut c = connect(
        &format!("wss://localhost:{}/", tls_server.port()),
        tls_config(pki.trust_only()),
    )
    .await
    .expect("connect");
    c.conn.send_text("up").expect("send");
    assert_eq!(c.next_text().await, "up");
    assert_still_serving(plain_server.addr()).await;
}

/// A TLS client that never finishes its handshake is dropped after
/// `header_read_timeout`.
#[tokio::test]
async fn tls_handshake_stall_is_dropped() {
    let pki = Pki::new("tether test CA");
    let io = Io::builder()
        .engine_config(EngineConfig {
            header_read_timeout: Duration::from_millis(500),
            ..EngineConfig::default()
        })
        .build();
    let handle = io
        .listen_with("127.0.0.1:0", Routes::new().tls(pki.server(&["localhost"])))
        .await
        .expect("listen");
    let mut s = TcpStream::connect(handle.local_addr()).await.expect("tcp");
    s.write_all(&[0x16, 0x03, 0x01]).await.expect("write"); // a TLS record header, no more
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = within(
        WAIT,
        "the server dropping a stalled TLS handshake",
        s.read(&mut buf),
    )
    .await
    .unwrap_or(0);
    assert_eq!(n, 0, "expected the connection closed");
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    handle.shutdown();
}

// --- Socket.IO over TLS ---------------------------------------------------------------

fn no_reconnection() -> Reconnection {
    Reconnection {
        enabled: false,
        ..Reconnection::default()
    }
}

async fn sio_tls_server(pki: &Pki, names: &[&str]) -> ServerHandle {
    let io = Io::new();
    io.ns("/", |s| {
        s.on("chat message", |s, ev| {
            let _ = s.emit_args("chat message", ev.args);
        });
    });
    let ws = WsServer::new(|conn| {
        conn.on_message(|c, m| {
            let _ = c.send(m);
        });
    });
    io.listen_with(
        "127.0.0.1:0",
        Routes::new().tls(pki.server(names)).websocket("/ws", ws),
    )
    .await
    .expect("listen")
}

async fn sio_over_tls(transports: &[TransportType], upgrade: bool) {
    let pki = Pki::new("tether test CA");
    let handle = sio_tls_server(&pki, &["localhost"]).await;
    let port = handle.local_addr().port();
    let client = Client::builder(format!("https://localhost:{port}"))
        .tls(pki.trust_only())
        .transports(transports.iter().copied())
        .upgrade(upgrade)
        .reconnection(no_reconnection())
        .timeout(WAIT)
        .build()
        .expect("build");
    let socket = client.socket("/");
    let (tx, mut rx) = mpsc::unbounded_channel();
    socket.on("chat message", move |_, ev| {
        let _ = tx.send(ev.args.values().to_vec());
    });
    within(WAIT * 2, "socket.connect over TLS", socket.connect())
        .await
        .expect("connect over TLS");
    socket.emit("chat message", "hello over tls").expect("emit");
    let got = within(WAIT, "the chat message back", rx.recv()).await;
    assert_eq!(got, Some(vec![json!("hello over tls")]));
    if upgrade {
        let start = Instant::now();
        while client.transport() != Some(TransportType::Websocket) {
            assert!(start.elapsed() < WAIT, "no upgrade to websocket over TLS");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        socket.emit("chat message", "after upgrade").expect("emit");
        let got = within(WAIT, "the chat message after the upgrade", rx.recv()).await;
        assert_eq!(got, Some(vec![json!("after upgrade")]));
    } else {
        assert_eq!(client.transport(), transports.first().copied());
    }
    // The plain WebSocket route shares the TLS port.
    let mut c = connect(
        &format!("wss://localhost:{port}/ws"),
        tls_config(pki.trust_only()),
    )
    .await
    .expect("wss route beside Socket.IO");
    c.conn.send_text("same port").expect("send");
    assert_eq!(c.next_text().await, "same port");
    client.close();
    handle.shutdown();
}

#[tokio::test]
async fn tls_socketio_polling() {
    sio_over_tls(&[TransportType::Polling], false).await;
}

#[tokio::test]
async fn tls_socketio_websocket() {
    sio_over_tls(&[TransportType::Websocket], false).await;
}

#[tokio::test]
async fn tls_socketio_polling_then_upgrade() {
    sio_over_tls(&[TransportType::Polling, TransportType::Websocket], true).await;
}

#[tokio::test]
async fn tls_socketio_untrusted_and_wrong_name_fail() {
    let pki = Pki::new("tether test CA");
    let handle = sio_tls_server(&pki, &["other.example"]).await;
    let port = handle.local_addr().port();
    for (what, trust, transport) in [
        (
            "wrong name, polling",
            pki.trust_only(),
            TransportType::Polling,
        ),
        (
            "wrong name, websocket",
            pki.trust_only(),
            TransportType::Websocket,
        ),
        (
            "untrusted, polling",
            ClientTls::default(),
            TransportType::Polling,
        ),
        (
            "untrusted, websocket",
            ClientTls::default(),
            TransportType::Websocket,
        ),
    ] {
        let client = Client::builder(format!("https://localhost:{port}"))
            .tls(trust)
            .transports([transport])
            .reconnection(no_reconnection())
            .timeout(Duration::from_secs(3))
            .build()
            .expect("build");
        let socket = client.socket("/");
        let err = within(WAIT, what, socket.connect())
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: connected"));
        eprintln!("socket.io client, {what}: {err}");
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{what}: the error should mention the certificate: {err}"
        );
        client.close();
    }
    // The opt-out connects.
    let client = Client::builder(format!("https://localhost:{port}"))
        .tls(ClientTls::danger_accept_invalid_certs())
        .reconnection(no_reconnection())
        .timeout(WAIT)
        .build()
        .expect("build");
    within(WAIT * 2, "connect", client.socket("/").connect())
        .await
        .expect("danger_accept_invalid_certs connects");
    client.close();
    handle.shutdown();
}

// =======================================================================================
// Hostile bytes on raw TCP
// =======================================================================================

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV2: u8 = 0x20;
const RSV3: u8 = 0x10;
const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The small limits of the hostile-bytes server.
fn small_limits() -> WsConfig {
    WsConfig {
        max_message_size: 64 << 10,
        max_frame_size: 16 << 10,
        ..WsConfig::default()
    }
}

/// A frame header: `first` is FIN | RSV | opcode; the length is encoded as RFC 6455 says
/// (7 bits, 16 or 64), followed by the mask key when `masked`.
fn header(first: u8, len: u64, masked: bool) -> Vec<u8> {
    let m = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&MASK);
    }
    out
}

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(first, payload.len() as u64, true);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// An unmasked frame (illegal from a client).
fn unmasked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(first, payload.len() as u64, false);
    out.extend_from_slice(payload);
    out
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

const UPGRADE_REQUEST: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                               Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                               Sec-WebSocket-Version: 13\r\n\r\n";

/// How a raw connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// A close frame with this code and reason.
    Close(u16, String),
    /// A close frame without a code.
    CloseNoCode,
    /// The TCP connection ended without a close frame.
    Eof,
    /// Nothing within the wait.
    Timeout,
}

/// A raw TCP WebSocket client.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.expect("tcp connect");
        Raw { s, buf: Vec::new() }
    }

    /// Connect and upgrade (the 101 must come).
    async fn open(addr: SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr).await;
        raw.send(UPGRADE_REQUEST.as_bytes()).await.expect("write");
        let head = raw.read_head(WAIT).await.expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes).await?;
        self.s.flush().await
    }

    /// Read more bytes; false at EOF, on an error or at the deadline.
    async fn more(&mut self, deadline: tokio::time::Instant) -> Option<bool> {
        let mut chunk = [0u8; 16 << 10];
        match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Some(false),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(true)
            }
            Err(_) => None,
        }
    }

    /// The HTTP response head, or None if the connection ended (or `d` passed) first.
    async fn read_head(&mut self, d: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return Some(head);
            }
            if self.more(deadline).await != Some(true) {
                return None;
            }
        }
    }

    /// The next frame from the server: (first byte, payload).
    async fn read_frame(&mut self, deadline: tokio::time::Instant) -> Result<(u8, Vec<u8>), End> {
        loop {
            if self.buf.len() >= 2 {
                let first = self.buf[0];
                assert_eq!(self.buf[1] & 0x80, 0, "the server masked a frame");
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if at > 0 && self.buf.len() >= at + len {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Ok((first, payload));
                }
            }
            match self.more(deadline).await {
                Some(true) => {}
                Some(false) => return Err(End::Eof),
                None => return Err(End::Timeout),
            }
        }
    }

    /// Skip data frames until the server's close frame (or the end).
    async fn read_close(&mut self, d: Duration) -> End {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match self.read_frame(deadline).await {
                Ok((first, payload)) if first & 0x0f == CLOSE => {
                    return if payload.len() >= 2 {
                        End::Close(
                            u16::from_be_bytes([payload[0], payload[1]]),
                            String::from_utf8_lossy(&payload[2..]).into_owned(),
                        )
                    } else {
                        End::CloseNoCode
                    };
                }
                Ok(_) => {}
                Err(end) => return end,
            }
        }
    }

    /// Whether the server closes the TCP connection within `d` (reading and dropping
    /// whatever comes first).
    async fn closed_within(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match self.more(deadline).await {
                Some(true) => self.buf.clear(),
                Some(false) => return true,
                None => return false,
            }
        }
    }
}

/// Open a raw connection to a server with small limits, send `bytes`, and return the
/// close code the server answers with; check the code is one of `allowed`, that the
/// server then drops the connection and reports the same code, that resident memory
/// stayed bounded, and that well-behaved clients (one connected before, one after) still
/// get their echo.
async fn hostile(name: &str, bytes: Vec<u8>, allowed: &[u16]) -> u16 {
    let _heavy = HEAVY.lock().await;
    let mut server = TestServer::plain(small_limits(), None).await;
    // A well-behaved client, connected before and still served after.
    let mut bystander = connect(&format!("ws://{}/", server.addr()), WsConfig::default())
        .await
        .expect("connect the well-behaved client");
    let rss_before = rss_kib();
    let mut raw = Raw::open(server.addr()).await;
    let _ = raw.send(&bytes).await;
    let end = raw.read_close(WAIT).await;
    let (code, reason) = match end {
        End::Close(code, reason) => (code, reason),
        other => panic!("{name}: expected a close frame, got {other:?}"),
    };
    eprintln!("{name}: close {code} {reason:?}");
    assert!(
        allowed.contains(&code),
        "{name}: close code {code} ({reason:?}), expected one of {allowed:?}"
    );
    assert!(
        raw.closed_within(WAIT).await,
        "{name}: the server kept the TCP connection open after its close frame"
    );
    let at_server = server.next_close().await;
    assert_eq!(
        at_server.code, code,
        "{name}: server-side CloseInfo {at_server:?}"
    );
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < RSS_BOUND_KIB, "{name}: RSS grew by {grown} KiB");
    bystander.conn.send_text("and me?").expect("send");
    assert_eq!(
        bystander.next_text().await,
        "and me?",
        "{name}: the bystander"
    );
    assert_still_serving(server.addr()).await;
    code
}

#[tokio::test]
async fn hostile_unmasked_client_frame() {
    hostile(
        "unmasked text",
        unmasked_frame(FIN | TEXT, b"hello"),
        &[1002],
    )
    .await;
}

#[tokio::test]
async fn hostile_reserved_bits() {
    for (name, rsv) in [("rsv1", RSV1), ("rsv2", RSV2), ("rsv3", RSV3)] {
        hostile(name, frame(FIN | rsv | TEXT, b"hello"), &[1002]).await;
    }
}

#[tokio::test]
async fn hostile_reserved_opcodes() {
    hostile("opcode 3", frame(FIN | 0x3, b"hello"), &[1002]).await;
    hostile("opcode 0xB", frame(FIN | 0xB, b"hello"), &[1002]).await;
}

#[tokio::test]
async fn hostile_fragmented_control_frame() {
    let mut bytes = frame(PING, b"part"); // FIN clear on a ping
    bytes.extend(frame(FIN | CONT, b"rest"));
    hostile("fragmented ping", bytes, &[1002]).await;
}

#[tokio::test]
async fn hostile_oversized_control_frame() {
    hostile("126-byte ping", frame(FIN | PING, &[b'p'; 126]), &[1002]).await;
    hostile(
        "200-byte close",
        frame(FIN | CLOSE, &close_payload(1000, &[b'r'; 198])),
        &[1002],
    )
    .await;
}

#[tokio::test]
async fn hostile_continuation_errors() {
    hostile("continuation first", frame(FIN | CONT, b"orphan"), &[1002]).await;
    let mut bytes = frame(TEXT, b"start");
    bytes.extend(frame(FIN | BINARY, b"new message mid-fragment"));
    hostile("data frame inside a fragmented message", bytes, &[1002]).await;
}

#[tokio::test]
async fn hostile_invalid_utf8_text() {
    hostile(
        "invalid utf-8",
        frame(FIN | TEXT, b"ok \xff\xfe no"),
        &[1007],
    )
    .await;
    hostile("overlong utf-8", frame(FIN | TEXT, b"\xc0\xaf"), &[1007]).await;
    hostile(
        "utf-16 surrogate",
        frame(FIN | TEXT, b"\xed\xa0\x80"),
        &[1007],
    )
    .await;
}

#[tokio::test]
async fn hostile_invalid_utf8_split_across_fragments() {
    // A valid prefix ending inside a character, then a continuation that breaks it.
    let mut bytes = frame(TEXT, b"euro: \xe2\x82");
    bytes.extend(frame(FIN | CONT, b"\x28 oops"));
    hostile("utf-8 broken across fragments", bytes, &[1007]).await;
    // A character split across fragments correctly is fine (then an invalid one).
    let mut bytes = frame(TEXT, b"euro: \xe2\x82");
    bytes.extend(frame(CONT, b"\xac ok"));
    bytes.extend(frame(FIN | CONT, b" \xff"));
    hostile("valid split then invalid", bytes, &[1007]).await;
}

/// RFC 6455 §8.1: fail fast on invalid UTF-8, before the message completes.
#[tokio::test]
async fn hostile_invalid_utf8_in_first_fragment_fails_fast() {
    // Only the first fragment is sent (no FIN); the server must not wait for the rest.
    hostile("invalid first fragment", frame(TEXT, b"\xff bad"), &[1007]).await;
}

#[tokio::test]
async fn hostile_bad_close_codes() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        hostile(
            &format!("close code {code}"),
            frame(FIN | CLOSE, &close_payload(code, b"")),
            &[1002],
        )
        .await;
    }
    hostile("1-byte close payload", frame(FIN | CLOSE, &[0x03]), &[1002]).await;
    hostile(
        "close reason not utf-8",
        frame(FIN | CLOSE, &close_payload(1000, b"\xff")),
        &[1007, 1002],
    )
    .await;
}

/// Valid close codes are echoed (3000–4999 application codes, 1000–1003, 1007–1014).
#[tokio::test]
async fn valid_close_codes_are_echoed() {
    let mut server = TestServer::plain(small_limits(), None).await;
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
    ] {
        let mut raw = Raw::open(server.addr()).await;
        raw.send(&frame(FIN | CLOSE, &close_payload(code, b"why")))
            .await
            .expect("write");
        assert_eq!(
            raw.read_close(WAIT).await,
            End::Close(code, "why".into()),
            "close code {code}"
        );
        let info = server.next_close().await;
        assert_eq!(
            info,
            CloseInfo {
                code,
                reason: "why".into(),
                by_peer: true
            }
        );
    }
    // An empty close frame is answered, and reported as 1005.
    let mut raw = Raw::open(server.addr()).await;
    raw.send(&frame(FIN | CLOSE, b"")).await.expect("write");
    assert!(matches!(
        raw.read_close(WAIT).await,
        End::CloseNoCode | End::Close(1000, _)
    ));
    assert_eq!(server.next_close().await.code, 1005);
}

#[tokio::test]
async fn hostile_declared_length_2_pow_63() {
    // The most significant bit of a 64-bit length must be 0 (RFC 6455 §5.2).
    let code = hostile(
        "length 2^63",
        header(FIN | BINARY, 1 << 63, true),
        &[1002, 1009],
    )
    .await;
    eprintln!("length 2^63 answered with {code}");
}

#[tokio::test]
async fn hostile_declared_length_2_pow_32_plus_5() {
    let code = hostile(
        "length 2^32+5",
        header(FIN | BINARY, (1 << 32) + 5, true),
        &[1009, 1002],
    )
    .await;
    eprintln!("length 2^32+5 answered with {code}");
}

#[tokio::test]
async fn hostile_frame_and_message_over_the_limits() {
    // One frame over max_frame_size (16 KiB), bytes included.
    hostile(
        "20 KiB frame",
        frame(FIN | BINARY, &vec![7u8; 20 << 10]),
        &[1009],
    )
    .await;
    // Frames under the frame limit adding up over max_message_size (64 KiB).
    let mut bytes = frame(BINARY, &vec![1u8; 15 << 10]);
    for _ in 0..5 {
        bytes.extend(frame(CONT, &vec![1u8; 15 << 10]));
    }
    bytes.extend(frame(FIN | CONT, b"end"));
    hostile("90 KiB in fragments", bytes, &[1009]).await;
}

#[tokio::test]
async fn hostile_junk_after_handshake() {
    // 'G' 'E' 'T' ...: FIN clear, RSV1 set, opcode 7, unmasked, length 69.
    let junk = "GET /again HTTP/1.1\r\nHost: nowhere\r\n\r\n".repeat(8);
    hostile("junk", junk.into_bytes(), &[1002]).await;
}

/// A frame header declaring a large length (just under the frame limit), then nothing:
/// the connection must be closed within a bound or kept waiting without holding memory.
#[tokio::test]
async fn hostile_large_declared_length_then_stall() {
    let _heavy = HEAVY.lock().await;
    let server = TestServer::plain(small_limits(), None).await;
    let rss_before = rss_kib();
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut raw = Raw::open(server.addr()).await;
        raw.send(&header(FIN | BINARY, (16 << 10) - 1, true))
            .await
            .expect("write");
        raw.send(b"a few bytes").await.expect("write");
        stalled.push(raw);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!("200 stalled frames of 16 KiB declared: RSS grew by {grown} KiB");
    assert!(grown < RSS_BOUND_KIB, "RSS grew by {grown} KiB");
    // tether sets no read timeout on an open WebSocket (without keepalive): the
    // connections stay open, waiting for the rest of the frame.
    let open = {
        let mut n = 0;
        for raw in &mut stalled {
            if !raw.closed_within(Duration::from_millis(5)).await {
                n += 1;
            }
        }
        n
    };
    eprintln!("after 300 ms, {open} of 200 stalled connections are still open");
    assert_still_serving(server.addr()).await;
}

/// With keepalive, a stalled frame does not keep the connection forever.
#[tokio::test]
async fn stalled_frame_is_dropped_by_keepalive() {
    let config = WsConfig {
        keepalive: Some(Duration::from_millis(100)),
        ..small_limits()
    };
    let mut server = TestServer::plain(config, None).await;
    let mut raw = Raw::open(server.addr()).await;
    raw.send(&header(FIN | BINARY, 1000, true))
        .await
        .expect("write");
    raw.send(b"partial").await.expect("write");
    let start = Instant::now();
    // The server pings meanwhile; we never answer, the frame never completes.
    assert!(
        raw.closed_within(Duration::from_secs(3)).await,
        "a stalled connection outlived two keepalive intervals by far"
    );
    eprintln!(
        "stalled frame dropped by keepalive after {:?}",
        start.elapsed()
    );
    let info = server.next_close().await;
    assert_eq!(info.code, 1006);
    assert_eq!(info.reason, "keepalive timeout");
}

/// The issue asks for no allocation from a declared length before the bytes arrive.
/// With the default 16 MiB limit, 32 connections each declaring a 16 MiB frame and sending
/// one byte of it must not make the server reserve the declared lengths (tungstenite did,
/// ~512 MiB of address space); tether's codec grows a message only as bytes arrive.
#[tokio::test]
async fn declared_length_reserves_no_memory() {
    let _heavy = HEAVY.lock().await;
    let server = TestServer::plain(WsConfig::default(), None).await;
    let data_before = proc_status_kib("VmData");
    let rss_before = rss_kib();
    let mut stalled = Vec::new();
    for _ in 0..32 {
        let mut raw = Raw::open(server.addr()).await;
        raw.send(&header(FIN | BINARY, (16 << 20) - 1, true))
            .await
            .expect("write");
        raw.send(b"x").await.expect("write");
        stalled.push(raw);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data = proc_status_kib("VmData").saturating_sub(data_before);
    let rss = rss_kib().saturating_sub(rss_before);
    eprintln!("32 stalled 16 MiB frame headers: VmData +{data} KiB, RSS +{rss} KiB");
    assert!(data < 128 * 1024, "VmData grew by {data} KiB");
    assert!(rss < RSS_BOUND_KIB, "RSS grew by {rss} KiB");
}

/// Endless empty continuation frames: the fragment limit (`WsConfig::max_fragments`,
/// 1 000 by default) closes the connection with 1009; memory stays bounded.
#[tokio::test]
async fn hostile_100k_empty_continuation_frames() {
    let _heavy = HEAVY.lock().await;
    let server = TestServer::plain(small_limits(), None).await;
    let rss_before = rss_kib();
    let mut raw = Raw::open(server.addr()).await;
    let start = Instant::now();
    raw.send(&frame(TEXT, b"a")).await.expect("write");
    let empty = frame(CONT, b"");
    let batch: Vec<u8> = empty
        .iter()
        .copied()
        .cycle()
        .take(empty.len() * 10_000)
        .collect();
    for _ in 0..10 {
        if raw.send(&batch).await.is_err() {
            break;
        }
    }
    let _ = raw.send(&frame(FIN | CONT, b"b")).await;
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    let outcome = match raw.read_frame(deadline).await {
        Ok((first, payload)) if first & 0x0f == CLOSE => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            assert_eq!(code, 1009, "closed with {code}");
            format!("closed with {code}")
        }
        other => panic!("unexpected answer to 100k continuation frames: {other:?}"),
    };
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!(
        "100k empty continuation frames: {outcome} in {:?}; RSS grew by {grown} KiB",
        start.elapsed()
    );
    assert!(grown < RSS_BOUND_KIB, "RSS grew by {grown} KiB");
    assert_still_serving(server.addr()).await;
}

/// The server for the HTTP-level cases: the endpoint beside Socket.IO, with a short
/// `header_read_timeout` (a `WsServer::listen` server has the fixed default, 10 s).
async fn http_limits_server() -> TestServer {
    TestServer::beside_socketio(
        small_limits(),
        EngineConfig {
            header_read_timeout: Duration::from_secs(1),
            ..EngineConfig::default()
        },
    )
    .await
}

#[tokio::test]
async fn request_head_trickled_byte_by_byte() {
    let server = http_limits_server().await;
    // Fast enough (one write per byte, 1 ms apart, ~0.2 s in all): answered with 101.
    let mut raw = Raw::connect(server.addr()).await;
    let start = Instant::now();
    for b in UPGRADE_REQUEST.as_bytes() {
        raw.send(&[*b]).await.expect("write");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!(
        "trickled {} bytes in {:?}",
        UPGRADE_REQUEST.len(),
        start.elapsed()
    );
    let head = raw
        .read_head(WAIT)
        .await
        .expect("an answer to the trickled head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    raw.send(&frame(FIN | TEXT, b"slow but fine"))
        .await
        .expect("write");
    let (first, payload) = raw
        .read_frame(tokio::time::Instant::now() + WAIT)
        .await
        .expect("the echo");
    assert_eq!(
        (first, payload.as_slice()),
        (FIN | TEXT, &b"slow but fine"[..])
    );

    // Too slow (one byte every 150 ms): cut off at header_read_timeout (1 s).
    let mut raw = Raw::connect(server.addr()).await;
    let start = Instant::now();
    let mut cut = false;
    for b in UPGRADE_REQUEST.as_bytes() {
        if raw.send(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        if raw.closed_within(Duration::from_millis(150)).await {
            cut = true;
            break;
        }
    }
    let took = start.elapsed();
    assert!(
        cut,
        "a request head trickled over {took:?} was never cut off"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "cut off after {took:?}, expected about 1 s"
    );
    eprintln!("slow trickle cut off after {took:?}");
    assert_still_serving(server.addr()).await;
}

#[tokio::test]
async fn handshake_never_finished_is_closed_after_header_read_timeout() {
    let server = http_limits_server().await;
    for (what, bytes) in [
        ("nothing sent", &b""[..]),
        (
            "half a request head",
            &b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: web"[..],
        ),
    ] {
        let mut raw = Raw::connect(server.addr()).await;
        raw.send(bytes).await.expect("write");
        let start = Instant::now();
        let head = raw.read_head(WAIT).await;
        let took = start.elapsed();
        eprintln!("{what}: after {took:?}, answer {head:?}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{what}: closed after {took:?}, expected about 1 s"
        );
        if let Some(head) = head {
            assert!(head.starts_with("HTTP/1.1 408"), "{what}: {head}");
        }
    }
    assert_still_serving(server.addr()).await;
}

#[tokio::test]
async fn thousands_of_headers_get_431() {
    // WsServer::listen, with the default limits (100 headers, 16 KiB of head). The upgrade
    // request has 5 headers of its own.
    let server = TestServer::plain(small_limits(), None).await;
    let base = UPGRADE_REQUEST.trim_end_matches("\r\n");
    let headers = |n: usize| -> String { (0..n).map(|i| format!("X-H{i}: v\r\n")).collect() };
    for (what, extra) in [
        ("101 headers in all", headers(96)),
        ("3000 headers", headers(3000)),
        (
            "a 20 KiB header",
            format!("X-Big: {}\r\n", "b".repeat(20 << 10)),
        ),
    ] {
        let mut raw = Raw::connect(server.addr()).await;
        let request = format!("{base}\r\n{extra}\r\n");
        let _ = raw.send(request.as_bytes()).await;
        let head = raw
            .read_head(WAIT)
            .await
            .unwrap_or_else(|| panic!("{what}: no HTTP answer (silent drop)"));
        assert!(head.starts_with("HTTP/1.1 431"), "{what}: {head}");
    }
    // At the limit (100 headers in all): upgraded.
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(format!("{base}\r\n{}\r\n", headers(95)).as_bytes())
        .await
        .expect("write");
    let head = raw.read_head(WAIT).await.expect("an answer");
    assert!(head.starts_with("HTTP/1.1 101"), "100 headers: {head}");
    assert_still_serving(server.addr()).await;
}

#[tokio::test]
async fn bad_upgrade_requests_get_http_errors() {
    let server = TestServer::plain(small_limits(), None).await;
    for (what, request, status) in [
        (
            "plain GET",
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
            "400",
        ),
        (
            "version 8",
            UPGRADE_REQUEST.replace("Version: 13", "Version: 8"),
            "400",
        ),
        (
            "no key",
            UPGRADE_REQUEST.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            "400",
        ),
        ("POST", UPGRADE_REQUEST.replace("GET", "POST"), "400"),
        (
            "unknown path",
            UPGRADE_REQUEST.replace("GET /", "GET /nope"),
            "404",
        ),
        (
            "garbage",
            "\x16\x03\x01 not http at all\r\n\r\n".to_owned(),
            "400",
        ),
    ] {
        let mut raw = Raw::connect(server.addr()).await;
        let _ = raw.send(request.as_bytes()).await;
        let head = raw
            .read_head(WAIT)
            .await
            .unwrap_or_else(|| panic!("{what}: no HTTP answer"));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: expected {status}, got {head}"
        );
    }
    assert_still_serving(server.addr()).await;
}

/// The 101 answer is RFC-conform (accept key of RFC 6455's example).
#[tokio::test]
async fn upgrade_answer_has_the_rfc_accept_key() {
    let server = TestServer::plain(small_limits(), None).await;
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(UPGRADE_REQUEST.as_bytes()).await.expect("write");
    let head = raw.read_head(WAIT).await.expect("answer").to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert!(head.contains("upgrade: websocket"), "{head}");
}

// =======================================================================================
// The bounded send queue
// =======================================================================================

#[tokio::test]
async fn send_queue_full_is_an_error_and_high_water_fires_once() {
    let _heavy = HEAVY.lock().await;
    let config = WsConfig {
        send_queue: 64,
        high_water: 48,
        ..WsConfig::default()
    };
    let fired = Arc::new(Mutex::new(Vec::new()));
    let (conn_tx, mut conn_rx) = mpsc::unbounded_channel();
    let f = fired.clone();
    let ws = WsServer::with_config(config, move |conn| {
        let f = f.clone();
        conn.on_high_water(move |_, n| lock(&f).push(n));
        let _ = conn_tx.send(conn);
    });
    let handle = ws.listen("127.0.0.1:0").await.expect("listen");

    // A client with a small receive window that stops reading after the handshake.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let s = socket.connect(handle.local_addr()).await.expect("connect");
    let mut raw = Raw { s, buf: Vec::new() };
    raw.send(UPGRADE_REQUEST.as_bytes()).await.expect("write");
    let head = raw.read_head(WAIT).await.expect("answer");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let conn = within(WAIT, "the server-side connection", conn_rx.recv())
        .await
        .expect("conn");

    let chunk = "q".repeat(64 << 10);
    let start = Instant::now();
    let mut sent = 0usize;
    let err = loop {
        match conn.send_text(&chunk) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "send_text never failed ({sent} messages of 64 KiB queued or sent)"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    eprintln!(
        "QueueFull after {sent} messages of 64 KiB in {:?}; high water calls {:?}",
        start.elapsed(),
        lock(&fired)
    );
    assert_eq!(err, WsSendError::QueueFull);
    assert!(
        conn.queued() >= 48 && conn.queued() <= 65,
        "queued {}",
        conn.queued()
    );
    let calls = lock(&fired).clone();
    assert_eq!(calls.len(), 1, "high-water calls: {calls:?}");
    assert!(calls[0] >= 48, "high-water call with {}", calls[0]);
    assert_eq!(conn.send_binary(vec![1u8]), Err(WsSendError::QueueFull));

    // Reading again drains everything, in order, intact.
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    for i in 0..sent {
        let (first, payload) = raw
            .read_frame(deadline)
            .await
            .unwrap_or_else(|e| panic!("message {i} of {sent}: {e:?}"));
        assert_eq!(first, FIN | TEXT);
        assert_eq!(payload.len(), 64 << 10);
    }
    assert_eq!(conn.queued(), 0);
    conn.send_text("room again")
        .expect("the queue has room again");
    let (_, payload) = raw.read_frame(deadline).await.expect("frame");
    assert_eq!(payload, b"room again");

    // Full again: a close still gets through (the queue keeps a slot for it), after the
    // messages queued before it.
    let mut queued = 0usize;
    while conn.send_text("x").is_ok() {
        queued += 1;
    }
    assert!(queued >= 1);
    conn.close(4000, "full but closing");
    for i in 0..queued {
        let (first, payload) = raw
            .read_frame(deadline)
            .await
            .unwrap_or_else(|e| panic!("message {i} of {queued}: {e:?}"));
        assert_eq!((first, payload.as_slice()), (FIN | TEXT, &b"x"[..]));
    }
    let (first, payload) = raw.read_frame(deadline).await.expect("close frame");
    assert_eq!(first, FIN | CLOSE, "a close frame");
    assert_eq!(&payload[..2], &4000u16.to_be_bytes());
    assert_eq!(&payload[2..], b"full but closing");
    handle.shutdown();
}

/// `WsConn` says every method may be called from any thread. `push` enqueues the message
/// (`try_send`) before counting it (`queued.fetch_add(1)`), so the connection task on
/// another thread can take it and `fetch_sub(1)` first: the counter wraps to
/// `usize::MAX`, and the `+ 1` after `fetch_add` overflows (a panic in debug builds; a
/// transiently huge `queued()` in release builds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_from_other_threads_does_not_panic() {
    let server = TestServer::plain(WsConfig::default(), None).await;
    let c = connect(&format!("ws://{}/", server.addr()), WsConfig::default())
        .await
        .expect("connect");
    // Sparse sends: the queue is empty (counter 0) each time, the writer idle.
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let conn = c.conn.clone();
            std::thread::spawn(move || {
                for _ in 0..3_000 {
                    let _ = conn.send_text("x");
                    std::thread::sleep(Duration::from_micros(50));
                }
            })
        })
        .collect();
    let panicked = senders
        .into_iter()
        .map(|t| t.join())
        .filter(Result::is_err)
        .count();
    assert_eq!(panicked, 0, "{panicked} of 2 sending threads panicked");
    assert!(c.conn.queued() <= 1025, "queued() = {}", c.conn.queued());
}
