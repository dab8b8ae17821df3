//! Namespaces, their rooms (the in-memory adapter), and broadcasts.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;

use super::payload::{AckError, Args};
use super::socket::{SocketRef, event_packet};
use super::{ConnectContext, ConnectError, EmitError, IoInner, Room};
use crate::engine::SendError;
use crate::proto::Str;
use crate::proto::engineio::Frame;

pub(crate) type ConnectHandler = Arc<dyn Fn(SocketRef) + Send + Sync>;
pub(crate) type DeferredMiddleware =
    Arc<dyn Fn(&ConnectContext, super::ConnectDecision) + Send + Sync>;
pub(crate) type Middleware = Arc<dyn Fn(&ConnectContext) -> Result<(), ConnectError> + Send + Sync>;

pub(crate) struct NsInner {
    name: Str,
    io: Weak<IoInner>,
    sockets: RwLock<HashMap<Str, SocketRef>>,
    rooms: RwLock<HashMap<Room, HashSet<Str>>>,
    ack_ids: AtomicU64,
    on_connect: RwLock<Option<ConnectHandler>>,
    middlewares: RwLock<Vec<Middleware>>,
    deferred: RwLock<Option<DeferredMiddleware>>,
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
        Namespace {
            inner: Arc::new(NsInner {
                name,
                io,
                sockets: RwLock::new(HashMap::new()),
                rooms: RwLock::new(HashMap::new()),
                ack_ids: AtomicU64::new(0),
                on_connect: RwLock::new(None),
                middlewares: RwLock::new(Vec::new()),
                deferred: RwLock::new(None),
            }),
        }
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
    }

    pub(crate) fn add_to_room(&self, socket: &SocketRef, room: Room) {
        if !socket.connected() {
            return;
        }
        if let Ok(mut rooms) = self.inner.rooms.write() {
            rooms
                .entry(room.clone())
                .or_default()
                .insert(socket.id().clone());
        }
        if let Ok(mut r) = socket.inner.rooms.lock() {
            r.insert(room);
        }
    }

    pub(crate) fn remove_from_room(&self, socket: &SocketRef, room: &str) {
        if let Ok(mut rooms) = self.inner.rooms.write()
            && let Some(members) = rooms.get_mut(room)
        {
            members.remove(socket.id().as_str());
            if members.is_empty() {
                rooms.remove(room);
            }
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
            .map(|mut r| r.drain().collect())
            .unwrap_or_default();
        if let Ok(mut rooms) = self.inner.rooms.write() {
            for room in mine {
                if let Some(members) = rooms.get_mut(room.as_str()) {
                    members.remove(socket.id().as_str());
                    if members.is_empty() {
                        rooms.remove(room.as_str());
                    }
                }
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

    /// Disconnect every socket of the namespace.
    pub fn disconnect_all(&self) {
        self.broadcast().disconnect();
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

    pub(crate) fn except_socket(mut self, sid: Str) -> Self {
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
                for id in members {
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

    /// Emit `event` with one argument to every target.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.emit_args(event, Args::one(data)?)
    }

    /// Emit `event` to every target. The packet is encoded once and the same bytes are
    /// queued for every recipient. Recipients whose queue is full are skipped (and
    /// logged); the count of those is returned in the error unless the broadcast is
    /// volatile.
    pub fn emit_args(&self, event: &str, args: impl Into<Args>) -> Result<(), EmitError> {
        let packet = event_packet(self.ns.name(), event, args.into(), None);
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
    pub fn emit_with_ack_cb<F>(&self, event: &str, args: impl Into<Args>, callback: F)
    where
        F: FnOnce(BroadcastAcks) + Send + 'static,
    {
        let timeout = self.timeout.unwrap_or(Duration::from_secs(5));
        let id = self.ns.next_ack_id();
        let packet = event_packet(self.ns.name(), event, args.into(), Some(id));
        let frames: Vec<Frame> = packet.encode_frames();
        let targets = self.sockets();
        let collector = Arc::new(Collector {
            state: Mutex::new(CollectorState {
                remaining: targets.len(),
                acks: BroadcastAcks::default(),
                callback: Some(Box::new(callback)),
            }),
        });
        if targets.is_empty() {
            collector.finish();
            return;
        }
        for s in targets {
            let c = collector.clone();
            let sid = s.id().clone();
            s.register_ack(
                id,
                Box::new(move |r: Result<Args, AckError>| c.reply(sid, r)),
                timeout,
            );
            if let Err(e) = s.inner.conn.engine().send_frames(&frames) {
                tracing::debug!(error = %e, sid = %s.id(), "broadcast with ack: not queued");
                collector.reply(s.id().clone(), Err(AckError::Send(e)));
            }
        }
    }

    /// Make every target join `room`.
    pub fn join(&self, room: impl Into<Room>) {
        let room = room.into();
        for s in self.sockets() {
            s.join(room.clone());
        }
    }

    /// Make every target leave `room`.
    pub fn leave(&self, room: &str) {
        for s in self.sockets() {
            s.leave(room);
        }
    }

    /// Disconnect every target.
    pub fn disconnect(&self) {
        for s in self.sockets() {
            s.disconnect();
        }
    }
}

type BroadcastCallback = Box<dyn FnOnce(BroadcastAcks) + Send>;

struct CollectorState {
    remaining: usize,
    acks: BroadcastAcks,
    callback: Option<BroadcastCallback>,
}

struct Collector {
    state: Mutex<CollectorState>,
}

impl Collector {
    fn reply(&self, sid: Str, r: Result<Args, AckError>) {
        let done = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            if st.callback.is_none() {
                return;
            }
            match r {
                Ok(args) => st.acks.responses.push((sid, args)),
                Err(_) => st.acks.missing += 1,
            }
            st.remaining = st.remaining.saturating_sub(1);
            if st.remaining == 0 {
                st.callback
                    .take()
                    .map(|cb| (cb, std::mem::take(&mut st.acks)))
            } else {
                None
            }
        };
        if let Some((cb, acks)) = done {
            cb(acks);
        }
    }

    fn finish(&self) {
        let done = self.state.lock().ok().and_then(|mut st| {
            st.callback
                .take()
                .map(|cb| (cb, std::mem::take(&mut st.acks)))
        });
        if let Some((cb, acks)) = done {
            cb(acks);
        }
    }
}
