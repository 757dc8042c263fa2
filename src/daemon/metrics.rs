//! Prometheus metrics of the daemon, rendered in the text exposition format (0.0.4).
//! A handful of counters behind one mutex: a run ends at most a few times a second.
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
use std::fmt::Write;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::report::{Report, RunOutcome};
use crate::state::RunRecord;

/// Upper bounds (seconds) of the run duration histogram: syncs take seconds to an hour.
const BUCKETS: [f64; 12] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// The last run of a connector in this process.
#[derive(Default, Clone, Copy)]
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

#[derive(Default)]
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
    durations: BTreeMap<String, Histogram>,
    retries: BTreeMap<String, u64>,
    running: i64,
    connectors: usize,
    reloads: BTreeMap<&'static str, u64>,
    /// Connectors without a schedule, from the state store (`set_manual`).
    manual: BTreeMap<String, ManualRuns>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
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
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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
        m.last_run.insert(
            r.connector.clone(),
            LastRun { at: at.timestamp(), exit, invalid: r.counts.invalid, stale: r.stale, outcome: Some(r.outcome) },
        );
        if !r.dry_run {
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
        let h = m.durations.entry(r.connector.clone()).or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn retry_scheduled(&self, connector: &str) {
        *self.lock().retries.entry(connector.to_string()).or_default() += 1;
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
        let m = self.lock();
        let mut o = String::with_capacity(4096);
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut o, "rostersync_runs_total", "counter", "Runs that ended, by connector and outcome.");
        for ((c, out), n) in &m.runs {
            let _ = writeln!(o, "rostersync_runs_total{{connector=\"{}\",outcome=\"{out}\"}} {n}", esc(c));
        }
        head(&mut o, "rostersync_users_pushed_total", "counter", "People pushed to the platform, by connector and operation.");
        for ((c, op), n) in &m.pushed {
            let _ = writeln!(o, "rostersync_users_pushed_total{{connector=\"{}\",operation=\"{op}\"}} {n}", esc(c));
        }
        head(
            &mut o,
            "rostersync_people_total",
            "counter",
            "People of runs by connector and outcome; a run's outcomes add up to its valid rows plus the people absent from its file.",
        );
        for ((c, out), n) in &m.people {
            let _ = writeln!(o, "rostersync_people_total{{connector=\"{}\",outcome=\"{out}\"}} {n}", esc(c));
        }
        head(&mut o, "rostersync_last_success_timestamp_seconds", "gauge", "End of the connector's last successful run (Unix time).");
        for (c, t) in &m.last_success {
            let _ = writeln!(o, "rostersync_last_success_timestamp_seconds{{connector=\"{}\"}} {t}", esc(c));
        }
        for (c, r) in m.manual.iter().filter(|(c, _)| !m.last_success.contains_key(*c)) {
            let _ = writeln!(o, "rostersync_last_success_timestamp_seconds{{connector=\"{}\"}} {}", esc(c), r.last_success.unwrap_or(0));
        }
        // The scheduled connectors' last run in this process, then the manual-only ones' from
        // the store (a connector is in one set or the other; the scheduled one wins).
        let last_runs = || {
            let scheduled = m.known.iter().map(|c| (c, m.last_run.get(c).copied().unwrap_or_default()));
            let manual = m.manual.iter().filter(|(c, _)| !m.known.contains(*c)).map(|(c, r)| {
                let last = r.last.map_or(LastRun::default(), |(at, outcome, invalid, stale)| LastRun {
                    at,
                    invalid,
                    stale,
                    outcome: Some(outcome),
                    ..LastRun::default()
                });
                (c, last)
            });
            scheduled.chain(manual)
        };
        let gauge = |o: &mut String, name: &str, help: &str, value: &dyn Fn(&LastRun) -> String| {
            head(o, name, "gauge", help);
            for (c, last) in last_runs() {
                let _ = writeln!(o, "{name}{{connector=\"{}\"}} {}", esc(c), value(&last));
            }
        };
        gauge(
            &mut o,
            "rostersync_last_run_timestamp_seconds",
            "End of the connector's last run in this process (Unix time; 0: none yet); for a connector without a schedule, its last run in any process.",
            &|l| l.at.to_string(),
        );
        // The exit code of a run in another process is not stored: only this process's runs.
        head(
            &mut o,
            "rostersync_last_run_exit_code",
            "gauge",
            "Exit code of the connector's last run (0 ok, 1 other, 2 config, 3 connection, 4 data, 5 stopped by a safeguard, 6 platform; 0 also before the first run).",
        );
        for c in &m.known {
            let _ = writeln!(o, "rostersync_last_run_exit_code{{connector=\"{}\"}} {}", esc(c), m.last_run.get(c).map_or(0, |l| l.exit));
        }
        head(
            &mut o,
            "rostersync_last_run_outcome",
            "gauge",
            "1 on the outcome of the connector's last run (all 0 before the first); for a connector without a schedule, its last run in any process.",
        );
        for (c, last) in last_runs() {
            for out in OUTCOMES {
                let _ = writeln!(
                    o,
                    "rostersync_last_run_outcome{{connector=\"{}\",outcome=\"{}\"}} {}",
                    esc(c),
                    outcome_label(out),
                    u8::from(last.outcome == Some(out))
                );
            }
        }
        gauge(&mut o, "rostersync_last_run_invalid_rows", "Rows of the last run's file that could not be used.", &|l| {
            l.invalid.to_string()
        });
        gauge(
            &mut o,
            "rostersync_export_stale",
            "1 when the connector's export stopped coming (no new file for longer than stale_after).",
            &|l| u8::from(l.stale).to_string(),
        );
        head(&mut o, "rostersync_operations_total", "counter", "Operations applied on the platform, by connector and kind.");
        for ((c, kind), n) in &m.operations {
            let _ = writeln!(o, "rostersync_operations_total{{connector=\"{}\",kind=\"{kind}\"}} {n}", esc(c));
        }
        head(
            &mut o,
            "rostersync_operations_failed_total",
            "counter",
            "Operations that failed (refused by the platform, or not sent), by connector.",
        );
        for (c, n) in &m.operations_failed {
            let _ = writeln!(o, "rostersync_operations_failed_total{{connector=\"{}\"}} {n}", esc(c));
        }
        head(&mut o, "rostersync_run_duration_seconds", "histogram", "Run duration.");
        for (c, h) in &m.durations {
            let c = esc(c);
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(o, "rostersync_run_duration_seconds_bucket{{connector=\"{c}\",le=\"{le}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(o, "rostersync_run_duration_seconds_bucket{{connector=\"{c}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(o, "rostersync_run_duration_seconds_sum{{connector=\"{c}\"}} {}", h.sum);
            let _ = writeln!(o, "rostersync_run_duration_seconds_count{{connector=\"{c}\"}} {}", h.count);
        }
        head(&mut o, "rostersync_retries_total", "counter", "Failed runs scheduled for a retry within their period.");
        for (c, n) in &m.retries {
            let _ = writeln!(o, "rostersync_retries_total{{connector=\"{}\"}} {n}", esc(c));
        }
        head(&mut o, "rostersync_runs_in_progress", "gauge", "Runs in progress.");
        let _ = writeln!(o, "rostersync_runs_in_progress {}", m.running);
        head(&mut o, "rostersync_connectors_scheduled", "gauge", "Connectors with a schedule.");
        let _ = writeln!(o, "rostersync_connectors_scheduled {}", m.connectors);
        head(&mut o, "rostersync_config_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.");
        for r in ["ok", "partial", "error"] {
            let n = m.reloads.get(r).copied().unwrap_or(0);
            let _ = writeln!(o, "rostersync_config_reloads_total{{result=\"{r}\"}} {n}");
        }
        head(&mut o, "rostersync_build_info", "gauge", "The running build: version, git commit, build date (value 1).");
        let _ = writeln!(
            o,
            "rostersync_build_info{{version=\"{}\",commit=\"{}\",build_date=\"{}\"}} 1",
            esc(crate::build_info::VERSION),
            esc(crate::build_info::COMMIT),
            esc(crate::build_info::BUILD_DATE)
        );
        drop(m);
        render_process(&mut o);
        o
    }
}

/// The standard process metrics (the names the Prometheus client libraries use), read from
/// /proc. On a system without /proc they are left out rather than reported as 0.
fn render_process(o: &mut String) {
    let Ok(me) = procfs::process::Process::myself() else { return };
    let Ok(stat) = me.stat() else { return };
    let tps = procfs::ticks_per_second().max(1) as f64;
    let series: [(&str, &str, &str, Option<f64>); 4] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            Some((stat.utime + stat.stime) as f64 / tps),
        ),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", Some((stat.rss * procfs::page_size()) as f64)),
        ("process_open_fds", "gauge", "Open file descriptors.", me.fd_count().ok().map(|n| n as f64)),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            procfs::boot_time_secs().ok().map(|boot| boot as f64 + stat.starttime as f64 / tps),
        ),
    ];
    for (name, kind, help, value) in series {
        if let Some(v) = value {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    }
    if let Ok(limits) = me.limits()
        && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
    {
        let _ = writeln!(
            o,
            "# HELP process_max_fds Maximum number of open file descriptors.\n# TYPE process_max_fds gauge\nprocess_max_fds {max}"
        );
    }
}

/// Label values escape backslash, quote and newline.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
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
