//! A read-side guard for WebSocket streams: counts the fragments of each message as the
//! bytes go by (headers only; payloads are skipped, never buffered) and fails the stream
//! when one message has more than the limit — empty continuation frames included.
//! tungstenite has no such limit; without it a peer can send endless empty fragments.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The error message of a stream failed by the guard.
pub(crate) const TOO_MANY_FRAGMENTS: &str = "too many fragments in one message";

enum State {
    /// Collecting a frame header: bytes so far, and how many the header needs.
    Header {
        buf: [u8; 14],
        have: usize,
        need: usize,
    },
    /// Skipping a payload.
    Payload { remaining: u64 },
}

/// Wraps a stream; see the module docs.
pub(crate) struct FrameGuard<S> {
    inner: S,
    max_fragments: usize,
    fragments: usize,
    state: State,
}

impl<S> FrameGuard<S> {
    pub(crate) fn new(inner: S, max_fragments: usize) -> Self {
        FrameGuard {
            inner,
            max_fragments: max_fragments.max(1),
            fragments: 0,
            state: State::Header {
                buf: [0; 14],
                have: 0,
                need: 2,
            },
        }
    }

    /// Feed received bytes through the header parser; `Err` when the limit is passed.
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), ()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Payload { remaining } => {
                    let n = (*remaining).min(bytes.len() as u64) as usize;
                    *remaining -= n as u64;
                    bytes = &bytes[n..];
                    if *remaining == 0 {
                        self.state = State::Header {
                            buf: [0; 14],
                            have: 0,
                            need: 2,
                        };
                    }
                }
                State::Header { buf, have, need } => {
                    let take = (*need - *have).min(bytes.len());
                    buf[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &bytes[take..];
                    if *have == 2 && *need == 2 {
                        let ext = match buf[1] & 0x7f {
                            126 => 2,
                            127 => 8,
                            _ => 0,
                        };
                        let mask = if buf[1] & 0x80 != 0 { 4 } else { 0 };
                        *need = 2 + ext + mask;
                    }
                    if *have < *need {
                        continue;
                    }
                    let (fin, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x0f);
                    let len = match buf[1] & 0x7f {
                        126 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
                        127 => u64::from_be_bytes([
                            buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8], buf[9],
                        ]),
                        n => n as u64,
                    };
                    if opcode < 8 {
                        // A data frame: text/binary start a message, continuations extend it.
                        self.fragments = if opcode == 0 { self.fragments + 1 } else { 1 };
                        if self.fragments > self.max_fragments {
                            return Err(());
                        }
                        if fin {
                            self.fragments = 0;
                        }
                    }
                    self.state = if len == 0 {
                        State::Header {
                            buf: [0; 14],
                            have: 0,
                            need: 2,
                        }
                    } else {
                        State::Payload { remaining: len }
                    };
                }
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            if this.scan(&buf.filled()[before..]).is_err() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    TOO_MANY_FRAGMENTS,
                )));
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if len < 126 {
            f.push(0x80 | len as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(0u8, len));
        f
    }

    #[test]
    fn counts_fragments_per_message() {
        let mut g = FrameGuard::new((), 3);
        let mut bytes = frame(false, 1, 5);
        bytes.extend(frame(false, 0, 0));
        bytes.extend(frame(false, 9, 2)); // a ping in between does not count
        bytes.extend(frame(true, 0, 300));
        // A new message starts the count again.
        bytes.extend(frame(false, 2, 1));
        bytes.extend(frame(false, 0, 0));
        // Fed one byte at a time, as a slow peer would.
        for b in &bytes {
            assert!(g.scan(std::slice::from_ref(b)).is_ok());
        }
        assert!(g.scan(&frame(false, 0, 0)).is_ok()); // third fragment
        assert!(g.scan(&frame(false, 0, 0)).is_err()); // fourth: over the limit
    }

    #[test]
    fn long_lengths_are_skipped_without_buffering() {
        let mut g = FrameGuard::new((), 2);
        let mut hdr = vec![0x82, 0x80 | 127];
        hdr.extend_from_slice(&(1u64 << 40).to_be_bytes());
        hdr.extend_from_slice(&[0, 0, 0, 0]);
        assert!(g.scan(&hdr).is_ok());
        assert!(matches!(g.state, State::Payload { remaining } if remaining == 1 << 40));
    }
}
