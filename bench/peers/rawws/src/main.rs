//! The floor of the echo scenarios (S1a/S1b): a raw WebSocket echo on tokio-tungstenite
//! (4 KiB read buffer, as tether and socketioxide use), with just enough Engine.IO for the
//! load generator's handshake (open packet, CONNECT ack) and no Socket.IO decoding at all:
//! an `echo` EVENT goes back byte for byte. No heartbeat: it shows what WebSocket framing,
//! the syscalls and the loopback cost on this machine, so the Socket.IO servers' figures
//! can be read against it.
//!
//! `bcast` is the floor of S2: the received text is framed once and written with one
//! `write(2)` straight to every other connection's socket from the reading task (no
//! per-recipient task, queue or wake-up), the least a server can do with one syscall per
//! delivery. A write that would block counts as a drop, which the load generator reports.
//!
//! ```text
//! bench-rawws PORT [THREADS]
//! ```

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

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

thread_local! {
    /// The open connections' sockets, for `bcast` (the server is single-threaded for S2).
    static PEERS: RefCell<Vec<RawFd>> = const { RefCell::new(Vec::new()) };
}

/// Removes a connection from `PEERS` when its task ends, before its socket closes.
struct Registered(RawFd);

impl Drop for Registered {
    fn drop(&mut self) {
        PEERS.with_borrow_mut(|p| p.retain(|&fd| fd != self.0));
    }
}

/// One unmasked text frame, written to every peer but `from`.
fn broadcast(from: RawFd, text: &str) {
    let len = text.len();
    let mut frame = Vec::with_capacity(len + 10);
    frame.push(0x81);
    if len < 126 {
        frame.push(len as u8);
    } else if len <= 0xffff {
        frame.push(126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(text.as_bytes());
    PEERS.with_borrow(|peers| {
        for &fd in peers {
            if fd == from {
                continue;
            }
            // SAFETY: `fd` is an open socket owned by a live connection task (it leaves
            // `PEERS` before it closes); ManuallyDrop keeps it open here.
            let s = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
            let _ = (&*s).write(&frame);
        }
    });
}

async fn conn(s: TcpStream) {
    let _ = s.set_nodelay(true);
    let fd = s.as_raw_fd();
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
    PEERS.with_borrow_mut(|p| p.push(fd));
    let _registered = Registered(fd);
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        if t.as_str().starts_with("42[\"bcast\"") {
            broadcast(fd, t.as_str());
            continue;
        }
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
