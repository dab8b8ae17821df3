//! [`ShardedRedisAdapter`]: the cluster adapter of `@socket.io/redis-adapter`'s
//! `createShardedAdapter` (Redis ≥ 7 sharded pub/sub, `SSUBSCRIBE`/`SPUBLISH`), on
//! socket.io-adapter's `ClusterAdapter` protocol ([`super::cluster_wire`]).
//!
//! Channels per namespace: `<prefix>#<nsp>#` (every message), `<prefix>#<nsp>#<uid>#`
//! (the answers to this node's requests) and, in the dynamic modes, one
//! `<prefix>#<nsp>#<room>#` per local room, which carries the broadcasts to that one
//! room. The node count is `PUBSUB SHARDNUMSUB <prefix>#<nsp>#`.
//!
//! Two connections per node: one publishes (the classic adapter's publisher with
//! `SPUBLISH`), one is subscribed (RESP3, so that `SSUBSCRIBE` replies and `smessage`
//! pushes travel on a multiplexed connection). Each reconnects by itself.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use super::cluster_wire::{self as cw, Message};
use super::redis::{
    Pending, Publisher, RedisAdapterConfig, Requests, ask_local, backoff, connect_pub, lock, read,
    rooms, server_acks, write,
};
use super::{Adapter, AdapterError, BroadcastOptions, RemoteSocket, ServerAck, ServerAcks, wire};
use crate::proto::socketio::Packet;
use crate::sio::{BroadcastOperator, ClusterAcks, Namespace, Room, WeakNamespace};

const LOG: &str = "tether::adapter::sharded";

/// Which rooms get their own channel (`subscriptionMode` of Node's sharded adapter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SubscriptionMode {
    /// One channel per namespace: every node receives every broadcast (`"static"`).
    Static,
    /// Public rooms (not a socket id) get their own channel, subscribed while the room
    /// has local members: a broadcast to one such room reaches only the nodes that have
    /// it (`"dynamic"`, the default).
    #[default]
    Dynamic,
    /// Every room gets its own channel, private rooms (socket ids) too
    /// (`"dynamic-private"`).
    DynamicPrivate,
}

/// Settings of a [`ShardedRedisAdapter`] (the options of Node's `createShardedAdapter`
/// and the connection settings of [`super::RedisAdapterConfig`]).
#[derive(Debug, Clone)]
pub struct ShardedRedisAdapterConfig {
    /// The channel prefix (`channelPrefix`, default `socket.io`).
    pub channel_prefix: String,
    /// Per-room channels (`subscriptionMode`, default dynamic). Every node of a cluster
    /// must use the same mode.
    pub subscription_mode: SubscriptionMode,
    /// How long to wait for the other nodes' answers (default 5 s, Node's fixed value).
    pub requests_timeout: Duration,
    /// In the dynamic modes, a room's channel is subscribed as soon as the room is
    /// created on this node and dropped when it is deleted (the `Adapter::room_changed`
    /// hook; the SSUBSCRIBE takes one Redis round trip). On top of that, every
    /// `room_sync_interval` (default 1 s) the channels are compared with the local rooms,
    /// which repairs what raced (a room deleted and re-created at once, a reconnection).
    /// Each such comparison lists the rooms of every namespace (O(rooms)), skipped when
    /// nothing changed; [`ShardedRedisAdapter::ready`] syncs at once.
    pub room_sync_interval: Duration,
    /// Time allowed to connect to Redis (default 2 s).
    pub connect_timeout: Duration,
    /// First delay between reconnection attempts (default 100 ms), doubled up to
    /// `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts (default 2 s).
    pub reconnect_max: Duration,
    /// Messages waiting to be published at most (default 65536); beyond, publishes fail.
    pub queue: usize,
}

impl Default for ShardedRedisAdapterConfig {
    fn default() -> Self {
        let link = RedisAdapterConfig::default();
        ShardedRedisAdapterConfig {
            channel_prefix: link.key,
            subscription_mode: SubscriptionMode::Dynamic,
            requests_timeout: link.requests_timeout,
            room_sync_interval: Duration::from_secs(1),
            connect_timeout: link.connect_timeout,
            reconnect_min: link.reconnect_min,
            reconnect_max: link.reconnect_max,
            queue: link.queue,
        }
    }
}

