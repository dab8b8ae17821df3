//! The messages of socket.io-adapter's `ClusterAdapter` (2.5.x), which Node's sharded
//! Redis adapter (`createShardedAdapter` of `@socket.io/redis-adapter` 8.x) carries.
//!
//! Every message is `{uid, nsp, type, data}`: JSON, or msgpack (notepack.io) when its
//! `data` holds binary (then a `bin` value stands where the binary argument is). A
//! message starting with `{` is JSON, anything else msgpack. `data` by type:
//!
//! | type | name | data |
//! |---|---|---|
//! | 3 | `BROADCAST` | `{packet, opts, requestId?}` (with `requestId`: acks wanted) |
//! | 4 | `SOCKETS_JOIN` | `{opts, rooms}` |
//! | 5 | `SOCKETS_LEAVE` | `{opts, rooms}` |
//! | 6 | `DISCONNECT_SOCKETS` | `{opts, close}` |
//! | 7 | `FETCH_SOCKETS` | `{opts, requestId}` |
//! | 8 | `FETCH_SOCKETS_RESPONSE` | `{requestId, sockets}` |
//! | 9 | `SERVER_SIDE_EMIT` | `{packet: [event, ...args], requestId?}` |
//! | 10 | `SERVER_SIDE_EMIT_RESPONSE` | `{requestId, packet}` (the answer) |
//! | 11 | `BROADCAST_CLIENT_COUNT` | `{requestId, clientCount}` |
//! | 12 | `BROADCAST_ACK` | `{requestId, packet}` (one client's first reply argument) |
//!
//! Types 1, 2 and 13 (heartbeats, `ADAPTER_CLOSE`) belong to the heartbeat variant and
//! are ignored here, as the sharded adapter does. `opts` is `{rooms, except, flags}`;
//! `packet` of a broadcast is socket.io-parser's `{type: 2, data, nsp}`.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::proto::Str;
use crate::proto::socketio::{Packet, PacketType};

use super::BroadcastOptions;
use super::wire;

pub(crate) const BROADCAST: u64 = 3;
pub(crate) const SOCKETS_JOIN: u64 = 4;
pub(crate) const SOCKETS_LEAVE: u64 = 5;
pub(crate) const DISCONNECT_SOCKETS: u64 = 6;
pub(crate) const FETCH_SOCKETS: u64 = 7;
pub(crate) const FETCH_SOCKETS_RESPONSE: u64 = 8;
pub(crate) const SERVER_SIDE_EMIT: u64 = 9;
pub(crate) const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
pub(crate) const BROADCAST_CLIENT_COUNT: u64 = 11;
pub(crate) const BROADCAST_ACK: u64 = 12;

/// A decoded message: its JSON form (binary values as placeholders `{"_placeholder":
/// true, "num": N}`) and the binary values.
#[derive(Debug)]
pub(crate) struct Message {
    pub uid: String,
    pub nsp: String,
    pub kind: u64,
    pub data: Value,
    pub bins: Vec<Bytes>,
}

impl Message {
    /// `data.requestId` when present (and a string).
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.data.get("requestId").and_then(Value::as_str)
    }
}

/// `{uid, nsp, type, data}` as bytes: JSON without `bins`, msgpack with (placeholders
/// in `data` become `bin` values).
pub(crate) fn encode(uid: &str, nsp: &str, kind: u64, data: Value, bins: &[Bytes]) -> Vec<u8> {
    let msg = json!({"uid": uid, "nsp": nsp, "type": kind, "data": data});
    if bins.is_empty() {
        msg.to_string().into_bytes()
    } else {
        wire::encode_mp(&wire::json_to_mp(&msg, bins))
    }
}

