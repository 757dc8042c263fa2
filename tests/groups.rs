//! Groups from attributes (`[groups]` in a mapping), end to end through the CLI against the
//! real scim2-server over several days' exports: groups made with exactly the right members,
//! a transfer moving a person, leavers leaving, a group of the same name that rostersync did
//! not create left untouched, member PATCHes chunked, a second identical run sending no group
//! write, a dry run and `explain` showing the changes and sending none. The requests go through a
//! pass-through proxy (`support::fault_proxy`) that records what was sent.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};

use support::fault_proxy::{Fault, FaultProxy, Seen};
use support::project::{Project, row};
use support::scim::ScimServer;

/// The project with `[groups]` on the demo mapping's Department column.
fn project(url: &str, scim: &ScimServer, groups: &str) -> Project {
    project_at(url, &scim.token, groups)
}

/// `project` against any SCIM server: its root URL and bearer token.
fn project_at(url: &str, token: &str, groups: &str) -> Project {
    // Leavers of a ten-person connector are a large share of it: not what is tested here.
    let p = Project::at(url, token, "max_deactivations = \"50%\"", "");
    let mapping = p.path().join("mappings/demo.toml");
    let mut text = std::fs::read_to_string(&mapping).unwrap();
    text.push_str("\n[groups]\n");
    text.push_str(groups);
    std::fs::write(&mapping, text).unwrap();
    p
}

/// Every group on the server: displayName → (id, member ids).
fn groups(scim: &ScimServer) -> BTreeMap<String, Vec<(String, BTreeSet<String>)>> {
    let mut out: BTreeMap<String, Vec<(String, BTreeSet<String>)>> = BTreeMap::new();
    for g in support::all_pages(100, |path| scim.get(&path.replacen("/Users", "/Groups", 1))) {
        let members =
            g["members"].as_array().map(|m| m.iter().filter_map(|v| v["value"].as_str().map(str::to_string)).collect()).unwrap_or_default();
        out.entry(g["displayName"].as_str().unwrap().to_string()).or_default().push((g["id"].as_str().unwrap().to_string(), members));
    }
    out
}

/// The members of the one group of that name, as the unique ids of their accounts.
fn members(scim: &ScimServer, name: &str) -> BTreeSet<String> {
    let all = groups(scim);
    let found = all.get(name).unwrap_or_else(|| panic!("no group {name}: {all:?}"));
    assert_eq!(found.len(), 1, "one group named {name}: {found:?}");
    let ids = platform_to_external(scim);
    found[0].1.iter().map(|p| ids.get(p).cloned().unwrap_or_else(|| format!("stranger {p}"))).collect()
}

fn platform_to_external(scim: &ScimServer) -> BTreeMap<String, String> {
    scim.users().iter().map(|u| (u["id"].as_str().unwrap().to_string(), u["externalId"].as_str().unwrap_or_default().to_string())).collect()
}

fn ids(list: &[u32]) -> BTreeSet<String> {
    list.iter().map(|i| format!("E{i:07}")).collect()
}

/// Group writes the proxy saw from index `from` on.
fn group_writes(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter().filter(|s| s.path.contains("/Groups") && s.method != "GET").collect()
}

fn person(id: u32, active: bool, dept: &str) -> String {
    row(id, &format!("ann{id}@example.com"), active, dept)
}

