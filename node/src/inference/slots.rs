//! Job slots under contention (spec: `spec/credits.md`, "Order of service"): the operator's side
//! of [`SlotGate`]. While a slot is free and nobody waits, a job takes it whoever sent it; when
//! every slot is taken, a job waits for one (at most [`SLOT_WAIT`]) in order of its requester's
//! credit with this node, and a requester past 125 % of its threshold is refused at once.

use std::sync::Mutex;
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::oneshot;
use warren_protocol::credits::Decision;
use warren_protocol::credits::policy::{SlotAnswer, SlotGate};

use super::lock;
use crate::credits::Credits;

/// Jobs waiting for a slot at most; over this the lowest standing is told the operator is busy.
pub(super) const SLOT_QUEUE: usize = 32;
/// Longest a job waits for a slot.
pub(super) const SLOT_WAIT: Duration = Duration::from_secs(30);

/// The operator's job slots.
pub(super) struct Slots {
    gate: Mutex<SlotGate<oneshot::Sender<()>>>,
}

/// A slot held by a job; dropping it hands the slot to the next waiting job.
pub(super) struct SlotHeld<'a> {
    slots: &'a Slots,
}

impl Drop for SlotHeld<'_> {
    fn drop(&mut self) {
        self.slots.release();
    }
}

/// Why a job got no slot: the failure code and the sentence sent to its requester.
pub(super) type NoSlot = (&'static str, String);

impl Slots {
    /// `slots` slots (the executor's concurrent jobs).
    pub(super) fn new(slots: usize) -> Self {
        Slots {
            gate: Mutex::new(SlotGate::new(slots, SLOT_QUEUE)),
        }
    }

    fn release(&self) {
        let mut gate = lock(&self.gate);
        // A waiter that stopped waiting (its receiver is gone) hands the slot on in turn.
        while let Some(next) = gate.release() {
            if next.send(()).is_ok() {
                return;
            }
        }
    }

    /// A slot for a job of `peer`, at once or after waiting in order of its credit.
    pub(super) async fn acquire(
        &self,
        peer: PeerId,
        credits: Option<&Credits>,
    ) -> Result<SlotHeld<'_>, NoSlot> {
        let (tx, mut rx) = oneshot::channel();
        let answer = lock(&self.gate).ask(tx, || {
            credits.map_or(Decision::Serve { priority: 0 }, |c| c.admit(peer))
        });
        match answer {
            SlotAnswer::Granted(_) => Ok(SlotHeld { slots: self }),
            SlotAnswer::Refused {
                until_ms, reason, ..
            } => {
                let wait = until_ms.saturating_sub(crate::clock::unix_now_ms()) / 1000;
                Err((
                    "credit",
                    format!(
                        "refused for credit while every job slot is taken: {reason} (ask again when it is idle or in {wait} s, or serve this node back)"
                    ),
                ))
            }
            SlotAnswer::Queued { dropped } => {
                // A job pushed out (possibly this one) sees its channel closed: busy.
                drop(dropped);
                match tokio::time::timeout(SLOT_WAIT, &mut rx).await {
                    Ok(Ok(())) => Ok(SlotHeld { slots: self }),
                    Ok(Err(_)) => Err((
                        "busy",
                        "every job slot is taken and requesters in higher standing wait".into(),
                    )),
                    Err(_) => {
                        // Closed first, so that a slot handed over just now is not lost.
                        rx.close();
                        match rx.try_recv() {
                            Ok(()) => Ok(SlotHeld { slots: self }),
                            Err(_) => Err(("busy", "no job slot was free in time".into())),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_freed_slot_goes_to_a_waiter_and_one_that_gave_up_passes_it_on() {
        let slots = Slots::new(1);
        let peer = PeerId::random();
        let held = slots.acquire(peer, None).await.map_err(|e| e.1).unwrap();
        // One waiter gives up (its future is dropped while it waits), another waits.
        {
            let gone = slots.acquire(peer, None);
            tokio::pin!(gone);
            assert!(futures::poll!(&mut gone).is_pending());
        }
        let waiting = slots.acquire(peer, None);
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        assert_eq!(lock(&slots.gate).waiting(), 2);
        drop(held);
        let second = waiting.await.map_err(|e| e.1).unwrap();
        assert_eq!(lock(&slots.gate).taken(), 1);
        drop(second);
        assert_eq!(lock(&slots.gate).taken(), 0);
        assert!(slots.acquire(peer, None).await.is_ok());
    }
}
