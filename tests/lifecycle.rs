//! The employee lifecycle (issue 27, docs/lifecycle.md) end to end through the CLI against
//! the real scim2-server: who gets no account, who is left as they are, asserted on the
//! server's accounts and active flags and in the report and `explain`.

use crate::support;

use std::collections::HashMap;

use serde_json::{Value, json};
use support::project::{Project, row, rows};
use support::scim::ScimServer;

fn by_external_id(scim: &ScimServer) -> HashMap<String, Value> {
    scim.users().into_iter().map(|u| (u["externalId"].as_str().unwrap_or_default().to_string(), u)).collect()
}

fn explain(p: &Project, id: &str) -> Value {
    let out = p.run(&["--json", "explain", "acme", id]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn listed(r: &Value, list: &str) -> Vec<String> {
    r["lifecycle"][list]["people"]
        .as_array()
        .map(|a| a.iter().map(|p| p["external_id"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn old_leavers_get_no_account_unless_create_inactive() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    let mut file = rows(4);
    file[2] = row(3, "ann3@example.com", false, "Engineering");
    p.export("employees_2026-01-01.csv", &file);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((r["counts"]["created"].as_u64(), r["counts"]["skipped"].as_u64()), (Some(3), Some(1)), "{r}");
    assert_eq!(listed(&r, "skipped"), ["E0000003"]);
    assert_eq!(r["lifecycle"]["skipped"]["people"][0]["line"], 4, "named with its line: {r}");
    let users = by_external_id(&scim);
    assert_eq!(users.len(), 3);
    assert!(!users.contains_key("E0000003"), "no account for the old leaver");
    let e = explain(&p, "E0000003");
    assert!(e["why"].as_str().unwrap().contains("skipped"), "{e}");

    // A person with an account who turns inactive is deactivated as always.
    file[0] = row(1, "ann1@example.com", false, "Engineering");
    p.export("employees_2026-01-02.csv", &file);
    let (code, r) = p.sync_json(&["--allow-mass-change", "--reason", "test"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["deactivated"], 1, "{r}");
    assert_eq!(by_external_id(&scim)["E0000001"]["active"], false);

    // create_inactive = true: the old leaver gets an inactive account.
    p.set_last_sync_section("acme", "create_inactive = true\nmax_deactivations = \"100%\"");
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], 1, "{r}");
    assert_eq!(by_external_id(&scim)["E0000003"]["active"], false);
}

#[test]
fn protected_accounts_are_never_adopted_changed_or_deactivated() {
    let scim = ScimServer::start();
    // An administrator's account made by hand, with the email of a row of the file.
    let root = scim.post(
        "/Users",
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ann5@example.com",
                "name": {"givenName": "Root", "familyName": "Admin"}, "active": true}),
    );
    let p = Project::new(&scim, "max_deactivations = \"100%\"\nprotected = [\"ANN5@example.com\", \"PID-PLACEHOLDER\"]");
    p.export("employees_2026-01-01.csv", &rows(5));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((r["counts"]["created"].as_u64(), r["counts"]["adopted"].as_u64()), (Some(4), Some(0)), "{r}");
    assert_eq!(r["lifecycle"]["protected"], json!(["ANN5@example.com"]), "{r}");
    let notes = r["notes"].to_string();
    assert_eq!(notes.matches("ANN5@example.com").count(), 1, "said once: {notes}");
    let users = by_external_id(&scim);
    assert_eq!(users.len(), 5, "4 created, root's own account left");
    let hand_made = users.values().find(|u| u["id"] == root["id"]).unwrap();
    assert_eq!(hand_made["name"]["givenName"], "Root", "not adopted, not rewritten: {hand_made}");
    assert!(hand_made["externalId"].is_null(), "{hand_made}");

    // E2's account protected by platform id: the file changes them, then drops them.
    let e2 = users["E0000002"]["id"].as_str().unwrap().to_string();
    let cfg = std::fs::read_to_string(p.path().join("connectors.toml")).unwrap().replace("PID-PLACEHOLDER", &e2);
    std::fs::write(p.path().join("connectors.toml"), cfg).unwrap();
    let mut file = rows(5);
    file[1] = row(2, "ann2@example.com", true, "Sales");
    p.export("employees_2026-01-02.csv", &file);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["updated"], 0, "{r}");
    assert_eq!(by_external_id(&scim)["E0000002"], users["E0000002"], "not changed");
    file.remove(1);
    p.export("employees_2026-01-03.csv", &file);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    // Both named, in the report's sorted order (a platform id may sort before or after a login).
    let mut named: Vec<String> = r["lifecycle"]["protected"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    named.sort();
    let mut expected = vec!["ANN5@example.com".to_string(), e2.clone()];
    expected.sort();
    assert_eq!(named, expected, "{r}");
    assert_eq!(by_external_id(&scim)["E0000002"]["active"], true, "not deactivated");
    let e = explain(&p, "E0000002");
    assert!(e["why"].as_str().unwrap().contains("protected"), "{e}");
}

#[test]
fn hold_deactivations_sends_creates_and_updates_and_holds_the_leavers_for_approval() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "max_deactivations = \"10%\"\non_safeguard = \"hold-deactivations\"");
    p.export("employees_2026-01-01.csv", &rows(10));
    assert_eq!(p.sync_json(&[]).0, 0);

    // E1–E5 leave the file (50% > 10%), E11 is hired, E6 moves to Sales.
    let mut file: Vec<String> = rows(10).split_off(5);
    file[0] = row(6, "ann6@example.com", true, "Sales");
    file.push(row(11, "ann11@example.com", true, "Engineering"));
    p.export("employees_2026-01-02.csv", &file);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 5, "{r}");
    assert_eq!((r["outcome"].as_str(), r["stopped_by"].as_str()), (Some("stopped"), Some("mass_deactivation")), "{r}");
    assert_eq!((r["counts"]["created"].as_u64(), r["counts"]["updated"].as_u64()), (Some(1), Some(1)), "{r}");
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    assert!(r["notes"].to_string().contains("5 deactivation(s) and deletion(s) held for approval"), "{r}");
    let users = by_external_id(&scim);
    assert_eq!(users["E0000011"]["active"], true, "the new hire is not frozen");
    assert_eq!(users["E0000006"]["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"], "Sales");
    assert!((1..=5).all(|i| users[&format!("E{i:07}")]["active"] == true), "the leavers wait");
    let approve = r["approve_with"].as_str().expect("an approval command").to_string();
    let run_id = approve.split_whitespace().nth(2).unwrap().to_string();

    // The stored plan is the leavers alone, and an approval applies exactly that.
    let out = p.run(&["--json", "plan", "show", &run_id]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = shown["operations"].as_array().unwrap().iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["deactivate"; 5], "{shown}");
    let out = p.run(&["--json", "approve", &run_id, "--reason", "HR confirmed the leavers"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let users = by_external_id(&scim);
    assert!((1..=5).all(|i| users[&format!("E{i:07}")]["active"] == false), "approved: deactivated");
    assert_eq!(users["E0000011"]["active"], true);
    assert_eq!(p.sync_json(&[]).1["outcome"], "no-new-file", "the approval recorded the file");
}

#[test]
fn hold_all_is_the_default_and_sends_nothing() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "max_deactivations = \"10%\"");
    p.export("employees_2026-01-01.csv", &rows(10));
    assert_eq!(p.sync_json(&[]).0, 0);
    let before = by_external_id(&scim);
    let mut file: Vec<String> = rows(10).split_off(5);
    file.push(row(11, "ann11@example.com", true, "Engineering"));
    p.export("employees_2026-01-02.csv", &file);
    let (code, r) = p.sync_json(&[]);
    assert_eq!((code, r["stopped_by"].as_str()), (5, Some("mass_deactivation")), "{r}");
    assert_eq!(by_external_id(&scim), before, "nothing sent, the hire neither");
}

