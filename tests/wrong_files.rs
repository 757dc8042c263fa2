//! Files that look right but are wrong: each parses cleanly, yet syncing it as it is would
//! rewrite or deactivate people. Each is synced after a clean baseline of 100 people against
//! the real scim2-server, under the default limits, and the platform must be exactly as the
//! baseline left it (no login changed, nobody deactivated, no account added).

use crate::support;

use std::collections::BTreeMap;

use support::project::{Project, row, rows};
use support::scim::ScimServer;

const PEOPLE: u32 = 100;

/// What matters of the platform: per externalId, userName, email, active, department.
fn platform(scim: &ScimServer) -> BTreeMap<String, (String, String, bool, String)> {
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let mut m = BTreeMap::new();
    for u in scim.users() {
        let ext = u["externalId"].as_str().unwrap_or_default().to_string();
        let email = u["emails"][0]["value"].as_str().unwrap_or_default().to_string();
        let dept = u[ent]["department"].as_str().unwrap_or_default().to_string();
        let v = (u["userName"].as_str().unwrap_or_default().to_string(), email, u["active"] == true, dept);
        assert!(m.insert(ext.clone(), v).is_none(), "two accounts for externalId {ext}");
    }
    m
}

fn baseline(scim: &ScimServer) -> Project {
    let p = Project::new(scim, "");
    p.export("employees_2026-01-01.csv", &rows(PEOPLE));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], PEOPLE);
    p
}

/// Syncs `lines` as the newest export; the exit code and the report.
fn sync_rows(p: &Project, name: &str, lines: &[String]) -> (i32, serde_json::Value) {
    p.export(name, lines);
    p.sync_json(&[])
}

fn text(r: &serde_json::Value) -> String {
    r["errors"].to_string() + &r["notes"].to_string() + r["message"].as_str().unwrap_or_default()
}

/// Two rows given one id by a typo: the person whose id was overwritten reads as absent, and
/// must be held like the absentees of a row without an id, not deactivated.
#[test]
fn a_typo_that_gives_two_rows_one_id_deactivates_nobody() {
    let scim = ScimServer::start();
    let p = baseline(&scim);
    let before = platform(&scim);
    let mut lines = rows(PEOPLE);
    // Person 50's row carries person 49's id.
    lines[49] = row(49, "ann50@example.com", true, "Engineering");
    let (code, r) = sync_rows(&p, "employees_2026-01-02.csv", &lines);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    assert!(text(&r).contains("E0000049"), "the duplicate is named: {r}");
    assert!(r["notes"].to_string().contains("were not deactivated"), "the held absentee is said: {r}");
    assert_eq!(platform(&scim), before, "nobody changed");
}

/// Excel wrote many ids in scientific notation: those rows share one id; nobody is
/// deactivated, whatever the invalid-row limit says.
#[test]
fn ids_turned_into_scientific_notation_deactivate_nobody() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "max_invalid = \"100%\"");
    p.export("employees_2026-01-01.csv", &rows(PEOPLE));
    assert_eq!(p.sync_json(&[]).0, 0);
    let before = platform(&scim);
    let lines: Vec<String> = rows(PEOPLE)
        .into_iter()
        .enumerate()
        .map(|(i, l)| if i % 10 == 3 { l.replacen(&format!("E{:07}", i + 1), "1.00000E+11", 1) } else { l })
        .collect();
    let (code, r) = sync_rows(&p, "employees_2026-01-02.csv", &lines);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["deactivated"], 0, "{r}");
    assert!(text(&r).contains("1.00000E+11"), "{r}");
    assert_eq!(platform(&scim), before, "nobody changed");
}

/// Runs a wrong export after the baseline: it must stop (exit 5) by `rule`, with nothing
/// pushed, and say which limit (a budget's key) or column with an example (before → after).
fn stops(lines: Vec<String>, rule: &str, example: &str) {
    let scim = ScimServer::start();
    let p = baseline(&scim);
    let before = platform(&scim);
    let (code, r) = sync_rows(&p, "employees_2026-01-02.csv", &lines);
    assert_eq!(code, 5, "{r}");
    assert_eq!(r["outcome"], "stopped", "{r}");
    assert_eq!(r["stopped_by"], rule, "{r}");
    let message = r["message"].as_str().unwrap_or_default();
    // A budget stop names its key; a column drift names the column (`example`).
    assert!((rule == "column_drift" || message.contains(rule)) && message.contains(example), "{message}");
    assert!(message.contains("--allow-mass-change"), "{message}");
    assert_eq!(platform(&scim), before, "nothing was pushed");
    // The stopped plan is kept for approval, as a mass deactivation's is.
    let run = r["run_id"].as_str().unwrap();
    let shown = p.run(&["plan", "show", run]);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
}

