//! Looking at the platform before planning (issue 14), and the reconcile marker.
//!
//! - A run that may follow unrecorded writes (the marker is set: a crash, a failed or
//!   stopped push, a state error mid-push; or the previous run never finished) lists the
//!   platform's ids and adopts under the binding rule before it creates, however many
//!   failing runs came in between. So does a first sync.
//! - `sync --reconcile` (or a run that finds its state lost: run history but no snapshot)
//!   lists every account with its attributes and repairs drift through the plan
//!   (`plan::repair`): accounts deleted by hand are created again or forgotten, hand edits
//!   are written back, hand-reactivated leavers deactivated — with the safeguards applied.

use std::collections::{HashMap, HashSet};

use super::{Ctx, RunError, Tally};
use crate::lookup::Lookup;
use crate::model::SourcedUser;
use crate::plan::{self, Existing, FastHash, Snapshot};
use crate::platform::Platform;
use crate::platform::scim::ScimClient;
use crate::state::{LastFile, SnapshotWrite, StateStore};

/// How much of the platform a run reads before it plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Look {
    /// Nothing: the snapshot is what the platform holds.
    Nothing,
    /// The ids of every account, to adopt rather than create twice: a first sync, or writes
    /// of an earlier run may be there unrecorded (`why`).
    Adopt { first: bool, why: Option<String> },
    /// Every account with its attributes, to repair drift: `--reconcile`, or a lost state.
    Repair { lost: bool },
}

/// What the run knows of the platform before it plans: the snapshot (repaired, for a
/// repair), the platform's accounts `look` chose to read, and what a repair found.
pub(super) struct Seen {
    pub snapshot: Snapshot,
    pub existing: Vec<Existing>,
    pub repaired: Repaired,
}

/// What a repair (`Look::Repair`) found, for the push: empty otherwise.
#[derive(Default)]
pub(super) struct Repaired {
    /// Hand-edited accounts: their updates replace every mapped attribute (`attach_previous`).
    pub rewrite: HashSet<String>,
    /// People whose account is gone from the platform: their snapshot rows go just before
    /// the push (`forget_gone`).
    pub gone: Vec<String>,
}

/// Past runs read to tell a lost state from a connector that never pushed.
const HISTORY_DEPTH: u32 = 20;

