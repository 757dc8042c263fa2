//! The file's columns against the last good file, before anything is planned.
//!
//! Why: an HRIS field permission, a changed report or a spreadsheet saved another way gives a
//! file that parses cleanly but is wrong in one column: the Email column arrives empty, or
//! every date is read with day and month exchanged. The change budget stops such a run by a
//! count ("would change the login of 100 of 100 known people"); what the operator has to tell
//! the customer is which column changed, in the customer's terms. This check says it, and
//! stops the run like any safeguard (stored, approvable, overridable).
//!
//! Pure: the last good file's column fill (`ColumnFill`, recorded when a file was synced in
//! full) and this file's in, or the plan's updates (each with what was last synced) for the
//! dates; at most one drift out.

use serde::Serialize;

use super::budget::{EXAMPLES, PERCENT_FLOOR};
use super::{Op, OpKind};
use crate::mapping::fill::ColumnFill;

/// A column filled for at least this share of the last good file's rows …
const WAS_FILLED: f64 = 0.9;
/// … and for at most this share now has been emptied.
const NOW_EMPTY: f64 = 0.1;
/// The share of the people who had a date whose date changed at once for a date column to
/// have drifted: nearly all (a date equal with day and month exchanged, 03-03, stays).
const DATES_CHANGED: f64 = 0.9;

/// What changed in the file's columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "drift", rename_all = "snake_case")]
pub enum ColumnDrift {
    /// A column filled for (nearly) everyone in the last good file is empty or nearly so.
    Emptied {
        /// As the mapping (and the customer's header) names it.
        column: String,
        was_filled: u64,
        was_rows: u64,
        now_filled: u64,
        now_rows: u64,
        /// When the last good file was synced (YYYY-MM-DD).
        last_good: String,
        /// Other columns emptied the same way.
        also: Vec<String>,
    },
    /// Nearly every date of a date column changed at once.
    DatesChanged {
        column: String,
        /// The mapped attribute (`hire_date`), for the mapping's `date` format.
        attribute: String,
        changed: u64,
        /// People who had a date last time (the last good file's filled rows).
        had: u64,
        last_good: Option<String>,
        /// Every change is the same date with day and month exchanged.
        swapped: bool,
        /// (external id, date last synced, date now).
        examples: Vec<(String, String, String)>,
    },
}

impl ColumnDrift {
    pub fn message(&self, go_on: &str) -> String {
        match self {
            ColumnDrift::Emptied { column, was_filled, was_rows, now_filled, now_rows, last_good, also } => {
                let also = match also.as_slice() {
                    [] => String::new(),
                    more => format!(" (so were {})", more.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")),
                };
                format!(
                    "column \"{column}\" was filled for {} of {was_rows} rows in the last good file ({last_good}), {} now ({now_filled} of {now_rows} rows){also}; nothing was pushed, since the value would be emptied for everyone. A field permission or a report changed in the HR system looks like this: ask the customer for the usual export, then {go_on}",
                    percent(*was_filled, *was_rows),
                    percent(*now_filled, *now_rows)
                )
            }
            ColumnDrift::DatesChanged { column, attribute, changed, had, last_good, swapped, examples } => {
                let since = last_good.as_deref().map(|d| format!(" in the last good file ({d})")).unwrap_or_default();
                let how = if *swapped { ", each with day and month exchanged" } else { "" };
                let shown = examples.iter().map(|(id, a, b)| format!("{id}: \"{a}\" → \"{b}\"")).collect::<Vec<_>>().join("; ");
                format!(
                    "every date of column \"{column}\" changed at once: {changed} of the {had} people who had one{since}{how} (for example {shown}); nothing was pushed. An export that now writes dates the other way round looks like this: check attributes.{attribute}.date in the mapping against the file and ask the customer, then {go_on}"
                )
            }
        }
    }
}

/// "100 %", "0 %", never "100 %" for a column not quite full nor "0 %" for one not quite empty.
fn percent(n: u64, of: u64) -> String {
    if of == 0 {
        return "0 %".into();
    }
    let p = (n as f64 * 100.0 / of as f64).round() as u64;
    let p = if n == of {
        100
    } else if n == 0 {
        0
    } else {
        p.clamp(1, 99)
    };
    format!("{p} %")
}

/// This file's columns against the last good file's (synced on `last_good`, YYYY-MM-DD): the
/// column emptied the most, with the others emptied too. A column the mapping no longer reads
/// is no drift; a column absent from a JSON export counts as empty. Too small a file on
/// either side (under `PERCENT_FLOOR` rows) says nothing.
pub fn emptied(last: &ColumnFill, last_good: &str, now: &ColumnFill) -> Option<ColumnDrift> {
    if last.rows < PERCENT_FLOOR || now.rows < PERCENT_FLOOR {
        return None;
    }
    let share = |n: u64, of: u64| n as f64 / of as f64;
    let mut hit: Vec<(&str, u64, u64)> = now
        .filled
        .iter()
        .filter_map(|(c, &n)| {
            let &was = last.filled.get(c)?;
            (share(was, last.rows) >= WAS_FILLED && share(n, now.rows) <= NOW_EMPTY).then_some((c.as_str(), was, n))
        })
        .collect();
    // The biggest fall first; by name among equals.
    hit.sort_by(|a, b| {
        let fall = |(_, was, n): &(&str, u64, u64)| share(*was, last.rows) - share(*n, now.rows);
        fall(b).total_cmp(&fall(a)).then(a.0.cmp(b.0))
    });
    let (&(column, was, n), rest) = hit.split_first()?;
    Some(ColumnDrift::Emptied {
        column: column.to_string(),
        was_filled: was,
        was_rows: last.rows,
        now_filled: n,
        now_rows: now.rows,
        last_good: last_good.to_string(),
        also: rest.iter().map(|(c, _, _)| c.to_string()).collect(),
    })
}

/// A date column of the mapping: the attribute it fills and its source column.
pub struct DateColumn<'a> {
    pub attribute: &'a str,
    pub column: &'a str,
}

