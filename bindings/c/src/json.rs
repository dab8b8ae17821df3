//! Small JSON helpers for C programs that have no JSON library: read one value out of
//! an event's arguments text by JSON pointer, and quote a string for building one.

use std::ffi::c_char;

use serde_json::Value;

use crate::error::{Fail, guard, result, tether_result};
use crate::util::{cstr, json_value};

fn copy_out(s: &str, buf: *mut c_char, len: usize, out_n: *mut usize) -> Result<(), Fail> {
    if !out_n.is_null() {
        // SAFETY: a non-NULL out-parameter.
        unsafe { *out_n = s.len() };
    }
    if buf.is_null() || len == 0 {
        return Err(Fail::new(
            tether_result::BufferTooSmall,
            format!("{} bytes needed", s.len() + 1),
        ));
    }
    let n = s.len().min(len - 1);
    // SAFETY: the caller promised `len` writable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
    if n < s.len() {
        return Err(Fail::new(
            tether_result::BufferTooSmall,
            format!("{} bytes needed", s.len() + 1),
        ));
    }
    Ok(())
}

unsafe fn lookup(
    json: *const c_char,
    json_len: usize,
    pointer: *const c_char,
) -> Result<Value, Fail> {
    // SAFETY: forwarded.
    let (v, p) = unsafe {
        (
            json_value(json, json_len, "json")?,
            cstr(pointer, "pointer")?,
        )
    };
    v.pointer(p).cloned().ok_or_else(|| {
        Fail::new(
            tether_result::InvalidParameter,
            format!("nothing at JSON pointer {p:?}"),
        )
    })
}

/// Copy the JSON text of the value at JSON pointer `pointer` (RFC 6901, e.g. "/0/room")
/// in `json` into `buf` (`len` bytes, NUL-terminated). `*out_n` (may be NULL) gets the
/// value's full length: on TETHER_RESULT_BUFFER_TOO_SMALL, allocate `*out_n + 1` and
/// call again. TETHER_RESULT_INVALID_PARAMETER when nothing is there.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_json_pointer(
    json: *const c_char,
    json_len: usize,
    pointer: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: forwarded.
            let v = unsafe { lookup(json, json_len, pointer) }?;
            copy_out(&v.to_string(), buf, len, out_n)
        })())
    })
}

/// Like tether_json_pointer(), but the value must be a string and its unescaped text is
/// copied (TETHER_RESULT_INVALID_PARAMETER otherwise).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_json_pointer_string(
    json: *const c_char,
    json_len: usize,
    pointer: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: forwarded.
            match unsafe { lookup(json, json_len, pointer) }? {
                Value::String(s) => copy_out(&s, buf, len, out_n),
                _ => Err(Fail::new(
                    tether_result::InvalidParameter,
                    "the value is not a string",
                )),
            }
        })())
    })
}

/// Write `text` as a JSON string literal (quoted and escaped) into `buf`, like
/// tether_json_pointer() writes its output.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_json_quote(
    text: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a NUL-terminated string.
            let t = unsafe { cstr(text, "text") }?;
            copy_out(&Value::String(t.to_owned()).to_string(), buf, len, out_n)
        })())
    })
}
