//! Scale-out: the adapter that carries broadcasts, room operations and requests between
//! the nodes of a cluster, and the Redis emitter.
//!
//! Every namespace keeps its own sockets and rooms in memory (the in-memory adapter,
//! always there). An [`Adapter`] adds the cluster part: with one set on the server
//! (`Io::builder().adapter(..)`), broadcasts that are not [`local`][BroadcastOperator::local]
//! are also published to the other nodes, `join`/`leave`/`disconnect` on a broadcast
//! operator reach their sockets, and [`Namespace::fetch_sockets`],
//! [`Namespace::server_side_emit`], [`Namespace::server_count`] and
//! [`Namespace::all_rooms`] ask them. Without one (the default), nothing changes and nothing
//! is paid: the broadcast path only checks an `Option`.
//!
//! [`RedisAdapter`] speaks the protocol of Node's `@socket.io/redis-adapter` (8.x, classic
//! pub/sub): same channels, same msgpack and JSON messages, same request types. A tether
//! node can join a cluster of Node `socket.io` servers, or replace them one by one.
//! [`ShardedRedisAdapter`] speaks the protocol of its `createShardedAdapter` (Redis ≥ 7
//! sharded pub/sub). [`RedisEmitter`] emits to a cluster from a process that is not a
//! server, as `@socket.io/redis-emitter` does.
//!
//! ```no_run
//! use tether::adapter::RedisAdapter;
//! use tether::sio::Io;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let adapter = RedisAdapter::connect("redis://127.0.0.1:6379").await?;
//! let io = Io::builder().adapter(adapter.clone()).build();
//! io.ns("/", |socket| {
//!     socket.on("chat message", |s, ev| {
//!         // every socket of every node
//!         let _ = s.ns().emit_args("chat message", ev.args);
//!     });
//! });
//! let server = io.listen("127.0.0.1:3000").await?;
//! # Ok(()) }
//! ```
//!
//! # Delivery during a Redis outage
//!
//! The adapter reconnects by itself (with backoff) and logs the outage and the recovery
//! (`tracing`, target `tether::adapter::redis`). While Redis is unreachable:
//! - broadcasts still reach this node's sockets; their copy for the other nodes is
//!   **lost** (not queued), and counted ([`RedisAdapter::dropped`]); the same for
//!   `join`/`leave`/`disconnect` on other nodes and [`Namespace::server_side_emit`];
//! - requests ([`Namespace::fetch_sockets`], [`Namespace::server_side_emit_with_ack`],
//!   [`Namespace::server_count`], [`Namespace::all_rooms`]) fail with
//!   [`AdapterError::Unavailable`];
//! - a broadcast with acknowledgements collects this node's replies only.
//!
//! Messages published by the other nodes during the outage are not received. Once both
//! connections are back (the subscriptions are restored), everything flows again.

mod cluster_wire;
mod emitter;
mod redis;
mod sharded;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

pub use emitter::{EmitterOperator, RedisEmitter};
pub use redis::{RedisAdapter, RedisAdapterConfig};
pub use sharded::{ShardedRedisAdapter, ShardedRedisAdapterConfig, SubscriptionMode};

use crate::proto::Str;
use crate::proto::socketio::Packet;
use crate::sio::{
    Args, BroadcastOperator, ClusterAcks, EmitError, Handshake, Namespace, Room, SocketRef,
};

/// Why a cluster operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The backend (Redis) is unreachable, or the adapter's queue is full.
    #[error("cluster backend unavailable: {0}")]
    Unavailable(String),
    /// Another node did not answer in time.
    #[error("timeout reached while waiting for {0}")]
    Timeout(&'static str),
    /// A bad setting (e.g. an invalid Redis URL).
    #[error("invalid adapter configuration: {0}")]
    Config(String),
}

/// Flags of a broadcast, as carried between nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BroadcastFlags {
    /// Drop the message for recipients that cannot take it now.
    pub volatile: bool,
    /// This node only (never published).
    pub local: bool,
    /// Acknowledgement timeout of a broadcast with acks.
    pub timeout: Option<Duration>,
}

/// The targets of a broadcast: sockets in any of `rooms` (all sockets when empty), except
/// those in any of `except`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BroadcastOptions {
    /// Target rooms (a socket id is a room).
    pub rooms: Vec<Room>,
    /// Excluded rooms.
    pub except: Vec<Room>,
    /// Flags.
    pub flags: BroadcastFlags,
}

