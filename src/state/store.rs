//! The state store chosen at runtime by `[state] url`: SQLite or PostgreSQL behind one type,
//! so plan, sync, the daemon and the CLI stay generic over `StateStore` and never look at
//! which one it is. (The trait's `async fn`s make `dyn StateStore` impossible; an enum is
//! the whole of the dispatch.)

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{AuditEntry, StoredPlan};
use super::{
    LastFile, LeaseRecord, PostgresStore, ReconcileMark, RunRecord, SlotClaim, SnapshotWrite, SqliteStore, StateError, StateStore,
};
use crate::config;
use crate::model::{FileFingerprint, User};
use crate::plan::Snapshot;
use crate::report::Report;

pub struct Store {
    inner: Inner,
    lease_ttl: Duration,
}

enum Inner {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Opens the store `[state]` names (migrating it), reading the PostgreSQL password from
/// where `password_env` / `password_file` say.
pub async fn open(state: &config::State) -> Result<Store, StateError> {
    let inner = if state.url.starts_with("postgres://") || state.url.starts_with("postgresql://") {
        let password = match &state.password {
            None => None,
            Some(config::StatePassword::Env(name)) => Some(std::env::var(name).map_err(|_| {
                StateError::Password(format!("the environment variable {name} named by [state] password_env is not set (or not UTF-8)"))
            })?),
            Some(config::StatePassword::File(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| StateError::Password(format!("cannot read {} named by [state] password_file: {e}", path.display())))?;
                // The first line: a secret file written by `echo` ends in a newline.
                Some(text.lines().next().unwrap_or_default().to_string())
            }
        };
        Inner::Postgres(PostgresStore::open(&state.url, password.as_deref()).await?)
    } else {
        Inner::Sqlite(SqliteStore::open(&state.url).await?)
    };
    Ok(Store { inner, lease_ttl: state.lease_ttl })
}

impl Store {
    /// Whether several workers may share this store (PostgreSQL): `status` then names them.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner, Inner::Postgres(_))
    }
}

/// Forwards one call to whichever store this is.
macro_rules! both {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.inner {
            Inner::Sqlite($s) => $call,
            Inner::Postgres($s) => $call,
        }
    };
}

impl StateStore for Store {
    async fn acquire(&self, connector: &str, holder: &str, ttl: Duration) -> Result<(), StateError> {
        both!(self, s => s.acquire(connector, holder, ttl).await)
    }
    async fn renew(&self, connector: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
        both!(self, s => s.renew(connector, holder, ttl).await)
    }
    async fn release(&self, connector: &str, holder: &str) -> Result<(), StateError> {
        both!(self, s => s.release(connector, holder).await)
    }
    async fn snapshot(&self, connector: &str) -> Result<Snapshot, StateError> {
        both!(self, s => s.snapshot(connector).await)
    }
    async fn contents(&self, connector: &str, ids: &[&str]) -> Result<HashMap<String, User>, StateError> {
        both!(self, s => s.contents(connector, ids).await)
    }
    async fn write(&self, connector: &str, batch: &[SnapshotWrite]) -> Result<(), StateError> {
        both!(self, s => s.write(connector, batch).await)
    }
    async fn reports_of(&self, connector: &str, managers: &[&str]) -> Result<HashMap<String, (String, User)>, StateError> {
        both!(self, s => s.reports_of(connector, managers).await)
    }
    async fn write_audit(&self, entries: &[AuditEntry]) -> Result<(), StateError> {
        both!(self, s => s.write_audit(entries).await)
    }
    async fn person_history(&self, connector: Option<&str>, external_id: &str, limit: u32) -> Result<Vec<AuditEntry>, StateError> {
        both!(self, s => s.person_history(connector, external_id, limit).await)
    }
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StateError> {
        both!(self, s => s.prune(before).await)
    }
    async fn save_plan(&self, plan: &StoredPlan) -> Result<(), StateError> {
        both!(self, s => s.save_plan(plan).await)
    }
    async fn stored_plan(&self, run_id: &str) -> Result<Option<StoredPlan>, StateError> {
        both!(self, s => s.stored_plan(run_id).await)
    }
    async fn pending_plan(&self, connector: &str) -> Result<Option<StoredPlan>, StateError> {
        both!(self, s => s.pending_plan(connector).await)
    }
    async fn mark_approved(&self, run_id: &str, approval: &crate::report::Approval, applied_by: &str) -> Result<(), StateError> {
        both!(self, s => s.mark_approved(run_id, approval, applied_by).await)
    }
    async fn set_reconcile(&self, connector: &str, run_id: &str, reason: &str) -> Result<(), StateError> {
        both!(self, s => s.set_reconcile(connector, run_id, reason).await)
    }
    async fn reconcile_mark(&self, connector: &str) -> Result<Option<ReconcileMark>, StateError> {
        both!(self, s => s.reconcile_mark(connector).await)
    }
    async fn clear_reconcile(&self, connector: &str) -> Result<(), StateError> {
        both!(self, s => s.clear_reconcile(connector).await)
    }
    async fn last_file(&self, connector: &str) -> Result<Option<LastFile>, StateError> {
        both!(self, s => s.last_file(connector).await)
    }
    async fn set_last_file(&self, connector: &str, f: &FileFingerprint) -> Result<(), StateError> {
        both!(self, s => s.set_last_file(connector, f).await)
    }
    async fn start_run(&self, connector: &str, run_id: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        both!(self, s => s.start_run(connector, run_id, at).await)
    }
    async fn finish_run(&self, report: &Report, at: DateTime<Utc>) -> Result<(), StateError> {
        both!(self, s => s.finish_run(report, at).await)
    }
    async fn interrupted(&self, connector: &str, current_run: &str) -> Result<bool, StateError> {
        both!(self, s => s.interrupted(connector, current_run).await)
    }
    async fn history(&self, connector: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StateError> {
        both!(self, s => s.history(connector, limit).await)
    }
    fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }
    async fn leases(&self) -> Result<Vec<LeaseRecord>, StateError> {
        both!(self, s => s.leases().await)
    }
    async fn live_lease(&self, connector: &str) -> Result<Option<LeaseRecord>, StateError> {
        both!(self, s => s.live_lease(connector).await)
    }
    async fn claim_slot(&self, connector: &str, slot: DateTime<Utc>, worker: &str, ttl: Duration) -> Result<SlotClaim, StateError> {
        both!(self, s => s.claim_slot(connector, slot, worker, ttl).await)
    }
    async fn finish_slot(&self, connector: &str, slot: DateTime<Utc>, worker: &str) -> Result<(), StateError> {
        both!(self, s => s.finish_slot(connector, slot, worker).await)
    }
    async fn renew_slots(&self, worker: &str, ttl: Duration) -> Result<u64, StateError> {
        both!(self, s => s.renew_slots(worker, ttl).await)
    }
}
