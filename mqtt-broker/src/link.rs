//! What the engine shares with one connection's task: the writer's few queued commands, the
//! reader's state and the write credit, in one small allocation per connection.
//!
//! A tokio `mpsc` channel and a `watch` channel did this before, at about 1.9 KiB per
//! connection (an `mpsc` channel allocates a block of 32 slots however small its bound); the
//! writer never holds more than a couple of chunks (the engine's write credit), so a locked
//! `VecDeque` and a few `Notify`s do the same in about 250 bytes.
//!
//! The write credit is counted here rather than reported: the engine hands the writer at most
//! [`WRITE_CREDIT`] chunks not yet written, and the writer tells the engine that one was
//! written (an input, so a wakeup of the engine's task) only when the engine asked for it,
//! having found no credit left. A connection that keeps up costs no wakeup per write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

/// Chunks a connection's writer holds at most (written or waiting); the engine pulls more only
/// when one is written.
pub(crate) const WRITE_CREDIT: usize = 2;

/// What the engine tells a writer.
#[derive(Debug)]
pub(crate) enum WriteCmd {
    /// Write these bytes.
    Data(Bytes),
    /// Close the connection (after what was queued before).
    Close,
}

/// What a connection's reader may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadState {
    /// Read and hand the bytes to the engine.
    Reading,
    /// Wait (back-pressure, a pending decision).
    Paused,
    /// The broker closed the connection: read and discard what the peer still sends, for at
    /// most `CLOSE_FLUSH`, so that closing the socket with unread input does not reset the
    /// connection before the peer has read the broker's DISCONNECT.
    Draining,
    /// Stop reading at once (the broker is shutting down).
    Stopped,
}

impl ReadState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Reading,
            1 => Self::Paused,
            2 => Self::Draining,
            _ => Self::Stopped,
        }
    }
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<VecDeque<WriteCmd>>,
    write_wake: Notify,
    read_state: AtomicU8,
    read_wake: Notify,
    /// Chunks handed to the writer and not yet written.
    outstanding: AtomicUsize,
    /// The engine found no credit and waits to hear that a chunk was written.
    want_written: AtomicBool,
    /// The engine dropped its end: the writer finishes what is queued and closes, a reader
    /// that is not draining ends.
    engine_gone: AtomicBool,
    /// Woken (every waiter) when the engine drops its end.
    gone_wake: Notify,
    /// The writer ended (its write failed): nothing more can be sent.
    writer_gone: AtomicBool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, VecDeque<WriteCmd>> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The engine's end.
#[derive(Debug)]
pub(crate) struct Link(Arc<Shared>);

/// The connection task's end (its reader and its writer share it).
#[derive(Debug)]
pub(crate) struct ConnEnd(Arc<Shared>);

/// A new link: the engine's end and the connection's; the reader starts `Reading`.
pub(crate) fn link() -> (Link, ConnEnd) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        write_wake: Notify::new(),
        read_state: AtomicU8::new(ReadState::Reading as u8),
        read_wake: Notify::new(),
        outstanding: AtomicUsize::new(0),
        want_written: AtomicBool::new(false),
        engine_gone: AtomicBool::new(false),
        gone_wake: Notify::new(),
        writer_gone: AtomicBool::new(false),
    });
    (Link(Arc::clone(&shared)), ConnEnd(shared))
}

impl Link {
    /// Queues `cmd` for the writer; `Err` when the writer has ended. Data takes one credit.
    pub(crate) fn send(&self, cmd: WriteCmd) -> Result<(), WriteCmd> {
        if self.0.writer_gone.load(Ordering::Acquire) {
            return Err(cmd);
        }
        if matches!(cmd, WriteCmd::Data(_)) {
            self.0.outstanding.fetch_add(1, Ordering::SeqCst);
        }
        self.0.queue().push_back(cmd);
        self.0.write_wake.notify_one();
        Ok(())
    }

    /// How many more chunks the writer may be handed now.
    pub(crate) fn credit(&self) -> usize {
        WRITE_CREDIT.saturating_sub(self.0.outstanding.load(Ordering::SeqCst))
    }

    /// Asks the writer to report (with `Input::Written`) the next chunk it writes, and returns
    /// the credit there is now: when it is not 0, a chunk was written meanwhile and the report
    /// may not come.
    pub(crate) fn want_written(&self) -> usize {
        self.0.want_written.store(true, Ordering::SeqCst);
        self.credit()
    }

    /// Tells the reader what it may do.
    pub(crate) fn set_read_state(&self, state: ReadState) {
        self.0.read_state.store(state as u8, Ordering::Release);
        self.0.read_wake.notify_one();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.0.engine_gone.store(true, Ordering::Release);
        self.0.write_wake.notify_one();
        self.0.read_wake.notify_one();
        self.0.gone_wake.notify_waiters();
    }
}

impl ConnEnd {
    /// The next command for the writer; `None` once the engine has dropped its end and the
    /// queue is empty.
    pub(crate) async fn recv(&self) -> Option<WriteCmd> {
        loop {
            if let Some(cmd) = self.0.queue().pop_front() {
                return Some(cmd);
            }
            if self.0.engine_gone.load(Ordering::Acquire) {
                return None;
            }
            // A notification given between the check and here is kept (a permit).
            self.0.write_wake.notified().await;
        }
    }

    /// A chunk was written: its credit returns. Returns whether the engine asked to hear it.
    pub(crate) fn written(&self) -> bool {
        self.0.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.0.want_written.swap(false, Ordering::SeqCst)
    }

