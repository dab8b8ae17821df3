//! The Socket.IO v5 server: namespaces, rooms, broadcasts, acknowledgements, middleware.
//!
//! ```no_run
//! use tether::sio::Io;
//!
//! # async fn run() -> std::io::Result<()> {
//! let io = Io::new();
//! io.ns("/", |socket| {
//!     socket.on("chat message", |s, ev| {
//!         // to everyone, the sender included
//!         let _ = s.ns().emit_args("chat message", ev.args);
//!     });
//! });
//! let server = io.listen("127.0.0.1:3000").await?;
//! println!("listening on {}", server.local_addr());
//! # Ok(()) }
//! ```

pub mod client;
mod conn;
mod namespace;
mod payload;
pub mod recovery;
mod small;
pub(crate) mod socket;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

pub use conn::ConnectDecision;
pub(crate) use namespace::WeakNamespace;
pub use namespace::{BroadcastAcks, BroadcastOperator, ClusterAcks, Namespace};
pub use payload::{AckError, Args, ArgsError, MAX_ARGS_DEPTH, SerializeError};
pub use socket::{AckSendError, AckSender, Event, SocketRef};

use crate::config::{Cors, EngineConfig, RequestInfo, SioConfig};
use crate::engine::{DisconnectReason as EngineReason, Engine, EngineHandler, SendError};
use crate::proto::Str;
use crate::transport::http::{ServerHandle, StaticRoutes};

/// A room name. Every socket is also in the room named by its id.
pub type Room = Str;

/// The bundled browser client, served at `<path>socket.io.js` unless disabled.
pub const BROWSER_CLIENT_JS: &str = include_str!("../../assets/socket.io.js");

/// Why a socket left its namespace. `as_str` gives socket.io's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The connection was closed by the peer.
    TransportClose,
    /// The connection failed (I/O error, oversized message).
    TransportError,
    /// The client stopped answering pings.
    PingTimeout,
    /// The client sent a packet that could not be decoded.
    ParseError,
    /// The client left the namespace.
    ClientNamespaceDisconnect,
    /// The server disconnected the socket ([`SocketRef::disconnect`]).
    ServerNamespaceDisconnect,
    /// The server closed the whole connection.
    ForcedClose,
    /// The server is shutting down.
    ServerShuttingDown,
}

impl DisconnectReason {
    /// The reason as socket.io names it (`"transport close"`, `"ping timeout"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ServerShuttingDown => "server shutting down",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<EngineReason> for DisconnectReason {
    fn from(r: EngineReason) -> Self {
        match r {
            EngineReason::TransportClose => DisconnectReason::TransportClose,
            EngineReason::TransportError => DisconnectReason::TransportError,
            EngineReason::PingTimeout => DisconnectReason::PingTimeout,
            EngineReason::ParseError => DisconnectReason::ParseError,
            EngineReason::ServerClose => DisconnectReason::ForcedClose,
            EngineReason::ServerShutdown => DisconnectReason::ServerShuttingDown,
        }
    }
}

/// Why an emit failed.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The recipient's queue is full or it is disconnected.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A broadcast skipped this many recipients whose queue was full.
    #[error("broadcast dropped for {0} recipient(s) with a full queue")]
    Dropped(usize),
    /// An argument could not be serialized.
    #[error(transparent)]
    Serialize(SerializeError),
}

/// A refusal from a connect middleware: the client gets a `connect_error` with
/// `message` and, when set, `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// The error message (`err.message` on the client).
    pub message: String,
    /// Extra data (`err.data` on the client).
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> Self {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    /// Attach data.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// What a socket presented when it connected.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The `auth` payload of the CONNECT packet (`{}` when none was sent).
    pub auth: Value,
    /// The HTTP request that opened the connection (headers, query, peer address),
    /// shared by every namespace socket of the connection. It dereferences to a
    /// [`RequestInfo`]; its own `header`/`query` methods read it without building one.
    pub request: crate::engine::SharedRequest,
}

impl Handshake {
    pub(crate) fn new(auth: Value, request: &crate::engine::SharedRequest) -> Self {
        Handshake {
            auth,
            request: request.clone(),
        }
    }

    /// The peer's address.
    pub fn address(&self) -> SocketAddr {
        self.request.peer()
    }

    /// A query parameter of the handshake request.
    pub fn query(&self, key: &str) -> Option<String> {
        self.request.query(key)
    }

    /// A header of the handshake request.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request.header(name)
    }
}

/// What a connect middleware sees.
#[derive(Debug, Clone)]
pub struct ConnectContext {
    /// The namespace asked for.
    pub nsp: Str,
    /// The id the socket will have if it is accepted (its old id when its state is
    /// recovered).
    pub sid: Str,
    /// The handshake (auth, headers, query, address).
    pub handshake: Handshake,
}

type NsPredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;
type NsSetup = Arc<dyn Fn(&Namespace) + Send + Sync>;

