//! The HTTP listener: hyper connections, routing to Engine.IO, CORS, static routes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::watch;

use super::tcpio::{ServerIo, Tcp};
use crate::config::{CorsOrigins, EngineConfig, RequestInfo};
use crate::engine::SharedRequest;
use crate::engine::{Engine, TransportType};
use crate::tls::{BoxIo, ServerTls};
use crate::ws::WsServer;

pub(crate) type Resp = Response<Full<Bytes>>;

/// Engine.IO's HTTP error codes, as the reference server sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EngineError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl EngineError {
    fn message(self) -> &'static str {
        match self {
            EngineError::UnknownTransport => "Transport unknown",
            EngineError::UnknownSid => "Session ID unknown",
            EngineError::BadHandshakeMethod => "Bad handshake method",
            EngineError::BadRequest => "Bad request",
            EngineError::Forbidden => "Forbidden",
            EngineError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }
}

pub(crate) fn response(status: StatusCode, content_type: &str, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

pub(crate) fn engine_error(e: EngineError) -> Resp {
    engine_error_msg(e, e.message())
}

fn engine_error_msg(e: EngineError, message: &str) -> Resp {
    let status = if e == EngineError::Forbidden {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = serde_json::json!({ "code": e as u8, "message": message }).to_string();
    response(status, "application/json", Bytes::from(body))
}

/// What a listener serves beside Engine.IO: fixed responses (a chat page, a client
/// script...), plain WebSocket endpoints, and TLS for all of it.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    files: HashMap<String, (String, Bytes)>,
    websockets: HashMap<String, WsServer>,
    tls: Option<ServerTls>,
}

/// The former name of [`Routes`].
pub type StaticRoutes = Routes;

impl Routes {
    /// No routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve a plain WebSocket endpoint at `path` (e.g. `/ws` beside Socket.IO).
    pub fn websocket(mut self, path: impl Into<String>, server: WsServer) -> Self {
        self.websockets.insert(path.into(), server);
        self
    }

    /// Serve everything over TLS (`https://` and `wss://`) with this certificate.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Answer `GET path` with `body` and the given content type.
    pub fn file(
        mut self,
        path: impl Into<String>,
        content_type: impl Into<String>,
        body: impl Into<Bytes>,
    ) -> Self {
        self.files
            .insert(path.into(), (content_type.into(), body.into()));
        self
    }

    fn get(&self, path: &str) -> Option<&(String, Bytes)> {
        self.files.get(path)
    }
}

/// A running server; dropping it does not stop the server, [`ServerHandle::shutdown`] does.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    engine: Option<Arc<Engine>>,
}

impl ServerHandle {
    /// The address the listener is bound to (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting connections and close every session.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
        if let Some(e) = &self.engine {
            e.close_all();
        }
    }
}

/// Bind `addr` and serve `engine` (plus `routes`) on it, on the current tokio runtime.
pub async fn serve(
    engine: Arc<Engine>,
    addr: impl ToSocketAddrs,
    routes: Routes,
) -> std::io::Result<ServerHandle> {
    serve_inner(Some(engine), addr, routes).await
}

/// Bind `addr` and serve only `routes` (plain WebSocket endpoints, files), no Engine.IO.
pub async fn serve_routes(
    addr: impl ToSocketAddrs,
    routes: Routes,
) -> std::io::Result<ServerHandle> {
    serve_inner(None, addr, routes).await
}

async fn serve_inner(
    engine: Option<Arc<Engine>>,
    addr: impl ToSocketAddrs,
    routes: Routes,
) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let limits = engine
        .as_ref()
        .map(|e| e.config.clone())
        .unwrap_or_default();
    let ctx = Arc::new(Ctx {
        engine: engine.clone(),
        limits,
        routes,
    });
    tokio::spawn(accept_loop(listener, ctx, shutdown_rx));
    tracing::info!(%local_addr, "listening");
    Ok(ServerHandle {
        local_addr,
        shutdown,
        engine,
    })
}

struct Ctx {
    engine: Option<Arc<Engine>>,
    limits: EngineConfig,
    routes: Routes,
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let mut builder = http1::Builder::new();
    let cfg = &ctx.limits;
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_headers(cfg.max_headers.max(1))
        .max_header_size(cfg.max_header_bytes.max(1024))
        .max_buf_size((cfg.max_header_bytes + 4096).max(8192));
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let builder = builder.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let io = match &ctx.routes.tls {
                None => ServerIo::Tcp(Tcp(stream)),
                Some(tls) => {
                    let accept = tls.acceptor().accept(Tcp(stream));
                    match tokio::time::timeout(ctx.limits.header_read_timeout, accept).await {
                        Ok(Ok(s)) => ServerIo::Tls(Box::new(s) as BoxIo),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "tls handshake timed out");
                            return;
                        }
                    }
                }
            };
            let svc = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(ctx, req, peer).await) }
            });
            let conn = builder
                .serve_connection(TokioIo::new(io), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!(error = %e, %peer, "http connection ended with an error");
                    }
                }
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn).await;
                }
            }
        });
    }
}

