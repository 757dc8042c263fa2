//! Plan, safeguards and state, end to end through the CLI against the real scim2-server:
//! a tripped safeguard pushes nothing; invalid rows protect their people; a crash mid-push
//! repeats nothing and loses nothing; two runs of one connector never overlap.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::project::{Project, row, rows};
use support::scim::ScimServer;

fn by_external_id(scim: &ScimServer) -> HashMap<String, serde_json::Value> {
    let mut m = HashMap::new();
    for u in scim.users() {
        let ext = u["externalId"].as_str().unwrap_or_default().to_string();
        assert!(m.insert(ext.clone(), u).is_none(), "duplicate user for externalId {ext}");
    }
    m
}

#[test]
fn first_sync_then_each_safeguard_stops_with_nothing_pushed() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "max_deactivations = \"10%\"\nmax_invalid = \"5%\"");
    p.export("employees_2026-01-01.csv", &rows(20));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], 20);
    let before = by_external_id(&scim);
    assert_eq!(before.len(), 20);

    // A truncated export: 15 of 20 people missing → 75% > 10%.
    p.export("employees_2026-01-02.csv", &rows(5));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 5, "{r}");
    assert_eq!(r["outcome"], "stopped");
    assert_eq!(r["stopped_by"], "mass_deactivation");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("15 of 20 known users") && msg.contains("--allow-mass-change"), "{msg}");
    assert_eq!(by_external_id(&scim), before, "nothing changed on the platform");

    // Too many invalid rows: 2 bad emails in 20 rows = 10% > 5%.
    let mut rs = rows(20);
    rs[3] = row(4, "not-an-email", true, "Engineering");
    rs[7] = row(8, "also@@bad", true, "Engineering");
    p.export("employees_2026-01-03.csv", &rs);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 5, "{r}");
    assert_eq!(r["stopped_by"], "too_many_invalid");
    assert_eq!(r["counts"]["invalid"], 2);
    assert!(r["errors"].as_array().unwrap().iter().any(|e| e["line"] == 5), "{r}");
    assert_eq!(by_external_id(&scim), before);

    // No data rows.
    p.export("employees_2026-01-04.csv", &[]);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 5, "{r}");
    assert_eq!(r["stopped_by"], "no_data_rows");
    assert_eq!(by_external_id(&scim), before);

    // A missing mapped column refuses the file (exit 4), naming the column.
    std::fs::write(p.path().join("exports/employees_2026-01-05.csv"), "Personnel Number,First Name,Surname\nE0000001,Ann,Lee\n").unwrap();
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 4, "{r}");
    assert!(r["message"].as_str().unwrap().contains("Last Name"), "{r}");
    assert_eq!(by_external_id(&scim), before);

    // --allow-mass-change applies the truncated file after all.
    std::fs::remove_file(p.path().join("exports/employees_2026-01-05.csv")).unwrap();
    std::fs::remove_file(p.path().join("exports/employees_2026-01-04.csv")).unwrap();
    std::fs::remove_file(p.path().join("exports/employees_2026-01-03.csv")).unwrap();
    let (code, r) = p.sync_json(&["--allow-mass-change", "--reason", "customer confirmed the leavers"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["deactivated"], 15);
    let after = by_external_id(&scim);
    assert_eq!(after.values().filter(|u| u["active"] == false).count(), 15);
}

#[test]
fn invalid_rows_never_deactivate_and_dry_run_pushes_nothing() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "max_invalid = \"50%\"");
    p.export("employees_2026-01-01.csv", &rows(10));
    assert_eq!(p.sync_json(&[]).0, 0);

    // Person 3's row turns invalid (no last name is not possible in this layout, so a bad
    // email) and person 4's email changes: 3 keeps its state, 4 is updated.
    let mut rs = rows(10);
    rs[2] = row(3, "broken-email", true, "Engineering");
    rs[3] = row(4, "ann4.new@example.com", true, "Engineering");
    p.export("employees_2026-01-02.csv", &rs);

    let before = by_external_id(&scim);
    let (code, r) = p.sync_json(&["--dry-run"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["dry_run"], true);
    assert_eq!(r["counts"]["updated"], 1);
    assert_eq!(r["counts"]["deactivated"], 0);
    assert_eq!(by_external_id(&scim), before, "a dry run pushes nothing");

    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["updated"], 1);
    assert_eq!(r["counts"]["deactivated"], 0);
    let after = by_external_id(&scim);
    assert_eq!(after["E0000003"], before["E0000003"], "the invalid row's person is untouched");
    assert_eq!(after["E0000004"]["userName"], "ann4.new@example.com");

    // The same file again: no new file, nothing sent.
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(r["outcome"], "no-new-file");
    assert_eq!(by_external_id(&scim), after);
}

#[test]
fn a_run_killed_mid_push_is_completed_by_the_next_without_duplicates() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    let n = 1500;
    p.export("employees_2026-01-01.csv", &rows(n));

    let mut child = p.command(&["sync", "acme"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Kill it once part of the push has landed on the server.
    let start = Instant::now();
    loop {
        let total = scim.get("/Users?count=1")["totalResults"].as_u64().unwrap_or(0);
        if total >= 100 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the push never started");
        assert!(child.try_wait().unwrap().is_none(), "the sync finished before it could be killed; raise n");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = scim.get("/Users?count=1")["totalResults"].as_u64().unwrap();
    assert!(partial < n as u64, "killed after {partial} users");

    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    let users = by_external_id(&scim);
    assert_eq!(users.len(), n as usize, "every person exactly once");
    assert_eq!(users["E0000777"]["userName"], "ann777@example.com");
    assert_eq!(
        r["counts"]["created"].as_u64().unwrap()
            + r["counts"]["adopted"].as_u64().unwrap()
            + r["counts"]["updated"].as_u64().unwrap()
            + r["counts"]["unchanged"].as_u64().unwrap(),
        n as u64,
        "the killed run's unrecorded creates are adopted (issue 14: no longer counted as updates): {r}"
    );

    // And now the state matches the platform: a forced re-run sends nothing.
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["unchanged"], n);
    assert_eq!(r["counts"]["created"], 0);
    assert_eq!(r["counts"]["updated"], 0);
}

#[test]
fn a_second_run_of_a_connector_is_refused_while_one_holds_the_lease() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    p.export("employees_2026-01-01.csv", &rows(1500));
    let mut child = p.command(&["sync", "acme"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while scim.get("/Users?count=1")["totalResults"].as_u64().unwrap_or(0) == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "the first run never started pushing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = p.run(&["sync", "acme"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already running: held by cli@"), "{stderr}");
    assert!(child.wait().unwrap().success());
}

#[test]
fn history_lists_runs_and_file_syncs_a_local_file() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    let elsewhere = p.path().join("sent-by-email.csv");
    std::fs::write(&elsewhere, format!("{}\n{}\n", support::project::HEADER, rows(3).join("\n"))).unwrap();
    let (code, r) = p.sync_json(&["--file", elsewhere.to_str().unwrap()]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], 3);
    assert!(r["file"]["path"].as_str().unwrap().ends_with("sent-by-email.csv"));

    let out = p.run(&["history", "acme"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("acme") && s.contains("ok") && s.contains("sent-by-email.csv"), "{s}");
    let out = p.run(&["--json", "history"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["report"]["counts"]["created"], 3);
}
