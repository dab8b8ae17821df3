//! `_tether.Client`: the Socket.IO client under `tether.Client` / `tether.AsyncClient`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use serde_json::Value;

use tether_core::engine::TransportType;
use tether_core::runtime::{Closable, Registration};
use tether_core::sio::Event;
use tether_core::sio::client::{
    Client as CoreClient, ClientDisconnectReason, ClientError, ClientSocket, ConnectErrorInfo,
    Reconnection,
};

use crate::convert::{
    args_result, args_to_vec, args_tuple, data_to_args, py_to_value, value_to_py,
};
use crate::core::{LoopTarget, Target, core, lock, report, wait_signals};
use crate::errors::{Error, Result};
use crate::handler::{Handler, invoke};
use crate::server::{Shared, call_callback, norm_nsp};

#[derive(Default)]
struct Handlers {
    events: HashMap<String, Handler>,
    catch_all: Option<Handler>,
    connect: Option<Handler>,
    connect_error: Option<Handler>,
    disconnect: Option<Handler>,
}

struct NsH {
    name: String,
    handlers: RwLock<Handlers>,
}

#[derive(Default)]
struct State {
    client: Option<CoreClient>,
    sockets: HashMap<String, ClientSocket>,
    /// Namespaces that still want to be connected (not refused, not disconnected by the
    /// server or by us).
    active: HashMap<String, bool>,
}

struct Options {
    reconnection: Reconnection,
    tls: Option<tether_core::tls::ClientTls>,
}

pub(crate) struct Cl {
    shared: Arc<Shared>,
    opts: Options,
    state: Mutex<State>,
    nss: RwLock<HashMap<String, Arc<NsH>>>,
    finished: Mutex<bool>,
    finished_cv: Condvar,
    /// The current core client's final events were handed over (its manager ended).
    core_closed: Arc<(Mutex<bool>, Condvar)>,
    reg: Mutex<Option<Registration>>,
    closed_for_good: AtomicBool,
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

impl Closable for Cl {
    fn close(&self) {
        self.closed_for_good.store(true, Ordering::Release);
        self.close_client();
    }

    fn is_closed(&self) -> bool {
        let st = lock(&self.state);
        st.client.is_none() && *lock(&self.core_closed.0)
    }
}

impl Drop for Cl {
    fn drop(&mut self) {
        self.close_client();
    }
}

/// Dropped with the core client's manager (its task ended): the client is closed.
struct ClosedGuard(Arc<(Mutex<bool>, Condvar)>);

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        *lock(&self.0.0) = true;
        self.0.1.notify_all();
    }
}