impl ShardedRedisAdapterConfig {
    /// The connection settings, as the classic adapter's publisher takes them.
    fn link(&self) -> RedisAdapterConfig {
        RedisAdapterConfig {
            key: self.channel_prefix.clone(),
            requests_timeout: self.requests_timeout,
            connect_timeout: self.connect_timeout,
            reconnect_min: self.reconnect_min,
            reconnect_max: self.reconnect_max,
            queue: self.queue,
            ..RedisAdapterConfig::default()
        }
    }
}

/// The sharded Redis cluster adapter, wire-compatible with Node's
/// `createShardedAdapter` (`@socket.io/redis-adapter` 8.x, Redis ≥ 7). Cheap to clone:
/// clones are the same node. Talks to one Redis server (≥ 7); Redis Cluster (slot
/// redirection of the per-room channels) is not supported.
///
/// ```no_run
/// # async fn run() -> Result<(), tether::adapter::AdapterError> {
/// use tether::adapter::ShardedRedisAdapter;
/// let adapter = ShardedRedisAdapter::connect("redis://127.0.0.1:6379").await?;
/// let io = tether::sio::Io::builder().adapter(adapter.clone()).build();
/// adapter.ready(std::time::Duration::from_secs(2)).await?; // subscriptions are live
/// # Ok(()) }
/// ```
///
/// During a Redis outage it behaves as [`super::RedisAdapter`] (see the
/// [module documentation](super)); `serverSideEmit` without acks and room operations for
/// other nodes are lost and counted in [`ShardedRedisAdapter::dropped`]. The subscriber
/// logs under the `tracing` target `tether::adapter::sharded`, the publisher under
/// `tether::adapter::redis`.
///
/// Not carried (as in Node's sharded adapter): `allRooms` of the other nodes
/// ([`Namespace::all_rooms`] lists this node's rooms only) and heartbeats.
#[derive(Clone)]
pub struct ShardedRedisAdapter {
    shared: Arc<Shared>,
}

impl fmt::Debug for ShardedRedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedRedisAdapter")
            .field("uid", &self.shared.uid)
            .field("prefix", &self.shared.config.channel_prefix)
            .field("mode", &self.shared.config.subscription_mode)
            .field("connected", &self.is_connected())
            .finish()
    }
}

enum SubCmd {
    Sync,
    Barrier(oneshot::Sender<()>),
    /// A room's own channel: subscribe (its room was created here) or not (deleted).
    Room {
        channel: String,
        subscribe: bool,
    },
}

struct NsEntry {
    ns: WeakNamespace,
    /// `<prefix>#<nsp>#`.
    channel: String,
}

struct Shared {
    uid: String,
    config: ShardedRedisAdapterConfig,
    publisher: Arc<Publisher>,
    sub_tx: mpsc::UnboundedSender<SubCmd>,
    namespaces: RwLock<HashMap<String, NsEntry>>,
    /// subscribed channel -> (nsp, whether it carries answers to this node).
    routes: RwLock<HashMap<String, (String, bool)>>,
    /// The rooms with their own channel at the last sync, by namespace.
    last_rooms: Mutex<Vec<(String, Vec<Room>)>>,
    requests: Requests,
    ack_requests: Mutex<HashMap<String, ClusterAcks>>,
    sub_up: AtomicBool,
    _closed: watch::Sender<()>,
}

/// A JavaScript string's `length` (UTF-16 units), for Node's socket-id test.
fn looks_like_a_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

impl ShardedRedisAdapter {
    /// Connect to Redis (≥ 7) at `url` with the default settings. Must run inside a
    /// tokio runtime: the adapter's tasks run on it.
    pub async fn connect(url: &str) -> Result<ShardedRedisAdapter, AdapterError> {
        Self::connect_with(url, ShardedRedisAdapterConfig::default()).await
    }

