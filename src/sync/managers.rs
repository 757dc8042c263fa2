//! Managers: a user's manager is a reference to another user's platform id, which exists
//! only once that user is on the platform. What cannot be linked in the push is linked in a
//! second pass; what could never be linked yet is not sent at all.

use std::collections::{HashMap, HashSet};

use super::push::{Pass, Pushed};
use super::{Ctx, RunError, Tally};
use crate::model::User;
use crate::plan::{self, Op};
use crate::platform::Platform;
use crate::state::StateStore;

impl<S: StateStore> Ctx<'_, S> {
    /// After the push: the reports of managers it created again get their manager reference
    /// (`relink_reports`), then everyone written without a manager gets it (`link_unlinked`).
    /// Returns the creates and adoptions of every pass that failed (`settle_marker`).
    pub(super) async fn link_managers<P: Platform>(&self, t: &mut Tally, platform: &P, pushed: Pushed) -> Result<u64, RunError> {
        let Pushed { mut unlinked, recreated, deleted, unsettled, rekeys, .. } = pushed;
        let cleared = self.unlink_reports(t, platform, deleted).await?;
        let relinked = self.relink_reports(t, platform, recreated, rekeys).await?;
        unlinked.extend(relinked.unlinked);
        let linked = self.link_unlinked(t, platform, unlinked, relinked.rekeys).await?;
        Ok(unsettled + cleared.unsettled + relinked.unsettled + linked.unsettled)
    }

    /// Managers this push deleted: the people they managed would point at a deleted account.
    /// Their manager link is removed in the same run (a PATCH of just that), and they are
    /// recorded without it, so it is set again the run their manager is back.
    async fn unlink_reports<P: Platform>(&self, t: &mut Tally, platform: &P, deleted: Vec<(String, String)>) -> Result<Pushed, RunError> {
        if deleted.is_empty() {
            return Ok(Pushed::default());
        }
        let ids: Vec<&str> = deleted.iter().map(|(id, _)| id.as_str()).collect();
        let reports = self.store.reports_of(&self.conn.name, &ids).await?;
        let ops: Vec<Op> = reports
            .into_values()
            .map(|(platform_id, user)| {
                let mut without = user.clone();
                without.manager = None;
                Op::Update { platform_id, user: Box::new(without), adopt: false, previous: Some(Box::new(user)) }
            })
            .collect();
        if ops.is_empty() {
            return Ok(Pushed::default());
        }
        t.note(format!("{} people's manager was deleted; their manager reference is removed", ops.len()));
        // The deleted managers' platform ids: the diff from the previous content is then the
        // removal of the manager reference.
        let known: HashMap<String, String> = deleted.into_iter().collect();
        let (pushed, ended) = self.push(t, platform, ops, known, &super::push::Lines::default(), Pass::Relink, HashMap::new()).await;
        ended.map(|()| pushed)
    }

    /// Second pass for reports whose manager did not exist when they were written (a
    /// manager cycle in the data, or a manager created later in the same push): now that
    /// everyone exists, set just the manager. Those whose manager is still not on the
    /// platform (not in the export, or their row invalid) are noted in the report.
    async fn link_unlinked<P: Platform>(
        &self,
        t: &mut Tally,
        platform: &P,
        unlinked: Vec<(String, Box<User>)>,
        rekeys: HashMap<String, String>,
    ) -> Result<Pushed, RunError> {
        if unlinked.is_empty() {
            return Ok(Pushed::default());
        }
        // Only the managers' rows: reloading the whole snapshot for them held a second copy
        // of a million users at the end of a first sync (its peak) and took seconds.
        let mut managers: Vec<&str> = unlinked.iter().filter_map(|(_, u)| u.manager()).collect();
        managers.sort_unstable();
        managers.dedup();
        let known: HashMap<String, String> = self.store.platform_ids(&self.conn.name, &managers).await?;
        let (linkable, absent): (Vec<_>, Vec<_>) =
            unlinked.into_iter().partition(|(_, u)| u.manager().is_some_and(|m| known.contains_key(m)));
        note_unlinked(t, absent.iter().map(|(_, u)| &**u));
        let ops: Vec<Op> = linkable
            .into_iter()
            .map(|(platform_id, user)| {
                let mut previous = user.clone();
                previous.manager = None;
                Op::Update { platform_id, user, adopt: false, previous: Some(previous) }
            })
            .collect();
        if ops.is_empty() {
            return Ok(Pushed::default());
        }
        let n = ops.len();
        let (pushed, ended) = self.push(t, platform, ops, known, &super::push::Lines::default(), Pass::Relink, rekeys).await;
        // Whatever the second pass still left unset (it should not: every manager was known).
        note_unlinked(t, pushed.unlinked.iter().map(|(_, u)| &**u));
        tracing::info!("linked the manager of {n} user(s) in a second pass");
        ended.map(|()| pushed)
    }

    /// Managers this push created again (their account was deleted by hand, `Healed`): the
    /// people they manage still point at the deleted account. Each is written again whole
    /// (a replace without a path, which servers that refuse a PATCH of the manager path
    /// take), with the manager's new account.
    async fn relink_reports<P: Platform>(
        &self,
        t: &mut Tally,
        platform: &P,
        recreated: Vec<(String, String)>,
        rekeys: HashMap<String, String>,
    ) -> Result<Pushed, RunError> {
        if recreated.is_empty() {
            return Ok(Pushed { rekeys, ..Pushed::default() });
        }
        let ids: Vec<&str> = recreated.iter().map(|(id, _)| id.as_str()).collect();
        let reports = self.store.reports_of(&self.conn.name, &ids).await?;
        let known: HashMap<String, String> = recreated.into_iter().collect();
        let ops: Vec<Op> = reports
            .into_values()
            .filter(|(_, user)| user.active)
            .map(|(platform_id, user)| Op::Update { platform_id, user: Box::new(user), adopt: false, previous: None })
            .collect();
        if ops.is_empty() {
            return Ok(Pushed { rekeys, ..Pushed::default() });
        }
        t.note(format!(
            "{} people's manager was created again (deleted on the platform); their manager reference is set to the new account",
            ops.len()
        ));
        let (pushed, ended) = self.push(t, platform, ops, known, &super::push::Lines::default(), Pass::Relink, rekeys).await;
        ended.map(|()| pushed)
    }
}

