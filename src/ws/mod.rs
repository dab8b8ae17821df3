//! Plain WebSocket (RFC 6455) server and client.
//!
//! Both sides hand out the same connection type, [`WsConn`]: send text or binary, close
//! with a code and reason, and handlers for messages and the close. Each connection has a
//! bounded send queue: a full queue is an error returned to the caller, and a
//! high-water callback fires when the queue passes [`WsConfig::high_water`].
//!
//! ```no_run
//! use tether::ws::{WsServer, WsMessage};
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = WsServer::new(|conn| {
//!     let _ = conn.send_text("Hello from the server!");
//!     conn.on_message(|c, msg| match msg {
//!         WsMessage::Text(t) => { let _ = c.send_text(&format!("You said: {t}")); }
//!         WsMessage::Binary(b) => { let _ = c.send_binary(b); }
//!     });
//! });
//! let handle = server.listen("127.0.0.1:8080").await?;
//! # let _ = handle; Ok(()) }
//! ```
//!
//! Threading: every method may be called from any thread and from inside handlers.
//! Handlers of one connection run on a runtime thread, in wire order, never two at once.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::config::RequestInfo;
use crate::proto::Str;
use crate::proto::wsframe::{Limits, Message, OpCode, Role};
use crate::tls::ClientTls;
use crate::transport::http::{Routes, ServerHandle};
use crate::transport::wsio::WsStream;

/// WebSocket limits and options (server and client).
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest message, after reassembling fragments, in bytes. Default 16 MiB.
    pub max_message_size: usize,
    /// Largest single frame, in bytes. Default 16 MiB.
    pub max_frame_size: usize,
    /// Server: most frames in one message (empty continuation frames count). Default
    /// 1 000. Beyond, the connection closes with 1009.
    pub max_fragments: usize,
    /// Capacity of the send queue, in messages. Default 1024.
    pub send_queue: usize,
    /// Queue length at which the high-water callback fires (once per crossing). Default 768.
    pub high_water: usize,
    /// Send a ping this often and close the connection (code 1006 locally, "keepalive
    /// timeout") when nothing arrives for two intervals. Default none.
    pub keepalive: Option<Duration>,
    /// Subprotocols, in order of preference (server: the first one the client also offers
    /// is chosen; client: offered in `Sec-WebSocket-Protocol`).
    pub subprotocols: Vec<String>,
    /// Server: origins allowed to open a connection (`Origin` header, exact match);
    /// `None` allows every origin, including none. Refused with HTTP 403.
    pub allowed_origins: Option<Vec<String>>,
    /// Extra headers: on the server's 101 response, or on the client's request.
    pub headers: Vec<(String, String)>,
    /// Client: time allowed for TCP, TLS and the upgrade. Default 10 s.
    pub handshake_timeout: Duration,
    /// Unused since tether reads WebSocket frames itself (reads go through a buffer on
    /// the stack and an idle connection keeps none); kept for source compatibility.
    pub read_buffer_size: usize,
    /// Client: trust for `wss://` (default the Mozilla roots).
    pub tls: ClientTls,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            max_fragments: 1_000,
            send_queue: 1024,
            high_water: 768,
            keepalive: None,
            subprotocols: Vec::new(),
            allowed_origins: None,
            headers: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            read_buffer_size: 4096,
            tls: ClientTls::default(),
        }
    }
}

impl WsConfig {
    fn limits(&self) -> Limits {
        Limits {
            max_frame: self.max_frame_size,
            max_message: self.max_message_size,
            max_fragments: self.max_fragments,
        }
    }
}

/// A message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// UTF-8 text.
    Text(Str),
    /// Bytes.
    Binary(Bytes),
}

/// How a connection closed: the close code and reason (from the peer's close frame, or
/// ours; 1005 when the frame had no code, 1006 when there was no close frame at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code.
    pub code: u16,
    /// The reason text.
    pub reason: String,
    /// Whether the peer sent the close frame (false: we closed, or the link broke).
    pub by_peer: bool,
}

/// Why a send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsSendError {
    /// The send queue is full.
    #[error("send queue full")]
    QueueFull,
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
}

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum WsConnectError {
    /// The URL is not a `ws://` or `wss://` URL.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// TCP, TLS or HTTP failed.
    #[error("connect failed: {0}")]
    Io(String),
    /// The server refused the upgrade (HTTP status).
    #[error("handshake refused with http status {0}")]
    Refused(u16),
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    Timeout,
    /// The server chose a subprotocol we did not offer, or none when one was required.
    #[error("subprotocol mismatch: {0}")]
    Subprotocol(String),
}