/// The cluster part of a namespace's adapter. The namespace does the local part itself
/// (its in-memory rooms); an implementation only carries operations to and from the other
/// nodes. Every method has a do-nothing default: the in-memory behaviour
/// ([`InMemoryAdapter`]).
///
/// Methods are called on the emitting thread (broadcasts, room operations): they must not
/// block. Operations on local sockets that other nodes ask for are made through the
/// [`Namespace`] and [`BroadcastOperator`] APIs with the `local` flag.
pub trait Adapter: Send + Sync + fmt::Debug + 'static {
    /// A namespace was created on this server (`/` when the server is built, others when
    /// first used): start receiving the cluster's traffic for it.
    fn init(&self, ns: &Namespace) {
        let _ = ns;
    }

    /// A room of `ns` got its first member on this node (`created`), or lost its last
    /// one (Node's adapter `create-room` / `delete-room` events). Called right after the
    /// change, with no lock held, on the thread that made it: do not block. Default:
    /// nothing.
    fn room_changed(&self, ns: &Namespace, room: &str, created: bool) {
        let _ = (ns, room, created);
    }

    /// Publish a broadcast to the other nodes (this node's sockets got it already).
    fn broadcast(
        &self,
        ns: &Namespace,
        packet: &Packet,
        opts: &BroadcastOptions,
    ) -> Result<(), AdapterError> {
        let _ = (ns, packet, opts);
        Ok(())
    }

    /// Publish a broadcast with acknowledgements (`packet` has no id: each node sets its
    /// own). Feed `acks` with the number of nodes, each node's client count and each
    /// reply. The default: no other node.
    fn broadcast_with_ack(
        &self,
        ns: &Namespace,
        packet: &Packet,
        opts: &BroadcastOptions,
        acks: ClusterAcks,
    ) -> Result<(), AdapterError> {
        let _ = (ns, packet, opts);
        acks.set_server_count(1);
        Ok(())
    }

    /// Make the targets on the other nodes join `rooms` (`socketsJoin`).
    fn add_sockets(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
        rooms: &[Room],
    ) -> Result<(), AdapterError> {
        let _ = (ns, opts, rooms);
        Ok(())
    }

    /// Make the targets on the other nodes leave `rooms` (`socketsLeave`).
    fn del_sockets(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
        rooms: &[Room],
    ) -> Result<(), AdapterError> {
        let _ = (ns, opts, rooms);
        Ok(())
    }

    /// Disconnect the targets on the other nodes (`disconnectSockets`).
    fn disconnect_sockets(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
        close: bool,
    ) -> Result<(), AdapterError> {
        let _ = (ns, opts, close);
        Ok(())
    }

    /// Descriptions of the targets on the other nodes (`fetchSockets`).
    fn fetch_sockets(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<RemoteSocket>, AdapterError>> {
        let _ = (ns, opts);
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Send `[event, ...args]` to the other nodes (`serverSideEmit`).
    fn server_side_emit(&self, ns: &Namespace, data: Vec<Value>) -> Result<(), AdapterError> {
        let _ = (ns, data);
        Ok(())
    }

    /// Send `[event, ...args]` to the other nodes and collect one answer from each.
    fn server_side_emit_with_ack(
        &self,
        ns: &Namespace,
        data: Vec<Value>,
    ) -> BoxFuture<'static, Result<ServerAcks, AdapterError>> {
        let _ = (ns, data);
        Box::pin(std::future::ready(Ok(ServerAcks::default())))
    }

    /// The number of nodes, this one included.
    fn server_count(&self, ns: &Namespace) -> BoxFuture<'static, Result<usize, AdapterError>> {
        let _ = ns;
        Box::pin(std::future::ready(Ok(1)))
    }

    /// The rooms of the other nodes.
    fn all_rooms(&self, ns: &Namespace) -> BoxFuture<'static, Result<Vec<Room>, AdapterError>> {
        let _ = ns;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// The in-memory adapter: one node, nothing to carry. The same as setting no adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct InMemoryAdapter;

impl Adapter for InMemoryAdapter {}

/// A socket of the cluster, as `fetchSockets` describes it: on this node or another.
#[derive(Clone)]
pub struct RemoteSocket {
    /// The socket id.
    pub id: Str,
    /// The handshake as socket.io describes it: `headers`, `address`, `url`, `query`,
    /// `auth`, ... (JSON).
    pub handshake: Value,
    /// The rooms it is in (its own id included).
    pub rooms: Vec<Room>,
    /// Its `socket.data` ([`SocketRef::set_data`]; `null` when none).
    pub data: Value,
    ns: Namespace,
    local: Option<SocketRef>,
}

