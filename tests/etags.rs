//! Optimistic concurrency against the real scim2-server, which versions its users (ETags)
//! when its ServiceProviderConfig says so: a read-merge-write names the version it read
//! (`If-Match`), and an admin's edit made between the read and the write is read again and
//! kept, never written over. The proxy in front makes the edit at the worst moment (just
//! before the write reaches the server) and records the headers rostersync sent.

use crate::support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rostersync::config::{self, PlatformAuth};
use rostersync::model::{User, UserFields};
use rostersync::plan::Op;
use rostersync::platform::scim::ScimClient;
use rostersync::platform::{OpOutcome, PlatformError};
use rostersync::retry::Budget;
use serde_json::{Value, json};
use support::fault_proxy::{Fault, FaultProxy, Seen};
use support::scim::{ScimServer, TOKEN};

const TOKEN_ENV: &str = "ROSTERSYNC_TEST_ETAG_TOKEN";

fn platform(base: &str) -> config::Platform {
    // SAFETY: every test sets the same value before any client reads it.
    unsafe { std::env::set_var(TOKEN_ENV, TOKEN) };
    config::Platform {
        base_url: base.parse().unwrap(),
        auth: PlatformAuth::Bearer { token: TOKEN_ENV.into() },
        max_concurrency: 2,
        timeout: Duration::from_secs(5),
        bulk: false,
        custom_schema: "urn:ietf:params:scim:schemas:extension:rostersync:2.0:User".into(),
        notify_webhook: None,
    }
}

fn user(id: &str, last: &str) -> User {
    User::from(UserFields {
        external_id: id.into(),
        email: Some(format!("{}@example.com", id.to_lowercase()).into()),
        employee_id: Some(id.into()),
        first_name: "Etag".into(),
        last_name: last.into(),
        language: "en".into(),
        active: true,
        manager: None,
        attributes: rostersync::model::Attributes::from([("title".to_string(), "Engineer".to_string())]),
    })
}

/// A server that has no PATCH (so every update is a read-merge-write) and, with `etag`,
/// versions its users.
fn server(etag: bool) -> ScimServer {
    let file = if etag { "spc-no-patch-etag.json" } else { "spc-no-patch.json" };
    let spc = support::repo_root().join("tests/fixtures/scim").join(file);
    ScimServer::start_with(&["--service-provider-config", spc.to_str().unwrap()])
}

async fn apply(client: &ScimClient, ops: Vec<Op>, known: HashMap<String, String>) -> (Result<(), PlatformError>, Vec<OpOutcome>) {
    support::scim::apply_with(client, ops, known, &Budget::for_run(8)).await
}

/// Creates `users` through `client`: external id → platform id.
async fn create(client: &ScimClient, users: &[User]) -> HashMap<String, String> {
    let (r, outcomes) = apply(client, users.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect(), HashMap::new()).await;
    r.unwrap();
    outcomes.iter().map(|o| (o.external_id().to_string(), o.result.as_ref().expect("created").platform_id.clone())).collect()
}

fn update(ids: &HashMap<String, String>, before: &User, after: &User) -> Op {
    Op::Update {
        platform_id: ids[before.external_id.as_str()].clone(),
        user: Box::new(after.clone()),
        adopt: false,
        previous: Some(Box::new(before.clone())),
    }
}

/// An admin's edit straight on the server (not through the proxy): user `path` gets a phone
/// number and a nickname, attributes rostersync does not map. A GET and a PUT, as an admin
/// console would; blocking, so it is done before the proxy forwards what it holds.
fn admin_edit(base: &str, path: &str) {
    let url = format!("{base}{path}");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let out = Command::new("curl").args(["-sS", "-H", &auth, &url]).output().expect("curl");
    let mut held: Value = serde_json::from_slice(&out.stdout).expect("a user");
    held.as_object_mut().unwrap().remove("meta");
    held["phoneNumbers"] = json!([{"value": "+33 1 23 45 67 89", "type": "work"}]);
    held["nickName"] = json!("Set by an admin");
    let out = Command::new("curl")
        .args(["-sS", "-X", "PUT", "-H", &auth, "-H", "Content-Type: application/scim+json", "--data-binary", &held.to_string(), &url])
        .output()
        .expect("curl");
    let back: Value = serde_json::from_slice(&out.stdout).expect("the edited user");
    assert_eq!(back["nickName"], "Set by an admin", "the admin's edit was applied: {back}");
}

fn puts(seen: &[Seen], path: &str) -> Vec<Seen> {
    seen.iter().filter(|s| s.method == "PUT" && s.path == path).cloned().collect()
}

