//! The Socket.IO client: `tether_sio_client_config`, `tether_sio_client`,
//! `tether_sio_client_socket`.

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use serde_json::Value;
use tether_core::dispatch::Dispatcher;
use tether_core::engine::TransportType;
use tether_core::runtime::{Closable, Registration, Runtime};
use tether_core::sio::client::{
    Client, ClientDisconnectReason, ClientEmitError, ClientError, ClientSocket, Reconnection,
};

use crate::ack::{Outcome, ack_oneshot, send_error, tether_sio_ack_cb};
use crate::error::{Fail, guard, result, tether_result};
use crate::event::{Cb, deliver_event, tether_sio_event};
use crate::runtime::tether_runtime;
use crate::tls::ClientTrust;
use crate::util::{
    ArcHandle, BoxHandle, Userdata, check_rt, cstr, event_args, json_value, lock, ms,
    nul_terminated, opt_cstr, read, tether_bytes, tether_free_cb, tether_str, write,
};

/// Transport bits for tether_sio_client_config_set_transports().
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tether_transport {
    /// HTTP long-polling.
    Polling = 1,
    /// WebSocket.
    Websocket = 2,
}

/// Client options. Make with tether_sio_client_config_new(), set, pass to
/// tether_sio_client_new() (which copies them), free with tether_sio_client_config_free().
/// Defaults are socket.io-client's: path "/socket.io/", polling then upgrade to
/// WebSocket, reconnection on with delays 1 s to 5 s and randomization 0.5, timeout 20 s.
pub struct tether_sio_client_config {
    _private: [u8; 0],
}

#[derive(Clone, Default)]
pub(crate) struct ClientConfig {
    path: Option<String>,
    transports: Option<Vec<TransportType>>,
    upgrade: Option<bool>,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    auth: Option<Value>,
    reconnection: Option<Reconnection>,
    timeout: Option<Duration>,
    retries: Option<(u32, Duration)>,
    offline_buffer: Option<usize>,
    trust: ClientTrust,
}

impl BoxHandle for tether_sio_client_config {
    type Inner = ClientConfig;
}

/// Make a client configuration with the defaults.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_new(
    config_out: *mut *mut tether_sio_client_config,
) -> tether_result {
    tether_sio_client_config::new_default_into(config_out)
}

fn with_config(
    config: *mut tether_sio_client_config,
    f: impl FnOnce(&mut ClientConfig) -> Result<(), Fail>,
) -> tether_result {
    tether_sio_client_config::with_mut(config, f)
}

/// The Engine.IO request path (default "/socket.io/").
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_set_path(
    config: *mut tether_sio_client_config,
    path: *const c_char,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: a NUL-terminated string.
        let p = unsafe { cstr(path, "path") }?;
        if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
            return Err(Fail::new(tether_result::InvalidParameter, "invalid path"));
        }
        c.path = Some(p.to_owned());
        Ok(())
    })
}

/// The transports to use, a bitwise OR of tether_transport values: polling only,
/// WebSocket only, or both (polling first, then upgrade). 0 or unknown bits:
/// TETHER_RESULT_INVALID_PARAMETER.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_set_transports(
    config: *mut tether_sio_client_config,
    transports: u32,
) -> tether_result {
    with_config(config, |c| {
        let t = match transports {
            1 => vec![TransportType::Polling],
            2 => vec![TransportType::Websocket],
            3 => vec![TransportType::Polling, TransportType::Websocket],
            _ => {
                return Err(Fail::new(
                    tether_result::InvalidParameter,
                    format!("transports {transports:#x}: use TETHER_TRANSPORT_* bits"),
                ));
            }
        };
        c.transports = Some(t);
        Ok(())
    })
}

/// Whether to upgrade from polling to WebSocket (default true).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_set_upgrade(
    config: *mut tether_sio_client_config,
    enabled: bool,
) -> tether_result {
    with_config(config, |c| {
        c.upgrade = Some(enabled);
        Ok(())
    })
}

/// The main namespace's `auth` payload: JSON text of an object.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_set_auth(
    config: *mut tether_sio_client_config,
    auth_json: *const c_char,
    auth_len: usize,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: `auth_len` readable bytes.
        let v = unsafe { json_value(auth_json, auth_len, "auth_json") }?;
        if !v.is_object() {
            return Err(Fail::new(
                tether_result::InvalidJson,
                "auth must be a JSON object",
            ));
        }
        c.auth = Some(v);
        Ok(())
    })
}

