//! One client's membership of one namespace: events, acks, rooms, emits.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::conn::Conn;
use super::namespace::{BroadcastOperator, Namespace};
use super::payload::{AckError, Args, SerializeError};
use super::small::{SmallMap, SmallSet};
use super::{DisconnectReason, EmitError, Handshake, Room};
use crate::engine::SendError;
use crate::proto::Str;
use crate::proto::engineio::Frame;
use crate::proto::socketio::{Packet, raw_event_frame};

pub(crate) type EventHandler = Arc<dyn Fn(&SocketRef, Event) + Send + Sync>;
pub(crate) type AnyHandler = Arc<dyn Fn(&SocketRef, &Event) + Send + Sync>;
pub(crate) type DisconnectHandler = Box<dyn FnOnce(&SocketRef, DisconnectReason) + Send>;
pub(crate) type AckCallback = Box<dyn FnOnce(Result<Args, AckError>) + Send>;

/// An incoming event.
#[derive(Debug)]
pub struct Event {
    /// The event name.
    pub name: String,
    /// The arguments (binary ones as placeholders, with their attachments).
    pub args: Args,
    /// Present when the sender asked for an acknowledgement: answer it now or later,
    /// from any thread, with [`AckSender::send`].
    pub ack: Option<AckSender>,
}

/// Where an acknowledgement goes: a server-side socket or a client socket.
pub(crate) trait AckSink: Send + Sync {
    /// The namespace the ack belongs to.
    fn nsp(&self) -> &Str;
    /// Queue the encoded ACK packet.
    fn send_frames(&self, frames: Vec<Frame>) -> Result<(), SendError>;
}

/// The right to answer one acknowledgement, exactly once. Clones share that right:
/// the first `send` wins, later ones return [`AckSendError::AlreadySent`].
/// Dropping every clone without sending leaves the peer's ack unanswered (its timeout fires).
#[derive(Clone)]
pub struct AckSender {
    sink: Arc<dyn AckSink>,
    id: u64,
    sent: Arc<AtomicBool>,
}

impl fmt::Debug for AckSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckSender")
            .field("nsp", self.sink.nsp())
            .field("id", &self.id)
            .finish()
    }
}

/// Why an acknowledgement could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum AckSendError {
    /// This acknowledgement was answered already.
    #[error("ack already sent")]
    AlreadySent,
    /// The reply could not be queued.
    #[error(transparent)]
    Send(#[from] SendError),
    /// An argument could not be serialized.
    #[error(transparent)]
    Serialize(#[from] SerializeError),
}

impl AckSender {
    pub(crate) fn new(sink: Arc<dyn AckSink>, id: u64) -> Self {
        AckSender {
            sink,
            id,
            sent: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The ack id of the request.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether an answer was sent already.
    pub fn is_sent(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }

    /// Answer with these arguments.
    pub fn send(&self, args: impl Into<Args>) -> Result<(), AckSendError> {
        if self.sent.swap(true, Ordering::AcqRel) {
            return Err(AckSendError::AlreadySent);
        }
        let packet = ack_packet(self.sink.nsp(), self.id, args.into());
        self.sink.send_frames(packet.encode_frames())?;
        Ok(())
    }

    /// Answer with one serializable value.
    pub fn send_one<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), AckSendError> {
        self.send(Args::one(value)?)
    }
}

impl AckSink for SocketInner {
    fn nsp(&self) -> &Str {
        self.ns.name()
    }

    fn send_frames(&self, frames: Vec<Frame>) -> Result<(), SendError> {
        self.conn.engine().send_frames(&frames)
    }
}

pub(crate) struct SocketInner {
    pub(crate) id: Str,
    pub(crate) ns: Namespace,
    pub(crate) conn: Arc<Conn>,
    handshake: Handshake,
    handlers: RwLock<SmallMap<Box<str>, EventHandler>>,
    pub(crate) rooms: Mutex<SmallSet<Room>>,
    /// Catch-all and disconnect handlers, pending acks: allocated on first use.
    extra: OnceLock<Box<Extra>>,
    connected: AtomicBool,
    /// The event rate limit, when configured.
    rate: Option<Box<Rate>>,
    /// Private session id (connection state recovery), sent in the CONNECT answer.
    pub(crate) pid: Option<Str>,
    recovered: bool,
}

/// What only some sockets use (kept out of every socket's own allocation).
#[derive(Default)]
struct Extra {
    any: RwLock<Vec<AnyHandler>>,
    on_disconnect: Mutex<Vec<DisconnectHandler>>,
    acks: Mutex<HashMap<u64, AckCallback>>,
}

struct Rate {
    bucket: Mutex<crate::limits::TokenBucket>,
    action: crate::config::RateAction,
    dropped: std::sync::atomic::AtomicU64,
}

impl SocketInner {
    fn extra(&self) -> &Extra {
        self.extra.get_or_init(Box::default)
    }
}

/// A handle to a connected socket (one client in one namespace). Cheap to clone; usable
/// from any thread. Handlers registered on it run in wire order, never two at once.
#[derive(Clone)]
pub struct SocketRef {
    pub(crate) inner: Arc<SocketInner>,
}

impl fmt::Debug for SocketRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.id)
            .field("ns", &self.inner.ns.name())
            .finish()
    }
}

