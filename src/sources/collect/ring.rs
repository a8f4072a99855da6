//! The bounded buffer behind every evented table: at most `max` events, none
//! older than `expiry`, oldest dropped first. A query reads without taking,
//! so every reader sees every buffered event (osquery's scheduled queries
//! de-duplicate through their own differential results).
//!
//! Each event gets a sequence number so a later kernel event (an exit) can
//! update the row it belongs to in O(1) while it is still buffered.
use std::collections::VecDeque;

#[derive(Debug)]
pub struct Ring<T> {
    max: usize,
    expiry_secs: u64,
    /// `(sequence, unix time, item)`, oldest first; sequences are contiguous.
    items: VecDeque<(u64, u64, T)>,
    next_seq: u64,
    /// Events dropped to respect `max` before they expired.
    evicted: u64,
}

impl<T> Ring<T> {
    /// `max` of 0 is taken as 1: a buffer that holds nothing would make the
    /// table silently empty.
    pub fn new(max: usize, expiry_secs: u64) -> Ring<T> {
        Ring {
            max: max.max(1),
            expiry_secs,
            items: VecDeque::new(),
            next_seq: 0,
            evicted: 0,
        }
    }

    /// Adds an event that happened at `time` (unix seconds); returns its
    /// sequence number.
    pub fn push(&mut self, time: u64, item: T) -> u64 {
        self.expire(time);
        while self.items.len() >= self.max {
            self.items.pop_front();
            self.evicted += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.items.push_back((seq, time, item));
        seq
    }

    /// Drops events older than the expiry, as of `now` (unix seconds).
    pub fn expire(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.expiry_secs);
        while self.items.front().is_some_and(|(_, t, _)| *t < cutoff) {
            self.items.pop_front();
        }
    }

    /// The event with this sequence number, if still buffered.
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut T> {
        let first = self.items.front()?.0;
        let idx = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.items.get_mut(idx).map(|(_, _, item)| item)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.items.iter().map(|(_, t, item)| (*t, item))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_max_oldest_dropped() {
        let mut r = Ring::new(3, 1000);
        for i in 0..10u64 {
            r.push(100, i);
            assert!(r.len() <= 3);
        }
        let kept: Vec<u64> = r.iter().map(|(_, v)| *v).collect();
        assert_eq!(kept, vec![7, 8, 9]);
        assert_eq!(r.evicted(), 7);
    }

    #[test]
    fn expires_by_age() {
        let mut r = Ring::new(100, 60);
        r.push(1000, "old");
        r.push(1050, "mid");
        r.push(1061, "new");
        let kept: Vec<&str> = r.iter().map(|(_, v)| *v).collect();
        assert_eq!(kept, vec!["mid", "new"]);
        r.expire(2000);
        assert!(r.is_empty());
        assert_eq!(r.evicted(), 0, "expiry is not eviction");
    }

    #[test]
    fn updates_by_sequence_until_dropped() {
        let mut r = Ring::new(2, 1000);
        let a = r.push(1, 'a');
        let b = r.push(1, 'b');
        if let Some(v) = r.get_mut(b) {
            *v = 'B';
        }
        assert_eq!(r.iter().map(|(_, v)| *v).collect::<String>(), "aB");
        r.push(1, 'c');
        assert!(r.get_mut(a).is_none());
        assert!(r.get_mut(99).is_none());
        assert_eq!(r.get_mut(b).copied(), Some('B'));
        assert_eq!(Ring::<u8>::new(0, 1).max, 1);
    }
}
