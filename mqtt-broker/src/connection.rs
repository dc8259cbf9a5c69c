//! One connection's task: a hand-written future that reads the socket into the engine and
//! writes what the engine queued on its [`Link`](crate::link::Link), on the one stream (not
//! split in two halves), woken by the socket and by the engine through one waker.
//!
//! Written by hand rather than as `async` code because it is the broker's per-connection
//! memory: an `async` reader and writer run side by side (with `select!`) made a future of
//! 768 bytes, with a `Notify` registration per read and a lock per poll of each split half;
//! this one is the struct below, 152 bytes (`benches/README.md`, "One task per connection").
//!
//! What it does, each time it is polled, until nothing moves:
//! - hands the engine what is due (read bytes, `Closed`, `Written` when the engine asked),
//!   waiting when the engine's input channel is full (a boxed `send`, made only then): while
//!   a hand-over waits, nothing more is read (the socket back-pressures the client);
//! - writes the chunk in hand, then the next command (`Data`, or `Close`: shut the write side);
//! - reads, as the link's state says: `Reading` (into a buffer sized on demand), `Paused`
//!   (nothing), `Draining` (read and discard until the peer closes), `Stopped` (no more).
//!
//! It ends when both sides are done, when a write fails (the engine is told `Closed`), when the
//! engine's input channel is gone, or [`CLOSE_FLUSH`] after the engine dropped its end of the
//! link (a client that neither reads nor closes is not waited for).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use mqtt_session::broker::ConnectionId;
use tokio::io::ReadBuf;

use crate::engine::Input;
use crate::inputs::{InputTx, TrySendError};
use crate::link::{ConnEnd, ReadState, WriteCmd};
use crate::transport::Stream;

/// How long a closing connection may take to write its last bytes and drain its input.
pub(crate) const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// The most bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// The read buffer of a connection that sends little (an idle one holds this much).
const READ_MIN: usize = 256;
/// Consecutive reads under a quarter of the buffer after which it is halved.
const SHRINK_AFTER: u32 = 16;

/// A hand-over to the engine waiting for room in its channel; `Err` when the engine is gone.
type SendWait = Pin<Box<dyn Future<Output = Result<(), ()>> + Send>>;

/// Whether a step moved anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Moved,
    Blocked,
}

/// One connection's task (see the module documentation).
pub(crate) struct Connection {
    id: ConnectionId,
    stream: Stream,
    end: ConnEnd,
    inputs: InputTx,
    /// A hand-over waiting for room in the engine's channel.
    sending: Option<SendWait>,
    /// The engine asked to hear that a chunk was written, and has not been told yet.
    written_due: bool,
    /// The connection ended (the peer closed, or a write failed), and the engine has not been
    /// told yet.
    closed_due: bool,
    /// Read so far and not handed over; its capacity is the next read's room (none while a
    /// connection that sends little waits).
    buf: BytesMut,
    /// The read buffer's size: doubled up to READ_CHUNK when a read fills it, halved (down to
    /// READ_MIN) after a run of small reads.
    want: usize,
    /// Consecutive reads that used under a quarter of the buffer.
    small_reads: u32,
    read_done: bool,
    /// What is left of the chunk being written.
    writing: Option<Bytes>,
    /// Written since the last flush.
    unflushed: bool,
    /// `Close` (or the engine's end dropped with nothing queued): shut the write side.
    shutting_down: bool,
    write_done: bool,
    /// Runs from when the engine dropped its end.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Connection {
    /// The task of connection `id` over `stream`.
    pub(crate) fn new(id: ConnectionId, stream: Stream, end: ConnEnd, inputs: InputTx) -> Self {
        Self {
            id,
            stream,
            end,
            inputs,
            sending: None,
            written_due: false,
            closed_due: false,
            buf: BytesMut::new(),
            want: READ_MIN,
            small_reads: 0,
            read_done: false,
            writing: None,
            unflushed: false,
            shutting_down: false,
            write_done: false,
            deadline: None,
        }
    }

