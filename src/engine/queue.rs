//! A session's outgoing frame queue: many producers (any thread), one consumer (the active
//! transport, which holds the receiver behind the session's `rx` lock).
//!
//! A `VecDeque` behind a short-held lock plus a waker, instead of a tokio `mpsc`
//! channel: an idle session keeps only a few bytes here (the channel keeps a 32-slot block
//! per sender plus its cache-aligned state, about 2.6 KB after a few broadcasts), a burst's
//! slots are returned once it drains, and the length is known without counting permits.
//!
//! **Direct writes.** While a transport has installed a [`DirectSink`] (the WebSocket
//! transport on plain TCP), a frame pushed onto an empty queue whose consumer is not
//! writing goes straight to the socket from the producer's thread, under the queue lock,
//! when that thread runs a tokio runtime (other threads queue, as before):
//! a broadcast to 10k sockets is then 10k `write`s, not 10k task wake-ups each followed by
//! a `write`. Order holds because the direct path only runs when nothing is queued and the
//! consumer has finished writing what it took (`busy`); the sink keeps byte-level order
//! with the consumer's own writes (pongs, partial frames).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::task::AtomicWaker;

use super::SendError;
use crate::proto::engineio::Frame;

/// Slots an emptied queue may keep; a burst beyond this gives its memory back.
const KEEP_SLOTS: usize = 8;

/// The frames, oldest first: the oldest one inline, the rest in a deque. A session that
/// has at most one frame waiting at a time (an echo, a ping, one broadcast) never
/// allocates the deque, so an idle session holds no queue memory beyond this.
#[derive(Default)]
struct Frames {
    /// The oldest frame; `None` only when the queue is empty.
    head: Option<Frame>,
    rest: VecDeque<Frame>,
    /// Where frames may be written at once (see the module docs).
    direct: Option<Arc<dyn DirectSink>>,
    /// The consumer took frames it has not finished writing: producers queue.
    busy: bool,
    /// A direct write was partial: the consumer must flush the sink's rest.
    flush: bool,
}

/// How far [`DirectSink::try_send`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The whole frame is written.
    All,
    /// Part of it is written; the sink holds the rest until the consumer flushes it.
    Partial,
    /// Nothing written (the socket is full, the sink is sealed or busy): queue it.
    No,
}

/// A transport that can write a frame from any thread, without blocking.
pub(crate) trait DirectSink: Send + Sync {
    /// Write `frame` now if the socket takes it; never blocks.
    fn try_send(&self, frame: &Frame) -> Sent;
}

/// What the consumer should do next.
pub(crate) enum Out {
    /// Write this frame.
    Frame(Frame),
    /// Flush the rest of a partial direct write (see [`FrameRx::wrote`]).
    Flush,
}

impl Frames {
    fn len(&self) -> usize {
        self.head.is_some() as usize + self.rest.len()
    }

    fn push_back(&mut self, f: Frame) {
        if self.head.is_none() {
            self.head = Some(f);
        } else {
            self.rest.push_back(f);
        }
    }

    fn pop_front(&mut self) -> Option<Frame> {
        let f = self.head.take()?;
        self.busy = true;
        self.head = self.rest.pop_front();
        if self.rest.is_empty() && self.rest.capacity() > KEEP_SLOTS {
            self.rest.shrink_to(KEEP_SLOTS);
        }
        Some(f)
    }
}

