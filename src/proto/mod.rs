//! Sans-IO codecs for the wire protocols: Engine.IO v4 packets and polling payloads,
//! Socket.IO v5 packets, RFC 6455 WebSocket frames, and the [`Str`] string type they share.
//!
//! Nothing in this module performs IO; every decoder works on bytes that have already been
//! received and never panics, whatever the input.

pub mod engineio;
pub mod json;
pub mod rawjson;
pub mod socketio;
mod str;
pub mod wsframe;

pub use str::Str;
