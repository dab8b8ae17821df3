//! Plain WebSocket: `_tether.WsServer` and `_tether.WsConnection` (under `tether.ws`).
//!
//! Blocking, thread-per-connection style (like `websockets.sync`): the server runs
//! `handler(conn)` in a new thread for each connection; `conn.recv()` waits without the GIL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use tether_core::runtime::{Closable, Registration};
use tether_core::transport::http::ServerHandle;
use tether_core::ws::{CloseInfo, WsClient, WsConfig, WsConn, WsMessage, WsServer as CoreWsServer};

use crate::core::{Core, core, lock, report, wait_signals};
use crate::errors::Error;

enum In {
    Msg(WsMessage),
    Closed,
}

struct ConnState {
    conn: WsConn,
    rx: Receiver<In>,
    ended: AtomicBool,
}

/// Hook `conn`'s message and close handlers to a queue that `recv` reads.
fn wire(conn: &WsConn) -> (Sender<In>, Receiver<In>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let t = tx.clone();
    conn.on_message(move |_c, m| {
        let _ = t.send(In::Msg(m));
    });
    let t = tx.clone();
    conn.on_close(move |_c, _info| {
        let _ = t.send(In::Closed);
    });
    (tx, rx)
}

/// One WebSocket connection (either side). `send`, `recv`, `close`; iterating yields
/// messages until the connection closes.
#[pyclass(frozen, module = "tether._tether")]
pub(crate) struct WsConnection {
    st: Arc<ConnState>,
    core: Arc<Core>,
}

impl WsConnection {
    fn new(core: Arc<Core>, conn: WsConn, rx: Receiver<In>) -> Self {
        WsConnection {
            st: Arc::new(ConnState {
                conn,
                rx,
                ended: AtomicBool::new(false),
            }),
            core,
        }
    }

    fn message<'py>(py: Python<'py>, m: WsMessage) -> Bound<'py, PyAny> {
        match m {
            WsMessage::Text(t) => PyString::new(py, t.as_str()).into_any(),
            WsMessage::Binary(b) => PyBytes::new(py, &b).into_any(),
        }
    }
}

#[pymethods]
impl WsConnection {
    /// Queue a message: `str` is sent as text, `bytes`-like as binary. Raises
    /// tether.DisconnectedError once closed, tether.QueueFullError when the peer is slow.
    fn send(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.core.check()?;
        let r = if let Ok(s) = data.cast::<PyString>() {
            self.st.conn.send_text(&s.to_cow()?)
        } else if let Ok(b) = data.cast::<PyBytes>() {
            self.st
                .conn
                .send_binary(Bytes::copy_from_slice(b.as_bytes()))
        } else {
            let v: Vec<u8> = data
                .extract()
                .map_err(|_| PyValueError::new_err("send() takes str or bytes"))?;
            self.st.conn.send_binary(Bytes::from(v))
        };
        r.map_err(|e| Error::from(e).into())
    }

    /// The next message (`str` or `bytes`), waiting without the GIL at most `timeout`
    /// seconds (None: forever). Raises tether.DisconnectedError when the connection
    /// closed, tether.TimeoutError on timeout.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        if self.st.ended.load(Ordering::Acquire) {
            return Err(Error::Disconnected(self.close_text()).into());
        }
        let t = match timeout {
            Some(t) if t.is_finite() && t >= 0.0 => Some(Duration::from_secs_f64(t)),
            Some(_) => return Err(PyValueError::new_err("timeout must be >= 0")),
            None => None,
        };
        match wait_signals(py, &self.st.rx, t)? {
            Some(In::Msg(m)) => Ok(Self::message(py, m).unbind()),
            None if t.is_some() => Err(Error::Timeout("no message in time".into()).into()),
            Some(In::Closed) | None => {
                self.st.ended.store(true, Ordering::Release);
                Err(Error::Disconnected(self.close_text()).into())
            }
        }
    }

    /// Close with `code` and `reason` (queued messages are sent first).
    #[pyo3(signature = (code = 1000, reason = ""))]
    fn close(&self, code: u16, reason: &str) {
        self.st.conn.close(code, reason);
    }

    /// Whether the connection has closed.
    #[getter]
    fn closed(&self) -> bool {
        self.st.conn.is_closed()
    }

    /// The close code, once closed.
    #[getter]
    fn close_code(&self) -> Option<u16> {
        self.st.conn.close_info().map(|i| i.code)
    }

    /// The close reason, once closed.
    #[getter]
    fn close_reason(&self) -> Option<String> {
        self.st.conn.close_info().map(|i| i.reason)
    }

    /// A process-unique id.
    #[getter]
    fn id(&self) -> u64 {
        self.st.conn.id()
    }

    /// The negotiated subprotocol.
    #[getter]
    fn subprotocol(&self) -> Option<String> {
        self.st.conn.protocol().map(str::to_owned)
    }

    /// Server side: the upgrade request's path (with the query), else None.
    #[getter]
    fn path(&self) -> Option<String> {
        self.st.conn.request().map(|r| r.uri.to_string())
    }

    /// Server side: the upgrade request's headers (lower-case names), else an empty dict.
    #[getter]
    fn request_headers(&self) -> std::collections::HashMap<String, String> {
        let mut m = std::collections::HashMap::new();
        if let Some(r) = self.st.conn.request() {
            for (k, v) in &r.headers {
                m.insert(
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                );
            }
        }
        m
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.recv(py, None) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_instance(py, crate::errors::types(py).disconnected.bind(py)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) {
        self.close(1000, "");
    }

    fn __repr__(&self) -> String {
        format!(
            "<tether.ws.Connection id={}{}>",
            self.st.conn.id(),
            if self.closed() { " closed" } else { "" }
        )
    }
}

