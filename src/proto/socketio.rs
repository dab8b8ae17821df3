//! Socket.IO protocol v5 packets, carried in Engine.IO v4 messages.
//!
//! Wire format of the text part: `<type digit>[<attachment count>-][<nsp>,][<ack id>][<json>]`.
//! The namespace is written only when it is not `"/"` and is always followed by `','`; the
//! attachment count is written only for the binary types. A binary packet is followed by its
//! attachments, one Engine.IO binary message each, referenced from the JSON by placeholder
//! objects `{"_placeholder":true,"num":N}`.
//!
//! Examples: `2["hello",1]`, `2/admin,["x"]`, `21["x"]` (ack id 1), `3/admin,13[{}]`,
//! `51-["b",{"_placeholder":true,"num":0}]`, `0/admin,{"token":"x"}`,
//! `4{"message":"Invalid namespace"}`, `1/admin,`.

use std::io::Write as _;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::Str;
use super::engineio::Frame;
use super::json::exceeds_depth;
use super::rawjson::{self, array_inner};

/// Longest namespace accepted by the [`Decoder`], in bytes (leading `'/'` included).
pub const MAX_NAMESPACE_LEN: usize = 256;

/// Most digits accepted in an attachment count (so counts above 99 999 are always rejected).
pub const MAX_ATTACHMENT_COUNT_DIGITS: usize = 5;

/// Most digits accepted in an ack id (`u64::MAX` has 20); larger values are rejected too.
pub const MAX_ACK_ID_DIGITS: usize = 20;

/// Event names that a peer may not emit: they are reserved for the library's own events.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The Socket.IO packet types, numbered as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    /// `0`: connect to a namespace (client), or connection accepted (server).
    Connect = 0,
    /// `1`: leave a namespace.
    Disconnect = 1,
    /// `2`: an event without binary attachments.
    Event = 2,
    /// `3`: an acknowledgement without binary attachments.
    Ack = 3,
    /// `4`: connection to a namespace refused (server).
    ConnectError = 4,
    /// `5`: an event with binary attachments.
    BinaryEvent = 5,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    /// The type numbered `n` (`0..=6`).
    pub fn from_u8(n: u8) -> Option<PacketType> {
        Some(match n {
            0 => PacketType::Connect,
            1 => PacketType::Disconnect,
            2 => PacketType::Event,
            3 => PacketType::Ack,
            4 => PacketType::ConnectError,
            5 => PacketType::BinaryEvent,
            6 => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// Whether this is [`PacketType::BinaryEvent`] or [`PacketType::BinaryAck`].
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }

    /// Whether this is [`PacketType::Event`] or [`PacketType::BinaryEvent`].
    pub fn is_event(self) -> bool {
        matches!(self, PacketType::Event | PacketType::BinaryEvent)
    }

    /// Whether this is [`PacketType::Ack`] or [`PacketType::BinaryAck`].
    pub fn is_ack(self) -> bool {
        matches!(self, PacketType::Ack | PacketType::BinaryAck)
    }
}

/// One Socket.IO packet (the wire model: binary attachments stay referenced by placeholders).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The packet type. When encoding, `Event`/`BinaryEvent` and `Ack`/`BinaryAck` are chosen
    /// from whether `attachments` is empty; a decoded binary packet keeps its `Binary*` type.
    pub kind: PacketType,
    /// The namespace, `"/"` when absent on the wire.
    pub nsp: Str,
    /// The ack id.
    pub id: Option<u64>,
    /// The JSON payload. `Connect`: the auth object or `None`; `ConnectError`: an object
    /// `{"message", "data"}` (or a string); events: `["name", ...args]`; acks: `[...args]`;
    /// `Disconnect`: `None`.
    pub data: Option<Value>,
    /// Binary attachments, referenced from `data` by `{"_placeholder":true,"num":N}`.
    pub attachments: Vec<Bytes>,
    /// Set instead of `data` for a text (non-binary) event or ack whose JSON is kept as
    /// checked text: decoded with [`DecoderConfig::raw_args`], or built with
    /// [`Packet::raw_event`] / [`Packet::raw_ack`]. `data` is then `None`;
    /// [`Packet::data_value`] parses it.
    pub raw: Option<RawArgs>,
}

/// The JSON of an event or ack kept as text (see [`Packet::raw`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawArgs {
    /// The event name (unescaped); `None` for an ack.
    pub name: Option<String>,
    /// The arguments: the text of a valid JSON array, with no placeholder objects.
    pub args: String,
}

/// The placeholder object standing for attachment `num`: `{"_placeholder":true,"num":num}`.
pub fn placeholder(num: usize) -> Value {
    let mut map = Map::with_capacity(2);
    map.insert("_placeholder".to_owned(), Value::Bool(true));
    map.insert("num".to_owned(), Value::from(num));
    Value::Object(map)
}

/// When `value` is a placeholder object (`"_placeholder": true`), its `num` if that is a
/// non-negative integer; `None` for any other value or for a malformed placeholder.
///
/// Packets returned by [`Decoder`] only hold placeholders whose `num` is below their
/// attachment count.
pub fn placeholder_num(value: &Value) -> Option<usize> {
    let map = value.as_object()?;
    if map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    usize::try_from(map.get("num")?.as_u64()?).ok()
}

/// Whether `value` is an object with `"_placeholder": true` (well-formed or not).
fn is_placeholder_like(map: &Map<String, Value>) -> bool {
    map.get("_placeholder") == Some(&Value::Bool(true))
}

/// Checks every placeholder in `value` refers to one of `attachments` attachments.
fn check_placeholders(value: &Value, attachments: usize) -> Result<(), ParseError> {
    match value {
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| check_placeholders(v, attachments)),
        Value::Object(map) if is_placeholder_like(map) => match placeholder_num(value) {
            Some(n) if n < attachments => Ok(()),
            _ => Err(ParseError::InvalidPlaceholder),
        },
        Value::Object(map) => map
            .values()
            .try_for_each(|v| check_placeholders(v, attachments)),
        _ => Ok(()),
    }
}