struct Shared {
    frames: Mutex<Frames>,
    /// The consumer's waker (one consumer at a time: the transport holding `rx`). It
    /// registers before its last look at the queue, so a push in between is never lost.
    ready: AtomicWaker,
    /// Every frame counts against this hard bound (data limit + control reserve).
    max: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Frames> {
        // A panic while holding this lock cannot leave the deque inconsistent.
        self.frames.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The producing side (cheap to share: every sender holds the session).
pub(crate) struct FrameTx(Arc<Shared>);

/// The consuming side.
pub(crate) struct FrameRx(Arc<Shared>);

/// The queue was empty.
#[derive(Debug)]
pub(crate) struct Empty;

/// A queue holding at most `max` frames.
pub(crate) fn frame_queue(max: usize) -> (FrameTx, FrameRx) {
    let shared = Arc::new(Shared {
        frames: Mutex::new(Frames::default()),
        ready: AtomicWaker::new(),
        max: max.max(1),
    });
    (FrameTx(shared.clone()), FrameRx(shared))
}

impl Frames {
    /// Write `frame` at once if the queue is empty, the consumer idle and a sink
    /// installed. `true`: it is taken care of (a partial write asks the consumer to flush).
    fn try_direct(&mut self, frame: &Frame, ready: &AtomicWaker) -> bool {
        if self.head.is_some() || self.busy {
            return false;
        }
        let Some(sink) = &self.direct else {
            return false;
        };
        // Only from a thread that runs a tokio runtime (a handler, a C callback): a host
        // thread (a Python handler, a game loop, the C poll mode) hands the frame over
        // instead of spending its own time in `send`; measured, a Python echo server
        // lost a fifth of its throughput writing from its handler thread.
        if tokio::runtime::Handle::try_current().is_err() {
            return false;
        }
        match sink.try_send(frame) {
            Sent::All => true,
            Sent::Partial => {
                self.busy = true;
                self.flush = true;
                ready.wake();
                true
            }
            Sent::No => false,
        }
    }
}

impl FrameTx {
    /// Queue `frames` (all or none) when the queue then holds at most `limit` frames
    /// (capped by the hard bound); frames may go straight to the socket instead (see the
    /// module docs). Returns the new length.
    pub(crate) fn push_all<'a>(
        &self,
        frames: impl ExactSizeIterator<Item = &'a Frame>,
        limit: usize,
    ) -> Result<usize, SendError> {
        let n = frames.len();
        let limit = limit.min(self.0.max);
        let mut queued = false;
        let len = {
            let mut q = self.0.lock();
            if q.len() + n > limit {
                return Err(SendError::QueueFull);
            }
            for f in frames {
                if queued || !q.try_direct(f, &self.0.ready) {
                    q.push_back(f.clone());
                    queued = true;
                }
            }
            q.len()
        };
        if queued {
            self.0.ready.wake();
        }
        Ok(len)
    }

    /// Queue one frame (see [`FrameTx::push_all`]).
    pub(crate) fn push(&self, frame: Frame, limit: usize) -> Result<usize, SendError> {
        let len = {
            let mut q = self.0.lock();
            if q.len() >= limit.min(self.0.max) {
                return Err(SendError::QueueFull);
            }
            if q.try_direct(&frame, &self.0.ready) {
                return Ok(0);
            }
            q.push_back(frame);
            q.len()
        };
        self.0.ready.wake();
        Ok(len)
    }

    /// Install (or, with `None`, remove) the sink frames may be written to directly; the
    /// consumer installs it while it is not writing. Removing it waits for a direct write
    /// in progress to end.
    pub(crate) fn set_direct(&self, sink: Option<Arc<dyn DirectSink>>) {
        let mut q = self.0.lock();
        q.direct = sink;
        q.busy = false;
        q.flush = false;
    }

    /// Frames waiting.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().len()
    }

    /// The hard bound.
    pub(crate) fn max(&self) -> usize {
        self.0.max
    }
}

impl FrameRx {
    /// The next frame, waiting for one. Never `None` (the signature follows
    /// `mpsc::Receiver::recv`; the queue lives as long as its session).
    pub(crate) async fn recv(&mut self) -> Option<Frame> {
        Some(self.wait_for(|rx| rx.try_recv().ok()).await)
    }

    /// Wait until `take` finds something; the waker registers before the second look,
    /// so a push in between is never lost.
    async fn wait_for<T>(&mut self, mut take: impl FnMut(&mut Self) -> Option<T>) -> T {
        std::future::poll_fn(|cx| {
            if let Some(v) = take(self) {
                return std::task::Poll::Ready(v);
            }
            self.0.ready.register(cx.waker());
            match take(self) {
                Some(v) => std::task::Poll::Ready(v),
                None => std::task::Poll::Pending,
            }
        })
        .await
    }

