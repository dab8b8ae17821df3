//! The WebSocket transport: moves Engine.IO frames between a session's queue and a socket.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use hyper::upgrade::Upgraded;

use super::tcpio::SessionIo;
use super::wsio::{WsError, WsStream};
use crate::engine::{DisconnectReason, Engine, EngineSocket, Out, TransportType};
use crate::proto::engineio::{Frame, Packet};
use crate::proto::wsframe::{Limits, Message, OpCode, Role};

pub(crate) type Ws = WsStream<SessionIo>;

/// Most frames written before one flush.
const MAX_BATCH: usize = 64;
/// Most bytes gathered before one write.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Frame limits from the engine's: messages and frames capped at `max_payload`.
pub(crate) fn limits(engine: &Engine) -> Limits {
    let c = &engine.config;
    Limits {
        max_frame: c.max_payload,
        max_message: c.max_payload,
        max_fragments: c.max_fragments_per_message,
    }
}

/// Wrap an upgraded connection (taking back its TCP stream when it is plain TCP, for
/// direct writes).
pub(crate) fn wrap(upgraded: Upgraded, engine: &Engine) -> Ws {
    let (io, leftover) = SessionIo::from_upgraded(upgraded);
    let leftover = if leftover.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(&leftover[..])
    };
    WsStream::new(io, Role::Server, limits(engine), leftover)
}

/// Removes a session's direct-write sink when its WebSocket loop ends, however it ends
/// (the socket must close with the session, not live on in the queue).
struct DirectGuard<'a>(&'a EngineSocket);

impl Drop for DirectGuard<'_> {
    fn drop(&mut self) {
        self.0.set_direct(None);
    }
}

/// Queue an Engine.IO frame on a WebSocket.
pub(crate) fn queue_frame<S>(ws: &mut WsStream<S>, frame: &Frame)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (op, payload) = frame.ws_parts();
    ws.queue(op, payload);
}

/// What one incoming WebSocket message means for the session.
enum Incoming {
    Packet(Packet),
    Ignore,
    /// The session ends; the close code to send (when the link still works).
    Closed(DisconnectReason, u16),
}

fn decode(msg: Result<Message, WsError>) -> Incoming {
    match msg {
        Ok(Message::Text(s)) => match Packet::decode_text(s) {
            Ok(p) => Incoming::Packet(p),
            Err(e) => {
                tracing::debug!(error = %e, "bad engine.io packet on websocket");
                Incoming::Closed(DisconnectReason::ParseError, 1000)
            }
        },
        Ok(Message::Binary(b)) => Incoming::Packet(Packet::decode_binary(b)),
        Ok(Message::Close(_)) => Incoming::Closed(DisconnectReason::TransportClose, 1000),
        Ok(_) => Incoming::Ignore,
        Err(e) => {
            tracing::debug!(error = %e, "websocket error");
            let (code, _) = e.close();
            let reason = if e.is_peer_gone() {
                DisconnectReason::TransportClose
            } else {
                DisconnectReason::TransportError
            };
            Incoming::Closed(reason, code)
        }
    }
}

/// Run a session whose transport is (now) this WebSocket, until it ends.
///
/// Everything is borrowed: the caller's frame holds the stream and the queue guard once
/// (moving them in would store them twice in the session task's future).
pub(crate) async fn run(
    engine: &Arc<Engine>,
    socket: &Arc<EngineSocket>,
    ws: &mut Ws,
    rx: &mut crate::engine::FrameRx,
) {
    // One future for the whole loop (re-arming it every turn costs ~7 % per message).
    // The session's end, as one `Notified` registered before the first look at the flag
    // (`close_with` sets it, then notifies: no end goes unseen).
    let closed_fut = socket.closed_notify().notified();
    tokio::pin!(closed_fut);
    closed_fut.as_mut().enable();
    let mut close_code = 1000u16;
    let carried = socket.take_carry();
    if let Some(f) = carried
        && {
            queue_frame(ws, &f);
            ws.flush().await.is_err()
        }
    {
        socket.close_with(DisconnectReason::TransportError);
    }
    // From here, producers write frames straight to a plain TCP socket while this task
    // is not writing (see `engine::queue`); the close frame seals that.
    let direct = ws.get_ref().shared().map(|shared| {
        ws.set_close_hook(shared.clone());
        socket.set_direct(Some(shared));
        DirectGuard(socket)
    });
    let mut stalled = false;
    while !socket.is_closed() {
        // The select yields what to write; the write awaits after it, so the two never
        // sit side by side in the session task's future.
        let out = tokio::select! {
            biased;
            _ = &mut closed_fut => break,
            msg = ws.next() => {
                let Some(msg) = msg else {
                    socket.close_with(DisconnectReason::TransportClose);
                    break;
                };
                match decode(msg) {
                    Incoming::Packet(p) => socket.on_packet(engine, p),
                    Incoming::Ignore => {}
                    Incoming::Closed(reason, code) => {
                        close_code = code;
                        socket.close_with(reason);
                        break;
                    }
                }
                continue;
            }
            out = rx.next_out() => out,
        };
        // A peer that stops reading must not pin this task: the write gives way to the
        // session's end (ping timeout, server close).
        let written = tokio::select! {
            biased;
            _ = &mut closed_fut => None,
            ok = write_out(ws, rx, out) => Some(ok),
        };
        match written {
            Some(true) => {}
            Some(false) => {
                socket.close_with(DisconnectReason::TransportError);
                break;
            }
            None => {
                stalled = true;
                break;
            }
        }
    }
    // What is still queued goes out after what was written, in order: no more direct
    // writes from here.
    drop(direct);
    if stalled {
        // The peer does not read: no close handshake to wait for.
        return;
    }
    // Deliver what the server queued last (a close packet, a final message), then close;
    // bounded, in case the peer stopped reading. Boxed: it runs once per connection, and
    // its timer need not sit in every idle session's task.
    Box::pin(tokio::time::timeout(
        std::time::Duration::from_secs(1),
        async {
            while let Ok(f) = rx.try_recv() {
                queue_frame(ws, &f);
            }
            let _ = ws.close(Some((close_code, ""))).await;
        },
    ))
    .await
    .ok();
}