impl WsConnection {
    fn close_text(&self) -> String {
        match self.st.conn.close_info() {
            Some(CloseInfo { code, reason, .. }) if reason.is_empty() => {
                format!("connection closed (code {code})")
            }
            Some(CloseInfo { code, reason, .. }) => {
                format!("connection closed (code {code}: {reason})")
            }
            None => "connection closed".to_owned(),
        }
    }
}

/// Connect to `url` (`ws://` / `wss://`), waiting without the GIL.
#[pyfunction]
#[pyo3(signature = (url, headers = None, subprotocols = None, timeout = 10.0, ssl_verify = None))]
pub(crate) fn ws_connect(
    py: Python<'_>,
    url: &str,
    headers: Option<Vec<(String, String)>>,
    subprotocols: Option<Vec<String>>,
    timeout: f64,
    ssl_verify: Option<&Bound<'_, PyAny>>,
) -> PyResult<WsConnection> {
    let c = core(py)?;
    let mut config = WsConfig {
        headers: headers.unwrap_or_default(),
        subprotocols: subprotocols.unwrap_or_default(),
        handshake_timeout: Duration::from_secs_f64(timeout.clamp(0.001, 3600.0)),
        ..WsConfig::default()
    };
    if let Some(t) = crate::tls::client_tls(py, ssl_verify)? {
        config.tls = t;
    }
    // The queue is wired before the first message can arrive.
    let slot: Arc<Mutex<Option<Sender<In>>>> = Arc::new(Mutex::new(None));
    let (tx, rx) = crossbeam_channel::unbounded();
    *lock(&slot) = Some(tx);
    let s1 = slot.clone();
    let s2 = slot.clone();
    let client = WsClient::with_config(config)
        .on_message(move |_c, m| {
            if let Some(t) = lock(&s1).as_ref() {
                let _ = t.send(In::Msg(m));
            }
        })
        .on_close(move |_c, _i| {
            if let Some(t) = lock(&s2).as_ref() {
                let _ = t.send(In::Closed);
            }
        });
    let url = url.to_owned();
    let rt = c.rt.clone();
    let conn = py
        .detach(move || {
            rt.block_on(
                async move { client.connect(&url).await },
                Duration::from_secs(3600),
            )
        })
        .map_err(Error::from)?
        .map_err(Error::from)?;
    Ok(WsConnection::new(c, conn, rx))
}

struct SrvState {
    core: Arc<Core>,
    conns: Mutex<std::collections::HashMap<u64, WsConn>>,
    handles: Mutex<Vec<ServerHandle>>,
    closed: Mutex<bool>,
    cv: Condvar,
    is_closed: AtomicBool,
    reg: Mutex<Option<Registration>>,
}

impl Closable for SrvState {
    fn close(&self) {
        if self.is_closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for h in lock(&self.handles).drain(..) {
            h.shutdown();
        }
        let conns: Vec<WsConn> = lock(&self.conns).drain().map(|(_, c)| c).collect();
        for c in conns {
            c.close(1001, "server shutdown");
        }
        *lock(&self.closed) = true;
        self.cv.notify_all();
    }

    fn is_closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }
}

impl Drop for SrvState {
    fn drop(&mut self) {
        self.close();
    }
}

/// A plain WebSocket server: `handler(conn)` runs in a new thread per connection.
#[pyclass(frozen, module = "tether._tether")]
pub(crate) struct WsServer {
    st: Arc<SrvState>,
    server: CoreWsServer,
    handler: Arc<Py<PyAny>>,
    tls: Option<tether_core::tls::ServerTls>,
}

