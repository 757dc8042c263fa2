//! `rostersync daemon` as a user runs it: the real binary, real scim2-server, local
//! exports on seconds-level schedules; signals sent with `kill`.
//!
//! Waiting here is polling for a condition with a deadline (a real process runs on the
//! real clock); the scheduling logic itself is tested on paused time in src/daemon/tests.rs.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::max_overlap;
use support::scim::ScimServer;

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Daemon {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("connectors.toml")
    }

    fn start(config: &str, dir: tempfile::TempDir, port: u16, scim: &ScimServer) -> Daemon {
        std::fs::write(dir.path().join("connectors.toml"), config).unwrap();
        // `history` reads this copy, so that it still finds the state store while the
        // daemon's own file is deliberately broken.
        std::fs::write(dir.path().join("history.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let child = Command::new(support::rostersync_bin())
            .args(["--config", dir.path().join("connectors.toml").to_str().unwrap(), "--log-format", "json", "daemon"])
            .env("PLATFORM_SCIM_TOKEN", &scim.token)
            .env("RUST_LOG", "rostersync=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rostersync daemon");
        let d = Daemon { child, dir, port };
        support::wait_for_port(port, Duration::from_secs(20), &format!("rostersync daemon (log: {})", d.log()));
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill").success();
        assert!(ok, "kill {sig} failed");
    }

    /// `rostersync history --json`: every run, oldest first.
    fn history(&self) -> Vec<serde_json::Value> {
        let out = Command::new(support::rostersync_bin())
            .args(["--config", self.dir.path().join("history.toml").to_str().unwrap(), "--json", "history", "--limit", "100000"])
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("history --json is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        let mut runs = v.as_array().cloned().unwrap_or_default();
        runs.reverse();
        runs
    }

    fn http_get(&self, path: &str) -> String {
        let out = Command::new("curl").args(["-sS", &format!("http://127.0.0.1:{}{path}", self.port)]).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `cond` on the history until it holds or the deadline passes.
    fn wait_history(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let h = self.history();
            if cond(&h) {
                return h;
            }
            if start.elapsed() > timeout {
                panic!("timed out waiting for {what}; history: {h:#?}\nlog:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends SIGTERM and returns the exit code.
    fn stop(mut self, timeout: Duration) -> (Option<i32>, Daemon) {
        self.signal("-TERM");
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code(), self);
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("the daemon did not exit within {timeout:?} of SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn rss_kib(&self) -> u64 {
        rss_kib_of(self.child.id()).expect("/proc/PID/status has VmRSS")
    }
}

/// The resident set of process `pid` (VmRSS), while it lives.
fn rss_kib_of(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header(scim: &ScimServer, dir: &Path, port: u16, max_concurrent: usize) -> String {
    header_with(scim, dir, port, max_concurrent, "")
}

fn header_with(scim: &ScimServer, dir: &Path, port: u16, max_concurrent: usize, platform_extra: &str) -> String {
    format!(
        "[platform]\nkind = \"scim\"\nbase_url = \"{}\"\ntoken_env = \"PLATFORM_SCIM_TOKEN\"\n{platform_extra}\n[state]\nurl = \"sqlite://{}\"\n\n[daemon]\nlisten = \"127.0.0.1:{port}\"\nmax_concurrent_runs = {max_concurrent}\ngrace = \"30s\"\n",
        scim.base_url,
        dir.join("state.db").display()
    )
}

/// A connector on a local copy of the demo export (3 of its 41 rows are invalid on
/// purpose: max_invalid lets them through, so the run pushes the 40 others).
fn connector(name: &str, schedule: &str, exports: &Path) -> String {
    let mapping = support::repo_root().join("mappings/demo.toml");
    format!(
        "\n[connectors.{name}]\nschedule = \"{schedule}\"\nmapping = \"{}\"\n[connectors.{name}.local]\ndir = \"{}\"\n[connectors.{name}.file]\npath = \"employees_*.csv\"\npick = \"last-name\"\n[connectors.{name}.sync]\nmax_invalid = \"10%\"\n",
        mapping.display(),
        exports.display()
    )
}

fn exports_dir(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(support::repo_root().join("examples/exports/employees_2026-11-20.csv"), d.join("employees_2026-11-20.csv")).unwrap();
    d
}

fn by_connector(runs: &[serde_json::Value]) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut m: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for r in runs {
        m.entry(r["connector"].as_str().unwrap().to_string()).or_default().push(r.clone());
    }
    m
}

fn finished(runs: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    runs.iter().filter(|r| !r["ended_at"].is_null()).collect()
}

#[test]
fn daemon_runs_two_connectors_on_schedule_reloads_on_sighup_and_stops_on_sigterm() {
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let a = exports_dir(dir.path(), "alpha");
    let b = exports_dir(dir.path(), "beta");
    let (hook, posted) = support::webhook_listener();
    let base = header_with(&scim, dir.path(), port, 2, &format!("notify_webhook = \"{hook}\"\n"));
    // "empty" finds no export: a failed run that is not retried, and is notified.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let cfg = format!(
        "{base}{}{}{}",
        connector("alpha", "*/2 * * * * *", &a),
        connector("beta", "*/2 * * * * *", &b),
        connector("empty", "*/2 * * * * *", &empty)
    );
    let d = Daemon::start(&cfg, dir, port, &scim);
    assert_eq!(d.http_get("/healthz"), "ok\n");

    // Both connectors run, repeatedly, and every run is in history.
    let h = d.wait_history("three finished runs of alpha and beta", Duration::from_secs(60), |h| {
        let m = by_connector(h);
        ["alpha", "beta"].iter().all(|c| m.get(*c).is_some_and(|r| finished(r).len() >= 3))
    });
    let m = by_connector(&h);
    for c in ["alpha", "beta"] {
        let runs = finished(&m[c]);
        assert_eq!(max_overlap(&runs), 1, "runs of {c} overlapped: {runs:#?}");
    }
    let empty_runs = by_connector(&h).get("empty").map(|r| finished(r).len()).unwrap_or(0);
    assert!(empty_runs >= 1, "the connector without an export ran");
    let notes: Vec<serde_json::Value> =
        posted.lock().unwrap().iter().map(|b| serde_json::from_str(b).expect("webhook body is JSON")).collect();
    let note = notes
        .iter()
        .find(|n| n["connector"] == "empty")
        .unwrap_or_else(|| panic!("no notification for \"empty\": {notes:#?}\n{}", d.log()));
    assert_eq!(note["event"], "failed");
    assert_eq!(note["exit"], 4);
    assert!(note["text"].as_str().unwrap().contains("no file matches"), "{note}");
    assert!(posted.lock().unwrap().iter().all(|b| !b.contains(&scim.token)), "a secret reached the webhook");
    let metrics_text = d.http_get("/metrics");
    assert!(metrics_text.contains("rostersync_runs_total{connector=\"alpha\""), "{metrics_text}");
    assert!(metrics_text.contains("# TYPE rostersync_run_duration_seconds histogram"), "{metrics_text}");

    // SIGHUP with a third connector: it is scheduled without a restart.
    let g = exports_dir(d.dir.path(), "gamma");
    let cfg2 = format!("{cfg}{}", connector("gamma", "*/2 * * * * *", &g));
    std::fs::write(d.config_path(), &cfg2).unwrap();
    d.signal("-HUP");
    d.wait_history("a finished run of gamma after SIGHUP", Duration::from_secs(30), |h| {
        by_connector(h).get("gamma").is_some_and(|r| !finished(r).is_empty())
    });
    // An invalid config on SIGHUP keeps the previous one running.
    std::fs::write(d.config_path(), "[platform\nbroken").unwrap();
    d.signal("-HUP");
    let start = Instant::now();
    while !d.log().contains("reload refused") {
        assert!(start.elapsed() < Duration::from_secs(20), "no \"reload refused\" in the log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = finished(&by_connector(&d.history())["gamma"]).len();
    d.wait_history("gamma still running after a bad reload", Duration::from_secs(30), |h| {
        finished(&by_connector(h)["gamma"]).len() >= before + 2
    });

    // SIGTERM: exit 0, and no run left half-recorded.
    let (code, d) = d.stop(Duration::from_secs(40));
    assert_eq!(code, Some(0), "log:\n{}", d.log());
    let h = d.history();
    assert!(h.iter().all(|r| !r["ended_at"].is_null()), "a run was left unfinished: {h:#?}");
    let all: Vec<&serde_json::Value> = h.iter().collect();
    assert!(max_overlap(&all) <= 2, "more than max_concurrent_runs = 2 at once");
    assert!(d.log().contains("stopping: no new runs"), "{}", d.log());

    // Last, what needs the whole pipeline (CSV format, SCIM client): the runs succeeded.
    let m = by_connector(&h);
    for c in ["alpha", "beta", "gamma"] {
        let runs = finished(&m[c]);
        for r in &runs {
            let outcome = r["report"]["outcome"].as_str().unwrap_or("?");
            assert!(outcome == "ok" || outcome == "no-new-file", "{c}: run {} ended {outcome}: {}", r["run_id"], r["report"]);
            // The daemon's quiet days advise nothing: there is nobody to type --force.
            assert!(!r["report"]["message"].as_str().unwrap_or("").contains("--force"), "{}", r["report"]);
        }
        assert!(runs.iter().any(|r| r["report"]["outcome"] == "no-new-file"), "{c}: a quiet day was seen: {runs:#?}");
        assert_eq!(runs[0]["report"]["outcome"], "ok", "the first run syncs the export");
        let counts = &runs[0]["report"]["counts"];
        // The connectors share people on one server: the first creates them; the others find
        // them another connector's (conflicts), or adopt those not yet in its state
        // (issue 14: adoptions are no longer counted as updates).
        assert_eq!(counts["valid"], 40, "{counts}");
        let handled: u64 = ["created", "updated", "adopted", "conflicts"].iter().map(|k| counts[k].as_u64().unwrap()).sum();
        assert!(handled >= 39, "{counts}");
    }
    assert!(!scim.users().is_empty(), "users reached the SCIM server");
    assert!(metrics_text.contains("rostersync_runs_total{connector=\"alpha\",outcome=\"ok\"} 1"), "{metrics_text}");
    assert!(metrics_text.contains("rostersync_last_success_timestamp_seconds{connector=\"beta\"}"), "{metrics_text}");
    assert!(metrics_text.contains("rostersync_users_pushed_total{connector=\"alpha\",operation=\"created\"}"), "{metrics_text}");
}

#[test]
fn two_hundred_connectors_on_one_daemon_stay_bounded_with_flat_memory() {
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let exports = exports_dir(dir.path(), "shared");
    let mut cfg = header(&scim, dir.path(), port, 4);
    for i in 0..200 {
        cfg += &connector(&format!("cust{i:03}"), "*/5 * * * * *", &exports);
    }
    let d = Daemon::start(&cfg, dir, port, &scim);

    // Warm-up: every connector has run once (first syncs adopt the shared users).
    d.wait_history("one finished run of each of the 200 connectors", Duration::from_secs(240), |h| {
        let m = by_connector(h);
        m.len() == 200 && m.values().all(|r| !finished(r).is_empty())
    });
    // What "flat memory" means is that runs leave nothing behind: the memory the daemon
    // keeps *between* runs does not grow with their number. The process's RSS at one instant
    // also holds whatever the (up to 4) runs in flight use at that instant, so two single
    // readings compare a quiet moment with a busy one. Sample RSS all along instead and
    // compare the floor (the minimum) of the first third of the time with that of the last
    // third: a leak lifts the floor, runs in flight do not. The runs come at the schedule's
    // steady rate, so thirds of the time are thirds of the runs. (Sampled on a thread of its
    // own, every 50 ms: the history polls get slower as the history grows, and sampling at
    // each poll left a third of the runs without a sample on a loaded machine.)
    let runs_warm = finished(&d.history()).len();
    let pid = d.child.id();
    // Huge pages off (`rostersync::alloc`): with them the floor crept up as runs spread
    // over more 2 MiB pages (15 MiB over 2,400 runs), with 4 KiB pages 1.2 MiB.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    if let Some(thp) = status.lines().find_map(|l| l.strip_prefix("THP_enabled:")) {
        assert_eq!(thp.trim(), "0", "the daemon runs with transparent huge pages");
    }
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut samples: Vec<(Instant, u64)> = Vec::new();
            while sampling.load(std::sync::atomic::Ordering::Acquire) {
                if let Some(kib) = rss_kib_of(pid) {
                    samples.push((Instant::now(), kib));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        })
    };
    let began = Instant::now();
    d.wait_history("600 more runs", Duration::from_secs(120), |h| finished(h).len() - runs_warm >= 600);
    let ended = Instant::now();
    sampling.store(false, std::sync::atomic::Ordering::Release);
    let samples = sampler.join().unwrap();
    let third = (ended - began) / 3;
    let floor = |from: Instant, to: Instant| samples.iter().filter(|(t, _)| (from..to).contains(t)).map(|(_, r)| *r).min();
    let (early, late) = (floor(began, began + third), floor(ended - third, ended + Duration::from_secs(1)));
    let (Some(rss_early), Some(rss_late)) = (early, late) else {
        panic!("no RSS sample in the first or last third of {:?}: {} samples", ended - began, samples.len());
    };

    let (code, d) = d.stop(Duration::from_secs(40));
    assert_eq!(code, Some(0), "log:\n{}", d.log());
    let h = d.history();
    let all: Vec<&serde_json::Value> = finished(&h);
    let max = max_overlap(&all);
    assert!(max <= 4, "{max} runs at once with max_concurrent_runs = 4");
    for (c, runs) in by_connector(&h) {
        assert_eq!(max_overlap(&finished(&runs)), 1, "runs of {c} overlapped");
    }
    eprintln!(
        "200 connectors: {} runs, at most {max} at once; RSS floor {rss_early} KiB over the first third of the time after warm-up, {rss_late} KiB over the last ({} samples)",
        all.len(),
        samples.len()
    );
    // Flat: the floor hundreds of runs later within 10 % (+2 MiB for allocator noise).
    assert!(
        rss_late <= rss_early + rss_early / 10 + 2048,
        "the RSS floor grew from {rss_early} KiB to {rss_late} KiB over {} runs ({} samples)",
        all.len() - runs_warm,
        samples.len()
    );
}

/// A host-key mismatch is a connection failure that no retry can mend: the daemon reports it
/// at once (the webhook, attempt 1) and does not retry it within the period, against a real
/// sshd whose key is not the pinned one.
#[test]
fn a_host_key_mismatch_is_reported_once_and_not_retried() {
    let sshd = support::sshd::Sshd::start();
    let key = sshd.client_key("ed25519", "");
    let (user, _) = support::sshd::test_user();
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    // A pin of some other key: the server's own key is a mismatch.
    let other = dir.path().join("other_key");
    support::sshd::keygen("ed25519", &other, "");
    let wrong_pin = support::sshd::fingerprint_of(&other.with_extension("pub"));
    let port = support::free_port();
    let (hook, posted) = support::webhook_listener();
    let mapping = support::repo_root().join("mappings/demo.toml");
    let cfg = format!(
        "{}\n[connectors.pinned]\nschedule = \"daily 02:00\"\nmapping = \"{}\"\n[connectors.pinned.sftp]\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{user}\"\nauth = \"key\"\nprivate_key = \"{}\"\nhost_key = \"{wrong_pin}\"\ntimeout = \"5s\"\n[connectors.pinned.file]\npath = \"/exports/employees_*.csv\"\n",
        header_with(&scim, dir.path(), port, 2, &format!("notify_webhook = \"{hook}\"\n")),
        mapping.display(),
        sshd.port,
        key.display()
    );
    let d = Daemon::start(&cfg, dir, port, &scim);
    // Never synced: it runs at start (catch-up), fails on the host key…
    let h = d.wait_history("the catch-up run", Duration::from_secs(60), |h| !finished(h).is_empty());
    assert_eq!(h[0]["report"]["outcome"], "failed", "{h:#?}");
    let started = Instant::now();
    while posted.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // …and is notified at once, as its first and only attempt, with no retry scheduled.
    let notes: Vec<serde_json::Value> = posted.lock().unwrap().iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    assert_eq!(notes.len(), 1, "{notes:#?}\n{}", d.log());
    assert_eq!((notes[0]["event"].as_str(), notes[0]["attempts"].as_u64(), notes[0]["exit"].as_u64()), (Some("failed"), Some(1), Some(3)));
    assert!(notes[0]["text"].as_str().unwrap().contains("host key"), "{}", notes[0]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(finished(&d.history()).len(), 1, "no second attempt");
    let log = d.log();
    assert!(!log.contains("retrying in"), "{log}");
    assert!(!d.http_get("/metrics").contains("rostersync_retries_total{connector=\"pinned\"}"));
}

/// The value of the metric line that starts with `series` (name and labels), if any.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_of_a_real_daemon_name_every_connector_from_the_start_and_the_process() {
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let good = exports_dir(dir.path(), "good");
    // "never" finds no export: it has never succeeded, so its last success is 0.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let base = header(&scim, dir.path(), port, 2);
    let cfg = format!("{base}{}{}", connector("good", "daily 02:00", &good), connector("never", "daily 02:00", &empty));
    let d = Daemon::start(&cfg, dir, port, &scim);
    d.wait_history("both catch-up runs", Duration::from_secs(60), |h| finished(h).len() >= 2);
    // The run is in history a moment before its metrics are updated.
    let started = Instant::now();
    let mut text = d.http_get("/metrics");
    while metric(&text, "rostersync_last_run_exit_code{connector=\"never\"}") != Some(4.0) && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        text = d.http_get("/metrics");
    }
    let now = chrono::Utc::now().timestamp() as f64;

    assert!(
        text.contains(&format!("rostersync_build_info{{version=\"{}\",commit=\"", env!("CARGO_PKG_VERSION")))
            && text.contains("\",build_date=\""),
        "{text}"
    );
    assert_eq!(metric(&text, "rostersync_last_success_timestamp_seconds{connector=\"never\"}"), Some(0.0), "{text}");
    let last_ok = metric(&text, "rostersync_last_success_timestamp_seconds{connector=\"good\"}").unwrap();
    assert!((now - last_ok).abs() < 120.0, "{last_ok} vs {now}");
    let last_run = metric(&text, "rostersync_last_run_timestamp_seconds{connector=\"never\"}").unwrap();
    assert!((now - last_run).abs() < 120.0, "{text}");
    assert_eq!(metric(&text, "rostersync_last_run_exit_code{connector=\"good\"}"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "rostersync_last_run_exit_code{connector=\"never\"}"), Some(4.0), "no file matches: exit 4\n{text}");
    assert_eq!(metric(&text, "rostersync_last_run_invalid_rows{connector=\"good\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "rostersync_export_stale{connector=\"good\"}"), Some(0.0), "{text}");
    // 40 valid rows, one of them a leaver who never had an account: no account (skipped).
    assert_eq!(metric(&text, "rostersync_operations_total{connector=\"good\",kind=\"create\"}"), Some(39.0), "{text}");
    assert_eq!(metric(&text, "rostersync_operations_total{connector=\"never\",kind=\"deactivate\"}"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "rostersync_operations_failed_total{connector=\"good\"}"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "rostersync_runs_total{connector=\"never\",outcome=\"ok\"}"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "rostersync_runs_total{connector=\"never\",outcome=\"failed\"}"), Some(1.0), "{text}");
    // The daemon process itself, as /proc sees it.
    let rss = metric(&text, "process_resident_memory_bytes").unwrap();
    assert!((rss / 1024.0 - d.rss_kib() as f64).abs() < 64.0 * 1024.0, "rss {rss} vs {} KiB", d.rss_kib());
    assert!(metric(&text, "process_open_fds").unwrap() >= 3.0, "{text}");
    assert!(metric(&text, "process_max_fds").unwrap() >= metric(&text, "process_open_fds").unwrap(), "{text}");
    assert!(metric(&text, "process_cpu_seconds_total").unwrap() > 0.0, "{text}");
    let start = metric(&text, "process_start_time_seconds").unwrap();
    assert!(start <= now + 1.0 && now - start < 300.0, "started {start}, now {now}");

    // A reload that refuses one connector (its mapping is missing) is "partial", not "ok".
    let broken = connector("broken", "daily 02:00", &good).replace("mappings/demo.toml", "mappings/missing.toml");
    std::fs::write(d.config_path(), format!("{cfg}{broken}")).unwrap();
    d.signal("-HUP");
    let started = Instant::now();
    while metric(&d.http_get("/metrics"), "rostersync_config_reloads_total{result=\"partial\"}") != Some(1.0) {
        assert!(started.elapsed() < Duration::from_secs(20), "no partial reload counted:\n{}\n{}", d.http_get("/metrics"), d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = d.http_get("/metrics");
    assert_eq!(metric(&text, "rostersync_config_reloads_total{result=\"ok\"}"), Some(0.0), "{text}");
    assert!(!text.contains("connector=\"broken\""), "a refused connector has no series: {text}");
}
