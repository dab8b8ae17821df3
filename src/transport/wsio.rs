//! The WebSocket stream: the sans-IO codec of [`crate::proto::wsframe`] on a tokio byte
//! stream, plus the client's opening handshake.
//!
//! Memory: nothing is kept while a connection is idle. Reads go into a buffer on the stack
//! of the poll (no zero-fill, not part of the connection's state); only bytes of an
//! unfinished frame are copied out and kept, and the output buffer is released once it has
//! been written.
//!
//! Every method is cancel-safe: unwritten output stays queued in the stream and goes out
//! with the next write, read or [`WsStream::flush`]; a read never loses received bytes.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use base64::Engine as _;
use bytes::{Buf, BytesMut};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::proto::wsframe::{
    self, CloseFrame, Decoder, Limits, Message, OpCode, ProtocolError, Role,
};

/// Bytes read per `read` call (on the poll's stack).
const READ_CHUNK: usize = 8 * 1024;

/// Why reading a WebSocket failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    /// The peer broke the protocol or a limit; the code is the close code to send.
    #[error("{0}")]
    Protocol(ProtocolError),
    /// The connection failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl WsError {
    /// The close code and reason to report for this error (1006 for I/O).
    pub(crate) fn close(&self) -> (u16, String) {
        match self {
            WsError::Protocol(p) => (p.code, p.reason.to_owned()),
            WsError::Io(e) => (1006, e.to_string()),
        }
    }

    /// Whether the peer went away (reset, broken pipe) rather than misbehaving.
    pub(crate) fn is_peer_gone(&self) -> bool {
        match self {
            WsError::Protocol(_) => false,
            WsError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionAborted
            ),
        }
    }
}

/// Told when a stream queues its close frame (before the frame is written).
pub(crate) trait CloseHook: Send + Sync {
    fn on_close(&self);
}

/// A WebSocket over `S`. See the module docs.
pub(crate) struct WsStream<S> {
    io: S,
    close_hook: Option<std::sync::Arc<dyn CloseHook>>,
    role: Role,
    dec: Decoder,
    /// Received bytes not yet decoded (only while a frame is unfinished).
    rbuf: BytesMut,
    /// Encoded frames not yet written.
    wbuf: BytesMut,
    need_flush: bool,
    close_sent: bool,
    /// Reading has ended (close received, EOF or error).
    ended: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// A stream over an upgraded connection; `leftover` holds bytes already read past the
    /// handshake.
    pub(crate) fn new(io: S, role: Role, limits: Limits, leftover: BytesMut) -> Self {
        WsStream {
            io,
            close_hook: None,
            role,
            dec: Decoder::new(role, limits),
            rbuf: leftover,
            wbuf: BytesMut::new(),
            need_flush: false,
            close_sent: false,
            ended: false,
        }
    }

    /// Queue a data or control frame (sent by the next flush). Nothing is queued after a
    /// close frame.
    pub(crate) fn queue(&mut self, op: OpCode, payload: &[u8]) {
        if self.close_sent {
            return;
        }
        wsframe::encode_frame(&mut self.wbuf, self.role, op, payload);
    }

    /// The stream.
    pub(crate) fn get_ref(&self) -> &S {
        &self.io
    }

    /// Call `hook` when the close frame is queued.
    pub(crate) fn set_close_hook(&mut self, hook: std::sync::Arc<dyn CloseHook>) {
        self.close_hook = Some(hook);
    }

    /// Queue a close frame (`None`: without a code), once.
    pub(crate) fn queue_close(&mut self, code: Option<(u16, &str)>) {
        if self.close_sent {
            return;
        }
        if let Some(h) = &self.close_hook {
            h.on_close();
        }
        let payload = code
            .map(|(c, r)| wsframe::close_payload(c, r))
            .unwrap_or_default();
        wsframe::encode_frame(&mut self.wbuf, self.role, OpCode::Close, &payload);
        self.close_sent = true;
    }

