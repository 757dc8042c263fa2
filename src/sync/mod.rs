//! One run of one connector: source → format → mapping → plan → platform → state.
//! The only module that knows every stage; each stage's decisions stay in its module.
//!
//! A run is a list of steps over a read-only context (`Ctx`), each step's output the next
//! one's input; `Ctx::execute` reads as that list. What the run reports is one accumulator,
//! `Tally`, passed `&mut` to the steps that add to it. One file a step:
//! `lease` → `fetch` → `parse` → `reconcile` (look at the platform) → `planning` →
//! `push` → `managers` → `groups` → finish (here).

mod adoption;
pub mod clock;
mod due;
mod error;
mod exchange;
mod fetch;
mod groups;
mod hold;
mod lease;
mod managers;
mod parse;
mod persons;
mod planning;
mod push;
mod reconcile;
mod schemas;
mod unsent;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

pub use self::error::{ApprovalMismatch, FileRefusal, RunError};
pub use self::fetch::{Downloaded, download};
use self::fetch::{Fetch, Got};
pub(crate) use self::lease::hostname;
pub use self::parse::parse_file;
use self::planning::Decided;
use crate::changes::Listing;
use crate::config::{Config, Connector};
use crate::exit::{Classify, Exit};
use crate::report::{Report, RunOutcome};
use crate::state::{AuditEntry, Fencing, LastFile, StateError, StateStore};

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
    /// Who runs this: named in the lease's holder; the daemon's runs wait a bounded time
    /// for the platform lease and wait for a stopped plan's approval.
    pub origin: Origin,
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
    /// What the runs of this process share per platform target (limits, discovery): the
    /// daemon's, for its life. None: this run's own.
    pub targets: Option<std::sync::Arc<crate::platform::targets::Targets>>,
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
            .field("targets", &self.targets.is_some())
            .finish()
    }
}

/// Who starts a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Origin {
    /// A person, by a command.
    #[default]
    Cli,
    /// The daemon, on a schedule.
    Daemon,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Cli => "cli",
            Origin::Daemon => "daemon",
        })
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

/// What one run is given, read-only for every step. The budget and the platform binding
/// are shared handles (their state is atomics and the store's lease table), not findings
/// of one step for another.
struct Ctx<'a, S: StateStore> {
    cfg: &'a Config,
    conn: &'a Connector,
    store: &'a S,
    opts: &'a SyncOptions,
    run_id: &'a str,
    started: Instant,
    /// The store's clock, which the run's record (history, audit, stopped plans) follows.
    clock: clock::StoreTime,
    /// Retries left for the whole run, SFTP and SCIM together (`crate::retry`).
    budget: crate::retry::Budget,
    /// The platform-wide lease of a run that binds accounts (`adoption`): taken before the
    /// other connectors' bindings are read, released once the push is recorded.
    binding: &'a adoption::Binding,
}

/// What a run has found and done so far: the report, the audit entries not yet written,
/// and (`all_operations`) the whole plan. The steps add to it through `&mut`; `run_in`
/// reads it however they ended, also when the lease's heartbeat dropped them mid-push.
struct Tally {
    report: Report,
    /// Audit entries of the outcomes so far, written in batches and at the end of the run.
    audit: Vec<AuditEntry>,
    /// `all_operations`: the whole plan, person by person (`persons::keep_listing`).
    listing: Option<Arc<Listing>>,
    /// How many of `report.errors` are the file's invalid rows (the rest are operations
    /// the platform refused): the result file tells them apart (`exchange`).
    invalid_listed: usize,
}

impl Tally {
    /// Something the report should show although the run goes on.
    fn note(&mut self, note: String) {
        tracing::debug!("{note}");
        if self.report.notes.len() < MAX_REPORTED_ERRORS {
            self.report.notes.push(note);
        }
    }

    fn fail(mut self, e: RunError, started: Instant) -> RunResult {
        tracing::error!("{e}");
        if self.report.outcome == RunOutcome::Ok {
            self.report.outcome = if e.exit() == Exit::Stopped { RunOutcome::Stopped } else { RunOutcome::Failed };
        }
        self.report.message = Some(e.to_string());
        self.report.failure = Some(e.kind());
        self.report.duration_ms = started.elapsed().as_millis() as u64;
        RunResult::failed(self.report, e, self.listing)
    }

