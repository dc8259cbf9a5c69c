//! What the engine shares with one connection's task: the writer's few queued commands, the
//! reader's state and the write credit, in one small allocation per connection, and the
//! task's waker: every change the engine makes wakes the task.
//!
//! A tokio `mpsc` channel and a `watch` channel did this before, at about 1.9 KiB per
//! connection (an `mpsc` channel allocates a block of 32 slots however small its bound); the
//! writer never holds more than a couple of chunks (the engine's write credit), so a locked
//! `VecDeque` and one waker do the same in under 200 bytes.
//!
//! The write credit is counted here rather than reported: the engine hands the writer at most
//! [`WRITE_CREDIT`] chunks not yet written, and the writer tells the engine that one was
//! written (an input, so a wakeup of the engine's task) only when the engine asked for it,
//! having found no credit left. A connection that keeps up costs no wakeup per write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;

/// Chunks a connection's writer holds at most (written or waiting); the engine pulls more only
/// when one is written.
pub(crate) const WRITE_CREDIT: usize = 2;

/// The largest chunk that queued chunks are merged into (the engine's own chunk size).
const MERGE_LIMIT: usize = 64 * 1024;

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
    /// The connection's task, woken by every change the engine makes.
    task: AtomicWaker,
    read_state: AtomicU8,
    /// Chunks handed to the writer and not yet written.
    outstanding: AtomicUsize,
    /// The engine found no credit and waits to hear that a chunk was written.
    want_written: AtomicBool,
    /// The engine dropped its end: the writer finishes what is queued and closes; a reader
    /// that is not draining ends.
    engine_gone: AtomicBool,
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

/// The connection task's end.
#[derive(Debug)]
pub(crate) struct ConnEnd(Arc<Shared>);

/// A new link: the engine's end and the connection's; the reader starts `Reading`.
pub(crate) fn link() -> (Link, ConnEnd) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        task: AtomicWaker::new(),
        read_state: AtomicU8::new(ReadState::Reading as u8),
        outstanding: AtomicUsize::new(0),
        want_written: AtomicBool::new(false),
        engine_gone: AtomicBool::new(false),
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
        let mut queue = self.0.queue();
        if let WriteCmd::Data(data) = &cmd {
            // Appended to a chunk the writer has not taken yet (the engine pulled twice before
            // the task ran): one write, one credit, instead of two. Copying a few hundred
            // bytes costs less than a syscall (and on loopback, the receiver's work with it).
            if let Some(WriteCmd::Data(last)) = queue.back_mut()
                && last.len() + data.len() <= MERGE_LIMIT
            {
                let mut merged = BytesMut::with_capacity(last.len() + data.len());
                merged.extend_from_slice(last);
                merged.extend_from_slice(data);
                *last = merged.freeze();
                drop(queue);
                self.0.task.wake();
                return Ok(());
            }
            self.0.outstanding.fetch_add(1, Ordering::SeqCst);
        }
        // One slot at a time: it holds a few commands at most, and a deque's first growth
        // makes room for four (128 bytes an idle connection would keep).
        if queue.len() == queue.capacity() {
            queue.reserve_exact(1);
        }
        queue.push_back(cmd);
        drop(queue);
        self.0.task.wake();
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
        self.0.task.wake();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.0.engine_gone.store(true, Ordering::Release);
        self.0.task.wake();
    }
}

impl ConnEnd {
    /// Wakes `waker` on the engine's next change (its task's waker, at every poll).
    pub(crate) fn register(&self, waker: &Waker) {
        self.0.task.register(waker);
    }

    /// The next command for the writer.
    pub(crate) fn pop(&self) -> Option<WriteCmd> {
        self.0.queue().pop_front()
    }

    /// Whether the engine has dropped its end (the connection is closing, from either side).
    pub(crate) fn engine_gone(&self) -> bool {
        self.0.engine_gone.load(Ordering::Acquire)
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
}

impl Drop for ConnEnd {
    fn drop(&mut self) {
        self.0.writer_gone.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    /// Counts its wakeups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn registered(end: &ConnEnd) -> Arc<Counter> {
        let counter = Arc::new(Counter::default());
        end.register(&Waker::from(Arc::clone(&counter)));
        counter
    }