impl Packet {
    /// A `Connect` packet; `data` is the auth object (client) or e.g. `{"sid":...}` (server).
    pub fn connect(nsp: Str, data: Option<Value>) -> Packet {
        Packet {
            kind: PacketType::Connect,
            nsp,
            id: None,
            data,
            attachments: Vec::new(),
            raw: None,
        }
    }

    /// A `Disconnect` packet.
    pub fn disconnect(nsp: Str) -> Packet {
        Packet {
            kind: PacketType::Disconnect,
            nsp,
            id: None,
            data: None,
            attachments: Vec::new(),
            raw: None,
        }
    }

    /// An event; `data` is the whole `["name", ...args]` array. The kind is `Event`; encoding
    /// switches to `BinaryEvent` when `attachments` is non-empty.
    pub fn event(nsp: Str, data: Value, attachments: Vec<Bytes>, id: Option<u64>) -> Packet {
        Packet {
            kind: PacketType::Event,
            nsp,
            id,
            data: Some(data),
            attachments,
            raw: None,
        }
    }

    /// An acknowledgement of `id`; `data` is the array of args. The kind is `Ack`; encoding
    /// switches to `BinaryAck` when `attachments` is non-empty.
    pub fn ack(nsp: Str, id: u64, data: Value, attachments: Vec<Bytes>) -> Packet {
        Packet {
            kind: PacketType::Ack,
            nsp,
            id: Some(id),
            data: Some(data),
            attachments,
            raw: None,
        }
    }

    /// An event whose arguments are the JSON array text `args`, which the caller has
    /// checked (valid JSON, an array, no placeholder objects: see
    /// [`super::rawjson::check_array`]); it is written to the wire as it is.
    pub fn raw_event(nsp: Str, name: &str, args: String, id: Option<u64>) -> Packet {
        Packet {
            kind: PacketType::Event,
            nsp,
            id,
            data: None,
            attachments: Vec::new(),
            raw: Some(RawArgs {
                name: Some(name.to_owned()),
                args,
            }),
        }
    }

    /// An acknowledgement of `id` whose arguments are the checked JSON array text `args`
    /// (as for [`Packet::raw_event`]).
    pub fn raw_ack(nsp: Str, id: u64, args: String) -> Packet {
        Packet {
            kind: PacketType::Ack,
            nsp,
            id: Some(id),
            data: None,
            attachments: Vec::new(),
            raw: Some(RawArgs { name: None, args }),
        }
    }

    /// The JSON payload as a value: `data`, or the [`Packet::raw`] text parsed (events as
    /// `["name", ...args]`).
    pub fn data_value(&self) -> Option<std::borrow::Cow<'_, Value>> {
        use std::borrow::Cow;
        match (&self.data, &self.raw) {
            (Some(v), _) => Some(Cow::Borrowed(v)),
            (None, Some(raw)) => {
                let args: Vec<Value> = serde_json::from_str(&raw.args).unwrap_or_default();
                Some(Cow::Owned(match &raw.name {
                    Some(name) => {
                        let mut all = Vec::with_capacity(args.len() + 1);
                        all.push(Value::String(name.clone()));
                        all.extend(args);
                        Value::Array(all)
                    }
                    None => Value::Array(args),
                }))
            }
            (None, None) => None,
        }
    }

    /// A `ConnectError` packet with data `{"message": message, "data": data}` (the `"data"`
    /// key is omitted when `data` is `None`).
    pub fn connect_error(nsp: Str, message: &str, data: Option<Value>) -> Packet {
        let mut map = Map::with_capacity(2);
        map.insert("message".to_owned(), Value::String(message.to_owned()));
        if let Some(d) = data {
            map.insert("data".to_owned(), d);
        }
        Packet {
            kind: PacketType::ConnectError,
            nsp,
            id: None,
            data: Some(Value::Object(map)),
            attachments: Vec::new(),
            raw: None,
        }
    }

    /// Whether this packet is sent as a binary packet (an event or ack with attachments).
    fn is_binary_on_wire(&self) -> bool {
        !self.attachments.is_empty() && (self.kind.is_event() || self.kind.is_ack())
    }

    /// The type written on the wire.
    fn wire_kind(&self) -> PacketType {
        let binary = self.is_binary_on_wire();
        match self.kind {
            PacketType::Event | PacketType::BinaryEvent if binary => PacketType::BinaryEvent,
            PacketType::Event | PacketType::BinaryEvent => PacketType::Event,
            PacketType::Ack | PacketType::BinaryAck if binary => PacketType::BinaryAck,
            PacketType::Ack | PacketType::BinaryAck => PacketType::Ack,
            other => other,
        }
    }

    /// Appends the Socket.IO text of this packet to `out`.
    fn write_text(&self, out: &mut Vec<u8>) {
        out.push(b'0' + self.wire_kind() as u8);
        if self.is_binary_on_wire() {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{}-", self.attachments.len());
        }
        write_nsp_and_id(out, &self.nsp, self.id);
        if let Some(data) = &self.data {
            // Serializing a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, data);
        } else if let Some(raw) = &self.raw {
            write_raw(out, raw.name.as_deref(), &raw.args);
        }
    }

    /// A buffer sized for the fixed parts of the text (and raw arguments), plus `extra`.
    fn text_buffer(&self, extra: usize) -> Vec<u8> {
        let raw = self.raw.as_ref().map_or(0, |r| {
            r.args.len() + r.name.as_ref().map_or(0, |n| n.len() + 8)
        });
        Vec::with_capacity(32 + extra + self.nsp.len() + raw)
    }

    /// The Socket.IO text (no Engine.IO prefix). Uses the `Binary*` type and `"<n>-"` iff
    /// this is an event or ack whose `attachments` is non-empty (other kinds never carry
    /// attachments). A namespace not starting with `'/'` gets one; an empty namespace is
    /// treated as `"/"`. The namespace must not contain `','`.
    pub fn encode_text(&self) -> String {
        let mut out = self.text_buffer(0);
        self.write_text(&mut out);
        into_string(out)
    }

    /// Exactly what goes to Engine.IO, encoded once: `Frame::Text("4" + encode_text())`
    /// followed by one `Frame::Binary` per attachment (for binary packets).
    pub fn encode_frames(&self) -> Vec<Frame> {
        let mut out = self.text_buffer(1);
        out.push(b'4');
        self.write_text(&mut out);
        let text = Frame::Text(Str::from(into_string(out)));
        if !self.is_binary_on_wire() {
            return vec![text];
        }
        let mut frames = Vec::with_capacity(self.attachments.len() + 1);
        frames.push(text);
        frames.extend(self.attachments.iter().cloned().map(Frame::Binary));
        frames
    }

    /// For `Event`/`BinaryEvent`: the event name (`data[0]` as a string, or the raw name).
    pub fn event_name(&self) -> Option<&str> {
        if !self.kind.is_event() {
            return None;
        }
        if let Some(raw) = &self.raw {
            return raw.name.as_deref();
        }
        self.data.as_ref()?.as_array()?.first()?.as_str()
    }

    /// The arguments: `data[1..]` for events, the whole array for acks, empty otherwise
    /// (and for a packet whose JSON is [`Packet::raw`]: see [`Packet::data_value`]).
    pub fn args(&self) -> &[Value] {
        let Some(items) = self.data.as_ref().and_then(Value::as_array) else {
            return &[];
        };
        if self.kind.is_event() {
            items.get(1..).unwrap_or_default()
        } else if self.kind.is_ack() {
            items
        } else {
            &[]
        }
    }
}

