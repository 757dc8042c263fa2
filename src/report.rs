//! The run report: what `--json` prints, what history keeps, what humans read.

use serde::{Deserialize, Serialize};

use crate::model::{FileFingerprint, RowError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    Ok,
    NoNewFile,
    Stopped,
    Failed,
}

/// What a run did, one person in one count: created + adopted + rekeyed + updated +
/// deactivated + deleted + unchanged + failed + conflicts = valid rows + people absent from
/// the file (`Counts::people`). Absentees left alone (on_missing = ignore, or held by an
/// unreadable row) are unchanged; so is a re-hired leaver, whose account the new id took.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub rows: u64,
    pub valid: u64,
    pub invalid: u64,
    pub created: u64,
    pub updated: u64,
    pub deactivated: u64,
    pub deleted: u64,
    /// Platform accounts taken over (first sync, 409 on create), bound to their person.
    #[serde(default)]
    pub adopted: u64,
    /// Re-hires: a leaver's account moved to their new id.
    #[serde(default)]
    pub rekeyed: u64,
    /// People left out because their account is someone else's (see errors).
    #[serde(default)]
    pub conflicts: u64,
    pub unchanged: u64,
    pub failed: u64,
    /// People of the file given no account this run by the lifecycle (`lifecycle`): old
    /// leavers, protected accounts never synced.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
}

impl Counts {
    /// Every person counted once: the sum of the outcome counts.
    pub fn people(&self) -> u64 {
        self.created
            + self.adopted
            + self.rekeyed
            + self.updated
            + self.deactivated
            + self.deleted
            + self.unchanged
            + self.failed
            + self.conflicts
            + self.skipped
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub connector: String,
    /// The platform target the run sent to (`config::Target::name`: the `name` key, else
    /// the URL's host and path; never the token). None in runs recorded before targets.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    pub run_id: String,
    pub outcome: RunOutcome,
    pub dry_run: bool,
    pub file: Option<FileFingerprint>,
    pub counts: Counts,
    /// The first errors (at most `MAX_LISTED` of them, each message bounded).
    pub errors: Vec<RowError>,
    /// Errors not listed above because the list is capped: the counts have every one.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub errors_left_out: u64,
    /// The safeguard rule that stopped the run, if any.
    pub stopped_by: Option<String>,
    /// The export stopped coming: no new file for longer than `stale_after`.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub stale: bool,
    /// What the engineer should know about writes that succeeded: users adopted after a
    /// conflict, managers that could not be linked yet.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub notes: Vec<String>,
    /// A one-line reason for stopped and failed runs, with what to do next.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    /// What ended a failed or stopped run, by kind (`message` is its text): for a reader of
    /// the history or of `--json` that decides on it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failure: Option<FailureKind>,
    pub duration_ms: u64,
    /// Each operation of the plan, person by person (for a stopped run: what it would have
    /// done). Whole here; the human summary shows the first ones.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub operations: Vec<crate::changes::PersonOp>,
    /// Operations not listed above (the list is capped unless asked for whole).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub operations_left_out: u64,
    /// Who let this run past a safeguard, when and why (`approve`, `--allow-mass-change`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub approval: Option<Approval>,
    /// A stopped run whose plan was kept, or a daemon run waiting for that approval: the
    /// command that applies exactly that plan.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub approve_with: Option<String>,
    /// The state had run history but no snapshot (a new, replaced or emptied DB): this run
    /// rebuilt it from the platform. Typed, so the daemon notifies it (`attention`).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub state_lost: bool,
    /// Platform accounts this connector could not place (an externalId in neither the file,
    /// its state nor another connector's) on a first sync or a lost state: possibly leavers
    /// left active. Named in `notes`, never touched; the daemon notifies them.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub unplaced: u64,
    /// People absent from the file left as they were, leavers included, because rows of the
    /// file cannot be told apart (no readable id, or one id on several rows): held until
    /// those rows are fixed, run after run. The run synced the rest, but is not plainly `ok`:
    /// the summary says held and the daemon calls for attention.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub held: u64,
    /// `[groups]`: what the run did to the groups made from attribute values (a dry run:
    /// would do). Absent when the mapping has no `[groups]` or the run did not reach them.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub groups: Option<crate::plan::groups::GroupsReport>,
    /// Who the employee lifecycle kept from the platform, or left as they are (issue 27).
    #[serde(skip_serializing_if = "crate::plan::lifecycle::Held::is_empty", default)]
    pub lifecycle: crate::plan::lifecycle::Held,
}

/// The kind of a run's failure: the variant of `sync::RunError`, without its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The source: connecting, listing, picking or downloading the file.
    Source,
    /// The file could not be read or mapped.
    Format,
    Platform,
    State,
    Config,
    /// The file was refused before planning (no data rows, a mapped column missing).
    FileRefused,
    /// A safeguard stopped the plan (`stopped_by` names it).
    Stopped,
    /// The file of a stopped plan again, not yet approved: still stopped, already notified.
    AwaitingApproval,
    /// No new file for longer than `stale_after`.
    Stale,
    /// The run went past `[sync] max_run_time` and was stopped where it was.
    Deadline,
    /// Some operations failed, the others were applied.
    OperationsFailed,
    /// `approve`: the file, the state or the plan is no longer the stored plan's.
    ApprovalRefused,
    /// The platform lease could not be renewed in time.
    PlatformLeaseLapsed,
    /// `--file` could not be read.
    Unreadable,
    /// A bug: a thread of the run, or the run itself, ended without an answer.
    Crashed,
}

