//! The tutorials' plain WebSocket echo server.
//!
//! ```text
//! cargo run --example ws_echo -- [--port 8080]
//! ```
//! At `ws://127.0.0.1:PORT/`: greets each client with `Hello from the server!`, answers
//! each text message `m` with `You said: m`, and echoes binary messages unchanged.

use std::io::Write;

use tether::ws::{WsMessage, WsServer};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut port = 8080u16;
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
                eprintln!("unknown argument {other}; usage: ws_echo [--port N]");
                std::process::exit(2);
            }
        }
    }
    let server = WsServer::new(|conn| {
        let _ = conn.send_text("Hello from the server!");
        conn.on_message(|c, msg| {
            let _ = match msg {
                WsMessage::Text(t) => c.send_text(&format!("You said: {t}")),
                WsMessage::Binary(b) => c.send_binary(b),
            };
        });
    });
    let handle = server.listen(("127.0.0.1", port)).await?;
    println!("listening on ws://{}/", handle.local_addr());
    std::io::stdout().flush()?;
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown();
    Ok(())
}