    /// Connect to Redis at `url` with these settings. Fails when Redis cannot be reached
    /// now (or the URL is invalid); afterwards, the adapter reconnects by itself.
    pub async fn connect_with(
        url: &str,
        config: ShardedRedisAdapterConfig,
    ) -> Result<ShardedRedisAdapter, AdapterError> {
        let client = redis::Client::open(url).map_err(|e| AdapterError::Config(e.to_string()))?;
        // The subscriber speaks RESP3: pushes and replies share one connection.
        let mut info = client.get_connection_info().clone();
        info.redis.protocol = redis::ProtocolVersion::RESP3;
        let sub_client =
            redis::Client::open(info).map_err(|e| AdapterError::Config(e.to_string()))?;
        let link = config.link();
        let first_pub = connect_pub(&client, &link).await?;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let first_sub = connect_sub(&sub_client, &link, push_tx).await?;
        let publisher = Publisher::start(&client, &link, first_pub, true);
        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = watch::channel(());
        let shared = Arc::new(Shared {
            uid: wire::uid(16),
            config,
            publisher,
            sub_tx,
            namespaces: RwLock::new(HashMap::new()),
            routes: RwLock::new(HashMap::new()),
            last_rooms: Mutex::new(Vec::new()),
            requests: Requests::default(),
            ack_requests: Mutex::new(HashMap::new()),
            sub_up: AtomicBool::new(false),
            _closed: closed_tx,
        });
        tokio::spawn(sub_task(
            Arc::downgrade(&shared),
            sub_client,
            link,
            (first_sub, push_rx),
            sub_rx,
            closed_rx,
        ));
        Ok(ShardedRedisAdapter { shared })
    }

    /// This node's id in the cluster (16 characters, as Node's).
    pub fn uid(&self) -> &str {
        &self.shared.uid
    }

    /// Whether both connections to Redis are up.
    pub fn is_connected(&self) -> bool {
        self.shared.publisher.is_up() && self.shared.sub_up.load(Ordering::Acquire)
    }

    /// Messages for the other nodes lost so far (Redis unreachable or queue full).
    pub fn dropped(&self) -> u64 {
        self.shared.publisher.dropped()
    }

    /// Bring the subscriptions in line with the namespaces and their local rooms now and
    /// wait until they are live on Redis, at most `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), AdapterError> {
        let (tx, rx) = oneshot::channel();
        let sent = self.shared.sub_tx.send(SubCmd::Barrier(tx)).is_ok();
        self.shared.publisher.ready(sent, rx, timeout).await
    }
}

type Pushes = mpsc::UnboundedReceiver<redis::PushInfo>;

async fn connect_sub(
    client: &redis::Client,
    config: &RedisAdapterConfig,
    pushes: mpsc::UnboundedSender<redis::PushInfo>,
) -> Result<redis::aio::MultiplexedConnection, AdapterError> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(config.connect_timeout)
        .set_response_timeout(config.requests_timeout)
        .set_push_sender(pushes);
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(|e| AdapterError::Unavailable(e.to_string()))
}

/// Subscribe and unsubscribe until `subscribed` is what the namespaces want (unless
/// nothing changed and not `force`). One channel per command: each gets exactly one
/// reply.
async fn sync(
    shared: &Weak<Shared>,
    conn: &mut redis::aio::MultiplexedConnection,
    subscribed: &mut HashSet<String>,
    force: bool,
) -> Result<(), redis::RedisError> {
    let Some(wanted) = shared.upgrade().and_then(|s| s.wanted(force)) else {
        return Ok(());
    };
    for ch in wanted.difference(subscribed) {
        redis::cmd("SSUBSCRIBE").arg(ch).exec_async(conn).await?;
    }
    for ch in subscribed.difference(&wanted) {
        redis::cmd("SUNSUBSCRIBE").arg(ch).exec_async(conn).await?;
    }
    *subscribed = wanted;
    Ok(())
}

