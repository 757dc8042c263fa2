//! Step 5 of a run: the plan's operations sent to the platform, each outcome recorded in
//! the snapshot as it comes back, in batches, so a crash loses nothing and repeats nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::mpsc;

use super::planning::Planned;
use super::{Ctx, MAX_REPORTED_ERRORS, RunError, STATE_BATCH, Tally};
use crate::model::{RowError, Str, User};
use crate::plan::{Op, OpKind};
use crate::platform::{Applied, Healed, ManagerLink, OpFailure, OpOutcome, Platform};
use crate::state::{AuditEntry, SnapshotWrite, StateError, StateStore};

/// Snapshot writes (or audit entries) that may wait for the commit in flight before the
/// outcomes behind them wait too. A crash loses at most these of the snapshot: the reconcile
/// marker, still up, has the next run match them on the platform rather than create twice.
const PENDING_LIMIT: usize = 8 * STATE_BATCH;

/// The file line of each operation's person, for the report's errors: looked up only for an
/// operation that failed. A list sorted by id, searched by halves: as a hash map, a first
/// sync's million entries took 67 MB through the push (the table half empty past its last
/// doubling), as a list 32 MB.
#[derive(Default)]
pub(super) struct Lines(Vec<(Str, u64)>);

impl Lines {
    /// From `(id, line)` pairs in any order.
    pub(super) fn new(mut pairs: Vec<(Str, u64)>) -> Lines {
        // A first sync's creates come sorted by id already: checked in one pass.
        if !pairs.is_sorted_by(|a, b| a.0 <= b.0) {
            pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        Lines(pairs)
    }

    fn get(&self, id: &str) -> Option<u64> {
        let i = self.0.binary_search_by(|(k, _)| k.as_str().cmp(id)).ok()?;
        Some(self.0[i].1)
    }
}

/// Which push this is: the plan's own, or a second pass that only links managers (its
/// writes are neither counted as updates nor audited, and move no re-hire's row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    Plan,
    Relink,
}

/// What a push leaves for the steps after it.
#[derive(Default)]
pub(super) struct Pushed {
    /// Users written without their manager (not on the platform at the time), to link in
    /// a second pass once the push has created everyone: platform id and full content.
    pub unlinked: Vec<(String, Box<User>)>,
    /// People whose account a 404 showed deleted and this push created again (external id,
    /// new platform id): their reports' manager references are pointed at the new account.
    pub recreated: Vec<(String, String)>,
    /// People this push deleted (`on_missing = "delete"`): their reports' manager links
    /// are cleared in the same run (`managers::unlink_reports`).
    /// (external id, platform id).
    pub deleted: Vec<(String, String)>,
    /// Operations that failed.
    pub failed: u64,
    /// Creates and adoptions that failed: the account may be on the platform unrecorded (a
    /// lost answer), or an adoption is pending, so the reconcile marker stays set.
    pub unsettled: u64,
    /// Re-hires whose write did not go through (yet): a later pass that writes the person
    /// still moves the leaver's row.
    pub rekeys: HashMap<String, String>,
}

