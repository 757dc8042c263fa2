//! The file's ids against the population last synced, before anything is planned.
//!
//! Why: an export of another customer, a new id scheme, or an id column that Excel or an
//! HRIS report reformatted (`00123` → `123`, `123` → `123.0`) parses cleanly, and the plan
//! then sees everyone leave and everyone arrive. The deactivation limit and the change budget
//! stop such a run, but name a count ("would create 100 …"); what the operator has to tell
//! the customer is what happened to the ids. This check says it in those terms, with
//! examples, and stops the run like any safeguard (stored, approvable, overridable).
//!
//! Pure: the known ids (the snapshot's keys) and the file's ids, both normalised by the
//! connector's id rule, in; at most one drift out.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::budget::{EXAMPLES, PERCENT_FLOOR};

/// How the file's ids changed shape against the ones last synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reshape {
    /// `00123` → `123`: a spreadsheet read the column as numbers.
    LeadingZerosLost,
    /// `123` → `00123`: a report now pads the ids.
    LeadingZerosAdded,
    /// `123` → `123.0`: a number written as a decimal (JSON exports, spreadsheets).
    DecimalSuffix,
}

impl Reshape {
    fn what(self) -> &'static str {
        match self {
            Reshape::LeadingZerosLost => "lost their leading zeros (a spreadsheet or report read the id column as numbers)",
            Reshape::LeadingZerosAdded => "gained leading zeros (the report now pads them)",
            Reshape::DecimalSuffix => "arrive as decimals (\"123.0\"; the id column was exported as numbers)",
        }
    }
}

/// What changed in the file's ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "drift", rename_all = "snake_case")]
pub enum Drift {
    /// Most people last synced are absent and most of the file is new: another customer's
    /// export, or a new id scheme.
    NewIds {
        known: u64,
        /// Known ids still in the file.
        kept: u64,
        /// Ids of the file that are not known.
        new: u64,
        /// A few known ids absent from the file, and a few of its new ones.
        missing_examples: Vec<String>,
        new_examples: Vec<String>,
    },
    /// Known people's ids arrive in another shape.
    Reshaped {
        how: Reshape,
        count: u64,
        known: u64,
        /// (id last synced, id in the file).
        examples: Vec<(String, String)>,
    },
}

