//! [`RedisAdapter`]: the cluster adapter of `@socket.io/redis-adapter` (classic pub/sub).
//!
//! Two connections per node, as Node's adapter: one publishes (and asks
//! `PUBSUB NUMSUB`), one is subscribed to, per namespace, the pattern `<key>#<nsp>#*`
//! and the channels `<key>-request#<nsp>#`, `<key>-response#<nsp>#` and
//! `<key>-response#<nsp>#<uid>#`. Each runs on its own task and reconnects by itself.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use super::wire::{self, Channels};
use super::{Adapter, AdapterError, BroadcastOptions, RemoteSocket, ServerAck, ServerAcks};
use crate::proto::Str;
use crate::proto::socketio::Packet;
use crate::sio::{Args, BroadcastOperator, ClusterAcks, Namespace, Room, WeakNamespace};

const LOG: &str = "tether::adapter::redis";

/// Settings of a [`RedisAdapter`] (the options of Node's `createAdapter`).
#[derive(Debug, Clone)]
pub struct RedisAdapterConfig {
    /// The channel prefix (`key`, default `socket.io`).
    pub key: String,
    /// How long to wait for the other nodes' answers (`requestsTimeout`, default 5 s).
    pub requests_timeout: Duration,
    /// Publish answers on the asking node's own channel `<key>-response#<nsp>#<uid>#`
    /// instead of the shared `<key>-response#<nsp>#` (`publishOnSpecificResponseChannel`,
    /// default false as in Node; every node of a cluster must agree).
    pub publish_on_specific_response_channel: bool,
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

impl Default for RedisAdapterConfig {
    fn default() -> Self {
        RedisAdapterConfig {
            key: "socket.io".to_owned(),
            requests_timeout: Duration::from_secs(5),
            publish_on_specific_response_channel: false,
            connect_timeout: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            queue: 65_536,
        }
    }
}

/// The Redis cluster adapter, wire-compatible with Node's `@socket.io/redis-adapter` 8.x
/// (classic pub/sub, msgpack via notepack.io). Cheap to clone: clones are the same node.
///
/// ```no_run
/// # async fn run() -> Result<(), tether::adapter::AdapterError> {
/// use tether::adapter::RedisAdapter;
/// let adapter = RedisAdapter::connect("redis://127.0.0.1:6379").await?;
/// let io = tether::sio::Io::builder().adapter(adapter.clone()).build();
/// adapter.ready(std::time::Duration::from_secs(2)).await?; // subscriptions are live
/// # Ok(()) }
/// ```
///
/// See the [module documentation](super) for what happens during a Redis outage.
#[derive(Clone)]
pub struct RedisAdapter {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("uid", &self.shared.uid)
            .field("key", &self.shared.config.key)
            .field("connected", &self.is_connected())
            .finish()
    }
}

pub(super) enum PubCmd {
    Publish(String, Vec<u8>),
    NumSub(String, oneshot::Sender<Result<usize, AdapterError>>),
}

enum SubCmd {
    Subscribe,
    Barrier(oneshot::Sender<()>),
}

struct NsEntry {
    ns: WeakNamespace,
    channels: Channels,
}

enum Route {
    Request,
    Response,
}

pub(super) enum Pending {
    Fetch {
        ns: Namespace,
        expected: usize,
        count: usize,
        sockets: Vec<RemoteSocket>,
        done: oneshot::Sender<Vec<RemoteSocket>>,
    },
    AllRooms {
        expected: usize,
        count: usize,
        rooms: BTreeSet<Room>,
        done: oneshot::Sender<Vec<Room>>,
    },
    ServerSide {
        expected: usize,
        responses: Vec<Value>,
        done: oneshot::Sender<Vec<Value>>,
    },
}

/// The requests of a node waiting for the other nodes' answers, by request id.
#[derive(Default)]
pub(super) struct Requests(Mutex<HashMap<String, Pending>>);

impl Requests {
    /// Whether `id` is one of this node's requests.
    pub(super) fn contains(&self, id: &str) -> bool {
        lock(&self.0).contains_key(id)
    }

    /// One node's answer `resp` to request `id` (`sockets`, `rooms`, or the value at
    /// `answer` for a server-side event); completes the request with the last one.
    pub(super) fn answer(&self, id: &str, resp: &Value, answer: &str) {
        let mut requests = lock(&self.0);
        let Some(pending) = requests.get_mut(id) else {
            return;
        };
        let finished = match pending {
            Pending::Fetch {
                ns,
                expected,
                count,
                sockets,
                ..
            } => {
                *count += 1;
                let Some(list) = resp.get("sockets").and_then(Value::as_array) else {
                    return;
                };
                sockets.extend(list.iter().filter_map(|v| RemoteSocket::from_json(ns, v)));
                *count >= *expected
            }
            Pending::AllRooms {
                expected,
                count,
                rooms,
                ..
            } => {
                *count += 1;
                let Some(list) = resp.get("rooms").and_then(Value::as_array) else {
                    return;
                };
                rooms.extend(list.iter().filter_map(wire::room_of));
                *count >= *expected
            }
            Pending::ServerSide {
                expected,
                responses,
                ..
            } => {
                responses.push(resp.get(answer).cloned().unwrap_or(Value::Null));
                responses.len() >= *expected
            }
        };
        if finished && let Some(p) = requests.remove(id) {
            drop(requests);
            match p {
                Pending::Fetch { sockets, done, .. } => {
                    let _ = done.send(sockets);
                }
                Pending::AllRooms { rooms, done, .. } => {
                    let _ = done.send(rooms.into_iter().collect());
                }
                Pending::ServerSide {
                    responses, done, ..
                } => {
                    let _ = done.send(responses);
                }
            }
        }
    }