impl fmt::Debug for RemoteSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSocket")
            .field("id", &self.id)
            .field("rooms", &self.rooms)
            .field("data", &self.data)
            .field("local", &self.local.is_some())
            .finish()
    }
}

impl RemoteSocket {
    pub(crate) fn from_local(s: &SocketRef) -> RemoteSocket {
        RemoteSocket {
            id: s.id().clone(),
            handshake: handshake_json(s.handshake()),
            rooms: s.rooms(),
            data: s.data(),
            ns: s.ns().clone(),
            local: Some(s.clone()),
        }
    }

    pub(crate) fn from_json(ns: &Namespace, v: &Value) -> Option<RemoteSocket> {
        let id = v.get("id")?.as_str()?;
        let rooms = v
            .get("rooms")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(wire::room_of).collect())
            .unwrap_or_default();
        Some(RemoteSocket {
            id: Str::copy_from(id),
            handshake: v.get("handshake").cloned().unwrap_or(Value::Null),
            rooms,
            data: v.get("data").cloned().unwrap_or(Value::Null),
            ns: ns.clone(),
            local: None,
        })
    }

    /// The description sent to other nodes: `{id, handshake, rooms, data}`.
    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id.as_str(),
            "handshake": self.handshake,
            "rooms": self.rooms.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "data": self.data,
        })
    }

    /// Whether the socket is connected to this node.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The socket itself, when it is on this node.
    pub fn local(&self) -> Option<&SocketRef> {
        self.local.as_ref()
    }

    fn target(&self) -> BroadcastOperator {
        self.ns.to(self.id.clone())
    }

    /// Emit to this socket, wherever it is.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.target().emit(event, data)
    }

    /// Emit to this socket, wherever it is.
    pub fn emit_args(&self, event: &str, args: impl Into<Args>) -> Result<(), EmitError> {
        self.target().emit_args(event, args)
    }

    /// Make this socket join `room`, wherever it is.
    pub fn join(&self, room: impl Into<Room>) {
        self.target().join(room);
    }

    /// Make this socket leave `room`, wherever it is.
    pub fn leave(&self, room: &str) {
        self.target().leave(room);
    }

    /// Disconnect this socket, wherever it is.
    pub fn disconnect(&self) {
        self.target().disconnect();
    }
}

/// The handshake as socket.io's `socket.handshake` (what other nodes see).
pub(crate) fn handshake_json(h: &Handshake) -> Value {
    let mut headers = serde_json::Map::new();
    for name in h.request.headers.keys() {
        let joined = h
            .request
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(name.as_str().to_owned(), Value::String(joined));
    }
    let mut query = serde_json::Map::new();
    for (k, v) in h.request.query_pairs() {
        query.insert(k, Value::String(v));
    }
    serde_json::json!({
        "headers": headers,
        "address": h.request.peer.ip().to_string(),
        "xdomain": h.request.headers.contains_key("origin"),
        "secure": false,
        "url": h.request.uri.to_string(),
        "query": query,
        "auth": h.auth,
    })
}

/// An event another node sent with `serverSideEmit`.
#[derive(Debug)]
pub struct ServerSideEvent {
    /// The event name.
    pub name: String,
    /// The arguments (JSON).
    pub args: Args,
    /// Present when the sender waits for an answer.
    pub ack: Option<ServerAck>,
}

/// The answer to a server-side event with acknowledgement: one value (socket.io passes
/// only the first argument of the callback on). The first `send` wins.
#[derive(Clone)]
pub struct ServerAck {
    reply: Arc<dyn Fn(Value) + Send + Sync>,
    sent: Arc<AtomicBool>,
}

impl fmt::Debug for ServerAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAck")
            .field("sent", &self.is_sent())
            .finish()
    }
}

impl ServerAck {
    pub(crate) fn new(reply: impl Fn(Value) + Send + Sync + 'static) -> Self {
        ServerAck {
            reply: Arc::new(reply),
            sent: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Answer with `value`; `false` if an answer was sent already or `value` could not be
    /// serialized.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> bool {
        let Ok(v) = serde_json::to_value(value) else {
            return false;
        };
        if self.sent.swap(true, Ordering::AcqRel) {
            return false;
        }
        (self.reply)(v);
        true
    }

    /// Whether an answer was sent.
    pub fn is_sent(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }
}

/// Answers to a server-side event with acknowledgement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerAcks {
    /// One answer per node that answered, in arrival order.
    pub responses: Vec<Value>,
    /// Nodes that did not answer before the timeout.
    pub missing: usize,
}

impl ServerAcks {
    /// Whether every other node answered.
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }
}
