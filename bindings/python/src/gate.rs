//! Holding a connection's incoming messages while a Python connect handler decides.
//!
//! The core sends a namespace's CONNECT answer and then runs the connection handler that
//! registers the socket's event handlers. When the answer comes from another thread (a
//! Python connect handler on the dispatch thread), a fast client's first events can be
//! read by the connection's task in between and find no handler. This wrapper around the
//! core's [`EngineHandler`] queues a connection's messages from the moment its CONNECT
//! goes to a Python connect handler until the decision is applied, then delivers them in
//! order: the events are never lost and keep their wire order.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use tether_core::engine::{DisconnectReason, EngineHandler, EngineSocket};
use tether_core::proto::Str;

use crate::core::lock;

enum In {
    Text(Str),
    Bin(Bytes),
}

#[derive(Default)]
struct GateState {
    /// Decisions pending for this connection.
    held: usize,
    queued: VecDeque<In>,
}

pub(crate) struct Gated {
    inner: Arc<dyn EngineHandler>,
    gates: Mutex<HashMap<Str, Arc<Mutex<GateState>>>>,
    active: AtomicUsize,
    me: Weak<Gated>,
}

thread_local! {
    /// The connection whose message is being delivered on this thread.
    static CURRENT: RefCell<Option<(Weak<Gated>, Arc<EngineSocket>)>> = const { RefCell::new(None) };
}

impl Gated {
    pub(crate) fn new(inner: Arc<dyn EngineHandler>) -> Arc<Gated> {
        Arc::new_cyclic(|me| Gated {
            inner,
            gates: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            me: me.clone(),
        })
    }

    fn forward(&self, socket: &Arc<EngineSocket>, m: In) {
        let prev = CURRENT.with(|c| c.replace(Some((self.me.clone(), socket.clone()))));
        match m {
            In::Text(t) => self.inner.on_message(socket, t),
            In::Bin(b) => self.inner.on_binary(socket, b),
        }
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }

    fn deliver(&self, socket: &Arc<EngineSocket>, m: In) {
        if self.active.load(Ordering::Acquire) != 0 {
            let gate = lock(&self.gates).get(socket.id()).cloned();
            if let Some(g) = gate {
                let mut st = lock(&g);
                if st.held > 0 {
                    st.queued.push_back(m);
                    return;
                }
            }
        }
        self.forward(socket, m);
    }

    fn release(&self, socket: &Arc<EngineSocket>) {
        loop {
            let item = {
                // Lock order: the map, then the gate (as `hold_current`).
                let mut gates = lock(&self.gates);
                let Some(g) = gates.get(socket.id()).cloned() else {
                    return;
                };
                let mut st = lock(&g);
                if st.held > 1 {
                    // Another decision is pending: it delivers the rest.
                    st.held -= 1;
                    return;
                }
                match st.queued.pop_front() {
                    Some(i) => i,
                    None => {
                        st.held = 0;
                        gates.remove(socket.id());
                        self.active.fetch_sub(1, Ordering::AcqRel);
                        return;
                    }
                }
            };
            self.forward(socket, item);
        }
    }
}

impl EngineHandler for Gated {
    fn on_connect(&self, socket: &Arc<EngineSocket>) {
        self.inner.on_connect(socket);
    }

    fn on_message(&self, socket: &Arc<EngineSocket>, msg: Str) {
        self.deliver(socket, In::Text(msg));
    }

    fn on_binary(&self, socket: &Arc<EngineSocket>, data: Bytes) {
        self.deliver(socket, In::Bin(data));
    }

    fn on_disconnect(&self, socket: &Arc<EngineSocket>, reason: DisconnectReason) {
        if lock(&self.gates).remove(socket.id()).is_some() {
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
        self.inner.on_disconnect(socket, reason);
    }
}

/// Messages of one connection held until it is dropped (after the decision was applied).
pub(crate) struct Hold {
    gated: Weak<Gated>,
    socket: Arc<EngineSocket>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(g) = self.gated.upgrade() {
            g.release(&self.socket);
        }
    }
}

/// Start holding the messages of the connection being delivered on this thread (called
/// from the deferred middleware, which runs inside that delivery).
pub(crate) fn hold_current() -> Option<Hold> {
    let (gated, socket) = CURRENT.with(|c| c.borrow().clone())?;
    let g = gated.upgrade()?;
    if socket.is_closed() {
        return None;
    }
    let mut gates = lock(&g.gates);
    let gate = match gates.get(socket.id()) {
        Some(x) => x.clone(),
        None => {
            let x = Arc::new(Mutex::new(GateState::default()));
            gates.insert(socket.id().clone(), x.clone());
            g.active.fetch_add(1, Ordering::AcqRel);
            x
        }
    };
    lock(&gate).held += 1;
    drop(gates);
    Some(Hold { gated, socket })
}
