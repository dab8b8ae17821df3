//! Plain WebSocket (RFC 6455): `tether_ws_config`, `tether_ws_server`,
//! `tether_ws_client` and the connection both hand out, `tether_ws_conn`.

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tether_core::dispatch::Dispatcher;
use tether_core::runtime::{Closable, Registration, Runtime};
use tether_core::tls::ServerTls;
use tether_core::ws::{
    CloseInfo, WsClient, WsConfig, WsConn, WsConnectError, WsMessage, WsSendError,
};
use tether_core::{Routes, ServerHandle};

use crate::error::{Fail, guard, result, tether_result};
use crate::runtime::tether_runtime;
use crate::server::copy_out;
use crate::tls::{ClientTrust, server_tls_files, server_tls_pem};
use crate::util::{
    ArcHandle, BoxHandle, Userdata, bytes, check_rt, cstr, lock, ms, nul_terminated, opt_cstr,
    tether_free_cb, tether_str,
};

// ---------------------------------------------------------------------------
// Config

/// WebSocket options for a server or a client. Make with tether_ws_config_new(), set,
/// pass to tether_ws_server_new() / tether_ws_client_new() (which copy them), free with
/// tether_ws_config_free(). Defaults: path "/", any origin, no subprotocol, messages
/// and frames up to 16 MiB, send queue 1024 messages (high water 768), no keep-alive
/// pings, handshake timeout 10 s, clients trust the Mozilla roots.
/// Server-only settings (path, origins, certificate) are ignored by clients and the
/// client-only ones (CA, danger_accept_invalid_certs, handshake timeout) by servers.
pub struct tether_ws_config {
    _private: [u8; 0],
}

#[derive(Clone)]
pub(crate) struct WsCfg {
    ws: WsConfig,
    path: String,
    server_tls: Option<ServerTls>,
    trust: ClientTrust,
}

impl Default for WsCfg {
    fn default() -> Self {
        WsCfg {
            ws: WsConfig::default(),
            path: "/".to_owned(),
            server_tls: None,
            trust: ClientTrust::default(),
        }
    }
}

impl BoxHandle for tether_ws_config {
    type Inner = WsCfg;
}

/// Make a WebSocket configuration with the defaults.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_new(
    config_out: *mut *mut tether_ws_config,
) -> tether_result {
    tether_ws_config::new_default_into(config_out)
}

fn with_config(
    config: *mut tether_ws_config,
    f: impl FnOnce(&mut WsCfg) -> Result<(), Fail>,
) -> tether_result {
    tether_ws_config::with_mut(config, f)
}

fn invalid(msg: impl Into<String>) -> Fail {
    Fail::new(tether_result::InvalidParameter, msg)
}

/// Server: the request path of the endpoint (default "/"; must start with '/').
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_set_path(
    config: *mut tether_ws_config,
    path: *const c_char,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: a NUL-terminated string.
        let p = unsafe { cstr(path, "path") }?;
        if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
            return Err(invalid(
                "path must start with '/' and hold no '?', '#' or space",
            ));
        }
        c.path = p.to_owned();
        Ok(())
    })
}

/// Server: allow connections whose `Origin` header is exactly `origin`. May be called
/// several times; once called, requests from other origins (or with none) are refused
/// with HTTP 403. Default: every origin.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_add_allowed_origin(
    config: *mut tether_ws_config,
    origin: *const c_char,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: a NUL-terminated string.
        let o = unsafe { cstr(origin, "origin") }?;
        if o.is_empty() || o.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            return Err(invalid("invalid origin"));
        }
        c.ws.allowed_origins
            .get_or_insert_with(Vec::new)
            .push(o.to_owned());
        Ok(())
    })
}

/// A subprotocol, in order of preference (server: the first one the client also offers
/// is chosen; client: offered in `Sec-WebSocket-Protocol`, and the server must pick one
/// of them). May be called several times.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_add_subprotocol(
    config: *mut tether_ws_config,
    protocol: *const c_char,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: a NUL-terminated string.
        let p = unsafe { cstr(protocol, "protocol") }?;
        if p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(invalid(format!("invalid subprotocol {p:?}")));
        }
        c.ws.subprotocols.push(p.to_owned());
        Ok(())
    })
}

/// Add a header: on the server's 101 response, or on the client's upgrade request.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_add_header(
    config: *mut tether_ws_config,
    name: *const c_char,
    value: *const c_char,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: NUL-terminated strings.
        let (n, v) = unsafe { (cstr(name, "name")?, cstr(value, "value")?) };
        if crate::client::http_name_invalid(n) || v.chars().any(|ch| ch.is_control() && ch != '\t')
        {
            return Err(invalid(format!("invalid header {n}")));
        }
        c.ws.headers.push((n.to_owned(), v.to_owned()));
        Ok(())
    })
}

