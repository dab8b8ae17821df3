//! One Engine.IO connection seen by Socket.IO: the packet decoder and the namespaces
//! the client joined over it (socket.io's server-side `Client`).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;

use super::small::SmallMap;
use super::socket::SocketRef;
use super::{ConnectContext, ConnectError, DisconnectReason, Handshake, IoInner, Namespace};
use crate::engine::{DisconnectReason as EngineReason, EngineHandler, EngineSocket};
use crate::proto::Str;
use crate::proto::socketio::{Decoder, DecoderConfig, Packet, PacketType, ParseError};

pub(crate) struct Conn {
    /// Held while this connection's incoming packets are dispatched, and while a
    /// deferred connect decision is applied from another thread: a client's first events
    /// then wait until its socket's handlers are registered.
    dispatch: Mutex<()>,
    /// The thread holding `dispatch` (0: none), so the holder can re-enter.
    holder: std::sync::atomic::AtomicU64,
    engine: Arc<EngineSocket>,
    /// The packet decoder, kept (boxed) only while a binary packet waits for its
    /// attachments; otherwise each message decodes with a fresh one.
    decoder: Mutex<Option<Box<Decoder>>>,
    sockets: Mutex<SmallMap<Str, SocketRef>>,
    dynamic: std::sync::atomic::AtomicUsize,
}

impl Conn {
    pub(crate) fn engine(&self) -> &Arc<EngineSocket> {
        &self.engine
    }

    pub(crate) fn remove_socket(&self, nsp: &str) {
        if let Ok(mut s) = self.sockets.lock() {
            s.remove(nsp);
        }
    }

    fn socket(&self, nsp: &str) -> Option<SocketRef> {
        self.sockets.lock().ok()?.get(nsp).cloned()
    }

    /// Run `f` with the dispatch lock (re-entrant for the thread that holds it).
    fn with_dispatch<R>(&self, f: impl FnOnce() -> R) -> R {
        use std::sync::atomic::Ordering::{Acquire, Release};
        let me = thread_tag();
        if self.holder.load(Acquire) == me {
            return f();
        }
        let _guard = self.dispatch.lock().unwrap_or_else(|p| p.into_inner());
        self.holder.store(me, Release);
        let r = f();
        self.holder.store(0, Release);
        r
    }

    /// Run `f` on the connection's decoder (`None` when its lock is poisoned).
    fn decode(
        &self,
        config: DecoderConfig,
        f: impl FnOnce(&mut Decoder) -> Result<Option<Packet>, ParseError>,
    ) -> Option<Result<Option<Packet>, ParseError>> {
        let mut slot = self.decoder.lock().ok()?;
        Some(match slot.as_mut() {
            Some(d) => {
                let r = f(d);
                if !d.has_pending() {
                    *slot = None;
                }
                r
            }
            None => {
                let mut d = Decoder::new(config);
                let r = f(&mut d);
                if d.has_pending() {
                    *slot = Some(Box::new(d));
                }
                r
            }
        })
    }

