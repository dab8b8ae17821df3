//! `_tether.Server`: the Socket.IO server under `tether.Server` / `tether.AsyncServer`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use serde_json::Value;

use tether_core::config::{Cors, CorsOrigins, EngineConfig, RequestInfo, SioConfig, Transports};
use tether_core::engine::Engine;
use tether_core::runtime::{Closable, Registration};
use tether_core::sio::{
    AckError, Args, ConnectDecision, ConnectError, DisconnectReason, Event, Io, Namespace,
    SocketRef,
};
use tether_core::transport::http::{Routes, ServerHandle, serve};

use crate::convert::{args_result, args_tuple, data_to_args, value_to_py};
use crate::core::{Core, LoopTarget, Target, core, lock, report, wait_signals};
use crate::errors::{Error, Result};
use crate::handler::{Handler, invoke};

/// What the sockets' closures share: where jobs go.
pub(crate) struct Shared {
    pub core: Arc<Core>,
    pub target: OnceLock<Target>,
}

impl Shared {
    /// Hand a job to the object's target, through the runtime's gate (after the runtime
    /// shut down nothing more is posted).
    pub(crate) fn post(&self, job: crate::core::Job) {
        let Some(t) = self.target.get() else {
            return;
        };
        if self.core.rt.is_shut_down() {
            return;
        }
        t.post(job);
    }

    pub(crate) fn is_async(&self) -> bool {
        self.target.get().is_some_and(Target::is_async)
    }
}

#[derive(Default)]
struct Handlers {
    events: HashMap<String, Handler>,
    catch_all: Option<Handler>,
    connect: Option<Handler>,
    disconnect: Option<Handler>,
}

/// A namespace as the binding sees it: the core namespace and the Python handlers.
struct NsR {
    name: String,
    ns: Namespace,
    handlers: RwLock<Handlers>,
    shared: Arc<Shared>,
    srv: Weak<Srv>,
}

/// Operations a connect handler makes on its socket's sid before the socket exists
/// (the core creates it when the decision is applied): recorded, and replayed on the
/// socket as soon as it is accepted, after the client was told it is connected.
#[derive(Default)]
struct PendingOps {
    nsp: String,
    rooms: Vec<String>,
    emits: Vec<(String, Args)>,
    refuse: bool,
}

pub(crate) struct Srv {
    shared: Arc<Shared>,
    io: Io,
    engine: OnceLock<Arc<Engine>>,
    engine_config: EngineConfig,
    serve_client: bool,
    routes: Mutex<Routes>,
    handles: Mutex<Vec<ServerHandle>>,
    nss: RwLock<HashMap<String, Arc<NsR>>>,
    closed: Mutex<bool>,
    closed_cv: Condvar,
    is_closed: AtomicBool,
    reg: Mutex<Option<Registration>>,
    /// Sockets whose connect handler is running, by sid (see [`PendingOps`]).
    pending: Mutex<HashMap<String, PendingOps>>,
    pending_count: AtomicU64,
    /// The Redis adapter (`client_manager`) and how long to wait for its subscriptions.
    adapter: Option<(tether_core::adapter::RedisAdapter, Duration)>,
    /// Serve https / wss with this certificate.
    tls: Option<tether_core::tls::ServerTls>,
}

impl Closable for Srv {
    fn close(&self) {
        if self.is_closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let handles: Vec<ServerHandle> = lock(&self.handles).drain(..).collect();
        for h in &handles {
            h.shutdown();
        }
        let nss: Vec<Arc<NsR>> = read(&self.nss).values().cloned().collect();
        for n in nss {
            n.ns.disconnect_all();
        }
        *lock(&self.closed) = true;
        self.closed_cv.notify_all();
    }

    fn is_closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        self.close();
    }
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    match m.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    match m.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub(crate) fn norm_nsp(nsp: Option<&str>) -> String {
    match nsp {
        None | Some("") => "/".to_owned(),
        Some(n) if n.starts_with('/') => n.to_owned(),
        Some(n) => format!("/{n}"),
    }
}

/// python-socketio's names for disconnect reasons (`Server.reason`).
fn reason_name(r: DisconnectReason) -> &'static str {
    match r {
        DisconnectReason::ClientNamespaceDisconnect => "client disconnect",
        DisconnectReason::ServerNamespaceDisconnect
        | DisconnectReason::ForcedClose
        | DisconnectReason::ServerShuttingDown => "server disconnect",
        DisconnectReason::PingTimeout => "ping timeout",
        DisconnectReason::TransportClose => "transport close",
        DisconnectReason::TransportError | DisconnectReason::ParseError => "transport error",
    }
}

impl Srv {
    fn check(&self) -> Result<()> {
        self.shared.core.check()?;
        if self.is_closed() {
            return Err(Error::ShutDown("the server is shut down".into()));
        }
        Ok(())
    }

    /// The namespace `name`, set up on first use (it then accepts connections).
    fn ns(self: &Arc<Self>, name: &str) -> Arc<NsR> {
        if let Some(n) = read(&self.nss).get(name) {
            return n.clone();
        }
        let ns = self.io.of(name);
        self.adopt(name, ns)
    }

    fn adopt(self: &Arc<Self>, name: &str, ns: Namespace) -> Arc<NsR> {
        let mut map = write(&self.nss);
        if let Some(n) = map.get(name) {
            return n.clone();
        }
        let nsr = Arc::new(NsR {
            name: name.to_owned(),
            ns: ns.clone(),
            handlers: RwLock::new(Handlers::default()),
            shared: self.shared.clone(),
            srv: Arc::downgrade(self),
        });
        let weak = Arc::downgrade(&nsr);
        ns.on_connect(move |socket| {
            if let Some(n) = weak.upgrade() {
                n.on_connection(socket);
            }
        });
        let weak = Arc::downgrade(&nsr);
        ns.use_deferred_middleware(move |ctx, decision| match weak.upgrade() {
            Some(n) => n.connect_request(ctx, decision),
            None => decision.reject(ConnectError::new("server gone")),
        });
        map.insert(name.to_owned(), nsr.clone());
        nsr
    }

