//! The floor of the echo scenarios (S1a/S1b): a raw WebSocket echo on tokio-tungstenite
//! (4 KiB read buffer, as tether and socketioxide use), with just enough Engine.IO for the
//! load generator's handshake (open packet, CONNECT ack) and no Socket.IO decoding at all:
//! an `echo` EVENT goes back byte for byte. No heartbeat, no broadcast: it shows what
//! WebSocket framing, the syscalls and the loopback cost on this machine, so the Socket.IO
//! servers' figures can be read against it.
//!
//! ```text
//! bench-rawws PORT [THREADS]
//! ```

use std::io::Write;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn usage() -> ! {
    eprintln!("usage: bench-rawws PORT [THREADS]");
    std::process::exit(2);
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next() {
        Some(p) => p.parse().unwrap_or_else(|_| usage()),
        None => usage(),
    };
    let threads: usize = match args.next() {
        Some(t) => t.parse().unwrap_or_else(|_| usage()),
        None => 1,
    };
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(serve(port))
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let accept = async {
        loop {
            if let Ok((s, _)) = listener.accept().await {
                tokio::spawn(conn(s));
            }
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = accept => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

async fn conn(s: TcpStream) {
    let _ = s.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(s, Some(config)).await else {
        return;
    };
    let open = r#"0{"sid":"raw","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
    if ws.send(Message::text(open)).await.is_err() {
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let reply = if t.as_str() == "40" {
            Message::text(r#"40{"sid":"raw"}"#)
        } else if t.as_str().starts_with("42") {
            Message::Text(t)
        } else {
            continue;
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}