#[test]
fn groups_follow_departments_over_several_days() {
    let scim = ScimServer::start();
    let proxy = FaultProxy::start(scim.port, |_, _, _| Fault::Pass);
    let p = project(&proxy.base_url, &scim, "from = [\"Department\"]\nprefix = \"hr-\"\nchunk = 2\n");
    // Someone else's group with a name the connector will want, holding someone else.
    let stranger =
        scim.post("/Users", &serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "admin"}));
    let stranger = stranger["id"].as_str().unwrap().to_string();
    scim.post(
        "/Groups",
        &serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "hr-Finance",
            "members": [{"value": stranger}]}),
    );
    let foreign_before = groups(&scim)["hr-Finance"].clone();

    // Day 1: five engineers (over the chunk of 2), two in sales, one in finance (a name held
    // by the foreign group), a leaver in sales, someone without a department.
    let day1 = vec![
        person(1, true, "Engineering"),
        person(2, true, "Engineering"),
        person(3, true, "Engineering"),
        person(4, true, "Engineering"),
        person(5, true, "Engineering"),
        person(6, true, "Sales"),
        person(7, true, "Sales"),
        person(8, true, "Finance"),
        person(9, false, "Sales"),
        person(10, true, ""),
    ];
    p.export("employees_2026-03-01.csv", &day1);
    let (code, r) = p.sync_json(&[]);
    // The conflict is reported, and the run is still a success: nothing was sent for it.
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["groups"]["created"], 2, "{r}");
    assert_eq!(r["groups"]["added"], 7, "{r}");
    assert_eq!(r["groups"]["conflicts"], serde_json::json!(["hr-Finance"]), "{r}");
    assert!(r["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("\"hr-Finance\"")), "{r}");
    assert_eq!(members(&scim, "hr-Engineering"), ids(&[1, 2, 3, 4, 5]));
    assert_eq!(members(&scim, "hr-Sales"), ids(&[6, 7]));
    assert_eq!(groups(&scim)["hr-Finance"], foreign_before, "the foreign group is untouched");
    assert_eq!(groups(&scim).len(), 3, "{:?}", groups(&scim));
    // Chunked: no PATCH carries more than 2 members; Engineering's 5 took 3 PATCHes.
    let seen = proxy.seen();
    let patches: Vec<serde_json::Value> =
        group_writes(&seen).iter().filter(|s| s.method == "PATCH").map(|s| serde_json::from_slice(&s.body).unwrap()).collect();
    let sizes: Vec<usize> = patches
        .iter()
        .map(|b| {
            b["Operations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| if o["op"] == "add" { o["value"].as_array().unwrap().len() } else { 1 })
                .sum::<usize>()
        })
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 7, "{patches:?}");
    assert!(sizes.iter().all(|n| *n <= 2), "{sizes:?}");
    assert_eq!(sizes.len(), 4, "3 PATCHes for 5 engineers, 1 for 2 in sales: {sizes:?}");

    // Day 2, the same people again: a second identical run sends no group write.
    let writes_before = group_writes(&proxy.seen()).len();
    let state_before = groups(&scim);
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["groups"]["created"], 0, "{r}");
    assert_eq!(r["groups"]["added"].as_u64().unwrap() + r["groups"]["removed"].as_u64().unwrap(), 0, "{r}");
    assert_eq!(group_writes(&proxy.seen()).len(), writes_before, "no group write on an unchanged file");
    assert_eq!(groups(&scim), state_before);

    // Day 3: engineer 2 moves to sales, engineer 3 leaves (inactive), sales 7 is gone from
    // the file (deactivated), and a new hire joins engineering.
    let mut day3 = day1.clone();
    day3[1] = person(2, true, "Sales");
    day3[2] = person(3, false, "Engineering");
    day3.remove(6);
    day3.push(person(11, true, "Engineering"));
    p.export("employees_2026-03-03.csv", &day3);
    // A dry run first: it shows the changes and sends nothing.
    let writes_before = group_writes(&proxy.seen()).len();
    let (code, r) = p.sync_json(&["--dry-run"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((r["groups"]["added"].as_u64(), r["groups"]["removed"].as_u64()), (Some(2), Some(3)), "{r}");
    let changes = r["groups"]["changes"].as_array().unwrap();
    let eng = changes.iter().find(|c| c["group"] == "hr-Engineering").expect("engineering changes");
    assert_eq!(eng["add"], serde_json::json!(["E0000011"]), "a dry run names the new hire by id: {r}");
    assert_eq!(group_writes(&proxy.seen()).len(), writes_before, "a dry run sends no group write");
    assert_eq!(groups(&scim), state_before);
    // The human summary says it too, and `explain` shows one person's part: the transfer.
    let out = p.run(&["sync", "acme", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("groups   would be created 0, members would be added 2, would be removed 3"), "{text}");
    assert!(text.contains("hr-Sales: +E0000002 -E0000007"), "{text}");
    let out = p.run(&["--json", "explain", "acme", "E0000002"]);
    let x: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        x["groups"]["changes"],
        serde_json::json!([{"group": "hr-Engineering", "remove": ["E0000002"]}, {"group": "hr-Sales", "add": ["E0000002"]}]),
        "{x}"
    );
    assert_eq!(group_writes(&proxy.seen()).len(), writes_before, "neither sends a group write");

    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((r["groups"]["added"].as_u64(), r["groups"]["removed"].as_u64()), (Some(2), Some(3)), "{r}");
    assert_eq!(members(&scim, "hr-Engineering"), ids(&[1, 4, 5, 11]));
    assert_eq!(members(&scim, "hr-Sales"), ids(&[2, 6]));
    assert_eq!(groups(&scim)["hr-Finance"], foreign_before, "the foreign group is still untouched");

    // Day 4: everyone leaves sales; its group stays, empty, and is never deleted.
    let day4: Vec<String> = vec![
        person(1, true, "Engineering"),
        person(4, true, "Engineering"),
        person(5, true, "Engineering"),
        person(11, true, "Engineering"),
        person(2, true, "Engineering"),
        person(6, false, "Sales"),
        person(8, true, "Finance"),
        person(10, true, ""),
    ];
    p.export("employees_2026-03-04.csv", &day4);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(members(&scim, "hr-Engineering"), ids(&[1, 2, 4, 5, 11]));
    assert_eq!(members(&scim, "hr-Sales"), BTreeSet::new());
}

#[test]
fn a_mass_change_of_groups_is_held_until_allowed() {
    let scim = ScimServer::start();
    let p = project(&scim.base_url, &scim, "from = [\"department\"]\n");
    let day1: Vec<String> = (1..=20).map(|i| person(i, true, "Engineering")).collect();
    p.export("employees_2026-03-01.csv", &day1);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(members(&scim, "Engineering").len(), 20);
    // A hand edit empties the group: 20 members to add back, over max_updates = 5.
    let gid = groups(&scim)["Engineering"][0].0.clone();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-X", "PATCH", "-H", &format!("Authorization: Bearer {}", scim.token), "-H", "Content-Type: application/scim+json"])
        .args([
            "--data-binary",
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"members","value":[]}]}"#,
        ])
        .arg(format!("{}/Groups/{gid}", scim.base_url))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(members(&scim, "Engineering").len(), 0);
    p.set_last_sync_section("acme", "max_updates = \"5\"");
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 5, "{r}");
    assert_eq!(r["stopped_by"], "group_changes", "{r}");
    assert!(r["message"].as_str().unwrap().contains("20 group memberships"), "{r}");
    assert_eq!(members(&scim, "Engineering").len(), 0, "nothing sent to the groups");
    let (code, r) = p.sync_json(&["--force", "--allow-mass-change", "--reason", "repair"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(members(&scim, "Engineering").len(), 20);
}

/// The created-groups record, on both state backends: recorded, replaced, forgotten, per
/// connector.
async fn created_groups_round_trip(state: rostersync::config::State) {
    use rostersync::state::CreatedGroup;
    use rostersync::state::prelude::*;
    let store = rostersync::state::open(&state).await.unwrap();
    assert!(store.created_groups("acme").await.unwrap().is_empty());
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-01T06:00:00.123Z").unwrap().with_timezone(&chrono::Utc);
    let g = |name: &str, id: &str| CreatedGroup {
        display_name: name.into(),
        value: name.trim_start_matches("hr-").into(),
        platform_id: id.into(),
        created_at: at,
    };
    store.record_group("acme", &g("hr-Sales", "g1")).await.unwrap();
    store.record_group("acme", &g("hr-R&D \"quoted\"", "g2")).await.unwrap();
    store.record_group("other", &g("hr-Sales", "g9")).await.unwrap();
    // Deleted by hand and created again: the same name, a new id.
    store.record_group("acme", &g("hr-Sales", "g3")).await.unwrap();
    let got = store.created_groups("acme").await.unwrap();
    assert_eq!(got, vec![g("hr-R&D \"quoted\"", "g2"), g("hr-Sales", "g3")]);
    assert_eq!(got[1].value, "Sales");
    store.forget_group("acme", "hr-Sales").await.unwrap();
    assert_eq!(store.created_groups("acme").await.unwrap(), vec![g("hr-R&D \"quoted\"", "g2")]);
    assert_eq!(store.created_groups("other").await.unwrap(), vec![g("hr-Sales", "g9")]);
}

fn state_at(url: String, password: Option<rostersync::config::StatePassword>) -> rostersync::config::State {
    rostersync::config::State {
        url,
        password,
        ca_file: None,
        lease_ttl: rostersync::config::DEFAULT_LEASE_TTL,
        audit_retention: rostersync::config::DEFAULT_AUDIT_RETENTION,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_groups_are_kept_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    created_groups_round_trip(state_at(format!("sqlite://{}/state.db", dir.path().display()), None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_groups_are_kept_on_postgres() {
    let pg = support::postgres::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pgpass");
    std::fs::write(&pw, support::postgres::PASSWORD).unwrap();
    created_groups_round_trip(state_at(pg.create_db("rostersync"), Some(rostersync::config::StatePassword::File(pw)))).await;
}

fn curl_delete(scim: &ScimServer, path: &str) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-f", "-X", "DELETE", "-H", &format!("Authorization: Bearer {}", scim.token)])
        .arg(format!("{}{path}", scim.base_url))
        .output()
        .unwrap();
    assert!(out.status.success(), "DELETE {path}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_group_carrying_our_marker_is_ours_and_one_deleted_by_hand_is_made_again() {
    let scim = ScimServer::start();
    let p = project(&scim.base_url, &scim, "from = [\"department\"]\n");
    let admin = scim.post("/Users", &serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "admin"}));
    let schema = "urn:ietf:params:scim:schemas:core:2.0:Group";
    // A create of ours whose answer was lost (or a lost state): our marker, a stray member.
    let ours = scim.post(
        "/Groups",
        &serde_json::json!({"schemas": [schema], "displayName": "Sales", "externalId": "rostersync:acme:Sales",
            "members": [{"value": admin["id"]}]}),
    );
    // Another connector's group of a name this one wants: not ours.
    scim.post("/Groups", &serde_json::json!({"schemas": [schema], "displayName": "Ops", "externalId": "rostersync:other:Ops"}));
    p.export("employees_2026-03-01.csv", &[person(1, true, "Sales"), person(2, true, "Sales"), person(3, true, "Ops")]);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["groups"]["created"], 0, "{r}");
    assert_eq!(r["groups"]["conflicts"], serde_json::json!(["Ops"]), "{r}");
    let all = groups(&scim);
    assert_eq!(all["Sales"].len(), 1, "no second Sales group: {all:?}");
    assert_eq!(all["Sales"][0].0, ours["id"].as_str().unwrap(), "the marked group was taken");
    assert_eq!(members(&scim, "Sales"), ids(&[1, 2]), "its stray member removed");
    assert!(all["Ops"][0].1.is_empty(), "the other connector's group untouched");

    // Deleted by hand: forgotten, and made again with its members.
    curl_delete(&scim, &format!("/Groups/{}", all["Sales"][0].0));
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["groups"]["created"], 1, "{r}");
    assert_eq!(members(&scim, "Sales"), ids(&[1, 2]));
    assert_ne!(groups(&scim)["Sales"][0].0, all["Sales"][0].0);
}

/// The second server (django-scim2: no Bulk, its own PATCH support) keeps the same groups.
#[test]
fn groups_on_django_scim2() {
    let b = support::scim_b::DjangoScim::start();
    let proxy = FaultProxy::start(b.port, |_, _, _| Fault::Pass);
    let p = project_at(&format!("{}/scim/v2", proxy.base_url), &b.token, "from = [\"department\"]\nchunk = 2\n");
    let day1: Vec<String> = vec![person(1, true, "Sales"), person(2, true, "Sales"), person(3, true, "Sales"), person(4, true, "Ops")];
    p.export("employees_2026-03-01.csv", &day1);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    let members_of = |name: &str| -> BTreeSet<String> {
        let by_id: BTreeMap<String, String> = b
            .users()
            .iter()
            .map(|u| (u["id"].to_string().trim_matches('"').to_string(), u["externalId"].as_str().unwrap_or_default().to_string()))
            .collect();
        let all = b.get("/Groups");
        let g = all["Resources"].as_array().unwrap().iter().find(|g| g["displayName"] == name).unwrap_or_else(|| panic!("{all}"));
        g["members"]
            .as_array()
            .map(|ms| ms.iter().map(|m| by_id.get(m["value"].to_string().trim_matches('"')).cloned().unwrap_or_default()).collect())
            .unwrap_or_default()
    };
    assert_eq!(members_of("Sales"), ids(&[1, 2, 3]), "{r}");
    assert_eq!(members_of("Ops"), ids(&[4]));
    let day2 = vec![person(1, true, "Sales"), person(2, true, "Ops"), person(3, false, "Sales"), person(4, true, "Ops")];
    p.export("employees_2026-03-02.csv", &day2);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(members_of("Sales"), ids(&[1]), "{r}");
    assert_eq!(members_of("Ops"), ids(&[2, 4]));
    // It refused the removal by filter; the value list, sent only then, did it.
    let removals: Vec<serde_json::Value> = group_writes(&proxy.seen())
        .iter()
        .filter(|s| s.method == "PATCH")
        .flat_map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).unwrap()["Operations"].as_array().unwrap().clone())
        .filter(|o| o["op"] == "remove")
        .collect();
    assert!(removals.first().is_some_and(|o| o["path"].as_str().unwrap().starts_with("members[value eq ")), "{removals:?}");
    assert!(removals.iter().any(|o| o["path"] == "members" && o["value"].is_array()), "{removals:?}");
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["groups"]["added"].as_u64().unwrap() + r["groups"]["removed"].as_u64().unwrap(), 0, "{r}");
}
