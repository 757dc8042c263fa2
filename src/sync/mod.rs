//! One run of one connector: source → format → mapping → plan → platform → state.
//! The only module that knows every stage; each stage's decisions stay in its module.
//!
//! A run is a list of steps (`Job::execute`), one file each:
//! `lease` → `fetch` → `parse` → plan (here) → `push` → `managers` → finish (here).

mod adoption;
mod error;
mod fetch;
mod lease;
mod managers;
mod parse;
mod persons;
mod push;
mod reconcile;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;

pub use self::error::{ApprovalMismatch, FileRefusal, RunError};
pub use self::fetch::{Downloaded, download};
use self::fetch::{Fetch, Got};
pub(crate) use self::lease::hostname;
pub use self::parse::parse_file;
use crate::config::{Config, Connector};
use crate::exit::{Classify, Exit};
use crate::mapping::Mapped;
use crate::model::User;
use crate::plan::Existing;
use crate::plan::{self, OpKind, Plan, PlanInput};
use crate::platform::scim::ScimClient;
use crate::report::{Report, RunOutcome};
use crate::state::{LastFile, StateStore};

/// Where a run reports progress (the CLI draws bars on a terminal; the daemon logs).
pub trait Progress: Send + Sync {
    /// A new stage begins, with its total when known.
    fn stage(&self, stage: Stage, total: Option<u64>);
    /// Work done so far in the current stage (bytes, or operations).
    fn advance(&self, done: u64);
    fn finish(&self);
}

/// The stages a progress display shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Bytes of this file.
    Download(String),
    /// Operations sent to the platform.
    Push,
}

/// How one run was asked for.
#[derive(Clone, Default)]
pub struct SyncOptions {
    /// Progress display; None draws nothing.
    pub progress: Option<std::sync::Arc<dyn Progress>>,
    /// Plan and report; push nothing, record no file, move nothing.
    pub dry_run: bool,
    /// Sync this local file instead of fetching (a file the customer sent by other means).
    pub file: Option<PathBuf>,
    /// Go on even when a safeguard would stop the run.
    pub allow_mass_change: bool,
    /// Sync even when the file is the one already synced.
    pub force: bool,
    /// Who runs this (for leases): "cli" or "daemon".
    pub origin: String,
    /// `--only`: plan and push just these people (by unique id); the file is not recorded
    /// as synced and `after` is not applied.
    pub only: Option<Vec<String>>,
    /// With `only`: people of the scope absent from the file get on_missing.
    pub allow_absent: bool,
    /// Who let this run past a safeguard and why (`--allow-mass-change --reason`, `approve`).
    pub approval: Option<crate::report::Approval>,
    /// `approve`: the stored plan this run applies, only if the file and state are the same.
    pub apply_plan: Option<crate::state::StoredPlan>,
    /// Record no run in history (`explain`'s look at one person).
    pub unrecorded: bool,
    /// List every operation in the report (`--json`, `--plan-out`), not the first
    /// `report::MAX_LISTED`.
    pub all_operations: bool,
    /// Reconcile: list every platform account and repair drift for this connector's
    /// (accounts deleted or edited by hand, a lost state). Syncs the current file even when
    /// it was synced already.
    pub reconcile: bool,
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("dry_run", &self.dry_run)
            .field("file", &self.file)
            .field("allow_mass_change", &self.allow_mass_change)
            .field("force", &self.force)
            .field("origin", &self.origin)
            .field("only", &self.only)
            .field("allow_absent", &self.allow_absent)
            .field("approval", &self.approval)
            .field("apply_plan", &self.apply_plan.as_ref().map(|p| &p.run_id))
            .field("unrecorded", &self.unrecorded)
            .field("all_operations", &self.all_operations)
            .field("reconcile", &self.reconcile)
            .finish()
    }
}

impl SyncOptions {
    fn origin_or_cli(&self) -> &str {
        if self.origin.is_empty() { "cli" } else { &self.origin }
    }
}

