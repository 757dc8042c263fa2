//! One run of one connector: source → format → mapping → plan → platform → state.
//! The only module that knows every stage; each stage's decisions stay in its module.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::config::{Config, Connector};
use crate::exit::{Classify, Exit};
use crate::format::FormatError;
use crate::mapping::{Mapped, Mapper};
use crate::model::{FileFingerprint, RowError};
use crate::plan::{self, Op, OpKind, PlanInput};
use crate::platform::scim::ScimClient;
use crate::platform::{Outcome, Platform};
use crate::report::{Counts, Outcome as RunOutcome, Report};
use crate::source::{self, RemoteFile, Source, SourceError, select};
use crate::spool;
use crate::state::{SnapshotWrite, StateStore};

/// Where a run reports progress (the CLI draws bars on a terminal; the daemon logs).
pub trait Progress: Send + Sync {
    /// A new stage begins ("download", "push"), with its total when known.
    fn stage(&self, name: &str, total: Option<u64>);
    /// Work done so far in the current stage (bytes, or operations).
    fn advance(&self, done: u64);
    fn finish(&self);
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
}

/// A finished run: the report and the process exit code it implies.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub report: Report,
    pub exit: Exit,
}

/// Report errors kept in full; the counts always have the totals.
const MAX_REPORTED_ERRORS: usize = 1000;
/// A lease outlives a dead holder by at most this long.
const LEASE_TTL: Duration = Duration::from_secs(60);
/// Snapshot writes are committed in batches of this size (or sooner, when outcomes pause).
const STATE_BATCH: usize = 1000;

struct Run<'a, S: StateStore> {
    cfg: &'a Config,
    conn: &'a Connector,
    store: &'a S,
    opts: &'a SyncOptions,
    report: Report,
    started: Instant,
    /// Users written without their manager (not on the platform at the time), to link in
    /// a second pass once the push has created everyone: platform id and full content.
    unlinked: Vec<(String, Box<crate::model::User>)>,
    /// Set during that second pass: its writes are not counted as updates.
    relinking: bool,
}

/// Runs one sync. Never panics on bad input; every failure is in the report.
pub async fn run<S: StateStore>(cfg: &Config, conn: &Connector, store: &S, opts: &SyncOptions) -> RunResult {
    use tracing::Instrument;
    let run_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!("run", connector = %conn.name, run_id = %run_id);
    run_in(cfg, conn, store, opts, run_id).instrument(span).await
}

async fn run_in<S: StateStore>(cfg: &Config, conn: &Connector, store: &S, opts: &SyncOptions, run_id: String) -> RunResult {
    let mut r = Run {
        cfg,
        conn,
        store,
        opts,
        report: Report {
            connector: conn.name.clone(),
            run_id: run_id.clone(),
            outcome: RunOutcome::Ok,
            dry_run: opts.dry_run,
            file: None,
            counts: Counts::default(),
            errors: Vec::new(),
            stopped_by: None,
            notes: Vec::new(),
            message: None,
            duration_ms: 0,
        },
        started: Instant::now(),
        unlinked: Vec::new(),
        relinking: false,
    };
    let holder = format!("{}@{} pid {} run {}", opts.origin_or_cli(), hostname(), std::process::id(), run_id);

    // A dry run writes nothing, so it needs no lease and may run beside a real one.
    if !opts.dry_run
        && let Err(e) = acquire(store, &conn.name, &holder).await
    {
        return r.fail(Exit::Other, e.to_string());
    }
    if let Err(e) = store.start_run(&conn.name, &run_id, Utc::now()).await {
        if !opts.dry_run {
            let _ = store.release(&conn.name, &holder).await;
        }
        return r.fail(Exit::Other, e.to_string());
    }

    let result = {
        let work = r.execute();
        tokio::pin!(work);
        // Heartbeat: keep the lease while the run lasts, however long the push takes.
        let mut beat = tokio::time::interval(LEASE_TTL / 3);
        beat.tick().await;
        loop {
            tokio::select! {
                res = &mut work => break res,
                _ = beat.tick(), if !opts.dry_run => {
                    let _ = store.renew(&conn.name, &holder, LEASE_TTL).await;
                }
            }
        }
    };
    let mut done = match result {
        Ok(exit) => r.finish(exit),
        Err((exit, msg)) => r.fail(exit, msg),
    };
    done.report.duration_ms = done.report.duration_ms.max(1);
    if let Err(e) = store.finish_run(&done.report, Utc::now()).await {
        tracing::error!("could not record the run in history: {e}");
    }
    if !opts.dry_run {
        let _ = store.release(&conn.name, &holder).await;
    }
    done
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("dry_run", &self.dry_run)
            .field("file", &self.file)
            .field("allow_mass_change", &self.allow_mass_change)
            .field("force", &self.force)
            .field("origin", &self.origin)
            .finish()
    }
}