/// Follow one room's creation or deletion at once (the periodic sync reconciles anything
/// that raced).
async fn room_channel(
    conn: &mut redis::aio::MultiplexedConnection,
    subscribed: &mut HashSet<String>,
    channel: String,
    subscribe: bool,
) -> Result<(), redis::RedisError> {
    if subscribe && !subscribed.contains(&channel) {
        redis::cmd("SSUBSCRIBE")
            .arg(&channel)
            .exec_async(conn)
            .await?;
        subscribed.insert(channel);
    } else if !subscribe && subscribed.remove(&channel) {
        redis::cmd("SUNSUBSCRIBE")
            .arg(&channel)
            .exec_async(conn)
            .await?;
    }
    Ok(())
}

/// The subscribed connection: keeps the channels in line with the namespaces and their
/// rooms, dispatches what arrives, reconnects with backoff.
async fn sub_task(
    shared: Weak<Shared>,
    client: redis::Client,
    config: RedisAdapterConfig,
    first: (redis::aio::MultiplexedConnection, Pushes),
    mut cmds: mpsc::UnboundedReceiver<SubCmd>,
    mut closed: watch::Receiver<()>,
) {
    let Some((dynamic, every)) = shared.upgrade().map(|s| {
        (
            s.config.subscription_mode != SubscriptionMode::Static,
            s.config.room_sync_interval.max(Duration::from_millis(1)),
        )
    }) else {
        return;
    };
    let mut first = Some(first);
    let mut delay = config.reconnect_min;
    let mut was_down = false;
    loop {
        let (mut conn, mut pushes) = match first.take() {
            Some(c) => c,
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                match connect_sub(&client, &config, tx).await {
                    Ok(c) => (c, rx),
                    Err(e) => {
                        tracing::debug!(target: LOG, error = %e, "redis subscriber: reconnection failed");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = closed.changed() => return,
                        }
                        delay = backoff(delay, &config);
                        continue;
                    }
                }
            }
        };
        let mut subscribed = HashSet::new();
        if let Err(e) = sync(&shared, &mut conn, &mut subscribed, true).await {
            tracing::debug!(target: LOG, error = %e, "redis subscriber: subscribing failed");
            tokio::time::sleep(delay).await;
            delay = backoff(delay, &config);
            continue;
        }
        match shared.upgrade() {
            Some(s) => s.sub_up.store(true, Ordering::Release),
            None => return,
        }
        if was_down {
            tracing::info!(target: LOG, "redis subscriber reconnected; subscriptions restored");
        }
        delay = config.reconnect_min;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let synced = tokio::select! {
                push = pushes.recv() => match push {
                    Some(p) if p.kind == redis::PushKind::Disconnection => break,
                    Some(p) => {
                        if let Some(msg) = redis::Msg::from_push_info(p) {
                            match shared.upgrade() {
                                Some(s) => s.on_message(&msg),
                                None => return,
                            }
                        }
                        Ok(())
                    }
                    None => break,
                },
                cmd = cmds.recv() => match cmd {
                    Some(SubCmd::Sync) => sync(&shared, &mut conn, &mut subscribed, true).await,
                    Some(SubCmd::Room { channel, subscribe }) => {
                        room_channel(&mut conn, &mut subscribed, channel, subscribe).await
                    }
                    Some(SubCmd::Barrier(tx)) => {
                        let r = sync(&shared, &mut conn, &mut subscribed, true).await;
                        let _ = tx.send(());
                        r
                    }
                    None => return,
                },
                _ = tick.tick(), if dynamic => sync(&shared, &mut conn, &mut subscribed, false).await,
                _ = closed.changed() => return,
            };
            if synced.is_err() {
                break;
            }
        }
        tracing::warn!(target: LOG, "redis subscriber connection lost; reconnecting");
        was_down = true;
        match shared.upgrade() {
            Some(s) => {
                s.sub_up.store(false, Ordering::Release);
                s.publisher.reset();
            }
            None => return,
        }
    }
}

