//! The Socket.IO server: `tether_sio_server_config`, `tether_sio_server`,
//! `tether_sio_socket`, `tether_sio_connect_request`.

use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use serde_json::Value;
use tether_core::adapter::{RedisAdapter, RedisAdapterConfig};
use tether_core::config::{Cors, CorsOrigins, EngineConfig, SioConfig};
use tether_core::dispatch::{Dispatcher, Job};
use tether_core::engine::Engine;
use tether_core::runtime::{Closable, Registration, Runtime};
use tether_core::sio::{
    BroadcastOperator, ConnectContext, ConnectDecision, ConnectError, EmitError, Io, Namespace,
    SocketRef,
};
use tether_core::transport::http::serve;
use tether_core::{Routes as StaticRoutes, ServerHandle};

use crate::ack::{Outcome, ack_oneshot, broadcast_oneshot, send_error};
use crate::ack::{tether_sio_ack_cb, tether_sio_broadcast_ack_cb};
use crate::error::{Fail, guard, result, tether_result};
use crate::event::{Cb, deliver_event, tether_sio_event};
use crate::redis::adapter_error;
use crate::runtime::tether_runtime;
use crate::tls::{server_tls_files, server_tls_pem};
use crate::util::{
    ArcHandle, BoxHandle, Userdata, bytes, check_rt, cstr, event_args, json_value, lock, ms,
    nul_terminated, opt_cstr, parse_args, read, tether_bytes, tether_free_cb, tether_str,
    with_lent, write,
};

// ---------------------------------------------------------------------------
// Shared event types

/// Hand a job to the runtime from any thread so that, in runtime-threads mode, it runs on
/// a runtime thread (not on the host thread that caused it).
pub(crate) fn deliver_from_anywhere(rt: &Runtime, job: Job) {
    if tokio::runtime::Handle::try_current().is_ok() || Dispatcher::in_any_job() {
        rt.deliver(job);
    } else {
        let rt2 = rt.clone();
        rt.raw_handle().spawn(async move {
            rt2.deliver(job);
        });
    }
}

// ---------------------------------------------------------------------------
// Config

/// Server options. Make with tether_sio_server_config_new(), set, pass to
/// tether_sio_server_new() (which copies them), free with tether_sio_server_config_free().
/// Defaults are the reference server's: path "/socket.io/", ping interval 25 s, ping
/// timeout 20 s, max payload 1e6 bytes, connect timeout 45 s, no CORS headers.
pub struct tether_sio_server_config {
    _private: [u8; 0],
}

#[derive(Clone, Default)]
pub(crate) struct ServerConfig {
    engine: EngineConfig,
    sio: SioConfig,
    cors_any: bool,
    cors_origins: Vec<String>,
    cors_credentials: bool,
    tls: Option<tether_core::tls::ServerTls>,
    redis: Option<(String, RedisAdapterConfig)>,
}

impl BoxHandle for tether_sio_server_config {
    type Inner = ServerConfig;
}

/// Make a server configuration with the defaults.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_new(
    config_out: *mut *mut tether_sio_server_config,
) -> tether_result {
    tether_sio_server_config::new_default_into(config_out)
}

fn with_config(
    config: *mut tether_sio_server_config,
    f: impl FnOnce(&mut ServerConfig) -> Result<(), Fail>,
) -> tether_result {
    tether_sio_server_config::with_mut(config, f)
}

fn positive_ms(v: u32, what: &str) -> Result<Duration, Fail> {
    if v == 0 {
        return Err(Fail::new(
            tether_result::InvalidParameter,
            format!("{what} must be at least 1 ms"),
        ));
    }
    Ok(ms(v))
}

/// The request path (default "/socket.io/"; slashes are added as needed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_set_path(
    config: *mut tether_sio_server_config,
    path: *const c_char,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: a NUL-terminated string.
        let p = unsafe { cstr(path, "path") }?;
        if p.is_empty() || p.contains(['?', '#', ' ']) {
            return Err(Fail::new(tether_result::InvalidParameter, "invalid path"));
        }
        let mut p = p.to_owned();
        if !p.starts_with('/') {
            p.insert(0, '/');
        }
        if !p.ends_with('/') {
            p.push('/');
        }
        c.engine.path = p;
        Ok(())
    })
}

/// Interval between pings, in ms (default 25000; at least 1).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_set_ping_interval(
    config: *mut tether_sio_server_config,
    interval_ms: u32,
) -> tether_result {
    with_config(config, |c| {
        let d = positive_ms(interval_ms, "ping interval")?;
        c.engine.ping_interval = d;
        Ok(())
    })
}

/// Time allowed for a pong, in ms (default 20000; at least 1).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_set_ping_timeout(
    config: *mut tether_sio_server_config,
    timeout_ms: u32,
) -> tether_result {
    with_config(config, |c| {
        let d = positive_ms(timeout_ms, "ping timeout")?;
        c.engine.ping_timeout = d;
        Ok(())
    })
}

/// Time a new connection has to join a namespace, in ms (default 45000; at least 1).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_set_connect_timeout(
    config: *mut tether_sio_server_config,
    timeout_ms: u32,
) -> tether_result {
    with_config(config, |c| {
        let d = positive_ms(timeout_ms, "connect timeout")?;
        c.sio.connect_timeout = d;
        Ok(())
    })
}

/// Largest message / polling body / WebSocket frame in bytes (maxHttpBufferSize,
/// default 1000000; at least 1024).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_set_max_payload(
    config: *mut tether_sio_server_config,
    bytes: usize,
) -> tether_result {
    with_config(config, |c| {
        if bytes < 1024 {
            return Err(Fail::new(
                tether_result::InvalidParameter,
                "max payload must be at least 1024 bytes",
            ));
        }
        c.engine.max_payload = bytes;
        Ok(())
    })
}

/// Allow a CORS origin (`scheme://host[:port]`), or "*" for any origin. May be called
/// several times. Default: no CORS headers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_add_cors_origin(
    config: *mut tether_sio_server_config,
    origin: *const c_char,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: a NUL-terminated string.
        let o = unsafe { cstr(origin, "origin") }?;
        if o == "*" {
            c.cors_any = true;
        } else if o.is_empty() || o.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            return Err(Fail::new(tether_result::InvalidParameter, "invalid origin"));
        } else {
            c.cors_origins.push(o.to_owned());
        }
        Ok(())
    })
}