/// A finished run: the report, the process exit code it implies, and whether running it
/// again soon may end otherwise (from the typed error that ended it, never from its text).
/// Built by `RunResult::ended` and `RunResult::failed`, which classify the failure.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub report: Report,
    pub exit: Exit,
    /// A dropped connection or a platform outage may pass; a changed host key, a refused
    /// login, a bad file or a safeguard stop will not until a person acts.
    pub retriable: bool,
    /// Why the run failed or stopped, typed (`report.message` is its text); None when it
    /// ended as planned. `exit` and `retriable` are its `Classify`.
    pub failure: Option<std::sync::Arc<RunError>>,
    /// With `all_operations`, every operation when the report lists only the first ones
    /// (`--json` and `--plan-out` print it whole; `report::Whole`).
    pub listing: Option<std::sync::Arc<crate::changes::Listing>>,
}

impl RunResult {
    /// A run that ended as planned (a sync, no new file, waiting for approval).
    pub fn ended(report: Report, listing: Option<std::sync::Arc<crate::changes::Listing>>) -> RunResult {
        RunResult { report, exit: Exit::Ok, retriable: false, failure: None, listing }
    }

    /// A run that failed or stopped: its exit code and retry come from the error.
    pub fn failed(report: Report, e: RunError, listing: Option<std::sync::Arc<crate::changes::Listing>>) -> RunResult {
        RunResult { report, exit: e.exit(), retriable: e.retriable(), failure: Some(std::sync::Arc::new(e)), listing }
    }
}

/// Report errors kept in full; the counts always have the totals.
const MAX_REPORTED_ERRORS: usize = crate::report::MAX_LISTED;
/// Snapshot writes are committed in batches of this size (or sooner, when outcomes pause).
const STATE_BATCH: usize = 1000;

/// One run in progress: what it was given and what it has found so far.
struct Job<'a, S: StateStore> {
    cfg: &'a Config,
    conn: &'a Connector,
    store: &'a S,
    opts: &'a SyncOptions,
    report: Report,
    started: Instant,
    /// Users written without their manager (not on the platform at the time), to link in
    /// a second pass once the push has created everyone: platform id and full content.
    unlinked: Vec<(String, Box<User>)>,
    /// Set during that second pass: its writes are not counted as updates.
    relinking: bool,
    /// Retries left for the whole run, SFTP and SCIM together (`crate::retry`).
    budget: crate::retry::Budget,
    /// Re-hires of this push: new external id → the leaver whose account it takes (its
    /// snapshot row goes when the write succeeds).
    rekeys: HashMap<String, String>,
    /// `--only`: the scope's people found in the file (by id key), and the file's rows.
    in_file: HashSet<String>,
    file_rows: Option<u64>,
    /// Audit entries of the outcomes so far, written at the end of the push.
    audit: Vec<crate::state::AuditEntry>,
    /// A reconcile's hand-edited accounts: their updates replace every mapped attribute.
    rewrite: HashSet<String>,
    /// People whose account a 404 showed deleted and this push created again (external id,
    /// new platform id): their reports' manager references are pointed at the new account.
    recreated: Vec<(String, String)>,
    /// A reconcile's people whose account is gone from the platform: their snapshot rows
    /// go just before the push (`forget_gone`).
    forget: Vec<String>,
    /// Creates and adoptions of this push that failed: the account may be on the platform
    /// unrecorded (a lost answer), or an adoption is pending, so the marker stays set.
    unsettled: u64,
    /// The platform-wide lease of a run that binds accounts (`adoption`): taken before the
    /// other connectors' bindings are read, released once the push is recorded.
    binding: &'a adoption::Binding,
    /// `all_operations`: the whole plan, person by person (`persons::keep_listing`).
    listing: Option<std::sync::Arc<crate::changes::Listing>>,
}