impl PartialEq for SocketRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl SocketRef {
    pub(crate) fn new(
        id: Str,
        ns: Namespace,
        conn: Arc<Conn>,
        handshake: Handshake,
        rate: Option<crate::config::EventRate>,
        pid: Option<Str>,
        recovered: bool,
    ) -> SocketRef {
        SocketRef {
            inner: Arc::new(SocketInner {
                id,
                ns,
                conn,
                handshake,
                handlers: RwLock::new(SmallMap::default()),
                rooms: Mutex::new(SmallSet::default()),
                extra: OnceLock::new(),
                connected: AtomicBool::new(true),
                rate: rate.map(|r| {
                    Box::new(Rate {
                        bucket: Mutex::new(crate::limits::TokenBucket::new(r.limit)),
                        action: r.action,
                        dropped: std::sync::atomic::AtomicU64::new(0),
                    })
                }),
                pid,
                recovered,
            }),
        }
    }

    /// The socket id (distinct from the Engine.IO session id, as in socket.io 4).
    pub fn id(&self) -> &Str {
        &self.inner.id
    }

    /// The namespace.
    pub fn ns(&self) -> &Namespace {
        &self.inner.ns
    }

    /// The handshake: `auth` payload, headers, query, peer address.
    pub fn handshake(&self) -> &Handshake {
        &self.inner.handshake
    }

    /// The Engine.IO session id of the underlying connection.
    pub fn engine_id(&self) -> &Str {
        self.inner.conn.engine().id()
    }

    /// The transport currently in use.
    pub fn transport(&self) -> crate::engine::TransportType {
        self.inner.conn.engine().transport()
    }

    /// Whether the socket is still connected.
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// Whether this socket's state (id, rooms, missed broadcasts) was recovered after a
    /// temporary disconnection (connection state recovery).
    pub fn recovered(&self) -> bool {
        self.inner.recovered
    }

    /// Events dropped by the event rate limit ([`crate::config::SioConfig::event_rate`]).
    pub fn dropped_events(&self) -> u64 {
        self.inner
            .rate
            .as_ref()
            .map_or(0, |r| r.dropped.load(Ordering::Relaxed))
    }

    /// Frames waiting in this connection's outgoing queue (shared by its namespaces).
    pub fn queued(&self) -> usize {
        self.inner.conn.engine().queued()
    }

    /// Run `handler` with the queue length whenever this connection's outgoing queue
    /// grows past its high-water mark (`EngineConfig::send_queue_high_water`), once per
    /// crossing: the peer reads too slowly; slow down, or drop it with
    /// [`SocketRef::close_connection`] (which frees its queue). Sends beyond the queue's
    /// capacity fail with [`crate::engine::SendError::QueueFull`].
    pub fn on_high_water<F>(&self, handler: F)
    where
        F: Fn(&SocketRef, usize) + Send + Sync + 'static,
    {
        let weak = Arc::downgrade(&self.inner);
        self.inner.conn.engine().on_high_water(Arc::new(move |n| {
            if let Some(inner) = weak.upgrade() {
                handler(&SocketRef { inner }, n);
            }
        }));
    }

