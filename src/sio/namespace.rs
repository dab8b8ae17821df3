//! Namespaces, their rooms (the in-memory adapter), and broadcasts.
//!
//! The room table here is the in-memory adapter every namespace has. A cluster adapter
//! ([`crate::adapter::Adapter`], set with `Io::builder().adapter(..)`) adds the remote
//! part: non-local broadcasts, room operations and requests also go through it. Without
//! one (the default) nothing here touches it beyond one `Option` check.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::payload::{AckError, Args};
use super::small::Members;
use super::socket::{SocketRef, event_packet};
use super::{ConnectContext, ConnectError, EmitError, IoInner, Room};
use crate::adapter::{
    Adapter, AdapterError, BroadcastFlags, BroadcastOptions, RemoteSocket, ServerAck, ServerAcks,
    ServerSideEvent,
};
use crate::engine::SendError;
use crate::proto::Str;
use crate::proto::engineio::Frame;
use crate::proto::socketio::Packet;

pub(crate) type ConnectHandler = Arc<dyn Fn(SocketRef) + Send + Sync>;
pub(crate) type DeferredMiddleware =
    Arc<dyn Fn(&ConnectContext, super::ConnectDecision) + Send + Sync>;
pub(crate) type Middleware = Arc<dyn Fn(&ConnectContext) -> Result<(), ConnectError> + Send + Sync>;
pub(crate) type ServerSideHandler = Arc<dyn Fn(&Namespace, ServerSideEvent) + Send + Sync>;
pub(crate) type AckReply = Arc<dyn Fn(Str, Result<Args, AckError>) + Send + Sync>;

pub(crate) struct NsInner {
    name: Str,
    io: Weak<IoInner>,
    sockets: RwLock<HashMap<Str, SocketRef>>,
    /// Each room's local members (a socket's own room has just that socket).
    rooms: RwLock<HashMap<Room, Members<Str>>>,
    ack_ids: AtomicU64,
    on_connect: RwLock<Option<ConnectHandler>>,
    middlewares: RwLock<Vec<Middleware>>,
    deferred: RwLock<Option<DeferredMiddleware>>,
    /// The cluster adapter; `None` for a single node (the in-memory adapter alone).
    adapter: Option<Arc<dyn Adapter>>,
    /// `socket.data` of the sockets that set one ([`SocketRef::set_data`]).
    data: RwLock<HashMap<Str, Value>>,
    /// Handlers of events sent by other nodes ([`Namespace::on_server_side_emit`]).
    server_side: RwLock<HashMap<String, ServerSideHandler>>,
    /// Connection state recovery: sessions and recent broadcasts, when enabled.
    recovery: Option<Mutex<super::recovery::RecoveryStore>>,
}

/// A weak handle to a namespace, for cluster adapters (no reference cycle).
#[derive(Clone)]
pub(crate) struct WeakNamespace(Weak<NsInner>);

impl WeakNamespace {
    pub(crate) fn upgrade(&self) -> Option<Namespace> {
        self.0.upgrade().map(|inner| Namespace { inner })
    }
}

/// A namespace (`/`, `/admin`, ...): its sockets, rooms, handlers and middleware.
/// Cheap to clone.
#[derive(Clone)]
pub struct Namespace {
    pub(crate) inner: Arc<NsInner>,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.inner.name)
            .finish()
    }
}

/// A handle to the server's runtime pieces a namespace needs.
pub(crate) struct IoRef(Weak<IoInner>);

impl IoRef {
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match self.0.upgrade().and_then(|io| io.runtime()) {
            Some(h) => {
                h.spawn(fut);
            }
            None => {
                if let Ok(h) = tokio::runtime::Handle::try_current() {
                    h.spawn(fut);
                } else {
                    tracing::warn!("no tokio runtime to run a timer on");
                }
            }
        }
    }
}

