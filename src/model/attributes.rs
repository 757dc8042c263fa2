//! A user's `[attributes]`: a small sorted map from attribute name to value, packed into one
//! heap block.
//!
//! Why not a `BTreeMap<String, String>`: a million users each held one (a ≈560-byte leaf
//! node plus two heap strings per entry, ≈15 allocations per user), which made mapping,
//! planning and freeing allocation-bound and a 1M-row export take 1.5 GB (BENCHMARKS.md,
//! issue 8). Users are built once and rarely edited, so a packed, immutable-looking layout
//! with O(n) edits fits: a typical user's six attributes take one ≈150-byte block.
//!
//! Layout of `buf`, entries sorted by key, each key once:
//! `[key length: u16 LE][value length: u32 LE][key bytes][value bytes]` …

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Attributes {
    buf: Box<[u8]>,
}

pub(super) const HEAD: usize = 6;

impl Attributes {
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// The entries, borrowed: the same reading methods a user's attributes have.
    pub fn view(&self) -> AttributesRef<'_> {
        AttributesRef { buf: &self.buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Entries in key order.
    pub fn iter(&self) -> Iter<'_> {
        self.view().iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.view().get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Option<String> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let old = self.get(key).map(str::to_string);
        let rebuilt = Attributes::from_sorted(merge(self.iter(), key, Some(value)));
        *self = rebuilt;
        old
    }

    /// Removes `key`; returns its value if it was there.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let old = self.get(key).map(str::to_string)?;
        let rebuilt = Attributes::from_sorted(merge(self.iter(), key, None));
        *self = rebuilt;
        Some(old)
    }

    pub fn clear(&mut self) {
        self.buf = Box::default();
    }

    /// Packs entries already sorted by key with no key twice (the mapping's attributes,
    /// sorted once per file), skipping the sort of `collect`.
    pub fn from_sorted<'a>(entries: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Attributes {
        let mut buf = Vec::with_capacity(packed_len(entries.clone()));
        pack(&mut buf, entries);
        Attributes { buf: buf.into_boxed_slice() }
    }
}

/// Bytes `pack` writes for these entries.
pub(super) fn packed_len<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> usize {
    entries.map(|(k, v)| HEAD + k.len().min(u16::MAX as usize) + v.len().min(u32::MAX as usize)).sum()
}

/// Appends entries sorted by key with no key twice, in the layout above: the one writer of
/// both `Attributes` and the attributes inside a user's packed block (`super::details`).
pub(super) fn pack<'a>(buf: &mut Vec<u8>, entries: impl Iterator<Item = (&'a str, &'a str)> + Clone) {
    debug_assert!(entries.clone().zip(entries.clone().skip(1)).all(|(a, b)| a.0 < b.0), "keys sorted and unique");
    for (k, v) in entries {
        // Attribute names are identifiers from the mapping file and values cells of an
        // export, far below these limits; cut at a char boundary all the same.
        let (k, v) = (cut(k, u16::MAX as usize), cut(v, u32::MAX as usize));
        buf.extend_from_slice(&(k.len() as u16).to_le_bytes());
        buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        buf.extend_from_slice(k.as_bytes());
        buf.extend_from_slice(v.as_bytes());
    }
}

/// Attributes borrowed from where they are packed (an `Attributes`, or a user's block).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AttributesRef<'a> {
    buf: &'a [u8],
}

impl<'a> AttributesRef<'a> {
    /// Entries packed by `pack`.
    pub(super) fn packed(buf: &'a [u8]) -> AttributesRef<'a> {
        AttributesRef { buf }
    }

    pub fn is_empty(self) -> bool {
        self.buf.is_empty()
    }

    pub fn len(self) -> usize {
        self.iter().count()
    }

    /// Entries in key order.
    pub fn iter(self) -> Iter<'a> {
        Iter { buf: self.buf }
    }

