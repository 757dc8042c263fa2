//! Step 1 of a run: the connector's lease, so two runs of one connector never overlap, and
//! its heartbeat while the run lasts.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::state::{StateError, StateStore};

/// A lease outlives a dead holder by at most `store.lease_ttl()` (`[state] lease_ttl`).
fn ttl<S: StateStore>(store: &S) -> Duration {
    store.lease_ttl()
}

/// Who holds a lease: a run of rostersync on some machine, and for the platform lease
/// (`adoption`) the connector it runs. The store keeps it as text (`Display`: "ORIGIN@HOST
/// pid N run ID[ connector NAME]", which `status` shows); it is read back into this only
/// where the store hands a holder over (`Holder::parse`), and decided on by its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Holder {
    /// "cli" or "daemon".
    pub origin: String,
    pub host: String,
    pub pid: u32,
    pub run_id: String,
    /// The connector whose run holds a platform lease.
    pub connector: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{} pid {} run {}", self.origin, self.host, self.pid, self.run_id)?;
        match &self.connector {
            Some(c) => write!(f, " connector {c}"),
            None => Ok(()),
        }
    }
}

impl Holder {
    /// This process's run `run_id`.
    pub(super) fn here(origin: super::Origin, run_id: &str) -> Holder {
        Holder { origin: origin.to_string(), host: hostname(), pid: std::process::id(), run_id: run_id.into(), connector: None }
    }

    /// The same run, holding the platform lease for `connector`.
    pub(super) fn for_connector(&self, connector: &str) -> Holder {
        Holder { connector: Some(connector.into()), ..self.clone() }
    }

    /// A holder as the store keeps it; None for text no rostersync wrote. Lenient past the
    /// pid (a lease left by an older version names no run), since what decides a take-over
    /// is the host and the pid.
    pub(super) fn parse(stored: &str) -> Option<Holder> {
        let (origin, rest) = stored.split_once('@')?;
        let (rest, connector) = match rest.rsplit_once(" connector ") {
            Some((r, c)) => (r, Some(c.to_string())),
            None => (rest, None),
        };
        let mut words = rest.split_whitespace();
        let (Some(host), Some("pid"), Some(pid)) = (words.next(), words.next(), words.next()) else { return None };
        let run_id = match (words.next(), words.next()) {
            (Some("run"), Some(id)) => id.to_string(),
            _ => String::new(),
        };
        Some(Holder { origin: origin.into(), host: host.into(), pid: pid.parse().ok()?, run_id, connector })
    }

    /// Whether this names a rostersync process of this machine that no longer runs.
    fn died_here(&self) -> bool {
        died_here(&self.host, self.pid)
    }
}

/// Whether process `pid` of machine `host` is known to be no rostersync running: only a
/// process of this machine can be looked at; another machine's is never judged from here.
fn died_here(host: &str, pid: u32) -> bool {
    if host != hostname() {
        return false;
    }
    // A reused pid belongs to some other program: still dead for us.
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => !String::from_utf8_lossy(&cmd).contains("rostersync"),
        Err(_) => true,
    }
}

/// Whether the worker a run records ("HOST pid N", `state::worker_id`) is known dead.
fn worker_died_here(worker: &str) -> bool {
    let Some((host, pid)) = worker.rsplit_once(" pid ") else { return false };
    pid.parse().is_ok_and(|pid| died_here(host, pid))
}

/// Takes the lease; a lease left by a process of this machine that no longer exists (killed,
/// crashed) is taken over at once rather than after its TTL.
pub(super) async fn acquire<S: StateStore>(store: &S, connector: &str, holder: &str) -> Result<i64, StateError> {
    match store.acquire(connector, holder, ttl(store)).await {
        Err(StateError::Held { holder: old, .. }) if Holder::parse(&old).is_some_and(|h| h.died_here()) => {
            tracing::warn!("taking over the lease of {old}: that process no longer runs");
            store.release(connector, &old).await?;
            store.acquire(connector, holder, ttl(store)).await
        }
        other => other,
    }
}

/// Whether an earlier run whose end is not recorded may still be running beside the run
/// that holds the connector's lease now (which asks, with the store's time `now`):
/// - a run that held a lease (`fence`) does not: this run holds the lease under a later
///   token, so that run's lease was taken over and none of its writes, its end included,
///   can be recorded any more (it died, was frozen past its lease, or its store failed);
/// - a run that took no lease (a dry run, or one recorded before fencing) may, beside this
///   one, in this process or another: until its worker is known dead (a process of this
///   machine that no longer runs: `died`), or it began longer than `longest` ago (the run
///   deadline, `max_run_time`, and a lease's time past it: no run lasts that long). One
///   that ends after all records its end itself.
fn may_still_run(r: &crate::state::RunRecord, now: chrono::DateTime<chrono::Utc>, longest: Duration, died: impl Fn(&str) -> bool) -> bool {
    if r.fence.is_some() {
        return false;
    }
    let past_deadline = now.signed_duration_since(r.started_at).to_std().is_ok_and(|age| age > longest);
    !past_deadline && !r.worker.as_deref().is_some_and(died)
}

