//! Acknowledgements: answering one (`tether_ack`), and waiting for one (one-shot
//! callbacks that run exactly once, at the latest during shutdown).

use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex};

use tether_core::runtime::{Closable, Registration, Runtime};
use tether_core::sio::{AckError, AckSendError, AckSender, Args, BroadcastAcks};

use crate::error::{Fail, guard, result, tether_result};
use crate::util::{
    ArcHandle, CArgs, SendPtr, nul_terminated, parse_args, tether_bytes, tether_sio_args,
    tether_str,
};

/// The right to answer one acknowledgement request, exactly once, from any thread.
///
/// An event callback receives a borrowed `tether_ack *` (NULL when the sender asked
/// for no ack), valid until the callback returns. Answer it there with
/// tether_ack_send(), or keep it with tether_ack_clone() and answer later from any
/// thread, then tether_ack_free() the clone. All clones share the one answer: the
/// second tether_ack_send() returns TETHER_RESULT_ALREADY_USED. Releasing every handle
/// without answering leaves the request unanswered (the peer's ack timeout fires);
/// nothing leaks.
pub struct tether_ack {
    _private: [u8; 0],
}

pub(crate) struct AckObj {
    pub(crate) sender: AckSender,
}

impl ArcHandle for tether_ack {
    type Inner = AckObj;
}

/// Answer the acknowledgement with arguments: `args_json` is the JSON text of the
/// arguments array (NULL with length 0 for none), `bins` the binary attachments its
/// placeholders reference. TETHER_RESULT_ALREADY_USED if it was answered already,
/// TETHER_RESULT_NOT_CONNECTED / TETHER_RESULT_QUEUE_FULL if the reply cannot be
/// queued.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ack_send(
    ack: *const tether_ack,
    args_json: *const c_char,
    args_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a handle given to a callback or made by tether_ack_clone.
            let a = unsafe { tether_ack::get(ack) }?;
            // SAFETY: as documented for the arguments.
            let args = unsafe { parse_args(args_json, args_len, bins, bins_len) }?;
            a.sender.send(args).map_err(|e| match e {
                AckSendError::AlreadySent => {
                    Fail::new(tether_result::AlreadyUsed, "this ack was answered already")
                }
                AckSendError::Send(s) => send_error(s),
                AckSendError::Serialize(e) => Fail::new(tether_result::InvalidJson, e.to_string()),
            })
        })())
    })
}

/// Whether the acknowledgement was answered already (false for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ack_is_sent(ack: *const tether_ack) -> bool {
    guard(|| {
        // SAFETY: NULL or a handle.
        unsafe { tether_ack::get(ack) }
            .map(|a| a.sender.is_sent())
            .unwrap_or(false)
    })
}

/// A handle of your own to the same acknowledgement, valid until tether_ack_free().
/// NULL when `ack` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ack_clone(ack: *const tether_ack) -> *mut tether_ack {
    guard(|| {
        // SAFETY: NULL or a handle.
        match unsafe { tether_ack::clone_arc(ack) } {
            Ok(a) => tether_ack::into_ptr(a),
            Err(_) => std::ptr::null_mut(),
        }
    })
}

/// Release a handle made by tether_ack_clone(); unanswered, the request stays
/// unanswered. NULL is fine; must not be called twice, nor on the borrowed handle a
/// callback received.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_ack_free(ack: *mut tether_ack) {
    // SAFETY: C gives its reference back.
    guard(|| unsafe { tether_ack::release(ack) })
}

pub(crate) fn send_error(e: tether_core::engine::SendError) -> Fail {
    use tether_core::engine::SendError as S;
    match e {
        S::QueueFull => Fail::new(tether_result::QueueFull, "the outgoing queue is full"),
        other => Fail::new(tether_result::NotConnected, other.to_string()),
    }
}

/// Receives the reply to an emit-with-ack, exactly once: `status` is TETHER_RESULT_OK
/// with the reply's arguments in `reply`, or TETHER_RESULT_TIMEOUT,
/// TETHER_RESULT_DISCONNECTED, TETHER_RESULT_NOT_CONNECTED, TETHER_RESULT_QUEUE_FULL or
/// TETHER_RESULT_SHUT_DOWN (during shutdown) with `reply` NULL. It runs on the thread
/// the runtime delivers on; `reply` is borrowed for the call. Free `userdata` here: the
/// callback is the last use of it (it runs if and only if the emit returned OK).
pub type tether_sio_ack_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        status: tether_result,
        reply: *const tether_sio_args,
    ),
>;

/// One reply to a broadcast with acknowledgement.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tether_sio_ack_reply {
    /// The id of the socket that replied.
    pub socket_id: tether_str,
    /// Its reply's arguments.
    pub args: tether_sio_args,
}

/// Receives the replies to a broadcast with acknowledgement, exactly once, when every
/// recipient replied or the timeout passed: `replies[0..replies_len]` in arrival order,
/// and `missing` recipients that did not reply (timeout, disconnect). `status` is
/// TETHER_RESULT_OK, or TETHER_RESULT_SHUT_DOWN during shutdown (no replies). Borrowed
/// for the call; free `userdata` here.
pub type tether_sio_broadcast_ack_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        status: tether_result,
        replies: *const tether_sio_ack_reply,
        replies_len: usize,
        missing: usize,
    ),