/// The namespace (`"/"` and empty ones are implicit) and the ack id of a packet's text.
fn write_nsp_and_id(out: &mut Vec<u8>, nsp: &Str, id: Option<u64>) {
    let nsp = nsp.as_str();
    if !nsp.is_empty() && nsp != "/" {
        if !nsp.starts_with('/') {
            out.push(b'/');
        }
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = id {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{id}");
    }
}

/// `["name",...args]` (events) or the arguments array itself (acks), from checked text.
fn write_raw(out: &mut Vec<u8>, name: Option<&str>, args: &str) {
    match name {
        Some(name) => {
            out.push(b'[');
            let _ = serde_json::to_writer(&mut *out, name);
            let inner = array_inner(args);
            if !inner.is_empty() {
                out.push(b',');
                out.extend_from_slice(inner.as_bytes());
            }
            out.push(b']');
        }
        None => out.extend_from_slice(args.as_bytes()),
    }
}

/// The Engine.IO frame of an EVENT whose arguments are the checked JSON array text
/// `args` (as [`Packet::raw_event`]), written straight from the borrowed text: the same
/// bytes as `Packet::raw_event(nsp, name, args.to_owned(), id).encode_frames()`.
pub fn raw_event_frame(nsp: &Str, name: &str, args: &str, id: Option<u64>) -> Frame {
    let mut out = Vec::with_capacity(40 + nsp.len() + name.len() + args.len());
    out.extend_from_slice(b"42");
    write_nsp_and_id(&mut out, nsp, id);
    write_raw(&mut out, Some(name), args);
    Frame::Text(Str::from(into_string(out)))
}

/// Turns encoder output (always UTF-8) into a `String` without copying.
fn into_string(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Why a Socket.IO packet was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text was empty.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type `0`..=`6`.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A binary packet lacks a well-formed `<digits>-` attachment count.
    #[error("invalid attachment count")]
    InvalidAttachmentCount,
    /// A binary packet announces more attachments than allowed.
    #[error("too many attachments: {count} > {max}")]
    TooManyAttachments {
        /// The announced count.
        count: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The namespace is longer than [`MAX_NAMESPACE_LEN`] bytes.
    #[error("invalid namespace")]
    InvalidNamespace,
    /// The ack id has more than [`MAX_ACK_ID_DIGITS`] digits or does not fit a `u64`.
    #[error("invalid ack id")]
    InvalidAckId,
    /// An ack packet has no ack id.
    #[error("ack packet without an id")]
    MissingAckId,
    /// The payload is not valid JSON.
    #[error("invalid json: {0}")]
    InvalidJson(String),
    /// The payload's JSON nesting exceeds the configured maximum depth.
    #[error("json nested too deeply")]
    TooDeep,
    /// The payload's shape is not allowed for the packet type.
    #[error("invalid payload for packet type")]
    InvalidPayload,
    /// An event uses a reserved name.
    #[error("reserved event name {0:?}")]
    ReservedEventName(String),
    /// A binary attachment arrived with no binary packet waiting for one.
    #[error("unexpected binary attachment")]
    UnexpectedBinary,
    /// A text packet arrived while a binary packet was waiting for attachments.
    #[error("unexpected text packet while attachments are pending")]
    UnexpectedText,
    /// A placeholder is malformed or refers to a missing attachment.
    #[error("invalid attachment placeholder")]
    InvalidPlaceholder,
}

/// Limits applied by the [`Decoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Most attachments a binary packet may announce (default 10).
    pub max_attachments: usize,
    /// Deepest JSON nesting accepted (default 64; `serde_json` itself stops at 128).
    pub max_json_depth: usize,
    /// Keep the JSON of text events and acks as checked text ([`Packet::raw`]) instead
    /// of parsing it into values (default false). The same packets are accepted and
    /// refused either way; only the representation differs.
    pub raw_args: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            max_attachments: 10,
            max_json_depth: 64,
            raw_args: false,
        }
    }
}

/// Stateful decoder: binary packets wait for their attachments.
///
/// Validation follows the reference `socket.io-parser`, and every decoded packet satisfies:
/// the payload shape suits the type (see [`Packet::data`]), events are named by a
/// non-reserved string, acks have an id, and every placeholder in `data` (for any type)
/// refers to an existing attachment.
#[derive(Debug, Default)]
pub struct Decoder {
    config: DecoderConfig,
    pending: Option<(Packet, usize)>,
}

impl Decoder {
    /// A decoder with the given limits.
    pub fn new(config: DecoderConfig) -> Self {
        Decoder {
            config,
            pending: None,
        }
    }

    /// The limits in use.
    pub fn config(&self) -> DecoderConfig {
        self.config
    }

