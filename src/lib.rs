//! # tether
//!
//! An embeddable realtime messaging runtime: Socket.IO (protocol v5 over Engine.IO v4)
//! over WebSocket and HTTP long-polling, interoperable with the official `socket.io`
//! server and client.
//!
//! - [`proto`]: sans-IO codecs for Engine.IO and Socket.IO packets (no I/O, fuzzable).
//! - [`engine`]: the Engine.IO server (sessions, heartbeat, upgrades).
//! - [`sio`]: the Socket.IO server (namespaces, rooms, broadcasts, acks, middleware).
//! - [`config`]: settings, with the reference implementation's defaults.
//!
//! Start with [`sio::Io`].
#![warn(missing_docs)]

pub mod adapter;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod limits;
pub mod proto;
pub mod runtime;
pub mod sio;
pub mod tls;
pub mod transport;
pub mod ws;

pub use config::{Cors, EngineConfig, RequestInfo, SioConfig};
pub use sio::{Args, Event, Io, SocketRef};
pub use transport::http::{Routes, ServerHandle, StaticRoutes};

/// The README's code, compiled as a doctest so it never rots.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
