//! Scale-out: the Redis adapter between tether nodes, in a mixed cluster with Node
//! `socket.io` + `@socket.io/redis-adapter`, behind nginx with sticky sessions, through a
//! Redis restart, and the Redis emitter (tether's and Node's).
//!
//! Each test starts its own `redis-server` on a free loopback port (stopped on drop).
//! Needs `redis-server`, `nginx`, `node` and `tests/interop/node_modules`: `bash
//! scripts/test.sh` installs them.

#[allow(dead_code)]
#[path = "../examples/chat/handlers.rs"]
mod handlers;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tether::ServerHandle;
use tether::adapter::{
    AdapterError, RedisAdapter, RedisAdapterConfig, RedisEmitter, ShardedRedisAdapter,
    ShardedRedisAdapterConfig, SubscriptionMode,
};
use tether::engine::TransportType;
use tether::sio::client::{Client, ClientSocket, Reconnection};
use tether::sio::{Args, Io};
use tokio::sync::mpsc;

const SETUP_HINT: &str = "run `bash scripts/test.sh` (it installs redis-server, nginx, and the Node packages in tests/interop)";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn within<T>(d: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {d:?}: {what}"),
    }
}

async fn eventually(d: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + d;
    while !cond() {
        assert!(Instant::now() < end, "not reached within {d:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "tether-cluster-{what}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------------------

/// `redis-server` on a free loopback port, killed on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl RedisServer {
    fn start() -> RedisServer {
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            dir: TempDir::new("redis"),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let bin = find_program("redis-server")
            .unwrap_or_else(|| panic!("redis-server is not installed: {SETUP_HINT}"));
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let child = Command::new(&bin)
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(&self.dir.0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start redis-server: {e}; {SETUP_HINT}"));
            self.child = Some(child);
            while Instant::now() < end {
                if self.ping() {
                    return;
                }
                if let Some(c) = self.child.as_mut()
                    && let Ok(Some(_)) = c.try_wait()
                {
                    break; // exited (port still held by the previous instance?): retry
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                Instant::now() < end,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = StdTcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop, then start again on the same port (an outage and a recovery).
    fn restart_after(&mut self, outage: Duration) {
        self.stop();
        std::thread::sleep(outage);
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Child processes: Node nodes, the Node emitter, nginx
// ---------------------------------------------------------------------------------------

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn node_bin() -> PathBuf {
    let node =
        find_program("node").unwrap_or_else(|| panic!("`node` is not on PATH: {SETUP_HINT}"));
    for pkg in [
        "socket.io",
        "@socket.io/redis-adapter",
        "@socket.io/redis-emitter",
        "redis",
    ] {
        assert!(
            interop_dir().join("node_modules").join(pkg).is_dir(),
            "tests/interop/node_modules/{pkg} is missing: {SETUP_HINT}"
        );
    }
    node
}

/// A child process killed on drop; its output is kept (and printed if the test fails).
struct Proc {
    name: String,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}; {SETUP_HINT}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        if let Some(out) = child.stdout.take() {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    lock(&output).push(line);
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    lock(&output).push(line);
                }
            });
        }
        Proc {
            name: name.to_owned(),
            child,
            output,
            lines,
        }
    }

    async fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let r = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(l) = self.lines.recv().await {
                if pred(&l) {
                    return Some(l);
                }
            }
            None
        })
        .await;
        match r {
            Ok(Some(l)) => l,
            _ => panic!(
                "{}: no {what}; output:\n{}",
                self.name,
                lock(&self.output).join("\n")
            ),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {} output:\n{}",
                self.name,
                lock(&self.output).join("\n")
            );
        }
    }
}

/// `node tests/interop/cluster/node_node.js --port 0 --redis URL`.
struct NodeNode {
    _proc: Proc,
    url: String,
}

async fn node_node(redis: &str) -> NodeNode {
    node_node_with(redis, &[]).await
}

/// A Node node with extra arguments (`--sharded`, `--mode M`).
async fn node_node_with(redis: &str, extra: &[&str]) -> NodeNode {
    let mut proc = Proc::spawn(
        "node socket.io node",
        Command::new(node_bin())
            .arg(interop_dir().join("cluster/node_node.js"))
            .args(["--port", "0", "--redis", redis])
            .args(extra)
            .current_dir(interop_dir()),
    );
    let line = proc
        .wait_line("listening line", |l| l.starts_with("listening on "))
        .await;
    NodeNode {
        url: line.trim_start_matches("listening on ").trim().to_owned(),
        _proc: proc,
    }
}

/// One operation through Node's `@socket.io/redis-emitter`.
async fn node_emitter(redis: &str, op: Value) {
    let mut proc = Proc::spawn(
        "node redis-emitter",
        Command::new(node_bin())
            .arg(interop_dir().join("cluster/node_emitter.js"))
            .args(["--redis", redis, "--op", &op.to_string()])
            .current_dir(interop_dir()),
    );
    proc.wait_line("`done`", |l| l.trim() == "done").await;
}

// ---------------------------------------------------------------------------------------
// tether nodes
// ---------------------------------------------------------------------------------------

/// The adapter of a test node: classic or sharded.
#[derive(Clone)]
enum NodeAdapter {
    Classic(RedisAdapter),
    Sharded(ShardedRedisAdapter),
}

impl NodeAdapter {
    fn uid(&self) -> &str {
        match self {
            NodeAdapter::Classic(a) => a.uid(),
            NodeAdapter::Sharded(a) => a.uid(),
        }
    }

    fn dropped(&self) -> u64 {
        match self {
            NodeAdapter::Classic(a) => a.dropped(),
            NodeAdapter::Sharded(a) => a.dropped(),
        }
    }

    fn is_connected(&self) -> bool {
        match self {
            NodeAdapter::Classic(a) => a.is_connected(),
            NodeAdapter::Sharded(a) => a.is_connected(),
        }
    }

    async fn ready(&self, timeout: Duration) -> Result<(), AdapterError> {
        match self {
            NodeAdapter::Classic(a) => a.ready(timeout).await,
            NodeAdapter::Sharded(a) => a.ready(timeout).await,
        }
    }
}

struct TetherNode {
    io: Io,
    adapter: NodeAdapter,
    server: ServerHandle,
    url: String,
    /// Server-side events received (`hello`).
    hellos: Arc<Mutex<Vec<Value>>>,
}

