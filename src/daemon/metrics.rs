//! Prometheus metrics of the daemon, in the text exposition format (0.0.4) written by
//! `prometheus-client`. A handful of counters behind one mutex (a run ends at most a few
//! times a second), encoded at each scrape by a collector: the series are derived there
//! (the last run's outcome as one series per outcome, the manual-only connectors from the
//! store), and kept in sorted maps so that a scrape lists them in a stable order.
//!
//! Every scheduled connector has its series from the moment it is scheduled (`register`):
//! its runs at 0 by outcome, and a last-success timestamp of 0 when it never succeeded (or
//! the one from the state store), so an alert on `time() - last_success > N` fires for a
//! connector that has never worked, not only for one that stopped working.
//!
//! A connector run by hand only (no schedule: `rostersync sync` in another process) has
//! the gauges of its last run too, read from the state store's history at each scrape
//! (`set_manual`, `ManualRuns::from_history`): the daemon never runs it, so its counters
//! would only ever say 0.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::report::{Report, RunOutcome};
use crate::state::RunRecord;

/// The `content-type` of `/metrics`: the text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the run duration histogram: syncs take seconds to an hour.
const BUCKETS: [f64; 12] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// The last run of a connector in this process.
#[derive(Debug, Default, Clone, Copy)]
struct LastRun {
    at: i64,
    exit: i32,
    invalid: u64,
    stale: bool,
    outcome: Option<RunOutcome>,
}
/// What the state store says of a manual-only connector's runs (made by other processes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ManualRuns {
    /// The last finished run: its end, outcome, unusable rows, staleness.
    last: Option<(i64, RunOutcome, u64, bool)>,
    /// The end of the last ok / no-new-file run that was not a dry run.
    last_success: Option<i64>,
}

impl ManualRuns {
    /// Pure: from a connector's history, newest first (a run in progress, or one that died,
    /// has no report and is passed over).
    pub fn from_history(history: &[RunRecord]) -> ManualRuns {
        let finished = || history.iter().filter_map(|r| Some((r.ended_at.unwrap_or(r.started_at).timestamp(), r.report.as_ref()?)));
        ManualRuns {
            last: finished().next().map(|(at, rep)| (at, rep.outcome, rep.counts.invalid, rep.stale)),
            last_success: finished()
                .find(|(_, rep)| !rep.dry_run && matches!(rep.outcome, RunOutcome::Ok | RunOutcome::NoNewFile))
                .map(|(at, _)| at),
        }
    }
}

/// Outcomes and operations listed at 0 before they happen, so that their series exist.
const OUTCOMES: [RunOutcome; 4] = [RunOutcome::Ok, RunOutcome::NoNewFile, RunOutcome::Stopped, RunOutcome::Failed];
const OPERATIONS: [&str; 6] = ["create", "adopt", "rekey", "update", "deactivate", "delete"];

#[derive(Debug, Default)]
struct Inner {
    /// Connectors with series (scheduled now).
    known: BTreeSet<String>,
    last_run: BTreeMap<String, LastRun>,
    /// Operations applied on the platform, by connector and kind (the verb of the write).
    operations: BTreeMap<(String, &'static str), u64>,
    /// Operations the platform refused or that could not be sent.
    operations_failed: BTreeMap<String, u64>,
    runs: BTreeMap<(String, &'static str), u64>,
    pushed: BTreeMap<(String, &'static str), u64>,
    /// Every person of a run in one outcome (`Counts::people`), so the outcomes add up.
    people: BTreeMap<(String, &'static str), u64>,
    last_success: BTreeMap<String, i64>,
    /// Run durations by connector, in seconds (`BUCKETS`).
    durations: BTreeMap<String, Histogram>,
    retries: BTreeMap<String, u64>,
    running: i64,
    connectors: usize,
    reloads: BTreeMap<&'static str, u64>,
    /// Connectors without a schedule, from the state store (`set_manual`).
    manual: BTreeMap<String, ManualRuns>,
    /// Operations of runs a safeguard stopped: planned, never sent (apart from `operations`,
    /// which counts only what was sent).
    planned: BTreeMap<(String, &'static str), u64>,
    /// Connectors whose plan waits for approval, with the command that applies it.
    awaiting: BTreeMap<String, String>,
    /// Each scheduled connector's platform target (`config::Target::name`).
    targets: BTreeMap<String, String>,
    /// Runs that ended, by target and outcome: what a throttled or failing tenant does to
    /// all of its connectors at once.
    target_runs: BTreeMap<(String, &'static str), u64>,
}

/// The daemon's metrics: updated by the scheduler, rendered by `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    /// The series of `inner` (a collector over it), then the process's.
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Series(inner.clone())));
        registry.register_collector(Box::new(Process));
        Metrics { inner, registry }
    }
}

/// Every update leaves `Inner` whole (each is a few map insertions), so a panic elsewhere
/// while the lock was held leaves nothing half-written: go on with the data.
fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    Ok,
    Partial,
    Error,
}

pub fn outcome_label(o: RunOutcome) -> &'static str {
    match o {
        RunOutcome::Ok => "ok",
        RunOutcome::NoNewFile => "no-new-file",
        RunOutcome::Stopped => "stopped",
        RunOutcome::Failed => "failed",
    }
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Connectors whose plan waits for approval, with the command that applies it.
    pub fn awaiting(&self) -> BTreeMap<String, String> {
        self.lock().awaiting.clone()
    }

