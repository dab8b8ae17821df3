//! The messages of `@socket.io/redis-adapter` (8.x) and `@socket.io/redis-emitter` (5.x).
//!
//! - Broadcasts: published on `<key>#<nsp>#` (or `<key>#<nsp>#<room>#` when there is
//!   exactly one target room), msgpack (notepack.io) of `[uid, packet, opts]` with
//!   `packet = {type: 2, data: [event, ...args], nsp}` (binary arguments inline as msgpack
//!   `bin`) and `opts = {rooms: [..], except: [..], flags: {volatile?, timeout?, ..}}`.
//! - Requests on `<key>-request#<nsp>#`: JSON `{uid, requestId?, type, ...}`, except
//!   `BROADCAST` (with acks), which is msgpack because its packet may hold binary.
//! - Responses on `<key>-response#<nsp>#` (or `<key>-response#<nsp>#<uid>#` with
//!   `publishOnSpecificResponseChannel`): JSON, except `BROADCAST_ACK` (msgpack).
//!   A message starting with `{` is JSON, anything else msgpack.
//! - The number of nodes is `PUBSUB NUMSUB <key>-request#<nsp>#`.

use bytes::Bytes;
use serde_json::{Map, Number, Value};

use crate::proto::Str;
use crate::proto::socketio::{Packet, PacketType, placeholder, placeholder_num};
use crate::sio::Room;

use super::{BroadcastFlags, BroadcastOptions};

pub(crate) const SOCKETS: u64 = 0;
pub(crate) const ALL_ROOMS: u64 = 1;
pub(crate) const REMOTE_JOIN: u64 = 2;
pub(crate) const REMOTE_LEAVE: u64 = 3;
pub(crate) const REMOTE_DISCONNECT: u64 = 4;
pub(crate) const REMOTE_FETCH: u64 = 5;
pub(crate) const SERVER_SIDE_EMIT: u64 = 6;
pub(crate) const BROADCAST: u64 = 7;
pub(crate) const BROADCAST_CLIENT_COUNT: u64 = 8;
pub(crate) const BROADCAST_ACK: u64 = 9;

/// The channels of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    /// `<key>#<nsp>#`: broadcasts (a room's ones add `<room>#`).
    pub broadcast: String,
    /// `<key>-request#<nsp>#`.
    pub request: String,
    /// `<key>-response#<nsp>#`.
    pub response: String,
    /// `<key>-response#<nsp>#<uid>#`.
    pub specific_response: String,
}

impl Channels {
    pub(crate) fn new(key: &str, nsp: &str, uid: &str) -> Self {
        let response = format!("{key}-response#{nsp}#");
        Channels {
            broadcast: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            specific_response: format!("{response}{uid}#"),
            response,
        }
    }

    /// The pattern the broadcasts are received with: `<key>#<nsp>#*` (glob characters of
    /// the prefix escaped).
    pub(crate) fn pattern(&self) -> String {
        let mut p = String::with_capacity(self.broadcast.len() + 4);
        for c in self.broadcast.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('*');
        p
    }

    /// Where a broadcast to `opts` is published.
    pub(crate) fn broadcast_channel(&self, opts: &BroadcastOptions) -> String {
        if opts.rooms.len() == 1 {
            format!("{}{}#", self.broadcast, opts.rooms[0])
        } else {
            self.broadcast.clone()
        }
    }
}

/// A random id of `len` characters in `[A-Za-z0-9]` (as the `uid2` package makes).
pub(crate) fn uid(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut buf = vec![0u8; len];
    if getrandom::fill(&mut buf).is_err() {
        // Fall back on the clock: ids only need to be unique among live requests.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i * 6) % 120)) as u8;
        }
    }
    buf.iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

// ---- msgpack <-> JSON ---------------------------------------------------------------