fn note_unlinked<'u>(t: &mut Tally, users: impl Iterator<Item = &'u User>) {
    for u in users {
        let m = u.manager().unwrap_or_default();
        t.note(format!(
            "{}: manager {m} is not on the platform (not synced, nor created by this run: missing from the export, or their row is invalid); left unset until they are",
            u.external_id
        ));
    }
}

/// Updates of synced users whose only difference is a manager not there yet are dropped
/// from this run (the link is made once the manager exists). While the manager is still
/// neither known nor created by this push, that update would change nothing: drop it and
/// count the user unchanged (returns how many). Judged by the stored content hash, so the
/// content of these users (5% of a large file whose managers' rows are invalid) is never
/// loaded from the state.
pub(super) fn drop_unlinkable(ops: &mut Vec<Op>, lines: &mut Vec<u64>, snapshot: &plan::Snapshot) -> u64 {
    // Only updates of synced users qualify (a first sync has none).
    if snapshot.is_empty() || !ops.iter().any(|o| matches!(o, Op::Update { adopt: false, .. })) {
        return 0;
    }
    // Managers this run creates or adopts (a recovery's listing): their reports are linked
    // in the same run, never left without their link.
    let created: HashSet<&str> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Create { user } | Op::Update { user, adopt: true, .. } => Some(user.external_id.as_str()),
            _ => None,
        })
        .collect();
    let unlinkable = |op: &Op| match op {
        Op::Update { user, adopt: false, .. } => match user.manager() {
            Some(m) if !snapshot.contains_key(m) && !created.contains(m) => {
                let mut without = (**user).clone();
                without.manager = None;
                snapshot.get(user.external_id.as_str()).is_some_and(|e| e.hash == without.content_hash())
            }
            _ => false,
        },
        _ => false,
    };
    let keep: Vec<bool> = ops.iter().map(|o| !unlinkable(o)).collect();
    let dropped = keep.iter().filter(|k| !**k).count() as u64;
    if dropped > 0 {
        // `lines` runs parallel to `ops`: filter both by the same flags.
        let mut it = keep.iter();
        ops.retain(|_| *it.next().unwrap_or(&true));
        let mut it = keep.iter();
        lines.retain(|_| *it.next().unwrap_or(&true));
    }
    dropped
}

/// Re-keyed people (a re-hire's account moved from the leaver's id): the leaver's id names
/// the same account, so a report whose manager moved with it is linked to the same
/// platform id as before and is sent no manager write (one that changes nothing).
pub(super) fn add_rekeyed(known: &mut HashMap<String, String>, rekeyed: &[plan::Rekey]) {
    for r in rekeyed {
        known.entry(r.old.clone()).or_insert_with(|| r.platform_id.clone());
    }
}

/// Managers' platform ids, for the manager references of the users being pushed.
pub(super) fn known_managers(ops: &[Op], snapshot: &plan::Snapshot) -> HashMap<String, String> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Create { user } | Op::Update { user, .. } => user.manager(),
            _ => None,
        })
        .filter_map(|m| snapshot.get(m).map(|e| (m.to_string(), e.platform_id.clone())))
        .collect()
}
