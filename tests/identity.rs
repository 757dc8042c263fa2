//! One person, one platform account (issue 14), end to end through the CLI against the real
//! scim2-server: a re-hire takes the leaver's account in one run and keeps it active; an
//! account with another externalId is never taken over; a second connector does not take
//! the first one's people unless `adopt_from` names it; and the counts add up.

use crate::support;

use std::collections::HashMap;

use serde_json::{Value, json};
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

/// Every person of a run, each in one count.
fn people(r: &Value) -> u64 {
    ["created", "adopted", "rekeyed", "updated", "deactivated", "deleted", "unchanged", "failed", "conflicts"]
        .iter()
        .map(|k| r["counts"][k].as_u64().unwrap_or_else(|| panic!("no count {k} in {r}")))
        .sum::<u64>()
        // People given no account by the lifecycle (absent from the JSON when none).
        + r["counts"]["skipped"].as_u64().unwrap_or(0)
}

fn counts(r: &Value, keys: &[(&str, u64)]) {
    for (k, want) in keys {
        assert_eq!(r["counts"][k], *want, "{k} in {r}");
    }
}

#[test]
fn a_rehire_takes_the_leavers_account_in_one_run_and_stays_active() {
    for on_missing in ["deactivate", "delete"] {
        let scim = ScimServer::start();
        let p = Project::new(&scim, &format!("on_missing = \"{on_missing}\"\nmax_deactivations = \"100%\""));
        p.export("employees_2026-01-01.csv", &rows(3));
        let (code, r) = p.sync_json(&[]);
        assert_eq!(code, 0, "{r}");
        let before = by_external_id(&scim);
        let leavers_account = before["E0000001"]["id"].clone();

        // E1 left; they come back as E9 with the same email. E2 changes department.
        let back = vec![row(9, "ann1@example.com", true, "Engineering"), row(2, "ann2@example.com", true, "Sales"), rows(3)[2].clone()];
        p.export("employees_2026-01-02.csv", &back);
        let (code, r) = p.sync_json(&[]);
        assert_eq!(code, 0, "{on_missing}: {r}");
        counts(
            &r,
            &[("rekeyed", 1), ("created", 0), ("updated", 1), ("deactivated", 0), ("deleted", 0), ("unchanged", 2), ("conflicts", 0)],
        );
        assert_eq!(people(&r), 3 + 1, "{on_missing}: rows + the one absentee, each once: {r}");

        let after = by_external_id(&scim);
        assert_eq!(after.len(), 3, "{on_missing}: one account per person, none created: {after:?}");
        let e9 = &after["E0000009"];
        assert_eq!(e9["id"], leavers_account, "{on_missing}: the leaver's account, re-keyed");
        assert_eq!(e9["active"], true, "{on_missing}: the re-hire is active");
        assert_eq!(e9["userName"], "ann1@example.com");
        assert!(!after.contains_key("E0000001"));
        assert_eq!(after["E0000003"], before["E0000003"], "{on_missing}: nobody else touched");

        // The next run sees them as they are: nothing to do, nobody absent.
        let mut same = back.clone();
        same.reverse();
        p.export("employees_2026-01-03.csv", &same);
        let (code, r) = p.sync_json(&[]);
        assert_eq!(code, 0, "{r}");
        counts(&r, &[("unchanged", 3), ("rekeyed", 0), ("deactivated", 0), ("deleted", 0)]);
        assert_eq!(people(&r), 3, "{r}");
        assert_eq!(by_external_id(&scim)["E0000009"]["active"], true);
    }
}

