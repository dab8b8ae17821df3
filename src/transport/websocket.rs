//! The WebSocket transport: moves Engine.IO frames between a session's queue and a socket.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode,
};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::frame_guard::FrameGuard;
use crate::engine::{DisconnectReason, Engine, EngineSocket, TransportType};
use crate::proto::Str;
use crate::proto::engineio::{Frame, Packet};

pub(crate) type Ws = WebSocketStream<FrameGuard<TokioIo<Upgraded>>>;

/// Most frames written before one flush.
const MAX_BATCH: usize = 64;

/// tungstenite settings from the engine's limits: messages and frames capped at
/// `max_payload`, a small read buffer.
pub(crate) fn ws_config(engine: &Engine) -> WebSocketConfig {
    let c = &engine.config;
    WebSocketConfig::default()
        .read_buffer_size(c.ws_read_buffer_size.max(1024))
        .write_buffer_size(0)
        .max_message_size(Some(c.max_payload))
        .max_frame_size(Some(c.max_payload))
}

/// Wrap an upgraded connection.
pub(crate) async fn wrap(upgraded: Upgraded, engine: &Engine) -> Ws {
    let io = FrameGuard::new(
        TokioIo::new(upgraded),
        engine.config.max_fragments_per_message,
    );
    WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(engine))).await
}

pub(crate) fn text_message(s: &Str) -> Message {
    // SAFETY: `Str` is valid UTF-8 by construction.
    Message::Text(unsafe { Utf8Bytes::from_bytes_unchecked(s.clone().into_bytes()) })
}

pub(crate) fn frame_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(s) => text_message(&s),
        Frame::Binary(b) => Message::Binary(b),
    }
}

/// What one incoming WebSocket message means for the session.
enum Incoming {
    Packet(Packet),
    Ignore,
    /// The session ends; the close code to send (when the link still works).
    Closed(DisconnectReason, u16),
}

fn decode(msg: Result<Message, tokio_tungstenite::tungstenite::Error>) -> Incoming {
    match msg {
        Ok(Message::Text(t)) => {
            let bytes: Bytes = t.into();
            match Str::try_from_bytes(bytes) {
                Ok(s) => match Packet::decode_text(s) {
                    Ok(p) => Incoming::Packet(p),
                    Err(e) => {
                        tracing::debug!(error = %e, "bad engine.io packet on websocket");
                        Incoming::Closed(DisconnectReason::ParseError, 1000)
                    }
                },
                Err(_) => Incoming::Closed(DisconnectReason::ParseError, 1007),
            }
        }
        Ok(Message::Binary(b)) => Incoming::Packet(Packet::decode_binary(b)),
        Ok(Message::Close(_)) => Incoming::Closed(DisconnectReason::TransportClose, 1000),
        Ok(_) => Incoming::Ignore,
        Err(e) => {
            tracing::debug!(error = %e, "websocket error");
            let (code, _) = crate::ws::close_for_error(&e);
            let reason = if crate::ws::is_peer_gone(&e) {
                DisconnectReason::TransportClose
            } else {
                DisconnectReason::TransportError
            };
            Incoming::Closed(reason, code)
        }
    }
}

/// Run a session whose transport is (now) this WebSocket, until it ends.
pub(crate) async fn run(
    engine: Arc<Engine>,
    socket: Arc<EngineSocket>,
    mut ws: Ws,
    mut rx: tokio::sync::MutexGuard<'_, crate::engine::FrameRx>,
) {
    let mut closed = socket.closed_rx();
    // One future for the whole loop (re-arming it every turn costs ~7 % per message).
    let closed_fut = closed.changed();
    tokio::pin!(closed_fut);
    let mut close_code = 1000u16;
    let carried = socket.carry.lock().ok().and_then(|mut c| c.take());
    if let Some(f) = carried
        && ws.send(frame_message(f)).await.is_err()
    {
        socket.close_with(DisconnectReason::TransportError);
    }
    let mut stalled = false;
    loop {
        tokio::select! {
            biased;
            _ = &mut closed_fut => break,
            msg = ws.next() => {
                let Some(msg) = msg else {
                    socket.close_with(DisconnectReason::TransportClose);
                    break;
                };
                match decode(msg) {
                    Incoming::Packet(p) => socket.on_packet(&engine, p),
                    Incoming::Ignore => {}
                    Incoming::Closed(reason, code) => {
                        close_code = code;
                        socket.close_with(reason);
                        break;
                    }
                }
            }
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                // A peer that stops reading must not pin this task: the write gives way to
                // the session's end (ping timeout, server close).
                let written = tokio::select! {
                    biased;
                    _ = &mut closed_fut => None,
                    ok = write_batch(&mut ws, &mut rx, frame) => Some(ok),
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
        }
    }
    if stalled {
        // The peer does not read: no close handshake to wait for.
        return;
    }
    // Deliver what the server queued last (a close packet, a final message), then close;
    // bounded, in case the peer stopped reading.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Ok(f) = rx.try_recv() {
            if ws.feed(frame_message(f)).await.is_err() {
                break;
            }
        }
        let _ = ws
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(close_code),
                reason: Utf8Bytes::from_static(""),
            })))
            .await;
        let _ = ws.close(None).await;
    })
    .await;
}

/// Write `first` and whatever else is queued (up to a batch), then flush once.
async fn write_batch(ws: &mut Ws, rx: &mut crate::engine::FrameRx, first: Frame) -> bool {
    if ws.feed(frame_message(first)).await.is_err() {
        return false;
    }
    let mut batch = 1;
    while batch < MAX_BATCH {
        match rx.try_recv() {
            Ok(f) => {
                if ws.feed(frame_message(f)).await.is_err() {
                    return false;
                }
                batch += 1;
            }
            Err(_) => break,
        }
    }
    ws.flush().await.is_ok()
}

/// A WebSocket handshake with a `sid`: the probe, then the switch from polling.
pub(crate) async fn upgrade(engine: Arc<Engine>, socket: Arc<EngineSocket>, mut ws: Ws) {
    let timeout = engine.config.upgrade_timeout;
    let mut closed = socket.closed_rx();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut probed = false;
    let upgraded = loop {
        tokio::select! {
            _ = &mut deadline => break false,
            _ = closed.changed() => break false,
            msg = ws.next() => {
                let Some(msg) = msg else { break false };
                match decode(msg) {
                    Incoming::Packet(Packet::Ping(p)) if p.as_str() == "probe" && !probed => {
                        probed = true;
                        if ws.send(text_message(&Str::from_static("3probe"))).await.is_err() {
                            break false;
                        }
                        // Release a pending poll so the client can send the upgrade.
                        socket.probed.store(true, Ordering::Release);
                        socket.poll_kick.notify_waiters();
                    }
                    Incoming::Packet(Packet::Upgrade) if probed => break true,
                    Incoming::Ignore => {}
                    Incoming::Closed(..) | Incoming::Packet(_) => break false,
                }
            }
        }
    };
    if !upgraded || socket.is_closed() {
        socket.probed.store(false, Ordering::Release);
        socket.upgrading.store(false, Ordering::Release);
        tracing::debug!(sid = %socket.id(), "websocket upgrade abandoned");
        let _ = ws.close(None).await;
        return;
    }
    socket.set_transport(TransportType::Websocket);
    socket.poll_kick.notify_waiters();
    let rx = socket.rx.lock().await;
    socket.probed.store(false, Ordering::Release);
    socket.upgrading.store(false, Ordering::Release);
    tracing::debug!(sid = %socket.id(), "upgraded to websocket");
    run(engine, socket.clone(), ws, rx).await;
}