impl<S: StateStore> Ctx<'_, S> {
    /// Decides how much of the platform to read, from the options and the state.
    pub(super) async fn look(&self, t: &mut Tally, snapshot: &Snapshot, last: Option<&LastFile>) -> Result<Look, RunError> {
        let name = &self.conn.name;
        if snapshot.is_empty() && self.synced_before(last).await? {
            let since =
                last.map(|l| format!(" (it synced {} on {})", l.fingerprint.path, l.synced_at.format("%Y-%m-%d"))).unwrap_or_default();
            t.note(format!(
                "state lost: the state DB has run history for {name}{since} but no snapshot (a new, replaced or restored-empty DB); this run reconciles with the platform: accounts with this connector's externalIds are adopted, hand edits written back. Accounts it cannot place are listed below: check them"
            ));
            tracing::warn!("the state of {name} is lost (history, no snapshot): reconciling with the platform");
            t.report.state_lost = true;
            return Ok(Look::Repair { lost: true });
        }
        if self.opts.reconcile {
            return Ok(Look::Repair { lost: false });
        }
        if snapshot.is_empty() {
            return Ok(Look::Adopt { first: true, why: None });
        }
        let mark = self.store.reconcile_mark(name).await.map_err(RunError::from)?;
        let interrupted = self.store.interrupted(name, self.run_id).await.map_err(RunError::from)?;
        let why = match crate::lookup::before_push(mark, interrupted, None) {
            Some(Lookup::Marked(m)) => {
                format!("run {} left unrecorded writes possible ({}, {})", m.run_id, m.reason, m.set_at.format("%Y-%m-%d %H:%M"))
            }
            Some(Lookup::AfterUnfinished) => "the previous run did not finish".to_string(),
            None => return Ok(Look::Nothing),
        };
        tracing::warn!("{name}: {why}; matching platform users before pushing");
        Ok(Look::Adopt { first: false, why: Some(why) })
    }

    /// A snapshot that should not be empty: a file was synced, or a recent run wrote.
    async fn synced_before(&self, last: Option<&LastFile>) -> Result<bool, RunError> {
        if last.is_some() {
            return Ok(true);
        }
        let runs = self.store.history(Some(&self.conn.name), HISTORY_DEPTH).await.map_err(RunError::from)?;
        Ok(runs.iter().filter(|r| r.run_id != self.run_id).filter_map(|r| r.report.as_ref()).any(|r| {
            let c = &r.counts;
            !r.dry_run && c.created + c.adopted + c.rekeyed + c.updated > 0
        }))
    }

    /// The platform's existing users for the plan, as `look` decided. A repair also changes
    /// `snapshot` (`plan::repair`) and notes what it found.
    pub(super) async fn existing_users(
        &self,
        t: &mut Tally,
        platform: Option<&ScimClient>,
        snapshot: Snapshot,
        users: &[SourcedUser],
        look: &Look,
    ) -> Result<Seen, RunError> {
        let nothing = |snapshot| Seen { snapshot, existing: Vec::new(), repaired: Repaired::default() };
        let Some(p) = platform else { return Ok(nothing(snapshot)) };
        match look {
            Look::Nothing => Ok(nothing(snapshot)),
            Look::Adopt { why, .. } => {
                if let Some(why) = why {
                    t.note(format!("{why}: platform users were matched before pushing (adopted, never created twice)"));
                }
                let existing = p.existing_users(&self.budget).await?;
                Ok(Seen { existing, ..nothing(snapshot) })
            }
            Look::Repair { .. } => self.repair(t, p, snapshot, users).await,
        }
    }

    /// `Look::Repair`: every account with its attributes, the drift repaired through the
    /// plan (`plan::repair`), safeguarded like deactivations.
    async fn repair(&self, t: &mut Tally, p: &ScimClient, mut snapshot: Snapshot, users: &[SourcedUser]) -> Result<Seen, RunError> {
        let accounts = p.accounts(&self.budget).await?;
        let kept = p.kept_paths(&accounts);
        let by_id: HashMap<&str, &crate::platform::scim::Account, FastHash> =
            accounts.iter().map(|a| (a.existing.platform_id.as_str(), a)).collect();
        let listed: HashMap<&str, plan::Listed, FastHash> = by_id.iter().map(|(id, a)| (*id, plan::Listed { active: a.active })).collect();
        // Managers by the platform id the snapshot knows them under.
        let pids: HashMap<String, String> = snapshot.iter().map(|(id, e)| (id.clone(), e.platform_id.clone())).collect();
        let repair = plan::repair(&mut snapshot, users, &listed, self.conn.mapping.id_rule(), |user, entry| {
            let Some(account) = by_id.get(entry.platform_id.as_str()) else { return false };
            let manager = user.manager().and_then(|m| pids.get(m)).map(String::as_str);
            p.drifted(user, manager, account, &kept)
        });
        drop(listed);
        drop(by_id);
        noted_repair(t, &repair, accounts.len());
        // Safeguarded like deactivations: of the accounts known before the repair.
        let (gone, known) = (repair.gone.len() as u64, pids.len() as u64);
        let allowed = self.conn.sync.max_deactivations.allowed(known);
        if gone > allowed && !self.opts.allow_mass_change {
            let limit = self.conn.sync.max_deactivations.to_string();
            return Err(self.stopped(t, &plan::Safeguard::MassRecreation { count: gone, known, limit, allowed }));
        }
        let existing = accounts.into_iter().map(|a| a.existing).collect();
        Ok(Seen { snapshot, existing, repaired: Repaired { rewrite: repair.rewrite, gone: repair.gone } })
    }

    /// Listed accounts that are nobody's here, on a first sync or a repair: possibly this
    /// connector's leavers, kept active by a lost state. Named, never touched.
    pub(super) fn note_strangers(&self, t: &mut Tally, strangers: &[String], look: &Look) {
        let lost = matches!(look, Look::Repair { lost: true });
        let first = matches!(look, Look::Adopt { first: true, .. });
        if strangers.is_empty() || !(lost || first || matches!(look, Look::Repair { .. })) {
            return;
        }
        let shown = strangers.iter().take(10).map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
        let more = if strangers.len() > 10 { format!(" and {} more", strangers.len() - 10) } else { String::new() };
        let name = &self.conn.name;
        t.note(format!(
            "{} platform account(s) carry an externalId that is in neither this file nor the state of {name}, nor another connector's ({shown}{more}); they were left as they are. If the state DB was lost or replaced they may be this connector's leavers, still active: list them in the export as inactive and run `rostersync sync {name} --reconcile`, or deactivate them on the platform",
            strangers.len()
        ));
        if first || lost {
            t.report.unplaced = strangers.len() as u64;
            t.report.message.get_or_insert_with(|| {
                format!(
                    "{} platform account(s) with externalIds absent from the file were left active (see notes); if {name}'s state was lost, they may be leavers",
                    strangers.len()
                )
            });
        }
    }

    /// The state forgets the people whose account a reconcile found deleted (just before
    /// the push: a dry run or a stopped run changes nothing). Those still active in the file
    /// are created again by the push.
    pub(super) async fn forget_gone(&self, gone: Vec<String>) -> Result<(), RunError> {
        if gone.is_empty() {
            return Ok(());
        }
        let writes: Vec<SnapshotWrite> = gone.into_iter().map(|external_id| SnapshotWrite::Remove { external_id }).collect();
        Ok(self.store.write(&self.conn.name, &writes).await?)
    }

    /// After a push whose every outcome is recorded: the marker goes, unless a create or
    /// an adoption failed (`unsettled` of them) — its account may be on the platform (an
    /// answer lost on the way), or the adoption is still pending. A failed update or
    /// deactivation of a recorded account leaves nothing unrecorded (and must not make every
    /// later run list the whole platform).
    pub(super) async fn settle_marker(&self, unsettled: u64) -> Result<(), RunError> {
        let name = &self.conn.name;
        if unsettled == 0 {
            Ok(self.store.clear_reconcile(name).await?)
        } else {
            let why = format!("{unsettled} create(s) or adoption(s) failed");
            Ok(self.store.set_reconcile(name, self.run_id, &why).await?)
        }
    }
}

fn noted_repair(t: &mut Tally, r: &plan::Repair, listed: usize) {
    tracing::info!(listed, gone = r.gone.len(), edited = r.rewrite.len(), reactivated = r.reactivated, "reconciled with the platform");
    if !r.gone.is_empty() {
        let shown = r.gone.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
        let more = if r.gone.len() > 10 { format!(" and {} more", r.gone.len() - 10) } else { String::new() };
        t.note(format!(
            "reconcile: {} account(s) of this connector were deleted on the platform ({shown}{more}): active people are created again, leavers forgotten",
            r.gone.len()
        ));
    }
    if !r.rewrite.is_empty() {
        t.note(format!(
            "reconcile: {} account(s) differed on the platform from what is mapped (edited by hand); written back",
            r.rewrite.len()
        ));
    }
    if r.reactivated > 0 {
        t.note(format!(
            "reconcile: {} leaver(s) were active again on the platform (reactivated by hand); deactivated again",
            r.reactivated
        ));
    }
}