/// Runs one sync. Never panics on bad input; every failure is in the report.
pub async fn run<S: StateStore>(cfg: &Config, conn: &Connector, store: &S, opts: &SyncOptions) -> RunResult {
    use tracing::Instrument;
    let run_id = uuid::Uuid::new_v4().to_string();
    // Inside a span that already names the connector (the daemon's, per connector), the run's
    // adds only its id: a human log line then says `connector=acme` once, not twice.
    let named = tracing::Span::current().metadata().is_some_and(|m| m.fields().field("connector").is_some());
    let span = if named {
        tracing::info_span!("run", run_id = %run_id)
    } else {
        tracing::info_span!("run", connector = %conn.name, run_id = %run_id)
    };
    run_in(cfg, conn, store, opts, run_id).instrument(span).await
}

async fn run_in<S: StateStore>(cfg: &Config, conn: &Connector, store: &S, opts: &SyncOptions, run_id: String) -> RunResult {
    let holder = lease::holder(opts.origin_or_cli(), &run_id);
    let binding = adoption::Binding::new(&holder, &conn.name);
    let job = Job {
        cfg,
        conn,
        store,
        opts,
        report: Report::new(&conn.name, &run_id, opts.dry_run),
        started: Instant::now(),
        unlinked: Vec::new(),
        relinking: false,
        budget: crate::retry::Budget::default(),
        rekeys: HashMap::new(),
        in_file: HashSet::new(),
        file_rows: None,
        audit: Vec::new(),
        rewrite: HashSet::new(),
        recreated: Vec::new(),
        forget: Vec::new(),
        unsettled: 0,
        binding: &binding,
        listing: None,
    };
    let mut job = job;
    job.report.approval = opts.approval.clone();
    // A dry run writes nothing, so it needs no lease and may run beside a real one.
    let leased = !opts.dry_run;
    if leased && let Err(e) = lease::acquire(store, &conn.name, &holder).await {
        return job.fail(RunError::from(e));
    }
    if !opts.unrecorded
        && let Err(e) = store.start_run(&conn.name, &run_id, Utc::now()).await
    {
        if leased {
            let _ = store.release(&conn.name, &holder).await;
        }
        return job.fail(RunError::from(e));
    }

    let result = lease::with_heartbeat(store, &conn.name, &holder, leased, binding.renewing(store, job.execute()))
        .await
        .unwrap_or_else(|lost| Err(RunError::from(lost)));
    // Every binding of the push is recorded (or the push ended): others may decide now.
    binding.release(store).await;
    job.flush_audit().await;
    let mut done = match result {
        Ok(exit) => job.finish(exit),
        Err(e) => job.fail(e),
    };
    done.report.duration_ms = done.report.duration_ms.max(1);
    if !opts.unrecorded {
        if let Err(e) = store.finish_run(&done.report, Utc::now()).await {
            tracing::error!("could not record the run in history: {e}");
        }
        persons::after_run(store, cfg, opts, &done).await;
    }
    if leased {
        let _ = store.release(&conn.name, &holder).await;
    }
    done
}