/// Add an HTTP header to every request of the connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_add_header(
    config: *mut tether_sio_client_config,
    name: *const c_char,
    value: *const c_char,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: NUL-terminated strings.
        let (n, v) = unsafe { (cstr(name, "name")?, cstr(value, "value")?) };
        if http_name_invalid(n) || v.chars().any(|ch| ch.is_control() && ch != '\t') {
            return Err(Fail::new(
                tether_result::InvalidParameter,
                format!("invalid header {n}"),
            ));
        }
        c.headers.push((n.to_owned(), v.to_owned()));
        Ok(())
    })
}

pub(crate) fn http_name_invalid(n: &str) -> bool {
    n.is_empty()
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Add a query parameter to every request of the connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_add_query(
    config: *mut tether_sio_client_config,
    key: *const c_char,
    value: *const c_char,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: NUL-terminated strings.
        let (k, v) = unsafe { (cstr(key, "key")?, cstr(value, "value")?) };
        c.query.push((k.to_owned(), v.to_owned()));
        Ok(())
    })
}

/// Reconnection: `enabled`, at most `attempts` attempts (0: no limit), first delay
/// `delay_ms`, longest `delay_max_ms` (>= delay_ms), jitter `randomization` in [0, 1].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_set_reconnection(
    config: *mut tether_sio_client_config,
    enabled: bool,
    attempts: u32,
    delay_ms: u32,
    delay_max_ms: u32,
    randomization: f64,
) -> tether_result {
    with_config(config, |c| {
        if delay_max_ms < delay_ms || !(0.0..=1.0).contains(&randomization) {
            return Err(Fail::new(
                tether_result::InvalidParameter,
                "need delay_ms <= delay_max_ms and 0 <= randomization <= 1",
            ));
        }
        c.reconnection = Some(Reconnection {
            enabled,
            attempts: (attempts > 0).then_some(attempts),
            delay: ms(delay_ms),
            delay_max: ms(delay_max_ms),
            randomization,
        });
        Ok(())
    })
}

/// Handshake and connect timeout in ms (default 20000; at least 1).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_set_timeout(
    config: *mut tether_sio_client_config,
    timeout_ms: u32,
) -> tether_result {
    with_config(config, |c| {
        if timeout_ms == 0 {
            return Err(Fail::new(tether_result::InvalidParameter, "timeout is 0"));
        }
        c.timeout = Some(ms(timeout_ms));
        Ok(())
    })
}

/// At-least-once delivery: retry each emit up to `retries` times when no ack arrives
/// within `ack_timeout_ms` (socket.io-client's `retries` / `ackTimeout`). Default off.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_set_retries(
    config: *mut tether_sio_client_config,
    retries: u32,
    ack_timeout_ms: u32,
) -> tether_result {
    with_config(config, |c| {
        if ack_timeout_ms == 0 {
            return Err(Fail::new(
                tether_result::InvalidParameter,
                "ack timeout is 0",
            ));
        }
        c.retries = Some((retries, ms(ack_timeout_ms)));
        Ok(())
    })
}

/// Packets kept while disconnected (default 1024).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_set_offline_buffer(
    config: *mut tether_sio_client_config,
    packets: usize,
) -> tether_result {
    with_config(config, |c| {
        c.offline_buffer = Some(packets);
        Ok(())
    })
}

/// Trust the CA certificates in `ca_pem` (PEM bytes, parsed now and copied) for
/// `https://` servers, beside the Mozilla roots. May be called several times.
/// TETHER_RESULT_INVALID_PARAMETER when the bytes hold no valid certificate.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_add_ca_pem(
    config: *mut tether_sio_client_config,
    ca_pem: *const u8,
    ca_len: usize,
) -> tether_result {
    // SAFETY: a readable buffer of `ca_len` bytes.
    with_config(config, |c| unsafe { c.trust.add_ca_pem(ca_pem, ca_len) })
}

