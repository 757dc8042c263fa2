//! Step 4 of a run: the plan. The platform client, the pure plan (`crate::plan`) against
//! the snapshot, the platform's accounts and the other connectors' bindings; its identities
//! settled; a safeguard's stop, an approval's check, a dry run's report. What it hands the
//! push is `Planned`.

use std::collections::{HashMap, HashSet};

use super::persons::FileScope;
use super::reconcile::{Look, Repaired, Seen};
use super::{Ctx, MAX_REPORTED_ERRORS, RunError, Tally, drop_in_background, managers};
use crate::mapping::Mapped;
use crate::plan::{self, Existing, OpKind, Plan, PlanInput};
use crate::platform::scim::ScimClient;
use crate::report::RunOutcome;
use crate::state::StateStore;

/// What the plan step decided.
pub(super) enum Decided {
    /// Operations to send.
    Push(Box<Planned>),
    /// Nothing to send: a dry run, whose plan is in the report; what it would change of
    /// the people, for the groups' preview.
    Reported(super::groups::Overlay),
}

/// A plan ready to push.
pub(super) struct Planned {
    pub plan: Plan,
    /// The platform ids of the managers the pushed users refer to.
    pub known: HashMap<String, String>,
    /// Re-hires: new external id → the leaver whose account it takes (its snapshot row goes
    /// when the write succeeds).
    pub rekeys: HashMap<String, String>,
    /// What a repair found, for the push.
    pub repaired: Repaired,
    /// The deactivations a `mass_deactivation` stop holds for approval while the rest is
    /// sent (`on_safeguard = "hold-deactivations"`; `hold.rs`).
    pub held: Option<Plan>,
}

/// Other connectors' people the plan may meet, as partial snapshots (`other_snapshots`).
type Others = Vec<(String, plan::Snapshot)>;