impl SyncOptions {
    fn origin_or_cli(&self) -> &str {
        if self.origin.is_empty() { "cli" } else { &self.origin }
    }
}

/// Takes the lease; a lease left by a process of this machine that no longer exists (killed,
/// crashed) is taken over at once rather than after its TTL.
async fn acquire<S: StateStore>(store: &S, connector: &str, holder: &str) -> Result<(), crate::state::StateError> {
    match store.acquire(connector, holder, LEASE_TTL).await {
        Err(crate::state::StateError::Held { holder: old, .. }) if holder_died_here(&old) => {
            tracing::warn!("taking over the lease of {old}: that process no longer runs");
            store.release(connector, &old).await?;
            store.acquire(connector, holder, LEASE_TTL).await
        }
        other => other,
    }
}

/// Whether a holder string ("cli@HOST pid N run ID") names a dead rostersync process here.
fn holder_died_here(holder: &str) -> bool {
    let Some((_, rest)) = holder.split_once('@') else { return false };
    let mut words = rest.split_whitespace();
    let (Some(host), Some("pid"), Some(pid)) = (words.next(), words.next(), words.next()) else { return false };
    if host != hostname() || pid.parse::<u32>().is_err() {
        return false;
    }
    // A reused pid belongs to some other program: still dead for us.
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => !String::from_utf8_lossy(&cmd).contains("rostersync"),
        Err(_) => true,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

/// The file to process, downloaded and verified.
struct Got {
    /// The source file (None for `--file`).
    remote: Option<RemoteFile>,
    spool: Spool,
    name: String,
    fingerprint: FileFingerprint,
    source: Option<Box<dyn Source>>,
    /// The file parsed and mapped while it downloaded, when its format reads as a stream.
    early: Option<EarlyParse>,
}

/// The parse that followed the download (see `crate::spool`). Its result is used only when
/// the download succeeded and was checked; otherwise it ended with an error by itself.
type EarlyParse = std::thread::JoinHandle<Result<Mapped, ParseFailure>>;

/// Where the download lands; removed when dropped (unless it is the user's own `--file`).
struct Spool {
    path: PathBuf,
    _temp: Option<tempfile::TempPath>,
}

enum Fetch {
    Got(Box<Got>),
    NoNewFile(String),
}

/// A failed run: the exit code and the message for the engineer.
pub type Failure = (Exit, String);

fn fail_with<E: Classify + std::fmt::Display>(e: E) -> Failure {
    (e.exit(), e.to_string())
}

impl<'a, S: StateStore> Run<'a, S> {
    fn fail(mut self, exit: Exit, message: String) -> RunResult {
        tracing::error!("{message}");
        if self.report.outcome == RunOutcome::Ok {
            self.report.outcome = if exit == Exit::Stopped { RunOutcome::Stopped } else { RunOutcome::Failed };
        }
        self.report.message = Some(message);
        self.report.duration_ms = self.started.elapsed().as_millis() as u64;
        RunResult { report: self.report, exit }
    }

    fn finish(mut self, exit: Exit) -> RunResult {
        self.report.duration_ms = self.started.elapsed().as_millis() as u64;
        RunResult { report: self.report, exit }
    }

    /// The run proper; Ok carries the exit code of a run that ended as planned.
    async fn execute(&mut self) -> Result<Exit, Failure> {
        let last = self.store.last_file(&self.conn.name).await.map_err(fail_with)?;
        // The snapshot is loaded while the file downloads and parses (a second for a million
        // users), once the download has begun: a run that finds no new file loads nothing.
        let (began, began_rx) = tokio::sync::oneshot::channel::<()>();
        let (store, connector) = (self.store, self.conn.name.clone());
        let preload = async move {
            match began_rx.await {
                Ok(()) => Some(store.snapshot(&connector).await),
                Err(_) => None,
            }
        };
        let (fetched, mut preloaded) = tokio::join!(self.fetch(last.as_ref().map(|l| &l.fingerprint), began), preload);
        let mut got = match fetched? {
            Fetch::NoNewFile(why) => {
                // An export that silently stops coming is a failure, not a quiet success.
                if let (Some(stale), Some(l)) = (self.conn.file.stale_after, &last) {
                    let age = Utc::now().signed_duration_since(l.synced_at).to_std().unwrap_or_default();
                    if age > stale {
                        return Err((
                            Exit::Data,
                            format!(
                                "the export is stale: no new file for {} (last one, {}, synced {}), above stale_after = {}; ask the customer whether their HR export still runs",
                                humantime::format_duration(Duration::from_secs(age.as_secs())),
                                l.fingerprint.path,
                                l.synced_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                                humantime::format_duration(stale)
                            ),
                        ));
                    }
                }
                self.report.outcome = RunOutcome::NoNewFile;
                self.report.message = Some(why);
                return Ok(Exit::Ok);
            }
            Fetch::Got(g) => *g,
        };
        self.report.file = Some(got.fingerprint.clone());

        // Parse and map on a blocking thread: it is CPU work over a file.
        // Not through a &Got: a reference to the boxed source held across this await would
        // make the run's future not Send (the daemon runs it on its worker threads).
        let parsed = match got.early.take() {
            Some(early) => {
                tracing::debug!(file = %got.name, "parsed and mapped while it downloaded");
                tokio::task::spawn_blocking(move || early.join())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_else(|| Err(ParseFailure::Other((Exit::Other, "the parsing thread failed".into()))))
            }
            None => parse_file_detailed(self.conn, &got.spool.path, &got.name).await,
        };
        let mapped = match parsed {
            Ok(m) => m,
            // An empty export empties the customer: only on an explicit --allow-mass-change.
            Err(ParseFailure::Format(FormatError::Empty { .. })) if self.opts.allow_mass_change => Mapped::default(),
            Err(ParseFailure::Format(e)) => return Err(self.refuse_file(e)),
            Err(ParseFailure::Other(f)) => return Err(f),
        };
        tracing::debug!(rows = mapped.rows, elapsed = ?self.started.elapsed(), "file fetched, parsed and mapped");
        let c = &mut self.report.counts;
        c.rows = mapped.rows;
        c.valid = mapped.users.len() as u64;
        c.invalid = mapped.rows - mapped.users.len() as u64;
        self.report.errors = mapped.errors.iter().take(MAX_REPORTED_ERRORS).cloned().collect();

        let snapshot = match preloaded.take() {
            Some(loaded) => loaded,
            None => self.store.snapshot(&self.conn.name).await,
        }
        .map_err(fail_with)?;
        tracing::debug!(users = snapshot.len(), elapsed = ?self.started.elapsed(), "snapshot loaded");
        let platform_cfg = self.cfg.platform().map_err(fail_with)?;
        let platform = match ScimClient::connect(platform_cfg).await {
            Ok(p) => Some(p),
            Err(e) if self.opts.dry_run => {
                tracing::warn!("dry run without the platform ({e}); existing platform users are not matched");
                None
            }
            Err(e) => return Err(fail_with(e)),
        };

        // First sync, or a previous run that died mid-push: users may already be on the
        // platform without being in our snapshot. Adopt them rather than create twice.
        let interrupted = self.store.interrupted(&self.conn.name, &self.report.run_id).await.map_err(fail_with)?;
        let existing = match &platform {
            Some(p) if snapshot.is_empty() || interrupted => {
                if interrupted {
                    tracing::warn!("the previous run of {} did not finish; matching platform users before pushing", self.conn.name);
                }
                p.existing_users().await.map_err(fail_with)?
            }
            _ => Vec::new(),
        };

        let invalid_ids: HashSet<String> = mapped.errors.iter().filter_map(|e| e.external_id.clone()).collect();
        let plan = plan::plan(PlanInput {
            snapshot: &snapshot,
            users: mapped.users,
            invalid_ids: &invalid_ids,
            rows: mapped.rows,
            invalid: self.report.counts.invalid,
            existing: &existing,
            rule: &self.conn.sync,
            allow_mass_change: self.opts.allow_mass_change,
        });
        tracing::debug!(ops = plan.ops.len(), unchanged = plan.unchanged, elapsed = ?self.started.elapsed(), "planned");
        // Managers' platform ids, for the manager references of the users being pushed.
        let known: HashMap<String, String> = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Create { user } | Op::Update { user, .. } => user.attributes.get("manager_id"),
                _ => None,
            })
            .filter_map(|m| snapshot.get(m).map(|e| (m.to_string(), e.platform_id.clone())))
            .collect();
        let mut plan = plan;
        plan.unchanged += drop_unlinkable(&mut plan.ops, &mut plan.lines, &snapshot);
        drop_in_background(snapshot);
        let c = &mut self.report.counts;
        c.unchanged = plan.unchanged;
        if let Some(stop) = &plan.stop {
            self.report.outcome = RunOutcome::Stopped;
            self.report.stopped_by =
                Some(serde_json::to_value(stop).ok().and_then(|v| v["rule"].as_str().map(String::from)).unwrap_or_default());
            return Err((Exit::Stopped, stop.message(&self.conn.name)));
        }
        if self.opts.dry_run {
            c.created = plan.count(OpKind::Create);
            c.updated = plan.count(OpKind::Update);
            c.deactivated = plan.count(OpKind::Deactivate);
            c.deleted = plan.count(OpKind::Delete);
            drop_in_background(plan);
            return Ok(Exit::Ok);
        }
        let Some(platform) = platform else {
            return Err((Exit::Platform, "no platform client".into()));
        };

        self.attach_previous(&mut plan.ops).await?;
        let lines: HashMap<String, u64> =
            plan.ops.iter().zip(&plan.lines).filter(|(_, l)| **l > 0).map(|(o, l)| (o.external_id().to_string(), *l)).collect();
        let push = self.push(&platform, plan.ops, known, &lines).await;
        let failed = self.report.counts.failed;
        push?;
        self.link_managers(&platform).await?;
        tracing::debug!(elapsed = ?self.started.elapsed(), "pushed");
        if failed > 0 {
            // Not recording the file makes the next run take it again; what succeeded is
            // in the snapshot and will read as unchanged.
            return Err((
                Exit::Platform,
                format!("{failed} operation(s) failed (see errors); the others were applied. The next run retries them"),
            ));
        }

        self.store.set_last_file(&self.conn.name, &got.fingerprint).await.map_err(fail_with)?;
        if let (Some(remote), Some(mut src)) = (got.remote, got.source) {
            let after = self.conn.file.after.clone();
            let res = tokio::task::spawn_blocking(move || src.finish(&remote, &after)).await;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("synced, but the after-sync action failed: {e}"),
                Err(e) => tracing::warn!("synced, but the after-sync action failed: {e}"),
            }
        }
        Ok(Exit::Ok)
    }

    /// Fetches the file; `began` is told when its bytes start coming.
    async fn fetch(&mut self, last: Option<&FileFingerprint>, began: tokio::sync::oneshot::Sender<()>) -> Result<Fetch, Failure> {
        if let Some(path) = &self.opts.file {
            let _ = began.send(());
            let path = path.clone();
            let (sha256, size) =
                tokio::task::spawn_blocking(move || hash_file(&path)).await.map_err(|e| (Exit::Other, e.to_string()))?.map_err(|e| {
                    (
                        Exit::Data,
                        format!("cannot read {}: {e}", self.opts.file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
                    )
                })?;
            let p = self.opts.file.clone().unwrap_or_default();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let mtime = std::fs::metadata(&p).and_then(|m| m.modified()).ok().map(|t| DateTime::<Utc>::from(t).to_rfc3339());
            return Ok(Fetch::Got(Box::new(Got {
                remote: None,
                fingerprint: FileFingerprint { path: p.display().to_string(), size, mtime, sha256 },
                spool: Spool { path: p, _temp: None },
                name,
                source: None,
                early: None,
            })));
        }

        let conn = self.conn.clone();
        let last = last.cloned();
        let force = self.opts.force;
        let progress = self.opts.progress.clone();
        let res = tokio::task::spawn_blocking(move || fetch_blocking(&conn, last.as_ref(), force, progress.as_deref(), Some(began)))
            .await
            .map_err(|e| (Exit::Other, format!("the download thread failed: {e}")))?;
        res.map_err(fail_with)
    }

    /// A file that is empty or lacks a mapped column is refused by a safeguard: nothing
    /// is planned from it.
    fn refuse_file(&mut self, e: FormatError) -> Failure {
        let (rule, exit) = match &e {
            FormatError::Empty { .. } => ("no_data_rows", Exit::Stopped),
            // A data error by DESIGN's exit codes, though it stops the run like a safeguard.
            FormatError::MissingColumns { .. } => ("missing_column", Exit::Data),
            _ => return fail_with(e),
        };
        self.report.outcome = RunOutcome::Stopped;
        self.report.stopped_by = Some(rule.to_string());
        let go_on = if exit == Exit::Stopped {
            format!(" Check the export with the customer; to apply it anyway: `rostersync sync {} --allow-mass-change`", self.conn.name)
        } else {
            format!(
                " Fix the mapping (mappings/…) or ask the customer for the usual export; `rostersync test {}` shows the header",
                self.conn.name
            )
        };
        (exit, format!("{e}; nothing was pushed.{go_on}"))
    }

    /// Sends the operations and records each success as it comes back.
    /// Second pass for reports whose manager did not exist when they were written (a
    /// manager cycle in the data, or a manager created later in the same push): now that
    /// everyone exists, set just the manager.
    async fn link_managers<P: Platform>(&mut self, platform: &P) -> Result<(), Failure> {
        let unlinked = std::mem::take(&mut self.unlinked);
        if unlinked.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = unlinked.iter().filter_map(|(_, u)| u.attributes.get("manager_id")).collect();
        let snapshot = self.store.snapshot(&self.conn.name).await.map_err(fail_with)?;
        tracing::debug!(users = snapshot.len(), elapsed = ?self.started.elapsed(), "snapshot loaded");
        let known: HashMap<String, String> =
            ids.iter().filter_map(|m| snapshot.get(*m).map(|e| (m.to_string(), e.platform_id.clone()))).collect();
        drop(snapshot);
        let ops: Vec<Op> = unlinked
            .into_iter()
            .filter(|(_, u)| u.attributes.get("manager_id").is_some_and(|m| known.contains_key(m)))
            .map(|(platform_id, user)| {
                let mut previous = user.clone();
                previous.attributes.remove("manager_id");
                Op::Update { platform_id, user, adopt: false, previous: Some(previous) }
            })
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        let n = ops.len();
        self.relinking = true;
        let res = self.push(platform, ops, known, &HashMap::new()).await;
        self.relinking = false;
        tracing::info!("linked the manager of {n} user(s) in a second pass");
        res
    }

    /// Gives each update the content last pushed, so the platform is sent only what changed.
    async fn attach_previous(&self, ops: &mut [Op]) -> Result<(), Failure> {
        let ids: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Update { user, adopt: false, .. } => Some(user.external_id.as_str()),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut contents = self.store.contents(&self.conn.name, &ids).await.map_err(fail_with)?;
        for op in ops.iter_mut() {
            if let Op::Update { user, adopt: false, previous, .. } = op {
                *previous = contents.remove(user.external_id.as_str()).map(Box::new);
            }
        }
        Ok(())
    }

    async fn push<P: Platform>(
        &mut self,
        platform: &P,
        ops: Vec<Op>,
        known: HashMap<String, String>,
        lines: &HashMap<String, u64>,
    ) -> Result<(), Failure> {
        let total = ops.len() as u64;
        if let Some(p) = &self.opts.progress {
            p.stage("push", Some(total));
        }
        let mut done = 0u64;
        let (tx, mut rx) = mpsc::channel::<Outcome>(4096);
        let apply = platform.apply(ops, known, tx);
        tokio::pin!(apply);
        let mut batch: Vec<SnapshotWrite> = Vec::with_capacity(STATE_BATCH);
        let mut apply_result = None;
        loop {
            tokio::select! {
                res = &mut apply, if apply_result.is_none() => { apply_result = Some(res); }
                msg = rx.recv() => match msg {
                    Some(outcome) => {
                        self.record(outcome, &mut batch, lines);
                        done += 1;
                        if let Some(p) = &self.opts.progress
                            && (done.is_multiple_of(64) || done == total) {
                                p.advance(done);
                            }
                        if batch.len() >= STATE_BATCH {
                            self.store.write(&self.conn.name, &batch).await.map_err(fail_with)?;
                            batch.clear();
                        }
                    }
                    None => break,
                },
                // Outcomes paused: commit what we have so a crash now loses nothing.
                _ = tokio::time::sleep(Duration::from_millis(200)), if !batch.is_empty() => {
                    self.store.write(&self.conn.name, &batch).await.map_err(fail_with)?;
                    batch.clear();
                }
            }
        }
        if !batch.is_empty() {
            self.store.write(&self.conn.name, &batch).await.map_err(fail_with)?;
        }
        if let Some(p) = &self.opts.progress {
            p.finish();
        }
        match apply_result {
            Some(Err(e)) => Err(fail_with(e)),
            _ => Ok(()),
        }
    }

    /// Counts one outcome and queues its snapshot write, from the operation it hands back.
    fn record(&mut self, o: Outcome, batch: &mut Vec<SnapshotWrite>, lines: &HashMap<String, u64>) {
        let (external_id, kind) = (o.external_id().to_string(), o.kind());
        let Outcome { result, op } = o;
        let c = &mut self.report.counts;
        match result {
            Ok(applied) if self.relinking => {
                if let Op::Create { user } | Op::Update { user, .. } = op {
                    batch.push(SnapshotWrite::Upsert { platform_id: applied.platform_id, user });
                }
                // Their earlier "manager left unset" notes no longer hold.
                self.report.notes.retain(|n| !n.starts_with(&format!("{}: manager ", external_id)));
            }
            Ok(applied) => {
                if let Some(note) = &applied.note {
                    tracing::debug!("{}: {note}", external_id);
                    if self.report.notes.len() < MAX_REPORTED_ERRORS {
                        self.report.notes.push(format!("{}: {note}", external_id));
                    }
                }
                match op.kind() {
                    OpKind::Create => c.created += 1,
                    OpKind::Update => c.updated += 1,
                    OpKind::Deactivate => c.deactivated += 1,
                    OpKind::Delete => c.deleted += 1,
                }
                batch.push(match op {
                    Op::Create { user } | Op::Update { user, .. } => {
                        let mut user = user;
                        // A manager the platform could not link yet: record the user without
                        // it (so a later run still sees a difference), and link it in a
                        // second pass once this push has created everyone.
                        let unset = applied.note.as_deref().is_some_and(|n| n.ends_with(crate::platform::MANAGER_LEFT_UNSET));
                        if unset && user.attributes.get("manager_id").is_some_and(|m| !m.is_empty()) {
                            self.unlinked.push((applied.platform_id.clone(), user.clone()));
                            user.attributes.remove("manager_id");
                        }
                        SnapshotWrite::Upsert { platform_id: applied.platform_id, user }
                    }
                    Op::Deactivate { external_id, .. } => SnapshotWrite::MarkInactive { external_id },
                    Op::Delete { external_id, .. } => SnapshotWrite::Remove { external_id },
                });
            }
            Err(f) => {
                c.failed += 1;
                if self.report.errors.len() < MAX_REPORTED_ERRORS {
                    self.report.errors.push(RowError {
                        line: lines.get(external_id.as_str()).copied().unwrap_or(0),
                        column: None,
                        message: format!(
                            "{} of \"{}\" failed{}: {}",
                            kind_word(kind),
                            external_id,
                            f.status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
                            f.message
                        ),
                        external_id: Some(external_id),
                    });
                }
            }
        }
    }
}