impl Namespace {
    pub(crate) fn new(name: Str, io: Weak<IoInner>) -> Namespace {
        let adapter = io.upgrade().and_then(|io| io.adapter.clone());
        let recovery = io
            .upgrade()
            .and_then(|io| io.config.connection_state_recovery)
            .map(|c| Mutex::new(super::recovery::RecoveryStore::new(c)));
        let ns = Namespace {
            inner: Arc::new(NsInner {
                name,
                io,
                sockets: RwLock::new(HashMap::new()),
                rooms: RwLock::new(HashMap::new()),
                ack_ids: AtomicU64::new(0),
                on_connect: RwLock::new(None),
                middlewares: RwLock::new(Vec::new()),
                deferred: RwLock::new(None),
                adapter,
                data: RwLock::new(HashMap::new()),
                server_side: RwLock::new(HashMap::new()),
                recovery,
            }),
        };
        if let Some(a) = &ns.inner.adapter {
            a.init(&ns);
        }
        ns
    }

    /// Whether connection state recovery is on for this namespace.
    pub(crate) fn recovery_config(&self) -> Option<super::recovery::RecoveryConfig> {
        let r = self.inner.recovery.as_ref()?;
        r.lock().ok().map(|st| *st.config())
    }

    pub(crate) fn persist_session(&self, pid: &str, sid: Str, rooms: Vec<Room>) {
        if let Some(r) = &self.inner.recovery
            && let Ok(mut st) = r.lock()
        {
            st.persist(pid, sid, rooms);
        }
    }

    pub(crate) fn restore_session(
        &self,
        pid: &str,
        offset: &str,
    ) -> Option<super::recovery::Restored> {
        self.inner
            .recovery
            .as_ref()?
            .lock()
            .ok()?
            .restore(pid, offset)
    }

    pub(crate) fn downgrade(&self) -> WeakNamespace {
        WeakNamespace(Arc::downgrade(&self.inner))
    }

    /// The cluster adapter, if the server has one.
    pub fn adapter(&self) -> Option<&Arc<dyn Adapter>> {
        self.inner.adapter.as_ref()
    }

    /// Whether some local socket is in `room`.
    pub(crate) fn has_room(&self, room: &str) -> bool {
        self.inner
            .rooms
            .read()
            .map(|r| r.contains_key(room))
            .unwrap_or(false)
    }

    pub(crate) fn socket_data(&self, id: &str) -> Value {
        self.inner
            .data
            .read()
            .ok()
            .and_then(|d| d.get(id).cloned())
            .unwrap_or(Value::Null)
    }

    /// Register the handler of `event` sent by other nodes with
    /// [`Namespace::server_side_emit`] (or Node's `io.serverSideEmit`). It runs on the
    /// adapter's task: do not block in it. When the sender waits for an answer,
    /// `ev.ack` is set: answer once with [`ServerAck::send`].
    pub fn on_server_side_emit<F>(&self, event: impl Into<String>, handler: F) -> &Self
    where
        F: Fn(&Namespace, ServerSideEvent) + Send + Sync + 'static,
    {
        if let Ok(mut h) = self.inner.server_side.write() {
            h.insert(event.into(), Arc::new(handler));
        }
        self
    }

    /// Deliver a server-side event from another node (`data` = `[event, ...args]`).
    pub(crate) fn dispatch_server_side(&self, mut data: Vec<Value>, ack: Option<ServerAck>) {
        if data.is_empty() {
            return;
        }
        let name = match data.remove(0) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let handler = self
            .inner
            .server_side
            .read()
            .ok()
            .and_then(|h| h.get(&name).cloned());
        match handler {
            Some(h) => h(
                self,
                ServerSideEvent {
                    name,
                    args: data.into(),
                    ack,
                },
            ),
            None => tracing::trace!(event = %name, nsp = %self.name(), "no server-side handler"),
        }
    }

    /// Send `event` to the other nodes of the cluster (not to this one); they get it in
    /// [`Namespace::on_server_side_emit`]. Arguments travel as JSON. A no-op without a
    /// cluster adapter.
    pub fn server_side_emit(&self, event: &str, args: impl Into<Args>) -> Result<(), AdapterError> {
        match &self.inner.adapter {
            Some(a) => a.server_side_emit(self, server_side_data(event, args.into())),
            None => Ok(()),
        }
    }