impl<S: StateStore> Ctx<'_, S> {
    /// Plans from the file and what the run knows of the platform; stops on a safeguard or a
    /// refused approval (Err), reports a dry run, or hands the plan to the push.
    pub(super) async fn decide(
        &self,
        t: &mut Tally,
        mapped: Mapped,
        scope: &FileScope,
        seen: Seen,
        look: &Look,
        platform: Option<&mut ScimClient>,
    ) -> Result<Decided, RunError> {
        let Seen { snapshot, existing, repaired } = seen;
        // Other connectors' people, when this plan may take accounts: matched platform users
        // now, creates (which may meet them on a 409) after planning.
        let mut others = if existing.is_empty() {
            None
        } else {
            let pids: Vec<&str> = existing.iter().map(|e| e.platform_id.as_str()).collect();
            Some(self.other_snapshots(t, &pids, &[]).await?)
        };
        // Until a connector's first file has been synced in full it is in its first sync: an
        // interrupted first sync's next run creates the rest of the same people, which is no
        // wrong file (the budget and the id check compare with a population that is known).
        let first_file = snapshot.is_empty() || self.store.last_file(&self.conn.name).await?.is_none();
        let (drift, profile) = if first_file { (None, None) } else { self.drift(&mapped, &snapshot).await? };
        let (mut plan, mut known) = {
            let held = others.as_deref().unwrap_or_default();
            let view = plan::Others { snapshots: held.iter().map(|(c, s)| (c.as_str(), s)).collect() };
            self.plan(t, mapped, scope, &snapshot, &existing, &view)
        };
        self.spare_protected(t, &mut plan).await?;
        self.grace(t, &mut plan).await?;
        // Said before the counts it causes (a mass deactivation, creates over the budget):
        // what happened to the ids or a column is what the operator tells the customer.
        if drift.is_some() {
            plan.stop = drift;
        }
        // What an approval is checked against: computed only when one may be needed.
        let fingerprint = (plan.stop.is_some() || self.opts.apply_plan.is_some()).then(|| crate::changes::state_fingerprint(&snapshot));
        self.check_approved_plan(&plan, fingerprint.as_deref())?;
        self.note_strangers(t, &std::mem::take(&mut plan.strangers), look);
        // on_safeguard = "hold-deactivations": a mass deactivation holds only those (below).
        let holding = self.conn.sync.lifecycle.on_safeguard == plan::settings::OnSafeguard::HoldDeactivations
            && matches!(plan.stop, Some(plan::Safeguard::MassDeactivation { .. }));
        if let Some(stop) = plan.stop.clone().filter(|_| !holding) {
            drop_in_background(snapshot);
            return Err(self.stop_plan(t, plan, &stop, fingerprint.unwrap_or_default()).await);
        }
        if plan.ops.iter().any(|o| matches!(o, plan::Op::Create { .. })) {
            self.settle_creates(t, &mut plan, &mut others, platform).await?;
        }
        // Split once re-hires are settled: the held plan is what an approval finds left.
        let held = if holding { plan::lifecycle::hold_deactivations(&mut plan) } else { None };
        if let Some(h) = &held {
            t.note(super::hold::held_note(h, &self.conn.name));
        }
        drop_in_background(others);
        managers::add_rekeyed(&mut known, &plan.rekeyed);
        // The change budget sees the plan as it will be sent: re-hires settled, each update
        // with the content last synced (its before → after).
        let known_before = if first_file { 0 } else { snapshot.len() as u64 };
        if let Some(stop) = self.over_budget(&mut plan, &repaired, known_before, profile.as_ref()).await? {
            let fingerprint = crate::changes::state_fingerprint(&snapshot);
            drop_in_background(snapshot);
            plan.stop = Some(stop.clone());
            return Err(self.stop_plan(t, plan, &stop, fingerprint).await);
        }
        drop_in_background(snapshot);
        let rekeys = self.count_identities(t, &plan);
        let stored = self.describe(t, &plan).await?;
        if self.opts.dry_run {
            count_planned(t, &plan, &rekeys);
            let overlay = super::groups::Overlay::of(self.conn.mapping.groups.as_ref(), &plan);
            self.keep_listing(t, plan, stored);
            return Ok(Decided::Reported(overlay));
        }
        self.spill_listing(t, &plan, stored);
        Ok(Decided::Push(Box::new(Planned { plan, known, rekeys, repaired, held })))
    }

    /// The file against the last good one, before anything is planned: its ids against the
    /// people last synced (`plan::drift`), else its columns against the last good file's
    /// (`plan::profile`: a column emptied). Also the last good file's profile, which the
    /// plan's dates are compared with once it is made (every date changed).
    async fn drift(
        &self,
        mapped: &Mapped,
        snapshot: &plan::Snapshot,
    ) -> Result<(Option<plan::Safeguard>, Option<crate::state::FileProfile>), RunError> {
        let profile = self.last_profile().await?;
        if let Some(d) = self.id_drift(mapped, snapshot) {
            return Ok((Some(plan::Safeguard::IdDrift(Box::new(d))), profile));
        }
        let emptied = profile.as_ref().and_then(|p| plan::profile::emptied(&p.fill, &p.synced_at.date_naive().to_string(), &mapped.fill));
        Ok((emptied.map(|d| plan::Safeguard::ColumnDrift(Box::new(d))), profile))
    }

    /// The file's ids against the people last synced (`plan::drift`). Not asked when a
    /// person let the run past the safeguards, nor for a run scoped to a few people.
    fn id_drift(&self, mapped: &Mapped, snapshot: &plan::Snapshot) -> Option<plan::drift::Drift> {
        if self.opts.allow_mass_change || self.opts.apply_plan.is_some() || self.opts.only.is_some() || snapshot.is_empty() {
            return None;
        }
        let rule = self.conn.mapping.id_rule();
        let keys: Vec<std::borrow::Cow<'_, str>> = mapped.users.iter().map(|u| rule.key(&u.user.external_id)).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.as_ref()).collect();
        plan::drift::check(snapshot.len() as u64, |id| snapshot.contains_key(id), || snapshot.keys().map(String::as_str), &ids)
    }

    /// The column fill of the connector's last good file (`FileProfiles`), when this run
    /// compares with it: not when a person let the run past the safeguards, nor for a run
    /// scoped to a few people.
    async fn last_profile(&self) -> Result<Option<crate::state::FileProfile>, RunError> {
        if self.opts.allow_mass_change || self.opts.apply_plan.is_some() || self.opts.only.is_some() {
            return Ok(None);
        }
        Ok(self.store.file_profile(&self.conn.name).await?)
    }

    /// Whether the plan changes every date of a date column at once (`plan::profile`), or
    /// more than the connector's change budget allows (`plan::budget`): logins, blanked
    /// values, re-keys, creates, updates. Not asked when a person let the run past the
    /// safeguards (`--allow-mass-change`, `approve`), nor in a first sync (`known` 0).
    async fn over_budget(
        &self,
        plan: &mut Plan,
        repaired: &Repaired,
        known: u64,
        profile: Option<&crate::state::FileProfile>,
    ) -> Result<Option<plan::Safeguard>, RunError> {
        if self.opts.allow_mass_change || self.opts.apply_plan.is_some() || known == 0 {
            return Ok(None);
        }
        self.attach_previous(&mut plan.ops, &repaired.rewrite).await?;
        let dates: Vec<plan::profile::DateColumn> = self
            .conn
            .mapping
            .attributes
            .iter()
            .filter(|(_, r)| r.date.is_some())
            .filter_map(|(a, r)| match r.columns().as_slice() {
                [column] => Some(plan::profile::DateColumn { attribute: a, column }),
                _ => None,
            })
            .collect();
        let last_good = profile.map(|p| (&p.fill, p.synced_at.date_naive().to_string()));
        let last = last_good.as_ref().map(|(f, d)| (*f, d.as_str()));
        if let Some(d) = plan::profile::dates_changed(&plan.ops, &dates, last, known) {
            return Ok(Some(plan::Safeguard::ColumnDrift(Box::new(d))));
        }
        let over = plan::budget::check(&plan.ops, known, plan.rekeyed.len() as u64, &self.conn.sync.budget);
        Ok(over.map(|o| plan::Safeguard::OverBudget(Box::new(o))))
    }

    /// A safeguard stopped the plan: what it would have done (the counts and the list, with
    /// the reason) into the report, the plan kept for `approve`.
    async fn stop_plan(&self, t: &mut Tally, plan: Plan, stop: &plan::Safeguard, fingerprint: String) -> RunError {
        let rekeys = self.count_identities(t, &plan);
        let stored = match self.describe(t, &plan).await {
            Ok(stored) => stored,
            Err(e) => return e,
        };
        count_planned(t, &plan, &rekeys);
        let mut e = self.stopped(t, stop);
        if let RunError::Stopped { kept, .. } = &mut e {
            *kept = self.keep_stopped_plan(t, &plan, fingerprint, stop).await;
        }
        self.keep_listing(t, plan, stored);
        e
    }

    /// The creates of the plan against other connectors' people (read now, by the creates'
    /// ids) and this one's leavers; the accounts they claim go to the platform client.
    async fn settle_creates(
        &self,
        t: &mut Tally,
        plan: &mut Plan,
        others: &mut Option<Others>,
        platform: Option<&mut ScimClient>,
    ) -> Result<(), RunError> {
        if self.others_hold_any(t).await? {
            let rule = self.conn.mapping.id_rule();
            // Borrowed where the id is its own key: no copy of a million ids on a first sync.
            let keys: Vec<std::borrow::Cow<'_, str>> = plan
                .ops
                .iter()
                .filter_map(|o| match o {
                    plan::Op::Create { user } => Some(rule.key(&user.external_id)),
                    _ => None,
                })
                .collect();
            let keys: Vec<&str> = keys.iter().map(|k| k.as_ref()).collect();
            let more = self.other_snapshots(t, &[], &keys).await?;
            others.get_or_insert_default().extend(more);
        }
        self.settle(plan, others.as_deref().unwrap_or_default()).await?;
        if let Some(p) = platform {
            p.set_claimed(std::mem::take(&mut plan.claimed));
        }
        Ok(())
    }

    /// The lifecycle's last word (`plan::lifecycle::spare`): people whose stored userName
    /// is protected keep their account as it is, though the file no longer names them; the
    /// protected accounts met are said once, and the people given no account counted.
    async fn spare_protected(&self, t: &mut Tally, plan: &mut Plan) -> Result<(), RunError> {
        let rules = &self.conn.sync.lifecycle;
        let ids: Vec<String> = plan::lifecycle::names_wanted(plan, rules).into_iter().map(str::to_string).collect();
        if !ids.is_empty() {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let names: plan::lifecycle::StoredNames =
                self.store.contents(&self.conn.name, &ids).await?.into_iter().map(|(id, u)| (id, u.user_name().to_string())).collect();
            let protected = plan::lifecycle::Protected::new(&rules.protected);
            plan::lifecycle::spare(plan, &Default::default(), &protected, &names, &mut t.report.lifecycle);
        }
        t.report.counts.skipped = t.report.lifecycle.skipped_count();
        if !t.report.lifecycle.protected.is_empty() {
            let named =
                t.report.lifecycle.protected.iter().map(|p| format!("\"{}\"", crate::text::excerpt(p))).collect::<Vec<_>>().join(", ");
            t.note(format!("protected accounts left as they are, whatever the file says ([sync] protected): {named}"));
        }
        Ok(())
    }

    /// `deactivate_after`: absentees keep their account until absent that long (pure:
    /// `plan::lifecycle::grace`); who is absent since when is recorded for the next run (not
    /// by a dry run, nor by `--only`, which sees a part of the people).
    async fn grace(&self, t: &mut Tally, plan: &mut Plan) -> Result<(), RunError> {
        let Some(after) = self.conn.sync.lifecycle.deactivate_after else { return Ok(()) };
        let recorded = self.store.absences(&self.conn.name).await?;
        let absences = plan::lifecycle::grace(plan, &recorded, super::clock::now(), after, &mut t.report.lifecycle);
        if !self.opts.dry_run && self.opts.only.is_none() {
            self.store.set_absences(&self.conn.name, &absences.absent, &absences.back).await?;
        }
        Ok(())
    }

    /// The platform client; a dry run goes on without one (nothing is matched then).
    pub(super) async fn connect_platform(&self, t: &mut Tally) -> Result<Option<ScimClient>, RunError> {
        let target = self.cfg.target(self.conn)?;
        let own = crate::platform::targets::Targets::default();
        match ScimClient::connect_to(&target, self.opts.targets.as_deref().unwrap_or(&own)).await {
            Ok(mut p) => {
                p.set_id_rule(self.conn.mapping.id_rule());
                p.set_connector(&self.conn.name);
                // A 409's partial match is adopted only in a run a person let through.
                p.set_adopt_partial(self.opts.allow_mass_change);
                p.set_rehire(self.conn.sync.rehire);
                self.note_dropped_attributes(t, &p, &target.platform.custom_schema);
                self.note_no_enterprise(t, &p);
                self.note_undefined_attributes(t, &p);
                Ok(Some(p))
            }
            Err(e) if self.opts.dry_run => {
                tracing::warn!("dry run without the platform ({e}); existing platform users are not matched");
                Ok(None)
            }
            Err(e) => Err(RunError::from(e)),
        }
    }

    /// A platform without the custom schema drops the mapped attributes that belong to it:
    /// said once per run, naming them, in the log and the report (not once per user).
    fn note_dropped_attributes(&self, t: &mut Tally, p: &ScimClient, schema: &str) {
        if p.capabilities().custom_schema {
            return;
        }
        let dropped: Vec<&str> =
            self.conn.mapping.attributes.keys().map(String::as_str).filter(|a| crate::platform::scim::is_custom(a)).collect();
        if dropped.is_empty() {
            return;
        }
        let text = format!(
            "the platform does not offer the custom schema {schema}, so these mapped attributes are not sent: {}; add the schema on the platform, set custom_schema in [platform] to one it offers, or drop them from the mapping",
            dropped.join(", ")
        );
        tracing::warn!("{text}");
        t.report.notes.push(text);
    }

    /// A platform without the enterprise extension gets none of it: said once per run,
    /// naming the mapped attributes not sent.
    fn note_no_enterprise(&self, t: &mut Tally, p: &ScimClient) {
        if p.enterprise_offered() {
            return;
        }
        let m = &self.conn.mapping;
        let mut dropped: Vec<&str> = m.attributes.keys().map(String::as_str).filter(|a| crate::platform::scim::is_enterprise(a)).collect();
        if m.fields.contains_key(&crate::mapping::rules::PlatformField::EmployeeId) {
            dropped.insert(0, "employee_id");
        }
        if dropped.is_empty() {
            return;
        }
        let text = format!(
            "the platform does not offer the enterprise extension (urn:ietf:params:scim:schemas:extension:enterprise:2.0:User), so these mapped attributes are not sent: {}; add the extension on the platform, or drop them from the mapping",
            dropped.join(", ")
        );
        tracing::warn!("{text}");
        t.report.notes.push(text);
    }

    /// The plan (pure), less the updates that could only link a manager not there yet, and
    /// the platform ids of the managers the pushed users refer to.
    fn plan(
        &self,
        t: &mut Tally,
        mapped: Mapped,
        scope: &FileScope,
        snapshot: &plan::Snapshot,
        existing: &[Existing],
        others: &plan::Others,
    ) -> (Plan, HashMap<String, String>) {
        let invalid_ids: HashSet<String> = mapped.errors.iter().filter_map(|e| e.external_id.clone()).collect();
        let unidentified = mapped.unidentified_lines();
        // `--only`: the plan compares the scope's people; managers still resolve in the whole.
        let scoped = self.scope_snapshot(t, scope, snapshot);
        // The lifecycle (issue 27) sorts the file's people first: who gets no account, who
        // is left as they are; the plan compares the rest.
        let sorted = plan::lifecycle::sort(plan::lifecycle::SortInput {
            users: mapped.users,
            out_of_scope: &mapped.out_of_scope,
            dates: &mapped.dates,
            today: super::clock::now().with_timezone(&self.conn.schedule.as_ref().map_or(chrono_tz::UTC, |s| s.tz)).date_naive(),
            snapshot: scoped.as_ref().unwrap_or(snapshot),
            existing,
            rules: &self.conn.sync.lifecycle,
            id_rule: self.conn.mapping.id_rule(),
        });
        let mut plan = plan::plan_with(
            PlanInput {
                snapshot: scoped.as_ref().unwrap_or(snapshot),
                users: sorted.users,
                invalid_ids: &invalid_ids,
                unidentified: &unidentified,
                rows: scope.plan_rows(mapped.rows),
                invalid: t.report.counts.invalid,
                existing: sorted.existing.as_deref().unwrap_or(existing),
                rule: &self.conn.sync,
                allow_mass_change: self.opts.allow_mass_change,
                id_rule: self.conn.mapping.id_rule(),
            },
            others,
        );
        let mut held = sorted.held;
        let protected = plan::lifecycle::Protected::new(&self.conn.sync.lifecycle.protected);
        plan::lifecycle::spare(&mut plan, &sorted.spare, &protected, &Default::default(), &mut held);
        t.report.lifecycle = held;
        self.rescope_stop(&mut plan, snapshot.len());
        tracing::debug!(ops = plan.ops.len(), unchanged = plan.unchanged, elapsed = ?self.started.elapsed(), "planned");
        let known = managers::known_managers(&plan.ops, snapshot);
        plan.unchanged += managers::drop_unlinkable(&mut plan.ops, &mut plan.lines, snapshot);
        if plan.held > 0 {
            t.report.held = plan.held;
            t.report.notes.push(held_note(plan.held, &unidentified));
        }
        (plan, known)
    }

    /// What the connectors whose accounts this one may not take (every other connector of
    /// the state but those its `adopt_from` names) hold among these platform ids and these
    /// ids (in `IdRule::key` form), as partial snapshots: the rows the plan can meet, read in
    /// one statement, not every connector's whole snapshot. Read under the platform lease
    /// (`adoption`), so no other connector of this config binds meanwhile.
    async fn other_snapshots(&self, t: &mut Tally, platform_ids: &[&str], keys: &[&str]) -> Result<Others, RunError> {
        let elsewhere = self.lease_if_shared(t).await?;
        let held = self.store.held_elsewhere(&self.not_elsewhere(), platform_ids, keys, self.conn.mapping.id_rule()).await?;
        let mut by: std::collections::BTreeMap<String, plan::Snapshot> = std::collections::BTreeMap::new();
        // Filtered here, not in the statement: the rows are few (those the plan can meet),
        // the connectors on other targets may be thousands.
        for h in held.into_iter().filter(|h| !elsewhere.contains(h.connector.as_str())) {
            // Only the binding is read from these (`plan::Others`): no hash, always active.
            let entry = plan::SnapshotEntry { platform_id: h.platform_id, hash: [0; 16], active: true };
            by.entry(h.connector).or_default().insert(h.external_id, entry);
        }
        Ok(by.into_iter().collect())
    }

    /// Whether any connector whose accounts this one may not take holds people in the state,
    /// read under the platform lease as `other_snapshots` is. Alone in the state (one
    /// customer, or the first to sync), a plan's ids need not be looked up: a first sync's
    /// million creates were a million-id list built, encoded as JSON and scanned for nothing
    /// (a twentieth of a 1M dry run's CPU, perf).
    async fn others_hold_any(&self, t: &mut Tally) -> Result<bool, RunError> {
        self.lease_if_shared(t).await?;
        Ok(self.store.others_hold_any(&self.not_elsewhere()).await?)
    }

    /// Takes the platform lease when another connector of this config shares the platform
    /// and may not be adopted from; returns the connectors on other targets.
    async fn lease_if_shared(&self, t: &mut Tally) -> Result<std::collections::HashSet<&str>, RunError> {
        // Alone on the platform (or free to take every other's accounts): no binding of
        // another connector of this config to keep apart from.
        // Connectors on other targets hold accounts of other directories: never seen here.
        let elsewhere = super::adoption::on_other_targets(self.cfg, self.conn);
        if self
            .cfg
            .connectors
            .keys()
            .any(|n| *n != self.conn.name && !self.conn.sync.adopt_from.contains(n) && !elsewhere.contains(&n.as_str()))
        {
            self.take_platform_lease(t).await?;
        }
        Ok(elsewhere)
    }

    /// The connectors whose accounts are never "held elsewhere": this one and those its
    /// `adopt_from` names.
    fn not_elsewhere(&self) -> Vec<&str> {
        let mut exclude: Vec<&str> = vec![self.conn.name.as_str()];
        exclude.extend(self.conn.sync.adopt_from.iter().map(String::as_str));
        exclude
    }

    /// The creates of the plan against other connectors' people and this one's leavers
    /// (`plan::settle`): the leavers' emails are read from the state here.
    async fn settle(&self, plan: &mut Plan, others: &[(String, plan::Snapshot)]) -> Result<(), RunError> {
        let ids: Vec<&str> = plan.dormant.iter().map(|d| d.external_id.as_str()).collect();
        let names: HashMap<String, String> = if ids.is_empty() {
            HashMap::new()
        } else {
            let contents = self.store.contents(&self.conn.name, &ids).await?;
            contents.into_iter().map(|(id, u)| (id, u.user_name().to_string())).collect()
        };
        let view = plan::Others { snapshots: others.iter().map(|(c, s)| (c.as_str(), s)).collect() };
        plan::settle(
            plan,
            plan::Settle { others: &view, names: &names, rehire: self.conn.sync.rehire, id_rule: self.conn.mapping.id_rule() },
        );
        Ok(())
    }

    /// Conflicts into the report (both ids, the line) and the unchanged count: absentees
    /// left alone are unchanged too, so every person is counted once. Returns the re-hires,
    /// for the push to record: new external id → the leaver whose account it takes.
    fn count_identities(&self, t: &mut Tally, plan: &Plan) -> HashMap<String, String> {
        t.report.counts.unchanged = plan.unchanged + plan.ignored + plan.held;
        t.report.counts.conflicts = plan.conflicts.len() as u64;
        let conflicts = plan.conflicts.iter().map(|c| (c.line, c.message(&self.conn.name), &c.external_id));
        // Partial matches not applied (the run stopped for them): conflicts until approved.
        let partial = plan.partial.iter().filter(|_| plan.stop.is_some());
        t.report.counts.conflicts += partial.clone().count() as u64;
        let partial = partial.map(|m| (m.line, m.message(&self.conn.name), &m.external_id));
        for (line, message, id) in conflicts.chain(partial) {
            if t.report.errors.len() < MAX_REPORTED_ERRORS {
                t.report.errors.push(crate::model::RowError { line, column: None, message, external_id: Some(id.clone()) });
            }
        }
        plan.rekeyed.iter().map(|r| (r.new.clone(), r.old.clone())).collect()
    }

    /// A safeguard stopped the run: nothing has been pushed.
    pub(super) fn stopped(&self, t: &mut Tally, stop: &plan::Safeguard) -> RunError {
        t.report.outcome = RunOutcome::Stopped;
        t.report.stopped_by = Some(stop.rule().to_string());
        RunError::Stopped { connector: self.conn.name.clone(), safeguard: stop.clone(), kept: None }
    }
}