type MessageHandler = Arc<dyn Fn(&WsConn, WsMessage) + Send + Sync>;
type CloseHandler = Arc<dyn Fn(&WsConn, &CloseInfo) + Send + Sync>;
type HighWaterHandler = Arc<dyn Fn(&WsConn, usize) + Send + Sync>;

#[derive(Default, Clone)]
struct Handlers {
    message: Option<MessageHandler>,
    close: Vec<CloseHandler>,
    high_water: Option<HighWaterHandler>,
}

enum Out {
    Msg(OpCode, Bytes),
    Close(u16, String),
}

/// Most bytes gathered from the send queue before one write.
const MAX_BATCH_BYTES: usize = 64 * 1024;

struct ConnInner {
    id: u64,
    tx: mpsc::Sender<Out>,
    queued: AtomicUsize,
    /// Messages the queue takes; its one extra slot is kept for the close frame.
    limit: usize,
    high_water: usize,
    above: AtomicBool,
    closed: AtomicBool,
    close_info: Mutex<Option<CloseInfo>>,
    handlers: RwLock<Handlers>,
    protocol: Option<String>,
    request: Option<RequestInfo>,
}

/// Drops a connection's handlers when its session ends without `WsConn::finish` (the
/// runtime shut down under it): they often hold the connection themselves, and that
/// cycle would otherwise never be freed.
struct ReleaseHandlers(Arc<ConnInner>);

impl Drop for ReleaseHandlers {
    fn drop(&mut self) {
        let old = self.0.handlers.write().map(|mut h| std::mem::take(&mut *h));
        drop(old);
    }
}

/// One WebSocket connection, server- or client-side. Cheap to clone.
#[derive(Clone)]
pub struct WsConn {
    inner: Arc<ConnInner>,
}