impl Drift {
    pub fn message(&self, go_on: &str) -> String {
        match self {
            Drift::NewIds { known, kept, new, missing_examples, new_examples } => format!(
                "only {kept} of the {known} ids last synced are in this file, and {new} of its ids are new (absent: {}; new: {}); nothing was pushed. Another customer's export or a new id scheme looks like this: ask the customer, then {go_on}",
                missing_examples.join(", "),
                new_examples.join(", ")
            ),
            Drift::Reshaped { how, count, known, examples } => format!(
                "{count} of the {known} ids last synced {} (for example {}); nothing was pushed, since each would read as a leaver and a new hire. Ask the customer for the usual export (or format the column as text), or {go_on}",
                how.what(),
                examples.iter().map(|(a, b)| format!("\"{a}\" → \"{b}\"")).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// The share of the known population a drift must reach to stop a run: a drift is a
/// whole-file fault, and day-to-day hires and leavers stay far below it.
const SHARE: f64 = 0.5;

/// The file's ids against the known ones: a drift when at least half the known people (and
/// at least `PERCENT_FLOOR`) are affected. A connector's first sync knows nobody: no drift.
/// `known` is the number of known ids, `is_known` looks one up (the snapshot's own map: no
/// set of a million ids is built on an ordinary day), `known_ids` lists them, asked only
/// when the file's new ids already reach the threshold.
pub fn check<'a, I: Iterator<Item = &'a str>>(
    known: u64,
    is_known: impl Fn(&str) -> bool,
    known_ids: impl FnOnce() -> I,
    file: &[&'a str],
) -> Option<Drift> {
    let threshold = ((known as f64 * SHARE).ceil() as u64).max(PERCENT_FLOOR);
    if known < PERCENT_FLOOR {
        return None;
    }
    let new: Vec<&str> = file.iter().copied().filter(|id| !is_known(id)).collect();
    if (new.len() as u64) < threshold {
        return None;
    }
    // Rare from here on (a drift, or a connector growing by half in one file).
    let known_set: HashSet<&str> = known_ids().collect();
    if let Some(d) = reshaped(&known_set, &new, known, threshold) {
        return Some(d);
    }
    let file_set: HashSet<&str> = file.iter().copied().collect();
    let kept = known_set.iter().filter(|id| file_set.contains(*id)).count() as u64;
    if known - kept < threshold {
        return None;
    }
    let mut missing: Vec<String> = known_set.iter().filter(|id| !file_set.contains(*id)).map(|s| s.to_string()).collect();
    missing.sort_unstable();
    missing.truncate(EXAMPLES);
    let mut new_examples: Vec<String> = new.iter().map(|s| s.to_string()).collect();
    new_examples.sort_unstable();
    new_examples.truncate(EXAMPLES);
    Some(Drift::NewIds { known, kept, new: new.len() as u64, missing_examples: missing, new_examples })
}

/// New ids that are known ids in another shape, by the likeliest reshaping.
fn reshaped(known: &HashSet<&str>, new: &[&str], n: u64, threshold: u64) -> Option<Drift> {
    // Known ids by their form without leading zeros (only those that have some).
    let unpadded: HashMap<&str, &str> =
        known.iter().filter(|k| k.len() > 1 && k.starts_with('0')).map(|k| (k.trim_start_matches('0'), *k)).collect();
    let mut found: BTreeMap<Reshape, Vec<(String, String)>> = BTreeMap::new();
    for id in new {
        let was = if let Some(k) = unpadded.get(id) {
            Some((Reshape::LeadingZerosLost, *k))
        } else if let Some(k) = id.strip_suffix(".0").and_then(|s| known.get(s)) {
            Some((Reshape::DecimalSuffix, *k))
        } else if id.len() > 1 && id.starts_with('0') {
            known.get(id.trim_start_matches('0')).map(|k| (Reshape::LeadingZerosAdded, *k))
        } else {
            None
        };
        if let Some((how, k)) = was {
            found.entry(how).or_default().push((k.to_string(), id.to_string()));
        }
    }
    let (how, mut examples) = found.into_iter().max_by_key(|(_, v)| v.len())?;
    let count = examples.len() as u64;
    if count < threshold {
        return None;
    }
    examples.sort_unstable();
    examples.truncate(EXAMPLES);
    Some(Drift::Reshaped { how, count, known: n, examples })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    fn run(known: &[String], file: &[String]) -> Option<Drift> {
        let set: HashSet<&str> = ids(known).into_iter().collect();
        check(known.len() as u64, |id| set.contains(id), || ids(known).into_iter(), &ids(file))
    }

    #[test]
    fn day_to_day_hires_and_leavers_are_no_drift() {
        let known: Vec<String> = (0..100).map(|i| format!("{i:05}")).collect();
        // 10 leave, 20 join.
        let file: Vec<String> = (10..120).map(|i| format!("{i:05}")).collect();
        assert_eq!(run(&known, &file), None);
        // A first sync, and a tiny connector, know too few people to judge.
        assert_eq!(run(&[], &file), None);
        let few: Vec<String> = (0..4).map(|i| format!("{i}")).collect();
        assert_eq!(run(&few, &file), None);
    }

    #[test]
    fn another_customers_export_is_new_ids() {
        let known: Vec<String> = (0..100).map(|i| format!("E{i:04}")).collect();
        let file: Vec<String> = (0..100).map(|i| format!("X-{i}")).collect();
        let Some(Drift::NewIds { known: 100, kept: 0, new: 100, missing_examples, new_examples }) = run(&known, &file) else {
            panic!("{:?}", run(&known, &file))
        };
        assert_eq!(missing_examples, ["E0000", "E0001", "E0002", "E0003", "E0004"]);
        assert_eq!(new_examples.len(), EXAMPLES);
    }

    #[test]
    fn ids_that_change_shape_are_named_by_how() {
        let known: Vec<String> = (1..=100).map(|i| format!("{i:05}")).collect();
        let file: Vec<String> = (1..=100).map(|i| format!("{i}")).collect();
        let Some(Drift::Reshaped { how: Reshape::LeadingZerosLost, count: 100, known: 100, examples }) = run(&known, &file) else {
            panic!("{:?}", run(&known, &file))
        };
        assert_eq!(examples[0], ("00001".to_string(), "1".to_string()));
        let msg = run(&known, &file).unwrap().message("go on");
        assert!(msg.starts_with("100 of the 100 ids last synced lost their leading zeros"), "{msg}");
        assert!(msg.contains("\"00001\" → \"1\""), "{msg}");

        let known: Vec<String> = (1..=100).map(|i| format!("{i}")).collect();
        let file: Vec<String> = (1..=100).map(|i| format!("{i}.0")).collect();
        assert!(matches!(run(&known, &file), Some(Drift::Reshaped { how: Reshape::DecimalSuffix, count: 100, .. })));
        let file: Vec<String> = (1..=100).map(|i| format!("{i:06}")).collect();
        assert!(matches!(run(&known, &file), Some(Drift::Reshaped { how: Reshape::LeadingZerosAdded, count: 100, .. })));
        // A few reshaped (a handful of rows typed by hand) are not a drift.
        let mut file: Vec<String> = known.clone();
        for f in file.iter_mut().take(3) {
            f.push_str(".0");
        }
        assert_eq!(run(&known, &file), None);
    }
}
