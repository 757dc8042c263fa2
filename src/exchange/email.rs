//! Notices to the customer's contact (`[smtp]`, `[connectors.NAME.notify] email`): one
//! email per run that found invalid rows, stopped at a safeguard, or found the export stale,
//! and at most one per problem until it changes (`Problem::key`, compared with the runs
//! before in the history). `problem_of`, `already_told` and `compose` are pure; `send` is
//! lettre's SMTP client. The text is redacted like every output.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::exit::{Classify, Exit};
use crate::report::{Report, RunOutcome};
use crate::secret::{SecretError, SecretRef};

/// How long one SMTP exchange may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Lines named in one email; the result file has them all.
const MAX_LINES: usize = 50;

/// `[smtp] tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: a relay on this machine or a test server only.
    None,
}

/// The mail server notices go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub from: Mailbox,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    pub tls: SmtpTls,
}

/// Who hears about a connector's problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRule {
    pub email: Vec<Mailbox>,
}

/// Why a notice could not be sent (a warning: the run it is about stands).
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("the SMTP password: {0}")]
    Password(#[from] SecretError),
    #[error("cannot build the email: {0}")]
    Build(String),
    #[error("SMTP server {host}:{port} refused or failed the email: {detail}")]
    Send { host: String, port: u16, detail: String },
}

impl Classify for EmailError {
    fn exit(&self) -> Exit {
        match self {
            EmailError::Password(_) => Exit::Config,
            EmailError::Build(_) => Exit::Other,
            EmailError::Send { .. } => Exit::Connection,
        }
    }
    fn retriable(&self) -> bool {
        matches!(self, EmailError::Send { .. })
    }
}

/// A problem the customer can fix at the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Rows that were not synced because they are invalid: (line, reason), the first ones.
    Invalid { file: String, sha256: String, count: u64, lines: Vec<(u64, String)> },
    /// The run stopped at a safeguard: nothing was changed.
    Stopped { file: Option<String>, sha256: Option<String>, rule: String, message: String },
    /// No new export for longer than `stale_after`.
    Stale { message: String },
}

impl Problem {
    /// The same problem twice has the same key: one notice until it changes.
    pub fn key(&self) -> String {
        match self {
            Problem::Invalid { sha256, .. } => format!("invalid:{sha256}"),
            Problem::Stopped { sha256, rule, .. } => format!("stopped:{rule}:{}", sha256.as_deref().unwrap_or("")),
            Problem::Stale { .. } => "stale".to_string(),
        }
    }
}

fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// The problem a run's report shows, if any. `invalid_listed` of its errors are the file's
/// rows (None: unknown, as for a report from the history, where only the key matters).
pub fn problem_of(report: &Report, invalid_listed: Option<usize>) -> Option<Problem> {
    let file = report.file.as_ref();
    if report.stale {
        return Some(Problem::Stale { message: report.message.clone().unwrap_or_default() });
    }
    if report.outcome == RunOutcome::Stopped
        && report.failure != Some(crate::report::FailureKind::AwaitingApproval)
        && let Some(rule) = &report.stopped_by
    {
        return Some(Problem::Stopped {
            file: file.map(|f| file_name(&f.path)),
            sha256: file.map(|f| f.sha256.clone()),
            rule: rule.clone(),
            message: report.message.clone().unwrap_or_default(),
        });
    }
    let f = file?;
    (report.counts.invalid > 0).then(|| {
        let lines = report
            .errors
            .iter()
            .take(invalid_listed.unwrap_or(0))
            .map(|e| match &e.column {
                Some(c) if !e.message.contains(c.as_str()) => (e.line, format!("{c}: {}", e.message)),
                _ => (e.line, e.message.clone()),
            })
            .collect();
        Problem::Invalid { file: file_name(&f.path), sha256: f.sha256.clone(), count: report.counts.invalid, lines }
    })
}

/// Whether the runs before this one (newest first) told the customer of this problem
/// already: the last run that had a problem had this one, with no clean sync since.
pub fn already_told(problem: &Problem, earlier: &[Report]) -> bool {
    for r in earlier {
        if let Some(p) = problem_of(r, None) {
            return p.key() == problem.key();
        }
        // A sync without a problem: whatever was wrong was fixed, and may be told again.
        if r.outcome == RunOutcome::Ok && r.file.is_some() {
            return false;
        }
    }
    false
}

