//! The chat app's event handlers, shared by `chat.rs` and `wss_chat.rs`.

use serde::Deserialize;
use serde_json::json;
use tether::sio::SocketRef;

/// The page, served at `/`.
pub const PAGE: &str = include_str!("index.html");

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

/// Register the chat events on a new socket.
pub fn on_connection(socket: SocketRef) {
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

/// `--port N` from the command line (default 3000); exits with a usage line otherwise.
pub fn port_arg(name: &str) -> u16 {
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
                eprintln!("unknown argument {other}; usage: {name} [--port N]");
                std::process::exit(2);
            }
        }
    }
    port
}

/// Log to stderr at the level in `TETHER_LOG` (default warn).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
}

/// Wait for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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
