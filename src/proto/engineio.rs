//! Engine.IO protocol v4: packets, WebSocket frames, HTTP long-polling payloads and the
//! handshake.
//!
//! A text packet is one type digit (`'0'`..=`'6'`) followed by its payload. Over WebSocket
//! every packet is one frame (binary messages travel as binary frames); over long-polling
//! several packets are joined with the record separator [`SEPARATOR`], binary messages
//! being written as `'b'` followed by their standard base64 encoding.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use bytes::{BufMut, Bytes, BytesMut};

use super::Str;

/// The Engine.IO protocol revision implemented here (the `EIO=4` query parameter).
pub const PROTOCOL_VERSION: u32 = 4;

/// Record separator between the packets of a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// Default `maxPayload` assumed when a handshake does not announce one.
pub const DEFAULT_MAX_PAYLOAD: u64 = 1_000_000;

/// Longest `sid` accepted by [`Handshake::parse`], in bytes.
pub const MAX_SID_LEN: usize = 256;

/// Largest `pingInterval`/`pingTimeout` accepted by [`Handshake::parse`], in milliseconds.
pub const MAX_PING_MS: u64 = 3_600_000;

/// Lenient decoder for incoming base64: standard alphabet, padding optional.
const BASE64_DECODER: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `'0'`: the handshake, whose payload is the JSON text of a [`Handshake`].
    Open(Str),
    /// `'1'`: the transport is closing.
    Close,
    /// `'2'`: heartbeat request, with an optional payload (`"probe"` during an upgrade).
    Ping(Str),
    /// `'3'`: heartbeat reply, with an optional payload (`"probe"` during an upgrade).
    Pong(Str),
    /// `'4'`: a text message; the payload does not include the `'4'`.
    Message(Str),
    /// A binary message (a WebSocket binary frame, or `'b'` + base64 in a polling payload).
    Binary(Bytes),
    /// `'5'`: switch to the probed transport.
    Upgrade,
    /// `'6'`: no-op, used to end a pending poll during an upgrade.
    Noop,
}

/// What travels as one WebSocket message: a text frame holding a whole encoded packet
/// (type digit included), or a binary frame holding a binary message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame: one encoded packet, type digit included (e.g. `"4hello"`).
    Text(Str),
    /// A binary frame: the bytes of one binary message.
    Binary(Bytes),
}

impl Frame {
    /// The WebSocket message that carries this frame: its opcode and payload.
    pub(crate) fn ws_parts(&self) -> (super::wsframe::OpCode, &[u8]) {
        use super::wsframe::OpCode;
        match self {
            Frame::Text(s) => (OpCode::Text, s.as_bytes()),
            Frame::Binary(b) => (OpCode::Binary, &b[..]),
        }
    }
}

/// Why an Engine.IO packet or polling payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketParseError {
    /// The packet or the payload was empty.
    #[error("empty packet")]
    Empty,
    /// The first character is not a known packet type.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A `'b'` record does not hold valid base64.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    /// The text is not valid UTF-8.
    #[error("invalid utf-8")]
    InvalidUtf8,
    /// A polling payload holds an empty record (two separators in a row, or one at an end).
    #[error("empty packet in payload")]
    EmptyPacket,
    /// A polling payload holds more packets than allowed.
    #[error("too many packets in payload")]
    TooManyPackets,
    /// The payload is larger than allowed (for callers that enforce `maxPayload`).
    #[error("payload too large")]
    PayloadTooLarge,
}

impl Packet {
    /// Decodes a text frame, or one polling record.
    ///
    /// Zero-copy: payloads are `s.slice_from(1)`. Payloads of `Close`, `Upgrade` and `Noop`
    /// are ignored, as the reference parser does. A record starting with `'b'` is decoded as
    /// base64 binary (this copies), so polling records can be passed here as they are.
    pub fn decode_text(s: Str) -> Result<Packet, PacketParseError> {
        let Some(&first) = s.as_bytes().first() else {
            return Err(PacketParseError::Empty);
        };
        // `first` is ASCII in every accepted branch, so offset 1 is a char boundary.
        let packet = match first {
            b'0' => Packet::Open(s.slice_from(1)),
            b'1' => Packet::Close,
            b'2' => Packet::Ping(s.slice_from(1)),
            b'3' => Packet::Pong(s.slice_from(1)),
            b'4' => Packet::Message(s.slice_from(1)),
            b'5' => Packet::Upgrade,
            b'6' => Packet::Noop,
            b'b' => {
                let data = s.as_bytes().get(1..).unwrap_or_default();
                let decoded = BASE64_DECODER
                    .decode(data)
                    .map_err(|_| PacketParseError::InvalidBase64)?;
                Packet::Binary(Bytes::from(decoded))
            }
            _ => {
                let c = s.as_str().chars().next().unwrap_or('\u{fffd}');
                return Err(PacketParseError::UnknownType(c));
            }
        };
        Ok(packet)
    }

