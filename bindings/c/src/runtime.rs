//! `tether_runtime`: worker threads, event delivery, shutdown.

use std::sync::Arc;
use std::time::Duration;

use tether_core::dispatch::{Delivery, Dispatcher};
use tether_core::runtime::{Runtime, RuntimeError};

use crate::error::{Fail, fail, guard, result, tether_result};
use crate::util::{ArcHandle, ms};

/// Where callbacks run (the `delivery` field of tether_runtime_options).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tether_delivery {
    /// Callbacks run on the runtime's worker threads as events happen. For one server
    /// socket or one client they never run concurrently and keep the wire order; across
    /// objects they may run concurrently. Callbacks must not block for long.
    RuntimeThreads = 0,
    /// Events are queued; callbacks run inside tether_runtime_dispatch() (and during
    /// tether_runtime_shutdown()) on the thread that calls it: the game-loop model.
    HostPoll = 1,
}

/// Options for tether_runtime_new(). Zero-initialise it, or pass NULL for the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tether_runtime_options {
    /// Worker threads; 0 means the default (2). At most 256.
    pub worker_threads: u32,
    /// A tether_delivery value (0: TETHER_DELIVERY_RUNTIME_THREADS).
    pub delivery: u32,
    /// true: one runtime thread on tokio's current-thread scheduler instead of worker
    /// threads (worker_threads must be 0 or 1): the least overhead per event. Its one
    /// limit: a call that waits for the runtime (tether_sio_server_listen,
    /// tether_sio_client_socket_connect with a timeout, tether_ws_server_listen,
    /// tether_ws_client_connect, the Redis calls) made from inside a callback that runs
    /// on that thread returns TETHER_RESULT_WRONG_THREAD instead of waiting for itself;
    /// make such calls from your own threads. false (0): worker threads.
    pub single_threaded: bool,
}

/// The runtime: owns the worker threads every server and client of it runs on, and
/// decides where their callbacks run (tether_delivery).
///
/// Threads: all functions may be called from any thread. From inside a callback you
/// may call every tether function (emit, join, ack, close, even free the object that
/// is dispatching: the release is deferred until the callback returns), except the
/// blocking ones that say so (tether_sio_client_socket_connect with a timeout,
/// tether_runtime_dispatch from a callback it runs).
///
/// Shutdown protocol: tether_runtime_shutdown(rt, timeout_ms) closes every server and
/// client of the runtime, delivers their final events (disconnects, client
/// TETHER_SIO_CLIENT_EVENT_CLOSED, pending acks with TETHER_RESULT_SHUT_DOWN), then
/// stops callbacks and joins the threads, all within timeout_ms; after it returns no
/// callback runs. Then free the handles. Unloading the library (dlclose) is safe once
/// every runtime is shut down.
///
/// After fork(), a runtime made by the parent cannot be used in the child: every call
/// returns TETHER_RESULT_FORKED (and freeing it leaks it rather than touch threads that
/// do not exist in the child).
pub struct tether_runtime {
    _private: [u8; 0],
}

impl ArcHandle for tether_runtime {
    type Inner = RtObj;
}

pub(crate) struct RtObj {
    pub(crate) rt: Runtime,
}

impl RtObj {
    pub(crate) fn dispatcher(&self) -> &Arc<Dispatcher> {
        self.rt.dispatcher()
    }
}

/// Create a runtime (its threads start now). `options` may be NULL for the defaults.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_runtime_new(
    options: *const tether_runtime_options,
    runtime_out: *mut *mut tether_runtime,
) -> tether_result {
    guard(|| {
        result((|| {
            if runtime_out.is_null() {
                return Err(Fail::null("runtime_out"));
            }
            // SAFETY: NULL or a valid options struct.
            let opts = unsafe { options.as_ref() }
                .copied()
                .unwrap_or(tether_runtime_options {
                    worker_threads: 0,
                    delivery: 0,
                    single_threaded: false,
                });
            if opts.single_threaded && opts.worker_threads > 1 {
                return Err(Fail::new(
                    tether_result::InvalidParameter,
                    format!(
                        "a single-threaded runtime has one thread, not worker_threads {}",
                        opts.worker_threads
                    ),
                ));
            }
            let workers = match opts.worker_threads {
                0 => 2,
                n @ 1..=256 => n as usize,
                n => {
                    return Err(Fail::new(
                        tether_result::InvalidParameter,
                        format!("worker_threads {n} is out of range (1..=256, or 0 for 2)"),
                    ));
                }
            };
            let delivery = match opts.delivery {
                0 => Delivery::RuntimeThreads,
                1 => Delivery::HostPoll,
                d => {
                    return Err(Fail::new(
                        tether_result::InvalidParameter,
                        format!("delivery {d} is not a tether_delivery value"),
                    ));
                }
            };
            let rt = Runtime::builder()
                .workers(workers)
                .single_threaded(opts.single_threaded)
                .delivery(delivery)
                .build()?;
            let obj = Arc::new(RtObj { rt });
            // SAFETY: checked non-NULL.
            unsafe { *runtime_out = tether_runtime::into_ptr(obj) };
            Ok(())
        })())
    })
}

