//! A real daemon running two connectors on one platform, one of them fed a file that would
//! make a run hold far more than its `[sync] max_memory`: that connector's runs fail as data
//! errors (the exit-4 class, `failure: "format"`), naming the key to raise, while the other
//! connector keeps syncing, the daemon stays up and healthy, and its peak RSS stays far below
//! what holding the file would take.

use crate::support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use support::daemon::{Daemon, connector, header};
use support::project::HEADER;
use support::scim::ScimServer;

/// `rostersync history --json` of the daemon's config, oldest first.
fn history(d: &Daemon) -> Vec<serde_json::Value> {
    let out = Command::new(support::rostersync_bin())
        .args(["--config", d.config_path().to_str().unwrap(), "--json", "history", "--limit", "1000"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("history --json is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let mut runs = v.as_array().cloned().unwrap_or_default();
    runs.reverse();
    runs
}

fn finished<'a>(runs: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    runs.iter().filter(|r| r["connector"] == name && !r["ended_at"].is_null()).collect()
}

/// The peak resident set of a live process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon is alive");
    let kib: u64 = s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap();
    kib / 1024
}

/// 300,000 distinct people (≈ 100 MiB held to plan) in a gzip of a few MiB.
fn bomb(path: &std::path::Path) {
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    writeln!(gz, "{HEADER}").unwrap();
    for i in 0..300_000u32 {
        writeln!(gz, "B{i:07},Ann{i},Lee{i},b{i}@example.com,fr,Yes,Engineering,Engineer,,Paris,2021-03-04,CC-1").unwrap();
    }
    gz.finish().unwrap();
}

#[test]
fn one_connectors_memory_bomb_never_stops_the_others() {
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let exports = dir.path().join("bomb-exports");
    std::fs::create_dir_all(&exports).unwrap();
    bomb(&exports.join("employees_2026-12-01.csv.gz"));
    let mapping = support::repo_root().join("mappings/demo.toml");
    let cfg = format!(
        "{}{}\n[connectors.bomb]\nschedule = \"*/2 * * * * *\"\nmapping = \"{}\"\n[connectors.bomb.local]\ndir = \"{}\"\n[connectors.bomb.file]\npath = \"employees_*\"\n[connectors.bomb.sync]\nmax_memory = \"16MiB\"\n",
        header(&scim, dir.path(), port),
        connector(dir.path(), "good", "Good Corp", "*/2 * * * * *", "UTC"),
        mapping.display(),
        exports.display()
    );
    let d = Daemon::start(&cfg, dir, port, &scim, &[]);

    // The bomb's connector fails twice while the other one syncs again and again.
    let deadline = Instant::now() + Duration::from_secs(120);
    let runs = loop {
        let runs = history(&d);
        if finished(&runs, "bomb").len() >= 2 && finished(&runs, "good").len() >= 3 {
            break runs;
        }
        assert!(Instant::now() < deadline, "timed out; history: {runs:#?}\nlog:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(300));
    };
    for r in finished(&runs, "bomb") {
        let report = &r["report"];
        assert_eq!((report["outcome"].as_str(), report["failure"].as_str()), (Some("failed"), Some("format")), "a data error: {r}");
        let msg = report["message"].as_str().unwrap_or_default();
        assert!(msg.contains("employees_2026-12-01.csv.gz") && msg.contains("[sync] max_memory"), "{msg}");
    }
    let good = finished(&runs, "good");
    assert_eq!(good[0]["report"]["outcome"], "ok", "{}", good[0]);
    assert!(good.iter().skip(1).all(|r| matches!(r["report"]["outcome"].as_str(), Some("ok" | "no-new-file"))), "{good:#?}");

    // The platform holds the good connector's people and none of the bomb's.
    let users = scim.users();
    assert!(users.len() >= 30, "the good connector synced: {} users", users.len());
    assert!(users.iter().all(|u| !u["externalId"].as_str().unwrap_or_default().starts_with('B')), "nobody of the bomb");

    let (code, body) = d.get("/healthz");
    assert_eq!((code, body.trim()), (200, "ok"), "the daemon is up and healthy");
    let rss = peak_rss_mib(d.pid());
    eprintln!("peak RSS of the daemon (two connectors, one bomb of 300,000 people under max_memory 16 MiB): {rss} MiB");
    assert!(rss < 200, "peak RSS of the daemon: {rss} MiB");
}