    fn existing_ns(&self, name: &str) -> Option<Arc<NsR>> {
        read(&self.nss).get(name).cloned()
    }

    /// Run `f` on the pending operations of `sid`, if its connect handler is running.
    fn with_pending<R>(&self, sid: &str, f: impl FnOnce(&mut PendingOps) -> R) -> Option<R> {
        if self.pending_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut p = lock(&self.pending);
        p.get_mut(sid).map(f)
    }

    fn socket(&self, nsp: &str, sid: &str) -> Option<SocketRef> {
        match self.existing_ns(nsp) {
            Some(n) => n.ns.get_socket(sid),
            None => self.io.of(nsp).get_socket(sid),
        }
    }

    fn core_ns(&self, nsp: &str) -> Namespace {
        match self.existing_ns(nsp) {
            Some(n) => n.ns.clone(),
            None => self.io.of(nsp),
        }
    }
}

/// What the event closures of one socket share: its id, as a Python `str` made once.
pub(crate) struct SockCtx {
    sid: String,
    py_sid: pyo3::sync::PyOnceLock<Py<PyString>>,
}

impl SockCtx {
    fn new(socket: &SocketRef) -> Arc<SockCtx> {
        Arc::new(SockCtx {
            sid: socket.id().to_string(),
            py_sid: pyo3::sync::PyOnceLock::new(),
        })
    }

    fn py_sid<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.py_sid
            .get_or_init(py, || PyString::new(py, &self.sid).unbind())
            .bind(py)
            .clone()
    }
}

/// The event whose handler runs on this thread: `emit(..., to=sid)` with the very `str`
/// the handler got goes straight to its socket.
struct Current {
    /// The address of the sid object the handler got (kept alive by its `SockCtx`).
    sid: usize,
    /// The address of the server (`Srv`) running it.
    srv: usize,
    socket: SocketRef,
}

thread_local! {
    static CURRENT: std::cell::RefCell<Option<Current>> = const { std::cell::RefCell::new(None) };
}

/// Sets [`CURRENT`] for a handler's run and restores the previous value when dropped
/// (also when the handler's job unwinds).
struct CurrentGuard(Option<Current>);

impl CurrentGuard {
    fn set(c: Current) -> CurrentGuard {
        CurrentGuard(CURRENT.with(|x| x.replace(Some(c))))
    }
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        CURRENT.with(|x| *x.borrow_mut() = prev);
    }
}

/// The socket of the running handler when `to` is its sid object, `srv` its server and
/// `nsp` (None: `/`) its namespace.
fn current_socket(to: &Bound<'_, PyAny>, srv: &Arc<Srv>, nsp: Option<&str>) -> Option<SocketRef> {
    CURRENT.with(|c| {
        let c = c.borrow();
        let cur = c.as_ref()?;
        if cur.sid != to.as_ptr() as usize || cur.srv != Arc::as_ptr(srv) as usize {
            return None;
        }
        let name = cur.socket.ns().name();
        let same = match nsp {
            None | Some("") | Some("/") => name.as_str() == "/",
            Some(n) => name.as_str().trim_start_matches('/') == n.trim_start_matches('/'),
        };
        same.then(|| cur.socket.clone())
    })
}

impl NsR {
    fn handler(&self, event: &str) -> Option<Handler> {
        read(&self.handlers).events.get(event).cloned()
    }

    /// A socket joined (the core accepted it): hook its events and disconnect.
    fn on_connection(self: &Arc<Self>, socket: SocketRef) {
        let names: Vec<String> = read(&self.handlers).events.keys().cloned().collect();
        let ctx = SockCtx::new(&socket);
        for name in &names {
            self.install(&socket, name, &ctx);
        }
        if read(&self.handlers).catch_all.is_some() {
            self.install_any(&socket);
        }
        let weak = Arc::downgrade(self);
        socket.on_disconnect(move |s, reason| {
            let Some(n) = weak.upgrade() else { return };
            if read(&n.handlers).disconnect.is_none() {
                return;
            }
            let sid = s.id().to_string();
            let n2 = n.clone();
            n.shared
                .post(Box::new(move |py| n2.run_disconnect(py, sid, reason)));
        });
        // Accepted from a connect handler (this runs inside `ConnectDecision::accept`,
        // before any later packet of the connection): replay what it did with the sid.
        let ops = match self.srv.upgrade() {
            Some(srv) => srv.take_pending(socket.id().as_str()),
            None => None,
        };
        if let Some(ops) = ops {
            for r in ops.rooms {
                socket.join(r);
            }
            for (event, args) in ops.emits {
                let _ = socket.emit_args(&event, args);
            }
        }
    }

    fn install(self: &Arc<Self>, socket: &SocketRef, name: &str, ctx: &Arc<SockCtx>) {
        let weak = Arc::downgrade(self);
        let ctx = ctx.clone();
        socket.on(name.to_owned(), move |s, ev| {
            let Some(n) = weak.upgrade() else { return };
            let n2 = n.clone();
            let ctx = ctx.clone();
            let s = s.clone();
            n.shared
                .post(Box::new(move |py| n2.run_event_on(py, &ctx, s, ev)));
        });
    }