/// Send `Access-Control-Allow-Credentials: true` (only with CORS origins set).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_set_cors_credentials(
    config: *mut tether_sio_server_config,
    enabled: bool,
) -> tether_result {
    with_config(config, |c| {
        c.cors_credentials = enabled;
        Ok(())
    })
}

/// Serve the bundled browser client at `<path>socket.io.js` (default true).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_set_serve_client(
    config: *mut tether_sio_server_config,
    enabled: bool,
) -> tether_result {
    with_config(config, |c| {
        c.sio.serve_client = enabled;
        Ok(())
    })
}

/// Serve over TLS (`https://` and `wss://` on the same port) with this certificate
/// chain (PEM, leaf first) and private key (PEM: PKCS#8, PKCS#1 or SEC1). The bytes
/// are parsed now and copied. TETHER_RESULT_INVALID_PARAMETER when no certificate or
/// key is found or rustls refuses them (the reason is in the last error).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_set_tls_pem(
    config: *mut tether_sio_server_config,
    cert_pem: *const u8,
    cert_len: usize,
    key_pem: *const u8,
    key_len: usize,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: readable buffers of these lengths.
        c.tls = Some(unsafe { server_tls_pem(cert_pem, cert_len, key_pem, key_len) }?);
        Ok(())
    })
}

/// As tether_sio_server_config_set_tls_pem(), reading the PEM files at `cert_path` and
/// `key_path` now. TETHER_RESULT_IO when a file cannot be read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_set_tls_files(
    config: *mut tether_sio_server_config,
    cert_path: *const c_char,
    key_path: *const c_char,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: NUL-terminated strings.
        c.tls = Some(unsafe { server_tls_files(cert_path, key_path) }?);
        Ok(())
    })
}

/// Join a cluster through Redis at `url` (`redis://[user:password@]host:port[/db]`):
/// broadcasts, rooms and remote operations reach the sockets of every server using the
/// same Redis and `key` (the channel prefix; NULL: "socket.io"), tether or Node
/// socket.io with `@socket.io/redis-adapter`. `requests_timeout_ms` bounds the wait for
/// the other servers' answers (0: 5000). tether_sio_server_new() then connects (and
/// fails with TETHER_RESULT_CONNECT_FAILED when Redis is unreachable);
/// tether_sio_server_listen() waits (at most 5 s) until the subscriptions of the
/// namespaces that have handlers are live. During a Redis outage broadcasts still reach
/// local sockets; messages for the other servers are lost, and the adapter reconnects.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_set_redis(
    config: *mut tether_sio_server_config,
    url: *const c_char,
    key: *const c_char,
    requests_timeout_ms: u32,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: NUL-terminated strings (key may be NULL).
        let (u, k) = unsafe { (cstr(url, "url")?, opt_cstr(key, "key")?) };
        if !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://")) {
            return Err(Fail::new(
                tether_result::InvalidParameter,
                "the Redis url must start with redis://, rediss:// or unix://",
            ));
        }
        let mut rc = RedisAdapterConfig::default();
        if let Some(k) = k {
            if k.is_empty() {
                return Err(Fail::new(tether_result::InvalidParameter, "empty key"));
            }
            rc.key = k.to_owned();
        }
        if requests_timeout_ms > 0 {
            rc.requests_timeout = ms(requests_timeout_ms);
        }
        c.redis = Some((u.to_owned(), rc));
        Ok(())
    })
}

/// Release a configuration. NULL is fine; must not be called twice.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_config_free(config: *mut tether_sio_server_config) {
    // SAFETY: C gives the box back.
    guard(|| unsafe { tether_sio_server_config::release(config) })
}

// ---------------------------------------------------------------------------
// Server

/// A Socket.IO server on a runtime: namespaces, rooms, broadcasts, acknowledgements.
///
/// Threads: its callbacks (connection, connect request, events, catch-all,
/// disconnect, ack replies) run as the runtime's tether_delivery says: on runtime
/// threads, or inside tether_runtime_dispatch(). For one socket they never run
/// concurrently and keep the wire order: connection first, then events, disconnect
/// last. Inside a callback every function may be called: emit, join, leave, ack,
/// disconnect, even tether_sio_server_free() (the release is deferred).
pub struct tether_sio_server {
    _private: [u8; 0],
}

impl ArcHandle for tether_sio_server {
    type Inner = ServerObj;
}

/// Runs when a socket joined a namespace (after the connect request, if any, was
/// accepted). `socket` is borrowed for the call: tether_sio_socket_clone() keeps it.
pub type tether_sio_connection_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, socket: *mut tether_sio_socket)>;

/// Runs for an incoming event on a server socket. Everything is borrowed for the call.
pub type tether_sio_event_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        socket: *mut tether_sio_socket,
        event: *const tether_sio_event,
    ),
>;

/// Runs once when a socket left its namespace, with socket.io's reason name
/// ("transport close", "client namespace disconnect", "server namespace disconnect",
/// "ping timeout", "server shutting down", ...).
pub type tether_sio_disconnect_cb = Option<
    unsafe extern "C" fn(userdata: *mut c_void, socket: *mut tether_sio_socket, reason: tether_str),
>;

/// Decides whether a socket may join a namespace: answer with
/// tether_sio_connect_request_accept() / _reject(), in the callback or later from any
/// thread (tether_sio_connect_request_clone() keeps the request past the call). A
/// request whose every handle is released unanswered is refused ("connection refused").
pub type tether_sio_connect_request_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, request: *mut tether_sio_connect_request)>;

type EventFn = crate::event::EventFn<tether_sio_socket>;
type ConnFn = unsafe extern "C" fn(*mut c_void, *mut tether_sio_socket);
type DiscFn = unsafe extern "C" fn(*mut c_void, *mut tether_sio_socket, tether_str);