    /// Decodes a binary WebSocket frame, which is always a binary message in v4.
    pub fn decode_binary(b: Bytes) -> Packet {
        Packet::Binary(b)
    }

    /// The type digit of a text packet (`None` for [`Packet::Binary`]).
    pub fn type_digit(&self) -> Option<u8> {
        match self {
            Packet::Open(_) => Some(b'0'),
            Packet::Close => Some(b'1'),
            Packet::Ping(_) => Some(b'2'),
            Packet::Pong(_) => Some(b'3'),
            Packet::Message(_) => Some(b'4'),
            Packet::Upgrade => Some(b'5'),
            Packet::Noop => Some(b'6'),
            Packet::Binary(_) => None,
        }
    }

    /// Encodes for a WebSocket frame: [`Packet::Binary`] becomes [`Frame::Binary`], every
    /// other packet becomes [`Frame::Text`] holding `"<digit><payload>"`.
    pub fn encode(&self) -> Frame {
        match self {
            Packet::Binary(b) => Frame::Binary(b.clone()),
            Packet::Close => Frame::Text(Str::from_static("1")),
            Packet::Upgrade => Frame::Text(Str::from_static("5")),
            Packet::Noop => Frame::Text(Str::from_static("6")),
            Packet::Ping(p) if p.is_empty() => Frame::Text(Str::from_static("2")),
            Packet::Pong(p) if p.is_empty() => Frame::Text(Str::from_static("3")),
            Packet::Open(p) => Frame::Text(prefixed('0', p)),
            Packet::Ping(p) => Frame::Text(prefixed('2', p)),
            Packet::Pong(p) => Frame::Text(prefixed('3', p)),
            Packet::Message(p) => Frame::Text(encode_message(p)),
        }
    }
}

/// `digit` followed by `payload`, built with one allocation.
fn prefixed(digit: char, payload: &str) -> Str {
    let mut s = String::with_capacity(payload.len().saturating_add(1));
    s.push(digit);
    s.push_str(payload);
    Str::from(s)
}

/// `"4"` + `payload` (an encoded message packet), built with one allocation.
pub fn encode_message(payload: &str) -> Str {
    prefixed('4', payload)
}

/// Decodes a polling POST body.
///
/// The body must be UTF-8; records are split on [`SEPARATOR`]; a record starting with `'b'`
/// is base64 binary, any other record is decoded by [`Packet::decode_text`] (zero-copy).
/// An empty body or an empty record is an error, and so is a body holding more than
/// `max_packets` records ([`PacketParseError::TooManyPackets`]). Memory use is bounded by the
/// records actually present.
pub fn decode_payload(body: Bytes, max_packets: usize) -> Result<Vec<Packet>, PacketParseError> {
    if body.is_empty() {
        return Err(PacketParseError::Empty);
    }
    let body = Str::try_from_bytes(body).map_err(|_| PacketParseError::InvalidUtf8)?;
    let bytes = body.as_bytes();
    let mut packets = Vec::new();
    let mut start = 0usize;
    loop {
        let rest = bytes.get(start..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|&b| b == SEPARATOR)
            .map_or(bytes.len(), |i| start + i);
        if end == start {
            return Err(PacketParseError::EmptyPacket);
        }
        if packets.len() >= max_packets {
            return Err(PacketParseError::TooManyPackets);
        }
        // SEPARATOR is ASCII, so both ends are char boundaries; `slice` checks anyway.
        let record = body
            .slice(start..end)
            .ok_or(PacketParseError::InvalidUtf8)?;
        packets.push(Packet::decode_text(record)?);
        if end >= bytes.len() {
            return Ok(packets);
        }
        start = end + 1;
    }
}