impl<S: StateStore> Job<'_, S> {
    fn fail(mut self, e: RunError) -> RunResult {
        tracing::error!("{e}");
        if self.report.outcome == RunOutcome::Ok {
            self.report.outcome = if e.exit() == Exit::Stopped { RunOutcome::Stopped } else { RunOutcome::Failed };
        }
        self.report.message = Some(e.to_string());
        self.report.duration_ms = self.started.elapsed().as_millis() as u64;
        RunResult::failed(self.report, e, self.listing)
    }

    fn finish(mut self, exit: Exit) -> RunResult {
        self.report.duration_ms = self.started.elapsed().as_millis() as u64;
        debug_assert_eq!(exit, Exit::Ok, "a run that did not end as planned is a RunError");
        RunResult::ended(self.report, self.listing)
    }

    /// The run proper, step by step; Ok carries the exit code of a run that ended as planned.
    async fn execute(&mut self) -> Result<Exit, RunError> {
        let last = self.store.last_file(&self.conn.name).await.map_err(RunError::from)?;
        let (fetched, preloaded) = self.fetch_and_preload(last.as_ref()).await;
        let mut got = match fetched? {
            Fetch::NoNewFile(why) => return self.no_new_file(why, last.as_ref()),
            Fetch::Got(g) => *g,
        };
        self.report.file = Some(got.fingerprint.clone());
        self.report.notes.append(&mut got.notes);
        self.check_approved_file(&got.fingerprint)?;
        if self.awaiting_approval(&got.fingerprint).await? {
            return Ok(Exit::Ok);
        }
        let mapped = self.parse(&mut got).await?;
        let mapped = self.scope_mapped(mapped);
        self.count_rows(&mapped);
        let mut snapshot = match preloaded {
            Some(loaded) => loaded,
            None => self.store.snapshot(&self.conn.name).await,
        }
        .map_err(RunError::from)?;
        tracing::debug!(users = snapshot.len(), elapsed = ?self.started.elapsed(), "snapshot loaded");
        let mut platform = self.connect_platform().await?;
        let look = self.look(&snapshot, last.as_ref()).await?;
        let existing = self.existing_users(platform.as_ref(), &mut snapshot, &mapped.users, &look).await?;
        // Other connectors' people, when this plan may take accounts: matched platform users
        // now, creates (which may meet them on a 409) after planning.
        let mut others = if existing.is_empty() {
            None
        } else {
            let pids: Vec<&str> = existing.iter().map(|e| e.platform_id.as_str()).collect();
            Some(self.other_snapshots(&pids, &[]).await?)
        };
        let (mut plan, known) = {
            let held = others.as_deref().unwrap_or_default();
            let view = plan::Others { snapshots: held.iter().map(|(c, s)| (c.as_str(), s)).collect() };
            self.plan(mapped, &snapshot, &existing, &view)
        };
        // What an approval is checked against: computed only when one may be needed.
        let fingerprint = (plan.stop.is_some() || self.opts.apply_plan.is_some()).then(|| crate::changes::state_fingerprint(&snapshot));
        drop_in_background(snapshot);
        self.check_approved_plan(&plan, fingerprint.as_deref())?;
        self.note_strangers(&std::mem::take(&mut plan.strangers), &look);
        if let Some(stop) = plan.stop.clone() {
            let stop = &stop;
            self.count_identities(&plan);
            // What the plan would have done: the counts and the list, with the reason.
            let stored = self.describe(&plan).await?;
            self.count_planned(&plan);
            let mut e = self.stopped(stop);
            if let RunError::Stopped { kept, .. } = &mut e {
                *kept = self.keep_stopped_plan(&plan, fingerprint.unwrap_or_default(), stop).await;
            }
            self.keep_listing(plan, stored);
            return Err(e);
        }
        if plan.ops.iter().any(|o| matches!(o, plan::Op::Create { .. })) {
            let rule = self.conn.mapping.id_rule();
            let keys: Vec<String> = plan
                .ops
                .iter()
                .filter_map(|o| match o {
                    plan::Op::Create { user } => Some(rule.key(&user.external_id).into_owned()),
                    _ => None,
                })
                .collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let more = self.other_snapshots(&[], &keys).await?;
            others.get_or_insert_default().extend(more);
            self.settle(&mut plan, others.as_deref().unwrap_or_default()).await?;
            if let Some(p) = platform.as_mut() {
                p.set_claimed(std::mem::take(&mut plan.claimed));
            }
        }
        drop_in_background(others);
        self.count_identities(&plan);
        let stored = self.describe(&plan).await?;
        if self.opts.dry_run {
            self.count_planned(&plan);
            self.keep_listing(plan, stored);
            return Ok(Exit::Ok);
        }
        self.spill_listing(&plan, stored);
        let Some(platform) = platform else {
            return Err(RunError::NoPlatformClient);
        };
        self.attach_previous(&mut plan.ops).await?;
        let lines = plan.lines_by_id();
        // The marker goes up before the first write and comes down only once every outcome
        // is recorded (`settle_marker`): a crash, a stop or a state error leaves it set.
        self.forget_gone().await?;
        if !plan.ops.is_empty() {
            self.store.set_reconcile(&self.conn.name, &self.report.run_id, "push started").await.map_err(RunError::from)?;
        }
        self.push(&platform, plan.ops, known, &lines).await?;
        // Failures of the push proper decide the run; the second pass only links managers.
        let failed = self.report.counts.failed;
        self.relink_reports(&platform).await?;
        self.link_managers(&platform).await?;
        self.settle_marker().await?;
        tracing::debug!(elapsed = ?self.started.elapsed(), "pushed");
        if self.opts.only.is_some() {
            // One person's push is no sync of the file: the next full run takes it again.
            return self.finish_scoped(failed);
        }
        self.finish_file(got, failed).await
    }

    /// Fetches the file while the snapshot loads: a second for a million users, begun once
    /// the download has begun, so a run that finds no new file loads nothing.
    async fn fetch_and_preload(
        &self,
        last: Option<&LastFile>,
    ) -> (Result<Fetch, RunError>, Option<Result<plan::Snapshot, crate::state::StateError>>) {
        let (began, began_rx) = tokio::sync::oneshot::channel::<()>();
        let (store, connector) = (self.store, self.conn.name.clone());
        let preload = async move {
            match began_rx.await {
                Ok(()) => Some(store.snapshot(&connector).await),
                Err(_) => None,
            }
        };
        tokio::join!(fetch::fetch(self.conn, self.opts, last.map(|l| &l.fingerprint), began, &self.budget), preload)
    }

    /// No new file: the normal quiet day, unless the export has stopped coming for longer
    /// than `stale_after` — then a failure, not a quiet success.
    fn no_new_file(&mut self, why: String, last: Option<&LastFile>) -> Result<Exit, RunError> {
        if let (Some(stale), Some(l)) = (self.conn.file.stale_after, last) {
            let age = Utc::now().signed_duration_since(l.synced_at).to_std().unwrap_or_default();
            if age > stale {
                self.report.stale = true;
                return Err(RunError::Stale { last_path: l.fingerprint.path.clone(), synced_at: l.synced_at, age, stale_after: stale });
            }
        }
        self.report.outcome = RunOutcome::NoNewFile;
        self.report.message = Some(why);
        Ok(Exit::Ok)
    }

    fn count_rows(&mut self, mapped: &Mapped) {
        tracing::debug!(rows = mapped.rows, elapsed = ?self.started.elapsed(), "file fetched, parsed and mapped");
        let c = &mut self.report.counts;
        c.rows = mapped.rows;
        c.valid = mapped.users.len() as u64;
        c.invalid = mapped.rows - mapped.users.len() as u64;
        self.report.errors = mapped.errors.iter().take(MAX_REPORTED_ERRORS).cloned().collect();
        self.report.errors_left_out = mapped.errors.len().saturating_sub(MAX_REPORTED_ERRORS) as u64;
    }

    /// The platform client; a dry run goes on without one (nothing is matched then).
    async fn connect_platform(&mut self) -> Result<Option<ScimClient>, RunError> {
        let platform_cfg = self.cfg.platform().map_err(RunError::from)?;
        match ScimClient::connect(platform_cfg).await {
            Ok(mut p) => {
                p.set_id_rule(self.conn.mapping.id_rule());
                self.note_dropped_attributes(&p, &platform_cfg.custom_schema);
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
    fn note_dropped_attributes(&mut self, p: &ScimClient, schema: &str) {
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
        self.report.notes.push(text);
    }

    /// The plan (pure), less the updates that could only link a manager not there yet, and
    /// the platform ids of the managers the pushed users refer to.
    fn plan(
        &mut self,
        mapped: Mapped,
        snapshot: &plan::Snapshot,
        existing: &[Existing],
        others: &plan::Others,
    ) -> (Plan, HashMap<String, String>) {
        let invalid_ids: HashSet<String> = mapped.errors.iter().filter_map(|e| e.external_id.clone()).collect();
        let unidentified = mapped.unidentified_lines();
        // `--only`: the plan compares the scope's people; managers still resolve in the whole.
        let scoped = self.scope_snapshot(snapshot);
        let mut plan = plan::plan_with(
            PlanInput {
                snapshot: scoped.as_ref().unwrap_or(snapshot),
                users: mapped.users,
                invalid_ids: &invalid_ids,
                unidentified: &unidentified,
                rows: self.plan_rows(mapped.rows),
                invalid: self.report.counts.invalid,
                existing,
                rule: &self.conn.sync,
                allow_mass_change: self.opts.allow_mass_change,
                id_rule: self.conn.mapping.id_rule(),
            },
            others,
        );
        self.rescope_stop(&mut plan, snapshot.len());
        tracing::debug!(ops = plan.ops.len(), unchanged = plan.unchanged, elapsed = ?self.started.elapsed(), "planned");
        let known = managers::known_managers(&plan.ops, snapshot);
        plan.unchanged += managers::drop_unlinkable(&mut plan.ops, &mut plan.lines, snapshot);
        if plan.held > 0 {
            self.report.notes.push(held_note(plan.held, &unidentified));
        }
        (plan, known)
    }

    /// What the connectors whose accounts this one may not take (every other connector of
    /// the state but those its `adopt_from` names) hold among these platform ids and these
    /// ids (in `IdRule::key` form), as partial snapshots: the rows the plan can meet, read in
    /// one statement, not every connector's whole snapshot. Read under the platform lease
    /// (`adoption`), so no other connector of this config binds meanwhile.
    async fn other_snapshots(&mut self, platform_ids: &[&str], keys: &[&str]) -> Result<Vec<(String, plan::Snapshot)>, RunError> {
        // Alone on the platform (or free to take every other's accounts): no binding of
        // another connector of this config to keep apart from.
        if self.cfg.connectors.keys().any(|n| *n != self.conn.name && !self.conn.sync.adopt_from.contains(n)) {
            self.take_platform_lease().await?;
        }
        let mut exclude: Vec<&str> = vec![self.conn.name.as_str()];
        exclude.extend(self.conn.sync.adopt_from.iter().map(String::as_str));
        let held = self.store.held_elsewhere(&exclude, platform_ids, keys, self.conn.mapping.id_rule()).await.map_err(RunError::from)?;
        let mut by: std::collections::BTreeMap<String, plan::Snapshot> = std::collections::BTreeMap::new();
        for h in held {
            // Only the binding is read from these (`plan::Others`): no hash, always active.
            let entry = plan::SnapshotEntry { platform_id: h.platform_id, hash: [0; 16], active: true };
            by.entry(h.connector).or_default().insert(h.external_id, entry);
        }
        Ok(by.into_iter().collect())
    }

    /// The creates of the plan against other connectors' people and this one's leavers
    /// (`plan::settle`): the leavers' emails are read from the state here.
    async fn settle(&mut self, plan: &mut Plan, others: &[(String, plan::Snapshot)]) -> Result<(), RunError> {
        let ids: Vec<&str> = plan.dormant.iter().map(|d| d.external_id.as_str()).collect();
        let names: HashMap<String, String> = if ids.is_empty() {
            HashMap::new()
        } else {
            let contents = self.store.contents(&self.conn.name, &ids).await.map_err(RunError::from)?;
            contents.into_iter().map(|(id, u)| (id, u.user_name().to_string())).collect()
        };
        let view = plan::Others { snapshots: others.iter().map(|(c, s)| (c.as_str(), s)).collect() };
        plan::settle(
            plan,
            plan::Settle { others: &view, names: &names, rehire: self.conn.sync.rehire, id_rule: self.conn.mapping.id_rule() },
        );
        Ok(())
    }

    /// Conflicts into the report (both ids, the line), re-hires for the push to record, and
    /// the unchanged count: absentees left alone are unchanged too, so every person is
    /// counted once.
    fn count_identities(&mut self, plan: &Plan) {
        self.report.counts.unchanged = plan.unchanged + plan.ignored + plan.held;
        self.report.counts.conflicts = plan.conflicts.len() as u64;
        for c in &plan.conflicts {
            if self.report.errors.len() < MAX_REPORTED_ERRORS {
                self.report.errors.push(crate::model::RowError {
                    line: c.line,
                    column: None,
                    message: c.message(&self.conn.name),
                    external_id: Some(c.external_id.clone()),
                });
            }
        }
        self.rekeys = plan.rekeyed.iter().map(|r| (r.new.clone(), r.old.clone())).collect();
    }

    /// A safeguard stopped the run: nothing has been pushed.
    fn stopped(&mut self, stop: &plan::Safeguard) -> RunError {
        self.report.outcome = RunOutcome::Stopped;
        self.report.stopped_by = Some(stop.rule().to_string());
        RunError::Stopped { connector: self.conn.name.clone(), safeguard: stop.clone(), kept: None }
    }

    /// A dry run reports what the plan would do.
    fn count_planned(&mut self, plan: &Plan) {
        let c = &mut self.report.counts;
        for op in &plan.ops {
            match (op, op.kind()) {
                (plan::Op::Update { user, .. }, _) if self.rekeys.contains_key(user.external_id.as_str()) => c.rekeyed += 1,
                (plan::Op::Update { adopt: true, .. }, _) => c.adopted += 1,
                (_, OpKind::Create) => c.created += 1,
                (_, OpKind::Update) => c.updated += 1,
                (_, OpKind::Deactivate) => c.deactivated += 1,
                (_, OpKind::Delete) => c.deleted += 1,
            }
        }
    }

    /// Only when every operation succeeded is the file recorded as synced and `after`
    /// (keep/move/delete) applied; otherwise the next run takes the same file again, and
    /// what succeeded is in the snapshot and reads as unchanged.
    async fn finish_file(&mut self, got: Got, failed: u64) -> Result<Exit, RunError> {
        if failed > 0 {
            return Err(RunError::OperationsFailed { failed, scoped: false });
        }
        self.store.set_last_file(&self.conn.name, &got.fingerprint).await.map_err(RunError::from)?;
        if let (Some(remote), Some(mut src)) = (got.remote, got.source) {
            let after = self.conn.file.after.clone();
            let span = tracing::Span::current();
            match tokio::task::spawn_blocking(move || span.in_scope(|| src.finish(&remote, &after))).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("synced, but the after-sync action failed: {e}"),
                Err(e) => tracing::warn!("synced, but the after-sync action failed: {e}"),
            }
        }
        Ok(Exit::Ok)
    }
}

/// Why people absent from the file were left as they were.
fn held_note(held: u64, unidentified: &[u64]) -> String {
    const SHOWN: usize = 10;
    let lines = unidentified.iter().take(SHOWN).map(u64::to_string).collect::<Vec<_>>().join(", ");
    let more = if unidentified.len() > SHOWN { format!(" and {} more", unidentified.len() - SHOWN) } else { String::new() };
    format!(
        "{held} people absent from the file were not deactivated or deleted: {} row(s) have no readable unique id (line(s) {lines}{more}), and any of them may be theirs. Fix those rows in the export; the next run then applies the leavers",
        unidentified.len()
    )
}

/// Frees a large value (a million-entry snapshot, a first sync's plan) on a detached
/// thread: a fraction of a second the run need not wait for, and the CLI need not at all.
fn drop_in_background<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}