    /// Register the handler for `event` (replacing an earlier one).
    pub fn on<F>(&self, event: impl Into<String>, handler: F)
    where
        F: Fn(&SocketRef, Event) + Send + Sync + 'static,
    {
        if let Ok(mut h) = self.inner.handlers.write() {
            h.insert(event.into().into_boxed_str(), Arc::new(handler));
        }
    }

    /// Remove the handler for `event`.
    pub fn off(&self, event: &str) {
        if let Ok(mut h) = self.inner.handlers.write() {
            h.remove(event);
        }
    }

    /// A catch-all listener: sees every incoming event before its own handler does.
    pub fn on_any<F>(&self, handler: F)
    where
        F: Fn(&SocketRef, &Event) + Send + Sync + 'static,
    {
        if let Ok(mut h) = self.inner.extra().any.write() {
            h.push(Arc::new(handler));
        }
    }

    /// Run `handler` once when the socket disconnects (at once if it already has).
    pub fn on_disconnect<F>(&self, handler: F)
    where
        F: FnOnce(&SocketRef, DisconnectReason) + Send + 'static,
    {
        if self.connected() {
            if let Ok(mut h) = self.inner.extra().on_disconnect.lock() {
                h.push(Box::new(handler));
                return;
            }
        }
        handler(self, DisconnectReason::TransportClose);
    }

