//! Strings, buffers, userdata and handle conversions shared by the API.

use std::ffi::{CStr, c_char, c_void};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tether_core::sio::{Args, ArgsError};

use crate::error::{Fail, tether_result};
use crate::{guard, result};

/// A borrowed UTF-8 string: `len` bytes at `data`. Strings handed to callbacks are
/// valid for the duration of the call only; as a convenience they are also
/// NUL-terminated (`data[len] == '\0'`), so `data` can be used as a C string.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tether_str {
    /// The first byte (never NULL; `""` when empty).
    pub data: *const c_char,
    /// Length in bytes, without the terminating NUL.
    pub len: usize,
}

impl tether_str {
    pub(crate) fn empty() -> tether_str {
        tether_str {
            data: c"".as_ptr(),
            len: 0,
        }
    }

    /// Borrow a NUL-terminated buffer made by [`nul_terminated`].
    pub(crate) fn from_nul(s: &str) -> tether_str {
        debug_assert!(s.ends_with('\0'));
        tether_str {
            data: s.as_ptr() as *const c_char,
            len: s.len().saturating_sub(1),
        }
    }
}

/// A borrowed byte buffer: `len` bytes at `data` (`data` may be NULL when `len` is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tether_bytes {
    /// The first byte.
    pub data: *const u8,
    /// Length in bytes.
    pub len: usize,
}

/// Releases a registration's userdata. Runs exactly once, on any thread, when the
/// registration is replaced, removed or its owner is freed.
pub type tether_free_cb = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// Userdata handed to C callbacks, released by its `free` function on drop.
pub(crate) struct Userdata {
    pub(crate) ptr: *mut c_void,
    free: tether_free_cb,
}

// SAFETY: the C caller promised, by registering the callback, that the userdata may be
// used from the threads the header documents (hyper's `UserDataPointer`).
unsafe impl Send for Userdata {}
// SAFETY: as above.
unsafe impl Sync for Userdata {}

impl Userdata {
    pub(crate) fn new(ptr: *mut c_void, free: tether_free_cb) -> Userdata {
        Userdata { ptr, free }
    }
}

impl Drop for Userdata {
    fn drop(&mut self) {
        if let Some(f) = self.free.take() {
            // SAFETY: the function and pointer were given together by the C caller.
            unsafe { f(self.ptr) }
        }
    }
}

/// A raw pointer that may cross threads (the C caller vouches for it).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut c_void);
// SAFETY: see `Userdata`.
unsafe impl Send for SendPtr {}
// SAFETY: see `Userdata`.
unsafe impl Sync for SendPtr {}

/// A NUL-terminated owned copy, for handing to C as a [`tether_str`].
pub(crate) fn nul_terminated(mut s: String) -> String {
    s.push('\0');
    s
}

/// A required C string argument as `&str`.
pub(crate) unsafe fn cstr<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| {
        Fail::new(
            tether_result::InvalidUtf8,
            format!("{what} is not valid UTF-8"),
        )
    })
}

/// An optional C string argument (NULL gives `None`).
pub(crate) unsafe fn opt_cstr<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Fail> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: as `cstr`.
        unsafe { cstr(p, what) }.map(Some)
    }
}

