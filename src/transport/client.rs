//! Client-side transports: HTTP long-polling requests and WebSocket connections to an
//! Engine.IO server. Bytes only; the protocol lives in `engine::client`.

use std::time::Duration;

use super::wsio::{HandshakeError, WsStream, client_handshake};
use crate::proto::wsframe::{Limits, Role};
use crate::tls::{BoxIo, ClientTls};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a client transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The URL could not be used.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// TCP connect or I/O failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP exchange failed.
    #[error("http error: {0}")]
    Http(String),
    /// The server answered with an unexpected status.
    #[error("unexpected http status {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The response body exceeded the limit.
    #[error("response too large")]
    TooLarge,
    /// The WebSocket handshake or connection failed.
    #[error("websocket error: {0}")]
    WebSocket(String),
    /// The operation did not finish in time.
    #[error("timed out")]
    Timeout,
    /// The TLS handshake failed (untrusted certificate, wrong host name, ...).
    #[error("tls error: {0}")]
    Tls(String),
}

/// Where a client connects: host, port, Engine.IO path, extra query and headers.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https`/`wss`: TLS, verified with `tls`.
    pub secure: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The Engine.IO path with a trailing slash, e.g. `/socket.io/`.
    pub path: String,
    /// Extra query parameters sent with every request.
    pub query: Vec<(String, String)>,
    /// Extra headers sent with every request.
    pub headers: HeaderMap,
    /// Trust settings for `https`/`wss` (default: the Mozilla roots).
    pub tls: ClientTls,
}

impl Target {
    /// Parse `http://host:port` (or `ws://`, `https://`, `wss://`); the URL's path is the
    /// namespace and is returned separately (`/` when empty).
    pub fn parse(url: &str, path: &str) -> Result<(Target, String), TransportError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| TransportError::InvalidUrl(e.to_string()))?;
        let secure = match uri.scheme_str() {
            Some("http") | Some("ws") => false,
            Some("https") | Some("wss") => true,
            _ => {
                return Err(TransportError::InvalidUrl(format!(
                    "unsupported scheme in {url}"
                )));
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| TransportError::InvalidUrl(format!("no host in {url}")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let nsp = match uri.path() {
            "" | "/" => "/".to_owned(),
            p => p.to_owned(),
        };
        let query = uri
            .query()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let mut path = path.to_owned();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if !path.ends_with('/') {
            path.push('/');
        }
        Ok((
            Target {
                secure,
                host,
                port,
                path,
                query,
                headers: HeaderMap::new(),
                tls: ClientTls::default(),
            },
            nsp,
        ))
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.secure { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Path and query of a request for `transport`, with `sid` when given.
    pub fn path_and_query(&self, transport: &str, sid: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.query {
            if k != "EIO" && k != "transport" && k != "sid" {
                q.append_pair(k, v);
            }
        }
        q.append_pair("EIO", "4");
        q.append_pair("transport", transport);
        if let Some(sid) = sid {
            q.append_pair("sid", sid);
        }
        format!("{}?{}", self.path, q.finish())
    }

    /// Open a TCP connection, with TLS for `https`/`wss`.
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<BoxIo, TransportError> {
        let fut = async {
            let s = TcpStream::connect((self.host.as_str(), self.port)).await?;
            let _ = s.set_nodelay(true);
            let s = super::tcpio::Tcp(s);
            if !self.secure {
                return Ok::<BoxIo, TransportError>(Box::new(s));
            }
            let tls = self
                .tls
                .connect(&self.host, s)
                .await
                .map_err(|e| TransportError::Tls(e.to_string()))?;
            Ok(Box::new(tls))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| TransportError::Timeout)?
    }
}

/// One keep-alive HTTP/1.1 connection for polling requests, re-opened when it breaks.
pub(crate) struct HttpConn {
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl HttpConn {
    pub(crate) fn new() -> Self {
        HttpConn { sender: None }
    }

    async fn sender(
        &mut self,
        target: &Target,
        timeout: Duration,
    ) -> Result<&mut http1::SendRequest<Full<Bytes>>, TransportError> {
        let usable = self.sender.as_mut().is_some_and(|s| !s.is_closed());
        if !usable {
            let io = target.connect(timeout).await?;
            let (sender, conn) = http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| TransportError::Http(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| TransportError::Http("no connection".to_owned()))
    }

    /// Send a request, read the whole body (at most `max_body` bytes).
    pub(crate) async fn request(
        &mut self,
        target: &Target,
        method: http::Method,
        path_and_query: &str,
        body: Bytes,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Bytes, TransportError> {
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .header(header::HOST, target.host_header())
            .body(Full::new(body))
            .map_err(|e| TransportError::Http(e.to_string()))?;
        for (k, v) in &target.headers {
            req.headers_mut().append(k.clone(), v.clone());
        }
        if method == http::Method::POST {
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain;charset=UTF-8"),
            );
        }
        let fut = async {
            let sender = self.sender(target, timeout).await?;
            sender
                .ready()
                .await
                .map_err(|e| TransportError::Http(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| TransportError::Http(e.to_string()))?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        TransportError::TooLarge
                    } else {
                        TransportError::Http(e.to_string())
                    }
                })?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(TransportError::Status {
                    status: status.as_u16(),
                    body: text,
                });
            }
            Ok(body)
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => {
                if r.is_err() {
                    self.sender = None;
                }
                r
            }
            Err(_) => {
                self.sender = None;
                Err(TransportError::Timeout)
            }
        }
    }
}

pub(crate) type ClientWs = WsStream<BoxIo>;

/// Open a WebSocket to the Engine.IO endpoint (`sid` for an upgrade).
pub(crate) async fn ws_connect(
    target: &Target,
    sid: Option<&str>,
    timeout: Duration,
    max_message: usize,
) -> Result<ClientWs, TransportError> {
    let path = target.path_and_query("websocket", sid);
    let limits = Limits {
        max_frame: max_message,
        max_message,
        ..Limits::default()
    };
    let fut = async {
        let mut io = target.connect(timeout).await?;
        let done = client_handshake(&mut io, &target.host_header(), &path, &[], &target.headers)
            .await
            .map_err(|e| match e {
                HandshakeError::Io(e) => TransportError::Io(e),
                // A refused upgrade stays a WebSocket error, as it was with tungstenite.
                other => TransportError::WebSocket(other.to_string()),
            })?;
        Ok(WsStream::new(io, Role::Client, limits, done.leftover))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| TransportError::Timeout)?
}
