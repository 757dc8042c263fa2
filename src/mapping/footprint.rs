//! What the rows kept from a file hold in memory, estimated from their lengths where they
//! are stored (`format::Held` is the budget), and how the rows of one id on many rows are
//! reduced to a count when the budget fills: past the first few, such rows add nothing a
//! report or a plan uses (they are all errors naming the same id), so only their number is
//! kept.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{DUPLICATE_LINES_SHOWN, Mapped};
use crate::model::{IdRule, RowError, SourcedUser, User};

/// What a heap allocation costs beyond its bytes (the allocator's header and rounding).
const ALLOC: u64 = 16;

/// The entry a kept row takes in the duplicate check's map at the end (`mark_duplicates`: a
/// borrowed key and the row's line, in a hash table at most half empty): reserved as the row
/// is kept, so that check never passes the budget.
pub(super) const DUPLICATE_ENTRY: u64 = 48;

/// Rows of one id kept before the rest are counted: as many as a duplicate message shows.
const KEPT_PER_ID: u32 = DUPLICATE_LINES_SHOWN as u32;

/// A `CompactString` keeps up to 24 bytes inline; longer ones are on the heap.
fn str_heap(len: usize) -> u64 {
    if len > 24 { len as u64 + ALLOC } else { 0 }
}

/// A kept user: the box, its unique id and manager past the inline size, its packed
/// block (the other fields and the attributes), its map entry.
pub(super) fn user_bytes(u: &SourcedUser) -> u64 {
    let user: &User = &u.user;
    let heap = str_heap(user.external_id.len()) + user.manager.as_ref().map_or(0, |m| str_heap(m.len()));
    (std::mem::size_of::<SourcedUser>() + std::mem::size_of::<User>()) as u64
        + ALLOC
        + heap
        + user.details_len() as u64
        + ALLOC
        + DUPLICATE_ENTRY
}

/// A kept row error: its strings, and its map entry when it names an id.
pub(super) fn error_bytes(e: &RowError) -> u64 {
    let strings = [Some(&e.message), e.column.as_ref(), e.external_id.as_ref()];
    let heap: u64 = strings.into_iter().flatten().map(|s| s.len() as u64 + ALLOC).sum();
    std::mem::size_of::<RowError>() as u64 + heap + if e.external_id.is_some() { DUPLICATE_ENTRY } else { 0 }
}

/// Bytes a string held in a kept value takes.
pub(super) fn string_bytes(s: &str) -> u64 {
    (std::mem::size_of::<String>() + s.len()) as u64 + ALLOC
}

/// Drops the rows of every id kept more than `KEPT_PER_ID` times (valid rows and invalid
/// ones naming it, each counted apart), in file order, adding them to
/// `Mapped::duplicates_untold`. Returns the bytes freed. Linear in the rows kept.
pub(super) fn compact_duplicates(out: &mut Mapped, rule: IdRule) -> u64 {
    let many = ids_on_many_rows(out, rule);
    if many.is_empty() {
        return 0;
    }
    let mut freed = 0;
    let mut kept: HashMap<String, u32> = HashMap::new();
    out.users.retain(|u| {
        let key = rule.key(&u.user.external_id);
        if !many.contains_key(key.as_ref()) {
            return true;
        }
        let n = kept.entry(key.clone().into_owned()).or_default();
        *n += 1;
        if *n <= KEPT_PER_ID {
            return true;
        }
        freed += user_bytes(u);
        *out.duplicates_untold.entry(key.into_owned()).or_default() += 1;
        false
    });
    // Invalid rows naming the id: by line (a row may have several errors, one after the other).
    let mut lines: HashMap<String, (u32, u64, bool)> = HashMap::new();
    out.errors.retain(|e| {
        let Some(key) = e.external_id.as_deref().map(|id| rule.key(id)) else { return true };
        if !many.contains_key(key.as_ref()) {
            return true;
        }
        let (n, last, dropping) = lines.entry(key.clone().into_owned()).or_insert((0, 0, false));
        if *last != e.line {
            *last = e.line;
            *n += 1;
            *dropping = *n > KEPT_PER_ID;
            if *dropping {
                *out.duplicates_untold.entry(key.into_owned()).or_default() += 1;
            }
        }
        if *dropping {
            freed += error_bytes(e);
        }
        !*dropping
    });
    freed
}

