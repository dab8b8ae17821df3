//! Randomized smoke test of the sans-IO decoders (`tether::proto`), run with the normal test
//! suite in about a second.
//!
//! The oracles are those of the fuzz targets (`fuzz/src/lib.rs`, included below): decoding any
//! input gives `Ok` or a typed `Err`, never a panic; what decodes satisfies the decoder's
//! invariants and survives a re-encode / decode round trip. This file feeds them
//! - every committed fuzz seed (`fuzz/seeds/<target>/*`),
//! - arbitrary bytes and protocol-flavoured text,
//! - well-formed packets (which must decode exactly) and mutations of their encodings.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};
use tether::proto::Str;
use tether::proto::engineio::{self, Handshake, PayloadEncoder};
use tether::proto::json::exceeds_depth;
use tether::proto::socketio::{self, DecoderConfig, PacketType, RESERVED_EVENTS, placeholder};
use tether::proto::wsframe::{self, CloseFrame, Message, OpCode, Role};

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod checks;

use checks::SioInput;

/// Proptest settings: a fixed number of cases and no regression files in the tree.
fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A fuzz target's entry point.
type Target = fn(&[u8]);

/// The fuzz targets by name, as in `fuzz/fuzz_targets/`.
const TARGETS: [(&str, Target); 6] = [
    ("engineio_packet", checks::engineio_packet),
    ("engineio_payload", checks::engineio_payload),
    ("socketio_decoder", checks::socketio_decoder),
    ("handshake", checks::handshake),
    ("json_depth", checks::json_depth),
    ("wsframe", checks::wsframe),
];

#[test]
fn fuzz_seeds_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.map(|e| e.path()).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), TARGETS.len(), "one seed folder per target");
    for dir in dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some((_, target)) = TARGETS.iter().find(|(t, _)| *t == name) else {
            panic!("seed folder {name:?} names no fuzz target");
        };
        let mut n = 0;
        for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{name}: {e}")) {
            let path = file.unwrap_or_else(|e| panic!("{e}")).path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "seed {} fails", path.display());
            n += 1;
        }
        assert!(n > 0, "no seeds for {name}");
    }
}

/// The socketio seeds are not all rejected: most of them hold packets that decode.
#[test]
fn socketio_seeds_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/socketio_decoder");
    let mut decoded = 0;
    for file in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}")) {
        let data = std::fs::read(file.unwrap_or_else(|e| panic!("{e}")).path())
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some((config, inputs)) = checks::sio_inputs(&data) {
            decoded += checks::sio_sequence(config, &inputs);
        }
    }
    assert!(
        decoded >= 10,
        "only {decoded} packets decoded from the seeds"
    );
}

// --- strategies -----------------------------------------------------------------------------

/// Fragments that make random text look like the protocols.
const PIECES: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "9",
    "b",
    "-",
    "/",
    ",",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "\\",
    ":",
    "a",
    "é",
    "😀",
    "\u{1e}",
    "\0",
    " ",
    "/admin",
    "\"connect\"",
    "\"_placeholder\":true",
    "\"num\":",
    "-1",
    "1.5e300",
    "99999999999999999999",
    "true",
    "null",
    "1-",
    "AQID",
    "==",
    "\"sid\":\"x\"",
    "\"pingInterval\":1",
    "\"pingTimeout\":1",
    "\"upgrades\":[\"websocket\"]",
];

fn piece() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(PIECES)
}

/// Text built from [`PIECES`].
fn protocol_text() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..24).prop_map(|p| p.concat())
}

/// Short strings: printable Unicode, or ASCII with control characters.
fn short_string() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,8}", "[\\x00-\\x7f]{0,8}"]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        (-1000i32..1000, 0i32..4).prop_map(|(m, e)| Value::from(f64::from(m) / 10f64.powi(e))),
        short_string().prop_map(Value::String),
    ]
}