/// The demo mapping with a `[scope]` (and anything else) appended.
fn with_mapping(p: &Project, extra: &str) {
    let path = p.path().join("mappings/demo.toml");
    let mut m = std::fs::read_to_string(&path).unwrap();
    m.push_str(extra);
    std::fs::write(path, m).unwrap();
}

#[test]
fn scope_keeps_rows_out_and_a_person_who_moves_out_follows_out_of_scope() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "max_deactivations = \"100%\"");
    with_mapping(
        &p,
        "\n[scope]\ninclude = { \"Department\" = [\"Engineering\", \"Sales\"] }\nexclude = { \"Job Title\" = [\"Contractor\"] }\n",
    );
    let mut file = rows(5);
    file[1] = row(2, "ann2@example.com", true, "Agency");
    file[2] = row(3, "ann3@example.com", true, "Engineering").replace(",Engineer,", ",Contractor,");
    p.export("employees_2026-01-01.csv", &file);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((r["counts"]["created"].as_u64(), r["counts"]["rows"].as_u64()), (Some(3), Some(3)), "{r}");
    assert_eq!(listed(&r, "out_of_scope"), ["E0000002", "E0000003"], "{r}");
    let users = by_external_id(&scim);
    assert_eq!(users.len(), 3);
    assert!(!users.contains_key("E0000002") && !users.contains_key("E0000003"));
    let e = explain(&p, "E0000002");
    assert!(e["why"].as_str().unwrap().contains("[scope]"), "{e}");

    // E4 moves to an agency: out of scope, deactivated (out_of_scope = "deactivate").
    file[3] = row(4, "ann4@example.com", true, "Agency");
    p.export("employees_2026-01-02.csv", &file);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["deactivated"], 1, "{r}");
    assert_eq!(r["lifecycle"]["out_of_scope"]["people"][2], json!({"external_id": "E0000004", "line": 5, "known": true}), "{r}");
    assert_eq!(by_external_id(&scim)["E0000004"]["active"], false);

    // out_of_scope = "ignore": E1 moves out and keeps the account as it is.
    p.set_last_sync_section("acme", "max_deactivations = \"100%\"\nout_of_scope = \"ignore\"");
    file[0] = row(1, "ann1@example.com", true, "Agency");
    p.export("employees_2026-01-03.csv", &file);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((r["counts"]["deactivated"].as_u64(), r["counts"]["updated"].as_u64()), (Some(0), Some(0)), "{r}");
    assert_eq!(by_external_id(&scim)["E0000001"]["active"], true);
    let e = explain(&p, "E0000001");
    assert!(e["why"].as_str().unwrap().contains("out_of_scope = \"ignore\""), "{e}");
}

