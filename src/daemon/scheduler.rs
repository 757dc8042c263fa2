//! The loop: one tokio task per scheduled connector, sleeping until its next start.
//!
//! - A connector's runs are sequential in its task, so they never overlap (the state
//!   lease also guards against other processes); a rescheduled connector's new task waits
//!   for the old one to end.
//! - A global semaphore bounds runs at once (`max_concurrent_runs`); each platform target
//!   gets a share of it (`shares`), so a hung or throttled target cannot hold every slot.
//! - After a run the next start is the first slot after *now*: slots missed while a run
//!   overran are skipped, never run back to back (atuin's `MissedTickBehavior::Skip`).
//! - Daemons sharing a state store (a fleet on PostgreSQL) each schedule every connector and
//!   claim each slot before running it (`Runner::claim`): one wins, the others skip the slot,
//!   or take it over when the winner's claim lapses because it stopped renewing (it died).
//! - A failed run is retried with capped, jittered backoff (`retry::Policy::SCHEDULED_RUN`)
//!   while the retry still starts before the next slot, when the error that ended it says
//!   trying again may help (`RunResult::retriable`, from the module's typed error: a dropped
//!   connection, a platform outage). A changed host key, a refused login, a safeguard stop, a
//!   data or configuration failure is not retried: it needs a person, and is notified at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::clock::Clock;
use super::metrics::Metrics;
use super::notify::{Notification, Notify};
use super::runner::Runner;
use crate::config::Connector;
use crate::exit::Exit;
use crate::retry::Policy;
use crate::schedule::{Schedule, jitter_for};
use crate::state::SlotClaim;

/// What every connector task shares.
pub struct Shared<R: Runner> {
    pub runner: Arc<R>,
    pub clock: Clock,
    pub permits: Arc<Semaphore>,
    pub retry: Policy,
    pub metrics: Arc<Metrics>,
    pub notify: Arc<dyn Notify>,
}

struct Task {
    /// Identifies the definition the task runs (a change reschedules).
    fingerprint: [u8; 32],
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
    /// The loop of the connector's `reconcile` schedule, when it has one (stopped by the
    /// same `stop`).
    reconcile: Option<JoinHandle<()>>,
}

/// Which of a connector's schedules a loop follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `schedule`: syncs.
    Sync,
    /// `reconcile`: reconcile runs (`sync --reconcile`).
    Reconcile,
}

/// The set of scheduled connectors.
pub struct Scheduler<R: Runner> {
    shared: Arc<Shared<R>>,
    tasks: BTreeMap<String, Task>,
    /// Each target's share of the run slots, for the daemon's life.
    shares: super::shares::Shares,
}

/// What changed on `apply`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub rescheduled: Vec<String>,
}

/// The SHA-256 of the connector's Debug text, which covers every field (schedule, source,
/// mapping …). Kept as the digest, written straight into the hasher: the text itself is tens
/// of kilobytes with a mapping, and a daemon of 10,000 connectors held 370 MB of them.
fn fingerprint(c: &Connector) -> [u8; 32] {
    use sha2::Digest;
    struct Hashing(sha2::Sha256);
    impl std::fmt::Write for Hashing {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.update(s.as_bytes());
            Ok(())
        }
    }
    let mut h = Hashing(sha2::Sha256::new());
    // Writing into a hasher cannot fail; a Debug impl that did would only reschedule.
    let _ = std::fmt::write(&mut h, format_args!("{c:?}"));
    h.0.finalize().into()
}

impl<R: Runner> Scheduler<R> {
    pub fn new(shared: Shared<R>) -> Scheduler<R> {
        // All free at the start: the daemon's `max_concurrent_runs`.
        let shares = super::shares::Shares::new(shared.permits.available_permits());
        Scheduler { shared: Arc::new(shared), tasks: BTreeMap::new(), shares }
    }

    pub fn names(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }

    /// Makes the scheduled set exactly `wanted` (connectors without a schedule are left
    /// out: they run by hand only). Unchanged connectors keep their task and timing.
    pub fn apply(&mut self, wanted: &crate::config::Connectors) -> Changes {
        let mut ch = Changes::default();
        let wanted: BTreeMap<&String, &Arc<Connector>> =
            wanted.iter().filter(|(_, c)| c.schedule.is_some() || c.reconcile.is_some()).collect();
        let mut keys: Vec<String> = wanted.values().filter_map(|c| c.target.as_ref().map(|t| t.key.clone())).collect();
        keys.sort_unstable();
        keys.dedup();
        let slots = self.shares.set(&keys);
        let gone: Vec<String> = self.tasks.keys().filter(|n| !wanted.contains_key(n)).cloned().collect();
        for name in gone {
            if let Some(t) = self.tasks.remove(&name) {
                let _ = t.stop.send(true);
                self.shared.metrics.forget(&name);
                ch.removed.push(name);
            }
        }
        for (name, conn) in wanted {
            if let Some(t) = &conn.target {
                self.shared.metrics.set_target(name, &t.name);
            }
            let fp = fingerprint(conn);
            let (previous, previous_reconcile) = match self.tasks.remove(name) {
                Some(t) if t.fingerprint == fp => {
                    self.tasks.insert(name.clone(), t);
                    continue;
                }
                Some(t) => {
                    // The old task finishes a run in progress; the new one waits for it.
                    let _ = t.stop.send(true);
                    ch.rescheduled.push(name.clone());
                    (Some(t.handle), t.reconcile)
                }
                None => {
                    ch.added.push(name.clone());
                    // Its series exist from now (never succeeded: last success 0), seeded
                    // from the state store once its task has read it (`first_start`).
                    self.shared.metrics.register(name, None);
                    (None, None)
                }
            };
            let (stop_tx, stop_rx) = watch::channel(false);
            let span = tracing::info_span!("connector", connector = %name);
            // Catch-up is for connectors we start; a rescheduled one just takes its new slots
            // (moving "daily 02:00" to 03:00 at noon must not start a run at noon).
            let catch_up = previous.is_none();
            let conn = Arc::clone(conn);
            // A connector's sync and reconcile loops take turns: its runs never overlap.
            let turn = Arc::new(tokio::sync::Mutex::new(()));
            let previous = join_both(previous, previous_reconcile);
            let target = conn.target.as_ref().and_then(|t| slots.get(&t.key).cloned());
            let reconcile = conn.reconcile.is_some().then(|| {
                let span = tracing::info_span!("connector", connector = %name, reconcile = true);
                let lp =
                    Loop { sh: self.shared.clone(), conn: conn.clone(), kind: Kind::Reconcile, turn: turn.clone(), target: target.clone() };
                tokio::spawn(lp.run(stop_rx.clone(), None, false).instrument(span))
            });
            let lp = Loop { sh: self.shared.clone(), conn, kind: Kind::Sync, turn, target };
            let handle = tokio::spawn(lp.run(stop_rx, previous, catch_up).instrument(span));
            self.tasks.insert(name.clone(), Task { fingerprint: fp, stop: stop_tx, handle, reconcile });
        }
        self.shared.metrics.set_connectors(self.tasks.len());
        ch
    }

    /// No new runs from now on; the handles end when running runs end.
    pub fn stop_all(&mut self) -> Vec<(String, JoinHandle<()>)> {
        let tasks = std::mem::take(&mut self.tasks);
        tasks
            .into_iter()
            .flat_map(|(n, t)| {
                let _ = t.stop.send(true);
                std::iter::once((n.clone(), t.handle)).chain(t.reconcile.map(|h| (n, h)))
            })
            .collect()
    }
}

/// Stops every task and waits up to `grace` for runs in progress; returns the connectors
/// whose runs were abandoned (their leases expire; the next run adopts what they pushed).
pub async fn shutdown<R: Runner>(sched: &mut Scheduler<R>, grace: Duration) -> Vec<String> {
    let handles = sched.stop_all();
    let deadline = tokio::time::Instant::now() + grace;
    let mut abandoned = Vec::new();
    for (name, mut h) in handles {
        match tokio::time::timeout_at(deadline, &mut h).await {
            Ok(_) => {}
            Err(_) => {
                h.abort();
                abandoned.push(name);
            }
        }
    }
    abandoned
}

