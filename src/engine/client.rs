//! The Engine.IO v4 client: handshake over polling or WebSocket, upgrade with probe,
//! heartbeat watchdog, one driver task per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::TransportType;
use crate::proto::Str;
use crate::proto::engineio::{Frame, Handshake, Packet, PayloadEncoder, decode_payload};
use crate::proto::wsframe::{Message, OpCode};
use crate::transport::client::{ClientWs, HttpConn, Target, TransportError, ws_connect};
use crate::transport::websocket::queue_frame;

/// Engine.IO client settings.
#[derive(Debug, Clone)]
pub struct EngineClientConfig {
    /// Transports to use, in order: the first opens the connection, a later
    /// `Websocket` is tried as an upgrade. Default `[Polling, Websocket]`.
    pub transports: Vec<TransportType>,
    /// Try the upgrade to WebSocket after a polling handshake. Default true.
    pub upgrade: bool,
    /// Time allowed for the handshake and for each HTTP request to start answering.
    /// Default 20 s (socket.io-client's `timeout`).
    pub timeout: Duration,
    /// Largest message or polling response accepted from the server. Default 16 MiB.
    pub max_incoming: usize,
    /// Capacity of the outgoing queue, in packets. Default 4096.
    pub send_queue_capacity: usize,
}

impl Default for EngineClientConfig {
    fn default() -> Self {
        EngineClientConfig {
            transports: vec![TransportType::Polling, TransportType::Websocket],
            upgrade: true,
            timeout: Duration::from_secs(20),
            max_incoming: 16 * 1024 * 1024,
            send_queue_capacity: 4096,
        }
    }
}

/// Why an Engine.IO client connection could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The transport failed (connect refused, HTTP error, ...).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server's handshake was missing or invalid.
    #[error("invalid handshake: {0}")]
    Handshake(String),
    /// No transport is enabled.
    #[error("no transport enabled")]
    NoTransport,
}

/// Why an open Engine.IO client connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The server closed it (close packet, WebSocket close, TCP closed).
    TransportClose,
    /// The transport failed.
    TransportError(String),
    /// No ping from the server within pingInterval + pingTimeout.
    PingTimeout,
    /// The server sent something undecodable.
    ParseError,
    /// The client closed it.
    ClientClose,
}

impl CloseReason {
    /// socket.io-client's name for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError(_) => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ClientClose => "io client disconnect",
        }
    }
}

/// What the driver reports.
#[derive(Debug)]
pub(crate) enum EngineEvent {
    Message(Str),
    Binary(Bytes),
    Closed(CloseReason),
}

enum Cmd {
    Send(Vec<Frame>),
    Close,
}

/// A handle to an open client connection; cheap to clone, usable from any thread.
#[derive(Clone)]
pub(crate) struct EngineClient {
    cmd: mpsc::Sender<Cmd>,
    transport: Arc<AtomicU8>,
    closed: Arc<AtomicBool>,
    sid: Str,
}

impl EngineClient {
    pub(crate) fn sid(&self) -> &Str {
        &self.sid
    }

    pub(crate) fn transport(&self) -> TransportType {
        if self.transport.load(Ordering::Acquire) == TransportType::Websocket as u8 {
            TransportType::Websocket
        } else {
            TransportType::Polling
        }
    }

    /// Queue one packet's frames.
    pub(crate) fn send(&self, frames: Vec<Frame>) -> Result<(), super::SendError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(super::SendError::Closed);
        }
        self.cmd.try_send(Cmd::Send(frames)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => super::SendError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => super::SendError::Closed,
        })
    }

    /// Close the connection (a close packet is sent first).
    pub(crate) fn close(&self) {
        let cmd = self.cmd.clone();
        if cmd.try_send(Cmd::Close).is_err() {
            // Queue full: the driver will see the channel close when every handle is gone;
            // flag it so the driver stops at its next turn.
            self.closed.store(true, Ordering::Release);
        }
    }
}

fn open_from(p: &Packet) -> Result<Handshake, OpenError> {
    match p {
        Packet::Open(json) => {
            Handshake::parse(json.as_str()).map_err(|e| OpenError::Handshake(e.to_string()))
        }
        other => Err(OpenError::Handshake(format!(
            "expected an open packet, got {other:?}"
        ))),
    }
}

