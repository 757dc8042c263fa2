//! State: per connector, the snapshot (unique id → platform id, content hash, active,
//! content), the fingerprint of the last file processed, the run history, and a lease so
//! two runs of one connector never overlap.
//!
//! Behind traits by role (`roles`: leases, snapshots, runs, audit, slots; `StateStore` is
//! all of them), so PostgreSQL follows SQLite without touching plan or sync. What the two
//! backends share (statements, row mapping, the audit role) is in `sql`. Writes happen as
//! operations succeed, in batches, so a crash mid-push loses nothing.

mod absences;
mod groups;
pub mod postgres;
mod profile;
mod roles;
mod sql;
pub mod sqlite;
mod sqlite_lib;
mod store;

use chrono::{DateTime, Utc};

use crate::exit::{Classify, Exit};
use crate::model::{FileFingerprint, User};
use crate::report::Report;

pub use groups::{CreatedGroup, GroupRecords};
pub use postgres::PostgresStore;
pub use profile::{FileProfile, FileProfiles};
pub(crate) use roles::forward_roles;
pub use roles::{Audit, Fencing, Leases, Runs, Slots, Snapshots, StateStore, UNFINISHED_LOOK_BACK};
pub use sqlite::SqliteStore;
pub use store::{Store, open};

/// The store's roles, for code that calls a concrete store (`Store`, `SqliteStore`): one
/// `use state::prelude::*;` brings every role's methods in.
pub mod prelude {
    pub use super::{Audit, Fencing, FileProfiles, GroupRecords, Leases, Runs, Slots, Snapshots, StateStore};
}

/// The fencing token of a run's lease: every take-over of a connector's lease gives it a
/// higher token, and a store `Fencing::fenced` with it writes only while the connector's
/// lease still carries it (checked in the write's own transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub connector: String,
    pub token: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {url}: {detail}")]
    Db { url: String, detail: String },
    #[error(
        "connector \"{connector}\" is already running: held by {holder} since {since} (lease expires {expires} unless renewed). Wait for that run to finish; a lease whose holder died expires on its own"
    )]
    Held { connector: String, holder: String, since: String, expires: String },
    #[error("the state store {url} is corrupt or from a newer rostersync: {detail}")]
    Schema { url: String, detail: String },
    /// A value in a row does not read as what its column holds (a time that is not RFC
    /// 3339): written by hand or damaged, never by this code.
    #[error(
        "the state store {url} holds a corrupt row: {table}.{column} is {value:?}, which is not a time (RFC 3339). Restore the store from a backup, or delete that row"
    )]
    Corrupt { url: String, table: &'static str, column: &'static str, value: String },
    #[error(
        "cannot reach the PostgreSQL state store at {host}:{port} ({detail}). Check that the server runs and accepts connections from this machine (listen_addresses, pg_hba.conf, firewall), and [state] url"
    )]
    Unreachable { host: String, port: u16, detail: String },
    #[error(
        "the PostgreSQL state store at {host}:{port} refused the login: {detail}. Check the user in [state] url and the password behind password_env / password_file"
    )]
    Login { host: String, port: u16, detail: String },
    #[error("the state store password: {0}")]
    Password(String),
    /// `[state]` was refused by the configuration check (`config::State::url` is empty).
    #[error(
        "[state] in the configuration was refused, so no state store is opened (none other in its place); run `rostersync check` to see why"
    )]
    Refused,
    /// The TLS handshake with the database failed: an untrusted CA, a host name the
    /// certificate does not list, a server without TLS. `hint` says what to change.
    #[error("TLS to the PostgreSQL state store at {host}:{port} failed: {detail}. {hint}")]
    Tls { host: String, port: u16, detail: String, hint: String },
    #[error("the CA certificate {path} named by [state] ca_file: {detail}")]
    CaFile { path: String, detail: String },
    /// A write of a run whose lease was taken over (its fencing token is no longer the
    /// lease's): refused, nothing of it written. The run that holds the lease now carries on.
    #[error(
        "connector \"{connector}\": this run's lease (fencing token {token}) was taken over by another run, so its write was refused and nothing of it was written; the run holding the lease now carries on (a process frozen or cut off past lease_ttl does this)"
    )]
    Fenced { connector: String, token: i64 },
    /// The run could not show, in time, that it still holds its connector's lease: it
    /// stopped before the lease could lapse and another process take the connector.
    #[error(
        "connector \"{connector}\": the run stopped because it could not renew its lease ({detail}). Another run may take the connector once the lease lapses, so this one sent nothing more; the next run lists the platform first and finds what was sent. If the state store is busy with another long run or unreachable, see to that"
    )]
    LeaseLost { connector: String, detail: String },
    /// A scheduled run waited its limit for the platform lease (`sync::adoption`).
    #[error(
        "platform {platform} is busy: {holder} is binding accounts there, and runs that may bind accounts on one platform take turns. This run waited {waited_secs} s, gives its run slot back and is tried again"
    )]
    PlatformBusy { platform: String, holder: String, waited_secs: u64 },
}

impl Classify for StateError {
    fn exit(&self) -> Exit {
        match self {
            StateError::Unreachable { .. } | StateError::Login { .. } | StateError::Tls { .. } => Exit::Connection,
            StateError::Password(_) | StateError::CaFile { .. } | StateError::Refused => Exit::Config,
            _ => Exit::Other,
        }
    }

