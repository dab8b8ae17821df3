//! The Engine.IO v4 server: sessions, heartbeat, and the hand-off between transports.
//!
//! An [`Engine`] owns the sessions of one server. Each session is an [`EngineSocket`]
//! with one bounded outgoing queue of [`Frame`]s; whichever transport is active
//! (a pending long-polling `GET`, or the WebSocket task) drains it. Incoming messages
//! are handed, in wire order, to the [`EngineHandler`] — the Socket.IO layer, or an
//! application that wants raw Engine.IO messages like the `engine.io` package offers.

pub mod client;
mod queue;
mod request;
mod timers;

pub(crate) use queue::{DirectSink, FrameRx, Out, Sent};
pub use request::SharedRequest;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::config::{EngineConfig, RequestInfo};
use crate::proto::Str;
use crate::proto::engineio::{Frame, Handshake, Packet};

/// Queue slots kept beyond `send_queue_capacity` for control frames.
const CONTROL_RESERVE: usize = 16;

/// How long a session closed by the client over polling stays findable.
const CLOSED_LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// Why an Engine.IO connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The peer closed the transport (TCP closed, WebSocket close frame, close packet).
    TransportClose,
    /// The transport failed (I/O error, protocol violation, oversized message).
    TransportError,
    /// No pong arrived within `ping_timeout` after a ping.
    PingTimeout,
    /// The peer sent something that could not be decoded.
    ParseError,
    /// The server closed the connection on purpose.
    ServerClose,
    /// The server is shutting down.
    ServerShutdown,
}

impl DisconnectReason {
    /// The inverse of `reason as u8 + 1` (0 = none).
    fn from_code(code: u8) -> Option<DisconnectReason> {
        use DisconnectReason::*;
        [
            TransportClose,
            TransportError,
            PingTimeout,
            ParseError,
            ServerClose,
            ServerShutdown,
        ]
        .into_iter()
        .find(|r| *r as u8 + 1 == code)
    }

    /// The reason's name as socket.io reports it (`"transport close"`, `"ping timeout"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ServerClose => "forced close",
            DisconnectReason::ServerShutdown => "server shutting down",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TransportType {
    /// HTTP long-polling.
    Polling = 0,
    /// WebSocket.
    Websocket = 1,
}

impl TransportType {
    /// The transport's name on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            TransportType::Polling => "polling",
            TransportType::Websocket => "websocket",
        }
    }
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection's outgoing queue is full (the peer reads too slowly).
    #[error("send queue full")]
    QueueFull,
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
}

/// Receives what happens on an [`Engine`]'s connections. Calls for one connection are
/// never concurrent and arrive in wire order; they run on runtime threads and should
/// not block for long.
pub trait EngineHandler: Send + Sync + 'static {
    /// A connection completed its handshake.
    fn on_connect(&self, socket: &Arc<EngineSocket>);
    /// A text message arrived.
    fn on_message(&self, socket: &Arc<EngineSocket>, msg: Str);
    /// A binary message arrived.
    fn on_binary(&self, socket: &Arc<EngineSocket>, data: Bytes);
    /// The connection ended; called exactly once per connection.
    fn on_disconnect(&self, socket: &Arc<EngineSocket>, reason: DisconnectReason);
    /// How long after the handshake [`EngineHandler::on_deadline`] should run, if at all
    /// (Socket.IO's connect timeout). The engine's one timer task keeps this deadline with
    /// the heartbeats, so it costs no task of its own.
    fn connect_deadline(&self) -> Option<std::time::Duration> {
        None
    }
    /// The deadline of [`EngineHandler::connect_deadline`] passed while the connection was
    /// open; runs once, on a runtime thread.
    fn on_deadline(&self, _socket: &Arc<EngineSocket>) {}
}

