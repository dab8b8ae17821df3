//! A lean Socket.IO v5 client over Engine.IO v4 over WebSocket: just enough to drive a
//! server hard from one core. Text frames only; the client masks what it sends (as RFC 6455
//! requires) with a cheap per-connection key sequence.
//!
//! [`Conn::next_event`] is cancel-safe (it only reads into the connection's buffer and
//! parses), so it can sit in a `select!`; it never writes: pings come back as
//! [`Event::Ping`] for the caller to answer with [`Conn::pong`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Something the server sent that the caller must see.
#[derive(Debug)]
pub enum Event {
    /// An Engine.IO ping (`2`): answer with [`Conn::pong`].
    Ping,
    /// A Socket.IO EVENT `echo` whose first argument carries `"seq":N`.
    Echo(u64),
    /// A Socket.IO EVENT `bcast` whose first argument carries `"seq":N`.
    Bcast(u64),
    /// Anything else (kept as text for error messages).
    Other(#[allow(dead_code)] String),
    /// The connection ended (TCP EOF, WebSocket close, Engine.IO close, Socket.IO disconnect).
    Closed,
}

pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    frag: Option<Vec<u8>>,
    mask: u32,
    /// The server's `pingInterval` from the Engine.IO handshake, in ms.
    pub ping_interval_ms: u64,
}

/// What a bench message looks like on the wire: one argument, an object with a sequence
/// number and a 32-byte string (`42["echo",{"seq":7,"data":"abc…"}]`, 60-odd bytes).
pub const DATA: &str = "abcdefghijklmnopqrstuvwxyz012345";