/// A command of the project run with its clock moved to `now` (`ROSTERSYNC_NOW`).
fn at(p: &Project, now: &str, args: &[&str]) -> (i32, Value) {
    let out = p.command(args).env("ROSTERSYNC_NOW", now).env("ROSTERSYNC_PG_PASSWORD", support::postgres::PASSWORD).output().unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn grace_keeps_absentees_until_absent_that_long_and_a_flapping_file_changes_nobody() {
    grace_on(None);
}

/// The same days on PostgreSQL: "absent since" is kept in its own migration there too.
#[test]
fn grace_on_postgres() {
    let pg = support::postgres::Postgres::start();
    pg.create_db("grace");
    grace_on(Some(&pg));
}

fn grace_on(pg: Option<&support::postgres::Postgres>) {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "max_deactivations = \"100%\"\ndeactivate_after = \"3d\"");
    if let Some(pg) = pg {
        p.set_state(&format!("[state]\nurl = \"{}\"\npassword_env = \"ROSTERSYNC_PG_PASSWORD\"\n", pg.url("grace")));
    }
    p.export("employees_2026-03-01.csv", &rows(4));
    assert_eq!(at(&p, "2026-03-01T06:00:00Z", &["--json", "sync", "acme"]).0, 0);

    // Day 2: E2 and E3 drop out of the file for a day; day 3 they are back: nobody changes.
    let mut file = rows(4);
    file.remove(1);
    file.remove(1);
    p.export("employees_2026-03-02.csv", &file);
    let (code, r) = at(&p, "2026-03-02T06:00:00Z", &["--json", "sync", "acme"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    let graced: Vec<(&str, &str)> = r["lifecycle"]["in_grace"]["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["external_id"].as_str().unwrap(), g["until"].as_str().unwrap()))
        .collect();
    assert_eq!(graced, [("E0000002", "2026-03-05T06:00:00Z"), ("E0000003", "2026-03-05T06:00:00Z")], "{r}");
    let (_, s) = at(&p, "2026-03-02T07:00:00Z", &["--json", "status"]);
    assert_eq!(s["connectors"][0]["in_grace"][0]["external_id"], "E0000002", "{s}");
    assert_eq!(s["connectors"][0]["in_grace"][0]["until"], "2026-03-05T06:00:00Z", "{s}");
    let (_, e) = at(&p, "2026-03-02T07:00:00Z", &["--json", "explain", "acme", "E0000003"]);
    assert!(e["why"].as_str().unwrap().contains("in grace until 2026-03-05 06:00 UTC"), "{e}");
    p.export("employees_2026-03-03.csv", &rows(4));
    let (code, r) = at(&p, "2026-03-03T06:00:00Z", &["--json", "sync", "acme"]);
    assert_eq!((code, r["counts"]["deactivated"].as_u64(), r["counts"]["updated"].as_u64()), (0, Some(0), Some(0)), "{r}");
    assert!(by_external_id(&scim).values().all(|u| u["active"] == true));

    // E4 leaves on day 4: kept on days 4 and 6, deactivated by the first run three days on.
    file = rows(3);
    for (d, name) in [(4, "employees_2026-03-04.csv"), (6, "employees_2026-03-06.csv"), (7, "employees_2026-03-07.csv")] {
        let mut f = file.clone();
        // A new file each day (a changed title), as a daily export is.
        f[0] = f[0].replace("Engineer", &format!("Engineer {d}"));
        p.export(name, &f);
        let (code, r) = at(&p, &format!("2026-03-{d:02}T06:00:00Z"), &["--json", "sync", "acme"]);
        assert_eq!(code, 0, "{r}");
        let want = u64::from(d == 7);
        assert_eq!(r["counts"]["deactivated"].as_u64(), Some(want), "day {d}: {r}");
        assert_eq!(by_external_id(&scim)["E0000004"]["active"], d < 7, "day {d}");
    }
}

#[test]
fn dated_hires_and_leaves_over_several_days_on_the_server() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "max_deactivations = \"100%\"\ncreate_lead = \"3d\"");
    // Dates from two columns of the export, written day first.
    let path = p.path().join("mappings/demo.toml");
    let m = std::fs::read_to_string(&path).unwrap().replace(
        "[attributes]",
        "start_date  = { column = \"Hire Date\", date = \"%d/%m/%Y\" }\nend_date    = { column = \"Location\", date = \"%d/%m/%Y\" }\n\n[attributes]",
    );
    let m = m.replace("location    = \"Location\"\n", "").replace("hire_date   = { column = \"Hire Date\", date = \"%Y-%m-%d\" }\n", "");
    std::fs::write(&path, m).unwrap();
    // E1 started long ago; E2 starts on 10/03; E3 leaves on 05/03 (flagged inactive already).
    let dated = |id: u32, active: bool, start: &str, end: &str| {
        row(id, &format!("ann{id}@example.com"), active, "Engineering").replace(",Paris,2021-03-04,", &format!(",{end},{start},"))
    };
    let file = vec![dated(1, true, "01/01/2020", ""), dated(2, true, "10/03/2026", ""), dated(3, false, "01/01/2020", "05/03/2026")];
    let sync = |d: u32, name: &str| {
        p.export(name, &file);
        at(&p, &format!("2026-03-{d:02}T08:00:00+01:00"), &["--json", "sync", "acme", "--force"])
    };

    // Day 1: E2 is pending (10 − 3 = day 7); E3 is active until the 5th.
    let (code, r) = sync(1, "employees_2026-03-01.csv");
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        r["lifecycle"]["pending"]["people"][0],
        json!({"external_id": "E0000002", "line": 3, "start_date": "2026-03-10", "created_on": "2026-03-07"}),
        "{r}"
    );
    assert_eq!(r["counts"]["skipped"], 1, "{r}");
    let users = by_external_id(&scim);
    assert!(!users.contains_key("E0000002"), "no account before the lead");
    assert_eq!(users["E0000003"]["active"], true, "active until the leave date");
    let (_, s) = at(&p, "2026-03-01T09:00:00+01:00", &["--json", "status"]);
    assert_eq!(s["connectors"][0]["next_dated_change"], json!({"on": "2026-03-05", "external_id": "E0000003", "change": "leave"}), "{s}");
    let (_, e) = at(&p, "2026-03-01T09:00:00+01:00", &["--json", "explain", "acme", "E0000002"]);
    assert!(e["why"].as_str().unwrap().contains("starting 2026-03-10"), "{e}");

    // Dates act without a new file: on day 4 nothing is due (no new file, nothing sent); on
    // day 5 the same file is planned again and E3 is deactivated.
    let plain = |d: u32| at(&p, &format!("2026-03-{d:02}T08:00:00+01:00"), &["--json", "sync", "acme"]);
    let (code, r) = plain(4);
    assert_eq!((code, r["outcome"].as_str()), (0, Some("no-new-file")), "{r}");
    let (code, r) = plain(5);
    assert_eq!((code, r["outcome"].as_str(), r["counts"]["deactivated"].as_u64()), (0, Some("ok"), Some(1)), "{r}");
    assert_eq!(by_external_id(&scim)["E0000003"]["active"], false);
    let (_, s) = at(&p, "2026-03-05T09:00:00+01:00", &["--json", "status"]);
    assert_eq!(s["connectors"][0]["next_dated_change"]["on"], "2026-03-07", "{s}");
    assert_eq!(plain(6).1["outcome"], "no-new-file");
    let (code, r) = sync(7, "employees_2026-03-07.csv");
    assert_eq!((code, r["counts"]["created"].as_u64()), (0, Some(1)), "{r}");
    assert_eq!(by_external_id(&scim)["E0000002"]["active"], false, "inactive before the start");
    let (code, _) = sync(9, "employees_2026-03-09.csv");
    assert_eq!(code, 0);
    assert_eq!(by_external_id(&scim)["E0000002"]["active"], false);
    let (code, r) = sync(10, "employees_2026-03-10.csv");
    assert_eq!((code, r["counts"]["updated"].as_u64()), (0, Some(1)), "{r}");
    assert_eq!(by_external_id(&scim)["E0000002"]["active"], true, "active from the start date");
    assert_eq!(by_external_id(&scim)["E0000001"]["active"], true);
}