/// A dry run (or a stopped one) reports what the plan would do.
fn count_planned(t: &mut Tally, plan: &Plan, rekeys: &HashMap<String, String>) {
    let c = &mut t.report.counts;
    // A stopped plan's partial matches are counted as conflicts (`count_identities`).
    let partial: HashSet<&str> = plan.partial.iter().filter(|_| plan.stop.is_some()).map(|m| m.external_id.as_str()).collect();
    for op in plan.ops.iter().filter(|o| !partial.contains(o.external_id())) {
        match (op, op.kind()) {
            (plan::Op::Update { user, .. }, _) if rekeys.contains_key(user.external_id.as_str()) => c.rekeyed += 1,
            (plan::Op::Update { adopt: true, .. }, _) => c.adopted += 1,
            (_, OpKind::Create) => c.created += 1,
            (_, OpKind::Update) => c.updated += 1,
            (_, OpKind::Deactivate) => c.deactivated += 1,
            (_, OpKind::Delete) => c.deleted += 1,
        }
    }
}

/// Why people absent from the file were left as they were.
fn held_note(held: u64, unidentified: &[u64]) -> String {
    const SHOWN: usize = 10;
    let lines = unidentified.iter().take(SHOWN).map(u64::to_string).collect::<Vec<_>>().join(", ");
    let more = if unidentified.len() > SHOWN { format!(" and {} more", unidentified.len() - SHOWN) } else { String::new() };
    format!(
        "{held} people absent from the file were not deactivated or deleted: {} row(s) have no readable unique id, or one that another row has too (line(s) {lines}{more}), and any of them may be theirs. Fix those rows in the export; the next run then applies the leavers",
        unidentified.len()
    )
}
