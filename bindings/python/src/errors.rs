//! The exception hierarchy (`tether.TetherError` and its subclasses) and the one place
//! where every core error becomes a Python exception.
//!
//! ```text
//! TetherError(Exception)
//! ├── ConnectionError(TetherError, builtins.ConnectionError)
//! │   └── ConnectionRefusedError(ConnectionError, builtins.ConnectionRefusedError)
//! ├── TimeoutError(TetherError, builtins.TimeoutError)
//! ├── DisconnectedError(TetherError)
//! ├── BadNamespaceError(TetherError)
//! ├── QueueFullError(TetherError)
//! ├── ShutDownError(TetherError)
//! └── ForkedProcessError(TetherError)
//! ```
//!
//! The names python-socketio uses (`ConnectionError`, `ConnectionRefusedError`,
//! `TimeoutError`) deliberately subclass the builtins of the same name, so that
//! `except ConnectionError:` catches them whichever one the reader had in mind.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use serde_json::Value;

use tether_core::engine::SendError;
use tether_core::runtime::RuntimeError;
use tether_core::sio::client::{ClientEmitError, ClientError};
use tether_core::sio::{AckError, AckSendError, EmitError};
use tether_core::ws::{WsConnectError, WsSendError};

use crate::convert::value_to_py;

pub(crate) struct Types {
    pub tether: Py<PyType>,
    pub connection: Py<PyType>,
    pub refused: Py<PyType>,
    pub timeout: Py<PyType>,
    pub disconnected: Py<PyType>,
    pub bad_namespace: Py<PyType>,
    pub queue_full: Py<PyType>,
    pub shut_down: Py<PyType>,
    pub forked: Py<PyType>,
}

static TYPES: PyOnceLock<Types> = PyOnceLock::new();

fn make(
    py: Python<'_>,
    name: &str,
    bases: Vec<Bound<'_, PyAny>>,
    doc: &str,
) -> PyResult<Py<PyType>> {
    let dict = PyDict::new(py);
    // Not OSError's "[Errno message] data" rendering for the builtin-derived ones.
    dict.set_item(
        "__str__",
        py.import("builtins")?
            .getattr("Exception")?
            .getattr("__str__")?,
    )?;
    dict.set_item("__module__", "tether")?;
    dict.set_item("__doc__", doc)?;
    let bases = PyTuple::new(py, bases)?;
    let ty = py
        .import("builtins")?
        .getattr("type")?
        .call1((name, bases, dict))?;
    Ok(ty.cast_into::<PyType>()?.unbind())
}

/// Create the exception types and add them to the module.
pub(crate) fn init(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    let builtins = py.import("builtins")?;
    let b = |n: &str| builtins.getattr(n);
    let tether = make(
        py,
        "TetherError",
        vec![b("Exception")?],
        "Base class of every exception tether raises.",
    )?;
    let t = |ty: &Py<PyType>| ty.bind(py).clone().into_any();
    let connection = make(
        py,
        "ConnectionError",
        vec![t(&tether), b("ConnectionError")?],
        "A connection could not be made or was lost (also a builtins.ConnectionError).",
    )?;
    let refused = make(
        py,
        "ConnectionRefusedError",
        vec![t(&connection), b("ConnectionRefusedError")?],
        "A connection was refused: raise it from a connect handler, with a message and \
         optional data, to refuse a client (its connect_error gets them); the client \
         raises it when a server refuses a namespace. `message`, `data` and `error_args` \
         ({'message': ..., 'data': ...}) describe the refusal.",
    )?;
    let timeout = make(
        py,
        "TimeoutError",
        vec![t(&tether), b("TimeoutError")?],
        "No answer in time (an acknowledgement, a connection). Also a builtins.TimeoutError.",
    )?;
    let disconnected = make(
        py,
        "DisconnectedError",
        vec![t(&tether)],
        "The socket or connection is not connected (any more).",
    )?;
    let bad_namespace = make(
        py,
        "BadNamespaceError",
        vec![t(&tether)],
        "The namespace is not connected (client) or unknown.",
    )?;
    let queue_full = make(
        py,
        "QueueFullError",
        vec![t(&tether)],
        "A bounded send queue is full: the peer reads too slowly.",
    )?;
    let shut_down = make(
        py,
        "ShutDownError",
        vec![t(&tether)],
        "The object or the tether runtime was shut down.",
    )?;
    let forked = make(
        py,
        "ForkedProcessError",
        vec![t(&tether)],
        "The object was created before os.fork(): it cannot be used in the child process \
         (create a new one there).",
    )?;
    let types = Types {
        tether,
        connection,
        refused,
        timeout,
        disconnected,
        bad_namespace,
        queue_full,
        shut_down,
        forked,
    };
    for (name, ty) in [
        ("TetherError", &types.tether),
        ("ConnectionError", &types.connection),
        ("ConnectionRefusedError", &types.refused),
        ("TimeoutError", &types.timeout),
        ("DisconnectedError", &types.disconnected),
        ("BadNamespaceError", &types.bad_namespace),
        ("QueueFullError", &types.queue_full),
        ("ShutDownError", &types.shut_down),
        ("ForkedProcessError", &types.forked),
    ] {
        m.add(name, ty.bind(py))?;
    }
    let _ = TYPES.set(py, types);
    Ok(())
}

pub(crate) fn types(py: Python<'_>) -> &Types {
    TYPES
        .get(py)
        .expect("tether._tether initialised its exception types")
}