pub(crate) struct NsCbs {
    rt: Runtime,
    connection: RwLock<Option<Arc<Cb<ConnFn>>>>,
    disconnect: RwLock<Option<Arc<Cb<DiscFn>>>>,
    any: RwLock<Option<Arc<Cb<EventFn>>>>,
    events: RwLock<HashMap<String, Arc<Cb<EventFn>>, foldhash::fast::RandomState>>,
    sockets: Mutex<HashMap<String, Weak<SockObj>>>,
}

pub(crate) struct ServerObj {
    rt: Runtime,
    io: Io,
    /// The Engine.IO layer, made here rather than by `Io::listen_with` (which keeps it
    /// in the `Io` while the engine keeps the `Io`: a reference cycle that never frees).
    engine: OnceLock<Arc<Engine>>,
    engine_config: EngineConfig,
    serve_client: bool,
    tls: Option<tether_core::tls::ServerTls>,
    redis: Option<RedisAdapter>,
    routes: Mutex<StaticRoutes>,
    handles: Mutex<Vec<ServerHandle>>,
    ns: Mutex<HashMap<String, Arc<NsCbs>>>,
    closed: AtomicBool,
    reg: Mutex<Option<Registration>>,
}

impl Closable for ServerObj {
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let handles: Vec<ServerHandle> = lock(&self.handles).drain(..).collect();
        for h in &handles {
            h.shutdown();
        }
        // Sockets of a server that never listened (none) or that raced the shutdown.
        let names: Vec<String> = lock(&self.ns).keys().cloned().collect();
        for n in names {
            self.io.of(&n).disconnect_all();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Drop for ServerObj {
    fn drop(&mut self) {
        self.close();
    }
}

pub(crate) fn norm_nsp(nsp: Option<&str>) -> String {
    match nsp {
        None | Some("") => "/".to_owned(),
        Some(n) if n.starts_with('/') => n.to_owned(),
        Some(n) => format!("/{n}"),
    }
}

impl ServerObj {
    fn check(&self) -> Result<(), Fail> {
        check_rt(&self.rt)?;
        if self.is_closed() {
            return Err(Fail::new(tether_result::ShutDown, "the server is closed"));
        }
        Ok(())
    }

    fn ns(&self, nsp: &str) -> Arc<NsCbs> {
        let mut map = lock(&self.ns);
        if let Some(n) = map.get(nsp) {
            return n.clone();
        }
        let ns = self.io.of(nsp);
        let cbs = Arc::new(NsCbs {
            rt: self.rt.clone(),
            connection: RwLock::new(None),
            disconnect: RwLock::new(None),
            any: RwLock::new(None),
            events: RwLock::new(HashMap::default()),
            sockets: Mutex::new(HashMap::new()),
        });
        // Weak: the namespace (inside the core server) must not keep these alive.
        let weak = Arc::downgrade(&cbs);
        ns.on_connect(move |socket| {
            if let Some(c) = weak.upgrade() {
                on_connection(&c, socket);
            }
        });
        map.insert(nsp.to_owned(), cbs.clone());
        cbs
    }
}

fn on_connection(cbs: &Arc<NsCbs>, socket: SocketRef) {
    let so = Arc::new(SockObj::new(cbs.rt.clone(), socket.clone()));
    lock(&cbs.sockets).insert(socket.id().to_string(), Arc::downgrade(&so));
    let names: Vec<String> = read(&cbs.events).keys().cloned().collect();
    for name in names {
        install_event(cbs, &so, &name);
    }
    if read(&cbs.any).is_some() {
        install_any(cbs, &so);
    }
    {
        let cbs2 = cbs.clone();
        let so2 = so.clone();
        socket.on_disconnect(move |s, reason| {
            lock(&cbs2.sockets).remove(s.id().as_str());
            let Some(cb) = read(&cbs2.disconnect).clone() else {
                return;
            };
            cbs2.rt.deliver_fn(move || {
                let r = nul_terminated(reason.as_str().to_owned());
                // SAFETY: the C caller's callback and userdata.
                unsafe {
                    (cb.f)(
                        cb.ud.ptr,
                        tether_sio_socket::borrow_ptr(&so2),
                        tether_str::from_nul(&r),
                    )
                };
            });
        });
    }
    if let Some(cb) = read(&cbs.connection).clone() {
        let so2 = so.clone();
        cbs.rt.deliver_fn(move || {
            // SAFETY: the C caller's callback and userdata.
            unsafe { (cb.f)(cb.ud.ptr, tether_sio_socket::borrow_ptr(&so2)) };
        });
    }
}

fn install_event(cbs: &Arc<NsCbs>, so: &Arc<SockObj>, name: &str) {
    if !lock(&so.installed).insert(name.to_owned()) {
        return;
    }
    let cbs2 = cbs.clone();
    let so2 = so.clone();
    so.socket.on(name.to_owned(), move |_s, ev| {
        if let Some(cb) = read(&cbs2.events).get(&ev.name).cloned() {
            deliver_event::<tether_sio_socket>(&cbs2.rt, cb, so2.clone(), ev.name, ev.args, ev.ack);
        }
    });
}

fn install_any(cbs: &Arc<NsCbs>, so: &Arc<SockObj>) {
    if so.any_installed.swap(true, Ordering::AcqRel) {
        return;
    }
    let cbs2 = cbs.clone();
    let so2 = so.clone();
    so.socket.on_any(move |_s, ev| {
        if let Some(cb) = read(&cbs2.any).clone() {
            let (name, args, ack) = (ev.name.clone(), ev.args.clone(), ev.ack.clone());
            deliver_event::<tether_sio_socket>(&cbs2.rt, cb, so2.clone(), name, args, ack);
        }
    });
}

fn live_sockets(cbs: &NsCbs) -> Vec<Arc<SockObj>> {
    lock(&cbs.sockets)
        .values()
        .filter_map(Weak::upgrade)
        .collect()
}

/// Make a server on `runtime`. `config` may be NULL for the defaults (it is copied;
/// free it when you like). Nothing listens until tether_sio_server_listen().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_new(
    runtime: *mut tether_runtime,
    config: *const tether_sio_server_config,
    server_out: *mut *mut tether_sio_server,
) -> tether_result {
    guard(|| {
        result((|| {
            if server_out.is_null() {
                return Err(Fail::null("server_out"));
            }
            // SAFETY: a runtime handle.
            let rt = unsafe { tether_runtime::get(runtime) }?;
            rt.rt.check()?;
            let cfg = if config.is_null() {
                ServerConfig::default()
            } else {
                // SAFETY: a config handle.
                unsafe { tether_sio_server_config::get(config) }?.clone()
            };
            let mut engine = cfg.engine;
            if cfg.cors_any {
                let mut c = Cors::any();
                c.credentials = cfg.cors_credentials;
                engine.cors = Some(c);
            } else if !cfg.cors_origins.is_empty() {
                engine.cors = Some(Cors {
                    origins: CorsOrigins::List(cfg.cors_origins),
                    credentials: cfg.cors_credentials,
                });
            }
            let redis = match cfg.redis.clone() {
                Some((url, rc)) => Some(
                    rt.rt
                        .block_on(
                            async move { RedisAdapter::connect_with(&url, rc).await },
                            Duration::from_secs(10),
                        )?
                        .map_err(|e| adapter_error(e, tether_result::ConnectFailed))?,
                ),
                None => None,
            };
            let mut io = Io::builder()
                .engine_config(engine.clone())
                .sio_config(cfg.sio.clone());
            if let Some(a) = &redis {
                io = io.adapter(a.clone());
            }
            let io = io.build();
            let obj = Arc::new(ServerObj {
                rt: rt.rt.clone(),
                engine: OnceLock::new(),
                engine_config: engine,
                serve_client: cfg.sio.serve_client,
                tls: cfg.tls.clone(),
                redis,
                io,
                routes: Mutex::new(StaticRoutes::new()),
                handles: Mutex::new(Vec::new()),
                ns: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
                reg: Mutex::new(None),
            });
            let reg = rt.rt.register(Arc::downgrade(&obj) as Weak<dyn Closable>)?;
            *lock(&obj.reg) = Some(reg);
            // SAFETY: checked non-NULL.
            unsafe { *server_out = tether_sio_server::into_ptr(obj) };
            Ok(())
        })())
    })
}

fn with_server(
    server: *const tether_sio_server,
    f: impl FnOnce(&ServerObj) -> Result<(), Fail>,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a server handle.
            let s = unsafe { tether_sio_server::get(server) }?;
            s.check()?;
            f(s)
        })())
    })
}

