//! The socketioxide peer of the tether benchmarks (issue 9): same protocol as
//! `examples/bench_server.rs`.
//!
//! ```text
//! bench-socketioxide PORT [THREADS]
//! ```
//!
//! - event `echo`: emitted back to the sender with the same argument;
//! - event `bcast`: broadcast to every other socket of `/`.
//!
//! Settings as tether's bench server: max payload 1e6 (socketioxide's default is 1e5),
//! ping interval 25 s, WebSocket read buffer 4 KiB (socketioxide's default). THREADS 1 (the
//! default) = tokio current-thread runtime. Served by axum 0.8 (socketioxide's documented
//! setup). Stops on SIGINT or SIGTERM.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};

fn usage() -> ! {
    eprintln!("usage: bench-socketioxide PORT [THREADS]");
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
    let (layer, io) = SocketIo::builder()
        .max_payload(1_000_000)
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        .build_layer();
    io.ns("/", async |socket: SocketRef| {
        socket.on("echo", async |s: SocketRef, Data::<Value>(data)| {
            let _ = s.emit("echo", &data);
        });
        socket.on("bcast", async |s: SocketRef, Data::<Value>(data)| {
            let _ = s.broadcast().emit("bcast", &data).await;
        });
    });
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
