//! The channel into the engine, bounded by the bytes it holds rather than by a count of
//! inputs.
//!
//! What the engine has not looked at yet should stay in the sockets (and back-pressure the
//! clients) rather than in memory, so the channel is bounded; but a bound in inputs is wrong
//! both ways. A publisher bursting large messages hands over full 16 KiB read chunks, where
//! 64 of them are already a MiB; a thousand clients trading small messages hand over a few
//! hundred bytes each, and 64 of them (what one turn of the engine could then take) made the
//! engine turn, and write, four times as often as it needed: at 64 inputs, the 1 000-connection
//! load test spent 0.59–0.73 CPU-seconds and 80 000 syscalls per 100 000 messages; with room
//! for 256 it spent 0.38–0.50 and 54 000 (`benches/README.md`, "Beside rumqttd").
//!
//! So each input takes a weight from a budget of [`INPUT_BYTES`]: the length of its bytes plus
//! [`INPUT_OVERHEAD`] (every other input weighs just that), and gives it back when the engine
//! takes it. A sender that finds no room waits (fairly, in order) for the engine to take
//! enough.

use std::sync::Arc;

use tokio::sync::{Semaphore, TryAcquireError, mpsc};

use crate::engine::Input;

/// The bytes the channel holds at most (read chunks of up to 16 KiB, and the others'
/// [`INPUT_OVERHEAD`]): as much as 64 full read chunks.
pub(crate) const INPUT_BYTES: usize = 1024 * 1024;
/// The weight of an input besides its bytes (its slot, the chunk's allocation).
pub(crate) const INPUT_OVERHEAD: usize = 64;

/// Why [`InputTx::try_send`] did not hand `input` over.
#[derive(Debug)]
pub(crate) enum TrySendError {
    /// No room now: the input is given back.
    Full(Input),
    /// The engine is gone.
    Closed,
}

/// The senders' end (connection tasks, the accept loops, authentication checks, reloads).
#[derive(Debug, Clone)]
pub(crate) struct InputTx {
    tx: mpsc::UnboundedSender<Input>,
    room: Arc<Semaphore>,
    budget: usize,
}

/// The engine's end.
#[derive(Debug)]
pub(crate) struct InputRx {
    rx: mpsc::UnboundedReceiver<Input>,
    room: Arc<Semaphore>,
    budget: usize,
}

/// A channel holding at most `budget` bytes' weight of inputs (one input at a time when a
/// single one weighs more).
pub(crate) fn channel(budget: usize) -> (InputTx, InputRx) {
    let budget = budget.clamp(1, Semaphore::MAX_PERMITS);
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(budget));
    (
        InputTx {
            tx,
            room: Arc::clone(&room),
            budget,
        },
        InputRx { rx, room, budget },
    )
}

/// What `input` takes from the budget (never more than the whole budget, nor more than a
/// semaphore hands out at once).
fn weight(input: &Input, budget: usize) -> u32 {
    let bytes = match input {
        Input::Bytes(_, data) => data.len(),
        _ => 0,
    };
    let weight = bytes.saturating_add(INPUT_OVERHEAD).min(budget);
    u32::try_from(weight).unwrap_or(u32::MAX)
}

impl InputTx {
    /// Hands `input` over now, or gives it back when there is no room.
    pub(crate) fn try_send(&self, input: Input) -> Result<(), TrySendError> {
        let weight = weight(&input, self.budget);
        match self.room.try_acquire_many(weight) {
            Ok(permit) => {
                // Given back by the engine when it takes the input.
                permit.forget();
                self.tx.send(input).map_err(|_| TrySendError::Closed)
            }
            Err(TryAcquireError::NoPermits) => Err(TrySendError::Full(input)),
            Err(TryAcquireError::Closed) => Err(TrySendError::Closed),
        }
    }

    /// Hands `input` over, waiting for room; gives it back when the engine is gone.
    pub(crate) async fn send(&self, input: Input) -> Result<(), Input> {
        let weight = weight(&input, self.budget);
        match self.room.acquire_many(weight).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(input),
        }
        self.tx.send(input).map_err(|e| e.0)
    }
}

impl InputRx {
    /// The next input, waiting for one; `None` when every sender is gone.
    pub(crate) async fn recv(&mut self) -> Option<Input> {
        let input = self.rx.recv().await?;
        self.taken(&input);
        Some(input)
    }

    /// The next input if there is one now.
    pub(crate) fn try_recv(&mut self) -> Option<Input> {
        let input = self.rx.try_recv().ok()?;
        self.taken(&input);
        Some(input)
    }

    /// `input` left the channel: its weight is room again.
    fn taken(&self, input: &Input) {
        self.room.add_permits(weight(input, self.budget) as usize);
    }
}

impl Drop for InputRx {
    fn drop(&mut self) {
        // Senders waiting for room learn that the engine is gone.
        self.room.close();
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use mqtt_session::broker::ConnectionId;

    use super::*;

    fn bytes(n: usize) -> Input {
        Input::Bytes(ConnectionId(1), Bytes::from(vec![0u8; n]))
    }

    #[tokio::test]
    async fn the_budget_counts_bytes_and_comes_back_when_the_engine_takes_them() {
        let (tx, mut rx) = channel(1000);
        // 400 + 64 twice is 928: a third does not fit, a small one does.
        tx.try_send(bytes(400)).unwrap();
        tx.try_send(bytes(400)).unwrap();
        assert!(matches!(
            tx.try_send(bytes(400)),
            Err(TrySendError::Full(_))
        ));
        tx.try_send(Input::Closed(ConnectionId(1))).unwrap();
        assert!(matches!(rx.try_recv(), Some(Input::Bytes(_, b)) if b.len() == 400));
        tx.try_send(bytes(400)).unwrap();
        // In order.
        assert!(matches!(rx.recv().await, Some(Input::Bytes(_, b)) if b.len() == 400));
        assert!(matches!(rx.recv().await, Some(Input::Closed(_))));
        assert!(matches!(rx.recv().await, Some(Input::Bytes(_, b)) if b.len() == 400));
        assert!(rx.try_recv().is_none());
        assert_eq!(rx.room.available_permits(), 1000, "all the room is back");
    }

    #[tokio::test]
    async fn an_input_larger_than_the_budget_passes_alone() {
        let (tx, mut rx) = channel(100);
        tx.try_send(bytes(5000)).unwrap();
        assert!(matches!(
            tx.try_send(Input::Closed(ConnectionId(1))),
            Err(TrySendError::Full(_))
        ));
        assert!(rx.try_recv().is_some());
        tx.try_send(Input::Closed(ConnectionId(1))).unwrap();
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_in_when_room_comes_and_learns_when_the_engine_is_gone() {
        let (tx, mut rx) = channel(200);
        tx.try_send(bytes(100)).unwrap();
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(bytes(100)).await.is_ok() })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(rx.recv().await.is_some());
        assert!(waiting.await.unwrap(), "sent once there was room");
        assert!(rx.recv().await.is_some());

        tx.try_send(bytes(100)).unwrap();
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(bytes(100)).await.is_err() })
        };
        tokio::task::yield_now().await;
        drop(rx);
        assert!(waiting.await.unwrap(), "told that the engine is gone");
        assert!(matches!(
            tx.try_send(Input::Closed(ConnectionId(1))),
            Err(TrySendError::Closed)
        ));
    }
}
