//! End-to-end tests of the Socket.IO client (`tether::sio::client`).
//!
//! The client talks to three independent servers implementing the same contract
//! (`tests/interop/PROTOCOL.md`): the Node `socket.io@4` reference server, tether's own
//! server (built in-process, same handlers as `examples/conformance_server.rs`) and a
//! python-socketio server (`tests/interop/python_server.py`); and to hostile fake servers
//! written here by hand over raw TCP.
//!
//! Node (with `tests/interop/node_modules`) and the Python venv `.venv` are required:
//! `bash scripts/test.sh` installs them. Every wait is bounded; child processes are killed
//! when their guard drops.

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tether::engine::TransportType;
use tether::sio::client::{
    Client, ClientDisconnectReason, ClientEmitError, ClientError, ClientSocket, ConnectErrorInfo,
    Reconnection,
};
use tether::sio::{AckError, AckSendError, Args, ConnectError, Io, SocketRef};
use tether::{Cors, EngineConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The bound on any single wait.
const WAIT: Duration = Duration::from_secs(5);
/// How to get node, its modules and the Python venv.
const SETUP_HINT: &str = "run `bash scripts/test.sh` once: it installs node's modules \
                          (tests/interop/node_modules) and the Python venv (.venv)";

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// Await `f`, failing the test if it takes longer than `d`.
async fn within<T>(d: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {d:?}: {what}"),
    }
}

/// Poll `cond` every 10 ms for up to `d`.
async fn eventually(d: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + d;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next value of `rx`, at most `WAIT` away.
async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    match timeout(WAIT, rx.recv()).await {
        Ok(Some(v)) => v,
        Ok(None) => panic!("{what}: channel closed"),
        Err(_) => panic!("{what}: nothing within {WAIT:?}"),
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Every occurrence of one event on one client socket, in arrival order.
struct Inbox {
    what: String,
    rx: mpsc::UnboundedReceiver<Args>,
    all: Arc<Mutex<Vec<Args>>>,
}

fn inbox(socket: &ClientSocket, event: &str) -> Inbox {
    let (tx, rx) = mpsc::unbounded_channel();
    let all = Arc::new(Mutex::new(Vec::new()));
    let log = all.clone();
    socket.on(event, move |_, ev| {
        lock(&log).push(ev.args.clone());
        let _ = tx.send(ev.args);
    });
    Inbox {
        what: format!("event {event:?} on {}", socket.nsp().as_str()),
        rx,
        all,
    }
}

impl Inbox {
    async fn next(&mut self) -> Args {
        recv(&mut self.rx, &self.what).await
    }

    /// Whether any occurrence so far had exactly these JSON arguments.
    fn saw(&self, values: &[Value]) -> bool {
        lock(&self.all).iter().any(|a| a.values() == values)
    }
}

/// Forward a socket's disconnect reasons into a channel.
fn disconnects(socket: &ClientSocket) -> mpsc::UnboundedReceiver<ClientDisconnectReason> {
    let (tx, rx) = mpsc::unbounded_channel();
    socket.on_disconnect(move |_, r| {
        let _ = tx.send(r.clone());
    });
    rx
}

/// Forward a socket's connect errors into a channel.
fn connect_errors(socket: &ClientSocket) -> mpsc::UnboundedReceiver<ConnectErrorInfo> {
    let (tx, rx) = mpsc::unbounded_channel();
    socket.on_connect_error(move |_, info| {
        let _ = tx.send(info.clone());
    });
    rx
}

fn count_connects(socket: &ClientSocket) -> Arc<AtomicUsize> {
    let c = counter();
    let c2 = c.clone();
    socket.on_connect(move |_| {
        c2.fetch_add(1, SeqCst);
    });
    c
}

fn fast_reconnection() -> Reconnection {
    Reconnection {
        delay: Duration::from_millis(100),
        delay_max: Duration::from_millis(500),
        ..Reconnection::default()
    }
}

fn no_reconnection() -> Reconnection {
    Reconnection {
        enabled: false,
        ..Reconnection::default()
    }
}

// ---------------------------------------------------------------------------------------
// Panics outside the test code (in the client's tasks) do not fail a test by themselves:
// a hook records them and the tests check the record.
// ---------------------------------------------------------------------------------------

static FOREIGN_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn install_panic_probe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let here = info
                .location()
                .is_some_and(|l| l.file().ends_with("tests/client.rs"));
            if !here {
                lock(&FOREIGN_PANICS).push(info.to_string());
            }
            default(info);
        }));
    });
}

fn assert_no_foreign_panics() {
    let p = lock(&FOREIGN_PANICS);
    assert!(p.is_empty(), "panics outside the test code: {p:#?}");
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn find_node() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("node"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`node` is not on PATH: {SETUP_HINT}"))
}

/// A server child process, killed (SIGKILL) and reaped when dropped.
struct ServerProcess {
    name: String,
    child: Child,
    url: String,
    port: u16,
    output: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    async fn start(name: &str, program: &Path, args: &[String]) -> ServerProcess {
        let child = Command::new(program)
            .args(args)
            .current_dir(interop_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({program:?}): {e}; {SETUP_HINT}"));
        let mut server = ServerProcess {
            name: name.to_owned(),
            child,
            url: String::new(),
            port: 0,
            output: Arc::new(Mutex::new(Vec::new())),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        if let Some(out) = server.child.stdout.take() {
            let output = server.output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(url) = line.trim().strip_prefix("listening on ") {
                        let _ = tx.send(url.to_owned());
                    }
                    lock(&output).push(line);
                }
            });
        }
        if let Some(err) = server.child.stderr.take() {
            let output = server.output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    lock(&output).push(line);
                }
            });
        }
        match timeout(Duration::from_secs(20), rx.recv()).await {
            Ok(Some(url)) => {
                server.port = url
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("{name}: bad listening line {url:?}"));
                server.url = url;
            }
            _ => panic!(
                "{name} did not print its listening line; output:\n{}",
                server.output_text()
            ),
        }
        server
    }

    fn output_text(&self) -> String {
        lock(&self.output).join("\n")
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let status = self.child.try_wait().ok().flatten();
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "{} ({}) output:\n{}",
                self.name,
                status.map_or("running".to_owned(), |s| s.to_string()),
                self.output_text()
            );
        }
    }
}

/// `node tests/interop/reference_server.js --port PORT` (0: any free port).
async fn node_server(port: u16) -> ServerProcess {
    let node = find_node();
    let dir = interop_dir();
    assert!(
        dir.join("node_modules/socket.io").is_dir(),
        "tests/interop/node_modules/socket.io is missing: {SETUP_HINT}"
    );
    let script = dir.join("reference_server.js");
    ServerProcess::start(
        "node reference server",
        &node,
        &[
            script.display().to_string(),
            "--port".into(),
            port.to_string(),
        ],
    )
    .await
}

/// `.venv/bin/python tests/interop/python_server.py --port 0`.
async fn python_server() -> ServerProcess {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(python.is_file(), "{python:?} is missing: {SETUP_HINT}");
    let script = interop_dir().join("python_server.py");
    ServerProcess::start(
        "python-socketio server",
        &python,
        &[script.display().to_string(), "--port".into(), "0".into()],
    )
    .await
}

/// tether's server, in-process, behaving like `examples/conformance_server.rs`.
struct TetherServer {
    url: String,
    addr: SocketAddr,
    handle: ServerHandle,
    _io: Io,
}

impl Drop for TetherServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

async fn tether_server() -> TetherServer {
    let io = Io::builder()
        .engine_config(EngineConfig {
            path: "/socket.io/".to_owned(),
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            max_payload: 1_000_000,
            cors: Some(Cors::any()),
            ..EngineConfig::default()
        })
        .connect_timeout(Duration::from_millis(1000))
        .build();
    io.of("/").on_connect(on_connection);
    io.of("/custom").on_connect(on_connection);
    let refuse = io.of("/refuse");
    refuse.use_middleware(|ctx| {
        if ctx.handshake.auth.get("token").and_then(Value::as_str) == Some("good") {
            Ok(())
        } else {
            Err(ConnectError::new("not authorized").with_data(json!({ "reason": "bad token" })))
        }
    });
    refuse.on_connect(on_connection);
    let handle = io
        .listen("127.0.0.1:0")
        .await
        .expect("tether server listens");
    let addr = handle.local_addr();
    TetherServer {
        url: format!("http://{addr}"),
        addr,
        handle,
        _io: io,
    }
}