>;

/// The outcome a one-shot callback gets.
pub(crate) enum Outcome {
    Ack(Result<Args, AckError>),
    Broadcast(BroadcastAcks),
    Shutdown,
}

type OneShotFn = Box<dyn FnOnce(Outcome) + Send>;

/// A callback that must run exactly once: on the outcome, or with `Shutdown` when the
/// runtime shuts down first.
pub(crate) struct OneShot {
    rt: Runtime,
    call: Mutex<Option<OneShotFn>>,
    reg: Mutex<Option<Registration>>,
}

impl OneShot {
    /// Register it with the runtime; `f` runs (through the dispatcher) once.
    pub(crate) fn new(rt: &Runtime, f: OneShotFn) -> Result<Arc<OneShot>, Fail> {
        let o = Arc::new(OneShot {
            rt: rt.clone(),
            call: Mutex::new(Some(f)),
            reg: Mutex::new(None),
        });
        let weak = Arc::downgrade(&o) as std::sync::Weak<dyn Closable>;
        let reg = rt.register(weak)?;
        if let Ok(mut r) = o.reg.lock() {
            *r = Some(reg);
        }
        Ok(o)
    }

    pub(crate) fn fire(&self, outcome: Outcome) {
        let f = self.call.lock().ok().and_then(|mut c| c.take());
        let Some(f) = f else { return };
        if let Ok(mut r) = self.reg.lock() {
            r.take();
        }
        crate::server::deliver_from_anywhere(&self.rt, Box::new(move || f(outcome)));
    }
}

impl Closable for OneShot {
    fn close(&self) {
        self.fire(Outcome::Shutdown);
    }

    fn is_closed(&self) -> bool {
        self.call.lock().map(|c| c.is_none()).unwrap_or(true)
    }
}

fn ack_status(e: &AckError) -> tether_result {
    match e {
        AckError::Timeout => tether_result::Timeout,
        AckError::Disconnected => tether_result::Disconnected,
        AckError::Send(tether_core::engine::SendError::QueueFull) => tether_result::QueueFull,
        AckError::Send(_) => tether_result::NotConnected,
        AckError::Rejected(_) => tether_result::InvalidParameter,
    }
}

/// The one-shot for an emit-with-ack's callback.
pub(crate) fn ack_oneshot(
    rt: &Runtime,
    cb: unsafe extern "C" fn(*mut c_void, tether_result, *const tether_sio_args),
    userdata: *mut c_void,
) -> Result<Arc<OneShot>, Fail> {
    let ud = SendPtr(userdata);
    OneShot::new(
        rt,
        Box::new(move |outcome| {
            let ud = ud;
            match outcome {
                Outcome::Ack(Ok(args)) => {
                    // SAFETY: the C caller's callback and userdata.
                    CArgs::new(args).lend(|a| unsafe { cb(ud.0, tether_result::Ok, a) })
                }
                Outcome::Ack(Err(e)) => {
                    // SAFETY: as above.
                    unsafe { cb(ud.0, ack_status(&e), std::ptr::null()) }
                }
                Outcome::Broadcast(_) | Outcome::Shutdown => {
                    // SAFETY: as above.
                    unsafe { cb(ud.0, tether_result::ShutDown, std::ptr::null()) }
                }
            }
        }),
    )
}

/// The one-shot for a broadcast-with-ack's callback.
pub(crate) fn broadcast_oneshot(
    rt: &Runtime,
    cb: unsafe extern "C" fn(*mut c_void, tether_result, *const tether_sio_ack_reply, usize, usize),
    userdata: *mut c_void,
) -> Result<Arc<OneShot>, Fail> {
    let ud = SendPtr(userdata);
    OneShot::new(
        rt,
        Box::new(move |outcome| {
            let ud = ud;
            match outcome {
                Outcome::Broadcast(acks) => {
                    let owned: Vec<(String, CArgs)> = acks
                        .responses
                        .into_iter()
                        .map(|(sid, args)| (nul_terminated(sid.to_string()), CArgs::new(args)))
                        .collect();
                    let table: Vec<tether_sio_ack_reply> = owned
                        .iter()
                        .map(|(sid, a)| tether_sio_ack_reply {
                            socket_id: tether_str::from_nul(sid),
                            args: a.c(),
                        })
                        .collect();
                    let ptr = if table.is_empty() {
                        std::ptr::null()
                    } else {
                        table.as_ptr()
                    };
                    // SAFETY: the C caller's callback and userdata.
                    unsafe { cb(ud.0, tether_result::Ok, ptr, table.len(), acks.missing) }
                }
                _ => {
                    // SAFETY: as above.
                    unsafe { cb(ud.0, tether_result::ShutDown, std::ptr::null(), 0, 0) }
                }
            }
        }),
    )
}
