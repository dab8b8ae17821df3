//! The chat app of the Socket.IO tutorials — tether's main example.
//!
//! ```text
//! cargo run --release --example chat -- [--port 3000]
//! ```
//! then open <http://127.0.0.1:3000> in two browser tabs.
//!
//! Events (the tutorials' names):
//! - `chat message` (text): sent to everyone, the sender included;
//! - `joinRoom` (room name): joins that room;
//! - `roomMessage` `{room, message}`: reaches the room's members as `roomMessage` `{sender, message}`;
//! - `privateMessage` `{recipientId, message}`: reaches that one socket as `privateMessage` `{sender, message}`.
//!
//! The page is served at `/`; its Socket.IO client at `/socket.io/socket.io.js` (tether's
//! small bundled client, so the example works offline with nothing installed).

use std::io::Write;

use serde::Deserialize;
use serde_json::json;
use tether::StaticRoutes;
use tether::sio::{Io, SocketRef};

const PAGE: &str = include_str!("chat/index.html");

#[derive(Deserialize)]
struct RoomMessage {
    room: String,
    message: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrivateMessage {
    recipient_id: String,
    message: serde_json::Value,
}

fn on_connection(socket: SocketRef) {
    tracing::info!(id = %socket.id(), "user connected");
    socket.on("chat message", |s, ev| {
        // io.emit: everyone, the sender included.
        let _ = s.ns().emit_args("chat message", ev.args);
    });
    socket.on("joinRoom", |s, ev| {
        if let Some(room) = ev.args.str(0) {
            tracing::info!(id = %s.id(), room, "joined room");
            s.join(room.to_owned());
        }
    });
    socket.on("roomMessage", |s, ev| {
        let Some(m) = ev.args.get::<RoomMessage>(0) else {
            return;
        };
        let _ = s.ns().to(m.room).emit(
            "roomMessage",
            &json!({ "sender": s.id().as_str(), "message": m.message }),
        );
    });
    socket.on("privateMessage", |s, ev| {
        let Some(m) = ev.args.get::<PrivateMessage>(0) else {
            return;
        };
        let _ = s.ns().to(m.recipient_id).emit(
            "privateMessage",
            &json!({ "sender": s.id().as_str(), "message": m.message }),
        );
    });
    socket.on_disconnect(|s, reason| tracing::info!(id = %s.id(), %reason, "user disconnected"));
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let mut port = 3000u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => match args.next().and_then(|p| p.parse().ok()) {
                Some(p) => port = p,
                None => {
                    eprintln!("--port needs a number");
                    std::process::exit(2);
                }
            },
            other => {
                eprintln!("unknown argument {other}; usage: chat [--port N]");
                std::process::exit(2);
            }
        }
    }
    let io = Io::new();
    io.ns("/", on_connection);
    let routes = StaticRoutes::new().file("/", "text/html; charset=utf-8", PAGE);
    let server = io.listen_with(("127.0.0.1", port), routes).await?;
    println!("listening on http://{}", server.local_addr());
    std::io::stdout().flush()?;
    shutdown_signal().await;
    server.shutdown();
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
