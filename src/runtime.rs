//! The embeddable runtime: a tokio multi-thread runtime the library owns, the
//! [`Dispatcher`] that delivers events, and a deterministic shutdown.
//!
//! Bindings (C, Python) create one [`Runtime`], build servers and clients on its
//! [`Runtime::handle`], register them as [`Closable`], and finally call
//! [`Runtime::shutdown`], which:
//!
//! 1. closes every registered object on a runtime thread (servers stop listening and
//!    close their sessions, clients close their connections),
//! 2. waits until each reports [`Closable::is_closed`] (its final events were handed to
//!    the dispatcher); in host-poll mode it runs those events on the calling thread,
//! 3. shuts the dispatcher's gate (no callback starts afterwards) and waits for running
//!    callbacks,
//! 4. shuts the tokio runtime down and joins its threads,
//!
//! all within the given timeout. After a `fork`, the child must not use a runtime
//! created by the parent (its threads do not exist there): every entry point reports
//! [`RuntimeError::Forked`], and shutdown leaks the runtime instead of joining threads
//! that are not there.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::dispatch::{Delivery, DispatchError, Dispatcher, Job};

/// Something a runtime closes when it shuts down (a server, a client, a pending
/// callback that must still be told).
pub trait Closable: Send + Sync {
    /// Start closing. Idempotent; called on a runtime thread during shutdown.
    fn close(&self);
    /// Whether closing finished: the object's final events were handed to the
    /// dispatcher.
    fn is_closed(&self) -> bool;
}

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime was created by another process: this is a forked child.
    #[error(
        "this runtime was created before a fork: it cannot be used in the child process (create a new one there)"
    )]
    Forked,
    /// The runtime is shut down (or shutting down).
    #[error("the runtime is shut down")]
    ShutDown,
    /// The operation did not finish in time.
    #[error("timed out")]
    Timeout,
    /// The runtime's threads could not be started.
    #[error("could not start the runtime: {0}")]
    Io(#[from] std::io::Error),
    /// A call that waits for the runtime was made on the thread of a single-threaded
    /// runtime (from inside a callback): it would wait for itself.
    #[error(
        "this call waits for the runtime and was made on the single-threaded runtime's own thread (inside a callback): make it from another thread"
    )]
    OnRuntimeThread,
}

const RUNNING: u8 = 0;
const SHUTTING_DOWN: u8 = 1;
const SHUT_DOWN: u8 = 2;

/// The tokio runtime and how it is stopped.
enum Engine {
    /// tokio's multi-thread scheduler.
    Multi(tokio::runtime::Runtime),
    /// tokio's current-thread scheduler, driven by one thread of ours: it runs
    /// `block_on` until `stop` says how long the final shutdown may take, then tells
    /// `done`.
    Single {
        stop: tokio::sync::oneshot::Sender<Duration>,
        done: std::sync::mpsc::Receiver<()>,
        thread: std::thread::JoinHandle<()>,
    },
}

struct Inner {
    rt: Mutex<Option<Engine>>,
    /// The single-threaded runtime's thread.
    driver: Option<std::thread::ThreadId>,
    handle: tokio::runtime::Handle,
    dispatcher: Arc<Dispatcher>,
    pid: u32,
    workers: usize,
    state: AtomicU8,
    objects: Mutex<HashMap<u64, Weak<dyn Closable>>>,
    next_id: AtomicU64,
}

/// The runtime: worker threads, event delivery, shutdown. Cheap to clone; every clone
/// is the same runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.inner.workers)
            .field("delivery", &self.inner.dispatcher.delivery())
            .field("state", &self.inner.state.load(Ordering::Relaxed))
            .finish()
    }
}

/// Builds a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    single: bool,
    workers: usize,
    delivery: Delivery,
    thread_name: String,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            single: false,
            workers: 2,
            delivery: Delivery::RuntimeThreads,
            thread_name: "tether-worker".to_owned(),
        }
    }
}

impl RuntimeBuilder {
    /// Worker threads (default 2; at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// One runtime thread on tokio's current-thread scheduler instead of worker threads
    /// (default false): the least overhead per event. Its limit: a call that waits for
    /// the runtime ([`Runtime::block_on`]) made on that thread, i.e. from inside a
    /// callback, returns [`RuntimeError::OnRuntimeThread`] instead of waiting for itself.
    pub fn single_threaded(mut self, yes: bool) -> Self {
        self.single = yes;
        self
    }

    /// Where callbacks run (default [`Delivery::RuntimeThreads`]).
    pub fn delivery(mut self, d: Delivery) -> Self {
        self.delivery = d;
        self
    }