/// Builds a polling GET response body from frames: text frames verbatim, binary frames as
/// `'b'` + base64 (standard alphabet, with padding), separated by [`SEPARATOR`].
#[derive(Debug, Default)]
pub struct PayloadEncoder {
    buf: BytesMut,
    count: usize,
}

impl PayloadEncoder {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes that pushing `frame` would add (separator included), so callers can respect
    /// `maxPayload`.
    pub fn encoded_len(&self, frame: &Frame) -> usize {
        let sep = usize::from(self.count > 0);
        let body = match frame {
            Frame::Text(s) => s.len(),
            Frame::Binary(b) => base64::encoded_len(b.len(), true)
                .and_then(|n| n.checked_add(1))
                .unwrap_or(usize::MAX),
        };
        body.saturating_add(sep)
    }

    /// Appends `frame`.
    pub fn push(&mut self, frame: &Frame) {
        let add = self.encoded_len(frame);
        self.buf.reserve(add);
        if self.count > 0 {
            self.buf.put_u8(SEPARATOR);
        }
        match frame {
            Frame::Text(s) => self.buf.extend_from_slice(s.as_bytes()),
            Frame::Binary(b) => {
                self.buf.put_u8(b'b');
                let start = self.buf.len();
                let n = base64::encoded_len(b.len(), true).unwrap_or(0);
                self.buf.resize(start + n, 0);
                let written = self
                    .buf
                    .get_mut(start..)
                    .map(|out| STANDARD.encode_slice(b, out));
                if !matches!(written, Some(Ok(w)) if w == n) {
                    // Cannot happen: the output was sized by `encoded_len`.
                    self.buf.truncate(start);
                }
            }
        }
        self.count += 1;
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Frames pushed so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The response body.
    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

/// The JSON payload of the [`Packet::Open`] handshake.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    /// The session id.
    pub sid: String,
    /// Transports the client may upgrade to (`["websocket"]` from polling, `[]` otherwise).
    pub upgrades: Vec<String>,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong (on top of the interval) before closing.
    pub ping_timeout: u64,
    /// Largest payload the server accepts, in bytes.
    pub max_payload: u64,
}

/// Why a server handshake was rejected by [`Handshake::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The text is not a JSON object of the expected shape.
    #[error("invalid handshake json: {0}")]
    InvalidJson(String),
    /// The `sid` is empty or longer than [`MAX_SID_LEN`] bytes.
    #[error("invalid sid")]
    InvalidSid,
    /// `pingInterval` is outside `1..=3_600_000` milliseconds.
    #[error("invalid ping interval {0}")]
    InvalidPingInterval(u64),
    /// `pingTimeout` is outside `1..=3_600_000` milliseconds.
    #[error("invalid ping timeout {0}")]
    InvalidPingTimeout(u64),
    /// `maxPayload` is zero.
    #[error("invalid max payload")]
    InvalidMaxPayload,
}

/// The handshake as received, before validation.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHandshake {
    sid: String,
    #[serde(default)]
    upgrades: Vec<String>,
    ping_interval: u64,
    ping_timeout: u64,
    #[serde(default)]
    max_payload: Option<u64>,
}