/// One Engine.IO session.
pub struct EngineSocket {
    id: Str,
    engine: Weak<Engine>,
    req: SharedRequest,
    tx: queue::FrameTx,
    /// The outgoing queue's consumer, held by the active transport.
    pub(crate) rx: tokio::sync::Mutex<FrameRx>,
    transport: AtomicU8,
    /// The long-polling transport's and the upgrade's state, and the high-water hooks:
    /// made on first use, so a session opened on WebSocket does without.
    rare: OnceLock<Box<Rare>>,
    /// Where the heartbeat stands (driven by the engine's timer task).
    beat: Mutex<timers::Beat>,
    /// When the outstanding ping's pong is due, if one is outstanding.
    ping_deadline: Mutex<Option<std::time::Instant>>,
    /// Woken (`notify_waiters`) when the session ends; see [`EngineSocket::closed`].
    closed: Notify,
    /// Why it ended: 0 while open, else `DisconnectReason as u8 + 1`.
    reason: AtomicU8,
    close_once: AtomicBool,
    ext: Mutex<Option<Arc<dyn Any + Send + Sync>>>,
    /// The address counted by the engine's per-IP limiter (released on close).
    admitted: Option<std::net::IpAddr>,
    high_water: usize,
    /// `send_queue_capacity`: data beyond it is refused; control frames use the reserve.
    limit: usize,
    above_high_water: AtomicBool,
}

/// The part of a session only some sessions use (see `EngineSocket::rare`).
#[derive(Default)]
pub(crate) struct Rare {
    pub(crate) upgrading: AtomicBool,
    /// The upgrade's probe was answered: polls get a noop until the upgrade completes.
    pub(crate) probed: AtomicBool,
    /// After the client closed over polling with no poll pending: one racing poll may
    /// still get its noop.
    pub(crate) late_poll: AtomicBool,
    /// Wakes pending polling `GET`s (`notify_waiters`: no permit is stored) during an upgrade.
    pub(crate) poll_kick: Notify,
    /// A frame taken from the queue that did not fit in the last poll response.
    pub(crate) carry: Mutex<Option<Frame>>,
    /// Serializes the processing of incoming data (one POST at a time).
    pub(crate) incoming: tokio::sync::Mutex<()>,
    high_water_hooks: Mutex<Vec<HighWaterHook>>,
}

/// Called with the queue length when a connection's outgoing queue crosses its high-water
/// mark.
pub type HighWaterHook = Arc<dyn Fn(usize) + Send + Sync>;

impl fmt::Debug for EngineSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineSocket")
            .field("id", &self.id)
            .field("transport", &self.transport())
            .finish()
    }
}

impl EngineSocket {
    /// The session id (`sid`).
    pub fn id(&self) -> &Str {
        &self.id
    }

    /// The handshake request (the first call builds the full [`RequestInfo`] and keeps it;
    /// [`EngineSocket::shared_request`] reads headers and query without that).
    pub fn request(&self) -> &RequestInfo {
        &self.req
    }

    /// The handshake request in its compact, shared form.
    pub fn shared_request(&self) -> &SharedRequest {
        &self.req
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportType {
        if self.transport.load(Ordering::Acquire) == TransportType::Websocket as u8 {
            TransportType::Websocket
        } else {
            TransportType::Polling
        }
    }

    /// The polling/upgrade state and high-water hooks (made on first use).
    pub(crate) fn rare(&self) -> &Rare {
        self.rare.get_or_init(Box::default)
    }

    /// Take the frame a poll response left behind, if any.
    pub(crate) fn take_carry(&self) -> Option<Frame> {
        self.rare.get()?.carry.lock().ok()?.take()
    }

    pub(crate) fn set_transport(&self, t: TransportType) {
        self.transport.store(t as u8, Ordering::Release);
    }

    /// Queue a text message.
    pub fn send_message(&self, msg: &str) -> Result<(), SendError> {
        self.send_frame(Frame::Text(crate::proto::engineio::encode_message(msg)))
    }

    /// Queue a binary message.
    pub fn send_binary(&self, data: Bytes) -> Result<(), SendError> {
        self.send_frame(Frame::Binary(data))
    }

    /// Queue one already-encoded frame.
    pub fn send_frame(&self, frame: Frame) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        let n = self.tx.push(frame, self.limit)?;
        self.check_high_water(n);
        Ok(())
    }

