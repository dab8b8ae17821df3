//! Oracles shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and by the randomized smoke
//! test `tests/proto_fuzz.rs`, which includes this file as a module.
//!
//! Each public function takes untrusted input, feeds it to one of tether's sans-IO decoders and
//! panics when the outcome is not acceptable: decoding must return `Ok` or a typed `Err`, never
//! panic; whatever decodes must satisfy the decoder's documented invariants and survive a
//! re-encode / decode round trip.

use bytes::Bytes;
use serde_json::Value;
use tether::proto::Str;
use tether::proto::engineio::{self, Frame, Handshake, PacketParseError, PayloadEncoder};
use tether::proto::json::exceeds_depth;
use tether::proto::socketio::{
    self, Decoder, DecoderConfig, MAX_NAMESPACE_LEN, PacketType, ParseError, RESERVED_EVENTS,
};
use tether::proto::wsframe;

/// Separates the inputs of one `socketio_decoder` run (never valid in UTF-8).
pub const SIO_SPLIT: u8 = 0xff;
/// First byte of a `socketio_decoder` input that is a binary attachment (never valid in UTF-8).
pub const SIO_BINARY: u8 = 0xfe;
/// First byte of a `socketio_decoder` input that resets the decoder.
pub const SIO_RESET: u8 = 0xfd;

/// Most packets `engineio_payload` lets one body hold.
pub const PAYLOAD_MAX_PACKETS: u8 = 16;

/// Text from fuzz bytes: the bytes themselves when they are UTF-8, else a lossy copy.
fn text_of(data: &[u8]) -> Str {
    match Str::try_from_bytes(Bytes::copy_from_slice(data)) {
        Ok(s) => s,
        Err(_) => Str::from(String::from_utf8_lossy(data).into_owned()),
    }
}

// --- Str ------------------------------------------------------------------------------------

/// `Str` slicing never panics and agrees with `str` slicing.
pub fn str_slicing(s: &Str) {
    let text = s.as_str();
    let len = s.len();
    for start in [0, 1, 2, 3, len / 2, len.saturating_sub(1), len, len + 1] {
        let tail = s.slice_from(start);
        match text.get(start..) {
            Some(t) => assert_eq!(tail.as_str(), t),
            None => assert!(tail.is_empty()),
        }
        for end in [
            start,
            start + 1,
            start + 4,
            len,
            len + 1,
            start.saturating_sub(1),
        ] {
            let got = s.slice(start..end);
            assert_eq!(got.as_deref(), text.get(start..end), "{start}..{end}");
        }
    }
}

// --- Engine.IO ------------------------------------------------------------------------------

/// Checks that an Engine.IO packet survives a WebSocket frame round trip and a one-packet
/// polling payload round trip. `wire` is the text it was decoded from, if any.
fn engineio_round_trip(packet: &engineio::Packet, wire: Option<&Str>) {
    let frame = packet.encode();
    match (&frame, packet) {
        (Frame::Binary(b), engineio::Packet::Binary(p)) => {
            assert_eq!(b, p);
            assert_eq!(packet.type_digit(), None);
            assert_eq!(&engineio::Packet::decode_binary(b.clone()), packet);
        }
        (Frame::Text(t), _) => {
            assert_eq!(t.as_bytes().first().copied(), packet.type_digit());
            assert_eq!(
                engineio::Packet::decode_text(t.clone()).as_ref(),
                Ok(packet)
            );
            if let Some(wire) = wire {
                // Payload-carrying types re-encode byte for byte; the others to their digit.
                match packet {
                    engineio::Packet::Close
                    | engineio::Packet::Upgrade
                    | engineio::Packet::Noop => {
                        assert_eq!(t.as_bytes(), wire.as_bytes().get(..1).unwrap_or_default());
                    }
                    _ => assert_eq!(t, wire),
                }
            }
        }
        _ => panic!("{packet:?} encoded as {frame:?}"),
    }
    // A polling payload cannot carry a text packet holding the record separator.
    let splits = matches!(&frame, Frame::Text(t) if t.as_bytes().contains(&engineio::SEPARATOR));
    let mut enc = PayloadEncoder::new();
    let expected_len = enc.encoded_len(&frame);
    enc.push(&frame);
    assert_eq!(enc.len(), expected_len);
    assert_eq!(enc.count(), 1);
    if !splits {
        assert_eq!(
            engineio::decode_payload(enc.finish(), 1),
            Ok(vec![packet.clone()])
        );
    }
}

