//! Step 5 of a run: the plan's operations sent to the platform, each outcome recorded in
//! the snapshot as it comes back, in batches, so a crash loses nothing and repeats nothing.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Job, MAX_REPORTED_ERRORS, RunError, STATE_BATCH};
use crate::model::RowError;
use crate::plan::{Op, OpKind};
use crate::platform::{Applied, Healed, ManagerLink, OpFailure, OpOutcome, Platform};
use crate::state::{SnapshotWrite, StateStore};

impl<S: StateStore> Job<'_, S> {
    /// Gives each update the content last pushed, so the platform is sent only what changed.
    pub(super) async fn attach_previous(&self, ops: &mut [Op]) -> Result<(), RunError> {
        let ids: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                // A hand-edited account (reconcile) is written whole, not patched.
                Op::Update { user, adopt: false, .. } if !self.rewrite.contains(user.external_id.as_str()) => {
                    Some(user.external_id.as_str())
                }
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut contents = self.store.contents(&self.conn.name, &ids).await.map_err(RunError::from)?;
        for op in ops.iter_mut() {
            if let Op::Update { user, adopt: false, previous, .. } = op
                && !self.rewrite.contains(user.external_id.as_str())
            {
                *previous = contents.remove(user.external_id.as_str()).map(Box::new);
            }
        }
        Ok(())
    }

    pub(super) async fn push<P: Platform>(
        &mut self,
        platform: &P,
        ops: Vec<Op>,
        known: HashMap<String, String>,
        lines: &HashMap<String, u64>,
    ) -> Result<(), RunError> {
        let total = ops.len() as u64;
        if let Some(p) = &self.opts.progress {
            p.stage(super::Stage::Push, Some(total));
        }
        let mut done = 0u64;
        // The run's one budget (shared with the fetch) gets room for this work: a retry per
        // ten operations, as the SCIM client always had.
        self.budget.grow(total / 10);
        let budget = self.budget.clone();
        let (tx, mut rx) = mpsc::channel::<OpOutcome>(4096);
        let apply = platform.apply(ops, known, &budget, tx);
        tokio::pin!(apply);
        let mut batch: Vec<SnapshotWrite> = Vec::with_capacity(STATE_BATCH);
        let mut apply_result = None;
        loop {
            tokio::select! {
                res = &mut apply, if apply_result.is_none() => { apply_result = Some(res); }
                msg = rx.recv() => match msg {
                    Some(outcome) => {
                        self.record(outcome, &mut batch, lines);
                        if self.audit.len() >= STATE_BATCH {
                            self.flush_audit().await;
                        }
                        done += 1;
                        if let Some(p) = &self.opts.progress
                            && (done.is_multiple_of(64) || done == total) {
                                p.advance(done);
                            }
                        if batch.len() >= STATE_BATCH {
                            self.store.write(&self.conn.name, &batch).await.map_err(RunError::from)?;
                            batch.clear();
                        }
                    }
                    None => break,
                },
                // Outcomes paused: commit what we have so a crash now loses nothing.
                _ = tokio::time::sleep(Duration::from_millis(200)), if !batch.is_empty() => {
                    self.store.write(&self.conn.name, &batch).await.map_err(RunError::from)?;
                    batch.clear();
                }
            }
        }
        if !batch.is_empty() {
            self.store.write(&self.conn.name, &batch).await.map_err(RunError::from)?;
        }
        if let Some(p) = &self.opts.progress {
            p.finish();
        }
        match apply_result {
            Some(Err(e)) => Err(RunError::from(e)),
            _ => Ok(()),
        }
    }

    /// Counts one outcome and queues its snapshot write, from the operation it hands back.
    fn record(&mut self, o: OpOutcome, batch: &mut Vec<SnapshotWrite>, lines: &HashMap<String, u64>) {
        self.audit_outcome(&o);
        let OpOutcome { result, op } = o;
        match result {
            Ok(applied) => self.record_applied(applied, op, batch),
            Err(f) => self.record_failure(&op, f, lines),
        }
    }

    fn record_applied(&mut self, applied: Applied, op: Op, batch: &mut Vec<SnapshotWrite>) {
        if applied.adopted {
            self.note(format!("{}: adopted existing platform user {} (HTTP 409 on create)", op.external_id(), applied.platform_id));
        }
        // A re-hire's account leaves the leaver's row: one account, one person.
        let rekeyed_from = if self.relinking { None } else { self.rekeys.remove(op.external_id()) };
        if let Some(healed) = applied.healed {
            return self.record_healed(healed, applied, op, batch);
        }
        // The second pass only links managers: its writes are not counted as updates.
        if !self.relinking {
            let c = &mut self.report.counts;
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
            self.note(format!("{}: re-hire of {old}: platform account {} moved to the new id", op.external_id(), applied.platform_id));
            batch.push(SnapshotWrite::Remove { external_id: old });
        }
        batch.push(match op {
            Op::Create { mut user } | Op::Update { mut user, .. } => {
                // A manager the platform could not link yet: record the user without it (so
                // a later run still sees a difference), and link it in a second pass once
                // this push has created everyone (`link_managers`).
                if applied.manager == ManagerLink::LeftUnset {
                    self.unlinked.push((applied.platform_id.clone(), user.clone()));
                    user.manager = None;
                }
                SnapshotWrite::Upsert { platform_id: applied.platform_id, user }
            }
            Op::Deactivate { external_id, .. } => SnapshotWrite::MarkInactive { external_id },
            Op::Delete { external_id, .. } => SnapshotWrite::Remove { external_id },
        });
    }

    /// A write that met a 404 (deleted on the platform by hand) and healed: an active person
    /// was created again (counted as created, the new account recorded), a leaver forgotten
    /// (counted as deactivated: they hold no active account). Reported in the notes.
    fn record_healed(&mut self, healed: Healed, applied: Applied, op: Op, batch: &mut Vec<SnapshotWrite>) {
        let id = op.external_id().to_string();
        // A re-hire whose account turned out deleted: the leaver's row goes all the same.
        if let Some(old) = self.rekeys.remove(&id) {
            batch.push(SnapshotWrite::Remove { external_id: old });
        }
        match (healed, op) {
            (Healed::Recreated, Op::Update { mut user, .. } | Op::Create { mut user }) => {
                if !self.relinking {
                    self.report.counts.created += 1;
                }
                self.note(format!("{id}: account deleted on the platform (HTTP 404); created again as {}", applied.platform_id));
                if applied.manager == ManagerLink::LeftUnset {
                    self.unlinked.push((applied.platform_id.clone(), user.clone()));
                    user.manager = None;
                }
                self.recreated.push((id, applied.platform_id.clone()));
                batch.push(SnapshotWrite::Upsert { platform_id: applied.platform_id, user });
            }
            (_, op) => {
                if !self.relinking {
                    self.report.counts.deactivated += 1;
                }
                self.note(format!("{id}: leaver's account already deleted on the platform (HTTP 404); forgotten"));
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

    fn record_failure(&mut self, op: &Op, f: OpFailure, lines: &HashMap<String, u64>) {
        // A create answered 409 that was not adopted: the account is someone else's (the
        // platform's binding rule, `writes::adopt`). A person must act; retrying cannot help.
        match op {
            // An inactive person without an account of their own (a re-hired leaver still
            // listed, whose email's account is now their new id's): nothing to deactivate.
            Op::Create { user } if f.status == Some(409) && !user.active => {
                self.report.counts.unchanged += 1;
                self.note(format!(
                    "{}: inactive, and the account with their email is someone else's; left as it is ({})",
                    user.external_id, f.message
                ));
                return;
            }
            Op::Create { .. } if f.status == Some(409) => self.report.counts.conflicts += 1,
            Op::Create { .. } | Op::Update { adopt: true, .. } => {
                self.report.counts.failed += 1;
                self.unsettled += 1;
            }
            _ => self.report.counts.failed += 1,
        }
        if self.report.errors.len() >= MAX_REPORTED_ERRORS {
            self.report.errors_left_out += 1;
            return;
        }
        let external_id = op.external_id();
        self.report.errors.push(RowError {
            line: lines.get(external_id).copied().unwrap_or(0),
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

    /// Something the report should show although the write succeeded.
    pub(super) fn note(&mut self, note: String) {
        tracing::debug!("{note}");
        if self.report.notes.len() < MAX_REPORTED_ERRORS {
            self.report.notes.push(note);
        }
    }
}

fn kind_word(k: OpKind) -> &'static str {
    match k {
        OpKind::Create => "create",
        OpKind::Update => "update",
        OpKind::Deactivate => "deactivation",
        OpKind::Delete => "deletion",
    }
}