/// Largest message in bytes, after reassembling fragments (default 16 MiB; at least
/// 125). A frame is limited to the same size. A bigger incoming message closes the
/// connection with code 1009.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_set_max_message_size(
    config: *mut tether_ws_config,
    bytes: usize,
) -> tether_result {
    with_config(config, |c| {
        if bytes < 125 {
            return Err(invalid("max message size must be at least 125 bytes"));
        }
        c.ws.max_message_size = bytes;
        c.ws.max_frame_size = bytes;
        Ok(())
    })
}

/// Send a ping every `interval_ms` and close the connection (on_close with code 1006,
/// reason "keepalive timeout") when nothing arrives for two intervals. 0 turns it off
/// (the default).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_set_keepalive(
    config: *mut tether_ws_config,
    interval_ms: u32,
) -> tether_result {
    with_config(config, |c| {
        c.ws.keepalive = (interval_ms > 0).then(|| ms(interval_ms));
        Ok(())
    })
}

/// The send queue of each connection: at most `capacity` messages (default 1024; a
/// send beyond returns TETHER_RESULT_QUEUE_FULL), and on_high_water runs when it
/// reaches `high_water` messages (default 768; 1 <= high_water <= capacity).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_set_send_queue(
    config: *mut tether_ws_config,
    capacity: usize,
    high_water: usize,
) -> tether_result {
    with_config(config, |c| {
        if capacity == 0 || high_water == 0 || high_water > capacity || capacity > 1 << 24 {
            return Err(invalid(
                "need 1 <= high_water <= capacity <= 16777216 messages",
            ));
        }
        c.ws.send_queue = capacity;
        c.ws.high_water = high_water;
        Ok(())
    })
}

/// Client: time allowed for TCP, TLS and the upgrade, in ms (default 10000; at least 1).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_set_handshake_timeout(
    config: *mut tether_ws_config,
    timeout_ms: u32,
) -> tether_result {
    with_config(config, |c| {
        if timeout_ms == 0 {
            return Err(invalid("handshake timeout is 0"));
        }
        c.ws.handshake_timeout = ms(timeout_ms);
        Ok(())
    })
}

/// Server: serve `wss://` with this certificate chain (PEM, leaf first) and private key
/// (PEM), parsed now. TETHER_RESULT_INVALID_PARAMETER when they are not usable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_set_tls_pem(
    config: *mut tether_ws_config,
    cert_pem: *const u8,
    cert_len: usize,
    key_pem: *const u8,
    key_len: usize,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: readable buffers of these lengths.
        c.server_tls = Some(unsafe { server_tls_pem(cert_pem, cert_len, key_pem, key_len) }?);
        Ok(())
    })
}

/// Server: as tether_ws_config_set_tls_pem(), reading PEM files now
/// (TETHER_RESULT_IO when one cannot be read).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_set_tls_files(
    config: *mut tether_ws_config,
    cert_path: *const c_char,
    key_path: *const c_char,
) -> tether_result {
    with_config(config, |c| {
        // SAFETY: NUL-terminated strings.
        c.server_tls = Some(unsafe { server_tls_files(cert_path, key_path) }?);
        Ok(())
    })
}

/// Client: trust the CA certificates in `ca_pem` for `wss://`, beside the Mozilla
/// roots (parsed now; may be called several times).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_add_ca_pem(
    config: *mut tether_ws_config,
    ca_pem: *const u8,
    ca_len: usize,
) -> tether_result {
    // SAFETY: a readable buffer.
    with_config(config, |c| unsafe { c.trust.add_ca_pem(ca_pem, ca_len) })
}

/// Client: as tether_ws_config_add_ca_pem(), reading a PEM file now.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_add_ca_file(
    config: *mut tether_ws_config,
    ca_path: *const c_char,
) -> tether_result {
    // SAFETY: a NUL-terminated string.
    with_config(config, |c| unsafe { c.trust.add_ca_file(ca_path) })
}

/// Client, **DANGER, development only**: with `accept` true, accept any certificate
/// for any host (encrypted, not authenticated: anyone on the path can read and change
/// the traffic). Never ship this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_danger_accept_invalid_certs(
    config: *mut tether_ws_config,
    accept: bool,
) -> tether_result {
    with_config(config, |c| {
        c.trust.danger_accept_invalid_certs(accept);
        Ok(())
    })
}

/// Release a configuration. NULL is fine; must not be called twice.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_config_free(config: *mut tether_ws_config) {
    // SAFETY: C gives the box back.
    guard(|| unsafe { tether_ws_config::release(config) })
}

// ---------------------------------------------------------------------------
// Callbacks

