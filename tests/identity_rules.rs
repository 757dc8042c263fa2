//! Identity that holds on every platform (issue 25), end to end through the CLI against
//! the real servers of the suite (scim2-server, django-scim2), with the fault proxy adding
//! what a server lacks. Each case checks the server afterwards: one account per person,
//! the right person on each account, nothing foreign touched.

use crate::support;

use std::collections::HashMap;

use serde_json::{Value, json};
use support::fault_proxy::{Fault, FaultProxy};
use support::project::{Project, rows};
use support::scim::ScimServer;
use support::scim_b::DjangoScim;

const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The accounts by externalId (those without one under ""), each externalId once.
fn by_external_id(users: Vec<Value>) -> HashMap<String, Value> {
    let mut m = HashMap::new();
    for u in users {
        let ext = u["externalId"].as_str().unwrap_or_default().to_string();
        assert!(ext.is_empty() || !m.contains_key(&ext), "two accounts for externalId {ext}");
        m.insert(ext, u);
    }
    m
}

fn counts(r: &Value, keys: &[(&str, u64)]) {
    for (k, want) in keys {
        assert_eq!(r["counts"][k], *want, "{k} in {r}");
    }
}

/// An account made by hand, without externalId.
fn hand_made(user_name: &str, email: Option<&str>) -> Value {
    let mut v = json!({"schemas": [CORE], "userName": user_name, "name": {"givenName": "Hand", "familyName": "Made"}});
    if let Some(e) = email {
        v["emails"] = json!([{"value": e, "type": "work", "primary": true}]);
    }
    v
}

/// A server as these tests use it: its root, its token, a POST and every user.
type Server<'a> = (&'a str, &'a str, &'a dyn Fn(&str, &Value) -> Value, &'a dyn Fn() -> Vec<Value>);

/// Accounts an admin made before the first sync — a login that is not the email (`jdoe5`,
/// the email in emails[]) and the email in capitals — are adopted, not duplicated; a
/// foreign account is left as it is. On both servers (django compares userName with case).
#[test]
fn hand_made_accounts_are_adopted_on_the_first_sync_not_duplicated() {
    let scim = ScimServer::start();
    let django = DjangoScim::start();
    let servers: [Server; 2] = [
        (&scim.base_url, &scim.token, &|p, b| scim.post(p, b), &|| scim.users()),
        (&django.base_url, &django.token, &|p, b| django.post(p, b), &|| django.users()),
    ];
    for (base, token, post, users) in servers {
        let jdoe = post("/Users", &hand_made("jdoe5", Some("ann5@example.com")));
        let caps = post("/Users", &hand_made("ANN7@EXAMPLE.COM", None));
        let admin = post("/Users", &json!({"schemas": [CORE], "externalId": "admin-1", "userName": "root@example.com"}));
        let p = Project::at(base, token, "", "");
        p.export("employees_2026-01-01.csv", &rows(7));
        let (code, r) = p.sync_json(&[]);
        assert_eq!(code, 0, "{base}: {r}");
        counts(&r, &[("adopted", 2), ("created", 5), ("conflicts", 0), ("failed", 0)]);
        let held = by_external_id(users());
        assert_eq!(held.len(), 8, "{base}: seven people and the admin, nobody twice: {held:?}");
        assert_eq!(held["E0000005"]["id"], jdoe["id"], "{base}: jdoe5's account is ann5's");
        assert_eq!(held["E0000007"]["id"], caps["id"], "{base}: the capitals' account is ann7's");
        assert_eq!(held["admin-1"]["userName"], "root@example.com", "{base}: the admin is untouched");
        assert_eq!(held["admin-1"]["id"], admin["id"]);
        // The next run finds everyone as they are.
        let (code, r) = p.sync_json(&["--force"]);
        assert_eq!(code, 0, "{r}");
        counts(&r, &[("unchanged", 7), ("created", 0), ("adopted", 0)]);
    }
}

