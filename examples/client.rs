//! tether's Socket.IO client: connect, chat, an ack round trip, and reconnection.
//!
//! ```text
//! cargo run --example client                 # against a server it starts itself
//! cargo run --example client -- --url http://127.0.0.1:3000   # against the chat example
//! ```
//!
//! Without `--url` the example starts a small tether server in-process (`chat message` is
//! broadcast to everyone, `echo` is acknowledged with its arguments), then shows:
//! connect → a chat message comes back → an ack round trip → the server goes away →
//! an emit made while offline waits in the buffer → the server comes back → the client
//! reconnects by itself and the buffered message arrives. Exit status 0 when all of that
//! happened. With `--url` it sends one chat message to that server and waits for it.

use std::time::Duration;

use serde_json::json;
use tether::sio::client::{Client, Reconnection};
use tether::sio::{Io, SocketRef};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn server() -> Io {
    let io = Io::new();
    io.ns("/", |socket: SocketRef| {
        socket.on("chat message", |s, ev| {
            let _ = s.ns().emit_args("chat message", ev.args);
        });
        socket.on("echo", |_, ev| {
            if let Some(ack) = ev.ack {
                let _ = ack.send(ev.args);
            }
        });
    });
    io
}

async fn wait<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> Result<T, String> {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| format!("timed out waiting for {what}"))
}

async fn run(url: Option<String>) -> Result<(), String> {
    let own = match &url {
        Some(_) => None,
        None => {
            let io = server();
            let handle = io.listen("127.0.0.1:0").await.map_err(|e| e.to_string())?;
            Some((io, handle))
        }
    };
    let url = url.unwrap_or_else(|| {
        let addr = own.as_ref().map(|(_, h)| h.local_addr());
        format!("http://{}", addr.map(|a| a.to_string()).unwrap_or_default())
    });
    println!("connecting to {url}");

    let client = Client::builder(url.clone())
        .reconnection(Reconnection {
            delay: Duration::from_millis(200),
            delay_max: Duration::from_secs(1),
            ..Reconnection::default()
        })
        .build()
        .map_err(|e| e.to_string())?;
    let socket = client.socket("/");
    let (chat_tx, mut chat_rx) = mpsc::unbounded_channel();
    socket.on("chat message", move |_, ev| {
        let text = ev.args.str(0).unwrap_or_default().to_owned();
        println!("chat message: {text}");
        let _ = chat_tx.send(text);
    });
    let (down_tx, mut down_rx) = mpsc::unbounded_channel();
    socket.on_disconnect(move |_, reason| {
        println!("disconnected: {reason}");
        let _ = down_tx.send(());
    });
    let (up_tx, mut up_rx) = mpsc::unbounded_channel();
    client.on_reconnect_attempt(|n| println!("reconnect attempt {n}"));
    client.on_reconnect(move |n| {
        println!("reconnected after {n} attempt(s)");
        let _ = up_tx.send(());
    });

    socket.connect().await.map_err(|e| e.to_string())?;
    println!("connected as {}", socket.id().unwrap_or_default());

    socket
        .emit("chat message", "hello from tether's client")
        .map_err(|e| e.to_string())?;
    let got = wait(&mut chat_rx, "the chat message").await?;
    if got != "hello from tether's client" {
        return Err(format!("unexpected chat message {got}"));
    }

    let Some((io, handle)) = own else {
        client.close();
        return Ok(());
    };

    let reply = socket
        .emit_with_ack("echo", vec![json!("ping"), json!(1)], WAIT)
        .await
        .map_err(|e| e.to_string())?;
    println!("ack: {:?}", reply.values());
    if reply.values() != vec![json!("ping"), json!(1)] {
        return Err("wrong ack".into());
    }

    // The server goes away...
    let addr = handle.local_addr();
    handle.shutdown();
    wait(&mut down_rx, "the disconnect").await?;
    // ...an emit made meanwhile waits in the offline buffer...
    socket
        .emit("chat message", "sent while offline")
        .map_err(|e| e.to_string())?;
    println!("buffered while offline: {} packet(s)", socket.buffered());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...and comes back on the same port.
    let handle = io.listen(addr).await.map_err(|e| e.to_string())?;
    wait(&mut up_rx, "the reconnection").await?;
    let got = wait(&mut chat_rx, "the buffered message").await?;
    if got != "sent while offline" {
        return Err(format!("unexpected chat message {got}"));
    }
    client.close();
    handle.shutdown();
    Ok(())
}

#[tokio::main]
async fn main() {
    let mut url = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--url" => url = args.next(),
            other => {
                eprintln!("unknown argument {other}; usage: client [--url URL]");
                std::process::exit(2);
            }
        }
    }
    match run(url).await {
        Ok(()) => println!("done"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