    /// The worker threads' name (default `tether-worker`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Start the runtime's threads.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        let (engine, handle, driver, workers) = if self.single {
            let rt = tokio::runtime::Builder::new_current_thread()
                .max_blocking_threads(4)
                .thread_name(self.thread_name.clone())
                .thread_keep_alive(Duration::from_millis(500))
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (stop, stop_rx) = tokio::sync::oneshot::channel::<Duration>();
            let (done_tx, done) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name(self.thread_name)
                .spawn(move || {
                    let grace =
                        rt.block_on(
                            async move { stop_rx.await.unwrap_or(Duration::from_millis(100)) },
                        );
                    rt.shutdown_timeout(grace);
                    let _ = done_tx.send(());
                })?;
            let driver = thread.thread().id();
            let engine = Engine::Single { stop, done, thread };
            (engine, handle, Some(driver), 1)
        } else {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(self.workers)
                .max_blocking_threads(4)
                .thread_name(self.thread_name)
                .thread_keep_alive(Duration::from_millis(500))
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            (Engine::Multi(rt), handle, None, self.workers)
        };
        Ok(Runtime {
            inner: Arc::new(Inner {
                rt: Mutex::new(Some(engine)),
                driver,
                handle,
                dispatcher: Arc::new(Dispatcher::new(self.delivery)),
                pid: std::process::id(),
                workers,
                state: AtomicU8::new(RUNNING),
                objects: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        })
    }
}

impl Inner {
    /// Whether this is the single-threaded runtime's own thread.
    fn on_driver(&self) -> bool {
        self.driver == Some(std::thread::current().id())
    }
}

/// Keeps an object registered with a runtime; dropping it unregisters.
#[derive(Debug)]
pub struct Registration {
    rt: Weak<Inner>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(inner) = self.rt.upgrade() {
            lock(&inner.objects).remove(&self.id);
        }
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Runtime")
    }
}

impl Runtime {
    /// Start building a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// A runtime with the defaults (2 workers, callbacks on runtime threads).
    pub fn new() -> Result<Runtime, RuntimeError> {
        RuntimeBuilder::default().build()
    }

    /// Whether this process is a fork of the one that created the runtime.
    pub fn is_forked(&self) -> bool {
        std::process::id() != self.inner.pid
    }

    /// Whether [`Runtime::shutdown`] has started.
    pub fn is_shut_down(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) != RUNNING
    }

    /// Ok when the runtime may be used: same process, not shut down.
    pub fn check(&self) -> Result<(), RuntimeError> {
        if self.is_forked() {
            return Err(RuntimeError::Forked);
        }
        if self.is_shut_down() {
            return Err(RuntimeError::ShutDown);
        }
        Ok(())
    }

    /// The tokio handle to build servers and clients on.
    pub fn handle(&self) -> Result<tokio::runtime::Handle, RuntimeError> {
        self.check()?;
        Ok(self.inner.handle.clone())
    }

    /// The tokio handle, without checks (for code that only spawns).
    pub fn raw_handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    /// Number of worker threads (1 for a single-threaded runtime).
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// Whether this runtime runs on one thread with tokio's current-thread scheduler
    /// ([`RuntimeBuilder::single_threaded`]).
    pub fn is_single_threaded(&self) -> bool {
        self.inner.driver.is_some()
    }

    /// The delivery mode.
    pub fn delivery(&self) -> Delivery {
        self.inner.dispatcher.delivery()
    }

    /// The dispatcher events go through.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.inner.dispatcher
    }

    /// Hand a callback job to the dispatcher (see [`Dispatcher::deliver`]).
    pub fn deliver(&self, job: Job) -> bool {
        self.inner.dispatcher.deliver(job)
    }

    /// Hand a callback to the dispatcher without boxing it first when it runs in place
    /// (see [`Dispatcher::deliver_fn`]).
    pub fn deliver_fn<F: FnOnce() + Send + 'static>(&self, job: F) -> bool {
        self.inner.dispatcher.deliver_fn(job)
    }

    /// Host poll: run queued callbacks on this thread (see [`Dispatcher::dispatch`]).
    pub fn dispatch(&self, max_events: usize, timeout: Duration) -> Result<usize, RuntimeError> {
        if self.is_forked() {
            return Err(RuntimeError::Forked);
        }
        match self.inner.dispatcher.dispatch(max_events, timeout) {
            Ok(n) => Ok(n),
            Err(DispatchError::Closed) => Err(RuntimeError::ShutDown),
            Err(e) => Err(RuntimeError::Io(std::io::Error::other(e))),
        }
    }

    /// Register an object to close at shutdown. Fails once shutdown started.
    pub fn register(&self, obj: Weak<dyn Closable>) -> Result<Registration, RuntimeError> {
        self.check()?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.objects).insert(id, obj);
        // A shutdown that started meanwhile may have missed it.
        if self.is_shut_down() {
            lock(&self.inner.objects).remove(&id);
            return Err(RuntimeError::ShutDown);
        }
        Ok(Registration {
            rt: Arc::downgrade(&self.inner),
            id,
        })
    }

    /// Run `fut` on the runtime and wait for its output, at most `timeout`. Works from
    /// any thread, a runtime worker included (the worker is handed over meanwhile),
    /// except the thread of a single-threaded runtime ([`RuntimeError::OnRuntimeThread`]).
    pub fn block_on<F>(&self, fut: F, timeout: Duration) -> Result<F::Output, RuntimeError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = self.handle()?;
        if self.inner.on_driver() {
            return Err(RuntimeError::OnRuntimeThread);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        wait_blocking(|| rx.recv_timeout(timeout).map_err(|_| RuntimeError::Timeout))
    }

    /// Shut down within `timeout`: close every registered object, deliver their final
    /// events, stop callbacks, join the threads. Idempotent. After it returns no callback
    /// runs. Returns [`RuntimeError::Timeout`] when something did not finish in time (the
    /// guarantee holds all the same: late events are dropped). Called from inside a
    /// callback, the threads cannot be joined from the thread they run: they are
    /// released and exit on their own right after.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), RuntimeError> {
        shutdown_inner(&self.inner, timeout)
    }
}