    /// A connector held by another run frees up when that run ends (a fleet's worker, a
    /// manual sync); an unreachable database may come back.
    /// A lost lease is the run's own stop, taken again when the store answers.
    fn retriable(&self) -> bool {
        matches!(
            self,
            StateError::Held { .. }
                | StateError::Unreachable { .. }
                | StateError::LeaseLost { .. }
                | StateError::Fenced { .. }
                | StateError::PlatformBusy { .. }
        )
    }
}

/// This process as a fleet worker: "HOST pid N", recorded with each run it starts and each
/// slot it claims.
pub fn worker_id() -> String {
    format!("{} pid {}", gethostname::gethostname().to_string_lossy(), std::process::id())
}

/// An account another connector holds: its person there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldElsewhere {
    pub connector: String,
    pub external_id: String,
    pub platform_id: String,
}

/// Keeps the rows a store's coarse SQL filter found that really match: the SQL compares
/// case-folded ids with ASCII `lower`/`upper` (SQLite's, and PostgreSQL's in the C locale) and
/// passes every non-ASCII id through, so the exact comparison is `rule.key`'s, here.
pub(crate) fn held_matching(
    rows: Vec<(String, String, String)>,
    platform_ids: &[&str],
    keys: &[&str],
    rule: crate::model::IdRule,
) -> Vec<HeldElsewhere> {
    // Nearly always nothing is held elsewhere: no sets of a million ids for no row.
    if rows.is_empty() {
        return Vec::new();
    }
    let pids: std::collections::HashSet<&str> = platform_ids.iter().copied().collect();
    let keys: std::collections::HashSet<&str> = keys.iter().copied().collect();
    rows.into_iter()
        .filter(|(_, x, p)| pids.contains(p.as_str()) || keys.contains(rule.key(x).as_ref()))
        .map(|(connector, external_id, platform_id)| HeldElsewhere { connector, external_id, platform_id })
        .collect()
}

/// A connector's lease as stored: who runs it now (for `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub connector: String,
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The answer to a worker claiming one scheduled slot of a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotClaim {
    /// This worker runs the slot (new, or taken over from a worker whose claim expired).
    Won,
    /// The slot has been run (by any worker).
    Done,
    /// Another live worker has it; its claim lapses at `expires_at` unless renewed.
    Held { worker: String, expires_at: DateTime<Utc> },
    /// The slot's time has not come by the store's clock, which read `now`: a worker whose
    /// own clock runs ahead claims nothing early (a "daily 02:00" before the export lands).
    Early { now: DateTime<Utc> },
    /// The store could not be asked (it fails): the slot is not run, and claimed again in
    /// `retry_in` while it lasts.
    Unclaimed { retry_in: std::time::Duration },
}

/// One row of the snapshot to write after a successful operation.
#[derive(Debug, Clone)]
pub enum SnapshotWrite {
    /// Created, updated, adopted, deactivated: the platform now holds `user`.
    Upsert { platform_id: String, user: Box<User> },
    /// Absent from the file and deactivated: same content, now inactive.
    MarkInactive { external_id: String },
    /// Deleted from the platform.
    Remove { external_id: String },
}

/// The last file a connector synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastFile {
    pub fingerprint: FileFingerprint,
    pub synced_at: DateTime<Utc>,
}

/// The reconcile marker of a connector (`Runs::set_reconcile`): some push may have
/// reached the platform without every outcome recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileMark {
    /// The run that set it.
    pub run_id: String,
    /// Why it is still set, in words for the report ("push started", "adoption pending").
    pub reason: String,
    pub set_at: DateTime<Utc>,
}

/// One past run, for `history` and `status`.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run_id: String,
    pub connector: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// None while running, or when the process died mid-run.
    pub report: Option<Report>,
    /// The process that ran it ("HOST pid N", `worker_id`); None for runs recorded before.
    pub worker: Option<String>,
    /// The fencing token of the lease it held (`Fence`); None for a dry run, or a run
    /// recorded before fencing.
    pub fence: Option<i64>,
}

/// One operation sent for one person: the audit trail `history --person` and `explain`
/// show. Field NAMES only, never values (values are personal data, and the snapshot holds
/// the current ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub connector: String,
    pub external_id: String,
    pub run_id: String,
    pub at: DateTime<Utc>,
    /// `changes::PersonKind` as a word: create, update, deactivate, adopt, rekey, …
    pub kind: String,
    /// The fields the operation changed (updates).
    pub fields: Vec<String>,
    /// "ok" or "failed".
    pub status: String,
    /// The platform's HTTP status of a failure, when it answered.
    pub http_status: Option<u16>,
    /// Who let the run past a safeguard and why ("alice: HR confirmed the layoffs").
    pub approval: Option<String>,
}

/// Operations a stored plan lists at most: `plan show` is for people to read, and the
/// approval checks the digest of the whole plan.
pub const MAX_STORED_OPERATIONS: usize = 10_000;

/// The plan of a run a safeguard stopped, kept for `plan show` and `approve`: what it would
/// do, and what it was made from (the file's sha256, the state's fingerprint, the plan's
/// digest: `crate::changes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlan {
    pub run_id: String,
    pub connector: String,
    pub created_at: DateTime<Utc>,
    pub file: FileFingerprint,
    pub state_fingerprint: String,
    pub digest: String,
    /// The safeguard rule and its message.
    pub rule: String,
    pub message: String,
    pub dry_run: bool,
    /// The first `MAX_STORED_OPERATIONS` operations (the digest covers them all).
    pub operations: Vec<crate::changes::PersonOp>,
    pub operations_left_out: u64,
    /// Set once approved: the approval and the run that applied it.
    pub approved: Option<(crate::report::Approval, String)>,
}
