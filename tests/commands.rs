//! The everyday commands an integration engineer runs: test, fetch, status, sync --all.

use crate::support;

use support::project::{Project, row, rows};
use support::scim::ScimServer;

#[test]
fn test_command_previews_and_reports_errors_without_pushing() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "max_invalid = \"50%\"");
    let mut rs = rows(4);
    rs[1] = row(2, "broken", true, "Engineering");
    p.export("employees_2026-01-01.csv", &rs);
    let out = p.run(&["test", "acme"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("rows 4 — 3 valid, 1 invalid"), "{stdout}");
    assert!(stdout.contains("ann1@example.com"), "preview shows users: {stdout}");
    assert!(stdout.contains("Email: 1 row invalid, first at line 3"), "{stdout}");
    assert!(stdout.contains("nothing was pushed"), "{stdout}");
    assert!(scim.users().is_empty(), "test pushes nothing");

    let out = p.run(&["--json", "test", "acme"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], 3);
    assert_eq!(v["errors"][0]["line"], 3);
    assert_eq!(v["errors"][0]["column"], "Email");
    assert_eq!(v["preview"][0]["external_id"], "E0000001");
}

#[test]
fn fetch_downloads_the_file_the_connector_would_pick() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    p.export("employees_2026-01-01.csv", &rows(2));
    let newest = p.export("employees_2026-01-02.csv", &rows(3));
    let to = p.path().join("downloads");
    let out = p.run(&["fetch", "acme", "--to", to.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = std::fs::read(to.join("employees_2026-01-02.csv")).unwrap();
    assert_eq!(got, std::fs::read(&newest).unwrap());
    assert!(scim.users().is_empty());
    // A local folder's file is read in place: fetched into its own folder, it is left whole
    // (a copy onto itself would empty the customer's export).
    let before = std::fs::read(&newest).unwrap();
    let out = p.run(&["fetch", "acme", "--to", p.path().join("exports").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&newest).unwrap(), before);
}

#[test]
fn sync_all_runs_every_valid_connector_and_status_shows_them() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    p.export("employees_2026-01-01.csv", &rows(2));
    // A second connector on the same exports, and a broken third one.
    let cfg_path = p.path().join("connectors.toml");
    let mut cfg = std::fs::read_to_string(&cfg_path).unwrap();
    cfg.push_str("\n[connectors.globex]\nmapping = \"mappings/demo.toml\"\n[connectors.globex.local]\ndir = \"exports\"\n[connectors.globex.file]\npath = \"employees_*.csv\"\n");
    cfg.push_str("\n[connectors.broken]\nmapping = \"mappings/none.toml\"\n[connectors.broken.local]\ndir = \"exports\"\n[connectors.broken.file]\npath = \"x.csv\"\n");
    std::fs::write(&cfg_path, cfg).unwrap();

    let out = p.run(&["--json", "sync", "--all"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // One document: the runs, the connectors skipped and why, the exit code.
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document on stdout");
    let reports = doc["runs"].as_array().unwrap();
    assert_eq!(reports.len(), 2, "{stdout}");
    assert_eq!(doc["exit"], 2, "{stdout}");
    assert!(doc["skipped"][0]["connector"] == "broken", "{stdout}");
    assert_eq!(reports[0]["connector"], "acme");
    assert_eq!(reports[0]["counts"]["created"], 2);
    assert_eq!(reports[1]["connector"], "globex");
    // Same people, adopted by the second connector rather than created twice.
    assert_eq!(reports[1]["counts"]["created"], 0, "{stdout}");
    assert_eq!(scim.users().len(), 2);
    assert_eq!(out.status.code(), Some(2), "a broken connector makes --all exit 2 after the others ran");
    assert!(String::from_utf8_lossy(&out.stderr).contains("none.toml"));

    // Naming the broken connector refuses it with its problems.
    let out = p.run(&["sync", "broken"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read mapping file"));

    let out = p.run(&["status"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("acme") && s.contains("globex") && s.contains("ok"), "{s}");
    assert!(s.contains("broken") && s.contains("refused"), "{s}");
}

#[test]
fn an_unknown_connector_lists_the_known_ones() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    let out = p.run(&["sync", "acmee"]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("no connector named \"acmee\"") && e.contains("known: acme"), "{e}");
}

#[test]
fn managers_are_linked_in_one_run_even_through_a_cycle_in_the_data() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    // 1 → 2 → 3 → 1 is a cycle (bad data, common in real exports mid-reorg); 4 → 1.
    let rs: Vec<String> = [(1, 2), (2, 3), (3, 1), (4, 1)]
        .iter()
        .map(|(id, m)| {
            row(*id, &format!("ann{id}@example.com"), true, "Engineering").replacen(",Engineer,,", &format!(",Engineer,E{m:07},"), 1)
        })
        .collect();
    p.export("employees_2026-01-01.csv", &rs);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], 4);
    // The one note a platform without the custom schema gets (it drops two demo
    // attributes) is the only one: no manager is left unlinked.
    let notes: Vec<&str> =
        r.get("notes").and_then(|n| n.as_array()).map(|n| n.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    assert!(
        notes.iter().all(|n| n.starts_with("the platform does not offer the custom schema")),
        "every manager linked, no note left: {r}"
    );
    let users = scim.users();
    let id_of = |ext: &str| users.iter().find(|u| u["externalId"] == ext).unwrap()["id"].clone();
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    for (id, m) in [(1, 2), (2, 3), (3, 1), (4, 1)] {
        let u = users.iter().find(|u| u["externalId"] == format!("E{id:07}")).unwrap();
        assert_eq!(u[ent]["manager"]["value"], id_of(&format!("E{m:07}")), "manager of {id}");
    }
    // The state matches: a forced re-run sends nothing.
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["unchanged"], 4, "{r}");
}

#[test]
fn a_manager_whose_row_is_invalid_is_linked_once_fixed_and_never_rewritten_before() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "max_invalid = \"50%\"");
    let reports_to_9 =
        |id: u32| row(id, &format!("ann{id}@example.com"), true, "Engineering").replacen(",Engineer,,", ",Engineer,E0000009,", 1);
    // Person 9 (the manager of 1 and 2) has an invalid email: 1 and 2 are created without
    // a manager, and 9 is reported.
    let mut rs = vec![reports_to_9(1), reports_to_9(2), row(3, "ann3@example.com", true, "Sales")];
    rs.push(row(9, "boss..9@example.com", true, "Engineering"));
    p.export("employees_2026-01-01.csv", &rs);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((&r["counts"]["created"], &r["counts"]["invalid"]), (&serde_json::json!(3), &serde_json::json!(1)), "{r}");

    // The same file again: 1 and 2 still cannot be linked, so they are unchanged, not
    // "updated" with nothing sent; dry run and real run agree.
    for extra in [&["--force", "--dry-run"][..], &["--force"]] {
        let (code, r) = p.sync_json(extra);
        assert_eq!(code, 0, "{r}");
        assert_eq!((&r["counts"]["updated"], &r["counts"]["unchanged"]), (&serde_json::json!(0), &serde_json::json!(3)), "{extra:?}: {r}");
    }

    // The manager's row is fixed: 9 is created, and 1 and 2 now point at them.
    rs[3] = row(9, "boss9@example.com", true, "Engineering");
    p.export("employees_2026-01-02.csv", &rs);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((&r["counts"]["created"], &r["counts"]["updated"]), (&serde_json::json!(1), &serde_json::json!(2)), "{r}");
    let users = scim.users();
    let boss = users.iter().find(|u| u["externalId"] == "E0000009").unwrap()["id"].clone();
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    for id in ["E0000001", "E0000002"] {
        assert_eq!(users.iter().find(|u| u["externalId"] == id).unwrap()[ent]["manager"]["value"], boss, "{id}");
    }
}

