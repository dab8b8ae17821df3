//! [`RedisEmitter`]: emit to a cluster's sockets through Redis from a process that is not
//! a server, as Node's `@socket.io/redis-emitter` (5.x) does.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::wire::{self, Channels};
use super::{AdapterError, BroadcastFlags, BroadcastOptions};
use crate::proto::Str;
use crate::proto::socketio::RESERVED_EVENTS;
use crate::sio::{Args, Room};

/// The uid the emitter's messages carry (as Node's emitter: no server ignores them).
const UID: &str = "emitter";

struct Conn {
    client: redis::Client,
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

/// Emits to the sockets of a cluster of servers using the Redis adapter (tether's
/// [`super::RedisAdapter`] or Node's `@socket.io/redis-adapter`), without being a server.
/// Cheap to clone. Each call publishes one message and returns once Redis took it (a lost
/// connection is re-established on the next call).
///
/// ```no_run
/// # async fn run() -> Result<(), tether::adapter::AdapterError> {
/// use tether::adapter::RedisEmitter;
/// let emitter = RedisEmitter::connect("redis://127.0.0.1:6379").await?;
/// emitter.emit("time", &"12:00").await?;                    // every socket of `/`
/// emitter.to("room1").emit("news", &"hello room").await?;   // sockets in room1
/// emitter.of("/admin").except("muted").emit("alert", &1).await?;
/// emitter.to("room1").sockets_join("room2").await?;         // socketsJoin
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisEmitter {
    conn: Arc<Conn>,
    key: String,
    nsp: Str,
}

impl fmt::Debug for RedisEmitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEmitter")
            .field("key", &self.key)
            .field("nsp", &self.nsp)
            .finish()
    }
}

impl RedisEmitter {
    /// Connect to Redis at `url`; emits go to namespace `/` with the channel prefix
    /// `socket.io`.
    pub async fn connect(url: &str) -> Result<RedisEmitter, AdapterError> {
        let client = redis::Client::open(url).map_err(|e| AdapterError::Config(e.to_string()))?;
        let c = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| AdapterError::Unavailable(e.to_string()))?;
        Ok(RedisEmitter {
            conn: Arc::new(Conn {
                client,
                conn: Mutex::new(Some(c)),
            }),
            key: "socket.io".to_owned(),
            nsp: Str::from_static("/"),
        })
    }

    /// The same emitter with another channel prefix (the adapters' `key`).
    pub fn with_key(mut self, key: impl Into<String>) -> RedisEmitter {
        self.key = key.into();
        self
    }

    /// An emitter for namespace `nsp` (a leading `/` is added when missing).
    pub fn of(&self, nsp: &str) -> RedisEmitter {
        let nsp = if nsp.starts_with('/') {
            Str::copy_from(nsp)
        } else {
            Str::from(format!("/{nsp}"))
        };
        RedisEmitter {
            conn: self.conn.clone(),
            key: self.key.clone(),
            nsp,
        }
    }

    fn operator(&self) -> EmitterOperator {
        EmitterOperator {
            emitter: self.clone(),
            opts: BroadcastOptions::default(),
        }
    }

    /// Target the sockets in `room`.
    pub fn to(&self, room: impl Into<Room>) -> EmitterOperator {
        self.operator().to(room)
    }

    /// Leave out the sockets in `room`.
    pub fn except(&self, room: impl Into<Room>) -> EmitterOperator {
        self.operator().except(room)
    }

    /// Volatile: dropped for sockets that cannot take it now.
    pub fn volatile(&self) -> EmitterOperator {
        self.operator().volatile()
    }

    /// Emit to every socket of the namespace, with one argument.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), AdapterError> {
        self.operator().emit(event, data).await
    }

    /// Emit to every socket of the namespace.
    pub async fn emit_args(&self, event: &str, args: impl Into<Args>) -> Result<(), AdapterError> {
        self.operator().emit_args(event, args).await
    }

    /// Make every socket join `room`.
    pub async fn sockets_join(&self, room: impl Into<Room>) -> Result<(), AdapterError> {
        self.operator().sockets_join(room).await
    }

    /// Make every socket leave `room`.
    pub async fn sockets_leave(&self, room: impl Into<Room>) -> Result<(), AdapterError> {
        self.operator().sockets_leave(room).await
    }

    /// Disconnect every socket (`close`: also close their connections).
    pub async fn disconnect_sockets(&self, close: bool) -> Result<(), AdapterError> {
        self.operator().disconnect_sockets(close).await
    }

    /// Send `event` to every server (their [`crate::sio::Namespace::on_server_side_emit`]
    /// handlers). No acknowledgement (as Node's emitter).
    pub async fn server_side_emit(
        &self,
        event: &str,
        args: impl Into<Args>,
    ) -> Result<(), AdapterError> {
        let args = args.into();
        let mut data = vec![Value::String(event.to_owned())];
        data.extend(args.into_values());
        let req = json!({"uid": UID, "type": wire::SERVER_SIDE_EMIT, "data": data});
        self.publish(self.channels().request, req.to_string().into_bytes())
            .await
    }

    fn channels(&self) -> Channels {
        Channels::new(&self.key, self.nsp.as_str(), UID)
    }

    async fn publish(&self, channel: String, msg: Vec<u8>) -> Result<(), AdapterError> {
        let mut guard = self.conn.conn.lock().await;
        let mut last = None;
        for _ in 0..2 {
            if guard.is_none() {
                match self.conn.client.get_multiplexed_async_connection().await {
                    Ok(c) => *guard = Some(c),
                    Err(e) => return Err(AdapterError::Unavailable(e.to_string())),
                }
            }
            let Some(c) = guard.as_mut() else { continue };
            let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(msg.as_slice())
                .query_async(c)
                .await;
            match r {
                Ok(_) => return Ok(()),
                Err(e) => {
                    *guard = None;
                    last = Some(e);
                }
            }
        }
        Err(AdapterError::Unavailable(
            last.map(|e| e.to_string()).unwrap_or_default(),
        ))
    }
}