/// As tether_sio_client_config_add_ca_pem(), reading the PEM file at `ca_path` now.
/// TETHER_RESULT_IO when it cannot be read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_add_ca_file(
    config: *mut tether_sio_client_config,
    ca_path: *const c_char,
) -> tether_result {
    // SAFETY: a NUL-terminated string.
    with_config(config, |c| unsafe { c.trust.add_ca_file(ca_path) })
}

/// **DANGER, development only.** With `accept` true, accept any server certificate for
/// any host: the connection is encrypted but not authenticated, so anyone on the path
/// can read and change it. Never ship this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_danger_accept_invalid_certs(
    config: *mut tether_sio_client_config,
    accept: bool,
) -> tether_result {
    with_config(config, |c| {
        c.trust.danger_accept_invalid_certs(accept);
        Ok(())
    })
}

/// Release a configuration. NULL is fine; must not be called twice.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_config_free(config: *mut tether_sio_client_config) {
    // SAFETY: C gives the box back.
    guard(|| unsafe { tether_sio_client_config::release(config) })
}

// ---------------------------------------------------------------------------
// Client

/// A Socket.IO client (socket.io-client's Manager): one connection to a server,
/// multiplexing namespace sockets (tether_sio_client_socket), with reconnection.
///
/// Threads: its callbacks (events, catch-all, lifecycle, ack replies) run as the
/// runtime's tether_delivery says: on a runtime thread, or inside
/// tether_runtime_dispatch(). For one client they never run concurrently and keep the
/// wire order. Inside a callback every function may be called (emit, ack, connect with
/// timeout 0, disconnect, close, free: the release is deferred), except a connect with a
/// timeout (TETHER_RESULT_WRONG_THREAD).
///
/// Lifecycle: after tether_sio_client_close() (or the runtime's shutdown) the lifecycle
/// callback gets TETHER_SIO_CLIENT_EVENT_CLOSED once, the last callback of the client.
pub struct tether_sio_client {
    _private: [u8; 0],
}

impl ArcHandle for tether_sio_client {
    type Inner = ClientObj;
}

/// One namespace of a client. Handles come from tether_sio_client_socket_new() (one per
/// call, each released with tether_sio_client_socket_free()); callbacks receive a
/// borrowed one. All handles of a namespace are the same socket.
pub struct tether_sio_client_socket {
    _private: [u8; 0],
}

impl ArcHandle for tether_sio_client_socket {
    type Inner = CSockObj;
}

/// What a client lifecycle event reports.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tether_sio_client_event_kind {
    /// The socket joined its namespace (each connection, reconnections included).
    Connect = 0,
    /// The server refused the namespace (`message`, `data_json`: its error), or a
    /// connection attempt failed (`message`).
    ConnectError = 1,
    /// The socket disconnected; `message` is socket.io-client's reason ("io server
    /// disconnect", "io client disconnect", "transport close", "ping timeout",
    /// "transport error", "parse error").
    Disconnect = 2,
    /// A reconnection attempt starts (`attempt`: 1, 2, ...). Client-level.
    ReconnectAttempt = 3,
    /// Reconnected after `attempt` attempts. Client-level.
    Reconnect = 4,
    /// A reconnection attempt failed (`message`). Client-level.
    ReconnectError = 5,
    /// Reconnection gave up. Client-level.
    ReconnectFailed = 6,
    /// The client is closed: the last callback it makes. Client-level.
    Closed = 7,
}

/// A client lifecycle event, borrowed for the duration of the callback.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tether_sio_client_event {
    /// A tether_sio_client_event_kind value.
    pub kind: u32,
    /// The attempt number for RECONNECT_ATTEMPT / RECONNECT, else 0.
    pub attempt: u32,
    /// The error message or disconnect reason; empty when none.
    pub message: tether_str,
    /// CONNECT_ERROR's data as JSON text; empty when none.
    pub data_json: tether_str,
}

/// Receives lifecycle events. `socket` is the namespace socket concerned (borrowed), or
/// NULL for client-level events (reconnection, closed).
pub type tether_sio_client_lifecycle_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        socket: *mut tether_sio_client_socket,
        event: *const tether_sio_client_event,
    ),
>;

/// Receives an incoming event on a client socket; everything is borrowed for the call.
pub type tether_sio_client_event_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        socket: *mut tether_sio_client_socket,
        event: *const tether_sio_event,
    ),
>;