    /// Run the handler of `ev` (the hot path: the sid's `str` is made once per socket,
    /// and `emit(..., to=sid)` from the handler finds the socket without a lookup).
    fn run_event_on(&self, py: Python<'_>, ctx: &SockCtx, socket: SocketRef, ev: Event) {
        let Event { name, args, ack } = ev;
        let Some(h) = self.handler(&name) else { return };
        let what = || {
            format!(
                "tether: error in handler for event {name:?} (namespace {})",
                self.name
            )
        };
        let sid = ctx.py_sid(py);
        let tuple = args_tuple(py, Some(sid.clone().into_any()), &args);
        match tuple {
            Ok(t) => {
                let _current = CurrentGuard::set(Current {
                    sid: sid.as_ptr() as usize,
                    srv: self.srv.as_ptr() as usize,
                    socket,
                });
                invoke(py, &h, t, ack, self.shared.is_async(), &what);
            }
            Err(e) => report(py, e, &what()),
        }
    }

    fn install_any(self: &Arc<Self>, socket: &SocketRef) {
        let weak = Arc::downgrade(self);
        socket.on_any(move |s, ev| {
            let Some(n) = weak.upgrade() else { return };
            // python-socketio: the catch-all handler gets the events without a handler.
            if read(&n.handlers).events.contains_key(&ev.name) {
                return;
            }
            let sid = s.id().to_string();
            let ev = Event {
                name: ev.name.clone(),
                args: ev.args.clone(),
                ack: ev.ack.clone(),
            };
            let n2 = n.clone();
            n.shared
                .post(Box::new(move |py| n2.run_event(py, sid, ev, true)));
        });
    }

    fn run_event(&self, py: Python<'_>, sid: String, ev: Event, catch_all: bool) {
        let Event { name, args, ack } = ev;
        let what = || {
            format!(
                "tether: error in handler for event {name:?} (namespace {})",
                self.name
            )
        };
        let (h, prefix) = if catch_all {
            match read(&self.handlers).catch_all.clone() {
                Some(h) => (
                    h,
                    vec![
                        PyString::new(py, &name).into_any(),
                        PyString::new(py, &sid).into_any(),
                    ],
                ),
                None => return,
            }
        } else {
            match self.handler(&name) {
                Some(h) => (h, vec![PyString::new(py, &sid).into_any()]),
                None => return,
            }
        };
        let tuple = (|| -> PyResult<Bound<'_, PyTuple>> {
            if prefix.len() == 1 {
                args_tuple(py, prefix.into_iter().next(), &args)
            } else {
                let mut v = prefix;
                v.extend(crate::convert::args_to_vec(py, &args)?);
                PyTuple::new(py, v)
            }
        })();
        match tuple {
            Ok(t) => invoke(py, &h, t, ack, self.shared.is_async(), &what),
            Err(e) => report(py, e, &what()),
        }
    }

    fn run_disconnect(&self, py: Python<'_>, sid: String, reason: DisconnectReason) {
        let Some(h) = read(&self.handlers).disconnect.clone() else {
            return;
        };
        let what = || {
            format!(
                "tether: error in the disconnect handler (namespace {})",
                self.name
            )
        };
        let mut v = vec![PyString::new(py, &sid).into_any()];
        if h.nargs < 0 || h.nargs >= 2 {
            v.push(PyString::new(py, reason_name(reason)).into_any());
        }
        match PyTuple::new(py, v) {
            Ok(t) => invoke(py, &h, t, None, self.shared.is_async(), &what),
            Err(e) => report(py, e, &what()),
        }
    }

    /// The deferred middleware: without a Python connect handler accept at once,
    /// otherwise ask it (on the object's target).
    fn connect_request(
        self: &Arc<Self>,
        ctx: &tether_core::sio::ConnectContext,
        decision: ConnectDecision,
    ) {
        if read(&self.handlers).connect.is_none() {
            decision.accept();
            return;
        }
        let n = self.clone();
        let auth = ctx.handshake.auth.clone();
        // A copy for Python (`to_info`: the connection itself keeps only the compact form).
        let request = ctx.handshake.request.to_info();
        let sid = ctx.sid.to_string();
        // The core holds this connection's later packets until the decision is applied
        // and the socket's handlers are installed (`on_connection`).
        self.shared.post(Box::new(move |py| {
            n.run_connect(py, auth, request, decision, sid)
        }));
    }

    fn run_connect(
        self: &Arc<Self>,
        py: Python<'_>,
        auth: Value,
        request: RequestInfo,
        decision: ConnectDecision,
        sid: String,
    ) {
        let what = || {
            format!(
                "tether: error in the connect handler (namespace {})",
                self.name
            )
        };
        let Some(h) = read(&self.handlers).connect.clone() else {
            decision.accept();
            return;
        };
        let Some(srv) = self.srv.upgrade() else {
            return;
        };
        {
            let mut p = lock(&srv.pending);
            if p.insert(
                sid.clone(),
                PendingOps {
                    nsp: self.name.clone(),
                    ..Default::default()
                },
            )
            .is_none()
            {
                srv.pending_count.fetch_add(1, Ordering::AcqRel);
            }
        }
        let req = ConnectRequest {
            decision: Mutex::new(Some(decision)),
            srv: Arc::downgrade(&srv),
            sid: sid.clone(),
        };
        let r = (|| -> PyResult<()> {
            let environ = environ(py, &request, srv.tls.is_some())?;
            let auth = match &auth {
                Value::Object(o) if o.is_empty() => py.None().into_bound(py),
                v => value_to_py(py, v)?,
            };
            let req = Py::new(py, req)?;
            let args = PyTuple::new(
                py,
                [
                    h.f.bind(py).clone(),
                    h.nargs.into_pyobject(py)?.into_any(),
                    pyo3::types::PyBool::new(py, h.is_coro)
                        .to_owned()
                        .into_any(),
                    PyString::new(py, &sid).into_any(),
                    environ.into_any(),
                    auth,
                    req.into_bound(py).into_any(),
                    PyString::new(py, &what()).into_any(),
                ],
            )?;
            crate::core::call_glue(py, "_run_connect", args)?;
            Ok(())
        })();
        if let Err(e) = r {
            report(py, e, &what());
        }
    }
}