    fn dynamic_created(&self) -> usize {
        self.dynamic.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_dynamic(&self) {
        self.dynamic
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn has_sockets(&self) -> bool {
        self.sockets.lock().map(|s| !s.is_empty()).unwrap_or(false)
    }
}

/// A small per-thread tag (never 0).
fn thread_tag() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    thread_local! {
        static TAG: u64 = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    TAG.with(|t| *t)
}

fn conn_of(socket: &EngineSocket) -> Option<Arc<Conn>> {
    socket.ext::<Conn>()
}

fn refuse(conn: &Arc<Conn>, nsp: Str, e: ConnectError) {
    let err = Packet::connect_error(nsp, &e.message, e.data);
    let _ = conn.engine.send_frames(&err.encode_frames());
}

fn accept(conn: &Arc<Conn>, ns: Namespace, ctx: ConnectContext, restored: Option<Restored>) {
    if conn.engine.is_closed() {
        return;
    }
    let nsp = ctx.nsp;
    if conn.socket(nsp.as_str()).is_some() {
        return;
    }
    let recovery = ns.recovery_config().is_some();
    let sid = ctx.sid.clone();
    let (pid, recovered) = match &restored {
        Some(r) => (Some(r.pid.clone()), true),
        None => (recovery.then(crate::engine::generate_sid), false),
    };
    let rate = ns.io_config().and_then(|c| c.event_rate);
    let socket = SocketRef::new(
        sid.clone(),
        ns.clone(),
        conn.clone(),
        ctx.handshake,
        rate,
        pid.clone(),
        recovered,
    );
    if let Ok(mut s) = conn.sockets.lock() {
        s.insert(nsp.clone(), socket.clone());
    }
    ns.add_socket(&socket);
    let answer = match &pid {
        Some(pid) => serde_json::json!({ "sid": sid.as_str(), "pid": pid.as_str() }),
        None => serde_json::json!({ "sid": sid.as_str() }),
    };
    let _ = conn
        .engine
        .send_frames(&Packet::connect(nsp.clone(), Some(answer)).encode_frames());
    if let Some(r) = restored {
        for room in r.rooms {
            socket.join(room);
        }
        // What it missed, in order, before anything new.
        for (data, bins) in r.missed {
            let p = Packet::event(nsp.clone(), data, bins, None);
            let _ = conn.engine.send_frames(&p.encode_frames());
        }
    }
    if let Some(h) = ns.connect_handler() {
        h(socket);
    }
}

/// A session to restore: `auth` carries `pid` and `offset` strings the namespace knows.
fn try_restore(ns: &Namespace, auth: &Value) -> Option<Restored> {
    ns.recovery_config()?;
    let pid = auth.get("pid")?.as_str()?;
    let offset = auth.get("offset")?.as_str()?;
    let r = ns.restore_session(pid, offset)?;
    Some(Restored {
        sid: r.sid,
        pid: Str::from(pid.to_owned()),
        rooms: r.rooms,
        missed: r.missed,
    })
}

/// What a recovered socket gets back.
struct Restored {
    sid: Str,
    pid: Str,
    rooms: Vec<super::Room>,
    missed: Vec<(Value, Vec<Bytes>)>,
}

struct Pending {
    conn: Arc<Conn>,
    ns: Namespace,
    ctx: ConnectContext,
    restored: Option<Restored>,
}

/// The answer to a connection request held by a deferred middleware
/// ([`Namespace::use_deferred_middleware`]): [`ConnectDecision::accept`] or
/// [`ConnectDecision::reject`], now or later, from any thread. Dropping it unanswered
/// refuses the connection (`connect_error` "connection refused").
pub struct ConnectDecision {
    pending: Option<Pending>,
}

impl std::fmt::Debug for ConnectDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectDecision")
            .field("nsp", &self.pending.as_ref().map(|p| p.ctx.nsp.clone()))
            .finish()
    }
}

impl ConnectDecision {
    /// Let the socket in: the client is told it is connected, then the namespace's
    /// connection handler runs.
    pub fn accept(mut self) {
        if let Some(p) = self.pending.take() {
            let conn = p.conn.clone();
            conn.with_dispatch(|| accept(&p.conn, p.ns, p.ctx, p.restored));
        }
    }

    /// The id the socket will have once accepted.
    pub fn sid(&self) -> Option<&Str> {
        self.pending.as_ref().map(|p| &p.ctx.sid)
    }

    /// Refuse: the client gets a `connect_error` with the error's message and data.
    pub fn reject(mut self, error: ConnectError) {
        if let Some(p) = self.pending.take() {
            refuse(&p.conn, p.ctx.nsp, error);
        }
    }
}

impl Drop for ConnectDecision {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            refuse(&p.conn, p.ctx.nsp, ConnectError::new("connection refused"));
        }
    }
}

impl IoInner {
    fn on_decoded(self: &Arc<Self>, conn: &Arc<Conn>, packet: Packet) {
        let existing = conn.socket(packet.nsp.as_str());
        match (packet.kind, existing) {
            (PacketType::Connect, None) => self.connect(conn, packet),
            (PacketType::Connect, Some(_)) => {
                tracing::debug!(nsp = %packet.nsp, "second CONNECT for a namespace: closing");
                conn.engine.close();
            }
            (PacketType::Disconnect, Some(s)) => {
                s.close(DisconnectReason::ClientNamespaceDisconnect)
            }
            (PacketType::Event | PacketType::BinaryEvent, Some(s)) => s.handle_event(packet),
            (PacketType::Ack | PacketType::BinaryAck, Some(s)) => s.handle_ack(packet),
            (kind, _) => {
                tracing::debug!(?kind, nsp = %packet.nsp, "packet in an invalid state: closing");
                conn.engine.close();
            }
        }
    }