/// The callbacks of a WebSocket server or client, with one userdata shared by all of
/// them. Every member may be NULL (that event is ignored). `conn` is borrowed for the
/// call: tether_ws_conn_clone() keeps it. Bytes and strings are borrowed for the call.
///
/// Threads: as the runtime's tether_delivery says (runtime threads, or inside
/// tether_runtime_dispatch()). For one connection they never run concurrently and come
/// in order: on_open first, then on_message / on_high_water, on_close last (exactly
/// once). Inside a callback every function may be called (send, close, free), except a
/// tether_ws_client_connect() with a timeout.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tether_ws_callbacks {
    /// A connection is open (server: accepted; client: connected).
    pub on_open: Option<unsafe extern "C" fn(userdata: *mut c_void, conn: *mut tether_ws_conn)>,
    /// A message arrived: `binary` false for a text message (`data` is UTF-8, not
    /// NUL-terminated), true for a binary one. `data` may be NULL when `len` is 0.
    pub on_message: Option<
        unsafe extern "C" fn(
            userdata: *mut c_void,
            conn: *mut tether_ws_conn,
            binary: bool,
            data: *const u8,
            len: usize,
        ),
    >,
    /// The connection closed: the close code and reason (the peer's when `by_peer`;
    /// 1005 when its frame had no code, 1006 when the link broke without a close
    /// frame), the last callback of the connection.
    pub on_close: Option<
        unsafe extern "C" fn(
            userdata: *mut c_void,
            conn: *mut tether_ws_conn,
            code: u16,
            reason: tether_str,
            by_peer: bool,
        ),
    >,
    /// The send queue reached the high-water mark (`queued` messages waiting): slow
    /// down, or close. Once per crossing. It may run on the thread that called
    /// tether_ws_conn_send_* (inside that call).
    pub on_high_water: Option<
        unsafe extern "C" fn(userdata: *mut c_void, conn: *mut tether_ws_conn, queued: usize),
    >,
    /// Client: a connection started by tether_ws_client_connect() with timeout 0 failed
    /// (`status`: TETHER_RESULT_CONNECT_FAILED, TETHER_RESULT_CONNECT_REFUSED,
    /// TETHER_RESULT_TIMEOUT, TETHER_RESULT_INVALID_PARAMETER), with a message.
    pub on_connect_error: Option<
        unsafe extern "C" fn(userdata: *mut c_void, status: tether_result, message: tether_str),
    >,
    /// Passed first to every callback.
    pub userdata: *mut c_void,
    /// Runs once, when the server or client and all its connections are released.
    pub userdata_free: tether_free_cb,
}

struct Handlers {
    c: tether_ws_callbacks,
    ud: Userdata,
}

// SAFETY: `c` holds function pointers and the userdata pointer; the C caller promised,
// by registering them, that they may be used from the threads the header documents.
unsafe impl Send for Handlers {}
// SAFETY: as above.
unsafe impl Sync for Handlers {}

impl Handlers {
    /// From C (NULL: no callbacks). The userdata is owned from here on.
    unsafe fn new(cbs: *const tether_ws_callbacks) -> Arc<Handlers> {
        // SAFETY: NULL or a valid struct.
        let c = unsafe { cbs.as_ref() }
            .copied()
            .unwrap_or(tether_ws_callbacks {
                on_open: None,
                on_message: None,
                on_close: None,
                on_high_water: None,
                on_connect_error: None,
                userdata: std::ptr::null_mut(),
                userdata_free: None,
            });
        Arc::new(Handlers {
            ud: Userdata::new(c.userdata, c.userdata_free),
            c,
        })
    }
}

// ---------------------------------------------------------------------------
// Connections

/// One WebSocket connection, server- or client-side.
///
/// Callbacks receive a borrowed `tether_ws_conn *` valid for the call;
/// tether_ws_conn_clone() gives a handle of your own (released with
/// tether_ws_conn_free()), and tether_ws_client_connect() hands one out. A handle
/// outlives the connection: after the close, sends return TETHER_RESULT_NOT_CONNECTED.
pub struct tether_ws_conn {
    _private: [u8; 0],
}

impl ArcHandle for tether_ws_conn {
    type Inner = ConnObj;
}

pub(crate) struct ConnObj {
    rt: Runtime,
    conn: WsConn,
    protocol: String,
    cbs: Arc<Handlers>,
    /// Whether on_open was handed to the dispatcher. Held while a callback of this
    /// connection is handed over, so that they keep their order.
    opened: Mutex<bool>,
}