    /// Offers `input` to the engine: handed over at once, or waiting in `sending` while the
    /// channel is full (which must then be empty). `Err` when the engine is gone.
    fn offer(&mut self, input: Input) -> Result<(), ()> {
        match self.inputs.try_send(input) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(input)) => {
                let inputs = self.inputs.clone();
                self.sending = Some(Box::pin(
                    async move { inputs.send(input).await.map_err(drop) },
                ));
                Ok(())
            }
            Err(TrySendError::Closed) => Err(()),
        }
    }

    /// Drives the hand-overs: the one waiting, then what is due. `Err` when the engine is
    /// gone.
    fn hand_over(&mut self, cx: &mut Context<'_>) -> Result<Step, ()> {
        let mut step = Step::Blocked;
        loop {
            if self.end.engine_gone() {
                // The engine has forgotten the connection: nothing more is handed over (it
                // would wait on a channel nobody reads when the broker is shutting down).
                self.sending = None;
                self.written_due = false;
                self.closed_due = false;
                return Ok(step);
            }
            if let Some(sending) = self.sending.as_mut() {
                match sending.as_mut().poll(cx) {
                    Poll::Ready(Ok(())) => {
                        self.sending = None;
                        step = Step::Moved;
                    }
                    Poll::Ready(Err(())) => return Err(()),
                    Poll::Pending => return Ok(step),
                }
            }
            // A `Written` and a `Closed` wait for what was read before them.
            if self.written_due {
                self.written_due = false;
                self.offer(Input::Written(self.id))?;
            } else if self.closed_due {
                self.closed_due = false;
                self.offer(Input::Closed(self.id))?;
            } else {
                return Ok(step);
            }
            step = Step::Moved;
        }
    }

    /// Writes what the engine queued. `Err` when a write failed (the connection is over).
    fn write(&mut self, cx: &mut Context<'_>) -> Result<Step, ()> {
        let mut step = Step::Blocked;
        while !self.write_done {
            if let Some(chunk) = self.writing.as_mut() {
                match Pin::new(&mut *self.stream).poll_write(cx, chunk) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        chunk.advance(n);
                        self.unflushed = true;
                        if chunk.is_empty() {
                            self.writing = None;
                            if self.end.written() {
                                self.written_due = true;
                            }
                        }
                    }
                    Poll::Ready(result) => {
                        let e = result
                            .err()
                            .map_or_else(|| "wrote nothing".to_owned(), |e| e.to_string());
                        tracing::debug!(conn = self.id.0, "write failed: {e}");
                        return Err(());
                    }
                    Poll::Pending => return Ok(step),
                }
                step = Step::Moved;
                continue;
            }
            if self.shutting_down {
                // Sends what is buffered, then FIN.
                match Pin::new(&mut *self.stream).poll_shutdown(cx) {
                    Poll::Ready(_) => self.write_done = true,
                    Poll::Pending => return Ok(step),
                }
                step = Step::Moved;
                continue;
            }
            // Read before the queue: the engine queues its last commands (a farewell, `Close`)
            // and then drops its end, so a queue seen empty after `engine_gone` is final.
            let gone = self.end.engine_gone();
            match self.end.pop() {
                // (An empty chunk would read as a failed write.)
                Some(WriteCmd::Data(chunk)) if chunk.is_empty() => {}
                Some(WriteCmd::Data(chunk)) => self.writing = Some(chunk),
                Some(WriteCmd::Close) => self.shutting_down = true,
                None if gone => self.shutting_down = true,
                None => {
                    // Nothing more to write for now: what a TLS or WebSocket stream holds
                    // goes out.
                    if self.unflushed {
                        match Pin::new(&mut *self.stream).poll_flush(cx) {
                            Poll::Ready(Ok(())) => self.unflushed = false,
                            Poll::Ready(Err(e)) => {
                                tracing::debug!(conn = self.id.0, "flush failed: {e}");
                                return Err(());
                            }
                            Poll::Pending => {}
                        }
                    }
                    return Ok(step);
                }
            }
            step = Step::Moved;
        }
        Ok(step)
    }

    /// Reads as the link's state says (only while no hand-over waits).
    fn read(&mut self, cx: &mut Context<'_>) -> Result<Step, ()> {
        if self.read_done || self.sending.is_some() {
            return Ok(Step::Blocked);
        }
        // Read before the state: the engine sets `Draining` and then drops its end, so a state
        // read after `engine_gone` is final.
        let gone = self.end.engine_gone();
        match self.end.state() {
            ReadState::Stopped => {
                self.read_done = true;
                Ok(Step::Moved)
            }
            // Nobody takes what it would read.
            ReadState::Reading | ReadState::Paused if gone => {
                self.read_done = true;
                Ok(Step::Moved)
            }
            // Woken when the engine resumes it.
            ReadState::Paused => Ok(Step::Blocked),
            ReadState::Draining => Ok(self.drain(cx)),
            ReadState::Reading => self.read_some(cx),
        }
    }

    /// Reads once and hands the bytes over.
    fn read_some(&mut self, cx: &mut Context<'_>) -> Result<Step, ()> {
        if self.buf.capacity() < self.want {
            // Takes the whole allocation back when the engine has dropped what it was handed
            // (the usual case under load), or allocates `want` bytes.
            self.buf.reserve(self.want);
        }
        let room = self.buf.capacity() - self.buf.len();
        match tokio_util::io::poll_read_buf(Pin::new(&mut *self.stream), cx, &mut self.buf) {
            Poll::Pending => {
                // A connection that sends little holds no buffer while it waits (an idle one
                // costs 256 bytes less); a busy one keeps its larger buffer.
                if self.want == READ_MIN && self.buf.is_empty() {
                    self.buf = BytesMut::new();
                }
                Ok(Step::Blocked)
            }
            Poll::Ready(Ok(0)) => {
                self.read_done = true;
                self.closed_due = true;
                Ok(Step::Moved)
            }
            Poll::Ready(Ok(n)) => {
                if n == room {
                    self.want = (self.want * 2).min(READ_CHUNK);
                    self.small_reads = 0;
                } else if n < self.want / 4 {
                    // Shrinks only after a run of small reads: a busy connection whose reads
                    // vary keeps its buffer, one that went quiet gives it back.
                    self.small_reads += 1;
                    if self.small_reads >= SHRINK_AFTER {
                        self.want = (self.want / 2).max(READ_MIN);
                        self.small_reads = 0;
                    }
                } else {
                    self.small_reads = 0;
                }
                let data = self.buf.split().freeze();
                self.offer(Input::Bytes(self.id, data))?;
                Ok(Step::Moved)
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(conn = self.id.0, "read failed: {e}");
                self.read_done = true;
                self.closed_due = true;
                Ok(Step::Moved)
            }
        }
    }

    /// Reads and discards until the peer closes or the read fails.
    fn drain(&mut self, cx: &mut Context<'_>) -> Step {
        // On the stack of the poll, not in the task.
        let mut scratch = [0u8; 2048];
        let mut step = Step::Blocked;
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => step = Step::Moved,
                Poll::Ready(_) => {
                    self.read_done = true;
                    return Step::Moved;
                }
                Poll::Pending => return step,
            }
        }
    }
}

