//! The result file (`[connectors.NAME.result]`): after a run that read an export, a CSV
//! written next to it on the customer's server (or folder) saying which rows were not synced
//! as they are and why, then a summary line. `render` is pure; `deliver` writes it with the
//! source's own connection (`Source::put`: a temporary name, then a rename). A result that
//! cannot be written is a warning: the sync it reports on stands.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::changes::PersonKind;
use crate::report::{Report, RunOutcome};
use crate::source::{SourceConfig, SourceError};

/// `[connectors.NAME.result] when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultWhen {
    /// After every run that read a file.
    Always,
    /// Only when a row was not synced as it is, or the run stopped or failed.
    #[default]
    Problems,
}

/// Where and when the result file is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRule {
    /// "/results/{file}.result.csv": `{file}` the export's name, `{run}` the run id, `{date}`
    /// the run's date (UTC, YYYY-MM-DD).
    pub path: String,
    pub when: ResultWhen,
}

/// The placeholders a result path may hold.
pub const PLACEHOLDERS: [&str; 3] = ["{file}", "{run}", "{date}"];

/// A result path's placeholders that are not known (for `check`).
pub fn unknown_placeholders(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            out.push(rest[open..].to_string());
            break;
        };
        let p = &rest[open..open + close + 1];
        if !PLACEHOLDERS.contains(&p) {
            out.push(p.to_string());
        }
        rest = &rest[open + close + 1..];
    }
    out
}

/// The path of this run's result file.
pub fn path_for(rule: &ResultRule, file: &str, run_id: &str, at: DateTime<Utc>) -> String {
    rule.path.replace("{file}", file).replace("{run}", run_id).replace("{date}", &at.format("%Y-%m-%d").to_string())
}

/// One line of the result: a row that was not synced as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub line: u64,
    pub id: String,
    pub outcome: &'static str,
    pub reason: String,
}

/// Which report errors are the file's rows (the first `invalid_listed`), the rest being
/// operations the platform refused (`sync` adds them after the rows' own).
pub fn lines(report: &Report, invalid_listed: usize) -> Vec<Line> {
    let mut out = Vec::new();
    // One line per row: a row's several faults are one reason.
    let mut invalid: BTreeMap<u64, Line> = BTreeMap::new();
    for e in report.errors.iter().take(invalid_listed) {
        let reason = match &e.column {
            Some(c) if !e.message.contains(c.as_str()) => format!("{c}: {}", e.message),
            _ => e.message.clone(),
        };
        invalid
            .entry(e.line)
            .and_modify(|l| {
                l.reason.push_str("; ");
                l.reason.push_str(&reason);
            })
            .or_insert_with(|| Line { line: e.line, id: e.external_id.clone().unwrap_or_default(), outcome: "invalid", reason });
    }
    out.extend(invalid.into_values());
    for e in report.errors.iter().skip(invalid_listed) {
        out.push(Line { line: e.line, id: e.external_id.clone().unwrap_or_default(), outcome: "failed", reason: e.message.clone() });
    }
    let stopped = report.outcome == RunOutcome::Stopped;
    for op in &report.operations {
        let (outcome, reason) = match op.kind {
            PersonKind::Conflict => ("conflict", op.reason.to_string()),
            // A stopped run applied nothing: every change it planned waits.
            _ if stopped => (
                "held",
                format!(
                    "{} not applied: the run was stopped by the {} safeguard",
                    op.kind.word(),
                    report.stopped_by.as_deref().unwrap_or("a")
                ),
            ),
            _ => continue,
        };
        let Some(line) = op.line else { continue };
        out.push(Line { line, id: op.external_id.clone(), outcome, reason });
    }
    out.sort_by_key(|l| l.line);
    out
}