    #[test]
    fn commands_arrive_in_order_and_each_wakes_the_task() {
        let (link, end) = link();
        let wakes = registered(&end);
        link.send(WriteCmd::Data(Bytes::from_static(b"a"))).unwrap();
        end.register(&Waker::from(Arc::clone(&wakes)));
        link.send(WriteCmd::Close).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        assert!(matches!(end.pop(), Some(WriteCmd::Data(a)) if &a[..] == b"a"));
        assert!(matches!(end.pop(), Some(WriteCmd::Close)));
        assert!(end.pop().is_none());
        assert!(!end.engine_gone());
        end.register(&Waker::from(Arc::clone(&wakes)));
        drop(link);
        assert!(end.engine_gone());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_send_after_the_writer_ended_fails() {
        let (engine, end) = link();
        end.writer_ended();
        assert!(engine.send(WriteCmd::Close).is_err());
        let (engine, end) = link();
        drop(end);
        assert!(engine.send(WriteCmd::Close).is_err());
    }

    #[test]
    fn credit_is_taken_by_data_and_returned_when_written() {
        let (link, end) = link();
        assert_eq!(link.credit(), WRITE_CREDIT);
        link.send(WriteCmd::Data(Bytes::from_static(b"a"))).unwrap();
        link.send(WriteCmd::Close).unwrap();
        assert_eq!(link.credit(), WRITE_CREDIT - 1, "only data takes credit");
        // (Not merged into `a`: a `Close` is between them.)
        link.send(WriteCmd::Data(Bytes::from_static(b"b"))).unwrap();
        assert_eq!(link.credit(), 0);
        // The writer takes `a` and writes it; not asked, it reports nothing.
        assert!(matches!(end.pop(), Some(WriteCmd::Data(_))));
        assert!(!end.written());
        assert_eq!(link.credit(), 1);
        assert!(matches!(end.pop(), Some(WriteCmd::Close)));
        assert!(matches!(end.pop(), Some(WriteCmd::Data(_))));
        link.send(WriteCmd::Data(Bytes::from_static(b"c"))).unwrap();
        // Asked with no credit left: the next write is reported, once.
        assert_eq!(link.want_written(), 0);
        assert!(end.written());
        assert!(!end.written());
        assert_eq!(link.credit(), WRITE_CREDIT);
    }

    #[test]
    fn data_the_writer_has_not_taken_is_merged_up_to_the_limit() {
        let (link, end) = link();
        link.send(WriteCmd::Data(Bytes::from_static(b"ab")))
            .unwrap();
        link.send(WriteCmd::Data(Bytes::from_static(b"cd")))
            .unwrap();
        assert_eq!(link.credit(), WRITE_CREDIT - 1, "one chunk, one credit");
        let big = Bytes::from(vec![7u8; MERGE_LIMIT - 4]);
        link.send(WriteCmd::Data(big.clone())).unwrap();
        assert_eq!(link.credit(), WRITE_CREDIT - 1, "exactly the limit");
        link.send(WriteCmd::Data(Bytes::from_static(b"e"))).unwrap();
        assert_eq!(link.credit(), 0, "past the limit: a chunk of its own");
        let Some(WriteCmd::Data(first)) = end.pop() else {
            panic!("expected data");
        };
        assert_eq!(first.len(), MERGE_LIMIT);
        assert_eq!(&first[..4], b"abcd");
        assert_eq!(&first[4..], &big[..]);
        assert!(matches!(end.pop(), Some(WriteCmd::Data(e)) if &e[..] == b"e"));
        assert!(end.pop().is_none());
    }

    #[test]
    fn read_states_are_seen_and_wake_the_task() {
        let (link, end) = link();
        let wakes = registered(&end);
        assert_eq!(end.state(), ReadState::Reading);
        for state in [
            ReadState::Paused,
            ReadState::Reading,
            ReadState::Draining,
            ReadState::Stopped,
        ] {
            end.register(&Waker::from(Arc::clone(&wakes)));
            link.set_read_state(state);
            assert_eq!(end.state(), state);
        }
        assert_eq!(wakes.0.load(Ordering::SeqCst), 4);
    }
}