impl Cl {
    fn ns(&self, name: &str) -> Arc<NsH> {
        if let Some(n) = read(&self.nss).get(name) {
            return n.clone();
        }
        write(&self.nss)
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(NsH {
                    name: name.to_owned(),
                    handlers: RwLock::new(Handlers::default()),
                })
            })
            .clone()
    }

    fn set_finished(&self, v: bool) {
        *lock(&self.finished) = v;
        self.finished_cv.notify_all();
    }

    /// Close the core client (no reconnection follows); its disconnect events follow.
    fn close_client(&self) {
        let c = {
            let mut st = lock(&self.state);
            for v in st.active.values_mut() {
                *v = false;
            }
            st.client.take()
        };
        if let Some(c) = c {
            c.close();
        }
        self.set_finished(true);
    }

    /// A namespace stopped wanting a connection: when none is left, the client is done.
    fn deactivate(&self, nsp: &str) {
        let done = {
            let mut st = lock(&self.state);
            if let Some(a) = st.active.get_mut(nsp) {
                *a = false;
            }
            !st.active.values().any(|a| *a)
        };
        if done {
            self.close_client();
        }
    }

    fn socket(&self, nsp: &str) -> Result<ClientSocket> {
        self.shared.core.check()?;
        lock(&self.state)
            .sockets
            .get(nsp)
            .cloned()
            .ok_or_else(|| Error::BadNamespace(format!("{nsp} is not a connected namespace.")))
    }

    fn install_event(self: &Arc<Self>, socket: &ClientSocket, nsh: &Arc<NsH>, name: &str) {
        let weak = Arc::downgrade(self);
        let n = nsh.clone();
        socket.on(name.to_owned(), move |_s, ev| {
            let Some(cl) = weak.upgrade() else { return };
            let n2 = n.clone();
            let shared = cl.shared.clone();
            shared.post(Box::new(move |py| run_event(py, &cl, &n2, ev, false)));
        });
    }

    fn install_any(self: &Arc<Self>, socket: &ClientSocket, nsh: &Arc<NsH>) {
        let weak = Arc::downgrade(self);
        let n = nsh.clone();
        socket.on_any(move |_s, ev| {
            let Some(cl) = weak.upgrade() else { return };
            if read(&n.handlers).events.contains_key(&ev.name) {
                return;
            }
            let ev = Event {
                name: ev.name.clone(),
                args: ev.args.clone(),
                ack: ev.ack.clone(),
            };
            let n2 = n.clone();
            let shared = cl.shared.clone();
            shared.post(Box::new(move |py| run_event(py, &cl, &n2, ev, true)));
        });
    }

    /// Hook a new core socket: events, connect, connect_error, disconnect.
    fn install(self: &Arc<Self>, socket: &ClientSocket, nsh: &Arc<NsH>) {
        let names: Vec<String> = read(&nsh.handlers).events.keys().cloned().collect();
        for name in &names {
            self.install_event(socket, nsh, name);
        }
        if read(&nsh.handlers).catch_all.is_some() {
            self.install_any(socket, nsh);
        }
        let weak = Arc::downgrade(self);
        let n = nsh.clone();
        socket.on_connect(move |_s| {
            let Some(cl) = weak.upgrade() else { return };
            if let Some(a) = lock(&cl.state).active.get_mut(&n.name) {
                *a = true;
            }
            if read(&n.handlers).connect.is_none() {
                return;
            }
            let n2 = n.clone();
            let shared = cl.shared.clone();
            shared.post(Box::new(move |py| {
                run_lifecycle(py, &cl, &n2, Lifecycle::Connect);
            }));
        });
        let weak = Arc::downgrade(self);
        let n = nsh.clone();
        socket.on_connect_error(move |s, info| {
            let Some(cl) = weak.upgrade() else { return };
            // Refused by a server we are connected to (not a failed attempt, which
            // reconnection retries): this namespace will not connect again.
            if s.client().is_some_and(|c| c.engine_id().is_some()) {
                cl.deactivate(&n.name);
            }
            if read(&n.handlers).connect_error.is_none() {
                return;
            }
            let info = info.clone();
            let n2 = n.clone();
            let shared = cl.shared.clone();
            shared.post(Box::new(move |py| {
                run_lifecycle(py, &cl, &n2, Lifecycle::ConnectError(info));
            }));
        });
        let weak = Arc::downgrade(self);
        let n = nsh.clone();
        socket.on_disconnect(move |_s, reason| {
            let Some(cl) = weak.upgrade() else { return };
            let ends = match reason {
                ClientDisconnectReason::ServerDisconnect
                | ClientDisconnectReason::ClientDisconnect => true,
                _ => !cl.opts.reconnection.enabled,
            };
            if ends {
                cl.deactivate(&n.name);
            }
            if read(&n.handlers).disconnect.is_none() {
                return;
            }
            let reason = reason.as_str();
            let n2 = n.clone();
            let shared = cl.shared.clone();
            shared.post(Box::new(move |py| {
                run_lifecycle(py, &cl, &n2, Lifecycle::Disconnect(reason));
            }));
        });
    }
}

enum Lifecycle {
    Connect,
    ConnectError(ConnectErrorInfo),
    Disconnect(&'static str),
}

fn run_lifecycle(py: Python<'_>, cl: &Cl, n: &NsH, what: Lifecycle) {
    let h = {
        let hs = read(&n.handlers);
        match what {
            Lifecycle::Connect => hs.connect.clone(),
            Lifecycle::ConnectError(_) => hs.connect_error.clone(),
            Lifecycle::Disconnect(_) => hs.disconnect.clone(),
        }
    };
    let Some(h) = h else { return };
    let name = match what {
        Lifecycle::Connect => "connect",
        Lifecycle::ConnectError(_) => "connect_error",
        Lifecycle::Disconnect(_) => "disconnect",
    };
    let ctx = || {
        format!(
            "tether: error in the client's {name} handler (namespace {})",
            n.name
        )
    };
    let args = (|| -> PyResult<Bound<'_, PyTuple>> {
        let mut v: Vec<Bound<'_, PyAny>> = Vec::new();
        match &what {
            Lifecycle::Connect => {}
            Lifecycle::ConnectError(info) => {
                if h.nargs != 0 {
                    let d = PyDict::new(py);
                    d.set_item("message", &info.message)?;
                    if let Some(data) = &info.data {
                        d.set_item("data", value_to_py(py, data)?)?;
                    }
                    v.push(d.into_any());
                }
            }
            Lifecycle::Disconnect(reason) => {
                if h.nargs != 0 {
                    v.push(PyString::new(py, reason).into_any());
                }
            }
        }
        PyTuple::new(py, v)
    })();
    match args {
        Ok(t) => invoke(py, &h, t, None, cl.shared.is_async(), &ctx),
        Err(e) => report(py, e, &ctx()),
    }
}