impl ConnObj {
    fn new(rt: Runtime, conn: WsConn, cbs: Arc<Handlers>) -> Arc<ConnObj> {
        Arc::new(ConnObj {
            rt,
            protocol: nul_terminated(conn.protocol().unwrap_or_default().to_owned()),
            conn,
            cbs,
            opened: Mutex::new(false),
        })
    }

    /// Hand on_open over, once, while holding the order gate.
    fn open_locked(self: &Arc<Self>, opened: &mut bool) {
        if std::mem::replace(opened, true) {
            return;
        }
        if let Some(f) = self.cbs.c.on_open {
            let me = self.clone();
            self.rt.deliver_fn(move || {
                // SAFETY: the C caller's callback and userdata.
                unsafe { f(me.cbs.ud.ptr, tether_ws_conn::borrow_ptr(&me)) }
            });
        }
    }

    fn open(self: &Arc<Self>) {
        let mut g = lock(&self.opened);
        self.open_locked(&mut g);
    }

    fn message(self: &Arc<Self>, msg: WsMessage) {
        let mut g = lock(&self.opened);
        self.open_locked(&mut g);
        let Some(f) = self.cbs.c.on_message else {
            return;
        };
        let me = self.clone();
        self.rt.deliver_fn(move || {
            let (binary, data) = match &msg {
                WsMessage::Text(t) => (false, t.as_bytes()),
                WsMessage::Binary(b) => (true, &b[..]),
            };
            // SAFETY: the C caller's callback and userdata; `data` lives until after it.
            unsafe {
                f(
                    me.cbs.ud.ptr,
                    tether_ws_conn::borrow_ptr(&me),
                    binary,
                    data.as_ptr(),
                    data.len(),
                )
            }
        });
    }

    fn closed(self: &Arc<Self>, info: &CloseInfo, owner: &Weak<Owner>) {
        {
            let mut g = lock(&self.opened);
            self.open_locked(&mut g);
            if let Some(f) = self.cbs.c.on_close {
                let me = self.clone();
                let (code, by_peer) = (info.code, info.by_peer);
                let reason = nul_terminated(info.reason.clone());
                self.rt.deliver_fn(move || {
                    // SAFETY: the C caller's callback and userdata.
                    unsafe {
                        f(
                            me.cbs.ud.ptr,
                            tether_ws_conn::borrow_ptr(&me),
                            code,
                            tether_str::from_nul(&reason),
                            by_peer,
                        )
                    }
                });
            }
        }
        if let Some(o) = owner.upgrade() {
            lock(&o.conns).remove(&self.conn.id());
        }
    }

    fn high_water(self: &Arc<Self>, queued: usize) {
        if let Some(f) = self.cbs.c.on_high_water {
            let me = self.clone();
            crate::server::deliver_from_anywhere(
                &self.rt,
                Box::new(move || {
                    // SAFETY: the C caller's callback and userdata.
                    unsafe { f(me.cbs.ud.ptr, tether_ws_conn::borrow_ptr(&me), queued) }
                }),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Owner: what a server and a client share

/// A WebSocket server on a runtime: listens, accepts connections at its path, runs the
/// tether_ws_callbacks given to tether_ws_server_new() (see there for threads).
/// tether_ws_server_close() (or the runtime's shutdown) stops listening and closes
/// every connection with code 1001; each gets its on_close.
pub struct tether_ws_server {
    _private: [u8; 0],
}

impl ArcHandle for tether_ws_server {
    type Inner = Owner;
}

/// A WebSocket client on a runtime: opens connections with tether_ws_client_connect(),
/// each running the tether_ws_callbacks given to tether_ws_client_new().
/// tether_ws_client_close() (or the runtime's shutdown) closes every connection it
/// opened with code 1001.
pub struct tether_ws_client {
    _private: [u8; 0],
}

impl ArcHandle for tether_ws_client {
    type Inner = Owner;
}

pub(crate) struct Owner {
    rt: Runtime,
    cfg: WsCfg,
    cbs: Arc<Handlers>,
    conns: Mutex<HashMap<u64, Arc<ConnObj>>>,
    handles: Mutex<Vec<ServerHandle>>,
    closed: AtomicBool,
    reg: Mutex<Option<Registration>>,
}

impl Closable for Owner {
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for h in lock(&self.handles).drain(..) {
            h.shutdown();
        }
        let conns: Vec<Arc<ConnObj>> = lock(&self.conns).values().cloned().collect();
        for c in conns {
            c.conn.close(1001, "going away");
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) && lock(&self.conns).is_empty()
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.close();
    }
}

impl Owner {
    unsafe fn create(
        runtime: *mut tether_runtime,
        config: *const tether_ws_config,
        callbacks: *const tether_ws_callbacks,
    ) -> Result<Arc<Owner>, Fail> {
        // First: from here on the userdata is ours (released on every path).
        // SAFETY: NULL or a valid struct.
        let cbs = unsafe { Handlers::new(callbacks) };
        // SAFETY: a runtime handle.
        let rt = unsafe { tether_runtime::get(runtime) }?;
        rt.rt.check()?;
        let cfg = if config.is_null() {
            WsCfg::default()
        } else {
            // SAFETY: a config handle.
            unsafe { tether_ws_config::get(config) }?.clone()
        };
        let o = Arc::new(Owner {
            rt: rt.rt.clone(),
            cfg,
            cbs,
            conns: Mutex::new(HashMap::new()),
            handles: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            reg: Mutex::new(None),
        });
        let reg = rt.rt.register(Arc::downgrade(&o) as Weak<dyn Closable>)?;
        *lock(&o.reg) = Some(reg);
        Ok(o)
    }

    fn check(&self) -> Result<(), Fail> {
        self.rt.check()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Fail::new(tether_result::ShutDown, "closed"));
        }
        Ok(())
    }

    /// Track a new connection and give it its high-water handler; a connection that
    /// arrives after the close is closed at once.
    fn adopt(self: &Arc<Self>, obj: &Arc<ConnObj>) {
        lock(&self.conns).insert(obj.conn.id(), obj.clone());
        if obj.conn.is_closed() {
            // Its close handler may have run before the insert.
            lock(&self.conns).remove(&obj.conn.id());
        }
        let weak = Arc::downgrade(obj);
        obj.conn.on_high_water(move |_, n| {
            if let Some(o) = weak.upgrade() {
                o.high_water(n);
            }
        });
        if self.closed.load(Ordering::Acquire) {
            obj.conn.close(1001, "going away");
        }
    }

    /// Close from any thread, a callback included (nothing here blocks).
    fn close_now(&self) {
        self.close();
    }
}

fn with_owner<H: ArcHandle<Inner = Owner>>(
    p: *const H,
    f: impl FnOnce(&Arc<Owner>) -> Result<(), Fail>,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a handle of this type.
            let o = unsafe { H::clone_arc(p) }?;
            o.check()?;
            f(&o)
        })())
    })
}