type LifeFn = unsafe extern "C" fn(
    *mut c_void,
    *mut tether_sio_client_socket,
    *const tether_sio_client_event,
);
type CEventFn =
    unsafe extern "C" fn(*mut c_void, *mut tether_sio_client_socket, *const tether_sio_event);

pub(crate) struct ClientCbs {
    rt: Runtime,
    lifecycle: RwLock<Option<Arc<Cb<LifeFn>>>>,
    closed_sent: AtomicBool,
    closed_done: AtomicBool,
}

impl ClientCbs {
    fn emit(
        self: &Arc<Self>,
        socket: Option<Arc<CSockObj>>,
        kind: tether_sio_client_event_kind,
        attempt: u32,
        message: String,
        data: Option<String>,
    ) {
        let Some(cb) = read(&self.lifecycle).clone() else {
            return;
        };
        self.rt.deliver_fn(move || {
            let m = nul_terminated(message);
            let d = nul_terminated(data.unwrap_or_default());
            let ev = tether_sio_client_event {
                kind: kind as u32,
                attempt,
                message: tether_str::from_nul(&m),
                data_json: tether_str::from_nul(&d),
            };
            let sp = socket
                .as_ref()
                .map(tether_sio_client_socket::borrow_ptr)
                .unwrap_or(std::ptr::null_mut());
            // SAFETY: the C caller's callback and userdata.
            unsafe { (cb.f)(cb.ud.ptr, sp, &ev) };
        });
    }

    fn closed(self: &Arc<Self>) {
        if self.closed_sent.swap(true, Ordering::AcqRel) {
            return;
        }
        self.emit(
            None,
            tether_sio_client_event_kind::Closed,
            0,
            String::new(),
            None,
        );
        self.closed_done.store(true, Ordering::Release);
    }
}

/// Dropped with the core client's manager (its task ended): the client is closed.
struct ClosedGuard(Arc<ClientCbs>);

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        self.0.closed();
    }
}

pub(crate) struct ClientObj {
    rt: Runtime,
    client: Mutex<Option<Client>>,
    main_nsp: String,
    sockets: Mutex<HashMap<String, Arc<CSockObj>>>,
    cbs: Arc<ClientCbs>,
    reg: Mutex<Option<Registration>>,
}

pub(crate) struct CSockObj {
    rt: Runtime,
    socket: ClientSocket,
    nsp: String,
}

impl Closable for ClientObj {
    fn close(&self) {
        let c = lock(&self.client).take();
        if let Some(c) = c {
            c.close();
        }
    }

    fn is_closed(&self) -> bool {
        self.cbs.closed_done.load(Ordering::Acquire)
    }
}

impl Drop for ClientObj {
    fn drop(&mut self) {
        self.close();
    }
}

/// Make a client for `url` (`http://host:port[/namespace]`; the path names the main
/// namespace). `config` may be NULL for the defaults (it is copied). Nothing connects
/// until tether_sio_client_socket_connect().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_new(
    runtime: *mut tether_runtime,
    url: *const c_char,
    config: *const tether_sio_client_config,
    client_out: *mut *mut tether_sio_client,
) -> tether_result {
    guard(|| {
        result((|| {
            if client_out.is_null() {
                return Err(Fail::null("client_out"));
            }
            // SAFETY: a runtime handle, a NUL-terminated string, NULL or a config.
            let (rt, u) = unsafe { (tether_runtime::get(runtime)?, cstr(url, "url")?) };
            let cfg = if config.is_null() {
                ClientConfig::default()
            } else {
                // SAFETY: a config handle.
                unsafe { tether_sio_client_config::get(config) }?.clone()
            };
            let handle = rt.rt.handle()?;
            let (_, main_nsp) = tether_core::transport::client::Target::parse(u, "/socket.io/")
                .map_err(|e| Fail::new(tether_result::InvalidParameter, format!("url: {e}")))?;
            let mut b = Client::builder(u);
            if let Some(p) = cfg.path {
                b = b.path(p);
            }
            if let Some(t) = cfg.transports {
                b = b.transports(t);
            }
            if let Some(up) = cfg.upgrade {
                b = b.upgrade(up);
            }
            for (k, v) in cfg.headers {
                b = b.header(k, v);
            }
            for (k, v) in cfg.query {
                b = b.query(k, v);
            }
            if let Some(a) = cfg.auth {
                b = b.auth(a);
            }
            if let Some(r) = cfg.reconnection {
                b = b.reconnection(r);
            }
            if let Some(t) = cfg.timeout {
                b = b.timeout(t);
            }
            if let Some((n, t)) = cfg.retries {
                b = b.retries(n).ack_timeout(t);
            }
            if let Some(n) = cfg.offline_buffer {
                b = b.offline_buffer(n);
            }
            if let Some(t) = cfg.trust.build()? {
                b = b.tls(t);
            }
            let client = {
                let _g = handle.enter();
                b.build().map_err(client_error)?
            };
            let cbs = Arc::new(ClientCbs {
                rt: rt.rt.clone(),
                lifecycle: RwLock::new(None),
                closed_sent: AtomicBool::new(false),
                closed_done: AtomicBool::new(false),
            });
            install_client_hooks(&client, &cbs);
            let obj = Arc::new(ClientObj {
                rt: rt.rt.clone(),
                client: Mutex::new(Some(client)),
                main_nsp,
                sockets: Mutex::new(HashMap::new()),
                cbs,
                reg: Mutex::new(None),
            });
            let reg = rt.rt.register(Arc::downgrade(&obj) as Weak<dyn Closable>)?;
            *lock(&obj.reg) = Some(reg);
            // SAFETY: checked non-NULL.
            unsafe { *client_out = tether_sio_client::into_ptr(obj) };
            Ok(())
        })())
    })
}

