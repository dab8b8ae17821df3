//! The Socket.IO v5 client: a manager multiplexing namespaces over one Engine.IO
//! connection, with reconnection, acknowledgements and an offline buffer.
//!
//! ```no_run
//! use std::time::Duration;
//! use tether::sio::client::Client;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("http://127.0.0.1:3000").build()?;
//! let socket = client.socket("/");
//! socket.on("chat message", |_s, ev| println!("got {:?}", ev.args.values()));
//! socket.connect().await?;
//! socket.emit("chat message", "hello")?;
//! let reply = socket.emit_with_ack("question", vec![serde_json::json!(1)], Duration::from_secs(5)).await?;
//! println!("ack: {:?}", reply.values());
//! client.close();
//! # Ok(()) }
//! ```
//!
//! Threading: every method may be called from any thread (inside a tokio runtime or
//! not, once the client is built) and from inside handlers. Handlers run on one task per
//! client, in wire order, never two at once. A client lives until [`Client::close`] (or
//! until every socket disconnected and reconnection gave up).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Event;
use super::payload::{AckError, Args, SerializeError};
use super::socket::{AckSink, ack_args, event_from_packet, event_packet};
use crate::engine::client::{
    CloseReason, EngineClient, EngineClientConfig, EngineEvent, OpenError,
};
use crate::engine::{SendError, TransportType};
use crate::proto::Str;
use crate::proto::engineio::Frame;
use crate::proto::socketio::{Decoder, DecoderConfig, Packet, PacketType, RESERVED_EVENTS};
use crate::transport::client::{Target, TransportError};

/// Reconnection settings (socket.io-client's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Reconnection {
    /// Reconnect automatically. Default true.
    pub enabled: bool,
    /// Give up after this many attempts (`None`: never). Default `None`.
    pub attempts: Option<u32>,
    /// First delay. Default 1 s.
    pub delay: Duration,
    /// Longest delay. Default 5 s.
    pub delay_max: Duration,
    /// Jitter, 0 to 1. Default 0.5.
    pub randomization: f64,
}

impl Default for Reconnection {
    fn default() -> Self {
        Reconnection {
            enabled: true,
            attempts: None,
            delay: Duration::from_secs(1),
            delay_max: Duration::from_secs(5),
            randomization: 0.5,
        }
    }
}

impl Reconnection {
    /// Delay before attempt `n` (0-based): `delay * 2^n`, jittered, capped at `delay_max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.delay.as_secs_f64() * 2f64.powi(attempt.min(30) as i32);
        let jitter = self.randomization.clamp(0.0, 1.0);
        let r = random_unit();
        let deviation = r * jitter * base;
        let ms = if (r * 10.0) as u32 % 2 == 0 {
            base - deviation
        } else {
            base + deviation
        };
        Duration::from_secs_f64(ms.max(0.0)).min(self.delay_max)
    }
}

fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    u32::from_le_bytes(b) as f64 / (u32::MAX as f64 + 1.0)
}

/// Why the client could not be built or a socket could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or an option is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No tokio runtime to run on.
    #[error("no tokio runtime: build the client inside one")]
    NoRuntime,
    /// The server refused the namespace (middleware or unknown namespace).
    #[error("connection refused by the server: {message}")]
    Refused {
        /// The server's message (`Invalid namespace`, a middleware's message).
        message: String,
        /// The server's data, if any.
        data: Option<Value>,
    },
    /// The connection could not be opened (and reconnection, if enabled, gave up).
    #[error("connection failed: {0}")]
    Open(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The client was closed meanwhile.
    #[error("client closed")]
    Closed,
}

/// Why an emit failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientEmitError {
    /// The event name is reserved by Socket.IO.
    #[error("reserved event name: {0}")]
    Reserved(String),
    /// Disconnected and the offline buffer is full.
    #[error("offline buffer full")]
    BufferFull,
    /// The outgoing queue is full or the connection closed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// An argument could not be serialized.
    #[error(transparent)]
    Serialize(#[from] SerializeError),
}

/// Why a client socket disconnected. `as_str` gives socket.io-client's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientDisconnectReason {
    /// The server disconnected this socket (`io server disconnect`); no reconnection.
    ServerDisconnect,
    /// [`ClientSocket::disconnect`] or [`Client::close`] (`io client disconnect`).
    ClientDisconnect,
    /// No ping from the server in time (`ping timeout`).
    PingTimeout,
    /// The server closed the connection (`transport close`).
    TransportClose,
    /// The connection failed (`transport error`).
    TransportError(String),
    /// The server sent an undecodable packet (`parse error`).
    ParseError,
}

impl ClientDisconnectReason {
    /// socket.io-client's name for the reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            ClientDisconnectReason::ServerDisconnect => "io server disconnect",
            ClientDisconnectReason::ClientDisconnect => "io client disconnect",
            ClientDisconnectReason::PingTimeout => "ping timeout",
            ClientDisconnectReason::TransportClose => "transport close",
            ClientDisconnectReason::TransportError(_) => "transport error",
            ClientDisconnectReason::ParseError => "parse error",
        }
    }
}

impl fmt::Display for ClientDisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<CloseReason> for ClientDisconnectReason {
    fn from(r: CloseReason) -> Self {
        match r {
            CloseReason::TransportClose => ClientDisconnectReason::TransportClose,
            CloseReason::TransportError(e) => ClientDisconnectReason::TransportError(e),
            CloseReason::PingTimeout => ClientDisconnectReason::PingTimeout,
            CloseReason::ParseError => ClientDisconnectReason::ParseError,
            CloseReason::ClientClose => ClientDisconnectReason::ClientDisconnect,
        }
    }
}

/// A `connect_error` as the user sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectErrorInfo {
    /// The message (`Invalid namespace`, a middleware's message, or a transport error).
    pub message: String,
    /// The server's data, if any.
    pub data: Option<Value>,
}

type AuthFn = Arc<dyn Fn() -> Value + Send + Sync>;