    pub fn run_started(&self) {
        self.lock().running += 1;
    }

    /// A connector was scheduled: its series exist from now on, at 0 until it runs.
    /// `last_success` is the state store's, if any (a restarted daemon is not "never").
    pub fn register(&self, connector: &str, last_success: Option<DateTime<Utc>>) {
        let mut m = self.lock();
        m.known.insert(connector.to_string());
        for o in OUTCOMES {
            m.runs.entry((connector.to_string(), outcome_label(o))).or_default();
        }
        for op in OPERATIONS {
            m.operations.entry((connector.to_string(), op)).or_default();
        }
        for op in ["create", "update", "deactivate", "delete"] {
            m.planned.entry((connector.to_string(), op)).or_default();
        }
        m.operations_failed.entry(connector.to_string()).or_default();
        let seeded = last_success.map(|t| t.timestamp()).unwrap_or(0);
        let v = m.last_success.entry(connector.to_string()).or_insert(seeded);
        *v = (*v).max(seeded);
    }

    /// A run ended with `exit` (`at` is its end, for the last-success gauge).
    pub fn run_finished(&self, r: &Report, exit: i32, at: DateTime<Utc>) {
        let mut m = self.lock();
        m.running -= 1;
        *m.runs.entry((r.connector.clone(), outcome_label(r.outcome))).or_default() += 1;
        if let Some(t) = &r.target {
            *m.target_runs.entry((t.clone(), outcome_label(r.outcome))).or_default() += 1;
        }
        m.last_run.insert(
            r.connector.clone(),
            LastRun { at: at.timestamp(), exit, invalid: r.counts.invalid, stale: r.stale, outcome: Some(r.outcome) },
        );
        // A stopped run is still stopped on the next slots (`AwaitingApproval`) until its
        // plan is approved or a new file comes; any other outcome ends the wait.
        match (&r.approve_with, r.outcome) {
            (Some(cmd), RunOutcome::Stopped) => m.awaiting.insert(r.connector.clone(), cmd.clone()),
            _ => m.awaiting.remove(&r.connector),
        };
        if !r.dry_run && r.outcome == RunOutcome::Stopped {
            // What the stopped plan would have done: nothing of it reached the platform.
            let c = &r.counts;
            for (kind, n) in [("create", c.created), ("update", c.updated), ("deactivate", c.deactivated), ("delete", c.deleted)] {
                *m.planned.entry((r.connector.clone(), kind)).or_default() += n;
            }
        } else if !r.dry_run {
            let c = &r.counts;
            for (kind, n) in [
                ("create", c.created),
                ("adopt", c.adopted),
                ("rekey", c.rekeyed),
                ("update", c.updated),
                ("deactivate", c.deactivated),
                ("delete", c.deleted),
            ] {
                *m.operations.entry((r.connector.clone(), kind)).or_default() += n;
            }
            *m.operations_failed.entry(r.connector.clone()).or_default() += c.failed;
            let pushed = [
                ("created", c.created),
                ("adopted", c.adopted),
                ("rekeyed", c.rekeyed),
                ("updated", c.updated),
                ("deactivated", c.deactivated),
                ("deleted", c.deleted),
            ];
            for (op, n) in pushed {
                // Touch every operation so the series exist (at 0) from the first run.
                *m.pushed.entry((r.connector.clone(), op)).or_default() += n;
            }
            for (outcome, n) in pushed.into_iter().chain([("unchanged", c.unchanged), ("failed", c.failed), ("conflicts", c.conflicts)]) {
                *m.people.entry((r.connector.clone(), outcome)).or_default() += n;
            }
        }
        if matches!(r.outcome, RunOutcome::Ok | RunOutcome::NoNewFile) {
            m.last_success.insert(r.connector.clone(), at.timestamp());
        }
        let secs = r.duration_ms as f64 / 1000.0;
        m.durations.entry(r.connector.clone()).or_insert_with(|| Histogram::new(BUCKETS)).observe(secs);
    }