    /// The next frame if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Result<Frame, Empty> {
        self.0.lock().pop_front().ok_or(Empty)
    }

    /// The next thing to write, waiting for one: a frame, or the rest of a partial direct
    /// write to flush. Either way, call [`FrameRx::wrote`] once it is all written.
    pub(crate) async fn next_out(&mut self) -> Out {
        self.wait_for(Self::try_out).await
    }

    fn try_out(&mut self) -> Option<Out> {
        let mut q = self.0.lock();
        if std::mem::take(&mut q.flush) {
            return Some(Out::Flush);
        }
        q.pop_front().map(Out::Frame)
    }

    /// Everything taken so far is written: producers may write directly again.
    pub(crate) fn wrote(&mut self) {
        self.0.lock().busy = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Str;

    fn text(s: &str) -> Frame {
        Frame::Text(Str::from(s.to_owned()))
    }

    /// A sink that records what it takes, answering `mode`.
    struct Recorder {
        mode: Mutex<Sent>,
        taken: Mutex<Vec<Frame>>,
    }

    impl DirectSink for Recorder {
        fn try_send(&self, frame: &Frame) -> Sent {
            let mode = *self.mode.lock().unwrap_or_else(|p| p.into_inner());
            if mode != Sent::No {
                self.taken
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(frame.clone());
            }
            mode
        }
    }

    fn out(rx: &mut FrameRx) -> Option<String> {
        rx.try_out().map(|o| match o {
            Out::Frame(Frame::Text(s)) => s.as_str().to_owned(),
            Out::Frame(Frame::Binary(_)) => "binary".into(),
            Out::Flush => "flush".into(),
        })
    }

    /// Frames go to the sink only while nothing is queued and the consumer is not
    /// writing; a partial direct write makes the consumer flush before anything else.
    #[test]
    fn direct_writes_only_when_empty_and_idle() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let on_runtime = rt.enter();
        let (tx, mut rx) = frame_queue(16);
        let sink = Arc::new(Recorder {
            mode: Mutex::new(Sent::All),
            taken: Mutex::new(Vec::new()),
        });
        let set = |m: Sent| *sink.mode.lock().unwrap_or_else(|p| p.into_inner()) = m;
        let taken =
            || -> Vec<Frame> { sink.taken.lock().unwrap_or_else(|p| p.into_inner()).clone() };
        // No sink yet: queued.
        assert_eq!(tx.push(text("q"), 16).ok(), Some(1));
        assert_eq!(out(&mut rx).as_deref(), Some("q"));
        rx.wrote();
        tx.set_direct(Some(sink.clone()));
        assert_eq!(tx.push(text("a"), 16).ok(), Some(0));
        assert_eq!(taken(), vec![text("a")]);
        // The socket is full: queued, and what follows queues behind it.
        set(Sent::No);
        assert_eq!(tx.push(text("b"), 16).ok(), Some(1));
        set(Sent::All);
        assert_eq!(tx.push(text("c"), 16).ok(), Some(2));
        // The consumer takes both; until it has written them, producers queue.
        assert_eq!(out(&mut rx).as_deref(), Some("b"));
        assert_eq!(out(&mut rx).as_deref(), Some("c"));
        assert_eq!(tx.push(text("d"), 16).ok(), Some(1));
        assert_eq!(taken(), vec![text("a")]);
        assert_eq!(out(&mut rx).as_deref(), Some("d"));
        rx.wrote();
        assert_eq!(tx.push(text("e"), 16).ok(), Some(0));
        // A partial write: the consumer flushes first; producers queue until it did.
        set(Sent::Partial);
        assert_eq!(tx.push(text("f"), 16).ok(), Some(0));
        set(Sent::All);
        assert_eq!(tx.push(text("g"), 16).ok(), Some(1));
        assert_eq!(out(&mut rx).as_deref(), Some("flush"));
        assert_eq!(out(&mut rx).as_deref(), Some("g"));
        rx.wrote();
        assert_eq!(out(&mut rx), None);
        // Several frames at once: direct while the sink takes them, then queued in order.
        let three = [text("h"), text("i"), text("j")];
        assert_eq!(tx.push_all(three.iter(), 16).ok(), Some(0));
        assert_eq!(taken(), ["a", "e", "f", "h", "i", "j"].map(text).to_vec());
        // From a thread outside any runtime: queued, the consumer writes it.
        drop(on_runtime);
        assert_eq!(tx.push(text("x"), 16).ok(), Some(1));
        assert_eq!(out(&mut rx).as_deref(), Some("x"));
        rx.wrote();
        let _on_runtime = rt.enter();
        // Removed: queued again.
        tx.set_direct(None);
        assert_eq!(tx.push(text("k"), 16).ok(), Some(1));
        assert_eq!(taken().len(), 6);
    }

    #[test]
    fn limits_and_order() {
        let (tx, mut rx) = frame_queue(4);
        assert_eq!(tx.push(text("a"), 2).ok(), Some(1));
        assert_eq!(tx.push(text("b"), 2).ok(), Some(2));
        assert!(matches!(tx.push(text("c"), 2), Err(SendError::QueueFull)));
        // The reserve beyond the data limit, up to the hard bound.
        let ctl = [text("c"), text("d")];
        assert_eq!(tx.push_all(ctl.iter(), usize::MAX).ok(), Some(4));
        assert!(matches!(
            tx.push_all([text("e")].iter(), usize::MAX),
            Err(SendError::QueueFull)
        ));
        let mut got = Vec::new();
        while let Ok(f) = rx.try_recv() {
            got.push(f);
        }
        assert_eq!(got, vec![text("a"), text("b"), text("c"), text("d")]);
        assert_eq!(tx.len(), 0);
    }

    #[test]
    fn all_or_none() {
        let (tx, mut rx) = frame_queue(8);
        tx.push(text("a"), 8).ok();
        let three = [text("b"), text("c"), text("d")];
        assert!(matches!(
            tx.push_all(three.iter(), 3),
            Err(SendError::QueueFull)
        ));
        assert_eq!(tx.len(), 1);
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn drained_burst_returns_memory() {
        let (tx, mut rx) = frame_queue(1000);
        for i in 0..500 {
            tx.push(text(&i.to_string()), 1000).ok();
        }
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 500);
        assert!(rx.0.lock().rest.capacity() <= KEEP_SLOTS);
        // One frame at a time never allocates.
        let (tx, mut rx) = frame_queue(8);
        for i in 0..10 {
            tx.push(text(&i.to_string()), 8).ok();
            assert_eq!(rx.try_recv().ok(), Some(text(&i.to_string())));
        }
        assert_eq!(rx.0.lock().rest.capacity(), 0);
    }

    #[tokio::test]
    async fn recv_wakes_on_push_from_another_thread() {
        let (tx, mut rx) = frame_queue(8);
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.push(text("x"), 8).ok();
            tx
        });
        let f = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
        assert_eq!(f.ok().flatten(), Some(text("x")));
        let _ = t.join();
    }
}