fn install_client_hooks(client: &Client, cbs: &Arc<ClientCbs>) {
    use tether_sio_client_event_kind as K;
    let c = cbs.clone();
    client.on_reconnect_attempt(move |n| c.emit(None, K::ReconnectAttempt, n, String::new(), None));
    let c = cbs.clone();
    client.on_reconnect(move |n| c.emit(None, K::Reconnect, n, String::new(), None));
    let c = cbs.clone();
    client.on_reconnect_error(move |m| c.emit(None, K::ReconnectError, 0, m.to_owned(), None));
    let c = cbs.clone();
    client.on_reconnect_failed(move || c.emit(None, K::ReconnectFailed, 0, String::new(), None));
    // Dropped with the manager: reports CLOSED.
    let guard = ClosedGuard(cbs.clone());
    client.on_reconnect_failed(move || {
        let _ = &guard;
    });
}

fn client_error(e: ClientError) -> Fail {
    let code = match &e {
        ClientError::Config(_) => tether_result::InvalidParameter,
        ClientError::NoRuntime => tether_result::ShutDown,
        ClientError::Refused { .. } => tether_result::ConnectRefused,
        ClientError::Open(_) => tether_result::ConnectFailed,
        ClientError::Timeout => tether_result::Timeout,
        ClientError::Closed => tether_result::ShutDown,
    };
    Fail::new(code, e.to_string())
}

/// Set the lifecycle callback (connect, connect_error, disconnect of every namespace
/// socket; reconnection; closed), replacing an earlier one.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_on_lifecycle(
    client: *mut tether_sio_client,
    callback: tether_sio_client_lifecycle_cb,
    userdata: *mut c_void,
    userdata_free: tether_free_cb,
) -> tether_result {
    let ud = Userdata::new(userdata, userdata_free);
    guard(|| {
        result((|| {
            // SAFETY: a client handle.
            let c = unsafe { tether_sio_client::get(client) }?;
            let Some(f) = callback else {
                return Err(Fail::null("callback"));
            };
            *write(&c.cbs.lifecycle) = Some(Cb::new(f, ud));
            Ok(())
        })())
    })
}