    pub fn retry_scheduled(&self, connector: &str) {
        *self.lock().retries.entry(connector.to_string()).or_default() += 1;
    }

    /// The connector's platform target, named in `rostersync_connector_target` and the
    /// per-target series.
    pub fn set_target(&self, connector: &str, target: &str) {
        let mut m = self.lock();
        m.targets.insert(connector.to_string(), target.to_string());
        for o in OUTCOMES {
            m.target_runs.entry((target.to_string(), outcome_label(o))).or_default();
        }
    }

    pub fn set_connectors(&self, n: usize) {
        self.lock().connectors = n;
    }

    /// A SIGHUP reload: `ok` applied whole, `partial` applied with connectors refused (they
    /// keep their previous definition, or are not scheduled), `error` refused whole.
    pub fn reload(&self, result: ReloadResult) {
        let label = match result {
            ReloadResult::Ok => "ok",
            ReloadResult::Partial => "partial",
            ReloadResult::Error => "error",
        };
        *self.lock().reloads.entry(label).or_default() += 1;
    }

    /// Forgets the per-connector series of a connector removed from the configuration.
    pub fn forget(&self, connector: &str) {
        let mut m = self.lock();
        m.runs.retain(|(c, _), _| c != connector);
        m.pushed.retain(|(c, _), _| c != connector);
        m.people.retain(|(c, _), _| c != connector);
        m.last_success.remove(connector);
        m.durations.remove(connector);
        m.retries.remove(connector);
        m.known.remove(connector);
        m.last_run.remove(connector);
        m.operations.retain(|(c, _), _| c != connector);
        m.operations_failed.remove(connector);
        if let Some(t) = m.targets.remove(connector)
            && !m.targets.values().any(|u| *u == t)
        {
            m.target_runs.retain(|(u, _), _| *u != t);
        }
    }

    /// The manual-only connectors now (replacing the previous set: one removed from the
    /// configuration, or given a schedule, loses these series) and their stored runs.
    pub fn set_manual(&self, manual: BTreeMap<String, ManualRuns>) {
        self.lock().manual = manual;
    }

    /// Runs in progress right now.
    pub fn running(&self) -> i64 {
        self.lock().running
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail, and the collectors only pass the writer's errors on.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!("cannot encode the metrics: {e}");
        }
        out
    }
}

type Encoded = Result<(), std::fmt::Error>;

/// The daemon's series, read under the lock at each scrape.
#[derive(Debug)]
struct Series(Arc<Mutex<Inner>>);

impl Collector for Series {
    fn encode(&self, mut enc: DescriptorEncoder) -> Encoded {
        let m = lock(&self.0);
        encode_runs(&m, &mut enc)?;
        encode_last_runs(&m, &mut enc)?;
        encode_operations(&m, &mut enc)?;
        encode_daemon(&m, &mut enc)
    }
}

/// A counter family. `name` is without `_total`: the encoder appends it (to the help and
/// type lines too).
fn counters<'a, const N: usize>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = ([(&'static str, &'a str); N], u64)>,
) -> Encoded {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, n) in series {
        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge family.
fn gauges<'a, const N: usize>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = ([(&'static str, &'a str); N], i64)>,
) -> Encoded {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge without labels.
fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: impl EncodeGaugeValue) -> Encoded {
    ConstGauge::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn connector(c: &str) -> [(&'static str, &str); 1] {
    [("connector", c)]
}

/// The series of a map keyed by connector and one more label.
fn pairs<'a>(
    map: &'a BTreeMap<(String, &'static str), u64>,
    label: &'static str,
) -> impl Iterator<Item = ([(&'static str, &'a str); 2], u64)> {
    map.iter().map(move |((c, v), n)| ([("connector", c.as_str()), (label, *v)], *n))
}