/// `Packet::decode_text` on the input as text (lossy when it is not UTF-8), and
/// `Packet::decode_binary` on the raw bytes.
pub fn engineio_packet(data: &[u8]) {
    let raw = Bytes::copy_from_slice(data);
    let bin = engineio::Packet::decode_binary(raw.clone());
    assert_eq!(bin, engineio::Packet::Binary(raw));
    engineio_round_trip(&bin, None);

    let s = text_of(data);
    str_slicing(&s);
    match engineio::Packet::decode_text(s.clone()) {
        Ok(p) => {
            if let engineio::Packet::Binary(b) = &p {
                // Base64 never grows when decoded.
                assert_eq!(s.as_bytes().first(), Some(&b'b'));
                assert!(b.len() <= s.len().saturating_sub(1) / 4 * 3 + 3);
            }
            engineio_round_trip(
                &p,
                Some(&s).filter(|_| !matches!(p, engineio::Packet::Binary(_))),
            );
        }
        Err(e) => {
            let _ = e.to_string();
            match e {
                PacketParseError::Empty => assert!(s.is_empty()),
                PacketParseError::UnknownType(c) => {
                    assert_eq!(s.as_str().chars().next(), Some(c));
                    assert!(!"0123456b".contains(c));
                }
                PacketParseError::InvalidBase64 => assert_eq!(s.as_bytes().first(), Some(&b'b')),
                other => panic!("decode_text({s:?}) returned {other:?}"),
            }
        }
    }
}

/// `decode_payload` on the input after its first byte, allowing `first % 16` packets.
pub fn engineio_payload(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    payload_with_max(body, usize::from(first % PAYLOAD_MAX_PACKETS));
}

/// `decode_payload(body, max)`: every accepted body re-encodes to an equal one.
pub fn payload_with_max(body: &[u8], max: usize) {
    let records = body.split(|&b| b == engineio::SEPARATOR).count();
    match engineio::decode_payload(Bytes::copy_from_slice(body), max) {
        Ok(packets) => {
            assert!(std::str::from_utf8(body).is_ok());
            assert_eq!(packets.len(), records);
            assert!(!packets.is_empty() && packets.len() <= max);
            let mut enc = PayloadEncoder::new();
            let mut len = 0;
            for p in &packets {
                let frame = p.encode();
                len += enc.encoded_len(&frame);
                enc.push(&frame);
                assert_eq!(enc.len(), len);
            }
            assert_eq!(enc.count(), packets.len());
            assert_eq!(engineio::decode_payload(enc.finish(), max), Ok(packets));
        }
        Err(e) => {
            let _ = e.to_string();
            match e {
                PacketParseError::Empty => assert!(body.is_empty()),
                PacketParseError::TooManyPackets => assert!(records > max),
                PacketParseError::InvalidUtf8 => assert!(std::str::from_utf8(body).is_err()),
                _ => {}
            }
        }
    }
}

