//! End-to-end tests of the server: Engine.IO over HTTP (spoken by hand over TCP),
//! Socket.IO over WebSocket (raw frames through tokio-tungstenite), hostile and broken
//! peers, and resource cleanup.
//!
//! Every test starts its own server on `127.0.0.1:0` with short timers, checks the exact
//! answers, then checks that a well-behaved client still gets served and that every
//! session and socket is gone once the clients left.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tether::ServerHandle;
use tether::sio::{Args, DisconnectReason, Io, IoBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PING_INTERVAL: Duration = Duration::from_millis(200);
const PING_TIMEOUT: Duration = Duration::from_millis(150);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The bound on any single wait for the server.
const WAIT: Duration = Duration::from_secs(2);
/// How long counts may take to return to zero.
const IDLE_WAIT: Duration = Duration::from_millis(2500);
/// Sent with every request of the helpers (the allow-request test checks it).
const TOKEN_HEADER: (&str, &str) = ("x-token", "ok");

/// Run `f`, failing the test if it takes longer than `d`.
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

// ---------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------

/// What the test server's handlers saw.
#[derive(Default)]
struct Stats {
    connects: AtomicUsize,
    disconnects: AtomicUsize,
    reasons: Mutex<Vec<DisconnectReason>>,
}

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

/// The short timers every test uses unless it says otherwise.
fn base() -> IoBuilder {
    Io::builder()
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
}

/// Timers long enough that no heartbeat interferes (tests of other cleanup paths).
fn slow_heartbeat() -> IoBuilder {
    Io::builder()
        .ping_interval(Duration::from_secs(20))
        .ping_timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(20))
}

