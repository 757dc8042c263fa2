//! The logs of the real binary, as a log collector and a person read them: with
//! `--log-format json` every line is one flat JSON object, no key twice, and every line of a
//! run names its connector and run id (the SFTP retry warnings too, logged on a blocking
//! thread); the daemon says what it is and when each connector runs next; human logs
//! written to a file carry no colour escapes.

use crate::support;

use std::collections::BTreeMap;
use std::fmt;
use std::process::Command;
use std::time::Duration;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use support::daemon::{Daemon, connector, header};
use support::project::{HEADER, rows};
use support::scim::ScimServer;
use support::sshd::Sshd;

/// The keys of one JSON object in order, duplicates kept (serde_json's Value would keep
/// only the last of two equal keys, hiding exactly what is tested).
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    m.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// Every line of `log` as a JSON object; panics on a line that is not one, or repeats a key.
fn json_lines(log: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let Keys(keys) = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON object ({e}): {l}"));
            let mut seen = std::collections::BTreeSet::new();
            for k in &keys {
                assert!(seen.insert(k), "key {k:?} twice in: {l}");
            }
            assert!(!keys.iter().any(|k| k == "fields" || k == "spans" || k == "span"), "nested, not flat: {l}");
            serde_json::from_str(l).unwrap()
        })
        .collect()
}

