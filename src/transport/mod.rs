//! Transports: tokio I/O only. They move Engine.IO frames between sockets and sessions.

pub mod client;
pub mod http;
pub(crate) mod polling;
pub(crate) mod websocket;