    /// Install (or remove) the transport's direct-write sink (see `queue`).
    pub(crate) fn set_direct(&self, sink: Option<Arc<dyn DirectSink>>) {
        self.tx.set_direct(sink);
    }

    /// Frames waiting in the outgoing queue.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Run `hook` whenever the outgoing queue grows past the high-water mark
    /// ([`EngineConfig::send_queue_high_water`]), once per crossing.
    pub fn on_high_water(&self, hook: HighWaterHook) {
        if let Ok(mut h) = self.rare().high_water_hooks.lock() {
            h.push(hook);
        }
    }

    fn check_high_water(&self, n: usize) {
        if n >= self.high_water {
            if !self.above_high_water.swap(true, Ordering::AcqRel) {
                let hooks: Vec<HighWaterHook> = self
                    .rare
                    .get()
                    .and_then(|r| r.high_water_hooks.lock().ok().map(|h| h.clone()))
                    .unwrap_or_default();
                tracing::debug!(sid = %self.id, queued = n, "send queue above high water");
                for h in hooks {
                    h(n);
                }
            }
        } else if n < self.high_water / 2 {
            self.above_high_water.store(false, Ordering::Release);
        }
    }

    /// Queue several frames atomically: all of them, or none when the queue lacks room.
    pub fn send_frames(&self, frames: &[Frame]) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        match frames {
            [] => Ok(()),
            [one] => self.send_frame(one.clone()),
            many => {
                let n = self.tx.push_all(many.iter(), self.limit)?;
                self.check_high_water(n);
                Ok(())
            }
        }
    }

    /// Queue control frames (a DISCONNECT, a close, a ping) past a full data queue: they
    /// use a small reserve beyond `send_queue_capacity`, so a slow peer still gets them,
    /// after the data queued before.
    pub fn send_control(&self, frames: &[Frame]) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        self.tx.push_all(frames.iter(), self.tx.max()).map(|_| ())
    }

    /// Attach the handler's per-connection state (replacing any earlier one).
    pub fn set_ext<T: Any + Send + Sync>(&self, value: Arc<T>) {
        if let Ok(mut e) = self.ext.lock() {
            *e = Some(value);
        }
    }

    /// The handler's per-connection state, if it is a `T`.
    pub fn ext<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let e = self.ext.lock().ok()?.clone()?;
        e.downcast::<T>().ok()
    }

    /// Detach and return the handler's per-connection state.
    pub fn take_ext<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let e = self.ext.lock().ok()?.take()?;
        e.downcast::<T>().ok()
    }

    fn beat(&self) -> std::sync::MutexGuard<'_, timers::Beat> {
        self.beat.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_ping_deadline(&self, at: Option<std::time::Instant>) {
        if let Ok(mut p) = self.ping_deadline.lock() {
            *p = at;
        }
    }

    /// Whether the outstanding ping's pong is overdue.
    pub(crate) fn ping_overdue(&self) -> bool {
        self.ping_deadline
            .lock()
            .ok()
            .and_then(|p| *p)
            .is_some_and(|t| std::time::Instant::now() >= t)
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<DisconnectReason> {
        DisconnectReason::from_code(self.reason.load(Ordering::Acquire))
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.close_once.load(Ordering::Acquire)
    }

    /// Completes once the connection has ended (at once when it already has).
    pub(crate) async fn closed(&self) {
        loop {
            let woken = self.closed.notified();
            tokio::pin!(woken);
            // Registered before the check: a close in between still wakes us.
            woken.as_mut().enable();
            if self.is_closed() {
                return;
            }
            woken.await;
        }
    }

    /// Notified (`notify_waiters`) once the session has ended, after [`Self::is_closed`]
    /// turns true: enable a `Notified` first, then check the flag.
    pub(crate) fn closed_notify(&self) -> &Notify {
        &self.closed
    }

    /// Close the connection from the server side. The peer gets a close packet when the
    /// transport can still carry one; the handler's `on_disconnect` runs once.
    pub fn close(self: &Arc<Self>) {
        let _ = self.send_control(&[Packet::Close.encode()]);
        self.close_with(DisconnectReason::ServerClose);
    }

    /// End the session with `reason` (idempotent).
    pub(crate) fn close_with(self: &Arc<Self>, reason: DisconnectReason) {
        let lingers = matches!(
            reason,
            DisconnectReason::TransportClose
                | DisconnectReason::ServerClose
                | DisconnectReason::ServerShutdown
        ) && self.transport() == TransportType::Polling;
        if lingers && !self.is_closed() && self.rx.try_lock().is_ok() {
            // No poll pending: the next one may still come for this session — to get its
            // noop (the client closed) or the queued close packet (the server closed,
            // as Node's polling transport waits to deliver it). Decided before the
            // session reads as closed, so a racing poll sees it.
            self.rare().late_poll.store(true, Ordering::Release);
        }
        if self.close_once.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!(sid = %self.id, %reason, "engine.io connection closed");
        self.reason.store(reason as u8 + 1, Ordering::Release);
        self.closed.notify_waiters();
        if let Some(r) = self.rare.get()
            && let Ok(mut h) = r.high_water_hooks.lock()
        {
            h.clear();
        }
        if let Some(engine) = self.engine.upgrade() {
            engine.timers.closed();
            if let Some(ip) = self.admitted {
                engine.ip_limiter.release(ip);
            }
            let rt = tokio::runtime::Handle::try_current().ok();
            if let Some(rt) = rt.filter(|_| lingers) {
                // Keep the session findable for a moment (see `late_poll`).
                let weak = Arc::downgrade(&engine);
                let id = self.id.clone();
                rt.spawn(async move {
                    tokio::time::sleep(CLOSED_LINGER).await;
                    if let Some(e) = weak.upgrade() {
                        e.remove(&id);
                    }
                });
            } else {
                engine.remove(&self.id);
            }
            engine.handler.on_disconnect(self, reason);
        }
    }

    /// Handle one decoded incoming packet. Called with `incoming` held by the transport.
    pub(crate) fn on_packet(self: &Arc<Self>, engine: &Engine, packet: Packet) {
        match packet {
            Packet::Message(msg) => engine.handler.on_message(self, msg),
            Packet::Binary(data) => engine.handler.on_binary(self, data),
            Packet::Pong(_) => {
                self.set_ping_deadline(None);
                engine.timers.pong(self, engine.config.ping_interval);
            }
            Packet::Ping(payload) => {
                // v4 clients do not ping; answer anyway (v3 habit) rather than fail.
                let _ = self.send_control(&[Packet::Pong(payload).encode()]);
            }
            Packet::Close => self.close_with(DisconnectReason::TransportClose),
            Packet::Noop | Packet::Upgrade | Packet::Open(_) => {}
        }
    }
}

