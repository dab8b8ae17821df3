//! The process's runtime and where Python callbacks run.
//!
//! One [`tether_core::runtime::Runtime`] per process, created lazily (delta-rs' `rt()`),
//! replaced in a forked child (objects made before the fork report
//! `ForkedProcessError`), shut down by an `atexit` hook.
//!
//! Runtime threads never take the GIL. Every callback is a [`Job`] posted to a
//! [`Target`]:
//!
//! - [`Target::Thread`]: the process's dispatch thread, a daemon `threading.Thread`
//!   named `tether-dispatch` that waits without the GIL and then runs every ready job
//!   under one GIL acquisition (synchronous `Server` / `Client`). One FIFO: the jobs of one
//!   socket run in wire order, never two at once.
//! - [`Target::Loop`]: an asyncio event loop (`AsyncServer` / `AsyncClient`): jobs queue
//!   per loop and one `loop.call_soon_threadsafe` per batch runs them on the loop's thread.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use tether_core::runtime::Runtime;

use crate::errors::{Error, Result};

/// One callback invocation, run with the GIL on the dispatch thread or a loop's thread.
pub(crate) type Job = Box<dyn FnOnce(Python<'_>) + Send>;

enum Msg {
    Job(Job),
    Stop,
}

/// The dispatch thread's queue.
///
/// Jobs come in batches: a runtime thread reads every ready socket, each event a job.
/// Waking the dispatch thread at the first one would make both threads take turns per
/// event (on one core, a context switch each way); instead a job posted from a runtime
/// thread while the dispatch thread sleeps schedules one wake-up task behind the other
/// ready tasks of that thread ([`tokio::task::yield_now`]), so the dispatch thread
/// wakes once for the whole batch. From any other thread the wake-up is immediate. The
/// wake-up task wakes it when it runs or is dropped (a runtime shutting down), and the
/// dispatch thread rechecks every second anyway.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    cv: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Msg>,
    /// The dispatch thread waits on `cv`.
    sleeping: bool,
    /// A wake-up task is scheduled.
    wake_pending: bool,
}

impl Queue {
    fn push(self: &Arc<Queue>, msg: Msg) {
        let mut st = lock(&self.state);
        st.jobs.push_back(msg);
        if !st.sleeping || st.wake_pending {
            return;
        }
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            st.wake_pending = true;
            drop(st);
            let waker = WakeOnDrop(self.clone());
            h.spawn(async move {
                tokio::task::yield_now().await;
                drop(waker);
            });
            return;
        }
        drop(st);
        self.cv.notify_one();
    }

    fn wake(&self) {
        let mut st = lock(&self.state);
        st.wake_pending = false;
        if st.sleeping {
            drop(st);
            self.cv.notify_one();
        }
    }

    /// Move what is queued into `out`; false when nothing was.
    fn take_ready(&self, out: &mut VecDeque<Msg>) -> bool {
        let mut st = lock(&self.state);
        if st.jobs.is_empty() {
            return false;
        }
        std::mem::swap(&mut st.jobs, out);
        true
    }

    /// Wait until something is queued (or a second passed) and move it into `out`.
    fn wait(&self, out: &mut VecDeque<Msg>) {
        let mut st = lock(&self.state);
        if st.jobs.is_empty() {
            st.sleeping = true;
            st = match self.cv.wait_timeout(st, Duration::from_secs(1)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
            st.sleeping = false;
        }
        std::mem::swap(&mut st.jobs, out);
    }
}

/// Wakes the dispatch thread when dropped (the deferred wake-up of [`Queue::push`]).
struct WakeOnDrop(Arc<Queue>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.wake();
    }
}

/// The process's runtime and dispatch queue.
pub(crate) struct Core {
    pub rt: Runtime,
    queue: Arc<Queue>,
    pid: u32,
    /// The dispatch thread's `threading.get_ident()`, once it runs.
    thread_ident: Mutex<Option<u64>>,
    done: Mutex<bool>,
    done_cv: Condvar,
}