/// The targets of an emitter's emit: rooms, exceptions, flags. From [`RedisEmitter::to`],
/// [`RedisEmitter::except`], [`RedisEmitter::volatile`].
#[derive(Debug, Clone)]
pub struct EmitterOperator {
    emitter: RedisEmitter,
    opts: BroadcastOptions,
}

impl EmitterOperator {
    /// Add `room` to the targets.
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.opts.rooms.contains(&room) {
            self.opts.rooms.push(room);
        }
        self
    }

    /// Leave out the sockets in `room`.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.opts.except.contains(&room) {
            self.opts.except.push(room);
        }
        self
    }

    /// Volatile: dropped for sockets that cannot take it now.
    pub fn volatile(mut self) -> Self {
        self.opts.flags = BroadcastFlags {
            volatile: true,
            ..self.opts.flags
        };
        self
    }

    /// Emit `event` with one argument.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), AdapterError> {
        let args = Args::one(data).map_err(|e| AdapterError::Config(e.to_string()))?;
        self.emit_args(event, args).await
    }

    /// Emit `event` (binary arguments travel as msgpack `bin`). Reserved names
    /// (`connect`, `disconnect`, ...) are refused.
    pub async fn emit_args(&self, event: &str, args: impl Into<Args>) -> Result<(), AdapterError> {
        if RESERVED_EVENTS.contains(&event) {
            return Err(AdapterError::Config(format!(
                "\"{event}\" is a reserved event name"
            )));
        }
        let args = args.into();
        let packet = crate::sio::socket::event_packet(&self.emitter.nsp, event, args, None);
        let ch = self.emitter.channels();
        let msg = wire::encode_broadcast(UID, &packet, &self.opts);
        self.emitter
            .publish(ch.broadcast_channel(&self.opts), msg)
            .await
    }

    async fn request(&self, kind: u64, extra: Value) -> Result<(), AdapterError> {
        let mut req = json!({"type": kind, "opts": wire::targets_json(&self.opts)});
        if let (Value::Object(m), Value::Object(x)) = (&mut req, extra) {
            m.extend(x);
        }
        let ch = self.emitter.channels();
        self.emitter
            .publish(ch.request, req.to_string().into_bytes())
            .await
    }

    /// Make the targets join `room`.
    pub async fn sockets_join(&self, room: impl Into<Room>) -> Result<(), AdapterError> {
        let room: Room = room.into();
        self.request(wire::REMOTE_JOIN, json!({"rooms": [room.as_str()]}))
            .await
    }

    /// Make the targets leave `room`.
    pub async fn sockets_leave(&self, room: impl Into<Room>) -> Result<(), AdapterError> {
        let room: Room = room.into();
        self.request(wire::REMOTE_LEAVE, json!({"rooms": [room.as_str()]}))
            .await
    }

    /// Disconnect the targets (`close`: also close their connections).
    pub async fn disconnect_sockets(&self, close: bool) -> Result<(), AdapterError> {
        self.request(wire::REMOTE_DISCONNECT, json!({"close": close}))
            .await
    }
}
