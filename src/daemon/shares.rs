//! Each platform target's share of the daemon's run slots (`max_concurrent_runs`): a
//! target that hangs or answers 429 holds at most its share, so the runs of the other
//! targets go on. The share is `ceil(max_concurrent_runs / targets)` (all of them with one
//! target: nothing changes for a single platform), recomputed when a reload changes the
//! number of targets. A run takes its target's slot before a daemon slot, so a run waiting
//! for its target holds none of the daemon's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

pub struct Shares {
    /// `max_concurrent_runs`.
    total: usize,
    /// Per target key: its slots, and how many it was given.
    by_key: Mutex<HashMap<String, (Arc<Semaphore>, usize)>>,
}

impl Shares {
    pub fn new(total: usize) -> Shares {
        Shares { total: total.max(1), by_key: Mutex::new(HashMap::new()) }
    }

    /// The share of each of `targets` targets.
    pub fn share(total: usize, targets: usize) -> usize {
        total.max(1).div_ceil(targets.max(1))
    }

    /// Makes the shares those of these target keys; returns each key's slots (made once
    /// per target for the daemon's life, resized when the count changes).
    pub fn set(&self, keys: &[String]) -> HashMap<String, Arc<Semaphore>> {
        let share = Shares::share(self.total, keys.len());
        let mut m = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = HashMap::new();
        for k in keys {
            let (sem, given) = m.entry(k.clone()).or_insert_with(|| (Arc::new(Semaphore::new(share)), share));
            if *given < share {
                sem.add_permits(share - *given);
                *given = share;
            } else if *given > share {
                // Only free slots can go now; the rest go as runs end and the next reload
                // (or this one's) takes them.
                *given -= sem.forget_permits(*given - share);
            }
            out.insert(k.clone(), sem.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_target_gets_its_share_and_one_target_gets_all() {
        assert_eq!(Shares::share(4, 1), 4);
        assert_eq!(Shares::share(4, 3), 2);
        assert_eq!(Shares::share(4, 100), 1);
        let s = Shares::new(4);
        let a = s.set(&["a".into()]);
        assert_eq!(a["a"].available_permits(), 4);
        let both = s.set(&["a".into(), "b".into()]);
        assert!(Arc::ptr_eq(&a["a"], &both["a"]), "made once per target");
        assert_eq!((both["a"].available_permits(), both["b"].available_permits()), (2, 2));
        let one = s.set(&["a".into()]);
        assert_eq!(one["a"].available_permits(), 4, "given back when the other target goes");
    }
}