#[pymethods]
impl WsServer {
    #[new]
    #[pyo3(signature = (handler, subprotocols = None, max_message_size = 16777216, certfile = None, keyfile = None))]
    fn new(
        py: Python<'_>,
        handler: Py<PyAny>,
        subprotocols: Option<Vec<String>>,
        max_message_size: usize,
        certfile: Option<&str>,
        keyfile: Option<&str>,
    ) -> PyResult<Self> {
        let c = core(py)?;
        let tls = crate::tls::server_tls(certfile, keyfile)?;
        let st = Arc::new(SrvState {
            core: c.clone(),
            conns: Mutex::new(std::collections::HashMap::new()),
            handles: Mutex::new(Vec::new()),
            closed: Mutex::new(false),
            cv: Condvar::new(),
            is_closed: AtomicBool::new(false),
            reg: Mutex::new(None),
        });
        let reg =
            c.rt.register(Arc::downgrade(&st) as Weak<dyn Closable>)
                .map_err(Error::from)?;
        *lock(&st.reg) = Some(reg);
        let handler = Arc::new(handler);
        let h = handler.clone();
        let core2 = c.clone();
        let weak_st = Arc::downgrade(&st);
        let config = WsConfig {
            subprotocols: subprotocols.unwrap_or_default(),
            max_message_size,
            max_frame_size: max_message_size,
            ..WsConfig::default()
        };
        let server = CoreWsServer::with_config(config, move |conn| {
            let (_tx, rx) = wire(&conn);
            if let Some(st) = weak_st.upgrade() {
                if st.is_closed() {
                    conn.close(1001, "server shutdown");
                } else {
                    lock(&st.conns).insert(conn.id(), conn.clone());
                    let w = Arc::downgrade(&st);
                    conn.on_close(move |c, _| {
                        if let Some(st) = w.upgrade() {
                            lock(&st.conns).remove(&c.id());
                        }
                    });
                }
            }
            let h = h.clone();
            let c2 = core2.clone();
            let cr = core2.clone();
            cr.rt.deliver_fn(move || {
                c2.clone().post(Box::new(move |py| {
                    let r = Py::new(py, WsConnection::new(c2, conn, rx)).and_then(|obj| {
                        let t =
                            PyTuple::new(py, [h.bind(py).clone(), obj.into_bound(py).into_any()])?;
                        crate::core::call_glue(py, "_ws_spawn", t)
                    });
                    if let Err(e) = r {
                        report(py, e, "tether: cannot start a WebSocket handler");
                    }
                }));
            });
        });
        Ok(WsServer {
            st,
            server,
            handler,
            tls,
        })
    }

    /// Listen on `host:port` (port 0 picks one); returns the bound port.
    #[pyo3(signature = (host = "127.0.0.1", port = 0))]
    fn listen(&self, py: Python<'_>, host: &str, port: u16) -> PyResult<u16> {
        self.st.core.check()?;
        if self.st.is_closed() {
            return Err(Error::ShutDown("the server is shut down".into()).into());
        }
        let server = self.server.clone();
        let mut routes = tether_core::transport::http::Routes::new();
        if let Some(t) = &self.tls {
            routes = routes.tls(t.clone());
        }
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let rt = self.st.core.rt.clone();
        let handle = py
            .detach(move || {
                rt.block_on(
                    async move { server.listen_with(addr.as_str(), routes).await },
                    Duration::from_secs(30),
                )
            })
            .map_err(Error::from)?
            .map_err(|e| Error::Connection(format!("cannot listen on {host}:{port}: {e}")))?;
        let port = handle.local_addr().port();
        lock(&self.st.handles).push(handle);
        Ok(port)
    }

    /// Stop listening and close every connection.
    fn shutdown(&self, py: Python<'_>) {
        let st = self.st.clone();
        py.detach(move || st.close());
    }

    /// Block (without the GIL; Ctrl-C works) until `shutdown()`.
    fn wait(&self, py: Python<'_>) -> PyResult<()> {
        loop {
            let done = py.detach(|| {
                let g = lock(&self.st.closed);
                if *g {
                    return true;
                }
                let (g, _) = match self.st.cv.wait_timeout(g, Duration::from_millis(100)) {
                    Ok(x) => x,
                    Err(p) => p.into_inner(),
                };
                *g
            });
            if done || self.st.core.rt.is_shut_down() {
                return Ok(());
            }
            py.check_signals()?;
        }
    }

    fn __traverse__(
        &self,
        visit: pyo3::PyVisit<'_>,
    ) -> std::result::Result<(), pyo3::PyTraverseError> {
        visit.call(&*self.handler)
    }
}