fn shutdown_inner(inner: &Inner, timeout: Duration) -> Result<(), RuntimeError> {
    let deadline = Instant::now() + timeout;
    if std::process::id() != inner.pid {
        // The threads are the parent's: never join them; leak the runtime.
        inner.state.store(SHUT_DOWN, Ordering::Release);
        inner.dispatcher.close();
        if let Some(engine) = lock(&inner.rt).take() {
            std::mem::forget(engine);
        }
        return Err(RuntimeError::Forked);
    }
    match inner
        .state
        .compare_exchange(RUNNING, SHUTTING_DOWN, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => {}
        Err(SHUT_DOWN) => return Ok(()),
        Err(_) => {
            // Another thread is shutting down: wait for it.
            while inner.state.load(Ordering::Acquire) != SHUT_DOWN {
                if Instant::now() >= deadline {
                    return Err(RuntimeError::Timeout);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            return Ok(());
        }
    }
    let dispatcher = inner.dispatcher.clone();
    let host_poll = dispatcher.delivery() == Delivery::HostPoll;
    let objects: Vec<Arc<dyn Closable>> = lock(&inner.objects)
        .drain()
        .filter_map(|(_, w)| w.upgrade())
        .collect();
    let mut timed_out = false;

    // On a single-threaded runtime's own thread (shutdown from a callback), nothing
    // else runs while this waits: close in place and let the thread stop afterwards.
    let on_driver = inner.on_driver();

    // 1. Close everything, on a runtime thread (callbacks keep their usual thread).
    if on_driver {
        for o in &objects {
            o.close();
        }
    } else {
        let objs = objects.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        inner.handle.spawn(async move {
            for o in &objs {
                o.close();
            }
            let _ = tx.send(());
        });
        let left = deadline.saturating_duration_since(Instant::now());
        if wait_blocking(|| rx.recv_timeout(left)).is_err() {
            timed_out = true;
        }
    }

    // 2. Wait for the final events; in host-poll mode run them here.
    let may_drain = host_poll && !dispatcher.in_dispatch() && !dispatcher.in_job();
    // (On the single-threaded runtime's own thread nothing else could make progress.)
    loop {
        if on_driver {
            break;
        }
        if may_drain {
            dispatcher.drain(deadline);
        }
        if objects.iter().all(|o| o.is_closed()) {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        if may_drain {
            dispatcher.wait_queued(Duration::from_millis(2));
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if may_drain {
        dispatcher.drain(deadline);
    }
    drop(objects);

    // 3. No callback starts from now on; wait for the running ones.
    dispatcher.close();
    if !dispatcher.wait_idle(deadline) {
        timed_out = true;
    }

    // 4. Stop the tokio runtime and join its threads.
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    match lock(&inner.rt).take() {
        Some(Engine::Multi(rt)) => {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Inside a runtime (a callback on a worker): joining would wait for
                // ourselves.
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(left);
            }
        }
        Some(Engine::Single { stop, done, thread }) => {
            let _ = stop.send(left);
            if on_driver {
                // The thread stops once this callback returns; it cannot join itself.
                drop(thread);
            } else if done.recv_timeout(left + Duration::from_millis(50)).is_ok() {
                let _ = thread.join();
            } else {
                timed_out = true;
            }
        }
        None => {}
    }
    inner.state.store(SHUT_DOWN, Ordering::Release);
    if timed_out {
        Err(RuntimeError::Timeout)
    } else {
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.state.load(Ordering::Acquire) != SHUT_DOWN {
            let _ = shutdown_inner(self, Duration::from_secs(2));
        }
    }
}

/// Run a blocking wait; on a multi-thread runtime worker, hand the worker over first.
fn wait_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
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
    use std::sync::atomic::AtomicBool;

    struct Obj {
        closed: AtomicBool,
        rt: Runtime,
        delivered: Arc<AtomicBool>,
    }

    impl Closable for Obj {
        fn close(&self) {
            let d = self.delivered.clone();
            self.rt
                .deliver(Box::new(move || d.store(true, Ordering::SeqCst)));
            self.closed.store(true, Ordering::SeqCst);
        }
        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::SeqCst)
        }
    }

    /// An object registered with `rt` whose close delivers one event (`delivered`).
    fn registered(rt: &Runtime) -> (Arc<dyn Closable>, Registration, Arc<AtomicBool>) {
        let delivered = Arc::new(AtomicBool::new(false));
        let obj: Arc<dyn Closable> = Arc::new(Obj {
            closed: AtomicBool::new(false),
            rt: rt.clone(),
            delivered: delivered.clone(),
        });
        let reg = rt.register(Arc::downgrade(&obj)).unwrap();
        (obj, reg, delivered)
    }

    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn shutdown_closes_objects_delivers_final_events_and_is_idempotent() {
        for delivery in [Delivery::RuntimeThreads, Delivery::HostPoll] {
            let rt = Runtime::builder()
                .workers(2)
                .delivery(delivery)
                .build()
                .unwrap();
            let (_obj, _reg, delivered) = registered(&rt);
            assert_eq!(rt.block_on(async { 7 }, Duration::from_secs(5)).unwrap(), 7);
            rt.shutdown(Duration::from_secs(5)).unwrap();
            assert!(delivered.load(Ordering::SeqCst), "{delivery:?}");
            assert!(rt.shutdown(Duration::from_secs(1)).is_ok());
            assert!(matches!(rt.handle(), Err(RuntimeError::ShutDown)));
            assert!(!rt.deliver(Box::new(|| panic!("after shutdown"))));
        }
    }

    #[test]
    fn single_threaded_runtime_runs_on_one_thread_and_refuses_to_wait_for_itself() {
        let rt = Runtime::builder().single_threaded(true).build().unwrap();
        assert!(rt.is_single_threaded() && rt.workers() == 1);
        let driver = rt
            .block_on(
                async { std::thread::current().id() },
                Duration::from_secs(5),
            )
            .unwrap();
        assert_ne!(driver, std::thread::current().id());
        // A callback on the runtime's thread cannot wait for the runtime.
        let (tx, rx) = std::sync::mpsc::channel();
        let rt2 = rt.clone();
        rt.raw_handle().spawn(async move {
            let r2 = rt2.clone();
            rt2.deliver_fn(move || {
                let same = std::thread::current().id() == driver;
                let r = r2.block_on(async { 1 }, Duration::from_millis(200));
                let _ = tx.send((same, matches!(r, Err(RuntimeError::OnRuntimeThread))));
            });
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            (true, true)
        );
        let (_obj, _reg, delivered) = registered(&rt);
        rt.shutdown(Duration::from_secs(5)).unwrap();
        assert!(delivered.load(Ordering::SeqCst));
        assert!(matches!(rt.handle(), Err(RuntimeError::ShutDown)));
    }

    #[test]
    fn single_threaded_runtime_shuts_down_from_its_own_callback() {
        let rt = Runtime::builder().single_threaded(true).build().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let rt2 = rt.clone();
        rt.raw_handle().spawn(async move {
            let r2 = rt2.clone();
            rt2.deliver_fn(move || {
                let _ = tx.send(r2.shutdown(Duration::from_secs(2)).is_ok());
            });
        });
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap());
        assert!(rt.is_shut_down());
        // The thread stops by itself once the callback returned.
        assert!(rt.shutdown(Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn shutdown_joins_threads() {
        let before = threads();
        let rt = Runtime::builder().workers(3).build().unwrap();
        rt.block_on(async {}, Duration::from_secs(5)).unwrap();
        rt.shutdown(Duration::from_secs(5)).unwrap();
        drop(rt);
        // Other tests run in parallel: only check we did not leave our three behind
        // when running alone.
        if before <= 2 {
            assert!(threads() <= before + 1);
        }
    }
}