impl Shared {
    /// `socketsJoin` / `socketsLeave` (`kind`) on the other nodes.
    fn rooms_op(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
        rooms: &[Room],
        kind: u64,
    ) -> Result<(), AdapterError> {
        let rooms: Vec<&str> = rooms.iter().map(|r| r.as_str()).collect();
        let data = json!({"opts": cw::options_json(opts), "rooms": rooms});
        self.send(ns, self.channel(ns), kind, data, &[])
    }

    fn channel(&self, ns: &Namespace) -> String {
        format!("{}#{}#", self.config.channel_prefix, ns.name())
    }

    /// The channels to be subscribed to, and `routes` refreshed; `None` when nothing
    /// changed since the last call (unless `force`).
    fn wanted(&self, force: bool) -> Option<HashSet<String>> {
        let namespaces = read(&self.namespaces);
        let mut rooms: Vec<(String, Vec<Room>)> = Vec::with_capacity(namespaces.len());
        for (nsp, e) in namespaces.iter() {
            let own = match e.ns.upgrade() {
                Some(ns) => {
                    let mut r = ns.rooms();
                    r.retain(|room| self.own_channel(&ns, room));
                    r
                }
                None => Vec::new(),
            };
            rooms.push((nsp.clone(), own));
        }
        rooms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut last = lock(&self.last_rooms);
        if !force && *last == rooms {
            return None;
        }
        let mut routes = HashMap::new();
        for (nsp, own) in &rooms {
            let Some(e) = namespaces.get(nsp) else {
                continue;
            };
            routes.insert(e.channel.clone(), (nsp.clone(), false));
            routes.insert(format!("{}{}#", e.channel, self.uid), (nsp.clone(), true));
            for room in own {
                routes.insert(format!("{}{room}#", e.channel), (nsp.clone(), false));
            }
        }
        *last = rooms;
        let wanted = routes.keys().cloned().collect();
        *write(&self.routes) = routes;
        Some(wanted)
    }