/// A user recorded without a manager the platform did not have reads as changed on every
/// run (so the link is made once the manager exists). While the manager is still
/// neither known nor created by this push, that update would change nothing: drop it and
/// count the user unchanged (returns how many). Judged by the stored content hash, so the
/// content of these users (5% of a large file whose managers' rows are invalid) is never
/// loaded from the state.
fn drop_unlinkable(ops: &mut Vec<Op>, lines: &mut Vec<u64>, snapshot: &plan::Snapshot) -> u64 {
    // Only updates of synced users qualify (a first sync has none).
    if snapshot.is_empty() || !ops.iter().any(|o| matches!(o, Op::Update { adopt: false, .. })) {
        return 0;
    }
    let created: HashSet<&str> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Create { user } => Some(user.external_id.as_str()),
            _ => None,
        })
        .collect();
    let unlinkable = |op: &Op| match op {
        Op::Update { user, adopt: false, .. } => match user.attributes.get("manager_id") {
            Some(m) if !m.is_empty() && !snapshot.contains_key(m) && !created.contains(m) => {
                let mut without = (**user).clone();
                without.attributes.remove("manager_id");
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

/// Frees a large value (a million-entry snapshot, a first sync's plan) on a detached
/// thread: a fraction of a second the run need not wait for, and the CLI need not at all.
fn drop_in_background<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}

fn kind_word(k: OpKind) -> &'static str {
    match k {
        OpKind::Create => "create",
        OpKind::Update => "update",
        OpKind::Deactivate => "deactivation",
        OpKind::Delete => "deletion",
    }
}

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut sink = std::io::sink();
    let mut w = source::HashingWriter::new(&mut sink);
    std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, &mut f), &mut w)?;
    let fetched = w.finish();
    Ok((fetched.sha256, fetched.bytes))
}

