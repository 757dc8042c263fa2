//! `status` says when a connector's next run will list the platform before it pushes (the
//! reconcile marker, migrations/0002_reconcile.sql, or a run that never finished), and why —
//! on both stores (SQLite and a real PostgreSQL), after real runs against a real
//! scim2-server behind a fault proxy: a failed adoption, then a run SIGKILLed mid-push.

use crate::support;

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::fault_proxy::{Fault, FaultProxy};
use support::postgres::{PASSWORD, Postgres};
use support::project::{Project, rows};
use support::scim::ScimServer;

fn run(p: &Project, args: &[&str]) -> Output {
    p.command(args).env("ROSTERSYNC_PG_PASSWORD", PASSWORD).output().expect("run rostersync")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

/// `status --json`'s entry for `acme`, and the human `status` text.
fn status(p: &Project) -> (Value, String) {
    let out = run(p, &["--json", "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    let acme = v["connectors"].as_array().unwrap().iter().find(|c| c["connector"] == "acme").cloned().expect("acme in status");
    let out = run(p, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    (acme, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn total(scim: &ScimServer) -> u64 {
    scim.get("/Users?count=0")["totalResults"].as_u64().unwrap_or(0)
}

/// The whole story on one store: `state` is the `[state]` table (lease_ttl 1s, so that a
/// killed run's lease lapses quickly and `status` stops showing it as running).
fn marker_story(store: &str, state: &str) {
    let scim = ScimServer::start();
    // E2 is on the platform already: the first sync adopts it, and the proxy refuses that.
    let theirs = scim.post(
        "/Users",
        // Its emails[] has the person's email: an id alone would be a partial match (issue 25).
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": "E0000002", "userName": "old2@example.com",
                "emails": [{"value": "ann2@example.com"}]}),
    );
    let path = format!("/Users/{}", theirs["id"].as_str().unwrap());
    let (refuse, slow) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
    let (r, s) = (refuse.clone(), slow.clone());
    let proxy = FaultProxy::start(scim.port, move |_, method, p| {
        if r.load(Ordering::Acquire) && method != "GET" && p == path {
            Fault::Status(400)
        } else if s.load(Ordering::Acquire) && method == "POST" {
            // Applied by the server, answered late: the run is mid-push for seconds.
            Fault::Slow(Duration::from_secs(5))
        } else {
            Fault::Pass
        }
    });
    let p = Project::at(&proxy.base_url, &scim.token, "", "");
    p.set_state(state);
    p.export("employees_2026-01-01.csv", &rows(3));

    // 1. A failed adoption: the marker stays set, and status says so with its reason.
    let out = run(&p, &["--json", "sync", "acme"]);
    let report = json_of(&out);
    assert_eq!(out.status.code(), Some(6), "{store}: the adoption failed: {report}");
    let failed_run = report["run_id"].as_str().unwrap().to_string();
    let (acme, human) = status(&p);
    let lookup = &acme["next_run_lists_platform"];
    assert_eq!(lookup["run_id"], failed_run.as_str(), "{store}: {acme:#}");
    assert_eq!(lookup["reason"], "1 create(s) or adoption(s) failed", "{store}: {acme:#}");
    assert!(lookup["set_at"].is_string(), "{store}: {acme:#}");
    assert!(lookup["why"].as_str().unwrap().contains("adopts what it finds rather than creating twice"), "{store}: {acme:#}");
    let line = format!(
        "acme: the next run lists the platform before it pushes: run {failed_run} left writes the state may not have recorded (1 create(s) or adoption(s) failed, "
    );
    assert!(human.contains(&line), "{store}: expected {line:?} in:\n{human}");

    // 2. The platform takes it now: the run adopts, the marker goes, status says nothing.
    refuse.store(false, Ordering::Release);
    let out = run(&p, &["--json", "sync", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{store}: {}", json_of(&out));
    let (acme, human) = status(&p);
    assert!(acme["next_run_lists_platform"].is_null(), "{store}: {acme:#}");
    assert!(!human.contains("lists the platform"), "{store}: {human}");

    // 3. A run SIGKILLed mid-push (its creates applied, their answers held by the proxy).
    p.export("employees_2026-01-02.csv", &rows(8));
    slow.store(true, Ordering::Release);
    let mut child = p.command(&["sync", "acme"]).env("ROSTERSYNC_PG_PASSWORD", PASSWORD).spawn().unwrap();
    let start = Instant::now();
    while total(&scim) < 4 {
        assert!(start.elapsed() < Duration::from_secs(60), "{store}: the push never started");
        assert!(child.try_wait().unwrap().is_none(), "{store}: the sync ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Once its lease lapsed (1s) the dead run is no longer "running", and its marker shows.
    std::thread::sleep(Duration::from_millis(1500));
    let history = json_of(&run(&p, &["--json", "history", "acme"]));
    let killed = history[0]["run_id"].as_str().unwrap().to_string();
    assert_ne!(killed, failed_run);
    let (acme, human) = status(&p);
    assert!(acme["running_on"].is_null(), "{store}: the dead run's lease lapsed: {acme:#}");
    assert_eq!(acme["next_run_lists_platform"]["run_id"], killed.as_str(), "{store}: {acme:#}");
    assert_eq!(acme["next_run_lists_platform"]["reason"], "push started", "{store}: {acme:#}");
    let line = format!(
        "acme: the next run lists the platform before it pushes: run {killed} left writes the state may not have recorded (push started, "
    );
    assert!(human.contains(&line), "{store}: expected {line:?} in:\n{human}");

    // And the next run does what status said: it adopts the dead run's creates.
    slow.store(false, Ordering::Release);
    let out = run(&p, &["--json", "sync", "acme"]);
    let report = json_of(&out);
    assert_eq!(out.status.code(), Some(0), "{store}: {report}");
    assert!(report["counts"]["adopted"].as_u64().unwrap() >= 1, "{store}: the killed run's creates are adopted: {report}");
    assert!(status(&p).0["next_run_lists_platform"].is_null(), "{store}: cleared by the good run");
}

#[test]
fn status_shows_the_reconcile_marker_on_sqlite() {
    marker_story("sqlite", "[state]\nurl = \"sqlite://state/rostersync.db\"\nlease_ttl = \"1s\"\n");
}

#[test]
fn status_shows_the_reconcile_marker_on_postgres() {
    let pg = Postgres::start();
    let url = pg.create_db("marker");
    marker_story("postgres", &format!("[state]\nurl = \"{url}\"\npassword_env = \"ROSTERSYNC_PG_PASSWORD\"\nlease_ttl = \"1s\"\n"));
}