fn s<'a>(line: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> &'a str {
    line.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

#[test]
fn daemon_json_logs_are_flat_and_every_run_line_names_its_connector_and_run() {
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut cfg = header(&scim, dir.path(), port);
    // The same 40 people in both, on one platform: each may take the other's accounts (a
    // migration both ways), so both runs bind all 40, whichever syncs first.
    cfg.push_str(&connector(dir.path(), "acme", "Acme", "daily 02:00", "Europe/Paris"));
    cfg.push_str("adopt_from = [\"globex\"]\n");
    cfg.push_str(&connector(dir.path(), "globex", "Globex", "0 30 9 * * Mon", "America/New_York"));
    cfg.push_str("adopt_from = [\"acme\"]\n");
    let mut d = Daemon::start(&cfg, dir, port, &scim, &["--log-format", "json"]);
    d.wait_log("both runs to end", Duration::from_secs(90), |l| l.matches("\"run ended").count() >= 2);
    assert_eq!(d.stop(Duration::from_secs(30)), Some(0));
    let lines = json_lines(&d.log());

    // What it is, where its configuration and state are.
    let start = lines.iter().find(|l| s(l, "message").contains("daemon starting")).expect("a start line");
    assert_eq!(s(start, "version"), env!("CARGO_PKG_VERSION"));
    assert!(!s(start, "commit").is_empty(), "{start:?}");
    assert_eq!(s(start, "config"), d.config_path().display().to_string());
    assert_eq!(s(start, "state"), format!("sqlite://{}", d.dir.path().join("state.db").display()));

    // Each connector's next run, in its own timezone.
    for (c, tz, offset) in [("acme", "Europe/Paris", "+01:00"), ("globex", "America/New_York", "-05:00")] {
        let next = lines
            .iter()
            .find(|l| s(l, "connector") == c && l.contains_key("next_run"))
            .unwrap_or_else(|| panic!("no next-run line for {c}: {lines:#?}"));
        assert_eq!(s(next, "timezone"), tz);
        assert!(s(next, "next_run").ends_with(offset), "{next:?}");
    }

    // Every line of a run (sync, source, format, platform, the scheduler's retries and
    // ends) carries connector and run_id; each run's lines agree on its connector.
    let mut runs: BTreeMap<String, String> = BTreeMap::new();
    for l in &lines {
        let file = s(l, "code.file.path");
        let in_run = ["src/sync/", "src/source/", "src/format/", "src/platform/", "src/mapping"].iter().any(|p| file.starts_with(p));
        if in_run || l.contains_key("run_id") {
            let (c, r) = (s(l, "connector"), s(l, "run_id"));
            assert!(!c.is_empty() && !r.is_empty(), "a run's line without its connector or run_id: {l:?}");
            let known = runs.entry(r.to_string()).or_insert_with(|| c.to_string());
            assert_eq!(known, c, "run {r} logged under two connectors");
        }
    }
    // The end of each run: its facts as fields, not only prose.
    let ends: Vec<_> = lines.iter().filter(|l| s(l, "message").starts_with("run ended")).collect();
    assert_eq!(ends.len(), 2, "{ends:#?}");
    for e in ends {
        assert!(["acme", "globex"].contains(&s(e, "connector")), "{e:?}");
        assert!(runs.contains_key(s(e, "run_id")), "the end names the run its lines named: {e:?}");
        assert_eq!(s(e, "outcome"), "ok", "{e:?}");
        assert_eq!(e["exit"], 0, "{e:?}");
        assert_eq!(e["rows"], 41, "{e:?}");
        assert_eq!(e["invalid"], 1, "{e:?}");
        // One platform for both: the second run adopts the accounts the first created. Of
        // the 40 valid rows, one is a leaver who never had an account: none is made for
        // them (docs/lifecycle.md, old leavers).
        assert_eq!(e["created"].as_u64().unwrap() + e["adopted"].as_u64().unwrap(), 39, "{e:?}");
        assert!(e["duration_ms"].as_u64().is_some_and(|ms| ms > 0), "{e:?}");
    }
}

#[test]
fn sftp_retry_warnings_carry_the_runs_connector_and_run_id() {
    let sshd = Sshd::start();
    let key = sshd.client_key("ed25519", "");
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(sshd.data().join("exports")).unwrap();
    // 200 people padded to ~4 MB, so that a connection cut after 1 MiB cuts the download.
    let pad = "x".repeat(20_000);
    let body = format!("{HEADER},Notes\n{}\n", rows(200).iter().map(|r| format!("{r},{pad}")).collect::<Vec<_>>().join("\n"));
    std::fs::write(sshd.data().join("exports/employees_2026-11-21.csv"), body).unwrap();
    let proxy_port = support::cutting_proxy(sshd.port, 1 << 20, 1);
    let cfg = format!(
        "[platform]\nkind = \"scim\"\nbase_url = \"{}\"\ntoken_env = \"PLATFORM_SCIM_TOKEN\"\n\n[state]\nurl = \"sqlite://{}\"\n\n\
[connectors.acme]\nmapping = \"{}\"\n[connectors.acme.sftp]\nhost = \"127.0.0.1\"\nport = {proxy_port}\nusername = \"{}\"\nauth = \"key\"\n\
private_key = \"{}\"\nhost_key = \"{}\"\ntimeout = \"10s\"\n[connectors.acme.file]\npath = \"{}/exports/employees_*.csv\"\npick = \"last-name\"\nmin_age = \"0s\"\n",
        scim.base_url,
        dir.path().join("state.db").display(),
        support::repo_root().join("mappings/demo.toml").display(),
        sshd.user,
        key.display(),
        sshd.fingerprint("ed25519"),
        sshd.data().display(),
    );
    std::fs::write(dir.path().join("connectors.toml"), cfg).unwrap();
    let out = Command::new(support::rostersync_bin())
        .arg("--config")
        .arg(dir.path().join("connectors.toml"))
        .args(["--json", "--log-format", "json", "sync", "acme"])
        .env("PLATFORM_SCIM_TOKEN", &scim.token)
        .env("RUST_LOG", "rostersync=debug")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON report ({e}); log:\n{log}"));
    assert_eq!(out.status.code(), Some(0), "{report}\n{log}");
    let run_id = report["run_id"].as_str().unwrap();
    let lines = json_lines(&log);
    let retry = lines
        .iter()
        .find(|l| s(l, "message").contains("reconnecting"))
        .unwrap_or_else(|| panic!("the download was cut, so a retry was logged: {log}"));
    assert_eq!(s(retry, "level"), "WARN");
    assert_eq!((s(retry, "connector"), s(retry, "run_id")), ("acme", run_id), "{retry:?}");
    assert_eq!(retry["attempt"], 1, "{retry:?}");
    // The parse that followed the download ran on its own thread: in the run too.
    for l in lines.iter().filter(|l| s(l, "code.file.path").starts_with("src/")) {
        if s(l, "code.file.path").starts_with("src/cli/") {
            continue;
        }
        assert_eq!((s(l, "connector"), s(l, "run_id")), ("acme", run_id), "{l:?}");
    }
}

#[test]
fn human_logs_in_a_file_have_no_colour_escapes() {
    let dir = tempfile::tempdir().unwrap();
    // A dry run with the platform down logs a warning (and info lines); stderr is a pipe.
    let cfg = format!(
        "[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:9\"\ntoken_env = \"PLATFORM_SCIM_TOKEN\"\n[state]\nurl = \"sqlite://{}\"\n{}",
        dir.path().join("state.db").display(),
        connector(dir.path(), "acme", "Acme", "daily 02:00", "UTC")
    );
    std::fs::write(dir.path().join("connectors.toml"), cfg).unwrap();
    let out = Command::new(support::rostersync_bin())
        .arg("--config")
        .arg(dir.path().join("connectors.toml"))
        .args(["sync", "acme", "--dry-run"])
        .env("PLATFORM_SCIM_TOKEN", "t")
        .env("RUST_LOG", "rostersync=debug")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WARN") && err.contains("dry run without the platform"), "the run logged a warning to check: {err}");
    assert!(!err.contains('\u{1b}'), "ANSI escapes in logs written to a pipe: {err:?}");
}

#[test]
fn human_daemon_logs_name_the_connector_once_per_line() {
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = format!("{}{}", header(&scim, dir.path(), port), connector(dir.path(), "acme", "Acme", "daily 02:00", "UTC"));
    let mut d = Daemon::start(&cfg, dir, port, &scim, &[]);
    d.wait_log("the run to end", Duration::from_secs(90), |l| l.contains("run ended"));
    assert_eq!(d.stop(Duration::from_secs(30)), Some(0));
    let log = d.log();
    let run_lines: Vec<&str> = log.lines().filter(|l| l.contains("run_id=")).collect();
    assert!(run_lines.len() >= 2, "{log}");
    for l in run_lines {
        assert_eq!(l.matches("connector=acme").count(), 1, "the connector once, on every line of the run: {l}");
        assert_eq!(l.matches("run_id=").count(), 1, "{l}");
    }
    assert!(!log.contains('\u{1b}'), "{log:?}");
}
