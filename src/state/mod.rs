//! State: per connector, the snapshot (unique id → platform id, content hash, active,
//! content), the fingerprint of the last file processed, the run history, and a lease so
//! two runs of one connector never overlap.
//!
//! Behind a trait so PostgreSQL can follow SQLite without touching plan or sync. Writes
//! happen as operations succeed, in batches, so a crash mid-push loses nothing.

pub mod postgres;
pub mod sqlite;
mod store;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::exit::{Classify, Exit};
use crate::model::{FileFingerprint, User};
use crate::plan::Snapshot;
use crate::report::Report;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use store::{Store, open};

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
    /// The TLS handshake with the database failed: an untrusted CA, a host name the
    /// certificate does not list, a server without TLS. `hint` says what to change.
    #[error("TLS to the PostgreSQL state store at {host}:{port} failed: {detail}. {hint}")]
    Tls { host: String, port: u16, detail: String, hint: String },
    #[error("the CA certificate {path} named by [state] ca_file: {detail}")]
    CaFile { path: String, detail: String },
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
            StateError::Password(_) | StateError::CaFile { .. } => Exit::Config,
            _ => Exit::Other,
        }
    }

    /// A connector held by another run frees up when that run ends (a fleet's worker, a
    /// manual sync); an unreachable database may come back.
    /// A lost lease is the run's own stop, taken again when the store answers.
    fn retriable(&self) -> bool {
        matches!(
            self,
            StateError::Held { .. } | StateError::Unreachable { .. } | StateError::LeaseLost { .. } | StateError::PlatformBusy { .. }
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

/// The reconcile marker of a connector (`StateStore::set_reconcile`): some push may have
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

#[allow(async_fn_in_trait)]
pub trait StateStore {
    /// Takes the connector's lease, or says who holds it. Expired leases are taken over.
    async fn acquire(&self, connector: &str, holder: &str, ttl: std::time::Duration) -> Result<(), StateError>;
    /// Extends the lease (the heartbeat of a long run). False: it is no longer this holder's
    /// (it lapsed and another run took it), and the holder must stop at once.
    async fn renew(&self, connector: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, StateError>;
    async fn release(&self, connector: &str, holder: &str) -> Result<(), StateError>;

    async fn snapshot(&self, connector: &str) -> Result<Snapshot, StateError>;
    /// The content last pushed for these people (for PATCHes of what changed).
    async fn contents(&self, connector: &str, ids: &[&str]) -> Result<HashMap<String, User>, StateError>;
    async fn write(&self, connector: &str, batch: &[SnapshotWrite]) -> Result<(), StateError>;
    /// The people whose manager is one of `managers` (external id → platform id, content):
    /// a manager created again leaves their references pointing at the deleted account.
    async fn reports_of(&self, connector: &str, managers: &[&str]) -> Result<HashMap<String, (String, User)>, StateError>;
    /// The accounts other connectors hold among these: their snapshot rows whose platform id
    /// is one of `platform_ids`, or whose external id is one of `keys` as `rule` compares
    /// them (`keys` already in `rule.key` form). Connectors in `exclude` (this one, those its
    /// `adopt_from` names) are not asked. One statement, however many connectors the store
    /// holds: a fleet's ten thousand were ten thousand snapshot loads a run.
    async fn held_elsewhere(
        &self,
        exclude: &[&str],
        platform_ids: &[&str],
        keys: &[&str],
        rule: crate::model::IdRule,
    ) -> Result<Vec<HeldElsewhere>, StateError>;

    async fn last_file(&self, connector: &str) -> Result<Option<LastFile>, StateError>;
    async fn set_last_file(&self, connector: &str, f: &FileFingerprint) -> Result<(), StateError>;

    async fn start_run(&self, connector: &str, run_id: &str, at: DateTime<Utc>) -> Result<(), StateError>;
    async fn finish_run(&self, report: &Report, at: DateTime<Utc>) -> Result<(), StateError>;
    /// Whether the connector's previous run started and never finished (the process died):
    /// then some writes may have reached the platform unrecorded, and the next run adopts.
    async fn interrupted(&self, connector: &str, current_run: &str) -> Result<bool, StateError>;
    async fn history(&self, connector: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StateError>;

    /// How long a lease lasts unrenewed (`[state] lease_ttl`).
    fn lease_ttl(&self) -> std::time::Duration {
        crate::config::DEFAULT_LEASE_TTL
    }
    /// Every lease in the store, expired or not (for `status`).
    async fn leases(&self) -> Result<Vec<LeaseRecord>, StateError>;
    /// The connector's lease if it has not expired (someone runs it now).
    async fn live_lease(&self, connector: &str) -> Result<Option<LeaseRecord>, StateError>;
    /// Claims one scheduled slot of a connector for `worker`, so each slot runs once across
    /// a fleet: the first claim wins; a claim that was neither finished nor renewed within
    /// `ttl` (its worker died) is taken over.
    async fn claim_slot(
        &self,
        connector: &str,
        slot: DateTime<Utc>,
        worker: &str,
        ttl: std::time::Duration,
    ) -> Result<SlotClaim, StateError>;
    /// The slot has been run (whatever the outcome): nobody runs it again.
    async fn finish_slot(&self, connector: &str, slot: DateTime<Utc>, worker: &str) -> Result<(), StateError>;
    /// Extends every unfinished claim of `worker` (its heartbeat); returns how many.
    async fn renew_slots(&self, worker: &str, ttl: std::time::Duration) -> Result<u64, StateError>;
    /// Appends to the per-person audit trail.
    async fn write_audit(&self, entries: &[AuditEntry]) -> Result<(), StateError>;
    /// One person's audit trail, newest first (every connector when `connector` is None).
    async fn person_history(&self, connector: Option<&str>, external_id: &str, limit: u32) -> Result<Vec<AuditEntry>, StateError>;
    /// Removes audit entries and stored plans older than `before`; returns how many went.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StateError>;
    /// Keeps the plan of a stopped run (replacing one stored under the same run id).
    async fn save_plan(&self, plan: &StoredPlan) -> Result<(), StateError>;
    /// The stored plan of that run, if any.
    async fn stored_plan(&self, run_id: &str) -> Result<Option<StoredPlan>, StateError>;
    /// The connector's newest stored plan when it is not approved (a stop waiting for a person).
    async fn pending_plan(&self, connector: &str) -> Result<Option<StoredPlan>, StateError>;
    /// Records that `run_id`'s plan was applied by `applied_by` under `approval`.
    async fn mark_approved(&self, run_id: &str, approval: &crate::report::Approval, applied_by: &str) -> Result<(), StateError>;
    /// Sets the connector's reconcile marker (or replaces the one set): called before the
    /// first write of a push. Durable once this returns, so a crash after it is seen.
    async fn set_reconcile(&self, connector: &str, run_id: &str, reason: &str) -> Result<(), StateError>;
    /// The marker, while set: the platform may hold writes the snapshot lacks, so the run
    /// lists the platform and looks up before it creates.
    async fn reconcile_mark(&self, connector: &str) -> Result<Option<ReconcileMark>, StateError>;
    /// Clears the marker: called only once every outcome of a push is recorded.
    async fn clear_reconcile(&self, connector: &str) -> Result<(), StateError>;
}