/// JSON values at most 5 levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,6}", inner, 0..4)
                .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("\\PC{0,6}", json_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

fn namespace() -> impl Strategy<Value = Str> {
    prop_oneof![
        Just(Str::from_static("/")),
        Just(Str::default()),
        "/[a-zA-Z0-9_./-]{0,12}".prop_map(Str::from),
        "[a-z]{1,6}".prop_map(Str::from),
        "/[^,]{0,8}".prop_map(Str::from),
    ]
}

fn event_name() -> impl Strategy<Value = String> {
    short_string().prop_filter("reserved", |n| !RESERVED_EVENTS.contains(&n.as_str()))
}

fn attachments() -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from),
        0..4,
    )
}

/// Args with a placeholder for each attachment spread among them.
fn with_placeholders(mut items: Vec<Value>, n: usize, nested: bool) -> Vec<Value> {
    for i in 0..n {
        let p = placeholder(i);
        if nested && i % 2 == 1 {
            items.push(Value::Array(vec![serde_json::json!({ "bin": p })]));
        } else {
            items.insert(i.min(items.len()), p);
        }
    }
    items
}

/// Well-formed Socket.IO packets, as an application would build them.
fn sio_packet() -> impl Strategy<Value = socketio::Packet> {
    let args = || prop::collection::vec(json_value(), 0..4);
    prop_oneof![
        (namespace(), prop::option::of(json_object()))
            .prop_map(|(nsp, data)| socketio::Packet::connect(nsp, data)),
        namespace().prop_map(socketio::Packet::disconnect),
        (namespace(), short_string(), prop::option::of(json_value()))
            .prop_map(|(nsp, m, d)| socketio::Packet::connect_error(nsp, &m, d)),
        (namespace(), short_string()).prop_map(|(nsp, m)| socketio::Packet {
            data: Some(Value::String(m)),
            ..socketio::Packet::connect_error(nsp, "", None)
        }),
        (
            namespace(),
            event_name(),
            args(),
            attachments(),
            any::<Option<u64>>(),
            any::<bool>()
        )
            .prop_map(|(nsp, name, args, att, id, nested)| {
                let mut items = vec![Value::String(name)];
                items.extend(with_placeholders(args, att.len(), nested));
                socketio::Packet::event(nsp, Value::Array(items), att, id)
            }),
        (
            namespace(),
            any::<u64>(),
            args(),
            attachments(),
            any::<bool>()
        )
            .prop_map(|(nsp, id, args, att, nested)| {
                let items = with_placeholders(args, att.len(), nested);
                socketio::Packet::ack(nsp, id, Value::Array(items), att)
            }),
    ]
    .prop_flat_map(|p| {
        // Decoded binary packets may keep a `Binary*` kind with zero attachments.
        let binary_kind = match p.kind {
            PacketType::Event => Some(PacketType::BinaryEvent),
            PacketType::Ack => Some(PacketType::BinaryAck),
            _ => None,
        };
        (Just(p), any::<bool>()).prop_map(move |(mut p, flip)| {
            if let (Some(k), true) = (binary_kind, flip) {
                p.kind = k;
            }
            p
        })
    })
}

/// The frames of a packet as decoder inputs.
fn frames_as_inputs(p: &socketio::Packet) -> Vec<SioInput> {
    p.encode_frames()
        .into_iter()
        .map(|f| match f {
            engineio::Frame::Text(t) => SioInput::Text(t.get(1..).unwrap_or_default().to_owned()),
            engineio::Frame::Binary(b) => SioInput::Binary(b),
        })
        .collect()
}

/// One edit of a byte string: `(kind, position, byte, piece)`.
type Edit = (u8, usize, u8, &'static str);

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec((0u8..5, any::<usize>(), any::<u8>(), piece()), 1..4)
}

