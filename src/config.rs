//! Server configuration, with the Node reference implementation's defaults.
//!
//! Every limit a peer can push against is a field here. The defaults are those of
//! `engine.io` / `socket.io` 4.x unless the field's doc says otherwise.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::limits::RateLimit;
use crate::proto::socketio::DecoderConfig;

/// What an [`EngineConfig::allow_request`] hook sees of a handshake request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The request URI (path and query).
    pub uri: http::Uri,
    /// The request headers.
    pub headers: http::HeaderMap,
    /// The peer's address.
    pub peer: SocketAddr,
}

impl RequestInfo {
    /// A copy that owns its bytes. hyper's parsed URI and header values point into the
    /// connection's 8 KiB read buffer: keeping clones of them for a connection's lifetime
    /// would keep that whole buffer alive per connection.
    pub fn owned(uri: &http::Uri, headers: &http::HeaderMap, peer: SocketAddr) -> Self {
        let uri = uri
            .path_and_query()
            .and_then(|pq| http::Uri::try_from(pq.as_str().to_owned()).ok())
            .unwrap_or_else(|| http::Uri::from_static("/"));
        let mut owned = http::HeaderMap::with_capacity(headers.len());
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_str().as_bytes()),
                http::HeaderValue::from_bytes(v.as_bytes()),
            ) {
                owned.append(k, v);
            }
        }
        RequestInfo {
            uri,
            headers: owned,
            peer,
        }
    }

    /// The first value of query parameter `key`, percent-decoded.
    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.uri.query()?;
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// All query parameters, percent-decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        match self.uri.query() {
            Some(q) => form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            None => Vec::new(),
        }
    }

    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The hook deciding whether a handshake may proceed: `Err(message)` refuses it with
/// HTTP 403 (`{"code":4,"message":"Forbidden"}`), as engine.io's `allowRequest` does.
pub type AllowRequest = Arc<dyn Fn(&RequestInfo) -> Result<(), String> + Send + Sync>;

/// Which origins may talk to the server from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `Access-Control-Allow-Origin: *` (without credentials), or the request's origin
    /// reflected (with credentials, as the `cors` package does for `origin: true`).
    Any,
    /// Only these exact origins (`scheme://host[:port]`); others get no CORS headers.
    List(Vec<String>),
}

/// CORS settings for the HTTP long-polling transport (and preflight requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// The allowed origins.
    pub origins: CorsOrigins,
    /// Send `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
}

impl Cors {
    /// Any origin, no credentials: `Access-Control-Allow-Origin: *`.
    pub fn any() -> Self {
        Cors {
            origins: CorsOrigins::Any,
            credentials: false,
        }
    }

    /// Only the listed origins.
    pub fn origins<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cors {
            origins: CorsOrigins::List(origins.into_iter().map(Into::into).collect()),
            credentials: false,
        }
    }

    /// Also allow credentials (cookies, authorization headers).
    pub fn with_credentials(mut self) -> Self {
        self.credentials = true;
        self
    }
}

/// Transports a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    /// HTTP long-polling.
    pub polling: bool,
    /// WebSocket.
    pub websocket: bool,
}

impl Default for Transports {
    fn default() -> Self {
        Transports {
            polling: true,
            websocket: true,
        }
    }
}