    /// Whether local room `room` has its own channel (`shouldUseASeparateNamespace`).
    fn own_channel(&self, ns: &Namespace, room: &str) -> bool {
        match self.config.subscription_mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => ns.get_socket(room).is_none(),
            SubscriptionMode::DynamicPrivate => true,
        }
    }

    /// Where a broadcast is published (`computeChannel`): a single room's own channel in
    /// the dynamic modes (not with acks), else the namespace's.
    fn broadcast_channel(&self, ns: &Namespace, opts: &BroadcastOptions, acks: bool) -> String {
        let channel = self.channel(ns);
        let dynamic = match self.config.subscription_mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !opts
                .rooms
                .first()
                .is_some_and(|r| looks_like_a_socket_id(r)),
            SubscriptionMode::DynamicPrivate => true,
        };
        match opts.rooms.as_slice() {
            [room] if dynamic && !acks => format!("{channel}{room}#"),
            _ => channel,
        }
    }

    /// Publish a message of this node for `ns` on `channel`.
    fn send(
        &self,
        ns: &Namespace,
        channel: String,
        kind: u64,
        data: Value,
        bins: &[bytes::Bytes],
    ) -> Result<(), AdapterError> {
        let msg = cw::encode(&self.uid, ns.name(), kind, data, bins);
        self.publisher.publish(channel, msg)
    }

    /// Answer the request of node `to` (`publishResponse`).
    fn respond(&self, ns: &Namespace, to: &str, kind: u64, data: Value, bins: &[bytes::Bytes]) {
        let channel = format!("{}{to}#", self.channel(ns));
        if let Err(e) = self.send(ns, channel, kind, data, bins) {
            tracing::debug!(target: LOG, error = %e, "response not published");
        }
    }

    fn on_message(self: &Arc<Self>, msg: &redis::Msg) {
        let channel = msg.get_channel_name();
        let Some((nsp, response)) = read(&self.routes).get(channel).cloned() else {
            return;
        };
        let Some(m) = cw::decode(msg.get_payload_bytes()) else {
            tracing::debug!(target: LOG, channel, "malformed message ignored");
            return;
        };
        if m.nsp != nsp {
            return;
        }
        let ns = read(&self.namespaces)
            .get(&nsp)
            .and_then(|e| e.ns.upgrade());
        let Some(ns) = ns else { return };
        if response {
            self.on_response(m);
        } else {
            self.on_cluster_message(&ns, m);
        }
    }

    /// `ClusterAdapter#onMessage`.
    fn on_cluster_message(self: &Arc<Self>, ns: &Namespace, m: Message) {
        if m.uid == self.uid {
            return;
        }
        let opts = || wire::options_from_json(m.data.get("opts").unwrap_or(&Value::Null));
        match m.kind {
            cw::BROADCAST => {
                let Some(packet) = m
                    .data
                    .get("packet")
                    .and_then(|p| cw::packet_from_json(p, m.bins.clone(), ns.name()))
                else {
                    tracing::debug!(target: LOG, "broadcast of an unsupported packet ignored");
                    return;
                };
                let opts = opts();
                let Some(id) = m.request_id().map(str::to_owned) else {
                    let event = packet.event_name().unwrap_or("").to_owned();
                    let _ = BroadcastOperator::from_options(ns.clone(), &opts)
                        .emit_packet(&event, &packet);
                    return;
                };
                let timeout = opts.flags.timeout.unwrap_or(self.config.requests_timeout);
                let (shared, ns2, to, rid) =
                    (Arc::downgrade(self), ns.clone(), m.uid.clone(), id.clone());
                let count = ask_local(ns, packet, &opts, timeout, move |first, bins| {
                    if let Some(s) = shared.upgrade() {
                        let data = json!({"requestId": rid, "packet": first});
                        s.respond(&ns2, &to, cw::BROADCAST_ACK, data, &bins);
                    }
                });
                let data = json!({"requestId": id, "clientCount": count});
                self.respond(ns, &m.uid, cw::BROADCAST_CLIENT_COUNT, data, &[]);
            }
            cw::SOCKETS_JOIN => {
                let op = BroadcastOperator::from_options(ns.clone(), &opts());
                for room in rooms(m.data.get("rooms")) {
                    op.join(room);
                }
            }
            cw::SOCKETS_LEAVE => {
                let op = BroadcastOperator::from_options(ns.clone(), &opts());
                for room in rooms(m.data.get("rooms")) {
                    op.leave(room.as_str());
                }
            }
            cw::DISCONNECT_SOCKETS => {
                let close = m
                    .data
                    .get("close")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                BroadcastOperator::from_options(ns.clone(), &opts()).disconnect_sockets(close);
            }
            cw::FETCH_SOCKETS => {
                let Some(id) = m.request_id() else { return };
                let sockets: Vec<Value> = BroadcastOperator::from_options(ns.clone(), &opts())
                    .sockets()
                    .iter()
                    .map(|s| RemoteSocket::from_local(s).to_json())
                    .collect();
                let data = json!({"requestId": id, "sockets": sockets});
                self.respond(ns, &m.uid, cw::FETCH_SOCKETS_RESPONSE, data, &[]);
            }
            cw::SERVER_SIDE_EMIT => {
                let Some(Value::Array(packet)) = m.data.get("packet") else {
                    return;
                };
                let ack = m.request_id().map(|id| {
                    let (shared, ns2, to) = (Arc::downgrade(self), ns.clone(), m.uid.clone());
                    let id = id.to_owned();
                    ServerAck::new(move |v| {
                        if let Some(s) = shared.upgrade() {
                            let data = json!({"requestId": id, "packet": v});
                            s.respond(&ns2, &to, cw::SERVER_SIDE_EMIT_RESPONSE, data, &[]);
                        }
                    })
                });
                ns.dispatch_server_side(packet.clone(), ack);
            }
            cw::FETCH_SOCKETS_RESPONSE
            | cw::SERVER_SIDE_EMIT_RESPONSE
            | cw::BROADCAST_CLIENT_COUNT
            | cw::BROADCAST_ACK => self.on_response(m),
            other => {
                tracing::debug!(target: LOG, kind = other, "message type ignored");
            }
        }
    }

    /// `ClusterAdapter#onResponse`.
    fn on_response(&self, m: Message) {
        let Some(id) = m.request_id() else { return };
        match m.kind {
            cw::BROADCAST_CLIENT_COUNT | cw::BROADCAST_ACK => {
                let Some(acks) = lock(&self.ack_requests).get(id).cloned() else {
                    return;
                };
                if m.kind == cw::BROADCAST_CLIENT_COUNT {
                    let n = m.data.get("clientCount").and_then(Value::as_u64);
                    acks.server_replied(n.unwrap_or(0) as usize);
                } else {
                    let v = m.data.get("packet").cloned().unwrap_or(Value::Null);
                    acks.reply(crate::sio::Args::from_parts(vec![v], m.bins));
                }
            }
            cw::FETCH_SOCKETS_RESPONSE | cw::SERVER_SIDE_EMIT_RESPONSE => {
                self.requests.answer(id, &m.data, "packet");
            }
            _ => {}
        }
    }

    /// Send request `kind` with `data` (plus `requestId`) and wait for the answers.
    async fn request<T>(
        &self,
        ns: &Namespace,
        kind: u64,
        data: Value,
        pending: impl FnOnce() -> Pending,
        rx: oneshot::Receiver<T>,
        what: &'static str,
    ) -> Result<T, (AdapterError, Option<Pending>)> {
        let channel = self.channel(ns);
        let make = |id: &str| {
            let mut data = data;
            data["requestId"] = Value::from(id);
            (pending(), cw::encode(&self.uid, ns.name(), kind, data, &[]))
        };
        let timeout = self.config.requests_timeout;
        (self.requests)
            .request(&self.publisher, timeout, 16, channel, make, rx, what)
            .await
    }
}