/// Where a socket's `auth` payload comes from.
#[derive(Clone, Default)]
pub enum Auth {
    /// No payload.
    #[default]
    None,
    /// A fixed payload.
    Value(Value),
    /// Computed for every connection attempt (token refresh).
    Fn(AuthFn),
}

impl Auth {
    fn get(&self) -> Option<Value> {
        match self {
            Auth::None => None,
            Auth::Value(v) => Some(v.clone()),
            Auth::Fn(f) => Some(f()),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Value(v) => write!(f, "Value({v})"),
            Auth::Fn(_) => f.write_str("Fn"),
        }
    }
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    path: String,
    engine: EngineClientConfig,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    reconnection: Reconnection,
    auth: Auth,
    offline_buffer: usize,
    connect_timeout: Duration,
    decoder: DecoderConfig,
    retries: u32,
    ack_timeout: Duration,
    tls: Option<crate::tls::ClientTls>,
}

impl ClientBuilder {
    /// Packet decoding limits and representation (default: the decoder's defaults with
    /// [`DecoderConfig::raw_args`] on, so arguments stay text until read).
    pub fn decoder(mut self, config: DecoderConfig) -> Self {
        self.decoder = config;
        self
    }

    /// At-least-once delivery (socket.io-client 4.6+'s `retries`): every emit waits in an
    /// ordered queue and is sent, one at a time, with an acknowledgement request; without
    /// an ack within `ack_timeout` it is sent again, up to `retries` more times. The
    /// server may see a packet twice. Default 0 (off: at-most-once).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Ack timeout for each try of a retried emit (default 5 s; see
    /// [`ClientBuilder::retries`]).
    pub fn ack_timeout(mut self, d: Duration) -> Self {
        self.ack_timeout = d;
        self
    }

    /// The Engine.IO path (default `/socket.io/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Transports in order of use (default polling then upgrade to websocket).
    pub fn transports(mut self, transports: impl IntoIterator<Item = TransportType>) -> Self {
        self.engine.transports = transports.into_iter().collect();
        self
    }

    /// Whether to upgrade from polling to WebSocket (default true).
    pub fn upgrade(mut self, yes: bool) -> Self {
        self.engine.upgrade = yes;
        self
    }

    /// An extra HTTP header for every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// An extra query parameter for every request.
    pub fn query(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }

    /// The main namespace's `auth` payload (per-socket auth: [`ClientSocket::set_auth`]).
    pub fn auth(mut self, auth: Value) -> Self {
        self.auth = Auth::Value(auth);
        self
    }

    /// Compute the main namespace's `auth` for every attempt.
    pub fn auth_fn<F: Fn() -> Value + Send + Sync + 'static>(mut self, f: F) -> Self {
        self.auth = Auth::Fn(Arc::new(f));
        self
    }

    /// Trust settings for `https://` / `wss://` (default: the Mozilla roots).
    pub fn tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Reconnection settings.
    pub fn reconnection(mut self, r: Reconnection) -> Self {
        self.reconnection = r;
        self
    }

    /// Packets kept while disconnected, flushed in order on (re)connect (default 1024).
    /// Beyond it, emits return [`ClientEmitError::BufferFull`].
    pub fn offline_buffer(mut self, packets: usize) -> Self {
        self.offline_buffer = packets;
        self
    }

    /// Time [`ClientSocket::connect`] waits, and the handshake timeout (default 20 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self.engine.timeout = d;
        self
    }

    /// Build the client; needs a tokio runtime (its handle is kept: later calls may come
    /// from any thread). Nothing connects until a socket's `connect`.
    pub fn build(self) -> Result<Client, ClientError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ClientError::NoRuntime)?;
        let (mut target, nsp) =
            Target::parse(&self.url, &self.path).map_err(|e| ClientError::Config(e.to_string()))?;
        target.query.extend(self.query);
        if let Some(tls) = self.tls {
            target.tls = tls;
        }
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| ClientError::Config(format!("header {k}: {e}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|e| ClientError::Config(format!("header {k}: {e}")))?;
            target.headers.append(name, value);
        }
        if self.engine.transports.is_empty() {
            return Err(ClientError::Config("no transport".into()));
        }
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let manager = Arc::new(Manager {
            target: Arc::new(target),
            engine_config: Arc::new(self.engine),
            reconnection: self.reconnection,
            offline_buffer: self.offline_buffer,
            connect_timeout: self.connect_timeout,
            retries: self.retries,
            ack_timeout: self.ack_timeout,
            decoder: self.decoder,
            sockets: Mutex::new(HashMap::new()),
            engine: Mutex::new(None),
            epoch: AtomicU64::new(0),
            cmd,
            runtime: runtime.clone(),
            hooks: RwLock::new(Hooks::default()),
        });
        let client = Client { inner: manager };
        let main = client.socket(&nsp);
        main.set_auth_source(self.auth);
        runtime.spawn(Task::new(client.inner.clone(), cmd_rx).run());
        Ok(client)
    }
}

type AttemptHook = Arc<dyn Fn(u32) + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&str) + Send + Sync>;
type FailedHook = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Hooks {
    attempt: Vec<AttemptHook>,
    reconnect: Vec<AttemptHook>,
    error: Vec<ErrorHook>,
    failed: Vec<FailedHook>,
}

enum MgrCmd {
    Connect(Str),
    Disconnect(Str),
    Close,
}

struct Manager {
    target: Arc<Target>,
    engine_config: Arc<EngineClientConfig>,
    reconnection: Reconnection,
    offline_buffer: usize,
    connect_timeout: Duration,
    retries: u32,
    ack_timeout: Duration,
    decoder: DecoderConfig,
    sockets: Mutex<HashMap<Str, ClientSocket>>,
    engine: Mutex<Option<EngineClient>>,
    /// Bumped each time a connection ends: `connect()` calls made after it are not
    /// failed by what ended the old one.
    epoch: AtomicU64,
    cmd: mpsc::UnboundedSender<MgrCmd>,
    runtime: tokio::runtime::Handle,
    hooks: RwLock<Hooks>,
}

