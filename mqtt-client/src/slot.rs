//! The state one publication shares between the caller's [`Delivery`](crate::Delivery) and
//! the connection task: one allocation for both of its stages (stored, acknowledged), where two
//! oneshot channels would take two.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use mqtt_session::codec::{PacketId, ReasonCode};

use crate::Error;

/// What the task has said so far.
#[derive(Debug, Default)]
struct State {
    stored: Option<Result<Option<PacketId>, Error>>,
    done: Option<Result<ReasonCode, Error>>,
    waker: Option<Waker>,
}

/// The shared state.
#[derive(Debug, Default)]
pub(crate) struct Slot(Mutex<State>);

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds consistent state.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored stage: ready once the task said it (or gave up).
    pub(crate) fn poll_stored(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<PacketId>, Error>> {
        let mut state = self.lock();
        match &state.stored {
            Some(r) => Poll::Ready(r.clone()),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The acknowledged stage.
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> Poll<Result<ReasonCode, Error>> {
        let mut state = self.lock();
        match state.done.take() {
            Some(r) => {
                state.done = Some(r.clone());
                Poll::Ready(r)
            }
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The task's end: it says each stage once; dropped without having said the last, it says
/// [`Error::Closed`] for what is missing, so a caller never waits for ever.
#[derive(Debug)]
pub(crate) struct Reply(Arc<Slot>);

impl Reply {
    /// A new publication: the task's end and the caller's.
    pub(crate) fn new() -> (Self, Arc<Slot>) {
        let slot = Arc::new(Slot::default());
        (Self(Arc::clone(&slot)), slot)
    }

    /// Another handle on the same publication (for the stored stage).
    pub(crate) fn stored_handle(&self) -> StoredReply {
        StoredReply(Arc::clone(&self.0))
    }

    /// The acknowledged stage (and the stored one, if not said yet).
    pub(crate) fn done(self, result: Result<ReasonCode, Error>) {
        let mut state = self.0.lock();
        if state.stored.is_none() {
            state.stored = Some(result.clone().map(|_| None));
        }
        state.done = Some(result);
        if let Some(w) = state.waker.take() {
            w.wake();
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        let mut woke = false;
        if state.stored.is_none() {
            state.stored = Some(Err(Error::Closed));
            woke = true;
        }
        if state.done.is_none() {
            state.done = Some(Err(Error::Closed));
            woke = true;
        }
        if woke && let Some(w) = state.waker.take() {
            w.wake();
        }
    }
}

/// The stored stage's end.
#[derive(Debug)]
pub(crate) struct StoredReply(Arc<Slot>);

impl StoredReply {
    pub(crate) fn stored(self, result: Result<Option<PacketId>, Error>) {
        let mut state = self.0.lock();
        if state.stored.is_none() {
            state.stored = Some(result);
            if let Some(w) = state.waker.take() {
                w.wake();
            }
        }
    }
}

impl Drop for StoredReply {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        if state.stored.is_none() {
            state.stored = Some(Err(Error::Closed));
            if let Some(w) = state.waker.take() {
                w.wake();
            }
        }
    }
}
