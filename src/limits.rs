//! Abuse controls: token buckets for rates, per-IP connection caps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// A rate: `per_second` tokens refill every second, up to `burst` saved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained rate, per second.
    pub per_second: f64,
    /// Largest burst.
    pub burst: f64,
}

impl RateLimit {
    /// `per_second` sustained, bursts of `burst`.
    pub fn new(per_second: f64, burst: f64) -> Self {
        RateLimit { per_second, burst }
    }
}

/// A token bucket; starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> Self {
        TokenBucket {
            limit,
            tokens: limit.burst.max(1.0),
            last: Instant::now(),
        }
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens =
            (self.tokens + elapsed * self.limit.per_second).min(self.limit.burst.max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&self) -> bool {
        let elapsed = self.last.elapsed().as_secs_f64();
        self.tokens + elapsed * self.limit.per_second >= self.limit.burst
    }
}

/// Why a connection was refused by [`IpLimiter::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many open connections from this address.
    TooManyConnections,
    /// Connections opened too fast from this address.
    TooFast,
}

#[derive(Debug)]
struct IpState {
    open: usize,
    bucket: Option<TokenBucket>,
}

/// Per-IP caps: concurrent connections and a connection rate.
#[derive(Debug)]
pub struct IpLimiter {
    max_open: Option<usize>,
    rate: Option<RateLimit>,
    state: Mutex<HashMap<IpAddr, IpState>>,
}

/// Entries kept before idle ones are pruned.
const PRUNE_AT: usize = 4096;

impl IpLimiter {
    /// A limiter; `None` disables that cap.
    pub fn new(max_open: Option<usize>, rate: Option<RateLimit>) -> Self {
        IpLimiter {
            max_open,
            rate,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any cap is set.
    pub fn is_active(&self) -> bool {
        self.max_open.is_some() || self.rate.is_some()
    }

    /// Count a new connection from `ip`, or refuse it. Every admitted connection must be
    /// [`IpLimiter::release`]d once.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        if !self.is_active() {
            return Ok(());
        }
        let Ok(mut map) = self.state.lock() else {
            return Ok(());
        };
        if map.len() >= PRUNE_AT {
            map.retain(|_, s| s.open > 0 || s.bucket.as_ref().is_some_and(|b| !b.is_full()));
        }
        let st = map.entry(ip).or_insert_with(|| IpState {
            open: 0,
            bucket: self.rate.map(TokenBucket::new),
        });
        if self.max_open.is_some_and(|m| st.open >= m) {
            return Err(Refusal::TooManyConnections);
        }
        if let Some(b) = &mut st.bucket
            && !b.try_take()
        {
            return Err(Refusal::TooFast);
        }
        st.open += 1;
        Ok(())
    }

    /// A connection admitted for `ip` ended.
    pub fn release(&self, ip: IpAddr) {
        if !self.is_active() {
            return;
        }
        if let Ok(mut map) = self.state.lock()
            && let Some(st) = map.get_mut(&ip)
        {
            st.open = st.open.saturating_sub(1);
        }
    }

    /// Connections currently counted for `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.state
            .lock()
            .ok()
            .and_then(|m| m.get(&ip).map(|s| s.open))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refuses() {
        let mut b = TokenBucket::new(RateLimit::new(0.001, 3.0));
        assert!(b.try_take());
        assert!(b.try_take());
        assert!(b.try_take());
        assert!(!b.try_take());
    }

    #[test]
    fn limiter_caps_open_connections_per_ip() {
        let l = IpLimiter::new(Some(2), None);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(l.admit(a), Ok(()));
        assert_eq!(l.admit(a), Ok(()));
        assert_eq!(l.admit(a), Err(Refusal::TooManyConnections));
        assert_eq!(l.admit(b), Ok(()));
        l.release(a);
        assert_eq!(l.admit(a), Ok(()));
        assert_eq!(l.open(a), 2);
    }

    #[test]
    fn limiter_rate() {
        let l = IpLimiter::new(None, Some(RateLimit::new(0.001, 2.0)));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(l.admit(a), Ok(()));
        assert_eq!(l.admit(a), Ok(()));
        assert_eq!(l.admit(a), Err(Refusal::TooFast));
    }
}