pub(crate) fn encode_mp(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

pub(crate) fn decode_mp(mut b: &[u8]) -> Option<rmpv::Value> {
    rmpv::decode::read_value(&mut b).ok()
}

fn mp_str(s: &str) -> rmpv::Value {
    rmpv::Value::String(s.into())
}

/// A JSON value as msgpack; placeholders `{"_placeholder":true,"num":N}` become `bins[N]`
/// as msgpack `bin` (how Node puts binary arguments on Redis).
pub(crate) fn json_to_mp(v: &Value, bins: &[Bytes]) -> rmpv::Value {
    match v {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else {
                rmpv::Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => mp_str(s),
        Value::Array(a) => rmpv::Value::Array(a.iter().map(|x| json_to_mp(x, bins)).collect()),
        Value::Object(_) => {
            if let Some(num) = placeholder_num(v)
                && let Some(b) = bins.get(num)
            {
                return rmpv::Value::Binary(b.to_vec());
            }
            let Value::Object(m) = v else { unreachable!() };
            rmpv::Value::Map(
                m.iter()
                    .map(|(k, x)| (mp_str(k), json_to_mp(x, bins)))
                    .collect(),
            )
        }
    }
}

/// A msgpack value as JSON; `bin` values become placeholders referencing `bins`, where
/// they are appended.
pub(crate) fn mp_to_json(v: &rmpv::Value, bins: &mut Vec<Bytes>) -> Value {
    match v {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(*b),
        rmpv::Value::Integer(i) => {
            if let Some(u) = i.as_u64() {
                Value::Number(u.into())
            } else if let Some(s) = i.as_i64() {
                Value::Number(s.into())
            } else {
                Value::Null
            }
        }
        rmpv::Value::F32(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        rmpv::Value::F64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        rmpv::Value::String(s) => Value::String(match s.as_str() {
            Some(t) => t.to_owned(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        rmpv::Value::Binary(b) => {
            bins.push(Bytes::copy_from_slice(b));
            placeholder(bins.len() - 1)
        }
        rmpv::Value::Array(a) => Value::Array(a.iter().map(|x| mp_to_json(x, bins)).collect()),
        rmpv::Value::Map(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, x) in m {
                let key = match k {
                    rmpv::Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    other => match mp_to_json(other, &mut Vec::new()) {
                        Value::String(s) => s,
                        j => j.to_string(),
                    },
                };
                out.insert(key, mp_to_json(x, bins));
            }
            Value::Object(out)
        }
        // notepack.io: ext -1 is a Date (sent to clients as its ISO string); fixext 0 is
        // `undefined`.
        rmpv::Value::Ext(-1, data) => timestamp(data).map_or(Value::Null, Value::String),
        rmpv::Value::Ext(..) => Value::Null,
    }
}

/// A msgpack timestamp extension as an ISO-8601 string (JavaScript's `Date#toJSON`).
fn timestamp(data: &[u8]) -> Option<String> {
    let (secs, nanos): (i64, u32) = match data.len() {
        4 => (i64::from(u32::from_be_bytes(data.try_into().ok()?)), 0),
        8 => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(data[4..12].try_into().ok()?),
            u32::from_be_bytes(data[0..4].try_into().ok()?),
        ),
        _ => return None,
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos / 1_000_000
    ))
}

/// The value at `key` of a msgpack map.
pub(crate) fn mp_get<'a>(v: &'a rmpv::Value, key: &str) -> Option<&'a rmpv::Value> {
    match v {
        rmpv::Value::Map(m) => m
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, x)| x),
        _ => None,
    }
}

// ---- packets and options -------------------------------------------------------------

/// A Socket.IO packet as socket.io-parser's object: `{type, data, nsp[, id]}`; events are
/// type 2 whatever their arguments (Node's encoder picks the binary type when writing).
pub(crate) fn packet_to_mp(p: &Packet, with_nsp: bool) -> rmpv::Value {
    let kind = match p.kind {
        PacketType::BinaryEvent => PacketType::Event,
        PacketType::BinaryAck => PacketType::Ack,
        k => k,
    };
    let mut m = vec![(mp_str("type"), rmpv::Value::from(kind as u8))];
    m.push((
        mp_str("data"),
        p.data_value()
            .map_or(rmpv::Value::Nil, |d| json_to_mp(&d, &p.attachments)),
    ));
    if with_nsp {
        m.push((mp_str("nsp"), mp_str(p.nsp.as_str())));
    }
    if let Some(id) = p.id {
        m.push((mp_str("id"), rmpv::Value::from(id)));
    }
    rmpv::Value::Map(m)
}