impl Drop for TetherNode {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

fn adapter_config() -> RedisAdapterConfig {
    RedisAdapterConfig {
        requests_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(300),
        ..RedisAdapterConfig::default()
    }
}

/// A tether node: the chat example's events plus `socket.data = {node, auth}`, and the
/// server-side events `ping-server` (answered `{node, arg}`) and `hello` (recorded).
async fn tether_node(redis: &str, name: &'static str) -> TetherNode {
    let adapter = RedisAdapter::connect_with(redis, adapter_config())
        .await
        .expect("connect to redis");
    tether_node_on(NodeAdapter::Classic(adapter), name).await
}

fn sharded_config(mode: SubscriptionMode) -> ShardedRedisAdapterConfig {
    ShardedRedisAdapterConfig {
        subscription_mode: mode,
        requests_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(300),
        ..ShardedRedisAdapterConfig::default()
    }
}

/// A tether node on the sharded adapter.
async fn sharded_tether_node(
    redis: &str,
    name: &'static str,
    mode: SubscriptionMode,
) -> TetherNode {
    let adapter = ShardedRedisAdapter::connect_with(redis, sharded_config(mode))
        .await
        .expect("connect to redis");
    tether_node_on(NodeAdapter::Sharded(adapter), name).await
}

async fn tether_node_on(adapter: NodeAdapter, name: &'static str) -> TetherNode {
    let io = match &adapter {
        NodeAdapter::Classic(a) => Io::builder().adapter(a.clone()).build(),
        NodeAdapter::Sharded(a) => Io::builder().adapter(a.clone()).build(),
    };
    io.ns("/", move |s| {
        s.set_data(json!({"node": name, "auth": s.handshake().auth}));
        handlers::on_connection(s);
    });
    let hellos = Arc::new(Mutex::new(Vec::new()));
    let h = hellos.clone();
    io.of("/")
        .on_server_side_emit("ping-server", move |_, ev| {
            if let Some(ack) = ev.ack {
                ack.send(&json!({"node": name, "arg": ev.args.values().first()}));
            }
        })
        .on_server_side_emit("hello", move |_, ev| {
            lock(&h).push(Value::Array(ev.args.into_values()))
        });
    adapter
        .ready(Duration::from_secs(5))
        .await
        .expect("subscriptions");
    let server = io.listen("127.0.0.1:0").await.expect("listen");
    let url = format!("http://{}", server.local_addr());
    TetherNode {
        io,
        adapter,
        server,
        url,
        hellos,
    }
}

// ---------------------------------------------------------------------------------------
// Test clients (tether's Socket.IO client)
// ---------------------------------------------------------------------------------------

struct Peer {
    client: Client,
    sock: ClientSocket,
    rx: mpsc::UnboundedReceiver<(String, Args)>,
    seen: Vec<(String, Args)>,
    disconnects: mpsc::UnboundedReceiver<String>,
}

impl Peer {
    async fn connect(url: &str, transport: TransportType, label: &str) -> Peer {
        let client = Client::builder(url)
            .transports([transport])
            .auth(json!({"label": label}))
            .reconnection(Reconnection {
                enabled: false,
                ..Reconnection::default()
            })
            .build()
            .expect("client");
        let sock = client.socket("/");
        let (tx, rx) = mpsc::unbounded_channel();
        sock.on_any(move |_, ev| {
            let _ = tx.send((ev.name.clone(), ev.args.clone()));
        });
        let label = label.to_owned();
        sock.on("ask", move |_, ev| {
            if let Some(ack) = ev.ack {
                let _ = ack.send_one(&json!({"from": label, "arg": ev.args.values().first()}));
            }
        });
        let (dtx, disconnects) = mpsc::unbounded_channel();
        sock.on_disconnect(move |_, reason| {
            let _ = dtx.send(reason.as_str().to_owned());
        });
        within(Duration::from_secs(10), "client connect", sock.connect())
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        Peer {
            client,
            sock,
            rx,
            seen: Vec::new(),
            disconnects,
        }
    }

    fn id(&self) -> String {
        self.sock.id().expect("connected").to_string()
    }

    /// The next `event` (events of other names are kept for later).
    async fn expect(&mut self, event: &str) -> Args {
        if let Some(i) = self.seen.iter().position(|(n, _)| n == event) {
            return self.seen.remove(i).1;
        }
        let what = format!("event {event:?}");
        within(Duration::from_secs(5), &what, async {
            loop {
                match self.rx.recv().await {
                    Some((n, a)) if n == event => return a,
                    Some(other) => self.seen.push(other),
                    None => panic!("client closed while waiting for {event}"),
                }
            }
        })
        .await
    }

    /// No `event` arrives within `d`.
    async fn expect_none(&mut self, event: &str, d: Duration) {
        let end = tokio::time::Instant::now() + d;
        while let Ok(Some((n, a))) = tokio::time::timeout_at(end, self.rx.recv()).await {
            assert_ne!(n, event, "unexpected {event}: {a:?}");
            self.seen.push((n, a));
        }
        assert!(
            !self.seen.iter().any(|(n, _)| n == event),
            "unexpected {event}"
        );
    }

    async fn expect_disconnect(&mut self) -> String {
        within(
            Duration::from_secs(5),
            "disconnect",
            self.disconnects.recv(),
        )
        .await
        .expect("disconnect reason")
    }

