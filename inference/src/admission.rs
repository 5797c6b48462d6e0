//! Admission of inbound job streams and of jobs to the executor's slots, per requesting peer,
//! sans-I/O.
//!
//! An operator has few job slots (two by default) and a bounded number of job streams. Without a
//! per-peer rule one peer takes them all: it opens every stream (and never reads the answers), or
//! keeps every slot busy with long jobs, and every other requester is refused. [`Admission`]
//! bounds what one peer may hold at once: [`AdmissionLimits::streams_per_peer`] of the
//! [`AdmissionLimits::streams`] streams, and [`AdmissionLimits::slots_per_peer`] of the executor's
//! slots, so the rest stays open to everyone else. It only counts; the node opens, times out and
//! closes the streams. The map holds only peers with an open stream, so it is bounded by
//! [`AdmissionLimits::streams`].

use std::collections::HashMap;
use std::hash::Hash;

/// What [`Admission`] allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Job streams open at once, all peers together.
    pub streams: usize,
    /// Job streams one peer may have open at once.
    pub streams_per_peer: usize,
    /// Jobs of one peer that may hold an executor slot at once.
    pub slots_per_peer: usize,
}

impl AdmissionLimits {
    /// The limits for an executor with `slots` job slots: 16 streams, 4 per peer, and half the
    /// slots (at least one) per peer, so that with two or more slots one peer never holds them
    /// all.
    pub fn for_slots(slots: usize) -> Self {
        Self {
            streams: 16,
            streams_per_peer: 4,
            slots_per_peer: (slots / 2).max(1),
        }
    }
}

/// Why a stream or a job was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every stream is taken.
    Full,
    /// This peer has its share of streams open.
    PeerStreams,
    /// This peer's jobs hold its share of the slots.
    PeerSlots,
}

impl Refusal {
    /// What a failure reason says.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "every job stream is taken",
            Refusal::PeerStreams => "this peer has its share of job streams open",
            Refusal::PeerSlots => "this peer's jobs hold their share of the job slots",
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Held {
    streams: usize,
    running: usize,
}

/// Streams and running jobs per peer (see the module doc).
#[derive(Debug)]
pub struct Admission<P> {
    limits: AdmissionLimits,
    held: HashMap<P, Held>,
    streams: usize,
}

impl<P: Eq + Hash + Clone> Admission<P> {
    /// Nothing held yet.
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            held: HashMap::new(),
            streams: 0,
        }
    }

    /// Admits a new stream from `peer`, or says why not. Each admitted stream is
    /// [`Admission::close`]d once.
    pub fn open(&mut self, peer: &P) -> Result<(), Refusal> {
        let held = self.held.get(peer).copied().unwrap_or_default();
        if held.streams >= self.limits.streams_per_peer {
            return Err(Refusal::PeerStreams);
        }
        if self.streams >= self.limits.streams {
            return Err(Refusal::Full);
        }
        self.streams += 1;
        self.held.entry(peer.clone()).or_default().streams += 1;
        Ok(())
    }

    /// A stream of `peer` closed.
    pub fn close(&mut self, peer: &P) {
        if let Some(h) = self.held.get_mut(peer) {
            h.streams = h.streams.saturating_sub(1);
            self.streams = self.streams.saturating_sub(1);
            if h.streams == 0 {
                self.held.remove(peer);
            }
        }
    }

    /// Lets a job of `peer` (on one of its open streams) ask the executor for a slot, or says why
    /// not. Each admitted job is [`Admission::finish`]ed once.
    pub fn start(&mut self, peer: &P) -> Result<(), Refusal> {
        let Some(h) = self.held.get_mut(peer) else {
            return Err(Refusal::PeerStreams);
        };
        if h.running >= self.limits.slots_per_peer {
            return Err(Refusal::PeerSlots);
        }
        h.running += 1;
        Ok(())
    }

    /// A job of `peer` left its slot.
    pub fn finish(&mut self, peer: &P) {
        if let Some(h) = self.held.get_mut(peer) {
            h.running = h.running.saturating_sub(1);
        }
    }

    /// Streams open, all peers together.
    pub fn open_streams(&self) -> usize {
        self.streams
    }

    /// Peers with a stream open.
    pub fn peers(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_cannot_take_every_stream() {
        let mut a = Admission::new(AdmissionLimits::for_slots(2));
        for _ in 0..4 {
            a.open(&1).unwrap();
        }
        assert_eq!(a.open(&1), Err(Refusal::PeerStreams));
        // Three more greedy peers fill the rest; a fifth is refused only because all are taken.
        for p in 2..=4 {
            for _ in 0..4 {
                a.open(&p).unwrap();
            }
        }
        assert_eq!(a.open_streams(), 16);
        assert_eq!(a.open(&5), Err(Refusal::Full));
        a.close(&1);
        a.open(&5).unwrap();
        assert_eq!(a.peers(), 5);
    }

    #[test]
    fn one_peer_holds_at_most_its_share_of_slots() {
        let mut a = Admission::new(AdmissionLimits::for_slots(2));
        a.open(&1).unwrap();
        a.open(&1).unwrap();
        a.start(&1).unwrap();
        assert_eq!(a.start(&1), Err(Refusal::PeerSlots));
        a.open(&2).unwrap();
        a.start(&2).unwrap();
        a.finish(&1);
        a.start(&1).unwrap();
        assert_eq!(a.start(&9), Err(Refusal::PeerStreams), "no stream, no job");
        assert_eq!(AdmissionLimits::for_slots(1).slots_per_peer, 1);
        assert_eq!(AdmissionLimits::for_slots(4).slots_per_peer, 2);
    }

    #[test]
    fn closing_everything_forgets_the_peer() {
        let mut a = Admission::new(AdmissionLimits::for_slots(2));
        a.open(&1).unwrap();
        a.start(&1).unwrap();
        a.finish(&1);
        a.close(&1);
        a.close(&1); // a stray close changes nothing
        assert_eq!((a.open_streams(), a.peers()), (0, 0));
    }
}