    /// Server: write these frames now, as far as the socket takes them in one vectored
    /// write, without copying them; what it does not take is queued (send it with
    /// [`Self::flush`]). Client frames (masked) and frames behind queued output are queued.
    pub(crate) fn poll_write_frames(
        &mut self,
        cx: &mut Context<'_>,
        frames: &[(OpCode, &[u8])],
    ) -> Poll<io::Result<()>> {
        const MAX: usize = 64;
        if self.role == Role::Client
            || self.close_sent
            || !self.wbuf.is_empty()
            || frames.len() > MAX
            || !self.io.is_write_vectored()
        {
            for (op, p) in frames {
                self.queue(*op, p);
            }
            return Poll::Ready(Ok(()));
        }
        // Stack arrays sized for the batch (initializing 64 slots for one frame was a
        // measurable share of an echo).
        match frames.len() {
            0 => Poll::Ready(Ok(())),
            1 => self.write_vectored::<1, 2>(cx, frames),
            2..=8 => self.write_vectored::<8, 16>(cx, frames),
            _ => self.write_vectored::<MAX, { 2 * MAX }>(cx, frames),
        }
    }

    /// `frames` (at most `N`; `M` = 2 `N`) in one vectored write; the rest is queued.
    fn write_vectored<const N: usize, const M: usize>(
        &mut self,
        cx: &mut Context<'_>,
        frames: &[(OpCode, &[u8])],
    ) -> Poll<io::Result<()>> {
        let frames = &frames[..frames.len().min(N)];
        let mut headers = [([0u8; wsframe::MAX_HEADER_LEN], 0usize); N];
        for (h, (op, p)) in headers.iter_mut().zip(frames) {
            *h = wsframe::header(true, *op, p.len(), None);
        }
        let mut slices = [io::IoSlice::new(&[]); M];
        for (i, ((h, n), (_, p))) in headers.iter().zip(frames).enumerate() {
            slices[2 * i] = io::IoSlice::new(&h[..*n]);
            slices[2 * i + 1] = io::IoSlice::new(p);
        }
        let slices = &slices[..2 * frames.len()];
        let mut written = match Pin::new(&mut self.io).poll_write_vectored(cx, slices) {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(n)) => {
                self.need_flush = true;
                n
            }
            Poll::Pending => 0,
        };
        // Queue what the socket did not take.
        for s in slices {
            if written >= s.len() {
                written -= s.len();
                continue;
            }
            self.wbuf.extend_from_slice(&s[written..]);
            written = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// [`Self::poll_write_frames`], then flush.
    pub(crate) async fn write_frames(&mut self, frames: &[(OpCode, &[u8])]) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_frames(cx, frames)).await?;
        self.flush().await
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending_out(&self) -> usize {
        self.wbuf.len()
    }

    /// Queue one frame and flush.
    pub(crate) async fn send(&mut self, op: OpCode, payload: &[u8]) -> io::Result<()> {
        self.queue(op, payload);
        self.flush().await
    }

    /// Send a close frame (once) and flush; the peer's answer is read with [`Self::next`].
    pub(crate) async fn close(&mut self, code: Option<(u16, &str)>) -> io::Result<()> {
        self.queue_close(code);
        self.flush().await
    }

    /// Write everything queued, then flush the stream.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Write everything queued, then flush the stream even if this stream wrote nothing
    /// (the stream may hold bytes of its own: see `tcpio`).
    pub(crate) async fn flush_io(&mut self) -> io::Result<()> {
        self.need_flush = true;
        self.flush().await
    }

