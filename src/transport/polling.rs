//! The HTTP long-polling transport: `GET` drains the session's queue, `POST` feeds it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::http::{EngineError, Resp, engine_error, response};
use crate::engine::{DisconnectReason, Engine, EngineSocket, TransportType};
use crate::proto::engineio::{Frame, Packet, PayloadEncoder, decode_payload};

const TEXT_PLAIN: &str = "text/plain; charset=UTF-8";
const UPGRADE_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

fn noop_body() -> Bytes {
    Bytes::from_static(b"6")
}

/// Answer a poll: wait for at least one frame, then send every queued frame that fits
/// in `max_payload`.
pub(crate) async fn poll(engine: &Arc<Engine>, socket: &Arc<EngineSocket>) -> Resp {
    if socket.transport() != TransportType::Polling {
        return engine_error(EngineError::BadRequest);
    }
    let Ok(mut rx) = socket.rx.try_lock() else {
        // A second concurrent GET: the reference closes the session.
        tracing::debug!(sid = %socket.id(), "overlapping poll");
        // The pending poll answers the close packet; this one gets 400.
        let _ = socket.send_frame(Packet::Close.encode());
        socket.close_with(DisconnectReason::TransportError);
        return engine_error(EngineError::BadRequest);
    };
    // A poll whose connection goes away ends the session at once (as the reference's
    // "poll connection closed prematurely"), instead of lingering until the ping timeout.
    let mut guard = PollGuard {
        socket: socket.clone(),
        armed: true,
    };
    let resp = poll_locked(engine, socket, &mut rx).await;
    guard.armed = false;
    resp
}

struct PollGuard {
    socket: Arc<EngineSocket>,
    armed: bool,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        if self.armed && !self.socket.is_closed() {
            tracing::debug!(sid = %self.socket.id(), "poll connection closed prematurely");
            self.socket.close_with(DisconnectReason::TransportError);
        }
    }
}

async fn poll_locked(
    engine: &Arc<Engine>,
    socket: &Arc<EngineSocket>,
    rx: &mut tokio::sync::MutexGuard<'_, crate::engine::FrameRx>,
) -> Resp {
    // Register for kicks before looking at the upgrade state, so none is missed.
    let kick = socket.rare().poll_kick.notified();
    tokio::pin!(kick);
    kick.as_mut().enable();
    if socket.rare().probed.load(Ordering::Acquire) {
        // An upgrade is under way: give it a moment (the reference checks every 100 ms),
        // then answer noop, or 400 when the session moved to WebSocket meanwhile.
        tokio::select! {
            _ = &mut kick => {}
            _ = tokio::time::sleep(UPGRADE_CHECK) => {}
            _ = socket.closed() => {}
        }
        if socket.transport() != TransportType::Polling {
            return engine_error(EngineError::BadRequest);
        }
        return response(StatusCode::OK, TEXT_PLAIN, noop_body());
    }
    let carried = socket.take_carry();
    let first = if carried.is_some() {
        carried
    } else if socket.is_closed() {
        None
    } else {
        tokio::select! {
            f = rx.recv() => f,
            _ = &mut kick => {
                if socket.transport() != TransportType::Polling {
                    return engine_error(EngineError::BadRequest);
                }
                Some(Packet::Noop.encode())
            }
            _ = socket.closed() => None,
        }
    };
    let mut enc = PayloadEncoder::new();
    match first {
        Some(f) => enc.push(&f),
        None => {
            socket.rare().late_poll.store(false, Ordering::Release);
            // Closed: send what is left (a close packet, if the server queued one);
            // a poll released by the client's own close gets a noop, as the reference does.
            while let Ok(f) = rx.try_recv() {
                enc.push(&f);
            }
            if enc.is_empty() {
                enc.push(&Packet::Noop.encode());
            }
            return response(StatusCode::OK, TEXT_PLAIN, enc.finish());
        }
    }
    let max = engine.config.max_payload;
    // Frames that would overflow this response wait for the next poll: keep at most one.
    let mut carry: Option<Frame> = None;
    while let Ok(f) = rx.try_recv() {
        if enc.len() + enc.encoded_len(&f) > max {
            carry = Some(f);
            break;
        }
        enc.push(&f);
    }
    if let Some(f) = carry
        && let Ok(mut c) = socket.rare().carry.lock()
    {
        *c = Some(f);
    }
    response(StatusCode::OK, TEXT_PLAIN, enc.finish())
}

/// Accept a POST body of packets.
pub(crate) async fn post(
    engine: &Arc<Engine>,
    socket: &Arc<EngineSocket>,
    req: Request<Incoming>,
) -> Resp {
    if socket.transport() != TransportType::Polling {
        return engine_error(EngineError::BadRequest);
    }
    let Ok(_guard) = socket.rare().incoming.try_lock() else {
        tracing::debug!(sid = %socket.id(), "overlapping data request");
        socket.close_with(DisconnectReason::TransportError);
        return engine_error(EngineError::BadRequest);
    };
    let max = engine.config.max_payload;
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && n > max as u64
    {
        socket.close_with(DisconnectReason::TransportError);
        return response(StatusCode::PAYLOAD_TOO_LARGE, TEXT_PLAIN, Bytes::new());
    }
    let body = match http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            socket.close_with(DisconnectReason::TransportError);
            return if too_large {
                response(StatusCode::PAYLOAD_TOO_LARGE, TEXT_PLAIN, Bytes::new())
            } else {
                engine_error(EngineError::BadRequest)
            };
        }
    };
    let packets = match decode_payload(body, engine.config.max_packets_per_payload) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(sid = %socket.id(), error = %e, "bad polling payload");
            socket.close_with(DisconnectReason::ParseError);
            return engine_error(EngineError::BadRequest);
        }
    };
    for p in packets {
        if socket.is_closed() {
            break;
        }
        socket.on_packet(engine, p);
    }
    response(StatusCode::OK, "text/html", Bytes::from_static(b"ok"))
}