    fn finish(mut self, started: Instant) -> RunResult {
        self.report.duration_ms = started.elapsed().as_millis() as u64;
        RunResult::ended(self.report, self.listing)
    }
}

/// Runs one sync. Never panics on bad input; every failure is in the report.
pub async fn run<S: StateStore + Fencing>(cfg: &Config, conn: &Connector, store: &S, opts: &SyncOptions) -> RunResult {
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

/// The run around its steps: the connector's lease and its heartbeat, the history record,
/// the audit trail written whatever happened.
async fn run_in<S: StateStore + Fencing>(cfg: &Config, conn: &Connector, store: &S, opts: &SyncOptions, run_id: String) -> RunResult {
    let opts = &*with_own_targets(opts);
    let holder = lease::Holder::here(opts.origin, &run_id);
    let binding = adoption::Binding::new(&holder, &conn.name);
    let started = Instant::now();
    let mut tally = Tally { report: Report::new(&conn.name, &run_id, opts.dry_run), audit: Vec::new(), listing: None, invalid_listed: 0 };
    tally.report.approval = opts.approval.clone();
    tally.report.target = conn.target.as_ref().map(|t| t.name.clone());
    // A dry run writes nothing, so it needs no lease and may run beside a real one.
    let leased = !opts.dry_run;
    let holder = holder.to_string();
    let token = match leased {
        true => match lease::acquire(store, &conn.name, &holder).await {
            Ok(token) => Some(token),
            Err(e) => return tally.fail(e.into(), started),
        },
        false => None,
    };
    // From here every write of the run checks the lease's fencing token: once another run
    // has taken the connector over, this one cannot write (`StateError::Fenced`).
    let fenced;
    let store = match token {
        Some(token) => {
            tracing::debug!("holding the lease with fencing token {token}");
            fenced = store.fenced(crate::state::Fence { connector: conn.name.clone(), token });
            &fenced
        }
        None => store,
    };
    let clock = match record_start(store, &conn.name, &run_id, opts.unrecorded).await {
        Ok(clock) => clock,
        Err(e) => {
            if leased {
                let _ = store.release(&conn.name, &holder).await;
            }
            return tally.fail(e.into(), started);
        }
    };
    let budget = crate::retry::Budget::default();
    let ctx = Ctx { cfg, conn, store, opts, run_id: &run_id, started, clock, budget, binding: &binding };
    // The deadline bounds the whole run, whatever its requests' own timeouts: dropping the
    // run's future stops it sending; its unrecorded writes are found by the next run like a
    // crash's (the reconcile marker set before the push stays set).
    let max_run_time = conn.sync.max_run_time;
    let bounded = async {
        tokio::time::timeout(max_run_time, ctx.execute(&mut tally))
            .await
            .unwrap_or_else(|_| Err(RunError::Deadline { connector: conn.name.clone(), max_run_time }))
    };
    let result = lease::with_heartbeat(store, &conn.name, &holder, leased, binding.renewing(store, bounded))
        .await
        .unwrap_or_else(|lost| Err(RunError::from(lost)));
    // Every binding of the push is recorded (or the push ended): others may decide now.
    binding.release(store).await;
    ctx.flush_audit(&mut tally).await;
    let invalid_listed = tally.invalid_listed;
    let mut done = match result {
        Ok(()) => tally.finish(started),
        Err(e) => tally.fail(e, started),
    };
    done.report.duration_ms = done.report.duration_ms.max(1);
    if !opts.unrecorded {
        match store.finish_run(&done.report, clock.now()).await {
            Err(e) => tracing::error!("could not record the run in history: {e}"),
            // Only when the end's statement saw an earlier run without its end: the history
            // is read then, not by every run.
            Ok(true) if leased => {
                if let Err(e) = lease::close_unfinished(store, &conn.name, &run_id, clock, conn.sync.max_run_time).await {
                    tracing::warn!("could not close the earlier runs whose end was never recorded: {e}");
                }
            }
            Ok(_) => {}
        }
        persons::after_run(store, cfg, opts, &done).await;
    }
    if leased {
        let _ = store.release(&conn.name, &holder).await;
    }
    exchange::after_run(cfg, conn, store, opts, &done, invalid_listed).await;
    done
}

/// The run's options, with a target of its own for the run when it has none (outside the
/// daemon): what it learns of the platform (discovery) then serves each of its connects
/// (`unsent`, `connect_platform`).
fn with_own_targets(opts: &SyncOptions) -> std::borrow::Cow<'_, SyncOptions> {
    match opts.targets {
        Some(_) => std::borrow::Cow::Borrowed(opts),
        None => std::borrow::Cow::Owned(SyncOptions { targets: Some(Default::default()), ..opts.clone() }),
    }
}

