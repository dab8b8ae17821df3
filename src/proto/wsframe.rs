//! RFC 6455 WebSocket frames, sans-IO: an incremental [`Decoder`] that turns bytes (split
//! anywhere) into whole [`Message`]s, and the encoders for frame headers.
//!
//! The decoder enforces the protocol as a server or a client ([`Role`]) and the configured
//! [`Limits`]. Every failure is a [`ProtocolError`] carrying the close code to send: 1002
//! (protocol error), 1007 (invalid UTF-8) or 1009 (too big). Limits are checked against the
//! *declared* length as soon as a frame header is complete, before any payload is kept, and
//! the message buffer grows only as payload bytes actually arrive: a peer declaring a
//! 16 MiB frame and sending nothing more costs nothing. After an error the decoder keeps
//! returning it.
//!
//! No extension is negotiated: RSV bits are always a protocol error.

use bytes::{Bytes, BytesMut};

use super::Str;

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Which end of the connection this is: a server requires masked frames from its client,
/// a client requires unmasked frames from its server and masks what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that accepted the connection.
    Server,
    /// The end that opened the connection.
    Client,
}

/// Limits on incoming frames and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of one frame, in bytes (close 1009 beyond).
    pub max_frame: usize,
    /// Largest message after reassembling its fragments, in bytes (close 1009 beyond).
    pub max_message: usize,
    /// Most frames in one message, empty continuations included (close 1009 beyond).
    pub max_fragments: usize,
}

impl Default for Limits {
    /// 16 MiB frames and messages, 1 000 fragments.
    fn default() -> Self {
        Limits {
            max_frame: 16 << 20,
            max_message: 16 << 20,
            max_fragments: 1_000,
        }
    }
}

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation = 0x0,
    /// Starts a text message.
    Text = 0x1,
    /// Starts a binary message.
    Binary = 0x2,
    /// Close.
    Close = 0x8,
    /// Ping.
    Ping = 0x9,
    /// Pong.
    Pong = 0xA,
}

impl OpCode {
    fn from_u8(b: u8) -> Option<OpCode> {
        Some(match b {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, ping or pong.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// The code and reason of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The close code (validated: 1000–1003, 1007–1014, 3000–4999).
    pub code: u16,
    /// The reason (valid UTF-8, at most 123 bytes).
    pub reason: String,
}

/// One decoded message (data messages reassembled from their fragments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (validated UTF-8).
    Text(Str),
    /// A binary message.
    Binary(Bytes),
    /// A ping, with its payload (at most 125 bytes).
    Ping(Bytes),
    /// A pong, with its payload (at most 125 bytes).
    Pong(Bytes),
    /// A close frame; `None` when it carried no code.
    Close(Option<CloseFrame>),
}

/// Why the peer's bytes were refused; `code` is the close code to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ProtocolError {
    /// Close code: 1002 protocol error, 1007 invalid UTF-8, 1009 too big.
    pub code: u16,
    /// What was wrong (lowercase, static).
    pub reason: &'static str,
}

const fn err(code: u16, reason: &'static str) -> ProtocolError {
    ProtocolError { code, reason }
}

/// Whether `code` may appear in a close frame on the wire (RFC 6455 §7.4).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The frame being read: its header, and how much payload is still to come.
#[derive(Debug, Clone, Copy)]
struct Head {
    fin: bool,
    op: OpCode,
    mask: Option<[u8; 4]>,
    remaining: u64,
    /// Payload bytes already read (the mask's phase).
    done: usize,
}

/// The incremental frame decoder. See the module docs.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    limits: Limits,
    hdr: [u8; MAX_HEADER_LEN],
    hdr_have: usize,
    head: Option<Head>,
    /// Opcode of the data message being assembled.
    msg_op: Option<OpCode>,
    msg: BytesMut,
    fragments: usize,
    /// Length of the prefix of `msg` known to be valid UTF-8 (text messages).
    utf8_ok: usize,
    ctrl: Vec<u8>,
    failed: Option<ProtocolError>,
}

impl Decoder {
    /// A decoder for `role` with these limits (each at least 1).
    pub fn new(role: Role, limits: Limits) -> Decoder {
        Decoder {
            role,
            limits: Limits {
                max_frame: limits.max_frame.max(1),
                max_message: limits.max_message.max(1),
                max_fragments: limits.max_fragments.max(1),
            },
            hdr: [0; MAX_HEADER_LEN],
            hdr_have: 0,
            head: None,
            msg_op: None,
            msg: BytesMut::new(),
            fragments: 0,
            utf8_ok: 0,
            ctrl: Vec::new(),
            failed: None,
        }
    }

