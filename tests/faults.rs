//! Fault injection (issue 7, item 4): peers killed in the middle of a message, a server
//! killed and restarted under 100 connected clients, frozen peers (`SIGSTOP`) on both
//! sides, a slow consumer under a broadcast, and connect/emit/disconnect churn with mixed
//! transports and abrupt closes. After each, the process' sessions, sockets, tokio tasks,
//! file descriptors and memory (VmRSS) must be back where they were.
//!
//! The tests take a process-wide lock and run one at a time: they measure the whole test
//! process. Child processes: the `conformance_server` example (`cargo build --examples`
//! builds it next to this test binary; `TETHER_TEST_SERVER` overrides the path) and
//! `node` with `tests/interop/node_modules` (`bash scripts/test.sh` installs them). Every
//! child is killed when its guard drops; every wait is bounded. The loads are sized for a
//! 2-core machine and a debug build: the whole file takes about a minute. Numbers are
//! printed on stderr (`cargo test --test faults -- --nocapture`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether::engine::{SendError, TransportType};
use tether::sio::client::{Client, ClientDisconnectReason, ClientSocket, Reconnection};
use tether::sio::{Args, DisconnectReason, EmitError, Io, IoBuilder, SocketRef};
use tether::{EngineConfig, ServerHandle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::timeout;

type R<T> = Result<T, String>;

/// The bound on any single wait.
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One test at a time: they measure the whole process (RSS, descriptors). (tokio's
/// mutex: held across awaits, not poisoned by a failed test.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().await;
    // The previous test's runtime (its threads, its descriptors) is still being dropped
    // when its guard is released.
    tokio::time::sleep(Duration::from_millis(200)).await;
    guard
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

fn err(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// VmRSS of this process, in KiB.
/// RSS after handing the allocator's free pages back to the OS (glibc's `malloc_trim`):
/// what is still held, not what malloc keeps cached for reuse (buffers that grew by
/// doubling leave freed chunks of every size behind).
fn held_rss_kb() -> i64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only releases free memory; any thread may call it.
        unsafe {
            malloc_trim(0);
        }
    }
    rss_kb()
}

fn rss_kb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .expect("VmRSS in /proc/self/status")
}

/// Entries in /proc/self/fd.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn mib(kb: i64) -> String {
    format!("{:+.1} MiB", kb as f64 / 1024.0)
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// min / median / max of some durations, in ms.
fn spread(mut v: Vec<Duration>) -> (u128, u128, u128) {
    v.sort();
    if v.is_empty() {
        return (0, 0, 0);
    }
    (ms(v[0]), ms(v[v.len() / 2]), ms(v[v.len() - 1]))
}

/// Run `f(i)` for `i` in `from..from + n`, `concurrency` at a time, each bounded by
/// `per_call`; stop starting new ones at `deadline`. Returns (finished, failures).
async fn run_many<F, Fut>(
    from: usize,
    n: usize,
    concurrency: usize,
    per_call: Duration,
    deadline: Option<Instant>,
    f: F,
) -> (usize, Vec<String>)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = R<()>> + Send + 'static,
{
    let mut set = JoinSet::new();
    let mut next = from;
    let end = from + n;
    let mut done = 0usize;
    let mut failures = Vec::new();
    loop {
        while set.len() < concurrency && next < end && deadline.is_none_or(|d| Instant::now() < d) {
            let i = next;
            let fut = f(i);
            set.spawn(async move {
                match timeout(per_call, fut).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("#{i}: {e}")),
                    Err(_) => Err(format!("#{i}: timed out after {per_call:?}")),
                }
            });
            next += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok(()))) => done += 1,
            Some(Ok(Err(e))) => {
                done += 1;
                failures.push(e);
            }
            Some(Err(e)) => {
                done += 1;
                failures.push(format!("task: {e}"));
            }
            None => break,
        }
    }
    (done, failures)
}

// ---------------------------------------------------------------------------------------
// The in-process server
// ---------------------------------------------------------------------------------------

/// What the server's handlers saw.
#[derive(Default)]
struct Stats {
    connects: AtomicUsize,
    disconnects: AtomicUsize,
    /// Sockets connected and not disconnected yet.
    live: Mutex<HashSet<String>>,
    /// Disconnect handler runs for a socket that had disconnected already.
    repeats: AtomicUsize,
    reasons: Mutex<HashMap<DisconnectReason, usize>>,
    /// (socket id, reason, when), kept only when `keep_log`.
    log: Mutex<Vec<(String, DisconnectReason, Instant)>>,
    keep_log: bool,
}

type OnConnect = Arc<dyn Fn(&SocketRef) + Send + Sync>;

