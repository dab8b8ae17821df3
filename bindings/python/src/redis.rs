//! Redis from Python: the cluster adapter behind `tether.Server(client_manager=
//! tether.RedisManager(url))` and the write-only emitter behind
//! `tether.RedisManager(url, write_only=True).emit(...)`.
//!
//! Both speak Node's `@socket.io/redis-adapter` / `@socket.io/redis-emitter` format
//! (tether's [`tether_core::adapter`]), so tether and Node servers can share a cluster.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use tether_core::adapter::{
    EmitterOperator, RedisAdapter, RedisAdapterConfig, RedisEmitter as CoreEmitter,
};

use crate::convert::data_to_args;
use crate::core::{Core, core};
use crate::errors::{Error, Result};
use crate::server::{norm_nsp, secs, str_list};

/// What `Server(client_manager=...)` reads from the manager object (duck-typed: the
/// attributes of `tether.RedisManager`).
pub(crate) struct ManagerSettings {
    pub url: String,
    pub key: String,
    pub requests_timeout: Duration,
    pub connect_timeout: Duration,
}

impl ManagerSettings {
    /// Read `url`, `channel`, `write_only`, `requests_timeout` and `connect_timeout`.
    pub(crate) fn from_object(m: &Bound<'_, PyAny>) -> PyResult<ManagerSettings> {
        let get = |name: &str| -> PyResult<Bound<'_, PyAny>> {
            m.getattr(name).map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "client_manager must be a tether.RedisManager (it has no {name:?})"
                ))
            })
        };
        if get("write_only")?.is_truthy()? {
            return Err(PyValueError::new_err(
                "a write-only RedisManager cannot be a server's client_manager",
            ));
        }
        Ok(ManagerSettings {
            url: get("url")?.extract()?,
            key: get("channel")?.extract()?,
            requests_timeout: secs(get("requests_timeout")?.extract()?, "requests_timeout")?,
            connect_timeout: secs(get("connect_timeout")?.extract()?, "connect_timeout")?,
        })
    }

    /// Connect the adapter (blocking, without the GIL) and wait until its
    /// subscriptions are live.
    pub(crate) fn connect(self, py: Python<'_>, c: &Core) -> Result<RedisAdapter> {
        let config = RedisAdapterConfig {
            key: self.key,
            requests_timeout: self.requests_timeout,
            connect_timeout: self.connect_timeout,
            ..RedisAdapterConfig::default()
        };
        let url = self.url;
        let wait = self.connect_timeout;
        let rt = c.rt.clone();
        py.detach(move || {
            rt.block_on(
                async move { RedisAdapter::connect_with(&url, config).await },
                wait + Duration::from_secs(5),
            )
        })?
        .map_err(Error::from)
    }
}

/// After the server's namespaces exist: wait until their subscriptions are live.
pub(crate) fn ready(py: Python<'_>, c: &Core, adapter: &RedisAdapter, t: Duration) -> Result<()> {
    let a = adapter.clone();
    let rt = c.rt.clone();
    py.detach(move || rt.block_on(async move { a.ready(t).await }, t + Duration::from_secs(1)))?
        .map_err(Error::from)
}

/// A connection that publishes to a cluster's rooms without being a server (Node's
/// `@socket.io/redis-emitter`). Use `tether.RedisManager(url, write_only=True)`.
#[pyclass(frozen, module = "tether._tether")]
pub(crate) struct RedisEmitter {
    emitter: CoreEmitter,
    core: std::sync::Arc<Core>,
    timeout: Duration,
}

#[pymethods]
impl RedisEmitter {
    /// Connect to Redis at `url` (blocking, without the GIL). Raises
    /// tether.ConnectionError when Redis cannot be reached, ValueError for a bad URL.
    #[new]
    #[pyo3(signature = (url, channel = "socket.io", timeout = 5.0))]
    fn new(py: Python<'_>, url: String, channel: &str, timeout: f64) -> PyResult<Self> {
        let c = core(py)?;
        let t = secs(timeout, "timeout")?;
        let rt = c.rt.clone();
        let emitter = py
            .detach(move || rt.block_on(async move { CoreEmitter::connect(&url).await }, t))
            .map_err(|_| Error::Timeout("no answer from Redis in time".into()))?
            .map_err(Error::from)?
            .with_key(channel.to_owned());
        Ok(RedisEmitter {
            emitter,
            core: c,
            timeout: t,
        })
    }

    /// Publish `event` with `data` (a tuple for several arguments) to the sockets of
    /// `namespace` in `to` (a room or a list; None: every socket), except those in
    /// `skip_sid`. Blocks (without the GIL) until Redis took it. Raises
    /// tether.ConnectionError when Redis is unreachable, tether.TimeoutError.
    #[pyo3(signature = (event, data = None, to = None, skip_sid = None, namespace = None))]
    fn emit(
        &self,
        py: Python<'_>,
        event: String,
        data: Option<&Bound<'_, PyAny>>,
        to: Option<&Bound<'_, PyAny>>,
        skip_sid: Option<&Bound<'_, PyAny>>,
        namespace: Option<&str>,
    ) -> PyResult<()> {
        self.core.check()?;
        let args = data_to_args(data)?;
        let rooms = str_list(to, "to")?;
        let skip = str_list(skip_sid, "skip_sid")?;
        let em = self.emitter.of(&norm_nsp(namespace));
        let rt = self.core.rt.clone();
        let t = self.timeout;
        py.detach(move || {
            rt.block_on(
                async move {
                    let mut op: Option<EmitterOperator> = None;
                    for r in rooms {
                        op = Some(match op {
                            Some(o) => o.to(r),
                            None => em.to(r),
                        });
                    }
                    for r in skip {
                        op = Some(match op {
                            Some(o) => o.except(r),
                            None => em.except(r),
                        });
                    }
                    match op {
                        Some(o) => o.emit_args(&event, args).await,
                        None => em.emit_args(&event, args).await,
                    }
                },
                t,
            )
        })
        .map_err(|_| Error::Timeout("Redis did not take the message in time".into()))?
        .map_err(Error::from)?;
        Ok(())
    }
}