/// A WSGI-style environ of the handshake request (python-socketio's `environ`).
fn environ<'py>(py: Python<'py>, r: &RequestInfo, https: bool) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("REQUEST_METHOD", "GET")?;
    d.set_item("PATH_INFO", r.uri.path())?;
    d.set_item("QUERY_STRING", r.uri.query().unwrap_or(""))?;
    d.set_item("RAW_URI", r.uri.to_string())?;
    d.set_item("SERVER_PROTOCOL", "HTTP/1.1")?;
    d.set_item("REMOTE_ADDR", r.peer.ip().to_string())?;
    d.set_item("REMOTE_PORT", r.peer.port().to_string())?;
    d.set_item("wsgi.url_scheme", if https { "https" } else { "http" })?;
    for (name, value) in &r.headers {
        let key = match name.as_str() {
            "content-type" => "CONTENT_TYPE".to_owned(),
            "content-length" => "CONTENT_LENGTH".to_owned(),
            n => format!("HTTP_{}", n.to_ascii_uppercase().replace('-', "_")),
        };
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match d.get_item(&key)? {
            Some(prev) => {
                let joined = format!("{},{v}", prev.extract::<String>()?);
                d.set_item(&key, joined)?
            }
            None => d.set_item(&key, v)?,
        }
    }
    Ok(d)
}

impl Srv {
    /// Remove and return the pending operations of `sid`.
    fn take_pending(&self, sid: &str) -> Option<PendingOps> {
        if self.pending_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let ops = lock(&self.pending).remove(sid);
        if ops.is_some() {
            self.pending_count.fetch_sub(1, Ordering::AcqRel);
        }
        ops
    }

    fn drop_pending(&self, sid: &str) {
        drop(self.take_pending(sid));
    }
}

/// A connection request held by a connect handler (internal: `tether._glue` answers it).
#[pyclass(frozen, module = "tether._tether")]
pub(crate) struct ConnectRequest {
    decision: Mutex<Option<ConnectDecision>>,
    srv: Weak<Srv>,
    sid: String,
}

#[pymethods]
impl ConnectRequest {
    fn accept(&self) {
        let Some(d) = lock(&self.decision).take() else {
            return;
        };
        let refuse = self
            .srv
            .upgrade()
            .and_then(|s| s.with_pending(&self.sid, |o| o.refuse))
            .unwrap_or(false);
        if refuse {
            if let Some(s) = self.srv.upgrade() {
                s.drop_pending(&self.sid);
            }
            d.reject(ConnectError::new("Connection rejected by server"));
            return;
        }
        // Runs `on_connection` on this thread, which replays the pending operations.
        d.accept();
        // Not accepted after all (the client left meanwhile): forget them.
        if let Some(s) = self.srv.upgrade() {
            s.drop_pending(&self.sid);
        }
    }

    #[pyo3(signature = (message, data = None))]
    fn reject(&self, message: String, data: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(d) = lock(&self.decision).take() else {
            return Ok(());
        };
        if let Some(s) = self.srv.upgrade() {
            s.drop_pending(&self.sid);
        }
        let mut e = ConnectError::new(message);
        if let Some(data) = data
            && !data.is_none()
        {
            let mut bins = Vec::new();
            e = e.with_data(crate::convert::py_to_value(data, &mut bins)?);
        }
        d.reject(e);
        Ok(())
    }
}

impl Drop for ConnectRequest {
    fn drop(&mut self) {
        if let Some(s) = self.srv.upgrade() {
            s.drop_pending(&self.sid);
        }
    }
}

