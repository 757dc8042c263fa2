//! The state store by role: what a run asks of the store, one trait per concern, each small
//! enough to read at once and to fake alone (a test store whose lease renewals fail
//! implements `Leases` and takes the other roles from a real store: `forward_roles!`).
//!
//! - `Leases`: who runs a connector now (one run per connector, one binder per platform).
//! - `Snapshots`: what the platform holds per connector, and the last file synced.
//! - `Runs`: the run history, and the reconcile marker a push leaves until it is recorded.
//! - `Audit`: the per-person audit trail and the plans of runs a safeguard stopped.
//! - `Slots`: a fleet's scheduled slots, each run by one worker.
//! - `GroupRecords` (`groups.rs`): the SCIM groups each connector created.
//! - `FileProfiles` (`profile.rs`): how full each column of the last good file was.
//!
//! `StateStore` is all of them: generic code asks for `S: StateStore` (or for just the role
//! it uses); code calling a concrete store brings the roles in with `use state::prelude::*`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    AuditEntry, Fence, HeldElsewhere, LastFile, LeaseRecord, ReconcileMark, RunRecord, SlotClaim, SnapshotWrite, StateError, StoredPlan,
};
use crate::model::{FileFingerprint, IdRule, User};
use crate::plan::Snapshot;
use crate::report::{Approval, Report};

/// Who runs a connector (or binds accounts on a platform) now. A lease lapses unless renewed,
/// so a holder that died frees it on its own.
#[allow(async_fn_in_trait)]
pub trait Leases {
    /// Takes the connector's lease, or says who holds it. Expired leases are taken over.
    /// Returns the lease's fencing token (`Fencing::fenced`), read in the same statement
    /// that takes it: no second read a run.
    async fn acquire(&self, connector: &str, holder: &str, ttl: Duration) -> Result<i64, StateError>;
    /// Extends the lease (the heartbeat of a long run). False: it is no longer this holder's
    /// (it lapsed and another run took it), and the holder must stop at once.
    async fn renew(&self, connector: &str, holder: &str, ttl: Duration) -> Result<bool, StateError>;
    async fn release(&self, connector: &str, holder: &str) -> Result<(), StateError>;
    /// Every lease in the store, expired or not (for `status`).
    async fn leases(&self) -> Result<Vec<LeaseRecord>, StateError>;
    /// The connector's lease if it has not expired (someone runs it now).
    async fn live_lease(&self, connector: &str) -> Result<Option<LeaseRecord>, StateError>;
    /// How long a lease lasts unrenewed (`[state] lease_ttl`).
    fn lease_ttl(&self) -> Duration {
        crate::config::DEFAULT_LEASE_TTL
    }
}

/// Per connector, what the platform holds (unique id → platform id, content hash, active,
/// content), and the fingerprint of the last file processed.
#[allow(async_fn_in_trait)]
pub trait Snapshots {
    async fn snapshot(&self, connector: &str) -> Result<Snapshot, StateError>;
    /// The content last pushed for these people (for PATCHes of what changed).
    async fn contents(&self, connector: &str, ids: &[&str]) -> Result<HashMap<String, User>, StateError>;
    /// The platform ids of these people, where recorded: what a manager reference needs,
    /// without loading a million-user snapshot for a few managers.
    async fn platform_ids(&self, connector: &str, ids: &[&str]) -> Result<HashMap<String, String>, StateError>;
    /// Records a batch, all of it or none, in the batch's order.
    async fn write(&self, connector: &str, batch: &[SnapshotWrite]) -> Result<(), StateError>;
    /// People absent from the file, since when (`[sync] deactivate_after`; `absences.rs`).
    async fn absences(&self, connector: &str) -> Result<HashMap<String, DateTime<Utc>>, StateError>;
    /// Records people absent since a time (one already recorded keeps theirs) and forgets
    /// `back`, in one transaction.
    async fn set_absences(&self, connector: &str, absent: &[(String, DateTime<Utc>)], back: &[String]) -> Result<(), StateError>;
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
        rule: IdRule,
    ) -> Result<Vec<HeldElsewhere>, StateError>;
    /// Whether any connector but those in `exclude` holds a snapshot row: when none does,
    /// `held_elsewhere` can find nothing, and a first sync need not send it a million ids.
    /// A few index seeks (the next connector name after each excluded one), however many
    /// rows the excluded connectors hold.
    async fn others_hold_any(&self, exclude: &[&str]) -> Result<bool, StateError>;
    async fn last_file(&self, connector: &str) -> Result<Option<LastFile>, StateError>;
    async fn set_last_file(&self, connector: &str, f: &FileFingerprint) -> Result<(), StateError>;
}