// ---------------------------------------------------------------------------
// Server

/// Make a WebSocket server on `runtime`. `config` may be NULL for the defaults (it is
/// copied); `callbacks` may be NULL (it is copied; its userdata is owned by the server
/// from here on, even when this fails: then userdata_free runs before it returns).
/// Nothing listens until tether_ws_server_listen().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_server_new(
    runtime: *mut tether_runtime,
    config: *const tether_ws_config,
    callbacks: *const tether_ws_callbacks,
    server_out: *mut *mut tether_ws_server,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: as documented.
            let o = unsafe { Owner::create(runtime, config, callbacks) }?;
            if server_out.is_null() {
                return Err(Fail::null("server_out"));
            }
            // SAFETY: checked non-NULL.
            unsafe { *server_out = tether_ws_server::into_ptr(o) };
            Ok(())
        })())
    })
}

/// Listen on `address` ("127.0.0.1:9001"; port 0 picks a free port), serving the
/// endpoint at the configured path (over TLS when the config has a certificate), and
/// write the bound port to `port_out` (may be NULL). Blocks until bound.
/// TETHER_RESULT_IO when it cannot bind. May be called more than once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_server_listen(
    server: *mut tether_ws_server,
    address: *const c_char,
    port_out: *mut u16,
) -> tether_result {
    with_owner(server, |o| {
        // SAFETY: a NUL-terminated string.
        let addr = unsafe { cstr(address, "address") }?.to_owned();
        let weak = Arc::downgrade(o);
        let endpoint = tether_core::ws::WsServer::with_config(o.cfg.ws.clone(), move |conn| {
            let Some(owner) = weak.upgrade() else {
                conn.close(1001, "going away");
                return;
            };
            let obj = ConnObj::new(owner.rt.clone(), conn.clone(), owner.cbs.clone());
            install(&obj, &conn, Arc::downgrade(&owner));
            owner.adopt(&obj);
            obj.open();
        });
        let mut routes = Routes::new().websocket(o.cfg.path.clone(), endpoint);
        if let Some(t) = &o.cfg.server_tls {
            routes = routes.tls(t.clone());
        }
        let handle = o
            .rt
            .block_on(
                async move { tether_core::transport::http::serve_routes(addr.as_str(), routes).await },
                Duration::from_secs(30),
            )?
            .map_err(|e| Fail::new(tether_result::Io, format!("listen: {e}")))?;
        let port = handle.local_addr().port();
        if o.closed.load(Ordering::Acquire) {
            handle.shutdown();
            return Err(Fail::new(tether_result::ShutDown, "the server is closed"));
        }
        lock(&o.handles).push(handle);
        if !port_out.is_null() {
            // SAFETY: non-NULL out-parameter.
            unsafe { *port_out = port };
        }
        Ok(())
    })
}

