//! Why a run did not end as planned, kept typed until it is shown. The run's result carries
//! it (`RunResult::failure`): the CLI's exit code and the daemon's retry come from its
//! `Classify` (the wrapped module error's own, or the variant's); the report keeps its kind
//! (`Report::failure`) for history and `--json`, and its text (`Report::message`, made by
//! `Display` when the run ends) for the people who read the summary, the webhook and the
//! status page.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::ConfigError;
use crate::exit::{Classify, Exit};
use crate::format::FormatError;
use crate::plan::Safeguard;
use crate::platform::PlatformError;
use crate::report::FailureKind;
use crate::source::SourceError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Connecting to the source, listing, picking or downloading the file.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The file could not be read or mapped (a malformed record, a bad date order).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The platform refused, failed or could not be reached.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The state store: its lease, the snapshot, history.
    #[error(transparent)]
    State(#[from] StateError),
    /// The configuration lacks what the run needs (the platform section).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The file is refused by a safeguard before anything is planned: empty, or a mapped
    /// column missing (`FileRefusal::of` says which).
    #[error("{error}; nothing was pushed.{}", refusal_next_step(.refusal, .connector))]
    FileRefused { connector: String, refusal: FileRefusal, error: Box<FormatError> },
    /// A safeguard stopped the plan; `kept` is the run whose plan `approve` can apply.
    #[error("{}{}", .safeguard.message(.connector), approve_hint(.kept))]
    Stopped { connector: String, safeguard: Safeguard, kept: Option<String> },
    /// `[groups]`: the run would change more group memberships than `max_updates` allows;
    /// the people were synced, the groups left as they are (`sync::groups`).
    #[error("{}", .over.message(.connector))]
    GroupsHeld { connector: String, over: Box<crate::plan::groups::OverLimit> },
    /// The daemon's run found the file of a plan a safeguard stopped, not yet approved: the
    /// connector stays stopped (not "no new file") until someone approves or a new file comes.
    #[error(
        "waiting for approval: run {run_id} stopped on this file ({rule}); `rostersync approve {run_id} --reason \"…\"` applies it, a new file replaces it"
    )]
    AwaitingApproval { run_id: String, rule: String },
    /// No new file for longer than `stale_after`: the export has stopped coming.
    #[error(
        "the export is stale: no new file for {} (last one, {last_path}, synced {}), above stale_after = {}; ask the customer whether their HR export still runs",
        whole_seconds(.age),
        .synced_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        humantime::format_duration(Duration::clone(.stale_after))
    )]
    Stale { last_path: String, synced_at: DateTime<Utc>, age: Duration, stale_after: Duration },
    /// The run went past `[sync] max_run_time`: it stopped where it was (a hung or very slow
    /// platform). What it sent is found by the next run, as after a crash.
    #[error("the run of {connector} went past max_run_time ({}) and was stopped where it was; what it sent is found by the next run. A hung or very slow platform looks like this: check it, or raise [connectors.{connector}.sync] max_run_time", whole_seconds(.max_run_time))]
    Deadline { connector: String, max_run_time: Duration },
    /// Some operations failed; the others were applied. `scoped`: an `--only` run, whose
    /// file is not recorded as synced in any case.
    #[error("{failed} operation(s) failed (see errors); the others were applied{}", retried_next(.scoped))]
    OperationsFailed { failed: u64, scoped: bool },
    /// `approve`: the plan to apply is no longer what this run would send.
    #[error(
        "approval refused: {mismatch}; nothing was pushed. Re-run `rostersync sync {connector} --dry-run` to see the plan for the file as it is now"
    )]
    ApprovalRefused { connector: String, mismatch: Box<ApprovalMismatch> },
    /// The platform lease (`adoption`) could not be renewed in time: the run stopped where
    /// it was. `why` is what the store last answered.
    #[error(
        "stopped: the platform lease ({key}) could not be renewed before it lapses (lease_ttl {:.1}s): {why}. Another connector could otherwise bind the accounts this run is binding; the next run looks up what this one sent. Check the state store",
        .ttl.as_secs_f64()
    )]
    PlatformLeaseLapsed { key: String, ttl: Duration, why: String },
    /// `--file` could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    /// A worker thread of the run (download, parse, hash) ended without an answer.
    #[error("the {what} thread failed{}", .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Thread { what: &'static str, detail: Option<String> },
    /// A run that was to push found no platform client (a bug: only a dry run goes without).
    #[error("no platform client")]
    NoPlatformClient,
    /// The run's task panicked (a bug); the daemon keeps going.
    #[error("the run of {connector} crashed ({detail}); this is a bug in rostersync, please report it with the log")]
    Crashed { connector: String, detail: String },
}

/// Why a file is refused before planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRefusal {
    /// No data rows: a safeguard stop, passed with `--allow-mass-change`.
    NoDataRows,
    /// A mapped column is missing: a data error, the mapping or the export must change.
    MissingColumn,
}

impl FileRefusal {
    /// Which refusal a format error is, if it is one.
    pub fn of(e: &FormatError) -> Option<FileRefusal> {
        match e {
            FormatError::Empty { .. } => Some(FileRefusal::NoDataRows),
            FormatError::MissingColumns { .. } => Some(FileRefusal::MissingColumn),
            _ => None,
        }
    }

    /// The safeguard rule, as reports and history name it.
    pub fn rule(self) -> &'static str {
        match self {
            FileRefusal::NoDataRows => "no_data_rows",
            FileRefusal::MissingColumn => "missing_column",
        }
    }
}