impl Adapter for ShardedRedisAdapter {
    fn init(&self, ns: &Namespace) {
        let s = &self.shared;
        let entry = NsEntry {
            ns: ns.downgrade(),
            channel: s.channel(ns),
        };
        write(&s.namespaces).insert(ns.name().to_string(), entry);
        let _ = s.sub_tx.send(SubCmd::Sync);
    }

    fn room_changed(&self, ns: &Namespace, room: &str, created: bool) {
        let s = &self.shared;
        // A socket's own room has no channel in dynamic mode (the socket is registered
        // before it joins its room and leaves its rooms before it is removed; a channel
        // never subscribed is not unsubscribed either).
        if s.config.subscription_mode == SubscriptionMode::Static || !s.own_channel(ns, room) {
            return;
        }
        let Some(base) = read(&s.namespaces)
            .get(ns.name().as_str())
            .map(|e| e.channel.clone())
        else {
            return;
        };
        let channel = format!("{base}{room}#");
        {
            let mut routes = write(&s.routes);
            if created {
                routes.insert(channel.clone(), (ns.name().to_string(), false));
            } else {
                routes.remove(&channel);
            }
        }
        let _ = s.sub_tx.send(SubCmd::Room {
            channel,
            subscribe: created,
        });
    }

    fn broadcast(
        &self,
        ns: &Namespace,
        packet: &Packet,
        opts: &BroadcastOptions,
    ) -> Result<(), AdapterError> {
        let s = &self.shared;
        let (pv, bins) = cw::packet_json(packet);
        let data = json!({"packet": pv, "opts": cw::options_json(opts)});
        s.send(
            ns,
            s.broadcast_channel(ns, opts, false),
            cw::BROADCAST,
            data,
            bins,
        )
    }