/// Give a connection its message and close handlers.
fn install(obj: &Arc<ConnObj>, conn: &WsConn, owner: Weak<Owner>) {
    let me = obj.clone();
    conn.on_message(move |_, msg| me.message(msg));
    let me = obj.clone();
    conn.on_close(move |_, info| me.closed(info, &owner));
}

/// Number of open connections of the server (0 for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_server_connection_count(
    server: *const tether_ws_server,
) -> usize {
    guard(|| {
        // SAFETY: NULL or a handle.
        unsafe { tether_ws_server::get(server) }
            .map(|o| lock(&o.conns).len())
            .unwrap_or(0)
    })
}

/// Stop listening and close every connection (code 1001 "going away"); their on_close
/// callbacks follow. The handle stays valid until freed; further calls return
/// TETHER_RESULT_SHUT_DOWN. Does not block; callable from a callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_server_close(server: *mut tether_ws_server) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a server handle.
            let o = unsafe { tether_ws_server::get(server) }?;
            o.close_now();
            Ok(())
        })())
    })
}

/// Close (as tether_ws_server_close) and release the server. NULL is fine; must not be
/// called twice. Callable from its own callbacks. The callbacks' userdata_free runs
/// once the last connection is released.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_server_free(server: *mut tether_ws_server) {
    guard(|| {
        // SAFETY: NULL or a handle.
        if let Ok(o) = unsafe { tether_ws_server::get(server) } {
            o.close_now();
        }
        // SAFETY: C gives its reference back.
        unsafe { tether_ws_server::release(server) }
    })
}

// ---------------------------------------------------------------------------
// Client

/// Make a WebSocket client on `runtime`. `config` and `callbacks` as for
/// tether_ws_server_new().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_client_new(
    runtime: *mut tether_runtime,
    config: *const tether_ws_config,
    callbacks: *const tether_ws_callbacks,
    client_out: *mut *mut tether_ws_client,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: as documented.
            let o = unsafe { Owner::create(runtime, config, callbacks) }?;
            o.cfg.trust.build()?;
            if client_out.is_null() {
                return Err(Fail::null("client_out"));
            }
            // SAFETY: checked non-NULL.
            unsafe { *client_out = tether_ws_client::into_ptr(o) };
            Ok(())
        })())
    })
}

fn connect_error(e: WsConnectError) -> Fail {
    let code = match &e {
        WsConnectError::InvalidUrl(_) => tether_result::InvalidParameter,
        WsConnectError::Io(_) | WsConnectError::Subprotocol(_) => tether_result::ConnectFailed,
        WsConnectError::Refused(_) => tether_result::ConnectRefused,
        WsConnectError::Timeout => tether_result::Timeout,
    };
    Fail::new(code, e.to_string())
}

/// Connect one connection of `o` to `url`; on success on_open is handed over (on this
/// task, so that it precedes every message).
async fn connect(o: Arc<Owner>, url: String, limit: Duration) -> Result<Arc<ConnObj>, Fail> {
    let mut cfg = o.cfg.ws.clone();
    if let Some(t) = o.cfg.trust.build()? {
        cfg.tls = t;
    }
    let slot: Arc<OnceLock<Arc<ConnObj>>> = Arc::new(OnceLock::new());
    let (rt, cbs) = (o.rt.clone(), o.cbs.clone());
    let obj_of = move |slot: &OnceLock<Arc<ConnObj>>, c: &WsConn| {
        slot.get_or_init(|| ConnObj::new(rt.clone(), c.clone(), cbs.clone()))
            .clone()
    };
    let owner = Arc::downgrade(&o);
    let (s1, s2, f1) = (slot.clone(), slot.clone(), obj_of.clone());
    let client = WsClient::with_config(cfg)
        .on_message(move |c, msg| f1(&s1, c).message(msg))
        .on_close(move |c, info| obj_of(&s2, c).closed(info, &owner));
    let conn = match tokio::time::timeout(limit, client.connect(&url)).await {
        Ok(r) => r.map_err(connect_error)?,
        Err(_) => return Err(Fail::new(tether_result::Timeout, "connect timed out")),
    };
    let obj = slot
        .get_or_init(|| ConnObj::new(o.rt.clone(), conn.clone(), o.cbs.clone()))
        .clone();
    o.adopt(&obj);
    obj.open();
    Ok(obj)
}