/// Start a server with the standard handlers on `/`:
/// - `echo`: acks its arguments back, or emits `echo` with them when no ack is asked;
/// - `join`: joins the room named by the first argument, acks `true`;
/// - every disconnect is counted with its reason.
async fn start(builder: IoBuilder) -> Server {
    let io = builder.build();
    let stats = Arc::new(Stats::default());
    let st = stats.clone();
    io.ns("/", move |socket| {
        st.connects.fetch_add(1, Ordering::SeqCst);
        let st2 = st.clone();
        socket.on_disconnect(move |_, reason| {
            st2.reasons.lock().unwrap().push(reason);
            st2.disconnects.fetch_add(1, Ordering::SeqCst);
        });
        socket.on("echo", |s, ev| match ev.ack {
            Some(ack) => {
                let _ = ack.send(ev.args);
            }
            None => {
                let _ = s.emit_args("echo", ev.args);
            }
        });
        socket.on("join", |s, ev| {
            if let Some(room) = ev.args.str(0) {
                s.join(room.to_owned());
            }
            if let Some(ack) = ev.ack {
                let _ = ack.send_one(&true);
            }
        });
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

    fn disconnects(&self) -> usize {
        self.stats.disconnects.load(Ordering::SeqCst)
    }

    fn reasons(&self) -> Vec<DisconnectReason> {
        self.stats.reasons.lock().unwrap().clone()
    }

    /// Wait until no session and no socket is left.
    async fn wait_idle(&self) {
        let idle = eventually(IDLE_WAIT, || self.sessions() == 0 && self.sockets() == 0).await;
        assert!(
            idle,
            "server not idle after {IDLE_WAIT:?}: {} session(s), {} socket(s)",
            self.sessions(),
            self.sockets()
        );
    }

    /// A well-behaved WebSocket client and a well-behaved polling client each connect,
    /// get an echo acknowledged and leave; then the server must be idle.
    async fn assert_healthy(&self) {
        let (mut ws, _) = WsClient::sio(self.addr).await;
        ws.send(r#"421["echo","healthy"]"#);
        assert_eq!(ws.text().await, r#"431["healthy"]"#);
        ws.close().await;

        let p = PollClient::open(self.addr).await;
        p.post_ok("40").await;
        let got = p.recv_until(|m| m.starts_with("40{")).await;
        assert!(got.last().unwrap().contains("\"sid\""), "{got:?}");
        p.post_ok(r#"427["echo","polled"]"#).await;
        p.recv_until(|m| m == r#"437["polled"]"#).await;
        p.post_ok("1").await;

        self.wait_idle().await;
    }
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 by hand
// ---------------------------------------------------------------------------------------

mod http1 {
    use super::*;

    #[derive(Debug)]
    pub struct Resp {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Resp {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        pub fn json(&self) -> Value {
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    /// Read one response (head, then a `Content-Length` body, or up to EOF without one).
    pub async fn read_response(s: &mut TcpStream) -> Resp {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p;
            }
            let n = match s.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) => panic!(
                    "read failed before the response head ({e}): {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            };
            assert!(
                n > 0,
                "connection closed before the response head: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(
            parts.next(),
            Some("HTTP/1.1"),
            "status line {status_line:?}"
        );
        let status: u16 = parts
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut body = buf[head_end + 4..].to_vec();
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>().expect("content-length"));
        match length {
            Some(len) => {
                while body.len() < len {
                    let n = s.read(&mut chunk).await.expect("read body");
                    assert!(n > 0, "connection closed inside the body");
                    body.extend_from_slice(&chunk[..n]);
                }
                body.truncate(len);
            }
            None if status < 200 || status == 204 || status == 304 => body.clear(),
            None => {
                // `Connection: close` was sent: the body ends at EOF.
                while let Ok(n) = s.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
            }
        }
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Send raw request bytes on a new connection, read the response.
    pub async fn raw(addr: SocketAddr, req: &[u8]) -> Resp {
        within(WAIT, "http request", async {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(req).await.expect("write request");
            read_response(&mut s).await
        })
        .await
    }

    /// A request head with `Host`, `Connection: close`, the token header and `extra`.
    pub fn head(method: &str, target: &str, extra: &[(&str, &str)]) -> String {
        let mut h = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{}: {}\r\n",
            TOKEN_HEADER.0, TOKEN_HEADER.1
        );
        for (k, v) in extra {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h
    }

    pub async fn get(addr: SocketAddr, target: &str) -> Resp {
        get_with(addr, target, &[]).await
    }

    pub async fn get_with(addr: SocketAddr, target: &str, extra: &[(&str, &str)]) -> Resp {
        let req = head("GET", target, extra) + "\r\n";
        raw(addr, req.as_bytes()).await
    }

    pub async fn post(addr: SocketAddr, target: &str, body: &[u8]) -> Resp {
        let mut req = head(
            "POST",
            target,
            &[
                ("Content-Type", "text/plain;charset=UTF-8"),
                ("Content-Length", &body.len().to_string()),
            ],
        )
        .into_bytes();
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        raw(addr, &req).await
    }
}

use http1::Resp;

/// The polling endpoint with extra query parameters.
fn eio(query: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling{query}")
}

/// The reference server's message for each Engine.IO error code.
fn engine_message(code: u64) -> &'static str {
    match code {
        0 => "Transport unknown",
        1 => "Session ID unknown",
        2 => "Bad handshake method",
        3 => "Bad request",
        4 => "Forbidden",
        5 => "Unsupported protocol version",
        _ => unreachable!(),
    }
}

/// Exactly `{"code":code,"message":message}` as JSON, with that status.
fn assert_engine_error_msg(r: &Resp, status: u16, code: u64, message: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: status (body {:?})", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{what}: content type"
    );
    assert_eq!(
        r.json(),
        json!({ "code": code, "message": message }),
        "{what}: body"
    );
}

fn assert_engine_error(r: &Resp, code: u64, what: &str) {
    assert_engine_error_msg(r, 400, code, engine_message(code), what);
}

/// Split a polling body into its packets.
fn packets(body: &str) -> Vec<String> {
    body.split('\u{1e}').map(str::to_owned).collect()
}

/// A polling handshake: the session id and the open packet's JSON.
async fn handshake(addr: SocketAddr) -> (String, Value) {
    let r = http1::get(addr, &eio("")).await;
    assert_eq!(r.status, 200, "handshake: {:?}", r.text());
    let body = r.text();
    assert!(body.starts_with("0{"), "open packet: {body:?}");
    let open: Value = serde_json::from_str(&body[1..]).expect("open packet JSON");
    let sid = open["sid"].as_str().expect("sid").to_owned();
    (sid, open)
}

/// A well-behaved long-polling client (it answers pings).
struct PollClient {
    addr: SocketAddr,
    sid: String,
}

impl PollClient {
    async fn open(addr: SocketAddr) -> PollClient {
        let (sid, _) = handshake(addr).await;
        PollClient { addr, sid }
    }

    fn target(&self) -> String {
        eio(&format!("&sid={}", self.sid))
    }

    async fn get(&self) -> Resp {
        http1::get(self.addr, &self.target()).await
    }

    async fn post(&self, body: &str) -> Resp {
        http1::post(self.addr, &self.target(), body.as_bytes()).await
    }

    async fn post_ok(&self, body: &str) {
        let r = self.post(body).await;
        assert_eq!(r.status, 200, "POST {body:?}: {:?}", r.text());
        assert_eq!(r.text(), "ok");
    }

    /// Poll, answering pings, until a packet satisfies `pred`; returns the packets
    /// received (pings excluded), the matching one last.
    async fn recv_until(&self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        within(WAIT, "polling for a packet", async {
            let mut got = Vec::new();
            loop {
                let r = self.get().await;
                assert_eq!(r.status, 200, "poll: {:?} (so far {got:?})", r.text());
                for p in packets(&r.text()) {
                    if p == "2" {
                        self.post_ok("3").await;
                        continue;
                    }
                    let done = pred(&p);
                    got.push(p);
                    if done {
                        return got;
                    }
                }
            }
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------
// WebSocket client on raw frames
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
enum WsEvent {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame (with its code) or the end of the stream (`None`).
    Closed(Option<u16>),
}

/// A WebSocket client driven by a task that reads all the time, so pings are answered
/// (when `auto_pong`) even while the test waits for something else. Dropping it drops
/// the TCP connection without a close frame.
struct WsClient {
    out: mpsc::UnboundedSender<Message>,
    inc: mpsc::UnboundedReceiver<WsEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WsClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsClient {
    async fn try_connect(
        addr: SocketAddr,
        query: &str,
        token: bool,
        auto_pong: bool,
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket{query}");
        let mut req = url.into_client_request()?;
        if token {
            req.headers_mut().insert(
                TOKEN_HEADER.0,
                http::HeaderValue::from_static(TOKEN_HEADER.1),
            );
        }
        let tcp = within(WAIT, "tcp connect", TcpStream::connect(addr))
            .await
            .expect("tcp connect");
        let (ws, _) = within(
            WAIT,
            "websocket handshake",
            tokio_tungstenite::client_async(req, tcp),
        )
        .await?;
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (in_tx, inc) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            loop {
                tokio::select! {
                    m = out_rx.recv() => {
                        let Some(m) = m else { return };
                        if sink.send(m).await.is_err() {
                            let _ = in_tx.send(WsEvent::Closed(None));
                            return;
                        }
                    }
                    m = stream.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            if auto_pong && t.as_str() == "2" {
                                let _ = sink.send(Message::text("3")).await;
                            } else {
                                let _ = in_tx.send(WsEvent::Text(t.as_str().to_owned()));
                            }
                        }
                        Some(Ok(Message::Binary(b))) => {
                            let _ = in_tx.send(WsEvent::Binary(b.to_vec()));
                        }
                        Some(Ok(Message::Close(f))) => {
                            let _ = in_tx.send(WsEvent::Closed(f.map(|f| u16::from(f.code))));
                            // Let tungstenite answer the close, then stop.
                            let _ = timeout(Duration::from_secs(1), async {
                                while stream.next().await.is_some() {}
                            })
                            .await;
                            return;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => {
                            let _ = in_tx.send(WsEvent::Closed(None));
                            return;
                        }
                    }
                }
            }
        });
        Ok(WsClient { out, inc, task })
    }

    async fn connect(addr: SocketAddr, query: &str, auto_pong: bool) -> WsClient {
        Self::try_connect(addr, query, true, auto_pong)
            .await
            .expect("websocket connect")
    }

    /// Connected at the Engine.IO level: returns the open packet's JSON.
    async fn open_with(addr: SocketAddr, auto_pong: bool) -> (WsClient, Value) {
        let mut ws = Self::connect(addr, "", auto_pong).await;
        let open = ws.text().await;
        assert!(open.starts_with("0{"), "open packet: {open:?}");
        let v: Value = serde_json::from_str(&open[1..]).expect("open JSON");
        (ws, v)
    }

    async fn open(addr: SocketAddr) -> (WsClient, Value) {
        Self::open_with(addr, true).await
    }

    /// Connected to namespace `/`: returns the Socket.IO socket id.
    async fn sio_with(addr: SocketAddr, auto_pong: bool) -> (WsClient, String) {
        let (mut ws, _) = Self::open_with(addr, auto_pong).await;
        ws.send("40");
        let sid = ws.connected().await;
        (ws, sid)
    }

    async fn sio(addr: SocketAddr) -> (WsClient, String) {
        Self::sio_with(addr, true).await
    }

    /// Expect `40{"sid":...}` and return the sid.
    async fn connected(&mut self) -> String {
        let t = self.text().await;
        assert!(t.starts_with("40{"), "expected a CONNECT answer, got {t:?}");
        let v: Value = serde_json::from_str(&t[2..]).expect("CONNECT JSON");
        v["sid"].as_str().expect("sid").to_owned()
    }

    fn send(&self, text: &str) {
        let _ = self.out.send(Message::text(text.to_owned()));
    }

    fn send_binary(&self, data: Vec<u8>) {
        let _ = self.out.send(Message::binary(data));
    }

    async fn next(&mut self) -> WsEvent {
        within(WAIT, "websocket message", self.inc.recv())
            .await
            .unwrap_or(WsEvent::Closed(None))
    }

    /// The next text message (pings are answered by the task when `auto_pong`).
    async fn text(&mut self) -> String {
        match self.next().await {
            WsEvent::Text(t) => t,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Wait for the connection to end, skipping messages; returns the close code and the
    /// text messages seen before.
    async fn closed(&mut self) -> (Option<u16>, Vec<String>) {
        let mut seen = Vec::new();
        within(WAIT, "the connection to close", async {
            loop {
                match self.inc.recv().await {
                    Some(WsEvent::Closed(code)) => return (code, seen),
                    None => return (None, seen),
                    Some(WsEvent::Text(t)) => seen.push(t),
                    Some(WsEvent::Binary(_)) => {}
                }
            }
        })
        .await
    }

    /// Close cleanly (a close frame) and wait for the server's answer.
    async fn close(mut self) {
        let _ = self.out.send(Message::Close(None));
        self.closed().await;
    }
}

/// A masked client frame, as a browser sends it.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else {
        assert!(len < 65536);
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A WebSocket client on a bare TCP stream, for frames tungstenite refuses to send.
struct RawWs {
    tcp: TcpStream,
}

impl RawWs {
    /// Upgrade a new connection to `/socket.io/?EIO=4&transport=websocket`.
    async fn connect(addr: SocketAddr) -> RawWs {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let upgrade = http1::head(
            "GET",
            "/socket.io/?EIO=4&transport=websocket",
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ],
        )
        .replace("Connection: close\r\n", "")
            + "\r\n";
        tcp.write_all(upgrade.as_bytes()).await.unwrap();
        // Byte by byte, so no frame after the head is consumed.
        let mut head = Vec::new();
        within(WAIT, "101 response", async {
            while !head.ends_with(b"\r\n\r\n") {
                head.push(tcp.read_u8().await.expect("read the 101 head"));
            }
        })
        .await;
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
            "{head}"
        );
        RawWs { tcp }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    /// The next frame from the server (unmasked): opcode and payload; `None` at EOF.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        within(WAIT, "a frame", async {
            let mut h = [0u8; 2];
            self.tcp.read_exact(&mut h).await.ok()?;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                len = u64::from(self.tcp.read_u16().await.ok()?);
            } else if len == 127 {
                len = self.tcp.read_u64().await.ok()?;
            }
            let mut payload = vec![0u8; len as usize];
            self.tcp.read_exact(&mut payload).await.ok()?;
            Some((h[0] & 0x0f, payload))
        })
        .await
    }

    /// Frames until the server's close frame: the text messages seen and the close code.
    async fn until_close(&mut self) -> (Vec<String>, Option<u16>) {
        let mut texts = Vec::new();
        loop {
            match self.frame().await {
                Some((0x1, p)) => texts.push(String::from_utf8(p).unwrap()),
                Some((0x8, p)) => {
                    let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                    return (texts, code);
                }
                Some(_) => {}
                None => return (texts, None),
            }
        }
    }

    /// Join `/` (pings are not answered: use a slow heartbeat).
    async fn sio_connect(&mut self) {
        let (op, open) = self.frame().await.expect("open packet");
        assert_eq!(op, 0x1);
        assert!(open.starts_with(b"0{"));
        self.write(&masked_frame(0x1, b"40")).await;
        let (op, ok) = self.frame().await.expect("CONNECT answer");
        assert_eq!(op, 0x1);
        assert!(ok.starts_with(b"40{"), "{}", String::from_utf8_lossy(&ok));
    }
}

/// The ack id of an EVENT packet `42<id>[...]`.
fn ack_id(packet: &str) -> u64 {
    let rest = packet.strip_prefix("42").expect("an EVENT packet");
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no ack id in {packet:?}"))
}

// =======================================================================================
// Engine.IO over HTTP
// =======================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_handshake() {
    let srv = start(base()).await;
    let r = http1::get(srv.addr, &eio("")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    let body = r.text();
    assert!(body.starts_with("0{"), "{body:?}");
    let open: Value = serde_json::from_str(&body[1..]).unwrap();
    let sid = open["sid"].as_str().expect("sid is a string");
    assert!(!sid.is_empty());
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["pingInterval"], json!(200));
    assert_eq!(open["pingTimeout"], json!(150));
    assert_eq!(open["maxPayload"], json!(1_000_000));
    assert_eq!(open.as_object().unwrap().len(), 5, "{open}");
    assert_eq!(srv.sessions(), 1);
    // Close it from the client side while a poll is pending: the poll gets a noop.
    let target = eio(&format!("&sid={sid}"));
    let addr = srv.addr;
    let t2 = target.clone();
    let pending = tokio::spawn(async move { http1::get(addr, &t2).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = http1::post(srv.addr, &target, b"1").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let released = within(WAIT, "pending poll", pending).await.unwrap();
    assert_eq!((released.status, released.text().as_str()), (200, "6"));
    srv.wait_idle().await;
    let r = http1::get(srv.addr, &target).await;
    assert_engine_error(&r, 1, "GET after close");
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_rejects_bad_version_and_transport() {
    let srv = start(base()).await;
    let cases = [
        ("/socket.io/?EIO=3&transport=polling", 5),
        ("/socket.io/?transport=polling", 5),
        ("/socket.io/?EIO=4&transport=__proto__", 0),
        ("/socket.io/?EIO=4&transport=flashsocket", 0),
        ("/socket.io/?EIO=4", 0),
    ];
    for (target, code) in cases {
        let r = http1::get(srv.addr, target).await;
        assert_engine_error(&r, code, target);
        assert_eq!(srv.sessions(), 0, "{target}");
    }
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_method_and_unknown_sid() {
    let srv = start(base()).await;
    let r = http1::post(srv.addr, &eio(""), b"40").await;
    assert_engine_error(&r, 2, "POST handshake");
    let r = http1::get(srv.addr, &eio("&sid=nosuchsession")).await;
    assert_engine_error(&r, 1, "GET unknown sid");
    let r = http1::post(srv.addr, &eio("&sid=nosuchsession"), b"40").await;
    assert_engine_error(&r, 1, "POST unknown sid");
    assert_eq!(srv.sessions(), 0);
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_transport_without_upgrade_headers() {
    let srv = start(base()).await;
    let r = http1::get(srv.addr, "/socket.io/?EIO=4&transport=websocket").await;
    assert_engine_error(&r, 3, "plain GET with transport=websocket");
    assert_eq!(srv.sessions(), 0);
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_polling_payload_closes_session() {
    let srv = start(base()).await;
    let payloads: [&[u8]; 4] = [b"9", b"", b"\xff\xfe\x80abc", b"b!!!notbase64"];
    for payload in payloads {
        let what = format!("POST {:?}", String::from_utf8_lossy(payload));
        let (sid, _) = handshake(srv.addr).await;
        let target = eio(&format!("&sid={sid}"));
        let r = http1::post(srv.addr, &target, payload).await;
        assert_engine_error(&r, 3, &what);
        let r = http1::get(srv.addr, &target).await;
        assert_engine_error(&r, 1, &format!("GET after {what}"));
    }
    assert_eq!(srv.sessions(), 0);
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_polling_body() {
    let srv = start(base().max_payload(1000)).await;

    // Declared too large: refused before the body is read (none is sent).
    let (sid, open) = handshake(srv.addr).await;
    assert_eq!(open["maxPayload"], json!(1000));
    let target = eio(&format!("&sid={sid}"));
    let req = http1::head("POST", &target, &[("Content-Length", "2000")]) + "\r\n";
    let r = http1::raw(srv.addr, req.as_bytes()).await;
    assert_eq!(r.status, 413, "{:?}", r.text());
    let r = http1::get(srv.addr, &target).await;
    assert_engine_error(&r, 1, "GET after 413 (Content-Length)");

    // Chunked, no length: refused once more than max_payload arrived.
    let (sid, _) = handshake(srv.addr).await;
    let target = eio(&format!("&sid={sid}"));
    let mut req = http1::head("POST", &target, &[("Transfer-Encoding", "chunked")]).into_bytes();
    req.extend_from_slice(b"\r\n");
    for _ in 0..2 {
        req.extend_from_slice(b"320\r\n"); // 800 bytes
        req.extend_from_slice(&[b'4'; 800]);
        req.extend_from_slice(b"\r\n");
    }
    let r = http1::raw(srv.addr, &req).await;
    assert_eq!(r.status, 413, "{:?}", r.text());
    let r = http1::get(srv.addr, &target).await;
    assert_engine_error(&r, 1, "GET after 413 (chunked)");

    assert_eq!(srv.sessions(), 0);
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_concurrent_polls() {
    // No ping may answer the first poll while the test sets the second one up.
    let srv = start(slow_heartbeat()).await;
    let (sid, _) = handshake(srv.addr).await;
    let target = eio(&format!("&sid={sid}"));
    let addr = srv.addr;
    let t2 = target.clone();
    let first = tokio::spawn(async move { http1::get(addr, &t2).await });
    // Let the first poll park in the server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_finished(), "the first poll must be pending");
    let second = http1::get(srv.addr, &target).await;
    assert_engine_error(&second, 3, "second concurrent poll");
    let first = within(WAIT, "first poll", first).await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "1");
    let r = http1::get(srv.addr, &target).await;
    assert_engine_error(&r, 1, "GET after the duplicate poll");
    assert_eq!(srv.sessions(), 0);
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_after_websocket_upgrade() {
    let srv = start(base()).await;
    let (sid, _) = handshake(srv.addr).await;
    let target = eio(&format!("&sid={sid}"));
    // A poll is pending while the client probes, as a real client's is.
    let addr = srv.addr;
    let t2 = target.clone();
    let pending = tokio::spawn(async move { http1::get(addr, &t2).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = WsClient::connect(srv.addr, &format!("&sid={sid}"), true).await;
    ws.send("2probe");
    assert_eq!(ws.text().await, "3probe");
    // The probe releases the pending poll with a noop (or with a ping that was due).
    let released = within(WAIT, "pending poll", pending).await.unwrap();
    assert_eq!(released.status, 200);
    match released.text().as_str() {
        "6" => {}
        "2" => {
            // A ping was due first: answer it over polling.
            let r = http1::post(srv.addr, &target, b"3").await;
            assert_eq!(r.status, 200, "pong: {:?}", r.text());
        }
        other => panic!("pending poll during the upgrade got {other:?}"),
    }
    ws.send("5");
    // Over the upgraded transport, join `/` (proves the upgrade completed).
    ws.send("40");
    ws.connected().await;
    let r = http1::get(srv.addr, &target).await;
    assert_engine_error(&r, 3, "GET polling after upgrade");
    let r = http1::post(srv.addr, &target, b"3").await;
    assert_engine_error(&r, 3, "POST polling after upgrade");
    // The session is unharmed.
    ws.send(r#"421["echo","upgraded"]"#);
    assert_eq!(ws.text().await, r#"431["upgraded"]"#);
    assert_eq!((srv.sessions(), srv.sockets()), (1, 1));
    ws.close().await;
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_request_hook() {
    let srv = start(base().allow_request(|req| {
        if req.header("x-token") == Some("ok") {
            Ok(())
        } else {
            Err("nope".into())
        }
    }))
    .await;
    let bare = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        eio("")
    );
    let r = http1::raw(srv.addr, bare.as_bytes()).await;
    assert_engine_error_msg(&r, 403, 4, "nope", "handshake without the token");
    let ok = http1::get(srv.addr, &eio("")).await;
    assert_eq!(ok.status, 200, "with the token: {:?}", ok.text());
    assert!(ok.text().starts_with("0{"));
    // The WebSocket handshake goes through the hook too.
    match WsClient::try_connect(srv.addr, "", false, true).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 403);
        }
        Err(e) => panic!("websocket without the token: unexpected error {e}"),
        Ok(_) => panic!("websocket without the token was accepted"),
    }
    // The session opened above is never polled again: the heartbeat ends it.
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origins_with_credentials() {
    let srv =
        start(base().cors(tether::Cors::origins(["http://a.example"]).with_credentials())).await;

    let r = http1::get_with(srv.addr, &eio(""), &[("Origin", "http://a.example")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://a.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));

    // An origin CORS does not allow is refused outright (the WebSocket upgrade too).
    let r = http1::get_with(srv.addr, &eio(""), &[("Origin", "http://evil.example")]).await;
    assert_engine_error_msg(&r, 403, 4, "Forbidden", "foreign origin");
    assert_eq!(r.header("access-control-allow-origin"), None);

    let req = http1::head(
        "OPTIONS",
        &eio(""),
        &[
            ("Origin", "http://a.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
    ) + "\r\n";
    let r = http1::raw(srv.addr, req.as_bytes()).await;
    assert_eq!(r.status, 204);
    let methods = r
        .header("access-control-allow-methods")
        .expect("Access-Control-Allow-Methods");
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://a.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert!(r.body.is_empty());
    // Preflight does not open a session; the two handshakes above time out.
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads() {
    let srv = start(base()).await;
    let big = "a".repeat(17 * 1024);
    let r = http1::get_with(srv.addr, &eio(""), &[("X-Big", &big)]).await;
    assert_eq!(r.status, 431, "one 17 KiB header");
    srv.assert_healthy().await;

    let names: Vec<String> = (0..150).map(|i| format!("X-H{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let r = http1::get_with(srv.addr, &eio(""), &many).await;
    assert_eq!(r.status, 431, "150 headers");
    assert_eq!(srv.sessions(), 0);
    srv.assert_healthy().await;
}

// =======================================================================================
// Socket.IO over WebSocket
// =======================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_socketio_packets_close_the_connection() {
    let srv = start(base()).await;
    let (mut good, _) = WsClient::sio(srv.addr).await;
    let deep = format!("42{}", "[".repeat(1000));
    let placeholder = r#"451-["a",{"_placeholder":true,"num":5}]"#;
    let cases: Vec<(&str, Vec<Message>)> = vec![
        ("unknown type 9", vec![Message::text("49")]),
        ("event with an object", vec![Message::text("42{}")]),
        ("reserved event", vec![Message::text(r#"42["connect"]"#)]),
        ("binary event without count", vec![Message::text("45")]),
        ("connect_error from a client", vec![Message::text("445")]),
        (
            "placeholder beyond the attachments",
            vec![Message::text(placeholder), Message::binary(vec![1u8, 2, 3])],
        ),
        ("1000 nested arrays", vec![Message::text(deep.clone())]),
        (
            "23-digit ack id",
            vec![Message::text(r#"4211111111111111111111111["a"]"#)],
        ),
        ("unexpected binary", vec![Message::binary(vec![0u8, 1, 2])]),
        ("11 attachments", vec![Message::text(r#"4511-["a"]"#)]),
        ("empty engine.io packet", vec![Message::text("")]),
        ("unknown engine.io type", vec![Message::text("x")]),
    ];
    for (i, (what, frames)) in cases.into_iter().enumerate() {
        let (mut bad, _) = WsClient::sio(srv.addr).await;
        for f in frames {
            let _ = bad.out.send(f);
        }
        let (code, seen) = bad.closed().await;
        assert!(seen.is_empty(), "{what}: unexpected messages {seen:?}");
        assert!(code.is_some(), "{what}: no close frame");
        assert!(
            eventually(WAIT, || srv.disconnects() == i + 1).await,
            "{what}: disconnect handler not run"
        );
        assert_eq!(
            srv.reasons().last(),
            Some(&DisconnectReason::ParseError),
            "{what}"
        );
        // The well-behaved client is unaffected.
        good.send(&format!(r#"42{i}["echo","still here"]"#));
        assert_eq!(
            good.text().await,
            format!(r#"43{i}["still here"]"#),
            "{what}"
        );
    }
    good.close().await;
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_attachments_then_vanish() {
    // Only the vanished TCP connection may end the session (no heartbeat in time).
    let srv = start(slow_heartbeat()).await;
    let (ws, _) = WsClient::sio(srv.addr).await;
    ws.send(r#"452-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    // Let the server take the header packet in.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!((srv.sessions(), srv.sockets()), (1, 1));
    drop(ws);
    srv.wait_idle().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(srv.disconnects(), 1, "disconnect handler runs exactly once");
    let reasons = srv.reasons();
    assert!(
        matches!(
            reasons.as_slice(),
            [DisconnectReason::TransportClose | DisconnectReason::TransportError]
        ),
        "{reasons:?}"
    );
    srv.assert_healthy().await;
    assert_eq!(srv.disconnects(), 3);
}

/// On a current-thread runtime the server takes a read that did not fill its buffer to
/// have emptied the socket (it skips the `recv` that would fail with `EAGAIN`): a frame
/// split over many segments, many frames in one burst, and a last frame followed at once
/// by the end of the stream are all still read and answered.
#[test]
fn current_thread_server_reads_split_batched_and_closing_input() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let srv = start(slow_heartbeat()).await;
        let mut ws = RawWs::connect(srv.addr).await;
        ws.sio_connect().await;
        ws.tcp.set_nodelay(true).expect("nodelay");
        let split = br#"42["echo","split"]"#;
        for b in masked_frame(0x1, split) {
            ws.write(&[b]).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(ws.frame().await, Some((0x1, split.to_vec())));
        let text = |i: usize| format!(r#"42["echo",{i},"{}"]"#, "x".repeat(40));
        let mut burst = Vec::new();
        for i in 0..300 {
            burst.extend(masked_frame(0x1, text(i).as_bytes()));
        }
        assert!(burst.len() > 8192, "more than one read");
        ws.write(&burst).await;
        for i in 0..300 {
            assert_eq!(
                ws.frame().await,
                Some((0x1, text(i).into_bytes())),
                "echo {i}"
            );
        }
        let last = br#"42["echo","last"]"#;
        ws.write(&masked_frame(0x1, last)).await;
        ws.tcp.shutdown().await.expect("shutdown");
        assert_eq!(ws.frame().await, Some((0x1, last.to_vec())));
        assert!(
            eventually(WAIT, || srv.stats.disconnects.load(Ordering::SeqCst) == 1).await,
            "the end of the stream went unseen"
        );
        assert_eq!(
            srv.stats.reasons.lock().unwrap().as_slice(),
            &[DisconnectReason::TransportClose]
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_websocket_message() {
    let srv = start(base().max_payload(1000)).await;
    let (mut good, _) = WsClient::sio(srv.addr).await;
    let (mut bad, _) = WsClient::sio(srv.addr).await;
    bad.send(&format!("4{}", "a".repeat(4999)));
    let (_code, seen) = bad.closed().await;
    assert!(seen.is_empty(), "{seen:?}");
    assert!(eventually(WAIT, || srv.disconnects() == 1).await);
    assert_eq!(srv.reasons(), [DisconnectReason::TransportError]);
    good.send(r#"421["echo","fine"]"#);
    assert_eq!(good.text().await, r#"431["fine"]"#);
    good.close().await;
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_namespace_joined_in_time() {
    let srv = start(base()).await;
    // WebSocket: connected at the Engine.IO level only, answering pings.
    let (mut ws, _) = WsClient::open(srv.addr).await;
    let t0 = Instant::now();
    let (code, seen) = ws.closed().await;
    let elapsed = t0.elapsed();
    assert_eq!(seen, ["1"], "a close packet precedes the close");
    assert_eq!(code, Some(1000));
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed <= Duration::from_millis(1500),
        "closed after {elapsed:?}, connect_timeout is {CONNECT_TIMEOUT:?}"
    );
    srv.wait_idle().await;

    // Polling: the same, the close packet arrives in a poll.
    let p = PollClient::open(srv.addr).await;
    let t0 = Instant::now();
    let got = p.recv_until(|m| m == "1").await;
    assert_eq!(got, ["1"]);
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed <= Duration::from_millis(1500),
        "closed after {elapsed:?}"
    );
    let r = p.get().await;
    assert_engine_error(&r, 1, "GET after the connect timeout");

    assert_eq!(srv.stats.connects.load(Ordering::SeqCst), 0);
    assert_eq!(srv.disconnects(), 0);
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_pings() {
    let srv = start(base()).await;
    let t0 = Instant::now();
    let (mut ws, _) = WsClient::sio_with(srv.addr, false).await;
    let (_code, seen) = ws.closed().await;
    let elapsed = t0.elapsed();
    assert!(seen.iter().all(|m| m == "2"), "{seen:?}");
    assert!(!seen.is_empty(), "at least one ping");
    let limit = PING_INTERVAL + PING_TIMEOUT + Duration::from_millis(700);
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed <= limit,
        "closed after {elapsed:?}"
    );
    assert!(eventually(WAIT, || srv.disconnects() == 1).await);
    assert_eq!(srv.reasons(), [DisconnectReason::PingTimeout]);
    srv.wait_idle().await;

    // Polling client that joins `/` and then stops polling.
    let p = PollClient::open(srv.addr).await;
    p.post_ok("40").await;
    p.recv_until(|m| m.starts_with("40{")).await;
    assert!(eventually(WAIT, || srv.disconnects() == 2).await);
    assert_eq!(srv.reasons()[1], DisconnectReason::PingTimeout);
    let r = p.get().await;
    assert_engine_error(&r, 1, "GET after the ping timeout");
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_vanishes_mid_frame() {
    // Only the vanished TCP connection may end the session (no heartbeat in time).
    let srv = start(slow_heartbeat()).await;
    let mut raw = RawWs::connect(srv.addr).await;
    raw.sio_connect().await;
    assert_eq!((srv.sessions(), srv.sockets()), (1, 1));
    // Half of a 100-byte text frame, then gone.
    let full = masked_frame(0x1, &[b'4'; 100]);
    raw.write(&full[..full.len() / 2]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(raw);
    srv.wait_idle().await;
    assert_eq!(srv.disconnects(), 1);
    let reasons = srv.reasons();
    assert!(
        matches!(
            reasons.as_slice(),
            [DisconnectReason::TransportClose | DisconnectReason::TransportError]
        ),
        "{reasons:?}"
    );

    // Half of a request head, then gone.
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 1")
        .await
        .unwrap();
    drop(tcp);
    srv.assert_healthy().await;
}

/// One connect/emit/leave cycle of the leak test; `i` picks the flavour.
async fn leak_cycle(addr: SocketAddr, i: usize) {
    match i % 5 {
        // WebSocket, clean close.
        0 => {
            let (mut ws, _) = WsClient::sio(addr).await;
            ws.send(&format!(r#"42{i}["echo",{i}]"#));
            assert_eq!(ws.text().await, format!("43{i}[{i}]"));
            ws.close().await;
        }
        // WebSocket, TCP dropped without a close frame.
        1 => {
            let (mut ws, _) = WsClient::sio(addr).await;
            ws.send(&format!(r#"42{i}["echo",{i}]"#));
            assert_eq!(ws.text().await, format!("43{i}[{i}]"));
            drop(ws);
        }
        // WebSocket, Engine.IO close packet.
        2 => {
            let (mut ws, _) = WsClient::sio(addr).await;
            ws.send(r#"42["echo","no ack"]"#);
            assert_eq!(ws.text().await, r#"42["echo","no ack"]"#);
            ws.send("1");
            ws.closed().await;
        }
        // Polling, clean close.
        3 => {
            let p = PollClient::open(addr).await;
            p.post_ok("40").await;
            p.recv_until(|m| m.starts_with("40{")).await;
            p.post_ok(&format!(r#"42{i}["echo",{i}]"#)).await;
            let want = format!("43{i}[{i}]");
            p.recv_until(|m| m == want).await;
            p.post_ok("1").await;
        }
        // Polling, abandoned (the heartbeat ends it).
        _ => {
            let p = PollClient::open(addr).await;
            p.post_ok("40").await;
            p.recv_until(|m| m.starts_with("40{")).await;
            p.post_ok(&format!(r#"42{i}["echo",{i}]"#)).await;
            let want = format!("43{i}[{i}]");
            p.recv_until(|m| m == want).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leaks_after_many_clients() {
    let srv = start(base()).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let t0 = Instant::now();
    for batch in 0..10 {
        let mut set = tokio::task::JoinSet::new();
        for j in 0..20 {
            set.spawn(leak_cycle(srv.addr, batch * 20 + j));
        }
        within(Duration::from_secs(10), "a batch of 20 cycles", async {
            while let Some(r) = set.join_next().await {
                r.expect("cycle");
            }
        })
        .await;
    }
    let loop_time = t0.elapsed();
    srv.wait_idle().await;
    assert_eq!(srv.stats.connects.load(Ordering::SeqCst), 200);
    assert!(
        eventually(WAIT, || srv.disconnects() == 200).await,
        "{} disconnects",
        srv.disconnects()
    );
    let settled = eventually(Duration::from_secs(5), || {
        metrics.num_alive_tasks() <= before + 2
    })
    .await;
    assert!(
        settled,
        "alive tasks: {} before, {} after (loop took {loop_time:?})",
        before,
        metrics.num_alive_tasks()
    );
    srv.assert_healthy().await;
}

// =======================================================================================
// The happy path, driven from Rust
// =======================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emits_and_acks_both_ways() {
    let srv = start(base()).await;
    let (mut ws, sid) = WsClient::sio(srv.addr).await;
    let socket = srv.io.of("/").get_socket(&sid).expect("socket by id");
    assert!(socket.connected());

    // Server to client.
    socket.emit("hello", &json!({ "n": 1 })).unwrap();
    assert_eq!(ws.text().await, r#"42["hello",{"n":1}]"#);

    // Client to server, acknowledged.
    ws.send(r#"421["echo",1]"#);
    assert_eq!(ws.text().await, "431[1]");

    // Binary arguments travel as attachments, both ways.
    ws.send(r#"451-2["echo",{"_placeholder":true,"num":0}]"#);
    ws.send_binary(vec![1, 2, 3]);
    assert_eq!(ws.text().await, r#"461-2[{"_placeholder":true,"num":0}]"#);
    match ws.next().await {
        WsEvent::Binary(b) => assert_eq!(b, [1, 2, 3]),
        other => panic!("expected the attachment, got {other:?}"),
    }

    // Server to client, acknowledged by the client.
    let s = socket.clone();
    let ask = tokio::spawn(async move {
        s.emit_with_ack("question", Args::from(vec![json!(7)]), WAIT)
            .await
    });
    let q = ws.text().await;
    let id = ack_id(&q);
    assert_eq!(q, format!(r#"42{id}["question",7]"#));
    ws.send(&format!(r#"43{id}["answer",{{"x":true}}]"#));
    let reply = within(WAIT, "ack", ask).await.unwrap().expect("ack");
    assert_eq!(reply.values(), vec![json!("answer"), json!({ "x": true })]);

    // Unanswered: times out.
    let s = socket.clone();
    let r = s
        .emit_with_ack("silence", Args::new(), Duration::from_millis(200))
        .await;
    assert_eq!(r, Err(tether::sio::AckError::Timeout));
    assert!(ws.text().await.ends_with(r#"["silence"]"#));

    ws.close().await;
    assert!(eventually(WAIT, || !socket.connected()).await);
    assert_eq!(srv.reasons(), [DisconnectReason::TransportClose]);
    srv.assert_healthy().await;
}

/// Three clients join room `r`, a fourth does not.
async fn room_of_three(srv: &Server) -> (Vec<(WsClient, String)>, WsClient) {
    let mut members = Vec::new();
    for _ in 0..3 {
        let (mut ws, sid) = WsClient::sio(srv.addr).await;
        ws.send(r#"421["join","r"]"#);
        assert_eq!(ws.text().await, "431[true]");
        members.push((ws, sid));
    }
    let (outsider, _) = WsClient::sio(srv.addr).await;
    (members, outsider)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_to_room() {
    let srv = start(base()).await;
    let (mut members, mut outsider) = room_of_three(&srv).await;
    srv.io.to("r").emit("news", &"hi").unwrap();
    for (ws, _) in &mut members {
        assert_eq!(ws.text().await, r#"42["news","hi"]"#);
    }
    // Had the outsider received the broadcast, it would come before this ack.
    outsider.send(r#"425["echo","x"]"#);
    assert_eq!(outsider.text().await, r#"435["x"]"#);
    assert_eq!(srv.io.of("/").rooms().len(), 5, "r and 4 own rooms");
    for (ws, _) in members {
        ws.close().await;
    }
    outsider.close().await;
    srv.assert_healthy().await;
    assert!(srv.io.of("/").rooms().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_ack_with_a_silent_member() {
    let srv = start(base()).await;
    let (mut members, outsider) = room_of_three(&srv).await;
    let op = srv.io.to("r").timeout(Duration::from_millis(400));
    let t0 = Instant::now();
    let acks =
        tokio::spawn(async move { op.emit_with_ack("poll", Args::from(vec![json!(1)])).await });
    let mut answered = Vec::new();
    for (k, (ws, sid)) in members.iter_mut().enumerate() {
        let q = ws.text().await;
        let id = ack_id(&q);
        assert_eq!(q, format!(r#"42{id}["poll",1]"#));
        if k < 2 {
            ws.send(&format!(r#"43{id}["vote",{k}]"#));
            answered.push((sid.clone(), k));
        }
    }
    let acks = within(WAIT, "broadcast acks", acks).await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(350),
        "waited for the timeout"
    );
    assert_eq!(acks.missing, 1);
    assert!(!acks.is_complete());
    assert_eq!(acks.responses.len(), 2);
    for (sid, k) in answered {
        let (_, args) = acks
            .responses
            .iter()
            .find(|(id, _)| id.as_str() == sid)
            .unwrap_or_else(|| panic!("no reply from {sid}: {:?}", acks.responses));
        assert_eq!(args.values(), vec![json!("vote"), json!(k)]);
    }
    for (ws, _) in members {
        ws.close().await;
    }
    outsider.close().await;
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_acks_fail_on_disconnect() {
    let srv = start(slow_heartbeat()).await;
    // A single emit_with_ack whose client vanishes.
    let (mut ws, sid) = WsClient::sio(srv.addr).await;
    let socket = srv.io.of("/").get_socket(&sid).unwrap();
    let ask = tokio::spawn(async move {
        socket
            .emit_with_ack("q", Args::new(), Duration::from_secs(10))
            .await
    });
    assert!(ws.text().await.ends_with(r#"["q"]"#));
    drop(ws);
    let r = within(WAIT, "ack error after disconnect", ask)
        .await
        .unwrap();
    assert_eq!(r, Err(tether::sio::AckError::Disconnected));

    // A broadcast with ack: two answer, one vanishes; no need to wait for the timeout.
    let (mut members, outsider) = room_of_three(&srv).await;
    let op = srv.io.to("r").timeout(Duration::from_secs(10));
    let acks = tokio::spawn(async move { op.emit_with_ack("poll", Args::new()).await });
    let (mut gone, _) = members.pop().unwrap();
    assert!(gone.text().await.ends_with(r#"["poll"]"#));
    drop(gone);
    for (ws, _) in &mut members {
        let id = ack_id(&ws.text().await);
        ws.send(&format!("43{id}[1]"));
    }
    let acks = within(WAIT, "broadcast acks", acks).await.unwrap();
    assert_eq!((acks.responses.len(), acks.missing), (2, 1));
    for (ws, _) in members {
        ws.close().await;
    }
    outsider.close().await;
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_binary_and_keep_alive() {
    let srv = start(base()).await;
    // Every request on one keep-alive connection, as a browser may do.
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    let mut send = async |req: String| {
        tcp.write_all(req.as_bytes()).await.unwrap();
        within(WAIT, "keep-alive response", http1::read_response(&mut tcp)).await
    };
    let keep = |h: String| h.replace("Connection: close\r\n", "");
    let r = send(keep(http1::head("GET", &eio(""), &[])) + "\r\n").await;
    assert_eq!(r.status, 200);
    let open: Value = serde_json::from_str(&r.text()[1..]).unwrap();
    let target = eio(&format!("&sid={}", open["sid"].as_str().unwrap()));
    let post = |body: &str| {
        keep(http1::head(
            "POST",
            &target,
            &[("Content-Length", &body.len().to_string())],
        )) + "\r\n"
            + body
    };
    let r = send(post("40")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = send(keep(http1::head("GET", &target, &[])) + "\r\n").await;
    assert!(r.text().starts_with("40{"), "{:?}", r.text());
    // A binary event (attachment base64-encoded) is echoed the same way.
    let r = send(post(
        "451-[\"echo\",{\"_placeholder\":true,\"num\":0}]\u{1e}bAQID",
    ))
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = send(keep(http1::head("GET", &target, &[])) + "\r\n").await;
    let got: Vec<String> = packets(&r.text())
        .into_iter()
        .filter(|p| p != "2")
        .collect();
    assert_eq!(
        got,
        [r#"451-["echo",{"_placeholder":true,"num":0}]"#, "bAQID"]
    );
    let r = send(post("1")).await;
    assert_eq!(r.status, 200);
    drop(tcp);
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_upgrade_keeps_polling_session() {
    let srv = start(base().upgrade_timeout(Duration::from_millis(300))).await;
    let p = PollClient::open(srv.addr).await;
    p.post_ok("40").await;
    p.recv_until(|m| m.starts_with("40{")).await;
    // A WebSocket that never probes is dropped after upgrade_timeout.
    let mut ws = WsClient::connect(srv.addr, &format!("&sid={}", p.sid), false).await;
    let t0 = Instant::now();
    ws.closed().await;
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    // A second one that sends a message instead of the probe is dropped at once.
    let mut ws = WsClient::connect(srv.addr, &format!("&sid={}", p.sid), false).await;
    ws.send("4hello");
    ws.closed().await;
    // The polling session carries on.
    p.post_ok(r#"423["echo","still polling"]"#).await;
    p.recv_until(|m| m == r#"433["still polling"]"#).await;
    assert_eq!((srv.sessions(), srv.sockets()), (1, 1));
    p.post_ok("1").await;
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_everything() {
    let srv = start(slow_heartbeat()).await;
    let (mut ws, _) = WsClient::sio(srv.addr).await;
    let p = PollClient::open(srv.addr).await;
    p.post_ok("40").await;
    p.recv_until(|m| m.starts_with("40{")).await;
    let addr = srv.addr;
    let target = p.target();
    let pending = tokio::spawn(async move { http1::get(addr, &target).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.handle.shutdown();
    let (code, seen) = ws.closed().await;
    assert_eq!(
        (code, seen.as_slice()),
        (Some(1000), ["1".to_owned()].as_slice())
    );
    let r = within(WAIT, "pending poll", pending).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "1"));
    srv.wait_idle().await;
    assert_eq!(
        srv.reasons(),
        [
            DisconnectReason::ServerShuttingDown,
            DisconnectReason::ServerShuttingDown
        ]
    );
    // No new connections.
    let refused = eventually(WAIT, || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err()
    })
    .await;
    assert!(refused, "the listener still accepts after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_frame() {
    let srv = start(slow_heartbeat()).await;
    let (mut good, _) = WsClient::sio(srv.addr).await;
    let mut raw = RawWs::connect(srv.addr).await;
    raw.sio_connect().await;
    raw.write(&masked_frame(0x1, b"42[\"echo\",\"\xff\xfe\"]"))
        .await;
    let (texts, _code) = raw.until_close().await;
    assert!(texts.is_empty(), "{texts:?}");
    assert!(eventually(WAIT, || srv.disconnects() == 1).await);
    good.send(r#"421["echo","ok"]"#);
    assert_eq!(good.text().await, r#"431["ok"]"#);
    good.close().await;
    srv.assert_healthy().await;
}

/// RFC 6455 section 7.4.1 (and the reference `ws` server): a message over the size limit
/// is refused with close code 1009, a text message that is not UTF-8 with 1007.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn websocket_protocol_error_close_codes() {
    let srv = start(slow_heartbeat().max_payload(1000)).await;
    let mut raw = RawWs::connect(srv.addr).await;
    raw.sio_connect().await;
    raw.write(&masked_frame(
        0x1,
        format!("4{}", "a".repeat(4999)).as_bytes(),
    ))
    .await;
    let (_, oversized) = raw.until_close().await;

    let mut raw = RawWs::connect(srv.addr).await;
    raw.sio_connect().await;
    raw.write(&masked_frame(0x1, b"4\xff\xfe")).await;
    let (_, invalid_utf8) = raw.until_close().await;
    assert_eq!(
        (oversized, invalid_utf8),
        (Some(1009), Some(1007)),
        "close codes (oversized message, invalid UTF-8)"
    );
    srv.assert_healthy().await;
}

/// The reference server closes a session as soon as the connection of its pending
/// long-poll `GET` closes ("poll connection closed prematurely" → "transport error").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn pending_poll_connection_lost_closes_session() {
    // Only the lost connection may end the session (no heartbeat in time).
    let srv = start(slow_heartbeat()).await;
    let p = PollClient::open(srv.addr).await;
    p.post_ok("40").await;
    p.recv_until(|m| m.starts_with("40{")).await;
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    let req = http1::head("GET", &p.target(), &[]) + "\r\n";
    tcp.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(tcp);
    srv.wait_idle().await;
    assert_eq!(srv.reasons(), [DisconnectReason::TransportError]);
    srv.assert_healthy().await;
}

/// Socket.IO reports a peer that went away without a close frame as "transport close"
/// (the `ws` library emits `close` with 1006, no `error`); tether says "transport error".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn vanished_websocket_peer_reason() {
    let srv = start(slow_heartbeat()).await;
    let (ws, _) = WsClient::sio(srv.addr).await;
    drop(ws);
    srv.wait_idle().await;
    assert_eq!(srv.reasons(), [DisconnectReason::TransportClose]);
}

/// Connections that send nothing, or half a request head, are cut off after
/// `header_read_timeout`; so is an idle keep-alive connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off() {
    let cfg = tether::EngineConfig {
        header_read_timeout: Duration::from_millis(300),
        ping_interval: PING_INTERVAL,
        ping_timeout: PING_TIMEOUT,
        ..Default::default()
    };
    let srv = start(Io::builder().engine_config(cfg)).await;
    let partial = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n";
    let keep_alive =
        http1::head("GET", &eio(""), &[]).replace("Connection: close\r\n", "") + "\r\n";
    for (what, bytes) in [
        ("nothing", &b""[..]),
        ("half a head", &partial[..]),
        ("an idle keep-alive connection", keep_alive.as_bytes()),
    ] {
        let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        if !bytes.is_empty() && bytes.ends_with(b"\r\n\r\n") {
            let r = within(WAIT, what, http1::read_response(&mut tcp)).await;
            assert_eq!(r.status, 200, "{what}");
        }
        let t0 = Instant::now();
        let mut buf = [0u8; 64];
        let n = within(WAIT, what, tcp.read(&mut buf)).await.unwrap_or(0);
        assert_eq!(n, 0, "{what}: connection closed without a response");
        assert!(
            t0.elapsed() >= Duration::from_millis(200),
            "{what}: {:?}",
            t0.elapsed()
        );
    }
    srv.assert_healthy().await;
}

// =======================================================================================
// Abuse controls
// =======================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_by_default() {
    let srv = start(base()).await;
    // (The helpers send `Host: 127.0.0.1`.)
    let host = "127.0.0.1";
    // No Origin (a non-browser client): fine.
    let r = http1::get(srv.addr, &eio("")).await;
    assert_eq!(r.status, 200);
    // The server's own origin: fine.
    let own = format!("http://{host}");
    let r = http1::get_with(srv.addr, &eio(""), &[("Origin", own.as_str())]).await;
    assert_eq!(r.status, 200, "same origin: {}", r.text());
    // Another origin: refused, for polling and for the WebSocket upgrade alike.
    let r = http1::get_with(srv.addr, &eio(""), &[("Origin", "http://evil.example")]).await;
    assert_engine_error_msg(&r, 403, 4, "Forbidden", "cross-origin handshake");
    let mut req = format!("ws://{}/socket.io/?EIO=4&transport=websocket", srv.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "origin",
        http::HeaderValue::from_static("http://evil.example"),
    );
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!(
            "cross-origin websocket was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    // Turned off, anything goes.
    let open = start(base().check_origin(false)).await;
    let r = http1::get_with(open.addr, &eio(""), &[("Origin", "http://evil.example")]).await;
    assert_eq!(r.status, 200);
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_cap() {
    let srv = start(base().max_connections_per_ip(2)).await;
    let (a, _) = WsClient::sio(srv.addr).await;
    let (_held, _) = handshake(srv.addr).await;
    // The third open connection from 127.0.0.1 is refused with 429.
    let r = http1::get(srv.addr, &eio("")).await;
    assert_eq!(r.status, 429, "third connection: {}", r.text());
    let v: Value = serde_json::from_str(&r.text()).expect("429 JSON");
    assert_eq!(v["message"], "Too many connections");
    // Closing one makes room again.
    a.close().await;
    assert!(
        eventually(IDLE_WAIT, || srv.io.of("/").socket_count() == 0).await,
        "socket not gone"
    );
    let mut ok = false;
    for _ in 0..20 {
        if http1::get(srv.addr, &eio("")).await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a slot did not free up after a close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_rate() {
    let srv = start(base().connection_rate_per_ip(tether::limits::RateLimit::new(0.01, 3.0))).await;
    for i in 0..3 {
        let r = http1::get(srv.addr, &eio("")).await;
        assert_eq!(r.status, 200, "attempt {i}");
    }
    let r = http1::get(srv.addr, &eio("")).await;
    assert_eq!(r.status, 429);
    let v: Value = serde_json::from_str(&r.text()).expect("429 JSON");
    assert_eq!(v["message"], "Too many connection attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_rate_drop_and_disconnect() {
    use tether::config::{EventRate, RateAction};
    let limit = tether::limits::RateLimit::new(0.01, 3.0);
    let srv = start(base().event_rate(EventRate {
        limit,
        action: RateAction::Drop,
    }))
    .await;
    let (mut ws, sid) = WsClient::sio(srv.addr).await;
    for i in 0..5 {
        ws.send(&format!(r#"42["echo",{i}]"#));
    }
    // The burst of 3 passes, the rest is dropped; the socket stays connected.
    for i in 0..3 {
        assert_eq!(ws.text().await, format!(r#"42["echo",{i}]"#));
    }
    let socket = srv.io.of("/").get_socket(&sid).expect("still connected");
    assert!(eventually(IDLE_WAIT, || socket.dropped_events() == 2).await);
    assert!(socket.connected());

    let srv2 = start(base().event_rate(EventRate {
        limit,
        action: RateAction::Disconnect,
    }))
    .await;
    let (mut ws, _) = WsClient::sio(srv2.addr).await;
    for i in 0..5 {
        ws.send(&format!(r#"42["echo",{i}]"#));
    }
    let (_, seen) = ws.closed().await;
    assert!(
        seen.iter().any(|t| t == "41"),
        "no DISCONNECT packet in {seen:?}"
    );
    assert!(
        eventually(IDLE_WAIT, || srv2.io.of("/").socket_count() == 0).await,
        "rate-limited socket still connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_namespaces_per_connection_are_capped() {
    let srv = start(base()).await;
    srv.io.dynamic_ns(
        |n| n.starts_with("/dyn-"),
        |ns| {
            ns.on_connect(|_| {});
        },
    );
    let (mut ws, _) = WsClient::open(srv.addr).await;
    for i in 0..16 {
        ws.send(&format!("40/dyn-{i},"));
        let t = ws.text().await;
        assert!(
            t.starts_with(&format!("40/dyn-{i},{{")),
            "namespace {i}: {t}"
        );
    }
    ws.send("40/dyn-16,");
    assert_eq!(
        ws.text().await,
        r#"44/dyn-16,{"message":"Invalid namespace"}"#
    );
    // Existing namespaces are unaffected by the cap.
    ws.send("40/dyn-0,");
    let (code, _) = ws.closed().await;
    let _ = code; // a second CONNECT to a joined namespace closes the connection (as Node)
    srv.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_water_fires_for_a_slow_reader() {
    let io = Io::builder()
        .engine_config(tether::EngineConfig {
            send_queue_capacity: 64,
            send_queue_high_water: Some(32),
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            ..tether::EngineConfig::default()
        })
        .build();
    let fired = Arc::new(Mutex::new(Vec::<usize>::new()));
    let f2 = fired.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    io.ns("/", move |socket| {
        let f3 = f2.clone();
        socket.on_high_water(move |_, n| f3.lock().unwrap().push(n));
        let _ = tx.send(socket);
    });
    let handle = io.listen("127.0.0.1:0").await.unwrap();
    // A polling client that never polls again: nothing drains its queue.
    let (sid, _) = handshake(handle.local_addr()).await;
    let r = http1::post(handle.local_addr(), &eio(&format!("&sid={sid}")), b"40").await;
    assert_eq!(r.status, 200);
    let socket = within(WAIT, "connection", rx.recv()).await.expect("socket");
    let mut full = false;
    for i in 0..200 {
        if let Err(e) = socket.emit("x", &i) {
            assert!(
                matches!(
                    e,
                    tether::sio::EmitError::Send(tether::engine::SendError::QueueFull)
                ),
                "{e}"
            );
            full = true;
            break;
        }
    }
    assert!(full, "the queue never filled");
    let seen = fired.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "high-water fired {seen:?}");
    assert!(seen[0] >= 32);
    handle.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_empty_fragments_are_cut_off() {
    let srv = start(slow_heartbeat()).await;
    let (mut good, _) = WsClient::sio(srv.addr).await;
    let mut raw = RawWs::connect(srv.addr).await;
    let mut first = masked_frame(0x1, b"4");
    first[0] &= 0x7f; // not FIN: a message in fragments
    raw.write(&first).await;
    let mut empty = masked_frame(0x0, b"");
    empty[0] &= 0x7f;
    // 1 000 frames per message are allowed (EngineConfig::max_fragments_per_message).
    let batch: Vec<u8> = empty
        .iter()
        .copied()
        .cycle()
        .take(empty.len() * 1_500)
        .collect();
    let _ = raw.tcp.write_all(&batch).await;
    let (_, code) = raw.until_close().await;
    assert_eq!(code, Some(1009), "too many fragments");
    good.send(r#"421["echo","fine"]"#);
    assert_eq!(good.text().await, r#"431["fine"]"#);
    good.close().await;
    srv.assert_healthy().await;
}
