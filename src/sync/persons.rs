//! The per-person side of a run (issue 15): the plan person by person in the report, the
//! `--only` scope, the plan a safeguard stopped kept for `approve`, the check that an
//! approval applies exactly that plan, and the audit trail of what was sent. Decisions are
//! `crate::changes` (pure); this file reads and writes the state around them.

use std::collections::{HashMap, HashSet};

use super::{ApprovalMismatch, Ctx, RunError, Tally};
use crate::changes::{self, PersonKind};
use crate::mapping::Mapped;
use crate::model::{FileFingerprint, IdRule};
use crate::plan::{Plan, Snapshot};
use crate::platform::OpOutcome;
use crate::state::{AuditEntry, StateStore, StoredPlan};

/// A run's `--only` scope: the people it plans and pushes, by the connector's id rule.
pub(super) struct Scope {
    keys: HashSet<String>,
    rule: IdRule,
}

impl Scope {
    pub(super) fn new(ids: &[String], rule: IdRule) -> Scope {
        Scope { keys: ids.iter().map(|i| rule.key(i).into_owned()).collect(), rule }
    }

    fn has(&self, id: &str) -> bool {
        self.keys.contains(self.rule.key(id).as_ref())
    }

    /// The file, cut down to the scope: its people's rows, valid or not. Rows without a
    /// readable id are left out: `--only` names people, and such a row is nobody's here.
    pub(super) fn mapped(&self, mut m: Mapped) -> Mapped {
        m.users.retain(|u| self.has(&u.user.external_id));
        m.errors.retain(|e| e.external_id.as_deref().is_some_and(|id| self.has(id)));
        m.out_of_scope.retain(|o| self.has(&o.external_id));
        m.duplicates_untold.retain(|id, _| self.has(id));
        let kept: HashSet<u64> = m.errors.iter().map(|e| e.line).collect();
        m.ambiguous.retain(|l| kept.contains(l));
        let invalid = m.invalid_rows();
        m.rows = m.users.len() as u64 + invalid;
        m
    }

    /// The snapshot, cut down to the scope; people of the scope absent from the file are
    /// kept (so the plan deactivates them) only with `allow_absent`, else returned apart.
    pub(super) fn snapshot(&self, s: &Snapshot, in_file: &HashSet<String>, allow_absent: bool) -> (Snapshot, Vec<String>) {
        let mut out = Snapshot::default();
        let mut spared = Vec::new();
        for (id, e) in s.iter().filter(|(id, _)| self.has(id)) {
            if allow_absent || in_file.contains(self.rule.key(id).as_ref()) {
                out.insert(id.clone(), e.clone());
            } else {
                spared.push(id.clone());
            }
        }
        spared.sort();
        (out, spared)
    }
}

/// What `--only` found in the file, for the plan: its people there (by id key), and the
/// whole file's rows. Empty without `--only`.
#[derive(Default)]
pub(super) struct FileScope {
    in_file: HashSet<String>,
    file_rows: Option<u64>,
}

impl FileScope {
    /// The rows the safeguards measure against: the whole file's, also under `--only` (an
    /// absent person's scope has no row, and one invalid row of one is no "100 % invalid").
    pub(super) fn plan_rows(&self, scoped: u64) -> u64 {
        self.file_rows.unwrap_or(scoped)
    }
}