/// The PROTOCOL.md handlers this file uses (as in `examples/conformance_server.rs`).
fn on_connection(socket: SocketRef) {
    let _ = socket.emit("auth", &socket.handshake().auth);
    socket.on("message", |s, ev| {
        let _ = s.emit_args("message-back", ev.args);
    });
    socket.on("message-with-ack", |_, ev| {
        if let Some(ack) = ev.ack {
            let _ = ack.send(ev.args);
        }
    });
    socket.on("binary-echo", |s, ev| {
        let _ = s.emit_args("binary-back", ev.args);
    });
    socket.on("request-ack", |s, ev| {
        let ms = ev.args.get::<u64>(0).unwrap_or(1000);
        let s2 = s.clone();
        s.emit_with_ack_cb(
            "need-ack",
            Args::from(vec![json!("please")]),
            Duration::from_millis(ms),
            move |r| {
                let result = match r {
                    Ok(args) => json!({ "ok": true, "args": args.values() }),
                    Err(_) => json!({ "ok": false, "error": "timeout" }),
                };
                let _ = s2.emit("ack-result", &result);
            },
        );
    });
    socket.on("disconnect-me", |s, _| s.disconnect());
}

// ---------------------------------------------------------------------------------------
// The core scenarios, against any server implementing PROTOCOL.md
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// WebSocket only.
    Websocket,
    /// HTTP long-polling only.
    Polling,
    /// Polling, then the upgrade to WebSocket.
    Upgrade,
}

impl Mode {
    fn transports(self) -> Vec<TransportType> {
        match self {
            Mode::Websocket => vec![TransportType::Websocket],
            Mode::Polling => vec![TransportType::Polling],
            Mode::Upgrade => vec![TransportType::Polling, TransportType::Websocket],
        }
    }
}

/// What differs between the servers.
struct Flavor {
    server: &'static str,
    /// The `connect_error` message for an unknown namespace.
    invalid_namespace: &'static str,
    /// The server acknowledges every event that asked for an ack, even when its handler
    /// does not answer (python-socketio acks with the handler's return value, `[]`).
    acks_every_event: bool,
}

const NODE: Flavor = Flavor {
    server: "node reference server",
    invalid_namespace: "Invalid namespace",
    acks_every_event: false,
};

const TETHER: Flavor = Flavor {
    server: "tether server",
    invalid_namespace: "Invalid namespace",
    acks_every_event: false,
};

const PYTHON: Flavor = Flavor {
    server: "python-socketio server",
    invalid_namespace: "Unable to connect",
    acks_every_event: true,
};