/// A handle to the socket of namespace `nsp` (NULL: the URL's namespace), created if
/// needed; not connected until tether_sio_client_socket_connect(). Release it with
/// tether_sio_client_socket_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_new(
    client: *mut tether_sio_client,
    nsp: *const c_char,
    socket_out: *mut *mut tether_sio_client_socket,
) -> tether_result {
    guard(|| {
        result((|| {
            if socket_out.is_null() {
                return Err(Fail::null("socket_out"));
            }
            // SAFETY: a client handle and NULL or a NUL-terminated string.
            let (c, n) = unsafe { (tether_sio_client::get(client)?, opt_cstr(nsp, "nsp")?) };
            c.rt.check()?;
            let n = match n {
                None => c.main_nsp.clone(),
                Some(s) if s.starts_with('/') => s.to_owned(),
                Some(s) => format!("/{s}"),
            };
            let mut map = lock(&c.sockets);
            let so = match map.get(&n) {
                Some(so) => so.clone(),
                None => {
                    let core = lock(&c.client)
                        .as_ref()
                        .map(|cl| cl.socket(&n))
                        .ok_or_else(|| {
                            Fail::new(tether_result::ShutDown, "the client is closed")
                        })?;
                    let so = Arc::new(CSockObj {
                        rt: c.rt.clone(),
                        socket: core,
                        nsp: nul_terminated(n.clone()),
                    });
                    install_socket_hooks(&so, &c.cbs);
                    map.insert(n, so.clone());
                    so
                }
            };
            // SAFETY: checked non-NULL.
            unsafe { *socket_out = tether_sio_client_socket::into_ptr(so) };
            Ok(())
        })())
    })
}

fn install_socket_hooks(so: &Arc<CSockObj>, cbs: &Arc<ClientCbs>) {
    use tether_sio_client_event_kind as K;
    let (w, c) = (Arc::downgrade(so), cbs.clone());
    so.socket.on_connect(move |_| {
        c.emit(w.upgrade(), K::Connect, 0, String::new(), None);
    });
    let (w, c) = (Arc::downgrade(so), cbs.clone());
    so.socket.on_connect_error(move |_, info| {
        let data = info.data.as_ref().map(|d| d.to_string());
        c.emit(w.upgrade(), K::ConnectError, 0, info.message.clone(), data);
    });
    let (w, c) = (Arc::downgrade(so), cbs.clone());
    so.socket.on_disconnect(move |_, reason| {
        let data = match reason {
            ClientDisconnectReason::TransportError(e) => Some(Value::String(e.clone()).to_string()),
            _ => None,
        };
        c.emit(
            w.upgrade(),
            K::Disconnect,
            0,
            reason.as_str().to_owned(),
            data,
        );
    });
}

fn close_client(c: &ClientObj) {
    c.close();
}

/// Disconnect every socket and close the connection; no reconnection follows. The
/// lifecycle callback then gets DISCONNECT for connected sockets and CLOSED last. The
/// handle stays valid until freed (further calls return TETHER_RESULT_SHUT_DOWN).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_close(client: *mut tether_sio_client) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a client handle.
            let c = unsafe { tether_sio_client::get(client) }?;
            close_client(c);
            Ok(())
        })())
    })
}

/// Close (as tether_sio_client_close) and release the client. NULL is fine; must not be
/// called twice. Callable from the client's own callbacks (the release is deferred).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_free(client: *mut tether_sio_client) {
    guard(|| {
        // SAFETY: a client handle or NULL.
        if let Ok(c) = unsafe { tether_sio_client::get(client) } {
            close_client(c);
        }
        // SAFETY: C gives its reference back.
        unsafe { tether_sio_client::release(client) }
    })
}

// ---------------------------------------------------------------------------
// Client socket

fn with_csocket(
    socket: *const tether_sio_client_socket,
    f: impl FnOnce(&CSockObj) -> Result<(), Fail>,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a socket handle.
            let s = unsafe { tether_sio_client_socket::get(socket) }?;
            check_rt(&s.rt)?;
            f(s)
        })())
    })
}

/// The socket's namespace (valid as long as the handle). Empty for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_namespace(
    socket: *const tether_sio_client_socket,
) -> tether_str {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_sio_client_socket::get(socket) } {
            Ok(s) => tether_str::from_nul(&s.nsp),
            Err(_) => tether_str::empty(),
        }
    })
}

/// Whether the namespace is connected (false for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_connected(
    socket: *const tether_sio_client_socket,
) -> bool {
    guard(|| {
        // SAFETY: NULL or a handle.
        unsafe { tether_sio_client_socket::get(socket) }
            .map(|s| s.socket.connected())
            .unwrap_or(false)
    })
}