impl<S: StateStore> Ctx<'_, S> {
    /// `--only`: the file cut down to the scope (the whole file still decides what these
    /// people should be), and what the plan needs to know of the scope.
    pub(super) fn scope_mapped(&self, t: &mut Tally, mapped: Mapped) -> (Mapped, FileScope) {
        let Some(only) = &self.opts.only else { return (mapped, FileScope::default()) };
        let scope = Scope::new(only, self.conn.mapping.id_rule());
        let file_rows = Some(mapped.rows);
        let m = scope.mapped(mapped);
        let mut in_file: HashSet<String> = m.users.iter().map(|u| scope.rule.key(&u.user.external_id).into_owned()).collect();
        in_file.extend(m.errors.iter().filter_map(|e| e.external_id.as_deref()).map(|i| scope.rule.key(i).into_owned()));
        for id in only {
            if !in_file.contains(scope.rule.key(id).as_ref()) {
                t.note(format!("{id}: not in the file"));
            }
        }
        (m, FileScope { in_file, file_rows })
    }

    /// `--only`: the snapshot the plan compares with (None: the whole one).
    pub(super) fn scope_snapshot(&self, t: &mut Tally, file: &FileScope, snapshot: &Snapshot) -> Option<Snapshot> {
        let only = self.opts.only.as_ref()?;
        let scope = Scope::new(only, self.conn.mapping.id_rule());
        let (scoped, spared) = scope.snapshot(snapshot, &file.in_file, self.opts.allow_absent);
        for id in spared {
            t.note(format!("{id}: absent from the file; left as it is (pass --allow-absent to apply on_missing to them)"));
        }
        Some(scoped)
    }

    /// `--only`: max_deactivations counts against every known person, not the scope's few
    /// (one leaver of one named person would otherwise always be "100 %"); max_invalid
    /// stays the scope's.
    pub(super) fn rescope_stop(&self, plan: &mut Plan, known: usize) {
        if self.opts.only.is_none() {
            return;
        }
        if let Some(crate::plan::Safeguard::MassDeactivation { count, .. }) = plan.stop {
            let known = known as u64;
            let allowed = self.conn.sync.max_deactivations.allowed(known);
            plan.stop = (count > allowed).then(|| crate::plan::Safeguard::MassDeactivation {
                count,
                known,
                limit: self.conn.sync.max_deactivations.to_string(),
                allowed,
            });
        }
    }

    /// The plan person by person into the report: its first `MAX_LISTED` operations (a
    /// stopped plan's first `MAX_STORED_OPERATIONS`, kept for `plan show`), with the stored
    /// content of the people it changes (for their names and old values). Returns that
    /// content: of every operation with `all_operations`, for the run's `Listing`.
    pub(super) async fn describe(&self, t: &mut Tally, plan: &Plan) -> Result<HashMap<String, crate::model::User>, RunError> {
        let limit = if plan.stop.is_some() { crate::state::MAX_STORED_OPERATIONS } else { crate::report::MAX_LISTED };
        let ids = changes::stored_ids(plan, if self.opts.all_operations { usize::MAX } else { limit });
        let stored = if ids.is_empty() { HashMap::new() } else { self.store.contents(&self.conn.name, &ids).await? };
        let ops = changes::describe(plan, &stored, &self.conn.name, limit);
        t.report.operations_left_out = (plan.ops.len() + plan.conflicts.len()).saturating_sub(ops.len()) as u64;
        t.report.operations = ops;
        Ok(stored)
    }

    /// `all_operations`, a plan nothing will send (dry or stopped): kept whole for the output
    /// when the report lists only its first operations, and described as it is printed.
    pub(super) fn keep_listing(&self, t: &mut Tally, plan: Plan, stored: HashMap<String, crate::model::User>) {
        if self.opts.all_operations && t.report.operations_left_out > 0 {
            t.listing = Some(changes::Listing::of_plan(plan, stored, &self.conn.name).into());
        } else {
            super::drop_in_background((plan, stored));
        }
    }

    /// `all_operations`, a plan about to be sent (its people go to the push): described now
    /// into a temporary file, when the report lists only its first operations.
    pub(super) fn spill_listing(&self, t: &mut Tally, plan: &Plan, stored: HashMap<String, crate::model::User>) {
        if self.opts.all_operations && t.report.operations_left_out > 0 {
            t.listing = Some(changes::Listing::spill(plan, &stored, &self.conn.name).into());
        }
        super::drop_in_background(stored);
    }

    /// A safeguard stopped the run: its plan is kept for `plan show` and `approve`, with
    /// what it was made from. Returns the run whose plan was kept (the run's message then
    /// names the approving command).
    pub(super) async fn keep_stopped_plan(
        &self,
        t: &mut Tally,
        plan: &Plan,
        fingerprint: String,
        stop: &crate::plan::Safeguard,
    ) -> Option<String> {
        let message = stop.message(&self.conn.name);
        let file = t.report.file.clone()?;
        if self.opts.only.is_some() {
            return None;
        }
        let stored = StoredPlan {
            run_id: t.report.run_id.clone(),
            connector: self.conn.name.clone(),
            created_at: self.clock.now(),
            file,
            state_fingerprint: fingerprint,
            digest: changes::plan_digest(plan),
            operations_left_out: t.report.operations_left_out
                + t.report.operations.len().saturating_sub(crate::state::MAX_STORED_OPERATIONS) as u64,
            rule: stop.rule().to_string(),
            message,
            dry_run: self.opts.dry_run,
            operations: t.report.operations.iter().take(crate::state::MAX_STORED_OPERATIONS).cloned().collect(),
            approved: None,
        };
        match self.store.save_plan(&stored).await {
            Ok(()) => {
                t.report.approve_with = Some(format!("rostersync approve {} --reason \"…\"", t.report.run_id));
                Some(t.report.run_id.clone())
            }
            Err(e) => {
                tracing::warn!("could not keep the stopped plan for approval: {e}");
                None
            }
        }
    }

    /// `approve`: the file must be the one the plan was made from.
    pub(super) fn check_approved_file(&self, f: &FileFingerprint) -> Result<(), RunError> {
        let Some(p) = &self.opts.apply_plan else { return Ok(()) };
        if p.file.sha256 != f.sha256 {
            return Err(self.refuse(ApprovalMismatch::File {
                plan: p.run_id.clone(),
                was_path: p.file.path.clone(),
                was_sha256: p.file.sha256.clone(),
                now_path: f.path.clone(),
                now_sha256: f.sha256.clone(),
            }));
        }
        Ok(())
    }

    /// `approve`: the state must be the one the plan was made from, and the plan made now
    /// must send exactly what the stored one would (same digest).
    pub(super) fn check_approved_plan(&self, plan: &Plan, fingerprint: Option<&str>) -> Result<(), RunError> {
        let Some(p) = &self.opts.apply_plan else { return Ok(()) };
        if fingerprint != Some(p.state_fingerprint.as_str()) {
            return Err(self.refuse(ApprovalMismatch::State { plan: p.run_id.clone(), connector: self.conn.name.clone() }));
        }
        if changes::plan_digest(plan) != p.digest {
            return Err(self.refuse(ApprovalMismatch::Plan { plan: p.run_id.clone() }));
        }
        Ok(())
    }

    fn refuse(&self, mismatch: ApprovalMismatch) -> RunError {
        RunError::ApprovalRefused { connector: self.conn.name.clone(), mismatch: Box::new(mismatch) }
    }

    /// The daemon: a connector whose last run a safeguard stopped waits for its approval, or
    /// a new file, instead of stopping again on the same file at every slot.
    pub(super) async fn awaiting_approval(&self, t: &mut Tally, f: &FileFingerprint) -> Result<(), RunError> {
        if self.opts.origin != super::Origin::Daemon || self.opts.apply_plan.is_some() {
            return Ok(());
        }
        let Some(p) = self.store.pending_plan(&self.conn.name).await? else { return Ok(()) };
        if p.file.sha256 != f.sha256 || p.dry_run {
            return Ok(());
        }
        // Still stopped: status, /metrics, /healthz and the page say so until the plan is
        // approved or a new file replaces it (a "no new file" here let the staleness alert
        // and last-success move on while the customer's leavers waited).
        t.report.approve_with = Some(format!("rostersync approve {} --reason \"…\"", p.run_id));
        t.report.stopped_by = Some(p.rule.clone());
        Err(RunError::AwaitingApproval { run_id: p.run_id, rule: p.rule })
    }

    /// One operation's outcome into the audit trail (written at the end of the push).
    /// (Not of the second passes, which only link managers: `push::Pass`.)
    pub(super) fn audit_outcome(&self, t: &mut Tally, o: &OpOutcome, rekeys: &HashMap<String, String>) {
        if self.opts.dry_run {
            return;
        }
        let id = o.external_id().to_string();
        // From the operation itself (its previous content is attached by now), so the
        // trail needs no copy of the plan: a 409 that adopted is an adoption.
        let previous = match &o.op {
            crate::plan::Op::Update { previous, .. } => previous.as_deref(),
            _ => None,
        };
        let kind = match &o.result {
            Ok(a) if a.adopted => PersonKind::Adopt,
            _ => changes::kind_of(&o.op, previous, rekeys.contains_key(&id)),
        };
        let (kind, fields) = (kind.word().to_string(), changes::changed_fields(&o.op));
        let (status, http_status) = match &o.result {
            Ok(_) => ("ok".to_string(), None),
            Err(f) => ("failed".to_string(), f.status),
        };
        let approval = t.report.approval.as_ref().map(|a| format!("{}: {}", a.by, a.reason));
        t.audit.push(AuditEntry {
            connector: self.conn.name.clone(),
            external_id: id,
            run_id: t.report.run_id.clone(),
            at: self.clock.now(),
            kind,
            fields,
            status,
            http_status,
            approval,
        });
    }

    /// Writes the audit entries gathered so far (also after a push that stopped half-way:
    /// what was sent is recorded).
    pub(super) async fn flush_audit(&self, t: &mut Tally) {
        self.write_audit_entries(std::mem::take(&mut t.audit)).await;
    }

    /// Writes audit entries; a failure is warned of (the trail is a record, not the run).
    pub(super) async fn write_audit_entries(&self, entries: Vec<crate::state::AuditEntry>) {
        // One transaction (`write_audit` writes it in pieces): a first sync's commits carry a
        // few thousand entries each.
        if let Err(e) = self.store.write_audit(&entries).await {
            tracing::warn!("could not write the audit trail: {e}");
        }
    }
}