    pub fn keys(self) -> impl Iterator<Item = &'a str> {
        self.iter().map(|(k, _)| k)
    }

    /// Entries as bytes, in key order, without decoding: for hashing.
    pub(crate) fn raw_entries(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let mut rest: &[u8] = self.buf;
        std::iter::from_fn(move || {
            if rest.len() < HEAD {
                return None;
            }
            let (k, v, next) = split(rest);
            rest = next;
            Some((k, v))
        })
    }

    pub fn get(self, key: &str) -> Option<&'a str> {
        // Compares raw key bytes (UTF-8 orders as its bytes do) and decodes only the value.
        let mut rest: &[u8] = self.buf;
        while rest.len() >= HEAD {
            let (k, v, next) = split(rest);
            match k.cmp(key.as_bytes()) {
                std::cmp::Ordering::Less => rest = next,
                std::cmp::Ordering::Equal => return Some(std::str::from_utf8(v).unwrap_or_default()),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    pub fn contains_key(self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// An owned copy.
    pub fn to_attributes(self) -> Attributes {
        Attributes { buf: self.buf.into() }
    }
}

impl fmt::Debug for AttributesRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for AttributesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'a> IntoIterator for AttributesRef<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

pub(super) fn cut(s: &str, max: usize) -> &str {
    s.get(..s.floor_char_boundary(max.min(s.len()))).unwrap_or_default()
}

/// The entries of `it` with `key` set to `value` (or removed when `None`), still sorted.
fn merge<'a>(it: Iter<'a>, key: &'a str, value: Option<&'a str>) -> impl Iterator<Item = (&'a str, &'a str)> + Clone + 'a {
    let before = it.clone().filter(move |(k, _)| *k < key);
    let after = it.filter(move |(k, _)| *k > key);
    before.chain(value.map(|v| (key, v))).chain(after)
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Attributes {
    /// Later entries win over earlier ones with the same key, as with a map.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Attributes {
        let mut pairs: Vec<(K, V)> = iter.into_iter().collect();
        // A stable sort keeps equal keys in input order; the later one's value then replaces
        // the kept one's.
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        pairs.dedup_by(|later, kept| {
            let same = later.0.as_ref() == kept.0.as_ref();
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        Attributes::from_sorted(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for Attributes {
    fn from(pairs: [(K, V); N]) -> Attributes {
        pairs.into_iter().collect()
    }
}

/// The first entry of `buf` (at least `HEAD` bytes): key, value, and the rest.
fn split(buf: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let kl = u16::from_le_bytes([buf[0], buf[1]]) as usize;
    let vl = u32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]) as usize;
    let (k, rest) = buf[HEAD..].split_at(kl);
    let (v, rest) = rest.split_at(vl);
    (k, v, rest)
}

#[derive(Clone)]
pub struct Iter<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.buf.len() < HEAD {
            return None;
        }
        let (k, v, rest) = split(self.buf);
        self.buf = rest;
        // Written only from `&str`, cut at char boundaries, so the
        // checks cannot fail; they cost a few ns on these short strings and need no unsafe.
        Some((std::str::from_utf8(k).unwrap_or_default(), std::str::from_utf8(v).unwrap_or_default()))
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view().fmt(f)
    }
}

/// A JSON object, as the `BTreeMap` it replaces: stored snapshots read the same.
impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Attributes, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Attributes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of attribute names to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
                let mut pairs: Vec<(String, String)> = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    pairs.push((k, v));
                }
                Ok(pairs.into_iter().collect())
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_sorted_map() {
        let mut a: Attributes = [("title", "Engineer"), ("department", "R&D"), ("title", "Lead")].into();
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![("department", "R&D"), ("title", "Lead")], "sorted, last wins");
        assert_eq!(a.get("title"), Some("Lead"));
        assert_eq!(a.get("site"), None);
        assert_eq!(a.insert("site", "Paris"), None);
        assert_eq!(a.insert("department", ""), Some("R&D".to_string()));
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![("department", ""), ("site", "Paris"), ("title", "Lead")]);
        assert_eq!(a.remove("site"), Some("Paris".to_string()));
        assert_eq!(a.remove("site"), None);
        assert_eq!(a.len(), 2);
        a.clear();
        assert!(a.is_empty() && a.get("title").is_none());
    }

    #[test]
    fn serialises_as_a_json_object_like_the_btreemap_before() {
        let a: Attributes = [("z", "ünïcode ✓"), ("a", "1")].into();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"a":"1","z":"ünïcode ✓"}"#);
        let old: std::collections::BTreeMap<String, String> = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&old).unwrap(), json);
        let back: Attributes = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn long_values_and_empty_keys_round_trip() {
        let long = "x".repeat(100_000);
        let a: Attributes = [("", "empty key"), ("note", long.as_str())].into();
        assert_eq!(a.get(""), Some("empty key"));
        assert_eq!(a.get("note").map(str::len), Some(100_000));
    }
}