    /// Emit `event` with one argument to this socket.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.emit_args(event, Args::one(data)?)
    }

    /// Emit `event` with any number of arguments (and binary attachments).
    pub fn emit_args(&self, event: &str, args: impl Into<Args>) -> Result<(), EmitError> {
        let packet = event_packet(self.inner.ns.name(), event, args.into(), None);
        self.send_packet(&packet)
    }

    /// [`SocketRef::emit_args`] with borrowed arguments: arguments that arrived as text go
    /// out from that text without a copy (an echo); others are cloned.
    pub fn emit_args_ref(&self, event: &str, args: &Args) -> Result<(), EmitError> {
        match args.raw_json() {
            Some(raw) if args.bins.is_empty() => {
                let frame = raw_event_frame(self.inner.ns.name(), event, raw, None);
                self.send_frames(std::slice::from_ref(&frame))
            }
            _ => self.emit_args(event, args.clone()),
        }
    }

    /// Emit and wait for the acknowledgement, at most `timeout`.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: impl Into<Args>,
        timeout: Duration,
    ) -> Result<Args, AckError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.emit_with_ack_cb(event, args, timeout, move |r| {
            let _ = tx.send(r);
        });
        rx.await.unwrap_or(Err(AckError::Disconnected))
    }

    /// Emit and call `callback` with the acknowledgement, or with
    /// [`AckError::Timeout`] / [`AckError::Disconnected`]. The callback runs exactly once,
    /// on a runtime thread.
    pub fn emit_with_ack_cb<F>(
        &self,
        event: &str,
        args: impl Into<Args>,
        timeout: Duration,
        callback: F,
    ) where
        F: FnOnce(Result<Args, AckError>) + Send + 'static,
    {
        let id = self.inner.ns.next_ack_id();
        let packet = event_packet(self.inner.ns.name(), event, args.into(), Some(id));
        self.register_ack(id, Box::new(callback), timeout);
        if let Err(e) = self
            .inner
            .conn
            .engine()
            .send_frames(&packet.encode_frames())
        {
            if let Some(cb) = self.take_ack(id) {
                cb(Err(AckError::Send(e)));
            }
        }
    }

    pub(crate) fn register_ack(&self, id: u64, cb: AckCallback, timeout: Duration) {
        if !self.connected() {
            cb(Err(AckError::Disconnected));
            return;
        }
        if let Ok(mut acks) = self.inner.extra().acks.lock() {
            acks.insert(id, cb);
        }
        let weak = Arc::downgrade(&self.inner);
        self.inner.ns.io().spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(inner) = weak.upgrade() {
                let s = SocketRef { inner };
                if let Some(cb) = s.take_ack(id) {
                    cb(Err(AckError::Timeout));
                }
            }
        });
    }

    fn take_ack(&self, id: u64) -> Option<AckCallback> {
        self.inner.extra.get()?.acks.lock().ok()?.remove(&id)
    }

    pub(crate) fn send_packet(&self, packet: &Packet) -> Result<(), EmitError> {
        self.send_frames(&packet.encode_frames())
    }

    /// Queue encoded frames for this socket (refused once it disconnected).
    fn send_frames(&self, frames: &[Frame]) -> Result<(), EmitError> {
        if !self.connected() {
            return Err(EmitError::Send(SendError::Closed));
        }
        self.inner
            .conn
            .engine()
            .send_frames(frames)
            .map_err(EmitError::from)
    }

    /// Join `room`.
    pub fn join(&self, room: impl Into<Room>) {
        self.inner.ns.add_to_room(self, room.into());
    }

    /// Leave `room`.
    pub fn leave(&self, room: &str) {
        self.inner.ns.remove_from_room(self, room);
    }

    /// Leave every room (the socket's own room included).
    pub fn leave_all(&self) {
        self.inner.ns.remove_from_all_rooms(self);
    }

    /// The rooms this socket is in (its own id included), sorted.
    pub fn rooms(&self) -> Vec<Room> {
        let mut v: Vec<Room> = self
            .inner
            .rooms
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Broadcast to `room`, excluding this socket.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// Broadcast to every other socket of the namespace.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.inner.ns.clone()).except_socket(self.inner.id.clone())
    }

    /// Broadcast to everyone but the sockets in `room` (and this one).
    pub fn except(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().except(room)
    }

    /// Close the whole underlying connection (every namespace on it), as socket.io's
    /// `socket.conn.close()`: the client sees `transport close` and reconnects; with
    /// connection state recovery it gets its state back.
    pub fn close_connection(&self) {
        self.inner.conn.engine().close();
    }

    /// Disconnect this socket from the namespace (the client gets a DISCONNECT packet and
    /// reports `io server disconnect`).
    pub fn disconnect(&self) {
        if !self.connected() {
            return;
        }
        let bye = Packet::disconnect(self.inner.ns.name().clone()).encode_frames();
        if self.inner.conn.engine().send_control(&bye).is_err() {
            // The peer cannot be told (its queue is full): end the whole connection, or
            // it would believe it is still connected.
            self.inner.conn.engine().close();
        }
        self.close(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// Tear down (idempotent): leave the namespace and rooms, fail pending acks, run the
    /// disconnect handlers.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        if !self.inner.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Some(pid) = &self.inner.pid
            && super::recovery::is_recoverable(reason)
        {
            self.inner
                .ns
                .persist_session(pid, self.id().clone(), self.rooms());
        }
        self.inner.ns.remove_socket(self);
        self.inner.conn.remove_socket(self.inner.ns.name());
        if let Some(extra) = self.inner.extra.get() {
            let acks: Vec<AckCallback> = extra
                .acks
                .lock()
                .map(|mut a| a.drain().map(|(_, cb)| cb).collect())
                .unwrap_or_default();
            for cb in acks {
                cb(Err(AckError::Disconnected));
            }
            let handlers: Vec<DisconnectHandler> = extra
                .on_disconnect
                .lock()
                .map(|mut h| std::mem::take(&mut *h))
                .unwrap_or_default();
            for h in handlers {
                h(self, reason);
            }
            if let Ok(mut h) = extra.any.write() {
                h.clear();
            }
        }
        if let Ok(mut h) = self.inner.handlers.write() {
            h.clear();
        }
    }

    /// Deliver an EVENT packet to the handlers.
    pub(crate) fn handle_event(&self, packet: Packet) {
        if let Some(rate) = &self.inner.rate {
            let action = &rate.action;
            let allowed = rate.bucket.lock().map(|mut b| b.try_take()).unwrap_or(true);
            if !allowed {
                rate.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sid = %self.inner.id, ?action, "event rate limit exceeded");
                if *action == crate::config::RateAction::Disconnect {
                    self.disconnect();
                }
                return;
            }
        }
        let Some(event) = event_from_packet(packet, || self.inner.clone() as Arc<dyn AckSink>)
        else {
            return;
        };
        let any: Vec<AnyHandler> = match self.inner.extra.get() {
            Some(x) => x.any.read().map(|h| h.clone()).unwrap_or_default(),
            None => Vec::new(),
        };
        for h in &any {
            h(self, &event);
        }
        let handler = self
            .inner
            .handlers
            .read()
            .ok()
            .and_then(|h| h.get(event.name.as_str()).cloned());
        match handler {
            Some(h) => h(self, event),
            None if any.is_empty() => {
                tracing::trace!(event = %event.name, sid = %self.inner.id, "no handler for event");
            }
            None => {}
        }
    }

    /// Deliver an ACK packet to the waiting callback.
    pub(crate) fn handle_ack(&self, packet: Packet) {
        let Some(id) = packet.id else { return };
        if let Some(cb) = self.take_ack(id) {
            cb(Ok(ack_args(packet)));
        }
    }
}