/// Connect to `url` (`ws://` or `wss://host[:port]/path[?query]`).
///
/// With `timeout_ms` > 0 it waits, at most that long: TETHER_RESULT_OK and, when
/// `conn_out` is not NULL, a handle of your own to the connection (release it with
/// tether_ws_conn_free()); or TETHER_RESULT_CONNECT_FAILED (TCP, TLS: e.g. a
/// certificate that the configured CAs do not vouch for, the reason in the last
/// error), TETHER_RESULT_CONNECT_REFUSED (the server answered the upgrade with an HTTP
/// error), TETHER_RESULT_TIMEOUT, TETHER_RESULT_INVALID_PARAMETER (the URL). Waiting is
/// not allowed inside a callback (TETHER_RESULT_WRONG_THREAD).
///
/// With `timeout_ms` 0 it returns at once (`conn_out` must be NULL); the outcome
/// arrives as on_open or on_connect_error (after the configured handshake timeout at
/// the latest). Either way on_open runs before the connection's first on_message.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_client_connect(
    client: *mut tether_ws_client,
    url: *const c_char,
    timeout_ms: u32,
    conn_out: *mut *mut tether_ws_conn,
) -> tether_result {
    with_owner(client, |o| {
        // SAFETY: a NUL-terminated string.
        let u = unsafe { cstr(url, "url") }?.to_owned();
        if timeout_ms == 0 {
            if !conn_out.is_null() {
                return Err(invalid("conn_out must be NULL with timeout 0"));
            }
            let o2 = o.clone();
            let limit = o.cfg.ws.handshake_timeout + Duration::from_secs(1);
            o.rt.handle()?.spawn(async move {
                if let Err(Fail(code, msg)) = connect(o2.clone(), u, limit).await
                    && let Some(f) = o2.cbs.c.on_connect_error
                {
                    let cbs = o2.cbs.clone();
                    o2.rt.deliver_fn(move || {
                        let m = nul_terminated(msg);
                        // SAFETY: the C caller's callback and userdata.
                        unsafe { f(cbs.ud.ptr, code, tether_str::from_nul(&m)) }
                    });
                }
            });
            return Ok(());
        }
        if Dispatcher::in_any_job() {
            return Err(Fail::new(
                tether_result::WrongThread,
                "a connect with a timeout would block a callback: use timeout 0",
            ));
        }
        let limit = ms(timeout_ms);
        let obj =
            o.rt.block_on(connect(o.clone(), u, limit), limit + Duration::from_secs(1))??;
        if !conn_out.is_null() {
            // SAFETY: non-NULL out-parameter.
            unsafe { *conn_out = tether_ws_conn::into_ptr(obj) };
        }
        Ok(())
    })
}

/// Close every connection of the client (code 1001); their on_close callbacks follow.
/// Further connects return TETHER_RESULT_SHUT_DOWN. Does not block.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_client_close(client: *mut tether_ws_client) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a client handle.
            let o = unsafe { tether_ws_client::get(client) }?;
            o.close_now();
            Ok(())
        })())
    })
}

/// Close (as tether_ws_client_close) and release the client. NULL is fine; must not be
/// called twice. Callable from its own callbacks.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_client_free(client: *mut tether_ws_client) {
    guard(|| {
        // SAFETY: NULL or a handle.
        if let Ok(o) = unsafe { tether_ws_client::get(client) } {
            o.close_now();
        }
        // SAFETY: C gives its reference back.
        unsafe { tether_ws_client::release(client) }
    })
}

// ---------------------------------------------------------------------------
// Connection functions

fn with_conn(
    conn: *const tether_ws_conn,
    f: impl FnOnce(&ConnObj) -> Result<(), Fail>,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a connection handle.
            let c = unsafe { tether_ws_conn::get(conn) }?;
            check_rt(&c.rt)?;
            f(c)
        })())
    })
}

fn send_error(e: WsSendError) -> Fail {
    match e {
        WsSendError::QueueFull => Fail::new(tether_result::QueueFull, "the send queue is full"),
        WsSendError::Closed => Fail::new(tether_result::NotConnected, "the connection is closed"),
    }
}

/// Queue a text message: `len` bytes of UTF-8 at `text` (NULL allowed when `len` is
/// 0; no NUL needed). TETHER_RESULT_INVALID_UTF8, TETHER_RESULT_QUEUE_FULL (the send
/// queue holds its capacity; nothing was queued), TETHER_RESULT_NOT_CONNECTED.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_conn_send_text(
    conn: *const tether_ws_conn,
    text: *const c_char,
    len: usize,
) -> tether_result {
    with_conn(conn, |c| {
        // SAFETY: `len` readable bytes.
        let b = unsafe { bytes(text as *const u8, len, "text") }?;
        let t = std::str::from_utf8(b)
            .map_err(|_| Fail::new(tether_result::InvalidUtf8, "text is not valid UTF-8"))?;
        c.conn.send_text(t).map_err(send_error)
    })
}