fn refusal_next_step(r: &FileRefusal, connector: &str) -> String {
    match r {
        FileRefusal::NoDataRows => format!(
            " Check the export with the customer; to apply it anyway: `rostersync sync {connector} --allow-mass-change --reason \"…\"`"
        ),
        FileRefusal::MissingColumn => {
            format!(
                " Fix the mapping (mappings/…) or ask the customer for the usual export; `rostersync test {connector}` shows the header"
            )
        }
    }
}

/// A whole run's failed operations are sent again by the next run (the file is not recorded).
fn retried_next(scoped: &bool) -> &'static str {
    if *scoped { "" } else { ". The next run retries them" }
}

fn approve_hint(kept: &Option<String>) -> String {
    kept.as_deref()
        .map(|run| {
            format!(". Or apply exactly this plan (`rostersync plan show {run}` lists it): `rostersync approve {run} --reason \"…\"`")
        })
        .unwrap_or_default()
}

/// What differs between a stored plan and the run that was to apply it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalMismatch {
    #[error("the file is no longer the one plan {plan} was made from ({was_path}, sha256 {}…; now {now_path}, sha256 {}…)", short(.was_sha256), short(.now_sha256))]
    File { plan: String, was_path: String, was_sha256: String, now_path: String, now_sha256: String },
    #[error("the state of connector \"{connector}\" changed since plan {plan} was made (another run synced meanwhile)")]
    State { plan: String, connector: String },
    #[error("the plan made now from the same file and state differs from plan {plan} (the mapping or the connector's settings changed)")]
    Plan { plan: String },
}

/// An age as the report shows it: whole seconds.
fn whole_seconds(d: &Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

impl RunError {
    /// The kind, for the report (history, `--json`).
    pub fn kind(&self) -> FailureKind {
        match self {
            RunError::Source(_) => FailureKind::Source,
            RunError::Format(_) => FailureKind::Format,
            RunError::Platform(_) | RunError::NoPlatformClient => FailureKind::Platform,
            RunError::State(_) => FailureKind::State,
            RunError::Config(_) => FailureKind::Config,
            RunError::FileRefused { .. } => FailureKind::FileRefused,
            RunError::Stopped { .. } | RunError::GroupsHeld { .. } => FailureKind::Stopped,
            RunError::AwaitingApproval { .. } => FailureKind::AwaitingApproval,
            RunError::Stale { .. } => FailureKind::Stale,
            RunError::Deadline { .. } => FailureKind::Deadline,
            RunError::OperationsFailed { .. } => FailureKind::OperationsFailed,
            RunError::ApprovalRefused { .. } => FailureKind::ApprovalRefused,
            RunError::PlatformLeaseLapsed { .. } => FailureKind::PlatformLeaseLapsed,
            RunError::Unreadable { .. } => FailureKind::Unreadable,
            RunError::Thread { .. } | RunError::Crashed { .. } => FailureKind::Crashed,
        }
    }
}

impl Classify for RunError {
    fn exit(&self) -> Exit {
        match self {
            RunError::Source(e) => e.exit(),
            RunError::Format(e) => e.exit(),
            RunError::Platform(e) => e.exit(),
            RunError::State(e) => e.exit(),
            RunError::Config(e) => e.exit(),
            // A data error by the exit codes, though it stops the run like a safeguard.
            RunError::FileRefused { refusal: FileRefusal::MissingColumn, .. } => Exit::Data,
            RunError::FileRefused { refusal: FileRefusal::NoDataRows, .. } => Exit::Stopped,
            RunError::Stopped { .. }
            | RunError::ApprovalRefused { .. }
            | RunError::AwaitingApproval { .. }
            | RunError::GroupsHeld { .. } => Exit::Stopped,
            RunError::Stale { .. } | RunError::Unreadable { .. } => Exit::Data,
            RunError::OperationsFailed { .. } | RunError::NoPlatformClient | RunError::Deadline { .. } => Exit::Platform,
            RunError::PlatformLeaseLapsed { .. } | RunError::Thread { .. } | RunError::Crashed { .. } => Exit::Other,
        }
    }

    fn retriable(&self) -> bool {
        match self {
            RunError::Source(e) => e.retriable(),
            RunError::Format(e) => e.retriable(),
            RunError::Platform(e) => e.retriable(),
            RunError::State(e) => e.retriable(),
            RunError::Config(e) => e.retriable(),
            // The store may be back; a bug may depend on the data or on timing.
            RunError::PlatformLeaseLapsed { .. } | RunError::Crashed { .. } => true,
            // The platform may answer again by the next attempt.
            RunError::Deadline { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_comes_from_the_variant_or_the_wrapped_error() {
        let stale = RunError::Stale {
            last_path: "/out/a.csv".into(),
            synced_at: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc),
            age: Duration::from_secs(3 * 86400),
            stale_after: Duration::from_secs(86400),
        };
        assert_eq!((stale.exit(), stale.retriable(), stale.kind()), (Exit::Data, false, FailureKind::Stale));
        assert!(
            stale.to_string().starts_with("the export is stale: no new file for 3days (last one, /out/a.csv, synced 2026-01-01T00:00:00Z)")
        );
        let lost = RunError::from(StateError::LeaseLost { connector: "acme".into(), detail: "gone".into() });
        assert_eq!((lost.exit(), lost.retriable(), lost.kind()), (Exit::Other, true, FailureKind::State));
        let failed = RunError::OperationsFailed { failed: 2, scoped: true };
        assert_eq!(failed.exit(), Exit::Platform);
        assert_eq!(failed.to_string(), "2 operation(s) failed (see errors); the others were applied");
    }
}