/// Records the run's start (unless `unrecorded`) on the store's clock, and measures the run's
/// clock by that same statement: the run is recorded on the store's clock, not this
/// machine's (`clock::StoreTime`). An unrecorded run reads the clock alone.
async fn record_start<S: StateStore>(store: &S, connector: &str, run_id: &str, unrecorded: bool) -> Result<clock::StoreTime, StateError> {
    if unrecorded {
        return Ok(clock::StoreTime::read(store).await?.0);
    }
    let sent = chrono::Utc::now();
    let theirs = store.start_run(connector, run_id).await?;
    Ok(clock::StoreTime::measured(sent, theirs, chrono::Utc::now()))
}

impl<S: StateStore> Ctx<'_, S> {
    /// The run proper, step by step: each step's output is the next one's input. Ok is a
    /// run that ended as planned (synced, no new file, waiting for approval, a dry run).
    async fn execute(&self, t: &mut Tally) -> Result<(), RunError> {
        let last = self.store.last_file(&self.conn.name).await?;
        // Asked of the platform once the download begins; the rows wait for it: values of
        // attributes it will not take refuse no row (`unsent`).
        let mut unsent = unsent::Unsent::default();
        let (fetched, preloaded) = self.fetch_and_preload(last.as_ref(), &unsent).await;
        let got = match fetched? {
            Fetch::NoNewFile(why) => match self.due_again(last.as_ref(), &mut unsent).await? {
                Some(g) => g,
                None => return self.no_new_file(t, why, last.as_ref()),
            },
            Fetch::Got(g) => *g,
        };
        let mut got = self.accept_file(t, got).await?;
        let mapped = self.parse(t, &mut got, &unsent).await?;
        let (mapped, scope) = self.scope_mapped(t, mapped);
        count_rows(t, &mapped, self.started);
        // Recorded with the file once it is synced in full: what the next file is compared with.
        let fill = mapped.fill.clone();
        let snapshot = match preloaded {
            Some(loaded) => loaded?,
            None => self.store.snapshot(&self.conn.name).await?,
        };
        tracing::debug!(users = snapshot.len(), elapsed = ?self.started.elapsed(), "snapshot loaded");
        let mut platform = self.connect_platform(t).await?;
        let look = self.look(t, &snapshot, last.as_ref()).await?;
        let seen = self.existing_users(t, platform.as_ref(), snapshot, &mapped.users, &look).await?;
        let planned = match self.decide(t, mapped, &scope, seen, &look, platform.as_mut()).await? {
            Decided::Push(planned) => planned,
            Decided::Reported(overlay) => return self.sync_groups(t, platform.as_ref(), overlay).await.map(drop),
        };
        let platform = platform.ok_or(RunError::NoPlatformClient)?;
        let mut planned = planned;
        let held = planned.held.take();
        let pushed = self.push_plan(t, &platform, *planned).await?;
        // Failures of the push proper decide the run; the second passes only link managers.
        let failed = pushed.failed;
        let unsettled = self.link_managers(t, &platform, pushed).await?;
        self.settle_marker(unsettled).await?;
        let failed = failed + self.sync_groups(t, Some(&platform), groups::Overlay::default()).await?;
        tracing::debug!(elapsed = ?self.started.elapsed(), "pushed");
        if let Some(held) = held {
            return self.keep_held(t, held, failed).await;
        }
        if self.opts.only.is_some() {
            // One person's push is no sync of the file: the next full run takes it again.
            return finish_scoped(failed);
        }
        self.finish_file(got, failed, fill).await
    }

    /// Fetches the file while the snapshot loads: a second for a million users, begun once
    /// the download has begun, so a run that finds no new file loads nothing.
    async fn fetch_and_preload(
        &self,
        last: Option<&LastFile>,
        unsent: &unsent::Unsent,
    ) -> (Result<Fetch, RunError>, Option<Result<crate::plan::Snapshot, crate::state::StateError>>) {
        let (began, began_rx) = tokio::sync::oneshot::channel::<()>();
        let (store, connector) = (self.store, self.conn.name.clone());
        let asking = unsent::Asking(unsent.clone());
        let preload = async move {
            match began_rx.await {
                Ok(()) => {
                    let ask = async { asking.answer(self.unsent_attributes().await) };
                    Some(tokio::join!(store.snapshot(&connector), ask).0)
                }
                Err(_) => None,
            }
        };
        tokio::join!(fetch::fetch(self.conn, self.opts, last.map(|l| &l.fingerprint), began, &self.budget, unsent), preload)
    }

    /// No new file: the normal quiet day, unless the export has stopped coming for longer
    /// than `stale_after` — then a failure, not a quiet success.
    fn no_new_file(&self, t: &mut Tally, why: fetch::NoNew, last: Option<&LastFile>) -> Result<(), RunError> {
        if let (Some(stale), Some(l)) = (self.conn.file.stale_after, last) {
            let age = Utc::now().signed_duration_since(l.synced_at).to_std().unwrap_or_default();
            if age > stale {
                t.report.stale = true;
                return Err(RunError::Stale { last_path: l.fingerprint.path.clone(), synced_at: l.synced_at, age, stale_after: stale });
            }
        }
        t.report.outcome = RunOutcome::NoNewFile;
        t.report.message = Some(why.said(self.opts.origin == Origin::Cli));
        Ok(())
    }

    /// The fetched file into the report, checked against an approval; a stop
    /// (`AwaitingApproval`) when the daemon waits for the approval of a plan made from this
    /// very file.
    async fn accept_file(&self, t: &mut Tally, mut got: Got) -> Result<Got, RunError> {
        t.report.file = Some(got.fingerprint.clone());
        t.report.notes.append(&mut got.notes);
        self.check_approved_file(&got.fingerprint)?;
        self.awaiting_approval(t, &got.fingerprint).await?;
        Ok(got)
    }

    /// Only when every operation succeeded is the file recorded as synced and `after`
    /// (keep/move/delete) applied; otherwise the next run takes the same file again, and
    /// what succeeded is in the snapshot and reads as unchanged.
    async fn finish_file(&self, got: Got, failed: u64, fill: crate::mapping::fill::ColumnFill) -> Result<(), RunError> {
        if failed > 0 {
            return Err(RunError::OperationsFailed { failed, scoped: false });
        }
        self.store.set_last_file(&self.conn.name, &got.fingerprint).await?;
        // The file's columns, for the next file's comparison (`plan::profile`).
        let profile = crate::state::FileProfile { fill, synced_at: Utc::now() };
        self.store.set_file_profile(&self.conn.name, &profile).await?;
        if let (Some(remote), Some(mut src)) = (got.remote, got.source) {
            let after = self.conn.file.after.clone();
            let span = tracing::Span::current();
            match tokio::task::spawn_blocking(move || span.in_scope(|| src.finish(&remote, &after))).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("synced, but the after-sync action failed: {e}"),
                Err(e) => tracing::warn!("synced, but the after-sync action failed: {e}"),
            }
        }
        Ok(())
    }
}

