//! How full each mapped column of one file is: per source column (by the name the mapping
//! gives it, which is the customer's header name), how many rows have a value. Counted as the
//! records are mapped, at the cost of one comparison per cell.
//!
//! Why: a column an HRIS report stops filling (a field permission, a changed report) parses
//! cleanly and would empty that value for everyone; the last good file's fill is what such a
//! file is compared with before anything is planned (`crate::plan::profile`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::format::Record;

/// Rows read and, per mapped column, rows with a non-blank value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnFill {
    /// Rows whose cells were read (in `[scope]`; a row whose fields are shifted has none).
    pub rows: u64,
    /// Column name → rows with a value there (every mapped column, 0 when never filled).
    pub filled: BTreeMap<String, u64>,
}

/// The counts of one batch, by column index (`Mapper::columns`), named at the end.
#[derive(Debug, Default)]
pub(super) struct Counter {
    rows: u64,
    filled: Vec<u64>,
}

impl Counter {
    pub(super) fn count(&mut self, record: &Record) {
        if self.filled.len() < record.len() {
            self.filled.resize(record.len(), 0);
        }
        self.rows += 1;
        for (i, v) in record.values().enumerate() {
            if v.is_some_and(|v| !super::is_blank(v)) {
                self.filled[i] += 1;
            }
        }
    }

    pub(super) fn merge(&mut self, other: Counter) {
        if self.filled.len() < other.filled.len() {
            self.filled.resize(other.filled.len(), 0);
        }
        self.rows += other.rows;
        for (i, n) in other.filled.into_iter().enumerate() {
            self.filled[i] += n;
        }
    }

    /// Takes back a row counted (a footer, `super::footer`), whose filled columns were these.
    pub(super) fn uncount(&mut self, filled: &[usize]) {
        self.rows = self.rows.saturating_sub(1);
        for &i in filled {
            if let Some(n) = self.filled.get_mut(i) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// By column name; a column no row reached is counted 0.
    pub(super) fn named(self, columns: &[String]) -> ColumnFill {
        let filled = columns.iter().enumerate().map(|(i, c)| (c.clone(), self.filled.get(i).copied().unwrap_or(0))).collect();
        ColumnFill { rows: self.rows, filled }
    }
}
