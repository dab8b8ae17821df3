//! Every session's heartbeat and connect deadline on one timer task per engine.
//!
//! A session used to own a task of its own for this (about 640 bytes of task and two timer
//! registrations, for each idle connection). Here a session holds a small schedule
//! ([`Beat`]) and the engine a heap of due times; one driver task pops what is due, sends
//! pings and closes sessions whose pong is late. Deadlines follow the schedule, not the
//! moment the driver happened to wake, so a late wake never grants a peer extra time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{DisconnectReason, Engine, EngineSocket};
use crate::proto::Str;
use crate::proto::engineio::Packet;

/// A session's place in the heartbeat.
#[derive(Debug)]
pub(crate) struct Beat {
    /// Bumped whenever the schedule changes, so superseded heap entries are skipped.
    generation: u64,
    phase: Phase,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The next ping goes out at this time.
    Idle(Instant),
    /// A ping is out; its pong is due by this time.
    AwaitPong(Instant),
}

impl Beat {
    pub(crate) fn new(first_ping: Instant) -> Beat {
        Beat {
            generation: 0,
            phase: Phase::Idle(first_ping),
        }
    }
}

/// What a heap entry is for, in one word (entries stay 32 bytes: the heap holds two or
/// three per session): a heartbeat step of that schedule generation, or the connect
/// deadline ([`Kind::HOOK`], which sorts after any beat due at the same time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Kind(u64);

impl Kind {
    const HOOK: Kind = Kind(u64::MAX);

    /// A heartbeat step (generations stay far below `u64::MAX`).
    fn beat(generation: u64) -> Kind {
        Kind(generation.min(u64::MAX - 1))
    }
}

struct Entry {
    at: Instant,
    kind: Kind,
    socket: Weak<EngineSocket>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.kind == other.kind
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.kind).cmp(&(other.at, other.kind))
    }
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    /// Open sessions: the driver ends (and drops the superseded entries) at zero.
    live: usize,
}

/// The engine's timer heap and its driver's wake-up.
#[derive(Default)]
pub(crate) struct Timers {
    heap: Mutex<Heap>,
    wake: Notify,
    /// A driver task is running.
    running: AtomicBool,
    shutdown: AtomicBool,
}

impl Timers {
    fn heap(&self) -> MutexGuard<'_, Heap> {
        self.heap.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, at: Instant, kind: Kind, socket: &Arc<EngineSocket>) {
        let mut h = self.heap();
        self.push_locked(&mut h, at, kind, socket);
    }

    fn push_locked(&self, h: &mut Heap, at: Instant, kind: Kind, socket: &Arc<EngineSocket>) {
        let before = h.entries.peek().map(|e| e.0.at);
        h.entries.push(Reverse(Entry {
            at,
            kind,
            socket: Arc::downgrade(socket),
        }));
        if before.is_none_or(|b| at < b) {
            self.wake.notify_one();
        }
    }

    /// Start `socket`'s heartbeat (first ping one interval from now) and its connect
    /// deadline, if any; starts the driver on the current runtime when none runs.
    pub(crate) fn add(
        self: &Arc<Self>,
        engine: &Arc<Engine>,
        socket: &Arc<EngineSocket>,
        first_ping: Instant,
        hook_at: Option<Instant>,
    ) {
        {
            let mut h = self.heap();
            h.live += 1;
            self.push_locked(&mut h, first_ping, Kind::beat(0), socket);
            if let Some(at) = hook_at {
                self.push_locked(&mut h, at, Kind::HOOK, socket);
            }
        }
        // After the push: a driver that saw no live session has already cleared `running`.
        if !self.running.swap(true, Ordering::AcqRel) {
            tokio::spawn(drive(self.clone(), Arc::downgrade(engine)));
        }
    }

    /// A session added with [`Timers::add`] closed (call once per session).
    pub(crate) fn closed(&self) {
        let mut h = self.heap();
        h.live = h.live.saturating_sub(1);
        if h.live == 0 {
            self.wake.notify_one();
        }
    }

    /// A pong arrived: the next ping goes out one interval from now.
    pub(crate) fn pong(&self, socket: &Arc<EngineSocket>, interval: Duration) {
        let next = {
            let mut b = socket.beat();
            let now = Instant::now();
            // A pong after its deadline saves nothing: the driver closes the session.
            if !matches!(b.phase, Phase::AwaitPong(deadline) if now <= deadline) {
                return;
            }
            let next = now + interval;
            b.generation += 1;
            b.phase = Phase::Idle(next);
            (next, b.generation)
        };
        self.push(next.0, Kind::beat(next.1), socket);
    }

    /// The engine is gone: the driver ends.
    pub(crate) fn stop(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// Resets `running` when the driver ends, also when its runtime drops it mid-wait, so
/// the next session on another runtime starts a new one.
struct Running(Arc<Timers>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// Due entries the driver's batch keeps room for between wake-ups.
const DUE_KEEP: usize = 64;

async fn drive(timers: Arc<Timers>, engine: Weak<Engine>) {
    let _running = Running(timers.clone());
    let mut due = Vec::new();
    loop {
        if timers.shutdown.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let next = {
            let mut h = timers.heap();
            if h.live == 0 {
                // Nothing left to time: end (decided under the lock `add` takes).
                h.entries.clear();
                timers.running.store(false, Ordering::Release);
                return;
            }
            while h.entries.peek().is_some_and(|e| e.0.at <= now) {
                if let Some(Reverse(e)) = h.entries.pop() {
                    due.push(e);
                }
            }
            h.entries.peek().map(|e| e.0.at)
        };
        if !due.is_empty() {
            let Some(engine) = engine.upgrade() else {
                return;
            };
            for e in due.drain(..) {
                fire(&timers, &engine, e);
            }
            if due.capacity() > DUE_KEEP {
                // A heartbeat of many sessions at once: do not keep its batch's memory.
                due = Vec::new();
            }
            continue;
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = timers.wake.notified() => {}
                }
            }
            None => timers.wake.notified().await,
        }
    }
}

fn fire(timers: &Timers, engine: &Engine, e: Entry) {
    let Some(s) = e.socket.upgrade() else { return };
    if s.is_closed() {
        return;
    }
    match e.kind {
        Kind::HOOK => engine.handler.on_deadline(&s),
        Kind(generation) => {
            let ping_at = {
                let mut b = s.beat();
                if b.generation != generation {
                    return;
                }
                match b.phase {
                    Phase::AwaitPong(_) => None,
                    Phase::Idle(at) => {
                        let deadline = at + engine.config.ping_timeout;
                        b.phase = Phase::AwaitPong(deadline);
                        Some(deadline)
                    }
                }
            };
            match ping_at {
                None => s.close_with(DisconnectReason::PingTimeout),
                Some(deadline) => {
                    s.set_ping_deadline(Some(deadline.into_std()));
                    if s.send_control(&[Packet::Ping(Str::default()).encode()])
                        .is_err()
                        && s.is_closed()
                    {
                        return;
                    }
                    timers.push(deadline, Kind::beat(generation), &s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_small_and_ordered() {
        // Two or three per session live in the heap.
        assert!(std::mem::size_of::<Entry>() <= 32);
        assert!(Kind::beat(0) < Kind::beat(1));
        assert!(Kind::beat(u64::MAX) < Kind::HOOK);
        assert_ne!(Kind::beat(u64::MAX), Kind::HOOK);
    }
}
