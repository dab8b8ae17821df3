//! Incoming Socket.IO events, shared by the server (`tether_sio_socket`) and the client
//! (`tether_sio_client_socket`): one registration type and one marshalling path from a
//! core event to a C callback.

use std::ffi::c_void;
use std::sync::Arc;

use tether_core::runtime::Runtime;
use tether_core::sio::{AckSender, Args};

use crate::ack::{AckObj, tether_ack};
use crate::util::{ArcHandle, CArgs, Userdata, nul_terminated, tether_sio_args, tether_str};

/// An incoming event, borrowed for the duration of the callback.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tether_sio_event {
    /// The event name.
    pub name: tether_str,
    /// The arguments (JSON array text + attachments).
    pub args: tether_sio_args,
    /// Non-NULL when the sender asked for an acknowledgement: answer with
    /// tether_ack_send(), now or later (tether_ack_clone() to keep it past the call).
    pub ack: *mut tether_ack,
}

/// A C callback registration: the function and its userdata (released on drop).
pub(crate) struct Cb<F> {
    pub(crate) f: F,
    pub(crate) ud: Userdata,
}

impl<F> Cb<F> {
    pub(crate) fn new(f: F, ud: Userdata) -> Arc<Cb<F>> {
        Arc::new(Cb { f, ud })
    }
}

/// The C signature of an event callback on a socket handle of type `S`.
pub(crate) type EventFn<S> = unsafe extern "C" fn(*mut c_void, *mut S, *const tether_sio_event);

/// Run an event callback with an event made from core values.
pub(crate) fn call_event<S>(
    f: EventFn<S>,
    ud: *mut c_void,
    socket: *mut S,
    name: String,
    args: Args,
    ack: Option<AckSender>,
) {
    let name = nul_terminated(name);
    let mut cargs = CArgs::new(args);
    let ack = ack.map(|sender| Arc::new(AckObj { sender }));
    let ack_ptr = ack
        .as_ref()
        .map(tether_ack::borrow_ptr)
        .unwrap_or(std::ptr::null_mut());
    cargs.lend(|a| {
        let ev = tether_sio_event {
            name: tether_str::from_nul(&name),
            args: *a,
            ack: ack_ptr,
        };
        // SAFETY: the C caller's callback and userdata; everything passed lives until
        // after the call.
        unsafe { f(ud, socket, &ev) };
    });
    drop(ack);
}

/// Hand an incoming event to the runtime's dispatcher: the callback `cb` runs (on a
/// runtime thread or in tether_runtime_dispatch) with a borrowed handle to `socket`.
pub(crate) fn deliver_event<H: ArcHandle + 'static>(
    rt: &Runtime,
    cb: Arc<Cb<EventFn<H>>>,
    socket: Arc<H::Inner>,
    name: String,
    args: Args,
    ack: Option<AckSender>,
) where
    H::Inner: 'static,
{
    rt.deliver_fn(move || call_event(cb.f, cb.ud.ptr, H::borrow_ptr(&socket), name, args, ack));
}