    /// Whether the decoder is between frames with nothing buffered.
    pub fn is_idle(&self) -> bool {
        self.hdr_have == 0 && self.head.is_none() && self.msg_op.is_none()
    }

    /// Bytes of payload currently held (a partial message or control frame).
    pub fn buffered(&self) -> usize {
        self.msg.len() + self.ctrl.len()
    }

    /// Decode from the front of `input`, advancing it past what was used. Returns the next
    /// complete message, or `Ok(None)` once `input` is used up without completing one (feed
    /// more later; partial frames are kept). Never panics.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Message>, ProtocolError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.decode_inner(input) {
            Err(e) => {
                self.failed = Some(e);
                self.msg = BytesMut::new();
                self.ctrl = Vec::new();
                Err(e)
            }
            ok => ok,
        }
    }

    fn decode_inner(&mut self, input: &mut &[u8]) -> Result<Option<Message>, ProtocolError> {
        loop {
            let mut head = match self.head {
                Some(h) => h,
                None => match self.read_header(input)? {
                    Some(h) => h,
                    None => return Ok(None),
                },
            };
            let take = head.remaining.min(input.len() as u64) as usize;
            let (chunk, rest) = input.split_at(take);
            *input = rest;
            head.remaining -= take as u64;
            let last = head.remaining == 0;
            if head.op.is_control() {
                let start = self.ctrl.len();
                self.ctrl.extend_from_slice(chunk);
                if let Some(key) = head.mask {
                    apply_mask(&mut self.ctrl[start..], key, head.done);
                }
            } else {
                self.append_data(chunk, &head, last)?;
            }
            head.done += take;
            if !last {
                self.head = Some(head);
                return Ok(None);
            }
            self.head = None;
            if head.op.is_control() {
                return self.control(head.op).map(Some);
            }
            if head.fin {
                return self.finish_message().map(Some);
            }
        }
    }

    fn append_data(&mut self, chunk: &[u8], head: &Head, last: bool) -> Result<(), ProtocolError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let spare = self.msg.capacity() - self.msg.len();
        if spare < chunk.len() {
            // Grow with the bytes that arrived: at most double, never past what the
            // frame still declares.
            let rest = head.remaining.min(usize::MAX as u64) as usize;
            let want = chunk
                .len()
                .max(self.msg.len().min(rest.saturating_add(chunk.len())));
            self.msg.reserve(want);
        }
        let start = self.msg.len();
        self.msg.extend_from_slice(chunk);
        if let Some(key) = head.mask {
            apply_mask(&mut self.msg[start..], key, head.done);
        }
        // Text: check as the bytes come (fail fast), except for a frame that completes a
        // message now (checked once, whole, when it is finished).
        if self.msg_op == Some(OpCode::Text) && !(last && head.fin) {
            match std::str::from_utf8(&self.msg[self.utf8_ok..]) {
                Ok(_) => self.utf8_ok = self.msg.len(),
                Err(e) if e.error_len().is_some() => return Err(err(1007, "invalid utf-8")),
                Err(e) => self.utf8_ok += e.valid_up_to(),
            }
        }
        Ok(())
    }

    fn finish_message(&mut self) -> Result<Message, ProtocolError> {
        let op = self.msg_op.take();
        self.fragments = 0;
        self.utf8_ok = 0;
        let data = std::mem::take(&mut self.msg).freeze();
        match op {
            Some(OpCode::Text) => Str::try_from_bytes(data)
                .map(Message::Text)
                .map_err(|_| err(1007, "invalid utf-8")),
            _ => Ok(Message::Binary(data)),
        }
    }

    fn control(&mut self, op: OpCode) -> Result<Message, ProtocolError> {
        let payload = std::mem::take(&mut self.ctrl);
        Ok(match op {
            OpCode::Ping => Message::Ping(Bytes::from(payload)),
            OpCode::Pong => Message::Pong(Bytes::from(payload)),
            _ => Message::Close(parse_close(&payload)?),
        })
    }

    /// Collect header bytes; `Some` once the whole header is here and valid.
    fn read_header(&mut self, input: &mut &[u8]) -> Result<Option<Head>, ProtocolError> {
        loop {
            let need = if self.hdr_have < 2 {
                2
            } else {
                header_len(self.hdr[1])
            };
            if self.hdr_have >= need {
                break;
            }
            if input.is_empty() {
                return Ok(None);
            }
            let take = (need - self.hdr_have).min(input.len());
            self.hdr[self.hdr_have..self.hdr_have + take].copy_from_slice(&input[..take]);
            self.hdr_have += take;
            *input = &input[take..];
            if self.hdr_have == 2 {
                self.check_first_two()?;
            }
        }
        let h = &self.hdr;
        let (len, at) = match h[1] & 0x7f {
            126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (n as u64, 2),
        };
        let mask = if h[1] & 0x80 != 0 {
            Some([h[at], h[at + 1], h[at + 2], h[at + 3]])
        } else {
            None
        };
        let fin = h[0] & 0x80 != 0;
        let op = OpCode::from_u8(h[0] & 0x0f).ok_or(err(1002, "unknown opcode"))?;
        self.hdr_have = 0;
        if len >> 63 != 0 {
            return Err(err(1002, "frame length has the high bit set"));
        }
        if !op.is_control() {
            if len > self.limits.max_frame as u64 {
                return Err(err(1009, "frame too big"));
            }
            if (self.msg.len() as u64).saturating_add(len) > self.limits.max_message as u64 {
                return Err(err(1009, "message too big"));
            }
        }
        let head = Head {
            fin,
            op,
            mask,
            remaining: len,
            done: 0,
        };
        self.head = Some(head);
        Ok(Some(head))
    }

    /// Checks that need only the first two header bytes: fail before the rest arrives.
    fn check_first_two(&mut self) -> Result<(), ProtocolError> {
        let (b0, b1) = (self.hdr[0], self.hdr[1]);
        if b0 & 0x70 != 0 {
            return Err(err(1002, "reserved bits set"));
        }
        let op = OpCode::from_u8(b0 & 0x0f).ok_or(err(1002, "unknown opcode"))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(err(1002, "unmasked frame from a client")),
            (Role::Client, true) => return Err(err(1002, "masked frame from a server")),
            _ => {}
        }
        if op.is_control() {
            if !fin {
                return Err(err(1002, "fragmented control frame"));
            }
            if b1 & 0x7f > 125 {
                return Err(err(1002, "control frame too long"));
            }
            return Ok(());
        }
        match (op, self.msg_op) {
            (OpCode::Continuation, None) => {
                return Err(err(1002, "continuation frame without a message"));
            }
            (OpCode::Continuation, Some(_)) => self.fragments += 1,
            (_, Some(_)) => return Err(err(1002, "new message inside a fragmented message")),
            (op, None) => {
                self.msg_op = Some(op);
                self.fragments = 1;
            }
        }
        if self.fragments > self.limits.max_fragments {
            return Err(err(1009, "too many fragments"));
        }
        Ok(())
    }
}