/// The summary: what the run did with the file, in a sentence.
pub fn summary(report: &Report) -> String {
    let c = &report.counts;
    let what = match report.outcome {
        RunOutcome::Ok => "synced".to_string(),
        RunOutcome::NoNewFile => "not synced (no new file)".to_string(),
        RunOutcome::Stopped => format!("stopped, nothing was changed: {}", report.message.as_deref().unwrap_or("a safeguard stopped it")),
        RunOutcome::Failed => format!("failed: {}", report.message.as_deref().unwrap_or("see the run's report")),
    };
    format!(
        "{} rows read, {} valid, {} invalid; {} created, {} updated, {} deactivated, {} deleted, {} conflicts, {} failed; {what}",
        c.rows,
        c.valid,
        c.invalid,
        c.created + c.adopted + c.rekeyed,
        c.updated,
        c.deactivated,
        c.deleted,
        c.conflicts,
        c.failed
    )
}

/// The result file's text, or None when `when = "problems"` and there is none. Redacted
/// like every output.
pub fn render(report: &Report, invalid_listed: usize, when: ResultWhen) -> Option<String> {
    let lines = lines(report, invalid_listed);
    let clean = lines.is_empty() && report.outcome == RunOutcome::Ok && report.counts.invalid == 0;
    if clean && when == ResultWhen::Problems {
        return None;
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut rows: Vec<[String; 4]> = vec![["line".into(), "id".into(), "outcome".into(), "reason".into()]];
    rows.extend(lines.into_iter().map(|l| [l.line.to_string(), l.id, l.outcome.to_string(), l.reason]));
    let left_out = report.errors_left_out + report.operations_left_out;
    if left_out > 0 {
        rows.push([String::new(), String::new(), "more".into(), format!("{left_out} more rows are not listed; the run's report has them")]);
    }
    rows.push([String::new(), String::new(), "summary".into(), summary(report)]);
    for r in &rows {
        w.write_record(r).ok()?;
    }
    let bytes = w.into_inner().ok()?;
    Some(crate::redact::redacted(String::from_utf8_lossy(&bytes)))
}

/// Writes the result on the source, one attempt (blocking: run it off the async threads).
pub fn deliver(source: &SourceConfig, path: &str, text: &str) -> Result<(), SourceError> {
    let mut src = crate::source::connect(source)?;
    src.put(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RowError;

    fn report() -> Report {
        let mut r = Report::new("acme", "run-1", false);
        r.counts.rows = 4;
        r.counts.valid = 2;
        r.counts.invalid = 2;
        r.errors = vec![
            RowError { line: 3, column: Some("Email".into()), message: "not a valid address".into(), external_id: Some("E3".into()) },
            RowError { line: 3, column: None, message: "Last Name is empty".into(), external_id: Some("E3".into()) },
            RowError { line: 5, column: None, message: "no employee id".into(), external_id: None },
            RowError { line: 2, column: None, message: "update of \"E1\" failed (HTTP 500): boom".into(), external_id: Some("E1".into()) },
        ];
        r
    }

    #[test]
    fn one_line_per_row_then_the_summary() {
        let text = render(&report(), 3, ResultWhen::Problems).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "line,id,outcome,reason");
        assert_eq!(lines[1], "2,E1,failed,\"update of \"\"E1\"\" failed (HTTP 500): boom\"");
        assert_eq!(lines[2], "3,E3,invalid,Email: not a valid address; Last Name is empty");
        assert_eq!(lines[3], "5,,invalid,no employee id");
        assert!(lines[4].starts_with(",,summary,\"4 rows read, 2 valid, 2 invalid;"), "{}", lines[4]);
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn a_clean_run_writes_only_when_always() {
        let clean = Report::new("acme", "run-1", false);
        assert_eq!(render(&clean, 0, ResultWhen::Problems), None);
        let text = render(&clean, 0, ResultWhen::Always).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn paths_and_placeholders() {
        let rule = ResultRule { path: "/results/{file}.{date}.{run}.csv".into(), when: ResultWhen::Always };
        let at = DateTime::parse_from_rfc3339("2026-12-07T01:02:03Z").unwrap().with_timezone(&Utc);
        assert_eq!(path_for(&rule, "e.csv", "r1", at), "/results/e.csv.2026-12-07.r1.csv");
        assert_eq!(unknown_placeholders("/r/{file}-{name}.csv"), vec!["{name}".to_string()]);
        assert_eq!(unknown_placeholders("/r/{file"), vec!["{file".to_string()]);
        assert!(unknown_placeholders("/r/{file}.{run}.{date}").is_empty());
    }
}