    /// [`Namespace::server_side_emit`], waiting (the adapter's request timeout) for one
    /// answer from every other node. `missing` counts the nodes that did not answer.
    pub async fn server_side_emit_with_ack(
        &self,
        event: &str,
        args: impl Into<Args>,
    ) -> Result<ServerAcks, AdapterError> {
        match &self.inner.adapter {
            Some(a) => {
                a.server_side_emit_with_ack(self, server_side_data(event, args.into()))
                    .await
            }
            None => Ok(ServerAcks::default()),
        }
    }

    /// The number of nodes in the cluster (1 without a cluster adapter).
    pub async fn server_count(&self) -> Result<usize, AdapterError> {
        match &self.inner.adapter {
            Some(a) => a.server_count(self).await,
            None => Ok(1),
        }
    }

    /// The rooms that have members on any node of the cluster, sorted.
    pub async fn all_rooms(&self) -> Result<Vec<Room>, AdapterError> {
        let mut rooms = self.rooms();
        if let Some(a) = &self.inner.adapter {
            rooms.extend(a.all_rooms(self).await?);
            rooms.sort();
            rooms.dedup();
        }
        Ok(rooms)
    }

    /// Descriptions of every socket of the namespace, on every node.
    pub async fn fetch_sockets(&self) -> Result<Vec<RemoteSocket>, AdapterError> {
        self.broadcast().fetch_sockets().await
    }

    /// The namespace's name, e.g. `/` or `/admin`.
    pub fn name(&self) -> &Str {
        &self.inner.name
    }

    pub(crate) fn io_config(&self) -> Option<crate::config::SioConfig> {
        self.inner.io.upgrade().map(|io| io.config.clone())
    }

    pub(crate) fn io(&self) -> IoRef {
        IoRef(self.inner.io.clone())
    }

