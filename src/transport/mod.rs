//! Transports: tokio I/O only. They move Engine.IO frames between sockets and sessions; `wsio`
//! runs the WebSocket codec of `proto::wsframe` on a byte stream.

pub mod client;
pub mod http;
pub(crate) mod polling;
pub(crate) mod tcpio;
pub(crate) mod websocket;
pub(crate) mod wsio;