/// `len` bytes at `p` (NULL allowed when `len` is 0).
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: the caller promised `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Parse JSON text that must hold a value of any kind.
pub(crate) unsafe fn json_value(p: *const c_char, len: usize, what: &str) -> Result<Value, Fail> {
    // SAFETY: forwarded.
    let text = unsafe { utf8(p, len, what) }?;
    serde_json::from_str(text).map_err(|e| {
        Fail::new(
            tether_result::InvalidJson,
            format!("{what} is not valid JSON: {e}"),
        )
    })
}

/// `len` bytes at `p` as UTF-8 text (NULL with length 0 is empty).
pub(crate) unsafe fn utf8<'a>(p: *const c_char, len: usize, what: &str) -> Result<&'a str, Fail> {
    // SAFETY: forwarded.
    let raw = unsafe { bytes(p as *const u8, len, what) }?;
    std::str::from_utf8(raw).map_err(|_| {
        Fail::new(
            tether_result::InvalidUtf8,
            format!("{what} is not valid UTF-8"),
        )
    })
}

/// What every emit takes from C: the event name (UTF-8, not a reserved name) and its
/// arguments (see [`parse_args`]).
pub(crate) unsafe fn event_args<'a>(
    event: *const c_char,
    json: *const c_char,
    json_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
) -> Result<(&'a str, Args), Fail> {
    // SAFETY: forwarded; the caller's contract covers each pointer.
    let e = unsafe { cstr(event, "event") }?;
    let args = unsafe { parse_args(json, json_len, bins, bins_len) }?;
    crate::server::check_event_name(e)?;
    Ok((e, args))
}

/// Event arguments from C: the JSON text of an array (NULL/0 means `[]`) and the
/// binary attachments its placeholders reference.
pub(crate) unsafe fn parse_args(
    json: *const c_char,
    json_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
) -> Result<Args, Fail> {
    if let Some(args) = take_lent(json, json_len, bins, bins_len) {
        return Ok(args);
    }
    if bins_len > 0 && bins.is_null() {
        return Err(Fail::null("bins"));
    }
    let mut out = Vec::with_capacity(bins_len);
    for i in 0..bins_len {
        // SAFETY: `bins` holds `bins_len` entries.
        let b = unsafe { *bins.add(i) };
        // SAFETY: each entry describes a readable buffer.
        let data = unsafe { bytes(b.data, b.len, "bins[i].data") }?;
        out.push(Bytes::copy_from_slice(data));
    }
    if json.is_null() && json_len == 0 {
        return Ok(Args::from_parts(Vec::new(), out));
    }
    // SAFETY: forwarded.
    let text = unsafe { utf8(json, json_len, "args_json") }?;
    // Checked, not parsed: the text goes to the wire as it is.
    Args::from_json(text, out).map_err(|e| match e {
        ArgsError::BadPlaceholder { .. } => {
            Fail::new(tether_result::InvalidParameter, e.to_string())
        }
        ArgsError::NotArray => Fail::new(
            tether_result::InvalidJson,
            "args_json must be a JSON array (the arguments list)",
        ),
        e => Fail::new(tether_result::InvalidJson, format!("args_json: {e}")),
    })
}

/// Arguments prepared for a callback: NUL-terminated JSON text and the buffer table.
/// Text that arrived as text is handed over in place (no copy).
pub(crate) struct CArgs {
    args: Args,
    /// The JSON text given to C when the arguments were not text (serialized here).
    _owned: Option<String>,
    json: *const c_char,
    json_len: usize,
    table: Vec<tether_bytes>,
}

impl CArgs {
    pub(crate) fn new(mut args: Args) -> CArgs {
        let (owned, json, json_len) = match args.raw_json_nul() {
            Some(t) => (None, t.as_ptr() as *const c_char, t.len() - 1),
            None => {
                let s = nul_terminated(args.to_json());
                let (p, n) = (s.as_ptr() as *const c_char, s.len() - 1);
                (Some(s), p, n)
            }
        };
        let table = args
            .bins
            .iter()
            .map(|b| tether_bytes {
                data: b.as_ptr(),
                len: b.len(),
            })
            .collect();
        CArgs {
            args,
            _owned: owned,
            json,
            json_len,
            table,
        }
    }

    pub(crate) fn c(&self) -> tether_sio_args {
        tether_sio_args {
            json: tether_str {
                data: self.json,
                len: self.json_len,
            },
            bins: if self.table.is_empty() {
                std::ptr::null()
            } else {
                self.table.as_ptr()
            },
            bins_len: self.table.len(),
        }
    }

    /// Run the callback `f` with these arguments. While it runs, handing the very same
    /// buffers back to an emit or an ack on this thread (an echo, a forward, an ack with
    /// the arguments received: the common case) reuses them instead of checking the
    /// JSON text again.
    pub(crate) fn lend<R>(&mut self, f: impl FnOnce(&tether_sio_args) -> R) -> R {
        let c = self.c();
        let lent = Lent {
            json: c.json.data,
            len: c.json.len,
            bins: c.bins,
            bins_len: c.bins_len,
            args: &self.args,
        };
        let prev = LENT.with(|l| l.replace(Some(lent)));
        // Restores the previous loan even if `f` unwinds: a stale loan must never match
        // a later buffer that happens to sit at the same address.
        struct Restore(Option<Lent>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let prev = self.0.take();
                let _ = LENT.try_with(|l| l.replace(prev));
            }
        }
        let _restore = Restore(prev);
        f(&c)
    }
}

/// The arguments lent to the running callback: the buffers C was given (compared by
/// address) and the arguments they show, valid while the callback runs.
struct Lent {
    json: *const c_char,
    len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
    args: *const Args,
}

thread_local! {
    static LENT: std::cell::RefCell<Option<Lent>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with the lent arguments, when C hands back exactly the buffers it was given.
pub(crate) fn with_lent<R>(
    json: *const c_char,
    json_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
    f: impl FnOnce(&Args) -> R,
) -> Option<R> {
    let args = LENT
        .try_with(|l| match l.borrow().as_ref() {
            Some(x)
                if x.json == json
                    && x.len == json_len
                    && x.bins == bins
                    && x.bins_len == bins_len =>
            {
                Some(x.args)
            }
            _ => None,
        })
        .ok()
        .flatten()?;
    // SAFETY: a loan points at the `CArgs` of the callback running on this thread (it is
    // removed before that callback returns), which is not changed while it runs.
    Some(f(unsafe { &*args }))
}

/// A copy of the lent arguments (see [`with_lent`]).
fn take_lent(
    json: *const c_char,
    json_len: usize,
    bins: *const tether_bytes,
    bins_len: usize,
) -> Option<Args> {
    with_lent(json, json_len, bins, bins_len, Args::clone)
}

/// Event arguments handed to a callback (borrowed for the call): the JSON text of the
/// arguments array and the binary attachments its placeholders
/// `{"_placeholder":true,"num":N}` reference (`bins[N]`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tether_sio_args {
    /// JSON array text, e.g. `["hello",{"_placeholder":true,"num":0}]`.
    pub json: tether_str,
    /// The attachments (NULL when there are none).
    pub bins: *const tether_bytes,
    /// Number of attachments.
    pub bins_len: usize,
}

/// Helpers to move `Arc` handles across the ABI.
pub(crate) trait ArcHandle {
    type Inner: Send + Sync;

    fn into_ptr(a: Arc<Self::Inner>) -> *mut Self
    where
        Self: Sized,
    {
        Arc::into_raw(a) as *mut Self
    }

    fn borrow_ptr(a: &Arc<Self::Inner>) -> *mut Self
    where
        Self: Sized,
    {
        Arc::as_ptr(a) as *mut Self
    }

    /// Borrow the object behind a handle.
    unsafe fn get<'a>(p: *const Self) -> Result<&'a Self::Inner, Fail>
    where
        Self: Sized,
    {
        // SAFETY: a non-NULL handle came from `into_ptr` and is still owned by C.
        unsafe { (p as *const Self::Inner).as_ref() }.ok_or_else(|| Fail::null("handle"))
    }

    /// A new strong reference from a handle.
    unsafe fn clone_arc(p: *const Self) -> Result<Arc<Self::Inner>, Fail>
    where
        Self: Sized,
    {
        if p.is_null() {
            return Err(Fail::null("handle"));
        }
        // SAFETY: as `get`; the count is incremented before the new Arc is made.
        unsafe {
            Arc::increment_strong_count(p as *const Self::Inner);
            Ok(Arc::from_raw(p as *const Self::Inner))
        }
    }

    /// Release the reference C owns (NULL is fine).
    unsafe fn release(p: *const Self)
    where
        Self: Sized,
    {
        if !p.is_null() {
            // SAFETY: the handle came from `into_ptr`; C gives its reference back.
            unsafe { drop(Arc::from_raw(p as *const Self::Inner)) }
        }
    }
}

/// Helpers to move `Box` handles across the ABI.
pub(crate) trait BoxHandle {
    type Inner;

    fn into_ptr(b: Box<Self::Inner>) -> *mut Self
    where
        Self: Sized,
    {
        Box::into_raw(b) as *mut Self
    }

    unsafe fn get_mut<'a>(p: *mut Self) -> Result<&'a mut Self::Inner, Fail>
    where
        Self: Sized,
    {
        // SAFETY: a non-NULL handle came from `into_ptr`.
        unsafe { (p as *mut Self::Inner).as_mut() }.ok_or_else(|| Fail::null("handle"))
    }

    unsafe fn get<'a>(p: *const Self) -> Result<&'a Self::Inner, Fail>
    where
        Self: Sized,
    {
        // SAFETY: as `get_mut`.
        unsafe { (p as *const Self::Inner).as_ref() }.ok_or_else(|| Fail::null("handle"))
    }

    unsafe fn release(p: *mut Self)
    where
        Self: Sized,
    {
        if !p.is_null() {
            // SAFETY: the handle came from `into_ptr`.
            unsafe { drop(Box::from_raw(p as *mut Self::Inner)) }
        }
    }

    /// The body of a `..._config_new(out)`: a handle holding the defaults.
    fn new_default_into(out: *mut *mut Self) -> tether_result
    where
        Self: Sized,
        Self::Inner: Default,
    {
        guard(|| {
            if out.is_null() {
                return Fail::null("config_out").record();
            }
            // SAFETY: checked non-NULL.
            unsafe { *out = Self::into_ptr(Box::default()) };
            tether_result::Ok
        })
    }

    /// The body of a setter: `f` on the handle's value, panics and errors recorded.
    fn with_mut(p: *mut Self, f: impl FnOnce(&mut Self::Inner) -> Result<(), Fail>) -> tether_result
    where
        Self: Sized,
    {
        guard(|| {
            result((|| {
                // SAFETY: a handle from the matching `_new` (NULL is an error).
                let c = unsafe { Self::get_mut(p) }?;
                f(c)
            })())
        })
    }
}

/// Milliseconds from C as a `Duration`.
pub(crate) fn ms(v: u32) -> std::time::Duration {
    std::time::Duration::from_millis(u64::from(v))
}

/// Lock a mutex, recovering from poisoning (a panicking callback must not wedge the API).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read-lock, recovering from poisoning.
pub(crate) fn read<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

/// Write-lock, recovering from poisoning.
pub(crate) fn write<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

/// `rt.check()` for the hot paths (emit, send): inside a callback of this runtime the
/// process cannot be a fork of the runtime's (its threads are running that callback), so
/// only the shutdown state is read, sparing the `getpid` system call of the fork check
/// on every emit an event handler makes. (A callback that itself calls fork() and emits
/// in the child is the one case this lets through: the emit then has no effect.)
pub(crate) fn check_rt(rt: &tether_core::runtime::Runtime) -> Result<(), Fail> {
    if rt.dispatcher().in_job() {
        if rt.is_shut_down() {
            return Err(tether_core::runtime::RuntimeError::ShutDown.into());
        }
        return Ok(());
    }
    rt.check().map_err(Fail::from)
}
