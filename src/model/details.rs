//! A user's profile fields (email, employee id, names, language) and attributes, packed
//! into one heap block.
//!
//! Why: a million users are held at once. As separate `Str`s in the struct (24 bytes each,
//! the email mostly longer than the 24 it keeps inline, so its own allocation) beside a
//! packed attributes block, a user was three heap blocks and ≈ 350 bytes; packed, the struct
//! is a third of its size and the user two blocks (BENCHMARKS.md, issue 29, third pass).
//! Users are built once (mapping, the state's content) and rarely edited, so an edit
//! rebuilds the block.
//!
//! Layout: `[5 × length: u32 LE]` (email, employee id, first name, last name, language;
//! `u32::MAX` for an absent email or employee id), the five values' bytes in that order,
//! then the attributes in `Attributes`' layout.

use super::attributes::{self, AttributesRef};

/// The packed fields, in their order in the block.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field {
    Email = 0,
    EmployeeId = 1,
    FirstName = 2,
    LastName = 3,
    Language = 4,
}

const FIELDS: usize = 5;
const HEAD: usize = 4 * FIELDS;
const ABSENT: u32 = u32::MAX;
/// The longest value a field keeps (one less than `ABSENT`). Far above any cell a mapping
/// accepts; cut at a char boundary all the same rather than mistaken for absent.
const LONGEST: usize = ABSENT as usize - 1;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Details {
    buf: Box<[u8]>,
}

impl Details {
    /// `fields` in `Field` order; `attributes` sorted by key, each key once.
    pub(super) fn new<'a>(fields: [Option<&str>; FIELDS], attributes: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Details {
        let fields = fields.map(|f| f.map(|v| attributes::cut(v, LONGEST)));
        let values: usize = fields.iter().flatten().map(|v| v.len()).sum();
        let mut buf = Vec::with_capacity(HEAD + values + attributes::packed_len(attributes.clone()));
        for f in &fields {
            buf.extend_from_slice(&f.map_or(ABSENT, |v| v.len() as u32).to_le_bytes());
        }
        for v in fields.iter().flatten() {
            buf.extend_from_slice(v.as_bytes());
        }
        attributes::pack(&mut buf, attributes);
        Details { buf: buf.into_boxed_slice() }
    }

    fn len(&self, i: usize) -> Option<usize> {
        let b = &self.buf[4 * i..4 * i + 4];
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        (n != ABSENT).then_some(n as usize)
    }

    /// Where field `i`'s value starts.
    fn start(&self, i: usize) -> usize {
        HEAD + (0..i).filter_map(|j| self.len(j)).sum::<usize>()
    }

    pub(super) fn get(&self, f: Field) -> Option<&str> {
        let i = f as usize;
        let n = self.len(i)?;
        let at = self.start(i);
        let bytes = &self.buf[at..at + n];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: the block is written only by `new`, and each field's bytes there are a
        // whole `&str` (cut at a char boundary by `attributes::cut`); the lengths read back
        // are those written. Checking it again on every read was 2% of a 1M dry run (perf:
        // the names and emails of every user are read by the plan, the hash and listings).
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    }

    pub(super) fn fields(&self) -> [Option<&str>; FIELDS] {
        [Field::Email, Field::EmployeeId, Field::FirstName, Field::LastName, Field::Language].map(|f| self.get(f))
    }

    pub(super) fn attributes(&self) -> AttributesRef<'_> {
        AttributesRef::packed(&self.buf[self.start(FIELDS)..])
    }

    /// The same block with one field set.
    pub(super) fn with(&self, f: Field, value: Option<&str>) -> Details {
        let mut fields = self.fields();
        fields[f as usize] = value;
        Details::new(fields, self.attributes().iter())
    }

    /// The same fields with other attributes.
    pub(super) fn with_attributes<'a>(&self, attributes: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Details {
        Details::new(self.fields(), attributes)
    }

    /// Heap bytes of the block.
    pub(super) fn heap_len(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_attributes_read_back_as_written() {
        let attrs = [("department", "R&D"), ("title", "Zoë ✓")];
        let d = Details::new([Some("ann@example.com"), None, Some(""), Some("Lee"), Some("fr")], attrs.iter().copied());
        assert_eq!(d.fields(), [Some("ann@example.com"), None, Some(""), Some("Lee"), Some("fr")]);
        assert_eq!(d.attributes().iter().collect::<Vec<_>>(), attrs);
        let e = d.with(Field::EmployeeId, Some("E1")).with(Field::Email, None);
        assert_eq!(e.fields(), [None, Some("E1"), Some(""), Some("Lee"), Some("fr")]);
        assert_eq!(e.attributes(), d.attributes(), "attributes kept across a field's edit");
        let f = e.with_attributes(std::iter::empty());
        assert!(f.attributes().is_empty());
        assert_eq!(f.get(Field::Language), Some("fr"));
        // The same content packs to the same bytes, so derived equality is content equality.
        assert_eq!(e.with(Field::Email, Some("ann@example.com")).with(Field::EmployeeId, None), d);
    }
}