impl Future for Connection {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.end.register(cx.waker());
        if this.end.engine_gone() {
            let deadline = this
                .deadline
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(CLOSE_FLUSH)));
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        loop {
            let Ok(handed) = this.hand_over(cx) else {
                // The engine is gone (shutting down).
                return Poll::Ready(());
            };
            let wrote = match this.write(cx) {
                Ok(step) => step,
                Err(()) => {
                    // The engine's sends fail from now on; it is told, and nothing more is
                    // read.
                    this.end.writer_ended();
                    this.write_done = true;
                    if !this.read_done {
                        this.read_done = true;
                        this.closed_due = true;
                    }
                    Step::Moved
                }
            };
            let Ok(read) = this.read(cx) else {
                return Poll::Ready(());
            };
            let idle = this.sending.is_none() && !this.written_due && !this.closed_due;
            if this.read_done && this.write_done && idle {
                return Poll::Ready(());
            }
            if handed == Step::Blocked && wrote == Step::Blocked && read == Step::Blocked {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::inputs::{self, INPUT_BYTES, InputRx};
    use crate::link::{Link, WRITE_CREDIT, link};

    const ID: ConnectionId = ConnectionId(7);

    /// A connection task over one end of a duplex pipe; the test holds the other end (the
    /// peer), the engine's end of the link and the engine's inputs.
    ///
    /// `room`: the inputs' budget in bytes (1: one input at a time).
    fn start(room: usize) -> (DuplexStream, Link, InputRx, tokio::task::JoinHandle<()>) {
        let (ours, peer) = tokio::io::duplex(64 * 1024);
        let (engine, end) = link();
        let (tx, rx) = inputs::channel(room);
        let task = tokio::spawn(Connection::new(ID, Box::new(ours), end, tx));
        (peer, engine, rx, task)
    }

    async fn next_bytes(rx: &mut InputRx) -> Vec<u8> {
        match rx.recv().await {
            Some(Input::Bytes(id, data)) if id == ID => data.to_vec(),
            other => panic!("expected bytes, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn reads_go_to_the_engine_and_the_peer_closing_is_told() {
        let (mut peer, engine, mut rx, task) = start(INPUT_BYTES);
        peer.write_all(b"hello").await.unwrap();
        assert_eq!(next_bytes(&mut rx).await, b"hello");
        peer.shutdown().await.unwrap();
        assert!(matches!(rx.recv().await, Some(Input::Closed(ID))));
        // The engine forgets it: the task shuts its side and ends.
        drop(engine);
        task.await.unwrap();
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn queued_data_is_written_then_close_shuts_the_write_side() {
        let (mut peer, engine, mut rx, task) = start(INPUT_BYTES);
        engine
            .send(WriteCmd::Data(Bytes::from_static(b"ab")))
            .unwrap();
        engine
            .send(WriteCmd::Data(Bytes::from_static(b"cd")))
            .unwrap();
        engine.send(WriteCmd::Close).unwrap();
        engine.set_read_state(ReadState::Draining);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abcd");
        // Credit came back without a `Written` (the engine did not ask).
        assert_eq!(engine.credit(), WRITE_CREDIT);
        // Draining: what the peer still sends is discarded; its close ends the task.
        peer.write_all(b"ignored").await.unwrap();
        drop(peer);
        drop(engine);
        task.await.unwrap();
        assert!(
            rx.try_recv().is_none(),
            "nothing handed over while draining"
        );
    }

    #[tokio::test]
    async fn written_is_reported_only_when_the_engine_asked() {
        let (mut peer, engine, mut rx, _task) = start(INPUT_BYTES);
        // Two chunks too large to be merged: all the credit.
        let (one, two) = (vec![1u8; 40 * 1024], vec![2u8; 40 * 1024]);
        engine
            .send(WriteCmd::Data(Bytes::from(one.clone())))
            .unwrap();
        engine
            .send(WriteCmd::Data(Bytes::from(two.clone())))
            .unwrap();
        assert_eq!(engine.want_written(), 0);
        let mut got = vec![0u8; 80 * 1024];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [one, two].concat());
        assert!(matches!(rx.recv().await, Some(Input::Written(ID))));
        assert!(rx.try_recv().is_none(), "one report for one request");
    }

    #[tokio::test]
    async fn a_paused_connection_is_not_read_until_resumed() {
        let (mut peer, engine, mut rx, _task) = start(INPUT_BYTES);
        engine.set_read_state(ReadState::Paused);
        tokio::task::yield_now().await;
        peer.write_all(b"later").await.unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(rx.try_recv().is_none(), "read while paused");
        engine.set_read_state(ReadState::Reading);
        assert_eq!(next_bytes(&mut rx).await, b"later");
    }

    #[tokio::test]
    async fn a_full_engine_channel_stops_reading_and_loses_nothing() {
        let (mut peer, _engine, mut rx, _task) = start(1);
        let mut sent = Vec::new();
        for i in 0..50u8 {
            let chunk = [i; 100];
            peer.write_all(&chunk).await.unwrap();
            sent.extend_from_slice(&chunk);
            tokio::task::yield_now().await;
        }
        let mut got = Vec::new();
        while got.len() < sent.len() {
            got.extend(next_bytes(&mut rx).await);
        }
        assert_eq!(got, sent);
    }

    #[tokio::test]
    async fn a_failed_write_tells_the_engine_and_ends_the_task() {
        let (peer, engine, mut rx, task) = start(INPUT_BYTES);
        drop(peer);
        engine
            .send(WriteCmd::Data(Bytes::from_static(b"x")))
            .unwrap();
        assert!(matches!(rx.recv().await, Some(Input::Closed(ID))));
        task.await.unwrap();
        assert!(engine.send(WriteCmd::Close).is_err(), "the writer is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_neither_reads_nor_closes_is_dropped_after_the_close_deadline() {
        let (peer, engine, _rx, task) = start(INPUT_BYTES);
        engine.set_read_state(ReadState::Draining);
        // More than the pipe holds: the write cannot finish.
        engine
            .send(WriteCmd::Data(Bytes::from(vec![0u8; 256 * 1024])))
            .unwrap();
        engine.send(WriteCmd::Close).unwrap();
        drop(engine);
        tokio::time::sleep(CLOSE_FLUSH - Duration::from_millis(100)).await;
        assert!(!task.is_finished());
        tokio::time::sleep(Duration::from_millis(200)).await;
        tokio::task::yield_now().await;
        assert!(task.is_finished());
        drop(peer);
    }

    /// The broker's close: the farewell and `Close` are queued, the reader told to drain, and
    /// the link dropped, all at once; the farewell is written, and a hand-over stuck on a full
    /// channel nobody reads (the broker shutting down) does not keep the task.
    #[tokio::test]
    async fn a_close_writes_the_farewell_even_with_the_engine_channel_full() {
        let (mut peer, engine, rx, task) = start(1);
        // Fill the channel: the next read waits in a hand-over.
        peer.write_all(b"one").await.unwrap();
        tokio::task::yield_now().await;
        peer.write_all(b"two").await.unwrap();
        tokio::task::yield_now().await;
        engine.set_read_state(ReadState::Draining);
        engine
            .send(WriteCmd::Data(Bytes::from_static(b"bye")))
            .unwrap();
        engine.send(WriteCmd::Close).unwrap();
        drop(engine);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
        drop(peer);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the task ends when the peer closes, not at the deadline")
            .unwrap();
        drop(rx);
    }

    #[tokio::test]
    async fn stopped_ends_reading_at_once() {
        let (_peer, engine, mut rx, task) = start(INPUT_BYTES);
        engine.set_read_state(ReadState::Stopped);
        engine.send(WriteCmd::Close).unwrap();
        drop(engine);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
        assert!(rx.try_recv().is_none());
    }
}