/// Header length given its second byte.
fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(err(1002, "close frame with a 1-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !is_valid_close_code(code) {
                return Err(err(1002, "invalid close code"));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| err(1007, "invalid utf-8 in close"))?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// XOR `buf` with the mask `key`, `offset` bytes into the payload (word at a time).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let r = offset % 4;
    let k = [key[r], key[(r + 1) % 4], key[(r + 2) % 4], key[(r + 3) % 4]];
    let k64 = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ k64).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i % 4];
    }
}

/// Append a frame header to `dst`: `mask` for client frames.
pub fn write_header(dst: &mut BytesMut, fin: bool, op: OpCode, len: usize, mask: Option<[u8; 4]>) {
    let (h, n) = header(fin, op, len, mask);
    dst.extend_from_slice(&h[..n]);
}

/// A frame header in a fixed buffer: the bytes are `buf[..len]`.
pub fn header(
    fin: bool,
    op: OpCode,
    len: usize,
    mask: Option<[u8; 4]>,
) -> ([u8; MAX_HEADER_LEN], usize) {
    let mut buf = [0u8; MAX_HEADER_LEN];
    buf[0] = (if fin { 0x80 } else { 0 }) | op as u8;
    let m = if mask.is_some() { 0x80 } else { 0 };
    let mut n = 2;
    if len < 126 {
        buf[1] = m | len as u8;
    } else if len <= u16::MAX as usize {
        buf[1] = m | 126;
        buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        n = 4;
    } else {
        buf[1] = m | 127;
        buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        n = 10;
    }
    if let Some(k) = mask {
        buf[n..n + 4].copy_from_slice(&k);
        n += 4;
    }
    (buf, n)
}

/// Append one whole frame to `dst`: unmasked for a server, masked with a fresh random key
/// for a client.
pub fn encode_frame(dst: &mut BytesMut, role: Role, op: OpCode, payload: &[u8]) {
    dst.reserve(MAX_HEADER_LEN + payload.len());
    match role {
        Role::Server => {
            write_header(dst, true, op, payload.len(), None);
            dst.extend_from_slice(payload);
        }
        Role::Client => {
            let key = random_mask();
            write_header(dst, true, op, payload.len(), Some(key));
            let start = dst.len();
            dst.extend_from_slice(payload);
            apply_mask(&mut dst[start..], key, 0);
        }
    }
}