/// Applies `edits` to `bytes`: replace a byte, delete a range, insert a byte, insert a
/// piece, or truncate.
fn mutate(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for &(kind, pos, byte, piece) in edits {
        let at = if out.is_empty() {
            0
        } else {
            pos % (out.len() + 1)
        };
        match kind {
            0 if at < out.len() => out[at] = byte,
            1 => {
                let end = (at + usize::from(byte % 8) + 1).min(out.len());
                out.drain(at..end);
            }
            2 => out.insert(at, byte),
            3 => {
                out.splice(at..at, piece.bytes());
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// Shuffles a frame sequence: drop, duplicate or swap frames, or add a reset.
fn mutate_sequence(mut inputs: Vec<SioInput>, ops: &[(u8, usize)]) -> Vec<SioInput> {
    for &(op, pos) in ops {
        if inputs.is_empty() {
            break;
        }
        let len = inputs.len();
        let i = pos % len;
        match op {
            0 => {
                inputs.remove(i);
            }
            1 => {
                let dup = inputs[i].clone();
                inputs.insert(i, dup);
            }
            2 => inputs.swap(i, (i + 1) % len),
            _ => inputs.insert(i, SioInput::Reset),
        }
    }
    inputs
}

fn eio_packet() -> impl Strategy<Value = engineio::Packet> {
    let s = || "\\PC{0,16}".prop_map(Str::from);
    prop_oneof![
        s().prop_map(engineio::Packet::Open),
        Just(engineio::Packet::Close),
        s().prop_map(engineio::Packet::Ping),
        s().prop_map(engineio::Packet::Pong),
        s().prop_map(engineio::Packet::Message),
        prop::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| engineio::Packet::Binary(Bytes::from(b))),
        Just(engineio::Packet::Upgrade),
        Just(engineio::Packet::Noop),
    ]
}

fn handshake_value() -> impl Strategy<Value = Handshake> {
    (
        "[A-Za-z0-9_-]{1,24}",
        prop_oneof![Just(vec![]), Just(vec!["websocket".to_owned()])],
        1..=engineio::MAX_PING_MS,
        1..=engineio::MAX_PING_MS,
        1..=u64::MAX,
    )
        .prop_map(
            |(sid, upgrades, ping_interval, ping_timeout, max_payload)| Handshake {
                sid,
                upgrades,
                ping_interval,
                ping_timeout,
                max_payload,
            },
        )
}

// --- properties -----------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        for (_, target) in TARGETS {
            target(&data);
        }
    }

    #[test]
    fn protocol_flavoured_text(
        parts in prop::collection::vec(protocol_text(), 1..5),
        cfg in any::<u8>(),
        max in 0usize..8,
    ) {
        let joined = parts.join("\u{1e}");
        checks::engineio_packet(joined.as_bytes());
        checks::payload_with_max(joined.as_bytes(), max);
        checks::handshake(joined.as_bytes());
        checks::json_depth(joined.as_bytes());
        let inputs: Vec<SioInput> = parts
            .into_iter()
            .map(|p| match p.strip_prefix('b') {
                Some(rest) => SioInput::Binary(Bytes::from(rest.to_owned())),
                None => SioInput::Text(p),
            })
            .collect();
        checks::sio_sequence(checks::sio_config(cfg), &inputs);
    }
}

/// The value of the one argument of `2["t",<literal>]`.
fn decode_number(literal: &str) -> Option<f64> {
    let mut d = socketio::Decoder::new(DecoderConfig::default());
    let text = format!("2[\"t\",{literal}]");
    let p = d.decode_text(&text).ok().flatten()?;
    p.args().first()?.as_f64()
}