fn run_event(py: Python<'_>, cl: &Cl, n: &NsH, ev: Event, catch_all: bool) {
    let Event { name, args, ack } = ev;
    let ctx = || {
        format!(
            "tether: error in the client's handler for event {name:?} (namespace {})",
            n.name
        )
    };
    let h = if catch_all {
        read(&n.handlers).catch_all.clone()
    } else {
        read(&n.handlers).events.get(&name).cloned()
    };
    let Some(h) = h else { return };
    let tuple = if catch_all {
        args_to_vec(py, &args).and_then(|mut v| {
            v.insert(0, PyString::new(py, &name).into_any());
            PyTuple::new(py, v)
        })
    } else {
        args_tuple(py, None, &args)
    };
    match tuple {
        Ok(t) => invoke(py, &h, t, ack, cl.shared.is_async(), &ctx),
        Err(e) => report(py, e, &ctx()),
    }
}

/// The server's URL as python-socketio reads it: scheme, host, port and query (the path
/// is not a namespace there).
fn base_url(url: &str) -> PyResult<String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| PyValueError::new_err(format!("invalid url {url:?}: {e}")))?;
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| PyValueError::new_err(format!("invalid url {url:?}: no scheme")))?;
    let auth = uri
        .authority()
        .ok_or_else(|| PyValueError::new_err(format!("invalid url {url:?}: no host")))?;
    Ok(match uri.query() {
        Some(q) => format!("{scheme}://{auth}/?{q}"),
        None => format!("{scheme}://{auth}"),
    })
}