/// `Handshake::parse` on the input as text (lossy when it is not UTF-8).
pub fn handshake(data: &[u8]) {
    let s = text_of(data);
    match Handshake::parse(&s) {
        Ok(h) => {
            assert!(!h.sid.is_empty() && h.sid.len() <= engineio::MAX_SID_LEN);
            assert!((1..=engineio::MAX_PING_MS).contains(&h.ping_interval));
            assert!((1..=engineio::MAX_PING_MS).contains(&h.ping_timeout));
            assert!(h.max_payload > 0);
            assert!(h.upgrades.len() <= 1 && h.upgrades.iter().all(|u| u == "websocket"));
            assert!(!exceeds_depth(s.as_bytes(), 8));
            // What was accepted is what a generic JSON parse sees. That parse may refuse
            // more: unknown fields are skipped unchecked (e.g. a number beyond f64 range).
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                assert_eq!(v.get("sid").and_then(Value::as_str), Some(h.sid.as_str()));
                let u64_at = |k: &str| v.get(k).and_then(Value::as_u64);
                assert_eq!(u64_at("pingInterval"), Some(h.ping_interval));
                assert_eq!(u64_at("pingTimeout"), Some(h.ping_timeout));
                match v.get("maxPayload") {
                    None | Some(Value::Null) => {
                        assert_eq!(h.max_payload, engineio::DEFAULT_MAX_PAYLOAD);
                    }
                    Some(m) => assert_eq!(m.as_u64(), Some(h.max_payload)),
                }
            }
            assert_eq!(Handshake::parse(&h.to_json()), Ok(h));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

// --- JSON depth -----------------------------------------------------------------------------

/// Nesting depth of a parsed value: scalars 0, `[]` 1, `[{}]` 2.
pub fn value_depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `exceeds_depth` against the depth serde_json finds, wherever serde_json accepts the input.
pub fn json_depth(data: &[u8]) {
    assert!(!exceeds_depth(data, usize::MAX));
    let samples = [0, 1, 2, 7, 8, 63, 64, 127];
    // Monotonic in the limit, whatever the input.
    let mut prev = true;
    for d in samples {
        let now = exceeds_depth(data, d);
        assert!(
            prev || !now,
            "exceeds_depth({d}) after a smaller limit held"
        );
        prev = now;
    }
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        let depth = value_depth(&v);
        for d in samples
            .into_iter()
            .chain([depth.saturating_sub(1), depth, depth + 1])
        {
            assert_eq!(
                exceeds_depth(data, d),
                depth > d,
                "limit {d}, depth {depth}"
            );
        }
    }
}

// --- Socket.IO ------------------------------------------------------------------------------

/// One input to a Socket.IO [`Decoder`].
#[derive(Debug, Clone)]
pub enum SioInput {
    /// `decode_text`.
    Text(String),
    /// `decode_binary`.
    Binary(Bytes),
    /// `reset`.
    Reset,
}

/// The decoder limits coded by one byte: `max_attachments` 0..=7, `max_json_depth` 1..=32.
/// The low bit also chooses `raw_args` (checked text instead of parsed values).
pub fn sio_config(b: u8) -> DecoderConfig {
    DecoderConfig {
        max_attachments: usize::from(b % 8),
        max_json_depth: 1 + usize::from(b / 8 % 32),
        raw_args: b % 2 == 1,
    }
}

/// `p` with a [`socketio::Packet::raw`] payload turned into `data` (the form a decoder
/// without `raw_args` returns).
pub fn sio_as_values(p: &socketio::Packet) -> socketio::Packet {
    let mut q = p.clone();
    if q.raw.is_some() {
        q.data = p.data_value().map(|v| v.into_owned());
        q.raw = None;
    }
    q
}

/// Splits fuzz bytes into decoder inputs: the first byte is the config ([`sio_config`]), the
/// rest is split on [`SIO_SPLIT`]; a chunk starting with [`SIO_BINARY`] is an attachment (the
/// rest of the chunk), one starting with [`SIO_RESET`] a reset, any other chunk is text.
pub fn sio_inputs(data: &[u8]) -> Option<(DecoderConfig, Vec<SioInput>)> {
    let (&first, rest) = data.split_first()?;
    let inputs = rest
        .split(|&b| b == SIO_SPLIT)
        .map(|chunk| match chunk.split_first() {
            Some((&SIO_BINARY, bin)) => SioInput::Binary(Bytes::copy_from_slice(bin)),
            Some((&SIO_RESET, _)) => SioInput::Reset,
            _ => SioInput::Text(String::from_utf8_lossy(chunk).into_owned()),
        })
        .collect();
    Some((sio_config(first), inputs))
}

/// The fuzz target: [`sio_inputs`] fed to one decoder by [`sio_sequence`].
pub fn socketio_decoder(data: &[u8]) {
    if let Some((config, inputs)) = sio_inputs(data) {
        sio_sequence(config, &inputs);
    }
}

/// Feeds `inputs` to one decoder; checks every outcome and round-trips every packet. Returns
/// how many packets were decoded.
pub fn sio_sequence(config: DecoderConfig, inputs: &[SioInput]) -> usize {
    let mut d = Decoder::new(config);
    // The oracle for `raw_args`: the same decoder parsing values must accept and refuse
    // the same inputs, with the same packets and errors.
    let mut plain = Decoder::new(DecoderConfig {
        raw_args: false,
        ..config
    });
    let mut fed: Vec<Bytes> = Vec::new();
    let mut decoded = 0;
    for input in inputs {
        let (out, oracle) = match input {
            SioInput::Text(t) => {
                fed.clear();
                (d.decode_text(t), plain.decode_text(t))
            }
            SioInput::Binary(b) => {
                fed.push(b.clone());
                (d.decode_binary(b.clone()), plain.decode_binary(b.clone()))
            }
            SioInput::Reset => {
                d.reset();
                plain.reset();
                assert!(!d.has_pending());
                continue;
            }
        };
        assert_eq!(
            out.clone().map(|o| o.map(|p| sio_as_values(&p))),
            oracle,
            "raw_args changed the outcome of {input:?}"
        );
        if let Ok(Some(p)) = &out
            && let Some(raw) = &p.raw
        {
            assert!(!config.raw_args || p.attachments.is_empty());
            assert!(config.raw_args);
            assert!(matches!(p.kind, PacketType::Event | PacketType::Ack));
            let v: Value = serde_json::from_str(&raw.args).expect("raw args are JSON");
            assert!(v.is_array());
            assert_eq!(raw.name.is_some(), p.kind == PacketType::Event);
        }
        let out = out.map(|o| o.map(|p| sio_as_values(&p)));
        match out {
            Ok(Some(p)) => {
                assert!(!d.has_pending());
                assert_eq!(
                    p.attachments, fed,
                    "attachments are the binaries fed in order"
                );
                sio_packet(&p, config);
                decoded += 1;
            }
            Ok(None) => {
                assert!(d.has_pending());
                assert!(fed.len() < config.max_attachments);
            }
            Err(e) => {
                assert!(!d.has_pending(), "{e:?} left a packet pending");
                let _ = e.to_string();
                if let ParseError::TooManyAttachments { count, max } = e {
                    assert!(count > max && max == config.max_attachments);
                }
            }
        }
    }
    decoded
}

/// Checks the invariants of a packet returned by a decoder with `config`, then that it
/// re-encodes to frames that decode to the same packet.
pub fn sio_packet(p: &socketio::Packet, config: DecoderConfig) {
    let nsp = p.nsp.as_str();
    assert!(nsp.starts_with('/') && nsp.len() <= MAX_NAMESPACE_LEN && !nsp.contains(','));
    assert!(p.attachments.len() <= config.max_attachments);
    if !p.kind.is_binary() {
        assert!(p.attachments.is_empty());
    }
    match (p.kind, &p.data) {
        (PacketType::Connect, None | Some(Value::Object(_))) => {}
        (PacketType::Disconnect, None) => {}
        (PacketType::ConnectError, Some(Value::Object(_) | Value::String(_))) => {}
        (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(_))) => {
            let name = p
                .event_name()
                .unwrap_or_else(|| panic!("unnamed event {p:?}"));
            assert!(!RESERVED_EVENTS.contains(&name));
        }
        (PacketType::Ack | PacketType::BinaryAck, Some(Value::Array(items))) => {
            assert!(p.id.is_some());
            assert_eq!(p.args(), items.as_slice());
        }
        _ => panic!("decoded packet with a bad shape: {p:?}"),
    }
    if let Some(data) = &p.data {
        assert!(value_depth(data) <= config.max_json_depth);
        check_placeholders(data, p.attachments.len());
    }
    sio_round_trip(p, config);
}

