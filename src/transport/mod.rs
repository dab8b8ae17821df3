//! Transports: tokio I/O only. They move Engine.IO frames between sockets and sessions.

pub mod client;
pub(crate) mod frame_guard;
pub mod http;
pub(crate) mod polling;
pub(crate) mod websocket;