fn secs(v: f64, what: &str) -> PyResult<Duration> {
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(PyValueError::new_err(format!(
            "{what} must be a positive number of seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

/// The Socket.IO client core. Use `tether.Client` or `tether.AsyncClient`.
#[pyclass(subclass, frozen, module = "tether._tether", name = "Client")]
pub(crate) struct Client {
    cl: Arc<Cl>,
}

struct Prepared {
    sockets: Vec<ClientSocket>,
    timeout: Duration,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (
        reconnection = true,
        reconnection_attempts = 0,
        reconnection_delay = 1.0,
        reconnection_delay_max = 5.0,
        randomization_factor = 0.5,
        ssl_verify = None,
        **_options
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        reconnection: bool,
        reconnection_attempts: u32,
        reconnection_delay: f64,
        reconnection_delay_max: f64,
        randomization_factor: f64,
        ssl_verify: Option<&Bound<'_, PyAny>>,
        _options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let c = core(py)?;
        let tls = crate::tls::client_tls(py, ssl_verify)?;
        let reconnection = Reconnection {
            enabled: reconnection,
            attempts: (reconnection_attempts > 0).then_some(reconnection_attempts),
            delay: secs(reconnection_delay, "reconnection_delay")?,
            delay_max: secs(reconnection_delay_max, "reconnection_delay_max")?,
            randomization: randomization_factor.clamp(0.0, 1.0),
        };
        let cl = Arc::new(Cl {
            shared: Arc::new(Shared {
                core: c.clone(),
                target: OnceLock::new(),
            }),
            opts: Options { reconnection, tls },
            state: Mutex::new(State::default()),
            nss: RwLock::new(HashMap::new()),
            finished: Mutex::new(true),
            finished_cv: Condvar::new(),
            core_closed: Arc::new((Mutex::new(true), Condvar::new())),
            reg: Mutex::new(None),
            closed_for_good: AtomicBool::new(false),
        });
        let reg =
            c.rt.register(Arc::downgrade(&cl) as Weak<dyn Closable>)
                .map_err(Error::from)?;
        *lock(&cl.reg) = Some(reg);
        Ok(Client { cl })
    }

    /// Register `handler` for `event` in `namespace` (internal: `on` / `event`).
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
        let nsp = norm_nsp(namespace);
        let nsh = self.cl.ns(&nsp);
        let h = Handler {
            f: Arc::new(handler),
            wants_ack,
            is_coro,
            nargs,
        };
        let socket = lock(&self.cl.state).sockets.get(&nsp).cloned();
        match event {
            "connect" => write(&nsh.handlers).connect = Some(h),
            "connect_error" => write(&nsh.handlers).connect_error = Some(h),
            "disconnect" => write(&nsh.handlers).disconnect = Some(h),
            "*" => {
                write(&nsh.handlers).catch_all = Some(h);
                if let Some(s) = socket {
                    self.cl.install_any(&s, &nsh);
                }
            }
            name => {
                write(&nsh.handlers).events.insert(name.to_owned(), h);
                if let Some(s) = socket {
                    self.cl.install_event(&s, &nsh, name);
                }
            }
        }
        Ok(())
    }

    /// The namespaces with handlers (what `connect` joins when not told).
    fn _handler_namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = read(&self.cl.nss).keys().cloned().collect();
        v.sort();
        v
    }

    /// Connect to `url` and join `namespaces` (default: those with handlers, or "/").
    /// With `wait`, blocks (without the GIL) until every namespace is connected, at most
    /// `wait_timeout` seconds; raises tether.ConnectionRefusedError when the server refuses
    /// one, tether.ConnectionError / tether.TimeoutError when it cannot connect.
    #[pyo3(signature = (
        url,
        headers = None,
        auth = None,
        transports = None,
        namespaces = None,
        socketio_path = "socket.io",
        wait = true,
        wait_timeout = 5.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        &self,
        py: Python<'_>,
        url: &str,
        headers: Option<&Bound<'_, PyDict>>,
        auth: Option<&Bound<'_, PyAny>>,
        transports: Option<&Bound<'_, PyAny>>,
        namespaces: Option<&Bound<'_, PyAny>>,
        socketio_path: &str,
        wait: bool,
        wait_timeout: f64,
    ) -> PyResult<()> {
        self.set_target(None)?;
        let p = self.prepare(
            py,
            url,
            headers,
            auth,
            transports,
            namespaces,
            socketio_path,
            wait_timeout,
        )?;
        let rt = self.cl.shared.core.handle()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let n = p.sockets.len();
        for s in p.sockets {
            let tx = tx.clone();
            rt.spawn(async move {
                let r = s.connect().await;
                let _ = tx.send(r);
            });
        }
        if !wait {
            return Ok(());
        }
        let mut first_err: Option<ClientError> = None;
        for _ in 0..n {
            match wait_signals(py, &rx, Some(p.timeout + Duration::from_secs(1))) {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(e))) => {
                    first_err.get_or_insert(e);
                }
                Ok(None) => {
                    first_err.get_or_insert(ClientError::Timeout);
                }
                Err(e) => {
                    let cl = self.cl.clone();
                    py.detach(move || cl.close_client());
                    return Err(e);
                }
            }
        }
        if let Some(e) = first_err {
            let cl = self.cl.clone();
            py.detach(move || cl.close_client());
            return Err(Error::from(e).into());
        }
        Ok(())
    }

    /// `connect` for asyncio: `on_done(ok, exc)` runs on `event_loop` when every
    /// namespace connected or one failed.
    #[pyo3(signature = (url, headers, auth, transports, namespaces, socketio_path, wait_timeout, event_loop, on_done))]
    #[allow(clippy::too_many_arguments)]
    fn _connect_cb(
        &self,
        py: Python<'_>,
        url: &str,
        headers: Option<&Bound<'_, PyDict>>,
        auth: Option<&Bound<'_, PyAny>>,
        transports: Option<&Bound<'_, PyAny>>,
        namespaces: Option<&Bound<'_, PyAny>>,
        socketio_path: &str,
        wait_timeout: f64,
        event_loop: Py<PyAny>,
        on_done: Py<PyAny>,
    ) -> PyResult<()> {
        self.set_target(Some(event_loop))?;
        let p = self.prepare(
            py,
            url,
            headers,
            auth,
            transports,
            namespaces,
            socketio_path,
            wait_timeout,
        )?;
        let rt = self.cl.shared.core.handle()?;
        let cl = self.cl.clone();
        let timeout = p.timeout + Duration::from_secs(1);
        rt.spawn(async move {
            let mut first_err: Option<ClientError> = None;
            let mut set = tokio::task::JoinSet::new();
            for s in p.sockets {
                set.spawn(async move { s.connect().await });
            }
            let all = async {
                while let Some(r) = set.join_next().await {
                    if let Ok(Err(e)) = r {
                        first_err.get_or_insert(e);
                    }
                }
            };
            if tokio::time::timeout(timeout, all).await.is_err() {
                first_err.get_or_insert(ClientError::Timeout);
            }
            if first_err.is_some() {
                cl.close_client();
            }
            let shared = cl.shared.clone();
            shared.post(Box::new(move |py| {
                let f = on_done.bind(py);
                let r = match first_err {
                    None => f.call1((true, py.None())),
                    Some(e) => f.call1((false, Error::from(e).into_pyerr(py).into_value(py))),
                };
                if let Err(e) = r {
                    report(py, e, "tether: error finishing connect()");
                }
            }));
        });
        Ok(())
    }

    /// Emit `event` with `data` (a tuple for several arguments) on `namespace`;
    /// `callback(*args)` gets the acknowledgement. While reconnecting, emits wait in
    /// a bounded buffer.
    #[pyo3(signature = (event, data = None, namespace = None, callback = None))]
    fn emit(
        &self,
        event: &str,
        data: Option<&Bound<'_, PyAny>>,
        namespace: Option<&str>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let s = self.cl.socket(&norm_nsp(namespace))?;
        let args = data_to_args(data)?;
        match callback {
            None => s.emit_args(event, args).map_err(|e| Error::from(e).into()),
            Some(c) => {
                let cb = crate::server::ack_callback(self.cl.shared.clone(), c);
                let _g = self.cl.shared.core.handle()?.enter();
                s.emit_with_ack_cb(event, args, Duration::from_secs(24 * 3600), cb)
                    .map_err(|e| Error::from(e).into())
            }
        }
    }

    /// `emit("message", data, ...)`.
    #[pyo3(signature = (data, namespace = None, callback = None))]
    fn send(
        &self,
        data: Option<&Bound<'_, PyAny>>,
        namespace: Option<&str>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.emit("message", data, namespace, callback)
    }

    /// Emit and wait (without the GIL) for the acknowledgement: None, the one value, or a
    /// tuple. Raises tether.TimeoutError.
    #[pyo3(signature = (event, data = None, namespace = None, timeout = 60.0))]
    fn call(
        &self,
        py: Python<'_>,
        event: &str,
        data: Option<&Bound<'_, PyAny>>,
        namespace: Option<&str>,
        timeout: f64,
    ) -> PyResult<Py<PyAny>> {
        let s = self.cl.socket(&norm_nsp(namespace))?;
        let t = secs(timeout, "timeout")?;
        let args = data_to_args(data)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        {
            let _g = self.cl.shared.core.handle()?.enter();
            s.emit_with_ack_cb(event, args, t, move |r| {
                let _ = tx.send(r);
            })
            .map_err(Error::from)?;
        }
        match wait_signals(py, &rx, Some(t + Duration::from_secs(1)))? {
            Some(Ok(args)) => Ok(args_result(py, &args)?.unbind()),
            Some(Err(e)) => Err(Error::from(e).into()),
            None => Err(Error::Timeout("no acknowledgement in time".into()).into()),
        }
    }

    /// `call` for asyncio: `on_reply(ok, value)` runs on the loop.
    #[pyo3(signature = (event, data, namespace, timeout, on_reply))]
    fn _call_cb(
        &self,
        event: &str,
        data: Option<&Bound<'_, PyAny>>,
        namespace: Option<&str>,
        timeout: f64,
        on_reply: Py<PyAny>,
    ) -> PyResult<()> {
        let s = self.cl.socket(&norm_nsp(namespace))?;
        let t = secs(timeout, "timeout")?;
        let args = data_to_args(data)?;
        let cb = call_callback(self.cl.shared.clone(), on_reply);
        let _g = self.cl.shared.core.handle()?.enter();
        s.emit_with_ack_cb(event, args, t, cb)
            .map_err(|e| Error::from(e).into())
    }

    /// Disconnect every namespace and close the connection (no reconnection). The
    /// disconnect handlers run afterwards, on the handlers' thread or loop.
    fn disconnect(&self, py: Python<'_>) {
        let cl = self.cl.clone();
        let on_thread = self.cl.shared.core.on_dispatch_thread(py);
        py.detach(move || {
            cl.close_client();
            if on_thread {
                return;
            }
            // Wait (briefly) until the connection's final events were handed over.
            let (m, cv) = &*cl.core_closed;
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            let mut done = lock(m);
            while !*done {
                let now = std::time::Instant::now();
                if now >= deadline {
                    break;
                }
                done = match cv.wait_timeout(done, deadline - now) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
            }
        });
    }

    /// Block (without the GIL; Ctrl-C works) until the client is done: disconnected by
    /// `disconnect()`, by the server, or reconnection gave up.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = match timeout {
            Some(t) => Some(std::time::Instant::now() + secs(t, "timeout")?),
            None => None,
        };
        loop {
            let done = py.detach(|| {
                let g = lock(&self.cl.finished);
                if *g {
                    return true;
                }
                let (g, _) = match self
                    .cl
                    .finished_cv
                    .wait_timeout(g, Duration::from_millis(100))
                {
                    Ok(x) => x,
                    Err(p) => p.into_inner(),
                };
                *g
            });
            if done || self.cl.shared.core.rt.is_shut_down() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }

    /// The sid of `namespace` ("/" by default), or None when it is not connected.
    #[pyo3(signature = (namespace = None))]
    fn get_sid(&self, namespace: Option<&str>) -> Option<String> {
        let nsp = norm_nsp(namespace);
        let s = lock(&self.cl.state).sockets.get(&nsp).cloned()?;
        s.id().map(|s| s.to_string())
    }

    /// The sid of "/", or None.
    #[getter(sid)]
    fn sid_attr(&self) -> Option<String> {
        self.get_sid(None)
    }

    /// Whether a namespace is connected.
    #[getter]
    fn connected(&self) -> bool {
        let st = lock(&self.cl.state);
        st.sockets.values().any(ClientSocket::connected)
    }

    /// The connected namespaces and their sids.
    #[getter]
    fn namespaces(&self) -> HashMap<String, String> {
        let st = lock(&self.cl.state);
        st.sockets
            .iter()
            .filter_map(|(n, s)| s.id().map(|id| (n.clone(), id.to_string())))
            .collect()
    }

    /// The transport in use ("websocket" or "polling"), or None.
    fn transport(&self) -> Option<&'static str> {
        let st = lock(&self.cl.state);
        st.client.as_ref()?.transport().map(|t| match t {
            TransportType::Polling => "polling",
            TransportType::Websocket => "websocket",
        })
    }

    fn __traverse__(
        &self,
        visit: pyo3::PyVisit<'_>,
    ) -> std::result::Result<(), pyo3::PyTraverseError> {
        let Ok(nss) = self.cl.nss.try_read() else {
            return Ok(());
        };
        for n in nss.values() {
            if let Ok(h) = n.handlers.try_read() {
                for x in h.events.values() {
                    x.traverse(&visit)?;
                }
                for x in [&h.catch_all, &h.connect, &h.connect_error, &h.disconnect]
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
        let nss: Vec<Arc<NsH>> = read(&self.cl.nss).values().cloned().collect();
        for n in nss {
            *write(&n.handlers) = Handlers::default();
        }
    }
}

impl Client {
    fn set_target(&self, event_loop: Option<Py<PyAny>>) -> PyResult<()> {
        let shared = &self.cl.shared;
        shared.core.check()?;
        let target = match event_loop {
            Some(l) => Target::Loop(LoopTarget::new(shared.core.clone(), l)),
            None => Target::Thread(shared.core.clone()),
        };
        let _ = shared.target.set(target.clone());
        match (shared.target.get(), &target) {
            (Some(Target::Thread(_)), Target::Thread(_)) => Ok(()),
            (Some(Target::Loop(a)), Target::Loop(b)) if a.event_loop().is(b.event_loop()) => Ok(()),
            _ => Err(PyValueError::new_err(
                "this client already runs its handlers elsewhere (another event loop, or \
                 synchronously): make a new client",
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &self,
        _py: Python<'_>,
        url: &str,
        headers: Option<&Bound<'_, PyDict>>,
        auth: Option<&Bound<'_, PyAny>>,
        transports: Option<&Bound<'_, PyAny>>,
        namespaces: Option<&Bound<'_, PyAny>>,
        socketio_path: &str,
        wait_timeout: f64,
    ) -> PyResult<Prepared> {
        let cl = &self.cl;
        if self.cl.closed_for_good.load(Ordering::Acquire) {
            return Err(Error::ShutDown("the tether runtime is shut down".into()).into());
        }
        {
            let st = lock(&cl.state);
            if st.client.is_some() {
                return Err(Error::Connection("Already connected".into()).into());
            }
        }
        let timeout = secs(wait_timeout, "wait_timeout")?;
        let mut nsps: Vec<String> = match namespaces {
            Some(n) if !n.is_none() => {
                if let Ok(s) = n.cast::<PyString>() {
                    vec![norm_nsp(Some(&s.to_cow()?))]
                } else {
                    let mut v = Vec::new();
                    for x in n.try_iter()? {
                        v.push(norm_nsp(Some(&x?.extract::<String>()?)));
                    }
                    v
                }
            }
            _ => read(&cl.nss).keys().cloned().collect(),
        };
        if nsps.is_empty() {
            nsps.push("/".to_owned());
        }
        nsps.sort();
        nsps.dedup();
        // auth: a dict (or any JSON value), or a callable returning one.
        let auth_value: Option<Value> = match auth {
            Some(a) if !a.is_none() => {
                let a = if a.is_callable() {
                    a.call0()?
                } else {
                    a.clone()
                };
                let mut bins = Vec::new();
                let v = py_to_value(&a, &mut bins)?;
                if !bins.is_empty() {
                    return Err(PyValueError::new_err("auth cannot contain binary data"));
                }
                Some(v)
            }
            _ => None,
        };
        let mut b = CoreClient::builder(base_url(url)?)
            .path(format!("/{}/", socketio_path.trim_matches('/')))
            .reconnection(cl.opts.reconnection.clone())
            .timeout(timeout)
            // Python handlers read every argument: parse once while decoding.
            .decoder(tether_core::proto::socketio::DecoderConfig {
                raw_args: false,
                ..tether_core::proto::socketio::DecoderConfig::default()
            });
        if let Some(t) = &cl.opts.tls {
            b = b.tls(t.clone());
        }
        if let Some(h) = headers {
            for (k, v) in h.iter() {
                b = b.header(k.extract::<String>()?, v.str()?.to_cow()?.into_owned());
            }
        }
        if let Some(t) = transports
            && !t.is_none()
        {
            let list: Vec<String> = if let Ok(s) = t.cast::<PyString>() {
                vec![s.to_cow()?.into_owned()]
            } else {
                t.extract()?
            };
            let mut tr = Vec::new();
            for x in &list {
                tr.push(match x.as_str() {
                    "polling" => TransportType::Polling,
                    "websocket" => TransportType::Websocket,
                    other => {
                        return Err(PyValueError::new_err(format!(
                            "unknown transport {other:?}"
                        )));
                    }
                });
            }
            b = b.transports(tr);
        }
        if let Some(a) = &auth_value {
            b = b.auth(a.clone());
        }
        let client = {
            let h = cl.shared.core.handle()?;
            let _g = h.enter();
            b.build().map_err(Error::from)?
        };
        // Closed with the manager: reports the connection's end.
        {
            *lock(&cl.core_closed.0) = false;
            let guard = ClosedGuard(cl.core_closed.clone());
            client.on_reconnect_failed(move || {
                let _ = &guard;
            });
            let weak = Arc::downgrade(cl);
            client.on_reconnect_failed(move || {
                if let Some(c) = weak.upgrade() {
                    c.close_client();
                }
            });
        }
        let mut sockets = Vec::new();
        {
            let mut st = lock(&cl.state);
            st.sockets.clear();
            st.active.clear();
            for n in &nsps {
                let s = client.socket(n);
                if let Some(a) = &auth_value {
                    s.set_auth(a.clone());
                }
                st.sockets.insert(n.clone(), s.clone());
                st.active.insert(n.clone(), true);
                sockets.push(s);
            }
            st.client = Some(client);
        }
        cl.set_finished(false);
        for (n, s) in nsps.iter().zip(&sockets) {
            let nsh = cl.ns(n);
            cl.install(s, &nsh);
        }
        Ok(Prepared { sockets, timeout })
    }
}