/// Closes, as failed with the reason, the connector's earlier runs whose end was never
/// recorded and that cannot be running any more (`may_still_run`: a dry run in progress
/// beside this one is left alone): called by a run holding the lease, once its own end is
/// recorded. Without it they read "running, or the process died" in history forever.
/// `clock` is the store's; `max_run_time` the connector's deadline. Returns how many were
/// closed.
pub(super) async fn close_unfinished<S: StateStore>(
    store: &S,
    connector: &str,
    run_id: &str,
    clock: super::clock::StoreTime,
    max_run_time: Duration,
) -> Result<usize, StateError> {
    let now = clock.now();
    let longest = max_run_time.saturating_add(ttl(store));
    let runs = store.history(Some(connector), crate::state::UNFINISHED_LOOK_BACK).await?;
    let mut closed = 0;
    for r in runs.iter().filter(|r| r.run_id != run_id && r.ended_at.is_none()) {
        if may_still_run(r, now, longest, worker_died_here) {
            tracing::debug!("run {} (started {}, no lease) may still be running: left open", r.run_id, r.started_at.to_rfc3339());
            continue;
        }
        let mut report = crate::report::Report::new(connector, &r.run_id, false);
        report.outcome = crate::report::RunOutcome::Failed;
        report.failure = Some(crate::report::FailureKind::Crashed);
        report.message = Some(format!(
            "its end was never recorded (its process died, was frozen past its lease, or the state store failed as it ended); closed as failed by run {run_id} of this connector at {}. What it sent is matched on the platform by the next run that pushes",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
        // When it really ended is not known: recorded as ending where it began (so it never
        // reads as overlapping the runs after it); the message says when it was closed.
        store.finish_run(&report, r.started_at).await?;
        tracing::warn!("closed run {} (started {}) as failed: its end was never recorded", r.run_id, r.started_at.to_rfc3339());
        closed += 1;
    }
    Ok(closed)
}

/// How long before its lease would lapse a run that could not renew it stops: the room for
/// clocks and for a write already on its way to the platform.
pub(super) fn margin(ttl: Duration) -> Duration {
    ttl / 10
}

/// When to try again after a renewal the store refused: soon, since the lease has less than
/// a full beat left.
pub(super) fn retry_after(ttl: Duration) -> Duration {
    margin(ttl).max(Duration::from_millis(100))
}

/// What a renewal of no row means: the lease lapsed and another run took it.
pub(super) const TAKEN_OVER: &str = "the state store says it lapsed and another run holds it now";

/// Drives `work` to its end, renewing the lease every third of its TTL however long the
/// work takes (a million-user push). `renew` false (a dry run, which holds no lease) only
/// drives the work.
///
/// A holder may act only while it can show it holds the lease. Each renewal the store
/// accepts extends that until `ttl` after the renewal was sent (what the store recorded is
/// no later). When no renewal has been accepted by then (the store is locked by another
/// writer, or unreachable), or the store says the lease is another's, the work is dropped
/// where it is, before another run could take the connector, and this is `LeaseLost`.
/// Dropping it is what a crash does, which a run survives: the reconcile marker is set
/// before the first write, so the next run lists the platform and adopts what was sent.
pub(super) async fn with_heartbeat<S: StateStore, T>(
    store: &S,
    connector: &str,
    holder: &str,
    renew: bool,
    work: impl Future<Output = T>,
) -> Result<T, StateError> {
    let ttl = ttl(store);
    if !renew {
        return Ok(work.await);
    }
    // The lease was taken just before the work began: count from here, less the margin.
    let mut valid_until = Instant::now() + ttl;
    let mut next_beat = Instant::now() + ttl / 3;
    let mut last_error: Option<String> = None;
    let lapsed = |valid_until: Instant, why: String| StateError::LeaseLost {
        connector: connector.into(),
        detail: format!(
            "none of its renewals was accepted for {:.1} s of its {} s lease; {why}",
            (Instant::now() + ttl).saturating_duration_since(valid_until).as_secs_f64(),
            ttl.as_secs_f64()
        ),
    };
    tokio::pin!(work);
    loop {
        let stop_at = valid_until.checked_sub(margin(ttl)).unwrap_or(valid_until);
        tokio::select! {
            res = &mut work => return Ok(res),
            _ = tokio::time::sleep_until(stop_at) => {
                let why = last_error.take().map_or("no renewal was tried".into(), |e| format!("the state store answered: {e}"));
                return Err(lapsed(valid_until, why));
            }
            _ = tokio::time::sleep_until(next_beat) => {}
        }
        // The work goes on while the renewal waits (on a busy SQLite, a slow network).
        let sent = Instant::now();
        let renewal = store.renew(connector, holder, ttl);
        tokio::pin!(renewal);
        let answer = tokio::select! {
            res = &mut work => return Ok(res),
            _ = tokio::time::sleep_until(stop_at) => {
                let why = last_error.take().map_or(String::new(), |e| format!("; before that it answered: {e}"));
                return Err(lapsed(valid_until, format!("the state store did not answer the last renewal{why}")));
            }
            answer = &mut renewal => answer,
        };
        match answer {
            Ok(true) => {
                valid_until = sent + ttl;
                next_beat = Instant::now() + ttl / 3;
                last_error = None;
            }
            Ok(false) => {
                return Err(StateError::LeaseLost { connector: connector.into(), detail: TAKEN_OVER.into() });
            }
            Err(e) => {
                tracing::warn!("could not renew the lease: {e}");
                last_error = Some(e.to_string());
                next_beat = Instant::now() + retry_after(ttl);
            }
        }
    }
}

/// This machine's name (gethostname(2)), as lease holders record it.
pub(crate) fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a stored holder names a dead rostersync process here.
    fn died_here(stored: &str) -> bool {
        Holder::parse(stored).is_some_and(|h| h.died_here())
    }

    #[test]
    fn holders_of_this_machine_are_judged_by_their_process() {
        let me = Holder::here(crate::sync::Origin::Cli, "r1").to_string();
        // This test's own process is alive, but is it rostersync? Its cmdline names the test
        // binary ("rostersync-…"), so it reads as alive.
        assert!(!died_here(&me), "{me}");
        assert!(died_here(&format!("cli@{} pid 4294967295 run r2", hostname())));
        // Another machine's holder is never judged from here.
        assert!(!died_here("daemon@some-other-host pid 1 run r3"));
        assert!(!died_here("garbage"));
    }

    fn unfinished(fence: Option<i64>, started_ago: i64, worker: Option<&str>) -> (crate::state::RunRecord, chrono::DateTime<chrono::Utc>) {
        let now = chrono::Utc::now();
        let r = crate::state::RunRecord {
            run_id: "r".into(),
            connector: "acme".into(),
            started_at: now - chrono::Duration::seconds(started_ago),
            ended_at: None,
            report: None,
            worker: worker.map(String::from),
            fence,
        };
        (r, now)
    }

    #[test]
    fn only_a_run_without_a_lease_may_still_run_and_only_until_its_deadline_or_its_process_is_gone() {
        let longest = Duration::from_secs(3600);
        let alive = |_: &str| false;
        let dead = |_: &str| true;
        // A leased run: this run holds the lease now, so that one's was taken over.
        let (r, now) = unfinished(Some(7), 5, Some("h pid 1"));
        assert!(!may_still_run(&r, now, longest, alive));
        // A dry run a minute old, its process alive or on another machine: left open.
        let (r, now) = unfinished(None, 60, Some("h pid 1"));
        assert!(may_still_run(&r, now, longest, alive));
        assert!(may_still_run(&unfinished(None, 60, None).0, now, longest, dead), "no worker recorded: not known dead");
        // Its process gone, or past the deadline: closed.
        assert!(!may_still_run(&r, now, longest, dead));
        let (r, now) = unfinished(None, 3601, Some("h pid 1"));
        assert!(!may_still_run(&r, now, longest, alive));
    }

    #[test]
    fn a_worker_is_dead_here_only_when_it_names_a_gone_process_of_this_machine() {
        assert!(!worker_died_here(&crate::state::worker_id()), "this process");
        assert!(worker_died_here(&format!("{} pid 4294967295", hostname())));
        assert!(!worker_died_here("some-other-host pid 4294967295"));
        assert!(!worker_died_here("garbage"));
    }

    #[test]
    fn a_holder_reads_back_as_it_was_stored() {
        let run = Holder::here(crate::sync::Origin::Daemon, "0c8e-11");
        let platform = run.for_connector("acme corp");
        for h in [&run, &platform] {
            assert_eq!(Holder::parse(&h.to_string()).as_ref(), Some(h), "{h}");
        }
        assert_eq!(platform.to_string(), format!("daemon@{} pid {} run 0c8e-11 connector acme corp", hostname(), std::process::id()));
        assert_eq!(Holder::parse("cli@h pid x run r"), None, "a pid is a number");
        assert!(died_here(&format!("cli@{} pid 4294967295", hostname())), "an older version's holder, without its run");
    }
}
