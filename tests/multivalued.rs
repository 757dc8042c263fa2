//! Multi-valued attributes are merged, not replaced, against the real scim2-server:
//! rostersync owns one email per person (type work, primary); a home email or a phone number
//! the platform holds stays when that email changes, whether the write is a PATCH, an
//! adoption's full write, or a read-merge-write on a server without PATCH.

use crate::support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use rostersync::config::{self, PlatformAuth};
use rostersync::model::{User, UserFields};
use rostersync::plan::Op;
use rostersync::platform::OpOutcome;
use rostersync::platform::scim::ScimClient;
use rostersync::retry::Budget;
use serde_json::{Value, json};
use support::project::{Project, row, rows};
use support::scim::{ScimServer, TOKEN};

const TOKEN_ENV: &str = "ROSTERSYNC_TEST_MULTIVALUED_TOKEN";
const HOME: &str = "ann.private@home.example";

/// A PATCH straight to the server, as an admin console would.
fn admin_patch(scim: &ScimServer, path: &str, ops: Value) {
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PATCH",
            "-H",
            &format!("Authorization: Bearer {}", scim.token),
            "-H",
            "Content-Type: application/scim+json",
            "--data-binary",
            &body.to_string(),
            &format!("{}{path}", scim.base_url),
        ])
        .output()
        .expect("curl");
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(code.starts_with('2'), "admin PATCH {path}: HTTP {code}");
}

fn add_home_email_and_phone(scim: &ScimServer, path: &str) {
    admin_patch(
        scim,
        path,
        json!([
            {"op": "add", "path": "emails", "value": [{"value": HOME, "type": "home"}]},
            {"op": "add", "path": "phoneNumbers", "value": [{"value": "+33 6 12 34 56 78", "type": "mobile"}]},
        ]),
    );
}

/// The account's emails as (value, type), sorted.
fn emails(u: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = u["emails"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["value"].as_str().unwrap_or_default().to_lowercase(), e["type"].as_str().unwrap_or_default().to_string()))
        .collect();
    v.sort();
    v
}

fn work_and_home(work: &str) -> Vec<(String, String)> {
    let mut v = vec![(work.to_string(), "work".to_string()), (HOME.to_string(), "home".to_string())];
    v.sort();
    v
}

fn account_of(scim: &ScimServer, external_id: &str) -> Value {
    scim.users().into_iter().find(|u| u["externalId"] == external_id).unwrap_or_else(|| panic!("no account for {external_id}"))
}

#[test]
fn a_home_email_stays_when_the_work_email_changes_in_the_file() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    p.export("employees_2026-01-01.csv", &rows(2));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    let path = format!("/Users/{}", account_of(&scim, "E0000001")["id"].as_str().unwrap());
    add_home_email_and_phone(&scim, &path);

    p.export("employees_2026-01-02.csv", &[row(1, "ann.one@example.com", true, "Engineering"), rows(2)[1].clone()]);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["updated"], 1, "{r}");
    let held = scim.get(&path);
    assert_eq!(emails(&held), work_and_home("ann.one@example.com"), "the new work email and the home one: {held}");
    assert_eq!(held["userName"], "ann.one@example.com");
    assert_eq!(held["phoneNumbers"][0]["value"], "+33 6 12 34 56 78", "{held}");
    let primary: Vec<&Value> = held["emails"].as_array().unwrap().iter().filter(|e| e["primary"] == true).collect();
    assert_eq!(primary.len(), 1, "one primary: {held}");
    assert_eq!(primary[0]["value"], "ann.one@example.com");

    // The next run sees no drift in the home email: nothing to do.
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["unchanged"], 2, "{r}");
    assert_eq!(emails(&scim.get(&path)), work_and_home("ann.one@example.com"));
}

fn platform(base: &str) -> config::Platform {
    platform_with(base, false)
}

fn platform_with(base: &str, bulk: bool) -> config::Platform {
    // SAFETY: every test sets the same value before any client reads it.
    unsafe { std::env::set_var(TOKEN_ENV, TOKEN) };
    config::Platform {
        base_url: base.parse().unwrap(),
        auth: PlatformAuth::Bearer { token: TOKEN_ENV.into() },
        max_concurrency: 2,
        timeout: Duration::from_secs(5),
        bulk,
        custom_schema: "urn:ietf:params:scim:schemas:extension:rostersync:2.0:User".into(),
        notify_webhook: None,
    }
}

fn user(id: &str, email: &str) -> User {
    User::from(UserFields {
        external_id: id.into(),
        email: Some(email.into()),
        employee_id: Some(id.into()),
        first_name: "Multi".into(),
        last_name: "Valued".into(),
        language: "en".into(),
        active: true,
        manager: None,
        attributes: Default::default(),
    })
}

