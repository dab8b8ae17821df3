//! Python handlers: how they are called, how their return value answers an ack, and the
//! `Ack` object a handler may keep to answer later from any thread.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use tether_core::sio::{AckSender, Args};

use crate::convert::{return_to_args, tuple_to_args};
use crate::core::{call_glue, report};
use crate::errors::Error;

/// A registered Python handler and what the Python layer learnt about it.
#[derive(Clone)]
pub(crate) struct Handler {
    pub f: Arc<Py<PyAny>>,
    /// It takes an `ack` keyword argument: it gets an [`Ack`] (or `None`) and its return
    /// value is not used as the reply.
    pub wants_ack: bool,
    /// `async def`: its coroutine runs as a task on the event loop.
    pub is_coro: bool,
    /// How many positional arguments it takes (connect / disconnect handlers), or -1 for
    /// any number.
    pub nargs: i32,
}

impl Handler {
    pub(crate) fn traverse(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&*self.f)
    }
}

/// The right to answer one acknowledgement, once, from any thread: `ack(*args)` or
/// `ack.send(*args)`.
#[pyclass(frozen, module = "tether._tether")]
pub(crate) struct Ack {
    sender: AckSender,
}

impl Ack {
    pub(crate) fn new(sender: AckSender) -> Ack {
        Ack { sender }
    }

    fn send_args(&self, py: Python<'_>, args: Args) -> PyResult<bool> {
        if self.sender.is_sent() {
            return Ok(false);
        }
        let _ = py;
        match self.sender.send(args) {
            Ok(()) => Ok(true),
            Err(tether_core::sio::AckSendError::AlreadySent) => Ok(false),
            // The peer is gone: nobody is waiting any more.
            Err(tether_core::sio::AckSendError::Send(tether_core::engine::SendError::Closed)) => {
                Ok(false)
            }
            Err(e) => Err(Error::from(e).into()),
        }
    }
}

#[pymethods]
impl Ack {
    /// Answer with these arguments. Returns False if it was answered already (or the
    /// peer is gone).
    #[pyo3(signature = (*args))]
    fn send(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.send_args(py, tuple_to_args(args)?)
    }

    /// Same as `send`.
    #[pyo3(signature = (*args))]
    fn __call__(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.send(py, args)
    }

    /// Whether it was answered.
    #[getter]
    fn sent(&self) -> bool {
        self.sender.is_sent()
    }

    /// Answer with a handler's return value (None: no argument, a tuple: several).
    fn _answer(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.send_args(py, return_to_args(value)?)
    }

    fn __repr__(&self) -> String {
        format!(
            "<tether.Ack id={}{}>",
            self.sender.id(),
            if self.sender.is_sent() { " sent" } else { "" }
        )
    }
}

/// Call `h` with `args`; answer `ack` with the return value unless the handler takes the
/// ack itself; coroutines run as tasks on the running loop (async objects only).
/// Exceptions are reported, never propagated.
pub(crate) fn invoke(
    py: Python<'_>,
    h: &Handler,
    args: Bound<'_, PyTuple>,
    ack: Option<AckSender>,
    is_async: bool,
    what: &dyn Fn() -> String,
) {
    let f = h.f.bind(py);
    let result = if h.wants_ack {
        let kwargs = PyDict::new(py);
        let set = match ack.as_ref() {
            Some(a) => Py::new(py, Ack::new(a.clone())).and_then(|o| kwargs.set_item("ack", o)),
            None => kwargs.set_item("ack", py.None()),
        };
        if let Err(e) = set {
            report(py, e, &what());
            return;
        }
        f.call(args, Some(&kwargs))
    } else {
        f.call1(args)
    };
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            report(py, e, &what());
            return;
        }
    };
    if h.is_coro {
        if !is_async {
            // A coroutine on a synchronous object: nothing would ever run it.
            let _ = value.call_method0("close");
            crate::core::report_message(
                py,
                &format!(
                    "{}: async handlers need tether.AsyncServer / tether.AsyncClient",
                    what()
                ),
            );
            return;
        }
        let ack_obj = match (h.wants_ack, ack) {
            (false, Some(a)) => match Py::new(py, Ack::new(a)) {
                Ok(o) => o.into_any(),
                Err(e) => {
                    report(py, e, &what());
                    return;
                }
            },
            _ => py.None(),
        };
        let w = PyString::new(py, &what());
        let spawned = PyTuple::new(py, [value, ack_obj.into_bound(py), w.into_any()])
            .and_then(|t| call_glue(py, "_spawn", t));
        if let Err(e) = spawned {
            report(py, e, &what());
        }
        return;
    }
    if !h.wants_ack
        && let Some(a) = ack
    {
        let sent = return_to_args(&value)
            .map_err(|e| e.to_string())
            .and_then(|args| a.send(args).map_err(|e| e.to_string()));
        if let Err(e) = sent {
            crate::core::warn(
                py,
                &format!("{}: cannot send the acknowledgement: {e}", what()),
            );
        }
    }
}