    /// Register `pending` under a new id of `id_len` characters, publish the request made
    /// from that id, and wait for the answers (`timeout` at most). On failure, the
    /// request is returned as far as it got.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn request<T>(
        &self,
        publisher: &Publisher,
        timeout: Duration,
        id_len: usize,
        channel: String,
        make: impl FnOnce(&str) -> (Pending, Vec<u8>),
        rx_of: oneshot::Receiver<T>,
        what: &'static str,
    ) -> Result<T, (AdapterError, Option<Pending>)> {
        let id = wire::uid(id_len);
        let (pending, msg) = make(&id);
        lock(&self.0).insert(id.clone(), pending);
        if let Err(e) = publisher.publish(channel, msg) {
            let p = lock(&self.0).remove(&id);
            return Err((e, p));
        }
        match tokio::time::timeout(timeout, rx_of).await {
            Ok(Ok(v)) => Ok(v),
            _ => {
                let p = lock(&self.0).remove(&id);
                Err((AdapterError::Timeout(what), p))
            }
        }
    }
}

struct Shared {
    uid: String,
    config: RedisAdapterConfig,
    runtime: tokio::runtime::Handle,
    publisher: Arc<Publisher>,
    sub_tx: mpsc::UnboundedSender<SubCmd>,
    /// nsp -> its namespace and channels.
    namespaces: RwLock<HashMap<String, NsEntry>>,
    /// pattern -> nsp.
    patterns: RwLock<HashMap<String, String>>,
    /// request/response channel -> (nsp, kind).
    routes: RwLock<HashMap<String, (String, Route)>>,
    requests: Requests,
    ack_requests: Mutex<HashMap<String, ClusterAcks>>,
    sub_up: AtomicBool,
    _closed: watch::Sender<()>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

impl RedisAdapter {
    /// Connect to Redis at `url` (`redis://[user:password@]host:port[/db]`) with the
    /// default settings. Must run inside a tokio runtime: the adapter's tasks run on it.
    pub async fn connect(url: &str) -> Result<RedisAdapter, AdapterError> {
        Self::connect_with(url, RedisAdapterConfig::default()).await
    }

    /// Connect to Redis at `url` with these settings. Fails when Redis cannot be reached
    /// now; afterwards, the adapter reconnects by itself.
    pub async fn connect_with(
        url: &str,
        config: RedisAdapterConfig,
    ) -> Result<RedisAdapter, AdapterError> {
        let client = redis::Client::open(url).map_err(|e| AdapterError::Config(e.to_string()))?;
        let publisher = connect_pub(&client, &config).await?;
        let pubsub = connect_sub(&client, &config).await?;
        let publisher = Publisher::start(&client, &config, publisher, false);
        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = watch::channel(());
        let shared = Arc::new(Shared {
            uid: wire::uid(6),
            config,
            runtime: tokio::runtime::Handle::current(),
            publisher,
            sub_tx,
            namespaces: RwLock::new(HashMap::new()),
            patterns: RwLock::new(HashMap::new()),
            routes: RwLock::new(HashMap::new()),
            requests: Requests::default(),
            ack_requests: Mutex::new(HashMap::new()),
            sub_up: AtomicBool::new(false),
            _closed: closed_tx,
        });
        let weak = Arc::downgrade(&shared);
        shared.runtime.spawn(sub_task(
            weak,
            client,
            shared.config.clone(),
            pubsub,
            sub_rx,
            closed_rx,
        ));
        Ok(RedisAdapter { shared })
    }

    /// This node's id in the cluster (6 characters, as Node's).
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

    /// Wait until the subscriptions of every namespace created so far are live on Redis
    /// (after a namespace is created or Redis came back), at most `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), AdapterError> {
        let (tx, rx) = oneshot::channel();
        let sent = self.shared.sub_tx.send(SubCmd::Barrier(tx)).is_ok();
        self.shared.publisher.ready(sent, rx, timeout).await
    }
}

pub(super) async fn connect_pub(
    client: &redis::Client,
    config: &RedisAdapterConfig,
) -> Result<redis::aio::MultiplexedConnection, AdapterError> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(config.connect_timeout)
        .set_response_timeout(config.requests_timeout);
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(|e| AdapterError::Unavailable(e.to_string()))
}