impl fmt::Debug for WsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsConn")
            .field("id", &self.inner.id)
            .field("protocol", &self.inner.protocol)
            .finish()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl WsConn {
    fn new(
        config: &WsConfig,
        protocol: Option<String>,
        request: Option<RequestInfo>,
    ) -> (WsConn, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(config.send_queue.max(1) + 1);
        (
            WsConn {
                inner: Arc::new(ConnInner {
                    id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                    tx,
                    queued: AtomicUsize::new(0),
                    limit: config.send_queue.max(1),
                    high_water: config.high_water.max(1),
                    above: AtomicBool::new(false),
                    closed: AtomicBool::new(false),
                    close_info: Mutex::new(None),
                    handlers: RwLock::new(Handlers::default()),
                    protocol,
                    request,
                }),
            },
            rx,
        )
    }

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The negotiated subprotocol.
    pub fn protocol(&self) -> Option<&str> {
        self.inner.protocol.as_deref()
    }

    /// Server side: the upgrade request (headers, query, peer address).
    pub fn request(&self) -> Option<&RequestInfo> {
        self.inner.request.as_ref()
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// How it closed, once it has.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.inner.close_info.lock().ok()?.clone()
    }

    /// Messages waiting in the send queue.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Acquire)
    }

    fn handlers(&self) -> Handlers {
        self.inner
            .handlers
            .read()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// Set the message handler (replacing an earlier one).
    pub fn on_message<F: Fn(&WsConn, WsMessage) + Send + Sync + 'static>(&self, f: F) {
        if let Ok(mut h) = self.inner.handlers.write() {
            h.message = Some(Arc::new(f));
        }
    }

    /// Add a close handler; it runs once, when the connection ends (at once if it has).
    pub fn on_close<F: Fn(&WsConn, &CloseInfo) + Send + Sync + 'static>(&self, f: F) {
        if let Some(info) = self.close_info() {
            f(self, &info);
            return;
        }
        if let Ok(mut h) = self.inner.handlers.write() {
            h.close.push(Arc::new(f));
        }
    }

    /// Set the high-water handler: called with the queue length when the send queue
    /// grows past [`WsConfig::high_water`] (once per crossing). Slow down, or close.
    pub fn on_high_water<F: Fn(&WsConn, usize) + Send + Sync + 'static>(&self, f: F) {
        if let Ok(mut h) = self.inner.handlers.write() {
            h.high_water = Some(Arc::new(f));
        }
    }

    fn push(&self, out: Out) -> Result<(), WsSendError> {
        if self.is_closed() {
            return Err(WsSendError::Closed);
        }
        // Count first: the writer may take the message (and decrement) at once.
        let n = self.inner.queued.fetch_add(1, Ordering::AcqRel) + 1;
        if n > self.inner.limit {
            // The last slot belongs to `close`, so a full queue can still be closed.
            self.inner.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(WsSendError::QueueFull);
        }
        if let Err(e) = self.inner.tx.try_send(out) {
            self.inner.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => WsSendError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => WsSendError::Closed,
            });
        }
        if n >= self.inner.high_water && !self.inner.above.swap(true, Ordering::AcqRel) {
            if let Some(h) = self.handlers().high_water {
                h(self, n);
            }
        }
        Ok(())
    }

    /// Queue a text message.
    pub fn send_text(&self, text: &str) -> Result<(), WsSendError> {
        self.push(Out::Msg(
            OpCode::Text,
            Bytes::copy_from_slice(text.as_bytes()),
        ))
    }

    /// Queue a binary message.
    pub fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), WsSendError> {
        self.push(Out::Msg(OpCode::Binary, data.into()))
    }

    /// Queue a message.
    pub fn send(&self, msg: WsMessage) -> Result<(), WsSendError> {
        match msg {
            WsMessage::Text(t) => self.push(Out::Msg(OpCode::Text, t.into_bytes())),
            WsMessage::Binary(b) => self.send_binary(b),
        }
    }

    /// Close with `code` (1000 normal, 1001 going away, 4000–4999 application) and
    /// `reason` (at most 123 bytes; longer is cut at a character boundary). Queued messages
    /// are sent first.
    pub fn close(&self, code: u16, reason: &str) {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let _ = self
            .inner
            .tx
            .try_send(Out::Close(code, reason[..end].to_owned()));
    }

    fn finish(&self, info: CloseInfo) {
        // (`ReleaseHandlers` does the same for a session dropped before it finished.)
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Ok(mut c) = self.inner.close_info.lock() {
            *c = Some(info.clone());
        }
        let handlers = self
            .inner
            .handlers
            .write()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for h in handlers.close {
            h(self, &info);
        }
    }

    /// Drive the connection until it closes.
    async fn run<S>(
        self,
        mut ws: WsStream<S>,
        mut rx: mpsc::Receiver<Out>,
        keepalive: Option<Duration>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut last_seen = tokio::time::Instant::now();
        let tick = keepalive.unwrap_or(Duration::from_secs(3600));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
        let gone = || CloseInfo {
            code: 1006,
            reason: String::new(),
            by_peer: false,
        };
        let info = loop {
            tokio::select! {
                msg = ws.next() => {
                    last_seen = tokio::time::Instant::now();
                    match msg {
                        Some(Ok(Message::Text(s))) => {
                            if let Some(h) = self.handlers().message {
                                h(&self, WsMessage::Text(s));
                            }
                        }
                        Some(Ok(Message::Binary(b))) => {
                            if let Some(h) = self.handlers().message {
                                h(&self, WsMessage::Binary(b));
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            // The stream queued the echo of the close frame; send it.
                            let _ = tokio::time::timeout(Duration::from_secs(2), ws.shutdown()).await;
                            let (code, reason) = frame
                                .map(|f| (f.code, f.reason))
                                .unwrap_or((1005, String::new()));
                            break CloseInfo { code, reason, by_peer: true };
                        }
                        // Ping (answered by the stream) or pong.
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            let (code, reason) = e.close();
                            if code != 1006 {
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(2),
                                    ws.close(Some((code, reason.as_str()))),
                                )
                                .await;
                            }
                            break CloseInfo { code, reason, by_peer: false };
                        }
                        None => break gone(),
                    }
                }
                out = rx.recv() => {
                    let Some(out) = out else { break gone() };
                    let mut close = None;
                    match out {
                        Out::Msg(op, m) => {
                            self.inner.queued.fetch_sub(1, Ordering::AcqRel);
                            match rx.try_recv() {
                                // One message: written straight from its buffer.
                                Err(_) => {
                                    if ws.write_frames(&[(op, &m)]).await.is_err() {
                                        break gone();
                                    }
                                }
                                Ok(next) => {
                                    ws.queue(op, &m);
                                    match next {
                                        Out::Msg(op, m) => {
                                            self.inner.queued.fetch_sub(1, Ordering::AcqRel);
                                            ws.queue(op, &m);
                                        }
                                        Out::Close(code, reason) => close = Some((code, reason)),
                                    }
                                }
                            }
                            while close.is_none() && ws.pending_out() > 0 && ws.pending_out() < MAX_BATCH_BYTES {
                                match rx.try_recv() {
                                    Ok(Out::Msg(op, m)) => {
                                        self.inner.queued.fetch_sub(1, Ordering::AcqRel);
                                        ws.queue(op, &m);
                                    }
                                    Ok(Out::Close(code, reason)) => {
                                        close = Some((code, reason));
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                        }
                        Out::Close(code, reason) => close = Some((code, reason)),
                    }
                    if let Some((code, reason)) = close {
                        return self.close_and_finish(ws, code, reason).await;
                    }
                    if ws.flush().await.is_err() {
                        break gone();
                    }
                    if self.inner.queued.load(Ordering::Acquire) < self.inner.high_water / 2 {
                        self.inner.above.store(false, Ordering::Release);
                    }
                }
                _ = ticker.tick(), if keepalive.is_some() => {
                    if last_seen.elapsed() >= tick * 2 {
                        break CloseInfo { code: 1006, reason: "keepalive timeout".into(), by_peer: false };
                    }
                    if ws.send(OpCode::Ping, b"").await.is_err() {
                        break gone();
                    }
                }
            }
        };
        self.finish(info);
    }

    async fn close_and_finish<S>(self, mut ws: WsStream<S>, code: u16, reason: String)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Send what is queued, the close frame, then wait (briefly) for the peer's close
        // frame so it sees a clean closing handshake.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            if ws.close(Some((code, reason.as_str()))).await.is_ok() {
                while let Some(Ok(_)) = ws.next().await {}
                let _ = ws.shutdown().await;
            }
        })
        .await;
        self.finish(CloseInfo {
            code,
            reason,
            by_peer: false,
        });
    }
}