pub(crate) struct IoInner {
    pub(crate) config: SioConfig,
    engine_config: EngineConfig,
    namespaces: RwLock<HashMap<Str, Namespace>>,
    dynamic: RwLock<Vec<(NsPredicate, NsSetup)>>,
    /// Weak: the engine holds this server as its handler; listeners hold the engine.
    engine: std::sync::Mutex<Weak<Engine>>,
    runtime: OnceLock<tokio::runtime::Handle>,
    pub(crate) adapter: Option<Arc<dyn crate::adapter::Adapter>>,
}

impl IoInner {
    pub(crate) fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.get().cloned()
    }

    /// The namespace `nsp`, and whether this call created it (dynamically, only when
    /// `allow_new`).
    pub(crate) fn namespace_for(
        self: &Arc<Self>,
        nsp: &Str,
        allow_new: bool,
    ) -> Option<(Namespace, bool)> {
        if let Some(ns) = self.namespaces.read().ok()?.get(nsp.as_str()) {
            return Some((ns.clone(), false));
        }
        if !allow_new {
            return None;
        }
        let setup = self
            .dynamic
            .read()
            .ok()?
            .iter()
            .find(|(pred, _)| pred(nsp.as_str()))
            .map(|(_, setup)| setup.clone())?;
        let ns = {
            let mut map = self.namespaces.write().ok()?;
            if let Some(ns) = map.get(nsp.as_str()) {
                return Some((ns.clone(), false));
            }
            let ns = Namespace::new(nsp.clone(), Arc::downgrade(self));
            map.insert(nsp.clone(), ns.clone());
            ns
        };
        setup(&ns);
        Some((ns, true))
    }
}

/// The Socket.IO server. Cheap to clone; every clone is the same server.
#[derive(Clone)]
pub struct Io {
    inner: Arc<IoInner>,
}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io")
            .field("config", &self.inner.config)
            .field("engine", &self.inner.engine_config)
            .finish()
    }
}

impl Default for Io {
    fn default() -> Self {
        Io::new()
    }
}

/// Builds an [`Io`] with non-default settings.
#[derive(Debug, Clone, Default)]
pub struct IoBuilder {
    engine: EngineConfig,
    sio: SioConfig,
    adapter: Option<Arc<dyn crate::adapter::Adapter>>,
}

impl IoBuilder {
    /// The request path (default `/socket.io/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        let mut p = path.into();
        if !p.starts_with('/') {
            p.insert(0, '/');
        }
        if !p.ends_with('/') {
            p.push('/');
        }
        self.engine.path = p;
        self
    }

    /// Interval between pings (default 25 s).
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.engine.ping_interval = d;
        self
    }

    /// Time allowed for a pong (default 20 s).
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.engine.ping_timeout = d;
        self
    }

    /// Time allowed for a transport upgrade (default 10 s).
    pub fn upgrade_timeout(mut self, d: Duration) -> Self {
        self.engine.upgrade_timeout = d;
        self
    }

    /// Time allowed to join a namespace after connecting (default 45 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.sio.connect_timeout = d;
        self
    }

    /// `maxHttpBufferSize`: largest message, polling body or frame (default 1e6 bytes).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.engine.max_payload = bytes;
        self
    }

    /// Most binary attachments per packet (default 10).
    pub fn max_attachments(mut self, n: usize) -> Self {
        self.sio.decoder.max_attachments = n;
        self
    }

    /// CORS for the polling transport.
    pub fn cors(mut self, cors: Cors) -> Self {
        self.engine.cors = Some(cors);
        self
    }

    /// Serve the bundled browser client at `<path>socket.io.js` (default true).
    pub fn serve_client(mut self, yes: bool) -> Self {
        self.sio.serve_client = yes;
        self
    }

    /// A hook that may refuse handshakes (HTTP 403).
    pub fn allow_request<F>(mut self, f: F) -> Self
    where
        F: Fn(&RequestInfo) -> Result<(), String> + Send + Sync + 'static,
    {
        self.engine.allow_request = Some(Arc::new(f));
        self
    }

    /// Per-socket incoming event rate limit and what to do beyond it.
    pub fn event_rate(mut self, rate: crate::config::EventRate) -> Self {
        self.sio.event_rate = Some(rate);
        self
    }

    /// Most open connections per IP address (HTTP 429 beyond).
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.engine.max_connections_per_ip = Some(n);
        self
    }

    /// New connections per second per IP address (HTTP 429 beyond).
    pub fn connection_rate_per_ip(mut self, rate: crate::limits::RateLimit) -> Self {
        self.engine.connection_rate_per_ip = Some(rate);
        self
    }

    /// Check the `Origin` header of handshakes (default true: CORS origins when set,
    /// else same-origin only; requests without `Origin` pass).
    pub fn check_origin(mut self, yes: bool) -> Self {
        self.engine.check_origin = yes;
        self
    }

    /// Connection state recovery (socket.io 4.6+): sockets that come back within
    /// `max_disconnection_duration` get their id, rooms and missed broadcasts back.
    pub fn connection_state_recovery(mut self, config: recovery::RecoveryConfig) -> Self {
        self.sio.connection_state_recovery = Some(config);
        self
    }

    /// Replace the whole Engine.IO configuration.
    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }

    /// Replace the whole Socket.IO configuration.
    pub fn sio_config(mut self, config: SioConfig) -> Self {
        self.sio = config;
        self
    }

    /// The cluster adapter (default: none, the in-memory adapter alone): e.g. a
    /// [`crate::adapter::RedisAdapter`], so that broadcasts, room operations and requests
    /// reach the sockets of every node. Every namespace of the server uses it.
    pub fn adapter(mut self, adapter: impl crate::adapter::Adapter) -> Self {
        self.adapter = Some(Arc::new(adapter));
        self
    }

    /// Build the server.
    pub fn build(self) -> Io {
        let io = Io {
            inner: Arc::new(IoInner {
                config: self.sio,
                engine_config: self.engine,
                namespaces: RwLock::new(HashMap::new()),
                dynamic: RwLock::new(Vec::new()),
                engine: std::sync::Mutex::new(Weak::new()),
                runtime: OnceLock::new(),
                adapter: self.adapter,
            }),
        };
        io.of("/");
        io
    }
}