async fn core_scenarios(url: &str, mode: Mode, flavor: &Flavor) {
    install_panic_probe();
    let ctx = format!("{} over {mode:?}", flavor.server);
    let long = WAIT + Duration::from_secs(2);
    let client = Client::builder(url)
        .transports(mode.transports())
        .timeout(WAIT)
        .reconnection(fast_reconnection())
        .auth(json!({ "token": "main" }))
        .build()
        .unwrap_or_else(|e| panic!("{ctx}: build: {e}"));
    let reconnect_attempts = counter();
    {
        let c = reconnect_attempts.clone();
        client.on_reconnect_attempt(move |_| {
            c.fetch_add(1, SeqCst);
        });
    }

    // ---- "/": listeners first.
    let main = client.socket("/");
    let mut main_auth = inbox(&main, "auth");
    let mut main_back = inbox(&main, "message-back");
    let mut main_bin = inbox(&main, "binary-back");
    let mut main_ack_result = inbox(&main, "ack-result");
    let main_connects = count_connects(&main);
    let incoming = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let log = incoming.clone();
        main.on_any(move |_, ev| lock(&log).push(ev.name.clone()));
    }
    let outgoing = Arc::new(Mutex::new(Vec::<(String, Vec<Value>)>::new()));
    {
        let log = outgoing.clone();
        main.on_any_outgoing(move |_, name, args| {
            lock(&log).push((name.to_owned(), args.values().to_vec()))
        });
    }
    // The server's ack request is answered late, from another OS thread.
    let (need_ack_tx, mut need_ack_rx) = mpsc::unbounded_channel::<(Vec<Value>, bool)>();
    let (late_tx, mut late_rx) =
        mpsc::unbounded_channel::<(Result<(), String>, Result<(), AckSendError>)>();
    main.on("need-ack", move |_, ev| {
        let _ = need_ack_tx.send((ev.args.values().to_vec(), ev.ack.is_some()));
        if let Some(ack) = ev.ack {
            let late_tx = late_tx.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                let first = ack
                    .send(vec![json!("late"), json!(42)])
                    .map_err(|e| e.to_string());
                let second = ack.send(vec![json!("twice")]);
                let _ = late_tx.send((first, second));
            });
        }
    });

    // ---- Offline: a volatile emit is dropped, a normal one waits in the buffer.
    main.emit_volatile("message", vec![json!("volatile-while-disconnected")])
        .unwrap_or_else(|e| panic!("{ctx}: emit_volatile offline: {e}"));
    assert_eq!(main.buffered(), 0, "{ctx}: a volatile emit is not buffered");
    main.emit_args("message", vec![json!("buffered-before-connect")])
        .unwrap_or_else(|e| panic!("{ctx}: emit offline: {e}"));
    assert_eq!(main.buffered(), 1, "{ctx}: an offline emit is buffered");

    // ---- Reserved event names are refused.
    for name in ["connect", "connect_error", "disconnect"] {
        match main.emit(name, &1) {
            Err(ClientEmitError::Reserved(n)) => assert_eq!(n, name),
            other => panic!("{ctx}: emit({name:?}) should be Reserved, got {other:?}"),
        }
    }
    match main.emit_with_ack_cb("disconnecting", Args::new(), WAIT, |_| {}) {
        Err(ClientEmitError::Reserved(n)) => assert_eq!(n, "disconnecting"),
        other => panic!("{ctx}: emit_with_ack_cb(disconnecting) should be Reserved: {other:?}"),
    }
    assert_eq!(main.buffered(), 1, "{ctx}: a reserved emit is not buffered");

    // ---- Connect "/".
    within(long, "connect /", main.connect())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: connect /: {e}"));
    assert!(main.connected(), "{ctx}");
    let main_id = main.id().expect("socket id while connected");
    let eid = client.engine_id().expect("engine id while connected");
    assert_eq!(
        main_auth.next().await.values(),
        vec![json!({ "token": "main" })],
        "{ctx}: auth echo on /"
    );
    assert_eq!(
        main_back.next().await.values(),
        vec![json!("buffered-before-connect")],
        "{ctx}: the offline buffer is flushed on connect"
    );
    assert_eq!(main.buffered(), 0, "{ctx}");
    match mode {
        Mode::Websocket => assert_eq!(client.transport(), Some(TransportType::Websocket)),
        Mode::Polling => assert_eq!(client.transport(), Some(TransportType::Polling)),
        Mode::Upgrade => {}
    }

    // ---- "/custom", multiplexed on the same connection.
    let custom = client.socket("/custom");
    custom.set_auth(json!({ "token": "custom", "n": 2 }));
    let mut custom_auth = inbox(&custom, "auth");
    let mut custom_back = inbox(&custom, "message-back");
    let custom_connects = count_connects(&custom);
    let mut custom_disc = disconnects(&custom);
    within(long, "connect /custom", custom.connect())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: connect /custom: {e}"));
    assert_eq!(
        client.engine_id(),
        Some(eid.clone()),
        "{ctx}: one Engine.IO connection for both namespaces"
    );
    assert_eq!(
        custom_auth.next().await.values(),
        vec![json!({ "token": "custom", "n": 2 })],
        "{ctx}: auth echo on /custom"
    );
    let custom_id = custom.id().expect("/custom id");
    assert_ne!(
        custom_id, main_id,
        "{ctx}: each namespace has its own socket id"
    );
    if mode == Mode::Upgrade {
        assert!(
            eventually(WAIT, || client.transport()
                == Some(TransportType::Websocket))
            .await,
            "{ctx}: no upgrade to websocket ({:?})",
            client.transport()
        );
        assert_eq!(
            client.engine_id(),
            Some(eid.clone()),
            "{ctx}: same session after upgrade"
        );
    }

    // ---- Unknown namespace.
    let nope = client.socket("/nope");
    let mut nope_errors = connect_errors(&nope);
    match within(long, "connect /nope", nope.connect()).await {
        Err(ClientError::Refused { message, data }) => {
            assert_eq!(message, flavor.invalid_namespace, "{ctx}");
            assert_eq!(data, None, "{ctx}");
        }
        other => panic!("{ctx}: /nope should be refused, got {other:?}"),
    }
    let info = recv(&mut nope_errors, "connect_error on /nope").await;
    assert_eq!(info.message, flavor.invalid_namespace, "{ctx}");
    assert!(!nope.connected(), "{ctx}");

    // ---- "/refuse" with a bad token: refused with the middleware's data, not retried.
    let refuse = client.socket("/refuse");
    let refuse_auth_calls = counter();
    {
        let c = refuse_auth_calls.clone();
        refuse.set_auth_fn(move || {
            c.fetch_add(1, SeqCst);
            json!({ "token": "bad" })
        });
    }
    let mut refuse_errors = connect_errors(&refuse);
    match within(long, "connect /refuse", refuse.connect()).await {
        Err(ClientError::Refused { message, data }) => {
            assert_eq!(message, "not authorized", "{ctx}");
            assert_eq!(data, Some(json!({ "reason": "bad token" })), "{ctx}");
        }
        other => panic!("{ctx}: /refuse with a bad token should be refused, got {other:?}"),
    }
    let refused_at = Instant::now();
    assert_eq!(
        recv(&mut refuse_errors, "connect_error on /refuse").await,
        ConnectErrorInfo {
            message: "not authorized".into(),
            data: Some(json!({ "reason": "bad token" })),
        },
        "{ctx}"
    );

    // ---- message -> message-back with JSON arguments, per namespace.
    let sent = vec![
        json!("hello"),
        json!(1),
        json!(-2.5),
        json!(null),
        json!(true),
        json!({ "a": [1, 2, { "b": null }], "unicode": "héllo ✓ 😀" }),
        json!([]),
    ];
    main.emit_args("message", sent.clone())
        .unwrap_or_else(|e| panic!("{ctx}: emit: {e}"));
    assert_eq!(main_back.next().await.values(), sent, "{ctx}: message-back");
    let sent_custom = vec![
        json!("custom"),
        json!({ "nested": { "deep": [1, "two", 3.5] } }),
    ];
    custom
        .emit_args("message", sent_custom.clone())
        .unwrap_or_else(|e| panic!("{ctx}: emit on /custom: {e}"));
    assert_eq!(
        custom_back.next().await.values(),
        sent_custom,
        "{ctx}: message-back on /custom"
    );
    main.emit("message", &json!({ "single": "argument" }))
        .unwrap_or_else(|e| panic!("{ctx}: emit: {e}"));
    assert_eq!(
        main_back.next().await.values(),
        vec![json!({ "single": "argument" })],
        "{ctx}"
    );
    main.emit_args("message", Args::new())
        .unwrap_or_else(|e| panic!("{ctx}: emit without arguments: {e}"));
    assert!(main_back.next().await.is_empty(), "{ctx}: no arguments");

    // ---- Binary both ways.
    let bytes: Vec<u8> = (0..=255).collect();
    main.emit_args(
        "message",
        Args::new().value(json!("bin")).bin(bytes.clone()),
    )
    .unwrap_or_else(|e| panic!("{ctx}: emit binary: {e}"));
    let got = main_back.next().await;
    assert_eq!(got.str(0), Some("bin"), "{ctx}: {got:?}");
    assert_eq!(
        got.binary(1).map(|b| b.to_vec()),
        Some(bytes.clone()),
        "{ctx}: binary message-back"
    );
    let big = vec![0xA5u8; 200_000];
    main.emit_args(
        "binary-echo",
        Args::new()
            .bin(vec![1u8, 2, 3])
            .value(json!({ "k": 1 }))
            .bin(big.clone())
            .bin(Vec::<u8>::new()),
    )
    .unwrap_or_else(|e| panic!("{ctx}: emit binary-echo: {e}"));
    let got = main_bin.next().await;
    assert_eq!(got.len(), 4, "{ctx}: binary-back arity: {:?}", got.values());
    assert_eq!(
        got.binary(3).map(|b| b.len()),
        Some(0),
        "{ctx}: empty binary: {:?}",
        got.values()
    );
    assert_eq!(
        got.binary(0).map(|b| b.to_vec()),
        Some(vec![1u8, 2, 3]),
        "{ctx}"
    );
    assert_eq!(got.values()[1], json!({ "k": 1 }), "{ctx}");
    assert_eq!(
        got.binary(2).map(|b| b.len()),
        Some(big.len()),
        "{ctx}: 200 kB binary"
    );
    assert!(got.binary(2).is_some_and(|b| b[..] == big[..]), "{ctx}");

    // ---- Client -> server acks.
    let ack_args = vec![json!(1), json!("2"), json!({ "3": [false] })];
    let r = within(
        long,
        "emit_with_ack",
        main.emit_with_ack("message-with-ack", ack_args.clone(), WAIT),
    )
    .await
    .unwrap_or_else(|e| panic!("{ctx}: emit_with_ack: {e}"));
    assert_eq!(r.values(), ack_args, "{ctx}: ack");
    let r = within(
        long,
        "emit_with_ack binary",
        main.emit_with_ack(
            "message-with-ack",
            Args::new().bin(vec![9u8; 1000]).value(json!(true)),
            WAIT,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{ctx}: emit_with_ack binary: {e}"));
    assert_eq!(
        r.binary(0).map(|b| b.to_vec()),
        Some(vec![9u8; 1000]),
        "{ctx}"
    );
    assert_eq!(r.values().get(1), Some(&json!(true)), "{ctx}");
    let (cb_tx, mut cb_rx) = mpsc::unbounded_channel();
    custom
        .emit_with_ack_cb(
            "message-with-ack",
            vec![json!("cb"), json!(7)],
            WAIT,
            move |r| {
                let _ = cb_tx.send(r);
            },
        )
        .unwrap_or_else(|e| panic!("{ctx}: emit_with_ack_cb: {e}"));
    let r = recv(&mut cb_rx, "ack callback")
        .await
        .unwrap_or_else(|e| panic!("{ctx}: ack via callback: {e}"));
    assert_eq!(r.values(), vec![json!("cb"), json!(7)], "{ctx}");
    // The server does not acknowledge `message`: the timeout fires.
    let t0 = Instant::now();
    let r = within(
        long,
        "emit_with_ack without answer",
        main.emit_with_ack("message", vec![json!("no-ack")], Duration::from_millis(300)),
    )
    .await;
    if flavor.acks_every_event {
        assert_eq!(r.map(|a| a.into_values()), Ok(vec![]), "{ctx}");
    } else {
        assert_eq!(r.map(|a| a.into_values()), Err(AckError::Timeout), "{ctx}");
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "{ctx}: timeout too early"
        );
    }
    assert_eq!(
        main_back.next().await.values(),
        vec![json!("no-ack")],
        "{ctx}"
    );

    // ---- Server -> client ack, answered late from another thread.
    main.emit("request-ack", &2000)
        .unwrap_or_else(|e| panic!("{ctx}: emit request-ack: {e}"));
    let (args, had_ack) = recv(&mut need_ack_rx, "need-ack").await;
    assert_eq!(args, vec![json!("please")], "{ctx}: need-ack args");
    assert!(had_ack, "{ctx}: need-ack carries an ack");
    let (first, second) = recv(&mut late_rx, "late ack from another thread").await;
    first.unwrap_or_else(|e| panic!("{ctx}: ack.send from another thread: {e}"));
    assert!(
        matches!(second, Err(AckSendError::AlreadySent)),
        "{ctx}: a second ack.send: {second:?}"
    );
    assert_eq!(
        main_ack_result.next().await.values(),
        vec![json!({ "ok": true, "args": ["late", 42] })],
        "{ctx}: ack-result"
    );

    // ---- Server-side disconnect of "/custom": no reconnection of it; "/" unaffected.
    custom
        .emit_args("disconnect-me", Args::new())
        .unwrap_or_else(|e| panic!("{ctx}: emit disconnect-me: {e}"));
    assert_eq!(
        recv(&mut custom_disc, "disconnect of /custom").await,
        ClientDisconnectReason::ServerDisconnect,
        "{ctx}"
    );
    let server_disconnected_at = Instant::now();
    assert!(!custom.connected(), "{ctx}");
    assert_eq!(custom.id(), None, "{ctx}");
    custom
        .emit_volatile("message", vec![json!("volatile-after-server-disconnect")])
        .unwrap_or_else(|e| panic!("{ctx}: emit_volatile: {e}"));
    assert_eq!(custom.buffered(), 0, "{ctx}");
    main.emit_volatile("message", vec![json!("volatile-while-connected")])
        .unwrap_or_else(|e| panic!("{ctx}: emit_volatile: {e}"));
    assert_eq!(
        main_back.next().await.values(),
        vec![json!("volatile-while-connected")],
        "{ctx}: a volatile emit while connected is sent"
    );

    // ---- The refused socket connects with the right token.
    let mut refuse_auth = inbox(&refuse, "auth");
    let mut refuse_back = inbox(&refuse, "message-back");
    refuse.set_auth(json!({ "token": "good" }));
    within(long, "connect /refuse (good)", refuse.connect())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: /refuse with the good token: {e}"));
    assert_eq!(
        refuse_auth.next().await.values(),
        vec![json!({ "token": "good" })],
        "{ctx}"
    );
    refuse
        .emit_args("message", vec![json!("let in")])
        .unwrap_or_else(|e| panic!("{ctx}: emit on /refuse: {e}"));
    assert_eq!(
        refuse_back.next().await.values(),
        vec![json!("let in")],
        "{ctx}"
    );

    // ---- What must not have happened meanwhile.
    tokio::time::sleep_until((refused_at + Duration::from_millis(1500)).into()).await;
    assert_eq!(
        refuse_auth_calls.load(SeqCst),
        1,
        "{ctx}: a refused namespace is not retried automatically"
    );
    tokio::time::sleep_until((server_disconnected_at + Duration::from_secs(1)).into()).await;
    assert!(
        !custom.connected(),
        "{ctx}: /custom came back after a server disconnect"
    );
    assert_eq!(custom_connects.load(SeqCst), 1, "{ctx}");
    assert_eq!(reconnect_attempts.load(SeqCst), 0, "{ctx}: no reconnection");
    assert_eq!(main_connects.load(SeqCst), 1, "{ctx}");
    assert!(main.connected(), "{ctx}: / stays connected (heartbeat)");
    assert_eq!(
        client.engine_id(),
        Some(eid.clone()),
        "{ctx}: same connection"
    );
    assert!(
        !main_back.saw(&[json!("volatile-while-disconnected")]),
        "{ctx}: a volatile emit while disconnected arrived"
    );
    assert!(
        !custom_back.saw(&[json!("volatile-after-server-disconnect")]),
        "{ctx}: a volatile emit after a server disconnect arrived"
    );
    if mode == Mode::Polling {
        assert_eq!(client.transport(), Some(TransportType::Polling), "{ctx}");
    }

    // ---- Catch-all listeners.
    let seen_in = lock(&incoming).clone();
    for name in [
        "auth",
        "message-back",
        "binary-back",
        "need-ack",
        "ack-result",
    ] {
        assert!(
            seen_in.iter().any(|n| n == name),
            "{ctx}: on_any missed {name}: {seen_in:?}"
        );
    }
    let seen_out = lock(&outgoing).clone();
    for (name, args) in [
        ("message", vec![json!("buffered-before-connect")]),
        ("message", sent.clone()),
        ("message-with-ack", ack_args.clone()),
        ("request-ack", vec![json!(2000)]),
    ] {
        assert!(
            seen_out.iter().any(|(n, a)| n == name && *a == args),
            "{ctx}: on_any_outgoing missed {name} {args:?}: {seen_out:?}"
        );
    }
    assert!(
        !seen_out
            .iter()
            .any(|(n, _)| n.starts_with("connect") || n.starts_with("disconnect")),
        "{ctx}: a refused reserved emit was reported as outgoing: {seen_out:?}"
    );

    // ---- The convenience constructor.
    let quick = within(
        long,
        "Client::connect",
        Client::connect(&format!("{url}/custom")),
    )
    .await
    .unwrap_or_else(|e| panic!("{ctx}: Client::connect: {e}"));
    assert_eq!(quick.nsp().as_str(), "/custom");
    assert!(quick.connected(), "{ctx}");
    quick.client().expect("its client").close();

    // ---- Close.
    let mut main_disc = disconnects(&main);
    client.close();
    assert_eq!(
        recv(&mut main_disc, "disconnect on close").await,
        ClientDisconnectReason::ClientDisconnect,
        "{ctx}"
    );
    assert!(
        eventually(WAIT, || !main.connected() && client.engine_id().is_none()).await,
        "{ctx}: still connected after close"
    );
    match within(long, "connect after close", main.connect()).await {
        Err(ClientError::Closed) => {}
        other => panic!("{ctx}: connect after close: {other:?}"),
    }
    assert_no_foreign_panics();
}

