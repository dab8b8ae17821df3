//! Scale-out through Redis from C: the Socket.IO server's Redis adapter
//! (`tether_sio_server_config_set_redis`, in server.rs) and the emitter
//! (`tether_redis_emitter`), wire-compatible with Node's `@socket.io/redis-adapter` and
//! `@socket.io/redis-emitter`.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use tether_core::adapter::{AdapterError, EmitterOperator, RedisEmitter};
use tether_core::runtime::Runtime;

use crate::error::{Fail, guard, result, tether_result};
use crate::runtime::tether_runtime;
use crate::server::{norm_nsp, str_list, tether_sio_target};
use crate::util::{ArcHandle, cstr, event_args, opt_cstr, tether_bytes};

/// How long a Redis connect or publish may take before TETHER_RESULT_TIMEOUT.
const REDIS_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn adapter_error(e: AdapterError, unavailable: tether_result) -> Fail {
    let code = match &e {
        AdapterError::Unavailable(_) => unavailable,
        AdapterError::Timeout(_) => tether_result::Timeout,
        AdapterError::Config(_) => tether_result::InvalidParameter,
    };
    Fail::new(code, e.to_string())
}

/// Emits to the sockets of a Socket.IO cluster through Redis, from a process that is
/// not one of its servers (Node's `@socket.io/redis-emitter`). Every server of the
/// cluster must use the Redis adapter with the same key prefix.
///
/// Threads: no callbacks. Every function may be called from any thread, from inside
/// callbacks too; tether_redis_emitter_emit() waits for Redis (at most 10 s).
pub struct tether_redis_emitter {
    _private: [u8; 0],
}

impl ArcHandle for tether_redis_emitter {
    type Inner = EmitterObj;
}

pub(crate) struct EmitterObj {
    rt: Runtime,
    emitter: RedisEmitter,
}

/// Connect an emitter to Redis at `url` (`redis://[user:password@]host:port[/db]`),
/// for the channel prefix `key` (NULL: "socket.io", the adapters' default). Waits for
/// the connection: TETHER_RESULT_CONNECT_FAILED when Redis cannot be reached,
/// TETHER_RESULT_INVALID_PARAMETER for a bad URL. Once connected, a lost connection is
/// reopened by the next emit.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_redis_emitter_new(
    runtime: *mut tether_runtime,
    url: *const c_char,
    key: *const c_char,
    emitter_out: *mut *mut tether_redis_emitter,
) -> tether_result {
    guard(|| {
        result((|| {
            if emitter_out.is_null() {
                return Err(Fail::null("emitter_out"));
            }
            // SAFETY: a runtime handle and NUL-terminated strings.
            let (rt, u, k) = unsafe {
                (
                    tether_runtime::get(runtime)?,
                    cstr(url, "url")?.to_owned(),
                    opt_cstr(key, "key")?.map(str::to_owned),
                )
            };
            let emitter = rt
                .rt
                .block_on(async move { RedisEmitter::connect(&u).await }, REDIS_WAIT)?
                .map_err(|e| adapter_error(e, tether_result::ConnectFailed))?;
            let emitter = match k {
                Some(k) => emitter.with_key(k),
                None => emitter,
            };
            let obj = Arc::new(EmitterObj {
                rt: rt.rt.clone(),
                emitter,
            });
            // SAFETY: checked non-NULL.
            unsafe { *emitter_out = tether_redis_emitter::into_ptr(obj) };
            Ok(())
        })())
    })
}

/// Emit `event` to the sockets of namespace `nsp` (NULL: "/") on every server of the
/// cluster: `target` as for tether_sio_server_emit() (NULL: every socket of the
/// namespace; `except_socket` is left out as a room, since a socket id is one), the
/// arguments as for every emit. Returns once Redis took the message:
/// TETHER_RESULT_NOT_CONNECTED when Redis is unreachable, TETHER_RESULT_TIMEOUT.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_redis_emitter_emit(
    emitter: *const tether_redis_emitter,
    nsp: *const c_char,
    target: *const tether_sio_target,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a handle, and the arguments as documented.
            let (e, n, (ev, args)) = unsafe {
                (
                    tether_redis_emitter::get(emitter)?,
                    norm_nsp(opt_cstr(nsp, "nsp")?),
                    event_args(event, args_json, args_len, bins, bins_len)?,
                )
            };
            e.rt.check()?;
            let em = e.emitter.of(&n);
            let mut op: Option<EmitterOperator> = None;
            // SAFETY: NULL or a valid target.
            if let Some(t) = unsafe { target.as_ref() } {
                // SAFETY: the lists the target describes.
                let (rooms, except, ex_sock) = unsafe {
                    (
                        str_list(t.rooms, t.rooms_len, "target.rooms")?,
                        str_list(t.except, t.except_len, "target.except")?,
                        opt_cstr(t.except_socket, "target.except_socket")?,
                    )
                };
                for r in rooms {
                    let r = r.to_owned();
                    op = Some(match op {
                        Some(o) => o.to(r),
                        None => em.to(r),
                    });
                }
                for r in except.into_iter().chain(ex_sock) {
                    let r = r.to_owned();
                    op = Some(match op {
                        Some(o) => o.except(r),
                        None => em.except(r),
                    });
                }
                if t.is_volatile {
                    op = Some(match op {
                        Some(o) => o.volatile(),
                        None => em.volatile(),
                    });
                }
            }
            let ev = ev.to_owned();
            let publish = async move {
                match op {
                    Some(o) => o.emit_args(&ev, args).await,
                    None => em.emit_args(&ev, args).await,
                }
            };
            e.rt.block_on(publish, REDIS_WAIT)?
                .map_err(|x| adapter_error(x, tether_result::NotConnected))
        })())
    })
}

/// Release the emitter. NULL is fine; must not be called twice.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_redis_emitter_free(emitter: *mut tether_redis_emitter) {
    // SAFETY: C gives its reference back.
    guard(|| unsafe { tether_redis_emitter::release(emitter) })
}