    /// A control request to a Node node (`ctl:*`), answered by its ack.
    async fn ctl(&self, op: &str, arg: Value) -> Value {
        let r = within(
            Duration::from_secs(10),
            op,
            self.sock
                .emit_with_ack(&format!("ctl:{op}"), vec![arg], Duration::from_secs(8)),
        )
        .await
        .unwrap_or_else(|e| panic!("ctl:{op}: {e}"));
        r.into_values().into_iter().next().unwrap_or(Value::Null)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.client.close();
    }
}

fn ws(url: &str, label: &str) -> impl Future<Output = Peer> {
    Peer::connect(url, TransportType::Websocket, label)
}

fn socket_rooms(io: &Io, id: &str) -> Vec<String> {
    io.of("/")
        .get_socket(id)
        .map(|s| s.rooms().iter().map(|r| r.to_string()).collect())
        .unwrap_or_default()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// Scenarios shared by the classic and the sharded adapter's tests
// ---------------------------------------------------------------------------------------

/// B broadcasts to r1 (which only `ca`, on A, is in) with a binary argument; then
/// `except` and `local` broadcasts from B.
async fn r1_news_and_flags(b: &TetherNode, ca: &mut Peer, cb: &mut Peer) {
    let args = Args::new()
        .value(json!("hi"))
        .bin(vec![1u8, 2, 3])
        .value(json!({"n": 1.5}));
    b.io.to("r1").emit_args("news", args).unwrap();
    let got = ca.expect("news").await;
    assert_eq!(got.values()[0], json!("hi"));
    assert_eq!(got.binary(1).map(|b| b.to_vec()), Some(vec![1, 2, 3]));
    assert_eq!(got.values()[2], json!({"n": 1.5}));
    cb.expect_none("news", Duration::from_millis(200)).await;

    // except, local.
    b.io.except("r1").emit("all-but", &1).unwrap();
    cb.expect("all-but").await;
    b.io.broadcast().local().emit("local-only", &1).unwrap();
    cb.expect("local-only").await;
    ca.expect_none("all-but", Duration::from_millis(200)).await;
    ca.expect_none("local-only", Duration::from_millis(10))
        .await;
}

/// fetchSockets from A lists `ida` (local) and `idb` (remote, with its handshake and
/// data); from B, r1 holds just `ida`. Returns both lists.
async fn fetch_on_two_nodes(
    a: &TetherNode,
    b: &TetherNode,
    ida: &str,
    idb: &str,
) -> (
    Vec<tether::adapter::RemoteSocket>,
    Vec<tether::adapter::RemoteSocket>,
) {
    let list = a.io.of("/").fetch_sockets().await.unwrap();
    let mut ids: Vec<String> = list.iter().map(|s| s.id.to_string()).collect();
    ids.sort();
    assert_eq!(ids, sorted(vec![ida.to_owned(), idb.to_owned()]));
    let rb = list.iter().find(|s| s.id.as_str() == idb).unwrap();
    assert!(!rb.is_local());
    assert_eq!(rb.data, json!({"node": "B", "auth": {"label": "cb"}}));
    assert_eq!(rb.handshake["auth"], json!({"label": "cb"}));
    let in_r1 = b.io.of("/").to("r1").fetch_sockets().await.unwrap();
    assert_eq!(
        in_r1.iter().map(|s| s.id.to_string()).collect::<Vec<_>>(),
        vec![ida.to_owned()]
    );
    (list, in_r1)
}

/// fetchSockets both ways between tether node `t` (socket `idt`, in n-room) and the Node
/// node of `cn` (socket `idn`, in t-room).
async fn mixed_fetch(t: &TetherNode, cn: &Peer, idt: &str, idn: &str) {
    let list = t.io.of("/").fetch_sockets().await.unwrap();
    let rn = list
        .iter()
        .find(|s| s.id.as_str() == idn)
        .expect("the Node socket");
    assert_eq!(rn.data, json!({"node": "node", "auth": {"label": "cn"}}));
    assert_eq!(rn.handshake["auth"], json!({"label": "cn"}));
    assert!(rn.rooms.iter().any(|r| r.as_str() == "t-room"));
    assert_eq!(list.len(), 2);
    let list = cn.ctl("fetchSockets", json!({})).await;
    let list = list.as_array().expect("list");
    let rt = list
        .iter()
        .find(|s| s["id"] == json!(idt))
        .expect("the tether socket");
    assert_eq!(rt["data"], json!({"node": "T", "auth": {"label": "ct"}}));
    assert_eq!(rt["auth"], json!({"label": "ct"}));
    assert!(rt["rooms"].as_array().unwrap().contains(&json!("n-room")));
}

/// tether broadcasts to t-room (the Node socket's) with a binary argument.
async fn t_room_news(t: &TetherNode, ct: &mut Peer, cn: &mut Peer) {
    t.io.to("t-room")
        .emit_args("news", Args::new().value(json!("from T")).bin(vec![9u8, 8]))
        .unwrap();
    let got = cn.expect("news").await;
    assert_eq!(got.values()[0], json!("from T"));
    assert_eq!(got.binary(1).map(|b| b.to_vec()), Some(vec![9, 8]));
    ct.expect_none("news", Duration::from_millis(150)).await;
}

/// Node makes the tether socket `idt` join n-room.
async fn node_joins_n_room(t: &TetherNode, cn: &Peer, idt: &str) {
    assert_eq!(
        cn.ctl("socketsJoin", json!({"rooms": [idt], "room": "n-room"}))
            .await,
        json!(true)
    );
    eventually(
        Duration::from_secs(3),
        "tether socket joined n-room",
        || socket_rooms(&t.io, idt).contains(&"n-room".to_owned()),
    )
    .await;
}

/// A broadcast with acks from `io` to every socket of the cluster: complete, answered by
/// the clients labelled `expected` (sorted).
async fn ask_everyone(io: &Io, arg: u64, expected: &[&str]) -> tether::sio::BroadcastAcks {
    let acks = io
        .broadcast()
        .timeout(Duration::from_secs(3))
        .emit_with_ack("ask", vec![json!(arg)])
        .await;
    assert!(acks.is_complete(), "{acks:?}");
    let mut froms: Vec<String> = acks
        .responses
        .iter()
        .map(|(_, a)| a.values()[0]["from"].as_str().unwrap_or("").to_owned())
        .collect();
    froms.sort();
    assert_eq!(froms, expected);
    acks
}

/// disconnectSockets from B disconnects `ca` (socket `ida`) on A; nothing was lost.
async fn b_disconnects_socket_on_a(a: &TetherNode, b: &TetherNode, ca: &mut Peer, ida: &str) {
    // disconnectSockets from B disconnects a socket on A.
    b.io.of("/").to(ida.to_owned()).disconnect();
    assert_eq!(ca.expect_disconnect().await, "io server disconnect");
    eventually(Duration::from_secs(3), "socket gone on A", || {
        a.io.of("/").get_socket(ida).is_none()
    })
    .await;
    assert_eq!(a.adapter.dropped(), 0);
    assert_eq!(b.adapter.dropped(), 0);
}

/// A channel and a message seen on Redis.
type Seen = (String, Vec<u8>);

/// The same broadcast to room r from the Node node (through `cn`) and from `t`, and
/// the message each published (`next` yields what Redis carries, in order).
async fn same_broadcast_to_r(
    t: &TetherNode,
    cn: &Peer,
    next: &mut impl AsyncFnMut() -> Seen,
) -> (Seen, Seen) {
    cn.ctl(
        "emit",
        json!({"rooms": ["r"], "event": "news", "args": ["hi", {"n": 1.5, "k": [true, null, -7]}]}),
    )
    .await;
    let (node_ch, node_msg) = next().await;
    t.io.to("r")
        .emit_args(
            "news",
            vec![json!("hi"), json!({"n": 1.5, "k": [true, null, -7]})],
        )
        .unwrap();
    let (t_ch, t_msg) = next().await;
    ((node_ch, node_msg), (t_ch, t_msg))
}

/// The same broadcast to rooms a and b except c, from the Node node and from `t`.
async fn same_broadcast_to_ab(
    t: &TetherNode,
    cn: &Peer,
    next: &mut impl AsyncFnMut() -> Seen,
) -> (Seen, Seen) {
    cn.ctl(
        "emit",
        json!({"rooms": ["a", "b"], "except": ["c"], "event": "e", "args": [1]}),
    )
    .await;
    let (node_ch, node_msg) = next().await;
    t.io.to("a").to("b").except("c").emit("e", &1).unwrap();
    let (t_ch, t_msg) = next().await;
    ((node_ch, node_msg), (t_ch, t_msg))
}

/// Redis stops: both nodes notice; a broadcast from B reaches `cb` only, its remote
/// copy is counted lost; fetchSockets fails as unavailable.
async fn redis_goes_down(
    redis: &mut RedisServer,
    a: &TetherNode,
    b: &TetherNode,
    ca: &mut Peer,
    cb: &mut Peer,
) {
    redis.stop();
    eventually(Duration::from_secs(5), "outage noticed", || {
        !a.adapter.is_connected() && !b.adapter.is_connected()
    })
    .await;
    b.io.emit("during", &2).unwrap();
    cb.expect("during").await;
    ca.expect_none("during", Duration::from_millis(300)).await;
    assert!(b.adapter.dropped() > 0, "the lost publish is counted");
    match b.io.of("/").fetch_sockets().await {
        Err(AdapterError::Unavailable(_)) => {}
        other => panic!("fetchSockets during the outage: {other:?}"),
    }
}

/// Redis restarts on the same port: both nodes reconnect and resubscribe.
async fn redis_comes_back(redis: &mut RedisServer, a: &TetherNode, b: &TetherNode) {
    redis.restart_after(Duration::from_millis(300));
    within(Duration::from_secs(10), "reconnect", async {
        while !(a.adapter.is_connected() && b.adapter.is_connected()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    a.adapter.ready(Duration::from_secs(5)).await.unwrap();
    b.adapter.ready(Duration::from_secs(5)).await.unwrap();
}

/// With a node that never answers (requests timeout 400 ms): fetchSockets times out,
/// serverSideEmit with acks reports one missing answer, a broadcast with acks ends at its
/// own timeout.
async fn requests_time_out(io: &Io) {
    let ns = io.of("/");
    let started = Instant::now();
    let (fetched, acks) = tokio::join!(
        ns.fetch_sockets(),
        ns.server_side_emit_with_ack("ping-server", vec![json!(1)]),
    );
    let took = started.elapsed();
    assert_eq!(
        fetched.unwrap_err(),
        AdapterError::Timeout("fetchSockets response")
    );
    let acks = acks.unwrap();
    assert_eq!((acks.responses.len(), acks.missing), (0, 1));
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // A broadcast with acks does not wait past its own timeout for the silent node.
    let started = Instant::now();
    let acks = io
        .broadcast()
        .timeout(Duration::from_millis(300))
        .emit_with_ack("ask", vec![json!(1)])
        .await;
    assert!(acks.responses.is_empty() && acks.missing == 1, "{acks:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Two nodes: serverSideEmit with acks both ways and without; a broadcast with acks from
/// A collects `ca`'s and `cb`'s replies (returned).
async fn two_nodes_server_side_and_acks(
    a: &TetherNode,
    b: &TetherNode,
) -> tether::sio::BroadcastAcks {
    // serverSideEmit with acks: the other node answers (both directions); without acks.
    let r =
        a.io.of("/")
            .server_side_emit_with_ack("ping-server", vec![json!(1)])
            .await
            .unwrap();
    assert_eq!(r.responses, vec![json!({"node": "B", "arg": 1})]);
    assert!(r.is_complete());
    let r =
        b.io.of("/")
            .server_side_emit_with_ack("ping-server", vec![json!(2)])
            .await
            .unwrap();
    assert_eq!(r.responses, vec![json!({"node": "A", "arg": 2})]);
    a.io.of("/")
        .server_side_emit("hello", vec![json!("from A")])
        .unwrap();
    eventually(Duration::from_secs(3), "hello on B", || {
        !lock(&b.hellos).is_empty()
    })
    .await;
    assert_eq!(lock(&b.hellos)[0], json!(["from A"]));
    assert!(
        lock(&a.hellos).is_empty(),
        "serverSideEmit does not reach the sender"
    );

    // Broadcast with acks collects from both nodes.
    ask_everyone(&a.io, 7, &["ca", "cb"]).await
}

/// tether node `t` and Node node (client `cn`): serverSideEmit with acks both ways and
/// without; broadcasts with acks both ways reach `ct` and `cn`.
async fn mixed_server_side_and_acks(t: &TetherNode, cn: &Peer) {
    // serverSideEmit with acks, both ways; and without.
    let r =
        t.io.of("/")
            .server_side_emit_with_ack("ping-server", vec![json!(1)])
            .await
            .unwrap();
    assert_eq!(r.responses, vec![json!({"node": "node", "arg": 1})]);
    let r = cn
        .ctl(
            "serverSideEmitWithAck",
            json!({"event": "ping-server", "args": [2]}),
        )
        .await;
    assert_eq!(r, json!({"responses": [{"node": "T", "arg": 2}]}));
    t.io.of("/")
        .server_side_emit("hello", vec![json!("from T"), json!(3)])
        .unwrap();
    let mut logged = false;
    for _ in 0..50 {
        let log = cn.ctl("serverSideLog", json!({})).await;
        if log
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == &json!({"event": "hello", "args": ["from T", 3]}))
        {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged, "Node did not get the server-side event");
    cn.ctl(
        "serverSideEmit",
        json!({"event": "hello", "args": ["from N"]}),
    )
    .await;
    eventually(Duration::from_secs(3), "hello on T", || {
        !lock(&t.hellos).is_empty()
    })
    .await;
    assert_eq!(lock(&t.hellos)[0], json!(["from N"]));

    // Broadcast with acks, both ways: every socket of both nodes answers.
    ask_everyone(&t.io, 5, &["cn", "ct"]).await;
    let r = cn
        .ctl(
            "emitWithAck",
            json!({"event": "ask", "args": [6], "timeout": 3000}),
        )
        .await;
    let mut froms: Vec<String> = r["responses"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|v| v["from"].as_str().unwrap_or("").to_owned())
        .collect();
    froms.sort();
    assert_eq!(froms, vec!["cn", "ct"]);
}

/// disconnectSockets both ways between tether node `t` and Node node `n`.
async fn mixed_disconnects(t: &TetherNode, n: &NodeNode, cn: &Peer) {
    // disconnectSockets both ways.
    let mut vt = ws(&t.url, "victim-t").await;
    let mut vn = ws(&n.url, "victim-n").await;
    cn.ctl("disconnectSockets", json!({"rooms": [vt.id()]}))
        .await;
    assert_eq!(vt.expect_disconnect().await, "io server disconnect");
    t.io.of("/").to(vn.id()).disconnect();
    assert_eq!(vn.expect_disconnect().await, "io server disconnect");
}

// ---------------------------------------------------------------------------------------
// Two tether nodes
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tether_nodes() {
    let redis = RedisServer::start();
    let a = tether_node(&redis.url(), "A").await;
    let b = tether_node(&redis.url(), "B").await;
    assert_eq!(a.io.of("/").server_count().await.unwrap(), 2);
    assert_ne!(a.adapter.uid(), b.adapter.uid());

    let mut ca = ws(&a.url, "ca").await;
    let mut cb = ws(&b.url, "cb").await;
    let (ida, idb) = (ca.id(), cb.id());

    // Remote join: B makes A's socket join r1; a broadcast sent on B to r1 reaches it.
    b.io.of("/").to(ida.clone()).join("r1");
    eventually(Duration::from_secs(3), "remote join", || {
        socket_rooms(&a.io, &ida).contains(&"r1".to_owned())
    })
    .await;
    r1_news_and_flags(&b, &mut ca, &mut cb).await;

    // The chat example's events across nodes.
    ca.sock.emit("chat message", &"hello all").unwrap();
    assert_eq!(
        cb.expect("chat message").await.values()[0],
        json!("hello all")
    );
    assert_eq!(
        ca.expect("chat message").await.values()[0],
        json!("hello all")
    );
    cb.sock.emit("joinRoom", &"lobby").unwrap();
    eventually(Duration::from_secs(3), "joinRoom", || {
        socket_rooms(&b.io, &idb).contains(&"lobby".to_owned())
    })
    .await;
    ca.sock
        .emit(
            "roomMessage",
            &json!({"room": "lobby", "message": "in lobby"}),
        )
        .unwrap();
    let m = cb.expect("roomMessage").await;
    assert_eq!(m.values()[0], json!({"sender": ida, "message": "in lobby"}));
    cb.sock
        .emit(
            "privateMessage",
            &json!({"recipientId": ida, "message": "psst"}),
        )
        .unwrap();
    let m = ca.expect("privateMessage").await;
    assert_eq!(m.values()[0], json!({"sender": idb, "message": "psst"}));

    // fetchSockets from A lists both, with handshake, rooms and data.
    let (list, in_r1) = fetch_on_two_nodes(&a, &b, &ida, &idb).await;
    let rb = list.iter().find(|s| s.id.as_str() == idb).unwrap();
    assert!(rb.rooms.iter().any(|r| r.as_str() == "lobby"));
    let ra = list.iter().find(|s| s.id.as_str() == ida).unwrap();
    assert!(ra.is_local());
    // A remote socket handle emits wherever the socket is.
    in_r1[0].emit("via-remote", &true).unwrap();
    ca.expect("via-remote").await;
    let rooms: Vec<String> =
        a.io.of("/")
            .all_rooms()
            .await
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
    assert!(
        rooms.contains(&"r1".into()) && rooms.contains(&"lobby".into()),
        "{rooms:?}"
    );

    let acks = two_nodes_server_side_and_acks(&a, &b).await;
    // The local reply carries its socket id; the remote one cannot.
    assert!(acks.responses.iter().any(|(sid, _)| sid.as_str() == ida));

    // socketsLeave from A on B's socket.
    a.io.of("/").to(idb.clone()).leave("lobby");
    eventually(Duration::from_secs(3), "remote leave", || {
        !socket_rooms(&b.io, &idb).contains(&"lobby".to_owned())
    })
    .await;

    b_disconnects_socket_on_a(&a, &b, &mut ca, &ida).await;
}

// ---------------------------------------------------------------------------------------
// Mixed cluster: tether + Node socket.io with @socket.io/redis-adapter
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_cluster_with_node() {
    let redis = RedisServer::start();
    let t = tether_node(&redis.url(), "T").await;
    let n = node_node(&redis.url()).await;
    let mut ct = ws(&t.url, "ct").await;
    let mut cn = ws(&n.url, "cn").await;
    let (idt, idn) = (ct.id(), cn.id());
    assert_eq!(t.io.of("/").server_count().await.unwrap(), 2);
    assert_eq!(cn.ctl("serverCount", json!({})).await, json!(2));

    // tether -> Node: remote join of the Node socket, then a broadcast to that room.
    t.io.of("/").to(idn.clone()).join("t-room");
    let mut joined = false;
    for _ in 0..50 {
        let list = cn.ctl("fetchSockets", json!({"rooms": ["t-room"]})).await;
        if list
            .as_array()
            .is_some_and(|l| l.len() == 1 && l[0]["id"] == json!(idn))
        {
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(joined, "the Node socket did not join t-room");
    t_room_news(&t, &mut ct, &mut cn).await;

    // Node -> tether: Node makes the tether socket join n-room, then emits to it.
    node_joins_n_room(&t, &cn, &idt).await;
    cn.ctl(
        "emit",
        json!({"rooms": ["n-room"], "event": "news", "args": ["from N", {"deep": [1, 2.5]}]}),
    )
    .await;
    let got = ct.expect("news").await;
    assert_eq!(
        got.values(),
        vec![json!("from N"), json!({"deep": [1, 2.5]})]
    );
    // except, from Node.
    cn.ctl(
        "emit",
        json!({"except": ["n-room"], "event": "all-but", "args": []}),
    )
    .await;
    cn.expect("all-but").await;
    ct.expect_none("all-but", Duration::from_millis(200)).await;

    // Chat across implementations.
    ct.sock.emit("chat message", &"tether says hi").unwrap();
    assert_eq!(
        cn.expect("chat message").await.values()[0],
        json!("tether says hi")
    );
    cn.sock.emit("chat message", &"node says hi").unwrap();
    let mut texts = vec![];
    for _ in 0..2 {
        texts.push(ct.expect("chat message").await.values()[0].clone());
    }
    assert!(texts.contains(&json!("node says hi")), "{texts:?}");
    cn.sock
        .emit(
            "privateMessage",
            &json!({"recipientId": idt, "message": "psst"}),
        )
        .unwrap();
    assert_eq!(
        ct.expect("privateMessage").await.values()[0],
        json!({"sender": idn, "message": "psst"})
    );

    // fetchSockets both ways.
    mixed_fetch(&t, &cn, &idt, &idn).await;
    let rooms = cn.ctl("allRooms", json!({})).await;
    assert!(
        rooms.as_array().unwrap().contains(&json!("n-room")),
        "{rooms}"
    );
    let rooms: Vec<String> =
        t.io.of("/")
            .all_rooms()
            .await
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
    assert!(rooms.contains(&"t-room".to_owned()), "{rooms:?}");

    mixed_server_side_and_acks(&t, &cn).await;

    mixed_disconnects(&t, &n, &cn).await;
    ct.expect_none("news", Duration::from_millis(10)).await;
    assert!(ct.sock.connected() && cn.sock.connected());
}

// ---------------------------------------------------------------------------------------
// The bytes on Redis: tether publishes what Node publishes
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_format_matches_node() {
    let redis = RedisServer::start();
    let t = tether_node(&redis.url(), "T").await;
    let n = node_node(&redis.url()).await;
    let cn = ws(&n.url, "cn").await;

    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("socket.io*").await.unwrap();
    let mut stream = pubsub.into_on_message();
    let mut next = async || -> (String, Vec<u8>) {
        let m = within(Duration::from_secs(5), "a message on redis", stream.next())
            .await
            .expect("message");
        (
            m.get_channel_name().to_owned(),
            m.get_payload_bytes().to_vec(),
        )
    };
    // Replace the 6-character uid at the start of a broadcast message.
    let without_uid = |b: &[u8]| -> Vec<u8> {
        assert_eq!(&b[..2], b"\x93\xa6", "a 3-array starting with a 6-char uid");
        [&b[..2], b"UIDUID", &b[8..]].concat()
    };

    // The same broadcast to one room, from Node and from tether.
    let ((node_ch, node_msg), (t_ch, t_msg)) = same_broadcast_to_r(&t, &cn, &mut next).await;
    assert_eq!(node_ch, "socket.io#/#r#");
    assert_eq!(t_ch, node_ch);
    assert_eq!(
        without_uid(&t_msg),
        without_uid(&node_msg),
        "broadcast bytes differ"
    );
    assert_eq!(&t_msg[2..8], t.adapter.uid().as_bytes());

    // Several rooms and an exception (the shared channel).
    let ((node_ch, node_msg), (t_ch, t_msg)) = same_broadcast_to_ab(&t, &cn, &mut next).await;
    assert_eq!(node_ch, "socket.io#/#");
    assert_eq!(t_ch, node_ch);
    assert_eq!(without_uid(&t_msg), without_uid(&node_msg));

    // Binary arguments travel as msgpack bin, in place.
    t.io.broadcast()
        .emit_args("b", Args::new().bin(vec![0xffu8, 0]))
        .unwrap();
    let (_, t_msg) = next().await;
    let v = rmpv::decode::read_value(&mut t_msg.as_slice()).unwrap();
    assert_eq!(v[1]["data"][1], rmpv::Value::Binary(vec![0xff, 0]));
    assert_eq!(v[1]["type"], rmpv::Value::from(2));
}

// ---------------------------------------------------------------------------------------
// Through nginx with sticky sessions
// ---------------------------------------------------------------------------------------

struct Nginx {
    _proc: Proc,
    _dir: TempDir,
    url: String,
}

async fn nginx(node_a: &str, node_b: &str) -> Nginx {
    let bin =
        find_program("nginx").unwrap_or_else(|| panic!("nginx is not installed: {SETUP_HINT}"));
    let dir = TempDir::new("nginx");
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster/nginx.conf.template"),
    )
    .expect("examples/cluster/nginx.conf.template");
    let port = free_port();
    let conf = template
        .replace("@DIR@", &dir.0.display().to_string())
        .replace("@PORT@", &port.to_string())
        .replace("@NODE_A@", node_a)
        .replace("@NODE_B@", node_b);
    let conf_path = dir.0.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let proc = Proc::spawn(
        "nginx",
        Command::new(bin)
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&conf_path),
    );
    let end = Instant::now() + Duration::from_secs(10);
    while StdTcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > end {
            let log = std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default();
            panic!("nginx did not start: {log}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Nginx {
        _proc: proc,
        _dir: dir,
        url: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_sticky_sessions() {
    let redis = RedisServer::start();
    let a = tether_node(&redis.url(), "A").await;
    let b = tether_node(&redis.url(), "B").await;
    let lb = nginx(
        a.url.trim_start_matches("http://"),
        b.url.trim_start_matches("http://"),
    )
    .await;
    let on = |id: &str| -> &'static str {
        if a.io.of("/").get_socket(id).is_some() {
            "A"
        } else if b.io.of("/").get_socket(id).is_some() {
            "B"
        } else {
            "none"
        }
    };

    // WebSocket-only clients: no stickiness needed; spread round-robin.
    let mut wss = Vec::new();
    for i in 0..4 {
        wss.push(ws(&lb.url, &format!("ws{i}")).await);
    }
    let homes: Vec<&str> = wss.iter().map(|p| on(&p.id())).collect();
    assert!(
        homes.contains(&"A") && homes.contains(&"B"),
        "not spread: {homes:?}"
    );

    // Polling clients: every request of a session reaches its node (ip_hash).
    let mut polls = Vec::new();
    for i in 0..3 {
        polls.push(Peer::connect(&lb.url, TransportType::Polling, &format!("poll{i}")).await);
    }
    let poll_homes: Vec<&str> = polls.iter().map(|p| on(&p.id())).collect();
    assert!(
        poll_homes
            .iter()
            .all(|h| *h == poll_homes[0] && *h != "none"),
        "{poll_homes:?}"
    );

    // Everyone talks to everyone, for a while: polling sessions keep working.
    for round in 0..3 {
        let text = format!("round {round}");
        polls[round % polls.len()]
            .sock
            .emit("chat message", &text)
            .unwrap();
        for p in polls.iter_mut().chain(wss.iter_mut()) {
            assert_eq!(p.expect("chat message").await.values()[0], json!(text));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acks =
        a.io.broadcast()
            .timeout(Duration::from_secs(3))
            .emit_with_ack("ask", vec![json!(1)])
            .await;
    assert!(acks.is_complete(), "{acks:?}");
    assert_eq!(acks.responses.len(), 7);
    for p in &polls {
        assert!(p.sock.connected());
        assert_eq!(p.client.transport(), Some(TransportType::Polling));
        assert_eq!(on(&p.id()), poll_homes[0], "a polling client moved");
    }
}

// ---------------------------------------------------------------------------------------
// Redis restarted mid-run
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_recovers() {
    let mut redis = RedisServer::start();
    let a = tether_node(&redis.url(), "A").await;
    let b = tether_node(&redis.url(), "B").await;
    let mut ca = ws(&a.url, "ca").await;
    let mut cb = ws(&b.url, "cb").await;

    b.io.emit("before", &1).unwrap();
    ca.expect("before").await;
    cb.expect("before").await;

    // Outage: the local part of a broadcast still works; the remote part is lost.
    redis_goes_down(&mut redis, &a, &b, &mut ca, &mut cb).await;
    assert!(
        b.io.of("/")
            .server_side_emit("hello", vec![json!(1)])
            .is_err()
    );
    // Acks: this node's sockets only.
    let acks =
        b.io.broadcast()
            .timeout(Duration::from_secs(2))
            .emit_with_ack("ask", vec![json!(0)])
            .await;
    assert_eq!(acks.responses.len(), 1, "{acks:?}");

    // Recovery: both adapters reconnect and resubscribe; broadcasts flow again.
    redis_comes_back(&mut redis, &a, &b).await;
    b.io.emit("after", &3).unwrap();
    ca.expect("after").await;
    cb.expect("after").await;
    a.io.emit("after-a", &4).unwrap();
    cb.expect("after-a").await;
    assert_eq!(b.io.of("/").fetch_sockets().await.unwrap().len(), 2);
    assert!(ca.sock.connected() && cb.sock.connected());
}

// ---------------------------------------------------------------------------------------
// Emitters
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitters_reach_both_nodes() {
    let redis = RedisServer::start();
    let t = tether_node(&redis.url(), "T").await;
    let n = node_node(&redis.url()).await;
    let mut ct = ws(&t.url, "ct").await;
    let mut cn = ws(&n.url, "cn").await;
    let (idt, idn) = (ct.id(), cn.id());

    // tether's emitter, to everyone (with a binary argument).
    let emitter = RedisEmitter::connect(&redis.url()).await.unwrap();
    emitter
        .emit_args(
            "from-emitter",
            Args::new().value(json!("all")).bin(vec![4u8, 2]),
        )
        .await
        .unwrap();
    for c in [&mut ct, &mut cn] {
        let got = c.expect("from-emitter").await;
        assert_eq!(got.values()[0], json!("all"));
        assert_eq!(got.binary(1).map(|b| b.to_vec()), Some(vec![4, 2]));
    }
    // socketsJoin through the emitter, then to that room (one on each node), except one.
    emitter
        .to(idt.clone())
        .sockets_join("e-room")
        .await
        .unwrap();
    emitter
        .to(idn.clone())
        .sockets_join("e-room")
        .await
        .unwrap();
    eventually(Duration::from_secs(3), "tether socket in e-room", || {
        socket_rooms(&t.io, &idt).contains(&"e-room".to_owned())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    emitter.to("e-room").emit("room-news", &1).await.unwrap();
    ct.expect("room-news").await;
    cn.expect("room-news").await;
    emitter
        .to("e-room")
        .except(idt.clone())
        .emit("room-news-2", &2)
        .await
        .unwrap();
    cn.expect("room-news-2").await;
    ct.expect_none("room-news-2", Duration::from_millis(200))
        .await;
    // Server-side events through the emitter reach every node.
    emitter
        .server_side_emit("hello", vec![json!("from emitter")])
        .await
        .unwrap();
    eventually(Duration::from_secs(3), "hello on T", || {
        !lock(&t.hellos).is_empty()
    })
    .await;
    assert_eq!(lock(&t.hellos)[0], json!(["from emitter"]));
    assert!(
        emitter.emit("disconnect", &1).await.is_err(),
        "reserved names are refused"
    );

    // Node's @socket.io/redis-emitter reaches the tether node too.
    node_emitter(
        &redis.url(),
        json!({"op": "emit", "event": "from-node-emitter", "args": ["x"], "binary": "AQI="}),
    )
    .await;
    for c in [&mut ct, &mut cn] {
        let got = c.expect("from-node-emitter").await;
        assert_eq!(got.values()[0], json!("x"));
        assert_eq!(got.binary(1).map(|b| b.to_vec()), Some(vec![1, 2]));
    }
    node_emitter(
        &redis.url(),
        json!({"op": "socketsJoin", "rooms": [idt], "room": "ne-room"}),
    )
    .await;
    eventually(Duration::from_secs(3), "tether socket in ne-room", || {
        socket_rooms(&t.io, &idt).contains(&"ne-room".to_owned())
    })
    .await;
    node_emitter(
        &redis.url(),
        json!({"op": "emit", "rooms": ["ne-room"], "event": "ne", "args": [1]}),
    )
    .await;
    ct.expect("ne").await;
    cn.expect_none("ne", Duration::from_millis(200)).await;
}

// ---------------------------------------------------------------------------------------
// Request timeouts
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_time_out_when_a_node_is_silent() {
    let redis = RedisServer::start();
    let adapter = RedisAdapter::connect_with(
        &redis.url(),
        RedisAdapterConfig {
            requests_timeout: Duration::from_millis(400),
            ..adapter_config()
        },
    )
    .await
    .unwrap();
    let io = Io::builder().adapter(adapter.clone()).build();
    adapter.ready(Duration::from_secs(5)).await.unwrap();
    // A "node" that subscribes to the request channel (so it is counted) but never answers.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut silent = client.get_async_pubsub().await.unwrap();
    silent.subscribe("socket.io-request#/#").await.unwrap();
    assert_eq!(io.of("/").server_count().await.unwrap(), 2);

    requests_time_out(&io).await;
    let rooms = io.of("/").all_rooms().await;
    assert!(matches!(rooms, Err(AdapterError::Timeout(_))), "{rooms:?}");
    drop(silent);
}

// ---------------------------------------------------------------------------------------
// The sharded adapter (Redis >= 7 sharded pub/sub, Node's `createShardedAdapter`)
// ---------------------------------------------------------------------------------------

/// The shard channels somebody is subscribed to (`PUBSUB SHARDCHANNELS`).
async fn shard_channels(redis: &str) -> Vec<String> {
    let client = redis::Client::open(redis).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut v: Vec<String> = redis::cmd("PUBSUB")
        .arg("SHARDCHANNELS")
        .query_async(&mut conn)
        .await
        .unwrap();
    v.sort();
    v
}

/// Wait until `channel` is (or is not) a subscribed shard channel.
async fn wait_shard_channel(redis: &str, channel: &str, subscribed: bool) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let list = shard_channels(redis).await;
        if list.iter().any(|c| c == channel) == subscribed {
            return;
        }
        assert!(
            Instant::now() < end,
            "{channel} subscribed should be {subscribed}: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Dynamic mode follows room creation and deletion at once (the adapter's room hook), not
/// only on its periodic comparison, which is switched off here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_rooms_are_followed_at_once() {
    let redis = RedisServer::start();
    let url = redis.url();
    let config = ShardedRedisAdapterConfig {
        room_sync_interval: Duration::from_secs(3600),
        ..sharded_config(SubscriptionMode::Dynamic)
    };
    let adapter = ShardedRedisAdapter::connect_with(&url, config)
        .await
        .expect("connect to redis");
    let a = tether_node_on(NodeAdapter::Sharded(adapter), "A").await;
    let b = sharded_tether_node(&url, "B", SubscriptionMode::Dynamic).await;
    a.adapter.ready(Duration::from_secs(3)).await.unwrap();
    let mut ca = ws(&a.url, "ca").await;
    let ida = ca.id();
    let sock = a.io.of("/").get_socket(&ida).expect("socket on A");

    sock.join("fast");
    wait_shard_channel(&url, "socket.io#/#fast#", true).await;
    b.io.to("fast").emit("news", &1).unwrap();
    assert_eq!(ca.expect("news").await.values(), [json!(1)]);
    // A socket's own room has no channel in dynamic mode.
    assert!(
        !shard_channels(&url)
            .await
            .contains(&format!("socket.io#/#{ida}#"))
    );
    sock.leave("fast");
    wait_shard_channel(&url, "socket.io#/#fast#", false).await;

    // A room deleted by its last member's disconnection loses its channel.
    sock.join("gone");
    wait_shard_channel(&url, "socket.io#/#gone#", true).await;
    sock.disconnect();
    ca.expect_disconnect().await;
    wait_shard_channel(&url, "socket.io#/#gone#", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_two_tether_nodes() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = sharded_tether_node(&url, "A", SubscriptionMode::Dynamic).await;
    let b = sharded_tether_node(&url, "B", SubscriptionMode::Dynamic).await;
    assert_eq!(a.io.of("/").server_count().await.unwrap(), 2);
    assert_ne!(a.adapter.uid(), b.adapter.uid());
    assert_eq!(a.adapter.uid().len(), 16);
    let channels = shard_channels(&url).await;
    assert!(
        channels.contains(&"socket.io#/#".to_owned()),
        "{channels:?}"
    );
    let own = format!("socket.io#/#{}#", a.adapter.uid());
    assert!(channels.contains(&own), "{channels:?}");

    let mut ca = ws(&a.url, "ca").await;
    let mut cb = ws(&b.url, "cb").await;
    let (ida, idb) = (ca.id(), cb.id());

    // Remote join: B makes A's socket join r1; A subscribes r1's own channel (dynamic
    // mode, a public room), B does not have the room; a broadcast from B reaches it.
    b.io.of("/").to(ida.clone()).join("r1");
    eventually(Duration::from_secs(3), "remote join", || {
        socket_rooms(&a.io, &ida).contains(&"r1".to_owned())
    })
    .await;
    a.adapter.ready(Duration::from_secs(3)).await.unwrap();
    wait_shard_channel(&url, "socket.io#/#r1#", true).await;
    // Private rooms (socket ids) have no channel in dynamic mode.
    assert!(
        !shard_channels(&url)
            .await
            .contains(&format!("socket.io#/#{ida}#"))
    );
    r1_news_and_flags(&b, &mut ca, &mut cb).await;
    // To a socket id: the namespace's channel.
    b.io.to(ida.clone()).emit("direct", &1).unwrap();
    ca.expect("direct").await;

    // fetchSockets from A lists both, with handshake, rooms and data.
    fetch_on_two_nodes(&a, &b, &ida, &idb).await;

    // serverSideEmit with acks both ways, and without; broadcasts with acks (also to one
    // room: the namespace's channel, not the room's).
    two_nodes_server_side_and_acks(&a, &b).await;
    let acks =
        b.io.to("r1")
            .timeout(Duration::from_secs(3))
            .emit_with_ack("ask", vec![json!(8)])
            .await;
    assert!(acks.is_complete(), "{acks:?}");
    assert_eq!(acks.responses.len(), 1);
    assert_eq!(acks.responses[0].1.values()[0]["from"], json!("ca"));

    // socketsLeave: A's socket leaves r1, A drops the room's channel.
    b.io.of("/").to(ida.clone()).leave("r1");
    eventually(Duration::from_secs(3), "remote leave", || {
        !socket_rooms(&a.io, &ida).contains(&"r1".to_owned())
    })
    .await;
    a.adapter.ready(Duration::from_secs(3)).await.unwrap();
    wait_shard_channel(&url, "socket.io#/#r1#", false).await;

    b_disconnects_socket_on_a(&a, &b, &mut ca, &ida).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_mixed_cluster_with_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let t = sharded_tether_node(&url, "T", SubscriptionMode::Dynamic).await;
    let n = node_node_with(&url, &["--sharded"]).await;
    let mut ct = ws(&t.url, "ct").await;
    let mut cn = ws(&n.url, "cn").await;
    let (idt, idn) = (ct.id(), cn.id());
    assert_eq!(t.io.of("/").server_count().await.unwrap(), 2);
    assert_eq!(cn.ctl("serverCount", json!({})).await, json!(2));

    // tether -> Node: remote join of the Node socket (Node subscribes the room's
    // channel), then a broadcast to that room on its dynamic channel, with binary.
    t.io.of("/").to(idn.clone()).join("t-room");
    wait_shard_channel(&url, "socket.io#/#t-room#", true).await;
    t_room_news(&t, &mut ct, &mut cn).await;

    // Node -> tether: Node makes the tether socket join n-room; tether subscribes the
    // room's channel; Node's broadcast to it (dynamic channel) arrives.
    node_joins_n_room(&t, &cn, &idt).await;
    t.adapter.ready(Duration::from_secs(3)).await.unwrap();
    wait_shard_channel(&url, "socket.io#/#n-room#", true).await;
    cn.ctl(
        "emit",
        json!({"rooms": ["n-room"], "event": "news", "args": ["from N", {"deep": [1, 2.5]}]}),
    )
    .await;
    let got = ct.expect("news").await;
    assert_eq!(
        got.values(),
        vec![json!("from N"), json!({"deep": [1, 2.5]})]
    );
    // A room joined locally on tether: the channel follows, Node's broadcast arrives.
    ct.sock.emit("joinRoom", &"lobby").unwrap();
    eventually(Duration::from_secs(3), "joinRoom", || {
        socket_rooms(&t.io, &idt).contains(&"lobby".to_owned())
    })
    .await;
    wait_shard_channel(&url, "socket.io#/#lobby#", true).await;
    cn.sock
        .emit(
            "roomMessage",
            &json!({"room": "lobby", "message": "in lobby"}),
        )
        .unwrap();
    assert_eq!(
        ct.expect("roomMessage").await.values()[0],
        json!({"sender": idn, "message": "in lobby"})
    );
    // except, from Node; a private message (a socket id: the namespace's channel).
    cn.ctl(
        "emit",
        json!({"except": ["n-room"], "event": "all-but", "args": []}),
    )
    .await;
    cn.expect("all-but").await;
    ct.expect_none("all-but", Duration::from_millis(200)).await;
    cn.sock
        .emit(
            "privateMessage",
            &json!({"recipientId": idt, "message": "psst"}),
        )
        .unwrap();
    assert_eq!(
        ct.expect("privateMessage").await.values()[0],
        json!({"sender": idn, "message": "psst"})
    );
    ct.sock.emit("chat message", &"tether says hi").unwrap();
    assert_eq!(
        cn.expect("chat message").await.values()[0],
        json!("tether says hi")
    );

    // fetchSockets both ways.
    mixed_fetch(&t, &cn, &idt, &idn).await;

    mixed_server_side_and_acks(&t, &cn).await;

    // socketsLeave from Node: the tether socket leaves, tether drops the channel.
    cn.ctl("socketsLeave", json!({"rooms": [idt], "room": "n-room"}))
        .await;
    eventually(Duration::from_secs(3), "left n-room", || {
        !socket_rooms(&t.io, &idt).contains(&"n-room".to_owned())
    })
    .await;
    wait_shard_channel(&url, "socket.io#/#n-room#", false).await;

    mixed_disconnects(&t, &n, &cn).await;
    assert!(ct.sock.connected() && cn.sock.connected());
    assert_eq!(t.adapter.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_static_mode_and_redis_restart() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let a = sharded_tether_node(&url, "A", SubscriptionMode::Static).await;
    let b = sharded_tether_node(&url, "B", SubscriptionMode::Static).await;
    let mut ca = ws(&a.url, "ca").await;
    let mut cb = ws(&b.url, "cb").await;
    ca.sock.emit("joinRoom", &"lobby").unwrap();
    eventually(Duration::from_secs(3), "joinRoom", || {
        socket_rooms(&a.io, &ca.id()).contains(&"lobby".to_owned())
    })
    .await;
    a.adapter.ready(Duration::from_secs(3)).await.unwrap();
    // Static: no room channels; a room broadcast travels on the namespace's channel.
    assert_eq!(
        shard_channels(&url).await,
        sorted(vec![
            "socket.io#/#".to_owned(),
            format!("socket.io#/#{}#", a.adapter.uid()),
            format!("socket.io#/#{}#", b.adapter.uid()),
        ])
    );
    b.io.to("lobby").emit("news", &1).unwrap();
    ca.expect("news").await;

    // Outage: local delivery still works, the remote part is lost and counted,
    // requests fail.
    redis_goes_down(&mut redis, &a, &b, &mut ca, &mut cb).await;

    // Recovery: resubscribed, broadcasts and requests flow again.
    redis_comes_back(&mut redis, &a, &b).await;
    b.io.to("lobby").emit("after", &3).unwrap();
    ca.expect("after").await;
    assert_eq!(b.io.of("/").fetch_sockets().await.unwrap().len(), 2);
    assert!(ca.sock.connected() && cb.sock.connected());
}

/// A RESP3 connection subscribed (`SSUBSCRIBE`) to `channels`; its messages arrive on
/// the returned receiver as (channel, payload).
async fn shard_listener(
    redis: &str,
    channels: &[&str],
) -> (
    redis::aio::MultiplexedConnection,
    mpsc::UnboundedReceiver<redis::PushInfo>,
) {
    let client = redis::Client::open(format!("{redis}/?protocol=resp3")).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let cfg = redis::AsyncConnectionConfig::new().set_push_sender(tx);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .unwrap();
    for ch in channels {
        redis::cmd("SSUBSCRIBE")
            .arg(*ch)
            .exec_async(&mut conn)
            .await
            .unwrap();
    }
    (conn, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_wire_format_matches_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let t = sharded_tether_node(&url, "T", SubscriptionMode::Dynamic).await;
    let n = node_node_with(&url, &["--sharded"]).await;
    let cn = ws(&n.url, "cn").await;
    let (_conn, mut rx) = shard_listener(&url, &["socket.io#/#", "socket.io#/#r#"]).await;
    let mut next = async || -> (String, Vec<u8>) {
        loop {
            let p = within(Duration::from_secs(5), "a message on redis", rx.recv())
                .await
                .expect("message");
            if let Some(m) = redis::Msg::from_push_info(p) {
                return (
                    m.get_channel_name().to_owned(),
                    m.get_payload_bytes().to_vec(),
                );
            }
        }
    };
    // A JSON message without its sender's uid.
    let without_uid = |b: &[u8]| -> Value {
        let mut v: Value = serde_json::from_slice(b)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)));
        let uid = v["uid"].as_str().expect("uid").to_owned();
        assert_eq!(uid.len(), 16, "{v}");
        v["uid"] = json!("UID");
        v
    };

    // The same broadcast to one room: the room's own channel, the same message.
    let ((node_ch, node_msg), (t_ch, t_msg)) = same_broadcast_to_r(&t, &cn, &mut next).await;
    assert_eq!(node_ch, "socket.io#/#r#");
    assert_eq!(t_ch, node_ch);
    assert_eq!(without_uid(&t_msg), without_uid(&node_msg));
    assert_eq!(
        without_uid(&t_msg),
        json!({"uid": "UID", "nsp": "/", "type": 3, "data": {
            "packet": {"type": 2, "data": ["news", "hi", {"n": 1.5, "k": [true, null, -7]}]},
            "opts": {"rooms": ["r"], "except": [], "flags": {}},
        }})
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&t_msg).unwrap()["uid"],
        json!(t.adapter.uid())
    );

    // Several rooms and an exception: the namespace's channel.
    let ((node_ch, node_msg), (t_ch, t_msg)) = same_broadcast_to_ab(&t, &cn, &mut next).await;
    assert_eq!(node_ch, "socket.io#/#");
    assert_eq!(t_ch, node_ch);
    assert_eq!(without_uid(&t_msg), without_uid(&node_msg));

    // Room operations and server-side events.
    cn.ctl("socketsJoin", json!({"rooms": ["a"], "room": "b"}))
        .await;
    let (_, node_msg) = next().await;
    t.io.of("/").to("a").join("b");
    let (_, t_msg) = next().await;
    assert_eq!(without_uid(&t_msg), without_uid(&node_msg));
    cn.ctl(
        "serverSideEmit",
        json!({"event": "hello", "args": ["x", 2]}),
    )
    .await;
    let (_, node_msg) = next().await;
    t.io.of("/")
        .server_side_emit("hello", vec![json!("x"), json!(2)])
        .unwrap();
    let (_, t_msg) = next().await;
    assert_eq!(without_uid(&t_msg), without_uid(&node_msg));

    // Binary arguments: msgpack, `bin` in place.
    t.io.broadcast()
        .emit_args("b", Args::new().bin(vec![0xffu8, 0]))
        .unwrap();
    let (ch, t_msg) = next().await;
    assert_eq!(ch, "socket.io#/#");
    let v = rmpv::decode::read_value(&mut t_msg.as_slice()).unwrap();
    assert_eq!(v["type"], rmpv::Value::from(3));
    assert_eq!(
        v["data"]["packet"]["data"][1],
        rmpv::Value::Binary(vec![0xff, 0])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_requests_time_out_when_a_node_is_silent() {
    let redis = RedisServer::start();
    let adapter = ShardedRedisAdapter::connect_with(
        &redis.url(),
        ShardedRedisAdapterConfig {
            requests_timeout: Duration::from_millis(400),
            ..sharded_config(SubscriptionMode::Dynamic)
        },
    )
    .await
    .unwrap();
    let io = Io::builder().adapter(adapter.clone()).build();
    adapter.ready(Duration::from_secs(5)).await.unwrap();
    // A "node" subscribed to the namespace's channel (so it is counted) that never answers.
    let (_silent, _rx) = shard_listener(&redis.url(), &["socket.io#/#"]).await;
    assert_eq!(io.of("/").server_count().await.unwrap(), 2);

    requests_time_out(&io).await;
    // Malformed messages on its channels are ignored; the adapter keeps working.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let own = format!("socket.io#/#{}#", adapter.uid());
    for (ch, payload) in [
        ("socket.io#/#", b"{not json".to_vec()),
        ("socket.io#/#", b"\xc1\xff\x00".to_vec()),
        (
            "socket.io#/#",
            br#"{"uid":"x","nsp":"/","type":3,"data":{"packet":7}}"#.to_vec(),
        ),
        (
            "socket.io#/#",
            br#"{"uid":"x","nsp":"/","type":9,"data":null}"#.to_vec(),
        ),
        (
            own.as_str(),
            br#"{"uid":"x","nsp":"/","type":8,"data":{"requestId":"nope"}}"#.to_vec(),
        ),
        (own.as_str(), b"\xdd\xff\xff\xff\xff".to_vec()),
    ] {
        redis::cmd("SPUBLISH")
            .arg(ch)
            .arg(payload)
            .exec_async(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(io.of("/").server_count().await.unwrap(), 2);
    assert!(adapter.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_dynamic_private_with_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let t = sharded_tether_node(&url, "T", SubscriptionMode::DynamicPrivate).await;
    let n = node_node_with(&url, &["--sharded", "--mode", "dynamic-private"]).await;
    let mut ct = ws(&t.url, "ct").await;
    let mut cn = ws(&n.url, "cn").await;
    let (idt, idn) = (ct.id(), cn.id());
    // Every room has its own channel, socket ids too, on both implementations.
    wait_shard_channel(&url, &format!("socket.io#/#{idt}#"), true).await;
    wait_shard_channel(&url, &format!("socket.io#/#{idn}#"), true).await;
    cn.sock
        .emit(
            "privateMessage",
            &json!({"recipientId": idt, "message": "to T"}),
        )
        .unwrap();
    assert_eq!(
        ct.expect("privateMessage").await.values()[0],
        json!({"sender": idn, "message": "to T"})
    );
    ct.sock
        .emit(
            "privateMessage",
            &json!({"recipientId": idn, "message": "to N"}),
        )
        .unwrap();
    assert_eq!(
        cn.expect("privateMessage").await.values()[0],
        json!({"sender": idt, "message": "to N"})
    );
    // The socket's channel goes with it.
    ct.client.close();
    wait_shard_channel(&url, &format!("socket.io#/#{idt}#"), false).await;
    cn.expect_none("privateMessage", Duration::from_millis(10))
        .await;
}
