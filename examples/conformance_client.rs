//! The client-side mirror of `conformance_server`: against a server that behaves like the
//! official protocol suite's reference (the Node one, or tether's), check the basics.
//!
//! ```text
//! cargo run --example conformance_client -- --url http://127.0.0.1:3000 [--transports polling,websocket]
//! ```
//!
//! Connects to `/` and `/custom` with an `auth` payload, checks the `auth` echo, sends
//! `message` (text, numbers, an object, a binary buffer) and checks `message-back`, sends
//! `message-with-ack` and checks the ack. One line per check; exit status 0 only when
//! every check passed.

use std::time::Duration;

use serde_json::{Value, json};
use tether::engine::TransportType;
use tether::sio::Args;
use tether::sio::client::{Client, ClientSocket};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

struct Checks {
    failed: usize,
    passed: usize,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            self.passed += 1;
            println!("ok   {name}");
        } else {
            self.failed += 1;
            println!("FAIL {name}: {detail}");
        }
    }
}

/// Route one event's arguments into a channel.
fn capture(socket: &ClientSocket, event: &str) -> mpsc::UnboundedReceiver<Args> {
    let (tx, rx) = mpsc::unbounded_channel();
    socket.on(event, move |_, ev| {
        let _ = tx.send(ev.args);
    });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Args>) -> Option<Args> {
    tokio::time::timeout(WAIT, rx.recv()).await.ok().flatten()
}

async fn namespace(client: &Client, nsp: &str, checks: &mut Checks) {
    let socket = client.socket(nsp);
    let auth = json!({ "token": format!("tok{nsp}"), "n": 1 });
    socket.set_auth(auth.clone());
    let mut auth_rx = capture(&socket, "auth");
    let mut back_rx = capture(&socket, "message-back");
    let r = socket.connect().await;
    checks.check(&format!("{nsp}: connect"), r.is_ok(), format!("{r:?}"));
    if r.is_err() {
        return;
    }
    checks.check(
        &format!("{nsp}: socket id"),
        socket.id().is_some_and(|id| !id.is_empty()),
        "no id",
    );
    let got = next(&mut auth_rx).await;
    checks.check(
        &format!("{nsp}: auth echoed"),
        got.as_ref().map(|a| a.values().to_vec()) == Some(vec![auth.clone()]),
        format!("{got:?}"),
    );

    let sent = vec![
        json!("hello"),
        json!(1),
        json!(2.5),
        json!({ "a": [1, 2, { "b": null }] }),
    ];
    let _ = socket.emit_args("message", sent.clone());
    let got = next(&mut back_rx).await;
    checks.check(
        &format!("{nsp}: message-back text/numbers/object"),
        got.as_ref().map(|a| a.values().to_vec()) == Some(sent.clone()),
        format!("{got:?}"),
    );

    let bin = Args::new().value(json!("bin")).bin(vec![1u8, 2, 3, 255]);
    let _ = socket.emit_args("message", bin);
    let got = next(&mut back_rx).await;
    let ok = got.as_ref().is_some_and(|a| {
        a.str(0) == Some("bin") && a.binary(1).map(|b| b.as_ref()) == Some(&[1u8, 2, 3, 255][..])
    });
    checks.check(
        &format!("{nsp}: message-back binary"),
        ok,
        format!("{got:?}"),
    );

    let ack_args = vec![json!(1), json!("2"), json!({ "3": [false] })];
    let r = socket
        .emit_with_ack("message-with-ack", ack_args.clone(), WAIT)
        .await;
    checks.check(
        &format!("{nsp}: message-with-ack"),
        r.as_ref().map(|a| a.values().to_vec()).ok() == Some(ack_args),
        format!("{r:?}"),
    );

    let bin = Args::new().bin(vec![9u8; 1000]).value(Value::Bool(true));
    let r = socket.emit_with_ack("message-with-ack", bin, WAIT).await;
    let ok = r.as_ref().is_ok_and(|a| {
        a.binary(0).map(|b| b.len()) == Some(1000) && a.values().get(1) == Some(&json!(true))
    });
    checks.check(
        &format!("{nsp}: message-with-ack binary"),
        ok,
        format!("{r:?}"),
    );
}

#[tokio::main]
async fn main() {
    let mut url = None;
    let mut transports = vec![TransportType::Polling, TransportType::Websocket];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--url" => url = args.next(),
            "--transports" => {
                let list = args.next().unwrap_or_default();
                let parsed: Option<Vec<_>> = list
                    .split(',')
                    .map(|t| match t.trim() {
                        "polling" => Some(TransportType::Polling),
                        "websocket" => Some(TransportType::Websocket),
                        _ => None,
                    })
                    .collect();
                match parsed {
                    Some(p) if !p.is_empty() => transports = p,
                    _ => {
                        eprintln!("--transports takes polling,websocket");
                        std::process::exit(2);
                    }
                }
            }
            other => {
                eprintln!(
                    "unknown argument {other}; usage: conformance_client --url URL [--transports polling,websocket]"
                );
                std::process::exit(2);
            }
        }
    }
    let Some(url) = url else {
        eprintln!("usage: conformance_client --url URL [--transports polling,websocket]");
        std::process::exit(2);
    };
    let client = match Client::builder(url.clone())
        .transports(transports.clone())
        .timeout(WAIT)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL build client: {e}");
            std::process::exit(1);
        }
    };
    let mut checks = Checks {
        failed: 0,
        passed: 0,
    };
    namespace(&client, "/", &mut checks).await;
    namespace(&client, "/custom", &mut checks).await;
    let engine_ids = client.engine_id();
    checks.check(
        "one connection for both namespaces",
        engine_ids.is_some(),
        "no connection",
    );
    if transports.len() > 1 {
        // Give the upgrade a moment, then check it happened.
        let deadline = tokio::time::Instant::now() + WAIT;
        while client.transport() != Some(TransportType::Websocket)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        checks.check(
            "upgraded to websocket",
            client.transport() == Some(TransportType::Websocket),
            format!("{:?}", client.transport()),
        );
    }
    client.close();
    println!("{} passed, {} failed", checks.passed, checks.failed);
    std::process::exit(if checks.failed == 0 { 0 } else { 1 });
}