/// Runs of a connector looked at for an end never recorded: the newest ones (older ones
/// were looked at by the runs before).
pub const UNFINISHED_LOOK_BACK: u32 = 50;

/// The run history, and the reconcile marker: a push that may have reached the platform
/// without every outcome recorded.
#[allow(async_fn_in_trait)]
pub trait Runs {
    /// Records the run's start, at the store's clock (`Slots::clock`), and returns that time:
    /// one statement where a fleet used to read PostgreSQL's clock in a statement of its own.
    async fn start_run(&self, connector: &str, run_id: &str) -> Result<DateTime<Utc>, StateError>;
    /// Records the run's end. Returns whether another of the connector's newest
    /// [`UNFINISHED_LOOK_BACK`] runs has no recorded end (a process that died): asked in the
    /// same statement on PostgreSQL, so that a fleet's run reads its history only when there
    /// is one to close (`sync::lease::close_unfinished`).
    async fn finish_run(&self, report: &Report, at: DateTime<Utc>) -> Result<bool, StateError>;
    /// Whether the connector's previous run started and never finished (the process died):
    /// then some writes may have reached the platform unrecorded, and the next run adopts.
    async fn interrupted(&self, connector: &str, current_run: &str) -> Result<bool, StateError>;
    async fn history(&self, connector: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StateError>;
    /// Sets the connector's reconcile marker (or replaces the one set): called before the
    /// first write of a push. Durable once this returns, so a crash after it is seen.
    async fn set_reconcile(&self, connector: &str, run_id: &str, reason: &str) -> Result<(), StateError>;
    /// The marker, while set: the platform may hold writes the snapshot lacks, so the run
    /// lists the platform and looks up before it creates.
    async fn reconcile_mark(&self, connector: &str) -> Result<Option<ReconcileMark>, StateError>;
    /// Clears the marker: called only once every outcome of a push is recorded.
    async fn clear_reconcile(&self, connector: &str) -> Result<(), StateError>;
}

/// The per-person audit trail (`history --person`, `explain`) and the plans of runs a
/// safeguard stopped (`plan show`, `approve`).
#[allow(async_fn_in_trait)]
pub trait Audit {
    /// Appends to the per-person audit trail.
    async fn write_audit(&self, entries: &[AuditEntry]) -> Result<(), StateError>;
    /// One person's audit trail, newest first (every connector when `connector` is None).
    async fn person_history(&self, connector: Option<&str>, external_id: &str, limit: u32) -> Result<Vec<AuditEntry>, StateError>;
    /// Removes audit entries and stored plans older than `keep` by the store's clock
    /// (`Slots::clock`: a worker whose clock runs ahead removes nothing early), never a
    /// connector's plan that awaits approval; returns how many went.
    async fn prune(&self, keep: Duration) -> Result<u64, StateError>;
    /// Keeps the plan of a stopped run (replacing one stored under the same run id).
    async fn save_plan(&self, plan: &StoredPlan) -> Result<(), StateError>;
    /// The stored plan of that run, if any.
    async fn stored_plan(&self, run_id: &str) -> Result<Option<StoredPlan>, StateError>;
    /// The connector's newest stored plan when it is not approved (a stop waiting for a person).
    async fn pending_plan(&self, connector: &str) -> Result<Option<StoredPlan>, StateError>;
    /// Records that `run_id`'s plan was applied by `applied_by` under `approval`.
    async fn mark_approved(&self, run_id: &str, approval: &Approval, applied_by: &str) -> Result<(), StateError>;
}

/// A fleet's scheduled slots: each slot of a connector is run by one worker.
#[allow(async_fn_in_trait)]
pub trait Slots {
    /// Claims one scheduled slot of a connector for `worker`, so each slot runs once across
    /// a fleet: the first claim wins; a claim that was neither finished nor renewed within
    /// `ttl` (its worker died) is taken over.
    async fn claim_slot(&self, connector: &str, slot: DateTime<Utc>, worker: &str, ttl: Duration) -> Result<SlotClaim, StateError>;
    /// The slot has been run (whatever the outcome): nobody runs it again.
    async fn finish_slot(&self, connector: &str, slot: DateTime<Utc>, worker: &str) -> Result<(), StateError>;
    /// Extends every unfinished claim of `worker` (its heartbeat); returns how many.
    async fn renew_slots(&self, worker: &str, ttl: Duration) -> Result<u64, StateError>;
    /// The store's clock, which a fleet follows (slot times, lease expiry, retention): the
    /// database's `clock_timestamp()` on PostgreSQL; on SQLite, this machine's own.
    async fn clock(&self) -> Result<DateTime<Utc>, StateError> {
        Ok(Utc::now())
    }
}

/// Fencing: a run's writes are checked against the token of the lease it took, so a run
/// frozen past its lease (SIGSTOP, a VM paused, a network cut) that wakes after another run
/// took the connector over cannot write (`StateError::Fenced`). Implemented by the stores
/// themselves, since the check is in each write's own transaction.
#[allow(async_fn_in_trait)]
pub trait Fencing: Sized {
    /// The token of the lease `holder` holds on `connector` now; None when it holds none.
    async fn lease_token(&self, connector: &str, holder: &str) -> Result<Option<i64>, StateError>;
    /// This store, writing (snapshot, absences, last file, run history, reconcile marker,
    /// audit, plans and their approval, pruning, the groups created)
    /// only while `fence.connector`'s lease carries `fence.token`; the run is recorded with it.
    fn fenced(&self, fence: Fence) -> Self;
}

/// The whole store: every role. Implemented for anything that has them all.
pub trait StateStore: Leases + Snapshots + Runs + Audit + Slots + super::GroupRecords + super::FileProfiles {}

impl<T: Leases + Snapshots + Runs + Audit + Slots + super::GroupRecords + super::FileProfiles> StateStore for T {}

/// Implements roles by passing each call on to another store: `$via!(self, s => call)`
/// names the store `s` for one call (a field, or a `match` over backends). For wrappers
/// that implement one role themselves and take the others as they are:
/// `forward_roles!(Wrapper, via_inner; Snapshots, Runs, Audit, Slots)`.
macro_rules! forward_roles {
    ($ty:ty, $via:ident; $($role:ident),+) => {
        $( $crate::state::forward_roles!(@$role $ty, $via); )+
    };
    (@Leases $ty:ty, $via:ident) => {
        impl $crate::state::Leases for $ty {
            async fn acquire(&self, connector: &str, holder: &str, ttl: std::time::Duration) -> Result<i64, $crate::state::StateError> {
                $via!(self, s => $crate::state::Leases::acquire(s, connector, holder, ttl).await)
            }
            async fn renew(&self, connector: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, $crate::state::StateError> {
                $via!(self, s => $crate::state::Leases::renew(s, connector, holder, ttl).await)
            }
            async fn release(&self, connector: &str, holder: &str) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::Leases::release(s, connector, holder).await)
            }
            async fn leases(&self) -> Result<Vec<$crate::state::LeaseRecord>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Leases::leases(s).await)
            }
            async fn live_lease(&self, connector: &str) -> Result<Option<$crate::state::LeaseRecord>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Leases::live_lease(s, connector).await)
            }
            fn lease_ttl(&self) -> std::time::Duration {
                $via!(self, s => $crate::state::Leases::lease_ttl(s))
            }
        }
    };
    (@Snapshots $ty:ty, $via:ident) => {
        impl $crate::state::Snapshots for $ty {
            async fn snapshot(&self, connector: &str) -> Result<$crate::plan::Snapshot, $crate::state::StateError> {
                $via!(self, s => $crate::state::Snapshots::snapshot(s, connector).await)
            }
            async fn contents(
                &self,
                connector: &str,
                ids: &[&str],
            ) -> Result<std::collections::HashMap<String, $crate::model::User>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Snapshots::contents(s, connector, ids).await)
            }
            async fn platform_ids(
                &self,
                connector: &str,
                ids: &[&str],
            ) -> Result<std::collections::HashMap<String, String>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Snapshots::platform_ids(s, connector, ids).await)
            }
            async fn write(&self, connector: &str, batch: &[$crate::state::SnapshotWrite]) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::Snapshots::write(s, connector, batch).await)
            }
            async fn absences(
                &self,
                connector: &str,
            ) -> Result<std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Snapshots::absences(s, connector).await)
            }
            async fn set_absences(
                &self,
                connector: &str,
                absent: &[(String, chrono::DateTime<chrono::Utc>)],
                back: &[String],
            ) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::Snapshots::set_absences(s, connector, absent, back).await)
            }
            async fn reports_of(
                &self,
                connector: &str,
                managers: &[&str],
            ) -> Result<std::collections::HashMap<String, (String, $crate::model::User)>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Snapshots::reports_of(s, connector, managers).await)
            }
            async fn held_elsewhere(
                &self,
                exclude: &[&str],
                platform_ids: &[&str],
                keys: &[&str],
                rule: $crate::model::IdRule,
            ) -> Result<Vec<$crate::state::HeldElsewhere>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Snapshots::held_elsewhere(s, exclude, platform_ids, keys, rule).await)
            }
            async fn others_hold_any(&self, exclude: &[&str]) -> Result<bool, $crate::state::StateError> {
                $via!(self, s => $crate::state::Snapshots::others_hold_any(s, exclude).await)
            }
            async fn last_file(&self, connector: &str) -> Result<Option<$crate::state::LastFile>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Snapshots::last_file(s, connector).await)
            }
            async fn set_last_file(&self, connector: &str, f: &$crate::model::FileFingerprint) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::Snapshots::set_last_file(s, connector, f).await)
            }
        }
    };
    (@Runs $ty:ty, $via:ident) => {
        impl $crate::state::Runs for $ty {
            async fn start_run(&self, connector: &str, run_id: &str) -> Result<chrono::DateTime<chrono::Utc>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Runs::start_run(s, connector, run_id).await)
            }
            async fn finish_run(&self, report: &$crate::report::Report, at: chrono::DateTime<chrono::Utc>) -> Result<bool, $crate::state::StateError> {
                $via!(self, s => $crate::state::Runs::finish_run(s, report, at).await)
            }
            async fn interrupted(&self, connector: &str, current_run: &str) -> Result<bool, $crate::state::StateError> {
                $via!(self, s => $crate::state::Runs::interrupted(s, connector, current_run).await)
            }
            async fn history(&self, connector: Option<&str>, limit: u32) -> Result<Vec<$crate::state::RunRecord>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Runs::history(s, connector, limit).await)
            }
            async fn set_reconcile(&self, connector: &str, run_id: &str, reason: &str) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::Runs::set_reconcile(s, connector, run_id, reason).await)
            }
            async fn reconcile_mark(&self, connector: &str) -> Result<Option<$crate::state::ReconcileMark>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Runs::reconcile_mark(s, connector).await)
            }
            async fn clear_reconcile(&self, connector: &str) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::Runs::clear_reconcile(s, connector).await)
            }
        }
    };
    (@Audit $ty:ty, $via:ident) => {
        impl $crate::state::Audit for $ty {
            async fn write_audit(&self, entries: &[$crate::state::AuditEntry]) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::Audit::write_audit(s, entries).await)
            }
            async fn person_history(
                &self,
                connector: Option<&str>,
                external_id: &str,
                limit: u32,
            ) -> Result<Vec<$crate::state::AuditEntry>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Audit::person_history(s, connector, external_id, limit).await)
            }
            async fn prune(&self, keep: std::time::Duration) -> Result<u64, $crate::state::StateError> {
                $via!(self, s => $crate::state::Audit::prune(s, keep).await)
            }
            async fn save_plan(&self, plan: &$crate::state::StoredPlan) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::Audit::save_plan(s, plan).await)
            }
            async fn stored_plan(&self, run_id: &str) -> Result<Option<$crate::state::StoredPlan>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Audit::stored_plan(s, run_id).await)
            }
            async fn pending_plan(&self, connector: &str) -> Result<Option<$crate::state::StoredPlan>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Audit::pending_plan(s, connector).await)
            }
            async fn mark_approved(
                &self,
                run_id: &str,
                approval: &$crate::report::Approval,
                applied_by: &str,
            ) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::Audit::mark_approved(s, run_id, approval, applied_by).await)
            }
        }
    };
    (@GroupRecords $ty:ty, $via:ident) => {
        impl $crate::state::GroupRecords for $ty {
            async fn created_groups(&self, connector: &str) -> Result<Vec<$crate::state::CreatedGroup>, $crate::state::StateError> {
                $via!(self, s => $crate::state::GroupRecords::created_groups(s, connector).await)
            }
            async fn record_group(&self, connector: &str, group: &$crate::state::CreatedGroup) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::GroupRecords::record_group(s, connector, group).await)
            }
            async fn forget_group(&self, connector: &str, display_name: &str) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::GroupRecords::forget_group(s, connector, display_name).await)
            }
        }
    };
    (@FileProfiles $ty:ty, $via:ident) => {
        impl $crate::state::FileProfiles for $ty {
            async fn file_profile(&self, connector: &str) -> Result<Option<$crate::state::FileProfile>, $crate::state::StateError> {
                $via!(self, s => $crate::state::FileProfiles::file_profile(s, connector).await)
            }
            async fn set_file_profile(&self, connector: &str, profile: &$crate::state::FileProfile) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::FileProfiles::set_file_profile(s, connector, profile).await)
            }
        }
    };
    (@Slots $ty:ty, $via:ident) => {
        impl $crate::state::Slots for $ty {
            async fn claim_slot(
                &self,
                connector: &str,
                slot: chrono::DateTime<chrono::Utc>,
                worker: &str,
                ttl: std::time::Duration,
            ) -> Result<$crate::state::SlotClaim, $crate::state::StateError> {
                $via!(self, s => $crate::state::Slots::claim_slot(s, connector, slot, worker, ttl).await)
            }
            async fn finish_slot(&self, connector: &str, slot: chrono::DateTime<chrono::Utc>, worker: &str) -> Result<(), $crate::state::StateError> {
                $via!(self, s => $crate::state::Slots::finish_slot(s, connector, slot, worker).await)
            }
            async fn renew_slots(&self, worker: &str, ttl: std::time::Duration) -> Result<u64, $crate::state::StateError> {
                $via!(self, s => $crate::state::Slots::renew_slots(s, worker, ttl).await)
            }
            async fn clock(&self) -> Result<chrono::DateTime<chrono::Utc>, $crate::state::StateError> {
                $via!(self, s => $crate::state::Slots::clock(s).await)
            }
        }
    };
}
pub(crate) use forward_roles;
