//! The server's byte streams: plain TCP or TLS under hyper, and, for a WebSocket session
//! on plain TCP, a socket shared with the session's producers so that they can write
//! frames from their own thread (the direct writes of `engine::queue`).
//!
//! Byte order on the shared socket: every write, the session's and the producers', runs
//! under one lock (`Gate`). A producer writes only a whole frame, and only when the
//! session's last write was taken whole (so no frame of the session's is cut in the
//! middle); if the socket takes part of a producer's frame, the rest (`tail`) goes out
//! before anything else the session writes. After the session queues its close frame the
//! gate is sealed: producers queue (and the queue is dropped with the session).
//!
//! **No SIGPIPE.** Every TCP write of tether's (server, client, TLS underneath) goes
//! through [`Tcp`], which sends with `MSG_NOSIGNAL`: a write to a connection the peer
//! reset fails with `EPIPE` instead of raising SIGPIPE, whose default action would kill a
//! C or C++ host that has not ignored it. (tokio's vectored write is `writev`, which has no
//! such flag.)

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::engine::{DirectSink, Sent};
use crate::proto::engineio::Frame;
use crate::proto::wsframe;
use crate::tls::BoxIo;

/// A frame at most this long is copied into one buffer on the stack and sent with one
/// `write`; a longer one goes out as a vectored write of header and payload.
const STACK_FRAME: usize = 512;

/// Flags of every send: never SIGPIPE, never block.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT;

/// Most slices passed to one `sendmsg` (Linux's `IOV_MAX`).
const MAX_IOV: usize = 1024;

/// A send call's result: the byte count, or the OS error.
fn sent(n: isize) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `send(2)` without SIGPIPE, without blocking.
fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes; `fd` is an open socket of the caller's.
    sent(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), SEND_FLAGS) })
}

