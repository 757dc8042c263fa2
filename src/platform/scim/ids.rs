//! The push's map of external id → platform id: the people the state knows, and everyone
//! created or adopted so far (managers are looked up in it).
//!
//! Why shards: in a million-user first sync the map grows to a million entries by
//! doubling, and its last doubling held the old table and the new one at once, +150 MB at
//! the run's peak (BENCHMARKS.md, issue 29, third pass). Sixteen tables each grow on their
//! own, so a doubling holds a sixteenth of that; sizing the whole table up front instead
//! held its full size from the start of the push, beside every user still to send.

use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::model::Str;
use crate::plan::FastHash;

const SHARDS: usize = 16;

pub(super) struct Ids {
    hasher: FastHash,
    shards: Vec<HashMap<Str, Str, FastHash>>,
}

impl Ids {
    /// The shard of `key`: bits of its hash the tables themselves do not use for placing
    /// (the low bits) or tagging (the top seven), so each shard's entries stay spread.
    fn shard(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) >> 40) as usize % SHARDS
    }

    pub(super) fn get(&self, key: &str) -> Option<&Str> {
        self.shards[self.shard(key)].get(key)
    }

    pub(super) fn insert(&mut self, key: Str, value: Str) {
        let i = self.shard(&key);
        self.shards[i].insert(key, value);
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Str, &Str)> {
        self.shards.iter().flatten()
    }
}

impl FromIterator<(Str, Str)> for Ids {
    fn from_iter<I: IntoIterator<Item = (Str, Str)>>(pairs: I) -> Ids {
        let mut ids = Ids { hasher: FastHash::default(), shards: (0..SHARDS).map(|_| HashMap::default()).collect() };
        pairs.into_iter().for_each(|(k, v)| ids.insert(k, v));
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_one_map_spread_over_its_shards() {
        let mut ids: Ids = (0..5_000).map(|i| (Str::from(format!("E{i}")), Str::from(format!("p{i}")))).collect();
        ids.insert("E7".into(), "other".into());
        assert_eq!(ids.get("E7").map(Str::as_str), Some("other"), "a later insert replaces");
        assert_eq!(ids.get("E4999").map(Str::as_str), Some("p4999"));
        assert_eq!(ids.get("E5000"), None);
        assert_eq!(ids.iter().count(), 5_000);
        assert!(
            ids.shards.iter().all(|s| s.len() > 5_000 / SHARDS / 2),
            "every shard used: {:?}",
            ids.shards.iter().map(HashMap::len).collect::<Vec<_>>()
        );
    }
}