    fn connect(self: &Arc<Self>, conn: &Arc<Conn>, packet: Packet) {
        let nsp = packet.nsp.clone();
        let allow_new = conn.dynamic_created() < self.config.max_dynamic_namespaces_per_connection;
        let Some((ns, created)) = self.namespace_for(&nsp, allow_new) else {
            let err = Packet::connect_error(nsp, "Invalid namespace", None);
            let _ = conn.engine.send_frames(&err.encode_frames());
            return;
        };
        if created {
            conn.count_dynamic();
        }
        let auth = match packet.data {
            Some(v @ Value::Object(_)) => v,
            _ => Value::Object(Default::default()),
        };
        let restored = try_restore(&ns, &auth);
        let handshake = Handshake::new(auth, conn.engine.shared_request());
        let sid = match &restored {
            Some(r) => r.sid.clone(),
            None => crate::engine::generate_sid(),
        };
        let ctx = ConnectContext {
            nsp: nsp.clone(),
            sid,
            handshake,
        };
        if restored.is_some() && ns.recovery_config().is_some_and(|c| c.skip_middlewares) {
            accept(conn, ns, ctx, restored);
            return;
        }
        for m in ns.middlewares() {
            if let Err(e) = m(&ctx) {
                refuse(conn, nsp, e);
                return;
            }
        }
        match ns.deferred_middleware() {
            Some(hook) => {
                let decision = ConnectDecision {
                    pending: Some(Pending {
                        conn: conn.clone(),
                        ns,
                        ctx: ctx.clone(),
                        restored,
                    }),
                };
                hook(&ctx, decision);
            }
            None => accept(conn, ns, ctx, restored),
        }
    }
    fn decode_error(&self, conn: &Arc<Conn>, e: ParseError) {
        tracing::debug!(error = %e, sid = %conn.engine.id(), "bad socket.io packet: closing");
        conn.engine.close_with(EngineReason::ParseError);
    }
}

impl EngineHandler for Arc<IoInner> {
    fn on_connect(&self, socket: &Arc<EngineSocket>) {
        let conn = Arc::new(Conn {
            engine: socket.clone(),
            decoder: Mutex::new(None),
            sockets: Mutex::new(SmallMap::default()),
            dynamic: std::sync::atomic::AtomicUsize::new(0),
            dispatch: Mutex::new(()),
            holder: std::sync::atomic::AtomicU64::new(0),
        });
        socket.set_ext(conn);
    }

    fn connect_deadline(&self) -> Option<std::time::Duration> {
        Some(self.config.connect_timeout)
    }

    fn on_deadline(&self, socket: &Arc<EngineSocket>) {
        if let Some(conn) = conn_of(socket)
            && !conn.has_sockets()
            && !conn.engine.is_closed()
        {
            tracing::debug!(sid = %conn.engine.id(), "no namespace joined in time: closing");
            conn.engine.close();
        }
    }

    fn on_message(&self, socket: &Arc<EngineSocket>, msg: Str) {
        let Some(conn) = conn_of(socket) else { return };
        conn.with_dispatch(|| {
            let decoded = match conn.decode(self.config.decoder, |d| d.decode_text(msg.as_str())) {
                Some(r) => r,
                None => return,
            };
            match decoded {
                Ok(Some(p)) => self.on_decoded(&conn, p),
                Ok(None) => {}
                Err(e) => self.decode_error(&conn, e),
            }
        });
    }

    fn on_binary(&self, socket: &Arc<EngineSocket>, data: Bytes) {
        let Some(conn) = conn_of(socket) else { return };
        conn.with_dispatch(|| {
            let decoded = match conn.decode(self.config.decoder, |d| d.decode_binary(data)) {
                Some(r) => r,
                None => return,
            };
            match decoded {
                Ok(Some(p)) => self.on_decoded(&conn, p),
                Ok(None) => {}
                Err(e) => self.decode_error(&conn, e),
            }
        });
    }

    fn on_disconnect(&self, socket: &Arc<EngineSocket>, reason: EngineReason) {
        let Some(conn) = socket.take_ext::<Conn>() else {
            return;
        };
        let sockets: Vec<SocketRef> = conn
            .sockets
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        let reason = DisconnectReason::from(reason);
        for s in sockets {
            s.close(reason);
        }
        if let Ok(mut d) = conn.decoder.lock() {
            *d = None;
        }
    }
}
