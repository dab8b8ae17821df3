//! Event delivery: where and when user callbacks run.
//!
//! Every event the runtime produces for user code (a C function pointer, a Python
//! callable, a Rust closure) is a [`Job`] handed to a [`Dispatcher`]. The dispatcher's
//! [`Delivery`] mode decides where it runs:
//!
//! - [`Delivery::RuntimeThreads`]: at once, on the runtime thread that produced it. The
//!   core produces the events of one socket or client in wire order from one task at a
//!   time, so they never run concurrently and keep their order.
//! - [`Delivery::HostPoll`]: queued, and run by [`Dispatcher::dispatch`] on the host's
//!   thread (a game loop calls it once per frame). One FIFO queue keeps the order.
//!
//! Both modes share a *gate*: after [`Dispatcher::close`] no job starts, and
//! [`Dispatcher::wait_idle`] waits for the ones already running. This is what lets a
//! runtime promise that no callback runs after its shutdown returned.

use std::cell::RefCell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

/// One callback invocation, ready to run.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Where callbacks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// On the runtime's worker threads, as events happen (the default).
    #[default]
    RuntimeThreads,
    /// Queued until the host calls [`Dispatcher::dispatch`] on its own thread.
    HostPoll,
}

/// Why [`Dispatcher::dispatch`] refused to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// The dispatcher delivers on runtime threads: there is nothing to poll.
    #[error("this runtime delivers events on its own threads: dispatch is for host-poll mode")]
    WrongMode,
    /// Called from inside a callback that `dispatch` is running (on this thread).
    #[error("dispatch called from inside a callback it is running")]
    Reentrant,
    /// The dispatcher was closed (the runtime shut down).
    #[error("the dispatcher is closed")]
    Closed,
}