/// Host poll: run up to `max_events` queued callbacks on this thread. With
/// `timeout_ms` 0 it runs what is queued now and never waits; otherwise it also waits
/// for events until `max_events` ran or `timeout_ms` passed (no callback starts after
/// the deadline; one that is running when it passes finishes first). `ran_out` (may be
/// NULL) gets the number run. TETHER_RESULT_WRONG_MODE on a runtime-threads runtime,
/// TETHER_RESULT_WRONG_THREAD from inside a callback it is running,
/// TETHER_RESULT_SHUT_DOWN after shutdown.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_runtime_dispatch(
    runtime: *mut tether_runtime,
    max_events: usize,
    timeout_ms: u32,
    ran_out: *mut usize,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a handle from tether_runtime_new.
            let rt = unsafe { tether_runtime::get(runtime) }?;
            if rt.rt.is_forked() {
                return Err(RuntimeError::Forked.into());
            }
            let d = rt.dispatcher();
            if d.delivery() != Delivery::HostPoll {
                return Err(Fail::new(
                    tether_result::WrongMode,
                    "dispatch needs a TETHER_DELIVERY_HOST_POLL runtime",
                ));
            }
            if d.in_dispatch() || d.in_job() {
                return Err(Fail::new(
                    tether_result::WrongThread,
                    "tether_runtime_dispatch called from inside a callback it runs",
                ));
            }
            let n = rt.rt.dispatch(max_events, ms(timeout_ms))?;
            if !ran_out.is_null() {
                // SAFETY: non-NULL out-parameter.
                unsafe { *ran_out = n };
            }
            Ok(())
        })())
    })
}

/// Number of events waiting for tether_runtime_dispatch (0 on runtime-threads
/// runtimes, and for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_runtime_pending(runtime: *const tether_runtime) -> usize {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_runtime::get(runtime) } {
            Ok(rt) => rt.dispatcher().pending(),
            Err(_) => 0,
        }
    })
}

/// Shut down within `timeout_ms` (see tether_runtime for the protocol). Idempotent.
/// Returns TETHER_RESULT_TIMEOUT when something did not finish in time; even then no
/// callback starts after it returns. In host-poll mode the final events run on this
/// thread, inside this call. Called from inside a callback, the threads cannot be
/// joined by the thread they run: they are released and exit right after.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_runtime_shutdown(
    runtime: *mut tether_runtime,
    timeout_ms: u32,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a handle from tether_runtime_new.
            let rt = unsafe { tether_runtime::get(runtime) }?;
            rt.rt.shutdown(ms(timeout_ms))?;
            Ok(())
        })())
    })
}

/// Release the runtime handle. If it was not shut down, this shuts it down first
/// (timeout 5 s). NULL is fine; must not be called twice. Servers and clients of the
/// runtime stay valid handles (their calls then return TETHER_RESULT_SHUT_DOWN) until
/// they are freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_runtime_free(runtime: *mut tether_runtime) {
    guard(|| {
        if runtime.is_null() {
            return;
        }
        // SAFETY: a handle from tether_runtime_new.
        if let Ok(rt) = unsafe { tether_runtime::get(runtime) }
            && !rt.rt.is_shut_down()
            && let Err(e) = rt.rt.shutdown(Duration::from_secs(5))
        {
            fail(tether_result::Timeout, e.to_string());
        }
        // SAFETY: C gives its reference back.
        unsafe { tether_runtime::release(runtime) }
    })
}