/// A later create meets an account made by hand meanwhile (409): the server's filters find
/// nothing (a proxy answers every filter with an empty list, as a server lacking them
/// would), so the listing decides, and the account is adopted, not duplicated or failed.
#[test]
fn a_409_is_placed_by_the_listing_when_the_filters_miss_it() {
    let scim = ScimServer::start();
    let empty = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0, "Resources": []}"#;
    let proxy = FaultProxy::start(scim.port, move |_, method, path| {
        if method == "GET" && path.contains("filter=") { Fault::Body(200, empty.to_string()) } else { Fault::Pass }
    });
    let p = Project::at(&proxy.base_url, &scim.token, "", "");
    p.export("employees_2026-01-01.csv", &rows(1));
    assert_eq!(p.sync_json(&[]).0, 0);
    let listings = || proxy.seen().iter().filter(|s| s.method == "GET" && s.path.contains("/Users?startIndex=")).count();
    let listed_before = listings();
    let made = scim.post("/Users", &hand_made("ANN2@EXAMPLE.COM", None));
    p.export("employees_2026-01-02.csv", &rows(2));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("adopted", 1), ("created", 0), ("conflicts", 0), ("failed", 0), ("unchanged", 1)]);
    let held = by_external_id(scim.users());
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(held["E0000002"]["id"], made["id"]);
    assert_eq!(held["E0000002"]["name"]["givenName"], "Ann2", "the account now carries the person");
    let paths: Vec<String> = proxy.seen().iter().map(|s| format!("{} {}", s.method, s.path)).collect();
    assert_eq!(listings() - listed_before, 1, "one listing for the 409 the filters missed: {paths:#?}");
}