/// A message from bytes; `None` when malformed.
pub(crate) fn decode(b: &[u8]) -> Option<Message> {
    let mut bins = Vec::new();
    let v = if b.first() == Some(&b'{') {
        serde_json::from_slice::<Value>(b).ok()?
    } else {
        wire::mp_to_json(&wire::decode_mp(b)?, &mut bins)
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    Some(Message {
        uid: text("uid"),
        nsp: text("nsp"),
        kind: v.get("type")?.as_u64()?,
        data: v.get("data").cloned().unwrap_or(Value::Null),
        bins,
    })
}

/// `{rooms, except, flags}` as JSON (`encodeOptions`).
pub(crate) fn options_json(o: &BroadcastOptions) -> Value {
    let mut v = wire::targets_json(o);
    let mut flags = serde_json::Map::new();
    if o.flags.volatile {
        flags.insert("volatile".into(), Value::Bool(true));
    }
    if o.flags.local {
        flags.insert("local".into(), Value::Bool(true));
    }
    if let Some(t) = o.flags.timeout {
        flags.insert("timeout".into(), Value::from(t.as_millis() as u64));
    }
    v["flags"] = Value::Object(flags);
    v
}

/// A broadcast packet as Node's cluster adapter publishes it: socket.io-parser's object
/// `{type: 2, data}` (no `nsp`: the message has it), and its binary attachments.
pub(crate) fn packet_json(p: &Packet) -> (Value, &[Bytes]) {
    let v = json!({
        "type": PacketType::Event as u8,
        "data": p.data_value().map_or(Value::Null, |d| d.into_owned()),
    });
    (v, &p.attachments)
}

/// An event packet for namespace `nsp` (the message's) from socket.io-parser's object;
/// `None` for other packet types or no event name. A `nsp` in the packet is ignored, as
/// Node's adapter overwrites it.
pub(crate) fn packet_from_json(v: &Value, bins: Vec<Bytes>, nsp: &Str) -> Option<Packet> {
    let kind = v.get("type")?.as_u64()?;
    if kind != PacketType::Event as u64 && kind != PacketType::BinaryEvent as u64 {
        return None;
    }
    let data = v.get("data")?;
    if data.as_array().is_none_or(|a| a.is_empty()) {
        return None;
    }
    Some(Packet::event(nsp.clone(), data.clone(), bins, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::socketio::placeholder;

    #[test]
    fn json_and_msgpack_roundtrip() {
        let nsp = Str::from_static("/");
        let plain = Packet::event(nsp.clone(), json!(["ev", 1]), Vec::new(), None);
        let (pv, bins) = packet_json(&plain);
        let b = encode(
            "u1",
            "/",
            BROADCAST,
            json!({"packet": pv, "opts": options_json(&BroadcastOptions::default())}),
            bins,
        );
        assert_eq!(b[0], b'{');
        let m = decode(&b).unwrap();
        assert_eq!(
            (m.uid.as_str(), m.nsp.as_str(), m.kind),
            ("u1", "/", BROADCAST)
        );
        assert_eq!(
            m.data["opts"],
            json!({"rooms": [], "except": [], "flags": {}})
        );
        let back = packet_from_json(&m.data["packet"], m.bins, &nsp).unwrap();
        assert_eq!(back.data, plain.data);

        let bin = Packet::event(
            nsp.clone(),
            json!(["ev", placeholder(0)]),
            vec![Bytes::from_static(b"\x01\x02")],
            None,
        );
        let (pv, bins) = packet_json(&bin);
        let b = encode(
            "u2",
            "/",
            BROADCAST,
            json!({"packet": pv, "requestId": "r"}),
            bins,
        );
        assert_ne!(b[0], b'{');
        let m = decode(&b).unwrap();
        assert_eq!(m.request_id(), Some("r"));
        let back = packet_from_json(&m.data["packet"], m.bins, &nsp).unwrap();
        assert_eq!(back.data, bin.data);
        assert_eq!(back.attachments, bin.attachments);
        let other = Str::from_static("/x");
        let p = packet_from_json(
            &json!({"type": 2, "data": ["e"], "nsp": "/"}),
            Vec::new(),
            &other,
        );
        assert_eq!(p.map(|p| p.nsp), Some(other));
        assert!(packet_from_json(&json!({"type": 3, "data": ["e"]}), Vec::new(), &nsp).is_none());
        assert!(decode(b"{\"type\":").is_none());
        assert!(decode(b"\xc1").is_none());
    }
}