/// `str` or an iterable of `str` (None: empty).
pub(crate) fn str_list(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Vec<String>> {
    let Some(o) = obj else { return Ok(Vec::new()) };
    if o.is_none() {
        return Ok(Vec::new());
    }
    if let Ok(s) = o.cast::<PyString>() {
        return Ok(vec![s.to_cow()?.into_owned()]);
    }
    let mut v = Vec::new();
    for x in o
        .try_iter()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a str or a list of str")))?
    {
        v.push(x?.extract::<String>()?);
    }
    Ok(v)
}

pub(crate) fn secs(v: f64, what: &str) -> PyResult<Duration> {
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(PyValueError::new_err(format!(
            "{what} must be a positive number of seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A callback for an ack reply: posted to the object's target as `callback(*args)`.
pub(crate) fn ack_callback(
    shared: Arc<Shared>,
    callback: Py<PyAny>,
) -> Box<dyn FnOnce(std::result::Result<Args, AckError>) + Send> {
    Box::new(move |r| {
        let Ok(args) = r else {
            // python-socketio never calls the callback without a reply.
            drop(callback);
            return;
        };
        shared.post(Box::new(move |py| {
            let f = callback.bind(py);
            match args_tuple(py, None, &args).and_then(|t| f.call1(t)) {
                Ok(_) => {}
                Err(e) => report(py, e, "tether: error in an acknowledgement callback"),
            }
        }));
    })
}

/// A callback for `call`: `on_reply(ok, value)` on the target, value the result or the
/// exception.
pub(crate) fn call_callback(
    shared: Arc<Shared>,
    on_reply: Py<PyAny>,
) -> Box<dyn FnOnce(std::result::Result<Args, AckError>) + Send> {
    Box::new(move |r| {
        shared.post(Box::new(move |py| {
            let f = on_reply.bind(py);
            let res = match r {
                Ok(args) => args_result(py, &args).and_then(|v| f.call1((true, v))),
                Err(e) => {
                    let exc = Error::from(e).into_pyerr(py).into_value(py);
                    f.call1((false, exc))
                }
            };
            if let Err(e) = res {
                report(py, e, "tether: error delivering an acknowledgement");
            }
        }));
    })
}

/// The Socket.IO server core. Use `tether.Server` or `tether.AsyncServer`.
#[pyclass(subclass, frozen, module = "tether._tether", name = "Server")]
pub(crate) struct Server {
    srv: Arc<Srv>,
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (
        cors_allowed_origins = None,
        ping_interval = 25.0,
        ping_timeout = 20.0,
        max_http_buffer_size = 1_000_000,
        connect_timeout = 45.0,
        path = "socket.io",
        namespaces = None,
        serve_client = true,
        transports = None,
        cors_credentials = false,
        client_manager = None,
        certfile = None,
        keyfile = None,
        **_options
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        cors_allowed_origins: Option<&Bound<'_, PyAny>>,
        ping_interval: f64,
        ping_timeout: f64,
        max_http_buffer_size: usize,
        connect_timeout: f64,
        path: &str,
        namespaces: Option<&Bound<'_, PyAny>>,
        serve_client: bool,
        transports: Option<&Bound<'_, PyAny>>,
        cors_credentials: bool,
        client_manager: Option<&Bound<'_, PyAny>>,
        certfile: Option<&str>,
        keyfile: Option<&str>,
        _options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let c = core(py)?;
        let tls = crate::tls::server_tls(certfile, keyfile)?;
        let mut engine = EngineConfig::default();
        let mut p = path.trim_matches('/').to_owned();
        p.insert(0, '/');
        if p.len() > 1 {
            p.push('/');
        }
        engine.path = p;
        engine.ping_interval = secs(ping_interval, "ping_interval")?;
        engine.ping_timeout = secs(ping_timeout, "ping_timeout")?;
        engine.max_payload = max_http_buffer_size;
        if let Some(o) = cors_allowed_origins
            && !o.is_none()
        {
            let list = str_list(Some(o), "cors_allowed_origins")?;
            let mut cors = if list.iter().any(|x| x == "*") {
                Cors::any()
            } else {
                Cors {
                    origins: CorsOrigins::List(list),
                    credentials: false,
                }
            };
            cors.credentials = cors_credentials;
            engine.cors = Some(cors);
        }
        if let Some(t) = transports
            && !t.is_none()
        {
            let list = str_list(Some(t), "transports")?;
            let mut tr = Transports {
                polling: false,
                websocket: false,
            };
            for x in &list {
                match x.as_str() {
                    "polling" => tr.polling = true,
                    "websocket" => tr.websocket = true,
                    other => {
                        return Err(PyValueError::new_err(format!(
                            "unknown transport {other:?}"
                        )));
                    }
                }
            }
            engine.transports = tr;
        }
        let sio = SioConfig {
            connect_timeout: secs(connect_timeout, "connect_timeout")?,
            serve_client,
            // Python handlers read every argument: parse once while decoding (checking
            // the text first would only add a pass).
            decoder: tether_core::proto::socketio::DecoderConfig {
                raw_args: false,
                ..tether_core::proto::socketio::DecoderConfig::default()
            },
            ..SioConfig::default()
        };
        let mut builder = Io::builder().engine_config(engine.clone()).sio_config(sio);
        let mut adapter = None;
        if let Some(m) = client_manager
            && !m.is_none()
        {
            let settings = crate::redis::ManagerSettings::from_object(m)?;
            let wait = settings.connect_timeout;
            let a = settings.connect(py, &c)?;
            builder = builder.adapter(a.clone());
            adapter = Some((a, wait));
        }
        let io = builder.build();
        let shared = Arc::new(Shared {
            core: c.clone(),
            target: OnceLock::new(),
        });
        let srv = Arc::new(Srv {
            shared,
            io,
            engine: OnceLock::new(),
            engine_config: engine,
            serve_client,
            routes: Mutex::new(Routes::new()),
            handles: Mutex::new(Vec::new()),
            nss: RwLock::new(HashMap::new()),
            closed: Mutex::new(false),
            closed_cv: Condvar::new(),
            is_closed: AtomicBool::new(false),
            reg: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            pending_count: AtomicU64::new(0),
            adapter,
            tls,
        });
        let reg =
            c.rt.register(Arc::downgrade(&srv) as Weak<dyn Closable>)
                .map_err(Error::from)?;
        *lock(&srv.reg) = Some(reg);
        srv.ns("/");
        match namespaces {
            Some(n) if !n.is_none() => {
                if n.cast::<PyString>()
                    .is_ok_and(|s| s.to_cow().is_ok_and(|s| s == "*"))
                {
                    let weak = Arc::downgrade(&srv);
                    srv.io.dynamic_ns(
                        |_| true,
                        move |ns| {
                            if let Some(s) = weak.upgrade() {
                                s.adopt(ns.name().as_str(), ns.clone());
                            }
                        },
                    );
                } else {
                    for name in str_list(Some(n), "namespaces")? {
                        srv.ns(&norm_nsp(Some(&name)));
                    }
                }
            }
            _ => {}
        }
        Ok(Server { srv })
    }

    /// Register `handler` for `event` in `namespace` (internal: `on` / `event` call it
    /// with what they learnt about the handler).
    #[pyo3(signature = (event, handler, namespace = None, wants_ack = false, is_coro = false, nargs = -1))]
    fn _on(
        &self,
        event: &str,
        handler: Py<PyAny>,
        namespace: Option<&str>,
        wants_ack: bool,
        is_coro: bool,
        nargs: i32,
    ) -> PyResult<()> {
        self.srv.check()?;
        let nsr = self.srv.ns(&norm_nsp(namespace));
        let h = Handler {
            f: Arc::new(handler),
            wants_ack,
            is_coro,
            nargs,
        };
        match event {
            "connect" => write(&nsr.handlers).connect = Some(h),
            "disconnect" => write(&nsr.handlers).disconnect = Some(h),
            "*" => {
                write(&nsr.handlers).catch_all = Some(h);
                for s in nsr.ns.sockets() {
                    nsr.install_any(&s);
                }
            }
            name => {
                write(&nsr.handlers).events.insert(name.to_owned(), h);
                for s in nsr.ns.sockets() {
                    nsr.install(&s, name, &SockCtx::new(&s));
                }
            }
        }
        Ok(())
    }

    /// Answer `GET url_path` with `body` (before `listen`).
    #[pyo3(signature = (url_path, body, content_type = "text/html; charset=utf-8"))]
    fn add_route(
        &self,
        url_path: &str,
        body: &Bound<'_, PyAny>,
        content_type: &str,
    ) -> PyResult<()> {
        if !url_path.starts_with('/') {
            return Err(PyValueError::new_err("url_path must start with '/'"));
        }
        let body: Vec<u8> = if let Ok(s) = body.cast::<PyString>() {
            s.to_cow()?.as_bytes().to_vec()
        } else {
            body.extract::<Vec<u8>>()?
        };
        let mut r = lock(&self.srv.routes);
        *r = std::mem::take(&mut *r).file(url_path, content_type, Bytes::from(body));
        Ok(())
    }

    /// Listen on `host:port` (port 0 picks a free one) without blocking; returns the
    /// bound port. May be called more than once.
    #[pyo3(signature = (host = "127.0.0.1", port = 0))]
    fn listen(&self, py: Python<'_>, host: &str, port: u16) -> PyResult<u16> {
        self.listen_on(py, host, port, None)
    }

    #[pyo3(signature = (host, port, event_loop))]
    fn _listen(
        &self,
        py: Python<'_>,
        host: &str,
        port: u16,
        event_loop: Py<PyAny>,
    ) -> PyResult<u16> {
        self.listen_on(py, host, port, Some(event_loop))
    }

    /// Emit `event` with `data` (a tuple for several arguments) to `to` / `room` (a sid,
    /// a room, or a list of them; None: everyone in the namespace), except `skip_sid`.
    /// `callback(*args)` gets the acknowledgement.
    #[pyo3(signature = (event, data = None, to = None, room = None, skip_sid = None, namespace = None, callback = None))]
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        event: &str,
        data: Option<&Bound<'_, PyAny>>,
        to: Option<&Bound<'_, PyAny>>,
        room: Option<&Bound<'_, PyAny>>,
        skip_sid: Option<&Bound<'_, PyAny>>,
        namespace: Option<&str>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.srv.check()?;
        if callback.is_none()
            && room.is_none_or(|r| r.is_none())
            && skip_sid.is_none_or(|s| s.is_none())
            && let Some(t) = to
            && let Some(socket) = current_socket(t, &self.srv, namespace)
        {
            return match socket.emit_args(event, data_to_args(data)?) {
                Ok(())
                | Err(tether_core::sio::EmitError::Send(tether_core::engine::SendError::Closed)) => {
                    Ok(())
                }
                Err(e) => Err(Error::from(e).into()),
            };
        }
        let args = data_to_args(data)?;
        let target = match to {
            Some(t) if !t.is_none() => Some(t),
            _ => room,
        };
        let rooms = str_list(target, "to")?;
        let skip = str_list(skip_sid, "skip_sid")?;
        let nsp = norm_nsp(namespace);
        self.emit_inner(
            &nsp,
            event,
            args,
            rooms,
            skip,
            callback,
            Duration::from_secs(24 * 3600),
        )
    }

    /// `emit("message", data, ...)`.
    #[pyo3(signature = (data, to = None, room = None, skip_sid = None, namespace = None, callback = None))]
    fn send(
        &self,
        data: Option<&Bound<'_, PyAny>>,
        to: Option<&Bound<'_, PyAny>>,
        room: Option<&Bound<'_, PyAny>>,
        skip_sid: Option<&Bound<'_, PyAny>>,
        namespace: Option<&str>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.emit("message", data, to, room, skip_sid, namespace, callback)
    }

    /// Emit to one socket and wait (without the GIL) for its acknowledgement: returns
    /// None, the one value, or a tuple. Raises tether.TimeoutError, DisconnectedError.
    #[pyo3(signature = (event, data = None, to = None, sid = None, namespace = None, timeout = 60.0))]
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        py: Python<'_>,
        event: &str,
        data: Option<&Bound<'_, PyAny>>,
        to: Option<&str>,
        sid: Option<&str>,
        namespace: Option<&str>,
        timeout: f64,
    ) -> PyResult<Py<PyAny>> {
        self.srv.check()?;
        let t = secs(timeout, "timeout")?;
        let socket = self.call_target(to, sid, namespace)?;
        let args = data_to_args(data)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        {
            let _g = self.srv.shared.core.handle()?.enter();
            socket.emit_with_ack_cb(event, args, t, move |r| {
                let _ = tx.send(r);
            });
        }
        match wait_signals(py, &rx, Some(t + Duration::from_secs(1)))? {
            Some(Ok(args)) => Ok(args_result(py, &args)?.unbind()),
            Some(Err(e)) => Err(Error::from(e).into()),
            None => Err(Error::Timeout("no acknowledgement in time".into()).into()),
        }
    }

    /// `call` for asyncio: `on_reply(ok, value)` runs on the loop.
    #[pyo3(signature = (event, data, to, namespace, timeout, on_reply))]
    #[allow(clippy::too_many_arguments)]
    fn _call_cb(
        &self,
        event: &str,
        data: Option<&Bound<'_, PyAny>>,
        to: Option<&str>,
        namespace: Option<&str>,
        timeout: f64,
        on_reply: Py<PyAny>,
    ) -> PyResult<()> {
        self.srv.check()?;
        let t = secs(timeout, "timeout")?;
        let socket = self.call_target(to, None, namespace)?;
        let args = data_to_args(data)?;
        let cb = call_callback(self.srv.shared.clone(), on_reply);
        let _g = self.srv.shared.core.handle()?.enter();
        socket.emit_with_ack_cb(event, args, t, cb);
        Ok(())
    }

    /// Put `sid` in `room`.
    #[pyo3(signature = (sid, room, namespace = None))]
    fn enter_room(&self, sid: &str, room: String, namespace: Option<&str>) -> PyResult<()> {
        self.srv.check()?;
        let nsp = norm_nsp(namespace);
        if self
            .srv
            .with_pending(sid, |o| o.rooms.push(room.clone()))
            .is_some()
        {
            return Ok(());
        }
        if let Some(s) = self.srv.socket(&nsp, sid) {
            s.join(room);
        }
        Ok(())
    }

    /// Take `sid` out of `room`.
    #[pyo3(signature = (sid, room, namespace = None))]
    fn leave_room(&self, sid: &str, room: &str, namespace: Option<&str>) -> PyResult<()> {
        self.srv.check()?;
        let nsp = norm_nsp(namespace);
        if self
            .srv
            .with_pending(sid, |o| o.rooms.retain(|r| r != room))
            .is_some()
        {
            return Ok(());
        }
        if let Some(s) = self.srv.socket(&nsp, sid) {
            s.leave(room);
        }
        Ok(())
    }

    /// Take every socket out of `room`.
    #[pyo3(signature = (room, namespace = None))]
    fn close_room(&self, room: &str, namespace: Option<&str>) -> PyResult<()> {
        self.srv.check()?;
        let ns = self.srv.core_ns(&norm_nsp(namespace));
        ns.to(room.to_owned()).leave(room);
        Ok(())
    }

    /// The rooms `sid` is in (its own sid included).
    #[pyo3(signature = (sid, namespace = None))]
    fn rooms(&self, sid: &str, namespace: Option<&str>) -> PyResult<Vec<String>> {
        self.srv.check()?;
        if let Some(r) = self.srv.with_pending(sid, |o| {
            let mut v = vec![sid.to_owned()];
            v.extend(o.rooms.iter().cloned());
            v
        }) {
            return Ok(r);
        }
        let nsp = norm_nsp(namespace);
        Ok(match self.srv.socket(&nsp, sid) {
            Some(s) => s.rooms().into_iter().map(|r| r.to_string()).collect(),
            None => Vec::new(),
        })
    }

    /// The sids connected to `namespace`.
    #[pyo3(signature = (namespace = None))]
    fn sids(&self, namespace: Option<&str>) -> PyResult<Vec<String>> {
        self.srv.check()?;
        let ns = self.srv.core_ns(&norm_nsp(namespace));
        Ok(ns.sockets().iter().map(|s| s.id().to_string()).collect())
    }

    /// Disconnect `sid` from `namespace` (its disconnect handler runs with reason
    /// "server disconnect").
    #[pyo3(signature = (sid, namespace = None))]
    fn disconnect(&self, sid: &str, namespace: Option<&str>) -> PyResult<()> {
        self.srv.check()?;
        if self.srv.with_pending(sid, |o| o.refuse = true).is_some() {
            return Ok(());
        }
        if let Some(s) = self.srv.socket(&norm_nsp(namespace), sid) {
            s.disconnect();
        }
        Ok(())
    }

    /// Stop listening and disconnect everyone. Idempotent.
    fn shutdown(&self, py: Python<'_>) {
        let srv = self.srv.clone();
        py.detach(move || srv.close());
    }

    /// Block (without the GIL; Ctrl-C works) until `shutdown()`.
    fn wait(&self, py: Python<'_>) -> PyResult<()> {
        loop {
            let done = py.detach(|| {
                let g = lock(&self.srv.closed);
                if *g {
                    return true;
                }
                let (g, _) = match self
                    .srv
                    .closed_cv
                    .wait_timeout(g, Duration::from_millis(100))
                {
                    Ok(x) => x,
                    Err(p) => p.into_inner(),
                };
                *g
            });
            if done || self.srv.shared.core.rt.is_shut_down() {
                return Ok(());
            }
            py.check_signals()?;
        }
    }

    /// Same as `wait()`.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        self.wait(py)
    }

    /// Whether `shutdown()` ran.
    #[getter]
    fn closed(&self) -> bool {
        self.srv.is_closed()
    }

    fn __traverse__(
        &self,
        visit: pyo3::PyVisit<'_>,
    ) -> std::result::Result<(), pyo3::PyTraverseError> {
        let Ok(nss) = self.srv.nss.try_read() else {
            return Ok(());
        };
        for n in nss.values() {
            if let Ok(h) = n.handlers.try_read() {
                for x in h.events.values() {
                    x.traverse(&visit)?;
                }
                for x in [&h.catch_all, &h.connect, &h.disconnect]
                    .into_iter()
                    .flatten()
                {
                    x.traverse(&visit)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let nss: Vec<Arc<NsR>> = read(&self.srv.nss).values().cloned().collect();
        for n in nss {
            *write(&n.handlers) = Handlers::default();
        }
    }
}

impl Server {
    fn listen_on(
        &self,
        py: Python<'_>,
        host: &str,
        port: u16,
        event_loop: Option<Py<PyAny>>,
    ) -> PyResult<u16> {
        let srv = &self.srv;
        srv.check()?;
        let target = match event_loop {
            Some(l) => Target::Loop(LoopTarget::new(srv.shared.core.clone(), l)),
            None => Target::Thread(srv.shared.core.clone()),
        };
        let _ = srv.shared.target.set(target.clone());
        match (srv.shared.target.get(), &target) {
            (Some(Target::Thread(_)), Target::Thread(_)) => {}
            (Some(Target::Loop(a)), Target::Loop(b)) if a.event_loop().is(b.event_loop()) => {}
            _ => {
                return Err(PyValueError::new_err(
                    "this server already runs its handlers elsewhere (another event loop, or \
                     synchronously)",
                ));
            }
        }
        let mut routes = lock(&srv.routes).clone();
        if let Some(t) = &srv.tls {
            routes = routes.tls(t.clone());
        }
        let engine = srv
            .engine
            .get_or_init(|| Engine::new(srv.engine_config.clone(), srv.io.engine_handler()))
            .clone();
        if srv.serve_client {
            routes = routes.file(
                format!("{}socket.io.js", srv.engine_config.path),
                "application/javascript; charset=utf-8",
                tether_core::sio::BROWSER_CLIENT_JS,
            );
        }
        let addr = format!(
            "{}:{}",
            host.trim_start_matches('[').trim_end_matches(']'),
            port
        );
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            addr
        };
        let rt = srv.shared.core.rt.clone();
        let handle = py
            .detach(move || {
                rt.block_on(
                    async move { serve(engine, addr.as_str(), routes).await },
                    Duration::from_secs(30),
                )
            })
            .map_err(Error::from)?
            .map_err(|e| Error::Connection(format!("cannot listen on {host}:{port}: {e}")))?;
        let port = handle.local_addr().port();
        if srv.is_closed() {
            handle.shutdown();
            return Err(Error::ShutDown("the server is shut down".into()).into());
        }
        lock(&srv.handles).push(handle);
        // The namespaces made since the server was created subscribe now: wait until
        // they are live, so that the first broadcasts from other nodes arrive.
        if let Some((a, wait)) = &srv.adapter {
            crate::redis::ready(py, &srv.shared.core, a, *wait)?;
        }
        Ok(port)
    }

    fn call_target(
        &self,
        to: Option<&str>,
        sid: Option<&str>,
        namespace: Option<&str>,
    ) -> PyResult<SocketRef> {
        let Some(sid) = to.or(sid) else {
            return Err(PyValueError::new_err(
                "call() needs the sid of one client (to=...)",
            ));
        };
        let nsp = norm_nsp(namespace);
        self.srv.socket(&nsp, sid).ok_or_else(|| {
            Error::Disconnected(format!("no client {sid} in namespace {nsp}")).into()
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_inner(
        &self,
        nsp: &str,
        event: &str,
        args: Args,
        rooms: Vec<String>,
        skip: Vec<String>,
        callback: Option<Py<PyAny>>,
        timeout: Duration,
    ) -> PyResult<()> {
        let srv = &self.srv;
        if rooms.len() == 1
            && skip.is_empty()
            && callback.is_none()
            && let Some(true) = srv.with_pending(&rooms[0], |o| {
                let mine = o.nsp == nsp;
                if mine {
                    o.emits.push((event.to_owned(), args.clone()));
                }
                mine
            })
        {
            return Ok(());
        }
        let ns = srv.core_ns(nsp);
        if rooms.len() == 1
            && skip.is_empty()
            && let Some(s) = ns.get_socket(&rooms[0])
        {
            match callback {
                None => match s.emit_args(event, args) {
                    Ok(()) => {}
                    Err(tether_core::sio::EmitError::Send(
                        tether_core::engine::SendError::Closed,
                    )) => {}
                    Err(e) => return Err(Error::from(e).into()),
                },
                Some(c) => {
                    let cb = ack_callback(srv.shared.clone(), c);
                    let _g = srv.shared.core.handle()?.enter();
                    s.emit_with_ack_cb(event, args, timeout, cb);
                }
            }
            return Ok(());
        }
        let mut op = ns.broadcast();
        for r in rooms {
            op = op.to(r);
        }
        for s in skip {
            op = op.except(s);
        }
        match callback {
            None => op.emit_args(event, args).map_err(|e| Error::from(e).into()),
            Some(c) => {
                let _g = srv.shared.core.handle()?.enter();
                // `callback(*args)` once per answering client.
                let shared = srv.shared.clone();
                op.timeout(timeout.min(Duration::from_secs(60)))
                    .emit_with_ack_cb(event, args, move |acks| {
                        shared.clone().post(Box::new(move |py| {
                            let f = c.bind(py);
                            for (_, args) in acks.responses {
                                if let Err(e) = args_tuple(py, None, &args).and_then(|t| f.call1(t))
                                {
                                    report(py, e, "tether: error in an acknowledgement callback");
                                }
                            }
                        }));
                    });
                Ok(())
            }
        }
    }
}
