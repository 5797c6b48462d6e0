//! A discrete-event queue on a virtual clock.
//!
//! Events are ordered by time, then by insertion order, so equal-time events run in the order they
//! were scheduled and a run is reproducible bit for bit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Virtual time in microseconds.
pub type Micros = u64;

/// An event queue and the clock it drives.
#[derive(Debug)]
pub struct EventQueue<E> {
    now: Micros,
    seq: u64,
    heap: BinaryHeap<Reverse<(Micros, u64, Slot<E>)>>,
}

/// Wraps an event so the heap never compares events themselves.
#[derive(Debug)]
struct Slot<E>(E);

impl<E> PartialEq for Slot<E> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<E> Eq for Slot<E> {}
impl<E> PartialOrd for Slot<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Slot<E> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
        }
    }
}

impl<E> EventQueue<E> {
    /// An empty queue at time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current virtual time.
    pub fn now(&self) -> Micros {
        self.now
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Schedules `event` `delay` microseconds from now.
    pub fn schedule(&mut self, delay: Micros, event: E) {
        let at = self.now.saturating_add(delay);
        self.heap.push(Reverse((at, self.seq, Slot(event))));
        self.seq += 1;
    }

    /// Advances the clock to the next event and returns it, unless it lies after `until`.
    pub fn pop_until(&mut self, until: Micros) -> Option<(Micros, E)> {
        let Reverse((at, _, _)) = self.heap.peek()?;
        if *at > until {
            return None;
        }
        let Reverse((at, _, Slot(event))) = self.heap.pop()?;
        self.now = at;
        Some((at, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_time_then_insertion() {
        let mut q = EventQueue::new();
        q.schedule(10, "b");
        q.schedule(5, "a");
        q.schedule(10, "c");
        let order: Vec<_> = std::iter::from_fn(|| q.pop_until(u64::MAX)).collect();
        assert_eq!(order, vec![(5, "a"), (10, "b"), (10, "c")]);
        assert_eq!(q.now(), 10);
    }

    #[test]
    fn stops_at_the_horizon_and_schedules_relative_to_now() {
        let mut q = EventQueue::new();
        q.schedule(100, 1);
        assert_eq!(q.pop_until(50), None);
        assert_eq!(q.now(), 0);
        assert_eq!(q.pop_until(100), Some((100, 1)));
        q.schedule(1, 2);
        assert_eq!(q.pop_until(u64::MAX), Some((101, 2)));
        assert!(q.is_empty());
    }
}