/// The first start: at once when the last success predates the latest slot (catch-up),
/// else the next slot. Returns (slot, start).
async fn first_start<R: Runner>(sh: &Shared<R>, conn: &Connector, sched: &Schedule) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let now = sh.clock.now();
    let last = sh.runner.last_success(&conn.name).await;
    sh.metrics.register(&conn.name, last);
    if let Some(prev) = sched.previous_at_or_before(now)
        && last.is_none_or(|l| l < prev)
    {
        match last {
            Some(l) => tracing::info!("last success {} predates the slot of {}: catching up now", l.to_rfc3339(), prev.to_rfc3339()),
            None => tracing::info!("no successful run on record: running now"),
        }
        return Some((prev, now));
    }
    next_start(conn, sched, now)
}

/// The first slot strictly after `after`, and its start with the connector's jitter.
fn next_start(conn: &Connector, sched: &Schedule, after: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let slot = sched.next_after(after)?;
    let j = chrono::Duration::from_std(jitter_for(&conn.name, slot, conn.jitter)).unwrap_or_default();
    Some((slot, slot + j))
}

/// A task that ends when both of a rescheduled connector's old loops have ended.
fn join_both(a: Option<JoinHandle<()>>, b: Option<JoinHandle<()>>) -> Option<JoinHandle<()>> {
    match (a, b) {
        (a, None) => a,
        (a, Some(b)) => Some(tokio::spawn(async move {
            if let Some(a) = a {
                let _ = a.await;
            }
            let _ = b.await;
        })),
    }
}

/// One loop of one connector: its sync schedule, or its reconcile schedule.
struct Loop<R: Runner> {
    sh: Arc<Shared<R>>,
    conn: Arc<Connector>,
    kind: Kind,
    /// Held while a run of this connector runs, by either loop.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Its platform target's share of the run slots (`shares`).
    target: Option<Arc<Semaphore>>,
}

impl<R: Runner> Loop<R> {
    async fn run(self, stop: watch::Receiver<bool>, previous: Option<JoinHandle<()>>, catch_up: bool) {
        if let Some(p) = previous {
            let _ = p.await;
        }
        let sched = match self.kind {
            Kind::Sync => self.conn.schedule.clone(),
            Kind::Reconcile => self.conn.reconcile.clone(),
        };
        let Some(sched) = sched else { return };
        connector_loop(self.sh, self.conn, stop, sched, catch_up, self.kind, (self.turn, self.target)).await;
    }
}