/// Copy the socket id the server assigned into `buf` (NUL-terminated, `len` bytes);
/// TETHER_RESULT_NOT_CONNECTED while not connected.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_id(
    socket: *const tether_sio_client_socket,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tether_result {
    with_csocket(socket, |s| {
        let id = s
            .socket
            .id()
            .ok_or_else(|| Fail::new(tether_result::NotConnected, "not connected"))?;
        if buf.is_null() {
            return Err(Fail::null("buf"));
        }
        let id = id.as_str();
        if len <= id.len() {
            return Err(Fail::new(
                tether_result::BufferTooSmall,
                format!("{} bytes needed", id.len() + 1),
            ));
        }
        // SAFETY: `len` writable bytes, more than the id's length.
        unsafe {
            std::ptr::copy_nonoverlapping(id.as_ptr(), buf as *mut u8, id.len());
            *buf.add(id.len()) = 0;
            if !out_n.is_null() {
                *out_n = id.len();
            }
        }
        Ok(())
    })
}

/// Set the handler of `event`, replacing an earlier one.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_on(
    socket: *mut tether_sio_client_socket,
    event: *const c_char,
    callback: tether_sio_client_event_cb,
    userdata: *mut c_void,
    userdata_free: tether_free_cb,
) -> tether_result {
    let ud = Userdata::new(userdata, userdata_free);
    with_csocket(socket, |s| {
        let Some(f) = callback else {
            return Err(Fail::null("callback"));
        };
        // SAFETY: a NUL-terminated string.
        let e = unsafe { cstr(event, "event") }?;
        let cb = Cb::new(f, ud);
        let w = weak_of(s);
        let rt = s.rt.clone();
        s.socket.on(e.to_owned(), move |_, ev| {
            if let Some(so) = w.upgrade() {
                deliver_event::<tether_sio_client_socket>(
                    &rt,
                    cb.clone(),
                    so,
                    ev.name,
                    ev.args,
                    ev.ack,
                );
            }
        });
        Ok(())
    })
}

/// Remove the handler of `event`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_off(
    socket: *mut tether_sio_client_socket,
    event: *const c_char,
) -> tether_result {
    with_csocket(socket, |s| {
        // SAFETY: a NUL-terminated string.
        let e = unsafe { cstr(event, "event") }?;
        s.socket.off(e);
        Ok(())
    })
}

/// Add a catch-all: it sees every incoming event before the event's own handler.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_on_any(
    socket: *mut tether_sio_client_socket,
    callback: tether_sio_client_event_cb,
    userdata: *mut c_void,
    userdata_free: tether_free_cb,
) -> tether_result {
    let ud = Userdata::new(userdata, userdata_free);
    with_csocket(socket, |s| {
        let Some(f) = callback else {
            return Err(Fail::null("callback"));
        };
        let cb: Arc<Cb<CEventFn>> = Cb::new(f, ud);
        let w = weak_of(s);
        let rt = s.rt.clone();
        s.socket.on_any(move |_, ev| {
            if let Some(so) = w.upgrade() {
                let (name, args, ack) = (ev.name.clone(), ev.args.clone(), ev.ack.clone());
                deliver_event::<tether_sio_client_socket>(&rt, cb.clone(), so, name, args, ack);
            }
        });
        Ok(())
    })
}

/// A weak reference to the `CSockObj` behind `s` (which is always inside an `Arc`).
fn weak_of(s: &CSockObj) -> Weak<CSockObj> {
    // SAFETY: every `CSockObj` lives in an `Arc` made by `tether_sio_client_socket_new`,
    // and `s` borrows it; the count is incremented before the new Arc is made.
    let arc = unsafe {
        Arc::increment_strong_count(s as *const CSockObj);
        Arc::from_raw(s as *const CSockObj)
    };
    Arc::downgrade(&arc)
}

/// Set the `auth` payload (JSON object text) for this namespace's next connections.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_set_auth(
    socket: *mut tether_sio_client_socket,
    auth_json: *const c_char,
    auth_len: usize,
) -> tether_result {
    with_csocket(socket, |s| {
        // SAFETY: `auth_len` readable bytes.
        let v = unsafe { json_value(auth_json, auth_len, "auth_json") }?;
        if !v.is_object() {
            return Err(Fail::new(
                tether_result::InvalidJson,
                "auth must be a JSON object",
            ));
        }
        s.socket.set_auth(v);
        Ok(())
    })
}

