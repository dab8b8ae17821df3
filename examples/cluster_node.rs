//! One node of a chat cluster: the chat example's events on the Redis adapter, so any
//! number of nodes (tether or Node `socket.io` with `@socket.io/redis-adapter`) form one
//! chat.
//!
//! ```text
//! cargo run --release --example cluster_node -- --port 3001 --redis redis://127.0.0.1:6379
//! ```
//!
//! With `--sharded` the node uses the sharded adapter (Redis >= 7 sharded pub/sub, as
//! Node's `createShardedAdapter`); every node of a cluster must use the same adapter.
//!
//! Events (as `examples/chat.rs`): `chat message` reaches everyone on every node, the
//! sender included; `joinRoom`, `roomMessage` and `privateMessage` work across nodes.
//! The page is served at `/`. `examples/cluster/` puts two nodes behind nginx.

#[allow(dead_code)]
#[path = "chat/handlers.rs"]
mod handlers;

use std::io::Write;
use std::time::Duration;

use tether::Routes;
use tether::adapter::{AdapterError, RedisAdapter, ShardedRedisAdapter};
use tether::sio::Io;

struct Args {
    port: u16,
    redis: String,
    sharded: bool,
}

fn args() -> Args {
    let usage = "usage: cluster_node [--port N] [--redis redis://HOST:PORT] [--sharded]";
    let mut out = Args {
        port: 3000,
        redis: "redis://127.0.0.1:6379".to_owned(),
        sharded: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => match it.next().and_then(|p| p.parse().ok()) {
                Some(p) => out.port = p,
                None => {
                    eprintln!("--port needs a number; {usage}");
                    std::process::exit(2);
                }
            },
            "--redis" => match it.next() {
                Some(u) => out.redis = u,
                None => {
                    eprintln!("--redis needs a URL; {usage}");
                    std::process::exit(2);
                }
            },
            "--sharded" => out.sharded = true,
            other => {
                eprintln!("unknown argument {other}; {usage}");
                std::process::exit(2);
            }
        }
    }
    out
}

/// The wait until the adapter's subscriptions are live.
type Ready = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), AdapterError>>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    handlers::init_logging();
    let args = args();
    let wait = Duration::from_secs(5);
    let started: Result<(Io, Ready), AdapterError> = if args.sharded {
        ShardedRedisAdapter::connect(&args.redis).await.map(|a| {
            let io = Io::builder().adapter(a.clone()).build();
            (io, Box::pin(async move { a.ready(wait).await }) as Ready)
        })
    } else {
        RedisAdapter::connect(&args.redis).await.map(|a| {
            let io = Io::builder().adapter(a.clone()).build();
            (io, Box::pin(async move { a.ready(wait).await }) as Ready)
        })
    };
    let (io, ready) = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot reach Redis at {}: {e}", args.redis);
            std::process::exit(1);
        }
    };
    io.ns("/", handlers::on_connection);
    if let Err(e) = ready.await {
        eprintln!("Redis subscriptions not ready: {e}");
        std::process::exit(1);
    }
    let routes = Routes::new().file("/", "text/html; charset=utf-8", handlers::PAGE);
    let server = io.listen_with(("127.0.0.1", args.port), routes).await?;
    println!("listening on http://{}", server.local_addr());
    std::io::stdout().flush()?;
    handlers::shutdown_signal().await;
    server.shutdown();
    Ok(())
}