impl Conn {
    /// TCP connect, WebSocket upgrade on `/socket.io/?EIO=4&transport=websocket`, Engine.IO
    /// open, Socket.IO CONNECT to `/` and its acknowledgement.
    pub async fn connect(addr: SocketAddr, seed: u32) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            rbuf: BytesMut::with_capacity(1024),
            wbuf: Vec::with_capacity(128),
            frag: None,
            mask: seed.wrapping_mul(2654435761).max(1),
            ping_interval_ms: 25_000,
        };
        let req = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        c.stream.write_all(req.as_bytes()).await?;
        // The response head.
        loop {
            if let Some(end) = find(&c.rbuf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&c.rbuf[..end]).into_owned();
                if !head.starts_with("HTTP/1.1 101") {
                    return Err(other(format!(
                        "upgrade refused: {}",
                        head.lines().next().unwrap_or("")
                    )));
                }
                c.rbuf.advance(end + 4);
                break;
            }
            if c.rbuf.len() > 16 * 1024 {
                return Err(other("response head too long".into()));
            }
            if c.stream.read_buf(&mut c.rbuf).await? == 0 {
                return Err(other("closed during the upgrade".into()));
            }
        }
        // Engine.IO open packet.
        let open = c.next_text().await?;
        if !open.starts_with('0') {
            return Err(other(format!("expected an open packet, got {open:?}")));
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&open[1..])
            && let Some(ms) = v.get("pingInterval").and_then(|x| x.as_u64())
        {
            c.ping_interval_ms = ms;
        }
        c.send_text(b"40").await?;
        loop {
            let m = c.next_text().await?;
            if m.starts_with("40") {
                break;
            }
            if m == "2" {
                c.pong().await?;
                continue;
            }
            return Err(other(format!("expected the CONNECT ack, got {m:?}")));
        }
        Ok(c)
    }

    /// The next text message, as a string (handshake only: allocates).
    async fn next_text(&mut self) -> io::Result<String> {
        loop {
            if let Some((op, payload)) = self.parse_frame()? {
                match op {
                    1 => return Ok(String::from_utf8_lossy(&payload).into_owned()),
                    8 => return Err(other("websocket closed".into())),
                    9 => self.send_frame(10, &payload).await?,
                    _ => {}
                }
                continue;
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(other("closed during the handshake".into()));
            }
        }
    }

    /// One complete message from the buffer, if there is one: (opcode, payload).
    /// Handles fragmentation (rare: servers send small messages whole).
    fn parse_frame(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        loop {
            let Some((fin, op, start, len)) = frame_header(&self.rbuf)? else {
                return Ok(None);
            };
            let masked = self.rbuf[1] & 0x80 != 0;
            let mut payload = self.rbuf[start..start + len].to_vec();
            if masked {
                let key = [
                    self.rbuf[start - 4],
                    self.rbuf[start - 3],
                    self.rbuf[start - 2],
                    self.rbuf[start - 1],
                ];
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= key[i & 3];
                }
            }
            self.rbuf.advance(start + len);
            if op >= 8 {
                return Ok(Some((op, payload)));
            }
            if !fin {
                match &mut self.frag {
                    Some(f) => f.extend_from_slice(&payload),
                    None => self.frag = Some(payload),
                }
                continue;
            }
            if op == 0 {
                let mut whole = self.frag.take().unwrap_or_default();
                whole.extend_from_slice(&payload);
                return Ok(Some((1, whole)));
            }
            return Ok(Some((op, payload)));
        }
    }

    /// The next event (cancel-safe; never writes).
    pub async fn next_event(&mut self) -> io::Result<Event> {
        loop {
            if let Some(ev) = self.parse_event()? {
                return Ok(ev);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Ok(Event::Closed);
            }
        }
    }

    /// Parse the next event straight from the buffer (no copy for the common case: an
    /// unfragmented, unmasked text frame).
    fn parse_event(&mut self) -> io::Result<Option<Event>> {
        loop {
            let Some((fin, op, start, len)) = frame_header(&self.rbuf)? else {
                return Ok(None);
            };
            let masked = self.rbuf[1] & 0x80 != 0;
            if op == 1 && fin && !masked && self.frag.is_none() {
                let ev = classify(&self.rbuf[start..start + len]);
                self.rbuf.advance(start + len);
                match ev {
                    Some(ev) => return Ok(Some(ev)),
                    None => continue,
                }
            }
            // The slow path: control frames, fragments, masked frames.
            let Some((op, payload)) = self.parse_frame()? else {
                return Ok(None);
            };
            match op {
                1 => {
                    if let Some(ev) = classify(&payload) {
                        return Ok(Some(ev));
                    }
                }
                8 => return Ok(Some(Event::Closed)),
                // A WebSocket-level ping: answered as an Engine.IO ping would be, by the
                // caller; tungstenite-style servers do not send them.
                9 => return Ok(Some(Event::Other("websocket ping".into()))),
                _ => {}
            }
        }
    }

    /// Answer an Engine.IO ping.
    pub async fn pong(&mut self) -> io::Result<()> {
        self.send_text(b"3").await
    }

    /// Send one text message.
    pub async fn send_text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.push_frame(1, payload);
        self.flush().await
    }

    async fn send_frame(&mut self, op: u8, payload: &[u8]) -> io::Result<()> {
        self.push_frame(op, payload);
        self.flush().await
    }

    /// Write what was queued (by [`Conn::queue_event`]).
    pub async fn flush(&mut self) -> io::Result<()> {
        let r = self.stream.write_all(&self.wbuf).await;
        self.wbuf.clear();
        r
    }

    /// Queue `42["<event>",{"seq":N,"data":"…"}]`.
    pub fn queue_event(&mut self, event: &str, seq: u64) {
        let mut msg = [0u8; 128];
        let n = {
            use std::io::Write;
            let mut cur = std::io::Cursor::new(&mut msg[..]);
            let _ = write!(cur, "42[\"{event}\",{{\"seq\":{seq},\"data\":\"{DATA}\"}}]");
            cur.position() as usize
        };
        self.push_frame(1, &msg[..n]);
    }

    fn push_frame(&mut self, op: u8, payload: &[u8]) {
        self.mask ^= self.mask << 13;
        self.mask ^= self.mask >> 17;
        self.mask ^= self.mask << 5;
        let key = self.mask.to_ne_bytes();
        self.wbuf.push(0x80 | op);
        let n = payload.len();
        if n < 126 {
            self.wbuf.push(0x80 | n as u8);
        } else if n < 65536 {
            self.wbuf.push(0x80 | 126);
            self.wbuf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.wbuf.push(0x80 | 127);
            self.wbuf.extend_from_slice(&(n as u64).to_be_bytes());
        }
        self.wbuf.extend_from_slice(&key);
        self.wbuf
            .extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    }
}

/// (fin, opcode, payload start, payload length) of the first frame in `buf`, once it is
/// complete.
fn frame_header(buf: &[u8]) -> io::Result<Option<(bool, u8, usize, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let op = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut start) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let l = u64::from_be_bytes(b);
            if l > 64 << 20 {
                return Err(other(format!("frame of {l} bytes")));
            }
            (l as usize, 10)
        }
        l => (l as usize, 2),
    };
    if masked {
        start += 4;
    }
    if buf.len() < start + len {
        return Ok(None);
    }
    Ok(Some((fin, op, start, len)))
}

