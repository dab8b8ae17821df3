//! Connection state recovery (socket.io 4.6+'s `connectionStateRecovery`), in memory.
//!
//! With it enabled, every broadcast event without an ack and not volatile gets an
//! offset appended as its last argument (the official client remembers the last one it
//! saw) and is kept for `max_disconnection_duration`. A socket that disconnects for a
//! reason other than a deliberate one leaves a session behind (id, private id, rooms).
//! When the client comes back within the window with `{pid, offset}` in its CONNECT
//! `auth`, it gets its id and rooms back and the broadcasts it missed, in order, and
//! `recovered()` is true.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use super::{DisconnectReason, Room};
use crate::proto::Str;

/// Connection state recovery settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// How long sessions and packets are kept. Default 2 min.
    pub max_disconnection_duration: Duration,
    /// Skip the connect middlewares when a session is recovered. Default true.
    pub skip_middlewares: bool,
    /// Most broadcast packets kept per namespace (the oldest go first). Default 10 000
    /// (tether's bound; Node keeps everything within the duration).
    pub max_packets: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
            max_packets: 10_000,
        }
    }
}

/// Whether a disconnect of this kind leaves a recoverable session (socket.io's list).
pub(crate) fn is_recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportClose
            | DisconnectReason::TransportError
            | DisconnectReason::PingTimeout
            | DisconnectReason::ForcedClose
            | DisconnectReason::ServerShuttingDown
    )
}

struct Session {
    sid: Str,
    rooms: Vec<Room>,
    disconnected_at: Instant,
}

struct Stored {
    id: String,
    rooms: Vec<Room>,
    except: Vec<Room>,
    /// The whole `["event", ...args, offset]` array and its attachments.
    data: Value,
    bins: Vec<Bytes>,
    emitted_at: Instant,
}

/// What a recovered socket gets back.
pub(crate) struct Restored {
    pub(crate) sid: Str,
    pub(crate) rooms: Vec<Room>,
    /// Missed event packets' data (`["event", ...args, offset]`) and attachments, in order.
    pub(crate) missed: Vec<(Value, Vec<Bytes>)>,
}

/// A namespace's sessions and recent broadcasts.
pub(crate) struct RecoveryStore {
    config: RecoveryConfig,
    sessions: HashMap<String, Session>,
    packets: VecDeque<Stored>,
}

static OFFSETS: AtomicU64 = AtomicU64::new(1);

/// A new unique offset (process-wide; base 36 of a counter with a per-process prefix).
pub(crate) fn next_offset() -> String {
    let n = OFFSETS.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}", process_tag(), to_base36(n))
}

fn process_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        to_base36(t)
    })
}

fn to_base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl RecoveryStore {
    pub(crate) fn new(config: RecoveryConfig) -> Self {
        RecoveryStore {
            config,
            sessions: HashMap::new(),
            packets: VecDeque::new(),
        }
    }

    pub(crate) fn config(&self) -> &RecoveryConfig {
        &self.config
    }

    fn prune(&mut self) {
        let max = self.config.max_disconnection_duration;
        let now = Instant::now();
        self.sessions
            .retain(|_, s| now.duration_since(s.disconnected_at) <= max);
        while self
            .packets
            .front()
            .is_some_and(|p| now.duration_since(p.emitted_at) > max)
        {
            self.packets.pop_front();
        }
    }

    /// Keep a broadcast (its data already ends with `id`).
    pub(crate) fn store(
        &mut self,
        id: String,
        rooms: &[Room],
        except: &[Room],
        data: Value,
        bins: Vec<Bytes>,
    ) {
        self.prune();
        while self.packets.len() >= self.config.max_packets.max(1) {
            self.packets.pop_front();
        }
        self.packets.push_back(Stored {
            id,
            rooms: rooms.to_vec(),
            except: except.to_vec(),
            data,
            bins,
            emitted_at: Instant::now(),
        });
    }

    /// Keep a disconnected socket's session.
    pub(crate) fn persist(&mut self, pid: &str, sid: Str, rooms: Vec<Room>) {
        self.prune();
        self.sessions.insert(
            pid.to_owned(),
            Session {
                sid,
                rooms,
                disconnected_at: Instant::now(),
            },
        );
    }

    /// The session of `pid` and the packets after `offset` it should have received.
    /// `None` when the session expired or the offset is unknown (too old).
    pub(crate) fn restore(&mut self, pid: &str, offset: &str) -> Option<Restored> {
        self.prune();
        let index = self.packets.iter().position(|p| p.id == offset)?;
        let session = self.sessions.remove(pid)?;
        let missed = self
            .packets
            .iter()
            .skip(index + 1)
            .filter(|p| {
                let included =
                    p.rooms.is_empty() || session.rooms.iter().any(|r| p.rooms.contains(r));
                let excluded = session.rooms.iter().any(|r| p.except.contains(r));
                included && !excluded
            })
            .map(|p| (p.data.clone(), p.bins.clone()))
            .collect();
        Some(Restored {
            sid: session.sid,
            rooms: session.rooms,
            missed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn restores_missed_packets_for_the_session_rooms() {
        let mut st = RecoveryStore::new(RecoveryConfig::default());
        let r = |s: &'static str| Str::from_static(s);
        st.store("a".into(), &[], &[], json!(["x", "a"]), vec![]);
        st.persist("pid1", r("sid1"), vec![r("sid1"), r("room")]);
        st.store("b".into(), &[r("room")], &[], json!(["y", "b"]), vec![]);
        st.store("c".into(), &[r("other")], &[], json!(["z", "c"]), vec![]);
        st.store("d".into(), &[], &[r("sid1")], json!(["w", "d"]), vec![]);
        st.store("e".into(), &[], &[], json!(["v", "e"]), vec![]);
        let got = st.restore("pid1", "a").expect("restored");
        assert_eq!(got.sid, r("sid1"));
        let data: Vec<Value> = got.missed.into_iter().map(|(d, _)| d).collect();
        assert_eq!(data, vec![json!(["y", "b"]), json!(["v", "e"])]);
        // The session is used up; an unknown offset or pid gives nothing.
        assert!(st.restore("pid1", "a").is_none());
        assert!(st.restore("nope", "a").is_none());
    }

    #[test]
    fn offsets_are_unique() {
        let a = next_offset();
        let b = next_offset();
        assert_ne!(a, b);
    }
}