/// The plan's updates (with `previous`, the content last synced) against the date columns:
/// a column whose date changed for nearly everyone who had one (`had`: the last good file's
/// filled rows of that column, else the people known) at once.
pub fn dates_changed(ops: &[Op], columns: &[DateColumn], last: Option<(&ColumnFill, &str)>, known: u64) -> Option<ColumnDrift> {
    for c in columns {
        let had = last.and_then(|(f, _)| f.filled.get(c.column).copied()).unwrap_or(known);
        let threshold = ((had as f64 * DATES_CHANGED).ceil() as u64).max(PERCENT_FLOOR);
        let mut changed: Vec<(String, String, String)> = ops
            .iter()
            .filter(|o| o.kind() == OpKind::Update)
            .filter_map(|o| match o {
                Op::Update { user, previous: Some(prev), adopt: false, .. } => {
                    let (a, b) = (prev.attributes().get(c.attribute)?.trim(), user.attributes().get(c.attribute)?.trim());
                    (!a.is_empty() && !b.is_empty() && a != b).then(|| (user.external_id.to_string(), a.to_string(), b.to_string()))
                }
                _ => None,
            })
            .collect();
        if (changed.len() as u64) < threshold {
            continue;
        }
        let swapped = changed.iter().all(|(_, a, b)| day_month_exchanged(a, b));
        let count = changed.len() as u64;
        changed.sort_unstable();
        changed.truncate(EXAMPLES);
        return Some(ColumnDrift::DatesChanged {
            column: c.column.to_string(),
            attribute: c.attribute.to_string(),
            changed: count,
            had,
            last_good: last.map(|(_, d)| d.to_string()),
            swapped,
            examples: changed,
        });
    }
    None
}