/// A second deployment (its own state) on the same platform: the first one's accounts
/// carry its people's ids, which are other people here. An id alone is a partial match:
/// the run stops before writing (exit 5), lists them as conflicts, and the accounts are
/// untouched; `approve RUN` adopts them, as a person decided.
#[test]
fn an_id_match_alone_never_takes_an_account_without_approval() {
    let scim = ScimServer::start();
    let first = Project::new(&scim, "");
    first.export("employees_2026-01-01.csv", &rows(2));
    assert_eq!(first.sync_json(&[]).0, 0);
    let before = by_external_id(scim.users());

    let second = Project::new(&scim, "");
    let other: Vec<String> = (1..=3).map(|i| support::project::row(i, &format!("bob{i}@other.example"), true, "Sales")).collect();
    second.export("employees_2026-01-01.csv", &other);
    let (code, r) = second.sync_json(&[]);
    assert_eq!(code, 5, "stopped by a safeguard: {r}");
    assert_eq!(r["stopped_by"], "partial_match", "{r}");
    counts(&r, &[("conflicts", 2), ("adopted", 0)]);
    let errors = r["errors"].to_string();
    assert!(errors.contains("E0000001") && errors.contains("ann1@example.com") && errors.contains("partial match"), "{errors}");
    assert_eq!(by_external_id(scim.users()), before, "nothing written: the first deployment's people keep their accounts");

    let run = r["run_id"].as_str().unwrap().to_string();
    let out = second.run(&["--json", "approve", &run, "--reason", "the accounts are ours; emails changed in HR"]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{r}");
    counts(&r, &[("adopted", 2), ("created", 1), ("conflicts", 0)]);
    let after = by_external_id(scim.users());
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(after["E0000001"]["id"], before["E0000001"]["id"]);
    assert_eq!(after["E0000001"]["userName"], "bob1@other.example");
}

/// A row of the demo export whose manager is `manager` (a unique id).
fn managed(id: u32, email: &str, manager: &str) -> String {
    support::project::row(id, email, true, "Engineering").replacen(",Engineer,,", &format!(",Engineer,{manager},"), 1)
}

/// Updates that keep failing (a server answering 500 to them, after their own retries)
/// are failures of their people: the run goes on, the leaver is deactivated, the updates'
/// retries are theirs alone (once spent, the rest fail unsent), and the report names each
/// person and why.
#[test]
fn failing_updates_never_keep_a_leaver_active() {
    let scim = ScimServer::start();
    let p0 = Project::new(&scim, "");
    p0.export("employees_2026-01-01.csv", &rows(30));
    assert_eq!(p0.sync_json(&[]).0, 0);
    let leaver = by_external_id(scim.users())["E0000030"]["id"].as_str().unwrap().to_string();
    let leaver_path = format!("/Users/{leaver}");
    let proxy = FaultProxy::start(scim.port, move |_, method, path| {
        if (method == "PATCH" || method == "PUT") && path != leaver_path { Fault::Status(500) } else { Fault::Pass }
    });
    // The same project, through the proxy: everyone moves department, E30 leaves.
    let cfg = p0.path().join("connectors.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(&scim.base_url, &proxy.base_url);
    std::fs::write(&cfg, text.replace("[connectors.acme.sync]\n", "[connectors.acme.sync]\nmax_updates = \"100%\"\n")).unwrap();
    let moved: Vec<String> = (1..30).map(|i| support::project::row(i, &format!("ann{i}@example.com"), true, "Sales")).collect();
    p0.export("employees_2026-01-02.csv", &moved);
    let (code, r) = p0.sync_json(&[]);
    assert_eq!(code, 6, "some operations failed: {r}");
    counts(&r, &[("deactivated", 1), ("failed", 29), ("updated", 0)]);
    let held = by_external_id(scim.users());
    assert_eq!(held["E0000030"]["active"], false, "the leaver is deactivated: {}", held["E0000030"]);
    assert_eq!(held["E0000001"]["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"], "Engineering");
    let errors = r["errors"].to_string();
    assert!(errors.contains("E0000001") && errors.contains("HTTP 500"), "who failed and why: {errors}");
    assert!(errors.contains("retries are spent"), "the updates' retries ran out, and the rest were not sent: {errors}");
    let writes = proxy.seen().iter().filter(|s| s.method == "PATCH" || s.method == "PUT").count();
    assert!(writes < 29 * 6, "the updates' retries are bounded by their budget: {writes} writes");
}

/// A manager re-keyed (re-hired under a new id, the same account): the reports' manager is
/// the same platform id, so nothing is sent to them.
#[test]
fn a_manager_rekeyed_sends_no_write_to_the_reports() {
    let scim = ScimServer::start();
    let proxy = FaultProxy::start(scim.port, |_, _, _| Fault::Pass);
    let p = Project::at(&proxy.base_url, &scim.token, "max_deactivations = \"100%\"", "");
    let day1 = vec![
        support::project::row(1, "ann1@example.com", true, "Engineering"),
        managed(2, "ann2@example.com", "E0000001"),
        managed(3, "ann3@example.com", "E0000001"),
    ];
    p.export("employees_2026-01-01.csv", &day1);
    assert_eq!(p.sync_json(&[]).0, 0);
    let before = by_external_id(scim.users());
    let manager = before["E0000001"]["id"].as_str().unwrap().to_string();
    assert_eq!(before["E0000002"]["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"], manager.as_str());
    let sent_before = proxy.seen().len();
    let day2 = vec![
        support::project::row(9, "ann1@example.com", true, "Engineering"),
        managed(2, "ann2@example.com", "E0000009"),
        managed(3, "ann3@example.com", "E0000009"),
    ];
    p.export("employees_2026-01-02.csv", &day2);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("rekeyed", 1), ("failed", 0), ("created", 0)]);
    let after = by_external_id(scim.users());
    assert_eq!(after["E0000009"]["id"], manager.as_str(), "the manager's account moved to the new id");
    for report in ["E0000002", "E0000003"] {
        let id = before[report]["id"].as_str().unwrap();
        let writes: Vec<String> = proxy.seen()[sent_before..]
            .iter()
            .filter(|s| s.method != "GET" && s.path.contains(id))
            .map(|s| format!("{} {}: {}", s.method, s.path, String::from_utf8_lossy(&s.body)))
            .collect();
        assert!(writes.is_empty(), "{report}: a write that changes nothing: {writes:?}");
        assert_eq!(after[report]["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"], manager.as_str());
    }
    // The next run finds them as they are.
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("unchanged", 3)]);
}

/// Two people swap emails (an HR correction): both renames go through in one run, one via a
/// temporary login, on both servers; nobody logs into the other's account afterwards.
#[test]
fn an_email_swap_goes_through_in_one_run() {
    let scim = ScimServer::start();
    let django = DjangoScim::start();
    let servers: [Server; 2] = [
        (&scim.base_url, &scim.token, &|p, b| scim.post(p, b), &|| scim.users()),
        (&django.base_url, &django.token, &|p, b| django.post(p, b), &|| django.users()),
    ];
    for (base, token, _, users) in servers {
        let p = Project::at(base, token, "", "");
        p.export("employees_2026-01-01.csv", &rows(3));
        assert_eq!(p.sync_json(&[]).0, 0);
        let before = by_external_id(users());
        let swapped = vec![
            support::project::row(1, "ann2@example.com", true, "Engineering"),
            support::project::row(2, "ann1@example.com", true, "Engineering"),
            rows(3)[2].clone(),
        ];
        p.export("employees_2026-01-02.csv", &swapped);
        let (code, r) = p.sync_json(&[]);
        assert_eq!(code, 0, "{base}: {r}");
        counts(&r, &[("updated", 2), ("failed", 0), ("unchanged", 1)]);
        assert!(r["notes"].to_string().contains("swap"), "{base}: {r}");
        let after = by_external_id(users());
        assert_eq!(after.len(), 3, "{base}: {after:?}");
        for (id, login) in [("E0000001", "ann2@example.com"), ("E0000002", "ann1@example.com")] {
            assert_eq!(after[id]["userName"], login, "{base}: {}", after[id]);
            assert_eq!(after[id]["id"], before[id]["id"], "{base}: the same account");
        }
        let (code, r) = p.sync_json(&["--force"]);
        assert_eq!(code, 0, "{r}");
        counts(&r, &[("unchanged", 3), ("updated", 0)]);
    }
}

