//! What the engine shares with one connection's reader and writer tasks: the writer's few
//! queued commands and the reader's state, in one small allocation per connection.
//!
//! A tokio `mpsc` channel and a `watch` channel did this before, at about 1.9 KiB per
//! connection (an `mpsc` channel allocates a block of 32 slots however small its bound); the
//! writer never holds more than a couple of chunks (the engine's write credit), so a locked
//! `VecDeque` and two `Notify`s do the same in about 200 bytes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

/// What the engine tells a writer task.
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
}

impl ReadState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Reading,
            1 => Self::Paused,
            _ => Self::Draining,
        }
    }
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<VecDeque<WriteCmd>>,
    write_wake: Notify,
    read_state: AtomicU8,
    read_wake: Notify,
    /// The engine dropped its end: the writer finishes what is queued and closes, a paused
    /// reader ends.
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

/// The writer task's end.
#[derive(Debug)]
pub(crate) struct WriterEnd(Arc<Shared>);

/// The reader task's end.
#[derive(Debug)]
pub(crate) struct ReaderEnd(Arc<Shared>);

/// A new link: the engine's end and the two tasks' ends; the reader starts `Reading`.
pub(crate) fn link() -> (Link, ReaderEnd, WriterEnd) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        write_wake: Notify::new(),
        read_state: AtomicU8::new(ReadState::Reading as u8),
        read_wake: Notify::new(),
        engine_gone: AtomicBool::new(false),
        writer_gone: AtomicBool::new(false),
    });
    (
        Link(Arc::clone(&shared)),
        ReaderEnd(Arc::clone(&shared)),
        WriterEnd(shared),
    )
}

impl Link {
    /// Queues `cmd` for the writer; `Err` when the writer has ended.
    pub(crate) fn send(&self, cmd: WriteCmd) -> Result<(), WriteCmd> {
        if self.0.writer_gone.load(Ordering::Acquire) {
            return Err(cmd);
        }
        self.0.queue().push_back(cmd);
        self.0.write_wake.notify_one();
        Ok(())
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
    }
}

impl WriterEnd {
    /// The next command; `None` once the engine has dropped its end and the queue is empty.
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
}

impl Drop for WriterEnd {
    fn drop(&mut self) {
        self.0.writer_gone.store(true, Ordering::Release);
    }
}

impl ReaderEnd {
    /// The current state.
    pub(crate) fn state(&self) -> ReadState {
        ReadState::from_u8(self.0.read_state.load(Ordering::Acquire))
    }

    /// Waits while the state is `Paused`; `None` when the engine has dropped its end with the
    /// reader paused. A state set before the engine dropped its end (`Draining`, as a close
    /// does) is still returned, as a `watch` channel's last value is.
    pub(crate) async fn wait_unpaused(&self) -> Option<ReadState> {
        loop {
            let state = self.state();
            if state != ReadState::Paused {
                return Some(state);
            }
            if self.0.engine_gone.load(Ordering::Acquire) {
                return None;
            }
            self.0.read_wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_arrive_in_order_and_end_after_the_engine_leaves() {
        let (link, _reader, writer) = link();
        link.send(WriteCmd::Data(Bytes::from_static(b"a"))).unwrap();
        link.send(WriteCmd::Close).unwrap();
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(cmd) = writer.recv().await {
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
        let (link, _reader, writer) = link();
        drop(writer);
        assert!(link.send(WriteCmd::Close).is_err());
    }

    #[tokio::test]
    async fn a_paused_reader_waits_until_resumed_or_dropped() {
        let (link, reader, _writer) = link();
        assert_eq!(reader.wait_unpaused().await, Some(ReadState::Reading));
        link.set_read_state(ReadState::Paused);
        let task = tokio::spawn(async move {
            let first = reader.wait_unpaused().await;
            (first, reader)
        });
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        link.set_read_state(ReadState::Draining);
        let (first, reader) = task.await.unwrap();
        assert_eq!(first, Some(ReadState::Draining));
        link.set_read_state(ReadState::Paused);
        drop(link);
        assert_eq!(reader.wait_unpaused().await, None);
    }

    /// A close sets `Draining` and drops the engine's end at once: a paused reader still
    /// drains.
    #[tokio::test]
    async fn a_reader_paused_when_the_connection_closes_drains() {
        let (link, reader, _writer) = link();
        link.set_read_state(ReadState::Paused);
        link.set_read_state(ReadState::Draining);
        drop(link);
        assert_eq!(reader.wait_unpaused().await, Some(ReadState::Draining));
    }
}