thread_local! {
    /// The dispatchers (by address) whose jobs are running on this thread, innermost last.
    static RUNNING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    /// The dispatchers whose `dispatch` loop is running on this thread.
    static POLLING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Runs jobs according to a [`Delivery`] mode, behind a gate that [`Dispatcher::close`]
/// shuts for good.
pub struct Dispatcher {
    delivery: Delivery,
    tx: Sender<Job>,
    rx: Receiver<Job>,
    closed: AtomicBool,
    /// Jobs running now. With `closed`, a Dekker-style pair (both `SeqCst`): a job
    /// either sees the gate shut, or `wait_idle` sees it counted.
    in_flight: AtomicUsize,
    /// Held by `wait_idle` between its check and its wait, and by a finishing job that
    /// wakes it, so that no wake-up is lost. Taken only once closed.
    idle_lock: Mutex<()>,
    idle: Condvar,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("delivery", &self.delivery)
            .field("pending", &self.rx.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher for `delivery`.
    pub fn new(delivery: Delivery) -> Dispatcher {
        let (tx, rx) = crossbeam_channel::unbounded();
        Dispatcher {
            delivery,
            tx,
            rx,
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
        }
    }

    /// The delivery mode.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// Whether [`Dispatcher::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Jobs waiting for [`Dispatcher::dispatch`] (always 0 with runtime threads).
    pub fn pending(&self) -> usize {
        self.rx.len()
    }

    fn id(&self) -> usize {
        self as *const Dispatcher as usize
    }

    /// Whether the current thread is running one of this dispatcher's jobs.
    pub fn in_job(&self) -> bool {
        let id = self.id();
        RUNNING.with(|r| r.borrow().contains(&id))
    }

    /// Whether the current thread is running a job of any dispatcher (a callback).
    pub fn in_any_job() -> bool {
        RUNNING.with(|r| !r.borrow().is_empty())
    }

    /// Whether the current thread is inside this dispatcher's [`Dispatcher::dispatch`].
    pub fn in_dispatch(&self) -> bool {
        let id = self.id();
        POLLING.with(|r| r.borrow().contains(&id))
    }

    /// Hand over a job: run it now (runtime threads) or queue it (host poll). Returns
    /// false, dropping the job, once the dispatcher is closed.
    pub fn deliver(&self, job: Job) -> bool {
        self.deliver_fn(job)
    }

    /// [`Dispatcher::deliver`] for any closure: with runtime threads it runs in place,
    /// unboxed; host poll boxes it into the queue.
    pub fn deliver_fn<F: FnOnce() + Send + 'static>(&self, job: F) -> bool {
        match self.delivery {
            Delivery::RuntimeThreads => self.run(job),
            Delivery::HostPoll => {
                if self.is_closed() {
                    return false;
                }
                self.tx.send(Box::new(job)).is_ok()
            }
        }
    }

    /// Run `job` on this thread now, through the gate (whatever the delivery mode).
    /// Returns false, dropping it, when the dispatcher is closed. A panicking job is
    /// logged, not propagated.
    pub fn run<F: FnOnce()>(&self, job: F) -> bool {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.finished();
            drop(job);
            return false;
        }
        let id = self.id();
        RUNNING.with(|r| r.borrow_mut().push(id));
        let r = catch_unwind(AssertUnwindSafe(job));
        RUNNING.with(|r| {
            let mut r = r.borrow_mut();
            if let Some(pos) = r.iter().rposition(|x| *x == id) {
                r.remove(pos);
            }
        });
        self.finished();
        if r.is_err() {
            tracing::error!("an event callback panicked");
        }
        true
    }

    /// A job left the gate: wake `wait_idle` if the gate is shut (before that nobody
    /// waits, and no lock or futex is touched).
    fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            let _g = lock(&self.idle_lock);
            self.idle.notify_all();
        }
    }

    /// Host poll: run up to `max_events` queued jobs on this thread.
    ///
    /// With `timeout` zero it runs what is queued now and never waits. Otherwise it also
    /// waits for jobs to arrive, until `max_events` ran or `timeout` passed; no job starts
    /// after the deadline (a job that is running when it passes finishes first).
    /// Returns the number of jobs run.
    pub fn dispatch(&self, max_events: usize, timeout: Duration) -> Result<usize, DispatchError> {
        if self.delivery != Delivery::HostPoll {
            return Err(DispatchError::WrongMode);
        }
        if self.in_dispatch() || self.in_job() {
            return Err(DispatchError::Reentrant);
        }
        if self.is_closed() {
            return Err(DispatchError::Closed);
        }
        let id = self.id();
        POLLING.with(|p| p.borrow_mut().push(id));
        let _pop = PopOnDrop(id);
        let deadline = Instant::now().checked_add(timeout);
        let mut ran = 0;
        while ran < max_events && !self.is_closed() {
            let job = match self.rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    if timeout.is_zero() {
                        break;
                    }
                    let wait = match deadline {
                        Some(d) => d.saturating_duration_since(Instant::now()),
                        None => Duration::from_secs(3600),
                    };
                    if wait.is_zero() {
                        break;
                    }
                    // Wake up now and then to notice a close.
                    match self.rx.recv_timeout(wait.min(Duration::from_millis(50))) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            self.run(job);
            ran += 1;
            if !timeout.is_zero() && deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        Ok(ran)
    }

    /// Run queued jobs on this thread until the queue is empty or `deadline` passes
    /// (shutdown uses it to deliver final events). Returns the number run.
    pub fn drain(&self, deadline: Instant) -> usize {
        let mut ran = 0;
        while Instant::now() < deadline {
            match self.rx.try_recv() {
                Ok(job) => {
                    self.run(job);
                    ran += 1;
                }
                Err(_) => break,
            }
        }
        ran
    }

    /// Wait up to `timeout` for a job to be queued (host poll). Returns whether one is.
    pub fn wait_queued(&self, timeout: Duration) -> bool {
        if !self.rx.is_empty() {
            return true;
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.rx.is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1).min(timeout));
        }
        !self.rx.is_empty()
    }

    /// Shut the gate for good: no job starts from now on and queued jobs are dropped.
    /// Jobs already running go on; see [`Dispatcher::wait_idle`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        while self.rx.try_recv().is_ok() {}
    }

    /// Wait until no job runs (other than those this thread is inside of), or until
    /// `deadline`. Returns whether it became idle.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let id = self.id();
        let mine = RUNNING.with(|r| r.borrow().iter().filter(|x| **x == id).count());
        let mut g = lock(&self.idle_lock);
        while self.in_flight.load(Ordering::SeqCst) > mine {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = match self.idle.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

struct PopOnDrop(usize);

impl Drop for PopOnDrop {
    fn drop(&mut self) {
        POLLING.with(|p| {
            let mut p = p.borrow_mut();
            if let Some(pos) = p.iter().rposition(|x| *x == self.0) {
                p.remove(pos);
            }
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn runtime_threads_runs_inline() {
        let d = Dispatcher::new(Delivery::RuntimeThreads);
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        assert!(d.deliver(Box::new(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        })));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(
            d.dispatch(10, Duration::ZERO),
            Err(DispatchError::WrongMode)
        );
    }

    #[test]
    fn host_poll_queues_in_order_and_honours_max() {
        let d = Dispatcher::new(Delivery::HostPoll);
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..5 {
            let s = seen.clone();
            d.deliver(Box::new(move || s.lock().unwrap().push(i)));
        }
        assert_eq!(d.pending(), 5);
        assert_eq!(d.dispatch(3, Duration::ZERO), Ok(3));
        assert_eq!(d.dispatch(10, Duration::ZERO), Ok(2));
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn host_poll_never_blocks_past_budget() {
        let d = Dispatcher::new(Delivery::HostPoll);
        let t = Instant::now();
        assert_eq!(d.dispatch(10, Duration::from_millis(30)), Ok(0));
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(25) && e < Duration::from_millis(500));
    }

    #[test]
    fn closed_gate_runs_nothing() {
        let d = Dispatcher::new(Delivery::HostPoll);
        d.deliver(Box::new(|| panic!("must not run")));
        d.close();
        assert_eq!(d.pending(), 0);
        assert!(!d.deliver(Box::new(|| panic!("must not run"))));
        assert!(!d.run(Box::new(|| panic!("must not run"))));
        assert!(d.wait_idle(Instant::now()));
    }

    #[test]
    fn reentrant_dispatch_is_refused() {
        let d = Arc::new(Dispatcher::new(Delivery::HostPoll));
        let d2 = d.clone();
        let r = Arc::new(Mutex::new(None));
        let r2 = r.clone();
        d.deliver(Box::new(move || {
            *r2.lock().unwrap() = Some(d2.dispatch(1, Duration::ZERO));
        }));
        assert_eq!(d.dispatch(1, Duration::ZERO), Ok(1));
        assert_eq!(*r.lock().unwrap(), Some(Err(DispatchError::Reentrant)));
    }
}