async fn connector_loop<R: Runner>(
    sh: Arc<Shared<R>>,
    conn: Arc<Connector>,
    mut stop: watch::Receiver<bool>,
    sched: Schedule,
    catch_up: bool,
    kind: Kind,
    (turn, target): (Arc<tokio::sync::Mutex<()>>, Option<Arc<Semaphore>>),
) {
    let first = if catch_up { first_start(&sh, &conn, &sched).await } else { next_start(&conn, &sched, sh.clock.now()) };
    let Some((mut slot, mut start)) = first else {
        tracing::warn!("schedule \"{}\" has no future start; the connector runs by hand only", sched.spec);
        return;
    };
    // Said once per (re)scheduled connector, in its own timezone: what an SRE checks first
    // after a deploy or a reload.
    let local = start.with_timezone(&sched.tz);
    let when = if start <= sh.clock.now() { "now".to_string() } else { local.format("%Y-%m-%d %H:%M:%S %Z").to_string() };
    let what = match kind {
        Kind::Sync => "run",
        Kind::Reconcile => "reconcile",
    };
    tracing::info!(
        next_run = %local.to_rfc3339(),
        schedule = %sched.spec,
        timezone = %sched.tz,
        "next {what} {when} ({}), schedule \"{}\"",
        sched.tz,
        sched.spec
    );
    // A failure, stop or stale export was notified and no run has synced since: the next
    // one that does sends `recovered`.
    let mut alarmed = false;
    loop {
        tracing::debug!("next start {}", start.to_rfc3339());
        if !sh.clock.sleep_until(start, &mut stop).await {
            return;
        }
        // Retries must start before the next slot: after that, the slot's run takes over.
        let period_end = sched.next_after(slot);
        let mut attempt = 0u32;
        let mut failed = false;
        let mut served_elsewhere = false;
        loop {
            attempt += 1;
            // The target's slot first: waiting for it holds none of the daemon's.
            let Some(permit) = run_slot(&sh.permits, target.as_ref(), &mut stop).await else { return };
            // The slot is claimed holding a permit, so the run starts right after the claim;
            // a worker without free capacity claims nothing, leaving the slot to the others.
            if attempt == 1 {
                match sh.runner.claim(&conn.name, kind == Kind::Reconcile, slot).await {
                    SlotClaim::Won => {}
                    SlotClaim::Done => {
                        tracing::debug!("slot {} was served by another worker", slot.to_rfc3339());
                        served_elsewhere = true;
                        break;
                    }
                    SlotClaim::Early { now } => {
                        drop(permit);
                        // This machine's clock ran ahead of the store's: wait out the rest.
                        let left = (slot - now).max(chrono::Duration::zero()) + chrono::Duration::milliseconds(50);
                        tracing::debug!(
                            "slot {} has not come by the state store's clock; {} ms to go",
                            slot.to_rfc3339(),
                            left.num_milliseconds()
                        );
                        if !sh.clock.sleep_until(sh.clock.now() + left, &mut stop).await {
                            return;
                        }
                        attempt = 0;
                        continue;
                    }
                    SlotClaim::Unclaimed { retry_in } => {
                        drop(permit);
                        let at = sh.clock.now() + chrono::Duration::from_std(retry_in).unwrap_or_default();
                        if period_end.is_some_and(|end| at >= end) {
                            tracing::warn!("slot {} could not be claimed before the next one: not run", slot.to_rfc3339());
                            served_elsewhere = true;
                            break;
                        }
                        if !sh.clock.sleep_until(at, &mut stop).await {
                            return;
                        }
                        attempt = 0;
                        continue;
                    }
                    SlotClaim::Held { worker, expires_at } => {
                        drop(permit);
                        // A little after the lapse, so the holder's last renewal has landed.
                        let at = expires_at + chrono::Duration::milliseconds(250);
                        if period_end.is_some_and(|end| at >= end) {
                            tracing::debug!("slot {} is {worker}'s until the next slot", slot.to_rfc3339());
                            sh.runner.slot_done(&conn.name, kind == Kind::Reconcile, slot).await;
                            served_elsewhere = true;
                            break;
                        }
                        tracing::debug!("slot {} is {worker}'s; checking again at {}", slot.to_rfc3339(), at.to_rfc3339());
                        if !sh.clock.sleep_until(at, &mut stop).await {
                            return;
                        }
                        attempt = 0;
                        continue;
                    }
                }
            }
            let my_turn = tokio::select! {
                t = turn.clone().lock_owned() => t,
                _ = stop.wait_for(|s| *s) => return,
            };
            sh.metrics.run_started();
            // Not raced against `stop`: a started run finishes (within the grace period).
            let res = match kind {
                Kind::Sync => sh.runner.run(conn.clone()).await,
                Kind::Reconcile => sh.runner.reconcile(conn.clone()).await,
            };
            drop(my_turn);
            drop(permit);
            let ended = sh.clock.now();
            sh.metrics.run_finished(&res.report, res.exit.code(), ended);
            log_end(&res.report, attempt, res.exit);

            // Synced, or nothing new because the file was synced meanwhile (an approval by
            // hand); a run still waiting for its approval (`approve_with`) has not recovered.
            if res.exit == Exit::Ok && alarmed && res.report.approve_with.is_none() {
                alarmed = false;
                sh.notify.notify(Notification::recovered(&res.report, &conn.customer, attempt, ended));
            }
            if res.exit == Exit::Ok {
                // A synced run can still call for a person (a lost state, unplaced accounts).
                if let Some(n) = Notification::for_run(&res.report, &conn.customer, res.exit.code(), attempt, ended) {
                    sh.notify.notify(n);
                }
                break;
            }
            if *stop.borrow() {
                break;
            }
            failed = true;
            if res.retriable && attempt < sh.retry.max_attempts {
                let delay = sh.retry.backoff.delay(attempt);
                let at = ended + chrono::Duration::from_std(delay).unwrap_or_default();
                if period_end.is_none_or(|end| at < end) {
                    tracing::warn!(run_id = %res.report.run_id, "attempt {attempt} failed (exit {}); retrying in {}", res.exit.code(), humantime::format_duration(Duration::from_secs(delay.as_secs().max(1))));
                    sh.metrics.retry_scheduled(&conn.name);
                    if !sh.clock.sleep_until(at, &mut stop).await {
                        return;
                    }
                    continue;
                }
            }
            if res.retriable {
                tracing::error!(run_id = %res.report.run_id, "attempt {attempt} failed (exit {}); no more retries in this period, waiting for the next slot", res.exit.code());
            }
            if let Some(n) = Notification::for_run(&res.report, &conn.customer, res.exit.code(), attempt, ended) {
                alarmed = true;
                sh.notify.notify(n);
            }
            break;
        }
        if served_elsewhere {
            match next_start(&conn, &sched, std::cmp::max(slot, sh.clock.now())) {
                Some((s, st)) => (slot, start) = (s, st),
                None => return,
            }
            continue;
        }
        sh.runner.slot_done(&conn.name, kind == Kind::Reconcile, slot).await;
        // The first slot after both the one just served and now: slots overrun by a run that
        // synced are skipped. After a failure, a slot that began during the last attempt
        // still runs (at once): the data is not synced yet.
        let after = if failed { slot } else { std::cmp::max(slot, sh.clock.now()) };
        match next_start(&conn, &sched, after) {
            Some((s, st)) => (slot, start) = (s, st),
            None => {
                tracing::warn!("schedule \"{}\" has no further start", sched.spec);
                return;
            }
        }
    }
}