/// Answer `GET url_path` with `body` (copied) and `content_type`, beside Socket.IO.
/// Call before tether_sio_server_listen().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_add_route(
    server: *mut tether_sio_server,
    url_path: *const c_char,
    content_type: *const c_char,
    body: *const u8,
    body_len: usize,
) -> tether_result {
    with_server(server, |s| {
        // SAFETY: NUL-terminated strings and a readable buffer.
        let (p, ct, b) = unsafe {
            (
                cstr(url_path, "url_path")?,
                cstr(content_type, "content_type")?,
                bytes(body, body_len, "body")?,
            )
        };
        if !p.starts_with('/') {
            return Err(Fail::new(
                tether_result::InvalidParameter,
                "url_path must start with '/'",
            ));
        }
        let mut r = lock(&s.routes);
        *r = std::mem::take(&mut *r).file(p, ct, b.to_vec());
        Ok(())
    })
}

/// Answer `GET url_path` with the contents of the file at `file_path` (read now) and
/// `content_type`. TETHER_RESULT_IO when it cannot be read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_add_file(
    server: *mut tether_sio_server,
    url_path: *const c_char,
    content_type: *const c_char,
    file_path: *const c_char,
) -> tether_result {
    with_server(server, |s| {
        // SAFETY: NUL-terminated strings.
        let (p, ct, fp) = unsafe {
            (
                cstr(url_path, "url_path")?,
                cstr(content_type, "content_type")?,
                cstr(file_path, "file_path")?,
            )
        };
        if !p.starts_with('/') {
            return Err(Fail::new(
                tether_result::InvalidParameter,
                "url_path must start with '/'",
            ));
        }
        let body =
            std::fs::read(fp).map_err(|e| Fail::new(tether_result::Io, format!("{fp}: {e}")))?;
        let mut r = lock(&s.routes);
        *r = std::mem::take(&mut *r).file(p, ct, body);
        Ok(())
    })
}

/// Listen on `address` ("127.0.0.1:3000"; port 0 picks a free port) and write the
/// bound port to `port_out` (may be NULL). Blocks until the socket is bound.
/// TETHER_RESULT_IO when it cannot bind. May be called more than once (several
/// listeners share the server).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_listen(
    server: *mut tether_sio_server,
    address: *const c_char,
    port_out: *mut u16,
) -> tether_result {
    with_server(server, |s| {
        // SAFETY: a NUL-terminated string.
        let addr = unsafe { cstr(address, "address") }?.to_owned();
        let mut routes = lock(&s.routes).clone();
        if let Some(t) = &s.tls {
            routes = routes.tls(t.clone());
        }
        let engine = s
            .engine
            .get_or_init(|| Engine::new(s.engine_config.clone(), s.io.engine_handler()))
            .clone();
        if s.serve_client {
            routes = routes.file(
                format!("{}socket.io.js", s.engine_config.path),
                "application/javascript; charset=utf-8",
                tether_core::sio::BROWSER_CLIENT_JS,
            );
        }
        let handle =
            s.rt.block_on(
                async move { serve(engine, addr.as_str(), routes).await },
                Duration::from_secs(30),
            )?
            .map_err(|e| Fail::new(tether_result::Io, format!("listen: {e}")))?;
        let port = handle.local_addr().port();
        if s.is_closed() {
            handle.shutdown();
            return Err(Fail::new(tether_result::ShutDown, "the server is closed"));
        }
        lock(&s.handles).push(handle);
        if let Some(a) = s.redis.clone() {
            let ready = async move { a.ready(Duration::from_secs(5)).await };
            s.rt.block_on(ready, Duration::from_secs(6))?
                .map_err(|e| adapter_error(e, tether_result::ConnectFailed))?;
        }
        if !port_out.is_null() {
            // SAFETY: non-NULL out-parameter.
            unsafe { *port_out = port };
        }
        Ok(())
    })
}

macro_rules! require_cb {
    ($cb:expr) => {
        match $cb {
            Some(f) => f,
            None => return Err(Fail::null("callback")),
        }
    };
}