type ConnectionHandler = Arc<dyn Fn(WsConn) + Send + Sync>;

/// A WebSocket endpoint: configuration plus the handler for new connections. Serve it on
/// its own ([`WsServer::listen`]) or beside Socket.IO on one port
/// ([`Routes::websocket`]). Cheap to clone.
#[derive(Clone)]
pub struct WsServer {
    pub(crate) config: Arc<WsConfig>,
    on_connection: ConnectionHandler,
}

impl fmt::Debug for WsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsServer")
            .field("config", &self.config)
            .finish()
    }
}

impl WsServer {
    /// An endpoint with the default configuration; `on_connection` runs for each new
    /// connection before its first message is read (register handlers there).
    pub fn new<F: Fn(WsConn) + Send + Sync + 'static>(on_connection: F) -> Self {
        Self::with_config(WsConfig::default(), on_connection)
    }

    /// An endpoint with this configuration.
    pub fn with_config<F: Fn(WsConn) + Send + Sync + 'static>(
        config: WsConfig,
        on_connection: F,
    ) -> Self {
        WsServer {
            config: Arc::new(config),
            on_connection: Arc::new(on_connection),
        }
    }

    /// Serve this endpoint at `/` on `addr` (port 0 picks one).
    pub async fn listen(
        &self,
        addr: impl tokio::net::ToSocketAddrs,
    ) -> std::io::Result<ServerHandle> {
        self.listen_with(addr, Routes::new()).await
    }

    /// Serve this endpoint at `/` plus `routes` (TLS, pages) on `addr`.
    pub async fn listen_with(
        &self,
        addr: impl tokio::net::ToSocketAddrs,
        routes: Routes,
    ) -> std::io::Result<ServerHandle> {
        crate::transport::http::serve_routes(addr, routes.websocket("/", self.clone())).await
    }

    /// Check an upgrade request: the origin allowlist and the subprotocol choice.
    /// `Err(status)` refuses it.
    pub(crate) fn negotiate(&self, headers: &http::HeaderMap) -> Result<Option<String>, u16> {
        if let Some(allowed) = &self.config.allowed_origins {
            let origin = headers
                .get(http::header::ORIGIN)
                .and_then(|v| v.to_str().ok());
            if !origin.is_some_and(|o| allowed.iter().any(|a| a == o)) {
                return Err(403);
            }
        }
        let offered: Vec<&str> = headers
            .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        Ok(self
            .config
            .subprotocols
            .iter()
            .find(|p| offered.contains(&p.as_str()))
            .cloned())
    }

    /// Extra response headers from the configuration.
    pub(crate) fn response_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        self.config
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect()
    }

    /// Run an accepted connection.
    pub(crate) async fn serve<S>(&self, stream: S, protocol: Option<String>, request: RequestInfo)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let ws = WsStream::new(stream, Role::Server, self.config.limits(), BytesMut::new());
        let (conn, rx) = WsConn::new(&self.config, protocol, Some(request));
        let _release = ReleaseHandlers(conn.inner.clone());
        (self.on_connection)(conn.clone());
        conn.run(ws, rx, self.config.keepalive).await;
    }
}

