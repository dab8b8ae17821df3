//! Result codes, the per-thread last error, and the panic boundary.

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The outcome of a call. `TETHER_RESULT_OK` (0) is success; numbers are never reused.
/// In C this is `typedef uint32_t tether_result;`.
///
/// Detail for the last failure on the calling thread: tether_last_error_message().
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tether_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 1,
    /// An argument or option value is out of range or malformed.
    InvalidParameter = 2,
    /// A string is not valid UTF-8.
    InvalidUtf8 = 3,
    /// The arguments text is not valid JSON, or not a JSON array (auth: not an object).
    InvalidJson = 4,
    /// A bug in tether: a panic was caught at the API boundary.
    Panic = 5,
    /// Already used: an ack or connect request was answered already.
    AlreadyUsed = 6,
    /// The runtime is shut down, or the object was closed.
    ShutDown = 7,
    /// The runtime was created before fork(): it cannot be used in the child process.
    Forked = 8,
    /// Not allowed on this thread: a blocking call from inside a callback, or
    /// tether_runtime_dispatch() from inside a callback it is running.
    WrongThread = 9,
    /// The runtime's delivery mode does not allow this (dispatch on a runtime-threads
    /// runtime).
    WrongMode = 10,
    /// Did not finish in time (an ack, a connect, a shutdown).
    Timeout = 11,
    /// An operating-system error (address in use, file not found...).
    Io = 12,
    /// A caller's buffer is too small (the output is truncated).
    BufferTooSmall = 13,
    /// The socket is not connected (or the connection is closed).
    NotConnected = 100,
    /// The outgoing queue (or the client's offline buffer) is full.
    QueueFull = 101,
    /// The peer disconnected before answering.
    Disconnected = 102,
    /// The server refused the connection (connect_error from a middleware, an
    /// unknown namespace).
    ConnectRefused = 103,
    /// The connection could not be opened.
    ConnectFailed = 104,
    /// A broadcast skipped recipients whose queue was full.
    Dropped = 105,
}

const NAMES: &[(tether_result, &str)] = &[
    (tether_result::Ok, "TETHER_RESULT_OK\0"),
    (
        tether_result::NullParameter,
        "TETHER_RESULT_NULL_PARAMETER\0",
    ),
    (
        tether_result::InvalidParameter,
        "TETHER_RESULT_INVALID_PARAMETER\0",
    ),
    (tether_result::InvalidUtf8, "TETHER_RESULT_INVALID_UTF8\0"),
    (tether_result::InvalidJson, "TETHER_RESULT_INVALID_JSON\0"),
    (tether_result::Panic, "TETHER_RESULT_PANIC\0"),
    (tether_result::AlreadyUsed, "TETHER_RESULT_ALREADY_USED\0"),
    (tether_result::ShutDown, "TETHER_RESULT_SHUT_DOWN\0"),
    (tether_result::Forked, "TETHER_RESULT_FORKED\0"),
    (tether_result::WrongThread, "TETHER_RESULT_WRONG_THREAD\0"),
    (tether_result::WrongMode, "TETHER_RESULT_WRONG_MODE\0"),
    (tether_result::Timeout, "TETHER_RESULT_TIMEOUT\0"),
    (tether_result::Io, "TETHER_RESULT_IO\0"),
    (
        tether_result::BufferTooSmall,
        "TETHER_RESULT_BUFFER_TOO_SMALL\0",
    ),
    (tether_result::NotConnected, "TETHER_RESULT_NOT_CONNECTED\0"),
    (tether_result::QueueFull, "TETHER_RESULT_QUEUE_FULL\0"),
    (tether_result::Disconnected, "TETHER_RESULT_DISCONNECTED\0"),
    (
        tether_result::ConnectRefused,
        "TETHER_RESULT_CONNECT_REFUSED\0",
    ),
    (
        tether_result::ConnectFailed,
        "TETHER_RESULT_CONNECT_FAILED\0",
    ),
    (tether_result::Dropped, "TETHER_RESULT_DROPPED\0"),
];