/// Set the connection callback of namespace `nsp` (NULL: "/"), replacing an earlier one
/// (whose userdata_free then runs).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_on_connection(
    server: *mut tether_sio_server,
    nsp: *const c_char,
    callback: tether_sio_connection_cb,
    userdata: *mut c_void,
    userdata_free: tether_free_cb,
) -> tether_result {
    let ud = Userdata::new(userdata, userdata_free);
    with_server(server, |s| {
        let f = require_cb!(callback);
        // SAFETY: NULL or a NUL-terminated string.
        let n = norm_nsp(unsafe { opt_cstr(nsp, "nsp") }?);
        *write(&s.ns(&n).connection) = Some(Cb::new(f, ud));
        Ok(())
    })
}

/// Set the handler of event `event` in namespace `nsp` (NULL: "/") for every socket,
/// present and future, replacing an earlier one.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_on(
    server: *mut tether_sio_server,
    nsp: *const c_char,
    event: *const c_char,
    callback: tether_sio_event_cb,
    userdata: *mut c_void,
    userdata_free: tether_free_cb,
) -> tether_result {
    let ud = Userdata::new(userdata, userdata_free);
    with_server(server, |s| {
        let f = require_cb!(callback);
        // SAFETY: NUL-terminated strings.
        let (n, e) = unsafe { (norm_nsp(opt_cstr(nsp, "nsp")?), cstr(event, "event")?) };
        let cbs = s.ns(&n);
        write(&cbs.events).insert(e.to_owned(), Cb::new(f, ud));
        for so in live_sockets(&cbs) {
            install_event(&cbs, &so, e);
        }
        Ok(())
    })
}

/// Remove the handler of `event` in namespace `nsp` (its userdata_free runs once no
/// call is using it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_off(
    server: *mut tether_sio_server,
    nsp: *const c_char,
    event: *const c_char,
) -> tether_result {
    with_server(server, |s| {
        // SAFETY: NUL-terminated strings.
        let (n, e) = unsafe { (norm_nsp(opt_cstr(nsp, "nsp")?), cstr(event, "event")?) };
        write(&s.ns(&n).events).remove(e);
        Ok(())
    })
}

/// Set the catch-all of namespace `nsp`: it sees every incoming event, before the
/// event's own handler (which also runs). Replaces an earlier one.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_on_any(
    server: *mut tether_sio_server,
    nsp: *const c_char,
    callback: tether_sio_event_cb,
    userdata: *mut c_void,
    userdata_free: tether_free_cb,
) -> tether_result {
    let ud = Userdata::new(userdata, userdata_free);
    with_server(server, |s| {
        let f = require_cb!(callback);
        // SAFETY: NULL or a NUL-terminated string.
        let n = norm_nsp(unsafe { opt_cstr(nsp, "nsp") }?);
        let cbs = s.ns(&n);
        *write(&cbs.any) = Some(Cb::new(f, ud));
        for so in live_sockets(&cbs) {
            install_any(&cbs, &so);
        }
        Ok(())
    })
}

/// Set the disconnect callback of namespace `nsp`, replacing an earlier one.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_on_disconnect(
    server: *mut tether_sio_server,
    nsp: *const c_char,
    callback: tether_sio_disconnect_cb,
    userdata: *mut c_void,
    userdata_free: tether_free_cb,
) -> tether_result {
    let ud = Userdata::new(userdata, userdata_free);
    with_server(server, |s| {
        let f = require_cb!(callback);
        // SAFETY: NULL or a NUL-terminated string.
        let n = norm_nsp(unsafe { opt_cstr(nsp, "nsp") }?);
        *write(&s.ns(&n).disconnect) = Some(Cb::new(f, ud));
        Ok(())
    })
}

/// Set the connect-request callback of namespace `nsp` (the auth decision, which may
/// answer later), replacing an earlier one. Without one, every socket is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_on_connect_request(
    server: *mut tether_sio_server,
    nsp: *const c_char,
    callback: tether_sio_connect_request_cb,
    userdata: *mut c_void,
    userdata_free: tether_free_cb,
) -> tether_result {
    let ud = Userdata::new(userdata, userdata_free);
    with_server(server, |s| {
        let f = require_cb!(callback);
        // SAFETY: NULL or a NUL-terminated string.
        let n = norm_nsp(unsafe { opt_cstr(nsp, "nsp") }?);
        s.ns(&n);
        let cb = Cb::new(f, ud);
        let rt = s.rt.clone();
        s.io.of(&n).use_deferred_middleware(move |ctx, decision| {
            let req = Arc::new(ConnReq::new(rt.clone(), ctx, decision));
            let cb = cb.clone();
            rt.deliver_fn(move || {
                // SAFETY: the C caller's callback and userdata.
                unsafe { (cb.f)(cb.ud.ptr, tether_sio_connect_request::borrow_ptr(&req)) };
                drop(req);
            });
        });
        Ok(())
    })
}

/// Who receives a server-side emit: the sockets of namespace `nsp` in any of `rooms`
/// (all of the namespace when `rooms_len` is 0), minus those in any of `except` and
/// minus the socket `except_socket` (NULL: none; give the sender's id for "everyone but
/// me"). A socket id is also a room: rooms = {id} reaches one socket. With
/// `is_volatile`, recipients whose queue is full silently miss it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tether_sio_target {
    /// Room names (NUL-terminated), or NULL when `rooms_len` is 0.
    pub rooms: *const *const c_char,
    /// Number of rooms.
    pub rooms_len: usize,
    /// Rooms to leave out, or NULL when `except_len` is 0.
    pub except: *const *const c_char,
    /// Number of rooms to leave out.
    pub except_len: usize,
    /// A socket id to leave out, or NULL.
    pub except_socket: *const c_char,
    /// Drop the message for recipients that cannot take it now.
    pub is_volatile: bool,
}

pub(crate) unsafe fn str_list<'a>(
    p: *const *const c_char,
    n: usize,
    what: &str,
) -> Result<Vec<&'a str>, Fail> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(Fail::null(what));
    }
    (0..n)
        // SAFETY: `p` holds `n` NUL-terminated strings.
        .map(|i| unsafe { cstr(*p.add(i), what) })
        .collect()
}