impl Manager {
    fn engine(&self) -> Option<EngineClient> {
        self.engine.lock().ok()?.clone()
    }

    fn sockets(&self) -> Vec<ClientSocket> {
        self.sockets
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// The Socket.IO client (socket.io-client's `Manager`): one connection, many namespaces.
/// Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Manager>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.inner.target)
            .finish()
    }
}

impl Client {
    /// Start building a client for `url` (`http://host:port[/namespace]`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            path: "/socket.io/".to_owned(),
            engine: EngineClientConfig::default(),
            headers: Vec::new(),
            query: Vec::new(),
            reconnection: Reconnection::default(),
            auth: Auth::None,
            offline_buffer: 1024,
            connect_timeout: Duration::from_secs(20),
            decoder: DecoderConfig {
                raw_args: true,
                ..DecoderConfig::default()
            },
            retries: 0,
            ack_timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    /// Connect to `url`'s namespace with the defaults and return its socket.
    pub async fn connect(url: &str) -> Result<ClientSocket, ClientError> {
        let client = Client::builder(url).build()?;
        let (_, nsp) =
            Target::parse(url, "/socket.io/").map_err(|e| ClientError::Config(e.to_string()))?;
        let socket = client.socket(&nsp);
        socket.connect().await?;
        Ok(socket)
    }

    /// The socket for namespace `nsp` (created if needed; not connected until
    /// [`ClientSocket::connect`]). All sockets share this client's connection.
    pub fn socket(&self, nsp: &str) -> ClientSocket {
        let nsp = if nsp.starts_with('/') {
            Str::from(nsp.to_owned())
        } else {
            Str::from(format!("/{nsp}"))
        };
        let mut map = match self.inner.sockets.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.entry(nsp.clone())
            .or_insert_with(|| ClientSocket::new(nsp, Arc::downgrade(&self.inner)))
            .clone()
    }

    /// The transport in use, when connected.
    pub fn transport(&self) -> Option<TransportType> {
        self.inner.engine().map(|e| e.transport())
    }

    /// The Engine.IO session id, when connected.
    pub fn engine_id(&self) -> Option<Str> {
        self.inner.engine().map(|e| e.sid().clone())
    }

    /// Called with the attempt number (1-based) before each reconnection attempt.
    pub fn on_reconnect_attempt<F: Fn(u32) + Send + Sync + 'static>(&self, f: F) {
        if let Ok(mut h) = self.inner.hooks.write() {
            h.attempt.push(Arc::new(f));
        }
    }

    /// Called with the attempt number after a successful reconnection.
    pub fn on_reconnect<F: Fn(u32) + Send + Sync + 'static>(&self, f: F) {
        if let Ok(mut h) = self.inner.hooks.write() {
            h.reconnect.push(Arc::new(f));
        }
    }

    /// Called with the error of each failed reconnection attempt.
    pub fn on_reconnect_error<F: Fn(&str) + Send + Sync + 'static>(&self, f: F) {
        if let Ok(mut h) = self.inner.hooks.write() {
            h.error.push(Arc::new(f));
        }
    }

    /// Called once when reconnection gives up (`attempts` exhausted).
    pub fn on_reconnect_failed<F: Fn() + Send + Sync + 'static>(&self, f: F) {
        if let Ok(mut h) = self.inner.hooks.write() {
            h.failed.push(Arc::new(f));
        }
    }

    /// Disconnect every socket and close the connection; no reconnection follows.
    pub fn close(&self) {
        let _ = self.inner.cmd.send(MgrCmd::Close);
    }
}

/// Events kept per socket while its CONNECT answer is awaited.
const EARLY_EVENTS: usize = 1024;

type ClientHandler = Arc<dyn Fn(&ClientSocket, Event) + Send + Sync>;
type ClientAnyHandler = Arc<dyn Fn(&ClientSocket, &Event) + Send + Sync>;
type OutgoingHandler = Arc<dyn Fn(&ClientSocket, &str, &Args) + Send + Sync>;
type ConnectHandler = Arc<dyn Fn(&ClientSocket) + Send + Sync>;
type ConnectErrorHandler = Arc<dyn Fn(&ClientSocket, &ConnectErrorInfo) + Send + Sync>;
type DisconnectHandler = Arc<dyn Fn(&ClientSocket, &ClientDisconnectReason) + Send + Sync>;
type AckCallback = Box<dyn FnOnce(Result<Args, AckError>) + Send>;

#[derive(Default)]
struct Handlers {
    events: HashMap<String, ClientHandler>,
    any: Vec<ClientAnyHandler>,
    outgoing: Vec<OutgoingHandler>,
    connect: Vec<ConnectHandler>,
    connect_error: Vec<ConnectErrorHandler>,
    disconnect: Vec<DisconnectHandler>,
}

#[derive(Default)]
struct SockState {
    id: Option<Str>,
    connected: bool,
    /// Wants to be connected (reconnect it).
    active: bool,
    /// Packets emitted while disconnected (with their ack id, if any).
    buffer: VecDeque<(Option<u64>, Vec<Frame>)>,
    /// `connect()` calls waiting, with the connection epoch they were made in.
    waiters: Vec<(u64, oneshot::Sender<Result<(), ClientError>>)>,
    /// Events that arrived before the namespace's CONNECT answer (delivered after it).
    early: VecDeque<Packet>,
    /// Connection state recovery: the server's private session id and the last offset
    /// seen (sent back on reconnection), and whether the last connection recovered.
    pid: Option<String>,
    last_offset: Option<String>,
    recovered: bool,
    /// The retry queue (with `retries > 0`): head is in flight when `in_flight`.
    queue: VecDeque<Queued>,
    queue_seq: u64,
    in_flight: bool,
}

struct Queued {
    seq: u64,
    event: String,
    args: Args,
    timeout: Duration,
    tries: u32,
    callback: Option<AckCallback>,
}

