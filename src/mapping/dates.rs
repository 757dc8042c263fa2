//! The mapping's dated fields (issue 27): `[fields] start_date` and `end_date`, read like
//! any field (column or template, transforms, map, default, `date` format) and kept beside
//! the user rather than in it: they decide when a person is active (`plan::lifecycle`), and
//! are not sent to the platform.

use serde::{Deserialize, Serialize};

use super::rules::FieldRule;

/// The dated fields a mapping reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateRules {
    pub start: Option<FieldRule>,
    pub end: Option<FieldRule>,
}

impl DateRules {
    pub fn is_empty(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }

    /// The columns they read.
    pub fn columns(&self) -> Vec<&str> {
        self.start.iter().chain(&self.end).flat_map(FieldRule::columns).collect()
    }
}

/// One person's dates, as the file gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dates {
    /// First day of work: no account before `create_lead`, inactive until then.
    pub start: Option<chrono::NaiveDate>,
    /// Last day of work: active until this date, deactivated from it on.
    pub end: Option<chrono::NaiveDate>,
}

impl Dates {
    pub fn is_empty(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }
}

/// A value the field rule made (ISO 8601 once its `date` format read it) as a date.
pub(super) fn iso(v: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").map_err(|_| {
        format!(
            "\"{}\" is not a date; give the field a date format (date = \"%d/%m/%Y\") or write dates as YYYY-MM-DD",
            crate::text::excerpt(v)
        )
    })
}