/// Every failure the binding reports, before it becomes a Python exception.
#[derive(Debug)]
pub(crate) enum Error {
    /// Bad argument.
    Value(String),
    /// A connection failed or was refused at the transport level.
    Connection(String),
    /// A namespace was refused by the server.
    Refused {
        message: String,
        data: Option<Value>,
    },
    Timeout(String),
    Disconnected(String),
    BadNamespace(String),
    QueueFull(String),
    ShutDown(String),
    Forked,
    Other(String),
}

impl Error {
    pub(crate) fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let t = types(py);
        let raise = |ty: &Py<PyType>, msg: String| PyErr::from_type(ty.bind(py).clone(), (msg,));
        match self {
            Error::Value(m) => PyValueError::new_err(m),
            Error::Connection(m) => raise(&t.connection, m),
            Error::Refused { message, data } => refused(py, &message, data.as_ref()),
            Error::Timeout(m) => raise(&t.timeout, m),
            Error::Disconnected(m) => raise(&t.disconnected, m),
            Error::BadNamespace(m) => raise(&t.bad_namespace, m),
            Error::QueueFull(m) => raise(&t.queue_full, m),
            Error::ShutDown(m) => raise(&t.shut_down, m),
            Error::Forked => raise(
                &t.forked,
                "this tether object was created before os.fork(): it cannot be used in \
                 the child process (create a new one there)"
                    .to_owned(),
            ),
            Error::Other(m) => raise(&t.tether, m),
        }
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        Python::attach(|py| e.into_pyerr(py))
    }
}

/// `ConnectionRefusedError(message[, data])` with `message`, `data` and `error_args`.
pub(crate) fn refused(py: Python<'_>, message: &str, data: Option<&Value>) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let ty = types(py).refused.bind(py);
        let exc = match data {
            Some(d) => ty.call1((message, value_to_py(py, d)?))?,
            None => ty.call1((message,))?,
        };
        let error_args = PyDict::new(py);
        error_args.set_item("message", message)?;
        match data {
            Some(d) => {
                let d = value_to_py(py, d)?;
                error_args.set_item("data", &d)?;
                exc.setattr("data", d)?;
            }
            None => exc.setattr("data", py.None())?,
        }
        exc.setattr("message", message)?;
        exc.setattr("error_args", error_args)?;
        Ok(PyErr::from_value(exc))
    };
    make().unwrap_or_else(|e| e)
}

impl From<RuntimeError> for Error {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Forked => Error::Forked,
            RuntimeError::ShutDown => Error::ShutDown("the tether runtime is shut down".into()),
            RuntimeError::Timeout => Error::Timeout("timed out".into()),
            RuntimeError::Io(e) => Error::Other(e.to_string()),
            e @ RuntimeError::OnRuntimeThread => Error::Other(e.to_string()),
        }
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::QueueFull => Error::QueueFull(e.to_string()),
            SendError::Closed => Error::Disconnected(e.to_string()),
        }
    }
}

impl From<EmitError> for Error {
    fn from(e: EmitError) -> Self {
        match e {
            EmitError::Send(s) => s.into(),
            EmitError::Dropped(_) => Error::QueueFull(e.to_string()),
            EmitError::Serialize(s) => Error::Value(s.to_string()),
        }
    }
}

impl From<ClientEmitError> for Error {
    fn from(e: ClientEmitError) -> Self {
        match e {
            ClientEmitError::Reserved(_) => Error::Value(e.to_string()),
            ClientEmitError::BufferFull => Error::QueueFull(e.to_string()),
            ClientEmitError::Send(s) => s.into(),
            ClientEmitError::Serialize(s) => Error::Value(s.to_string()),
        }
    }
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Config(m) => Error::Value(m),
            ClientError::NoRuntime => Error::ShutDown("the tether runtime is shut down".into()),
            ClientError::Refused { message, data } => Error::Refused { message, data },
            ClientError::Open(m) => Error::Connection(format!("connection failed: {m}")),
            ClientError::Timeout => Error::Timeout("connection timed out".into()),
            ClientError::Closed => Error::Connection("the client was closed".into()),
        }
    }
}

impl From<AckError> for Error {
    fn from(e: AckError) -> Self {
        match e {
            AckError::Timeout => Error::Timeout("no acknowledgement in time".into()),
            AckError::Disconnected => {
                Error::Disconnected("disconnected before the acknowledgement".into())
            }
            AckError::Send(s) => s.into(),
            AckError::Rejected(m) => Error::Value(m),
        }
    }
}

impl From<AckSendError> for Error {
    fn from(e: AckSendError) -> Self {
        match e {
            AckSendError::AlreadySent => Error::Value(e.to_string()),
            AckSendError::Send(s) => s.into(),
            AckSendError::Serialize(s) => Error::Value(s.to_string()),
        }
    }
}

impl From<WsSendError> for Error {
    fn from(e: WsSendError) -> Self {
        match e {
            WsSendError::QueueFull => Error::QueueFull(e.to_string()),
            WsSendError::Closed => Error::Disconnected(e.to_string()),
        }
    }
}

impl From<WsConnectError> for Error {
    fn from(e: WsConnectError) -> Self {
        match e {
            WsConnectError::InvalidUrl(m) => Error::Value(format!("invalid url: {m}")),
            WsConnectError::Timeout => Error::Timeout(e.to_string()),
            other => Error::Connection(other.to_string()),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

impl From<tether_core::adapter::AdapterError> for Error {
    fn from(e: tether_core::adapter::AdapterError) -> Self {
        use tether_core::adapter::AdapterError as A;
        match e {
            A::Config(m) => Error::Value(format!("invalid Redis setting: {m}")),
            A::Timeout(what) => Error::Timeout(format!("timeout reached while waiting for {what}")),
            A::Unavailable(m) => Error::Connection(format!("Redis unavailable: {m}")),
        }
    }
}