impl Io {
    /// A server with the reference defaults.
    pub fn new() -> Io {
        IoBuilder::default().build()
    }

    /// Start building a server.
    pub fn builder() -> IoBuilder {
        IoBuilder::default()
    }

    /// The namespace `name`, created if needed (a leading `/` is added when missing).
    pub fn of(&self, name: &str) -> Namespace {
        let name: Str = if name.starts_with('/') {
            Str::from(name.to_owned())
        } else {
            Str::from(format!("/{name}"))
        };
        let mut map = match self.inner.namespaces.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.entry(name.clone())
            .or_insert_with(|| Namespace::new(name, Arc::downgrade(&self.inner)))
            .clone()
    }

    /// Create (or get) namespace `name` and set its connection handler.
    pub fn ns<F>(&self, name: &str, on_connect: F) -> Namespace
    where
        F: Fn(SocketRef) + Send + Sync + 'static,
    {
        let ns = self.of(name);
        ns.on_connect(on_connect);
        ns
    }

    /// Dynamic namespaces: a CONNECT to an unknown namespace whose name satisfies
    /// `predicate` creates it, and `setup` configures it (handlers, middleware) first.
    pub fn dynamic_ns<P, S>(&self, predicate: P, setup: S)
    where
        P: Fn(&str) -> bool + Send + Sync + 'static,
        S: Fn(&Namespace) + Send + Sync + 'static,
    {
        if let Ok(mut d) = self.inner.dynamic.write() {
            d.push((Arc::new(predicate), Arc::new(setup)));
        }
    }

    /// Add a connect middleware to the main namespace `/`.
    pub fn use_middleware<F>(&self, middleware: F)
    where
        F: Fn(&ConnectContext) -> Result<(), ConnectError> + Send + Sync + 'static,
    {
        self.of("/").use_middleware(middleware);
    }

    /// Emit to every socket of `/`, with one argument.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.of("/").emit(event, data)
    }

    /// Broadcast to `room` of `/`.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.of("/").to(room)
    }

    /// Broadcast to `/` except `room`.
    pub fn except(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.of("/").except(room)
    }

    /// Broadcast to all of `/`.
    pub fn broadcast(&self) -> BroadcastOperator {
        self.of("/").broadcast()
    }

    /// Sockets connected to `/`.
    pub fn sockets(&self) -> Vec<SocketRef> {
        self.of("/").sockets()
    }

    /// The Engine.IO layer, once the server is listening.
    pub fn engine(&self) -> Option<Arc<Engine>> {
        self.inner.engine.lock().ok()?.upgrade()
    }

    /// The Engine.IO handler of this server, to drive it from a custom listener.
    pub fn engine_handler(&self) -> Arc<dyn EngineHandler> {
        Arc::new(self.inner.clone())
    }

    /// Listen on `addr` (port 0 picks a free port; see [`ServerHandle::local_addr`]).
    /// Must be called inside a tokio runtime; the server runs on it.
    pub async fn listen(
        &self,
        addr: impl tokio::net::ToSocketAddrs,
    ) -> std::io::Result<ServerHandle> {
        self.listen_with(addr, StaticRoutes::new()).await
    }

    /// Listen on `addr`, also answering the given static routes (a web page...).
    pub async fn listen_with(
        &self,
        addr: impl tokio::net::ToSocketAddrs,
        mut routes: StaticRoutes,
    ) -> std::io::Result<ServerHandle> {
        let _ = self.inner.runtime.set(tokio::runtime::Handle::current());
        let engine = {
            let mut slot = self.inner.engine.lock().unwrap_or_else(|p| p.into_inner());
            match slot.upgrade() {
                Some(e) => e,
                None => {
                    let e = Engine::new(self.inner.engine_config.clone(), self.engine_handler());
                    *slot = Arc::downgrade(&e);
                    e
                }
            }
        };
        if self.inner.config.serve_client {
            routes = routes.file(
                format!("{}socket.io.js", engine.config().path),
                "application/javascript; charset=utf-8",
                BROWSER_CLIENT_JS,
            );
        }
        crate::transport::http::serve(engine, addr, routes).await
    }
}