static CORE: Mutex<Option<Arc<Core>>> = Mutex::new(None);
/// This process's id, kept current by `os.register_at_fork(after_in_child=...)` so that
/// the hot paths compare it without a `getpid` system call.
static PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn current_pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => {
            let p = std::process::id();
            PID.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

/// Called in a forked child (registered with `os.register_at_fork`).
#[pyfunction]
pub(crate) fn _after_fork() {
    PID.store(std::process::id(), Ordering::Relaxed);
}
static SHUT: AtomicBool = AtomicBool::new(false);

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The process's core, created (with its dispatch thread) on first use and again in a
/// forked child.
pub(crate) fn core(py: Python<'_>) -> Result<Arc<Core>> {
    let mut g = lock(&CORE);
    if let Some(c) = g.as_ref()
        && c.pid == std::process::id()
    {
        if c.rt.is_shut_down() {
            return Err(Error::ShutDown("the tether runtime is shut down".into()));
        }
        return Ok(c.clone());
    }
    if SHUT.load(Ordering::Acquire) && g.as_ref().is_none_or(|c| c.pid == std::process::id()) {
        return Err(Error::ShutDown(
            "the tether runtime is shut down (interpreter exit)".into(),
        ));
    }
    // First use, or a forked child: the parent's runtime has no threads here (its
    // objects report ForkedProcessError); make a new one.
    // TETHER_WORKERS: runtime worker threads (default 2).
    let workers = std::env::var("TETHER_WORKERS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(2);
    let rt = Runtime::builder()
        .workers(workers)
        .thread_name("tether-worker")
        .build()?;
    let c = Arc::new(Core {
        rt,
        queue: Arc::new(Queue::default()),
        pid: std::process::id(),
        thread_ident: Mutex::new(None),
        done: Mutex::new(false),
        done_cv: Condvar::new(),
    });
    start_thread(py, &c).map_err(|e| Error::Other(format!("cannot start tether-dispatch: {e}")))?;
    if let Some(old) = g.replace(c.clone()) {
        // The parent's: never join its threads (they do not exist here).
        std::mem::forget(old);
    }
    Ok(c)
}

fn start_thread(py: Python<'_>, c: &Arc<Core>) -> PyResult<()> {
    let target = Py::new(py, DispatchLoop { core: c.clone() })?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("target", target)?;
    kwargs.set_item("name", "tether-dispatch")?;
    kwargs.set_item("daemon", true)?;
    let t = py
        .import("threading")?
        .getattr("Thread")?
        .call((), Some(&kwargs))?;
    t.call_method0("start")?;
    Ok(())
}

/// The body of the `tether-dispatch` thread.
#[pyclass(frozen, module = "tether._tether")]
struct DispatchLoop {
    core: Arc<Core>,
}

#[pymethods]
impl DispatchLoop {
    fn __call__(&self, py: Python<'_>) {
        let c = &self.core;
        if let Ok(ident) = py
            .import("threading")
            .and_then(|t| t.getattr("get_ident"))
            .and_then(|f| f.call0())
            .and_then(|i| i.extract::<u64>())
        {
            *lock(&c.thread_ident) = Some(ident);
        }
        let mut batch = VecDeque::new();
        'run: loop {
            // Everything queued, under one lock; without the GIL only when nothing is.
            if !c.queue.take_ready(&mut batch) {
                py.detach(|| c.queue.wait(&mut batch));
            }
            while let Some(msg) = batch.pop_front() {
                match msg {
                    Msg::Job(job) => run_job(py, job),
                    Msg::Stop => break 'run,
                }
            }
        }
        *lock(&c.done) = true;
        c.done_cv.notify_all();
    }
}

/// Run a job; a panic is reported, never propagated.
pub(crate) fn run_job(py: Python<'_>, job: Job) {
    if catch_unwind(AssertUnwindSafe(|| job(py))).is_err() {
        report_message(py, "a tether callback panicked (a bug in tether)");
    }
}

impl Core {
    /// Post a job to the dispatch thread.
    pub(crate) fn post(&self, job: Job) {
        self.queue.push(Msg::Job(job));
    }

    /// Whether the current thread is the dispatch thread.
    pub(crate) fn on_dispatch_thread(&self, py: Python<'_>) -> bool {
        let Some(ident) = *lock(&self.thread_ident) else {
            return false;
        };
        py.import("threading")
            .and_then(|t| t.getattr("get_ident"))
            .and_then(|f| f.call0())
            .and_then(|i| i.extract::<u64>())
            .map(|i| i == ident)
            .unwrap_or(false)
    }

    /// Error unless usable from this process (no system call: see [`PID`]).
    pub(crate) fn check(&self) -> Result<()> {
        if current_pid() != self.pid {
            return Err(Error::Forked);
        }
        if self.rt.is_shut_down() {
            return Err(Error::ShutDown("the tether runtime is shut down".into()));
        }
        Ok(())
    }

    /// A tokio handle, checked.
    pub(crate) fn handle(&self) -> Result<tokio::runtime::Handle> {
        self.check()?;
        Ok(self.rt.raw_handle().clone())
    }
}

/// Shut the runtime down (the `atexit` hook): close every server and client, run their
/// final callbacks, stop the dispatch thread. Later uses raise `ShutDownError`.
#[pyfunction]
#[pyo3(signature = (timeout = 5.0))]
pub(crate) fn _shutdown(py: Python<'_>, timeout: f64) {
    SHUT.store(true, Ordering::Release);
    let c = lock(&CORE).take();
    let Some(c) = c else { return };
    if c.pid != std::process::id() {
        std::mem::forget(c);
        return;
    }
    let t = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
    let deadline = Instant::now() + t;
    let on_thread = c.on_dispatch_thread(py);
    let rt = c.rt.clone();
    let _ = py.detach(move || rt.shutdown(t));
    c.queue.push(Msg::Stop);
    if on_thread {
        return;
    }
    py.detach(|| {
        let mut done = lock(&c.done);
        while !*done {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            done = match c.done_cv.wait_timeout(done, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    });
}

/// Where an object's callbacks run.
#[derive(Clone)]
pub(crate) enum Target {
    /// The dispatch thread.
    Thread(Arc<Core>),
    /// An asyncio event loop.
    Loop(Arc<LoopTarget>),
}

impl Target {
    /// Post a job (from any thread, without the GIL).
    pub(crate) fn post(&self, job: Job) {
        match self {
            Target::Thread(c) => c.post(job),
            Target::Loop(l) => l.post(job),
        }
    }

    pub(crate) fn is_async(&self) -> bool {
        matches!(self, Target::Loop(_))
    }
}

/// An asyncio loop that jobs are posted to.
pub(crate) struct LoopTarget {
    core: Arc<Core>,
    event_loop: Py<PyAny>,
    pending: Mutex<VecDeque<Job>>,
    scheduled: AtomicBool,
    closed: AtomicBool,
}

impl LoopTarget {
    pub(crate) fn new(core: Arc<Core>, event_loop: Py<PyAny>) -> Arc<LoopTarget> {
        Arc::new(LoopTarget {
            core,
            event_loop,
            pending: Mutex::new(VecDeque::new()),
            scheduled: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    pub(crate) fn event_loop(&self) -> &Py<PyAny> {
        &self.event_loop
    }

    fn post(self: &Arc<Self>, job: Job) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        lock(&self.pending).push_back(job);
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            self.core.post(Box::new(move |py| me.wake(py)));
        }
    }

    /// On the dispatch thread: ask the loop to drain.
    fn wake(self: Arc<Self>, py: Python<'_>) {
        let drain = match Py::new(
            py,
            LoopDrain {
                target: self.clone(),
            },
        ) {
            Ok(d) => d,
            Err(e) => {
                report(py, e, "tether: cannot schedule callbacks on the event loop");
                return;
            }
        };
        if let Err(e) = self
            .event_loop
            .bind(py)
            .call_method1("call_soon_threadsafe", (drain,))
        {
            // The loop is closed: nothing will ever run there.
            let _ = e;
            self.closed.store(true, Ordering::Release);
            let dropped: Vec<Job> = lock(&self.pending).drain(..).collect();
            drop(dropped);
        }
    }
}

/// Runs a loop target's pending jobs (scheduled with `call_soon_threadsafe`).
#[pyclass(frozen, module = "tether._tether")]
struct LoopDrain {
    target: Arc<LoopTarget>,
}

#[pymethods]
impl LoopDrain {
    fn __call__(&self, py: Python<'_>) {
        let t = &self.target;
        t.scheduled.store(false, Ordering::Release);
        let jobs: Vec<Job> = lock(&t.pending).drain(..).collect();
        for job in jobs {
            run_job(py, job);
        }
    }
}

// ---------------------------------------------------------------------------
// Reporting errors raised by callbacks.

static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    LOGGER
        .get_or_try_init(py, || {
            py.import("logging")?
                .getattr("getLogger")?
                .call1(("tether",))
                .map(Bound::unbind)
        })
        .map(|l| l.bind(py))
}

/// Report an exception raised by a callback: logged on the `tether` logger (with the
/// traceback) and, when `sys.unraisablehook` was replaced (pytest, a monitoring hook),
/// passed to it too. Never raises.
pub(crate) fn report(py: Python<'_>, err: PyErr, context: &str) {
    let value = err.value(py).clone();
    let logged = (|| -> PyResult<()> {
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", &value)?;
        logger(py)?.call_method("error", ("%s", context), Some(&kwargs))?;
        Ok(())
    })();
    let custom_hook = (|| -> PyResult<bool> {
        let sys = py.import("sys")?;
        let hook = sys.getattr("unraisablehook")?;
        let default = sys.getattr("__unraisablehook__")?;
        Ok(!hook.is(&default))
    })()
    .unwrap_or(true);
    if custom_hook || logged.is_err() {
        let ctx = pyo3::types::PyString::new(py, context);
        err.write_unraisable(py, Some(ctx.as_any()));
    }
}

/// Report a message without an exception.
pub(crate) fn report_message(py: Python<'_>, message: &str) {
    if let Ok(l) = logger(py) {
        let _ = l.call_method1("error", ("%s", message));
    }
}

/// Log a warning on the `tether` logger.
pub(crate) fn warn(py: Python<'_>, message: &str) {
    if let Ok(l) = logger(py) {
        let _ = l.call_method1("warning", ("%s", message));
    }
}

// ---------------------------------------------------------------------------
// Helpers written in Python (tether/_glue.py).

static GLUE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

pub(crate) fn glue(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    GLUE.get_or_try_init(py, || Ok::<_, PyErr>(py.import("tether._glue")?.unbind()))
        .map(|m| m.bind(py))
}

/// Call `tether._glue.<name>(*args)`.
pub(crate) fn call_glue<'py>(
    py: Python<'py>,
    name: &str,
    args: Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    glue(py)?.getattr(name)?.call1(args)
}

/// Wait for `rx` without the GIL, checking for signals (Ctrl-C) every 100 ms.
/// `None` timeout: forever.
pub(crate) fn wait_signals<T: Send>(
    py: Python<'_>,
    rx: &crossbeam_channel::Receiver<T>,
    timeout: Option<Duration>,
) -> PyResult<Option<T>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                left.min(Duration::from_millis(100))
            }
            None => Duration::from_millis(100),
        };
        match py.detach(|| rx.recv_timeout(slice)) {
            Ok(v) => return Ok(Some(v)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(None),
        }
    }
}