    pub(crate) fn next_ack_id(&self) -> u64 {
        self.inner.ack_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Set the connection handler: it runs for each socket that joins this namespace,
    /// after the middleware accepted it and the client was told it is connected.
    pub fn on_connect<F>(&self, handler: F) -> &Self
    where
        F: Fn(SocketRef) + Send + Sync + 'static,
    {
        if let Ok(mut h) = self.inner.on_connect.write() {
            *h = Some(Arc::new(handler));
        }
        self
    }

    /// Add a connect middleware. Middlewares run in order for each connection attempt;
    /// the first `Err` refuses it with a `connect_error` carrying its message and data.
    pub fn use_middleware<F>(&self, middleware: F) -> &Self
    where
        F: Fn(&ConnectContext) -> Result<(), ConnectError> + Send + Sync + 'static,
    {
        if let Ok(mut m) = self.inner.middlewares.write() {
            m.push(Arc::new(middleware));
        }
        self
    }

    /// Set the deferred middleware: it runs after the others and answers through the
    /// [`super::ConnectDecision`] it is given, now or later, from any thread (an auth
    /// service call, a C callback answering on the game thread...). One per namespace.
    pub fn use_deferred_middleware<F>(&self, middleware: F) -> &Self
    where
        F: Fn(&ConnectContext, super::ConnectDecision) + Send + Sync + 'static,
    {
        if let Ok(mut d) = self.inner.deferred.write() {
            *d = Some(Arc::new(middleware));
        }
        self
    }

    pub(crate) fn deferred_middleware(&self) -> Option<DeferredMiddleware> {
        self.inner.deferred.read().ok().and_then(|d| d.clone())
    }

    pub(crate) fn middlewares(&self) -> Vec<Middleware> {
        self.inner
            .middlewares
            .read()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    pub(crate) fn connect_handler(&self) -> Option<ConnectHandler> {
        self.inner.on_connect.read().ok().and_then(|h| h.clone())
    }

    /// The socket with this id, if connected here.
    pub fn get_socket(&self, id: &str) -> Option<SocketRef> {
        self.inner.sockets.read().ok()?.get(id).cloned()
    }

    /// Every connected socket.
    pub fn sockets(&self) -> Vec<SocketRef> {
        self.inner
            .sockets
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of connected sockets.
    pub fn socket_count(&self) -> usize {
        self.inner.sockets.read().map(|s| s.len()).unwrap_or(0)
    }

    /// The rooms that have members, sorted.
    pub fn rooms(&self) -> Vec<Room> {
        let mut v: Vec<Room> = self
            .inner
            .rooms
            .read()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub(crate) fn add_socket(&self, socket: &SocketRef) {
        if let Ok(mut s) = self.inner.sockets.write() {
            s.insert(socket.id().clone(), socket.clone());
        }
        self.add_to_room(socket, socket.id().clone());
    }

    pub(crate) fn remove_socket(&self, socket: &SocketRef) {
        self.remove_from_all_rooms(socket);
        if let Ok(mut s) = self.inner.sockets.write() {
            s.remove(socket.id().as_str());
        }
        if let Ok(mut d) = self.inner.data.write() {
            d.remove(socket.id().as_str());
        }
    }

    pub(crate) fn add_to_room(&self, socket: &SocketRef, room: Room) {
        if !socket.connected() {
            return;
        }
        let mut created = false;
        if let Ok(mut rooms) = self.inner.rooms.write() {
            match rooms.get_mut(room.as_str()) {
                Some(members) => {
                    members.insert(socket.id().clone());
                }
                None => {
                    rooms.insert(room.clone(), Members::one(socket.id().clone()));
                    created = true;
                }
            }
        }
        if created && let Some(a) = &self.inner.adapter {
            a.room_changed(self, room.as_str(), true);
        }
        if let Ok(mut r) = socket.inner.rooms.lock() {
            r.insert(room);
        }
    }

    pub(crate) fn remove_from_room(&self, socket: &SocketRef, room: &str) {
        let mut deleted = false;
        if let Ok(mut rooms) = self.inner.rooms.write()
            && let Some(members) = rooms.get_mut(room)
            && members.remove(socket.id().as_str())
        {
            rooms.remove(room);
            deleted = true;
        }
        if deleted && let Some(a) = &self.inner.adapter {
            a.room_changed(self, room, false);
        }
        if let Ok(mut r) = socket.inner.rooms.lock() {
            r.remove(room);
        }
    }

    pub(crate) fn remove_from_all_rooms(&self, socket: &SocketRef) {
        let mine: Vec<Room> = socket
            .inner
            .rooms
            .lock()
            .map(|mut r| r.take_all())
            .unwrap_or_default();
        let mut deleted = Vec::new();
        if let Ok(mut rooms) = self.inner.rooms.write() {
            for room in mine {
                if let Some(members) = rooms.get_mut(room.as_str())
                    && members.remove(socket.id().as_str())
                {
                    rooms.remove(room.as_str());
                    deleted.push(room);
                }
            }
        }
        if let Some(a) = &self.inner.adapter {
            for room in &deleted {
                a.room_changed(self, room.as_str(), false);
            }
        }
    }

    /// A broadcast to the sockets of this namespace.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.clone())
    }

    /// A broadcast to the sockets in `room`.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// A broadcast to everyone but the sockets in `room`.
    pub fn except(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().except(room)
    }

    /// Emit to every socket of the namespace, with one argument.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.broadcast().emit(event, data)
    }

    /// Emit to every socket of the namespace.
    pub fn emit_args(&self, event: &str, args: impl Into<Args>) -> Result<(), EmitError> {
        self.broadcast().emit_args(event, args)
    }

    /// Disconnect every socket of the namespace (on this node only).
    pub fn disconnect_all(&self) {
        self.broadcast().local().disconnect();
    }
}

fn server_side_data(event: &str, args: Args) -> Vec<Value> {
    match super::socket::event_array(event, args.into_values()) {
        Value::Array(data) => data,
        other => vec![other],
    }
}

impl SocketRef {
    /// Attach arbitrary data to this socket (socket.io's `socket.data`): other nodes see it
    /// in [`Namespace::fetch_sockets`]. Dropped when the socket disconnects.
    pub fn set_data(&self, data: Value) {
        if !self.connected() {
            return;
        }
        if let Ok(mut d) = self.ns().inner.data.write() {
            d.insert(self.id().clone(), data);
        }
    }

    /// The data set with [`SocketRef::set_data`] (`null` when none).
    pub fn data(&self) -> Value {
        self.ns().socket_data(self.id().as_str())
    }
}

/// Replies collected by a broadcast with acknowledgement.
#[derive(Debug, Clone, Default)]
pub struct BroadcastAcks {
    /// Each reply with the id of the socket that sent it, in arrival order.
    pub responses: Vec<(Str, Args)>,
    /// How many recipients did not reply before the timeout (or disconnected).
    pub missing: usize,
}

impl BroadcastAcks {
    /// Whether every recipient replied.
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }
}

/// Chooses the recipients of a broadcast: rooms, exceptions and flags.
/// Built from [`Namespace::broadcast`], [`SocketRef::to`], `Io::to` and friends.
#[derive(Debug, Clone)]
pub struct BroadcastOperator {
    ns: Namespace,
    rooms: Vec<Room>,
    except: Vec<Room>,
    except_sid: Option<Str>,
    volatile: bool,
    local: bool,
    timeout: Option<Duration>,
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Namespace) -> Self {
        BroadcastOperator {
            ns,
            rooms: Vec::new(),
            except: Vec::new(),
            except_sid: None,
            volatile: false,
            local: false,
            timeout: None,
        }
    }

