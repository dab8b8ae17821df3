//! TLS settings from Python arguments: a server's `certfile` / `keyfile`, a client's
//! `ssl_verify` (python-socketio's name; a `str` is a CA bundle, as `requests` takes it).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};

use tether_core::tls::{ClientTls, ServerTls};

/// The server side: both files or neither. Raises ValueError for a missing file, a bad
/// certificate or key.
pub(crate) fn server_tls(
    certfile: Option<&str>,
    keyfile: Option<&str>,
) -> PyResult<Option<ServerTls>> {
    match (certfile, keyfile) {
        (None, None) => Ok(None),
        (Some(c), Some(k)) => ServerTls::from_pem_files(c, k)
            .map(Some)
            .map_err(|e| PyValueError::new_err(format!("cannot use {c} / {k} for TLS: {e}"))),
        _ => Err(PyValueError::new_err(
            "TLS needs both certfile and keyfile (PEM files)",
        )),
    }
}

/// The client side: `True` (None) trusts the Mozilla roots bundled with tether; a `str`
/// is the path of a PEM bundle of CA certificates, trusted instead of them (as
/// `requests`' `verify`); `False` accepts any certificate (DANGER: encrypted but not
/// authenticated; for development only, logged as a warning).
pub(crate) fn client_tls(
    py: Python<'_>,
    ssl_verify: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<ClientTls>> {
    let Some(v) = ssl_verify else { return Ok(None) };
    if let Ok(b) = v.cast::<PyBool>() {
        if b.is_true() {
            return Ok(None);
        }
        crate::core::warn(
            py,
            "ssl_verify=False: TLS certificates are NOT verified; anyone on the path can read \
             and change this connection (development only)",
        );
        return Ok(Some(ClientTls::danger_accept_invalid_certs()));
    }
    if let Ok(s) = v.cast::<PyString>() {
        let path = s.to_cow()?.into_owned();
        let pem = std::fs::read(&path)
            .map_err(|e| PyValueError::new_err(format!("cannot read the CA bundle {path}: {e}")))?;
        return ClientTls::only_ca_pem(&pem)
            .map(Some)
            .map_err(|e| PyValueError::new_err(format!("bad CA bundle {path}: {e}")));
    }
    Err(PyTypeError::new_err(
        "ssl_verify must be True, False or the path of a CA bundle (str)",
    ))
}