/// Open a connection; events go to `events` until `Closed` (sent exactly once).
pub(crate) async fn open(
    target: Arc<Target>,
    config: Arc<EngineClientConfig>,
    events: mpsc::UnboundedSender<EngineEvent>,
) -> Result<EngineClient, OpenError> {
    let first = *config.transports.first().ok_or(OpenError::NoTransport)?;
    let (cmd_tx, cmd_rx) = mpsc::channel(config.send_queue_capacity.max(16));
    let transport = Arc::new(AtomicU8::new(first as u8));
    let closed = Arc::new(AtomicBool::new(false));
    let (active, handshake, early) = match first {
        TransportType::Websocket => {
            let mut ws = ws_connect(&target, None, config.timeout, config.max_incoming).await?;
            let open = tokio::time::timeout(config.timeout, ws.next())
                .await
                .map_err(|_| TransportError::Timeout)?;
            let hs = match open {
                Some(Ok(Message::Text(s))) => {
                    let p =
                        Packet::decode_text(s).map_err(|e| OpenError::Handshake(e.to_string()))?;
                    open_from(&p)?
                }
                Some(Ok(other)) => {
                    return Err(OpenError::Handshake(format!(
                        "unexpected message {other:?}"
                    )));
                }
                Some(Err(e)) => return Err(TransportError::WebSocket(e.to_string()).into()),
                None => return Err(OpenError::Handshake("connection closed".into())),
            };
            (Active::Ws(Box::new(ws)), hs, Vec::new())
        }
        TransportType::Polling => {
            let mut conn = HttpConn::new();
            let body = conn
                .request(
                    &target,
                    http::Method::GET,
                    &target.path_and_query("polling", None),
                    Bytes::new(),
                    config.timeout,
                    config.max_incoming,
                )
                .await?;
            let mut packets = decode_payload(body, 10_000)
                .map_err(|e| OpenError::Handshake(e.to_string()))?
                .into_iter();
            let hs = open_from(
                &packets
                    .next()
                    .ok_or_else(|| OpenError::Handshake("empty response".into()))?,
            )?;
            let sid = hs.sid.clone();
            let (poll_tx, poll_rx) = mpsc::channel(16);
            let paused = Arc::new(AtomicBool::new(false));
            let get_task = tokio::spawn(get_loop(
                target.clone(),
                config.clone(),
                sid,
                conn,
                poll_tx,
                paused.clone(),
            ));
            (
                Active::Polling(Polling {
                    post: HttpConn::new(),
                    poll_rx,
                    get_task,
                    paused,
                }),
                hs,
                packets.collect(),
            )
        }
    };
    let sid = Str::from(handshake.sid.clone());
    let client = EngineClient {
        cmd: cmd_tx,
        transport: transport.clone(),
        closed: closed.clone(),
        sid: sid.clone(),
    };
    let probe = if matches!(active, Active::Polling(_))
        && config.upgrade
        && config.transports.contains(&TransportType::Websocket)
        && handshake.upgrades.iter().any(|u| u == "websocket")
    {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(probe_websocket(
            target.clone(),
            config.clone(),
            sid.to_string(),
            tx,
        ));
        Some(rx)
    } else {
        None
    };
    let driver = Driver {
        target,
        config,
        sid,
        handshake,
        events,
        cmd_rx,
        transport,
        closed,
        active,
        probe,
        last_ping: Instant::now(),
        last_ping_wall: SystemTime::now(),
    };
    tokio::spawn(driver.run(early));
    Ok(client)
}

struct Polling {
    post: HttpConn,
    poll_rx: mpsc::Receiver<Result<Vec<Packet>, CloseReason>>,
    get_task: JoinHandle<()>,
    paused: Arc<AtomicBool>,
}

enum Active {
    Ws(Box<ClientWs>),
    Polling(Polling),
}

/// Long-poll until paused, closed, or failed; every response's packets go to the driver.
async fn get_loop(
    target: Arc<Target>,
    config: Arc<EngineClientConfig>,
    sid: String,
    mut conn: HttpConn,
    tx: mpsc::Sender<Result<Vec<Packet>, CloseReason>>,
    paused: Arc<AtomicBool>,
) {
    let path = target.path_and_query("polling", Some(&sid));
    while !paused.load(Ordering::Acquire) {
        // The server answers within pingInterval; `timeout` bounds a dead one.
        let r = conn
            .request(
                &target,
                http::Method::GET,
                &path,
                Bytes::new(),
                config.timeout + Duration::from_secs(60),
                config.max_incoming,
            )
            .await;
        let msg = match r {
            Ok(body) => decode_payload(body, 100_000).map_err(|_| CloseReason::ParseError),
            Err(TransportError::Status { status: 400, .. }) => Err(CloseReason::TransportClose),
            Err(e) => Err(CloseReason::TransportError(e.to_string())),
        };
        let stop = msg.is_err();
        if tx.send(msg).await.is_err() || stop {
            return;
        }
    }
}