/// `sendmsg(2)` of `bufs`, without SIGPIPE, without blocking.
fn send_vectored(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: a zeroed msghdr is valid (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec` on Unix (documented by std); sendmsg only
    // reads through the pointer.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(MAX_IOV) as _;
    // SAFETY: `msg` points at `bufs`, alive for the call.
    sent(unsafe { libc::sendmsg(fd, &msg, SEND_FLAGS) })
}

/// A TCP stream whose writes never raise SIGPIPE (see the module docs).
pub(crate) struct Tcp(pub(crate) TcpStream);

impl Tcp {
    fn poll_send<T>(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(RawFd) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        let fd = self.0.as_raw_fd();
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_io(Interest::WRITABLE, || f(fd)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl AsyncRead for Tcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, |fd| send(fd, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, |fd| send_vectored(fd, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// What hyper serves: a TCP stream, or a TLS stream (boxed). Not boxed for plain TCP, so
/// a WebSocket upgrade can take the `TcpStream` back (`Upgraded::downcast`).
pub(crate) enum ServerIo {
    Tcp(Tcp),
    Tls(BoxIo),
}

/// A server WebSocket session's stream.
pub(crate) enum SessionIo {
    /// Plain TCP: shared with the session's producers.
    Tcp(SharedTcp),
    /// TLS: the session writes alone.
    Tls(BoxIo),
    /// Another stream hyper was given (not used by the server; kept for completeness).
    Upgraded(TokioIo<Upgraded>),
}

impl SessionIo {
    /// The stream of an upgraded connection, and the bytes read past its handshake.
    pub(crate) fn from_upgraded(upgraded: Upgraded) -> (SessionIo, Bytes) {
        match upgraded.downcast::<TokioIo<ServerIo>>() {
            Ok(parts) => {
                let io = match parts.io.into_inner() {
                    ServerIo::Tcp(tcp) => SessionIo::Tcp(SharedTcp::new(tcp.0)),
                    ServerIo::Tls(tls) => SessionIo::Tls(tls),
                };
                (io, parts.read_buf)
            }
            Err(upgraded) => (SessionIo::Upgraded(TokioIo::new(upgraded)), Bytes::new()),
        }
    }

    /// The shared socket's producer side, on plain TCP.
    pub(crate) fn shared(&self) -> Option<Arc<TcpShared>> {
        match self {
            SessionIo::Tcp(t) => Some(t.shared.clone()),
            SessionIo::Tls(_) | SessionIo::Upgraded(_) => None,
        }
    }
}

/// The session's side of a shared TCP socket: it reads alone and writes through the gate.
pub(crate) struct SharedTcp {
    read: OwnedReadHalf,
    shared: Arc<TcpShared>,
    /// On a current-thread runtime: a read that did not fill the buffer emptied the
    /// socket, so the next read need not make the `EAGAIN` call that tells tokio so.
    drained_hint: bool,
}

/// The producers' side of a shared TCP socket.
pub(crate) struct TcpShared {
    gate: Mutex<Gate>,
}

struct Gate {
    write: OwnedWriteHalf,
    /// The socket (open as long as `write` is).
    fd: RawFd,
    /// The session's last write was taken whole (it ended on a frame boundary).
    aligned: bool,
    /// The session queued its close frame: no producer writes any more.
    sealed: bool,
    /// The rest of a producer's frame the socket took only part of: written first.
    tail: Bytes,
}

impl TcpShared {
    fn lock(&self) -> MutexGuard<'_, Gate> {
        // The gate's state stays consistent even if a write panicked.
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl super::wsio::CloseHook for TcpShared {
    /// No producer writes from now on (the session is closing the WebSocket).
    fn on_close(&self) {
        self.lock().sealed = true;
    }
}

impl Gate {
    /// A session write: through tokio, so that `WouldBlock` clears the readiness the
    /// session then waits on.
    fn session_send<T>(&self, f: impl FnOnce(RawFd) -> io::Result<T>) -> io::Result<T> {
        let fd = self.fd;
        self.write.as_ref().try_io(Interest::WRITABLE, || f(fd))
    }

    /// Write the tail of a partial producer write, if any; `WouldBlock` if it stays.
    fn write_tail(&mut self) -> io::Result<()> {
        while !self.tail.is_empty() {
            let n = self.session_send(|fd| send(fd, &self.tail))?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.tail.advance(n);
        }
        Ok(())
    }
}

impl DirectSink for TcpShared {
    fn try_send(&self, frame: &Frame) -> Sent {
        // Never wait: if the session is writing right now, the frame is queued.
        let Ok(mut g) = self.gate.try_lock() else {
            return Sent::No;
        };
        if g.sealed || !g.aligned || !g.tail.is_empty() {
            return Sent::No;
        }
        let (op, payload) = frame.ws_parts();
        let (hdr, hl) = wsframe::header(true, op, payload.len(), None);
        let total = hl + payload.len();
        // Straight to the socket, not through tokio's readiness: a `WouldBlock` here
        // leaves the readiness set, and the session's next write finds out itself.
        let written = if total <= STACK_FRAME {
            let mut buf = [0u8; STACK_FRAME];
            buf[..hl].copy_from_slice(&hdr[..hl]);
            buf[hl..total].copy_from_slice(payload);
            send(g.fd, &buf[..total])
        } else {
            send_vectored(g.fd, &[IoSlice::new(&hdr[..hl]), IoSlice::new(payload)])
        };
        match written {
            Ok(n) if n == total => Sent::All,
            // Would block, or failed: the session's own write meets the error.
            Ok(0) | Err(_) => Sent::No,
            Ok(n) => {
                let mut rest = Vec::with_capacity(total - n);
                if n < hl {
                    rest.extend_from_slice(&hdr[n..hl]);
                    rest.extend_from_slice(payload);
                } else {
                    rest.extend_from_slice(&payload[n - hl..]);
                }
                g.tail = Bytes::from(rest);
                Sent::Partial
            }
        }
    }
}

impl SharedTcp {
    fn new(tcp: TcpStream) -> SharedTcp {
        let fd = tcp.as_raw_fd();
        let (read, write) = tcp.into_split();
        let drained_hint = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        SharedTcp {
            read,
            drained_hint,
            shared: Arc::new(TcpShared {
                gate: Mutex::new(Gate {
                    write,
                    fd,
                    aligned: true,
                    sealed: false,
                    tail: Bytes::new(),
                }),
            }),
        }
    }

    /// Under the gate: write the tail, then run `f`; on `WouldBlock`, wait until the
    /// socket is writable and try again.
    fn poll_gate<T>(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&mut Gate) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            {
                let mut g = self.shared.lock();
                match g.write_tail().and_then(|()| f(&mut g)) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    r => return Poll::Ready(r),
                }
            }
            // The `WouldBlock` inside `try_io` cleared the readiness: this registers for
            // the next edge.
            ready!(self.read.as_ref().poll_write_ready(cx))?;
        }
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let want = buf.remaining();
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.read).poll_read(cx, buf))?;
        let got = buf.filled().len() - before;
        if self.drained_hint && got > 0 && got < want {
            // A short read took everything the socket had. Mark it not readable now (a
            // `WouldBlock` inside `try_io` clears the readiness, without a system call)
            // instead of learning it from one more `recv` that fails with `EAGAIN`.
            // Sound only where the I/O driver cannot run between the read and this
            // line, i.e. on a current-thread runtime: data that arrived since is
            // reported by the driver's next poll (edge-triggered epoll keeps the event;
            // tokio drops a clear that raced with a newer event, and never clears a
            // closed state).
            let _ = self.read.as_ref().try_io(Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_gate(cx, |g| {
            let n = g.session_send(|fd| send(fd, buf))?;
            g.aligned = n == buf.len();
            Ok(n)
        })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.poll_gate(cx, |g| {
            let n = g.session_send(|fd| send_vectored(fd, bufs))?;
            g.aligned = n == total;
            Ok(n)
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_gate(cx, |_| Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_gate(cx, |_| Ok(())))?;
        let mut g = self.shared.lock();
        g.sealed = true;
        Pin::new(&mut g.write).poll_shutdown(cx)
    }
}

/// Delegates to whichever stream is inside.
macro_rules! delegate_io {
    ($ty:ident { $($variant:ident),+ }) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_write_vectored(cx, bufs),)+
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $($ty::$variant(s) => s.is_write_vectored(),)+
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}

delegate_io!(ServerIo { Tcp, Tls });
delegate_io!(SessionIo { Tcp, Tls, Upgraded });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wsframe::OpCode;
    use tokio::io::AsyncWriteExt;

    /// Split unmasked WebSocket frames: (opcode, payload) each; errs on a cut frame.
    fn frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            assert!(b.len() >= 2, "a cut frame header");
            let (op, mut len, mut at) = (b[0] & 0x0f, (b[1] & 0x7f) as usize, 2);
            assert_eq!(b[1] & 0x80, 0, "a masked server frame");
            if len == 126 {
                len = u16::from_be_bytes([b[2], b[3]]) as usize;
                at = 4;
            } else if len == 127 {
                let mut l = [0u8; 8];
                l.copy_from_slice(&b[2..10]);
                len = u64::from_be_bytes(l) as usize;
                at = 10;
            }
            assert!(b.len() >= at + len, "a cut frame");
            out.push((op, b[at..at + len].to_vec()));
            b = &b[at + len..];
        }
        out
    }

    /// A connected pair on loopback with small buffers (so that they fill quickly): the
    /// server end shared, the client end.
    async fn shared_pair() -> (SharedTcp, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let c = sock
            .connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (s, _) = l.accept().await.expect("accept");
        let s = s.into_std().expect("std");
        let fd = s.as_raw_fd();
        let size: libc::c_int = 8192;
        // SAFETY: setsockopt with a valid int on an open socket.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        (SharedTcp::new(TcpStream::from_std(s).expect("tokio")), c)
    }

    async fn read_n(c: &mut TcpStream, n: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut b = vec![0u8; n];
        c.read_exact(&mut b).await.expect("read");
        b
    }

    /// Producers' frames and the session's writes never cut into each other: a producer
    /// frame the socket took only part of is finished before the session's next bytes,
    /// and no producer writes while the session's last write is unfinished.
    #[test]
    fn shared_socket_keeps_frames_whole() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (mut session, mut client) = shared_pair().await;
            let sink = session.shared.clone();
            let big = Frame::Binary(Bytes::from(vec![7u8; 20_001]));
            let small = Frame::Text(crate::proto::Str::from("s".to_owned()));
            // Producers write until the socket takes only part of a frame.
            let mut whole = 0;
            let partial = loop {
                match sink.try_send(&big) {
                    Sent::All => whole += 1,
                    other => break other,
                }
                assert!(whole < 10_000, "the socket never filled");
            };
            assert_eq!(partial, Sent::Partial, "after {whole} whole frames");
            // Its rest is pending: producers must wait...
            assert_eq!(sink.try_send(&small), Sent::No);
            // ...and the session's next frame goes after it.
            let mut end = bytes::BytesMut::new();
            wsframe::encode_frame(&mut end, wsframe::Role::Server, OpCode::Text, b"end");
            let expected = (whole + 1) * (20_001 + 4) + end.len();
            let read = tokio::spawn(async move {
                let b = read_n(&mut client, expected).await;
                (b, client)
            });
            session.write_all(&end).await.expect("session write");
            let (got, mut client) = read.await.expect("reader");
            let got = frames(&got);
            assert_eq!(got.len(), whole + 2);
            assert!(
                got[..=whole]
                    .iter()
                    .all(|(op, p)| *op == 2 && p.len() == 20_001 && p.iter().all(|&b| b == 7))
            );
            assert_eq!(got[whole + 1], (1, b"end".to_vec()));
            assert_eq!(sink.try_send(&small), Sent::All);
            assert_eq!(
                frames(&read_n(&mut client, 3).await),
                vec![(1, b"s".to_vec())]
            );

            // The session's write is cut: no producer writes, even once the socket has
            // room, until the session has finished it.
            let mut many = bytes::BytesMut::new();
            for _ in 0..64 {
                wsframe::encode_frame(
                    &mut many,
                    wsframe::Role::Server,
                    OpCode::Binary,
                    &[9u8; 1000],
                );
            }
            let n = session.write(&many).await.expect("session write");
            assert!(
                n < many.len(),
                "the socket took {n} of {} bytes",
                many.len()
            );
            let mut seen = read_n(&mut client, n).await;
            assert_eq!(sink.try_send(&small), Sent::No);
            let rest = many.len() - n;
            let read = tokio::spawn(async move { (read_n(&mut client, rest).await, client) });
            session.write_all(&many[n..]).await.expect("session write");
            let (rest, mut client) = read.await.expect("reader");
            seen.extend(rest);
            let got = frames(&seen);
            assert_eq!(got.len(), 64);
            assert!(got.iter().all(|(op, p)| *op == 2 && p == &[9u8; 1000]));
            assert_eq!(sink.try_send(&small), Sent::All);
            assert_eq!(
                frames(&read_n(&mut client, 3).await),
                vec![(1, b"s".to_vec())]
            );
            // Once the session has queued its close frame, no producer writes.
            super::super::wsio::CloseHook::on_close(&*sink);
            assert_eq!(sink.try_send(&small), Sent::No);
        });
    }

    /// Whether SIGPIPE is pending for this thread (it is blocked here, so a write that
    /// raises it leaves it pending instead of acting on it); consumes it.
    fn take_sigpipe() -> bool {
        // SAFETY: plain signal-set calls on local sets.
        unsafe {
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pending);
            libc::sigpending(&mut pending);
            let raised = libc::sigismember(&pending, libc::SIGPIPE) == 1;
            if raised {
                let mut only: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut only);
                libc::sigaddset(&mut only, libc::SIGPIPE);
                let mut sig = 0;
                libc::sigwait(&only, &mut sig);
            }
            raised
        }
    }

    /// A write to a peer that reset the connection fails with an error and raises no
    /// SIGPIPE, whether plain or vectored (a C host's default SIGPIPE action would kill
    /// it). The control: a plain `writev` on the same kind of socket does raise it.
    #[test]
    fn writes_to_a_reset_peer_raise_no_sigpipe() {
        // SAFETY: blocks SIGPIPE for this test's thread only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // A connected pair whose client end is closed with a reset (linger 0).
        let pair = || {
            rt.block_on(async {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let c =
                    std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
                let (s, _) = l.accept().await.expect("accept");
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: setsockopt with a valid linger struct on an open socket.
                unsafe {
                    libc::setsockopt(
                        c.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
                drop(c);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                s
            })
        };
        let chunk = vec![b'x'; 4096];
        for vectored in [false, true] {
            let mut tcp = Tcp(pair());
            // The first failure reports the reset; the ones after it are EPIPE, the
            // error that comes with SIGPIPE.
            let failures = rt.block_on(async {
                let mut failures = 0;
                for _ in 0..64 {
                    let r = if vectored {
                        let bufs = [IoSlice::new(&chunk[..10]), IoSlice::new(&chunk)];
                        tcp.write_vectored(&bufs).await
                    } else {
                        tcp.write(&chunk).await
                    };
                    failures += r.is_err() as usize;
                }
                failures
            });
            assert!(
                failures >= 2,
                "writes to a reset peer kept succeeding (vectored: {vectored})"
            );
            assert!(!take_sigpipe(), "SIGPIPE raised (vectored: {vectored})");
        }
        // The control: writev itself raises it, so the check above can fail.
        let s = pair();
        for _ in 0..64 {
            let iov = [IoSlice::new(&chunk)];
            // SAFETY: writev of a live buffer on an open socket.
            unsafe { libc::writev(s.as_raw_fd(), iov.as_ptr().cast(), 1) };
        }
        let raised = take_sigpipe();
        assert!(raised, "the control writev raised no SIGPIPE");
    }
}