    /// Flush what is queued and shut the write side down.
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.io.shutdown().await
    }

    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
            self.need_flush = true;
        }
        if self.wbuf.capacity() > 0 {
            // Release the output buffer: an idle connection keeps none.
            self.wbuf = BytesMut::new();
        }
        if self.need_flush {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.need_flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// The next message: data, ping (already answered), pong or close (already echoed
    /// when the peer started the closing handshake). `None` once reading has ended: after
    /// a close, at EOF, after an error.
    pub(crate) async fn next(&mut self) -> Option<Result<Message, WsError>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, WsError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        // Pongs and the close echo go out without waiting for the caller's next write.
        if (!self.wbuf.is_empty() || self.need_flush)
            && let Poll::Ready(Err(e)) = self.poll_write_out(cx)
        {
            self.ended = true;
            return Poll::Ready(Some(Err(WsError::Io(e))));
        }
        loop {
            if !self.rbuf.is_empty() {
                let mut input: &[u8] = &self.rbuf;
                let r = self.dec.decode(&mut input);
                let used = self.rbuf.len() - input.len();
                self.rbuf.advance(used);
                if self.rbuf.is_empty() {
                    self.rbuf = BytesMut::new();
                }
                if let Some(out) = self.on_decoded(r, cx) {
                    return Poll::Ready(Some(out));
                }
                if !self.rbuf.is_empty() {
                    continue;
                }
            }
            let mut stack = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut rb = ReadBuf::uninit(&mut stack);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(WsError::Io(e))));
                }
                Poll::Ready(Ok(())) => {}
            }
            let got = rb.filled();
            if got.is_empty() {
                self.ended = true;
                return Poll::Ready(None);
            }
            // Decode straight from the stack; keep only what is left after a message.
            let mut input: &[u8] = got;
            let r = self.dec.decode(&mut input);
            if !input.is_empty() {
                self.rbuf.extend_from_slice(input);
            }
            if let Some(out) = self.on_decoded(r, cx) {
                return Poll::Ready(Some(out));
            }
        }
    }

    /// React to a decoded message; `Some` when the caller gets something.
    fn on_decoded(
        &mut self,
        r: Result<Option<Message>, ProtocolError>,
        cx: &mut Context<'_>,
    ) -> Option<Result<Message, WsError>> {
        match r {
            Ok(None) => None,
            Err(e) => {
                self.ended = true;
                self.rbuf = BytesMut::new();
                Some(Err(WsError::Protocol(e)))
            }
            Ok(Some(msg)) => {
                match &msg {
                    Message::Ping(p) if !self.close_sent => {
                        let p = p.clone();
                        self.queue(OpCode::Pong, &p);
                        let _ = self.poll_write_out(cx);
                    }
                    Message::Close(frame) => {
                        self.ended = true;
                        self.rbuf = BytesMut::new();
                        if !self.close_sent {
                            // Echo the code and reason, as the reference does.
                            let echo = frame
                                .as_ref()
                                .map(|CloseFrame { code, reason }| (*code, reason.as_str()));
                            self.queue_close(echo);
                            let _ = self.poll_write_out(cx);
                        }
                    }
                    _ => {}
                }
                Some(Ok(msg))
            }
        }
    }
}

// --- the client's opening handshake ----------------------------------------------------------

/// Largest handshake response head.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Most headers in the handshake response.
const MAX_RESPONSE_HEADERS: usize = 100;

/// Why the client handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// I/O failed or the connection closed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The server answered with another status than 101.
    #[error("handshake refused with http status {0}")]
    Status(u16),
    /// The response is not a valid WebSocket handshake.
    #[error("invalid handshake response: {0}")]
    Invalid(String),
    /// The server chose a subprotocol that was not offered, or none of those offered
    /// (refused as browsers and Node's `ws` do).
    #[error(
        "subprotocol mismatch: server chose {}, offered: {offered}",
        .chosen.as_deref().unwrap_or("none")
    )]
    Subprotocol {
        /// The server's choice (`None`: it chose none).
        chosen: Option<String>,
        /// What we offered, comma-separated.
        offered: String,
    },
}

/// What a successful handshake gives.
#[derive(Debug)]
pub(crate) struct Handshaken {
    /// Bytes read past the response head (the first frames).
    pub(crate) leftover: BytesMut,
    /// The subprotocol the server chose.
    pub(crate) protocol: Option<String>,
}

/// `Sec-WebSocket-Accept` for a key.
pub(crate) fn accept_key(key: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Headers the handshake sets itself; user headers with these names are dropped.
const OWN_HEADERS: [&str; 5] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
];