/// A person's go-ahead for a run a safeguard stops (or would stop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The OS user who ran the command.
    pub by: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub reason: String,
    /// The stopped run whose stored plan this applies (`rostersync approve RUN_ID`); None
    /// for `--allow-mass-change`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub plan_of: Option<String>,
}

impl Approval {
    /// An approval by the current OS user, now.
    pub fn now(reason: &str, plan_of: Option<String>) -> Approval {
        let by = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        Approval { by, at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), reason: reason.to_string(), plan_of }
    }
}

impl Report {
    /// The report of a run that has just begun: outcome ok, nothing counted yet.
    pub fn new(connector: &str, run_id: &str, dry_run: bool) -> Report {
        Report {
            connector: connector.to_string(),
            target: None,
            run_id: run_id.to_string(),
            outcome: RunOutcome::Ok,
            dry_run,
            file: None,
            counts: Counts::default(),
            errors: Vec::new(),
            errors_left_out: 0,
            stopped_by: None,
            stale: false,
            notes: Vec::new(),
            message: None,
            failure: None,
            duration_ms: 0,
            operations: Vec::new(),
            operations_left_out: 0,
            approval: None,
            approve_with: None,
            state_lost: false,
            unplaced: 0,
            held: 0,
            groups: None,
            lifecycle: Default::default(),
        }
    }

    /// The report as the run history keeps it: the first `HISTORY_OPERATIONS` operations
    /// (a first sync's million creates are counted, not stored with every run).
    pub fn for_history(&self) -> Report {
        let kept = self.operations.len().min(HISTORY_OPERATIONS);
        Report {
            connector: self.connector.clone(),
            target: self.target.clone(),
            run_id: self.run_id.clone(),
            outcome: self.outcome,
            dry_run: self.dry_run,
            file: self.file.clone(),
            counts: self.counts.clone(),
            errors: self.errors.clone(),
            errors_left_out: self.errors_left_out,
            stopped_by: self.stopped_by.clone(),
            stale: self.stale,
            notes: self.notes.clone(),
            message: self.message.clone(),
            failure: self.failure,
            duration_ms: self.duration_ms,
            operations: self.operations[..kept].to_vec(),
            operations_left_out: self.operations_left_out + (self.operations.len() - kept) as u64,
            approval: self.approval.clone(),
            approve_with: self.approve_with.clone(),
            state_lost: self.state_lost,
            unplaced: self.unplaced,
            held: self.held,
            // The counts alone: the member lists stay in the run's own report.
            groups: self.groups.as_ref().map(|g| crate::plan::groups::GroupsReport { changes: Vec::new(), ..g.clone() }),
            lifecycle: self.lifecycle.clone(),
        }
    }
}

/// A report with every operation of its run, as `--json` prints it: with the run's
/// `Listing` (`--json`, `--plan-out` of a plan longer than the report lists), `operations`
/// is the listing's, each entry made as it is written, and none is left out; without, the
/// report as it is.
pub struct Whole<'a> {
    pub report: &'a Report,
    pub listing: Option<&'a crate::changes::Listing>,
}

impl Serialize for Whole<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Flat<'a> {
            #[serde(flatten)]
            head: &'a Report,
            #[serde(skip_serializing_if = "crate::changes::Listing::is_empty")]
            operations: &'a crate::changes::Listing,
        }
        let Some(listing) = self.listing else { return self.report.serialize(s) };
        // The report without its first operations (the listing has them): a small copy.
        let head = Report { operations: Vec::new(), operations_left_out: 0, ..self.report.clone() };
        Flat { head: &head, operations: listing }.serialize(s)
    }
}

/// Operations the run history keeps per run, as many as a summary shows (the audit trail
/// has every one, per person; `history --json` stays light for whoever polls it).
pub const HISTORY_OPERATIONS: usize = 20;

/// Errors and notes a report lists at most; `errors_left_out` says how many more there were.
pub const MAX_LISTED: usize = 1000;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::{PersonKind, PersonOp};

    #[test]
    fn history_keeps_the_first_operations_and_counts_the_rest() {
        let op = |i: usize| PersonOp {
            external_id: format!("E{i}"),
            name: String::new(),
            kind: PersonKind::Create,
            changes: Vec::new(),
            line: Some(i as u64 + 2),
            reason: "new in the file".into(),
        };
        let mut r = Report::new("acme", "run-1", false);
        r.operations = (0..HISTORY_OPERATIONS + 5).map(op).collect();
        r.operations_left_out = 7;
        r.approval = Some(Approval::now("why", Some("run-0".into())));
        let h = r.for_history();
        assert_eq!(h.operations, r.operations[..HISTORY_OPERATIONS].to_vec());
        assert_eq!(h.operations_left_out, 12);
        assert_eq!(Report { operations: r.operations.clone(), operations_left_out: 7, ..h.clone() }, r, "all else is kept");
        let small = Report { operations: vec![op(1)], operations_left_out: 0, ..r.clone() };
        assert_eq!(small.for_history(), small);
        // The stored form reads back, approval and all.
        let back: Report = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }
}