/// Write `out`: a frame and whatever else is queued (up to a batch) in one vectored write,
/// then flush once; or the rest of a partial direct write. Then producers may write
/// directly again.
///
/// A plain function around an `async` block: the frame is stored once in the future (an
/// `async fn` would keep its argument and the local it moves into).
fn write_out<'a>(
    ws: &'a mut Ws,
    rx: &'a mut crate::engine::FrameRx,
    out: Out,
) -> impl std::future::Future<Output = bool> + 'a {
    let mut first = match out {
        Out::Frame(f) => Some(f),
        Out::Flush => None,
    };
    async move {
        let ok = match first {
            Some(_) => write_batch_inner(ws, rx, &mut first).await,
            None => ws.flush_io().await.is_ok(),
        };
        if ok {
            rx.wrote();
        }
        ok
    }
}

async fn write_batch_inner(
    ws: &mut Ws,
    rx: &mut crate::engine::FrameRx,
    first: &mut Option<Frame>,
) -> bool {
    // Gather and write in one poll (the call below always completes at once: what the
    // socket does not take is queued in the stream, flushed next).
    let written = std::future::poll_fn(|cx| {
        let Some(f0) = first.take() else {
            return std::task::Poll::Ready(Ok(()));
        };
        match rx.try_recv() {
            // The common case (an echo, one broadcast): one frame, nothing to gather.
            Err(_) => ws.poll_write_frames(cx, &[f0.ws_parts()]),
            Ok(f1) => {
                let mut batch = Vec::with_capacity(8);
                batch.push(f0);
                batch.push(f1);
                let mut bytes: usize = batch.iter().map(|f| f.ws_parts().1.len()).sum();
                while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(f) => {
                            bytes += f.ws_parts().1.len();
                            batch.push(f);
                        }
                        Err(_) => break,
                    }
                }
                let frames: Vec<(OpCode, &[u8])> = batch.iter().map(Frame::ws_parts).collect();
                ws.poll_write_frames(cx, &frames)
            }
        }
    })
    .await;
    written.is_ok() && ws.flush().await.is_ok()
}

/// A WebSocket handshake with a `sid`: the probe, then the switch from polling.
pub(crate) async fn upgrade(engine: Arc<Engine>, socket: Arc<EngineSocket>, mut ws: Ws) {
    let timeout = engine.config.upgrade_timeout;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut probed = false;
    let upgraded = loop {
        tokio::select! {
            _ = &mut deadline => break false,
            _ = socket.closed() => break false,
            msg = ws.next() => {
                let Some(msg) = msg else { break false };
                match decode(msg) {
                    Incoming::Packet(Packet::Ping(p)) if p.as_str() == "probe" && !probed => {
                        probed = true;
                        if ws.send(OpCode::Text, b"3probe").await.is_err() {
                            break false;
                        }
                        // Release a pending poll so the client can send the upgrade.
                        socket.rare().probed.store(true, Ordering::Release);
                        socket.rare().poll_kick.notify_waiters();
                    }
                    Incoming::Packet(Packet::Upgrade) if probed => break true,
                    Incoming::Ignore => {}
                    Incoming::Closed(..) | Incoming::Packet(_) => break false,
                }
            }
        }
    };
    if !upgraded || socket.is_closed() {
        socket.rare().probed.store(false, Ordering::Release);
        socket.rare().upgrading.store(false, Ordering::Release);
        tracing::debug!(sid = %socket.id(), "websocket upgrade abandoned");
        let _ = ws.close(None).await;
        return;
    }
    socket.set_transport(TransportType::Websocket);
    socket.rare().poll_kick.notify_waiters();
    let mut rx = socket.rx.lock().await;
    socket.rare().probed.store(false, Ordering::Release);
    socket.rare().upgrading.store(false, Ordering::Release);
    tracing::debug!(sid = %socket.id(), "upgraded to websocket");
    run(&engine, &socket, &mut ws, &mut rx).await;
}

/// A session opened directly on WebSocket: its whole life, as one small task (the
/// upgrade's own future, with the request it came from, is gone by then).
///
/// The stream is wrapped before the task starts, so the future holds it once (not also
/// the `Upgraded` it came from).
pub(crate) fn serve_new(
    engine: Arc<Engine>,
    socket: Arc<EngineSocket>,
    upgraded: Upgraded,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut ws = wrap(upgraded, &engine);
    async move {
        let mut rx = socket.rx.lock().await;
        engine.handler.on_connect(&socket);
        run(&engine, &socket, &mut ws, &mut rx).await;
    }
}

#[cfg(test)]
mod tests {
    fn future_size<A, B, C, F: std::future::Future>(_: impl FnOnce(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle WebSocket session keeps this future (issue 9, S3: 872 bytes before the
    /// loop was reshaped). A bound, not the exact size, so a compiler change does not
    /// break the build; growth past it should be a decision.
    #[test]
    fn session_future_stays_small() {
        let n = future_size(super::serve_new);
        assert!(n <= 720, "the WebSocket session future grew to {n} bytes");
    }
}