/// Every placeholder-like object (`"_placeholder": true`) is a valid reference.
fn check_placeholders(v: &Value, attachments: usize) {
    match v {
        Value::Array(items) => items
            .iter()
            .for_each(|i| check_placeholders(i, attachments)),
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            let n = socketio::placeholder_num(v);
            assert!(n.is_some_and(|n| n < attachments), "bad placeholder {v}");
        }
        Value::Object(map) => map
            .values()
            .for_each(|i| check_placeholders(i, attachments)),
        _ => {}
    }
}

/// The packet a decoder returns for the encoding of `p` (kind follows the attachments, an
/// empty namespace is `"/"`, a namespace without its leading `'/'` gets one).
pub fn sio_normalized(p: &socketio::Packet) -> socketio::Packet {
    let mut q = p.clone();
    let binary = !p.attachments.is_empty();
    q.kind = match p.kind {
        PacketType::Event | PacketType::BinaryEvent if binary => PacketType::BinaryEvent,
        PacketType::Event | PacketType::BinaryEvent => PacketType::Event,
        PacketType::Ack | PacketType::BinaryAck if binary => PacketType::BinaryAck,
        PacketType::Ack | PacketType::BinaryAck => PacketType::Ack,
        other => other,
    };
    if q.nsp.is_empty() {
        q.nsp = Str::from_static("/");
    } else if !q.nsp.starts_with('/') {
        q.nsp = Str::from(format!("/{}", q.nsp.as_str()));
    }
    q
}

