//! The benchmark server of `bench/` (issue 9): the protocol every bench server speaks.
//!
//! ```text
//! cargo run --release --example bench_server -- PORT [THREADS]
//! ```
//!
//! - event `echo`: emitted back to the sender with the same arguments;
//! - event `bcast`: broadcast to every other socket of `/`, same name, same arguments.
//!
//! `PORT` 0 picks a free port; the server prints `listening on http://127.0.0.1:PORT`
//! (flushed) once it accepts connections. `THREADS` 1 (the default) runs a tokio
//! current-thread runtime, for per-core figures; more runs a multi-thread runtime with that
//! many workers. Default settings otherwise (max payload 1e6, ping interval 25 s).
//! Stops on SIGINT or SIGTERM.

use std::io::Write;

use tether::sio::Io;

fn usage() -> ! {
    eprintln!("usage: bench_server PORT [THREADS]");
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
    let io = Io::builder().serve_client(false).build();
    io.ns("/", |socket| {
        socket.on("echo", |s, ev| {
            let _ = s.emit_args("echo", ev.args);
        });
        socket.on("bcast", |s, ev| {
            let _ = s.broadcast().emit_args("bcast", ev.args);
        });
    });
    let server = io.listen(("127.0.0.1", port)).await?;
    println!("listening on http://{}", server.local_addr());
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server.shutdown();
    Ok(())
}