/// `2021-03-04` → `2021-04-03`: the same date read with day and month exchanged.
fn day_month_exchanged(a: &str, b: &str) -> bool {
    use chrono::Datelike;
    let parse = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.year() == y.year() && x.day() == y.month() && x.month() == y.day(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserFields;
    use crate::model::{Attributes, Str, User};

    fn fill(rows: u64, cols: &[(&str, u64)]) -> ColumnFill {
        ColumnFill { rows, filled: cols.iter().map(|(c, n)| (c.to_string(), *n)).collect() }
    }

    #[test]
    fn a_column_that_was_full_and_is_now_empty_is_named_with_its_figures() {
        let last = fill(100, &[("Email", 100), ("Department", 98), ("Manager ID", 40)]);
        let now = fill(100, &[("Email", 0), ("Department", 97), ("Manager ID", 0)]);
        let d = emptied(&last, "2026-01-01", &now).expect("drift");
        assert_eq!(
            d,
            ColumnDrift::Emptied {
                column: "Email".into(),
                was_filled: 100,
                was_rows: 100,
                now_filled: 0,
                now_rows: 100,
                last_good: "2026-01-01".into(),
                also: vec![],
            }
        );
        let m = d.message("go on");
        assert!(m.starts_with("column \"Email\" was filled for 100 % of 100 rows in the last good file (2026-01-01), 0 % now"), "{m}");
    }

    #[test]
    fn nearly_empty_counts_and_a_few_blanks_or_a_sparse_column_do_not() {
        let last = fill(200, &[("Email", 199), ("Department", 200), ("Location", 200)]);
        // 5 % of Email left, Department gone too; Location merely half filled.
        let now = fill(200, &[("Email", 10), ("Department", 0), ("Location", 100)]);
        let Some(ColumnDrift::Emptied { column, also, .. }) = emptied(&last, "d", &now) else { panic!() };
        assert_eq!((column.as_str(), also), ("Department", vec!["Email".to_string()]));
        assert_eq!(percent(199, 200), "99 %", "not quite full is never shown as full");
        assert_eq!(percent(1, 1000), "1 %");
        // Half emptied: the change budget's business, not a drift.
        assert_eq!(emptied(&last, "d", &fill(200, &[("Email", 100), ("Department", 190), ("Location", 190)])), None);
        // A column the mapping no longer reads; a column rarely filled before.
        assert_eq!(emptied(&fill(100, &[("Old", 100), ("Note", 30)]), "d", &fill(100, &[("Note", 0)])), None);
        // Too few rows to judge.
        assert_eq!(emptied(&fill(3, &[("Email", 3)]), "d", &fill(3, &[("Email", 0)])), None);
    }

    fn user(id: &str, hired: &str) -> User {
        let mut attributes = Attributes::new();
        attributes.insert("hire_date", hired);
        User::from(UserFields {
            external_id: Str::from(id),
            email: None,
            employee_id: None,
            first_name: Str::from("Ada"),
            last_name: Str::from("Lee"),
            language: Str::from("en"),
            active: true,
            manager: None,
            attributes,
        })
    }

    fn update(id: &str, was: &str, now: &str) -> Op {
        Op::Update { platform_id: format!("p-{id}"), user: Box::new(user(id, now)), adopt: false, previous: Some(Box::new(user(id, was))) }
    }

    #[test]
    fn every_date_changed_is_a_drift_saying_day_and_month_exchanged() {
        let cols = [DateColumn { attribute: "hire_date", column: "Hire Date" }];
        let ops: Vec<Op> = (0..100).map(|i| update(&format!("E{i:03}"), "2021-03-04", "2021-04-03")).collect();
        let last = fill(100, &[("Hire Date", 100)]);
        let d = dates_changed(&ops, &cols, Some((&last, "2026-01-01")), 100).expect("drift");
        let ColumnDrift::DatesChanged { changed: 100, had: 100, swapped: true, ref examples, .. } = d else { panic!("{d:?}") };
        assert_eq!(examples[0], ("E000".into(), "2021-03-04".into(), "2021-04-03".into()));
        let m = d.message("go on");
        assert!(m.contains("every date of column \"Hire Date\" changed at once: 100 of the 100 people"), "{m}");
        assert!(m.contains("day and month exchanged") && m.contains("attributes.hire_date.date"), "{m}");
        // Other changes than a swap are said without it.
        let moved: Vec<Op> = (0..100).map(|i| update(&format!("E{i:03}"), "2021-03-04", "2022-01-01")).collect();
        assert!(matches!(dates_changed(&moved, &cols, None, 100), Some(ColumnDrift::DatesChanged { swapped: false, .. })));
    }

    #[test]
    fn a_few_corrected_dates_are_no_drift() {
        let cols = [DateColumn { attribute: "hire_date", column: "Hire Date" }];
        let ops: Vec<Op> = (0..30).map(|i| update(&format!("E{i:03}"), "2021-03-04", "2021-04-03")).collect();
        assert_eq!(dates_changed(&ops, &cols, Some((&fill(100, &[("Hire Date", 100)]), "d")), 100), None);
        // A small connector: under the floor.
        let ops: Vec<Op> = (0..3).map(|i| update(&format!("E{i}"), "2021-03-04", "2021-04-03")).collect();
        assert_eq!(dates_changed(&ops, &cols, None, 3), None);
    }
}