/// A run slot: the target's share and the daemon's, released together when dropped.
struct Slot {
    _daemon: tokio::sync::OwnedSemaphorePermit,
    _target: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Waits for the target's slot, then the daemon's; None when stopped meanwhile.
async fn run_slot(permits: &Arc<Semaphore>, target: Option<&Arc<Semaphore>>, stop: &mut watch::Receiver<bool>) -> Option<Slot> {
    let target = match target {
        Some(t) => tokio::select! {
            p = t.clone().acquire_owned() => Some(p.ok()?),
            _ = stop.wait_for(|s| *s) => return None,
        },
        None => None,
    };
    let daemon = tokio::select! {
        p = permits.clone().acquire_owned() => p.ok()?,
        _ = stop.wait_for(|s| *s) => return None,
    };
    Some(Slot { _daemon: daemon, _target: target })
}

/// One line per finished run, in the run's terms (the run's own span has closed): the
/// prose for people, the same facts as fields for a log collector (`--log-format json`).
fn log_end(r: &crate::report::Report, attempt: u32, exit: Exit) {
    let c = &r.counts;
    let outcome = super::metrics::outcome_label(r.outcome);
    let line = format!(
        "run ended {outcome} in {} ms (attempt {attempt}): {} rows, created {}, updated {}, deactivated {}, deleted {}, failed {}{}",
        r.duration_ms,
        c.rows,
        c.created,
        c.updated,
        c.deactivated,
        c.deleted,
        c.failed,
        r.message.as_deref().map(|m| format!(" — {m}")).unwrap_or_default()
    );
    macro_rules! end {
        ($level:ident) => {
            tracing::$level!(
                run_id = %r.run_id,
                outcome,
                exit = exit.code(),
                attempt,
                duration_ms = r.duration_ms,
                dry_run = r.dry_run,
                rows = c.rows,
                valid = c.valid,
                invalid = c.invalid,
                created = c.created,
                adopted = c.adopted,
                rekeyed = c.rekeyed,
                updated = c.updated,
                deactivated = c.deactivated,
                deleted = c.deleted,
                unchanged = c.unchanged,
                failed = c.failed,
                conflicts = c.conflicts,
                stale = r.stale,
                "{line}"
            )
        };
    }
    match r.outcome {
        crate::report::RunOutcome::Ok | crate::report::RunOutcome::NoNewFile => end!(info),
        _ => end!(warn),
    }
}