    /// Decodes one text packet. `Ok(Some(packet))` for a complete packet, `Ok(None)` when a
    /// binary packet now waits for its attachments (count > 0).
    ///
    /// A text packet while attachments are pending is [`ParseError::UnexpectedText`], and
    /// the pending packet is dropped.
    pub fn decode_text(&mut self, text: &str) -> Result<Option<Packet>, ParseError> {
        if self.pending.take().is_some() {
            return Err(ParseError::UnexpectedText);
        }
        let (packet, count) = parse_text(text, &self.config)?;
        if packet.kind.is_binary() && count > 0 {
            self.pending = Some((packet, count));
            return Ok(None);
        }
        finish(packet).map(Some)
    }

    /// Feeds one binary attachment; `Ok(Some(packet))` when the pending packet is complete.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet>, ParseError> {
        let Some((mut packet, expected)) = self.pending.take() else {
            return Err(ParseError::UnexpectedBinary);
        };
        packet.attachments.push(data);
        if packet.attachments.len() < expected {
            self.pending = Some((packet, expected));
            return Ok(None);
        }
        finish(packet).map(Some)
    }

    /// Whether a binary packet is waiting for attachments.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Drops any pending packet.
    pub fn reset(&mut self) {
        self.pending = None;
    }
}

/// Final check of a complete packet: placeholders must match the attachments.
fn finish(packet: Packet) -> Result<Packet, ParseError> {
    if let Some(data) = &packet.data {
        check_placeholders(data, packet.attachments.len())?;
    }
    Ok(packet)
}

/// Number of ASCII digits at the start of `b`, counting at most `limit + 1`.
fn digit_run(b: &[u8], limit: usize) -> usize {
    b.iter()
        .take(limit.saturating_add(1))
        .take_while(|c| c.is_ascii_digit())
        .count()
}

/// Parses the digits `b` (all ASCII digits) as a `u64`.
fn parse_digits(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |acc, &c| {
        acc.checked_mul(10)?
            .checked_add(u64::from(char::from(c).to_digit(10)?))
    })
}

/// Parses one text packet, returning it with its announced attachment count.
fn parse_text(text: &str, config: &DecoderConfig) -> Result<(Packet, usize), ParseError> {
    let b = text.as_bytes();
    let Some(&first) = b.first() else {
        return Err(ParseError::Empty);
    };
    let kind = first
        .checked_sub(b'0')
        .and_then(PacketType::from_u8)
        .ok_or_else(|| ParseError::UnknownType(text.chars().next().unwrap_or('\u{fffd}')))?;
    let mut i = 1usize;

    let mut count = 0usize;
    if kind.is_binary() {
        let rest = b.get(i..).unwrap_or_default();
        let digits = digit_run(rest, MAX_ATTACHMENT_COUNT_DIGITS);
        if digits == 0 || digits > MAX_ATTACHMENT_COUNT_DIGITS || rest.get(digits) != Some(&b'-') {
            return Err(ParseError::InvalidAttachmentCount);
        }
        let n = rest
            .get(..digits)
            .and_then(parse_digits)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(ParseError::InvalidAttachmentCount)?;
        if n > config.max_attachments {
            return Err(ParseError::TooManyAttachments {
                count: n,
                max: config.max_attachments,
            });
        }
        count = n;
        i += digits + 1;
    }

    let mut nsp = Str::from_static("/");
    if b.get(i) == Some(&b'/') {
        let rest = b.get(i..).unwrap_or_default();
        let len = match rest
            .iter()
            .take(MAX_NAMESPACE_LEN + 1)
            .position(|&c| c == b',')
        {
            Some(p) => p,
            None if rest.len() <= MAX_NAMESPACE_LEN => rest.len(),
            None => return Err(ParseError::InvalidNamespace),
        };
        let name = text.get(i..i + len).ok_or(ParseError::InvalidNamespace)?;
        if name != "/" {
            nsp = Str::copy_from(name);
        }
        i += len;
        if b.get(i) == Some(&b',') {
            i += 1;
        }
    }

    let mut id = None;
    let rest = b.get(i..).unwrap_or_default();
    let digits = digit_run(rest, MAX_ACK_ID_DIGITS);
    if digits > 0 {
        if digits > MAX_ACK_ID_DIGITS {
            return Err(ParseError::InvalidAckId);
        }
        id = Some(
            rest.get(..digits)
                .and_then(parse_digits)
                .ok_or(ParseError::InvalidAckId)?,
        );
        i += digits;
    }

    // Every step above advanced over ASCII bytes, so `i` is a char boundary.
    let json = text.get(i..).ok_or(ParseError::InvalidPayload)?;
    let fast = config.max_json_depth < SERDE_JSON_DEPTH;
    if config.raw_args && fast && !kind.is_binary() && !json.is_empty() {
        // Checked, not parsed. Any refusal (or a placeholder object, which a text packet
        // may not carry) goes down the parsing path below for its exact error.
        let raw = match kind {
            PacketType::Event => rawjson::check_event(json, config.max_json_depth)
                .ok()
                .filter(|e| !e.placeholders && !RESERVED_EVENTS.contains(&e.name.as_str()))
                .map(|e| RawArgs {
                    name: Some(e.name),
                    args: e.args,
                }),
            PacketType::Ack if id.is_some() => rawjson::check_array(json, config.max_json_depth)
                .ok()
                .filter(|i| !i.placeholders)
                .map(|_| RawArgs {
                    name: None,
                    args: json.trim_matches([' ', '\t', '\n', '\r']).to_owned(),
                }),
            _ => None,
        };
        if let Some(raw) = raw {
            return Ok((
                Packet {
                    kind,
                    nsp,
                    id,
                    data: None,
                    attachments: Vec::new(),
                    raw: Some(raw),
                },
                count,
            ));
        }
    }
    let data = if json.is_empty() {
        None
    } else {
        // serde_json stops at 128 levels by itself (stack safe): under that bound, parse
        // first and measure the parsed value (a few nodes) instead of pre-scanning the
        // text byte by byte.
        if !fast && exceeds_depth(json.as_bytes(), config.max_json_depth) {
            return Err(ParseError::TooDeep);
        }
        let value: Value = serde_json::from_str(json).map_err(|e| {
            // On the error path only: name a too-deep text as such (serde_json's own
            // limit included), as the pre-scan would have.
            if fast && exceeds_depth(json.as_bytes(), config.max_json_depth) {
                ParseError::TooDeep
            } else {
                ParseError::InvalidJson(e.to_string())
            }
        })?;
        if fast && value_depth_exceeds(&value, config.max_json_depth) {
            return Err(ParseError::TooDeep);
        }
        Some(value)
    };

    check_shape(kind, id, data.as_ref())?;
    Ok((
        Packet {
            kind,
            nsp,
            id,
            data,
            attachments: Vec::new(),
            raw: None,
        },
        count,
    ))
}