/// What the runs did: by outcome, the people pushed, every person's outcome.
fn encode_runs(m: &Inner, enc: &mut DescriptorEncoder) -> Encoded {
    counters(enc, "rostersync_runs", "Runs that ended, by connector and outcome.", pairs(&m.runs, "outcome"))?;
    counters(enc, "rostersync_users_pushed", "People pushed to the platform, by connector and operation.", pairs(&m.pushed, "operation"))?;
    counters(
        enc,
        "rostersync_people",
        "People of runs by connector and outcome; a run's outcomes add up to its valid rows plus the people absent from its file.",
        pairs(&m.people, "outcome"),
    )
}

/// The scheduled connectors' last run in this process, then the manual-only ones' from the
/// store (a connector is in one set or the other; the scheduled one wins).
fn last_runs(m: &Inner) -> Vec<(&str, LastRun)> {
    let scheduled = m.known.iter().map(|c| (c.as_str(), m.last_run.get(c).copied().unwrap_or_default()));
    let manual = m.manual.iter().filter(|(c, _)| !m.known.contains(*c)).map(|(c, r)| {
        let last = r.last.map_or(LastRun::default(), |(at, outcome, invalid, stale)| LastRun {
            at,
            invalid,
            stale,
            outcome: Some(outcome),
            ..LastRun::default()
        });
        (c.as_str(), last)
    });
    scheduled.chain(manual).collect()
}

/// Each connector's last success and last run.
fn encode_last_runs(m: &Inner, enc: &mut DescriptorEncoder) -> Encoded {
    let successes = m.last_success.iter().map(|(c, t)| (connector(c), *t));
    let manual =
        m.manual.iter().filter(|(c, _)| !m.last_success.contains_key(*c)).map(|(c, r)| (connector(c), r.last_success.unwrap_or(0)));
    gauges(
        enc,
        "rostersync_last_success_timestamp_seconds",
        "End of the connector's last successful run (Unix time).",
        successes.chain(manual),
    )?;
    let last = last_runs(m);
    let each = |value: fn(&LastRun) -> i64| last.iter().map(move |(c, l)| (connector(c), value(l)));
    gauges(
        enc,
        "rostersync_last_run_timestamp_seconds",
        "End of the connector's last run in this process (Unix time; 0: none yet); for a connector without a schedule, its last run in any process.",
        each(|l| l.at),
    )?;
    // The exit code of a run in another process is not stored: only this process's runs.
    gauges(
        enc,
        "rostersync_last_run_exit_code",
        "Exit code of the connector's last run: 0 ok, 1 other, 2 config, 3 connection, 4 data, 5 stopped by a safeguard, 6 platform; 0 also before the first run.",
        m.known.iter().map(|c| (connector(c), m.last_run.get(c).map_or(0, |l| i64::from(l.exit)))),
    )?;
    let outcomes = last
        .iter()
        .flat_map(|(c, l)| OUTCOMES.map(|o| ([("connector", *c), ("outcome", outcome_label(o))], i64::from(l.outcome == Some(o)))));
    gauges(
        enc,
        "rostersync_last_run_outcome",
        "1 on the outcome of the connector's last run (all 0 before the first); for a connector without a schedule, its last run in any process.",
        outcomes,
    )?;
    gauges(
        enc,
        "rostersync_last_run_invalid_rows",
        "Rows of the last run's file that could not be used.",
        each(|l| i64::try_from(l.invalid).unwrap_or(i64::MAX)),
    )?;
    gauges(
        enc,
        "rostersync_export_stale",
        "1 when the connector's export stopped coming (no new file for longer than stale_after).",
        each(|l| i64::from(l.stale)),
    )
}

/// The platform's side: operations, failures, how long runs take, retries.
fn encode_operations(m: &Inner, enc: &mut DescriptorEncoder) -> Encoded {
    counters(enc, "rostersync_operations", "Operations applied on the platform, by connector and kind.", pairs(&m.operations, "kind"))?;
    counters(
        enc,
        "rostersync_operations_planned",
        "Operations of plans a safeguard stopped (never sent), by connector and kind.",
        pairs(&m.planned, "kind"),
    )?;
    gauges(
        enc,
        "rostersync_awaiting_approval",
        "1 while the connector's plan, stopped by a safeguard, waits for `rostersync approve` (or a new file).",
        m.known.iter().map(|c| (connector(c), i64::from(m.awaiting.contains_key(c)))),
    )?;
    counters(
        enc,
        "rostersync_operations_failed",
        "Operations that failed (refused by the platform, or not sent), by connector.",
        m.operations_failed.iter().map(|(c, n)| (connector(c), *n)),
    )?;
    let mut durations = enc.encode_descriptor("rostersync_run_duration_seconds", "Run duration.", None, MetricType::Histogram)?;
    for (c, h) in &m.durations {
        h.encode(durations.encode_family(&connector(c))?)?;
    }
    counters(
        enc,
        "rostersync_retries",
        "Failed runs scheduled for a retry within their period.",
        m.retries.iter().map(|(c, n)| (connector(c), *n)),
    )
}