/// Numbers sent by a JavaScript peer (shortest round-trip text) decode to the same `f64`,
/// as `JSON.parse` does. Needs serde_json's `float_roundtrip` feature.
#[test]
fn json_floats_decode_exactly() {
    for x in [
        974708597.4924823,
        -2.3699169439139483e262,
        1.8671844674744074e19,
        0.1 + 0.2,
        1e-7,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
    ] {
        for literal in [format!("{x}"), format!("{x:e}"), format!("{x:?}")] {
            assert_eq!(decode_number(&literal), Some(x), "{literal}");
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn json_floats_decode_exactly_random(bits in any::<u64>()) {
        let x = f64::from_bits(bits);
        prop_assume!(x.is_finite());
        prop_assert_eq!(decode_number(&format!("{x:e}")), Some(x));
        prop_assert_eq!(decode_number(&format!("{x:?}")), Some(x));
    }

    #[test]
    fn socketio_packets_round_trip(p in sio_packet()) {
        for raw_args in [false, true] {
        let config = DecoderConfig { max_attachments: 8, max_json_depth: 32, raw_args };
        checks::sio_round_trip(&p, config);
        // The same through the fuzz target's path, with the decoder's own invariants.
        prop_assert_eq!(checks::sio_sequence(config, &frames_as_inputs(&p)), 1);
        }
    }

    #[test]
    fn socketio_mutated_packets(
        p in sio_packet(),
        text_edits in edits(),
        seq_ops in prop::collection::vec((0u8..4, any::<usize>()), 0..3),
        cfg in any::<u8>(),
    ) {
        let mut inputs = frames_as_inputs(&p);
        if let Some(SioInput::Text(t)) = inputs.first_mut() {
            *t = String::from_utf8_lossy(&mutate(t.as_bytes(), &text_edits)).into_owned();
        }
        let inputs = mutate_sequence(inputs, &seq_ops);
        checks::sio_sequence(checks::sio_config(cfg), &inputs);
        checks::sio_sequence(DecoderConfig::default(), &inputs);
    }

    #[test]
    fn engineio_payloads_round_trip(
        packets in prop::collection::vec(eio_packet(), 1..6),
        body_edits in edits(),
    ) {
        let mut enc = PayloadEncoder::new();
        for p in &packets {
            enc.push(&p.encode());
        }
        let body = enc.finish();
        prop_assert_eq!(engineio::decode_payload(body.clone(), packets.len()), Ok(packets.clone()));
        checks::payload_with_max(&body, packets.len());
        for p in &packets {
            if let engineio::Frame::Text(t) = p.encode() {
                checks::engineio_packet(t.as_bytes());
            }
        }
        let mutated = mutate(&body, &body_edits);
        checks::payload_with_max(&mutated, 8);
        checks::engineio_packet(&mutated);
    }

    #[test]
    fn handshakes_round_trip(h in handshake_value(), json_edits in edits()) {
        let json = h.to_json();
        prop_assert_eq!(Handshake::parse(&json), Ok(h));
        checks::handshake(json.as_bytes());
        let open = format!("0{json}");
        checks::engineio_packet(open.as_bytes());
        checks::handshake(&mutate(json.as_bytes(), &json_edits));
    }

    #[test]
    fn json_depth_matches_serde(v in json_value(), json_edits in edits()) {
        let text = serde_json::to_string(&v).unwrap_or_default();
        let depth = checks::value_depth(&v);
        prop_assert!(!exceeds_depth(text.as_bytes(), depth));
        prop_assert_eq!(exceeds_depth(text.as_bytes(), depth.saturating_sub(1)), depth > 0);
        checks::json_depth(text.as_bytes());
        let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
        checks::json_depth(pretty.as_bytes());
        checks::json_depth(&mutate(text.as_bytes(), &json_edits));
    }
}

// --- WebSocket frames (proto::wsframe) ------------------------------------------------------

/// A message the peer may send, within the oracle's limits.
fn ws_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        "[a-zé€😀 ]{0,120}".prop_map(|t| Message::Text(Str::from(t))),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Message::Binary(Bytes::from(b))),
        prop::collection::vec(any::<u8>(), 0..125).prop_map(|b| Message::Ping(Bytes::from(b))),
        prop::collection::vec(any::<u8>(), 0..125).prop_map(|b| Message::Pong(Bytes::from(b))),
    ]
}