/// Open the upgrade WebSocket and exchange the probe; hand the socket to the driver.
async fn probe_websocket(
    target: Arc<Target>,
    config: Arc<EngineClientConfig>,
    sid: String,
    tx: mpsc::Sender<ClientWs>,
) {
    let attempt = async {
        let mut ws = ws_connect(&target, Some(&sid), config.timeout, config.max_incoming)
            .await
            .ok()?;
        ws.send(OpCode::Text, b"2probe").await.ok()?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == "3probe" => return Some(ws),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    };
    match tokio::time::timeout(config.timeout, attempt).await {
        Ok(Some(ws)) => {
            let _ = tx.send(ws).await;
        }
        _ => tracing::debug!("websocket upgrade failed; staying on polling"),
    }
}

struct Driver {
    target: Arc<Target>,
    config: Arc<EngineClientConfig>,
    sid: Str,
    handshake: Handshake,
    events: mpsc::UnboundedSender<EngineEvent>,
    cmd_rx: mpsc::Receiver<Cmd>,
    transport: Arc<AtomicU8>,
    closed: Arc<AtomicBool>,
    active: Active,
    probe: Option<mpsc::Receiver<ClientWs>>,
    last_ping: Instant,
    last_ping_wall: SystemTime,
}

enum Step {
    Continue,
    Stop(CloseReason),
}

impl Driver {
    fn deadline(&self) -> Duration {
        Duration::from_millis(self.handshake.ping_interval + self.handshake.ping_timeout)
    }

    async fn run(mut self, early: Vec<Packet>) {
        let mut reason = None;
        for p in early {
            if let Step::Stop(r) = self.incoming(p).await {
                reason = Some(r);
                break;
            }
        }
        let reason = match reason {
            Some(r) => r,
            None => self.main_loop().await,
        };
        self.shutdown(&reason).await;
        self.closed.store(true, Ordering::Release);
        let _ = self.events.send(EngineEvent::Closed(reason));
    }