/// The ids kept on more than `KEPT_PER_ID` rows of the users or of the errors.
fn ids_on_many_rows(out: &Mapped, rule: IdRule) -> HashMap<String, ()> {
    let mut users: HashMap<Cow<'_, str>, u32, foldhash::fast::RandomState> = HashMap::default();
    for u in &out.users {
        *users.entry(rule.key(&u.user.external_id)).or_default() += 1;
    }
    let mut many: HashMap<String, ()> = users.into_iter().filter(|(_, n)| *n > KEPT_PER_ID).map(|(k, _)| (k.into_owned(), ())).collect();
    let mut errors: HashMap<Cow<'_, str>, (u32, u64), foldhash::fast::RandomState> = HashMap::default();
    for e in &out.errors {
        if let Some(id) = &e.external_id {
            let (n, last) = errors.entry(rule.key(id)).or_default();
            if *last != e.line {
                *last = e.line;
                *n += 1;
            }
        }
    }
    many.extend(errors.into_iter().filter(|(_, (n, _))| *n > KEPT_PER_ID).map(|(k, _)| (k.into_owned(), ())));
    many
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Str, UserFields};

    fn user(id: &str, line: u64) -> SourcedUser {
        let user = User::from(UserFields {
            external_id: Str::from(id),
            email: None,
            employee_id: Some(Str::from(id)),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            language: "en".into(),
            active: true,
            manager: None,
            attributes: Default::default(),
        });
        SourcedUser { user: Box::new(user), line }
    }

    fn error(id: &str, line: u64, message: &str) -> RowError {
        RowError { line, column: Some("Email".into()), message: message.into(), external_id: Some(id.into()) }
    }

    #[test]
    fn an_id_on_many_rows_keeps_its_first_rows_and_counts_the_others() {
        let rule = IdRule { fold_case: true, upper: true };
        let mut users: Vec<SourcedUser> = (0..25).map(|i| user(if i % 5 == 0 { "e7" } else { "E7" }, i + 2)).collect();
        users.push(user("E8", 100));
        users.push(user("E8", 101));
        // E9: 12 invalid rows of two errors each.
        let errors = (0..12).flat_map(|i| [error("E9", 200 + i, "bad email"), error("E9", 200 + i, "bad date")]).collect();
        let mut m = Mapped { users, errors, ..Mapped::default() };
        let before: u64 = m.users.iter().map(user_bytes).sum::<u64>() + m.errors.iter().map(error_bytes).sum::<u64>();

        let freed = compact_duplicates(&mut m, rule);
        assert_eq!(m.users.len(), 12, "10 of E7 (whatever the case), both of E8");
        assert_eq!(
            m.users.iter().map(|u| u.line).take(10).collect::<Vec<_>>(),
            (2..12).collect::<Vec<_>>(),
            "the first ones, in file order"
        );
        assert_eq!(m.errors.len(), 20, "E9's first 10 rows, both errors of each");
        assert_eq!(m.duplicates_untold.get("E7"), Some(&15));
        assert_eq!(m.duplicates_untold.get("E9"), Some(&2), "rows, not errors");
        assert!(!m.duplicates_untold.contains_key("E8"));
        let after: u64 = m.users.iter().map(user_bytes).sum::<u64>() + m.errors.iter().map(error_bytes).sum::<u64>();
        assert_eq!(before - after, freed);

        assert_eq!(compact_duplicates(&mut m, rule), 0, "nothing more to drop");
    }

    #[test]
    fn a_user_is_estimated_at_its_structures_and_long_strings() {
        // The struct (72 bytes since the fields are packed), its box, the packed block, the
        // duplicate check's entry: about 200 bytes for a short user.
        let short = user_bytes(&user("E1", 2));
        assert!((150..300).contains(&short), "{short}");
        let long = user_bytes(&user(&"x".repeat(1000), 2));
        assert!(long >= short + 2 * 1000, "external_id and employee_id: {long}");
    }
}