/// The name of a result code (`"TETHER_RESULT_TIMEOUT"`), a static NUL-terminated
/// string; never NULL (`"TETHER_RESULT_UNKNOWN"` for numbers that are not codes).
#[unsafe(no_mangle)]
pub extern "C" fn tether_result_str(result: u32) -> *const c_char {
    let name = NAMES
        .iter()
        .find(|(r, _)| *r as u32 == result)
        .map(|(_, n)| *n)
        .unwrap_or("TETHER_RESULT_UNKNOWN\0");
    name.as_ptr() as *const c_char
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Record `msg` as this thread's last error and return `code`.
pub(crate) fn fail(code: tether_result, msg: impl Into<String>) -> tether_result {
    let msg = msg.into();
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = msg);
    code
}

/// A failure on its way out: code and message.
#[derive(Debug)]
pub(crate) struct Fail(pub tether_result, pub String);

impl Fail {
    pub(crate) fn new(code: tether_result, msg: impl Into<String>) -> Fail {
        Fail(code, msg.into())
    }

    pub(crate) fn null(what: &str) -> Fail {
        Fail(tether_result::NullParameter, format!("{what} is NULL"))
    }

    pub(crate) fn record(self) -> tether_result {
        fail(self.0, self.1)
    }
}

impl From<tether_core::runtime::RuntimeError> for Fail {
    fn from(e: tether_core::runtime::RuntimeError) -> Fail {
        use tether_core::runtime::RuntimeError as E;
        let code = match &e {
            E::Forked => tether_result::Forked,
            E::ShutDown => tether_result::ShutDown,
            E::Timeout => tether_result::Timeout,
            E::Io(_) => tether_result::Io,
            E::OnRuntimeThread => tether_result::WrongThread,
        };
        Fail(code, e.to_string())
    }
}

/// Turn a `Result<(), Fail>` into a code, recording the failure.
pub(crate) fn result(r: Result<(), Fail>) -> tether_result {
    match r {
        Ok(()) => tether_result::Ok,
        Err(f) => f.record(),
    }
}

/// Copy this thread's last error message into `buf` (`len` bytes), NUL-terminated and
/// truncated to fit. `*out_n` (if not NULL) gets the number of bytes written, without
/// the NUL. Returns TETHER_RESULT_BUFFER_TOO_SMALL when truncated, TETHER_RESULT_OK
/// otherwise. The slot holds the message of the most recent failed call on this thread
/// (successful calls leave it as it is); background failures arrive as events instead.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tether_result {
    guard(|| {
        if buf.is_null() {
            return tether_result::NullParameter;
        }
        if len == 0 {
            return tether_result::BufferTooSmall;
        }
        let msg = LAST_ERROR
            .try_with(|e| e.borrow().clone())
            .unwrap_or_default();
        let n = msg.len().min(len - 1);
        // SAFETY: the caller promised `buf` holds `len` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), buf as *mut u8, n);
            *buf.add(n) = 0;
            if !out_n.is_null() {
                *out_n = n;
            }
        }
        if n < msg.len() {
            tether_result::BufferTooSmall
        } else {
            tether_result::Ok
        }
    })
}

/// What a function returns when a panic was caught.
pub(crate) trait PanicDefault {
    fn panic_default() -> Self;
}

impl PanicDefault for tether_result {
    fn panic_default() -> Self {
        tether_result::Panic
    }
}

impl PanicDefault for () {
    fn panic_default() -> Self {}
}

impl PanicDefault for bool {
    fn panic_default() -> Self {
        false
    }
}

impl PanicDefault for u64 {
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for usize {
    fn panic_default() -> Self {
        0
    }
}

impl<T> PanicDefault for *mut T {
    fn panic_default() -> Self {
        std::ptr::null_mut()
    }
}

impl<T> PanicDefault for *const T {
    fn panic_default() -> Self {
        std::ptr::null()
    }
}

impl PanicDefault for crate::util::tether_str {
    fn panic_default() -> Self {
        crate::util::tether_str::empty()
    }
}

/// The panic boundary every exported function runs in.
pub(crate) fn guard<R: PanicDefault>(f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            fail(
                tether_result::Panic,
                format!("internal error (panic): {msg}"),
            );
            R::panic_default()
        }
    }
}