    async fn main_loop(&mut self) -> CloseReason {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return CloseReason::ClientClose;
            }
            // Wake at the heartbeat deadline, and at least every second for the wall-clock
            // check (a frozen or suspended process wakes up late).
            let wake =
                (self.last_ping + self.deadline()).min(Instant::now() + Duration::from_secs(1));
            let step = tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Cmd::Send(frames)) => self.send(frames).await,
                    Some(Cmd::Close) | None => Step::Stop(CloseReason::ClientClose),
                },
                inc = next_incoming(&mut self.active) => match inc {
                    Ok(packets) => {
                        let mut step = Step::Continue;
                        for p in packets {
                            if let Step::Stop(r) = self.incoming(p).await {
                                step = Step::Stop(r);
                                break;
                            }
                        }
                        step
                    }
                    Err(r) => Step::Stop(r),
                },
                ws = recv_probe(&mut self.probe) => match ws {
                    Some(ws) => self.upgrade(ws).await,
                    None => { self.probe = None; Step::Continue }
                },
                _ = tokio::time::sleep_until(wake) => {
                    let wall = self.last_ping_wall.elapsed().unwrap_or_default();
                    if Instant::now() >= self.last_ping + self.deadline() || wall >= self.deadline() {
                        Step::Stop(CloseReason::PingTimeout)
                    } else {
                        Step::Continue
                    }
                }
            };
            if let Step::Stop(r) = step {
                return r;
            }
        }
    }

    async fn incoming(&mut self, p: Packet) -> Step {
        match p {
            Packet::Ping(payload) => {
                self.last_ping = Instant::now();
                self.last_ping_wall = SystemTime::now();
                self.send(vec![Packet::Pong(payload).encode()]).await
            }
            Packet::Message(m) => {
                let _ = self.events.send(EngineEvent::Message(m));
                Step::Continue
            }
            Packet::Binary(b) => {
                let _ = self.events.send(EngineEvent::Binary(b));
                Step::Continue
            }
            Packet::Close => Step::Stop(CloseReason::TransportClose),
            Packet::Noop | Packet::Pong(_) | Packet::Upgrade | Packet::Open(_) => Step::Continue,
        }
    }

    /// Write frames (and whatever else is queued) on the active transport.
    async fn send(&mut self, frames: Vec<Frame>) -> Step {
        let mut batch = frames;
        // Gather what is queued behind, up to a bound, into one write / one POST.
        while batch.len() < 256 {
            match self.cmd_rx.try_recv() {
                Ok(Cmd::Send(more)) => batch.extend(more),
                Ok(Cmd::Close) => {
                    let _ = self.write(batch).await;
                    return Step::Stop(CloseReason::ClientClose);
                }
                Err(_) => break,
            }
        }
        self.write(batch).await
    }

    async fn write(&mut self, frames: Vec<Frame>) -> Step {
        match &mut self.active {
            Active::Ws(ws) => {
                for f in &frames {
                    queue_frame(ws, f);
                }
                match ws.flush().await {
                    Ok(()) => Step::Continue,
                    Err(e) => Step::Stop(CloseReason::TransportError(e.to_string())),
                }
            }
            Active::Polling(p) => {
                let mut enc = PayloadEncoder::new();
                for f in &frames {
                    enc.push(f);
                }
                let path = self
                    .target
                    .path_and_query("polling", Some(self.sid.as_str()));
                match p
                    .post
                    .request(
                        &self.target,
                        http::Method::POST,
                        &path,
                        enc.finish(),
                        self.config.timeout,
                        1024,
                    )
                    .await
                {
                    Ok(_) => Step::Continue,
                    Err(e) => Step::Stop(CloseReason::TransportError(e.to_string())),
                }
            }
        }
    }

    /// The probe succeeded: let the pending poll finish, send the upgrade, switch.
    async fn upgrade(&mut self, mut ws: ClientWs) -> Step {
        self.probe = None;
        let Active::Polling(p) = &mut self.active else {
            return Step::Continue;
        };
        p.paused.store(true, Ordering::Release);
        // Drain the last poll (the server answers it with a noop on the probe).
        let drained = tokio::time::timeout(self.config.timeout, async {
            let mut out = Vec::new();
            while let Some(r) = p.poll_rx.recv().await {
                match r {
                    Ok(packets) => out.extend(packets),
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await;
        p.get_task.abort();
        let packets = match drained {
            Ok(Ok(packets)) => packets,
            Ok(Err(reason)) => return Step::Stop(reason),
            Err(_) => return Step::Stop(CloseReason::TransportError("upgrade stalled".into())),
        };
        if let Err(e) = ws.send(OpCode::Text, b"5").await {
            return Step::Stop(CloseReason::TransportError(e.to_string()));
        }
        self.active = Active::Ws(Box::new(ws));
        self.transport
            .store(TransportType::Websocket as u8, Ordering::Release);
        tracing::debug!(sid = %self.sid, "client upgraded to websocket");
        for pk in packets {
            if let Step::Stop(r) = self.incoming(pk).await {
                return Step::Stop(r);
            }
        }
        Step::Continue
    }

    async fn shutdown(&mut self, reason: &CloseReason) {
        let polite = *reason == CloseReason::ClientClose;
        match &mut self.active {
            Active::Ws(ws) => {
                if polite {
                    ws.queue(OpCode::Text, b"1");
                }
                // Send the close frame; the driver does not wait for the answer.
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
            }
            Active::Polling(p) => {
                p.paused.store(true, Ordering::Release);
                if polite {
                    let path = self
                        .target
                        .path_and_query("polling", Some(self.sid.as_str()));
                    let _ = p
                        .post
                        .request(
                            &self.target,
                            http::Method::POST,
                            &path,
                            Bytes::from_static(b"1"),
                            Duration::from_secs(2),
                            1024,
                        )
                        .await;
                }
                p.get_task.abort();
            }
        }
    }
}

async fn next_incoming(active: &mut Active) -> Result<Vec<Packet>, CloseReason> {
    match active {
        Active::Ws(ws) => loop {
            match ws.next().await {
                Some(Ok(Message::Text(s))) => {
                    return Packet::decode_text(s)
                        .map(|p| vec![p])
                        .map_err(|_| CloseReason::ParseError);
                }
                Some(Ok(Message::Binary(b))) => return Ok(vec![Packet::decode_binary(b)]),
                Some(Ok(Message::Close(_))) | None => return Err(CloseReason::TransportClose),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(CloseReason::TransportError(e.to_string())),
            }
        },
        Active::Polling(p) => match p.poll_rx.recv().await {
            Some(r) => r,
            None => Err(CloseReason::TransportClose),
        },
    }
}

async fn recv_probe(probe: &mut Option<mpsc::Receiver<ClientWs>>) -> Option<ClientWs> {
    match probe {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