    fn broadcast_with_ack(
        &self,
        ns: &Namespace,
        packet: &Packet,
        opts: &BroadcastOptions,
        acks: ClusterAcks,
    ) -> Result<(), AdapterError> {
        let s = self.shared.clone();
        let id = wire::uid(16);
        lock(&s.ack_requests).insert(id.clone(), acks.clone());
        let (pv, bins) = cw::packet_json(packet);
        let data = json!({"packet": pv, "requestId": id, "opts": cw::options_json(opts)});
        let channel = s.broadcast_channel(ns, opts, true);
        if let Err(e) = s.send(ns, channel.clone(), cw::BROADCAST, data, bins) {
            lock(&s.ack_requests).remove(&id);
            return Err(e);
        }
        let timeout = opts.flags.timeout.unwrap_or(s.config.requests_timeout);
        tokio::spawn(async move {
            s.publisher.count_servers(channel, &acks).await;
            tokio::time::sleep(timeout).await;
            lock(&s.ack_requests).remove(&id);
        });
        Ok(())
    }

    fn add_sockets(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
        rooms: &[Room],
    ) -> Result<(), AdapterError> {
        self.shared.rooms_op(ns, opts, rooms, cw::SOCKETS_JOIN)
    }

    fn del_sockets(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
        rooms: &[Room],
    ) -> Result<(), AdapterError> {
        self.shared.rooms_op(ns, opts, rooms, cw::SOCKETS_LEAVE)
    }

    fn disconnect_sockets(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
        close: bool,
    ) -> Result<(), AdapterError> {
        let s = &self.shared;
        let data = json!({"opts": cw::options_json(opts), "close": close});
        s.send(ns, s.channel(ns), cw::DISCONNECT_SOCKETS, data, &[])
    }

    fn fetch_sockets(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<RemoteSocket>, AdapterError>> {
        let s = self.shared.clone();
        let ns = ns.clone();
        let data = json!({"opts": cw::options_json(opts)});
        Box::pin(async move {
            let expected = s.publisher.num_sub(s.channel(&ns)).await?;
            if expected <= 1 {
                return Ok(Vec::new());
            }
            let (tx, rx) = oneshot::channel();
            let ns2 = ns.clone();
            let pending = move || Pending::Fetch {
                ns: ns2,
                expected,
                count: 1,
                sockets: Vec::new(),
                done: tx,
            };
            s.request(
                &ns,
                cw::FETCH_SOCKETS,
                data,
                pending,
                rx,
                "fetchSockets response",
            )
            .await
            .map_err(|(e, _)| e)
        })
    }

    fn server_side_emit(&self, ns: &Namespace, data: Vec<Value>) -> Result<(), AdapterError> {
        let s = &self.shared;
        let data = json!({"packet": data});
        s.send(ns, s.channel(ns), cw::SERVER_SIDE_EMIT, data, &[])
    }

    fn server_side_emit_with_ack(
        &self,
        ns: &Namespace,
        data: Vec<Value>,
    ) -> BoxFuture<'static, Result<ServerAcks, AdapterError>> {
        let s = self.shared.clone();
        let ns = ns.clone();
        Box::pin(async move {
            let expected = s.publisher.num_sub(s.channel(&ns)).await?.saturating_sub(1);
            if expected == 0 {
                return Ok(ServerAcks::default());
            }
            let (tx, rx) = oneshot::channel();
            let pending = move || Pending::ServerSide {
                expected,
                responses: Vec::new(),
                done: tx,
            };
            let data = json!({"packet": data});
            let r = s
                .request(
                    &ns,
                    cw::SERVER_SIDE_EMIT,
                    data,
                    pending,
                    rx,
                    "serverSideEmit responses",
                )
                .await;
            server_acks(r)
        })
    }

    fn server_count(&self, ns: &Namespace) -> BoxFuture<'static, Result<usize, AdapterError>> {
        let s = self.shared.clone();
        let channel = s.channel(ns);
        Box::pin(async move { s.publisher.num_sub(channel).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_and_defaults() {
        assert!(looks_like_a_socket_id("AAAAAAAAAAAAAAAAAAAA"));
        assert!(!looks_like_a_socket_id("lobby"));
        let c = ShardedRedisAdapterConfig::default();
        assert_eq!(c.channel_prefix, "socket.io");
        assert_eq!(c.subscription_mode, SubscriptionMode::Dynamic);
        assert_eq!(c.requests_timeout, Duration::from_secs(5));
    }
}