/// An event packet from socket.io-parser's object; `None` for other packet types or a
/// namespace other than `nsp` (a missing `nsp` is `/`).
pub(crate) fn packet_from_mp(v: &rmpv::Value, nsp: &Str) -> Option<Packet> {
    let kind = mp_get(v, "type")?.as_u64()?;
    if kind != PacketType::Event as u64 && kind != PacketType::BinaryEvent as u64 {
        return None;
    }
    let packet_nsp = match mp_get(v, "nsp") {
        Some(n) => n.as_str()?,
        None => "/",
    };
    if packet_nsp != nsp.as_str() {
        return None;
    }
    let mut bins = Vec::new();
    let data = mp_to_json(mp_get(v, "data")?, &mut bins);
    if data.as_array().is_none_or(|a| a.is_empty()) {
        return None;
    }
    Some(Packet::event(nsp.clone(), data, bins, None))
}

/// A room name from JSON (socket.io rooms may be numbers).
pub(crate) fn room_of(v: &Value) -> Option<Room> {
    match v {
        Value::String(s) => Some(Str::from(s.clone())),
        Value::Number(n) => Some(Str::from(n.to_string())),
        _ => None,
    }
}

fn rooms_of(v: Option<&Value>) -> Vec<Room> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(room_of).collect())
        .unwrap_or_default()
}