struct Server {
    io: Io,
    handle: ServerHandle,
    addr: SocketAddr,
    stats: Arc<Stats>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Start a server on `127.0.0.1:0` with, on `/`: `echo` (acks its arguments, or emits
/// `echo` back without an ack request), disconnects counted per socket, then `extra`.
async fn start_server(builder: IoBuilder, keep_log: bool, extra: Option<OnConnect>) -> Server {
    let io = builder.build();
    let stats = Arc::new(Stats {
        keep_log,
        ..Stats::default()
    });
    let st = stats.clone();
    io.ns("/", move |socket| {
        st.connects.fetch_add(1, SeqCst);
        lock(&st.live).insert(socket.id().to_string());
        let st2 = st.clone();
        socket.on_disconnect(move |s, reason| {
            if !lock(&st2.live).remove(s.id().as_str()) {
                st2.repeats.fetch_add(1, SeqCst);
            }
            *lock(&st2.reasons).entry(reason).or_default() += 1;
            if st2.keep_log {
                lock(&st2.log).push((s.id().to_string(), reason, Instant::now()));
            }
            st2.disconnects.fetch_add(1, SeqCst);
        });
        socket.on("echo", |s, ev| match ev.ack {
            Some(ack) => {
                let _ = ack.send(ev.args);
            }
            None => {
                let _ = s.emit_args("echo", ev.args);
            }
        });
        if let Some(f) = &extra {
            f(&socket);
        }
    });
    let handle = io.listen("127.0.0.1:0").await.expect("listen");
    let addr = handle.local_addr();
    Server {
        io,
        handle,
        addr,
        stats,
    }
}

impl Server {
    fn sessions(&self) -> usize {
        self.io.engine().expect("engine").session_count()
    }

    fn sockets(&self) -> usize {
        self.io.of("/").socket_count()
    }

    fn connects(&self) -> usize {
        self.stats.connects.load(SeqCst)
    }

    fn disconnects(&self) -> usize {
        self.stats.disconnects.load(SeqCst)
    }

    fn reasons(&self) -> HashMap<DisconnectReason, usize> {
        lock(&self.stats.reasons).clone()
    }

    /// Wait until no session and no socket is left, and every socket that connected
    /// disconnected; then check nothing fired twice.
    async fn assert_idle(&self, d: Duration, what: &str) {
        let idle = eventually(d, || {
            self.sessions() == 0 && self.sockets() == 0 && self.disconnects() == self.connects()
        })
        .await;
        assert!(
            idle,
            "{what}: not idle after {d:?}: {} session(s), {} socket(s), {} connects, {} \
             disconnects, still live: {:?}",
            self.sessions(),
            self.sockets(),
            self.connects(),
            self.disconnects(),
            lock(&self.stats.live).iter().take(5).collect::<Vec<_>>()
        );
        assert!(
            lock(&self.stats.live).is_empty(),
            "{what}: sockets never disconnected"
        );
        assert_eq!(
            self.stats.repeats.load(SeqCst),
            0,
            "{what}: a disconnect handler ran twice for one socket"
        );
    }

    /// A WebSocket client and a polling client each get an echo acknowledged.
    async fn assert_healthy(&self) {
        within(WAIT, "a healthy websocket client", async {
            let mut ws = RawWs::connect(self.addr, "").await.unwrap();
            ws.join().await.unwrap();
            ws.send_text(r#"421["echo","healthy"]"#).await.unwrap();
            assert_eq!(ws.text().await.unwrap(), r#"431["healthy"]"#);
            ws.close().await.unwrap();
        })
        .await;
        within(WAIT, "a healthy polling client", async {
            let (mut p, _) = Poller::join(self.addr).await.unwrap();
            p.post(r#"422["echo","polled"]"#).await.unwrap();
            p.recv_until(|m| m == r#"432["polled"]"#).await.unwrap();
            p.post("1").await.unwrap();
        })
        .await;
    }
}

/// A heartbeat slow enough not to interfere. (The connect timeout is short: its timer
/// task outlives the connection, see `connect_timeout_task_ends_with_its_connection`.)
fn slow_heartbeat() -> IoBuilder {
    Io::builder()
        .ping_interval(Duration::from_secs(20))
        .ping_timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(1))
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 and WebSocket by hand
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Resp {
    status: u16,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive HTTP/1.1 connection.
struct Http {
    s: BufReader<TcpStream>,
}

fn request_head(method: &str, target: &str, body_len: Option<usize>) -> String {
    let mut h = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(n) = body_len {
        h.push_str(&format!(
            "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {n}\r\n"
        ));
    }
    h.push_str("\r\n");
    h
}

impl Http {
    async fn connect(addr: SocketAddr) -> R<Http> {
        let tcp = TcpStream::connect(addr).await.map_err(err("connect"))?;
        Ok(Http {
            s: BufReader::new(tcp),
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> R<()> {
        self.s
            .get_mut()
            .write_all(bytes)
            .await
            .map_err(err("write request"))
    }

    async fn request(&mut self, method: &str, target: &str, body: &[u8]) -> R<Resp> {
        let len = (method == "POST").then_some(body.len());
        let mut req = request_head(method, target, len).into_bytes();
        req.extend_from_slice(body);
        self.write(&req).await?;
        self.response().await
    }

    async fn line(&mut self) -> R<String> {
        let mut line = String::new();
        let n = self
            .s
            .read_line(&mut line)
            .await
            .map_err(err("read response"))?;
        if n == 0 {
            return Err("connection closed before the response".into());
        }
        Ok(line)
    }

    async fn response(&mut self) -> R<Resp> {
        let status_line = self.line().await?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        loop {
            let l = self.line().await?;
            if l == "\r\n" {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0u8; length.ok_or("no content-length")?];
        self.s
            .read_exact(&mut body)
            .await
            .map_err(err("read body"))?;
        Ok(Resp { status, body })
    }
}

fn eio(query: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling{query}")
}

/// A long-polling client: one keep-alive connection for GETs, one for POSTs.
struct Poller {
    sid: String,
    get: Http,
    post: Http,
}

impl Poller {
    async fn open(addr: SocketAddr) -> R<Poller> {
        let mut get = Http::connect(addr).await?;
        let r = get.request("GET", &eio(""), b"").await?;
        if r.status != 200 {
            return Err(format!("handshake: {} {:?}", r.status, r.text()));
        }
        let body = r.text();
        let open: Value = body
            .strip_prefix('0')
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| format!("open packet {body:?}"))?;
        let sid = open["sid"].as_str().ok_or("no sid")?.to_owned();
        let post = Http::connect(addr).await?;
        Ok(Poller { sid, get, post })
    }

    /// Open a session and join `/`: returns the Socket.IO socket id too.
    async fn join(addr: SocketAddr) -> R<(Poller, String)> {
        let mut p = Poller::open(addr).await?;
        p.post("40").await?;
        let got = p.recv_until(|m| m.starts_with("40{")).await?;
        let last = got.last().cloned().unwrap_or_default();
        let v: Value = serde_json::from_str(&last[2..]).map_err(|e| format!("{e}: {last}"))?;
        let id = v["sid"].as_str().ok_or("no socket id")?.to_owned();
        Ok((p, id))
    }

    fn target(&self) -> String {
        eio(&format!("&sid={}", self.sid))
    }

    async fn post(&mut self, body: &str) -> R<()> {
        let t = self.target();
        let r = self.post.request("POST", &t, body.as_bytes()).await?;
        if r.status != 200 || r.body != b"ok" {
            return Err(format!("POST {body:?}: {} {:?}", r.status, r.text()));
        }
        Ok(())
    }

    /// Poll, answering pings, until a packet satisfies `pred`; the packets seen (pings
    /// excluded), the matching one last.
    async fn recv_until(&mut self, pred: impl Fn(&str) -> bool) -> R<Vec<String>> {
        let mut got = Vec::new();
        loop {
            let t = self.target();
            let r = self.get.request("GET", &t, b"").await?;
            if r.status != 200 {
                return Err(format!(
                    "poll: {} {:?} (so far {got:?})",
                    r.status,
                    r.text()
                ));
            }
            for p in r.text().split('\u{1e}') {
                if p == "2" {
                    self.post("3").await?;
                    continue;
                }
                let done = pred(p);
                got.push(p.to_owned());
                if done {
                    return Ok(got);
                }
            }
        }
    }

    /// Send a long-poll GET without waiting for its answer.
    async fn start_poll(&mut self) -> R<()> {
        let head = request_head("GET", &self.target(), None);
        self.get.write(head.as_bytes()).await
    }
}

/// A masked client frame.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A WebSocket client on a bare TCP stream: it reads only when asked to, and dropping it
/// drops the TCP connection without a close frame.
struct RawWs {
    s: BufReader<TcpStream>,
}

impl RawWs {
    async fn connect(addr: SocketAddr, query: &str) -> R<RawWs> {
        let tcp = TcpStream::connect(addr).await.map_err(err("connect"))?;
        RawWs::handshake(tcp, query).await
    }

    async fn handshake(tcp: TcpStream, query: &str) -> R<RawWs> {
        let req = format!(
            "GET /socket.io/?EIO=4&transport=websocket{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let mut ws = RawWs {
            s: BufReader::new(tcp),
        };
        ws.write_raw(req.as_bytes()).await?;
        let mut line = String::new();
        ws.s.read_line(&mut line).await.map_err(err("read 101"))?;
        if !line.starts_with("HTTP/1.1 101 ") {
            return Err(format!("upgrade refused: {line:?}"));
        }
        loop {
            line.clear();
            let n = ws.s.read_line(&mut line).await.map_err(err("read 101"))?;
            if n == 0 {
                return Err("closed in the 101 head".into());
            }
            if line == "\r\n" {
                return Ok(ws);
            }
        }
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> R<()> {
        self.s
            .get_mut()
            .write_all(bytes)
            .await
            .map_err(err("write"))
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> R<()> {
        self.write_raw(&masked_frame(opcode, payload)).await
    }

    async fn send_text(&mut self, t: &str) -> R<()> {
        self.send_frame(0x1, t.as_bytes()).await
    }

    /// The next frame: opcode and payload.
    async fn frame(&mut self) -> R<(u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).await.map_err(err("read frame"))?;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            len = u64::from(self.s.read_u16().await.map_err(err("read frame"))?);
        } else if len == 127 {
            len = self.s.read_u64().await.map_err(err("read frame"))?;
        }
        if len > 16 << 20 {
            return Err(format!("frame of {len} bytes"));
        }
        let mask = if h[1] & 0x80 != 0 {
            let mut m = [0u8; 4];
            self.s.read_exact(&mut m).await.map_err(err("read frame"))?;
            Some(m)
        } else {
            None
        };
        let mut payload = vec![0u8; len as usize];
        self.s
            .read_exact(&mut payload)
            .await
            .map_err(err("read frame"))?;
        if let Some(m) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= m[i % 4];
            }
        }
        Ok((h[0] & 0x0f, payload))
    }

    /// The next text message; Engine.IO pings are answered on the way.
    async fn text(&mut self) -> R<String> {
        loop {
            let (op, p) = self.frame().await?;
            match op {
                0x1 => {
                    let t = String::from_utf8(p).map_err(|e| e.to_string())?;
                    if t == "2" {
                        self.send_text("3").await?;
                        continue;
                    }
                    return Ok(t);
                }
                0x8 => return Err("closed by the server".into()),
                0x9 => self.send_frame(0xA, &p).await?,
                _ => {}
            }
        }
    }

    /// Read the open packet, join `/`: the socket id.
    async fn join(&mut self) -> R<String> {
        let open = self.text().await?;
        if !open.starts_with("0{") {
            return Err(format!("open packet {open:?}"));
        }
        self.send_text("40").await?;
        let t = self.text().await?;
        let v: Value = t
            .strip_prefix("40")
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| format!("CONNECT answer {t:?}"))?;
        Ok(v["sid"].as_str().ok_or("no sid")?.to_owned())
    }

    /// Close cleanly: a close frame, then wait for the server's.
    async fn close(mut self) -> R<()> {
        self.send_frame(0x8, &1000u16.to_be_bytes()).await?;
        loop {
            match self.frame().await {
                Ok((0x8, _)) | Err(_) => return Ok(()),
                Ok(_) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------

/// A child process with its output collected; killed (SIGKILL) and reaped on drop.
struct ChildProc {
    name: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    output: Arc<Mutex<Vec<String>>>,
}

impl ChildProc {
    fn spawn(name: &str, cmd: &mut Command) -> ChildProc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, lines) = mpsc::unbounded_channel();
        let output = Arc::new(Mutex::new(Vec::new()));
        let streams: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for s in streams {
            let tx = tx.clone();
            let output = output.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(s).lines().map_while(Result::ok) {
                    lock(&output).push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        ChildProc {
            name: name.to_owned(),
            child,
            lines,
            output,
        }
    }

    /// The next output line satisfying `pred`, within `d`.
    async fn wait_line(&mut self, d: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        timeout(d, async {
            while let Some(l) = self.lines.recv().await {
                if pred(&l) {
                    return Some(l);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    fn output_text(&self) -> String {
        lock(&self.output).join("\n")
    }

    /// `kill -SIG pid`.
    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {}: {status}", self.name);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let status = self.child.try_wait().ok().flatten();
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} ({}) output:\n{}",
                self.name,
                status.map_or("running".to_owned(), |s| s.to_string()),
                self.output_text()
            );
        }
    }
}

/// A built example binary, next to this test binary (`target/debug/examples/`).
fn example_bin(name: &str) -> PathBuf {
    if name == "conformance_server"
        && let Some(p) = std::env::var_os("TETHER_TEST_SERVER")
    {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target/debug");
    let p = dir.join("examples").join(name);
    assert!(
        p.is_file(),
        "{p:?} is missing: run `cargo build --examples` first (scripts/test.sh does)"
    );
    p
}

/// `conformance_server --port PORT` (0: any), once it printed its listening line; its
/// heartbeat is fixed at 300 ms interval, 200 ms timeout.
async fn conformance_server(port: u16) -> (ChildProc, u16) {
    let bin = example_bin("conformance_server");
    let mut p = ChildProc::spawn(
        "conformance_server",
        Command::new(bin).args(["--port", &port.to_string()]),
    );
    let line = p
        .wait_line(Duration::from_secs(20), |l| l.starts_with("listening on "))
        .await;
    let Some(line) = line else {
        let _ = p.child.try_wait();
        std::thread::sleep(Duration::from_millis(100));
        panic!(
            "conformance_server --port {port} did not start; output:\n{}",
            p.output_text()
        );
    };
    let port = line
        .rsplit(':')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("listening line {line:?}"));
    (p, port)
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// A socket.io-client 4 in node that prints `connect <id>` / `disconnect <reason>` and
/// answers the server's pings (as every socket.io client does).
const NODE_CLIENT: &str = r#"
const { io } = require("socket.io-client");
const [url, transport] = process.argv.slice(1);
const s = io(url, { transports: [transport], reconnectionDelay: 100, reconnectionDelayMax: 300 });
s.on("connect", () => console.log("connect " + s.id));
s.on("disconnect", (r) => console.log("disconnect " + r));
s.on("connect_error", (e) => console.log("connect_error " + e.message));
"#;

fn node_client(url: &str, transport: &str) -> ChildProc {
    let dir = interop_dir();
    assert!(
        dir.join("node_modules/socket.io-client").is_dir(),
        "tests/interop/node_modules/socket.io-client is missing: run `bash scripts/test.sh` once"
    );
    ChildProc::spawn(
        &format!("node socket.io-client ({transport})"),
        Command::new("node")
            .current_dir(&dir)
            .args(["-e", NODE_CLIENT, url, transport]),
    )
}

// ---------------------------------------------------------------------------------------
// tether clients, watched
// ---------------------------------------------------------------------------------------

/// A tether client on `/` with everything it reports recorded.
struct Watched {
    client: Client,
    socket: ClientSocket,
    /// The arguments of every `message-back`.
    echoes: Arc<Mutex<Vec<Vec<Value>>>>,
    disconnects: Arc<Mutex<Vec<(Instant, ClientDisconnectReason)>>>,
    connects: Arc<Mutex<Vec<Instant>>>,
    /// Reconnection attempts: (attempt number, when).
    attempts: Arc<Mutex<Vec<(u32, Instant)>>>,
    reconnects: Arc<Mutex<Vec<Instant>>>,
}

fn transports_for(i: usize) -> (&'static str, Vec<TransportType>, bool) {
    match i % 3 {
        0 => ("websocket", vec![TransportType::Websocket], false),
        1 => ("polling", vec![TransportType::Polling], false),
        _ => (
            "polling+upgrade",
            vec![TransportType::Polling, TransportType::Websocket],
            true,
        ),
    }
}

fn watched(url: &str, i: usize, reconnection: Reconnection, open_timeout: Duration) -> Watched {
    let (_, transports, upgrade) = transports_for(i);
    let client = Client::builder(url)
        .transports(transports)
        .upgrade(upgrade)
        .reconnection(reconnection)
        .timeout(open_timeout)
        .build()
        .expect("build client");
    let socket = client.socket("/");
    let w = Watched {
        client,
        socket,
        echoes: Arc::default(),
        disconnects: Arc::default(),
        connects: Arc::default(),
        attempts: Arc::default(),
        reconnects: Arc::default(),
    };
    let e = w.echoes.clone();
    w.socket.on("message-back", move |_, ev| {
        lock(&e).push(ev.args.into_values());
    });
    let d = w.disconnects.clone();
    w.socket.on_disconnect(move |_, r| {
        lock(&d).push((Instant::now(), r.clone()));
    });
    let c = w.connects.clone();
    w.socket.on_connect(move |_| {
        lock(&c).push(Instant::now());
    });
    let a = w.attempts.clone();
    w.client.on_reconnect_attempt(move |n| {
        lock(&a).push((n, Instant::now()));
    });
    let r = w.reconnects.clone();
    w.client.on_reconnect(move |_| {
        lock(&r).push(Instant::now());
    });
    w
}

impl Watched {
    fn echo_count(&self) -> usize {
        lock(&self.echoes).len()
    }

    fn connect_count(&self) -> usize {
        lock(&self.connects).len()
    }
}

// =======================================================================================
// 1. Clients killed in the middle of a message
// =======================================================================================

/// Size of the partial data each killed client leaves in the server.
const PARTIAL: usize = 256 * 1024;

/// Join `/`, start a message and vanish (TCP dropped, no close) before it is complete:
/// 0: a binary EVENT header announcing 3 attachments and 1 attachment (256 KiB);
/// 1: half of a 512 KiB WebSocket frame;
/// 2: polling, half of a 512 KiB POST body.
async fn killed_mid_message(addr: SocketAddr, i: usize) -> R<()> {
    match i % 3 {
        0 => {
            let mut ws = RawWs::connect(addr, "").await?;
            ws.join().await?;
            ws.send_text(
                r#"453-["upload",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]"#,
            )
            .await?;
            ws.send_frame(0x2, &vec![0xab; PARTIAL]).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(ws);
        }
        1 => {
            let mut ws = RawWs::connect(addr, "").await?;
            ws.join().await?;
            let frame = masked_frame(0x1, &vec![b'4'; 2 * PARTIAL]);
            ws.write_raw(&frame[..frame.len() / 2]).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(ws);
        }
        _ => {
            let (p, _) = Poller::join(addr).await?;
            let mut tcp = TcpStream::connect(addr).await.map_err(err("connect"))?;
            let head = request_head("POST", &p.target(), Some(2 * PARTIAL));
            let mut req = head.into_bytes();
            req.push(b'4');
            req.extend(std::iter::repeat_n(b'a', PARTIAL - 1));
            tcp.write_all(&req).await.map_err(err("write"))?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(tcp);
            drop(p);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_killed_mid_message() {
    let _serial = serial().await;
    // Only the vanished connections may end the sessions (no heartbeat in time).
    let srv = start_server(slow_heartbeat(), false, None).await;
    let addr = srv.addr;
    let tasks0 = alive_tasks();

    // Warm-up with the same load: the allocator reaches its working set (it keeps freed
    // memory for reuse), then the same load again must not grow it.
    let (n, failures) = run_many(0, 200, 20, WAIT, None, |i| killed_mid_message(addr, i)).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(n, 200);
    srv.assert_idle(WAIT, "after the warm-up").await;
    let rss0 = held_rss_kb();

    let t0 = Instant::now();
    let (n, failures) = run_many(200, 200, 20, WAIT, None, |i| killed_mid_message(addr, i)).await;
    let took = t0.elapsed();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(n, 200);
    srv.assert_idle(WAIT, "after 200 killed clients").await;
    // Late double fires would show up here.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(srv.connects(), 400);
    assert_eq!(srv.disconnects(), 400, "one disconnect per client");
    assert_eq!(srv.stats.repeats.load(SeqCst), 0);
    let reasons = srv.reasons();
    assert!(
        reasons.keys().all(|r| matches!(
            r,
            DisconnectReason::TransportClose | DisconnectReason::TransportError
        )),
        "{reasons:?}"
    );
    let rss1 = held_rss_kb();
    let settled = eventually(WAIT, || alive_tasks() <= tasks0).await;
    eprintln!(
        "killed mid-message: 200 clients in {took:?}; disconnect reasons {reasons:?}; RSS {} \
         -> {} KiB ({}); tasks {tasks0} -> {}",
        rss0,
        rss1,
        mib(rss1 - rss0),
        alive_tasks()
    );
    assert!(settled, "tasks: {tasks0} before, {} after", alive_tasks());
    // 200 clients left ~50 MiB of partial data behind them; none of it may stay.
    assert!(
        rss1 - rss0 < 6 * 1024,
        "RSS grew by {} across 200 killed clients",
        mib(rss1 - rss0)
    );
    srv.assert_healthy().await;
    srv.assert_idle(WAIT, "after the healthy clients").await;
}

// =======================================================================================
// 2. Server killed and restarted under 100 clients
// =======================================================================================

const CLIENTS: usize = 100;
const BUFFERED: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_under_100_clients() {
    let _serial = serial().await;
    let port = free_port();
    let (mut server, _) = conformance_server(port).await;
    let url = format!("http://127.0.0.1:{port}");
    let reconnection = Reconnection {
        delay: Duration::from_millis(100),
        delay_max: Duration::from_secs(1),
        ..Reconnection::default()
    };
    let clients: Vec<Watched> = (0..CLIENTS)
        .map(|i| watched(&url, i, reconnection.clone(), WAIT))
        .collect();
    let mut set = JoinSet::new();
    for w in &clients {
        let s = w.socket.clone();
        set.spawn(async move { s.connect().await });
    }
    within(Duration::from_secs(20), "100 clients connecting", async {
        while let Some(r) = set.join_next().await {
            r.expect("join").expect("connect");
        }
    })
    .await;
    let upgraded = eventually(WAIT, || {
        clients
            .iter()
            .enumerate()
            .all(|(i, w)| i % 3 != 2 || w.client.transport() == Some(TransportType::Websocket))
    })
    .await;
    assert!(upgraded, "polling+upgrade clients did not upgrade");
    // The echo works before the fault.
    for (i, w) in clients.iter().enumerate() {
        w.socket
            .emit_args("message", vec![json!(i), json!("before")])
            .expect("emit before");
    }
    let echoed = eventually(WAIT, || clients.iter().all(|w| w.echo_count() == 1)).await;
    assert!(echoed, "echo before the restart");

    // kill -9, and every client notices.
    let t_kill = Instant::now();
    server.kill();
    let noticed = eventually(WAIT, || clients.iter().all(|w| !w.socket.connected())).await;
    assert!(
        noticed,
        "{} client(s) still think they are connected",
        clients.iter().filter(|w| w.socket.connected()).count()
    );
    let detect: Vec<Duration> = clients
        .iter()
        .map(|w| lock(&w.disconnects)[0].0 - t_kill)
        .collect();
    // Numbered emits while the server is down wait in the offline buffer.
    for (i, w) in clients.iter().enumerate() {
        for seq in 0..BUFFERED {
            w.socket
                .emit_args("message", vec![json!(i), json!(seq)])
                .expect("buffered emit");
        }
        assert_eq!(w.socket.buffered(), BUFFERED);
    }
    // Down for 1.5 s: several attempts fail, with backoff.
    tokio::time::sleep_until((t_kill + Duration::from_millis(1500)).into()).await;
    let attempts_down: Vec<usize> = clients.iter().map(|w| lock(&w.attempts).len()).collect();
    let (server2, _) = conformance_server(port).await;
    let t_up = Instant::now();

    let delivered = eventually(Duration::from_secs(10), || {
        clients.iter().all(|w| w.echo_count() == 1 + BUFFERED)
    })
    .await;
    let t_all = t_up.elapsed();
    assert!(
        delivered,
        "buffered emits not delivered: echo counts {:?}",
        clients.iter().map(Watched::echo_count).collect::<Vec<_>>()
    );
    // No duplicates arrive late.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, w) in clients.iter().enumerate() {
        let mut want = vec![vec![json!(i), json!("before")]];
        want.extend((0..BUFFERED).map(|seq| vec![json!(i), json!(seq)]));
        assert_eq!(
            *lock(&w.echoes),
            want,
            "client {i} ({}): echoes exactly once, in order",
            transports_for(i).0
        );
        assert_eq!(w.socket.buffered(), 0);
        assert_eq!(w.connect_count(), 2, "client {i}: connected twice");
    }

    // Backoff: every client retried, not in lockstep, and not in a tight loop.
    assert!(
        attempts_down.iter().all(|&n| (1..=8).contains(&n)),
        "attempts while down (1.5 s, delay 100 ms doubling to 1 s): {attempts_down:?}"
    );
    let first_delay: Vec<Duration> = clients
        .iter()
        .map(|w| {
            let d = lock(&w.disconnects)[0].0;
            let a = lock(&w.attempts)
                .iter()
                .find(|(n, _)| *n == 1)
                .map(|(_, t)| *t)
                .expect("a first attempt");
            a - d
        })
        .collect();
    let distinct: HashSet<u128> = first_delay.iter().map(|d| d.as_millis()).collect();
    let (fmin, fmed, fmax) = spread(first_delay.clone());
    let reconnected: Vec<Duration> = clients
        .iter()
        .map(|w| {
            lock(&w.reconnects)
                .last()
                .map(|t| t.saturating_duration_since(t_up))
                .expect("a reconnection")
        })
        .collect();
    let total_attempts: Vec<usize> = clients.iter().map(|w| lock(&w.attempts).len()).collect();
    let (rmin, rmed, rmax) = spread(reconnected);
    let (dmin, dmed, dmax) = spread(detect);
    eprintln!(
        "restart: disconnect noticed {dmin}/{dmed}/{dmax} ms after kill -9 (min/median/max); \
         attempts while down {:?}..{:?}, in all {:?}..{:?}; first retry {fmin}/{fmed}/{fmax} ms \
         after the disconnect ({} distinct ms values); reconnected {rmin}/{rmed}/{rmax} ms after \
         the restart; all {} buffered emits echoed {} ms after the restart",
        attempts_down.iter().min(),
        attempts_down.iter().max(),
        total_attempts.iter().min(),
        total_attempts.iter().max(),
        distinct.len(),
        CLIENTS * BUFFERED,
        t_all.as_millis()
    );
    // backoff(0) is 100 ms ± 50 % (randomization 0.5).
    assert!(
        fmin >= Duration::from_millis(45).as_millis() && fmax <= 400,
        "first retry delays {fmin}..{fmax} ms"
    );
    assert!(
        fmax - fmin >= 30 && distinct.len() >= 10,
        "first retries not jittered: {fmin}..{fmax} ms, {} distinct",
        distinct.len()
    );
    assert!(
        rmax - rmin >= 50,
        "reconnections all at once: {rmin}..{rmax} ms"
    );
    for w in &clients {
        w.client.close();
    }
    drop(server2);
}

// =======================================================================================
// 3. Frozen peers (SIGSTOP), detected by the heartbeat on both sides
// =======================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_client_detected_by_server_heartbeat() {
    let _serial = serial().await;
    let interval = Duration::from_millis(300);
    let ping_timeout = Duration::from_millis(200);
    let (conn_tx, mut conn_rx) = mpsc::unbounded_channel::<(String, TransportType)>();
    let on_connect: OnConnect = Arc::new(move |s: &SocketRef| {
        let _ = conn_tx.send((s.id().to_string(), s.transport()));
    });
    let srv = start_server(
        Io::builder()
            .ping_interval(interval)
            .ping_timeout(ping_timeout)
            .connect_timeout(Duration::from_secs(5)),
        true,
        Some(on_connect),
    )
    .await;
    let url = format!("http://{}", srv.addr);
    let mut kids = vec![node_client(&url, "websocket"), node_client(&url, "polling")];
    for k in &mut kids {
        let l = k
            .wait_line(Duration::from_secs(15), |l| l.starts_with("connect "))
            .await;
        assert!(
            l.is_some(),
            "{} did not connect:\n{}",
            k.name,
            k.output_text()
        );
    }
    let mut ids = HashMap::new();
    for _ in 0..2 {
        let (id, t) = within(WAIT, "server-side connections", conn_rx.recv())
            .await
            .expect("connection");
        ids.insert(id, t);
    }
    // Alive: several heartbeats pass without a disconnect.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(srv.disconnects(), 0, "{:?}", srv.reasons());

    for k in &kids {
        k.signal("STOP");
    }
    let t_stop = Instant::now();
    let detected = eventually(Duration::from_secs(3), || srv.disconnects() == 2).await;
    let log = lock(&srv.stats.log).clone();
    assert!(detected, "frozen clients not detected: {log:?}");
    let bound = interval + ping_timeout + Duration::from_millis(600);
    for (id, reason, at) in &log {
        let t = ids.get(id).copied();
        let after = *at - t_stop;
        eprintln!(
            "frozen client ({t:?}): {reason} after {} ms (bound {} ms)",
            ms(after),
            ms(bound)
        );
        assert_eq!(*reason, DisconnectReason::PingTimeout, "{t:?}");
        assert!(after <= bound, "{t:?}: detected after {after:?}");
    }
    srv.assert_idle(WAIT, "after the ping timeouts").await;

    // Thawed, they reconnect (socket.io-client notices its session is gone).
    let t_cont = Instant::now();
    for k in &kids {
        k.signal("CONT");
    }
    for k in &mut kids {
        let l = k
            .wait_line(Duration::from_secs(5), |l| l.starts_with("connect "))
            .await;
        assert!(
            l.is_some(),
            "{} did not reconnect:\n{}",
            k.name,
            k.output_text()
        );
    }
    let back = eventually(WAIT, || srv.connects() == 4).await;
    assert!(back, "{} connections", srv.connects());
    eprintln!(
        "thawed node clients reconnected within {} ms",
        ms(t_cont.elapsed())
    );
    drop(kids);
    srv.assert_idle(WAIT, "after the node clients died").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_detected_by_client_heartbeat() {
    let _serial = serial().await;
    let (server, port) = conformance_server(0).await;
    let url = format!("http://127.0.0.1:{port}");
    let reconnection = Reconnection {
        delay: Duration::from_millis(100),
        delay_max: Duration::from_millis(500),
        ..Reconnection::default()
    };
    let clients: Vec<Watched> = (0..3)
        .map(|i| watched(&url, i, reconnection.clone(), Duration::from_secs(2)))
        .collect();
    for w in &clients {
        within(WAIT, "connect", w.socket.connect())
            .await
            .expect("connect");
    }
    assert!(
        eventually(WAIT, || clients[2].client.transport()
            == Some(TransportType::Websocket))
        .await,
        "upgrade"
    );
    // Alive: several heartbeats pass.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for w in &clients {
        assert!(
            lock(&w.disconnects).is_empty(),
            "{:?}",
            lock(&w.disconnects)
        );
    }

    server.signal("STOP");
    let t_stop = Instant::now();
    let detected = eventually(Duration::from_secs(4), || {
        clients.iter().all(|w| !lock(&w.disconnects).is_empty())
    })
    .await;
    let bound = Duration::from_millis(300 + 200 + 600);
    for (i, w) in clients.iter().enumerate() {
        let d = lock(&w.disconnects).clone();
        let what = transports_for(i).0;
        assert!(detected, "{what}: frozen server not detected: {d:?}");
        let (at, reason) = &d[0];
        let after = *at - t_stop;
        eprintln!(
            "frozen server, {what} client: {reason} after {} ms (bound {} ms)",
            ms(after),
            ms(bound)
        );
        assert_eq!(*reason, ClientDisconnectReason::PingTimeout, "{what}");
        assert!(after <= bound, "{what}: detected after {after:?}");
    }
    // Reconnection attempts against the frozen server time out (2 s); then thaw it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.signal("CONT");
    let t_cont = Instant::now();
    let back = eventually(Duration::from_secs(8), || {
        clients
            .iter()
            .all(|w| w.socket.connected() && w.connect_count() == 2)
    })
    .await;
    let took: Vec<u128> = clients
        .iter()
        .map(|w| {
            lock(&w.connects)
                .get(1)
                .map_or(u128::MAX, |t| ms(t.saturating_duration_since(t_cont)))
        })
        .collect();
    eprintln!(
        "thawed server: clients (ws, polling, upgrade) reconnected after {took:?} ms; attempts {:?}",
        clients
            .iter()
            .map(|w| lock(&w.attempts).len())
            .collect::<Vec<_>>()
    );
    assert!(
        back,
        "clients did not reconnect to the thawed server: {took:?}"
    );
    for (i, w) in clients.iter().enumerate() {
        w.socket
            .emit_args("message", vec![json!(i), json!("after")])
            .expect("emit");
    }
    assert!(
        eventually(WAIT, || clients.iter().all(|w| w.echo_count() == 1)).await,
        "echo after the thaw"
    );
    for w in &clients {
        w.client.close();
    }
    drop(server);
}

// =======================================================================================
// 4. A slow consumer under a broadcast
// =======================================================================================

/// Received `tick`s of one client: count, and whether they came in order.
#[derive(Default)]
struct Ticks {
    count: AtomicUsize,
    next: AtomicUsize,
    misordered: AtomicUsize,
}

const QUEUE: usize = 256;

fn small_queue_server() -> IoBuilder {
    Io::builder().engine_config(EngineConfig {
        send_queue_capacity: QUEUE,
        ping_interval: Duration::from_secs(20),
        ping_timeout: Duration::from_secs(20),
        ..EngineConfig::default()
    })
}

/// A WebSocket client with a 4 KiB receive buffer that joins `/` and then reads nothing.
async fn non_reader(addr: SocketAddr) -> (RawWs, String) {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = sock.connect(addr).await.expect("connect");
    let mut ws = RawWs::handshake(tcp, "").await.expect("handshake");
    let id = ws.join().await.expect("join");
    (ws, id)
}

impl Ticks {
    fn saw(&self, seq: usize) {
        if self.next.swap(seq + 1, SeqCst) != seq {
            self.misordered.fetch_add(1, SeqCst);
        }
        self.count.fetch_add(1, SeqCst);
    }
}

/// A healthy reader on raw frames: reads all the time and records each `tick`'s number
/// (without decoding the rest: the readers must not be the bottleneck).
async fn tick_reader(mut ws: RawWs, ticks: Arc<Ticks>) {
    while let Ok(t) = ws.text().await {
        if let Some(rest) = t.strip_prefix(r#"42["tick","#) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            ticks.saw(digits.parse().unwrap_or(usize::MAX));
        }
    }
}

/// Ticks broadcast per second, their padding, and for how long.
const TICK_RATE: usize = 300;
const TICK_PAD: usize = 8 * 1024;
const TICK_TIME: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_bounded_and_others_unaffected() {
    let _serial = serial().await;
    let fired = Arc::new(Mutex::new(Vec::<(String, usize)>::new()));
    let (sock_tx, mut sock_rx) = mpsc::unbounded_channel::<SocketRef>();
    let f = fired.clone();
    let on_connect: OnConnect = Arc::new(move |s: &SocketRef| {
        let f2 = f.clone();
        s.on_high_water(move |s, n| lock(&f2).push((s.id().to_string(), n)));
        let _ = sock_tx.send(s.clone());
    });
    let srv = start_server(small_queue_server(), false, Some(on_connect)).await;
    let url = format!("http://{}", srv.addr);

    // 19 clients that keep reading: 14 on raw WebSocket frames, and tether clients: 3
    // over WebSocket, 2 over polling.
    let mut healthy: Vec<Arc<Ticks>> = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..14 {
        let mut ws = RawWs::connect(srv.addr, "").await.expect("connect");
        ws.join().await.expect("join");
        let ticks = Arc::new(Ticks::default());
        readers.push(tokio::spawn(tick_reader(ws, ticks.clone())));
        healthy.push(ticks);
    }
    let mut clients = Vec::new();
    for i in 0..5 {
        let transports = if i < 3 {
            vec![TransportType::Websocket]
        } else {
            vec![TransportType::Polling]
        };
        let client = Client::builder(url.clone())
            .transports(transports)
            .upgrade(false)
            .build()
            .expect("client");
        let socket = client.socket("/");
        let ticks = Arc::new(Ticks::default());
        let t = ticks.clone();
        socket.on("tick", move |_, ev| {
            t.saw(ev.args.get::<usize>(0).unwrap_or(usize::MAX));
        });
        within(WAIT, "connect", socket.connect())
            .await
            .expect("connect");
        healthy.push(ticks);
        clients.push(client);
    }
    let (slow_ws, slow_id) = non_reader(srv.addr).await;
    let mut sockets = HashMap::new();
    while sockets.len() < 20 {
        let s = within(WAIT, "sockets", sock_rx.recv())
            .await
            .expect("socket");
        sockets.insert(s.id().to_string(), s);
    }
    let slow = sockets[&slow_id].clone();

    let pad = "x".repeat(TICK_PAD);
    let tick = |seq: usize| Args::from(vec![json!(seq), Value::String(pad.clone())]);
    // Warm-up (the slow one takes these in: its buffers are not full yet).
    let mut seq = 0usize;
    for _ in 0..20 {
        srv.io
            .broadcast()
            .emit_args("tick", tick(seq))
            .expect("warm-up");
        seq += 1;
    }
    assert!(
        eventually(WAIT, || healthy.iter().all(|t| t.count.load(SeqCst) == seq)).await,
        "warm-up ticks"
    );
    let rss0 = rss_kb();

    // Broadcast every 10 ms for TICK_TIME.
    let per_tick = TICK_RATE / 100;
    let mut ok = 0usize;
    let mut dropped_slow = 0usize;
    let mut first_drop = None;
    let mut rss_full = 0;
    let mut dropped_more = Vec::new();
    let mut max_queued = 0usize;
    let mut every = tokio::time::interval(Duration::from_millis(10));
    let t0 = Instant::now();
    while t0.elapsed() < TICK_TIME {
        every.tick().await;
        for _ in 0..per_tick {
            match srv.io.broadcast().emit_args("tick", tick(seq)) {
                Ok(()) => ok += 1,
                Err(EmitError::Dropped(1)) => {
                    dropped_slow += 1;
                    if first_drop.is_none() {
                        first_drop = Some(seq);
                        rss_full = rss_kb();
                    }
                }
                Err(e) => dropped_more.push((seq, e.to_string())),
            }
            seq += 1;
        }
        max_queued = max_queued.max(slow.queued());
    }
    let took = t0.elapsed();
    let sent = seq;
    let rss1 = rss_kb();
    let all = eventually(Duration::from_secs(10), || {
        healthy.iter().all(|t| t.count.load(SeqCst) >= sent)
    })
    .await;
    let counts: Vec<usize> = healthy.iter().map(|t| t.count.load(SeqCst)).collect();
    let direct = slow.emit("direct", &1);
    let fired_now = lock(&fired).clone();
    eprintln!(
        "slow consumer: {} ticks of {} KiB broadcast to 20 in {took:.1?} ({ok} reached all; \
         {dropped_slow} skipped the slow one only, the first at tick {first_drop:?}: {:.1} MiB \
         aimed at it were dropped); slow queue max {max_queued}/{QUEUE}, now {}; high water \
         fired {:?}; RSS {rss0} KiB, {rss_full} when its queue filled ({}), {rss1} at the end \
         ({} since the queue filled); healthy counts {counts:?}",
        sent - 20,
        TICK_PAD / 1024,
        (dropped_slow * TICK_PAD) as f64 / (1 << 20) as f64,
        slow.queued(),
        fired_now,
        mib(rss_full - rss0),
        mib(rss1 - rss_full)
    );
    assert!(
        dropped_more.is_empty(),
        "healthy clients skipped {} time(s), e.g. {:?}",
        dropped_more.len(),
        &dropped_more[..dropped_more.len().min(5)]
    );
    assert!(all, "healthy clients missed ticks: {counts:?} of {sent}");
    assert!(counts.iter().all(|&c| c == sent), "duplicates: {counts:?}");
    for (i, t) in healthy.iter().enumerate() {
        assert_eq!(t.misordered.load(SeqCst), 0, "client {i} out of order");
    }
    assert!(dropped_slow > 0, "the slow consumer's queue never filled");
    assert!(max_queued <= QUEUE && slow.queued() <= QUEUE);
    assert!(
        matches!(direct, Err(EmitError::Send(SendError::QueueFull))),
        "direct emit to the slow one: {direct:?}"
    );
    let slow_fired: Vec<_> = fired_now.iter().filter(|(id, _)| *id == slow_id).collect();
    assert_eq!(
        slow_fired.len(),
        1,
        "high water for the slow one: {fired_now:?}"
    );
    assert!(slow_fired[0].1 >= QUEUE * 3 / 4);
    assert!(
        fired_now.iter().all(|(id, _)| *id == slow_id),
        "high water fired for healthy clients: {fired_now:?}"
    );
    // The full queue holds QUEUE frames (the bound is in frames: 2 MiB here); once it is
    // full, the several MiB more aimed at the slow one must not be held anywhere.
    let held = (QUEUE * TICK_PAD / 1024) as i64;
    assert!(
        rss_full - rss0 < held + 2 * 1024,
        "RSS grew by {} until the queue was full",
        mib(rss_full - rss0)
    );
    assert!(
        rss1 - rss_full < 3 * 1024,
        "RSS grew by {} while broadcasting to a non-reader with a full queue",
        mib(rss1 - rss_full)
    );
    for c in &clients {
        c.close();
    }
    for r in &readers {
        r.abort();
    }
    drop(slow_ws);
    srv.assert_idle(WAIT, "after the clients left").await;
}

/// `SocketRef::disconnect` promises the client a DISCONNECT packet; a slow consumer is
/// exactly the peer an application disconnects (`on_high_water`'s advice), often once a
/// send failed with a full queue. The packet must not be lost then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_reaches_a_slow_consumer_with_a_full_queue() {
    let _serial = serial().await;
    let srv = start_server(small_queue_server(), false, None).await;
    let (mut slow_ws, slow_id) = non_reader(srv.addr).await;
    let slow = srv.io.of("/").get_socket(&slow_id).expect("socket");
    let pad = "x".repeat(1024);
    let mut sent = 0usize;
    loop {
        match slow.emit("tick", &(sent, &pad)) {
            Ok(()) => sent += 1,
            Err(EmitError::Send(SendError::QueueFull)) => break,
            Err(e) => panic!("{e}"),
        }
        if sent % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(sent < 100_000, "the queue never filled");
    }
    slow.disconnect();
    // The peer reads again: everything queued, then the DISCONNECT packet.
    let mut ticks = 0usize;
    let got = timeout(WAIT, async {
        loop {
            match slow_ws.text().await {
                Ok(t) if t == "41" => return Ok(()),
                Ok(t) if t.starts_with(r#"42["tick","#) => ticks += 1,
                Ok(t) => return Err(format!("unexpected {t:?}")),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    eprintln!("disconnect with a full queue: {sent} ticks queued, {ticks} read, then {got:?}");
    assert_eq!(ticks, sent, "every queued tick arrives");
    assert!(
        matches!(got, Ok(Ok(()))),
        "no DISCONNECT packet after the {ticks} queued ticks: {got:?}"
    );
}

/// After the server gives up on a peer that stopped reading (its heartbeat times out: the
/// peer reads no ping), the connection must be released: the transport task and the
/// socket must not stay parked on a write the peer never drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_writer_released_after_ping_timeout() {
    let _serial = serial().await;
    let srv = start_server(
        Io::builder()
            .engine_config(EngineConfig {
                send_queue_capacity: QUEUE,
                ping_interval: Duration::from_millis(300),
                ping_timeout: Duration::from_millis(200),
                ..EngineConfig::default()
            })
            .connect_timeout(Duration::from_secs(1)),
        true,
        None,
    )
    .await;
    let tasks0 = alive_tasks();
    let fds0 = open_fds();
    let (slow_ws, slow_id) = non_reader(srv.addr).await;
    let slow = srv.io.of("/").get_socket(&slow_id).expect("socket");
    let pad = "x".repeat(TICK_PAD);
    let mut full = false;
    for seq in 0..10_000 {
        if slow.emit("tick", &(seq, &pad)).is_err() {
            full = true;
            break;
        }
        if seq % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(full, "the queue never filled");
    srv.assert_idle(WAIT, "after the ping timeout").await;
    let reasons = srv.reasons();
    assert_eq!(
        reasons.get(&DisconnectReason::PingTimeout),
        Some(&1),
        "{reasons:?}"
    );
    // The peer still holds its end and reads nothing; its own descriptor counts once.
    let released = eventually(Duration::from_secs(3), || {
        alive_tasks() <= tasks0 && open_fds() <= fds0 + 1
    })
    .await;
    let (tasks, fds) = (alive_tasks(), open_fds());
    drop(slow_ws);
    let after_drop = eventually(WAIT, || alive_tasks() <= tasks0 && open_fds() <= fds0).await;
    let after_drop = format!("{after_drop} (tasks {}, fds {})", alive_tasks(), open_fds());
    eprintln!(
        "stalled writer: 3 s after the ping timeout: tasks {tasks0} -> {tasks}, fds {fds0} -> \
         {fds} (the peer's own: +1); released once the peer vanished: {after_drop}"
    );
    assert!(
        released,
        "the server kept the connection of a timed-out non-reader: tasks {tasks0} -> {tasks}, \
         fds {fds0} -> {fds} (the peer's own descriptor is +1)"
    );
}

/// The timer that closes a connection which joined no namespace in time
/// (`connect_timeout`) must end with the connection, not linger for the full timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_task_ends_with_its_connection() {
    let _serial = serial().await;
    let srv = start_server(
        Io::builder()
            .ping_interval(Duration::from_secs(20))
            .ping_timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(30)),
        false,
        None,
    )
    .await;
    let addr = srv.addr;
    let tasks0 = alive_tasks();
    let (n, failures) = run_many(0, 50, 10, WAIT, None, |_| async move {
        let mut ws = RawWs::connect(addr, "").await?;
        ws.join().await?;
        ws.close().await
    })
    .await;
    assert!(failures.is_empty() && n == 50, "{failures:?}");
    srv.assert_idle(WAIT, "after 50 clients").await;
    let settled = eventually(Duration::from_secs(3), || alive_tasks() <= tasks0).await;
    assert!(
        settled,
        "50 connections closed 3 s ago, tasks still {tasks0} -> {} (connect_timeout 30 s)",
        alive_tasks()
    );
}

/// Frames written straight to the socket by the emitting thread (the session's queue is
/// empty and its task idle) and frames the session task writes itself (after the socket
/// filled up, partial writes, pongs) share one byte stream: with four producers (two
/// runtime tasks, two plain threads) emitting at once to a client that does not read at
/// first, every message still arrives whole and each producer's messages in order, and
/// every WebSocket ping gets its pong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_writes_keep_order_across_threads() {
    let _serial = serial().await;
    const THREADS: usize = 4;
    const PER_THREAD: usize = 2000;
    let (sock_tx, mut sock_rx) = mpsc::unbounded_channel::<SocketRef>();
    let on_connect: OnConnect = Arc::new(move |s: &SocketRef| {
        let _ = sock_tx.send(s.clone());
    });
    let builder = Io::builder().engine_config(EngineConfig {
        send_queue_capacity: THREADS * PER_THREAD + 64,
        ..EngineConfig::default()
    });
    let srv = start_server(builder, false, Some(on_connect)).await;
    let (mut ws, _id) = non_reader(srv.addr).await;
    let socket = within(WAIT, "socket", sock_rx.recv())
        .await
        .expect("socket");
    // Every 10th message is 20 KB (a vectored write; 16 MB in all, more than the socket
    // buffers hold, so writes get cut and the session task takes over); the others
    // 1 to 300 bytes.
    let pad_len = |t: usize, n: usize| {
        if n % 10 == 7 {
            20_000
        } else {
            1 + (n * 37 + t) % 300
        }
    };
    // Half of the producers are tasks on the runtime's two workers (they write directly
    // when they can), half are plain threads (they always queue).
    let emit = move |s: &SocketRef, t: usize, n: usize| {
        let pad = "p".repeat(pad_len(t, n));
        let args = Args::from(vec![json!(t), json!(n), Value::String(pad)]);
        s.emit_args("seq", args)
            .map_err(|e| format!("producer {t} message {n}: {e}"))
    };
    let mut producers = JoinSet::new();
    let mut threads = Vec::new();
    for t in 0..THREADS {
        let s = socket.clone();
        if t % 2 == 0 {
            producers.spawn(async move {
                for n in 0..PER_THREAD {
                    emit(&s, t, n)?;
                    // In bursts: the queue empties and fills again and again, so that
                    // the writing moves between the producers and the session task.
                    if n % 16 == 15 {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                }
                Ok::<(), String>(())
            });
        } else {
            threads.push(std::thread::spawn(move || {
                for n in 0..PER_THREAD {
                    emit(&s, t, n)?;
                    if n % 16 == 15 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                Ok::<(), String>(())
            }));
        }
    }
    // Let the socket fill up while the threads emit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut next = [0usize; THREADS];
    let mut pings = 0usize;
    let mut pongs = 0usize;
    let mut received = 0usize;
    let read = async {
        while received < THREADS * PER_THREAD || pongs < pings {
            let (op, payload) = ws.frame().await?;
            match op {
                0x1 => {
                    let text = String::from_utf8(payload).map_err(|e| e.to_string())?;
                    if text == "2" {
                        ws.send_text("3").await?;
                        continue;
                    }
                    let Some(json) = text.strip_prefix("42") else {
                        return Err(format!("unexpected message {text:.80}"));
                    };
                    let v: Value =
                        serde_json::from_str(json).map_err(|e| format!("{e}: {json:.80}"))?;
                    let (t, n) = (
                        v[1].as_u64().unwrap_or(99) as usize,
                        v[2].as_u64().unwrap_or(0) as usize,
                    );
                    if v[0] != "seq" || t >= THREADS || n != next[t] {
                        return Err(format!(
                            "got {json:.80}, expected thread {t} message {}",
                            next.get(t).copied().unwrap_or(0)
                        ));
                    }
                    let pad = v[3].as_str().unwrap_or("");
                    if pad.len() != pad_len(t, n) || pad.bytes().any(|b| b != b'p') {
                        return Err(format!("thread {t} message {n}: padding damaged"));
                    }
                    next[t] += 1;
                    received += 1;
                    // A ping now and then: its pong goes out between the messages.
                    if received % 500 == 0 {
                        ws.send_frame(0x9, b"hi").await?;
                        pings += 1;
                    }
                }
                0xA if payload == b"hi" => pongs += 1,
                op => return Err(format!("unexpected frame opcode {op}")),
            }
        }
        Ok::<(), String>(())
    };
    let r = within(Duration::from_secs(60), "all messages", read).await;
    while let Some(sent) = producers.join_next().await {
        let sent = sent.expect("producer");
        assert!(sent.is_ok(), "{sent:?}");
    }
    for t in threads {
        let sent = t.join().expect("producer thread");
        assert!(sent.is_ok(), "{sent:?}");
    }
    assert!(
        r.is_ok(),
        "{r:?} (received {received}, per thread {next:?}, pongs {pongs}/{pings})"
    );
    assert_eq!(received, THREADS * PER_THREAD);
    assert!(pings > 0 && pongs == pings, "pongs {pongs} of {pings}");
    drop(ws);
    srv.assert_idle(WAIT, "after the client left").await;
}

// =======================================================================================
// 5. Churn
// =======================================================================================

/// One connect/emit/disconnect cycle; `i % 7` picks the flavour.
async fn churn_cycle(addr: SocketAddr, i: usize) -> R<()> {
    let emit = format!(r#"42{i}["echo",{i}]"#);
    let ack = format!("43{i}[{i}]");
    match i % 7 {
        // WebSocket: clean close, or TCP dropped.
        0 | 1 => {
            let mut ws = RawWs::connect(addr, "").await?;
            ws.join().await?;
            ws.send_text(&emit).await?;
            let t = ws.text().await?;
            if t != ack {
                return Err(format!("ack {t:?}"));
            }
            if i % 7 == 0 {
                ws.close().await?;
            }
        }
        // Polling: close packet, or TCP dropped under a pending poll.
        2 | 3 => {
            let (mut p, _) = Poller::join(addr).await?;
            p.post(&emit).await?;
            p.recv_until(|m| m == ack).await?;
            if i % 7 == 2 {
                p.post("1").await?;
            } else {
                p.start_poll().await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Polling upgraded to WebSocket: clean close, or TCP dropped.
        4 | 5 => {
            let (p, _) = Poller::join(addr).await?;
            let mut ws = RawWs::connect(addr, &format!("&sid={}", p.sid)).await?;
            ws.send_text("2probe").await?;
            let t = ws.text().await?;
            if t != "3probe" {
                return Err(format!("probe answer {t:?}"));
            }
            ws.send_text("5").await?;
            ws.send_text(&emit).await?;
            loop {
                let t = ws.text().await?;
                if t == ack {
                    break;
                }
            }
            if i % 7 == 4 {
                ws.close().await?;
            }
        }
        // tether's client, polling then upgrade.
        _ => {
            let client = Client::builder(format!("http://{addr}"))
                .reconnection(Reconnection {
                    enabled: false,
                    ..Reconnection::default()
                })
                .timeout(WAIT)
                .build()
                .map_err(|e| e.to_string())?;
            let s = client.socket("/");
            let r = async {
                s.connect().await.map_err(|e| e.to_string())?;
                s.emit_with_ack("echo", vec![json!(i)], WAIT)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            client.close();
            let args = r?;
            if args.values() != [json!(i)] {
                return Err(format!("ack {:?}", args.values()));
            }
        }
    }
    Ok(())
}

const CHURN_TARGET: usize = 10_000;
const CHURN_BUDGET: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_returns_to_baseline() {
    let _serial = serial().await;
    // (The connect timeout's timer task outlives each connection by up to this long, see
    // `connect_timeout_task_ends_with_its_connection`: the task counts settle after it.)
    let connect_timeout = Duration::from_secs(2);
    let srv = start_server(
        Io::builder()
            .ping_interval(Duration::from_secs(1))
            .ping_timeout(Duration::from_secs(1))
            .connect_timeout(connect_timeout),
        false,
        None,
    )
    .await;
    let addr = srv.addr;
    let per_cycle = Duration::from_secs(10);
    let tasks_start = alive_tasks();

    // Warm-up at full concurrency (the allocator reaches its working set), then the
    // baseline.
    let warm = 2000;
    let (n, failures) = run_many(0, warm, 200, per_cycle, None, |i| churn_cycle(addr, i)).await;
    assert!(
        failures.is_empty(),
        "warm-up: {} failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(n, warm);
    srv.assert_idle(Duration::from_secs(6), "after the warm-up")
        .await;
    let settled = eventually(connect_timeout + WAIT, || alive_tasks() <= tasks_start + 1).await;
    assert!(
        settled,
        "tasks after the warm-up: {tasks_start} -> {}",
        alive_tasks()
    );
    let tasks0 = alive_tasks();
    let fds0 = open_fds();
    let rss0 = rss_kb();

    // Two halves with an idle point between them: what the second half adds is the
    // per-cycle leak, if any (the first half may still grow the allocator's working set).
    let mut n = 0usize;
    let mut took = Duration::ZERO;
    let mut rss_half = 0;
    let mut rss_peak = 0;
    for half in 0..2 {
        let t0 = Instant::now();
        let (done, failures) = run_many(
            warm + n,
            CHURN_TARGET / 2,
            200,
            per_cycle,
            Some(t0 + CHURN_BUDGET / 2),
            |i| churn_cycle(addr, i),
        )
        .await;
        took += t0.elapsed();
        n += done;
        rss_peak = rss_peak.max(rss_kb());
        assert!(
            failures.is_empty(),
            "{} of {done} cycles failed, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        srv.assert_idle(Duration::from_secs(6), "after the churn")
            .await;
        if half == 0 {
            rss_half = rss_kb();
        }
    }
    let rate = n as f64 / took.as_secs_f64();
    let tasks_ok = eventually(connect_timeout + WAIT, || alive_tasks() <= tasks0 + 1).await;
    let fds_ok = eventually(WAIT, || open_fds() <= fds0 + 2).await;
    let rss1 = rss_kb();
    eprintln!(
        "churn: {n} cycles (target {CHURN_TARGET}) in {took:.1?}: {rate:.0} cycles/s, 200 at a \
         time; reasons {:?}; tasks {tasks0} -> {}; fds {fds0} -> {}; RSS {rss0} -> {rss_half} \
         (half) -> {rss1} KiB ({} in all, {} in the second half; peak {})",
        srv.reasons(),
        alive_tasks(),
        open_fds(),
        mib(rss1 - rss0),
        mib(rss1 - rss_half),
        mib(rss_peak - rss0),
    );
    assert_eq!(srv.connects(), warm + n);
    assert!(tasks_ok, "tasks: {tasks0} before, {} after", alive_tasks());
    assert!(fds_ok, "fds: {fds0} before, {} after", open_fds());
    assert!(
        rss1 - rss0 < 16 * 1024,
        "RSS grew by {} over {n} cycles",
        mib(rss1 - rss0)
    );
    // The allocator's noise here is a few MiB either way; 6 MiB over ~5000 cycles would
    // be a leak of over 1 KiB per cycle.
    assert!(
        rss1 - rss_half < 6 * 1024,
        "RSS grew by {} over the second half ({n} cycles in all)",
        mib(rss1 - rss_half)
    );
    srv.assert_healthy().await;
    srv.assert_idle(WAIT, "after the healthy clients").await;
}