struct SocketInner {
    nsp: Str,
    manager: std::sync::Weak<Manager>,
    auth: Mutex<Auth>,
    handlers: RwLock<Handlers>,
    state: Mutex<SockState>,
    acks: Mutex<HashMap<u64, AckCallback>>,
    next_ack: AtomicU64,
}

/// One namespace of a [`Client`]. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct ClientSocket {
    inner: Arc<SocketInner>,
}

impl fmt::Debug for ClientSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSocket")
            .field("nsp", &self.inner.nsp)
            .field("id", &self.id())
            .finish()
    }
}

impl AckSink for SocketInner {
    fn nsp(&self) -> &Str {
        &self.nsp
    }

    fn send_frames(&self, frames: Vec<Frame>) -> Result<(), SendError> {
        let engine = self
            .manager
            .upgrade()
            .and_then(|m| m.engine())
            .ok_or(SendError::Closed)?;
        engine.send(frames)
    }
}

impl ClientSocket {
    fn new(nsp: Str, manager: std::sync::Weak<Manager>) -> Self {
        ClientSocket {
            inner: Arc::new(SocketInner {
                nsp,
                manager,
                auth: Mutex::new(Auth::None),
                handlers: RwLock::new(Handlers::default()),
                state: Mutex::new(SockState::default()),
                acks: Mutex::new(HashMap::new()),
                next_ack: AtomicU64::new(0),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SockState> {
        match self.inner.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    fn handlers(&self) -> std::sync::RwLockReadGuard<'_, Handlers> {
        match self.inner.handlers.read() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        }
    }

    fn handlers_mut(&self) -> std::sync::RwLockWriteGuard<'_, Handlers> {
        match self.inner.handlers.write() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        }
    }

    /// The namespace.
    pub fn nsp(&self) -> &Str {
        &self.inner.nsp
    }

    /// The socket id the server assigned, while connected.
    pub fn id(&self) -> Option<Str> {
        self.state().id.clone()
    }

    /// Whether the namespace is connected.
    pub fn connected(&self) -> bool {
        self.state().connected
    }

    /// The client (manager) this socket belongs to, while it exists.
    pub fn client(&self) -> Option<Client> {
        self.inner.manager.upgrade().map(|inner| Client { inner })
    }

    /// Set a fixed `auth` payload for the next connection attempts.
    pub fn set_auth(&self, auth: Value) {
        self.set_auth_source(Auth::Value(auth));
    }

    /// Compute `auth` for every connection attempt (token refresh).
    pub fn set_auth_fn<F: Fn() -> Value + Send + Sync + 'static>(&self, f: F) {
        self.set_auth_source(Auth::Fn(Arc::new(f)));
    }

    fn set_auth_source(&self, auth: Auth) {
        if let Ok(mut a) = self.inner.auth.lock() {
            *a = auth;
        }
    }

    /// Whether the last (re)connection recovered the server-side state (same id, rooms,
    /// and the broadcasts missed meanwhile were delivered) — socket.io 4.6+ servers with
    /// connection state recovery enabled.
    pub fn recovered(&self) -> bool {
        self.state().recovered
    }

    /// The CONNECT payload: `auth`, plus `pid` and `offset` when the server offers
    /// connection state recovery (auth's own keys win, as in socket.io-client).
    fn connect_payload(&self) -> Option<Value> {
        let auth = self.auth_value();
        let (pid, offset) = {
            let st = self.state();
            (st.pid.clone(), st.last_offset.clone())
        };
        let Some(pid) = pid else {
            return auth;
        };
        let mut m = serde_json::Map::new();
        m.insert("pid".into(), Value::String(pid));
        m.insert(
            "offset".into(),
            offset.map(Value::String).unwrap_or(Value::Null),
        );
        if let Some(Value::Object(a)) = auth {
            m.extend(a);
        }
        Some(Value::Object(m))
    }

    fn auth_value(&self) -> Option<Value> {
        self.inner
            .auth
            .lock()
            .ok()
            .map(|a| a.clone())
            .and_then(|a| a.get())
    }

    /// Register the handler for `event` (replacing an earlier one).
    pub fn on<F>(&self, event: impl Into<String>, handler: F)
    where
        F: Fn(&ClientSocket, Event) + Send + Sync + 'static,
    {
        self.handlers_mut()
            .events
            .insert(event.into(), Arc::new(handler));
    }

    /// Remove the handler for `event`.
    pub fn off(&self, event: &str) {
        self.handlers_mut().events.remove(event);
    }