/// `{rooms, except, flags}` from JSON.
pub(crate) fn options_from_json(v: &Value) -> BroadcastOptions {
    let flags = v.get("flags");
    let flag = |name: &str| {
        flags
            .and_then(|f| f.get(name))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    BroadcastOptions {
        rooms: rooms_of(v.get("rooms")),
        except: rooms_of(v.get("except")),
        flags: BroadcastFlags {
            volatile: flag("volatile"),
            local: flag("local"),
            timeout: flags
                .and_then(|f| f.get("timeout"))
                .and_then(Value::as_f64)
                .filter(|t| t.is_finite() && *t >= 0.0)
                .map(|t| std::time::Duration::from_millis(t as u64)),
        },
    }
}

/// `{rooms, except, flags}` as msgpack, keys in Node's order.
fn options_mp(o: &BroadcastOptions) -> rmpv::Value {
    let rooms = |v: &[Room]| rmpv::Value::Array(v.iter().map(|r| mp_str(r.as_str())).collect());
    let mut flags = Vec::new();
    if o.flags.volatile {
        flags.push((mp_str("volatile"), rmpv::Value::Boolean(true)));
    }
    if o.flags.local {
        flags.push((mp_str("local"), rmpv::Value::Boolean(true)));
    }
    if let Some(t) = o.flags.timeout {
        flags.push((mp_str("timeout"), rmpv::Value::from(t.as_millis() as u64)));
    }
    rmpv::Value::Map(vec![
        (mp_str("rooms"), rooms(&o.rooms)),
        (mp_str("except"), rooms(&o.except)),
        (mp_str("flags"), rmpv::Value::Map(flags)),
    ])
}

/// `{rooms, except}` (what room requests carry).
pub(crate) fn targets_json(o: &BroadcastOptions) -> Value {
    serde_json::json!({
        "rooms": o.rooms.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "except": o.except.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    })
}

/// The broadcast message `[uid, packet, opts]`.
pub(crate) fn encode_broadcast(uid: &str, packet: &Packet, opts: &BroadcastOptions) -> Vec<u8> {
    encode_mp(&rmpv::Value::Array(vec![
        mp_str(uid),
        packet_to_mp(packet, true),
        options_mp(opts),
    ]))
}

/// A broadcast message: `(uid, packet value, opts)`.
pub(crate) fn decode_broadcast(b: &[u8]) -> Option<(String, rmpv::Value, BroadcastOptions)> {
    let v = decode_mp(b)?;
    let rmpv::Value::Array(mut items) = v else {
        return None;
    };
    if items.len() < 3 {
        return None;
    }
    let opts = options_from_json(&mp_to_json(&items[2], &mut Vec::new()));
    let packet = std::mem::replace(&mut items[1], rmpv::Value::Nil);
    let uid = match &items[0] {
        rmpv::Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => String::new(),
    };
    Some((uid, packet, opts))
}

/// A request or response: JSON when it starts with `{`, else msgpack. For msgpack, the
/// `packet` entry is kept as msgpack (it may hold binary); everything else is JSON.
pub(crate) fn decode_message(b: &[u8]) -> Option<(Value, Option<rmpv::Value>)> {
    if b.first() == Some(&b'{') {
        return serde_json::from_slice(b).ok().map(|v| (v, None));
    }
    let v = decode_mp(b)?;
    let packet = mp_get(&v, "packet").cloned();
    let rmpv::Value::Map(m) = v else { return None };
    let rest = rmpv::Value::Map(
        m.into_iter()
            .filter(|(k, _)| k.as_str() != Some("packet"))
            .collect(),
    );
    Some((mp_to_json(&rest, &mut Vec::new()), packet))
}

/// The msgpack `BROADCAST` request.
pub(crate) fn encode_broadcast_request(
    uid: &str,
    request_id: &str,
    packet: &Packet,
    opts: &BroadcastOptions,
) -> Vec<u8> {
    encode_mp(&rmpv::Value::Map(vec![
        (mp_str("uid"), mp_str(uid)),
        (mp_str("requestId"), mp_str(request_id)),
        (mp_str("type"), rmpv::Value::from(BROADCAST)),
        (mp_str("packet"), packet_to_mp(packet, true)),
        (mp_str("opts"), options_mp(opts)),
    ]))
}

/// The msgpack `BROADCAST_ACK` response carrying one reply (its first argument).
pub(crate) fn encode_broadcast_ack(request_id: &str, arg: &Value, bins: &[Bytes]) -> Vec<u8> {
    encode_mp(&rmpv::Value::Map(vec![
        (mp_str("type"), rmpv::Value::from(BROADCAST_ACK)),
        (mp_str("requestId"), mp_str(request_id)),
        (mp_str("packet"), json_to_mp(arg, bins)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_roundtrip_with_binary() {
        let nsp = Str::from_static("/");
        let data = serde_json::json!(["ev", {"a": 1.5, "b": [placeholder(0)]}, -3]);
        let p = Packet::event(
            nsp.clone(),
            data.clone(),
            vec![Bytes::from_static(b"\x01\x02")],
            None,
        );
        let opts = BroadcastOptions {
            rooms: vec![Str::from_static("r1")],
            except: vec![Str::from_static("sid")],
            flags: BroadcastFlags {
                volatile: true,
                ..Default::default()
            },
        };
        let bytes = encode_broadcast("abc123", &p, &opts);
        let (uid, pv, o) = decode_broadcast(&bytes).unwrap();
        assert_eq!(uid, "abc123");
        assert_eq!(o, opts);
        let back = packet_from_mp(&pv, &nsp).unwrap();
        assert_eq!(back.data, Some(data));
        assert_eq!(back.attachments, p.attachments);
        // notepack's undefined (fixext 0) and a Date decode.
        let mut bins = Vec::new();
        assert_eq!(
            mp_to_json(&rmpv::Value::Ext(0, vec![0]), &mut bins),
            Value::Null
        );
        assert_eq!(
            mp_to_json(
                &rmpv::Value::Ext(-1, 1_700_000_000u32.to_be_bytes().to_vec()),
                &mut bins
            ),
            Value::String("2023-11-14T22:13:20.000Z".into())
        );
    }

    #[test]
    fn channels() {
        let c = Channels::new("socket.io", "/", "Ab3dE6");
        assert_eq!(c.broadcast, "socket.io#/#");
        assert_eq!(c.request, "socket.io-request#/#");
        assert_eq!(c.response, "socket.io-response#/#");
        assert_eq!(c.specific_response, "socket.io-response#/#Ab3dE6#");
        assert_eq!(c.pattern(), "socket.io#/#*");
        let one = BroadcastOptions {
            rooms: vec![Str::from_static("room")],
            ..Default::default()
        };
        assert_eq!(c.broadcast_channel(&one), "socket.io#/#room#");
        assert_eq!(uid(6).len(), 6);
    }
}