/// Send the upgrade request for `path_and_query` and read the answer (at most 16 KiB and
/// 100 headers). `host` is the `Host` header value; `headers` are added (an `Origin` among
/// them is sent as given).
pub(crate) async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    host: &str,
    path_and_query: &str,
    subprotocols: &[String],
    headers: &HeaderMap,
) -> Result<Handshaken, HandshakeError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| HandshakeError::Io(io::Error::other(e.to_string())))?;
    let key = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut req = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    .into_bytes();
    let mut user_protocol = false;
    for (name, value) in headers {
        if OWN_HEADERS.contains(&name.as_str()) {
            continue;
        }
        user_protocol |= *name == http::header::SEC_WEBSOCKET_PROTOCOL;
        req.extend_from_slice(name.as_str().as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    if !subprotocols.is_empty() && !user_protocol {
        req.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        req.extend_from_slice(subprotocols.join(", ").as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    io.write_all(&req).await?;
    io.flush().await?;

    let mut buf = BytesMut::with_capacity(1024);
    let head_len = loop {
        if let Some(i) = find_head_end(&buf) {
            break i;
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(HandshakeError::Invalid("response head over 16 KiB".into()));
        }
        buf.reserve(1024);
        let n = io.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
    };
    if head_len > MAX_RESPONSE_HEAD {
        return Err(HandshakeError::Invalid("response head over 16 KiB".into()));
    }
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut hdrs);
    match resp.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HandshakeError::Invalid("incomplete response head".into()));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::Invalid("more than 100 headers".into()));
        }
        Err(e) => return Err(HandshakeError::Invalid(e.to_string())),
    }
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        return Err(HandshakeError::Status(status));
    }
    let get = |name: &str| {
        resp.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
            .collect::<Vec<_>>()
    };
    let has_token = |name: &str, token: &str| {
        get(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("upgrade", "websocket") {
        return Err(HandshakeError::Invalid("no `Upgrade: websocket`".into()));
    }
    if !has_token("connection", "upgrade") {
        return Err(HandshakeError::Invalid("no `Connection: upgrade`".into()));
    }
    let expected = accept_key(key.as_bytes());
    if get("sec-websocket-accept").first() != Some(&expected.as_str()) {
        return Err(HandshakeError::Invalid("wrong Sec-WebSocket-Accept".into()));
    }
    let protocol = get("sec-websocket-protocol").first().map(|p| p.to_string());
    let accepted = match &protocol {
        Some(p) => subprotocols.iter().any(|o| o == p),
        None => subprotocols.is_empty(),
    };
    if !accepted {
        return Err(HandshakeError::Subprotocol {
            chosen: protocol,
            offered: subprotocols.join(", "),
        });
    }
    buf.advance(head_len);
    let leftover = if buf.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(&buf[..])
    };
    Ok(Handshaken { leftover, protocol })
}

