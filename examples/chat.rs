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

#[path = "chat/handlers.rs"]
mod handlers;

use std::io::Write;

use tether::Routes;
use tether::sio::Io;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    handlers::init_logging();
    let port = handlers::port_arg("chat");
    let io = Io::new();
    io.ns("/", handlers::on_connection);
    let routes = Routes::new().file("/", "text/html; charset=utf-8", handlers::PAGE);
    let server = io.listen_with(("127.0.0.1", port), routes).await?;
    println!("listening on http://{}", server.local_addr());
    std::io::stdout().flush()?;
    handlers::shutdown_signal().await;
    server.shutdown();
    Ok(())
}