// ---- 1. The Node reference server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_websocket() {
    let server = node_server(0).await;
    core_scenarios(&server.url, Mode::Websocket, &NODE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_polling() {
    let server = node_server(0).await;
    core_scenarios(&server.url, Mode::Polling, &NODE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_polling_upgrade() {
    let server = node_server(0).await;
    core_scenarios(&server.url, Mode::Upgrade, &NODE).await;
}

// ---- 3. tether's own server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_websocket() {
    let server = tether_server().await;
    core_scenarios(&server.url, Mode::Websocket, &TETHER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_polling() {
    let server = tether_server().await;
    core_scenarios(&server.url, Mode::Polling, &TETHER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_polling_upgrade() {
    let server = tether_server().await;
    core_scenarios(&server.url, Mode::Upgrade, &TETHER).await;
}

// ---- 4. python-socketio.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websocket() {
    let server = python_server().await;
    core_scenarios(&server.url, Mode::Websocket, &PYTHON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_polling() {
    let server = python_server().await;
    core_scenarios(&server.url, Mode::Polling, &PYTHON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_polling_upgrade() {
    let server = python_server().await;
    core_scenarios(&server.url, Mode::Upgrade, &PYTHON).await;
}

// ---------------------------------------------------------------------------------------
// 2. Reconnection
// ---------------------------------------------------------------------------------------

async fn reconnect_after_kill(mode: Mode) {
    install_panic_probe();
    let ctx = format!("reconnect over {mode:?}");
    let mut server = node_server(0).await;
    let port = server.port;
    let auth_calls = counter();
    let client = Client::builder(server.url.clone())
        .transports(mode.transports())
        .timeout(WAIT)
        .reconnection(fast_reconnection())
        .auth_fn({
            let c = auth_calls.clone();
            move || {
                let n = c.fetch_add(1, SeqCst) + 1;
                json!({ "token": format!("token-{n}") })
            }
        })
        .build()
        .expect("build");
    let attempts = Arc::new(Mutex::new(Vec::<u32>::new()));
    {
        let a = attempts.clone();
        client.on_reconnect_attempt(move |n| lock(&a).push(n));
    }
    let (reconnected_tx, mut reconnected) = mpsc::unbounded_channel();
    client.on_reconnect(move |n| {
        let _ = reconnected_tx.send(n);
    });
    let errors = counter();
    {
        let e = errors.clone();
        client.on_reconnect_error(move |_| {
            e.fetch_add(1, SeqCst);
        });
    }
    let socket = client.socket("/");
    let mut auth = inbox(&socket, "auth");
    let mut back = inbox(&socket, "message-back");
    let connects = count_connects(&socket);
    let mut disc = disconnects(&socket);

    within(WAIT * 2, "connect", socket.connect())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: connect: {e}"));
    assert_eq!(
        auth.next().await.values(),
        vec![json!({ "token": "token-1" })],
        "{ctx}"
    );
    if mode == Mode::Upgrade {
        assert!(
            eventually(WAIT, || client.transport()
                == Some(TransportType::Websocket))
            .await,
            "{ctx}: no upgrade"
        );
    }
    socket
        .emit_args("message", vec![json!("before")])
        .expect("emit");
    assert_eq!(back.next().await.values(), vec![json!("before")], "{ctx}");

    // Kill -9 the server; emit while it is down.
    server.kill();
    let reason = recv(&mut disc, "disconnect after kill -9").await;
    assert!(
        matches!(
            reason,
            ClientDisconnectReason::TransportClose | ClientDisconnectReason::TransportError(_)
        ),
        "{ctx}: disconnect reason after kill -9: {reason:?}"
    );
    assert!(!socket.connected(), "{ctx}");
    for i in 1..=20 {
        socket
            .emit_args("message", vec![json!("seq"), json!(i)])
            .unwrap_or_else(|e| panic!("{ctx}: emit {i} while down: {e}"));
    }
    socket
        .emit_volatile("message", vec![json!("volatile-while-down")])
        .expect("emit_volatile");
    assert_eq!(socket.buffered(), 20, "{ctx}: offline buffer");
    assert!(
        eventually(WAIT, || !lock(&attempts).is_empty()).await,
        "{ctx}: no reconnection attempt"
    );

    // Same port, new process: the client comes back by itself.
    let _restarted = node_server(port).await;
    let n = recv(&mut reconnected, "on_reconnect").await;
    let calls = auth_calls.load(SeqCst);
    assert!(calls >= 2, "{ctx}: auth_fn called {calls} times");
    assert_eq!(
        auth.next().await.values(),
        vec![json!({ "token": format!("token-{calls}") })],
        "{ctx}: the new server sees the fresh token"
    );
    for i in 1..=20 {
        let got = back.next().await;
        assert_eq!(
            got.values(),
            vec![json!("seq"), json!(i)],
            "{ctx}: buffered emits in order, exactly once"
        );
    }
    socket
        .emit_args("message", vec![json!("after")])
        .expect("emit");
    assert_eq!(
        back.next().await.values(),
        vec![json!("after")],
        "{ctx}: nothing between the buffered emits and a new one"
    );
    assert_eq!(socket.buffered(), 0, "{ctx}");
    assert_eq!(connects.load(SeqCst), 2, "{ctx}");
    assert!(
        !back.saw(&[json!("volatile-while-down")]),
        "{ctx}: volatile sent"
    );
    let seen = lock(&attempts).clone();
    assert_eq!(seen, (1..=n).collect::<Vec<_>>(), "{ctx}: attempt numbers");
    assert_eq!(
        errors.load(SeqCst),
        n as usize - 1,
        "{ctx}: failed attempts"
    );
    client.close();
    assert_no_foreign_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_server_kill_websocket() {
    reconnect_after_kill(Mode::Websocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_server_kill_polling_upgrade() {
    reconnect_after_kill(Mode::Upgrade).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_server_kill_polling() {
    reconnect_after_kill(Mode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_gives_up_after_attempts() {
    install_panic_probe();
    let url = format!("http://127.0.0.1:{}", free_port());
    let client = Client::builder(url.clone())
        .timeout(WAIT)
        .reconnection(Reconnection {
            attempts: Some(2),
            delay: Duration::from_millis(50),
            delay_max: Duration::from_millis(100),
            ..Reconnection::default()
        })
        .build()
        .expect("build");
    let attempts = Arc::new(Mutex::new(Vec::<u32>::new()));
    {
        let a = attempts.clone();
        client.on_reconnect_attempt(move |n| lock(&a).push(n));
    }
    let errors = counter();
    {
        let e = errors.clone();
        client.on_reconnect_error(move |_| {
            e.fetch_add(1, SeqCst);
        });
    }
    let failed = counter();
    {
        let f = failed.clone();
        client.on_reconnect_failed(move || {
            f.fetch_add(1, SeqCst);
        });
    }
    let socket = client.socket("/");
    let mut conn_errors = connect_errors(&socket);
    match within(WAIT * 2, "connect to nothing", socket.connect()).await {
        Err(ClientError::Open(_)) => {}
        other => panic!("connect to a closed port: {other:?}"),
    }
    assert_eq!(failed.load(SeqCst), 1, "on_reconnect_failed");
    assert_eq!(*lock(&attempts), vec![1, 2], "attempt numbers");
    assert_eq!(errors.load(SeqCst), 2, "on_reconnect_error");
    for _ in 0..3 {
        recv(&mut conn_errors, "connect_error per failed attempt").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*lock(&attempts), vec![1, 2], "attempts after giving up");
    assert_eq!(failed.load(SeqCst), 1);
    assert!(!socket.connected());
    client.close();

    // Reconnection disabled: the first failure is final, and no hook fires.
    let client = Client::builder(url)
        .timeout(WAIT)
        .reconnection(no_reconnection())
        .build()
        .expect("build");
    let hooks = counter();
    {
        let (a, b, c) = (hooks.clone(), hooks.clone(), hooks.clone());
        client.on_reconnect_attempt(move |_| {
            a.fetch_add(1, SeqCst);
        });
        client.on_reconnect_error(move |_| {
            b.fetch_add(1, SeqCst);
        });
        client.on_reconnect_failed(move || {
            c.fetch_add(1, SeqCst);
        });
    }
    let t0 = Instant::now();
    match within(
        WAIT * 2,
        "connect without reconnection",
        client.socket("/").connect(),
    )
    .await
    {
        Err(ClientError::Open(_)) => {}
        other => panic!("connect without reconnection: {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hooks.load(SeqCst),
        0,
        "reconnect hooks without reconnection"
    );
    client.close();
    assert_no_foreign_panics();
}

// ---------------------------------------------------------------------------------------
// 5 and 6. Hostile and dead fake servers
// ---------------------------------------------------------------------------------------

/// How the fake server answers the first request of a connection.
#[derive(Clone, Debug)]
enum Answer {
    /// Answer the handshake with this Engine.IO packet (a text frame over WebSocket).
    Handshake(&'static str),
    /// HTTP 500 to every request.
    Status500,
    /// Bytes that are not the expected HTTP or WebSocket answer, then close.
    Garbage,
    /// Accept the TCP connection and never answer.
    Silent,
}

/// A fake server's behaviour: `answer`, then, once the client sent its Socket.IO CONNECT,
/// the Engine.IO packets of `after_connect`, then nothing at all (no pings, ever).
#[derive(Clone, Debug)]
struct Script {
    answer: Answer,
    after_connect: &'static [&'static str],
}

const OPEN_OK: &str = r#"0{"sid":"fake-sid","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#;

#[derive(Clone)]
enum FakeMode {
    Script(Script),
    /// Pipe every new connection to a real server.
    Proxy(SocketAddr),
}

struct FakeServer {
    addr: SocketAddr,
    mode: Arc<Mutex<FakeMode>>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

impl FakeServer {
    async fn start(script: Script) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let mode = Arc::new(Mutex::new(FakeMode::Script(script)));
        let connected = Arc::new(Notify::new());
        let m = mode.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            let gets = Arc::new(AtomicUsize::new(0));
            while let Ok((stream, _)) = listener.accept().await {
                let mode = lock(&m).clone();
                conns.spawn(fake_connection(
                    stream,
                    mode,
                    connected.clone(),
                    gets.clone(),
                ));
                while conns.try_join_next().is_some() {}
            }
        });
        FakeServer { addr, mode, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn proxy_to(&self, addr: SocketAddr) {
        *lock(&self.mode) = FakeMode::Proxy(addr);
    }
}

struct Request {
    method: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Read one HTTP/1.1 request (head and Content-Length body); `buf` keeps the leftovers.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let method = first.next()?.to_owned();
            let target = first.next()?.to_owned();
            let headers: HashMap<String, String> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut tmp = [0u8; 8192];
                let n = s.read(&mut tmp).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            let query = target
                .split_once('?')
                .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default();
            return Some(Request {
                method,
                query,
                headers,
                body,
            });
        }
        let mut tmp = [0u8; 8192];
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

async fn respond(s: &mut TcpStream, status: &str, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.is_ok() && s.write_all(body).await.is_ok()
}

/// Never answer (bounded: the server's task is aborted when the test drops it).
async fn hold() {
    tokio::time::sleep(Duration::from_secs(60)).await;
}

async fn fake_connection(
    mut stream: TcpStream,
    mode: FakeMode,
    connected: Arc<Notify>,
    gets: Arc<AtomicUsize>,
) {
    let script = match mode {
        FakeMode::Proxy(addr) => {
            if let Ok(mut upstream) = TcpStream::connect(addr).await {
                let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
            }
            return;
        }
        FakeMode::Script(s) => s,
    };
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut stream, &mut buf).await {
        let websocket = req
            .headers
            .get("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        let open = match script.answer {
            Answer::Silent => return hold().await,
            Answer::Status500 => {
                if !respond(&mut stream, "500 Internal Server Error", b"boom").await {
                    return;
                }
                continue;
            }
            Answer::Garbage => {
                let garbage: &[u8] = if websocket {
                    // 101 without Sec-WebSocket-Accept, then binary noise.
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x00\xff\x81\x7fgarbage"
                } else {
                    b"\x00\x01\x02 this is not HTTP \xff\xfe\r\n\r\n"
                };
                let _ = stream.write_all(garbage).await;
                return;
            }
            Answer::Handshake(open) => open,
        };
        if websocket {
            return fake_websocket(stream, &req, open, script.after_connect).await;
        }
        if !req.query.contains_key("sid") {
            gets.store(0, SeqCst);
            if !respond(&mut stream, "200 OK", open.as_bytes()).await {
                return;
            }
        } else if req.method == "POST" {
            if String::from_utf8_lossy(&req.body)
                .split('\u{1e}')
                .any(|p| p.starts_with("40"))
            {
                connected.notify_one();
            }
            if !respond(&mut stream, "200 OK", b"ok").await {
                return;
            }
        } else {
            // The first poll carries `after_connect` once the client connected; every
            // later poll hangs (no ping ever).
            if gets.fetch_add(1, SeqCst) > 0 || script.after_connect.is_empty() {
                return hold().await;
            }
            if timeout(WAIT, connected.notified()).await.is_err() {
                return;
            }
            let body = script.after_connect.join("\u{1e}");
            if !respond(&mut stream, "200 OK", body.as_bytes()).await {
                return;
            }
        }
    }
}

async fn fake_websocket(mut stream: TcpStream, req: &Request, open: &str, after_connect: &[&str]) {
    let key = req
        .headers
        .get("sec-websocket-key")
        .cloned()
        .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
    if ws.send(Message::text(open)).await.is_err() {
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg
            && t.as_str().starts_with("40")
        {
            for p in after_connect {
                if ws.send(Message::text(*p)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// What a hostile case must produce.
#[derive(Debug)]
enum Expect {
    /// `connect()` fails with `ClientError::Open` whose message contains this, and
    /// `connect_error` fires when `connect_error` is true.
    OpenError {
        contains: &'static str,
        connect_error: bool,
    },
    /// `connect()` fails with a timeout or an open error.
    NoAnswer,
    /// `connect()` succeeds, then the socket disconnects with this reason.
    Disconnect(ClientDisconnectReason),
    /// A parse error, before the CONNECT (when the CONNECT and the bad packet share a
    /// polling payload, the whole payload is refused) or after it.
    ParseError,
}

struct Case {
    name: &'static str,
    script: Script,
    expect: Expect,
}

fn hostile_cases() -> Vec<Case> {
    let open_fails = |contains| Expect::OpenError {
        contains,
        connect_error: true,
    };
    vec![
        Case {
            name: "invalid handshake JSON",
            script: Script {
                answer: Answer::Handshake("0{not json"),
                after_connect: &[],
            },
            expect: open_fails("invalid handshake json"),
        },
        Case {
            name: "handshake with pingInterval 0",
            script: Script {
                answer: Answer::Handshake(
                    r#"0{"sid":"fake-sid","upgrades":[],"pingInterval":0,"pingTimeout":200,"maxPayload":1000000}"#,
                ),
                after_connect: &[],
            },
            expect: open_fails("invalid ping interval 0"),
        },
        Case {
            name: "handshake without sid",
            script: Script {
                answer: Answer::Handshake(
                    r#"0{"upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#,
                ),
                after_connect: &[],
            },
            expect: open_fails("missing field `sid`"),
        },
        Case {
            name: "a message instead of the handshake",
            script: Script {
                answer: Answer::Handshake("4hello"),
                after_connect: &[],
            },
            expect: open_fails("expected an open packet"),
        },
        Case {
            name: "HTTP 500",
            script: Script {
                answer: Answer::Status500,
                after_connect: &[],
            },
            expect: open_fails("500"),
        },
        Case {
            name: "garbage instead of the HTTP / WebSocket answer",
            script: Script {
                answer: Answer::Garbage,
                after_connect: &[],
            },
            expect: open_fails("error"),
        },
        Case {
            name: "malformed Socket.IO packet instead of CONNECT",
            script: Script {
                answer: Answer::Handshake(OPEN_OK),
                after_connect: &["49xx"],
            },
            expect: Expect::OpenError {
                contains: "parse error",
                connect_error: false,
            },
        },
        Case {
            name: "malformed Socket.IO packet after CONNECT",
            script: Script {
                answer: Answer::Handshake(OPEN_OK),
                after_connect: &[r#"40{"sid":"fake-socket"}"#, "49xx"],
            },
            expect: Expect::Disconnect(ClientDisconnectReason::ParseError),
        },
        Case {
            name: "truncated JSON event after CONNECT",
            script: Script {
                answer: Answer::Handshake(OPEN_OK),
                after_connect: &[r#"40{"sid":"fake-socket"}"#, r#"42["event",{"a":"#],
            },
            expect: Expect::Disconnect(ClientDisconnectReason::ParseError),
        },
        Case {
            name: "invalid base64 binary packet after CONNECT",
            script: Script {
                answer: Answer::Handshake(OPEN_OK),
                after_connect: &[r#"40{"sid":"fake-socket"}"#, "b#not base64#"],
            },
            expect: Expect::ParseError,
        },
        Case {
            name: "handshake, then CONNECT ignored (no pings either)",
            script: Script {
                answer: Answer::Handshake(OPEN_OK),
                after_connect: &[],
            },
            expect: Expect::OpenError {
                contains: "ping timeout",
                connect_error: false,
            },
        },
        Case {
            name: "accepts and never answers",
            script: Script {
                answer: Answer::Silent,
                after_connect: &[],
            },
            expect: Expect::NoAnswer,
        },
    ]
}

const HOSTILE_TIMEOUT: Duration = Duration::from_millis(1500);

async fn hostile(mode: Mode) {
    install_panic_probe();
    let real = tether_server().await;
    for case in hostile_cases() {
        let ctx = format!("{} over {mode:?}", case.name);
        let fake = FakeServer::start(case.script.clone()).await;
        let client = Client::builder(fake.url())
            .transports(mode.transports())
            .timeout(HOSTILE_TIMEOUT)
            .reconnection(no_reconnection())
            .build()
            .expect("build");
        let socket = client.socket("/");
        let mut back = inbox(&socket, "message-back");
        let mut errors = connect_errors(&socket);
        let mut disc = disconnects(&socket);
        let t0 = Instant::now();
        let r = within(
            HOSTILE_TIMEOUT + Duration::from_secs(3),
            &format!("{ctx}: connect() did not return"),
            socket.connect(),
        )
        .await;
        match &case.expect {
            Expect::OpenError {
                contains,
                connect_error,
            } => {
                match &r {
                    Err(ClientError::Open(m)) if m.contains(contains) => {}
                    other => {
                        panic!("{ctx}: expected an open error with {contains:?}, got {other:?}")
                    }
                }
                if *connect_error {
                    let info = recv(&mut errors, &format!("{ctx}: connect_error")).await;
                    assert!(!info.message.is_empty(), "{ctx}: empty connect_error");
                }
            }
            Expect::NoAnswer => {
                assert!(
                    matches!(r, Err(ClientError::Timeout) | Err(ClientError::Open(_))),
                    "{ctx}: {r:?}"
                );
                assert!(
                    t0.elapsed() < HOSTILE_TIMEOUT + Duration::from_secs(1),
                    "{ctx}: took {:?}",
                    t0.elapsed()
                );
                // connect() gave up at the same moment as the attempt's own request
                // timeout: let that attempt end before the next connect() (a connect()
                // during it gets its failure: `connect_joins_a_stale_attempt`).
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Expect::ParseError => match &r {
                Err(ClientError::Open(m)) if m == "parse error" => {}
                Ok(()) => {
                    assert_eq!(
                        recv(&mut disc, &ctx).await,
                        ClientDisconnectReason::ParseError,
                        "{ctx}"
                    );
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                other => panic!("{ctx}: expected a parse error, got {other:?}"),
            },
            Expect::Disconnect(reason) => {
                r.unwrap_or_else(|e| panic!("{ctx}: connect: {e}"));
                assert_eq!(&recv(&mut disc, &ctx).await, reason, "{ctx}");
                assert!(!socket.connected(), "{ctx}");
                // Let the client finish handling that close before the next connect()
                // (see `connect_right_after_a_disconnect`).
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        assert!(!socket.connected(), "{ctx}");

        // The same client, same address, now reaches a real server.
        fake.proxy_to(real.addr);
        within(
            WAIT + Duration::from_secs(2),
            &format!("{ctx}: reconnect through the proxy"),
            socket.connect(),
        )
        .await
        .unwrap_or_else(|e| panic!("{ctx}: the client cannot connect afterwards: {e}"));
        socket
            .emit_args("message", vec![json!(case.name)])
            .unwrap_or_else(|e| panic!("{ctx}: emit: {e}"));
        assert_eq!(back.next().await.values(), vec![json!(case.name)], "{ctx}");
        client.close();
    }
    assert_no_foreign_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_servers_polling() {
    hostile(Mode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_servers_websocket() {
    hostile(Mode::Websocket).await;
}

/// Dead-server detection: a server that completes the handshake and the CONNECT, then goes
/// silent (no pings): the client reports a ping timeout after pingInterval + pingTimeout, then reconnects.
async fn dead_server(mode: Mode) {
    install_panic_probe();
    let ctx = format!("dead server over {mode:?}");
    let fake = FakeServer::start(Script {
        answer: Answer::Handshake(OPEN_OK),
        after_connect: &[r#"40{"sid":"fake-socket"}"#],
    })
    .await;
    let client = Client::builder(fake.url())
        .transports(mode.transports())
        .timeout(WAIT)
        .reconnection(fast_reconnection())
        .build()
        .expect("build");
    let (reconnected_tx, mut reconnected) = mpsc::unbounded_channel();
    client.on_reconnect(move |n| {
        let _ = reconnected_tx.send(n);
    });
    let socket = client.socket("/");
    let mut disc = disconnects(&socket);
    within(WAIT * 2, "connect", socket.connect())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: connect: {e}"));
    let connected_at = Instant::now();
    let reason = recv(&mut disc, "disconnect of a silent server").await;
    let took = connected_at.elapsed();
    assert_eq!(reason, ClientDisconnectReason::PingTimeout, "{ctx}");
    // pingInterval 300 + pingTimeout 200 = 500 ms, counted from the handshake.
    assert!(
        took >= Duration::from_millis(250) && took <= Duration::from_millis(1500),
        "{ctx}: ping timeout after {took:?}"
    );
    // The fake server answers again: the client reconnects by itself.
    recv(&mut reconnected, "on_reconnect").await;
    assert!(
        eventually(WAIT, || socket.connected()).await,
        "{ctx}: not reconnected"
    );
    client.close();
    assert_no_foreign_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_server_ping_timeout_polling() {
    dead_server(Mode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_server_ping_timeout_websocket() {
    dead_server(Mode::Websocket).await;
}

// ---------------------------------------------------------------------------------------
// Deviations found by the tests above, each reduced to its own test
// ---------------------------------------------------------------------------------------

/// A socket's `connect()` made while the client is busy with an open attempt (for another
/// socket) that then fails is itself failed with that attempt's error, yet the client then
/// opens a new connection for it (reconnection is disabled) and the socket connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_joins_a_stale_attempt() {
    install_panic_probe();
    let real = tether_server().await;
    let fake = FakeServer::start(Script {
        answer: Answer::Silent,
        after_connect: &[],
    })
    .await;
    let client = Client::builder(fake.url())
        .transports([TransportType::Polling])
        .timeout(Duration::from_millis(1500))
        .reconnection(no_reconnection())
        .build()
        .expect("build");
    let first = tokio::spawn({
        let main = client.socket("/");
        async move { main.connect().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The server works from now on; a second namespace asks to connect.
    fake.proxy_to(real.addr);
    let custom = client.socket("/custom");
    let second = within(WAIT, "second connect", custom.connect()).await;
    let connected_later = eventually(Duration::from_secs(2), || custom.connected()).await;
    let first = within(WAIT, "first connect", first).await.expect("join");
    client.close();
    assert!(
        second.is_ok() || !connected_later,
        "connect() of /custom returned {second:?} (first: {first:?}), then /custom connected \
         anyway without another connect()"
    );
}

/// `connect()` started from a disconnect handler after the connection broke (reconnection
/// disabled) is failed with the old connection's close reason, yet the socket connects.
/// (The same happens to a `connect()` from another thread that wins the race against the
/// client's handling of the close: seen in `hostile_servers_websocket`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_right_after_a_disconnect() {
    install_panic_probe();
    let real = tether_server().await;
    let fake = FakeServer::start(Script {
        answer: Answer::Handshake(OPEN_OK),
        after_connect: &[r#"40{"sid":"fake-socket"}"#, "49xx"],
    })
    .await;
    let client = Client::builder(fake.url())
        .transports([TransportType::Websocket])
        .timeout(WAIT)
        .reconnection(no_reconnection())
        .build()
        .expect("build");
    let socket = client.socket("/");
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mode = fake.mode.clone();
        let real = real.addr;
        socket.on_disconnect(move |s, reason| {
            if *reason != ClientDisconnectReason::ParseError {
                return;
            }
            *lock(&mode) = FakeMode::Proxy(real);
            // Start connect() here, as a JavaScript handler would (`socket.connect()`):
            // poll it once now, then let a task finish it.
            let s = s.clone();
            let mut connect = Box::pin(async move { s.connect().await });
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let polled = connect.as_mut().poll(&mut cx);
            let tx = tx.clone();
            tokio::spawn(async move {
                let r = match polled {
                    std::task::Poll::Ready(r) => r,
                    std::task::Poll::Pending => connect.await,
                };
                let _ = tx.send(r);
            });
        });
    }
    let first = within(WAIT * 2, "connect", socket.connect()).await;
    assert!(first.is_ok(), "{first:?}");
    let again = recv(&mut rx, "connect() from on_disconnect").await;
    let connected_later = eventually(Duration::from_secs(2), || socket.connected()).await;
    client.close();
    assert!(
        again.is_ok() || !connected_later,
        "connect() from on_disconnect returned {again:?}, then the socket connected anyway"
    );
}

/// `Client::close()` while a connection attempt is in progress: the pending `connect()`
/// should end with `Closed` at once, not when the attempt times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_a_connection_attempt() {
    install_panic_probe();
    let fake = FakeServer::start(Script {
        answer: Answer::Silent,
        after_connect: &[],
    })
    .await;
    let client = Client::builder(fake.url())
        .transports([TransportType::Polling])
        .timeout(Duration::from_secs(4))
        .build()
        .expect("build");
    let socket = client.socket("/");
    let pending = tokio::spawn({
        let socket = socket.clone();
        async move { socket.connect().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    client.close();
    let r = within(WAIT * 2, "connect() after close", pending)
        .await
        .expect("join");
    let took = t0.elapsed();
    assert!(
        matches!(r, Err(ClientError::Closed)) && took < Duration::from_secs(1),
        "connect() pending during close() returned {r:?} after {took:?}"
    );
}

/// `on_any_outgoing` "runs as each emit is sent or buffered" (and socket.io-client only
/// notifies packets it writes): a volatile emit dropped while disconnected is neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn outgoing_listener_skips_dropped_volatile() {
    install_panic_probe();
    let real = tether_server().await;
    let client = Client::builder(real.url.clone())
        .timeout(WAIT)
        .build()
        .expect("build");
    let socket = client.socket("/");
    let outgoing = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let log = outgoing.clone();
        socket.on_any_outgoing(move |_, name, _| lock(&log).push(name.to_owned()));
    }
    socket
        .emit_volatile("dropped", Args::new())
        .expect("emit_volatile");
    socket.emit_args("buffered", Args::new()).expect("emit");
    within(WAIT * 2, "connect", socket.connect())
        .await
        .expect("connect");
    socket
        .emit_volatile("sent", Args::new())
        .expect("emit_volatile");
    let seen = lock(&outgoing).clone();
    client.close();
    assert!(seen.contains(&"buffered".to_owned()), "{seen:?}");
    assert!(seen.contains(&"sent".to_owned()), "{seen:?}");
    assert!(
        !seen.contains(&"dropped".to_owned()),
        "the outgoing listener saw a dropped volatile emit: {seen:?}"
    );
}

/// An ack still pending when the socket disconnects: `AckError::Disconnected` says "the
/// socket disconnected before replying" (socket.io-client 4.6+ also fails such acks at
/// once), but the client waits for the full ack timeout instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_ack_fails_on_disconnect() {
    install_panic_probe();
    let real = tether_server().await;
    let client = Client::builder(real.url.clone())
        .timeout(WAIT)
        .build()
        .expect("build");
    let socket = client.socket("/");
    within(WAIT * 2, "connect", socket.connect())
        .await
        .expect("connect");
    // The server never acknowledges `message`.
    let pending = tokio::spawn({
        let socket = socket.clone();
        async move {
            socket
                .emit_with_ack("message", vec![json!("no ack")], Duration::from_secs(4))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    socket
        .emit_args("disconnect-me", Args::new())
        .expect("emit");
    let r = within(WAIT * 2, "pending ack", pending)
        .await
        .expect("join");
    let took = t0.elapsed();
    client.close();
    assert!(
        matches!(r, Err(AckError::Disconnected)) && took < Duration::from_secs(1),
        "pending ack after a disconnect: {r:?} after {took:?}"
    );
}

/// An event that arrives before the namespace's CONNECT answer (python-socketio sends
/// what its connect handler emits before the CONNECT packet): socket.io-client keeps it
/// until the socket is connected, then delivers it; the client delivers it at once, to a
/// socket that is not connected yet (no id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_before_connect_is_delivered_after_connect() {
    install_panic_probe();
    let fake = FakeServer::start(Script {
        answer: Answer::Handshake(OPEN_OK),
        after_connect: &[r#"42["early",1]"#, r#"40{"sid":"fake-socket"}"#],
    })
    .await;
    let client = Client::builder(fake.url())
        .transports([TransportType::Websocket])
        .timeout(WAIT)
        .reconnection(no_reconnection())
        .build()
        .expect("build");
    let socket = client.socket("/");
    let (tx, mut rx) = mpsc::unbounded_channel();
    socket.on("early", move |s, ev| {
        let _ = tx.send((s.connected(), s.id(), ev.args.into_values()));
    });
    within(WAIT * 2, "connect", socket.connect())
        .await
        .expect("connect");
    let (connected, id, args) = recv(&mut rx, "early event").await;
    client.close();
    assert_eq!(args, vec![json!(1)]);
    assert!(
        connected && id.is_some(),
        "the early event was delivered to a socket not connected yet (id {id:?})"
    );
}

// =======================================================================================
// Connection state recovery (socket.io 4.6+), the Rust client against both servers
// =======================================================================================

/// A server started with `--recovery`: the Node reference server, or tether's
/// conformance_server example binary.
async fn recovery_server(node: bool) -> ServerProcess {
    if node {
        let script = interop_dir().join("reference_server.js");
        ServerProcess::start(
            "node reference server --recovery",
            &find_node(),
            &[
                script.display().to_string(),
                "--port".into(),
                "0".into(),
                "--recovery".into(),
            ],
        )
        .await
    } else {
        let exe = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("debug/examples/conformance_server");
        let exe = std::env::var_os("CARGO_TARGET_DIR")
            .map(|d| Path::new(&d).join("debug/examples/conformance_server"))
            .filter(|p| p.is_file())
            .unwrap_or(exe);
        assert!(
            exe.is_file(),
            "{exe:?} is missing: run `cargo build --examples`"
        );
        ServerProcess::start(
            "tether conformance_server --recovery",
            &exe,
            &["--port".into(), "0".into(), "--recovery".into()],
        )
        .await
    }
}

async fn recovers_state(node: bool, mode: Mode) {
    let server = recovery_server(node).await;
    let build = || {
        Client::builder(server.url.clone())
            .transports(mode.transports())
            .reconnection(fast_reconnection())
            .build()
            .expect("client")
    };
    let (ca, cb) = (build(), build());
    let (a, b) = (ca.socket("/"), cb.socket("/"));
    let mut room = inbox(&a, "room-message");
    let mut all = inbox(&a, "broadcast-message");
    let mut down = disconnects(&a);
    within(WAIT, "connect a", a.connect())
        .await
        .expect("a connects");
    within(WAIT, "connect b", b.connect())
        .await
        .expect("b connects");
    assert!(!a.recovered());
    let first_id = a.id().expect("id");
    let joined = a
        .emit_with_ack("join", vec![json!("r1")], WAIT)
        .await
        .expect("join ack");
    assert_eq!(joined.values(), vec![json!(true)]);
    // One broadcast before the drop: the client learns an offset.
    b.emit_args("to-room", vec![json!("r1"), json!("before")])
        .unwrap();
    let got = room.next().await;
    assert_eq!(got.values()[0], json!("before"));
    assert!(
        got.values().get(1).is_some_and(Value::is_string),
        "offset: {got:?}"
    );

    a.emit_args("drop-connection", Vec::<Value>::new()).unwrap();
    let reason = recv(&mut down, "a's disconnect").await;
    assert_eq!(reason, ClientDisconnectReason::TransportClose);
    b.emit_args("to-room", vec![json!("r1"), json!("missed-1")])
        .unwrap();
    b.emit_args("to-room", vec![json!("r2"), json!("not-for-a")])
        .unwrap();
    b.emit_args("broadcast", vec![json!("missed-2")]).unwrap();

    assert!(
        eventually(WAIT, || a.connected()).await,
        "{}: a did not reconnect",
        server.name
    );
    assert!(a.recovered(), "{}: state not recovered", server.name);
    assert_eq!(a.id().as_ref(), Some(&first_id), "same id after recovery");
    assert_eq!(room.next().await.values()[0], json!("missed-1"));
    assert_eq!(all.next().await.values()[0], json!("missed-2"));
    let rec = a
        .emit_with_ack("recovered", Vec::<Value>::new(), WAIT)
        .await
        .expect("recovered ack");
    assert_eq!(rec.values(), vec![json!(true), json!(first_id.as_str())]);
    // The room survived: new room messages arrive, and nothing else was replayed.
    b.emit_args("to-room", vec![json!("r1"), json!("after")])
        .unwrap();
    assert_eq!(room.next().await.values()[0], json!("after"));
    assert!(!room.saw(&[json!("not-for-a")]));
    ca.close();
    cb.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_node_websocket() {
    recovers_state(true, Mode::Websocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_node_polling_upgrade() {
    recovers_state(true, Mode::Upgrade).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_tether_websocket() {
    recovers_state(false, Mode::Websocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_tether_polling() {
    recovers_state(false, Mode::Polling).await;
}
