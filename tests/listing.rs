//! `--json` and `--plan-out` list every operation of a plan longer than a report keeps
//! (`report::MAX_LISTED`, 1,000), through the CLI against the real scim2-server: written as
//! they are made (a dry run's and a stopped run's from the plan, a real sync's from its
//! temporary file), each person once, in the plan's order, as valid JSON and CSV, while
//! the run history keeps its first few. BENCHMARKS.md says why they are streamed.

use crate::support;

use std::collections::HashSet;

use serde_json::Value;
use support::project::{Project, rows};
use support::scim::ScimServer;

const N: u32 = 1200;

fn id(i: u32) -> String {
    format!("E{i:07}")
}

/// The report's operations as (external_id, kind), asserting each person appears once.
fn listed(r: &Value) -> Vec<(String, String)> {
    let ops = r["operations"].as_array().unwrap_or_else(|| panic!("no operations array: {}", r["message"]));
    let got: Vec<(String, String)> =
        ops.iter().map(|o| (o["external_id"].as_str().unwrap().to_string(), o["kind"].as_str().unwrap().to_string())).collect();
    let unique: HashSet<&str> = got.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(unique.len(), got.len(), "a person listed twice");
    assert!(r.get("operations_left_out").is_none(), "nothing is left out: {}", r["operations_left_out"]);
    got
}

fn all_of(kind: &str, ids: impl Iterator<Item = u32>) -> Vec<(String, String)> {
    ids.map(|i| (id(i), kind.to_string())).collect()
}

/// The ids and kinds of a `--plan-out` CSV's rows (one per operation here: no change lists).
fn csv_rows(path: &std::path::Path) -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    assert_eq!(r.headers().unwrap(), vec!["external_id", "name", "kind", "field", "old", "new", "line", "reason"]);
    r.records().map(|rec| rec.unwrap()).map(|rec| (rec[0].to_string(), rec[2].to_string())).collect()
}

#[test]
fn json_and_plan_out_list_every_operation_of_a_long_plan_once() {
    let scim = ScimServer::start();
    // Everyone is retitled below on purpose (a long plan of updates): above the change
    // budget's default `max_updates`, which tests/wrong_files.rs covers.
    let p = Project::new(&scim, "max_deactivations = \"10%\"\nmax_updates = \"100%\"");
    p.export("employees_2026-01-01.csv", &rows(N));

    // A first dry run: N creates, from the plan as the report is written.
    let csv = p.path().join("plan.csv");
    let (code, r) = p.sync_json(&["--dry-run", "--plan-out", csv.to_str().unwrap()]);
    assert_eq!(code, 0, "{}", r["message"]);
    assert_eq!(r["counts"]["created"], N);
    assert_eq!(listed(&r), all_of("create", 1..=N));
    let last = &r["operations"][N as usize - 1];
    assert_eq!((last["name"].as_str(), last["line"].as_u64()), (Some("Ann1200 Lee1200"), Some(u64::from(N) + 1)), "{last}");
    assert_eq!(csv_rows(&csv), all_of("create", 1..=N), "the CSV lists them all too");
    // `--all --json` carries each run's whole list.
    let out = p.run(&["--json", "sync", "--all", "--dry-run"]);
    let all: Value = serde_json::from_slice(&out.stdout).expect("--all --json is one JSON document");
    assert_eq!(listed(&all["runs"][0]), all_of("create", 1..=N));
    // The human summary still shows the first few and counts the rest.
    let out = String::from_utf8_lossy(&p.run(&["sync", "acme", "--dry-run"]).stdout).into_owned();
    assert!(out.contains(&format!("plan     {N} operation(s)")), "{out}");
    assert!(out.contains(&format!("… and {} more", N - 20)), "{out}");
    assert!(scim.users().is_empty(), "dry runs push nothing");

    // The real first sync: its list is written out before the push, and read back after.
    let (code, r) = p.sync_json(&["--plan-out", csv.to_str().unwrap()]);
    assert_eq!(code, 0, "{}", r["message"]);
    assert_eq!(r["counts"]["created"], N);
    assert_eq!(listed(&r), all_of("create", 1..=N));
    assert_eq!(r["operations"][7]["name"], "Ann8 Lee8");
    assert_eq!(csv_rows(&csv), all_of("create", 1..=N));
    assert_eq!(scim.users().len(), N as usize);
    // The history keeps the first few operations of that run, and counts the others.
    let out = p.run(&["--json", "history", "acme"]);
    let h: Value = serde_json::from_slice(&out.stdout).expect("history --json is JSON");
    let run =
        h.as_array().and_then(|a| a.iter().find(|x| x["run_id"] == r["run_id"])).unwrap_or_else(|| panic!("the run in the history: {h}"));
    let run = &run["report"];
    assert_eq!(run["operations"].as_array().map(Vec::len), Some(20), "{run}");
    assert_eq!(run["operations_left_out"], N - 20, "{run}");

    // Everyone retitled: N updates, each with its change and a name from the file.
    let retitled: Vec<String> = rows(N).into_iter().map(|r| r.replace(",Engineer,", ",Lead,")).collect();
    p.export("employees_2026-01-02.csv", &retitled);
    let (code, r) = p.sync_json(&["--dry-run"]);
    assert_eq!(code, 0, "{}", r["message"]);
    assert_eq!(listed(&r), all_of("update", 1..=N));
    let last = &r["operations"][N as usize - 1];
    assert_eq!(last["name"], "Ann1200 Lee1200");
    assert_eq!(last["changes"], serde_json::json!([{"field": "title", "old": "Engineer", "new": "Lead"}]), "{last}");

    // Most of them gone: a safeguard stops the run, and its report lists what the plan
    // would have done, every leaver named from the state (the last beyond the first 1,000).
    p.export("employees_2026-01-03.csv", &rows(50));
    let (code, r) = p.sync_json(&["--dry-run"]);
    assert_eq!(code, 5, "{}", r["message"]);
    assert_eq!(r["stopped_by"], "mass_deactivation");
    assert_eq!(listed(&r), all_of("deactivate", 51..=N));
    let last = &r["operations"][(N - 51) as usize];
    assert_eq!(last["external_id"], id(N));
    assert_eq!(last["name"], "Ann1200 Lee1200", "{last}");
}
