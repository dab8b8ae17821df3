//! The load generator of tether's benchmarks (issue 9). One thread (a tokio current-thread
//! runtime): pin it to its own core with `taskset`. Speaks raw Engine.IO v4 / Socket.IO v5
//! text frames over its own lean WebSocket client (`conn.rs`), so any server of the bench
//! protocol can be driven the same way:
//!
//! - event `echo` comes back to the sender with the same argument;
//! - event `bcast` is broadcast to every other socket.
//!
//! ```text
//! loadgen echo   --addr 127.0.0.1:PORT [--pid PID] [--clients 1] [--window 1]
//!                [--warmup 0.5] [--duration 2]
//! loadgen fanout --addr 127.0.0.1:PORT [--pid PID] [--conns 10000] [--hold auto|SECS]
//!                [--sizes 1000,5000,10000] [--warmup-rounds 2] [--duration 2] [--min-rounds 3]
//! common:        [--server-core 0] [--gen-core 1] [--concurrency 64]
//! ```
//!
//! `echo`: S1a/S1b. Each client keeps `window` echoes in flight; latency is send → reply
//! on the client.
//!
//! `fanout`: S2 then S3 on the same connections. S2 connects receivers up to each size
//! (ascending) and one sender, and sends `bcast` rounds one at a time: a round ends when
//! every receiver got it (or after 10 s, counting drops). S3 then holds the same connections
//! (at least `--conns`) idle until each one has been pinged since it connected (`--hold
//! auto`), and measures the server's RSS per connection (VmRSS delta over the baseline taken
//! before the first connection: buffers the broadcasts left behind count) and its idle CPU.
//! Finally every client leaves and the server's RSS is measured again.
//!
//! Every result is one JSON object per line on stdout (with `"ok"` and a list of
//! `"problems"`); progress goes to stderr. With `--pid`, CPU figures come from
//! `/proc/PID/stat` (utime+stime) over exactly the measured window, with the generator's
//! own CPU and the steal and foreign load of both cores beside them.

mod conn;
mod procfs;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Notify;

use conn::{Conn, Event, connect_many};
use procfs::Probe;

struct Opts {
    cmd: String,
    addr: SocketAddr,
    pid: Option<String>,
    server_core: usize,
    gen_core: usize,
    concurrency: usize,
    clients: usize,
    window: usize,
    warmup: f64,
    duration: f64,
    conns: usize,
    hold: Option<f64>,
    sizes: Vec<usize>,
    warmup_rounds: usize,
    min_rounds: usize,
    label: Value,
}

fn usage(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    eprintln!(
        "usage: loadgen echo|fanout --addr HOST:PORT [--pid PID] [--clients N] [--window N] \
         [--warmup S] [--duration S] [--conns N] [--hold auto|S] [--sizes A,B,..] \
         [--warmup-rounds N] [--min-rounds N] [--server-core N] [--gen-core N] \
         [--concurrency N] [--label JSON]"
    );
    std::process::exit(2);
}

fn parse_opts() -> Opts {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_else(|| usage("no command"));
    let mut o = Opts {
        cmd,
        addr: "127.0.0.1:3000".parse().unwrap(),
        pid: None,
        server_core: 0,
        gen_core: 1,
        concurrency: 64,
        clients: 1,
        window: 1,
        warmup: 0.5,
        duration: 2.0,
        conns: 10_000,
        hold: None,
        sizes: vec![1_000, 5_000, 10_000],
        warmup_rounds: 2,
        min_rounds: 3,
        label: Value::Null,
    };
    while let Some(k) = args.next() {
        let v = args
            .next()
            .unwrap_or_else(|| usage(&format!("{k} needs a value")));
        let bad = || -> ! { usage(&format!("bad value for {k}: {v}")) };
        match k.as_str() {
            "--addr" => o.addr = v.parse().unwrap_or_else(|_| usage("bad --addr")),
            "--pid" => o.pid = Some(v),
            "--server-core" => o.server_core = v.parse().unwrap_or_else(|_| bad()),
            "--gen-core" => o.gen_core = v.parse().unwrap_or_else(|_| bad()),
            "--concurrency" => o.concurrency = v.parse().unwrap_or_else(|_| bad()),
            "--clients" => o.clients = v.parse().unwrap_or_else(|_| bad()),
            "--window" => o.window = v.parse::<usize>().unwrap_or_else(|_| bad()).max(1),
            "--warmup" => o.warmup = v.parse().unwrap_or_else(|_| bad()),
            "--duration" => o.duration = v.parse().unwrap_or_else(|_| bad()),
            "--conns" => o.conns = v.parse().unwrap_or_else(|_| bad()),
            "--hold" => {
                o.hold = if v == "auto" {
                    None
                } else {
                    Some(v.parse().unwrap_or_else(|_| bad()))
                }
            }
            "--sizes" => {
                o.sizes = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap_or_else(|_| usage("bad --sizes")))
                    .collect()
            }
            "--warmup-rounds" => o.warmup_rounds = v.parse().unwrap_or_else(|_| bad()),
            "--min-rounds" => o.min_rounds = v.parse().unwrap_or_else(|_| bad()),
            "--label" => o.label = serde_json::from_str(&v).unwrap_or(Value::String(v)),
            _ => usage(&format!("unknown option {k}")),
        }
    }
    o
}