/// After a recorded run: the approval it applied is marked on the stored plan (so the
/// plan is approved once), and, when it wrote to them, the audit trail and plans past
/// `audit_retention` go.
pub(super) async fn after_run<S: StateStore>(store: &S, cfg: &crate::config::Config, opts: &super::SyncOptions, done: &super::RunResult) {
    if let (Some(p), Some(a)) = (&opts.apply_plan, &done.report.approval)
        && done.report.outcome == crate::report::RunOutcome::Ok
        && let Err(e) = store.mark_approved(&p.run_id, a, &done.report.run_id).await
    {
        tracing::warn!("applied, but could not mark plan {} approved: {e}", p.run_id);
    }
    // Only after a run that wrote to the trail or kept a plan: the daemon's many quiet runs
    // (no new file) write nothing, and what they would prune waits a day at most.
    let wrote = done.report.stopped_by.is_some() || (!done.report.dry_run && !done.report.operations.is_empty());
    if wrote && let Err(e) = store.prune(cfg.state.audit_retention).await {
        tracing::warn!("could not prune the audit trail: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserFields;
    use crate::model::{RowError, SourcedUser, User};
    use crate::plan::SnapshotEntry;

    fn user(id: &str) -> SourcedUser {
        SourcedUser {
            user: Box::new(User::from(UserFields {
                external_id: id.into(),
                email: None,
                employee_id: None,
                first_name: "A".into(),
                last_name: "B".into(),
                language: "en".into(),
                active: true,
                manager: None,
                attributes: Default::default(),
            })),
            line: 2,
        }
    }

    #[test]
    fn a_scope_keeps_its_people_and_spares_absentees_unless_allowed() {
        let scope = Scope::new(&["e1".into(), "E3".into(), "E9".into()], IdRule::default());
        let err = |id: Option<&str>, line| RowError { line, column: None, message: "bad".into(), external_id: id.map(String::from) };
        let m = Mapped {
            users: vec![user("E1"), user("E2")],
            errors: vec![err(Some("E3"), 4), err(Some("E3"), 4), err(Some("E4"), 5), err(None, 6)],
            rows: 6,
            ..Mapped::default()
        };
        let m = scope.mapped(m);
        assert_eq!(m.users.iter().map(|u| u.user.external_id.as_str()).collect::<Vec<_>>(), vec!["E1"]);
        assert_eq!(m.errors.len(), 2, "E3's two errors of one row");
        assert_eq!(m.rows, 2, "E1 and E3's row");

        let e = SnapshotEntry { platform_id: "P".into(), hash: [0; 16], active: true };
        let snap: Snapshot = ["E1", "E2", "E3", "E9"].iter().map(|i| (i.to_string(), e.clone())).collect();
        let in_file: HashSet<String> = ["e1".to_string(), "e3".to_string()].into_iter().collect();
        let (s, spared) = scope.snapshot(&snap, &in_file, false);
        let mut keys: Vec<&String> = s.keys().collect();
        keys.sort();
        assert_eq!(keys, vec!["E1", "E3"]);
        assert_eq!(spared, vec!["E9".to_string()]);
        let (s, spared) = scope.snapshot(&snap, &in_file, true);
        assert_eq!(s.len(), 3, "E9 is planned as absent");
        assert!(spared.is_empty());
    }
}