/// Connect the namespace (opening the shared connection if needed). With `timeout_ms`
/// 0 it returns at once and the outcome arrives as lifecycle events (CONNECT or
/// CONNECT_ERROR). Otherwise it waits: TETHER_RESULT_OK when connected,
/// TETHER_RESULT_CONNECT_REFUSED (the server's message in the last error),
/// TETHER_RESULT_CONNECT_FAILED or TETHER_RESULT_TIMEOUT; waiting is not allowed inside
/// a callback (TETHER_RESULT_WRONG_THREAD).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_connect(
    socket: *mut tether_sio_client_socket,
    timeout_ms: u32,
) -> tether_result {
    with_csocket(socket, |s| {
        let sock = s.socket.clone();
        if timeout_ms == 0 {
            s.rt.handle()?.spawn(async move {
                let _ = sock.connect().await;
            });
            return Ok(());
        }
        if Dispatcher::in_any_job() {
            return Err(Fail::new(
                tether_result::WrongThread,
                "a connect with a timeout would block a callback: use timeout 0",
            ));
        }
        let r =
            s.rt.block_on(async move { sock.connect().await }, ms(timeout_ms));
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(client_error(e)),
            Err(e) => Err(e.into()),
        }
    })
}

/// Leave the namespace (no reconnection for it); the connection closes when no
/// namespace is left.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_disconnect(
    socket: *mut tether_sio_client_socket,
) -> tether_result {
    with_csocket(socket, |s| {
        s.socket.disconnect();
        Ok(())
    })
}

fn client_emit_error(e: ClientEmitError) -> Fail {
    match e {
        ClientEmitError::Reserved(n) => Fail::new(
            tether_result::InvalidParameter,
            format!("\"{n}\" is a reserved event name"),
        ),
        ClientEmitError::BufferFull => {
            Fail::new(tether_result::QueueFull, "the offline buffer is full")
        }
        ClientEmitError::Send(s) => send_error(s),
        ClientEmitError::Serialize(e) => Fail::new(tether_result::InvalidJson, e.to_string()),
    }
}

/// Emit `event`. While disconnected the packet waits in the offline buffer (sent in
/// order on connect).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_emit(
    socket: *mut tether_sio_client_socket,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
) -> tether_result {
    with_csocket(socket, |s| {
        // SAFETY: as documented for each argument.
        let (e, args) = unsafe { event_args(event, args_json, args_len, bins, bins_len) }?;
        s.socket.emit_args(e, args).map_err(client_emit_error)
    })
}

/// Emit `event`, dropping it instead of buffering it when not connected.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_emit_volatile(
    socket: *mut tether_sio_client_socket,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
) -> tether_result {
    with_csocket(socket, |s| {
        // SAFETY: as documented for each argument.
        let (e, args) = unsafe { event_args(event, args_json, args_len, bins, bins_len) }?;
        s.socket.emit_volatile(e, args).map_err(client_emit_error)
    })
}

/// Emit `event` and wait for the server's acknowledgement: `callback` runs once with
/// the reply or TETHER_RESULT_TIMEOUT after `timeout_ms` (see tether_sio_ack_cb). It
/// runs if and only if this returns TETHER_RESULT_OK.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_emit_with_ack(
    socket: *mut tether_sio_client_socket,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
    timeout_ms: u32,
    callback: tether_sio_ack_cb,
    userdata: *mut c_void,
) -> tether_result {
    with_csocket(socket, |s| {
        let Some(f) = callback else {
            return Err(Fail::null("callback"));
        };
        // SAFETY: as documented for each argument.
        let (e, args) = unsafe { event_args(event, args_json, args_len, bins, bins_len) }?;
        let once = ack_oneshot(&s.rt, f, userdata)?;
        let _g = s.rt.handle()?.enter();
        s.socket
            .emit_with_ack_cb(e, args, ms(timeout_ms), move |r| once.fire(Outcome::Ack(r)))
            .map_err(client_emit_error)
    })
}

/// Release a socket handle. NULL is fine; must not be called twice, nor on the borrowed
/// handle a callback received.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_client_socket_free(socket: *mut tether_sio_client_socket) {
    // SAFETY: C gives its reference back.
    guard(|| unsafe { tether_sio_client_socket::release(socket) })
}