#[test]
fn a_rehire_of_someone_inactive_in_the_file_and_rehire_conflict() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "rehire = \"conflict\"\nmax_deactivations = \"100%\"");
    p.export("employees_2026-01-01.csv", &rows(2));
    assert_eq!(p.sync_json(&[]).0, 0);
    let before = by_external_id(&scim);

    // E1 is listed as a leaver, and their new id E9 carries the same email.
    let file = vec![row(1, "ann1@example.com", false, "Engineering"), row(9, "ann1@example.com", true, "Engineering"), rows(2)[1].clone()];
    p.export("employees_2026-01-02.csv", &file);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("conflicts", 1), ("rekeyed", 0), ("created", 0), ("deactivated", 1), ("unchanged", 1)]);
    assert_eq!(people(&r), r["counts"]["valid"].as_u64().unwrap(), "{r}");
    let msg = r["errors"].to_string();
    assert!(msg.contains("E0000009") && msg.contains("E0000001") && msg.contains("rehire"), "both ids: {msg}");
    let after = by_external_id(&scim);
    assert_eq!(after.len(), 2);
    assert_eq!(after["E0000001"]["active"], false, "the leaver is deactivated as usual");
    assert_eq!(after["E0000001"]["id"], before["E0000001"]["id"]);

    // With re-keying (the default), the same file moves the account and reactivates it.
    p.set_last_sync_section("acme", "max_deactivations = \"100%\"");
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("rekeyed", 1), ("conflicts", 0), ("created", 0)]);
    assert_eq!(people(&r), r["counts"]["valid"].as_u64().unwrap(), "{r}");
    let after = by_external_id(&scim);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after["E0000009"]["id"], before["E0000001"]["id"]);
    assert_eq!(after["E0000009"]["active"], true);

    // The leaver's row stays in the export: they have no account of their own now (an old
    // leaver: skipped, no account made), and the new id's is left alone — no conflict,
    // nothing written.
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("unchanged", 2), ("skipped", 1), ("conflicts", 0), ("created", 0), ("failed", 0)]);
    assert_eq!(people(&r), 3, "{r}");
    assert_eq!(by_external_id(&scim), after);
}

#[test]
fn a_foreign_account_with_the_same_user_name_is_never_taken_over() {
    let scim = ScimServer::start();
    let admin = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": "admin-7", "userName": "ann2@example.com",
                       "name": {"givenName": "Root", "familyName": "Admin"}, "title": "Platform admin"});
    // On a first sync (existing users listed) and on a 409 of a later create.
    for first in [true, false] {
        let p = Project::new(&scim, "");
        let foreign = if first { scim.post("/Users", &admin) } else { Value::Null };
        p.export("employees_2026-01-01.csv", &rows(if first { 3 } else { 1 }));
        let (code, r) = p.sync_json(&[]);
        assert_eq!(code, 0, "{r}");
        let foreign = if first {
            counts(&r, &[("created", 2), ("conflicts", 1), ("adopted", 0)]);
            assert_eq!(people(&r), 3, "{r}");
            foreign
        } else {
            p.export("employees_2026-01-02.csv", &rows(3));
            let (code, r) = p.sync_json(&[]);
            assert_eq!(code, 0, "a conflict needs a person, not a retry: {r}");
            counts(&r, &[("created", 1), ("conflicts", 1), ("adopted", 0), ("unchanged", 1), ("failed", 0)]);
            assert_eq!(people(&r), 3, "{r}");
            let msg = r["errors"].to_string();
            assert!(msg.contains("E0000002") && msg.contains("admin-7"), "both ids: {msg}");
            by_external_id(&scim)["admin-7"].clone()
        };
        let msg = r["errors"].to_string();
        if first {
            assert!(msg.contains("E0000002") && msg.contains("admin-7"), "both ids: {msg}");
        }
        let held = by_external_id(&scim);
        assert_eq!(held["admin-7"], foreign, "first sync {first}: the foreign account is untouched");
        assert_eq!(held["admin-7"]["title"], "Platform admin");
        assert!(!held.contains_key("E0000002"), "nobody rewritten, nothing duplicated");
        // Next project on the same server.
        for u in scim.users() {
            if u["externalId"] != "admin-7" {
                let _ = std::process::Command::new("curl")
                    .args(["-sS", "-X", "DELETE", "-H", &format!("Authorization: Bearer {}", scim.token)])
                    .arg(format!("{}/Users/{}", scim.base_url, u["id"].as_str().unwrap()))
                    .output();
            }
        }
    }
}