/// `encode_frames` then a fresh decoder with `config` gives back `sio_normalized(p)`.
pub fn sio_round_trip(p: &socketio::Packet, config: DecoderConfig) {
    let expected = sio_normalized(p);
    let text = p.encode_text();
    let frames = p.encode_frames();
    let binary_on_wire = expected.kind.is_binary();
    assert_eq!(
        frames.len(),
        1 + if binary_on_wire {
            p.attachments.len()
        } else {
            0
        }
    );
    let Some((Frame::Text(first), rest)) = frames.split_first() else {
        panic!("first frame of {p:?} is not text: {frames:?}");
    };
    assert_eq!(first.as_bytes().first(), Some(&b'4'));
    assert_eq!(first.get(1..), Some(text.as_str()));
    let mut d = Decoder::new(config);
    let mut out = d.decode_text(&text);
    for f in rest {
        let Frame::Binary(b) = f else {
            panic!("attachment frame is not binary: {frames:?}");
        };
        assert_eq!(out, Ok(None), "{text:?}");
        out = d.decode_binary(b.clone());
    }
    let out = out.map(|o| o.map(|q| sio_as_values(&q)));
    assert_eq!(
        out,
        Ok(Some(sio_as_values(&expected))),
        "round trip of {p:?} via {text:?}"
    );
    assert!(!d.has_pending());
}

// --- WebSocket frames -----------------------------------------------------------------------

/// Limits used by the `wsframe` oracle: small, so that inputs reach them.
pub const WS_LIMITS: wsframe::Limits = wsframe::Limits {
    max_frame: 300,
    max_message: 600,
    max_fragments: 8,
};

/// Everything a decoder gives for `input` fed in the pieces given by `cuts` (offsets), until
/// the input is used up or an error: the messages, then the error (if any).
pub fn ws_decode_split(
    role: wsframe::Role,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<wsframe::Message>, Option<wsframe::ProtocolError>) {
    let mut d = wsframe::Decoder::new(role, WS_LIMITS);
    let mut out = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.push(0);
    bounds.push(input.len());
    bounds.sort_unstable();
    bounds.dedup();
    for w in bounds.windows(2) {
        let mut piece = &input[w[0]..w[1]];
        loop {
            let before = piece.len();
            match d.decode(&mut piece) {
                Ok(Some(m)) => {
                    assert!(piece.len() <= before, "the decoder grew its input");
                    out.push(m);
                }
                Ok(None) => {
                    assert!(piece.is_empty(), "need-more with input left");
                    break;
                }
                Err(e) => {
                    assert!(
                        matches!(e.code, 1002 | 1007 | 1009),
                        "close code {}",
                        e.code
                    );
                    // The error is sticky.
                    assert_eq!(d.decode(&mut &b"\x81\x80\0\0\0\0"[..]), Err(e));
                    return (out, Some(e));
                }
            }
            assert!(d.buffered() <= WS_LIMITS.max_message + 125);
        }
    }
    (out, None)
}

/// `wsframe`: the first byte picks the role and where the rest is cut; the decoder must give
/// the same messages and error however the bytes are split, every message must respect the
/// limits, and every message re-encodes to a frame that decodes equal.
pub fn wsframe(data: &[u8]) {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let role = if sel & 1 == 0 {
        wsframe::Role::Server
    } else {
        wsframe::Role::Client
    };
    let whole = ws_decode_split(role, input, &[]);
    let step = 1 + (sel as usize >> 1) % 7;
    let cuts: Vec<usize> = (0..input.len()).step_by(step).collect();
    assert_eq!(
        ws_decode_split(role, input, &cuts),
        whole,
        "split every {step}"
    );
    for m in &whole.0 {
        ws_round_trip(role, m);
    }
}

/// A message encoded by the peer of `role` decodes back equal.
pub fn ws_round_trip(role: wsframe::Role, m: &wsframe::Message) {
    use wsframe::{Message, OpCode, Role};
    let peer = match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let (op, payload): (OpCode, Vec<u8>) = match m {
        Message::Text(s) => {
            assert!(s.len() <= WS_LIMITS.max_message);
            (OpCode::Text, s.as_bytes().to_vec())
        }
        Message::Binary(b) => {
            assert!(b.len() <= WS_LIMITS.max_message);
            (OpCode::Binary, b.to_vec())
        }
        Message::Ping(b) => (OpCode::Ping, b.to_vec()),
        Message::Pong(b) => (OpCode::Pong, b.to_vec()),
        Message::Close(None) => (OpCode::Close, Vec::new()),
        Message::Close(Some(f)) => {
            assert!(wsframe::is_valid_close_code(f.code));
            (OpCode::Close, wsframe::close_payload(f.code, &f.reason))
        }
    };
    if let Message::Ping(b) | Message::Pong(b) = m {
        assert!(b.len() <= 125);
    }
    let mut buf = bytes::BytesMut::new();
    wsframe::encode_frame(&mut buf, peer, op, &payload);
    let mut d = wsframe::Decoder::new(role, WS_LIMITS);
    let mut input = &buf[..];
    assert_eq!(d.decode(&mut input), Ok(Some(m.clone())));
    assert!(input.is_empty() && d.is_idle());
}
