//! `tether._tether`: the native core of the Python package `tether`.
//!
//! The public API lives in `python/tether/` (python-socketio's names); this module holds
//! what it is built on: the runtime and dispatch thread ([`core`]), the server
//! ([`server`]), the client ([`client`]), plain WebSocket ([`ws`]), argument conversion
//! ([`convert`]) and the exception hierarchy ([`errors`]).

mod client;
mod convert;
mod core;
mod errors;
mod handler;
mod redis;
mod server;
mod tls;
mod ws;

use pyo3::prelude::*;

/// Report an exception the way handler exceptions are reported (internal).
#[pyfunction]
fn _report(py: Python<'_>, exc: Bound<'_, PyAny>, context: &str) {
    core::report(py, PyErr::from_value(exc), context);
}

/// The version of the native core.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _tether(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    errors::init(py, m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(core::_shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(core::_after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(_report, m)?)?;
    m.add_class::<handler::Ack>()?;
    m.add_class::<server::Server>()?;
    m.add_class::<redis::RedisEmitter>()?;
    m.add_class::<client::Client>()?;
    m.add_class::<ws::WsServer>()?;
    m.add_class::<ws::WsConnection>()?;
    m.add_function(wrap_pyfunction!(ws::ws_connect, m)?)?;
    Ok(())
}