/// Queue a binary message of `len` bytes (copied). Errors as tether_ws_conn_send_text().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_conn_send_binary(
    conn: *const tether_ws_conn,
    data: *const u8,
    len: usize,
) -> tether_result {
    with_conn(conn, |c| {
        // SAFETY: `len` readable bytes.
        let b = unsafe { bytes(data, len, "data") }?;
        c.conn
            .send_binary(bytes::Bytes::copy_from_slice(b))
            .map_err(send_error)
    })
}

/// Start the closing handshake with `code` (1000 normal, 1001 going away, 1002-1003,
/// 1007-1014, or 3000-4999 for applications; others are TETHER_RESULT_INVALID_PARAMETER)
/// and `reason` (NULL: none; UTF-8, cut to 123 bytes). Queued messages go first (the send queue keeps a
/// slot for the close, so a full queue can still be closed); the on_close callback follows. Closing a
/// closed connection does nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_conn_close(
    conn: *const tether_ws_conn,
    code: u16,
    reason: *const c_char,
) -> tether_result {
    with_conn(conn, |c| {
        // SAFETY: NULL or a NUL-terminated string.
        let r = unsafe { opt_cstr(reason, "reason") }?.unwrap_or("");
        let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
        if !valid {
            return Err(invalid(format!(
                "{code} is not a close code an endpoint may send"
            )));
        }
        c.conn.close(code, r);
        Ok(())
    })
}

/// The connection's process-unique id (0 for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_conn_id(conn: *const tether_ws_conn) -> u64 {
    guard(|| {
        // SAFETY: NULL or a handle.
        unsafe { tether_ws_conn::get(conn) }
            .map(|c| c.conn.id())
            .unwrap_or(0)
    })
}

/// The negotiated subprotocol, empty when none (valid as long as the handle).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_conn_protocol(conn: *const tether_ws_conn) -> tether_str {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_ws_conn::get(conn) } {
            Ok(c) => tether_str::from_nul(&c.protocol),
            Err(_) => tether_str::empty(),
        }
    })
}

/// Whether the connection is still open (false for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_conn_is_open(conn: *const tether_ws_conn) -> bool {
    guard(|| {
        // SAFETY: NULL or a handle.
        unsafe { tether_ws_conn::get(conn) }
            .map(|c| !c.conn.is_closed())
            .unwrap_or(false)
    })
}

/// Messages waiting in the send queue (0 for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_conn_queued(conn: *const tether_ws_conn) -> usize {
    guard(|| {
        // SAFETY: NULL or a handle.
        unsafe { tether_ws_conn::get(conn) }
            .map(|c| c.conn.queued())
            .unwrap_or(0)
    })
}

/// Server side: copy the upgrade request's header `name` (the first value) into `buf`
/// (`len` bytes, NUL-terminated); `*out_n` gets its length. A missing header reads as
/// ""; a client-side connection returns TETHER_RESULT_INVALID_PARAMETER.
/// TETHER_RESULT_BUFFER_TOO_SMALL when truncated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_conn_request_header(
    conn: *const tether_ws_conn,
    name: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tether_result {
    with_conn(conn, |c| {
        // SAFETY: a NUL-terminated string.
        let n = unsafe { cstr(name, "name") }?;
        let req = c
            .conn
            .request()
            .ok_or_else(|| invalid("a client-side connection has no request"))?;
        let v = req
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        copy_out(v, buf, len, out_n)
    })
}

/// Server side: copy the upgrade request's path and query (`/chat?room=1`) into `buf`
/// like tether_ws_conn_request_header().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_conn_request_path(
    conn: *const tether_ws_conn,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tether_result {
    with_conn(conn, |c| {
        let req = c
            .conn
            .request()
            .ok_or_else(|| invalid("a client-side connection has no request"))?;
        let pq = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        copy_out(pq, buf, len, out_n)
    })
}

/// A handle of your own to the connection (NULL for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_conn_clone(conn: *const tether_ws_conn) -> *mut tether_ws_conn {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_ws_conn::clone_arc(conn) } {
            Ok(c) => tether_ws_conn::into_ptr(c),
            Err(_) => std::ptr::null_mut(),
        }
    })
}

/// Release a handle from tether_ws_conn_clone() or tether_ws_client_connect() (the
/// connection stays open: close it with tether_ws_conn_close()). NULL is fine; must not
/// be called twice, nor on the borrowed handle a callback received.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ws_conn_free(conn: *mut tether_ws_conn) {
    // SAFETY: C gives its reference back.
    guard(|| unsafe { tether_ws_conn::release(conn) })
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Owner>();
    is::<ConnObj>();
}