unsafe fn operator(
    ns: &Namespace,
    target: *const tether_sio_target,
) -> Result<BroadcastOperator, Fail> {
    // SAFETY: NULL or a valid struct.
    let Some(t) = (unsafe { target.as_ref() }) else {
        return Ok(ns.broadcast());
    };
    // SAFETY: forwarded.
    let (rooms, except, ex_sock) = unsafe {
        (
            str_list(t.rooms, t.rooms_len, "target.rooms")?,
            str_list(t.except, t.except_len, "target.except")?,
            opt_cstr(t.except_socket, "target.except_socket")?,
        )
    };
    let mut op = match ex_sock.and_then(|id| ns.get_socket(id)) {
        Some(s) => s.broadcast(),
        None => ns.broadcast(),
    };
    for r in rooms {
        op = op.to(r.to_owned());
    }
    for r in except {
        op = op.except(r.to_owned());
    }
    if t.is_volatile {
        op = op.volatile();
    }
    Ok(op)
}

pub(crate) fn check_event_name(e: &str) -> Result<(), Fail> {
    if tether_core::proto::socketio::RESERVED_EVENTS.contains(&e) {
        return Err(Fail::new(
            tether_result::InvalidParameter,
            format!("\"{e}\" is a reserved event name"),
        ));
    }
    Ok(())
}

fn emit_error(e: EmitError) -> Fail {
    match e {
        EmitError::Send(s) => send_error(s),
        EmitError::Dropped(n) => Fail::new(
            tether_result::Dropped,
            format!("{n} recipient(s) skipped: queue full"),
        ),
        EmitError::Serialize(e) => Fail::new(tether_result::InvalidJson, e.to_string()),
    }
}

/// Emit `event` to the target's sockets in namespace `nsp` (NULL: "/"; `target` NULL:
/// every socket of it). The packet is encoded once for all recipients.
/// TETHER_RESULT_DROPPED when non-volatile recipients were skipped (queue full).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_emit(
    server: *mut tether_sio_server,
    nsp: *const c_char,
    target: *const tether_sio_target,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
) -> tether_result {
    with_server(server, |s| {
        // SAFETY: as documented for each argument.
        let (n, (e, args)) = unsafe {
            (
                norm_nsp(opt_cstr(nsp, "nsp")?),
                event_args(event, args_json, args_len, bins, bins_len)?,
            )
        };
        let ns = s.io.of(&n);
        // SAFETY: NULL or a valid target.
        let op = unsafe { operator(&ns, target) }?;
        op.emit_args(e, args).map_err(emit_error)
    })
}

/// Emit `event` to the target's sockets and collect their acknowledgements:
/// `callback` runs once, when all replied or after `timeout_ms`, with the replies and
/// the number missing (see tether_sio_broadcast_ack_cb). It runs if and only if this
/// returns TETHER_RESULT_OK.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_emit_with_ack(
    server: *mut tether_sio_server,
    nsp: *const c_char,
    target: *const tether_sio_target,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
    timeout_ms: u32,
    callback: tether_sio_broadcast_ack_cb,
    userdata: *mut c_void,
) -> tether_result {
    with_server(server, |s| {
        let f = require_cb!(callback);
        // SAFETY: as documented for each argument.
        let (n, (e, args)) = unsafe {
            (
                norm_nsp(opt_cstr(nsp, "nsp")?),
                event_args(event, args_json, args_len, bins, bins_len)?,
            )
        };
        let ns = s.io.of(&n);
        // SAFETY: NULL or a valid target.
        let op = unsafe { operator(&ns, target) }?.timeout(ms(timeout_ms));
        let once = broadcast_oneshot(&s.rt, f, userdata)?;
        let _g = s.rt.handle()?.enter();
        op.emit_with_ack_cb(e, args, move |acks| once.fire(Outcome::Broadcast(acks)));
        Ok(())
    })
}

/// Number of sockets connected to namespace `nsp` (NULL: "/"); 0 for a NULL server.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_socket_count(
    server: *const tether_sio_server,
    nsp: *const c_char,
) -> usize {
    guard(|| {
        // SAFETY: NULL or handles/strings.
        let Ok(s) = (unsafe { tether_sio_server::get(server) }) else {
            return 0;
        };
        let Ok(n) = (unsafe { opt_cstr(nsp, "nsp") }) else {
            return 0;
        };
        s.io.of(&norm_nsp(n)).socket_count()
    })
}

fn close_server(s: Arc<ServerObj>) {
    if s.is_closed() {
        return;
    }
    if s.rt.is_shut_down() || Dispatcher::in_any_job() {
        // Deferred to a runtime thread (never re-entering the running callback).
        let h = s.rt.raw_handle().clone();
        h.spawn(async move { s.close() });
        return;
    }
    let s2 = s.clone();
    if s.rt
        .block_on(async move { s2.close() }, Duration::from_secs(10))
        .is_err()
    {
        s.close();
    }
}

/// Stop listening and disconnect every socket (reason "server shutting down"); their
/// disconnect callbacks run. The handle stays valid until freed; further calls return
/// TETHER_RESULT_SHUT_DOWN. From inside a callback the close is deferred to a runtime
/// thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_close(server: *mut tether_sio_server) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a server handle.
            let s = unsafe { tether_sio_server::clone_arc(server) }?;
            close_server(s);
            Ok(())
        })())
    })
}

/// Close (as tether_sio_server_close) and release the server. NULL is fine; must not be
/// called twice. Callable from the server's own callbacks: the release is deferred
/// until they return. Registration userdata is released once no callback uses it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_server_free(server: *mut tether_sio_server) {
    guard(|| {
        // SAFETY: a server handle or NULL.
        if let Ok(s) = unsafe { tether_sio_server::clone_arc(server) } {
            close_server(s);
        }
        // SAFETY: C gives its reference back.
        unsafe { tether_sio_server::release(server) }
    })
}

// ---------------------------------------------------------------------------
// Server-side socket

