//! A server that behaves like the reference servers of the official protocol test suites
//! (socket.io-protocol and engine.io-protocol, folder `test-suite/`), plus the events of
//! `tests/interop/PROTOCOL.md` that tether's interop tests use.
//!
//! ```text
//! cargo run --example conformance_server -- [--port 3000] [--engine-io]
//! ```
//!
//! `--engine-io` serves raw Engine.IO on `/engine.io/`, echoing every message back.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tether::config::{Cors, EngineConfig};
use tether::engine::{DisconnectReason, Engine, EngineHandler, EngineSocket};
use tether::proto::Str;
use tether::sio::{Args, ConnectError, Io, Namespace, SocketRef};

fn engine_config(path: &str) -> EngineConfig {
    EngineConfig {
        path: path.to_owned(),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        cors: Some(Cors::any()),
        ..EngineConfig::default()
    }
}

/// Raw Engine.IO echo, for the engine.io-protocol suite.
struct Echo;

impl EngineHandler for Echo {
    fn on_connect(&self, _socket: &Arc<EngineSocket>) {}
    fn on_message(&self, socket: &Arc<EngineSocket>, msg: Str) {
        let _ = socket.send_message(msg.as_str());
    }
    fn on_binary(&self, socket: &Arc<EngineSocket>, data: Bytes) {
        let _ = socket.send_binary(data);
    }
    fn on_disconnect(&self, _socket: &Arc<EngineSocket>, _reason: DisconnectReason) {}
}

fn setup(ns: &Namespace) {
    ns.on_connect(on_connection);
}

fn on_connection(socket: SocketRef) {
    let _ = socket.emit("auth", &socket.handshake().auth);
    socket.on("message", |s, ev| {
        let _ = s.emit_args("message-back", ev.args);
    });
    socket.on("message-with-ack", |_, ev| {
        if let Some(ack) = ev.ack {
            let _ = ack.send(ev.args);
        }
    });
    socket.on("binary-echo", |s, ev| {
        let _ = s.emit_args("binary-back", ev.args);
    });
    socket.on("request-ack", |s, ev| {
        let ms = ev.args.get::<u64>(0).unwrap_or(1000);
        let s2 = s.clone();
        s.emit_with_ack_cb(
            "need-ack",
            Args::from(vec![json!("please")]),
            Duration::from_millis(ms),
            move |r| {
                let result = match r {
                    Ok(args) => json!({ "ok": true, "args": args.values() }),
                    Err(_) => json!({ "ok": false, "error": "timeout" }),
                };
                let _ = s2.emit("ack-result", &result);
            },
        );
    });
    socket.on("join", |s, ev| {
        if let Some(room) = ev.args.str(0) {
            s.join(room.to_owned());
        }
        if let Some(ack) = ev.ack {
            let _ = ack.send_one(&true);
        }
    });
    socket.on("leave", |s, ev| {
        if let Some(room) = ev.args.str(0) {
            s.leave(room);
        }
        if let Some(ack) = ev.ack {
            let _ = ack.send_one(&true);
        }
    });
    socket.on("to-room", |s, mut ev| {
        let Some(room) = ev.args.str(0).map(str::to_owned) else {
            return;
        };
        ev.args.values_mut().remove(0);
        let _ = s.ns().to(room).emit_args("room-message", ev.args);
    });
    socket.on("broadcast", |s, ev| {
        let _ = s.broadcast().emit_args("broadcast-message", ev.args);
    });
    socket.on("private", |s, mut ev| {
        let Some(to) = ev.args.str(0).map(str::to_owned) else {
            return;
        };
        ev.args.values_mut()[0] = Value::String(s.id().to_string());
        let _ = s.ns().to(to).emit_args("private-message", ev.args);
    });
    socket.on("disconnect-me", |s, _| s.disconnect());
    socket.on("drop-connection", |s, _| s.close_connection());
    socket.on("recovered", |s, ev| {
        if let Some(ack) = ev.ack {
            let _ = ack.send(vec![json!(s.recovered()), json!(s.id().as_str())]);
        }
    });
    socket.on("rooms", |s, ev| {
        if let Some(ack) = ev.ack {
            let _ = ack.send_one(&s.rooms());
        }
    });
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut port = 3000u16;
    let mut engine_io = false;
    let mut recovery = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--engine-io" => engine_io = true,
            "--recovery" => recovery = true,
            other => {
                eprintln!(
                    "unknown argument {other}; usage: conformance_server [--port N] [--engine-io] [--recovery]"
                );
                std::process::exit(2);
            }
        }
    }
    let addr = ("127.0.0.1", port);
    let handle = if engine_io {
        let engine = Engine::new(engine_config("/engine.io/"), Arc::new(Echo));
        tether::transport::http::serve(engine, addr, tether::StaticRoutes::new()).await?
    } else {
        let mut builder = Io::builder()
            .engine_config(engine_config("/socket.io/"))
            .connect_timeout(Duration::from_millis(1000));
        if recovery {
            builder = builder.connection_state_recovery(tether::sio::recovery::RecoveryConfig {
                max_disconnection_duration: Duration::from_secs(30),
                ..Default::default()
            });
        }
        let io = builder.build();
        setup(&io.of("/"));
        setup(&io.of("/custom"));
        let refuse = io.of("/refuse");
        refuse.use_middleware(|ctx| {
            if ctx.handshake.auth.get("token").and_then(Value::as_str) == Some("good") {
                Ok(())
            } else {
                Err(ConnectError::new("not authorized").with_data(json!({ "reason": "bad token" })))
            }
        });
        setup(&refuse);
        io.listen(addr).await?
    };
    println!("listening on http://{}", handle.local_addr());
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await.ok();
    handle.shutdown();
    Ok(())
}
