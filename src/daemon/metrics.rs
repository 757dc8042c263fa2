//! Prometheus metrics of the daemon, rendered in the text exposition format (0.0.4).
//! A handful of counters behind one mutex: a run ends at most a few times a second.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::report::{Report, RunOutcome};

/// Upper bounds (seconds) of the run duration histogram: syncs take seconds to an hour.
const BUCKETS: [f64; 12] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
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
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
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

    /// A run ended (`at` is its end, for the last-success gauge).
    pub fn run_finished(&self, r: &Report, at: DateTime<Utc>) {
        let mut m = self.lock();
        m.running -= 1;
        *m.runs.entry((r.connector.clone(), outcome_label(r.outcome))).or_default() += 1;
        if !r.dry_run {
            let c = &r.counts;
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

    pub fn reload(&self, ok: bool) {
        *self.lock().reloads.entry(if ok { "ok" } else { "error" }).or_default() += 1;
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
        for (r, n) in &m.reloads {
            let _ = writeln!(o, "rostersync_config_reloads_total{{result=\"{r}\"}} {n}");
        }
        o
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
        Report {
            connector: c.into(),
            run_id: "r".into(),
            outcome,
            dry_run: false,
            file: None,
            counts: Counts { created, updated: 2, ..Counts::default() },
            errors: vec![],
            errors_left_out: 0,
            stopped_by: None,
            stale: false,
            notes: Vec::new(),
            message: None,
            duration_ms: ms,
            operations: Vec::new(),
            operations_left_out: 0,
            approval: None,
            approve_with: None,
        }
    }

    #[test]
    fn renders_counters_gauges_and_histogram() {
        let m = Metrics::default();
        let t = DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z").unwrap().with_timezone(&Utc);
        m.run_started();
        m.run_finished(&report("acme", RunOutcome::Ok, 1500, 3), t);
        m.run_started();
        m.run_finished(&report("acme", RunOutcome::Failed, 200, 0), t);
        m.run_started();
        m.run_finished(&report("we\"ird", RunOutcome::Stopped, 200, 0), t);
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
}
