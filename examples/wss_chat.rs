//! The chat example over `https://` and `wss://` only, with a self-signed certificate
//! generated at start-up (for local use: browsers will warn about it).
//!
//! ```text
//! cargo run --example wss_chat -- [--port 3443]
//! ```
//! then open <https://127.0.0.1:3443> and accept the certificate warning. The
//! certificate (PEM) is written to `$TMPDIR/tether-wss-chat-cert.pem` so that clients can
//! be told to trust it.

#[path = "chat/handlers.rs"]
mod handlers;

use std::io::Write;

use tether::Routes;
use tether::sio::Io;
use tether::tls::ServerTls;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    handlers::init_logging();
    let port = handlers::port_arg("wss_chat");
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    let cert_path = std::env::temp_dir().join("tether-wss-chat-cert.pem");
    std::fs::write(&cert_path, &cert_pem)?;
    let tls = ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;

    let io = Io::new();
    io.ns("/", handlers::on_connection);
    let routes = Routes::new()
        .file("/", "text/html; charset=utf-8", handlers::PAGE)
        .tls(tls);
    let server = io.listen_with(("127.0.0.1", port), routes).await?;
    println!("listening on https://{}", server.local_addr());
    println!("certificate: {}", cert_path.display());
    std::io::stdout().flush()?;
    handlers::shutdown_signal().await;
    server.shutdown();
    Ok(())
}