/// Length of the head up to and including `\r\n\r\n`.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    /// A fake server: reads the request, answers with `head(accept)` and `extra` in one write.
    async fn handshake_against(
        head: impl Fn(&str) -> String + Send + 'static,
        extra: Vec<u8>,
        offered: &[String],
    ) -> (Result<Handshaken, HandshakeError>, String) {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let srv = tokio::spawn(async move {
            let mut req = Vec::new();
            while find_head_end(&req).is_none() {
                if server.read_buf(&mut req).await.unwrap_or(0) == 0 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&req).into_owned();
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap_or_default()
                .to_owned();
            let mut out = head(&accept_key(key.as_bytes())).into_bytes();
            out.extend_from_slice(&extra);
            let _ = server.write_all(&out).await;
            // Keep the pipe open until the client is done.
            let _ = server.read_buf(&mut Vec::new()).await;
            text
        });
        let r = client_handshake(&mut client, "h:1", "/p?q=1", offered, &HeaderMap::new()).await;
        drop(client);
        (r, srv.await.unwrap_or_default())
    }

    fn ok_head(accept: &str, extra_headers: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n{extra_headers}\r\n"
        )
    }

    #[tokio::test]
    async fn handshake_keeps_bytes_after_the_head() {
        let frame = wsframe::server_frame(OpCode::Text, b"0{}");
        let offered = vec!["a".to_owned(), "b".to_owned()];
        let (r, req) = handshake_against(
            |a| ok_head(a, "Sec-WebSocket-Protocol: b\r\n"),
            frame.to_vec(),
            &offered,
        )
        .await;
        assert!(
            req.starts_with("GET /p?q=1 HTTP/1.1\r\nHost: h:1\r\n"),
            "{req}"
        );
        assert!(req.contains("Sec-WebSocket-Protocol: a, b\r\n"), "{req}");
        let done = r.map_err(|e| e.to_string());
        let Ok(done) = done else {
            panic!("{done:?}");
        };
        assert_eq!(done.protocol.as_deref(), Some("b"));
        assert_eq!(&done.leftover[..], &frame[..]);
    }

    #[tokio::test]
    async fn handshake_failures() {
        let (r, _) =
            handshake_against(|_| "HTTP/1.1 404 Not Found\r\n\r\n".into(), vec![], &[]).await;
        assert!(
            matches!(r, Err(HandshakeError::Status(404))),
            "{:?}",
            r.err()
        );
        let (r, _) = handshake_against(|_| ok_head("wrong", ""), vec![], &[]).await;
        assert!(
            matches!(r, Err(HandshakeError::Invalid(_))),
            "{:?}",
            r.err()
        );
        let (r, _) =
            handshake_against(|a| ok_head(a, "Sec-WebSocket-Protocol: x\r\n"), vec![], &[]).await;
        assert!(
            matches!(r, Err(HandshakeError::Subprotocol { .. })),
            "{:?}",
            r.err()
        );
        // Offered one, the server chose none: refused (as browsers and `ws` do).
        let (r, _) = handshake_against(|a| ok_head(a, ""), vec![], &["a".to_owned()]).await;
        assert!(
            matches!(r, Err(HandshakeError::Subprotocol { chosen: None, .. })),
            "{:?}",
            r.err()
        );
        let many = "X-A: 1\r\n".repeat(101);
        let (r, _) = handshake_against(move |a| ok_head(a, &many), vec![], &[]).await;
        assert!(
            matches!(r, Err(HandshakeError::Invalid(_))),
            "{:?}",
            r.err()
        );
        let huge = format!("X-A: {}\r\n", "y".repeat(17 * 1024));
        let (r, _) = handshake_against(move |a| ok_head(a, &huge), vec![], &[]).await;
        assert!(
            matches!(r, Err(HandshakeError::Invalid(_))),
            "{:?}",
            r.err()
        );
    }

    #[tokio::test]
    async fn roundtrip_over_a_pipe_with_ping_and_close() {
        let (a, b) = tokio::io::duplex(64);
        let mut server = WsStream::new(a, Role::Server, Limits::default(), BytesMut::new());
        let mut client = WsStream::new(b, Role::Client, Limits::default(), BytesMut::new());
        let big = vec![7u8; 100_000];
        let send = async {
            client.queue(OpCode::Ping, b"hi");
            client.queue(OpCode::Text, "héllo".as_bytes());
            client.queue(OpCode::Binary, &big);
            client.flush().await.map_err(WsError::Io)?;
            // The server's pong comes back.
            let pong = client.next().await;
            assert!(matches!(pong, Some(Ok(Message::Pong(ref p))) if &p[..] == b"hi"));
            client
                .close(Some((4000, "bye")))
                .await
                .map_err(WsError::Io)?;
            let echo = client.next().await;
            assert!(matches!(echo, Some(Ok(Message::Close(Some(ref f)))) if f.code == 4000));
            assert!(client.next().await.is_none());
            Ok::<_, WsError>(())
        };
        let recv = async {
            let mut got = Vec::new();
            while let Some(m) = server.next().await {
                got.push(m?);
            }
            server.flush().await?;
            Ok::<_, WsError>(got)
        };
        let (s, r) = tokio::join!(send, recv);
        assert!(s.is_ok(), "{s:?}");
        let got = r.unwrap_or_default();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(matches!(&got[1], Message::Text(t) if t.as_str() == "héllo"));
        assert!(matches!(&got[2], Message::Binary(b) if b.len() == 100_000));
    }
}
