//! The C ABI of tether (`include/tether.h`).
//!
//! Conventions (see `shared/STYLE.md` §2, modelled on rustls-ffi):
//!
//! - Opaque handles. Long-lived objects (runtime, server, client, sockets, ack and
//!   connect-request handles) are `Arc`s handed to C with `Arc::into_raw`; option
//!   objects are `Box`es. Every `_new` has a NULL-tolerant `_free`.
//! - Every exported function runs inside [`guard`]: a panic becomes
//!   `TETHER_RESULT_PANIC` (or NULL / 0), never an unwind into C.
//! - Failures return a [`tether_result`] and leave a message in the calling thread's
//!   last-error slot ([`tether_last_error_message`]).
//! - Callbacks reach C through the runtime's [`tether_core::dispatch::Dispatcher`]:
//!   inline on runtime threads, or queued for `tether_runtime_dispatch`.
//!
//! The plain-WebSocket API (`tether_ws_*`) sits beside `tether_sio_*`: same runtime,
//! same delivery modes, same error codes.
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

mod ack;
mod client;
mod error;
mod event;
mod json;
mod log;
mod redis;
mod runtime;
mod server;
mod tls;
mod util;
mod ws;

pub use ack::*;
pub use client::*;
pub use error::*;
pub use event::*;
pub use json::*;
pub use log::*;
pub use redis::*;
pub use runtime::*;
pub use server::*;
pub use util::*;
pub use ws::*;

use std::ffi::c_char;

/// The library's version as a static NUL-terminated string, `"tether/0.1.0"`.
/// Compare with the TETHER_VERSION_* macros to detect a header/library mismatch.
#[unsafe(no_mangle)]
pub extern "C" fn tether_version() -> *const c_char {
    concat!("tether/", env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

#[cfg(test)]
mod version_tests {
    #[test]
    fn version_string_matches_the_crate() {
        let s = unsafe { std::ffi::CStr::from_ptr(crate::tether_version()) };
        assert_eq!(
            s.to_str().unwrap(),
            format!("tether/{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