#[test]
fn after_move_then_an_empty_folder_is_no_new_file_and_stale_after_fails() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    let cfg_path = p.path().join("connectors.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, cfg.replace("pick = \"last-name\"\n", "pick = \"last-name\"\nafter = \"move:processed\"\n")).unwrap();
    p.export("employees_2026-01-01.csv", &rows(2));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert!(p.path().join("exports/processed/employees_2026-01-01.csv").is_file(), "moved after the sync");
    assert!(!p.path().join("exports/employees_2026-01-01.csv").exists());

    // The folder is empty until the next export: nothing to do, not an error.
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["outcome"], "no-new-file");

    // With stale_after, an export that stopped coming fails and says when the last came.
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, cfg.replace("after = \"move:processed\"\n", "after = \"move:processed\"\nstale_after = \"0s\"\n")).unwrap();
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 4, "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.starts_with("the export is stale") && msg.contains("employees_2026-01-01.csv"), "{msg}");
}

#[test]
fn no_matching_file_is_exit_4_with_the_folder_summarised() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    std::fs::write(p.path().join("exports/Employees-Nov.CSV"), "x").unwrap();
    std::fs::write(p.path().join("exports/readme.txt"), "x").unwrap();
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 4, "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("no file matches employees_*.csv") && msg.contains("2 file(s): Employees-Nov.CSV, readme.txt"), "{msg}");
}

/// A platform without the custom schema (plain scim2-server) drops the demo mapping's
/// custom attributes: the run says so once, naming them, and never the ones it does send.
#[test]
fn a_platform_without_the_custom_schema_is_said_once_naming_the_attributes_dropped() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    p.export("employees_2026-01-01.csv", &rows(5));
    let out = p.run(&["--json", "sync", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = "so these mapped attributes are not sent: hire_date, location;";
    assert_eq!(stderr.matches(said).count(), 1, "once per run, not once per user: {stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes: Vec<&str> = r["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).filter(|n| n.contains(said)).collect();
    assert_eq!(notes.len(), 1, "{r}");
    for sent in ["department", "title", "cost_center", "manager_id"] {
        assert!(!notes[0].contains(sent), "{sent} is core or enterprise, and sent: {}", notes[0]);
    }
    assert_eq!(r["counts"]["created"], 5, "{r}");
}