fn emit(mut v: Value, label: &Value) {
    if let Value::Object(m) = &mut v {
        m.insert("label".into(), label.clone());
    }
    println!("{v}");
}

fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)] as f64 / 1000.0)
}

/// Raise the open-files limit to the hard limit (10k connections need more than the
/// usual 1024).
fn raise_nofile() -> u64 {
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur
    }
}

fn main() {
    let o = parse_opts();
    let nofile = raise_nofile();
    let need = (if o.cmd == "fanout" {
        o.conns + 1
    } else {
        o.clients
    } + 64) as u64;
    if (o.cmd == "fanout" || o.cmd == "echo") && nofile < need {
        eprintln!(
            "loadgen: open-files limit {nofile} is below the {need} this run needs (raise the \
             hard limit: ulimit -Hn)"
        );
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let ok = local.block_on(&rt, async {
        match o.cmd.as_str() {
            "echo" => echo(&o).await,
            "fanout" => fanout(&o).await,
            other => usage(&format!("unknown command {other}")),
        }
    });
    std::process::exit(if ok { 0 } else { 1 });
}

// ---- S1: echo ------------------------------------------------------------------------

#[derive(Default)]
struct EchoShared {
    measuring: Cell<bool>,
    stop: Cell<bool>,
    /// Echoes received inside the measured window.
    echoes: Cell<u64>,
    /// All echoes received.
    total: Cell<u64>,
    /// Replies whose seq was not the oldest outstanding one.
    mismatched: Cell<u64>,
    /// Requests never answered (counted at the end).
    unanswered: Cell<u64>,
    closed: Cell<u64>,
    other: Cell<u64>,
    pings: Cell<u64>,
    lat_ns: RefCell<Vec<u32>>,
    notes: RefCell<Vec<String>>,
}

impl EchoShared {
    fn note(&self, s: String) {
        let mut n = self.notes.borrow_mut();
        if n.len() < 5 {
            n.push(s);
        }
    }
}

async fn echo_client(mut c: Conn, window: usize, sh: Rc<EchoShared>) {
    let mut sent: VecDeque<(u64, Instant)> = VecDeque::with_capacity(window);
    let mut next = 0u64;
    let now = Instant::now();
    for _ in 0..window {
        c.queue_event("echo", next);
        sent.push_back((next, now));
        next += 1;
    }
    if let Err(e) = c.flush().await {
        sh.note(format!("write: {e}"));
        sh.closed.set(sh.closed.get() + 1);
        return;
    }
    loop {
        if sh.stop.get() && sent.is_empty() {
            break;
        }
        let ev = if sh.stop.get() {
            match tokio::time::timeout(Duration::from_secs(5), c.next_event()).await {
                Ok(ev) => ev,
                Err(_) => break,
            }
        } else {
            c.next_event().await
        };
        match ev {
            Ok(Event::Echo(seq)) => {
                let t = Instant::now();
                let Some((want, t0)) = sent.pop_front() else {
                    sh.mismatched.set(sh.mismatched.get() + 1);
                    continue;
                };
                if seq != want {
                    sh.mismatched.set(sh.mismatched.get() + 1);
                    if sh.mismatched.get() <= 3 {
                        sh.note(format!("echo seq {seq}, expected {want}"));
                    }
                }
                sh.total.set(sh.total.get() + 1);
                if sh.measuring.get() {
                    sh.echoes.set(sh.echoes.get() + 1);
                    let ns = t.duration_since(t0).as_nanos().min(u32::MAX as u128) as u32;
                    sh.lat_ns.borrow_mut().push(ns);
                }
                if !sh.stop.get() {
                    c.queue_event("echo", next);
                    sent.push_back((next, t));
                    next += 1;
                    if let Err(e) = c.flush().await {
                        sh.note(format!("write: {e}"));
                        sh.closed.set(sh.closed.get() + 1);
                        return;
                    }
                }
            }
            Ok(Event::Ping) => {
                sh.pings.set(sh.pings.get() + 1);
                if c.pong().await.is_err() {
                    sh.closed.set(sh.closed.get() + 1);
                    return;
                }
            }
            Ok(Event::Closed) => {
                sh.closed.set(sh.closed.get() + 1);
                sh.note("server closed a client".into());
                break;
            }
            Ok(ev) => {
                sh.other.set(sh.other.get() + 1);
                sh.note(format!("unexpected: {ev:?}"));
            }
            Err(e) => {
                sh.closed.set(sh.closed.get() + 1);
                sh.note(format!("read: {e}"));
                break;
            }
        }
    }
    sh.unanswered.set(sh.unanswered.get() + sent.len() as u64);
}

async fn echo(o: &Opts) -> bool {
    let probe = Probe::new(o.pid.clone(), o.server_core, o.gen_core);
    let t = Instant::now();
    let (conns, fails) = connect_many(o.addr, o.clients, o.concurrency, 1).await;
    let connect_s = t.elapsed().as_secs_f64();
    let connected = conns.len();
    eprintln!(
        "echo: {connected}/{} clients connected in {connect_s:.2}s",
        o.clients
    );
    let sh = Rc::new(EchoShared::default());
    let mut handles = Vec::new();
    for c in conns {
        handles.push(tokio::task::spawn_local(echo_client(
            c,
            o.window,
            sh.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(o.warmup)).await;
    let a = probe.snap();
    sh.lat_ns.borrow_mut().clear();
    sh.measuring.set(true);
    tokio::time::sleep(Duration::from_secs_f64(o.duration)).await;
    sh.measuring.set(false);
    let b = probe.snap();
    sh.stop.set(true);
    for h in handles {
        let _ = h.await;
    }
    let cpu = probe.window(&a, &b);
    let wall = cpu["wall_s"].as_f64().unwrap_or(o.duration);
    let echoes = sh.echoes.get();
    let server_cpu = cpu["server_cpu_s"].as_f64();
    let mut lat = std::mem::take(&mut *sh.lat_ns.borrow_mut());
    lat.sort_unstable();
    let mean_us = if lat.is_empty() {
        None
    } else {
        Some(lat.iter().map(|&x| x as f64).sum::<f64>() / lat.len() as f64 / 1000.0)
    };
    let mut problems: Vec<String> = Vec::new();
    if connected != o.clients {
        problems.push(format!(
            "{} of {} clients failed to connect: {:?}",
            o.clients - connected,
            o.clients,
            fails.iter().take(3).collect::<Vec<_>>()
        ));
    }
    if sh.mismatched.get() > 0 {
        problems.push(format!(
            "{} echoes out of order or unmatched",
            sh.mismatched.get()
        ));
    }
    if sh.unanswered.get() > 0 {
        problems.push(format!("{} echoes never answered", sh.unanswered.get()));
    }
    if sh.closed.get() > 0 {
        problems.push(format!("{} clients lost their connection", sh.closed.get()));
    }
    if sh.other.get() > 0 {
        problems.push(format!("{} unexpected messages", sh.other.get()));
    }
    if echoes == 0 {
        problems.push("no echo in the measured window".into());
    }
    problems.extend(sh.notes.borrow().iter().cloned());
    let ok = problems.is_empty();
    emit(
        json!({
            "scenario": "echo",
            "ok": ok,
            "problems": problems,
            "clients": o.clients,
            "connected": connected,
            "window": o.window,
            "connect_s": connect_s,
            "echoes": echoes,
            "echoes_total": sh.total.get(),
            "echoes_per_s": echoes as f64 / wall,
            "echoes_per_server_cpu_s": server_cpu.filter(|&c| c > 0.0).map(|c| echoes as f64 / c),
            "lat_us": {
                "p50": percentile(&lat, 0.5),
                "p90": percentile(&lat, 0.9),
                "p99": percentile(&lat, 0.99),
                "p999": percentile(&lat, 0.999),
                "max": lat.last().map(|&x| x as f64 / 1000.0),
                "mean": mean_us,
                "samples": lat.len(),
            },
            "cpu": cpu,
        }),
        &o.label,
    );
    ok
}

// ---- S3 + S2: idle connections, then broadcast ----------------------------------------

#[derive(Default)]
struct Fan {
    /// The round in flight.
    seq: Cell<u64>,
    target: Cell<u64>,
    count: Cell<u64>,
    first: Cell<Option<Instant>>,
    last: Cell<Option<Instant>>,
    done: Notify,
    /// Deliveries of a round that had already timed out.
    late: Cell<u64>,
    /// Deliveries of a round not yet sent (impossible unless the server invents them).
    unexpected: Cell<u64>,
    /// A receiver saw a seq not above the one before (duplicate or reordering).
    disorder: Cell<u64>,
    /// Receivers pinged at least once.
    pinged: Cell<u64>,
    /// Pings received, all receivers together.
    pings: Cell<u64>,
    /// Receivers whose connection ended on the server's side.
    closed: Cell<u64>,
    other: Cell<u64>,
    notes: RefCell<Vec<String>>,
}

async fn receiver(mut c: Conn, fan: Rc<Fan>) {
    let mut last_seen: Option<u64> = None;
    let mut pinged = false;
    loop {
        match c.next_event().await {
            Ok(Event::Bcast(seq)) => {
                let t = Instant::now();
                if last_seen.is_some_and(|l| seq <= l) {
                    fan.disorder.set(fan.disorder.get() + 1);
                }
                last_seen = Some(seq);
                let cur = fan.seq.get();
                if seq == cur {
                    let n = fan.count.get() + 1;
                    fan.count.set(n);
                    if n == 1 {
                        fan.first.set(Some(t));
                    }
                    fan.last.set(Some(t));
                    if n == fan.target.get() {
                        fan.done.notify_one();
                    }
                } else if seq < cur {
                    fan.late.set(fan.late.get() + 1);
                } else {
                    fan.unexpected.set(fan.unexpected.get() + 1);
                }
            }
            Ok(Event::Ping) => {
                fan.pings.set(fan.pings.get() + 1);
                if !pinged {
                    pinged = true;
                    fan.pinged.set(fan.pinged.get() + 1);
                }
                if c.pong().await.is_err() {
                    fan.closed.set(fan.closed.get() + 1);
                    return;
                }
            }
            Ok(Event::Closed) | Err(_) => {
                fan.closed.set(fan.closed.get() + 1);
                return;
            }
            Ok(ev) => {
                fan.other.set(fan.other.get() + 1);
                let mut n = fan.notes.borrow_mut();
                if n.len() < 3 {
                    n.push(format!("receiver got {ev:?}"));
                }
            }
        }
    }
}

struct RoundStats {
    delivered: u64,
    missing: u64,
    send_to_last_us: Option<f64>,
    first_to_last_us: Option<f64>,
}

/// One broadcast round: send, wait until every receiver has it (10 s at most), answering
/// the sender's pings meanwhile.
async fn round(
    sender: &mut Conn,
    fan: &Fan,
    seq: u64,
    receivers: u64,
) -> Result<RoundStats, String> {
    fan.seq.set(seq);
    fan.target.set(receivers);
    fan.count.set(0);
    fan.first.set(None);
    fan.last.set(None);
    let t0 = Instant::now();
    sender.queue_event("bcast", seq);
    sender
        .flush()
        .await
        .map_err(|e| format!("sender write: {e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if fan.count.get() >= receivers {
            break;
        }
        tokio::select! {
            _ = fan.done.notified() => {}
            ev = sender.next_event() => match ev {
                Ok(Event::Ping) => sender.pong().await.map_err(|e| format!("sender pong: {e}"))?,
                Ok(Event::Closed) | Err(_) => return Err("the sender's connection closed".into()),
                Ok(ev) => return Err(format!("the sender got {ev:?} (broadcasts must skip it)")),
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let count = fan.count.get();
    let us = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1e6;
    let r = RoundStats {
        delivered: count,
        missing: receivers.saturating_sub(count),
        send_to_last_us: fan.last.get().map(|l| us(t0, l)),
        first_to_last_us: match (fan.first.get(), fan.last.get()) {
            (Some(f), Some(l)) => Some(us(f, l)),
            _ => None,
        },
    };
    // Later deliveries of this round count as late, not as this round's.
    fan.seq.set(seq + 1);
    Ok(r)
}

/// Wait until the server is idle (two 200 ms samples in a row with at most one clock tick
/// of CPU, i.e. under ~5 % of a core), at least `min` and at most `max` seconds. Returns
/// the seconds waited. Without a server pid, waits `min`.
async fn wait_quiet(probe: &Probe, min: f64, max: f64) -> f64 {
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(min)).await;
    let Some(pid) = probe.server_pid.as_deref() else {
        return t.elapsed().as_secs_f64();
    };
    let mut quiet = 0;
    let mut last = procfs::proc_ticks(pid);
    while t.elapsed().as_secs_f64() < max {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = procfs::proc_ticks(pid);
        match (last, now) {
            (Some(a), Some(b)) if b.saturating_sub(a) <= 1 => quiet += 1,
            (None, _) | (_, None) => break,
            _ => quiet = 0,
        }
        if quiet >= 2 {
            break;
        }
        last = now;
    }
    t.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

async fn fanout(o: &Opts) -> bool {
    let probe = Probe::new(o.pid.clone(), o.server_core, o.gen_core);
    let mut all_ok = true;
    let fan = Rc::new(Fan::default());
    let rss_base = probe.rss();
    let mut handles: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut connect_wall = 0.0f64;
    let mut connect_cpu = Some(0.0f64);
    let mut connect_fails: Vec<String> = Vec::new();
    let mut wanted = 0usize;
    let mut last_connect = Instant::now();
    let mut ping_ms = 25_000u64;
    let mut rss_conn = None;
    let mut seq = 0u64;
    let mut sizes = o.sizes.clone();
    sizes.sort_unstable();
    let target = sizes.last().copied().unwrap_or(0).max(o.conns);

    // Grow the receiver set to `n` connections.
    macro_rules! grow_to {
        ($n:expr) => {{
            let add = ($n as usize).saturating_sub(handles.len());
            if add > 0 {
                wanted += add;
                let a = probe.snap();
                let (conns, fails) =
                    connect_many(o.addr, add, o.concurrency, 17 + handles.len() as u32).await;
                let b = probe.snap();
                let w = probe.window(&a, &b);
                connect_wall += w["wall_s"].as_f64().unwrap_or(0.0);
                connect_cpu = match (connect_cpu, w["server_cpu_s"].as_f64()) {
                    (Some(x), Some(y)) => Some(x + y),
                    _ => None,
                };
                connect_fails.extend(fails);
                if let Some(c) = conns.first() {
                    ping_ms = c.ping_interval_ms;
                }
                last_connect = Instant::now();
                handles.extend(
                    conns
                        .into_iter()
                        .map(|c| tokio::task::spawn_local(receiver(c, fan.clone()))),
                );
                eprintln!(
                    "fanout: {} receivers connected ({:.2}s so far)",
                    handles.len(),
                    connect_wall
                );
            }
        }};
    }

    // S2: broadcast rounds on a growing set of receivers.
    let mut sender: Option<Conn> = None;
    for &size in &sizes {
        grow_to!(size);
        if sender.is_none() {
            match Conn::connect(o.addr, 4242).await {
                Ok(c) => sender = Some(c),
                Err(e) => {
                    emit(
                        json!({"scenario": "bcast", "ok": false, "problems": [format!("sender: {e}")]}),
                        &o.label,
                    );
                    all_ok = false;
                    break;
                }
            }
        }
        let Some(sender) = sender.as_mut() else { break };
        wait_quiet(&probe, 0.3, 5.0).await;
        if handles.len() >= target {
            rss_conn = probe.rss();
        }
        if handles.len() < size {
            emit(
                json!({"scenario": "bcast", "receivers": size, "ok": false,
                       "problems": [format!("only {} receivers connected", handles.len())]}),
                &o.label,
            );
            all_ok = false;
            continue;
        }
        let receivers = size as u64;
        let closed_before = fan.closed.get();
        let late_before = fan.late.get();
        let disorder_before = fan.disorder.get();
        let unexpected_before = fan.unexpected.get();
        let mut problems: Vec<String> = Vec::new();
        let mut missing = 0u64;
        for _ in 0..o.warmup_rounds {
            match round(sender, &fan, seq, receivers).await {
                Ok(r) => missing += r.missing,
                Err(e) => problems.push(e),
            }
            seq += 1;
        }
        let a = probe.snap();
        let t = Instant::now();
        let mut rounds = 0usize;
        let mut delivered = 0u64;
        let mut s2l = Vec::new();
        let mut f2l = Vec::new();
        while problems.is_empty()
            && (rounds < o.min_rounds || t.elapsed().as_secs_f64() < o.duration)
        {
            match round(sender, &fan, seq, receivers).await {
                Ok(r) => {
                    delivered += r.delivered;
                    missing += r.missing;
                    s2l.extend(r.send_to_last_us);
                    f2l.extend(r.first_to_last_us);
                }
                Err(e) => problems.push(e),
            }
            seq += 1;
            rounds += 1;
        }
        let b = probe.snap();
        let cpu = probe.window(&a, &b);
        // Late arrivals are deliveries after all, just slow ones.
        if missing > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let late = fan.late.get() - late_before;
        let drops = missing.saturating_sub(late);
        if drops > 0 {
            problems.push(format!("{drops} deliveries dropped"));
        }
        if late > 0 {
            problems.push(format!("{late} deliveries later than 10 s"));
        }
        if fan.closed.get() > closed_before {
            problems.push(format!(
                "{} receivers lost their connection",
                fan.closed.get() - closed_before
            ));
        }
        if fan.disorder.get() > disorder_before {
            problems.push(format!(
                "{} duplicate or reordered deliveries",
                fan.disorder.get() - disorder_before
            ));
        }
        if fan.unexpected.get() > unexpected_before {
            problems.push("deliveries of rounds never sent".into());
        }
        let ok = problems.is_empty();
        all_ok &= ok;
        let wall = cpu["wall_s"].as_f64().unwrap_or(1.0);
        let server_cpu = cpu["server_cpu_s"].as_f64();
        let max = |v: &[f64]| v.iter().copied().reduce(f64::max);
        let (s2l_max, f2l_max) = (max(&s2l), max(&f2l));
        emit(
            json!({
                "scenario": "bcast",
                "ok": ok,
                "problems": problems,
                "receivers": receivers,
                "rounds": rounds,
                "delivered": delivered,
                "drops": drops,
                "deliveries_per_s": delivered as f64 / wall,
                "deliveries_per_server_cpu_s": server_cpu.filter(|&c| c > 0.0).map(|c| delivered as f64 / c),
                "send_to_last_us": {"p50": median(&mut s2l), "max": s2l_max},
                "first_to_last_us": {"p50": median(&mut f2l), "max": f2l_max},
                "cpu": cpu,
            }),
            &o.label,
        );
    }
    drop(sender);

    // S3: the same connections (plus any missing up to --conns) held idle until each one
    // has been pinged since it connected (`--hold auto`), or for --hold seconds.
    grow_to!(target);
    let connected = handles.len();
    wait_quiet(&probe, 0.3, 5.0).await;
    if rss_conn.is_none() {
        rss_conn = probe.rss();
    }
    let pings_before = fan.pings.get();
    let a = probe.snap();
    let across_heartbeat = o.hold.is_none();
    match o.hold {
        Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
        None => {
            // Every connection's first ping comes pingInterval after it connected.
            let until = (last_connect + Duration::from_millis(ping_ms + 1000))
                .max(Instant::now() + Duration::from_secs(5));
            tokio::time::sleep_until(until.into()).await;
            let give_up = Instant::now() + Duration::from_secs(10);
            while fan.pinged.get() < connected as u64 && Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            // Let the last pongs reach the server before measuring.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let b = probe.snap();
    let rss_held = probe.rss();
    let idle = probe.window(&a, &b);
    let pings = fan.pings.get() - pings_before;
    let per_conn = |rss: Option<u64>| match (rss, rss_base) {
        (Some(r), Some(base)) if connected > 0 => {
            Some((r as f64 - base as f64) * 1024.0 / connected as f64)
        }
        _ => None,
    };
    let mut problems: Vec<String> = Vec::new();
    if connected != wanted {
        problems.push(format!(
            "{} of {wanted} clients failed to connect: {:?}",
            wanted - connected,
            connect_fails.iter().take(3).collect::<Vec<_>>()
        ));
    }
    if fan.closed.get() > 0 {
        problems.push(format!(
            "{} connections were closed by the server",
            fan.closed.get()
        ));
    }
    if across_heartbeat && fan.pinged.get() < connected as u64 {
        problems.push(format!(
            "only {} of {connected} connections were pinged",
            fan.pinged.get()
        ));
    }
    if fan.other.get() > 0 {
        problems.push(format!("{} unexpected messages", fan.other.get()));
    }
    problems.extend(fan.notes.borrow().iter().cloned());
    let ok = problems.is_empty();
    all_ok &= ok;
    let idle_cpu = idle["server_cpu_s"].as_f64();
    let idle_wall = idle["wall_s"].as_f64().unwrap_or(1.0);
    let per_ping_us = idle_cpu
        .filter(|_| pings > 0)
        .map(|c| c * 1e6 / pings as f64);
    emit(
        json!({
            "scenario": "idle",
            "ok": ok,
            "problems": problems,
            "conns": target,
            "connected": connected,
            "across_heartbeat": across_heartbeat,
            "ping_interval_ms": ping_ms,
            "pinged": fan.pinged.get(),
            "pings_in_window": pings,
            "connect_s": connect_wall,
            "connects_per_s": connected as f64 / connect_wall.max(1e-9),
            "connect_server_cpu_us_per_conn": connect_cpu.map(|c| c * 1e6 / connected.max(1) as f64),
            "rss_base_kib": rss_base,
            "rss_connected_kib": rss_conn,
            "rss_held_kib": rss_held,
            "bytes_per_conn_connected": per_conn(rss_conn),
            "bytes_per_conn": per_conn(rss_held),
            "idle_server_cpu_s": idle_cpu,
            "idle_server_core_share": idle_cpu.map(|c| c / idle_wall),
            // CPU of the hold window over the pings in it (timers and housekeeping
            // included), and what that makes at steady state: one ping per connection per
            // pingInterval.
            "idle_cpu_us_per_ping": per_ping_us,
            "idle_core_share_steady": per_ping_us.map(|us| us * connected as f64 / (ping_ms as f64 * 1000.0)),
            "cpu": idle,
        }),
        &o.label,
    );

    // Everyone leaves: does the server give the memory back?
    for h in handles.drain(..) {
        h.abort();
    }
    let leave_s = wait_quiet(&probe, 1.0, 15.0).await;
    let rss_after = probe.rss();
    let peak = rss_held.unwrap_or(0).max(rss_conn.unwrap_or(0));
    emit(
        json!({
            "scenario": "leave",
            "ok": true,
            "problems": [],
            "rss_base_kib": rss_base,
            "rss_peak_kib": peak,
            "rss_after_kib": rss_after,
            "leave_s": leave_s,
            "server_still_busy": leave_s >= 15.0,
            "rss_retained_kib": match (rss_after, rss_base) {
                (Some(a), Some(b)) => Some(a as i64 - b as i64),
                _ => None,
            },
            "retained_share_of_growth": match (rss_after, rss_base) {
                (Some(a), Some(b)) if peak > b => Some((a as f64 - b as f64) / (peak - b) as f64),
                _ => None,
            },
        }),
        &o.label,
    );
    all_ok
}