/// What an Engine.IO text message means; `None` for ignorable ones (noop, pong, ...).
fn classify(p: &[u8]) -> Option<Event> {
    if std::env::var_os("LOADGEN_DEBUG").is_some() {
        eprintln!("<< {}", String::from_utf8_lossy(p));
    }
    match p.first() {
        Some(b'2') => Some(Event::Ping),
        Some(b'1') => Some(Event::Closed),
        Some(b'4') => match p.get(1) {
            Some(b'2') => {
                let rest = &p[2..];
                let open = rest.iter().position(|&b| b == b'[')?;
                let mut body = &rest[open + 1..];
                while let [b' ', tail @ ..] = body {
                    body = tail;
                }
                if body.starts_with(b"\"echo\"") {
                    Some(match seq_of(body) {
                        Some(s) => Event::Echo(s),
                        None => Event::Other(String::from_utf8_lossy(p).into_owned()),
                    })
                } else if body.starts_with(b"\"bcast\"") {
                    Some(match seq_of(body) {
                        Some(s) => Event::Bcast(s),
                        None => Event::Other(String::from_utf8_lossy(p).into_owned()),
                    })
                } else {
                    Some(Event::Other(String::from_utf8_lossy(p).into_owned()))
                }
            }
            Some(b'1') => Some(Event::Closed),
            _ => Some(Event::Other(String::from_utf8_lossy(p).into_owned())),
        },
        Some(b'3') | Some(b'6') => None,
        _ => Some(Event::Other(String::from_utf8_lossy(p).into_owned())),
    }
}

/// The number after `"seq":` (spaces allowed after the colon).
fn seq_of(body: &[u8]) -> Option<u64> {
    let at = find(body, b"\"seq\":")?;
    let mut rest = &body[at + 6..];
    while let [b' ', tail @ ..] = rest {
        rest = tail;
    }
    let mut n: u64 = 0;
    let mut any = false;
    for &b in rest {
        if b.is_ascii_digit() {
            n = n * 10 + (b - b'0') as u64;
            any = true;
        } else {
            break;
        }
    }
    any.then_some(n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// Connect `n` clients, at most `concurrency` handshakes at a time, each retried up to 3
/// times. Returns the connections (in completion order) and the last errors of those that
/// failed.
pub async fn connect_many(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    seed: u32,
) -> (Vec<Conn>, Vec<String>) {
    use std::cell::RefCell;
    use std::rc::Rc;
    let sem = Rc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let out: Rc<RefCell<(Vec<Conn>, Vec<String>)>> =
        Rc::new(RefCell::new((Vec::with_capacity(n), Vec::new())));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let sem = sem.clone();
        let out = out.clone();
        handles.push(tokio::task::spawn_local(async move {
            let _permit = sem.acquire().await;
            let mut last = String::new();
            for attempt in 0..3 {
                match tokio::time::timeout(
                    Duration::from_secs(10),
                    Conn::connect(addr, seed.wrapping_add(i as u32 * 7919)),
                )
                .await
                {
                    Ok(Ok(c)) => {
                        out.borrow_mut().0.push(c);
                        return;
                    }
                    Ok(Err(e)) => last = e.to_string(),
                    Err(_) => last = "handshake timed out (10 s)".into(),
                }
                tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
            }
            out.borrow_mut().1.push(last);
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let cell = Rc::try_unwrap(out).ok().expect("all tasks done");
    cell.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_events() {
        assert!(matches!(
            classify(br#"42["echo",{"seq":17,"data":"x"}]"#),
            Some(Event::Echo(17))
        ));
        assert!(matches!(
            classify(br#"42["bcast",{"data":"x","seq": 4}]"#),
            Some(Event::Bcast(4))
        ));
        assert!(matches!(classify(b"2"), Some(Event::Ping)));
        assert!(classify(b"6").is_none());
        assert!(matches!(classify(b"41"), Some(Event::Closed)));
    }

    #[test]
    fn frames() {
        assert_eq!(
            frame_header(&[0x81, 2, b'4', b'0']).unwrap(),
            Some((true, 1, 2, 2))
        );
        assert_eq!(frame_header(&[0x81, 3, b'4']).unwrap(), None);
        let mut big = vec![0x81, 126, 0, 200];
        big.extend(std::iter::repeat_n(b'x', 200));
        assert_eq!(frame_header(&big).unwrap(), Some((true, 1, 4, 200)));
    }
}