    /// Leave out the socket with this id (what `SocketRef::broadcast` uses).
    pub fn except_socket(mut self, sid: Str) -> Self {
        self.except_sid = Some(sid);
        self
    }

    /// Add `room` to the targets (a socket id is a room too: a private message).
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Same as [`BroadcastOperator::to`].
    pub fn within(self, room: impl Into<Room>) -> Self {
        self.to(room)
    }

    /// Leave out the sockets in `room`.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        self.except.push(room.into());
        self
    }

    /// Drop the message for recipients that cannot take it now (full queue) instead of
    /// reporting an error.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Only this node's sockets (meaningful with a cluster adapter; the in-memory
    /// adapter is always local).
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Timeout for [`BroadcastOperator::emit_with_ack`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The sockets this broadcast reaches now.
    pub fn sockets(&self) -> Vec<SocketRef> {
        let ns = &self.ns.inner;
        let excluded: HashSet<Str> = {
            let rooms = match ns.rooms.read() {
                Ok(r) => r,
                Err(_) => return Vec::new(),
            };
            let mut ex = HashSet::new();
            for room in &self.except {
                if let Some(m) = rooms.get(room.as_str()) {
                    ex.extend(m.iter().cloned());
                }
            }
            ex
        };
        let keep =
            |id: &Str| !excluded.contains(id) && self.except_sid.as_ref().is_none_or(|s| s != id);
        let sockets = match ns.sockets.read() {
            Ok(s) => s,
            Err(_) => return Vec::new(),
        };
        if self.rooms.is_empty() {
            return sockets
                .iter()
                .filter(|(id, _)| keep(id))
                .map(|(_, s)| s.clone())
                .collect();
        }
        let rooms = match ns.rooms.read() {
            Ok(r) => r,
            Err(_) => return Vec::new(),
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for room in &self.rooms {
            if let Some(members) = rooms.get(room.as_str()) {
                for id in members.iter() {
                    if keep(id)
                        && seen.insert(id.clone())
                        && let Some(s) = sockets.get(id)
                    {
                        out.push(s.clone());
                    }
                }
            }
        }
        out
    }

    /// The cluster adapter when this broadcast is not local.
    fn remote(&self) -> Option<&Arc<dyn Adapter>> {
        if self.local {
            None
        } else {
            self.ns.inner.adapter.as_ref()
        }
    }

    /// The targets as the cluster protocol carries them (the excluded socket, if any,
    /// becomes an excluded room: its own).
    pub fn options(&self) -> BroadcastOptions {
        let mut rooms: Vec<Room> = Vec::with_capacity(self.rooms.len());
        for r in &self.rooms {
            if !rooms.contains(r) {
                rooms.push(r.clone());
            }
        }
        let mut except: Vec<Room> = Vec::with_capacity(self.except.len() + 1);
        for r in self.except.iter().chain(self.except_sid.iter()) {
            if !except.contains(r) {
                except.push(r.clone());
            }
        }
        BroadcastOptions {
            rooms,
            except,
            flags: BroadcastFlags {
                volatile: self.volatile,
                local: self.local,
                timeout: self.timeout,
            },
        }
    }

    /// A local broadcast to these targets (what a message from another node asks for).
    pub(crate) fn from_options(ns: Namespace, opts: &BroadcastOptions) -> Self {
        BroadcastOperator {
            ns,
            rooms: opts.rooms.clone(),
            except: opts.except.clone(),
            except_sid: None,
            volatile: opts.flags.volatile,
            local: true,
            timeout: opts.flags.timeout,
        }
    }

    /// Emit `event` with one argument to every target.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.emit_args(event, Args::one(data)?)
    }

    /// Emit `event` to every target. The packet is encoded once and the same bytes are
    /// queued for every recipient. Recipients whose queue is full are skipped (and
    /// logged); the count of those is returned in the error unless the broadcast is
    /// volatile.
    ///
    /// With a cluster adapter (and unless [`BroadcastOperator::local`]), the packet is
    /// also published to the other nodes. That part is fire-and-forget: while the
    /// adapter's backend is unreachable it is lost (logged, counted by the adapter).
    pub fn emit_args(&self, event: &str, args: impl Into<Args>) -> Result<(), EmitError> {
        let mut args = args.into();
        if let Some(r) = &self.ns.inner.recovery
            && !self.volatile
        {
            // Connection state recovery: the offset goes last (the client remembers it),
            // and the packet is kept for sockets that come back.
            let id = super::recovery::next_offset();
            args.values_mut().push(Value::String(id.clone()));
            let mut except = self.except.clone();
            if let Some(sid) = &self.except_sid {
                except.push(sid.clone());
            }
            let data = super::socket::event_array(event, args.values().to_vec());
            if let Ok(mut st) = r.lock() {
                st.store(id, &self.rooms, &except, data, args.bins.clone());
            }
        }
        let packet = event_packet(self.ns.name(), event, args, None);
        if let Some(a) = self.remote()
            && let Err(e) = a.broadcast(&self.ns, &packet, &self.options())
        {
            tracing::debug!(event, error = %e, "broadcast not published to the cluster");
        }
        self.emit_packet(event, &packet)
    }

    /// Deliver `packet` to the local targets.
    pub(crate) fn emit_packet(&self, event: &str, packet: &Packet) -> Result<(), EmitError> {
        let frames = packet.encode_frames();
        let mut full = 0usize;
        for s in self.sockets() {
            if let Err(SendError::QueueFull) = s.inner.conn.engine().send_frames(&frames) {
                full += 1;
            }
        }
        if full > 0 && !self.volatile {
            tracing::warn!(
                event,
                recipients = full,
                "broadcast skipped recipients with a full queue"
            );
            return Err(EmitError::Dropped(full));
        }
        Ok(())
    }

    /// Emit to every target and collect their acknowledgements until all replied or the
    /// timeout (default 5 s) passed.
    pub async fn emit_with_ack(&self, event: &str, args: impl Into<Args>) -> BroadcastAcks {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.emit_with_ack_cb(event, args, move |r| {
            let _ = tx.send(r);
        });
        rx.await.unwrap_or_default()
    }

    /// Callback form of [`BroadcastOperator::emit_with_ack`]; `callback` runs exactly once.
    ///
    /// With a cluster adapter, the sockets of every node are asked; replies from other
    /// nodes carry an empty socket id (the cluster protocol does not transmit it) and
    /// only the first argument of each reply (as socket.io does). A node that does not
    /// report before the timeout counts as one missing reply (its recipients are unknown).
    pub fn emit_with_ack_cb<F>(&self, event: &str, args: impl Into<Args>, callback: F)
    where
        F: FnOnce(BroadcastAcks) + Send + 'static,
    {
        let timeout = self.timeout.unwrap_or(Duration::from_secs(5));
        let args = args.into();
        let remote = self.remote();
        let collector = Arc::new(Collector {
            state: Mutex::new(CollectorState {
                expected: 0,
                received: 0,
                servers_expected: if remote.is_some() { None } else { Some(1) },
                servers_reported: 0,
                acks: BroadcastAcks::default(),
                callback: Some(Box::new(callback)),
            }),
        });
        if let Some(a) = remote {
            let packet = event_packet(self.ns.name(), event, args.clone(), None);
            let mut opts = self.options();
            opts.flags.timeout = Some(timeout);
            if let Err(e) =
                a.broadcast_with_ack(&self.ns, &packet, &opts, ClusterAcks(collector.clone()))
            {
                tracing::debug!(event, error = %e, "broadcast with ack not published to the cluster");
                collector.set_servers(1);
            }
            let c = collector.clone();
            self.ns.io().spawn(async move {
                tokio::time::sleep(timeout).await;
                c.time_out();
            });
        }
        let packet = event_packet(self.ns.name(), event, args, Some(self.ns.next_ack_id()));
        let c = collector.clone();
        let count =
            self.deliver_with_ack(&packet, timeout, Arc::new(move |sid, r| c.reply(sid, r)));
        collector.server_replied(count);
    }

    /// Deliver `packet` (whose id is set) to the local targets, each reply (or its
    /// failure) going to `on_reply`; returns the number of targets.
    pub(crate) fn deliver_with_ack(
        &self,
        packet: &Packet,
        timeout: Duration,
        on_reply: AckReply,
    ) -> usize {
        let Some(id) = packet.id else { return 0 };
        let frames: Vec<Frame> = packet.encode_frames();
        let targets = self.sockets();
        let count = targets.len();
        for s in targets {
            let f = on_reply.clone();
            let sid = s.id().clone();
            s.register_ack(
                id,
                Box::new(move |r: Result<Args, AckError>| f(sid, r)),
                timeout,
            );
            if let Err(e) = s.inner.conn.engine().send_frames(&frames) {
                // The registered ack reports it (at its timeout, or on disconnect): reporting
                // here too would count this recipient twice.
                tracing::debug!(error = %e, sid = %s.id(), "broadcast with ack: not queued");
            }
        }
        count
    }

    /// Make every target join `room` (on every node, unless local).
    pub fn join(&self, room: impl Into<Room>) {
        let room = room.into();
        if let Some(a) = self.remote()
            && let Err(e) = a.add_sockets(&self.ns, &self.options(), std::slice::from_ref(&room))
        {
            tracing::debug!(error = %e, "socketsJoin not published to the cluster");
        }
        for s in self.sockets() {
            s.join(room.clone());
        }
    }

    /// Make every target leave `room` (on every node, unless local).
    pub fn leave(&self, room: &str) {
        if let Some(a) = self.remote()
            && let Err(e) = a.del_sockets(&self.ns, &self.options(), &[Room::copy_from(room)])
        {
            tracing::debug!(error = %e, "socketsLeave not published to the cluster");
        }
        for s in self.sockets() {
            s.leave(room);
        }
    }

    /// Disconnect every target (on every node, unless local).
    pub fn disconnect(&self) {
        self.disconnect_sockets(false);
    }

    /// Disconnect every target (on every node, unless local); with `close`, also close
    /// their underlying connections (socket.io's `disconnectSockets(true)`).
    pub fn disconnect_sockets(&self, close: bool) {
        if let Some(a) = self.remote()
            && let Err(e) = a.disconnect_sockets(&self.ns, &self.options(), close)
        {
            tracing::debug!(error = %e, "disconnectSockets not published to the cluster");
        }
        for s in self.sockets() {
            s.disconnect();
            if close {
                s.inner.conn.engine().close();
            }
        }
    }

    /// Descriptions of the targets on every node (unless local): id, handshake, rooms,
    /// data. Fails when another node's answer is missing (adapter's request timeout) or
    /// the adapter's backend is unreachable.
    pub async fn fetch_sockets(&self) -> Result<Vec<RemoteSocket>, AdapterError> {
        let mut out: Vec<RemoteSocket> = self
            .sockets()
            .iter()
            .map(RemoteSocket::from_local)
            .collect();
        if let Some(a) = self.remote() {
            out.extend(a.fetch_sockets(&self.ns, &self.options()).await?);
        }
        Ok(out)
    }
}