async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let path = req.uri().path();
    if let Some(ws) = ctx.routes.websockets.get(path) {
        return websocket_endpoint(ws.clone(), req, peer);
    }
    let Some(engine) = &ctx.engine else {
        return static_route(&ctx, &req);
    };
    let engine_path = engine.config.path.as_str();
    let trimmed = engine_path.trim_end_matches('/');
    if path == engine_path || (!trimmed.is_empty() && path == trimmed) {
        let origin = req.headers().get(header::ORIGIN).cloned();
        let preflight = req.method() == Method::OPTIONS;
        let request_headers = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned();
        let mut resp = if preflight {
            response(StatusCode::NO_CONTENT, "text/plain", Bytes::new())
        } else {
            engine_request(engine, req, peer).await
        };
        apply_cors(engine, origin, preflight, request_headers, &mut resp);
        return resp;
    }
    static_route(&ctx, &req)
}

fn static_route(ctx: &Ctx, req: &Request<Incoming>) -> Resp {
    if (req.method() == Method::GET || req.method() == Method::HEAD)
        && let Some((ct, body)) = ctx.routes.get(req.uri().path())
    {
        return response(StatusCode::OK, ct, body.clone());
    }
    response(
        StatusCode::NOT_FOUND,
        "text/plain",
        Bytes::from_static(b"Not Found"),
    )
}

/// A plain WebSocket endpoint: validate, answer 101, run the connection.
fn websocket_endpoint(ws: WsServer, mut req: Request<Incoming>, peer: SocketAddr) -> Resp {
    if !is_websocket_upgrade(&req) {
        return response(
            StatusCode::BAD_REQUEST,
            "text/plain",
            Bytes::from_static(b"expected a websocket upgrade"),
        );
    }
    let protocol = match ws.negotiate(req.headers()) {
        Ok(p) => p,
        Err(403) => {
            return response(
                StatusCode::FORBIDDEN,
                "text/plain",
                Bytes::from_static(b"origin not allowed"),
            );
        }
        Err(_) => return response(StatusCode::BAD_REQUEST, "text/plain", Bytes::new()),
    };
    let Some(mut resp) = accept_websocket(&req) else {
        return response(
            StatusCode::BAD_REQUEST,
            "text/plain",
            Bytes::from_static(b"bad websocket handshake"),
        );
    };
    if let Some(p) = &protocol
        && let Ok(v) = HeaderValue::from_str(p)
    {
        resp.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    for (k, v) in ws.response_headers() {
        resp.headers_mut().append(k, v);
    }
    let info = RequestInfo::owned(req.uri(), req.headers(), peer);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            ws.serve(TokioIo::new(upgraded), protocol, info).await;
        }
    });
    resp
}

fn apply_cors(
    engine: &Engine,
    origin: Option<HeaderValue>,
    preflight: bool,
    request_headers: Option<HeaderValue>,
    resp: &mut Resp,
) {
    let Some(cors) = &engine.config.cors else {
        return;
    };
    let h = resp.headers_mut();
    let allow = match (&cors.origins, &origin) {
        (CorsOrigins::Any, _) if !cors.credentials => Some(HeaderValue::from_static("*")),
        (CorsOrigins::Any, Some(o)) => Some(o.clone()),
        (CorsOrigins::Any, None) => Some(HeaderValue::from_static("*")),
        (CorsOrigins::List(list), Some(o)) => o
            .to_str()
            .ok()
            .filter(|o| list.iter().any(|a| a == o))
            .map(|_| o.clone()),
        (CorsOrigins::List(_), None) => None,
    };
    let Some(allow) = allow else { return };
    if allow != "*" {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    if cors.credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
        );
        if let Some(rh) = request_headers {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, rh);
            h.append(
                header::VARY,
                HeaderValue::from_static("Access-Control-Request-Headers"),
            );
        }
    }
}

/// A request without `Origin` passes; with one, it must be allowed by CORS, or, without
/// CORS settings, be the server's own origin (same host and port as `Host`).
fn origin_allowed(engine: &Engine, info: &SharedRequest) -> bool {
    let Some(origin) = info.header("origin") else {
        return true;
    };
    match &engine.config.cors {
        Some(cors) => match &cors.origins {
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => list.iter().any(|a| a == origin),
        },
        None => {
            let Some(host) = info.header("host") else {
                return false;
            };
            let authority = origin
                .split_once("://")
                .map(|(_, rest)| rest)
                .unwrap_or(origin);
            authority.eq_ignore_ascii_case(host)
        }
    }
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has_token(header::UPGRADE, "websocket") && has_token(header::CONNECTION, "upgrade")
}