/// Connects, lists, picks and downloads, retrying a dropped connection with backoff.
/// With `stream`, the file is also parsed and mapped as it arrives (`Got::early`), and the
/// sender is told when the download begins.
fn fetch_blocking(
    conn: &Connector,
    last: Option<&FileFingerprint>,
    force: bool,
    progress: Option<&dyn Progress>,
    stream: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<Fetch, SourceError> {
    let parse = stream.is_some();
    let mut began = stream;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_once(conn, last, force, progress, parse, &mut began) {
            Err(e) if e.retriable() && attempt < 3 => {
                let wait = Duration::from_millis(500 * (1 << attempt) + rand::random_range(0..500));
                tracing::warn!("{e}; retrying in {wait:?} (attempt {attempt} of 3)");
                std::thread::sleep(wait);
            }
            other => return other,
        }
    }
}

fn fetch_once(
    conn: &Connector,
    last: Option<&FileFingerprint>,
    force: bool,
    progress: Option<&dyn Progress>,
    parse: bool,
    began: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<Fetch, SourceError> {
    let mut src = source::connect(&conn.source)?;
    let rule = &conn.file;
    let files = src.list(&rule.path)?;
    let file = match select::select(&files, rule, Utc::now()) {
        select::Selection::Picked(f) => f,
        select::Selection::TooYoung { youngest } => {
            return Ok(Fetch::NoNewFile(format!(
                "{} was modified less than min_age ({}) ago and may still be being written; it will be taken by a later run",
                youngest.path,
                humantime::format_duration(rule.min_age)
            )));
        }
        // With after = move/delete an empty folder is the normal state between exports (the
        // last one was taken away); stale_after is what notices an export that stopped.
        select::Selection::NoMatch if rule.after != crate::config::After::Keep && last.is_some() => {
            return Ok(Fetch::NoNewFile(format!(
                "no file matches {} on {}; the last one was taken away after its sync (after = {:?})",
                rule.path,
                src.describe(),
                rule.after
            )));
        }
        select::Selection::NoMatch => {
            let (folder, _) = select::split_pattern(&rule.path);
            let others = src.list(&format!("{}/*", folder.trim_end_matches('/'))).unwrap_or_default();
            let mut names: Vec<&str> = others.iter().map(|f| f.name()).collect();
            names.sort();
            let shown = names.iter().take(10).copied().collect::<Vec<_>>().join(", ");
            return Err(SourceError::NoFile(format!(
                "no file matches {} on {}; the folder holds {} file(s){}{}. Check [connectors.{}.file] path",
                rule.path,
                src.describe(),
                names.len(),
                if names.is_empty() { "" } else { ": " },
                if names.len() > 10 { format!("{shown}, …") } else { shown },
                conn.name
            )));
        }
    };
    let mtime = file.mtime.map(|t| t.to_rfc3339());
    if !force && let Some(l) = last {
        // Same name, size and time as the last synced file: skip without downloading.
        if l.path == file.path && l.size == file.size && l.mtime == mtime && mtime.is_some() {
            return Ok(Fetch::NoNewFile(format!("{} was already synced (same size and time); use --force to sync it again", file.path)));
        }
    }
    if file.size > rule.max_size {
        return Err(SourceError::TooLarge { path: file.path.clone(), size: file.size, max: rule.max_size });
    }
    let temp = tempfile::Builder::new()
        .prefix("rostersync-")
        .suffix(&format!("-{}", file.name()))
        .tempfile()
        .map_err(|e| SourceError::Io { context: "cannot create a download file".into(), source: e })?;
    let (out, temp_path) = temp.into_parts();
    // Every return before `complete` below fails the growing file, which stops the parse.
    let growing = spool::Growing::new(&temp_path);
    let guard = growing.guard();
    let early = if parse { start_parse(conn, file.name(), &growing) } else { None };
    if let Some(tx) = began.take() {
        let _ = tx.send(());
    }
    let fetched = {
        // Unbuffered: the source writes in chunks of up to 2 MiB, and the parser should see
        // each one as soon as it is written.
        let mut w = growing.writer(out);
        if let Some(p) = progress {
            p.stage(&format!("download {}", file.name()), Some(file.size));
        }
        let mut counted = ProgressWriter { inner: &mut w, progress, done: 0 };
        let fetched = src.fetch(&file, &mut counted, rule.max_size)?;
        if let Some(p) = progress {
            p.finish();
        }
        fetched
    };
    // Every Source promises this already; checked again here because a short file reaching
    // the plan would deactivate everyone after the cut, whatever source a future one is.
    if fetched.bytes != file.size {
        return Err(SourceError::Truncated {
            path: file.path.clone(),
            got: fetched.bytes,
            expected: file.size,
            detail: "size differs from the listing".into(),
        });
    }
    if !force
        && let Some(l) = last
        && l.sha256 == fetched.sha256
    {
        return Ok(Fetch::NoNewFile(format!(
            "{} has the same content (sha256) as the last synced file {}; use --force to sync it again",
            file.path, l.path
        )));
    }
    guard.complete();
    Ok(Fetch::Got(Box::new(Got {
        fingerprint: FileFingerprint { path: file.path.clone(), size: fetched.bytes, mtime, sha256: fetched.sha256 },
        name: file.name().to_string(),
        spool: Spool { path: temp_path.to_path_buf(), _temp: Some(temp_path) },
        remote: Some(file),
        source: Some(src),
        early,
    })))
}

/// Starts parsing and mapping the download as it arrives, on its own thread. None when the
/// format is not known from the name (a `.zip` is looked into only once it is complete).
fn start_parse(conn: &Connector, name: &str, growing: &std::sync::Arc<spool::Growing>) -> Option<EarlyParse> {
    let format = conn.file.format.or_else(|| crate::config::Format::from_name(name))?;
    let input = crate::format::Input::Growing(std::sync::Arc::clone(growing));
    let (name, mapping) = (name.to_string(), conn.mapping.clone());
    std::thread::Builder::new()
        .name("parse-download".into())
        .spawn(move || read_and_map(&input, &name, format, &mapping).map_err(ParseFailure::Format))
        .ok()
}

/// Reads every record of the export and maps it (CPU work: call it off the async threads).
fn read_and_map(
    input: &crate::format::Input,
    name: &str,
    format: crate::config::Format,
    mapping: &crate::config::Mapping,
) -> Result<Mapped, FormatError> {
    let mapper = Mapper::new(mapping);
    let records = crate::format::open_input(input, name, format, &mapping.source, mapper.columns())?;
    crate::mapping::collect(records, &mapper)
}

/// Why parsing failed: the file itself (which `sync` may turn into a safeguard stop), or
/// anything else.
enum ParseFailure {
    Format(FormatError),
    Other(Failure),
}

/// Parses and maps a local file with the connector's mapping, on a blocking thread.
pub async fn parse_file(conn: &Connector, path: &Path, name: &str) -> Result<Mapped, Failure> {
    parse_file_detailed(conn, path, name).await.map_err(|e| match e {
        ParseFailure::Format(e) => fail_with(e),
        ParseFailure::Other(f) => f,
    })
}

async fn parse_file_detailed(conn: &Connector, path: &Path, name: &str) -> Result<Mapped, ParseFailure> {
    // "auto": by extension, looking inside a .zip at the one file it holds.
    let format = match conn.file.format {
        Some(f) => f,
        None => crate::format::detect(path, name).map_err(ParseFailure::Format)?,
    };
    let input = crate::format::Input::from(path);
    let name = name.to_string();
    let mapping = conn.mapping.clone();
    tokio::task::spawn_blocking(move || read_and_map(&input, &name, format, &mapping).map_err(ParseFailure::Format))
        .await
        .map_err(|e| ParseFailure::Other((Exit::Other, format!("the parsing thread failed: {e}"))))?
}

/// What `test` and `fetch` need: the file the connector would pick, downloaded.
pub struct Downloaded {
    pub fingerprint: FileFingerprint,
    pub name: String,
    pub path: PathBuf,
    _temp: Option<tempfile::TempPath>,
}

impl Downloaded {
    /// Moves the download to `dir/name` and returns that path.
    pub fn keep_in(mut self, dir: &Path) -> std::io::Result<PathBuf> {
        let target = dir.join(&self.name);
        match self._temp.take() {
            Some(t) => {
                if let Err(e) = t.persist(&target) {
                    // Across file systems rename fails: copy instead.
                    std::fs::copy(&e.path, &target)?;
                }
            }
            None => {
                std::fs::copy(&self.path, &target)?;
            }
        }
        Ok(target)
    }
}

/// Downloads the file the connector would pick now (ignoring what was synced before).
pub async fn download(conn: &Connector) -> Result<Option<Downloaded>, Failure> {
    let c = conn.clone();
    let res = tokio::task::spawn_blocking(move || fetch_blocking(&c, None, true, None, None))
        .await
        .map_err(|e| (Exit::Other, format!("the download thread failed: {e}")))?
        .map_err(fail_with)?;
    Ok(match res {
        Fetch::NoNewFile(why) => {
            tracing::warn!("{why}");
            None
        }
        Fetch::Got(g) => Some(Downloaded { fingerprint: g.fingerprint, name: g.name, path: g.spool.path, _temp: g.spool._temp }),
    })
}

/// Counts bytes on their way to the download file, for the progress display.
struct ProgressWriter<'a, W: std::io::Write> {
    inner: &'a mut W,
    progress: Option<&'a dyn Progress>,
    done: u64,
}

impl<W: std::io::Write> std::io::Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        if let Some(p) = self.progress {
            p.advance(self.done);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