pub(super) async fn connect_sub(
    client: &redis::Client,
    config: &RedisAdapterConfig,
) -> Result<redis::aio::PubSub, AdapterError> {
    match tokio::time::timeout(config.connect_timeout, client.get_async_pubsub()).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(AdapterError::Unavailable(e.to_string())),
        Err(_) => Err(AdapterError::Unavailable("connection timeout".into())),
    }
}

pub(super) fn backoff(current: Duration, config: &RedisAdapterConfig) -> Duration {
    (current * 2)
        .min(config.reconnect_max)
        .max(config.reconnect_min)
}

/// The publishing side of a Redis adapter (both the classic and the sharded one): a
/// bounded queue to the task that owns the publishing connection, and that connection's
/// state. Publishes are `PUBLISH` (classic) or `SPUBLISH` (sharded), node counts
/// `PUBSUB NUMSUB` or `PUBSUB SHARDNUMSUB`.
pub(super) struct Publisher {
    tx: mpsc::Sender<PubCmd>,
    up: AtomicBool,
    /// The subscriber lost its connection: the publisher's is most likely dead too.
    reset: tokio::sync::Notify,
    dropped: AtomicU64,
}

impl Publisher {
    /// Start the publishing task on the current runtime with the connection `first`.
    pub(super) fn start(
        client: &redis::Client,
        config: &RedisAdapterConfig,
        first: redis::aio::MultiplexedConnection,
        sharded: bool,
    ) -> Arc<Publisher> {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let publisher = Arc::new(Publisher {
            tx,
            up: AtomicBool::new(true),
            reset: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(pub_task(
            Arc::downgrade(&publisher),
            client.clone(),
            config.clone(),
            first,
            rx,
            sharded,
        ));
        publisher
    }

    /// Whether the publishing connection is up.
    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Messages lost so far.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Ask for a reconnection (the subscriber lost its connection).
    pub(super) fn reset(&self) {
        self.reset.notify_one();
    }

    /// Wait for the subscriber's answer to a barrier (`sent`: the barrier was queued),
    /// then until this connection is up; `timeout` at most in all.
    pub(super) async fn ready(
        &self,
        sent: bool,
        barrier: oneshot::Receiver<()>,
        timeout: Duration,
    ) -> Result<(), AdapterError> {
        if !sent {
            return Err(AdapterError::Unavailable("adapter closed".into()));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, barrier).await {
            Ok(Ok(())) => {}
            _ => return Err(AdapterError::Timeout("the redis subscriptions")),
        }
        self.wait_up(deadline).await
    }

    /// Tell `acks` the number of nodes (the subscribers of `channel`); 1 when unknown.
    pub(super) async fn count_servers(&self, channel: String, acks: &ClusterAcks) {
        match self.num_sub(channel).await {
            Ok(n) => acks.set_server_count(n),
            Err(e) => {
                tracing::debug!(target: LOG, error = %e, "server count unknown: local acks only");
                acks.set_server_count(1);
            }
        }
    }

    /// Wait until the connection is up, until `deadline` at most.
    async fn wait_up(&self, deadline: tokio::time::Instant) -> Result<(), AdapterError> {
        while !self.is_up() {
            if tokio::time::Instant::now() >= deadline {
                return Err(AdapterError::Timeout("the redis publisher"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Queue a message; fails (and counts it lost) while Redis is unreachable.
    pub(super) fn publish(&self, channel: String, msg: Vec<u8>) -> Result<(), AdapterError> {
        if !self.is_up() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(AdapterError::Unavailable("redis unreachable".into()));
        }
        self.tx
            .try_send(PubCmd::Publish(channel, msg))
            .map_err(|e| {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                AdapterError::Unavailable(match e {
                    mpsc::error::TrySendError::Full(_) => "publish queue full".into(),
                    mpsc::error::TrySendError::Closed(_) => "adapter closed".into(),
                })
            })
    }

    /// The number of subscribers of `channel` (the nodes of the cluster).
    pub(super) async fn num_sub(&self, channel: String) -> Result<usize, AdapterError> {
        if !self.is_up() {
            return Err(AdapterError::Unavailable("redis unreachable".into()));
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .try_send(PubCmd::NumSub(channel, tx))
            .map_err(|_| AdapterError::Unavailable("publish queue full".into()))?;
        rx.await
            .map_err(|_| AdapterError::Unavailable("adapter closed".into()))?
    }
}

/// The publishing connection: sends queued commands in pipelines, in order; reconnects
/// with backoff. While it is down, queued commands fail (publishes are lost).
async fn pub_task(
    shared: Weak<Publisher>,
    client: redis::Client,
    config: RedisAdapterConfig,
    first: redis::aio::MultiplexedConnection,
    mut rx: mpsc::Receiver<PubCmd>,
    sharded: bool,
) {
    let (publish, numsub) = if sharded {
        ("SPUBLISH", "SHARDNUMSUB")
    } else {
        ("PUBLISH", "NUMSUB")
    };
    let mut conn = Some(first);
    let mut delay = config.reconnect_min;
    let mut next_attempt = tokio::time::Instant::now();
    let mut batch: Vec<PubCmd> = Vec::new();
    loop {
        if conn.is_none() {
            tokio::select! {
                _ = tokio::time::sleep_until(next_attempt) => {
                    match connect_pub(&client, &config).await {
                        Ok(c) => {
                            conn = Some(c);
                            delay = config.reconnect_min;
                            if let Some(s) = shared.upgrade() {
                                // A reset asked before this new connection is moot.
                                let _ = futures_util::FutureExt::now_or_never(s.reset.notified());
                                s.up.store(true, Ordering::Release);
                            }
                            tracing::info!(target: LOG, "redis publisher reconnected");
                        }
                        Err(e) => {
                            tracing::debug!(target: LOG, error = %e, "redis publisher: reconnection failed");
                            delay = backoff(delay, &config);
                            next_attempt = tokio::time::Instant::now() + delay;
                        }
                    }
                    continue;
                }
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        fail(&shared, cmd);
                        continue;
                    }
                    None => return,
                },
            }
        }
        let reset = async {
            match shared.upgrade() {
                Some(s) => s.reset.notified().await,
                None => std::future::pending().await,
            }
        };
        let first = tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(c) => c,
                None => return,
            },
            _ = reset => {
                tracing::debug!(target: LOG, "redis publisher: reconnecting with the subscriber");
                if let Some(s) = shared.upgrade() {
                    s.up.store(false, Ordering::Release);
                }
                conn = None;
                next_attempt = tokio::time::Instant::now() + config.reconnect_min;
                delay = config.reconnect_min;
                continue;
            }
        };
        batch.push(first);
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        for c in &batch {
            match c {
                PubCmd::Publish(ch, msg) => {
                    pipe.cmd(publish).arg(ch).arg(msg.as_slice());
                }
                PubCmd::NumSub(ch, _) => {
                    pipe.cmd("PUBSUB").arg(numsub).arg(ch);
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match pipe.query_async::<Vec<redis::Value>>(c).await {
            Ok(results) => {
                for (cmd, v) in batch.drain(..).zip(results) {
                    if let PubCmd::NumSub(_, tx) = cmd {
                        let _ = tx.send(parse_numsub(&v));
                    }
                }
                batch.clear();
            }
            Err(e) => {
                tracing::warn!(target: LOG, error = %e, "redis publisher connection lost; reconnecting");
                if let Some(s) = shared.upgrade() {
                    s.up.store(false, Ordering::Release);
                }
                conn = None;
                next_attempt = tokio::time::Instant::now();
                delay = config.reconnect_min;
                for cmd in batch.drain(..) {
                    fail(&shared, cmd);
                }
            }
        }
    }
}

fn fail(shared: &Weak<Publisher>, cmd: PubCmd) {
    match cmd {
        PubCmd::Publish(..) => {
            if let Some(s) = shared.upgrade() {
                s.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        PubCmd::NumSub(_, tx) => {
            let _ = tx.send(Err(AdapterError::Unavailable("redis unreachable".into())));
        }
    }
}

pub(super) fn parse_numsub(v: &redis::Value) -> Result<usize, AdapterError> {
    let n = match v {
        redis::Value::Array(items) => items.get(1).and_then(|n| match n {
            redis::Value::Int(i) => usize::try_from(*i).ok(),
            redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }),
        redis::Value::Map(items) => items.first().and_then(|(_, n)| match n {
            redis::Value::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        }),
        _ => None,
    };
    n.ok_or_else(|| AdapterError::Unavailable(format!("unexpected PUBSUB NUMSUB reply {v:?}")))
}

/// The subscribed connection: (re)subscribes every namespace's channels and dispatches
/// what arrives; reconnects with backoff.
async fn sub_task(
    shared: Weak<Shared>,
    client: redis::Client,
    config: RedisAdapterConfig,
    first: redis::aio::PubSub,
    mut cmds: mpsc::UnboundedReceiver<SubCmd>,
    mut closed: watch::Receiver<()>,
) {
    let mut first = Some(first);
    let mut delay = config.reconnect_min;
    let mut was_down = false;
    loop {
        let pubsub = match first.take() {
            Some(p) => p,
            None => match connect_sub(&client, &config).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(target: LOG, error = %e, "redis subscriber: reconnection failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = closed.changed() => return,
                    }
                    delay = backoff(delay, &config);
                    continue;
                }
            },
        };
        let (mut sink, mut stream) = pubsub.split();
        let Some((channels, patterns)) = shared.upgrade().map(|s| s.subscriptions()) else {
            return;
        };
        let subscribed = async {
            if !channels.is_empty() {
                sink.subscribe(&channels).await?;
            }
            if !patterns.is_empty() {
                sink.psubscribe(&patterns).await?;
            }
            Ok::<_, redis::RedisError>(())
        }
        .await;
        if let Err(e) = subscribed {
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
        let mut known = (channels, patterns);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => match shared.upgrade() {
                        Some(s) => s.on_message(&msg),
                        None => return,
                    },
                    None => break,
                },
                cmd = cmds.recv() => match cmd {
                    Some(SubCmd::Subscribe) => {
                        let Some((channels, patterns)) = shared.upgrade().map(|s| s.subscriptions()) else {
                            return;
                        };
                        let new_channels: Vec<String> = channels.iter().filter(|c| !known.0.contains(c)).cloned().collect();
                        let new_patterns: Vec<String> = patterns.iter().filter(|c| !known.1.contains(c)).cloned().collect();
                        let r = async {
                            if !new_channels.is_empty() {
                                sink.subscribe(&new_channels).await?;
                            }
                            if !new_patterns.is_empty() {
                                sink.psubscribe(&new_patterns).await?;
                            }
                            Ok::<_, redis::RedisError>(())
                        }.await;
                        if r.is_err() {
                            break;
                        }
                        known = (channels, patterns);
                    }
                    Some(SubCmd::Barrier(tx)) => {
                        let _ = tx.send(());
                    }
                    None => return,
                },
                _ = closed.changed() => return,
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
    fn subscriptions(&self) -> (Vec<String>, Vec<String>) {
        let ns = read(&self.namespaces);
        let mut channels = Vec::with_capacity(ns.len() * 3);
        let mut patterns = Vec::with_capacity(ns.len());
        for e in ns.values() {
            channels.push(e.channels.request.clone());
            channels.push(e.channels.response.clone());
            channels.push(e.channels.specific_response.clone());
            patterns.push(e.channels.pattern());
        }
        (channels, patterns)
    }

    fn channels(&self, ns: &Namespace) -> Channels {
        match read(&self.namespaces).get(ns.name().as_str()) {
            Some(e) => e.channels.clone(),
            None => Channels::new(&self.config.key, ns.name().as_str(), &self.uid),
        }
    }

    /// Answer a request (on the asker's own channel with
    /// `publish_on_specific_response_channel`).
    fn respond(&self, ch: &Channels, request: &Value, msg: Vec<u8>) {
        let channel = match request.get("uid").and_then(Value::as_str) {
            Some(uid) if self.config.publish_on_specific_response_channel => {
                format!("{}{uid}#", ch.response)
            }
            _ => ch.response.clone(),
        };
        if let Err(e) = self.publisher.publish(channel, msg) {
            tracing::debug!(target: LOG, error = %e, "response not published");
        }
    }

    fn on_message(self: &Arc<Self>, msg: &redis::Msg) {
        let channel = msg.get_channel_name();
        let payload = msg.get_payload_bytes();
        if let Ok(Some(pattern)) = msg.get_pattern::<Option<String>>() {
            let nsp = read(&self.patterns).get(&pattern).cloned();
            if let Some(nsp) = nsp {
                self.on_broadcast(&nsp, channel, payload);
            }
            return;
        }
        let route = read(&self.routes)
            .get(channel)
            .map(|(nsp, r)| (nsp.clone(), matches!(r, Route::Request)));
        match route {
            Some((nsp, true)) => self.on_request(&nsp, payload),
            Some((_, false)) => self.on_response(payload),
            None => {}
        }
    }

    fn namespace(&self, nsp: &str) -> Option<(Namespace, Channels)> {
        let map = read(&self.namespaces);
        let e = map.get(nsp)?;
        Some((e.ns.upgrade()?, e.channels.clone()))
    }

    /// A broadcast from another node (or an emitter).
    fn on_broadcast(&self, nsp: &str, channel: &str, payload: &[u8]) {
        let Some((ns, ch)) = self.namespace(nsp) else {
            return;
        };
        let Some(rest) = channel.strip_prefix(ch.broadcast.as_str()) else {
            return;
        };
        let room = rest.strip_suffix('#').unwrap_or(rest);
        if !room.is_empty() && !ns.has_room(room) {
            return; // no local member: nothing to do (as Node's adapter)
        }
        let Some((uid, packet, opts)) = wire::decode_broadcast(payload) else {
            tracing::debug!(target: LOG, channel, "malformed broadcast ignored");
            return;
        };
        if uid == self.uid {
            return;
        }
        let Some(packet) = wire::packet_from_mp(&packet, ns.name()) else {
            tracing::debug!(target: LOG, channel, "broadcast of an unsupported packet ignored");
            return;
        };
        let event = packet.event_name().unwrap_or("").to_owned();
        let _ = BroadcastOperator::from_options(ns, &opts).emit_packet(&event, &packet);
    }

    fn on_request(self: &Arc<Self>, nsp: &str, payload: &[u8]) {
        let Some((ns, ch)) = self.namespace(nsp) else {
            return;
        };
        let Some((req, packet)) = wire::decode_message(payload) else {
            tracing::debug!(target: LOG, "malformed request ignored");
            return;
        };
        let Some(kind) = req.get("type").and_then(Value::as_u64) else {
            return;
        };
        let request_id = req
            .get("requestId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let from_self = req.get("uid").and_then(Value::as_str) == Some(self.uid.as_str());
        let mine = |id: &Option<String>| id.as_ref().is_some_and(|id| self.requests.contains(id));
        let local_op =
            |v: &Value| BroadcastOperator::from_options(ns.clone(), &wire::options_from_json(v));
        match kind {
            wire::SOCKETS => {
                if from_self || mine(&request_id) {
                    return;
                }
                let opts = BroadcastOptions {
                    rooms: rooms(req.get("rooms")),
                    ..Default::default()
                };
                let ids: Vec<String> = BroadcastOperator::from_options(ns.clone(), &opts)
                    .sockets()
                    .iter()
                    .map(|s| s.id().to_string())
                    .collect();
                let resp = json!({"requestId": request_id, "sockets": ids});
                self.respond(&ch, &req, resp.to_string().into_bytes());
            }
            wire::ALL_ROOMS => {
                if from_self || mine(&request_id) {
                    return;
                }
                let rooms: Vec<String> = ns.rooms().iter().map(|r| r.to_string()).collect();
                let resp = json!({"requestId": request_id, "rooms": rooms});
                self.respond(&ch, &req, resp.to_string().into_bytes());
            }
            wire::REMOTE_JOIN | wire::REMOTE_LEAVE | wire::REMOTE_DISCONNECT => {
                if from_self {
                    return; // applied locally when asked
                }
                if let Some(opts) = req.get("opts") {
                    let op = local_op(opts);
                    match kind {
                        wire::REMOTE_JOIN => {
                            for room in rooms(req.get("rooms")) {
                                op.join(room);
                            }
                        }
                        wire::REMOTE_LEAVE => {
                            for room in rooms(req.get("rooms")) {
                                op.leave(room.as_str());
                            }
                        }
                        _ => {
                            let close = req.get("close").and_then(Value::as_bool).unwrap_or(false);
                            op.disconnect_sockets(close);
                        }
                    }
                    return;
                }
                // The older form: one socket by id, answered.
                let Some(socket) = req
                    .get("sid")
                    .and_then(Value::as_str)
                    .and_then(|sid| ns.get_socket(sid))
                else {
                    return;
                };
                let room = req.get("room").and_then(wire::room_of);
                match (kind, room) {
                    (wire::REMOTE_JOIN, Some(room)) => socket.join(room),
                    (wire::REMOTE_LEAVE, Some(room)) => socket.leave(room.as_str()),
                    (wire::REMOTE_DISCONNECT, _) => {
                        let close = req.get("close").and_then(Value::as_bool).unwrap_or(false);
                        ns.to(socket.id().clone()).local().disconnect_sockets(close);
                    }
                    _ => return,
                }
                let resp = json!({"requestId": request_id});
                self.respond(&ch, &req, resp.to_string().into_bytes());
            }
            wire::REMOTE_FETCH => {
                if from_self || mine(&request_id) {
                    return;
                }
                let op = local_op(req.get("opts").unwrap_or(&Value::Null));
                let sockets: Vec<Value> = op
                    .sockets()
                    .iter()
                    .map(|s| RemoteSocket::from_local(s).to_json())
                    .collect();
                let resp = json!({"requestId": request_id, "sockets": sockets});
                self.respond(&ch, &req, resp.to_string().into_bytes());
            }
            wire::SERVER_SIDE_EMIT => {
                if from_self {
                    return;
                }
                let data = match req.get("data") {
                    Some(Value::Array(a)) => a.clone(),
                    _ => return,
                };
                let ack = request_id.map(|id| {
                    let shared = Arc::downgrade(self);
                    let channel = ch.response.clone();
                    ServerAck::new(move |v| {
                        if let Some(s) = shared.upgrade() {
                            let resp =
                                json!({"type": wire::SERVER_SIDE_EMIT, "requestId": id, "data": v});
                            let _ = s
                                .publisher
                                .publish(channel.clone(), resp.to_string().into_bytes());
                        }
                    })
                });
                ns.dispatch_server_side(data, ack);
            }
            wire::BROADCAST => {
                let Some(id) = request_id else { return };
                if from_self || lock(&self.ack_requests).contains_key(&id) {
                    return;
                }
                let Some(packet) = packet.and_then(|p| wire::packet_from_mp(&p, ns.name())) else {
                    return;
                };
                let opts = wire::options_from_json(req.get("opts").unwrap_or(&Value::Null));
                let timeout = opts.flags.timeout.unwrap_or(self.config.requests_timeout);
                let shared = Arc::downgrade(self);
                let (rid, req2, ch2) = (id.clone(), req.clone(), ch.clone());
                let count = ask_local(&ns, packet, &opts, timeout, move |first, bins| {
                    if let Some(s) = shared.upgrade() {
                        s.respond(&ch2, &req2, wire::encode_broadcast_ack(&rid, &first, &bins));
                    }
                });
                let resp = json!({"type": wire::BROADCAST_CLIENT_COUNT, "requestId": id, "clientCount": count});
                self.respond(&ch, &req, resp.to_string().into_bytes());
            }
            other => {
                tracing::debug!(target: LOG, kind = other, "unknown request type ignored");
            }
        }
    }

    fn on_response(&self, payload: &[u8]) {
        let Some((resp, packet)) = wire::decode_message(payload) else {
            return;
        };
        let Some(id) = resp.get("requestId").and_then(Value::as_str) else {
            return;
        };
        let acks = lock(&self.ack_requests).get(id).cloned();
        if let Some(acks) = acks {
            match resp.get("type").and_then(Value::as_u64) {
                Some(wire::BROADCAST_CLIENT_COUNT) => {
                    let n = resp.get("clientCount").and_then(Value::as_u64).unwrap_or(0);
                    acks.server_replied(n as usize);
                }
                Some(wire::BROADCAST_ACK) => {
                    let mut bins = Vec::new();
                    let v = packet.map_or(Value::Null, |p| wire::mp_to_json(&p, &mut bins));
                    acks.reply(Args::from_parts(vec![v], bins));
                }
                _ => {}
            }
            return;
        }
        self.requests.answer(id, &resp, "data");
    }

    /// Register `pending` under a new id, publish the request made from that id, and wait
    /// for the answers (the request timeout at most).
    async fn request<T>(
        self: &Arc<Self>,
        channel: String,
        make: impl FnOnce(&str) -> (Pending, Vec<u8>),
        rx_of: oneshot::Receiver<T>,
        what: &'static str,
    ) -> Result<T, (AdapterError, Option<Pending>)> {
        let timeout = self.config.requests_timeout;
        (self.requests)
            .request(&self.publisher, timeout, 6, channel, make, rx_of, what)
            .await
    }
}

/// Deliver a broadcast with acknowledgement another node asked for to the local targets
/// of `opts` (a fresh ack id); `reply` gets each client's first reply argument and its
/// binary attachments. Returns the number of clients asked.
pub(super) fn ask_local(
    ns: &Namespace,
    packet: Packet,
    opts: &BroadcastOptions,
    timeout: Duration,
    reply: impl Fn(Value, Vec<bytes::Bytes>) + Send + Sync + 'static,
) -> usize {
    let op = BroadcastOperator::from_options(ns.clone(), opts);
    let mut packet = packet;
    packet.id = Some(ns.next_ack_id());
    op.deliver_with_ack(
        &packet,
        timeout,
        Arc::new(move |_sid: Str, r| {
            if let Ok(mut args) = r {
                let bins = std::mem::take(&mut args.bins);
                let first = args.into_values().into_iter().next();
                reply(first.unwrap_or(Value::Null), bins);
            }
        }),
    )
}

/// The answers to a server-side event with acks from the outcome of its request: on a
/// timeout, those that arrived and how many are missing.
pub(super) fn server_acks(
    r: Result<Vec<Value>, (AdapterError, Option<Pending>)>,
) -> Result<ServerAcks, AdapterError> {
    match r {
        Ok(responses) => Ok(ServerAcks {
            responses,
            missing: 0,
        }),
        Err((
            AdapterError::Timeout(_),
            Some(Pending::ServerSide {
                expected,
                responses,
                ..
            }),
        )) => {
            let missing = expected.saturating_sub(responses.len());
            Ok(ServerAcks { responses, missing })
        }
        Err((e, _)) => Err(e),
    }
}

pub(super) fn rooms(v: Option<&Value>) -> Vec<Room> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(wire::room_of).collect())
        .unwrap_or_default()
}

impl Adapter for RedisAdapter {
    fn init(&self, ns: &Namespace) {
        let s = &self.shared;
        let nsp = ns.name().to_string();
        let channels = Channels::new(&s.config.key, &nsp, &s.uid);
        write(&s.patterns).insert(channels.pattern(), nsp.clone());
        {
            let mut routes = write(&s.routes);
            routes.insert(channels.request.clone(), (nsp.clone(), Route::Request));
            routes.insert(channels.response.clone(), (nsp.clone(), Route::Response));
            routes.insert(
                channels.specific_response.clone(),
                (nsp.clone(), Route::Response),
            );
        }
        write(&s.namespaces).insert(
            nsp,
            NsEntry {
                ns: ns.downgrade(),
                channels,
            },
        );
        let _ = s.sub_tx.send(SubCmd::Subscribe);
    }

    fn broadcast(
        &self,
        ns: &Namespace,
        packet: &Packet,
        opts: &BroadcastOptions,
    ) -> Result<(), AdapterError> {
        let s = &self.shared;
        let ch = s.channels(ns);
        s.publisher.publish(
            ch.broadcast_channel(opts),
            wire::encode_broadcast(&s.uid, packet, opts),
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
        let ch = s.channels(ns);
        let id = wire::uid(6);
        lock(&s.ack_requests).insert(id.clone(), acks.clone());
        let msg = wire::encode_broadcast_request(&s.uid, &id, packet, opts);
        if let Err(e) = s.publisher.publish(ch.request.clone(), msg) {
            lock(&s.ack_requests).remove(&id);
            return Err(e);
        }
        let timeout = opts.flags.timeout.unwrap_or(s.config.requests_timeout);
        s.runtime.clone().spawn(async move {
            s.publisher.count_servers(ch.request.clone(), &acks).await;
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
        self.room_request(ns, wire::REMOTE_JOIN, opts, Some(rooms), None)
    }

    fn del_sockets(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
        rooms: &[Room],
    ) -> Result<(), AdapterError> {
        self.room_request(ns, wire::REMOTE_LEAVE, opts, Some(rooms), None)
    }

    fn disconnect_sockets(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
        close: bool,
    ) -> Result<(), AdapterError> {
        self.room_request(ns, wire::REMOTE_DISCONNECT, opts, None, Some(close))
    }

    fn fetch_sockets(
        &self,
        ns: &Namespace,
        opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<RemoteSocket>, AdapterError>> {
        let s = self.shared.clone();
        let ns = ns.clone();
        let targets = wire::targets_json(opts);
        Box::pin(async move {
            let ch = s.channels(&ns);
            let expected = s.publisher.num_sub(ch.request.clone()).await?;
            if expected <= 1 {
                return Ok(Vec::new());
            }
            let (tx, rx) = oneshot::channel();
            let uid = s.uid.clone();
            s.request(
                ch.request.clone(),
                |id| {
                    let req = json!({"uid": uid, "requestId": id, "type": wire::REMOTE_FETCH, "opts": targets});
                    (
                        Pending::Fetch { ns, expected, count: 1, sockets: Vec::new(), done: tx },
                        req.to_string().into_bytes(),
                    )
                },
                rx,
                "fetchSockets response",
            )
            .await
            .map_err(|(e, _)| e)
        })
    }

    fn server_side_emit(&self, ns: &Namespace, data: Vec<Value>) -> Result<(), AdapterError> {
        let s = &self.shared;
        let req = json!({"uid": s.uid, "type": wire::SERVER_SIDE_EMIT, "data": data});
        s.publisher
            .publish(s.channels(ns).request, req.to_string().into_bytes())
    }

    fn server_side_emit_with_ack(
        &self,
        ns: &Namespace,
        data: Vec<Value>,
    ) -> BoxFuture<'static, Result<ServerAcks, AdapterError>> {
        let s = self.shared.clone();
        let ns = ns.clone();
        Box::pin(async move {
            let ch = s.channels(&ns);
            let expected = s
                .publisher
                .num_sub(ch.request.clone())
                .await?
                .saturating_sub(1);
            if expected == 0 {
                return Ok(ServerAcks::default());
            }
            let (tx, rx) = oneshot::channel();
            let uid = s.uid.clone();
            let r = s
                .request(
                    ch.request.clone(),
                    |id| {
                        let req = json!({"uid": uid, "requestId": id, "type": wire::SERVER_SIDE_EMIT, "data": data});
                        (
                            Pending::ServerSide { expected, responses: Vec::new(), done: tx },
                            req.to_string().into_bytes(),
                        )
                    },
                    rx,
                    "serverSideEmit responses",
                )
                .await;
            server_acks(r)
        })
    }

    fn server_count(&self, ns: &Namespace) -> BoxFuture<'static, Result<usize, AdapterError>> {
        let s = self.shared.clone();
        let ns = ns.clone();
        Box::pin(async move {
            let ch = s.channels(&ns);
            s.publisher.num_sub(ch.request).await
        })
    }

    fn all_rooms(&self, ns: &Namespace) -> BoxFuture<'static, Result<Vec<Room>, AdapterError>> {
        let s = self.shared.clone();
        let ns = ns.clone();
        Box::pin(async move {
            let ch = s.channels(&ns);
            let expected = s.publisher.num_sub(ch.request.clone()).await?;
            if expected <= 1 {
                return Ok(Vec::new());
            }
            let (tx, rx) = oneshot::channel();
            let uid = s.uid.clone();
            s.request(
                ch.request.clone(),
                |id| {
                    let req = json!({"uid": uid, "requestId": id, "type": wire::ALL_ROOMS});
                    (
                        Pending::AllRooms {
                            expected,
                            count: 1,
                            rooms: BTreeSet::new(),
                            done: tx,
                        },
                        req.to_string().into_bytes(),
                    )
                },
                rx,
                "allRooms response",
            )
            .await
            .map_err(|(e, _)| e)
        })
    }
}

impl RedisAdapter {
    fn room_request(
        &self,
        ns: &Namespace,
        kind: u64,
        opts: &BroadcastOptions,
        rooms: Option<&[Room]>,
        close: Option<bool>,
    ) -> Result<(), AdapterError> {
        let s = &self.shared;
        let mut req = json!({"uid": s.uid, "type": kind, "opts": wire::targets_json(opts)});
        if let Some(rooms) = rooms {
            req["rooms"] = Value::from(rooms.iter().map(|r| r.as_str()).collect::<Vec<_>>());
        }
        if let Some(close) = close {
            req["close"] = Value::Bool(close);
        }
        s.publisher
            .publish(s.channels(ns).request, req.to_string().into_bytes())
    }
}