/// The Engine.IO server state: configuration, sessions and the handler.
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) handler: Arc<dyn EngineHandler>,
    sessions: Mutex<HashMap<Str, Arc<EngineSocket>>>,
    pub(crate) ip_limiter: crate::limits::IpLimiter,
    timers: Arc<timers::Timers>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.timers.stop();
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("sessions", &self.session_count())
            .finish()
    }
}

impl Engine {
    /// A new engine delivering to `handler`.
    pub fn new(config: EngineConfig, handler: Arc<dyn EngineHandler>) -> Arc<Engine> {
        let ip_limiter = crate::limits::IpLimiter::new(
            config.max_connections_per_ip,
            config.connection_rate_per_ip,
        );
        Arc::new(Engine {
            config,
            handler,
            sessions: Mutex::new(HashMap::new()),
            ip_limiter,
            timers: Arc::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Look a session up by id.
    pub fn get(&self, sid: &str) -> Option<Arc<EngineSocket>> {
        self.sessions.lock().ok()?.get(sid).cloned()
    }

    /// Every open session.
    pub fn sockets(&self) -> Vec<Arc<EngineSocket>> {
        self.sessions
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    fn remove(&self, sid: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(sid);
        }
    }

    /// Close every session (reason [`DisconnectReason::ServerShutdown`]).
    pub fn close_all(&self) {
        for s in self.sockets() {
            let _ = s.send_control(&[Packet::Close.encode()]);
            s.close_with(DisconnectReason::ServerShutdown);
        }
    }

    /// The Open packet's handshake for a new session.
    pub(crate) fn handshake(&self, sid: &Str, websocket_upgrade: bool) -> Handshake {
        Handshake {
            sid: sid.to_string(),
            upgrades: if websocket_upgrade && self.config.transports.websocket {
                vec!["websocket".to_owned()]
            } else {
                Vec::new()
            },
            ping_interval: self.config.ping_interval.as_millis() as u64,
            ping_timeout: self.config.ping_timeout.as_millis() as u64,
            max_payload: self.config.max_payload as u64,
        }
    }

    /// Create a session and start its heartbeat. The caller sends the Open packet
    /// (queued here first, so it is always the first frame) and then calls
    /// `handler.on_connect`.
    pub(crate) fn create_session(
        self: &Arc<Self>,
        req: SharedRequest,
        transport: TransportType,
        admitted: bool,
    ) -> Arc<EngineSocket> {
        let id = generate_sid();
        let capacity = self.config.send_queue_capacity.max(4);
        let (tx, rx) = queue::frame_queue(capacity + CONTROL_RESERVE);
        let admitted = admitted.then_some(req.peer().ip());
        let socket = Arc::new(EngineSocket {
            id: id.clone(),
            engine: Arc::downgrade(self),
            req,
            tx,
            rx: tokio::sync::Mutex::new(rx),
            transport: AtomicU8::new(transport as u8),
            rare: OnceLock::new(),
            beat: Mutex::new(timers::Beat::new(
                tokio::time::Instant::now() + self.config.ping_interval,
            )),
            ping_deadline: Mutex::new(None),
            closed: Notify::new(),
            reason: AtomicU8::new(0),
            close_once: AtomicBool::new(false),
            ext: Mutex::new(None),
            admitted,
            high_water: self
                .config
                .send_queue_high_water
                .unwrap_or(capacity * 3 / 4)
                .clamp(1, capacity),
            limit: capacity,
            above_high_water: AtomicBool::new(false),
        });
        let open = Packet::Open(Str::from(
            self.handshake(&id, transport == TransportType::Polling)
                .to_json(),
        ))
        .encode();
        // The queue is empty and its capacity is at least 4: this cannot fail.
        let _ = socket.tx.push(open, capacity);
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(id, socket.clone());
        }
        let now = tokio::time::Instant::now();
        self.timers.add(
            self,
            &socket,
            now + self.config.ping_interval,
            self.handler.connect_deadline().map(|d| now + d),
        );
        socket
    }
}

/// 20 characters of base64url from 15 random bytes.
pub(crate) fn generate_sid() -> Str {
    use base64::Engine as _;
    let mut buf = [0u8; 15];
    if getrandom::fill(&mut buf).is_err() {
        // No OS randomness: fall back to time and a counter (ids stay unique, not secret).
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        buf[..8].copy_from_slice(&t.to_le_bytes());
        buf[8..15].copy_from_slice(&n.to_le_bytes()[..7]);
    }
    Str::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}