impl Handshake {
    /// The JSON text for the [`Packet::Open`] payload.
    pub fn to_json(&self) -> String {
        // Serializing this struct cannot fail (string keys, integers, strings).
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and validates a server's handshake (client side).
    ///
    /// `sid` must be non-empty and at most [`MAX_SID_LEN`] bytes; `pingInterval` and
    /// `pingTimeout` must be in `1..=3_600_000` ms; `maxPayload` must be positive and
    /// defaults to [`DEFAULT_MAX_PAYLOAD`] when missing; a missing `upgrades` is empty, and
    /// only known upgrades (`"websocket"`) are kept, unknown ones being dropped.
    pub fn parse(json: &str) -> Result<Handshake, HandshakeError> {
        if super::json::exceeds_depth(json.as_bytes(), 8) {
            return Err(HandshakeError::InvalidJson("nested too deeply".into()));
        }
        let raw: RawHandshake =
            serde_json::from_str(json).map_err(|e| HandshakeError::InvalidJson(e.to_string()))?;
        if raw.sid.is_empty() || raw.sid.len() > MAX_SID_LEN {
            return Err(HandshakeError::InvalidSid);
        }
        if !(1..=MAX_PING_MS).contains(&raw.ping_interval) {
            return Err(HandshakeError::InvalidPingInterval(raw.ping_interval));
        }
        if !(1..=MAX_PING_MS).contains(&raw.ping_timeout) {
            return Err(HandshakeError::InvalidPingTimeout(raw.ping_timeout));
        }
        let max_payload = raw.max_payload.unwrap_or(DEFAULT_MAX_PAYLOAD);
        if max_payload == 0 {
            return Err(HandshakeError::InvalidMaxPayload);
        }
        let mut upgrades = raw.upgrades;
        upgrades.retain(|u| u == "websocket");
        upgrades.dedup();
        Ok(Handshake {
            sid: raw.sid,
            upgrades,
            ping_interval: raw.ping_interval,
            ping_timeout: raw.ping_timeout,
            max_payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> Result<Packet, PacketParseError> {
        Packet::decode_text(Str::from_static(s))
    }

    fn frame_text(f: Frame) -> Option<Str> {
        match f {
            Frame::Text(s) => Some(s),
            Frame::Binary(_) => None,
        }
    }

    #[test]
    fn decode_every_type() {
        assert_eq!(
            text(r#"0{"sid":"x"}"#),
            Ok(Packet::Open(Str::from(r#"{"sid":"x"}"#)))
        );
        assert_eq!(text("1"), Ok(Packet::Close));
        assert_eq!(text("2"), Ok(Packet::Ping(Str::default())));
        assert_eq!(text("2probe"), Ok(Packet::Ping(Str::from("probe"))));
        assert_eq!(text("3"), Ok(Packet::Pong(Str::default())));
        assert_eq!(text("3probe"), Ok(Packet::Pong(Str::from("probe"))));
        assert_eq!(text("4hello é"), Ok(Packet::Message(Str::from("hello é"))));
        assert_eq!(text("4"), Ok(Packet::Message(Str::default())));
        assert_eq!(text("5"), Ok(Packet::Upgrade));
        assert_eq!(text("6"), Ok(Packet::Noop));
        assert_eq!(
            text("bAQID"),
            Ok(Packet::Binary(Bytes::from_static(&[1, 2, 3])))
        );
        assert_eq!(
            Packet::decode_binary(Bytes::from_static(b"\x00\xff")),
            Packet::Binary(Bytes::from_static(b"\x00\xff"))
        );
    }

    #[test]
    fn decode_is_zero_copy() {
        let s = Str::from(String::from("4payload"));
        let base = s.as_bytes().as_ptr();
        let Ok(Packet::Message(m)) = Packet::decode_text(s.clone()) else {
            panic!("not a message");
        };
        assert_eq!(m.as_bytes().as_ptr(), base.wrapping_add(1));
    }

    #[test]
    fn decode_errors() {
        assert_eq!(text(""), Err(PacketParseError::Empty));
        assert_eq!(text("7"), Err(PacketParseError::UnknownType('7')));
        assert_eq!(text("x4"), Err(PacketParseError::UnknownType('x')));
        assert_eq!(text("é"), Err(PacketParseError::UnknownType('é')));
        assert_eq!(text("b!!!"), Err(PacketParseError::InvalidBase64));
        assert_eq!(text("bA"), Err(PacketParseError::InvalidBase64));
    }

    #[test]
    fn encode_every_type() {
        let cases: Vec<(Packet, &str)> = vec![
            (Packet::Open(Str::from("{}")), "0{}"),
            (Packet::Close, "1"),
            (Packet::Ping(Str::default()), "2"),
            (Packet::Ping(Str::from("probe")), "2probe"),
            (Packet::Pong(Str::default()), "3"),
            (Packet::Pong(Str::from("probe")), "3probe"),
            (Packet::Message(Str::from("hi")), "4hi"),
            (Packet::Upgrade, "5"),
            (Packet::Noop, "6"),
        ];
        for (packet, wire) in cases {
            let encoded = frame_text(packet.encode());
            assert_eq!(encoded.as_deref(), Some(wire));
            assert_eq!(Packet::decode_text(Str::from(wire)), Ok(packet.clone()));
            assert_eq!(packet.type_digit(), wire.as_bytes().first().copied());
        }
        let bin = Packet::Binary(Bytes::from_static(b"\x01\x02"));
        assert_eq!(bin.encode(), Frame::Binary(Bytes::from_static(b"\x01\x02")));
        assert_eq!(bin.type_digit(), None);
        assert_eq!(encode_message("abc"), "4abc");
        assert_eq!(encode_message(""), "4");
    }

    #[test]
    fn payload_decode() {
        let body = Bytes::from_static(b"4hello\x1e2probe\x1ebAQID\x1e1");
        assert_eq!(
            decode_payload(body, 16),
            Ok(vec![
                Packet::Message(Str::from("hello")),
                Packet::Ping(Str::from("probe")),
                Packet::Binary(Bytes::from_static(&[1, 2, 3])),
                Packet::Close,
            ])
        );
        assert_eq!(
            decode_payload(Bytes::from_static(b"4"), 1),
            Ok(vec![Packet::Message(Str::default())])
        );
        assert_eq!(
            decode_payload(Bytes::from_static(b"b"), 1),
            Ok(vec![Packet::Binary(Bytes::new())])
        );
        // Unpadded base64 is accepted too.
        assert_eq!(
            decode_payload(Bytes::from_static(b"bAQI"), 1),
            Ok(vec![Packet::Binary(Bytes::from_static(&[1, 2]))])
        );
        assert_eq!(
            decode_payload(Bytes::from_static("4é\x1e4ü".as_bytes()), 2),
            Ok(vec![
                Packet::Message(Str::from("é")),
                Packet::Message(Str::from("ü"))
            ])
        );
    }

    #[test]
    fn payload_decode_errors() {
        let d = |b: &'static [u8], max| decode_payload(Bytes::from_static(b), max);
        assert_eq!(d(b"", 10), Err(PacketParseError::Empty));
        assert_eq!(d(b"\x1e", 10), Err(PacketParseError::EmptyPacket));
        assert_eq!(d(b"4a\x1e", 10), Err(PacketParseError::EmptyPacket));
        assert_eq!(d(b"\x1e4a", 10), Err(PacketParseError::EmptyPacket));
        assert_eq!(d(b"4a\x1e\x1e4b", 10), Err(PacketParseError::EmptyPacket));
        assert_eq!(d(b"4\xff", 10), Err(PacketParseError::InvalidUtf8));
        assert_eq!(d(b"4\xc3", 10), Err(PacketParseError::InvalidUtf8));
        assert_eq!(d(b"4a\x1eb!!", 10), Err(PacketParseError::InvalidBase64));
        assert_eq!(d(b"4a\x1e9", 10), Err(PacketParseError::UnknownType('9')));
        assert_eq!(
            d(b"4a\x1e4b\x1e4c", 2),
            Err(PacketParseError::TooManyPackets)
        );
        assert_eq!(d(b"4a", 0), Err(PacketParseError::TooManyPackets));
        assert_eq!(d(b"4a\x1e4b", 2).map(|v| v.len()), Ok(2));
        let many = Bytes::from("4\x1e".repeat(100_000) + "4");
        assert_eq!(
            decode_payload(many, 100),
            Err(PacketParseError::TooManyPackets)
        );
    }

    #[test]
    fn payload_encode() {
        let mut enc = PayloadEncoder::new();
        assert!(enc.is_empty());
        assert_eq!(enc.count(), 0);
        let frames = [
            Frame::Text(Str::from("4hello")),
            Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Frame::Text(Str::from("2")),
            Frame::Binary(Bytes::new()),
        ];
        let mut expected_len = 0;
        for f in &frames {
            expected_len += enc.encoded_len(f);
            enc.push(f);
            assert_eq!(enc.len(), expected_len);
        }
        assert_eq!(enc.count(), 4);
        assert!(!enc.is_empty());
        let body = enc.finish();
        assert_eq!(&body[..], b"4hello\x1ebAQIDBA==\x1e2\x1eb");
        // And back.
        assert_eq!(
            decode_payload(body, 10),
            Ok(vec![
                Packet::Message(Str::from("hello")),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                Packet::Ping(Str::default()),
                Packet::Binary(Bytes::new()),
            ])
        );
        assert!(PayloadEncoder::new().finish().is_empty());
    }

    #[test]
    fn payload_round_trip_every_packet() {
        let packets = vec![
            Packet::Open(Str::from(r#"{"sid":"a"}"#)),
            Packet::Close,
            Packet::Ping(Str::from("probe")),
            Packet::Pong(Str::default()),
            Packet::Message(Str::from("x")),
            Packet::Binary(Bytes::from_static(b"\xff\x00\x10")),
            Packet::Upgrade,
            Packet::Noop,
        ];
        let mut enc = PayloadEncoder::new();
        for p in &packets {
            enc.push(&p.encode());
        }
        assert_eq!(decode_payload(enc.finish(), packets.len()), Ok(packets));
    }

    #[test]
    fn handshake_round_trip() {
        let h = Handshake {
            sid: "abc".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25_000,
            ping_timeout: 20_000,
            max_payload: 1_000_000,
        };
        let json = h.to_json();
        assert_eq!(
            json,
            r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        assert_eq!(Handshake::parse(&json), Ok(h));
    }

    #[test]
    fn handshake_validation() {
        let ok = Handshake::parse(
            r#"{"sid":"s","upgrades":["websocket","webtransport","websocket"],"pingInterval":300,"pingTimeout":200,"extra":1}"#,
        );
        assert_eq!(
            ok,
            Ok(Handshake {
                sid: "s".into(),
                upgrades: vec!["websocket".into()],
                ping_interval: 300,
                ping_timeout: 200,
                max_payload: DEFAULT_MAX_PAYLOAD,
            })
        );
        let p = |s: &str| Handshake::parse(s);
        assert_eq!(
            p(r#"{"sid":"","upgrades":[],"pingInterval":1,"pingTimeout":1}"#),
            Err(HandshakeError::InvalidSid)
        );
        let long = format!(
            r#"{{"sid":"{}","upgrades":[],"pingInterval":1,"pingTimeout":1}}"#,
            "a".repeat(257)
        );
        assert_eq!(p(&long), Err(HandshakeError::InvalidSid));
        assert_eq!(
            p(r#"{"sid":"s","upgrades":[],"pingInterval":0,"pingTimeout":1}"#),
            Err(HandshakeError::InvalidPingInterval(0))
        );
        assert_eq!(
            p(r#"{"sid":"s","upgrades":[],"pingInterval":3600001,"pingTimeout":1}"#),
            Err(HandshakeError::InvalidPingInterval(3_600_001))
        );
        assert_eq!(
            p(r#"{"sid":"s","upgrades":[],"pingInterval":1,"pingTimeout":0}"#),
            Err(HandshakeError::InvalidPingTimeout(0))
        );
        assert_eq!(
            p(r#"{"sid":"s","upgrades":[],"pingInterval":1,"pingTimeout":1,"maxPayload":0}"#),
            Err(HandshakeError::InvalidMaxPayload)
        );
        assert!(p(r#"{"sid":"s","upgrades":[],"pingInterval":1}"#).is_err());
        assert!(p(r#"{"sid":1,"upgrades":[],"pingInterval":1,"pingTimeout":1}"#).is_err());
        assert!(p(r#"{"sid":"s","pingInterval":-1,"pingTimeout":1}"#).is_err());
        assert!(p(r#"{"sid":"s","pingInterval":1.5,"pingTimeout":1}"#).is_err());
        assert!(p("").is_err());
        assert!(p("[]").is_err());
        assert!(p(&"[".repeat(10_000)).is_err());
        assert_eq!(
            p(r#"{"sid":"s","pingInterval":1,"pingTimeout":1}"#).map(|h| h.upgrades),
            Ok(vec![])
        );
    }

    /// Deterministic xorshift generator for the no-panic loops.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self) -> Vec<u8> {
            const ALPHABET: &[u8] = b"0123456b\x1e4AQID=+/x{}[]\"\\,-\xff\xc3\xa9";
            let len = (self.next() % 40) as usize;
            (0..len)
                .map(|_| {
                    let r = self.next();
                    if r % 4 == 0 {
                        (r >> 8) as u8
                    } else {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    }
                })
                .collect()
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let b = rng.bytes();
            let bytes = Bytes::from(b.clone());
            let max = (rng.next() % 8) as usize;
            let _ = decode_payload(bytes.clone(), max);
            if let Ok(s) = Str::try_from_bytes(bytes.clone()) {
                if let Ok(p) = Packet::decode_text(s.clone()) {
                    // Text packets re-encode and decode to the same packet (or a binary one).
                    let mut enc = PayloadEncoder::new();
                    enc.push(&p.encode());
                    let _ = decode_payload(enc.finish(), 1);
                }
                let _ = Handshake::parse(&s);
            }
            let _ = Packet::decode_binary(bytes);
            let lossy = Str::from(String::from_utf8_lossy(&b).into_owned());
            let _ = Packet::decode_text(lossy);
        }
    }
}