/// The daemon itself: runs in progress, connectors, reloads, build.
fn encode_daemon(m: &Inner, enc: &mut DescriptorEncoder) -> Encoded {
    gauge(enc, "rostersync_runs_in_progress", "Runs in progress.", m.running)?;
    gauge(enc, "rostersync_connectors_scheduled", "Connectors with a schedule.", m.connectors)?;
    gauges(
        enc,
        "rostersync_connector_target",
        "The platform target each scheduled connector sends to (value 1): join on connector to see any series by target.",
        m.targets.iter().map(|(c, t)| ([("connector", c.as_str()), ("target", t.as_str())], 1)),
    )?;
    counters(
        enc,
        "rostersync_target_runs",
        "Runs that ended, by platform target and outcome.",
        m.target_runs.iter().map(|((t, o), n)| ([("target", t.as_str()), ("outcome", *o)], *n)),
    )?;
    counters(
        enc,
        "rostersync_config_reloads",
        "Configuration reloads (SIGHUP), by result.",
        ["ok", "partial", "error"].map(|r| ([("result", r)], m.reloads.get(r).copied().unwrap_or(0))),
    )?;
    // An info metric: the encoder names it `_info` and writes it as a gauge of value 1.
    let build = Info::new([
        ("version", crate::build_info::VERSION),
        ("commit", crate::build_info::COMMIT),
        ("build_date", crate::build_info::BUILD_DATE),
    ]);
    build.encode(enc.encode_descriptor(
        "rostersync_build",
        "The running build: version, git commit, build date (value 1).",
        None,
        MetricType::Info,
    )?)
}