/// The end of an `--only` run: the file is not recorded as synced (the rest of it was not
/// applied) and `after` is not applied.
fn finish_scoped(failed: u64) -> Result<(), RunError> {
    if failed > 0 {
        return Err(RunError::OperationsFailed { failed, scoped: true });
    }
    Ok(())
}

/// The file's rows into the report: how many, how many valid, the first errors.
fn count_rows(t: &mut Tally, mapped: &crate::mapping::Mapped, started: Instant) {
    tracing::debug!(rows = mapped.rows, elapsed = ?started.elapsed(), "file fetched, parsed and mapped");
    let c = &mut t.report.counts;
    c.rows = mapped.rows;
    c.valid = mapped.users.len() as u64;
    c.invalid = mapped.rows - mapped.users.len() as u64;
    t.report.errors = mapped.errors.iter().take(MAX_REPORTED_ERRORS).cloned().collect();
    t.invalid_listed = t.report.errors.len();
    t.report.errors_left_out = mapped.errors.len().saturating_sub(MAX_REPORTED_ERRORS) as u64 + mapped.untold_rows();
    for f in &mapped.footers {
        let values = f.values.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ");
        t.note(format!(
            "line {}: {values} is a footer at the end of the file (a total or a generated-by line), not a person: skipped",
            f.line
        ));
    }
}

/// Frees a large value (a million-entry snapshot, a first sync's plan) on a detached
/// thread: a fraction of a second the run need not wait for, and the CLI need not at all.
fn drop_in_background<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}
