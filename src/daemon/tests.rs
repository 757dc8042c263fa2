//! Scheduler tests on tokio's paused clock with a purpose-built runner: hours of
//! schedules pass in milliseconds, and every start time is exact.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use super::clock::Clock;
use super::metrics::Metrics;
use super::notify::{Event, Notification, Notify};
use super::runner::Runner;
use super::scheduler::{self, Scheduler, Shared};
use super::{Reload, plan_reload};
use crate::config::{self, Connector};
use crate::exit::Exit;
use crate::report::{Counts, Report, RunOutcome};
use crate::retry::{Backoff, Policy};
use crate::sync::RunResult;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Connectors (local source, the demo mapping) with the given schedules.
fn connectors(specs: &[(&str, &str)]) -> crate::config::Connectors {
    let mut src = String::from("[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:1\"\ntoken_env = \"T\"\n");
    for (name, sched) in specs {
        src += &format!(
            "[connectors.{name}]\nschedule = \"{sched}\"\nmapping = \"mappings/demo.toml\"\n[connectors.{name}.local]\ndir = \"examples/exports\"\n[connectors.{name}.file]\npath = \"employees_*.csv\"\n"
        );
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = config::load_str(&src, &dir.join("connectors.toml"), dir);
    assert!(cfg.problems.is_empty(), "{:?}", cfg.problems);
    cfg.connectors
}

#[derive(Debug, Clone)]
struct Ran {
    connector: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// A runner that takes `duration` per run and returns scripted exits (Ok when the
/// script is empty), recording every run and the concurrency it saw.
struct Fake {
    clock: Clock,
    duration: Duration,
    script: Mutex<HashMap<String, VecDeque<(Exit, bool)>>>,
    /// Runs starting before this time fail with this exit.
    fail_before: Mutex<HashMap<String, (DateTime<Utc>, Exit)>>,
    last_success: Mutex<HashMap<String, DateTime<Utc>>>,
    runs: Mutex<Vec<Ran>>,
    running: Mutex<(usize, usize, HashMap<String, usize>)>,
    overlaps: Mutex<Vec<String>>,
    /// Starts of the runs asked for as reconciles.
    reconciles: Mutex<Vec<(String, DateTime<Utc>)>>,
}

impl Fake {
    fn new(clock: &Clock, duration: Duration) -> Arc<Fake> {
        Arc::new(Fake {
            clock: clock.clone(),
            duration,
            script: Mutex::default(),
            fail_before: Mutex::default(),
            last_success: Mutex::default(),
            runs: Mutex::default(),
            running: Mutex::default(),
            overlaps: Mutex::default(),
            reconciles: Mutex::default(),
        })
    }
    /// Scripted exits, each retriable as the run's typed error would say for its usual
    /// causes (a dropped connection, a platform outage, a crash).
    fn script(&self, c: &str, exits: &[Exit]) {
        self.script_typed(c, &exits.iter().map(|e| (*e, usual_retriable(*e))).collect::<Vec<_>>());
    }
    /// Scripted exits with the retriable flag the run's error carried.
    fn script_typed(&self, c: &str, exits: &[(Exit, bool)]) {
        self.script.lock().unwrap().insert(c.into(), exits.iter().copied().collect());
    }
    fn succeeded(&self, c: &str, at: DateTime<Utc>) {
        self.last_success.lock().unwrap().insert(c.into(), at);
    }
    fn runs_of(&self, c: &str) -> Vec<Ran> {
        self.runs.lock().unwrap().iter().filter(|r| r.connector == c).cloned().collect()
    }
    fn max_running(&self) -> usize {
        self.running.lock().unwrap().1
    }
}

impl Runner for Fake {
    async fn reconcile(&self, c: Arc<Connector>) -> RunResult {
        self.reconciles.lock().unwrap().push((c.name.clone(), self.clock.now()));
        self.run(c).await
    }

    async fn run(&self, c: Arc<Connector>) -> RunResult {
        let start = self.clock.now();
        {
            let mut r = self.running.lock().unwrap();
            r.0 += 1;
            r.1 = r.1.max(r.0);
            let mine = r.2.entry(c.name.clone()).or_default();
            *mine += 1;
            if *mine > 1 {
                self.overlaps.lock().unwrap().push(c.name.clone());
            }
        }
        tokio::time::sleep(self.duration).await;
        {
            let mut r = self.running.lock().unwrap();
            r.0 -= 1;
            *r.2.get_mut(&c.name).unwrap() -= 1;
        }
        let scripted = self.script.lock().unwrap().get_mut(&c.name).and_then(|q| q.pop_front());
        let failing = self.fail_before.lock().unwrap().get(&c.name).filter(|(t, _)| start < *t).map(|(_, e)| (*e, usual_retriable(*e)));
        let (exit, retriable) = scripted.or(failing).unwrap_or((Exit::Ok, false));
        let end = self.clock.now();
        self.runs.lock().unwrap().push(Ran { connector: c.name.clone(), start, end });
        if exit == Exit::Ok {
            self.succeeded(&c.name, start);
        }
        let outcome = match exit {
            Exit::Ok => RunOutcome::Ok,
            Exit::Stopped => RunOutcome::Stopped,
            _ => RunOutcome::Failed,
        };
        let report = Report {
            outcome,
            counts: Counts { created: 1, ..Counts::default() },
            stopped_by: (exit == Exit::Stopped).then(|| "max_deactivations".into()),
            message: (exit != Exit::Ok).then(|| format!("scripted exit {}", exit.code())),
            duration_ms: self.duration.as_millis() as u64,
            ..Report::new(&c.name, &format!("{}-{}", c.name, start.timestamp()), false)
        };
        RunResult { report, exit, retriable, failure: None, listing: None }
    }

    async fn last_success(&self, c: &str) -> Option<DateTime<Utc>> {
        self.last_success.lock().unwrap().get(c).copied()
    }
}

/// Whether a failure with this exit code is usually transient (the fake's default).
fn usual_retriable(e: Exit) -> bool {
    matches!(e, Exit::Connection | Exit::Platform | Exit::Other)
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Notification>>);
impl Notify for Recorder {
    fn notify(&self, n: Notification) {
        self.0.lock().unwrap().push(n);
    }
}

struct Harness {
    fake: Arc<Fake>,
    notes: Arc<Recorder>,
    metrics: Arc<Metrics>,
    sched: Scheduler<Fake>,
}

fn harness(now: &str, run_for: Duration, max_concurrent: usize, retry: Policy) -> Harness {
    let clock = Clock::virtual_at(utc(now));
    let fake = Fake::new(&clock, run_for);
    let notes = Arc::new(Recorder::default());
    let metrics = Arc::new(Metrics::default());
    let sched = Scheduler::new(Shared {
        runner: fake.clone(),
        clock,
        permits: Arc::new(Semaphore::new(max_concurrent)),
        retry,
        metrics: metrics.clone(),
        notify: notes.clone(),
    });
    Harness { fake, notes, metrics, sched }
}

async fn advance(d: Duration) {
    tokio::time::sleep(d).await;
}

fn hm(t: DateTime<Utc>) -> String {
    t.format("%m-%d %H:%M:%S").to_string()
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_and_runs_of_one_connector_never_overlap() {
    let names: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    let specs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "*/1 * * * *")).collect();
    let mut h = harness("2026-11-22T00:00:30Z", Duration::from_secs(90), 3, Policy::SCHEDULED_RUN);
    for n in &names {
        h.fake.succeeded(n, utc("2026-11-22T00:00:00Z"));
    }
    h.sched.apply(&connectors(&specs));
    advance(Duration::from_secs(3600)).await;

    assert_eq!(h.fake.max_running(), 3, "the bound is reached and never exceeded");
    assert!(h.fake.overlaps.lock().unwrap().is_empty(), "overlapping runs: {:?}", h.fake.overlaps.lock().unwrap());
    let total = h.fake.runs.lock().unwrap().len();
    // 3 slots busy for an hour with 90 s runs: at most 120 runs, and the queue keeps them full.
    assert!((110..=120).contains(&total), "{total} runs");
    for n in &names {
        assert!(h.fake.runs_of(n).len() >= 4, "{n} starved: {:?}", h.fake.runs_of(n));
    }
    let text = h.metrics.render();
    assert!(text.contains("rostersync_connectors_scheduled 20"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn overrun_slots_are_skipped_not_run_back_to_back() {
    let mut h = harness("2026-11-22T00:00:30Z", Duration::from_secs(150), 4, Policy::SCHEDULED_RUN);
    h.fake.succeeded("slow", utc("2026-11-22T00:00:00Z"));
    h.sched.apply(&connectors(&[("slow", "*/1 * * * *")]));
    advance(Duration::from_secs(31 * 60)).await;

    let starts: Vec<String> = h.fake.runs_of("slow").iter().map(|r| hm(r.start)).collect();
    // 00:01 run ends 00:03:30; slots 00:02 and 00:03 are skipped; next is 00:04, …
    assert_eq!(&starts[..4], ["11-22 00:01:00", "11-22 00:04:00", "11-22 00:07:00", "11-22 00:10:00"]);
    assert_eq!(starts.len(), 10, "{starts:?}");
}

#[tokio::test(start_paused = true)]
async fn catch_up_runs_a_missed_slot_once_at_once() {
    let mut h = harness("2026-11-22T10:00:00Z", Duration::from_secs(60), 4, Policy::SCHEDULED_RUN);
    h.fake.succeeded("missed", utc("2026-11-21T01:00:05Z")); // yesterday's 02:00 Paris run
    h.fake.succeeded("fresh", utc("2026-11-22T01:00:04Z")); // today's 02:00 Paris run
    // "never" has no history at all.
    let mut conns = connectors(&[("missed", "daily 02:00"), ("fresh", "daily 02:00"), ("never", "daily 02:00")]);
    for c in conns.values_mut() {
        Arc::make_mut(c).schedule = Some(crate::schedule::Schedule::parse("daily 02:00", Some("Europe/Paris")).unwrap());
    }
    h.sched.apply(&conns);
    advance(Duration::from_secs(20 * 3600)).await; // until 06:00 UTC tomorrow

    let starts = |c: &str| h.fake.runs_of(c).iter().map(|r| hm(r.start)).collect::<Vec<_>>();
    assert_eq!(starts("missed"), ["11-22 10:00:00", "11-23 01:00:00"], "once at once, then on schedule");
    assert_eq!(starts("never"), ["11-22 10:00:00", "11-23 01:00:00"]);
    assert_eq!(starts("fresh"), ["11-23 01:00:00"], "today's run happened: nothing to catch up");
}

#[tokio::test(start_paused = true)]
async fn a_failed_run_is_retried_with_capped_backoff_within_its_period_then_waits() {
    let retry = Policy {
        max_attempts: 20,
        backoff: Backoff { base: Duration::from_secs(30), cap: Duration::from_secs(120) },
        ..Policy::SCHEDULED_RUN
    };
    let mut h = harness("2026-11-22T00:00:30Z", Duration::from_secs(5), 4, retry);
    h.fake.succeeded("flaky", utc("2026-11-22T00:00:00Z"));
    // Each kind of retriable failure, then failing all through the first 10-minute period.
    h.fake.script("flaky", &[Exit::Connection, Exit::Platform, Exit::Other]);
    h.fake.fail_before.lock().unwrap().insert("flaky".into(), (utc("2026-11-22T00:20:00Z"), Exit::Connection));
    h.sched.apply(&connectors(&[("flaky", "*/10 * * * *")]));
    advance(Duration::from_secs(25 * 60)).await;

    let runs = h.fake.runs_of("flaky");
    let first: Vec<&Ran> = runs.iter().filter(|r| r.start < utc("2026-11-22T00:20:00Z")).collect();
    assert_eq!(first[0].start, utc("2026-11-22T00:10:00Z"));
    for w in first.windows(2) {
        let gap = (w[1].start - w[0].end).to_std().unwrap();
        assert!(gap >= Duration::from_secs(15) && gap <= Duration::from_secs(120), "gap {gap:?} outside [base/2, cap]");
    }
    // Gaps grow (30 → 60 → 120 s, each jittered down by at most half) then stay capped.
    let gap = |i: usize| (first[i + 1].start - first[i].end).to_std().unwrap();
    assert!(gap(0) <= Duration::from_secs(30) && gap(2) >= Duration::from_secs(60), "{:?} {:?}", gap(0), gap(2));
    assert!(first.iter().all(|r| r.start < utc("2026-11-22T00:20:00Z")), "every retry starts within the period");
    // Sum of the gaps: at least 15+30+60+60+… so at most 10; at most 30+60+120+120+… so at least 5.
    assert!(first.len() >= 5 && first.len() <= 10, "{} attempts in 10 minutes", first.len());
    // The failure of the whole period is notified once, with the attempt count; the next
    // slot's success then sends `recovered`.
    let notes = h.notes.0.lock().unwrap().clone();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert_eq!(notes[0].event, Event::Failed);
    assert_eq!(notes[1].event, Event::Recovered);
    assert_eq!(notes[0].attempts as usize, first.len());
    assert!(h.metrics.render().contains("rostersync_retries_total{connector=\"flaky\"}"));
    // Then the next slot, on time, and it succeeds.
    // Then one run for the next slot, and it succeeds: on time, or, when the last jittered
    // retry ran past 00:20 (runs of one connector never overlap), the moment it ended.
    let slot = utc("2026-11-22T00:20:00Z");
    let expected = hm(first.last().map(|r| r.end).unwrap_or(slot).max(slot));
    let later: Vec<String> = runs.iter().filter(|r| r.start >= slot).map(|r| hm(r.start)).collect();
    assert_eq!(later, [expected], "one successful run in the next slot, no retries");
}

#[tokio::test(start_paused = true)]
async fn attempts_stop_at_max_attempts() {
    let retry = Policy {
        max_attempts: 3,
        backoff: Backoff { base: Duration::from_secs(10), cap: Duration::from_secs(10) },
        ..Policy::SCHEDULED_RUN
    };
    let mut h = harness("2026-11-22T00:00:30Z", Duration::from_secs(1), 4, retry);
    h.fake.succeeded("down", utc("2026-11-22T00:00:00Z"));
    h.fake.script("down", &[Exit::Connection; 10]);
    h.sched.apply(&connectors(&[("down", "0 * * * *")]));
    advance(Duration::from_secs(3600)).await;
    assert_eq!(h.fake.runs_of("down").len(), 3);
    assert_eq!(h.notes.0.lock().unwrap()[0].attempts, 3);
}

/// A host-key mismatch or a refused login fails with a connection exit code, but its typed
/// error says a retry cannot help: one attempt, notified at once (not after the retries of
/// the period), and nothing more until the next slot.
#[tokio::test(start_paused = true)]
async fn a_connection_failure_that_cannot_pass_is_reported_once_and_not_retried() {
    let mut h = harness("2026-11-22T00:00:30Z", Duration::from_secs(1), 4, Policy::SCHEDULED_RUN);
    h.fake.succeeded("hostkey", utc("2026-11-22T00:00:00Z"));
    h.fake.script_typed("hostkey", &[(Exit::Connection, false), (Exit::Connection, false)]);
    h.sched.apply(&connectors(&[("hostkey", "0 * * * *")]));
    advance(Duration::from_secs(3600 + 120)).await;
    let starts: Vec<String> = h.fake.runs_of("hostkey").iter().map(|r| hm(r.start)).collect();
    assert_eq!(starts, ["11-22 01:00:00"], "one attempt in the slot, no retry");
    let notes = h.notes.0.lock().unwrap().clone();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!((notes[0].event, notes[0].attempts), (Event::Failed, 1));
    assert!(!h.metrics.render().contains("rostersync_retries_total{connector=\"hostkey\"}"), "no retry counted");
    advance(Duration::from_secs(3600)).await;
    assert_eq!(h.fake.runs_of("hostkey").len(), 2, "the next slot runs again, once");
}

#[tokio::test(start_paused = true)]
async fn a_safeguard_stop_or_a_data_error_is_not_retried_and_is_notified() {
    let mut h = harness("2026-11-22T00:00:30Z", Duration::from_secs(5), 4, Policy::SCHEDULED_RUN);
    h.fake.succeeded("guarded", utc("2026-11-22T00:00:00Z"));
    h.fake.succeeded("nofile", utc("2026-11-22T00:00:00Z"));
    h.fake.script("guarded", &[Exit::Stopped, Exit::Stopped]);
    h.fake.script("nofile", &[Exit::Data]);
    h.sched.apply(&connectors(&[("guarded", "0 * * * *"), ("nofile", "0 * * * *")]));
    advance(Duration::from_secs(2 * 3600 + 60)).await;

    let starts: Vec<String> = h.fake.runs_of("guarded").iter().map(|r| hm(r.start)).collect();
    assert_eq!(starts, ["11-22 01:00:00", "11-22 02:00:00"], "one run per slot, no retry");
    assert_eq!(h.fake.runs_of("nofile").len(), 2);
    let notes = h.notes.0.lock().unwrap().clone();
    let events: Vec<(String, Event)> = notes.iter().map(|n| (n.connector.clone(), n.event)).collect();
    assert_eq!(events.iter().filter(|e| e.0 == "guarded" && e.1 == Event::Stopped).count(), 2, "{events:?}");
    assert_eq!(events.iter().filter(|e| e.0 == "nofile" && e.1 == Event::Failed).count(), 1, "{events:?}");
    assert!(h.metrics.render().contains("rostersync_runs_total{connector=\"guarded\",outcome=\"stopped\"} 2"));
}

#[tokio::test(start_paused = true)]
async fn a_connector_that_failed_sends_recovered_once_when_it_syncs_again() {
    let mut h = harness("2026-11-22T00:00:30Z", Duration::from_secs(5), 4, Policy::SCHEDULED_RUN);
    h.fake.succeeded("flaky", utc("2026-11-22T00:00:00Z"));
    h.fake.script("flaky", &[Exit::Data]);
    h.sched.apply(&connectors(&[("flaky", "0 * * * *")]));
    advance(Duration::from_secs(3 * 3600 + 60)).await;
    assert_eq!(h.fake.runs_of("flaky").len(), 3);
    let notes = h.notes.0.lock().unwrap().clone();
    let events: Vec<Event> = notes.iter().map(|n| n.event).collect();
    assert_eq!(events, [Event::Failed, Event::Recovered], "recovered once, at 02:00; 03:00 is an ordinary success");
    assert_eq!(notes[1].run_id, "flaky-1795312800", "the run of 02:00");
}

#[tokio::test(start_paused = true)]
async fn reload_adds_removes_and_reschedules_without_overlap() {
    let mut h = harness("2026-11-22T00:00:30Z", Duration::from_secs(200), 4, Policy::SCHEDULED_RUN);
    for n in ["keep", "drop", "change"] {
        h.fake.succeeded(n, utc("2026-11-22T00:00:00Z"));
    }
    h.sched.apply(&connectors(&[("keep", "*/5 * * * *"), ("drop", "*/5 * * * *"), ("change", "*/5 * * * *")]));
    advance(Duration::from_secs(5 * 60)).await; // 00:05:30: the 00:05 runs are in progress
    assert_eq!(h.fake.running.lock().unwrap().0, 3);

    let ch = h.sched.apply(&connectors(&[("keep", "*/5 * * * *"), ("change", "*/7 * * * *"), ("new", "*/5 * * * *")]));
    assert_eq!(ch.added, ["new"]);
    assert_eq!(ch.removed, ["drop"]);
    assert_eq!(ch.rescheduled, ["change"]);
    advance(Duration::from_secs(30 * 60)).await;

    assert!(h.fake.overlaps.lock().unwrap().is_empty(), "{:?}", h.fake.overlaps.lock().unwrap());
    let drop_runs = h.fake.runs_of("drop");
    assert_eq!(drop_runs.len(), 1, "the run in progress finished; none after removal");
    assert_eq!(drop_runs[0].end, utc("2026-11-22T00:08:20Z"));
    let change: Vec<String> = h.fake.runs_of("change").iter().map(|r| hm(r.start)).collect();
    // The 00:05 run finishes at 00:08:20; then the new schedule (*/7), no catch-up run.
    assert_eq!(change, ["11-22 00:05:00", "11-22 00:14:00", "11-22 00:21:00", "11-22 00:28:00"]);
    assert!(h.fake.runs_of("new").len() >= 5, "never-run new connector runs at once, then every 5 min");
    assert!(h.fake.runs_of("keep").len() >= 6);
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_runs_finish_within_grace_and_starts_nothing_new() {
    let mut h = harness("2026-11-22T00:00:30Z", Duration::from_secs(100), 4, Policy::SCHEDULED_RUN);
    h.fake.succeeded("a", utc("2026-11-22T00:00:00Z"));
    h.fake.succeeded("b", utc("2026-11-22T00:00:00Z"));
    h.sched.apply(&connectors(&[("a", "*/1 * * * *"), ("b", "*/1 * * * *")]));
    advance(Duration::from_secs(40)).await; // runs started at 00:01:00
    let abandoned = scheduler::shutdown(&mut h.sched, Duration::from_secs(300)).await;
    assert!(abandoned.is_empty(), "{abandoned:?}");
    let runs = h.fake.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 2, "both finished: {runs:?}");
    advance(Duration::from_secs(600)).await;
    assert_eq!(h.fake.runs.lock().unwrap().len(), 2, "nothing new after the stop");
}

#[tokio::test(start_paused = true)]
async fn shutdown_abandons_runs_that_outlast_the_grace_period() {
    let mut h = harness("2026-11-22T00:00:30Z", Duration::from_secs(1000), 4, Policy::SCHEDULED_RUN);
    h.fake.succeeded("long", utc("2026-11-22T00:00:00Z"));
    h.sched.apply(&connectors(&[("long", "*/1 * * * *")]));
    advance(Duration::from_secs(40)).await;
    let before = tokio::time::Instant::now();
    let abandoned = scheduler::shutdown(&mut h.sched, Duration::from_secs(30)).await;
    assert_eq!(abandoned, ["long"]);
    assert_eq!(before.elapsed(), Duration::from_secs(30), "waited exactly the grace period");
}

#[tokio::test(start_paused = true)]
async fn two_hundred_connectors_stay_bounded_and_memory_stays_flat() {
    let names: Vec<String> = (0..200).map(|i| format!("cust{i:03}")).collect();
    let specs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "*/5 * * * *")).collect();
    let mut h = harness("2026-11-22T00:00:30Z", Duration::from_secs(4), 4, Policy::SCHEDULED_RUN);
    for n in &names {
        h.fake.succeeded(n, utc("2026-11-22T00:00:00Z"));
    }
    let mut conns = connectors(&specs);
    for c in conns.values_mut() {
        Arc::make_mut(c).jitter = Duration::from_secs(60); // spread the starts over the first minute
    }
    h.sched.apply(&conns);
    advance(Duration::from_secs(29 * 60)).await; // 00:29:30: slots 00:05 … 00:25 done
    let rss_early = rss_kib();
    let runs_early = h.fake.runs.lock().unwrap().len();
    advance(Duration::from_secs(5 * 3600)).await;
    let rss_late = rss_kib();
    let runs = h.fake.runs.lock().unwrap().len();

    assert!(h.fake.max_running() <= 4, "max {} at once", h.fake.max_running());
    assert_eq!(h.fake.max_running(), 4);
    assert!(h.fake.overlaps.lock().unwrap().is_empty());
    // 200 × 4 s = 800 s of work per 5-minute slot on 4 lanes: every connector keeps up.
    assert_eq!(runs_early, 200 * 5, "every connector ran once per slot");
    assert_eq!(runs, 200 * (5 + 60));
    // The run log itself grows (about 100 bytes a run); the scheduler must not.
    let growth = rss_late.saturating_sub(rss_early);
    assert!(growth < 8 * 1024, "RSS grew by {growth} KiB over {} runs ({rss_early} → {rss_late} KiB)", runs - runs_early);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn retry_delay_doubles_is_capped_and_jittered_down_to_half() {
    let p = Backoff { base: Duration::from_secs(30), cap: Duration::from_secs(300) };
    assert_eq!(p.delay_with(1, 1.0), Duration::from_secs(30));
    assert_eq!(p.delay_with(2, 1.0), Duration::from_secs(60));
    assert_eq!(p.delay_with(4, 1.0), Duration::from_secs(240));
    assert_eq!(p.delay_with(5, 1.0), Duration::from_secs(300));
    assert_eq!(p.delay_with(60, 1.0), Duration::from_secs(300), "no overflow on many attempts");
    assert_eq!(p.delay_with(5, 0.0), Duration::from_secs(150));
}

#[test]
fn reload_keeps_everything_on_a_global_problem_and_old_definitions_of_broken_connectors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = dir.join("connectors.toml");
    let current = connectors(&[("acme", "daily 02:00"), ("globex", "daily 03:00")]);
    let base = "[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:1\"\ntoken_env = \"T\"\n";
    let conn = |name: &str, sched: &str| {
        format!(
            "[connectors.{name}]\nschedule = \"{sched}\"\nmapping = \"mappings/demo.toml\"\n[connectors.{name}.local]\ndir = \"examples/exports\"\n[connectors.{name}.file]\npath = \"employees_*.csv\"\n"
        )
    };

    // Unreadable file: keep.
    let r = plan_reload(&current, config::load(&dir.join("does/not/exist.toml")));
    assert!(matches!(&r, Reload::Keep(p) if p[0].contains("cannot read")), "{r:?}");

    // TOML syntax error / platform problem: keep, and say every problem.
    let bad = format!("[platform]\nkind = \"scim\"\nbase_url = \"not a url\"\ntoken_env = \"T\"\n{}", conn("acme", "daily 02:00"));
    match plan_reload(&current, Ok(config::load_str(&bad, &path, dir))) {
        Reload::Keep(p) => assert!(p.iter().any(|l| l.contains("platform.base_url")), "{p:?}"),
        other => panic!("expected Keep, got {other:?}"),
    }

    // acme broken (kept as it was), globex removed, initech added.
    let src = format!("{base}{}{}", conn("acme", "daily 25:00"), conn("initech", "daily 04:00"));
    match plan_reload(&current, Ok(config::load_str(&src, &path, dir))) {
        Reload::Apply { connectors, kept, problems, .. } => {
            assert_eq!(connectors.keys().collect::<Vec<_>>(), ["acme", "initech"]);
            assert_eq!(connectors["acme"].schedule.as_ref().unwrap().spec, "daily 02:00", "previous definition");
            assert_eq!(kept, ["acme"]);
            assert!(problems.iter().any(|p| p.contains("connectors.acme.schedule")), "{problems:?}");
        }
        other => panic!("expected Apply, got {other:?}"),
    }

    // A new connector with problems is simply not scheduled.
    let src = format!("{base}{}{}", conn("acme", "daily 02:00"), conn("newbie", "sometimes"));
    match plan_reload(&current, Ok(config::load_str(&src, &path, dir))) {
        Reload::Apply { connectors, kept, .. } => {
            assert_eq!(connectors.keys().collect::<Vec<_>>(), ["acme"]);
            assert!(kept.is_empty());
        }
        other => panic!("expected Apply, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_schedule_runs_reconciles_and_never_beside_a_sync_of_the_connector() {
    // Saturday noon; 2026-11-22 is a Sunday.
    let mut h = harness("2026-11-21T12:00:00Z", Duration::from_secs(600), 4, Policy::SCHEDULED_RUN);
    h.fake.succeeded("acme", utc("2026-11-21T03:00:00Z"));
    let mut conns = connectors(&[("acme", "daily 03:00"), ("manual", "daily 03:00")]);
    Arc::make_mut(conns.get_mut("acme").unwrap()).reconcile = Some(crate::schedule::Schedule::parse("weekly sun 03:00", None).unwrap());
    // A connector with only a reconcile schedule is scheduled too.
    let manual = Arc::make_mut(conns.get_mut("manual").unwrap());
    manual.schedule = None;
    manual.reconcile = Some(crate::schedule::Schedule::parse("weekly sun 04:00", None).unwrap());
    h.sched.apply(&conns);
    assert_eq!(h.sched.names(), ["acme", "manual"]);
    advance(Duration::from_secs(40 * 3600)).await; // until Monday 04:00

    let reconciles: Vec<(String, String)> = h.fake.reconciles.lock().unwrap().iter().map(|(c, t)| (c.clone(), hm(*t))).collect();
    let mut acme: Vec<String> = h.fake.runs_of("acme").iter().map(|r| hm(r.start)).collect();
    acme.sort();
    // The sync and the reconcile share Sunday's 03:00: one waits for the other's 10 minutes.
    assert_eq!(acme, ["11-22 03:00:00", "11-22 03:10:00", "11-23 03:00:00"]);
    assert_eq!(reconciles.len(), 2, "{reconciles:?}");
    assert!(reconciles.iter().any(|(c, t)| c == "acme" && t.starts_with("11-22 03:")), "{reconciles:?}");
    assert!(reconciles.contains(&("manual".into(), "11-22 04:00:00".into())), "{reconciles:?}");
    assert_eq!(h.fake.runs_of("manual").len(), 1, "no sync schedule: reconciles only");
    assert!(h.fake.overlaps.lock().unwrap().is_empty(), "runs of one connector never overlap");
}