/// One unmasked (server) frame as a single buffer, to share between the recipients of a
/// broadcast.
pub fn server_frame(op: OpCode, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(MAX_HEADER_LEN + payload.len());
    encode_frame(&mut b, Role::Server, op, payload);
    b.freeze()
}

/// The payload of a close frame: the code, then the reason cut to 123 bytes at a
/// character boundary.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = Vec::with_capacity(2 + end);
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..end]);
    p
}

/// A fresh masking key from the OS generator (drawn 16 keys at a time per thread).
pub fn random_mask() -> [u8; 4] {
    use std::cell::RefCell;
    thread_local! {
        static POOL: RefCell<([u8; 64], usize)> = const { RefCell::new(([0; 64], 64)) };
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.1 >= 64 {
            if getrandom::fill(&mut p.0).is_err() {
                // No OS randomness: masking keys only need to be unpredictable to scripts in
                // a browser; a time-seeded mix is the fallback.
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0x9e37_79b9_7f4a_7c15);
                let mut x = t ^ (p.0.as_ptr() as u64);
                for chunk in p.0.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    chunk.copy_from_slice(&x.to_ne_bytes());
                }
            }
            p.1 = 0;
        }
        let i = p.1;
        p.1 += 4;
        [p.0[i], p.0[i + 1], p.0[i + 2], p.0[i + 3]]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut b = BytesMut::new();
        write_header(&mut b, fin, OpCode::Binary, payload.len(), mask);
        b[0] = (b[0] & 0xf0) | op;
        let start = b.len();
        b.extend_from_slice(payload);
        if let Some(k) = mask {
            apply_mask(&mut b[start..], k, 0);
        }
        b.to_vec()
    }

    fn all(dec: &mut Decoder, mut input: &[u8]) -> Result<Vec<Message>, ProtocolError> {
        let mut out = Vec::new();
        while let Some(m) = dec.decode(&mut input)? {
            out.push(m);
        }
        assert!(input.is_empty());
        Ok(out)
    }

    const K: Option<[u8; 4]> = Some([1, 2, 3, 4]);

    #[test]
    fn mask_matches_byte_loop() {
        let key = [0xa1, 0x02, 0xf3, 0x44];
        for off in 0..4 {
            let data: Vec<u8> = (0..37u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, key, off);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[(i + off) % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn fragments_and_interleaved_ping() {
        let mut dec = Decoder::new(Role::Server, Limits::default());
        let mut bytes = frame(false, 1, "héllo ".as_bytes(), K);
        bytes.extend(frame(true, 9, b"p", K));
        bytes.extend(frame(true, 0, "wörld".as_bytes(), K));
        let out = all(&mut dec, &bytes).unwrap_or_default();
        assert_eq!(
            out,
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Text(Str::from("héllo wörld".to_owned()))
            ]
        );
        assert!(dec.is_idle());
    }

    #[test]
    fn declared_length_is_not_reserved() {
        let mut dec = Decoder::new(Role::Server, Limits::default());
        let hdr = frame(true, 2, &[], K);
        let mut h = BytesMut::new();
        write_header(&mut h, true, OpCode::Binary, (16 << 20) - 1, K);
        assert_eq!(all(&mut dec, &h), Ok(vec![]));
        assert_eq!(all(&mut dec, b"x"), Ok(vec![]));
        assert!(dec.msg.capacity() < 64, "{}", dec.msg.capacity());
        let _ = hdr;
    }

    #[test]
    fn errors() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (frame(true, 1, b"a", None), 1002),
            (frame(true, 3, b"a", K), 1002),
            (frame(false, 9, b"a", K), 1002),
            (frame(true, 0, b"a", K), 1002),
            (frame(true, 1, b"\xff", K), 1007),
            (frame(true, 8, &[3], K), 1002),
            (frame(true, 8, &close_payload(1005, ""), K), 1002),
            (frame(true, 8, &[3, 232, 0xff], K), 1007),
            (frame(true, 2, &[0; 200], K), 1009),
        ];
        for (bytes, code) in cases {
            let mut dec = Decoder::new(
                Role::Server,
                Limits {
                    max_frame: 100,
                    max_message: 100,
                    max_fragments: 3,
                },
            );
            assert_eq!(all(&mut dec, &bytes).map_err(|e| e.code), Err(code));
        }
        let mut dec = Decoder::new(Role::Client, Limits::default());
        assert_eq!(
            all(&mut dec, &frame(true, 1, b"a", K)).map_err(|e| e.code),
            Err(1002)
        );
    }
}