/// serde_json's own nesting limit.
const SERDE_JSON_DEPTH: usize = 128;

/// Whether arrays and objects nest deeper than `max` in `v` (`[]` is depth 1, as in
/// [`exceeds_depth`]).
fn value_depth_exceeds(v: &Value, max: usize) -> bool {
    match v {
        Value::Array(a) => max == 0 || a.iter().any(|c| value_depth_exceeds(c, max - 1)),
        Value::Object(o) => max == 0 || o.values().any(|c| value_depth_exceeds(c, max - 1)),
        _ => false,
    }
}

/// Checks the payload shape allowed for `kind`.
fn check_shape(kind: PacketType, id: Option<u64>, data: Option<&Value>) -> Result<(), ParseError> {
    match kind {
        PacketType::Connect => match data {
            None | Some(Value::Object(_)) => Ok(()),
            Some(_) => Err(ParseError::InvalidPayload),
        },
        PacketType::Disconnect => match data {
            None => Ok(()),
            Some(_) => Err(ParseError::InvalidPayload),
        },
        PacketType::ConnectError => match data {
            Some(Value::Object(_) | Value::String(_)) => Ok(()),
            _ => Err(ParseError::InvalidPayload),
        },
        PacketType::Event | PacketType::BinaryEvent => {
            let name = data
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .ok_or(ParseError::InvalidPayload)?;
            if RESERVED_EVENTS.contains(&name) {
                return Err(ParseError::ReservedEventName(name.to_owned()));
            }
            Ok(())
        }
        PacketType::Ack | PacketType::BinaryAck => {
            if !matches!(data, Some(Value::Array(_))) {
                return Err(ParseError::InvalidPayload);
            }
            if id.is_none() {
                return Err(ParseError::MissingAckId);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_check_of_parsed_values_matches_the_text_scan() {
        use super::value_depth_exceeds;
        use crate::proto::json::exceeds_depth;
        for n in [0, 1, 5, 62, 63, 64, 65, 100] {
            for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
                let text = format!("[\"e\",{}1{}]", open.repeat(n), close.repeat(n));
                let v: Value = serde_json::from_str(&text).expect("valid json");
                for max in [1, 2, 64] {
                    assert_eq!(
                        value_depth_exceeds(&v, max),
                        exceeds_depth(text.as_bytes(), max),
                        "{text} max {max}"
                    );
                }
            }
        }
    }

    fn decode(text: &str) -> Result<Option<Packet>, ParseError> {
        Decoder::new(DecoderConfig::default()).decode_text(text)
    }

    fn decode_one(text: &str) -> Packet {
        match decode(text) {
            Ok(Some(p)) => p,
            other => panic!("{text:?} did not decode to a packet: {other:?}"),
        }
    }

    /// Encodes `p`, checks the text against `wire`, and decodes it back through frames.
    fn round_trip(p: &Packet, wire: &str) {
        assert_eq!(p.encode_text(), wire);
        let frames = p.encode_frames();
        let Some(Frame::Text(first)) = frames.first() else {
            panic!("first frame is not text: {frames:?}");
        };
        assert_eq!(first.as_str(), format!("4{wire}"));
        let mut d = Decoder::default();
        let mut out = d.decode_text(first.get(1..).unwrap_or_default());
        for f in frames.iter().skip(1) {
            let Frame::Binary(b) = f else {
                panic!("attachment frame is not binary")
            };
            assert_eq!(out, Ok(None));
            out = d.decode_binary(b.clone());
        }
        let Ok(Some(decoded)) = out else {
            panic!("{wire:?} did not decode: {out:?}")
        };
        assert!(!d.has_pending());
        let mut expected = p.clone();
        expected.kind = p.wire_kind();
        if expected.nsp.is_empty() {
            expected.nsp = Str::from_static("/");
        }
        assert_eq!(decoded, expected);
    }

    fn nsp(s: &'static str) -> Str {
        Str::from_static(s)
    }

    #[test]
    fn connect_round_trips() {
        round_trip(&Packet::connect(nsp("/"), None), "0");
        round_trip(&Packet::connect(nsp("/admin"), None), "0/admin,");
        round_trip(
            &Packet::connect(nsp("/admin"), Some(json!({"token": "x"}))),
            r#"0/admin,{"token":"x"}"#,
        );
        round_trip(
            &Packet::connect(nsp("/"), Some(json!({"sid": "abc"}))),
            r#"0{"sid":"abc"}"#,
        );
    }

    #[test]
    fn disconnect_round_trips() {
        round_trip(&Packet::disconnect(nsp("/")), "1");
        round_trip(&Packet::disconnect(nsp("/admin")), "1/admin,");
        assert_eq!(decode_one("1/admin").nsp, "/admin");
    }

    #[test]
    fn event_round_trips() {
        round_trip(
            &Packet::event(nsp("/"), json!(["hello", 1]), vec![], None),
            r#"2["hello",1]"#,
        );
        round_trip(
            &Packet::event(nsp("/admin"), json!(["x"]), vec![], None),
            r#"2/admin,["x"]"#,
        );
        round_trip(
            &Packet::event(nsp("/"), json!(["x"]), vec![], Some(1)),
            r#"21["x"]"#,
        );
        round_trip(
            &Packet::event(nsp("/admin"), json!(["x", {"a": [1, 2]}]), vec![], Some(42)),
            r#"2/admin,42["x",{"a":[1,2]}]"#,
        );
        round_trip(
            &Packet::event(
                nsp("/"),
                json!(["é😀", "\u{1e}"]),
                vec![],
                Some(u64::MAX / 2),
            ),
            &format!("2{}[\"é😀\",\"\\u001e\"]", u64::MAX / 2),
        );
    }

    #[test]
    fn ack_round_trips() {
        round_trip(
            &Packet::ack(nsp("/admin"), 13, json!([{}]), vec![]),
            "3/admin,13[{}]",
        );
        round_trip(&Packet::ack(nsp("/"), 0, json!([]), vec![]), "30[]");
        round_trip(
            &Packet::ack(nsp("/"), 7, json!([1, "a", null]), vec![]),
            r#"37[1,"a",null]"#,
        );
    }

    #[test]
    fn connect_error_round_trips() {
        round_trip(
            &Packet::connect_error(nsp("/"), "Invalid namespace", None),
            r#"4{"message":"Invalid namespace"}"#,
        );
        // Object key order depends on serde_json's `preserve_order` feature: compare values.
        let p = Packet::connect_error(
            nsp("/refuse"),
            "not authorized",
            Some(json!({"reason": "bad token"})),
        );
        let wire = r#"4/refuse,{"message":"not authorized","data":{"reason":"bad token"}}"#;
        assert_eq!(decode_one(wire), p);
        assert_eq!(decode_one(&p.encode_text()), p);
        assert_eq!(
            p.data,
            Some(json!({"message": "not authorized", "data": {"reason": "bad token"}}))
        );
        let p = decode_one(r#"4"legacy message""#);
        assert_eq!(p.kind, PacketType::ConnectError);
        assert_eq!(p.data, Some(json!("legacy message")));
    }

    #[test]
    fn binary_event_round_trips() {
        let att = vec![Bytes::from_static(b"\x01\x02"), Bytes::from_static(b"")];
        let p = Packet::event(
            nsp("/"),
            json!(["b", placeholder(0), {"x": placeholder(1)}]),
            att.clone(),
            None,
        );
        round_trip(
            &p,
            r#"52-["b",{"_placeholder":true,"num":0},{"x":{"_placeholder":true,"num":1}}]"#,
        );
        let frames = p.encode_frames();
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames.get(1),
            Some(&Frame::Binary(Bytes::from_static(b"\x01\x02")))
        );
        assert_eq!(frames.get(2), Some(&Frame::Binary(Bytes::new())));
        round_trip(
            &Packet::event(
                nsp("/admin"),
                json!(["b", placeholder(0)]),
                att.clone(),
                Some(5),
            ),
            r#"52-/admin,5["b",{"_placeholder":true,"num":0}]"#,
        );
    }

    #[test]
    fn binary_ack_round_trips() {
        let att = vec![Bytes::from_static(b"abc")];
        round_trip(
            &Packet::ack(nsp("/admin"), 9, json!([placeholder(0)]), att),
            r#"61-/admin,9[{"_placeholder":true,"num":0}]"#,
        );
    }

    #[test]
    fn binary_literal_and_zero_count() {
        let mut d = Decoder::default();
        assert_eq!(
            d.decode_text(r#"51-["b",{"_placeholder":true,"num":0}]"#),
            Ok(None)
        );
        assert!(d.has_pending());
        let p = d.decode_binary(Bytes::from_static(b"\xff")).ok().flatten();
        let p = p.unwrap_or_else(|| panic!("binary packet incomplete"));
        assert_eq!(p.kind, PacketType::BinaryEvent);
        assert_eq!(p.event_name(), Some("b"));
        assert_eq!(p.attachments, vec![Bytes::from_static(b"\xff")]);
        assert_eq!(p.args(), &[placeholder(0)]);
        assert!(!d.has_pending());

        // A count of zero completes at once.
        let p = decode_one(r#"50-["b"]"#);
        assert_eq!(p.kind, PacketType::BinaryEvent);
        assert!(p.attachments.is_empty());
        let p = decode_one("60-1[]");
        assert_eq!((p.kind, p.id), (PacketType::BinaryAck, Some(1)));
    }

    #[test]
    fn encode_normalises_kind_and_namespace() {
        let mut p = Packet::event(nsp("/"), json!(["x"]), vec![], None);
        p.kind = PacketType::BinaryEvent;
        assert_eq!(p.encode_text(), r#"2["x"]"#);
        p.nsp = nsp("admin");
        assert_eq!(p.encode_text(), r#"2/admin,["x"]"#);
        p.nsp = Str::default();
        assert_eq!(p.encode_text(), r#"2["x"]"#);
        // Attachments are never written for non event/ack packets.
        let mut c = Packet::connect(nsp("/"), None);
        c.attachments.push(Bytes::from_static(b"x"));
        assert_eq!(c.encode_text(), "0");
        assert_eq!(c.encode_frames(), vec![Frame::Text(Str::from("40"))]);
    }

    #[test]
    fn accessors() {
        let e = decode_one(r#"2["ev",1,2]"#);
        assert_eq!(e.event_name(), Some("ev"));
        assert_eq!(e.args(), &[json!(1), json!(2)]);
        let a = decode_one(r#"31[1,2]"#);
        assert_eq!(a.event_name(), None);
        assert_eq!(a.args(), &[json!(1), json!(2)]);
        assert_eq!(decode_one("0").args(), &[] as &[Value]);
        assert_eq!(placeholder_num(&placeholder(3)), Some(3));
        assert_eq!(
            placeholder_num(&json!({"_placeholder": false, "num": 1})),
            None
        );
        assert_eq!(
            placeholder_num(&json!({"_placeholder": true, "num": -1})),
            None
        );
        assert_eq!(placeholder_num(&json!([1])), None);
        assert_eq!(PacketType::from_u8(7), None);
        assert_eq!(PacketType::from_u8(6), Some(PacketType::BinaryAck));
    }

    #[test]
    fn malformed_inputs() {
        use ParseError::*;
        let cases: Vec<(String, ParseError)> = vec![
            ("".into(), Empty),
            ("9".into(), UnknownType('9')),
            ("7[]".into(), UnknownType('7')),
            ("a".into(), UnknownType('a')),
            ("é".into(), UnknownType('é')),
            ("5".into(), InvalidAttachmentCount),
            ("6".into(), InvalidAttachmentCount),
            ("45".into(), InvalidPayload),
            ("51".into(), InvalidAttachmentCount),
            ("5-[\"a\"]".into(), InvalidAttachmentCount),
            ("5a-[]".into(), InvalidAttachmentCount),
            ("51[\"a\"]".into(), InvalidAttachmentCount),
            ("5123456-[\"a\"]".into(), InvalidAttachmentCount),
            (
                "599999999999999999999999999-[]".into(),
                InvalidAttachmentCount,
            ),
            (
                "511-[\"a\"]".into(),
                TooManyAttachments { count: 11, max: 10 },
            ),
            (
                "599999-[\"a\"]".into(),
                TooManyAttachments {
                    count: 99_999,
                    max: 10,
                },
            ),
            (
                "599-[\"a\"]".into(),
                TooManyAttachments { count: 99, max: 10 },
            ),
            ("2[".into(), InvalidJson(String::new())),
            ("2[\"a\"".into(), InvalidJson(String::new())),
            ("2[\"a\"]x".into(), InvalidJson(String::new())),
            ("2{}".into(), InvalidPayload),
            ("2[]".into(), InvalidPayload),
            ("2[1]".into(), InvalidPayload),
            ("2\"a\"".into(), InvalidPayload),
            ("2".into(), InvalidPayload),
            ("2[\"connect\"]".into(), ReservedEventName("connect".into())),
            (
                "2[\"disconnecting\",1]".into(),
                ReservedEventName("disconnecting".into()),
            ),
            (
                "2/admin,[\"newListener\"]".into(),
                ReservedEventName("newListener".into()),
            ),
            ("2/admin".into(), InvalidPayload),
            ("2/admin,".into(), InvalidPayload),
            ("2/admin,1".into(), InvalidPayload),
            ("299999999999999999999999[\"a\"]".into(), InvalidAckId),
            ("220000000000000000000[\"a\"]".into(), InvalidAckId),
            ("3[]".into(), MissingAckId),
            ("31{}".into(), InvalidPayload),
            ("31".into(), InvalidPayload),
            ("1[]".into(), InvalidPayload),
            ("1/admin,{}".into(), InvalidPayload),
            ("0[]".into(), InvalidPayload),
            ("0\"x\"".into(), InvalidPayload),
            ("4".into(), InvalidPayload),
            ("4[]".into(), InvalidPayload),
            ("4/admin,".into(), InvalidPayload),
            (format!("2/{},[\"a\"]", "a".repeat(300)), InvalidNamespace),
            (format!("2/{}", "a".repeat(300)), InvalidNamespace),
            (format!("2{}", "[".repeat(1000)), TooDeep),
            (
                format!("2[\"a\",{}{}]", "[".repeat(64), "]".repeat(64)),
                TooDeep,
            ),
            // Placeholders in a non-binary packet refer to no attachment.
            (
                "2[\"a\",{\"_placeholder\":true,\"num\":0}]".into(),
                InvalidPlaceholder,
            ),
            (
                "50-[\"a\",{\"_placeholder\":true,\"num\":0}]".into(),
                InvalidPlaceholder,
            ),
        ];
        for (text, expected) in cases {
            let got = decode(&text);
            match (&got, &expected) {
                (Err(InvalidJson(_)), InvalidJson(_)) => {}
                _ => assert_eq!(got, Err(expected), "input {text:?}"),
            }
        }
        // Depth 64 is still fine (the array itself is level 1).
        let ok = format!("2[\"a\",{}{}]", "[".repeat(63), "]".repeat(63));
        assert!(decode(&ok).is_ok());
        let ns = format!("2/{},[\"a\"]", "a".repeat(MAX_NAMESPACE_LEN - 1));
        assert_eq!(decode_one(&ns).nsp.len(), MAX_NAMESPACE_LEN);
        assert_eq!(
            decode_one("29999999999999999999[\"a\"]").id,
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(
            decode_one("218446744073709551615[\"a\"]").id,
            Some(u64::MAX)
        );
        assert_eq!(decode("218446744073709551616[\"a\"]"), Err(InvalidAckId));
        assert_eq!(decode("299999999999999999999[\"a\"]"), Err(InvalidAckId));
    }

    #[test]
    fn placeholder_validation() {
        let bad = [
            r#"51-["a",{"_placeholder":true,"num":1}]"#,
            r#"51-["a",{"_placeholder":true,"num":-1}]"#,
            r#"51-["a",{"_placeholder":true,"num":"splice"}]"#,
            r#"51-["a",{"_placeholder":true,"num":0.5}]"#,
            r#"51-["a",{"_placeholder":true}]"#,
            r#"51-["a",{"x":[{"_placeholder":true,"num":3}]}]"#,
            r#"61-1[{"_placeholder":true,"num":1}]"#,
        ];
        for text in bad {
            let mut d = Decoder::default();
            assert_eq!(d.decode_text(text), Ok(None), "{text}");
            assert_eq!(
                d.decode_binary(Bytes::from_static(b"x")),
                Err(ParseError::InvalidPlaceholder),
                "{text}"
            );
            assert!(!d.has_pending());
        }
        // Objects that are not placeholders (`_placeholder` not `true`) are plain data.
        let p = decode_one(r#"2["a",{"_placeholder":false,"num":9},{"_placeholder":"yes"}]"#);
        assert_eq!(p.args().len(), 2);
    }

    #[test]
    fn attachment_sequencing() {
        let mut d = Decoder::new(DecoderConfig {
            max_attachments: 3,
            max_json_depth: 8,
            raw_args: false,
        });
        assert_eq!(d.config().max_attachments, 3);
        assert_eq!(
            d.decode_binary(Bytes::from_static(b"x")),
            Err(ParseError::UnexpectedBinary)
        );
        assert_eq!(d.decode_text(r#"53-["a"]"#), Ok(None));
        assert_eq!(d.decode_binary(Bytes::from_static(b"1")), Ok(None));
        assert_eq!(d.decode_binary(Bytes::from_static(b"2")), Ok(None));
        // Text while pending: error, and the pending packet is dropped.
        assert_eq!(d.decode_text(r#"2["a"]"#), Err(ParseError::UnexpectedText));
        assert!(!d.has_pending());
        assert_eq!(
            d.decode_binary(Bytes::from_static(b"3")),
            Err(ParseError::UnexpectedBinary)
        );
        // The decoder works normally afterwards.
        assert!(matches!(d.decode_text(r#"2["a"]"#), Ok(Some(_))));
        assert_eq!(
            d.decode_text(r#"54-["a"]"#),
            Err(ParseError::TooManyAttachments { count: 4, max: 3 })
        );
        assert_eq!(d.decode_text(r#"51-["a"]"#), Ok(None));
        d.reset();
        assert!(!d.has_pending());
        assert_eq!(
            d.decode_binary(Bytes::new()),
            Err(ParseError::UnexpectedBinary)
        );
        assert_eq!(
            d.decode_text(&format!("2{}", "[".repeat(9))),
            Err(ParseError::TooDeep)
        );
    }

    #[test]
    fn errors_display_lowercase() {
        let errors = [
            ParseError::Empty,
            ParseError::UnknownType('x'),
            ParseError::TooManyAttachments { count: 11, max: 10 },
            ParseError::InvalidJson("eof".into()),
            ParseError::ReservedEventName("connect".into()),
            ParseError::UnexpectedText,
        ];
        for e in errors {
            let s = e.to_string();
            assert!(s.chars().next().is_some_and(|c| c.is_lowercase()), "{s}");
        }
    }

    /// Deterministic xorshift generator for the no-panic loop.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn text(&mut self) -> String {
            const PIECES: &[&str] = &[
                "0",
                "1",
                "2",
                "3",
                "4",
                "5",
                "6",
                "9",
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
                "/admin",
                "\"connect\"",
                "\"_placeholder\":true",
                "\"num\":",
                "-1",
                "0",
                "99999999999999999999",
                "true",
                "null",
                "1-",
                "12",
            ];
            let n = (self.next() % 16) as usize;
            (0..n)
                .map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut d = Decoder::new(DecoderConfig {
            max_attachments: 3,
            max_json_depth: 16,
            raw_args: false,
        });
        let mut raw = Decoder::new(DecoderConfig {
            raw_args: true,
            ..d.config()
        });
        let mut accepted = 0;
        let mut raw_accepted = 0;
        for _ in 0..50_000 {
            let text = rng.text();
            match rng.next() % 4 {
                0 => {
                    let a = d.decode_binary(Bytes::from_static(b"bin"));
                    let b = raw.decode_binary(Bytes::from_static(b"bin"));
                    assert_eq!(a, b);
                }
                _ => {
                    // Kept as text or parsed: the same packets, the same errors.
                    let r = raw.decode_text(&text);
                    let out = d.decode_text(&text);
                    if let Ok(Some(p)) = &r
                        && p.raw.is_some()
                    {
                        raw_accepted += 1;
                        let mut q = p.clone();
                        q.data = p.data_value().map(|v| v.into_owned());
                        q.raw = None;
                        assert_eq!(Ok(Some(q)), out, "{text:?}");
                        // Re-encoded, it decodes to the same values.
                        let again = Decoder::default().decode_text(&p.encode_text());
                        assert_eq!(again, out, "{text:?}");
                    } else {
                        assert_eq!(r, out, "{text:?}");
                    }
                    if let Ok(Some(p)) = out {
                        accepted += 1;
                        // Anything accepted re-encodes to something that decodes the same.
                        let mut d2 = Decoder::default();
                        let wire = p.encode_text();
                        let again = d2.decode_text(&wire);
                        let mut expected = p.clone();
                        expected.kind = p.wire_kind();
                        if p.kind.is_binary() && p.attachments.is_empty() {
                            assert_eq!(again, Ok(Some(expected)), "{text:?} -> {wire:?}");
                        } else if !p.kind.is_binary() {
                            assert_eq!(again, Ok(Some(p)), "{text:?} -> {wire:?}");
                        }
                    }
                }
            }
        }
        assert!(accepted > 0);
        let _ = raw_accepted;
    }

    #[test]
    fn raw_args_keep_the_text() {
        let mut d = Decoder::new(DecoderConfig {
            raw_args: true,
            ..DecoderConfig::default()
        });
        let p = d
            .decode_text(r#"2/chat,7["msg", {"a": [1, 2.50]}, "x"]"#)
            .unwrap()
            .unwrap();
        let raw = p.raw.clone().unwrap();
        assert_eq!((p.data.clone(), p.id), (None, Some(7)));
        assert_eq!(raw.name.as_deref(), Some("msg"));
        assert_eq!(raw.args, r#"[ {"a": [1, 2.50]}, "x"]"#);
        assert_eq!(p.event_name(), Some("msg"));
        // Written back as it came (only the name is re-encoded).
        assert_eq!(p.encode_text(), r#"2/chat,7["msg",{"a": [1, 2.50]}, "x"]"#);
        assert_eq!(
            p.data_value().unwrap().into_owned(),
            serde_json::json!(["msg", {"a": [1, 2.5]}, "x"])
        );
        let a = d.decode_text("3/chat,7[]").unwrap().unwrap();
        assert_eq!(a.raw.as_ref().map(|r| r.args.as_str()), Some("[]"));
        assert_eq!(a.encode_text(), "3/chat,7[]");
        assert_eq!(
            Packet::raw_event(Str::from_static("/"), "e", "[]".into(), None).encode_text(),
            r#"2["e"]"#
        );
        // Refusals are the parsing path's, with its errors.
        for bad in [
            r#"2["connect"]"#,
            r#"2[1]"#,
            r#"2["a",{"_placeholder":true,"num":0}]"#,
            r#"2["a",]"#,
            "3[1]",
            r#"2"a""#,
        ] {
            let plain = Decoder::default().decode_text(bad);
            assert!(plain.is_err(), "{bad}");
            assert_eq!(d.decode_text(bad), plain, "{bad}");
        }
        // The borrowed-text frame is the packet's frame.
        for (nsp, id) in [("/", None), ("/chat", Some(7)), ("x", Some(0))] {
            let nsp = Str::copy_from(nsp);
            let p = Packet::raw_event(nsp.clone(), "m\"x", "[1, {}]".into(), id);
            assert_eq!(
                vec![raw_event_frame(&nsp, "m\"x", "[1, {}]", id)],
                p.encode_frames()
            );
        }
        // Binary packets and placeholder-like data keep the parsed form.
        let b = d
            .decode_text(r#"2["a",{"_placeholder":false}]"#)
            .unwrap()
            .unwrap();
        assert!(b.raw.is_none() && b.data.is_some());
    }
}