/// A budget stop is approved like any other: `approve` applies exactly the stopped plan (a
/// real change of every login, confirmed by HR).
#[test]
fn a_budget_stop_is_approved_like_a_mass_deactivation() {
    let scim = ScimServer::start();
    let p = baseline(&scim);
    let lines: Vec<String> = (1..=PEOPLE).map(|i| row(i, &format!("ann{i}@new.example"), true, "Engineering")).collect();
    let (code, r) = sync_rows(&p, "employees_2026-01-02.csv", &lines);
    assert_eq!((code, r["stopped_by"].as_str()), (5, Some("max_identity_changes")), "{r}");
    let run = r["run_id"].as_str().unwrap();
    let out = p.run(&["approve", run, "--reason", "the domain moved to new.example"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = platform(&scim);
    assert_eq!(after.len(), PEOPLE as usize);
    assert!(after.values().all(|(login, email, active, _)| login.ends_with("@new.example") && email == login && *active), "{after:?}");
}

/// An HRIS permission change empties the Email column: every login would become the id.
/// Compared with the last good file, the column is named before the logins it would change.
#[test]
fn an_emptied_email_column_stops_before_any_login_changes() {
    let lines: Vec<String> = (1..=PEOPLE).map(|i| row(i, "", true, "Engineering")).collect();
    stops(lines, "column_drift", "column \"Email\" was filled for 100 % of 100 rows");
}

/// Another customer's export with the same id scheme: every name and email would change.
#[test]
fn another_customers_export_with_the_same_ids_stops() {
    let lines: Vec<String> = (1..=PEOPLE).map(|i| row(i, &format!("bob{i}@other.example"), true, "Sales")).collect();
    stops(lines, "max_identity_changes", "\"ann1@example.com\" → \"bob1@other.example\"");
}

/// A report change drops the Department column's values: 95 % would lose theirs.
#[test]
fn a_column_that_arrives_empty_stops_naming_the_attribute() {
    let lines: Vec<String> =
        (1..=PEOPLE).map(|i| row(i, &format!("ann{i}@example.com"), true, if i > 95 { "Engineering" } else { "" })).collect();
    stops(lines, "column_drift", "column \"Department\" was filled for 100 % of 100 rows in the last good file");
}

/// Every date read day/month-swapped (all values ambiguous: nothing tells the formats apart):
/// each person's hire date would change at once; the date column is named.
#[test]
fn every_date_changed_at_once_stops_naming_the_date_column() {
    let lines: Vec<String> = rows(PEOPLE).into_iter().map(|l| l.replacen("2021-03-04", "2021-04-03", 1)).collect();
    stops(lines, "column_drift", "every date of column \"Hire Date\" changed at once");
}

/// A run stopped because of what happened to the ids: exit 5, `id_drift`, the message in
/// the customer's terms, nothing pushed, the plan kept for approval.
fn stops_on_id_drift(baseline_lines: Vec<String>, lines: Vec<String>, said: &[&str]) {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    p.export("employees_2026-01-01.csv", &baseline_lines);
    assert_eq!(p.sync_json(&[]).0, 0);
    let before = platform(&scim);
    let (code, r) = sync_rows(&p, "employees_2026-01-02.csv", &lines);
    assert_eq!((code, r["stopped_by"].as_str()), (5, Some("id_drift")), "{r}");
    let message = r["message"].as_str().unwrap_or_default();
    for s in said {
        assert!(message.contains(s), "missing «{s}» in: {message}");
    }
    assert_eq!(platform(&scim), before, "nothing was pushed");
    let shown = p.run(&["plan", "show", r["run_id"].as_str().unwrap()]);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
}

/// The id column read as numbers by a spreadsheet: `0000001` arrives as `1`. Without the
/// check every person would read as a leaver and a new hire.
#[test]
fn ids_that_lost_their_leading_zeros_stop_saying_so() {
    let numeric = |i: u32, id: String| row(i, &format!("ann{i}@example.com"), true, "Engineering").replacen(&format!("E{i:07}"), &id, 1);
    let baseline: Vec<String> = (1..=PEOPLE).map(|i| numeric(i, format!("{i:07}"))).collect();
    let lines: Vec<String> = (1..=PEOPLE).map(|i| numeric(i, i.to_string())).collect();
    stops_on_id_drift(baseline, lines, &["100 of the 100 ids last synced lost their leading zeros", "\"0000001\" → \"1\""]);
}

/// Another customer's export, or a new id scheme: hardly any id last synced is in the file.
#[test]
fn a_file_of_other_ids_stops_as_another_customers_export() {
    let lines: Vec<String> = (1..=PEOPLE)
        .map(|i| row(i, &format!("bob{i}@other.example"), true, "Sales").replacen(&format!("E{i:07}"), &format!("X-{i}"), 1))
        .collect();
    stops_on_id_drift(rows(PEOPLE), lines, &["only 0 of the 100 ids last synced are in this file, and 100 of its ids are new", "E0000001"]);
}