/// Connects to WebSocket servers.
#[derive(Clone, Default)]
pub struct WsClient {
    config: WsConfig,
    handlers: Handlers,
}

impl fmt::Debug for WsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsClient")
            .field("config", &self.config)
            .finish()
    }
}

impl WsClient {
    /// A client with the default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client with this configuration.
    pub fn with_config(config: WsConfig) -> Self {
        WsClient {
            config,
            handlers: Handlers::default(),
        }
    }

    /// The message handler installed on each connection before its first message.
    pub fn on_message<F: Fn(&WsConn, WsMessage) + Send + Sync + 'static>(mut self, f: F) -> Self {
        self.handlers.message = Some(Arc::new(f));
        self
    }

    /// A close handler installed on each connection.
    pub fn on_close<F: Fn(&WsConn, &CloseInfo) + Send + Sync + 'static>(mut self, f: F) -> Self {
        self.handlers.close.push(Arc::new(f));
        self
    }

    /// Connect to `url` (`ws://` or `wss://`). Handlers given to the builder are in
    /// place before the first message; the connection runs on the current tokio runtime.
    pub async fn connect(&self, url: &str) -> Result<WsConn, WsConnectError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| WsConnectError::InvalidUrl(e.to_string()))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => {
                return Err(WsConnectError::InvalidUrl(format!(
                    "{url}: not ws:// or wss://"
                )));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| WsConnectError::InvalidUrl(format!("{url}: no host")))?;
        if authority.as_str().contains('@') {
            return Err(WsConnectError::InvalidUrl(format!(
                "{url}: credentials in the url are not supported"
            )));
        }
        let host_header = authority.as_str().to_owned();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(WsConnectError::InvalidUrl(format!("{url}: no host")));
        }
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let mut headers = http::HeaderMap::new();
        for (k, v) in &self.config.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| WsConnectError::InvalidUrl(format!("header {k}: {e}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|e| WsConnectError::InvalidUrl(format!("header {k}: {e}")))?;
            headers.append(name, value);
        }
        let config = self.config.clone();
        let handshake = async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| WsConnectError::Io(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let tcp = crate::transport::tcpio::Tcp(tcp);
            let mut io: crate::tls::BoxIo = if secure {
                Box::new(
                    config
                        .tls
                        .connect(&host, tcp)
                        .await
                        .map_err(|e| WsConnectError::Io(format!("tls: {e}")))?,
                )
            } else {
                Box::new(tcp)
            };
            use crate::transport::wsio::{HandshakeError, client_handshake};
            let done =
                client_handshake(&mut io, &host_header, &path, &config.subprotocols, &headers)
                    .await
                    .map_err(|e| match e {
                        HandshakeError::Status(s) => WsConnectError::Refused(s),
                        HandshakeError::Subprotocol { chosen, offered } => {
                            WsConnectError::Subprotocol(format!(
                                "server chose {}, offered: {offered}",
                                chosen.as_deref().unwrap_or("none")
                            ))
                        }
                        other => WsConnectError::Io(other.to_string()),
                    })?;
            Ok::<_, WsConnectError>((io, done))
        };
        let (io, done) = tokio::time::timeout(self.config.handshake_timeout, handshake)
            .await
            .map_err(|_| WsConnectError::Timeout)??;
        let protocol = done.protocol;
        let ws = WsStream::new(io, Role::Client, self.config.limits(), done.leftover);
        let (conn, rx) = WsConn::new(&self.config, protocol, None);
        let release = ReleaseHandlers(conn.inner.clone());
        if let Ok(mut h) = conn.inner.handlers.write() {
            *h = self.handlers.clone();
        }
        let run = conn.clone().run(ws, rx, self.config.keepalive);
        tokio::spawn(async move {
            let _release = release;
            run.await
        });
        Ok(conn)
    }
}