/// Subject and body of the notice.
pub fn compose(problem: &Problem, connector: &str, customer: &str) -> (String, String) {
    let (subject, body) = match problem {
        Problem::Invalid { file, count, lines, .. } => {
            let mut body = format!(
                "The HR export {file} had {count} row(s) that could not be synced for {customer}. Everyone else was synced; the people on these rows keep what they had until the rows are fixed.\n\nFix these rows in the HR system, then send the export again:\n\n"
            );
            for (line, reason) in lines.iter().take(MAX_LINES) {
                body.push_str(&format!("  line {line}: {reason}\n"));
            }
            if lines.len() > MAX_LINES || (lines.len() as u64) < *count {
                body.push_str("  … and more: the result file next to the export lists every row.\n");
            }
            (format!("{customer}: {count} row(s) of {file} were not synced"), body)
        }
        Problem::Stopped { file, rule, message, .. } => (
            format!("{customer}: the sync of {} was stopped, nothing was changed", file.as_deref().unwrap_or("the export")),
            format!(
                "The sync of {} was stopped by a safeguard ({rule}) before anything was changed:\n\n  {message}\n\nIf the export is wrong (a partial or empty file, another company's file, a changed column), send a corrected export. If the change is intended, tell your integration contact so they can approve it.\n",
                file.as_deref().unwrap_or("the export")
            ),
        ),
        Problem::Stale { message } => (
            format!("{customer}: no new HR export has arrived"),
            format!(
                "No new HR export has arrived for {customer}:\n\n  {message}\n\nCheck that the scheduled export from the HR system still runs and reaches the SFTP server.\n"
            ),
        ),
    };
    let body = format!("{body}\n(connector {connector}; sent by rostersync)\n");
    (crate::redact::redacted(subject), crate::redact::redacted(body))
}

/// Sends one notice to every address of the rule.
pub async fn send(smtp: &Smtp, to: &NotifyRule, subject: &str, body: &str) -> Result<(), EmailError> {
    let mut message = Message::builder().from(smtp.from.clone()).subject(subject);
    for m in &to.email {
        message = message.to(m.clone());
    }
    let message = message.body(body.to_string()).map_err(|e| EmailError::Build(e.to_string()))?;
    let send_err = |e: lettre::transport::smtp::Error| EmailError::Send {
        host: smtp.host.clone(),
        port: smtp.port,
        detail: crate::redact::redacted(e.to_string()),
    };
    let builder = match smtp.tls {
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(send_err)?,
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(send_err)?,
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    };
    let mut builder = builder.port(smtp.port).timeout(Some(TIMEOUT));
    if let Some(user) = &smtp.username {
        let password = match &smtp.password {
            Some(p) => p.read("the SMTP password")?,
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    builder.build().send(message).await.map_err(send_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FileFingerprint, RowError};

    fn with_invalid(sha: &str) -> Report {
        let mut r = Report::new("acme", "r", false);
        r.file = Some(FileFingerprint { path: "/exports/e.csv".into(), size: 1, mtime: None, sha256: sha.into() });
        r.counts.invalid = 1;
        r.errors = vec![RowError { line: 4, column: Some("Email".into()), message: "not a valid address".into(), external_id: None }];
        r
    }

    #[test]
    fn invalid_rows_are_told_once_per_file_until_a_clean_sync() {
        let p = problem_of(&with_invalid("a"), Some(1)).unwrap();
        assert_eq!(
            p,
            Problem::Invalid { file: "e.csv".into(), sha256: "a".into(), count: 1, lines: vec![(4, "Email: not a valid address".into())] }
        );
        let quiet = Report { outcome: RunOutcome::NoNewFile, ..Report::new("acme", "q", false) };
        assert!(already_told(&p, &[quiet.clone(), with_invalid("a")]));
        assert!(!already_told(&p, &[with_invalid("b")]), "another file is another problem");
        let mut clean = with_invalid("c");
        clean.counts.invalid = 0;
        assert!(!already_told(&p, &[clean, with_invalid("a")]), "fixed in between: told again");
        assert!(!already_told(&p, &[]));
    }

    #[test]
    fn the_notice_names_the_file_the_lines_and_what_to_do() {
        let p = problem_of(&with_invalid("a"), Some(1)).unwrap();
        let (subject, body) = compose(&p, "acme", "Acme Corp");
        assert_eq!(subject, "Acme Corp: 1 row(s) of e.csv were not synced");
        assert!(body.contains("line 4: Email: not a valid address"), "{body}");
        assert!(body.contains("Fix these rows"), "{body}");
        assert!(body.contains("connector acme"), "{body}");
        let stale = Report { stale: true, message: Some("no new file for 9 days".into()), ..Report::new("acme", "s", false) };
        let (subject, _) = compose(&problem_of(&stale, None).unwrap(), "acme", "Acme Corp");
        assert!(subject.contains("no new HR export"), "{subject}");
    }
}