/// The standard process metrics (the names the Prometheus client libraries use), read from
/// /proc at each scrape. On a system without /proc they are left out rather than reported
/// as 0.
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut enc: DescriptorEncoder) -> Encoded {
        let Ok(me) = procfs::process::Process::myself() else { return Ok(()) };
        let Ok(stat) = me.stat() else { return Ok(()) };
        let tps = procfs::ticks_per_second().max(1) as f64;
        let cpu = (stat.utime + stat.stime) as f64 / tps;
        ConstCounter::new(cpu).encode(enc.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds.",
            None,
            MetricType::Counter,
        )?)?;
        gauge(&mut enc, "process_resident_memory_bytes", "Resident memory size in bytes.", stat.rss * procfs::page_size())?;
        if let Ok(n) = me.fd_count() {
            gauge(&mut enc, "process_open_fds", "Open file descriptors.", n)?;
        }
        if let Ok(boot) = procfs::boot_time_secs() {
            let start = boot as f64 + stat.starttime as f64 / tps;
            gauge(&mut enc, "process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", start)?;
        }
        if let Ok(limits) = me.limits()
            && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            gauge(&mut enc, "process_max_fds", "Maximum number of open file descriptors.", max)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Counts;

    fn report(c: &str, outcome: RunOutcome, ms: u64, created: u64) -> Report {
        Report { outcome, counts: Counts { created, updated: 2, ..Counts::default() }, duration_ms: ms, ..Report::new(c, "r", false) }
    }

    #[test]
    fn renders_counters_gauges_and_histogram() {
        let m = Metrics::default();
        let t = DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z").unwrap().with_timezone(&Utc);
        m.run_started();
        m.run_finished(&report("acme", RunOutcome::Ok, 1500, 3), 0, t);
        m.run_started();
        m.run_finished(&report("acme", RunOutcome::Failed, 200, 0), 4, t);
        m.run_started();
        m.run_finished(&report("we\"ird", RunOutcome::Stopped, 200, 0), 5, t);
        let text = m.render();
        for line in [
            "rostersync_runs_total{connector=\"acme\",outcome=\"ok\"} 1",
            "rostersync_runs_total{connector=\"acme\",outcome=\"failed\"} 1",
            "rostersync_runs_total{connector=\"we\\\"ird\",outcome=\"stopped\"} 1",
            "rostersync_users_pushed_total{connector=\"acme\",operation=\"created\"} 3",
            "rostersync_users_pushed_total{connector=\"acme\",operation=\"updated\"} 4",
            "rostersync_users_pushed_total{connector=\"acme\",operation=\"deleted\"} 0",
            "rostersync_users_pushed_total{connector=\"acme\",operation=\"rekeyed\"} 0",
            "rostersync_people_total{connector=\"acme\",outcome=\"conflicts\"} 0",
            "rostersync_people_total{connector=\"acme\",outcome=\"updated\"} 4",
            "rostersync_last_success_timestamp_seconds{connector=\"acme\"} 1795312800",
            "rostersync_run_duration_seconds_bucket{connector=\"acme\",le=\"1\"} 1",
            "rostersync_run_duration_seconds_bucket{connector=\"acme\",le=\"5\"} 2",
            "rostersync_run_duration_seconds_bucket{connector=\"acme\",le=\"+Inf\"} 2",
            "rostersync_run_duration_seconds_count{connector=\"acme\"} 2",
            "rostersync_runs_in_progress 0",
            "# TYPE rostersync_run_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "missing «{line}» in:\n{text}");
        }
        assert!(!text.contains("last_success_timestamp_seconds{connector=\"we"), "a stopped run is not a success");
        m.forget("acme");
        assert!(!m.render().contains("connector=\"acme\""));
    }

    /// Each connector names its target, and the runs of a target add up across its
    /// connectors; a target goes with its last connector.
    #[test]
    fn runs_are_counted_by_target_too() {
        let m = Metrics::default();
        let t = DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z").unwrap().with_timezone(&Utc);
        m.set_target("acme", "org-acme");
        m.set_target("acme2", "org-acme");
        m.set_target("globex", "org-globex");
        for c in ["acme", "acme2"] {
            m.run_finished(&Report { target: Some("org-acme".into()), ..report(c, RunOutcome::Ok, 10, 1) }, 0, t);
        }
        let text = m.render();
        for line in [
            "rostersync_connector_target{connector=\"acme\",target=\"org-acme\"} 1",
            "rostersync_connector_target{connector=\"globex\",target=\"org-globex\"} 1",
            "rostersync_target_runs_total{target=\"org-acme\",outcome=\"ok\"} 2",
            "rostersync_target_runs_total{target=\"org-globex\",outcome=\"failed\"} 0",
        ] {
            assert!(text.contains(line), "missing «{line}» in:\n{text}");
        }
        m.forget("acme");
        assert!(m.render().contains("target=\"org-acme\",outcome=\"ok\"} 2"), "acme2 still sends there");
        m.forget("acme2");
        assert!(!m.render().contains("org-acme"));
    }

    /// A connector without a schedule: its gauges from the stored history (newest first),
    /// a run in progress and a dry run passed over where they would mislead.
    #[test]
    fn a_manual_only_connector_has_its_last_run_series_from_the_store() {
        let at = |s: i64| DateTime::from_timestamp(1_795_312_800 + s, 0).unwrap();
        let rec = |id: &str, end: i64, outcome: Option<(RunOutcome, bool)>| RunRecord {
            run_id: id.into(),
            connector: "hand".into(),
            started_at: at(end - 5),
            ended_at: outcome.map(|_| at(end)),
            report: outcome.map(|(o, dry)| Report {
                outcome: o,
                stale: o == RunOutcome::Failed,
                counts: Counts { invalid: 2, ..Counts::default() },
                ..Report::new("hand", id, dry)
            }),
            worker: None,
            fence: None,
        };
        let history = [
            rec("running", 40, None),
            rec("failed", 30, Some((RunOutcome::Failed, false))),
            rec("dry", 20, Some((RunOutcome::Ok, true))),
            rec("ok", 10, Some((RunOutcome::NoNewFile, false))),
        ];
        let runs = ManualRuns::from_history(&history);
        assert_eq!(
            runs,
            ManualRuns { last: Some((at(30).timestamp(), RunOutcome::Failed, 2, true)), last_success: Some(at(10).timestamp()) }
        );
        assert_eq!(ManualRuns::from_history(&[]), ManualRuns::default());

        let m = Metrics::default();
        m.register("sched", None);
        m.set_manual(BTreeMap::from([("hand".to_string(), runs), ("never".to_string(), ManualRuns::default())]));
        let text = m.render();
        for line in [
            "rostersync_last_success_timestamp_seconds{connector=\"hand\"} 1795312810",
            "rostersync_last_success_timestamp_seconds{connector=\"never\"} 0",
            "rostersync_last_run_timestamp_seconds{connector=\"hand\"} 1795312830",
            "rostersync_last_run_invalid_rows{connector=\"hand\"} 2",
            "rostersync_export_stale{connector=\"hand\"} 1",
            "rostersync_last_run_outcome{connector=\"hand\",outcome=\"failed\"} 1",
            "rostersync_last_run_outcome{connector=\"hand\",outcome=\"ok\"} 0",
            "rostersync_last_run_outcome{connector=\"never\",outcome=\"failed\"} 0",
            "rostersync_last_run_outcome{connector=\"sched\",outcome=\"ok\"} 0",
            "rostersync_last_run_exit_code{connector=\"sched\"} 0",
        ] {
            assert!(text.contains(line), "missing «{line}» in:\n{text}");
        }
        assert!(!text.contains("rostersync_last_run_exit_code{connector=\"hand\"}"), "not stored, so not shown: {text}");
        assert!(!text.contains("rostersync_runs_total{connector=\"hand\""), "the daemon's own runs only: {text}");
        // Given a schedule (or removed) it leaves the manual set, and its stored series go.
        m.set_manual(BTreeMap::new());
        assert!(!m.render().contains("connector=\"hand\""));
    }

    #[test]
    fn a_registered_connector_has_its_series_before_any_run() {
        let m = Metrics::default();
        m.register("never", None);
        let seeded = DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z").unwrap().with_timezone(&Utc);
        m.register("restarted", Some(seeded));
        let text = m.render();
        for line in [
            "rostersync_last_success_timestamp_seconds{connector=\"never\"} 0",
            "rostersync_last_success_timestamp_seconds{connector=\"restarted\"} 1795312800",
            "rostersync_runs_total{connector=\"never\",outcome=\"failed\"} 0",
            "rostersync_last_run_timestamp_seconds{connector=\"never\"} 0",
            "rostersync_last_run_invalid_rows{connector=\"never\"} 0",
            "rostersync_export_stale{connector=\"never\"} 0",
            "rostersync_operations_total{connector=\"never\",kind=\"deactivate\"} 0",
            "rostersync_operations_failed_total{connector=\"never\"} 0",
            "rostersync_config_reloads_total{result=\"partial\"} 0",
        ] {
            assert!(text.contains(line), "missing «{line}» in:\n{text}");
        }
        // A later run updates the gauges; registering again (a reload) keeps them.
        m.run_started();
        let mut r = report("never", RunOutcome::Stopped, 10, 0);
        r.counts.invalid = 7;
        r.stale = true;
        m.run_finished(&r, 5, seeded);
        m.register("never", None);
        m.reload(ReloadResult::Partial);
        let text = m.render();
        for line in [
            "rostersync_last_run_exit_code{connector=\"never\"} 5",
            "rostersync_last_run_invalid_rows{connector=\"never\"} 7",
            "rostersync_export_stale{connector=\"never\"} 1",
            "rostersync_last_run_timestamp_seconds{connector=\"never\"} 1795312800",
            "rostersync_last_success_timestamp_seconds{connector=\"never\"} 0",
            "rostersync_config_reloads_total{result=\"partial\"} 1",
        ] {
            assert!(text.contains(line), "missing «{line}» in:\n{text}");
        }
        assert!(text.contains(&format!("rostersync_build_info{{version=\"{}\",commit=\"", crate::build_info::VERSION)), "{text}");
        // This test process's own figures, from /proc.
        let rss: f64 = text.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).expect("rss").parse().unwrap();
        assert!(rss > 1e6, "{rss}");
        let fds: f64 = text.lines().find_map(|l| l.strip_prefix("process_open_fds ")).expect("fds").parse().unwrap();
        assert!(fds >= 3.0, "{fds}");
        let start: f64 = text.lines().find_map(|l| l.strip_prefix("process_start_time_seconds ")).expect("start").parse().unwrap();
        let now = Utc::now().timestamp() as f64;
        assert!(start <= now + 1.0 && start > now - 86_400.0, "start {start}, now {now}");
    }
}