    /// A catch-all listener for incoming events (runs before the event's own handler).
    pub fn on_any<F: Fn(&ClientSocket, &Event) + Send + Sync + 'static>(&self, f: F) {
        self.handlers_mut().any.push(Arc::new(f));
    }

    /// A catch-all listener for outgoing events (runs as each emit is sent or buffered).
    pub fn on_any_outgoing<F: Fn(&ClientSocket, &str, &Args) + Send + Sync + 'static>(&self, f: F) {
        self.handlers_mut().outgoing.push(Arc::new(f));
    }

    /// Called on each successful connection of this namespace (reconnections included).
    pub fn on_connect<F: Fn(&ClientSocket) + Send + Sync + 'static>(&self, f: F) {
        self.handlers_mut().connect.push(Arc::new(f));
    }

    /// Called when the server refuses the namespace (no automatic retry follows) or a
    /// connection attempt fails.
    pub fn on_connect_error<F: Fn(&ClientSocket, &ConnectErrorInfo) + Send + Sync + 'static>(
        &self,
        f: F,
    ) {
        self.handlers_mut().connect_error.push(Arc::new(f));
    }

    /// Called on each disconnection, with the reason.
    pub fn on_disconnect<F: Fn(&ClientSocket, &ClientDisconnectReason) + Send + Sync + 'static>(
        &self,
        f: F,
    ) {
        self.handlers_mut().disconnect.push(Arc::new(f));
    }

    /// Connect this namespace (opening the shared connection if needed) and wait until
    /// the server accepts it, refuses it, or the timeout passes. With reconnection
    /// enabled, failed attempts are retried within the timeout.
    pub async fn connect(&self) -> Result<(), ClientError> {
        let manager = self.inner.manager.upgrade().ok_or(ClientError::Closed)?;
        let rx = {
            let mut st = self.state();
            if st.connected {
                return Ok(());
            }
            st.active = true;
            let (tx, rx) = oneshot::channel();
            st.waiters.push((manager.epoch.load(Ordering::Acquire), tx));
            rx
        };
        manager
            .cmd
            .send(MgrCmd::Connect(self.inner.nsp.clone()))
            .map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(manager.connect_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// Leave the namespace (closing the connection when no namespace is left). No
    /// reconnection follows for this socket.
    pub fn disconnect(&self) {
        {
            let mut st = self.state();
            st.active = false;
        }
        if let Some(m) = self.inner.manager.upgrade() {
            let _ = m.cmd.send(MgrCmd::Disconnect(self.inner.nsp.clone()));
        }
    }

    /// Emit `event` with one argument.
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), ClientEmitError> {
        self.emit_args(event, Args::one(data)?)
    }

    /// Emit `event` with any arguments. While disconnected the packet waits in the
    /// offline buffer (flushed in order on connect).
    pub fn emit_args(&self, event: &str, args: impl Into<Args>) -> Result<(), ClientEmitError> {
        if let Some(timeout) = self.retry_timeout() {
            return self.enqueue(event, args.into(), timeout, None);
        }
        self.emit_inner(event, args.into(), None, false)
    }

    /// Emit, dropping the packet instead of buffering it when not connected.
    pub fn emit_volatile(&self, event: &str, args: impl Into<Args>) -> Result<(), ClientEmitError> {
        self.emit_inner(event, args.into(), None, true)
    }

    /// Emit and wait for the acknowledgement, at most `timeout` (the wait starts now,
    /// buffered time included).
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: impl Into<Args>,
        timeout: Duration,
    ) -> Result<Args, AckError> {
        let (tx, rx) = oneshot::channel();
        self.emit_with_ack_cb(event, args, timeout, move |r| {
            let _ = tx.send(r);
        })
        .map_err(|e| match e {
            ClientEmitError::Send(s) => AckError::Send(s),
            other => AckError::Rejected(other.to_string()),
        })?;
        rx.await.unwrap_or(Err(AckError::Disconnected))
    }

    /// Emit and call `callback` once with the acknowledgement or
    /// [`AckError::Timeout`]. The callback runs on a runtime thread.
    pub fn emit_with_ack_cb<F>(
        &self,
        event: &str,
        args: impl Into<Args>,
        timeout: Duration,
        callback: F,
    ) -> Result<(), ClientEmitError>
    where
        F: FnOnce(Result<Args, AckError>) + Send + 'static,
    {
        if self.retry_timeout().is_some() {
            return self.enqueue(event, args.into(), timeout, Some(Box::new(callback)));
        }
        self.emit_with_ack_raw(event, args.into(), timeout, Box::new(callback))
    }

    fn emit_with_ack_raw(
        &self,
        event: &str,
        args: Args,
        timeout: Duration,
        callback: AckCallback,
    ) -> Result<(), ClientEmitError> {
        let id = self.inner.next_ack.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut acks) = self.inner.acks.lock() {
            acks.insert(id, callback);
        }
        if let Err(e) = self.emit_inner(event, args, Some(id), false) {
            self.take_ack(id);
            return Err(e);
        }
        let weak = Arc::downgrade(&self.inner);
        if let Some(m) = self.inner.manager.upgrade() {
            m.runtime.spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(inner) = weak.upgrade()
                    && let Some(cb) = (ClientSocket { inner }).take_ack(id)
                {
                    cb(Err(AckError::Timeout));
                }
            });
        }
        Ok(())
    }

    /// The per-try ack timeout when retries are on.
    fn retry_timeout(&self) -> Option<Duration> {
        let m = self.inner.manager.upgrade()?;
        (m.retries > 0).then_some(m.ack_timeout)
    }

    fn enqueue(
        &self,
        event: &str,
        args: Args,
        timeout: Duration,
        callback: Option<AckCallback>,
    ) -> Result<(), ClientEmitError> {
        if RESERVED_EVENTS.contains(&event) {
            return Err(ClientEmitError::Reserved(event.to_owned()));
        }
        let cap = self
            .inner
            .manager
            .upgrade()
            .map(|m| m.offline_buffer)
            .unwrap_or(0);
        {
            let mut st = self.state();
            if st.queue.len() >= cap {
                return Err(ClientEmitError::BufferFull);
            }
            st.queue_seq += 1;
            let seq = st.queue_seq;
            st.queue.push_back(Queued {
                seq,
                event: event.to_owned(),
                args,
                timeout,
                tries: 0,
                callback,
            });
        }
        self.drain_queue();
        Ok(())
    }

    /// Send the retry queue's head when connected and nothing is in flight.
    fn drain_queue(&self) {
        let next = {
            let mut st = self.state();
            if !st.connected || st.in_flight {
                return;
            }
            let Some(head) = st.queue.front_mut() else {
                return;
            };
            head.tries += 1;
            let n = (
                head.seq,
                head.event.clone(),
                head.args.clone(),
                head.timeout,
            );
            st.in_flight = true;
            n
        };
        let (seq, event, args, timeout) = next;
        let me = self.clone();
        let sent = self.emit_with_ack_raw(
            &event,
            args,
            timeout,
            Box::new(move |r| me.queue_acked(seq, r)),
        );
        if sent.is_err() {
            self.state().in_flight = false;
        }
    }

    fn queue_acked(&self, seq: u64, r: Result<Args, AckError>) {
        let retries = self.inner.manager.upgrade().map(|m| m.retries).unwrap_or(0);
        let done = {
            let mut st = self.state();
            let Some(head) = st.queue.front() else { return };
            if head.seq != seq {
                return;
            }
            st.in_flight = false;
            if matches!(r, Err(AckError::Disconnected)) {
                // Lost with the connection: resent on reconnect, not counted as a try.
                if let Some(head) = st.queue.front_mut() {
                    head.tries = head.tries.saturating_sub(1);
                }
                return;
            }
            let Some(head) = st.queue.front() else { return };
            let finished = r.is_ok() || head.tries > retries;
            if finished {
                st.queue.pop_front().map(|q| (q.callback, r))
            } else {
                None
            }
        };
        if let Some((Some(cb), r)) = done {
            cb(r);
        }
        self.drain_queue();
    }

    fn take_ack(&self, id: u64) -> Option<AckCallback> {
        self.inner.acks.lock().ok()?.remove(&id)
    }

    fn emit_inner(
        &self,
        event: &str,
        args: Args,
        id: Option<u64>,
        volatile: bool,
    ) -> Result<(), ClientEmitError> {
        if RESERVED_EVENTS.contains(&event) {
            return Err(ClientEmitError::Reserved(event.to_owned()));
        }
        let outgoing = self.handlers().outgoing.clone();
        let listened = if outgoing.is_empty() {
            None
        } else {
            Some(args.clone())
        };
        let frames = event_packet(&self.inner.nsp, event, args, id).encode_frames();
        let taken = {
            let mut st = self.state();
            if st.connected {
                let engine = self
                    .inner
                    .manager
                    .upgrade()
                    .and_then(|m| m.engine())
                    .ok_or(SendError::Closed)?;
                engine.send(frames)?;
                true
            } else if volatile {
                false
            } else {
                let cap = self
                    .inner
                    .manager
                    .upgrade()
                    .map(|m| m.offline_buffer)
                    .unwrap_or(0);
                if st.buffer.len() >= cap {
                    return Err(ClientEmitError::BufferFull);
                }
                st.buffer.push_back((id, frames));
                true
            }
        };
        // Outgoing listeners see what was sent or buffered, not dropped volatile emits.
        if taken && let Some(args) = listened {
            for h in &outgoing {
                h(self, event, &args);
            }
        }
        Ok(())
    }

    /// Packets waiting: the offline buffer plus the retry queue.
    pub fn buffered(&self) -> usize {
        let st = self.state();
        st.buffer.len() + st.queue.len()
    }

    // ---- called by the manager task ----

    fn on_server_connect(&self, engine: &EngineClient, data: Option<Value>) {
        let sid = data
            .as_ref()
            .and_then(|d| d.get("sid"))
            .and_then(Value::as_str)
            .map(|s| Str::from(s.to_owned()));
        let pid = data
            .as_ref()
            .and_then(|d| d.get("pid"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let waiters = {
            let mut st = self.state();
            st.id = sid;
            st.recovered = pid.is_some() && st.pid == pid;
            st.pid = pid;
            // Flush the offline buffer before anything emitted from now on.
            while let Some((id, frames)) = st.buffer.pop_front() {
                if engine.send(frames.clone()).is_err() {
                    st.buffer.push_front((id, frames));
                    break;
                }
            }
            st.connected = true;
            st.in_flight = false;
            std::mem::take(&mut st.waiters)
        };
        self.drain_queue();
        for (_, w) in waiters {
            let _ = w.send(Ok(()));
        }
        let hs = self.handlers().connect.clone();
        for h in hs {
            h(self);
        }
        // Events the server sent before its CONNECT answer, now in order.
        let early = std::mem::take(&mut self.state().early);
        for p in early {
            self.handle_event(p);
        }
    }

    fn deliver_connect_error(&self, info: ConnectErrorInfo, refused: bool) {
        let waiters = {
            let mut st = self.state();
            if refused {
                st.active = false;
                std::mem::take(&mut st.waiters)
            } else {
                Vec::new()
            }
        };
        for (_, w) in waiters {
            let _ = w.send(Err(ClientError::Refused {
                message: info.message.clone(),
                data: info.data.clone(),
            }));
        }
        let hs = self.handlers().connect_error.clone();
        for h in hs {
            h(self, &info);
        }
    }

    /// Fail the `connect()` calls made before connection epoch `before` (all: `None`).
    fn fail_waiters(&self, before: Option<u64>, err: impl Fn() -> ClientError) {
        let failed: Vec<_> = {
            let mut st = self.state();
            let (fail, keep) = std::mem::take(&mut st.waiters)
                .into_iter()
                .partition(|(epoch, _)| before.is_none_or(|b| *epoch < b));
            st.waiters = keep;
            fail
        };
        for (_, w) in failed {
            let _ = w.send(Err(err()));
        }
    }

    /// Mark disconnected; `keep_active` keeps it eligible for reconnection.
    fn on_disconnected(&self, reason: ClientDisconnectReason, keep_active: bool) {
        let (was, buffered_ids) = {
            let mut st = self.state();
            let was = st.connected;
            st.connected = false;
            st.id = None;
            st.early.clear();
            if !keep_active {
                st.active = false;
            }
            let ids: Vec<u64> = st.buffer.iter().filter_map(|(id, _)| *id).collect();
            (was, ids)
        };
        // Acks of packets already sent will never come: fail them now (packets still in
        // the offline buffer keep theirs).
        let lost: Vec<AckCallback> = self
            .inner
            .acks
            .lock()
            .map(|mut acks| {
                let ids: Vec<u64> = acks
                    .keys()
                    .filter(|id| !buffered_ids.contains(id))
                    .copied()
                    .collect();
                ids.into_iter().filter_map(|id| acks.remove(&id)).collect()
            })
            .unwrap_or_default();
        for cb in lost {
            cb(Err(AckError::Disconnected));
        }
        if was {
            let hs = self.handlers().disconnect.clone();
            for h in hs {
                h(self, &reason);
            }
        }
    }

    fn is_active(&self) -> bool {
        self.state().active
    }

    fn handle_event(&self, packet: Packet) {
        {
            let mut st = self.state();
            if !st.connected {
                if st.early.len() < EARLY_EVENTS {
                    st.early.push_back(packet);
                }
                return;
            }
            // Connection state recovery: the server appends the offset as the last
            // argument of broadcasts (and, as socket.io-client, it stays visible).
            if st.pid.is_some()
                && let Some(data) = packet.data_value()
                && let Value::Array(a) = data.as_ref()
                && a.len() > 1
                && let Some(Value::String(offset)) = a.last()
            {
                st.last_offset = Some(offset.clone());
            }
        }
        let Some(event) = event_from_packet(packet, || self.inner.clone() as Arc<dyn AckSink>)
        else {
            return;
        };
        let (any, handler) = {
            let h = self.handlers();
            (h.any.clone(), h.events.get(&event.name).cloned())
        };
        for h in &any {
            h(self, &event);
        }
        if let Some(h) = handler {
            h(self, event);
        }
    }

    fn handle_ack(&self, packet: Packet) {
        let Some(id) = packet.id else { return };
        if let Some(cb) = self.take_ack(id) {
            cb(Ok(ack_args(packet)));
        }
    }
}

/// The manager's task: owns the connection, decodes, dispatches, reconnects.
type OpenResult = (
    Result<EngineClient, OpenError>,
    mpsc::UnboundedReceiver<EngineEvent>,
);

/// A connection attempt under way (polled by the task's loop, so commands — a close —
/// are handled meanwhile), and whether it is a reconnection.
struct Opening {
    fut: std::pin::Pin<Box<dyn std::future::Future<Output = OpenResult> + Send>>,
    retry: bool,
}

struct Task {
    m: Arc<Manager>,
    cmd_rx: mpsc::UnboundedReceiver<MgrCmd>,
    events: Option<mpsc::UnboundedReceiver<EngineEvent>>,
    decoder: Decoder,
    attempts: u32,
    reconnect_at: Option<Instant>,
    reconnecting: bool,
    opening: Option<Opening>,
    closed: bool,
}

impl Task {
    fn new(m: Arc<Manager>, cmd_rx: mpsc::UnboundedReceiver<MgrCmd>) -> Self {
        let decoder = Decoder::new(m.decoder);
        Task {
            m,
            cmd_rx,
            events: None,
            decoder,
            attempts: 0,
            reconnect_at: None,
            reconnecting: false,
            opening: None,
            closed: false,
        }
    }

    async fn run(mut self) {
        while !self.closed {
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    None => break,
                },
                ev = recv_event(&mut self.events) => match ev {
                    Some(EngineEvent::Message(m)) => {
                        let r = self.decoder.decode_text(m.as_str());
                        self.decoded(r);
                    }
                    Some(EngineEvent::Binary(b)) => {
                        let r = self.decoder.decode_binary(b);
                        self.decoded(r);
                    }
                    Some(EngineEvent::Closed(reason)) => self.engine_closed(reason),
                    None => self.engine_closed(CloseReason::TransportClose),
                },
                r = poll_opening(&mut self.opening) => {
                    let retry = self.opening.take().is_some_and(|o| o.retry);
                    self.opened(r, retry);
                }
                _ = sleep_until(self.reconnect_at) => {
                    self.reconnect_at = None;
                    self.reconnect_attempt();
                }
            }
        }
        self.opening = None;
        // Closed: drop the connection and every socket's state.
        if let Some(e) = self.m.engine.lock().ok().and_then(|mut e| e.take()) {
            e.close();
        }
        for s in self.m.sockets() {
            s.on_disconnected(ClientDisconnectReason::ClientDisconnect, false);
            s.fail_waiters(None, || ClientError::Closed);
        }
        if let Ok(mut s) = self.m.sockets.lock() {
            s.clear();
        }
    }

    async fn command(&mut self, cmd: MgrCmd) {
        match cmd {
            MgrCmd::Connect(nsp) => {
                if let Some(engine) = self.m.engine() {
                    self.send_connect(&engine, &nsp);
                } else if self.opening.is_none()
                    && !self.reconnecting
                    && self.reconnect_at.is_none()
                {
                    // (An attempt under way, or scheduled, will connect it too.)
                    self.start_open(false);
                }
            }
            MgrCmd::Disconnect(nsp) => {
                let socket = self
                    .m
                    .sockets
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&nsp).cloned());
                if let Some(s) = socket {
                    if s.connected()
                        && let Some(e) = self.m.engine()
                    {
                        let _ = e.send(Packet::disconnect(nsp.clone()).encode_frames());
                    }
                    s.on_disconnected(ClientDisconnectReason::ClientDisconnect, false);
                    s.fail_waiters(None, || ClientError::Closed);
                }
                if !self.m.sockets().iter().any(ClientSocket::is_active) {
                    self.close_engine();
                }
            }
            MgrCmd::Close => {
                self.close_engine();
                self.closed = true;
            }
        }
    }

    fn close_engine(&mut self) {
        self.reconnect_at = None;
        self.reconnecting = false;
        self.opening = None;
        self.events = None;
        if let Some(e) = self.m.engine.lock().ok().and_then(|mut e| e.take()) {
            e.close();
        }
        for s in self.m.sockets() {
            s.on_disconnected(ClientDisconnectReason::ClientDisconnect, s.is_active());
        }
    }

    fn send_connect(&self, engine: &EngineClient, nsp: &Str) {
        let socket = self.m.sockets.lock().ok().and_then(|s| s.get(nsp).cloned());
        let auth = socket.and_then(|s| s.connect_payload());
        let _ = engine.send(Packet::connect(nsp.clone(), auth).encode_frames());
    }

    /// Start a connection attempt; its result arrives in [`Task::opened`].
    fn start_open(&mut self, retry: bool) {
        let target = self.m.target.clone();
        let config = self.m.engine_config.clone();
        self.opening = Some(Opening {
            fut: Box::pin(async move {
                let (tx, rx) = mpsc::unbounded_channel();
                (crate::engine::client::open(target, config, tx).await, rx)
            }),
            retry,
        });
    }

    /// An attempt finished: on success send CONNECT for every active socket.
    fn opened(&mut self, (r, rx): OpenResult, retry: bool) {
        match r {
            Ok(engine) => {
                self.decoder.reset();
                if let Ok(mut e) = self.m.engine.lock() {
                    *e = Some(engine.clone());
                }
                self.events = Some(rx);
                for s in self.m.sockets() {
                    if s.is_active() {
                        self.send_connect(&engine, s.nsp());
                    }
                }
                if retry {
                    let n = self.attempts;
                    self.reconnecting = false;
                    self.attempts = 0;
                    let hooks: Vec<_> = self
                        .m
                        .hooks
                        .read()
                        .map(|h| h.reconnect.clone())
                        .unwrap_or_default();
                    for h in hooks {
                        h(n);
                    }
                }
            }
            Err(e) => {
                let msg = open_error_message(&e);
                tracing::debug!(error = %msg, "connection attempt failed");
                if retry {
                    let hooks: Vec<_> = self
                        .m
                        .hooks
                        .read()
                        .map(|h| h.error.clone())
                        .unwrap_or_default();
                    for h in hooks {
                        h(&msg);
                    }
                }
                let info = ConnectErrorInfo {
                    message: msg.clone(),
                    data: None,
                };
                for s in self.m.sockets() {
                    if s.is_active() {
                        s.deliver_connect_error(info.clone(), false);
                    }
                }
                // Every waiting connect() rode on this attempt.
                self.schedule_reconnect(&msg, None);
            }
        }
    }

    /// Reconnect later, or give up: then fail the `connect()` calls made before epoch
    /// `before` (all of them when `None`).
    fn schedule_reconnect(&mut self, last_error: &str, before: Option<u64>) {
        let r = &self.m.reconnection;
        let give_up = !r.enabled || r.attempts.is_some_and(|max| self.attempts >= max);
        if give_up {
            self.reconnecting = false;
            if r.enabled {
                let hooks: Vec<_> = self
                    .m
                    .hooks
                    .read()
                    .map(|h| h.failed.clone())
                    .unwrap_or_default();
                for h in hooks {
                    h();
                }
            }
            let msg = last_error.to_owned();
            for s in self.m.sockets() {
                s.fail_waiters(before, || ClientError::Open(msg.clone()));
            }
            self.attempts = 0;
            return;
        }
        let delay = r.backoff(self.attempts);
        self.reconnecting = true;
        self.reconnect_at = Some(Instant::now() + delay);
    }

    fn reconnect_attempt(&mut self) {
        if !self.m.sockets().iter().any(ClientSocket::is_active) {
            self.reconnecting = false;
            self.attempts = 0;
            return;
        }
        self.attempts += 1;
        let n = self.attempts;
        let hooks: Vec<_> = self
            .m
            .hooks
            .read()
            .map(|h| h.attempt.clone())
            .unwrap_or_default();
        for h in hooks {
            h(n);
        }
        self.start_open(true);
    }

    fn engine_closed(&mut self, reason: CloseReason) {
        self.events = None;
        if let Ok(mut e) = self.m.engine.lock() {
            *e = None;
        }
        // connect() calls from here on (a disconnect handler reconnecting) belong to the
        // next connection, not to this one's failure.
        let epoch = self.m.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let client_close = reason == CloseReason::ClientClose;
        let r = ClientDisconnectReason::from(reason);
        for s in self.m.sockets() {
            s.on_disconnected(r.clone(), true);
        }
        if !client_close && self.m.sockets().iter().any(ClientSocket::is_active) {
            self.schedule_reconnect(r.as_str(), Some(epoch));
        }
    }

    fn decoded(&mut self, r: Result<Option<Packet>, crate::proto::socketio::ParseError>) {
        match r {
            Ok(Some(p)) => self.dispatch(p),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "bad packet from server: closing");
                if let Some(engine) = self.m.engine() {
                    engine.close();
                }
                self.engine_closed(CloseReason::ParseError);
            }
        }
    }

    fn dispatch(&mut self, p: Packet) {
        let socket = self
            .m
            .sockets
            .lock()
            .ok()
            .and_then(|s| s.get(p.nsp.as_str()).cloned());
        let Some(socket) = socket else {
            tracing::debug!(nsp = %p.nsp, "packet for an unknown namespace");
            return;
        };
        match p.kind {
            PacketType::Connect => {
                if let Some(engine) = self.m.engine() {
                    socket.on_server_connect(&engine, p.data);
                }
            }
            PacketType::ConnectError => {
                let (message, data) = match p.data {
                    Some(Value::String(s)) => (s, None),
                    Some(Value::Object(mut o)) => (
                        o.remove("message")
                            .and_then(|m| m.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        o.remove("data"),
                    ),
                    _ => (String::new(), None),
                };
                socket.deliver_connect_error(ConnectErrorInfo { message, data }, true);
            }
            PacketType::Disconnect => {
                socket.on_disconnected(ClientDisconnectReason::ServerDisconnect, false);
                if !self.m.sockets().iter().any(ClientSocket::is_active) {
                    self.close_engine();
                }
            }
            PacketType::Event | PacketType::BinaryEvent => socket.handle_event(p),
            PacketType::Ack | PacketType::BinaryAck => socket.handle_ack(p),
        }
    }
}

fn open_error_message(e: &OpenError) -> String {
    match e {
        OpenError::Transport(TransportError::WebSocket(m)) => format!("websocket error: {m}"),
        OpenError::Transport(t) => format!("transport error: {t}"),
        other => other.to_string(),
    }
}

async fn recv_event(
    events: &mut Option<mpsc::UnboundedReceiver<EngineEvent>>,
) -> Option<EngineEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn poll_opening(opening: &mut Option<Opening>) -> OpenResult {
    match opening {
        Some(o) => (&mut o.fut).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