async fn apply(client: &ScimClient, ops: Vec<Op>) -> Vec<OpOutcome> {
    let (r, outcomes) = support::scim::apply_with(client, ops, HashMap::new(), &Budget::for_run(8)).await;
    r.expect("push");
    for o in &outcomes {
        assert!(o.result.is_ok(), "{}: {:?}", o.external_id(), o.result);
    }
    outcomes
}

/// An account rostersync never wrote (a first sync adopts it, content unknown), with
/// `emails` as an admin made them; adopted for `user`: the emails it keeps.
async fn adopted_emails(scim: &ScimServer, client: &ScimClient, made: Value, u: &User) -> Value {
    let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": u.external_id.as_str(),
                      "userName": u.user_name(), "emails": made, "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}]});
    let id = scim.post("/Users", &body)["id"].as_str().expect("created").to_string();
    apply(client, vec![Op::Update { platform_id: id.clone(), user: Box::new(u.clone()), adopt: true, previous: None }]).await;
    let held = scim.get(&format!("/Users/{id}"));
    assert_eq!(held["phoneNumbers"][0]["value"], "+1 555 0100", "{held}");
    held
}

#[tokio::test]
async fn an_adoption_replaces_only_the_work_email_with_or_without_patch() {
    for spc in [None, Some("spc-no-patch.json")] {
        let scim = match spc {
            None => ScimServer::start(),
            Some(f) => {
                let file = support::repo_root().join("tests/fixtures/scim").join(f);
                ScimServer::start_with(&["--service-provider-config", file.to_str().unwrap()])
            }
        };
        let client = ScimClient::connect(&platform(&scim.base_url)).await.expect("connect");
        // A typed work email (the old one) and a home one: the work one is replaced.
        let u = user("M1", "m1.new@example.com");
        let made = json!([{"value": "m1.old@example.com", "type": "work", "primary": true}, {"value": HOME, "type": "home"}]);
        let held = adopted_emails(&scim, &client, made, &u).await;
        assert_eq!(emails(&held), work_and_home("m1.new@example.com"), "{spc:?}: {held}");
        // A hand-made account whose emails have no type (no work email to address): ours
        // is added, the other stays, ours is not doubled.
        let u = user("M2", "m2@example.com");
        let made = json!([{"value": "M2@example.com"}, {"value": HOME}]);
        let held = adopted_emails(&scim, &client, made, &u).await;
        let values: Vec<String> = emails(&held).into_iter().map(|(v, _)| v).collect();
        assert_eq!(values, vec![HOME.to_string(), "m2@example.com".to_string()], "{spc:?}: {held}");
    }
}

#[tokio::test]
async fn updates_on_a_server_with_bulk_and_without_patch_keep_the_other_emails() {
    // A bulk PUT of rostersync's resource would replace the whole user: updates go alone,
    // as read-merge-writes.
    let spc = support::repo_root().join("tests/fixtures/scim/spc-bulk-no-patch.json");
    let scim = ScimServer::start_with(&["--service-provider-config", spc.to_str().unwrap()]);
    let client = ScimClient::connect(&platform_with(&scim.base_url, true)).await.expect("connect");
    assert!(client.capabilities().bulk.is_some() && !client.capabilities().patch);
    let before = [user("B1", "b1@example.com"), user("B2", "b2@example.com")];
    let outcomes = apply(&client, before.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect()).await;
    let ids: HashMap<String, String> =
        outcomes.iter().map(|o| (o.external_id().to_string(), o.result.as_ref().unwrap().platform_id.clone())).collect();
    for id in ids.values() {
        let path = format!("/Users/{id}");
        let mut held = scim.get(&path);
        held["emails"].as_array_mut().unwrap().push(json!({"value": HOME, "type": "home"}));
        held["phoneNumbers"] = json!([{"value": "+1 555 0199", "type": "work"}]);
        held.as_object_mut().unwrap().remove("meta");
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-H", &format!("Authorization: Bearer {}", scim.token)])
            .args(["-H", "Content-Type: application/scim+json", "--data-binary", &held.to_string(), &format!("{}{path}", scim.base_url)])
            .output()
            .expect("curl");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with('2'), "admin PUT {path}");
    }
    let ops = before
        .iter()
        .map(|b| {
            let after = user(&b.external_id, &format!("{}.new@example.com", b.external_id.to_lowercase()));
            Op::Update {
                platform_id: ids[b.external_id.as_str()].clone(),
                user: Box::new(after),
                adopt: false,
                previous: Some(Box::new(b.clone())),
            }
        })
        .collect();
    apply(&client, ops).await;
    for b in &before {
        let held = scim.get(&format!("/Users/{}", ids[b.external_id.as_str()]));
        let new = format!("{}.new@example.com", b.external_id.to_lowercase());
        assert_eq!(emails(&held), work_and_home(&new), "{held}");
        assert_eq!(held["phoneNumbers"][0]["value"], "+1 555 0199", "{held}");
    }
}