/// Encode `m` as the peer of `role` would, a data message cut into `parts` fragments with a
/// ping between the first two.
fn ws_encode(role: Role, m: &Message, parts: usize, out: &mut bytes::BytesMut) -> Vec<Message> {
    let mask = || match role {
        Role::Server => Some(wsframe::random_mask()),
        Role::Client => None,
    };
    let frame = |out: &mut bytes::BytesMut, fin: bool, op: OpCode, payload: &[u8]| {
        let key = mask();
        wsframe::write_header(out, fin, op, payload.len(), key);
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(k) = key {
            wsframe::apply_mask(&mut out[start..], k, 0);
        }
    };
    let (op, payload) = match m {
        Message::Text(t) => (OpCode::Text, t.as_bytes().to_vec()),
        Message::Binary(b) => (OpCode::Binary, b.to_vec()),
        Message::Ping(b) => (OpCode::Ping, b.to_vec()),
        Message::Pong(b) => (OpCode::Pong, b.to_vec()),
        Message::Close(None) => (OpCode::Close, Vec::new()),
        Message::Close(Some(f)) => (OpCode::Close, wsframe::close_payload(f.code, &f.reason)),
    };
    if op.is_control() || parts <= 1 {
        frame(out, true, op, &payload);
        return vec![m.clone()];
    }
    // Cut anywhere, even inside a UTF-8 sequence: the text is checked across fragments.
    let size = payload.len().div_ceil(parts).max(1);
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[][..]; parts]
    } else {
        payload.chunks(size).collect()
    };
    let mut expected = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let op = if i == 0 { op } else { OpCode::Continuation };
        frame(out, i + 1 == chunks.len(), op, c);
        if i == 0 && chunks.len() > 1 {
            frame(out, true, OpCode::Ping, b"mid");
            expected.push(Message::Ping(Bytes::from_static(b"mid")));
        }
    }
    expected.push(m.clone());
    expected
}

proptest! {
    #![proptest_config(config(256))]

    /// A valid stream decodes to the messages sent, however it is split.
    #[test]
    fn ws_any_split_decodes_identically(
        msgs in prop::collection::vec((ws_message(), 1usize..5), 0..8),
        close in prop::option::of((1000u16..1004, "[a-z]{0,20}")),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
        server in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let mut bytes = bytes::BytesMut::new();
        let mut expected = Vec::new();
        for (m, parts) in &msgs {
            expected.extend(ws_encode(role, m, *parts, &mut bytes));
        }
        if let Some((code, reason)) = close {
            let m = Message::Close(Some(CloseFrame { code, reason }));
            expected.extend(ws_encode(role, &m, 1, &mut bytes));
        }
        let whole = checks::ws_decode_split(role, &bytes, &[]);
        prop_assert_eq!(&whole, &(expected, None));
        prop_assert_eq!(&checks::ws_decode_split(role, &bytes, &cuts), &whole);
        // One byte at a time.
        let every: Vec<usize> = (0..bytes.len()).collect();
        prop_assert_eq!(checks::ws_decode_split(role, &bytes, &every), whole);
    }

    /// Encoding then decoding gives the message back, for both roles.
    #[test]
    fn ws_encode_decode_round_trip(m in ws_message(), server in any::<bool>()) {
        let role = if server { Role::Server } else { Role::Client };
        checks::ws_round_trip(role, &m);
    }

    /// Random bytes, and valid streams with random bytes flipped, never panic and decode
    /// the same however split (the `wsframe` fuzz oracle).
    #[test]
    fn ws_mutated_streams(
        msgs in prop::collection::vec((ws_message(), 1usize..4), 1..5),
        edits in edits(),
        sel in any::<u8>(),
    ) {
        let role = if sel & 1 == 0 { Role::Server } else { Role::Client };
        let mut bytes = bytes::BytesMut::new();
        for (m, parts) in &msgs {
            ws_encode(role, m, *parts, &mut bytes);
        }
        let mut input = vec![sel];
        input.extend(mutate(&bytes, &edits));
        checks::wsframe(&input);
    }
}
