//! A session's outgoing frame queue: many producers (any thread), one consumer (the active
//! transport, which holds the receiver behind the session's `rx` lock).
//!
//! A `VecDeque` behind a short-held lock plus a waker, instead of a tokio `mpsc`
//! channel: an idle session keeps only a few bytes here (the channel keeps a 32-slot block
//! per sender plus its cache-aligned state, about 2.6 KB after a few broadcasts), a burst's
//! slots are returned once it drains, and the length is known without counting permits.

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

impl FrameTx {
    /// Queue `frames` (all or none) when the queue then holds at most `limit` frames
    /// (capped by the hard bound). Returns the new length.
    pub(crate) fn push_all<'a>(
        &self,
        frames: impl ExactSizeIterator<Item = &'a Frame>,
        limit: usize,
    ) -> Result<usize, SendError> {
        let n = frames.len();
        let limit = limit.min(self.0.max);
        let len = {
            let mut q = self.0.lock();
            if q.len() + n > limit {
                return Err(SendError::QueueFull);
            }
            for f in frames {
                q.push_back(f.clone());
            }
            q.len()
        };
        if n > 0 {
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
            q.push_back(frame);
            q.len()
        };
        self.0.ready.wake();
        Ok(len)
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
        std::future::poll_fn(|cx| {
            if let Ok(f) = self.try_recv() {
                return std::task::Poll::Ready(Some(f));
            }
            self.0.ready.register(cx.waker());
            match self.try_recv() {
                Ok(f) => std::task::Poll::Ready(Some(f)),
                Err(Empty) => std::task::Poll::Pending,
            }
        })
        .await
    }

    /// The next frame if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Result<Frame, Empty> {
        self.0.lock().pop_front().ok_or(Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Str;

    fn text(s: &str) -> Frame {
        Frame::Text(Str::from(s.to_owned()))
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