/// An email freed by a rename and given to a new hire in the same file: the hire is created
/// in the same run, after the rename.
#[test]
fn an_email_freed_by_a_rename_goes_to_a_new_hire_in_the_same_run() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    p.export("employees_2026-01-01.csv", &rows(2));
    assert_eq!(p.sync_json(&[]).0, 0);
    let before = by_external_id(scim.users());
    let file = vec![
        support::project::row(1, "ann.lee1@example.com", true, "Engineering"),
        rows(2)[1].clone(),
        support::project::row(5, "ann1@example.com", true, "Sales"),
    ];
    p.export("employees_2026-01-02.csv", &file);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("updated", 1), ("created", 1), ("failed", 0), ("conflicts", 0), ("adopted", 0)]);
    let after = by_external_id(scim.users());
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(after["E0000001"]["userName"], "ann.lee1@example.com");
    assert_eq!(after["E0000001"]["id"], before["E0000001"]["id"]);
    assert_eq!(after["E0000005"]["userName"], "ann1@example.com");
    assert_ne!(after["E0000005"]["id"], before["E0000001"]["id"], "the hire has an account of their own");
}

/// A swap cut after its temporary rename (the final rename refused): the state holds the
/// temporary login, and the next run finishes the swap.
#[test]
fn a_swap_interrupted_after_its_temporary_login_is_finished_by_the_next_run() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let scim = ScimServer::start();
    let p0 = Project::new(&scim, "");
    p0.export("employees_2026-01-01.csv", &rows(2));
    assert_eq!(p0.sync_json(&[]).0, 0);
    let before = by_external_id(scim.users());
    let e1 = format!("/Users/{}", before["E0000001"]["id"].as_str().unwrap());
    let (cut, writes) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicUsize::new(0)));
    let (c, w) = (cut.clone(), writes.clone());
    let proxy = FaultProxy::start(scim.port, move |_, method, path| {
        // E1's first write is its temporary login; its second, the final rename, is refused.
        if c.load(Ordering::Acquire) && method != "GET" && path == e1 && w.fetch_add(1, Ordering::AcqRel) == 1 {
            Fault::Status(400)
        } else {
            Fault::Pass
        }
    });
    let cfg = p0.path().join("connectors.toml");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace(&scim.base_url, &proxy.base_url)).unwrap();
    let swapped = vec![
        support::project::row(1, "ann2@example.com", true, "Engineering"),
        support::project::row(2, "ann1@example.com", true, "Engineering"),
    ];
    p0.export("employees_2026-01-02.csv", &swapped);
    let (code, r) = p0.sync_json(&[]);
    assert_eq!(code, 6, "{r}");
    let mid = by_external_id(scim.users());
    assert!(mid["E0000001"]["userName"].as_str().unwrap().contains("+rostersync-"), "the temporary login: {}", mid["E0000001"]);
    assert_eq!(mid["E0000002"]["userName"], "ann1@example.com", "the other half went through");

    cut.store(false, Ordering::Release);
    let (code, r) = p0.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("updated", 1), ("failed", 0)]);
    let after = by_external_id(scim.users());
    assert_eq!(after["E0000001"]["userName"], "ann2@example.com");
    assert_eq!(after["E0000002"]["userName"], "ann1@example.com");
    assert_eq!(after["E0000001"]["id"], before["E0000001"]["id"]);
    assert_eq!(after.len(), 2);
}