/// One client connected to one namespace of a tether_sio_server.
///
/// Callbacks receive a borrowed `tether_sio_socket *`, valid for the call;
/// tether_sio_socket_clone() gives a handle of your own (any thread, any time), released
/// with tether_sio_socket_free(). A handle outlives the connection: after the
/// disconnect, emits return TETHER_RESULT_NOT_CONNECTED.
pub struct tether_sio_socket {
    _private: [u8; 0],
}

impl ArcHandle for tether_sio_socket {
    type Inner = SockObj;
}

pub(crate) struct SockObj {
    rt: Runtime,
    socket: SocketRef,
    id: String,
    nsp: String,
    auth: OnceLock<String>,
    installed: Mutex<HashSet<String>>,
    any_installed: AtomicBool,
}

impl SockObj {
    fn new(rt: Runtime, socket: SocketRef) -> SockObj {
        SockObj {
            rt,
            id: nul_terminated(socket.id().to_string()),
            nsp: nul_terminated(socket.ns().name().to_string()),
            socket,
            auth: OnceLock::new(),
            installed: Mutex::new(HashSet::new()),
            any_installed: AtomicBool::new(false),
        }
    }
}

fn with_socket(
    socket: *const tether_sio_socket,
    f: impl FnOnce(&SockObj) -> Result<(), Fail>,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a socket handle.
            let s = unsafe { tether_sio_socket::get(socket) }?;
            check_rt(&s.rt)?;
            f(s)
        })())
    })
}

/// The socket id (valid as long as the handle; NUL-terminated). Empty for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_socket_id(socket: *const tether_sio_socket) -> tether_str {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_sio_socket::get(socket) } {
            Ok(s) => tether_str::from_nul(&s.id),
            Err(_) => tether_str::empty(),
        }
    })
}

/// The socket's namespace, e.g. "/" (valid as long as the handle). Empty for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_socket_namespace(
    socket: *const tether_sio_socket,
) -> tether_str {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_sio_socket::get(socket) } {
            Ok(s) => tether_str::from_nul(&s.nsp),
            Err(_) => tether_str::empty(),
        }
    })
}

/// The handshake's `auth` payload as JSON text (`{}` when none was sent), valid as long
/// as the handle. Empty for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_socket_auth(socket: *const tether_sio_socket) -> tether_str {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_sio_socket::get(socket) } {
            Ok(s) => {
                let a = s
                    .auth
                    .get_or_init(|| nul_terminated(s.socket.handshake().auth.to_string()));
                tether_str::from_nul(a)
            }
            Err(_) => tether_str::empty(),
        }
    })
}

/// Whether the socket is still connected (false for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_socket_connected(socket: *const tether_sio_socket) -> bool {
    guard(|| {
        // SAFETY: NULL or a handle.
        unsafe { tether_sio_socket::get(socket) }
            .map(|s| s.socket.connected())
            .unwrap_or(false)
    })
}

/// Emit `event` to this socket only.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_socket_emit(
    socket: *const tether_sio_socket,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
) -> tether_result {
    with_socket(socket, |s| {
        // SAFETY: as documented for each argument.
        let e = unsafe { cstr(event, "event") }?;
        check_event_name(e)?;
        // Handing back what a callback got (an echo): sent from that text, no copy.
        if let Some(r) = with_lent(args_json, args_len, bins, bins_len, |a| {
            s.socket.emit_args_ref(e, a)
        }) {
            return r.map_err(emit_error);
        }
        // SAFETY: as documented for each argument.
        let args = unsafe { parse_args(args_json, args_len, bins, bins_len) }?;
        s.socket.emit_args(e, args).map_err(emit_error)
    })
}

/// Emit `event` to this socket and wait for its acknowledgement: `callback` runs once
/// with the reply, TETHER_RESULT_TIMEOUT after `timeout_ms`, or
/// TETHER_RESULT_DISCONNECTED (see tether_sio_ack_cb). It runs if and only if this
/// returns TETHER_RESULT_OK.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_socket_emit_with_ack(
    socket: *const tether_sio_socket,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
    timeout_ms: u32,
    callback: tether_sio_ack_cb,
    userdata: *mut c_void,
) -> tether_result {
    with_socket(socket, |s| {
        let f = require_cb!(callback);
        // SAFETY: as documented for each argument.
        let (e, args) = unsafe { event_args(event, args_json, args_len, bins, bins_len) }?;
        if !s.socket.connected() {
            return Err(Fail::new(
                tether_result::NotConnected,
                "the socket is disconnected",
            ));
        }
        let once = ack_oneshot(&s.rt, f, userdata)?;
        let _g = s.rt.handle()?.enter();
        s.socket
            .emit_with_ack_cb(e, args, ms(timeout_ms), move |r| once.fire(Outcome::Ack(r)));
        Ok(())
    })
}

/// Join `room`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_socket_join(
    socket: *const tether_sio_socket,
    room: *const c_char,
) -> tether_result {
    with_socket(socket, |s| {
        // SAFETY: a NUL-terminated string.
        let r = unsafe { cstr(room, "room") }?;
        s.socket.join(r.to_owned());
        Ok(())
    })
}

/// Leave `room`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_socket_leave(
    socket: *const tether_sio_socket,
    room: *const c_char,
) -> tether_result {
    with_socket(socket, |s| {
        // SAFETY: a NUL-terminated string.
        let r = unsafe { cstr(room, "room") }?;
        s.socket.leave(r);
        Ok(())
    })
}

/// Disconnect the socket from its namespace (the client sees "io server disconnect").
/// Asynchronous: the disconnect callback runs afterwards, on the usual thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_socket_disconnect(
    socket: *const tether_sio_socket,
) -> tether_result {
    with_socket(socket, |s| {
        let sock = s.socket.clone();
        s.rt.handle()?.spawn(async move { sock.disconnect() });
        Ok(())
    })
}

/// A handle of your own to the socket (NULL for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_socket_clone(
    socket: *const tether_sio_socket,
) -> *mut tether_sio_socket {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_sio_socket::clone_arc(socket) } {
            Ok(s) => tether_sio_socket::into_ptr(s),
            Err(_) => std::ptr::null_mut(),
        }
    })
}