    /// The writer has ended (its write failed): the engine's sends fail from now on.
    pub(crate) fn writer_ended(&self) {
        self.0.writer_gone.store(true, Ordering::Release);
    }

    /// The reader's current state.
    pub(crate) fn state(&self) -> ReadState {
        ReadState::from_u8(self.0.read_state.load(Ordering::Acquire))
    }

    /// Waits while the state is `Paused`; `None` when the engine has dropped its end with the
    /// reader paused or reading (nobody takes what it would read). A state set before the
    /// engine dropped its end (`Draining`, as a close does; `Stopped`) is still returned, as a
    /// `watch` channel's last value is.
    pub(crate) async fn wait_unpaused(&self) -> Option<ReadState> {
        loop {
            let state = self.state();
            let gone = self.0.engine_gone.load(Ordering::Acquire);
            if matches!(state, ReadState::Paused | ReadState::Reading) && gone {
                return None;
            }
            if state != ReadState::Paused {
                return Some(state);
            }
            self.0.read_wake.notified().await;
        }
    }

    /// Completes when the reader's state may have changed (a read in progress races with it,
    /// so that a pause or a stop is seen without waiting for the peer to send).
    pub(crate) async fn state_changed(&self) {
        self.0.read_wake.notified().await;
    }

    /// Completes once the engine has dropped its end (the connection is closing, from either
    /// side).
    pub(crate) async fn engine_gone(&self) {
        loop {
            // Registered before the check: a `notify_waiters` between the two is not missed.
            let notified = self.0.gone_wake.notified();
            if self.0.engine_gone.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnEnd {
    fn drop(&mut self) {
        self.0.writer_gone.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_arrive_in_order_and_end_after_the_engine_leaves() {
        let (link, end) = link();
        link.send(WriteCmd::Data(Bytes::from_static(b"a"))).unwrap();
        link.send(WriteCmd::Close).unwrap();
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(cmd) = end.recv().await {
                got.push(cmd);
            }
            got
        });
        tokio::task::yield_now().await;
        link.send(WriteCmd::Data(Bytes::from_static(b"b"))).unwrap();
        drop(link);
        let got = task.await.unwrap();
        assert!(
            matches!(&got[..], [WriteCmd::Data(a), WriteCmd::Close, WriteCmd::Data(b)]
            if &a[..] == b"a" && &b[..] == b"b")
        );
    }

    #[tokio::test]
    async fn a_send_after_the_writer_ended_fails() {
        let (link, end) = link();
        end.writer_ended();
        assert!(link.send(WriteCmd::Close).is_err());
        drop(end);
        assert!(link.send(WriteCmd::Close).is_err());
    }

    #[test]
    fn credit_is_taken_by_data_and_returned_when_written() {
        let (link, end) = link();
        assert_eq!(link.credit(), WRITE_CREDIT);
        link.send(WriteCmd::Data(Bytes::from_static(b"a"))).unwrap();
        link.send(WriteCmd::Close).unwrap();
        assert_eq!(link.credit(), WRITE_CREDIT - 1, "only data takes credit");
        link.send(WriteCmd::Data(Bytes::from_static(b"b"))).unwrap();
        assert_eq!(link.credit(), 0);
        // Not asked: the writer reports nothing.
        assert!(!end.written());
        assert_eq!(link.credit(), 1);
        link.send(WriteCmd::Data(Bytes::from_static(b"c"))).unwrap();
        // Asked with no credit left: the next write is reported, once.
        assert_eq!(link.want_written(), 0);
        assert!(end.written());
        assert!(!end.written());
        assert_eq!(link.credit(), WRITE_CREDIT);
    }

    #[tokio::test]
    async fn a_paused_reader_waits_until_resumed_or_dropped() {
        let (link, end) = link();
        assert_eq!(end.wait_unpaused().await, Some(ReadState::Reading));
        link.set_read_state(ReadState::Paused);
        let task = tokio::spawn(async move {
            let first = end.wait_unpaused().await;
            (first, end)
        });
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        link.set_read_state(ReadState::Draining);
        let (first, end) = task.await.unwrap();
        assert_eq!(first, Some(ReadState::Draining));
        link.set_read_state(ReadState::Paused);
        drop(link);
        assert_eq!(end.wait_unpaused().await, None);
    }

    /// A close sets `Draining` and drops the engine's end at once: a paused reader still
    /// drains.
    #[tokio::test]
    async fn a_reader_paused_when_the_connection_closes_drains() {
        let (link, end) = link();
        link.set_read_state(ReadState::Paused);
        link.set_read_state(ReadState::Draining);
        drop(link);
        assert_eq!(end.wait_unpaused().await, Some(ReadState::Draining));
    }

    #[tokio::test]
    async fn a_state_change_and_the_engine_leaving_are_signalled() {
        let (link, end) = link();
        let end = Arc::new(end);
        let waiting = {
            let end = Arc::clone(&end);
            tokio::spawn(async move { end.state_changed().await })
        };
        let gone = {
            let end = Arc::clone(&end);
            tokio::spawn(async move { end.engine_gone().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished() && !gone.is_finished());
        link.set_read_state(ReadState::Stopped);
        waiting.await.unwrap();
        assert_eq!(end.state(), ReadState::Stopped);
        assert!(!gone.is_finished());
        drop(link);
        gone.await.unwrap();
        // And once gone, at once.
        end.engine_gone().await;
    }
}