/// `on_missing = "delete"`: deleting a manager removes the reports' manager links in the
/// same run (none points at a deleted account), and the next run leaves them be.
#[test]
fn deleting_a_manager_clears_the_reports_links_in_the_same_run() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "on_missing = \"delete\"\nmax_deactivations = \"100%\"");
    let day1 = vec![
        support::project::row(1, "ann1@example.com", true, "Engineering"),
        managed(2, "ann2@example.com", "E0000001"),
        managed(3, "ann3@example.com", "E0000001"),
    ];
    p.export("employees_2026-01-01.csv", &day1);
    assert_eq!(p.sync_json(&[]).0, 0);
    let before = by_external_id(scim.users());
    assert_eq!(before["E0000002"][ENT]["manager"]["value"], before["E0000001"]["id"]);
    p.export("employees_2026-01-02.csv", &day1[1..]);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("deleted", 1), ("failed", 0)]);
    let after = by_external_id(scim.users());
    assert_eq!(after.len(), 2, "{after:?}");
    for report in ["E0000002", "E0000003"] {
        let manager = after[report].get(ENT).and_then(|e| e.get("manager")).cloned().unwrap_or(Value::Null);
        assert!(manager.is_null() || manager.get("value").is_none(), "{report} points at a deleted account: {}", after[report]);
        assert_eq!(after[report]["id"], before[report]["id"]);
    }
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("unchanged", 2), ("updated", 0), ("failed", 0)]);
}

/// A manager whose create had an unknown outcome (the answer lost, the lookup refused) is
/// adopted by the next run's listing: its reports, written without the link, are linked in
/// that same run.
#[test]
fn a_manager_recovered_by_the_listing_gets_its_reports_linked_in_the_same_run() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let scim = ScimServer::start();
    let (faulty, posts) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicUsize::new(0)));
    let (f, n) = (faulty.clone(), posts.clone());
    let proxy = FaultProxy::start(scim.port, move |_, method, path| {
        if !f.load(Ordering::Acquire) {
            return Fault::Pass;
        }
        match method {
            // The manager's create (the first wave) goes through, its answer is lost.
            "POST" if path == "/Users" && n.fetch_add(1, Ordering::AcqRel) == 0 => Fault::DropAfterForward,
            // And looking it up is refused: the outcome stays unknown.
            "GET" if path.contains("filter=externalId") => Fault::Status(400),
            _ => Fault::Pass,
        }
    });
    let p = Project::at(&proxy.base_url, &scim.token, "", "");
    let file = vec![support::project::row(1, "ann1@example.com", true, "Engineering"), managed(2, "ann2@example.com", "E0000001")];
    p.export("employees_2026-01-01.csv", &file);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 6, "the manager's create failed: {r}");
    faulty.store(false, Ordering::Release);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("adopted", 1), ("failed", 0), ("created", 0)]);
    let held = by_external_id(scim.users());
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(held["E0000002"][ENT]["manager"]["value"], held["E0000001"]["id"], "linked in the run that adopted the manager");
}

/// A server whose User resource type does not offer the enterprise extension never gets
/// it: everyone is created, and the run says once which mapped attributes it does not send.
#[test]
fn the_enterprise_extension_is_not_sent_to_a_server_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = support::repo_root().join("tests/fixtures/scim");
    let mut types: Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("resource-types.json")).unwrap()).unwrap();
    for t in types.as_array_mut().unwrap() {
        if let Some(ext) = t.get_mut("schemaExtensions").and_then(Value::as_array_mut) {
            ext.retain(|e| !e["schema"].as_str().unwrap_or_default().contains("enterprise"));
        }
    }
    let types_path = dir.path().join("resource-types.json");
    std::fs::write(&types_path, types.to_string()).unwrap();
    let schemas = fixtures.join("schemas.json");
    let scim = ScimServer::start_with(&["--schema", schemas.to_str().unwrap(), "--resource-type", types_path.to_str().unwrap()]);
    let p = Project::new(&scim, "");
    p.export("employees_2026-01-01.csv", &rows(3));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("created", 3), ("failed", 0)]);
    let notes: Vec<String> = r["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    let said: Vec<&String> = notes.iter().filter(|n| n.contains("enterprise extension")).collect();
    assert_eq!(said.len(), 1, "said once: {notes:?}");
    assert!(said[0].contains("employee_id") && said[0].contains("department"), "{}", said[0]);
    let held = by_external_id(scim.users());
    assert_eq!(held.len(), 3);
    assert!(held["E0000001"].get(ENT).is_none(), "{}", held["E0000001"]);
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("unchanged", 3)]);
}
