//! /metrics of a real daemon for a connector without a schedule: its runs are manual
//! `rostersync sync`s in other processes, so its last-run series come from the state store
//! (the real binary, a real scim2-server, SQLite state shared with the daemon).

use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::daemon::{Daemon, connector, header};
use support::scim::ScimServer;

/// The value of the metric line that starts with `series` (name and labels), if any.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn outcome(text: &str, out: &str) -> Option<f64> {
    metric(text, &format!("rostersync_last_run_outcome{{connector=\"byhand\",outcome=\"{out}\"}}"))
}

#[test]
fn a_connector_without_a_schedule_has_its_last_run_series_from_the_state_store() {
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    // A scheduled connector beside it (no export: its catch-up run fails, exit 4), so both
    // kinds of series are in one scrape; and "byhand", with no schedule and no timezone.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let scheduled = format!(
        "\n[connectors.scheduled]\nschedule = \"daily 02:00\"\nmapping = \"{}\"\n[connectors.scheduled.local]\ndir = \"{}\"\n[connectors.scheduled.file]\npath = \"employees_*.csv\"\n",
        support::repo_root().join("mappings/demo.toml").display(),
        empty.display()
    );
    let byhand =
        connector(dir.path(), "byhand", "Hand Co", "daily 02:00", "UTC").replace("schedule = \"daily 02:00\"\ntimezone = \"UTC\"\n", "");
    assert!(!byhand.contains("schedule"), "{byhand}");
    let cfg = format!("{}{scheduled}{byhand}", header(&scim, dir.path(), port));
    let cfg_path = dir.path().join("connectors.toml");
    let d = Daemon::start(&cfg, dir, port, &scim, &[]);
    let scrape = || {
        let (code, text) = d.get("/metrics");
        assert_eq!(code, 200, "{text}");
        text
    };

    // Before any run: the series exist, at "never" (once the daemon has scheduled the other
    // connector: it may answer a moment before).
    let start = Instant::now();
    let mut text = scrape();
    while metric(&text, "rostersync_connectors_scheduled") != Some(1.0) {
        assert!(start.elapsed() < Duration::from_secs(30), "the daemon never scheduled its connector: {text}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
        text = scrape();
    }
    assert_eq!(metric(&text, "rostersync_last_success_timestamp_seconds{connector=\"byhand\"}"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "rostersync_last_run_timestamp_seconds{connector=\"byhand\"}"), Some(0.0), "{text}");
    for out in ["ok", "no-new-file", "stopped", "failed"] {
        assert_eq!(outcome(&text, out), Some(0.0), "{out}: {text}");
    }
    // Its exit code is not stored by the run that made it: only the daemon's own runs have one.
    assert!(!text.contains("rostersync_last_run_exit_code{connector=\"byhand\"}"), "{text}");
    assert!(text.contains("rostersync_last_run_exit_code{connector=\"scheduled\"}"), "{text}");

    // A manual sync in its own process: the next scrape shows it.
    let sync = |what: &str| {
        let out = Command::new(support::rostersync_bin())
            .arg("--config")
            .arg(&cfg_path)
            .args(["--json", "sync", "byhand"])
            .env("PLATFORM_SCIM_TOKEN", &scim.token)
            .output()
            .expect("run rostersync");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{what}: not one JSON report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), report)
    };
    let (code, report) = sync("first");
    assert_eq!(code, Some(0), "{report}");
    let now = chrono::Utc::now().timestamp() as f64;
    let text = scrape();
    assert_eq!(outcome(&text, "ok"), Some(1.0), "{text}");
    assert_eq!(outcome(&text, "failed"), Some(0.0), "{text}");
    let ok_at = metric(&text, "rostersync_last_success_timestamp_seconds{connector=\"byhand\"}").unwrap();
    assert!((now - ok_at).abs() < 60.0, "last success {ok_at}, now {now}");
    assert_eq!(metric(&text, "rostersync_last_run_timestamp_seconds{connector=\"byhand\"}"), Some(ok_at), "{text}");
    let invalid = report["counts"]["invalid"].as_f64().unwrap();
    assert!(invalid > 0.0, "the demo export has invalid rows on purpose: {report}");
    assert_eq!(metric(&text, "rostersync_last_run_invalid_rows{connector=\"byhand\"}"), Some(invalid), "{text}");
    assert_eq!(metric(&text, "rostersync_export_stale{connector=\"byhand\"}"), Some(0.0), "{text}");

    // Its export gone: the failed run is the last outcome; the last success stays.
    let exports = std::fs::read_dir(d.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("exports-")))
        .expect("byhand's exports folder");
    for f in std::fs::read_dir(&exports).unwrap().flatten() {
        std::fs::remove_file(f.path()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100)); // a later second than the success
    let (code, report) = sync("second");
    assert_eq!(code, Some(4), "no file: {report}");
    let text = scrape();
    assert_eq!(outcome(&text, "failed"), Some(1.0), "{text}");
    assert_eq!(outcome(&text, "ok"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "rostersync_last_success_timestamp_seconds{connector=\"byhand\"}"), Some(ok_at), "{text}");
    assert!(metric(&text, "rostersync_last_run_timestamp_seconds{connector=\"byhand\"}").unwrap() > ok_at, "{text}");

    // The scheduled connector's own series are the daemon's, as before (its catch-up failed).
    let start = Instant::now();
    let mut text = scrape();
    while metric(&text, "rostersync_last_run_exit_code{connector=\"scheduled\"}") != Some(4.0) {
        assert!(start.elapsed() < Duration::from_secs(30), "the scheduled connector's run never ended: {text}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
        text = scrape();
    }
    assert_eq!(metric(&text, "rostersync_last_run_outcome{connector=\"scheduled\",outcome=\"failed\"}"), Some(1.0), "{text}");
}