#[tokio::test]
async fn an_edit_between_read_and_write_is_read_again_and_kept() {
    let server = server(true);
    let (base, edited) = (server.base_url.clone(), Arc::new(AtomicBool::new(false)));
    let flag = edited.clone();
    // Just before the first PUT reaches the server, an admin edits that user.
    let proxy = FaultProxy::start(server.port, move |_, method, path| {
        if method == "PUT" && !flag.swap(true, Ordering::AcqRel) {
            admin_edit(&base, path);
        }
        Fault::Pass
    });
    let client = ScimClient::connect(&platform(&proxy.base_url)).await.expect("connect");
    assert!(client.capabilities().etag && !client.capabilities().patch);
    let before = user("C1", "Before");
    let ids = create(&client, std::slice::from_ref(&before)).await;
    let after = user("C1", "After");

    let (r, outcomes) = apply(&client, vec![update(&ids, &before, &after)], ids.clone()).await;
    r.unwrap();
    assert!(outcomes[0].result.is_ok(), "{:?}", outcomes[0].result);
    assert!(edited.load(Ordering::Acquire), "the admin edited the user mid-write");

    let path = format!("/Users/{}", ids["C1"]);
    let held = server.get(&path);
    assert_eq!(held["name"]["familyName"], "After", "rostersync's change landed: {held}");
    assert_eq!(held["nickName"], "Set by an admin", "the admin's edit survived: {held}");
    assert_eq!(held["phoneNumbers"][0]["value"], "+33 1 23 45 67 89", "{held}");
    // The first write named the version read before the edit and was refused; the second,
    // after reading again, named the new one.
    let writes = puts(&proxy.seen(), &path);
    assert_eq!(writes.len(), 2, "one refused write, one that landed");
    let versions: Vec<String> = writes.iter().map(|s| s.header("If-Match").expect("If-Match on every PUT")).collect();
    assert_ne!(versions[0], versions[1], "the retry names the version read after the edit");
    assert_eq!(held["meta"]["version"], json!(bump(&versions[1])), "the landed write was applied on the version it named");
}

/// scim2-server's versions count writes (`W/"n"`): the version after one more write.
fn bump(version: &str) -> String {
    let n: u64 = version.trim_start_matches("W/").trim_matches('"').parse().expect("W/\"n\"");
    format!("W/\"{}\"", n + 1)
}

#[tokio::test]
async fn an_account_that_keeps_changing_fails_alone() {
    let server = server(true);
    let client_for_ids = ScimClient::connect(&platform(&server.base_url)).await.expect("connect");
    let (a, b) = (user("K1", "Before"), user("K2", "Before"));
    let ids = create(&client_for_ids, &[a.clone(), b.clone()]).await;
    let busy = format!("/Users/{}", ids["K1"]);
    // Every write to K1 meets a newer version (as if a script rewrote it each time).
    let target = busy.clone();
    let proxy = FaultProxy::start(
        server.port,
        move |_, method, path| if method == "PUT" && path == target { Fault::Status(412) } else { Fault::Pass },
    );
    let client = ScimClient::connect(&platform(&proxy.base_url)).await.expect("connect");
    let (a2, b2) = (user("K1", "After"), user("K2", "After"));

    let (r, outcomes) = apply(&client, vec![update(&ids, &a, &a2), update(&ids, &b, &b2)], ids.clone()).await;
    r.expect("no retry budget was spent on a version conflict");
    let by_id: HashMap<&str, &OpOutcome> = outcomes.iter().map(|o| (o.external_id(), o)).collect();
    let failure = by_id["K1"].result.as_ref().expect_err("K1 keeps changing");
    assert_eq!(failure.status, Some(412));
    assert!(failure.message.contains("user K1") && failure.message.contains("3 attempts"), "{}", failure.message);
    assert!(by_id["K2"].result.is_ok(), "the others go on: {:?}", by_id["K2"].result);
    assert_eq!(puts(&proxy.seen(), &busy).len(), 3, "bounded: three reads and writes");
    assert_eq!(server.get(&busy)["name"]["familyName"], "Before", "nothing written over");
    assert_eq!(server.get(&format!("/Users/{}", ids["K2"]))["name"]["familyName"], "After");
}

#[tokio::test]
async fn without_etags_writes_are_unconditional() {
    let server = server(false);
    let proxy = FaultProxy::start(server.port, |_, _, _| Fault::Pass);
    let client = ScimClient::connect(&platform(&proxy.base_url)).await.expect("connect");
    assert!(!client.capabilities().etag);
    let before = user("U1", "Before");
    let ids = create(&client, std::slice::from_ref(&before)).await;
    let (r, outcomes) = apply(&client, vec![update(&ids, &before, &user("U1", "After"))], ids.clone()).await;
    r.unwrap();
    assert!(outcomes[0].result.is_ok(), "{:?}", outcomes[0].result);
    let path = format!("/Users/{}", ids["U1"]);
    let writes = puts(&proxy.seen(), &path);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].header("If-Match"), None, "no version to name");
    assert_eq!(server.get(&path)["name"]["familyName"], "After");
}
