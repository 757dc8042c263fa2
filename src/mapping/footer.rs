//! Footer rows: a report's last lines that are no person ("Total: 100", "Generated
//! 2026-12-01 by Workday"). Read as rows they are invalid and unidentified, and a row whose
//! person cannot be told holds every leaver (it may be them): a footer held every leaver of
//! every run, while the run said `ok`. So rows at the very end of the file that look like a
//! footer are recognised and skipped, with a notice.
//!
//! Looking like a footer, never like a person: one or two filled values, the first (or the
//! unique id's cell) a label — with a word of letters, and not the shape the file's ids have
//! (`E0000001` is "letter, digits"; `Total: 99` is not) — and after every other row. A row
//! without an id, or whose id has the ids' shape, is never a footer: it may be someone.

use std::collections::HashSet;

/// A row that may be a footer, as the mapping met it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    pub line: u64,
    /// Its label: a short row's first filled value, or a record's unique id cell.
    pub label: Option<String>,
    /// Its filled values, for the notice.
    pub values: Vec<String>,
    /// The columns (by index) counted in the column fill for it, to take back.
    pub counted: Vec<usize>,
}

/// A footer row skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    pub line: u64,
    /// Its filled values, as the file has them (bounded).
    pub values: Vec<String>,
}

/// At most this many rows at the end of a file are taken for a footer.
const MAX_FOOTER_ROWS: usize = 3;
/// Ids of more shapes than this are free-form: nothing tells a label from an id.
const MAX_SHAPES: usize = 32;

/// "E0000001" → "A9", "Total: 99" → "A: 9": letters, digits and spaces as classes, runs
/// collapsed.
fn shape(s: &str) -> String {
    let mut out = String::new();
    for c in s.trim().chars() {
        let k = if c.is_ascii_digit() {
            '9'
        } else if c.is_alphabetic() {
            'A'
        } else if c.is_whitespace() {
            ' '
        } else {
            c
        };
        if !out.ends_with(k) {
            out.push(k);
        }
    }
    out
}

/// A word of three letters or more: "Total", "Generated", "Count".
fn has_word(s: &str) -> bool {
    s.split(|c: char| !c.is_alphabetic()).any(|w| w.chars().count() >= 3)
}

/// Which candidates (indexes, in file order) are footers: those after `last_person` (the
/// line of the last row that is not a candidate), from the end of the file back to the first
/// that could be a person, at most `MAX_FOOTER_ROWS`. `ids`: the valid rows' unique ids.
pub(super) fn at_end<'a>(candidates: &[Candidate], last_person: u64, ids: impl Iterator<Item = &'a str>) -> Vec<usize> {
    // Nearly every file has no short row after its last person: no id shapes to learn then
    // (a shape is a string per id, a million of them for nothing).
    if !candidates.iter().any(|c| c.line > last_person) {
        return Vec::new();
    }
    let mut shapes: HashSet<String> = HashSet::new();
    for id in ids {
        shapes.insert(shape(id));
        if shapes.len() > MAX_SHAPES {
            return Vec::new();
        }
    }
    if shapes.is_empty() {
        // No valid row: nothing to tell a label from an id by.
        return Vec::new();
    }
    let mut trailing: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].line > last_person).collect();
    trailing.sort_by_key(|&i| candidates[i].line);
    let mut found = Vec::new();
    for &i in trailing.iter().rev() {
        let footer = candidates[i].label.as_deref().is_some_and(|l| has_word(l) && !shapes.contains(&shape(l)));
        if !footer || found.len() == MAX_FOOTER_ROWS {
            // Rows before one that may be a person are not at the end of the file.
            break;
        }
        found.push(i);
    }
    found.reverse();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(line: u64, label: Option<&str>) -> Candidate {
        Candidate { line, label: label.map(str::to_string), values: label.into_iter().map(str::to_string).collect(), counted: vec![] }
    }

    const IDS: [&str; 3] = ["E0000001", "E0000002", "E0000100"];

    #[test]
    fn a_total_or_a_generated_by_line_at_the_end_is_a_footer() {
        let cands = [c(102, Some("Total: 99")), c(103, Some("Generated 2026-12-01 by Workday"))];
        assert_eq!(at_end(&cands, 101, IDS.into_iter()), vec![0, 1]);
        assert_eq!(shape("E0000001"), "A9");
        assert_eq!(shape("Total: 99"), "A: 9");
    }

    #[test]
    fn a_row_that_may_be_a_person_is_never_a_footer() {
        // In the middle of the file; an id of the ids' shape; no id; no word.
        assert_eq!(at_end(&[c(50, Some("Total: 99"))], 101, IDS.into_iter()), Vec::<usize>::new());
        assert_eq!(at_end(&[c(102, Some("E0000101"))], 101, IDS.into_iter()), Vec::<usize>::new());
        assert_eq!(at_end(&[c(102, None)], 101, IDS.into_iter()), Vec::<usize>::new());
        assert_eq!(at_end(&[c(102, Some("1.00000E+11"))], 101, IDS.into_iter()), Vec::<usize>::new());
        // A footer after a row that may be a person: only the rows after it.
        let cands = [c(102, Some("Total")), c(103, Some("E0000101")), c(104, Some("Generated by Workday"))];
        assert_eq!(at_end(&cands, 101, IDS.into_iter()), vec![2]);
        // Alphabetic ids ("jdoe"): a one-word label has their shape.
        assert_eq!(at_end(&[c(102, Some("Total"))], 101, ["jdoe", "asmith"].into_iter()), Vec::<usize>::new());
        // No valid row, or free-form ids: nothing is a footer.
        assert_eq!(at_end(&[c(102, Some("Total: 99"))], 101, std::iter::empty()), Vec::<usize>::new());
        let free: Vec<String> = (1..40).map(|i| "a1".repeat(i)).collect();
        assert_eq!(at_end(&[c(102, Some("Total: 99"))], 101, free.iter().map(String::as_str)), Vec::<usize>::new());
    }

    #[test]
    fn at_most_three_rows_are_a_footer() {
        let cands: Vec<Candidate> = (0..5).map(|i| c(102 + i, Some("Total: 99"))).collect();
        assert_eq!(at_end(&cands, 101, IDS.into_iter()), vec![2, 3, 4]);
    }
}
