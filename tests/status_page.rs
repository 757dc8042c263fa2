//! The daemon's status page in a real browser: Debian's Chromium, headless, loads `/` and
//! a connector's page from a real daemon (real scim2-server, local exports) and dumps the
//! DOM it rendered. A connector whose name is HTML must come out as text, not as markup.

use crate::support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::daemon::{Daemon, connector, header};
use support::scim::ScimServer;

const HOSTILE: &str = "<img src=x onerror=alert(1)>\"'&";

fn chromium() -> PathBuf {
    support::require_binary(
        &[PathBuf::from("/usr/bin/chromium")],
        "chromium",
        "apt-get install --no-install-recommends chromium (scripts/install-test-deps.sh)",
    )
}

/// The DOM Chromium built from `url`, serialized (`--dump-dom`).
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && dom.contains("</html>"), "chromium failed on {url}: {}\n{dom}", String::from_utf8_lossy(&out.stderr));
    dom
}

#[test]
fn the_status_page_renders_every_connector_in_a_real_browser() {
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let connectors =
        [("acme", "Acme Corp", "Europe/Paris"), ("globex", "Globex & Sons", "Asia/Tokyo"), (HOSTILE, "<b>Evil</b> Inc", "UTC")];
    let mut cfg = header(&scim, dir.path(), port);
    for (name, customer, tz) in connectors {
        cfg.push_str(&connector(dir.path(), name, customer, "daily 02:00", tz));
    }
    let d = Daemon::start(&cfg, dir, port, &scim, &["--log-format", "json"]);
    // Never synced: each runs at once (catch-up); wait for the three runs to end.
    d.wait_log("three runs to end", Duration::from_secs(90), |log| log.matches("\"run ended").count() >= 3);

    let (status, html) = d.get("/");
    assert_eq!(status, 200, "{html}");
    let dom = dump_dom(&format!("http://127.0.0.1:{port}/"));
    assert!(dom.contains("<meta http-equiv=\"refresh\""), "{dom}");
    assert_eq!(dom.matches("<tr class=\"connector\"").count(), 3, "one row per connector: {dom}");
    for (name, customer, _) in [("acme", "Acme Corp", ""), ("globex", "Globex &amp; Sons", "")] {
        assert!(dom.contains(&format!(">{name}</a>")), "{name} is not on the page: {dom}");
        assert!(dom.contains(customer), "{customer}: {dom}");
    }
    // The hostile name and customer are text in the DOM: no element was made from them.
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;\"'&amp;</a>"), "the hostile name is not shown as text: {dom}");
    assert!(dom.contains("&lt;b&gt;Evil&lt;/b&gt; Inc"), "{dom}");
    assert!(!dom.contains("<img") && !dom.contains("<b>"), "markup from a connector name reached the DOM: {dom}");
    // Next runs in each connector's own timezone; the runs that happened, with their counts.
    assert!(dom.contains("Europe/Paris") && (dom.contains(" CET") || dom.contains(" CEST")), "{dom}");
    assert!(dom.contains(" JST"), "Tokyo's next run is in JST: {dom}");
    assert!(dom.matches("41 rows").count() >= 3, "each connector's last run and its counts: {dom}");
    // The demo export has one row the mapping refuses; the run went on (max_invalid).
    assert!(dom.matches("invalid 1").count() >= 3, "{dom}");

    // The hostile connector's own page, through its escaped link: its run is listed.
    let href = "/connectors/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%22%27%26";
    assert!(dom.contains(&format!("href=\"{href}\"")), "{dom}");
    let page = dump_dom(&format!("http://127.0.0.1:{port}{href}"));
    assert!(page.contains("<h1 id=\"connector\">&lt;img src=x onerror=alert(1)&gt;\"'&amp;</h1>"), "{page}");
    assert_eq!(page.matches("<tr class=\"run\"").count(), 1, "{page}");
    assert!(!page.contains("<img"), "{page}");
    let (status, body) = d.get("/connectors/nobody");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("No connector named “nobody”"), "{body}");
}

#[test]
fn a_plan_stopped_by_a_safeguard_shows_as_awaiting_approval() {
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let section = connector(dir.path(), "shrinking", "Shrinking Ltd", "*/2 * * * * *", "UTC");
    let exports = section.lines().find_map(|l| l.strip_prefix("dir = \"")?.strip_suffix('"')).map(PathBuf::from).unwrap();
    let cfg = format!("{}{section}", header(&scim, dir.path(), port));
    let d = Daemon::start(&cfg, dir, port, &scim, &["--log-format", "json"]);
    d.wait_log("the first run", Duration::from_secs(90), |log| log.contains("\"run ended ok"));
    // The next export keeps 5 of the 40 people: deactivating 35 is over max_deactivations (10 %).
    let full = std::fs::read_to_string(exports.join("employees_2026-11-20.csv")).unwrap();
    let kept: Vec<&str> = full.lines().take(6).collect();
    std::fs::write(exports.join("employees_2026-11-21.csv"), kept.join("\n") + "\n").unwrap();
    d.wait_log("a stopped run", Duration::from_secs(90), |log| log.contains("\"run ended stopped"));
    // The next slots find the same file: still stopped, awaiting approval, in every signal.
    d.wait_log("two slots waiting for approval", Duration::from_secs(90), |log| log.matches("waiting for approval: run").count() >= 2);
    let (_, metrics) = d.get("/metrics");
    for line in [
        "rostersync_awaiting_approval{connector=\"shrinking\"} 1",
        "rostersync_last_run_outcome{connector=\"shrinking\",outcome=\"stopped\"} 1",
        "rostersync_last_run_exit_code{connector=\"shrinking\"} 5",
        // What was planned is not what was applied: nothing reached the platform.
        "rostersync_operations_total{connector=\"shrinking\",kind=\"deactivate\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from /metrics:\n{metrics}");
    }
    let planned = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rostersync_operations_planned_total{connector=\"shrinking\",kind=\"deactivate\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(planned.is_some_and(|n| n >= 30), "the stopped plan's deactivations are counted as planned:\n{metrics}");
    let last_success =
        metrics.lines().find(|l| l.starts_with("rostersync_last_success_timestamp_seconds{connector=\"shrinking\"}")).unwrap();
    let first_ok: i64 = last_success.rsplit(' ').next().unwrap().parse().unwrap();
    let (status, health) = d.get("/healthz");
    assert_eq!(status, 200, "{health}");
    assert!(health.starts_with("degraded: 1 connector(s) awaiting approval: shrinking"), "{health}");
    d.wait_log("a third slot waiting", Duration::from_secs(90), |log| log.matches("waiting for approval: run").count() >= 3);
    let (_, metrics) = d.get("/metrics");
    assert!(
        metrics.contains(&format!("rostersync_last_success_timestamp_seconds{{connector=\"shrinking\"}} {first_ok}")),
        "last success does not move while waiting:\n{metrics}"
    );

    let dom = dump_dom(&format!("http://127.0.0.1:{port}/"));
    assert!(dom.contains("plan stopped by mass_deactivation (max_deactivations): nothing was pushed; awaiting approval"), "{dom}");
    assert!(dom.contains(">stopped</td>"), "{dom}");
    let page = dump_dom(&format!("http://127.0.0.1:{port}/connectors/shrinking"));
    assert!(page.contains("id=\"approval\""), "{page}");
    assert!(page.contains("stopped <small>by mass_deactivation (max_deactivations)</small>"), "{page}");
}
