//! The log callback: a `tracing` subscriber layer forwarding to C.

use std::ffi::{c_char, c_void};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::error::{Fail, guard, result, tether_result};
use crate::util::{Userdata, nul_terminated, tether_free_cb, tether_str};

/// Log levels, most severe first (`max_level` of tether_log_set_callback()).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tether_log_level {
    /// Nothing.
    Off = 0,
    /// Errors.
    Error = 1,
    /// Warnings.
    Warn = 2,
    /// Information.
    Info = 3,
    /// Debugging detail.
    Debug = 4,
    /// Everything.
    Trace = 5,
}

/// Receives one log record: its tether_log_level, the module that logged (`target`),
/// and the message with its fields (`key=value`). Runs on the thread that logs — any
/// thread, possibly several at once — so it must be thread-safe and quick. It must not
/// call tether functions (a record logged meanwhile would be dropped). Strings are
/// borrowed for the call.
pub type tether_log_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: u32,
        target: tether_str,
        message: tether_str,
    ),
>;

struct Sink {
    f: unsafe extern "C" fn(*mut c_void, u32, tether_str, tether_str),
    ud: Userdata,
}

static SINK: RwLock<Option<Arc<Sink>>> = RwLock::new(None);
static MAX_LEVEL: AtomicU32 = AtomicU32::new(0);
static INSTALLED: OnceLock<bool> = OnceLock::new();

thread_local! {
    static IN_LOG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn level_num(l: &Level) -> u32 {
    match *l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        _ => 5,
    }
}

struct CLayer;

#[derive(Default)]
struct Msg {
    message: String,
    fields: String,
}

impl Msg {
    fn field(&mut self, name: &str, value: std::fmt::Arguments<'_>) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{name}={value}");
    }

    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }
}

impl Visit for Msg {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.field(field.name(), format_args!("{value:?}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.field(field.name(), format_args!("{value}"));
        }
    }
}

impl<S: Subscriber> Layer<S> for CLayer {
    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        level_num(meta.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn register_callsite(
        &self,
        _meta: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // The level can change at run time: ask `enabled` every time.
        tracing::subscriber::Interest::sometimes()
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let lvl = level_num(meta.level());
        if lvl > MAX_LEVEL.load(Ordering::Relaxed) {
            return;
        }
        if IN_LOG.with(|f| f.replace(true)) {
            return;
        }
        let sink = SINK.read().ok().and_then(|s| s.clone());
        if let Some(sink) = sink {
            let mut m = Msg::default();
            event.record(&mut m);
            let msg = nul_terminated(m.finish());
            let target = nul_terminated(meta.target().to_owned());
            // SAFETY: the C caller's callback and userdata.
            unsafe {
                (sink.f)(
                    sink.ud.ptr,
                    lvl,
                    tether_str::from_nul(&target),
                    tether_str::from_nul(&msg),
                )
            };
        }
        IN_LOG.with(|f| f.set(false));
    }
}

/// Send the library's log records up to `max_level` (a tether_log_level) to `callback`,
/// replacing an earlier callback (whose userdata_free then runs). A NULL callback or
/// TETHER_LOG_LEVEL_OFF turns logging off. The first call installs tether's log
/// subscriber for the process; TETHER_RESULT_INVALID_PARAMETER if the process already
/// has another global `tracing` subscriber.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_log_set_callback(
    max_level: u32,
    callback: tether_log_cb,
    userdata: *mut c_void,
    userdata_free: tether_free_cb,
) -> tether_result {
    let ud = Userdata::new(userdata, userdata_free);
    guard(|| {
        result((|| {
            if max_level > 5 {
                return Err(Fail::new(
                    tether_result::InvalidParameter,
                    format!("log level {max_level} is not a tether_log_level"),
                ));
            }
            let installed = *INSTALLED.get_or_init(|| {
                tracing::subscriber::set_global_default(tracing_subscriber::registry().with(CLayer))
                    .is_ok()
            });
            if !installed {
                return Err(Fail::new(
                    tether_result::InvalidParameter,
                    "another global tracing subscriber is installed",
                ));
            }
            let sink = callback.map(|f| Arc::new(Sink { f, ud }));
            let level = if sink.is_some() { max_level } else { 0 };
            let old = {
                let mut s = match SINK.write() {
                    Ok(s) => s,
                    Err(p) => p.into_inner(),
                };
                std::mem::replace(&mut *s, sink)
            };
            MAX_LEVEL.store(level, Ordering::Relaxed);
            tracing::callsite::rebuild_interest_cache();
            drop(old);
            Ok(())
        })())
    })
}

/// Change the level of the installed log callback (a tether_log_level).
#[unsafe(no_mangle)]
pub extern "C" fn tether_log_set_level(max_level: u32) -> tether_result {
    guard(|| {
        if max_level > 5 {
            return Fail::new(tether_result::InvalidParameter, "not a tether_log_level").record();
        }
        MAX_LEVEL.store(max_level, Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
        tether_result::Ok
    })
}

/// Log a message through tether's logger (handy to test a log callback), at a
/// tether_log_level.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tether_log_message(level: u32, message: *const c_char) -> tether_result {
    guard(|| {
        result((|| {
            // SAFETY: a NUL-terminated string.
            let m = unsafe { crate::util::cstr(message, "message") }?;
            match level {
                1 => tracing::error!(target: "tether", "{m}"),
                2 => tracing::warn!(target: "tether", "{m}"),
                3 => tracing::info!(target: "tether", "{m}"),
                4 => tracing::debug!(target: "tether", "{m}"),
                5 => tracing::trace!(target: "tether", "{m}"),
                _ => {
                    return Err(Fail::new(
                        tether_result::InvalidParameter,
                        "not a tether_log_level (1..=5)",
                    ));
                }
            }
            Ok(())
        })())
    })
}
