//! Charge only under contention (spec: `spec/credits.md`, "Order of service"): an idle node
//! serves every request as it comes; a busy one queues them and serves the highest priority (the
//! requester's credit, [`Decision`](super::Decision)) first, in arrival order among equals. The
//! queue is bounded: over it, the lowest priority (the latest among equals) is dropped.

use std::cmp::Reverse;
use std::collections::BTreeMap;

/// A bounded priority queue of requests waiting for a worker.
#[derive(Debug)]
pub struct ServiceQueue<T> {
    items: BTreeMap<(Reverse<i64>, u64), T>,
    arrivals: u64,
    capacity: usize,
}

impl<T> ServiceQueue<T> {
    /// An empty queue of at most `capacity` items (at least 1).
    pub fn new(capacity: usize) -> Self {
        ServiceQueue {
            items: BTreeMap::new(),
            arrivals: 0,
            capacity: capacity.max(1),
        }
    }

    /// Queues `item` at `priority`; returns the item dropped to make room (possibly `item`
    /// itself, when everything queued ranks above it).
    pub fn push(&mut self, priority: i64, item: T) -> Option<T> {
        self.arrivals += 1;
        self.items.insert((Reverse(priority), self.arrivals), item);
        if self.items.len() > self.capacity {
            return self.items.pop_last().map(|(_, v)| v);
        }
        None
    }

    /// The next item to serve: highest priority, earliest arrival.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_first().map(|(_, v)| v)
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_priority_first_then_arrival_order() {
        let mut q = ServiceQueue::new(10);
        q.push(0, "a");
        q.push(5, "b");
        q.push(0, "c");
        q.push(-3, "d");
        q.push(5, "e");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, ["b", "e", "a", "c", "d"]);
    }

    #[test]
    fn a_full_queue_drops_the_lowest() {
        let mut q = ServiceQueue::new(2);
        assert_eq!(q.push(1, "a"), None);
        assert_eq!(q.push(2, "b"), None);
        assert_eq!(q.push(0, "c"), Some("c"));
        assert_eq!(q.push(3, "d"), Some("a"));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some("d"));
        assert_eq!(q.pop(), Some("b"));
        assert!(q.is_empty());
    }
}