#[test]
fn a_second_connector_takes_the_first_ones_people_only_with_adopt_from() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    p.export("employees_2026-01-01.csv", &rows(2));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    let before = by_external_id(&scim);

    p.add_connector("globex", "max_deactivations = \"100%\"");
    let (code, r) = p.sync_json_of("globex", &[]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("conflicts", 2), ("adopted", 0), ("created", 0), ("updated", 0)]);
    assert_eq!(people(&r), 2, "{r}");
    let msg = r["errors"].to_string();
    assert!(msg.contains("acme") && msg.contains("adopt_from"), "{msg}");
    assert_eq!(by_external_id(&scim), before, "acme's people are untouched");

    // Once globex has people of its own, acme's reach it as creates: their 409s find acme's
    // accounts, which are not taken either.
    let own = p.path().join("globex-own.csv");
    std::fs::write(&own, format!("{}\n{}\n", support::project::HEADER, row(5, "ann5@example.com", true, "Sales"))).unwrap();
    let (code, r) = p.sync_json_of("globex", &["--file", own.to_str().unwrap()]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("created", 1)]);
    let both = p.path().join("globex-both.csv");
    let mut body = String::from(support::project::HEADER);
    for r in rows(2).into_iter().chain([row(5, "ann5@example.com", true, "Sales")]) {
        body.push('\n');
        body.push_str(&r);
    }
    std::fs::write(&both, body + "\n").unwrap();
    let (code, r) = p.sync_json_of("globex", &["--file", both.to_str().unwrap()]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("conflicts", 2), ("adopted", 0), ("created", 0), ("unchanged", 1), ("failed", 0)]);
    assert_eq!(people(&r), 3, "{r}");
    assert!(r["errors"].to_string().contains("adopt_from"), "{r}");
    let mut now = by_external_id(&scim);
    now.remove("E0000005");
    assert_eq!(now, before, "acme's people are untouched");

    // A migration names the connector it takes over from.
    p.set_last_sync_section("globex", "adopt_from = [\"acme\"]\nmax_deactivations = \"100%\"");
    let (code, r) = p.sync_json_of("globex", &["--force"]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("adopted", 2), ("conflicts", 0), ("created", 0)]);
    // E5 of globex's own file is absent from this one, and deactivated.
    assert_eq!(people(&r), 2 + 1, "{r}");
    let after = by_external_id(&scim);
    assert_eq!(after.len(), 3, "one account per person: {after:?}");
    for (ext, u) in &before {
        assert_eq!(after[ext]["id"], u["id"], "{ext}: the same account");
    }
}

#[test]
fn a_409_compares_ids_by_the_connectors_rule_case_sensitive_ids_are_not_taken_over() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    // Ids that differ in case are different people for this connector.
    let mapping = p.path().join("mappings/demo.toml");
    let text = std::fs::read_to_string(&mapping).unwrap().replacen(
        "unique_id = \"employee_id\"\n",
        "unique_id = \"employee_id\"\nid_case = \"sensitive\"\n",
        1,
    );
    std::fs::write(&mapping, text).unwrap();
    p.export("employees_2026-01-01.csv", &rows(1));
    assert_eq!(p.sync_json(&[]).0, 0);
    // Someone else's account, with E2's email and an id only the case tells apart.
    let other = scim.post(
        "/Users",
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": "e0000002", "userName": "ann2@example.com",
                "name": {"givenName": "Other", "familyName": "Person"}}),
    );
    p.export("employees_2026-01-02.csv", &rows(2));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    counts(&r, &[("conflicts", 1), ("adopted", 0), ("created", 0), ("unchanged", 1)]);
    let msg = r["errors"].to_string();
    assert!(msg.contains("e0000002") && msg.contains("E0000002"), "both ids: {msg}");
    let held = by_external_id(&scim);
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(held["e0000002"], other, "the other account is untouched");
}