/// An EVENT packet as an [`Event`]; `sink` makes the ack sender when an ack is asked for.
pub(crate) fn event_from_packet(
    packet: Packet,
    sink: impl FnOnce() -> Arc<dyn AckSink>,
) -> Option<Event> {
    let ack_id = packet.id;
    let (name, args) = match (packet.data, packet.raw) {
        (None, Some(raw)) => (
            raw.name?,
            Args::from_checked_json(raw.args, packet.attachments),
        ),
        (Some(Value::Array(mut values)), _) => {
            if values.is_empty() {
                return None;
            }
            let name = match values.remove(0) {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (name, Args::from_parts(values, packet.attachments))
        }
        _ => return None,
    };
    let ack = ack_id.map(|id| AckSender::new(sink(), id));
    Some(Event { name, args, ack })
}

/// The arguments of an ACK packet.
pub(crate) fn ack_args(packet: Packet) -> Args {
    match (packet.data, packet.raw) {
        (None, Some(raw)) => Args::from_checked_json(raw.args, packet.attachments),
        (Some(Value::Array(values)), _) => Args::from_parts(values, packet.attachments),
        _ => Args::from_parts(Vec::new(), packet.attachments),
    }
}

/// `["event", ...args]` as a packet for namespace `nsp` (arguments that came as text are
/// written as that text).
pub(crate) fn event_packet(nsp: &Str, event: &str, args: Args, id: Option<u64>) -> Packet {
    match args.into_parts() {
        (Ok(raw), bins) if bins.is_empty() => Packet::raw_event(nsp.clone(), event, raw, id),
        (Ok(raw), bins) => {
            let values = Args::from_checked_json(raw, Vec::new()).into_values();
            Packet::event(nsp.clone(), event_array(event, values), bins, id)
        }
        (Err(values), bins) => Packet::event(nsp.clone(), event_array(event, values), bins, id),
    }
}

/// An ACK packet answering `id` with `args`.
pub(crate) fn ack_packet(nsp: &Str, id: u64, args: Args) -> Packet {
    match args.into_parts() {
        (Ok(raw), bins) if bins.is_empty() => Packet::raw_ack(nsp.clone(), id, raw),
        (Ok(raw), bins) => {
            let values = Args::from_checked_json(raw, Vec::new()).into_values();
            Packet::ack(nsp.clone(), id, Value::Array(values), bins)
        }
        (Err(values), bins) => Packet::ack(nsp.clone(), id, Value::Array(values), bins),
    }
}

/// `["event", ...values()]`.
pub(crate) fn event_array(event: &str, values: Vec<Value>) -> Value {
    let mut all = Vec::with_capacity(values.len() + 1);
    all.push(Value::String(event.to_owned()));
    all.extend(values);
    Value::Array(all)
}

impl From<SerializeError> for EmitError {
    fn from(e: SerializeError) -> Self {
        EmitError::Serialize(e)
    }
}