impl<S: StateStore> Ctx<'_, S> {
    /// The plan to the platform: previous contents attached, the reconcile's forgotten
    /// people removed, the reconcile marker raised, then the push.
    pub(super) async fn push_plan<P: Platform>(&self, t: &mut Tally, platform: &P, planned: Planned) -> Result<Pushed, RunError> {
        let Planned { mut plan, known, rekeys, repaired, .. } = planned;
        self.attach_previous(&mut plan.ops, &repaired.rewrite).await?;
        let lines = Lines::new(plan.lines_by_id());
        // The marker goes up before the first write and comes down only once every outcome
        // is recorded (`settle_marker`): a crash, a stop or a state error leaves it set.
        self.forget_gone(repaired.gone).await?;
        if !plan.ops.is_empty() {
            self.store.set_reconcile(&self.conn.name, self.run_id, "push started").await?;
        }
        // Renames ordered so uniqueness never blocks them (`plan::renames`): stages sent one
        // after the other, a swap through a temporary login.
        let staged = crate::plan::renames::order(plan.ops, self.run_id.split('-').next().unwrap_or(self.run_id));
        if !staged.temporary.is_empty() {
            t.note(format!(
                "{} login swap(s) in this file: each goes through a temporary login first (recorded, so an interrupted swap is finished by the next run)",
                staged.temporary.len()
            ));
        }
        let mut rec = Recorder::new(self, t, Pass::Plan, &lines, rekeys);
        rec.temporary = staged.temporary;
        let ended = rec.push_stages(platform, staged.stages, known).await;
        ended.map(|()| rec.out)
    }

    /// Gives each update the content last pushed, so the platform is sent only what changed.
    /// A hand-edited account (`rewrite`, from a reconcile) is written whole, not patched.
    /// Updates that have it already (the change budget asked first) are not read again.
    pub(super) async fn attach_previous(&self, ops: &mut [Op], rewrite: &HashSet<String>) -> Result<(), RunError> {
        let ids: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Update { user, adopt: false, previous: None, .. } if !rewrite.contains(user.external_id.as_str()) => {
                    Some(user.external_id.as_str())
                }
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut contents = self.store.contents(&self.conn.name, &ids).await?;
        for op in ops.iter_mut() {
            if let Op::Update { user, adopt: false, previous: previous @ None, .. } = op
                && !rewrite.contains(user.external_id.as_str())
            {
                *previous = contents.remove(user.external_id.as_str()).map(Box::new);
            }
        }
        Ok(())
    }

    /// Sends `ops` and records each outcome as it comes back. Returns what the push leaves
    /// for the next steps, whether it ended or failed half-way (then with the error).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn push<P: Platform>(
        &self,
        t: &mut Tally,
        platform: &P,
        ops: Vec<Op>,
        known: HashMap<String, String>,
        lines: &Lines,
        pass: Pass,
        rekeys: HashMap<String, String>,
    ) -> (Pushed, Result<(), RunError>) {
        let mut rec = Recorder::new(self, t, pass, lines, rekeys);
        let pushing = crate::alloc::Pushing::start();
        let ended = rec.push(platform, ops, known).await;
        drop(pushing);
        (rec.out, ended)
    }
}

/// One push in progress: the outcomes into the report, the audit trail and the snapshot.
struct Recorder<'r, 'a, S: StateStore> {
    ctx: &'r Ctx<'a, S>,
    t: &'r mut Tally,
    pass: Pass,
    lines: &'r Lines,
    out: Pushed,
    /// People whose next outcome is a temporary rename (`plan::renames`): recorded in the
    /// snapshot (so a crash before the final rename is finished by the next run), neither
    /// counted nor audited — their final rename is.
    temporary: HashSet<String>,
    /// Platform ids written by earlier stages, for the managers of later ones.
    learned: HashMap<String, String>,
    /// Whether a later stage follows, to learn for: the last (nearly always the only) one
    /// does not copy a million ids for nobody.
    learn: bool,
}

impl<'r, 'a, S: StateStore> Recorder<'r, 'a, S> {
    fn new(ctx: &'r Ctx<'a, S>, t: &'r mut Tally, pass: Pass, lines: &'r Lines, rekeys: HashMap<String, String>) -> Self {
        let out = Pushed { rekeys, ..Pushed::default() };
        Recorder { ctx, t, pass, lines, out, temporary: HashSet::new(), learned: HashMap::new(), learn: false }
    }

    /// The stages of `plan::renames`, one after the other; a stage that fails ends the push
    /// (what it left unsent, the next run sends).
    async fn push_stages<P: Platform>(
        &mut self,
        platform: &P,
        stages: Vec<Vec<Op>>,
        mut known: HashMap<String, String>,
    ) -> Result<(), RunError> {
        let last = stages.len().saturating_sub(1);
        for (i, ops) in stages.into_iter().enumerate() {
            self.learn = i < last;
            let known_here = if self.learn { known.clone() } else { std::mem::take(&mut known) };
            self.push(platform, ops, known_here).await?;
            known.extend(self.learned.drain());
        }
        Ok(())
    }
}

