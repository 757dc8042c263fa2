//! A platform that keeps an account after DELETE (soft delete: inactive, its login still
//! taken), end to end through the CLI. scim2-server deletes for real, so the proxy in front
//! turns each DELETE into a PATCH of `active: false`. A person who returns, or is re-hired
//! under a new id with the same email, gets that account back, reactivated: one account per
//! person, never a create refused with 409 run after run.

use crate::support;

use std::collections::HashMap;

use serde_json::Value;
use support::fault_proxy::{Fault, FaultProxy};
use support::project::{Project, row, rows};
use support::scim::ScimServer;

/// The platform's users by externalId; one account per externalId.
fn by_external_id(scim: &ScimServer) -> HashMap<String, Value> {
    let mut m = HashMap::new();
    for u in scim.users() {
        let ext = u["externalId"].as_str().unwrap_or_default().to_string();
        assert!(m.insert(ext.clone(), u).is_none(), "two accounts for externalId {ext}");
    }
    m
}

/// One account per login: a soft-deleted account duplicated would show here.
fn one_account_per_login(scim: &ScimServer) {
    let mut seen = HashMap::new();
    for u in scim.users() {
        let login = u["userName"].as_str().unwrap_or_default().to_lowercase();
        assert!(seen.insert(login.clone(), u["id"].clone()).is_none(), "two accounts for {login}");
    }
}

fn soft_deleting(scim: &ScimServer) -> FaultProxy {
    FaultProxy::start(scim.port, |_, method, _| if method == "DELETE" { Fault::SoftDelete } else { Fault::Pass })
}

fn sync_ok(p: &Project, what: &str) -> Value {
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{what}: {r}");
    assert_eq!(r["counts"]["conflicts"], 0, "{what}: {r}");
    assert_eq!(r["counts"]["failed"], 0, "{what}: {r}");
    r
}

#[test]
fn a_soft_deleted_account_is_reused_for_a_return_and_a_rehire() {
    let scim = ScimServer::start();
    let proxy = soft_deleting(&scim);
    let p = Project::at(&proxy.base_url, &scim.token, "on_missing = \"delete\"\nmax_deactivations = \"100%\"", "");
    let all = rows(3);
    p.export("employees_2026-01-01.csv", &all);
    sync_ok(&p, "day 1");
    let ann2 = by_external_id(&scim)["E0000002"]["id"].clone();

    // E2 leaves: deleted, and the platform keeps the account, inactive.
    let without = vec![all[0].clone(), all[2].clone()];
    p.export("employees_2026-01-02.csv", &without);
    let r = sync_ok(&p, "day 2");
    assert_eq!(r["counts"]["deleted"], 1, "{r}");
    let kept = by_external_id(&scim);
    assert_eq!(kept.len(), 3, "soft delete: the account stays");
    assert_eq!(kept["E0000002"]["active"], false);
    assert!(proxy.seen().iter().any(|s| s.method == "DELETE" && s.fault == Fault::SoftDelete), "a DELETE was sent");

    // E2 comes back under the same id: their account, reactivated, not a second one.
    p.export("employees_2026-01-03.csv", &all);
    let r = sync_ok(&p, "day 3: a return");
    assert_eq!(r["counts"]["created"].as_u64().unwrap() + r["counts"]["adopted"].as_u64().unwrap(), 1, "{r}");
    let back = by_external_id(&scim);
    assert_eq!(back.len(), 3, "{back:?}");
    assert_eq!(back["E0000002"]["id"], ann2, "the same account");
    assert_eq!(back["E0000002"]["active"], true, "reactivated");
    one_account_per_login(&scim);

    // E2 leaves again, and is re-hired as E9 with the same email: the kept account is theirs.
    p.export("employees_2026-01-04.csv", &without);
    sync_ok(&p, "day 4");
    assert_eq!(by_external_id(&scim)["E0000002"]["active"], false);
    let rehired = vec![all[0].clone(), row(9, "ann2@example.com", true, "Sales"), all[2].clone()];
    p.export("employees_2026-01-05.csv", &rehired);
    sync_ok(&p, "day 5: a re-hire under a new id");
    let after = by_external_id(&scim);
    assert_eq!(after.len(), 3, "one account per person: {after:?}");
    let e9 = &after["E0000009"];
    assert_eq!(e9["id"], ann2, "the kept account, re-keyed");
    assert_eq!(e9["active"], true);
    assert_eq!(e9["userName"], "ann2@example.com");
    assert_eq!(e9["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"], "Sales", "their new content: {e9}");
    assert!(!after.contains_key("E0000002"));
    one_account_per_login(&scim);

    // And it is settled: the next run has nothing to do.
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["unchanged"], 3, "{r}");
    assert_eq!(by_external_id(&scim).len(), 3);
}

#[test]
fn with_rehire_conflict_a_soft_deleted_account_is_reported_not_reused() {
    let scim = ScimServer::start();
    let proxy = soft_deleting(&scim);
    let p = Project::at(&proxy.base_url, &scim.token, "on_missing = \"delete\"\nmax_deactivations = \"100%\"\nrehire = \"conflict\"", "");
    let all = rows(2);
    p.export("employees_2026-01-01.csv", &all);
    sync_ok(&p, "day 1");
    p.export("employees_2026-01-02.csv", &all[1..]);
    sync_ok(&p, "day 2");
    let kept = by_external_id(&scim)["E0000001"].clone();
    assert_eq!(kept["active"], false);

    p.export("employees_2026-01-03.csv", &[row(9, "ann1@example.com", true, "Engineering"), all[1].clone()]);
    let (code, r) = p.sync_json(&[]);
    let errors = r["errors"].to_string();
    assert!(r["counts"]["conflicts"] == 1 || r["counts"]["failed"] == 1, "reported: {r}");
    assert!(errors.contains("rehire") && errors.contains("E0000001"), "says why, naming the kept account's id: {errors} (exit {code})");
    let after = by_external_id(&scim);
    assert_eq!(after.len(), 2, "nothing created: {after:?}");
    assert_eq!(after["E0000001"], kept, "left as it is");
}