/// Release a handle made by tether_sio_socket_clone(). NULL is fine; must not be called
/// twice, nor on the borrowed handle a callback received.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_socket_free(socket: *mut tether_sio_socket) {
    // SAFETY: C gives its reference back.
    guard(|| unsafe { tether_sio_socket::release(socket) })
}

// ---------------------------------------------------------------------------
// Connect requests

/// A socket asking to join a namespace, waiting for tether_sio_connect_request_accept()
/// or tether_sio_connect_request_reject() (from any thread, once; the second answer
/// returns TETHER_RESULT_ALREADY_USED). The callback's handle is borrowed;
/// tether_sio_connect_request_clone() keeps it, tether_sio_connect_request_free()
/// releases it. When every handle is released unanswered, the request is refused.
pub struct tether_sio_connect_request {
    _private: [u8; 0],
}

impl ArcHandle for tether_sio_connect_request {
    type Inner = ConnReq;
}

pub(crate) struct ConnReq {
    rt: Runtime,
    decision: Mutex<Option<ConnectDecision>>,
    nsp: String,
    auth: String,
    ctx: ConnectContext,
}

impl ConnReq {
    fn new(rt: Runtime, ctx: &ConnectContext, decision: ConnectDecision) -> ConnReq {
        ConnReq {
            rt,
            decision: Mutex::new(Some(decision)),
            nsp: nul_terminated(ctx.nsp.to_string()),
            auth: nul_terminated(ctx.handshake.auth.to_string()),
            ctx: ctx.clone(),
        }
    }

    fn take(&self) -> Result<ConnectDecision, Fail> {
        lock(&self.decision).take().ok_or_else(|| {
            Fail::new(
                tether_result::AlreadyUsed,
                "this connect request was answered already",
            )
        })
    }
}

/// The namespace asked for (valid as long as the handle). Empty for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_connect_request_namespace(
    request: *const tether_sio_connect_request,
) -> tether_str {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_sio_connect_request::get(request) } {
            Ok(r) => tether_str::from_nul(&r.nsp),
            Err(_) => tether_str::empty(),
        }
    })
}

/// The CONNECT packet's `auth` payload as JSON text (`{}` when none), valid as long as
/// the handle. Empty for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_connect_request_auth(
    request: *const tether_sio_connect_request,
) -> tether_str {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_sio_connect_request::get(request) } {
            Ok(r) => tether_str::from_nul(&r.auth),
            Err(_) => tether_str::empty(),
        }
    })
}

pub(crate) fn copy_out(
    s: &str,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> Result<(), Fail> {
    if buf.is_null() {
        return Err(Fail::null("buf"));
    }
    if len == 0 {
        return Err(Fail::new(
            tether_result::BufferTooSmall,
            "buffer of 0 bytes",
        ));
    }
    let n = s.len().min(len - 1);
    // SAFETY: the caller promised `len` writable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
        if !out_n.is_null() {
            *out_n = n;
        }
    }
    if n < s.len() {
        return Err(Fail::new(
            tether_result::BufferTooSmall,
            format!("{} bytes needed", s.len() + 1),
        ));
    }
    Ok(())
}

/// Copy the handshake's query parameter `key` (percent-decoded) into `buf` (`len`
/// bytes, NUL-terminated); `*out_n` gets its length. A missing parameter reads as "".
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_connect_request_query(
    request: *const tether_sio_connect_request,
    key: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a handle and a NUL-terminated string.
            let (r, k) = unsafe { (tether_sio_connect_request::get(request)?, cstr(key, "key")?) };
            let v = r.ctx.handshake.query(k).unwrap_or_default();
            copy_out(&v, buf, len, out_n)
        })())
    })
}

/// Copy the handshake's header `name` into `buf` like tether_sio_connect_request_query().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_connect_request_header(
    request: *const tether_sio_connect_request,
    name: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a handle and a NUL-terminated string.
            let (r, k) = unsafe {
                (
                    tether_sio_connect_request::get(request)?,
                    cstr(name, "name")?,
                )
            };
            let v = r.ctx.handshake.header(k).unwrap_or_default().to_owned();
            copy_out(&v, buf, len, out_n)
        })())
    })
}

/// Let the socket in: the client is told it is connected, then the namespace's
/// connection callback runs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_connect_request_accept(
    request: *const tether_sio_connect_request,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a handle.
            let r = unsafe { tether_sio_connect_request::get(request) }?;
            r.rt.check()?;
            let d = r.take()?;
            r.rt.raw_handle().spawn(async move { d.accept() });
            Ok(())
        })())
    })
}

/// Refuse: the client gets a connect_error with `message` and, when `data_json` is not
/// NULL, that JSON value as its data.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_connect_request_reject(
    request: *const tether_sio_connect_request,
    message: *const c_char,
    data_json: *const c_char,
    data_len: usize,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a handle and a NUL-terminated string.
            let (r, m) = unsafe {
                (
                    tether_sio_connect_request::get(request)?,
                    cstr(message, "message")?,
                )
            };
            let data: Option<Value> = if data_json.is_null() {
                None
            } else {
                // SAFETY: `data_len` readable bytes.
                Some(unsafe { json_value(data_json, data_len, "data_json") }?)
            };
            r.rt.check()?;
            let d = r.take()?;
            let mut err = ConnectError::new(m);
            if let Some(v) = data {
                err = err.with_data(v);
            }
            r.rt.raw_handle().spawn(async move { d.reject(err) });
            Ok(())
        })())
    })
}

/// A handle of your own to the request, to answer after the callback returned (NULL for
/// NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_connect_request_clone(
    request: *const tether_sio_connect_request,
) -> *mut tether_sio_connect_request {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_sio_connect_request::clone_arc(request) } {
            Ok(r) => tether_sio_connect_request::into_ptr(r),
            Err(_) => std::ptr::null_mut(),
        }
    })
}

/// Release a handle made by tether_sio_connect_request_clone() (the last one unanswered
/// refuses the request). NULL is fine; must not be called twice.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_sio_connect_request_free(request: *mut tether_sio_connect_request) {
    // SAFETY: C gives its reference back.
    guard(|| unsafe { tether_sio_connect_request::release(request) })
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<ServerObj>();
    is::<SockObj>();
    is::<ConnReq>();
    is::<tether_sio_ack_cb>();
}
