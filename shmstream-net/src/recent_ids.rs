//! The receiver's duplicate-id window: the ids of the last tensors
//! admitted, bounded by the ring's capacity.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// The ids of the last `window` tensors admitted, to refuse a duplicate.
///
/// The window is the ring's item capacity: a tensor admitted more than
/// that many tensors ago has left the ring's window (its position has
/// been reused, so the consumer released it), and no transfer is in
/// flight for it (each holds a position). Every id still in flight or in
/// the ring is in the window, so such a duplicate is refused (the core
/// producer refuses a by-id duplicate among the registered, unput ones);
/// an id reused after it left the ring is a new tensor. Memory: at most
/// `window` ids, whatever the stream's length.
#[derive(Debug)]
pub(crate) struct RecentIds {
    window: usize,
    // One allocation per id, shared by the order and the set.
    order: VecDeque<Arc<str>>,
    set: HashSet<Arc<str>>,
}

impl RecentIds {
    pub(crate) fn new(window: usize) -> RecentIds {
        RecentIds {
            window: window.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    /// Notes `id` as admitted (not in the window: checked before), and
    /// forgets the oldest id past the window.
    pub(crate) fn insert(&mut self, id: &str) {
        if self.order.len() == self.window {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        let id: Arc<str> = Arc::from(id);
        self.order.push_back(id.clone());
        self.set.insert(id);
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::RecentIds;

    #[test]
    fn the_recent_ids_stay_within_their_window() {
        let mut ids = RecentIds::new(4);
        for i in 0..1000 {
            let id = format!("t{i}");
            assert!(!ids.contains(&id));
            ids.insert(&id);
            assert!(ids.contains(&id));
            assert_eq!(ids.len(), (i + 1).min(4));
        }
        // The last four are held, the fifth last is forgotten.
        for i in 996..1000 {
            assert!(ids.contains(&format!("t{i}")), "t{i}");
        }
        assert!(!ids.contains("t995"));
        assert_eq!(ids.order.len(), 4);
    }

    #[test]
    fn a_window_of_zero_holds_one_id() {
        let mut ids = RecentIds::new(0);
        ids.insert("a");
        assert!(ids.contains("a"));
        ids.insert("b");
        assert!(!ids.contains("a") && ids.contains("b"));
        assert_eq!(ids.len(), 1);
    }
}