async fn engine_request(
    engine: &Arc<Engine>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Resp {
    // The compact form: all a session keeps of its request (no owned header map).
    let info = SharedRequest::new(req.uri(), req.headers(), peer);
    if engine.config.check_origin && !origin_allowed(engine, &info) {
        tracing::debug!(%peer, origin = ?info.header("origin"), "origin refused");
        return engine_error(EngineError::Forbidden);
    }
    let transport = info.query("transport");
    let transport = match transport.as_deref() {
        Some("polling") if engine.config.transports.polling => TransportType::Polling,
        Some("websocket") if engine.config.transports.websocket => TransportType::Websocket,
        _ => return engine_error(EngineError::UnknownTransport),
    };
    let upgrade = is_websocket_upgrade(&req);
    let sid = info.query("sid");
    match sid {
        Some(sid) => {
            let Some(socket) = engine.get(&sid) else {
                return engine_error(EngineError::UnknownSid);
            };
            if socket.ping_overdue() {
                // The heartbeat timer may lag a little: the deadline is what counts.
                socket.close_with(crate::engine::DisconnectReason::PingTimeout);
                return engine_error(EngineError::UnknownSid);
            }
            if socket.is_closed() && !socket.rare().late_poll.swap(false, Ordering::AcqRel) {
                return engine_error(EngineError::UnknownSid);
            }
            if !upgrade && socket.transport() != transport {
                return engine_error(EngineError::BadRequest);
            }
            if upgrade {
                if transport != TransportType::Websocket {
                    return engine_error(EngineError::BadRequest);
                }
                let Some(resp) = accept_websocket(&req) else {
                    return engine_error(EngineError::BadRequest);
                };
                let on_upgrade = hyper::upgrade::on(&mut req);
                if socket.transport() != TransportType::Polling
                    || socket.rare().upgrading.swap(true, Ordering::AcqRel)
                {
                    // Already upgraded or upgrading: accept, then close this one
                    // (the reference does; the session carries on).
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        if let Ok(upgraded) = on_upgrade.await {
                            let mut ws = super::websocket::wrap(upgraded, &engine);
                            let _ = ws.close(None).await;
                        }
                    });
                    return resp;
                }
                let engine = engine.clone();
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(upgraded) => {
                            let ws = super::websocket::wrap(upgraded, &engine);
                            super::websocket::upgrade(engine, socket, ws).await;
                        }
                        Err(_) => socket.rare().upgrading.store(false, Ordering::Release),
                    }
                });
                return resp;
            }
            match *req.method() {
                Method::GET => super::polling::poll(engine, &socket).await,
                Method::POST => super::polling::post(engine, &socket, req).await,
                _ => engine_error(EngineError::BadRequest),
            }
        }
        None => {
            if req.method() != Method::GET {
                return engine_error(EngineError::BadHandshakeMethod);
            }
            if transport == TransportType::Websocket && !upgrade {
                return engine_error(EngineError::BadRequest);
            }
            if info.query("EIO").as_deref() != Some("4") {
                return engine_error(EngineError::UnsupportedProtocolVersion);
            }
            if let Some(allow) = &engine.config.allow_request
                && let Err(msg) = allow(&info.to_info())
            {
                let msg = if msg.is_empty() {
                    "Forbidden"
                } else {
                    msg.as_str()
                };
                return engine_error_msg(EngineError::Forbidden, msg);
            }
            let admitted = engine.ip_limiter.is_active();
            if let Err(refusal) = engine.ip_limiter.admit(peer.ip()) {
                let msg = match refusal {
                    crate::limits::Refusal::TooManyConnections => "Too many connections",
                    crate::limits::Refusal::TooFast => "Too many connection attempts",
                };
                tracing::debug!(%peer, msg, "handshake refused by the per-ip limits");
                let body =
                    serde_json::json!({ "code": EngineError::Forbidden as u8, "message": msg })
                        .to_string();
                return response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "application/json",
                    Bytes::from(body),
                );
            }
            if transport == TransportType::Polling {
                let socket = engine.create_session(info, TransportType::Polling, admitted);
                engine.handler.on_connect(&socket);
                return super::polling::poll(engine, &socket).await;
            }
            let Some(resp) = accept_websocket(&req) else {
                if admitted {
                    engine.ip_limiter.release(peer.ip());
                }
                return engine_error(EngineError::BadRequest);
            };
            let on_upgrade = hyper::upgrade::on(&mut req);
            let engine = engine.clone();
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    if admitted {
                        engine.ip_limiter.release(peer.ip());
                    }
                    return;
                };
                let socket = engine.create_session(info, TransportType::Websocket, admitted);
                tokio::spawn(super::websocket::serve_new(engine, socket, upgraded));
            });
            resp
        }
    }
}

/// The `101 Switching Protocols` answer, or None when the handshake headers are wrong.
fn accept_websocket(req: &Request<Incoming>) -> Option<Resp> {
    if req.method() != Method::GET {
        return None;
    }
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?;
    if !version_ok {
        return None;
    }
    let accept = super::wsio::accept_key(key.as_bytes());
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).ok()?,
    );
    Some(r)
}