type BroadcastCallback = Box<dyn FnOnce(BroadcastAcks) + Send>;

struct CollectorState {
    /// Replies expected from the nodes that reported so far.
    expected: usize,
    /// Replies (or failures) received.
    received: usize,
    /// Nodes in the cluster, once known.
    servers_expected: Option<usize>,
    /// Nodes that reported how many sockets they asked.
    servers_reported: usize,
    acks: BroadcastAcks,
    callback: Option<BroadcastCallback>,
}

struct Collector {
    state: Mutex<CollectorState>,
}

impl Collector {
    fn complete(st: &mut CollectorState) -> Option<(BroadcastCallback, BroadcastAcks)> {
        let servers_done = st
            .servers_expected
            .is_some_and(|n| st.servers_reported >= n);
        if servers_done && st.received >= st.expected {
            st.callback
                .take()
                .map(|cb| (cb, std::mem::take(&mut st.acks)))
        } else {
            None
        }
    }

    fn update(&self, f: impl FnOnce(&mut CollectorState) -> bool) {
        let done = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            if st.callback.is_none() || !f(&mut st) {
                return;
            }
            Self::complete(&mut st)
        };
        if let Some((cb, acks)) = done {
            cb(acks);
        }
    }

    fn reply(&self, sid: Str, r: Result<Args, AckError>) {
        self.update(|st| {
            match r {
                Ok(args) => st.acks.responses.push((sid, args)),
                Err(_) => st.acks.missing += 1,
            }
            st.received += 1;
            true
        });
    }

    fn server_replied(&self, clients: usize) {
        self.update(|st| {
            st.expected += clients;
            st.servers_reported += 1;
            true
        });
    }

    fn set_servers(&self, n: usize) {
        self.update(|st| {
            st.servers_expected = Some(n.max(1));
            true
        });
    }

    fn time_out(&self) {
        let done = self.state.lock().ok().and_then(|mut st| {
            st.acks.missing += st.expected.saturating_sub(st.received);
            // A node that never said how many sockets it asked counts as one missing reply.
            let silent = st
                .servers_expected
                .map_or(0, |n| n.saturating_sub(st.servers_reported));
            st.acks.missing += silent;
            st.callback
                .take()
                .map(|cb| (cb, std::mem::take(&mut st.acks)))
        });
        if let Some((cb, acks)) = done {
            cb(acks);
        }
    }
}

/// The collector of a broadcast with acknowledgement, as a cluster adapter feeds it:
/// each other node reports how many of its sockets it asked, then their replies arrive.
#[derive(Clone)]
pub struct ClusterAcks(Arc<Collector>);

impl fmt::Debug for ClusterAcks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterAcks")
    }
}

impl ClusterAcks {
    /// The number of nodes in the cluster, this one included.
    pub fn set_server_count(&self, n: usize) {
        self.0.set_servers(n);
    }

    /// A node reported how many of its sockets it asked.
    pub fn server_replied(&self, client_count: usize) {
        self.0.server_replied(client_count);
    }

    /// One socket of another node replied.
    pub fn reply(&self, args: Args) {
        self.0.reply(Str::default(), Ok(args));
    }
}