impl<S: StateStore> Recorder<'_, '_, S> {
    async fn push<P: Platform>(&mut self, platform: &P, ops: Vec<Op>, known: HashMap<String, String>) -> Result<(), RunError> {
        let (ctx, progress) = (self.ctx, self.ctx.opts.progress.as_deref());
        let total = ops.len() as u64;
        if let Some(p) = progress {
            p.stage(super::Stage::Push, Some(total));
        }
        let mut done = 0u64;
        // The run's one budget (shared with the fetch) gets room for this work: a retry per
        // ten operations, as the SCIM client always had.
        ctx.budget.grow(total / 10);
        let (tx, mut rx) = mpsc::channel::<OpOutcome>(4096);
        let apply = platform.apply(ops, known, &ctx.budget, tx);
        tokio::pin!(apply);
        let mut batch: Vec<SnapshotWrite> = Vec::with_capacity(STATE_BATCH);
        let mut apply_result = None;
        // The commit of the last full batch runs while the next one fills: one at a time, in
        // order. Awaiting each commit in turn kept the outcomes (and, once their channel was
        // full, the requests) waiting on the store: a 1M first sync spent half its time so.
        let mut writing = None;
        loop {
            // Audit entries count too: failures add entries and no snapshot write.
            if writing.is_none() && (batch.len() >= STATE_BATCH || self.t.audit.len() >= STATE_BATCH) {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(STATE_BATCH));
                writing = Some(Box::pin(commit(ctx, full, std::mem::take(&mut self.t.audit))));
            }
            // Outcomes go on gathering while a commit runs, and the next commit takes them all:
            // fewer, larger transactions (each commit costs the writer a WAL header, a cache
            // sweep and a checkpoint check). Past `PENDING_LIMIT` they wait for the commit.
            let full = batch.len() >= PENDING_LIMIT || self.t.audit.len() >= PENDING_LIMIT;
            tokio::select! {
                res = &mut apply, if apply_result.is_none() => { apply_result = Some(res); }
                written = async { writing.as_mut().expect("polled only while writing").await }, if writing.is_some() => {
                    writing = None;
                    written?;
                }
                msg = rx.recv(), if !full => match msg {
                    Some(outcome) => {
                        self.record(outcome, &mut batch);
                        done += 1;
                        if let Some(p) = progress
                            && (done.is_multiple_of(64) || done == total) {
                                p.advance(done);
                            }
                    }
                    None => break,
                },
                // Outcomes paused: commit what we have so a crash now loses nothing.
                _ = tokio::time::sleep(Duration::from_millis(200)), if !batch.is_empty() && writing.is_none() => {
                    writing = Some(Box::pin(commit(ctx, std::mem::take(&mut batch), std::mem::take(&mut self.t.audit))));
                }
            }
        }
        if let Some(w) = writing {
            w.await?;
        }
        if !batch.is_empty() {
            ctx.store.write(&ctx.conn.name, &batch).await?;
        }
        if let Some(p) = progress {
            p.finish();
        }
        match apply_result {
            Some(Err(e)) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Counts one outcome and queues its snapshot write, from the operation it hands back.
    fn record(&mut self, o: OpOutcome, batch: &mut Vec<SnapshotWrite>) {
        if self.temporary.remove(o.external_id()) {
            return self.record_temporary(o, batch);
        }
        if self.pass == Pass::Plan {
            self.ctx.audit_outcome(self.t, &o, &self.out.rekeys);
        }
        let OpOutcome { result, op } = o;
        match result {
            Ok(applied) => self.record_applied(applied, op, batch),
            Err(f) => self.record_failure(&op, f),
        }
    }

    /// A temporary rename: its content into the snapshot when it went through (the final
    /// rename, a later stage, replaces it); a failure is the person's, said once.
    fn record_temporary(&mut self, o: OpOutcome, batch: &mut Vec<SnapshotWrite>) {
        match (o.result, o.op) {
            (Ok(applied), Op::Update { user, .. }) => batch.push(SnapshotWrite::Upsert { platform_id: applied.platform_id, user }),
            (Err(f), op) => self.t.note(format!(
                "{}: the temporary login of a swap was refused ({}); the swap waits for the next run",
                op.external_id(),
                f.message
            )),
            _ => {}
        }
    }

    fn record_applied(&mut self, applied: Applied, op: Op, batch: &mut Vec<SnapshotWrite>) {
        if let Op::Create { user } | Op::Update { user, .. } = &op
            && self.learn
        {
            self.learned.insert(user.external_id.to_string(), applied.platform_id.clone());
        }
        if applied.adopted {
            self.t.note(format!("{}: adopted existing platform user {} (HTTP 409 on create)", op.external_id(), applied.platform_id));
        }
        // A re-hire's account leaves the leaver's row: one account, one person.
        let rekeyed_from = if self.pass == Pass::Relink { None } else { self.out.rekeys.remove(op.external_id()) };
        if let Some(healed) = applied.healed {
            return self.record_healed(healed, applied, op, batch);
        }
        // The second pass only links managers: its writes are not counted as updates.
        if self.pass == Pass::Plan {
            let c = &mut self.t.report.counts;
            match (&op, op.kind()) {
                _ if rekeyed_from.is_some() => c.rekeyed += 1,
                _ if applied.adopted => c.adopted += 1,
                (Op::Update { adopt: true, .. }, _) => c.adopted += 1,
                (_, OpKind::Create) => c.created += 1,
                (_, OpKind::Update) => c.updated += 1,
                (_, OpKind::Deactivate) => c.deactivated += 1,
                (_, OpKind::Delete) => c.deleted += 1,
            }
        }
        if let Some(old) = rekeyed_from {
            self.t.note(format!("{}: re-hire of {old}: platform account {} moved to the new id", op.external_id(), applied.platform_id));
            batch.push(SnapshotWrite::Remove { external_id: old });
        }
        batch.push(match op {
            Op::Create { mut user } | Op::Update { mut user, .. } => {
                // A manager the platform could not link yet: record the user without it (so
                // a later run still sees a difference), and link it in a second pass once
                // this push has created everyone (`link_managers`).
                if applied.manager == ManagerLink::LeftUnset {
                    self.out.unlinked.push((applied.platform_id.clone(), user.clone()));
                    user.manager = None;
                }
                SnapshotWrite::Upsert { platform_id: applied.platform_id, user }
            }
            Op::Deactivate { external_id, .. } => SnapshotWrite::MarkInactive { external_id },
            Op::Delete { external_id, platform_id } => {
                if self.pass == Pass::Plan {
                    self.out.deleted.push((external_id.clone(), platform_id));
                }
                SnapshotWrite::Remove { external_id }
            }
        });
    }

    /// A write that met a 404 (deleted on the platform by hand) and healed: an active person
    /// was created again (counted as created, the new account recorded), a leaver forgotten
    /// (counted as deactivated: they hold no active account). Reported in the notes.
    fn record_healed(&mut self, healed: Healed, applied: Applied, op: Op, batch: &mut Vec<SnapshotWrite>) {
        let id = op.external_id().to_string();
        // A re-hire whose account turned out deleted: the leaver's row goes all the same.
        if let Some(old) = self.out.rekeys.remove(&id) {
            batch.push(SnapshotWrite::Remove { external_id: old });
        }
        match (healed, op) {
            (Healed::Recreated, Op::Update { mut user, .. } | Op::Create { mut user }) => {
                if self.pass == Pass::Plan {
                    self.t.report.counts.created += 1;
                }
                self.t.note(format!("{id}: account deleted on the platform (HTTP 404); created again as {}", applied.platform_id));
                if applied.manager == ManagerLink::LeftUnset {
                    self.out.unlinked.push((applied.platform_id.clone(), user.clone()));
                    user.manager = None;
                }
                self.out.recreated.push((id, applied.platform_id.clone()));
                batch.push(SnapshotWrite::Upsert { platform_id: applied.platform_id, user });
            }
            (_, op) => {
                if self.pass == Pass::Plan {
                    self.t.report.counts.deactivated += 1;
                }
                self.t.note(format!("{id}: leaver's account already deleted on the platform (HTTP 404); forgotten"));
                batch.push(match op {
                    // Still listed, as a leaver: kept as an inactive person with no account,
                    // so the next run neither creates one nor tries again (a re-hire under
                    // this id is a reactivation, whose 404 creates the account).
                    Op::Update { user, .. } => SnapshotWrite::Upsert { platform_id: applied.platform_id, user },
                    _ => SnapshotWrite::Remove { external_id: id },
                });
            }
        }
    }

    fn record_failure(&mut self, op: &Op, f: OpFailure) {
        // A create answered 409 that was not adopted: the account is someone else's (the
        // platform's binding rule, `writes::adopt`). A person must act; retrying cannot help.
        match op {
            // An inactive person without an account of their own (a re-hired leaver still
            // listed, whose email's account is now their new id's): nothing to deactivate.
            Op::Create { user } if f.status == Some(409) && !user.active => {
                self.t.report.counts.unchanged += 1;
                self.t.note(format!(
                    "{}: inactive, and the account with their email is someone else's; left as it is ({})",
                    user.external_id, f.message
                ));
                return;
            }
            Op::Create { .. } if f.status == Some(409) => self.t.report.counts.conflicts += 1,
            Op::Create { .. } | Op::Update { adopt: true, .. } => {
                self.t.report.counts.failed += 1;
                self.out.failed += 1;
                self.out.unsettled += 1;
            }
            _ => {
                self.t.report.counts.failed += 1;
                self.out.failed += 1;
            }
        }
        if self.t.report.errors.len() >= MAX_REPORTED_ERRORS {
            self.t.report.errors_left_out += 1;
            return;
        }
        let external_id = op.external_id();
        self.t.report.errors.push(RowError {
            line: self.lines.get(external_id).unwrap_or(0),
            column: None,
            message: format!(
                "{} of \"{}\" failed{}: {}",
                kind_word(op.kind()),
                external_id,
                f.status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
                f.message
            ),
            external_id: Some(external_id.to_string()),
        });
    }
}

/// One batch's commit: its snapshot writes, then the audit entries recorded with them (a
/// trail that cannot be written is warned of, not the run's failure: `flush_audit`).
async fn commit<S: StateStore>(ctx: &Ctx<'_, S>, batch: Vec<SnapshotWrite>, audit: Vec<AuditEntry>) -> Result<(), StateError> {
    if !batch.is_empty() {
        ctx.store.write(&ctx.conn.name, &batch).await?;
    }
    ctx.write_audit_entries(audit).await;
    Ok(())
}

fn kind_word(k: OpKind) -> &'static str {
    match k {
        OpKind::Create => "create",
        OpKind::Update => "update",
        OpKind::Deactivate => "deactivation",
        OpKind::Delete => "deletion",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_by_id_in_any_order_given() {
        let pairs = |ids: &[(&str, u64)]| ids.iter().map(|&(i, l)| (Str::from(i), l)).collect::<Vec<_>>();
        for given in [pairs(&[("E1", 2), ("E2", 3), ("E9", 7)]), pairs(&[("E9", 7), ("E1", 2), ("E2", 3)])] {
            let lines = Lines::new(given);
            assert_eq!((lines.get("E1"), lines.get("E2"), lines.get("E9")), (Some(2), Some(3), Some(7)));
            assert_eq!((lines.get("E3"), lines.get(""), lines.get("e1")), (None, None, None));
        }
        assert_eq!(Lines::default().get("E1"), None);
    }
}