/// Engine.IO server settings (the transport layer below Socket.IO).
#[derive(Clone)]
pub struct EngineConfig {
    /// The request path the server answers, with a trailing slash. Default `/socket.io/`.
    pub path: String,
    /// Interval between the server's pings. Default 25 s.
    pub ping_interval: Duration,
    /// How long a pong may take after a ping before the connection is closed. Default 20 s.
    pub ping_timeout: Duration,
    /// How long a transport upgrade may take. Default 10 s.
    pub upgrade_timeout: Duration,
    /// Largest message, polling body or WebSocket frame accepted, in bytes
    /// (`maxHttpBufferSize`). Default 1 000 000.
    pub max_payload: usize,
    /// Most WebSocket frames in one message (empty continuation frames count). Default
    /// 1 000 (tether's; Node has no limit). Beyond, the connection closes with 1009.
    pub max_fragments_per_message: usize,
    /// Largest number of packets in one polling body. Default 1 000.
    pub max_packets_per_payload: usize,
    /// Capacity of each connection's outgoing queue, in frames. When it is full an emit
    /// returns [`crate::sio::EmitError::Send`] with
    /// [`crate::engine::SendError::QueueFull`] (volatile emits are dropped). Default 4096.
    pub send_queue_capacity: usize,
    /// Unused since tether reads WebSockets with its own codec (into a stack buffer, with
    /// nothing kept while a connection is idle); kept for source compatibility.
    pub ws_read_buffer_size: usize,
    /// Largest HTTP request head (request line and headers) in bytes. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Largest number of request headers. Default 100.
    pub max_headers: usize,
    /// Time allowed to receive a request's head. Default 10 s.
    pub header_read_timeout: Duration,
    /// Accepted transports. Default both.
    pub transports: Transports,
    /// CORS for polling and preflight requests. Default none (no CORS headers).
    pub cors: Option<Cors>,
    /// A hook that may refuse handshakes. Default none.
    pub allow_request: Option<AllowRequest>,
    /// Refuse handshakes whose `Origin` header is not allowed: by `cors` when set, else
    /// only the server's own origin (the `Host` header), as python-engineio does.
    /// Requests without `Origin` (non-browser clients) pass. Default true.
    pub check_origin: bool,
    /// Most open connections from one IP address (HTTP 429 beyond). Default none.
    pub max_connections_per_ip: Option<usize>,
    /// New connections per second from one IP address (HTTP 429 beyond). Default none.
    pub connection_rate_per_ip: Option<RateLimit>,
    /// Outgoing queue length at which [`crate::sio::SocketRef::on_high_water`] handlers
    /// fire (once per crossing). Default 3/4 of `send_queue_capacity`.
    pub send_queue_high_water: Option<usize>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/socket.io/".to_owned(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            max_packets_per_payload: 1_000,
            max_fragments_per_message: 1_000,
            send_queue_capacity: 4096,
            ws_read_buffer_size: 4096,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            transports: Transports::default(),
            cors: None,
            allow_request: None,
            check_origin: true,
            max_connections_per_ip: None,
            connection_rate_per_ip: None,
            send_queue_high_water: None,
        }
    }
}

impl fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineConfig")
            .field("path", &self.path)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("upgrade_timeout", &self.upgrade_timeout)
            .field("max_payload", &self.max_payload)
            .field("max_packets_per_payload", &self.max_packets_per_payload)
            .field("max_fragments_per_message", &self.max_fragments_per_message)
            .field("send_queue_capacity", &self.send_queue_capacity)
            .field("ws_read_buffer_size", &self.ws_read_buffer_size)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_headers", &self.max_headers)
            .field("transports", &self.transports)
            .field("cors", &self.cors)
            .field("allow_request", &self.allow_request.is_some())
            .field("check_origin", &self.check_origin)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("connection_rate_per_ip", &self.connection_rate_per_ip)
            .field("send_queue_high_water", &self.send_queue_high_water)
            .finish()
    }
}

/// Socket.IO server settings (on top of [`EngineConfig`]).
#[derive(Debug, Clone)]
pub struct SioConfig {
    /// How long a new connection may take to join a namespace before it is closed.
    /// Default 45 s.
    pub connect_timeout: Duration,
    /// Packet decoding limits (attachments per packet, JSON nesting).
    pub decoder: DecoderConfig,
    /// Serve the bundled browser client at `<path>socket.io.js`. Default true.
    pub serve_client: bool,
    /// Incoming events allowed per socket (token bucket), and what happens beyond.
    /// Default none.
    pub event_rate: Option<EventRate>,
    /// Dynamic namespaces one connection may cause to be created; beyond, a CONNECT to a
    /// new one gets `Invalid namespace`. Default 16.
    pub max_dynamic_namespaces_per_connection: usize,
    /// Connection state recovery (off by default, as in socket.io).
    pub connection_state_recovery: Option<crate::sio::recovery::RecoveryConfig>,
}

/// What to do with events over a socket's [`SioConfig::event_rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateAction {
    /// Drop the event (logged at warn, counted in `SocketRef::dropped_events`).
    Drop,
    /// Disconnect the socket.
    Disconnect,
}

/// A per-socket incoming event rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRate {
    /// The rate.
    pub limit: RateLimit,
    /// What happens to events beyond it.
    pub action: RateAction,
}

impl Default for SioConfig {
    fn default() -> Self {
        SioConfig {
            connect_timeout: Duration::from_millis(45_000),
            decoder: DecoderConfig {
                raw_args: true,
                ..DecoderConfig::default()
            },
            serve_client: true,
            event_rate: None,
            max_dynamic_namespaces_per_connection: 16,
            connection_state_recovery: None,
        }
    }
}
