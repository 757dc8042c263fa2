//! The SCIM client against a second real SCIM server that behaves unlike scim2-server:
//! django-scim2 (tests/support/scim_b.rs says how it differs: no Bulk, PATCH only for some
//! attributes, attributes dropped, externalId not filterable, pages of 50). rostersync
//! adapts to what discovery and the answers say; the tests do not bend to the server.
//!
//! Also the PATCH fallback in front of the first server: a proxy that answers 501 to every
//! PATCH, so updates go read-merge-write and keep what others set (phone numbers).

use crate::support;

use std::collections::HashMap;
use std::sync::Once;
use std::time::Duration;

use rostersync::config::{self, PlatformAuth};
use rostersync::model::{User, UserFields};
use rostersync::plan::{Op, OpKind};
use rostersync::platform::scim::ScimClient;
use rostersync::platform::{OpOutcome, Platform, PlatformError};
use rostersync::retry::Budget;
use serde_json::{Value, json};
use support::fault_proxy::{Fault, FaultProxy};
use support::scim::ScimServer;
use support::scim_b::DjangoScim;

const CUSTOM: &str = "urn:ietf:params:scim:schemas:extension:rostersync:2.0:User";
const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const B_TOKEN_ENV: &str = "ROSTERSYNC_TEST_SCIM_B_TOKEN";
const A_TOKEN_ENV: &str = "ROSTERSYNC_TEST_SCIM_A_TOKEN";

fn env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, to the same values, before any client reads them; nothing in
        // these tests reads the environment concurrently except through this Once.
        unsafe {
            std::env::set_var(B_TOKEN_ENV, support::scim_b::TOKEN);
            std::env::set_var(A_TOKEN_ENV, support::scim::TOKEN);
        }
    });
}

fn platform(base: &str, token_env: &str) -> config::Platform {
    env();
    config::Platform {
        base_url: base.parse().unwrap(),
        auth: PlatformAuth::Bearer { token: token_env.into() },
        max_concurrency: 4,
        timeout: Duration::from_secs(10),
        bulk: true,
        custom_schema: CUSTOM.into(),
        notify_webhook: None,
    }
}

async fn connect(base: &str, token_env: &str) -> ScimClient {
    ScimClient::connect(&platform(base, token_env)).await.unwrap_or_else(|e| panic!("connect to {base}: {e}"))
}

fn user(id: &str, first: &str, last: &str, manager: Option<&str>) -> User {
    let attributes = rostersync::model::Attributes::from([
        ("department".to_string(), "Engineering".to_string()),
        ("title".to_string(), "Engineer".to_string()),
    ]);
    User::from(UserFields {
        external_id: id.into(),
        email: Some(format!("{}@example.com", id.to_lowercase()).into()),
        employee_id: Some(id.into()),
        first_name: first.into(),
        last_name: last.into(),
        language: "en".into(),
        active: true,
        manager: manager.map(Into::into),
        attributes,
    })
}

async fn apply(client: &ScimClient, ops: Vec<Op>, known: HashMap<String, String>) -> (Result<(), PlatformError>, Vec<OpOutcome>) {
    let budget = Budget::for_run(ops.len());
    support::scim::apply_with(client, ops, known, &budget).await
}

fn applied(outcomes: &[OpOutcome]) -> HashMap<String, String> {
    outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(a) => (o.external_id().to_string(), a.platform_id.clone()),
            Err(f) => panic!("{} {:?} failed: {f:?}", o.external_id(), o.kind()),
        })
        .collect()
}

fn by_external_id(users: Vec<Value>) -> HashMap<String, Value> {
    let mut map = HashMap::new();
    for u in users {
        let ext = u["externalId"].as_str().unwrap_or("").to_string();
        assert!(map.insert(ext.clone(), u).is_none(), "duplicate externalId {ext:?} on the server");
    }
    map
}

/// The server holds exactly `expected`, with what this server can hold of them.
fn assert_core_state(server: &DjangoScim, expected: &[User]) {
    let got = by_external_id(server.users());
    let mut have: Vec<&str> = got.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = expected.iter().map(|u| u.external_id.as_str()).collect();
    have.sort_unstable();
    want.sort_unstable();
    assert_eq!(have, want, "users on the server");
    for u in expected {
        let s = &got[u.external_id.as_str()];
        assert_eq!(s["userName"], json!(u.user_name()), "{}", u.external_id);
        assert_eq!(s["name"]["givenName"], json!(u.first_name()), "{}", u.external_id);
        assert_eq!(s["name"]["familyName"], json!(u.last_name()), "{}", u.external_id);
        assert_eq!(s["active"], json!(u.active), "{}", u.external_id);
        assert_eq!(s["emails"][0]["value"], json!(u.email()), "{}", u.external_id);
    }
}

fn count(proxy: &FaultProxy, method: &str, path: &str) -> usize {
    proxy.seen().iter().filter(|s| s.method == method && s.path.split('?').next() == Some(path)).count()
}

#[tokio::test]
async fn django_scim2_lifecycle_without_bulk_and_with_partial_patch() {
    let server = DjangoScim::start();
    let proxy = FaultProxy::start(server.port, |_, _, _| Fault::Pass);
    let base = format!("{}/scim/v2", proxy.base_url);
    let client = connect(&base, B_TOKEN_ENV).await;
    let caps = client.capabilities();
    assert!(caps.bulk.is_none(), "django-scim2 announces no Bulk, though bulk = auto: {caps:?}");
    assert!(caps.patch, "it announces PATCH");
    assert_eq!(caps.page_size, 50, "its maxResults");

    let mut users = vec![
        user("E3", "Cleo", "Dev", Some("E2")),
        user("E2", "Bob", "Middle", Some("E1")),
        user("E1", "Alice", "Boss", None),
        user("E4", "Dana", "Dev", Some("E2")),
        user("E5", "Eve", "Out", None),
    ];
    let (r, outcomes) = apply(&client, users.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect(), HashMap::new()).await;
    r.unwrap();
    let mut ids = applied(&outcomes);
    assert_eq!(count(&proxy, "POST", "/scim/v2/Users"), 5, "one POST each, no /Bulk");
    assert_eq!(count(&proxy, "POST", "/scim/v2/Bulk"), 0);
    assert_core_state(&server, &users);

    // A name change (PATCH it takes), a title change (a PATCH it refuses with 501: the
    // rest of the run goes read-merge-write), a deactivation, a deletion.
    let prev_e3 = users[0].clone();
    users[0].set_last_name("Developer");
    let prev_e2 = users[1].clone();
    users[1].set_attribute("title", "Lead");
    users[1].set_first_name("Robert");
    let prev_e4 = users[3].clone();
    users[3].set_last_name("Later");
    users[4].active = false;
    let platform_ids = ids.clone();
    let update = |u: &User, prev: User| Op::Update {
        platform_id: platform_ids[u.external_id.as_str()].clone(),
        user: Box::new(u.clone()),
        adopt: false,
        previous: Some(Box::new(prev)),
    };
    let e3 = update(&users[0], prev_e3);
    let (r, outcomes) = apply(&client, vec![e3], ids.clone()).await;
    r.unwrap();
    applied(&outcomes);
    assert_eq!(count(&proxy, "PATCH", &format!("/scim/v2/Users/{}", ids["E3"])), 1);
    assert_eq!(count(&proxy, "PUT", &format!("/scim/v2/Users/{}", ids["E3"])), 0, "the PATCH it takes is not replaced");

    let ops = vec![
        update(&users[1], prev_e2),
        Op::Deactivate { platform_id: ids["E5"].clone(), external_id: "E5".into() },
        Op::Delete { platform_id: ids["E1"].clone(), external_id: "E1".into() },
    ];
    let (r, outcomes) = apply(&client, ops, ids.clone()).await;
    r.unwrap();
    let kinds: HashMap<String, OpKind> = outcomes.iter().map(|o| (o.external_id().to_string(), o.kind())).collect();
    assert_eq!(applied(&outcomes).len(), 3);
    assert_eq!(kinds["E5"], OpKind::Deactivate);
    let e2 = format!("/scim/v2/Users/{}", ids["E2"]);
    assert_eq!(count(&proxy, "PUT", &e2), 1, "the refused PATCH fell back to a PUT");
    assert_eq!(count(&proxy, "GET", &e2), 1, "read before written");
    ids.remove("E1");
    users.retain(|u| u.external_id != "E1");

    // The next run tries PATCH again, and this one it takes.
    let (r, outcomes) = apply(&client, vec![update(&users[2], prev_e4)], ids.clone()).await;
    r.unwrap();
    applied(&outcomes);
    assert_eq!(count(&proxy, "PATCH", &format!("/scim/v2/Users/{}", ids["E4"])), 1);
    assert_eq!(count(&proxy, "PUT", &format!("/scim/v2/Users/{}", ids["E4"])), 0);
    assert_core_state(&server, &users);
    let held = by_external_id(server.users());
    assert_eq!(held["E2"]["name"]["givenName"], "Robert");
    assert_eq!(held["E4"]["name"]["familyName"], "Later");
}

#[tokio::test]
async fn django_scim2_patch_refusal_is_remembered_for_the_run() {
    let server = DjangoScim::start();
    let proxy = FaultProxy::start(server.port, |_, _, _| Fault::Pass);
    let client = connect(&format!("{}/scim/v2", proxy.base_url), B_TOKEN_ENV).await;
    let mut users: Vec<User> = (0..4).map(|i| user(&format!("R{i}"), "R", &format!("Ray{i}"), None)).collect();
    let (r, outcomes) = apply(&client, users.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect(), HashMap::new()).await;
    r.unwrap();
    let ids = applied(&outcomes);
    // Every update changes the title, which this server cannot PATCH. One at a time, so
    // the order is known: the first PATCH is refused, the others go straight to PUT.
    let mut ops = Vec::new();
    for u in &mut users {
        let prev = u.clone();
        u.set_attribute("title", "Changed");
        u.set_last_name(&format!("{}-x", u.last_name()));
        ops.push(Op::Update {
            platform_id: ids[u.external_id.as_str()].clone(),
            user: Box::new(u.clone()),
            adopt: false,
            previous: Some(Box::new(prev)),
        });
    }
    let mut cfg = platform(&format!("{}/scim/v2", proxy.base_url), B_TOKEN_ENV);
    cfg.max_concurrency = 1;
    let client = ScimClient::connect(&cfg).await.unwrap();
    // The warnings of this push, as the service's log would have them (this test's
    // runtime is one thread: every task logs here).
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).with_max_level(tracing::Level::WARN).finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let (r, outcomes) = apply(&client, ops, ids.clone()).await;
    drop(guard);
    r.unwrap();
    applied(&outcomes);
    let patches = proxy.seen().iter().filter(|s| s.method == "PATCH").count();
    let puts = proxy.seen().iter().filter(|s| s.method == "PUT").count();
    assert_eq!((patches, puts), (1, 4), "one refused PATCH, then read-merge-write for all four");
    assert_core_state(&server, &users);
    let logs = logs.text();
    assert_eq!(logs.matches("refuses PATCH").count(), 1, "said once: {logs}");
    let dropped: Vec<&str> = logs.lines().filter(|l| l.contains("does not keep these attributes")).collect();
    assert_eq!(dropped.len(), 1, "dropped attributes named once a run: {logs}");
    for attr in ["title", "preferredLanguage"] {
        assert!(dropped[0].contains(attr), "{attr} named: {}", dropped[0]);
    }
    // Its /ResourceTypes/User lists no enterprise extension: none is sent (issue 25).
    assert!(!dropped[0].contains("enterprise"), "the enterprise extension is not sent: {}", dropped[0]);
    assert!(!dropped[0].contains("givenName"), "what it keeps is not named: {}", dropped[0]);
}

/// A log sink for one test.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

#[tokio::test]
async fn django_scim2_listing_pages_and_adoption_without_an_externalid_filter() {
    let server = DjangoScim::start();
    for i in 0..120 {
        server.post("/Users", &json!({"schemas": [CORE], "externalId": format!("P{i}"), "userName": format!("p{i}@example.com")}));
    }
    let client = connect(&server.base_url, B_TOKEN_ENV).await;
    let existing = client.existing_users(&Budget::default()).await.unwrap();
    assert_eq!(existing.len(), 120, "all three pages of 50 read");

    // A user already there, unknown to us: the create gets 409, and since this server
    // cannot filter on externalId the user is found by userName and made ours.
    let taken = server.post("/Users", &json!({"schemas": [CORE], "userName": "x1@example.com", "name": {"givenName": "Old"}}));
    let x1 = user("X1", "Xena", "New", None);
    let (r, outcomes) = apply(&client, vec![Op::Create { user: Box::new(x1.clone()) }], HashMap::new()).await;
    r.unwrap();
    let ids = applied(&outcomes);
    assert_eq!(ids["X1"], taken["id"].as_str().unwrap());
    assert!(outcomes[0].result.as_ref().unwrap().adopted);
    let held = server.get(&format!("/Users/{}", ids["X1"]));
    assert_eq!(held["externalId"], "X1");
    assert_eq!(held["name"]["givenName"], "Xena");
}

#[tokio::test]
async fn refused_patch_falls_back_to_put_that_keeps_what_others_set() {
    let server = ScimServer::start_with_custom_schema(&[]);
    // scim2-server behind a proxy that answers 501 to every PATCH.
    let proxy = FaultProxy::start(server.port, |_, method, _| if method == "PATCH" { Fault::Status(501) } else { Fault::Pass });
    // One request at a time, so that the PATCH refusal is known before the next user; no
    // /Bulk, whose PATCH operations the proxy cannot see into.
    let mut cfg = platform(&proxy.base_url, A_TOKEN_ENV);
    cfg.max_concurrency = 1;
    cfg.bulk = false;
    let client = ScimClient::connect(&cfg).await.unwrap();
    assert!(client.capabilities().patch, "scim2-server announces PATCH");
    let mut users = [user("F1", "Fay", "One", None), user("F2", "Gus", "Two", None)];
    let (r, outcomes) = apply(&client, users.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect(), HashMap::new()).await;
    r.unwrap();
    let ids = applied(&outcomes);
    // Someone else sets phone numbers and a nickname on the platform.
    for id in ids.values() {
        let r = std::process::Command::new("curl")
            .args(["-sS", "-f", "-X", "PATCH", "-H", &format!("Authorization: Bearer {}", server.token)])
            .args(["-H", "Content-Type: application/scim+json", "--data-binary"])
            .arg(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
                    {"op": "add", "value": {"phoneNumbers": [{"value": "+44 20 7946 0000", "type": "work"}], "nickName": "ace"}}]})
                .to_string(),
            )
            .arg(format!("{}/Users/{id}", server.base_url))
            .output()
            .unwrap();
        assert!(r.status.success(), "set phone numbers: {}", String::from_utf8_lossy(&r.stderr));
    }

    let prev = users[0].clone();
    users[0].set_last_name("Changed");
    users[0].remove_attribute("title");
    users[1].active = false;
    let ops = vec![
        Op::Update { platform_id: ids["F1"].clone(), user: Box::new(users[0].clone()), adopt: false, previous: Some(Box::new(prev)) },
        Op::Deactivate { platform_id: ids["F2"].clone(), external_id: "F2".into() },
    ];
    let (r, outcomes) = apply(&client, ops, ids.clone()).await;
    r.unwrap();
    applied(&outcomes);
    for (ext, id) in &ids {
        let held = server.get(&format!("/Users/{id}"));
        assert_eq!(held["phoneNumbers"][0]["value"], "+44 20 7946 0000", "{ext}: phone number kept: {held}");
        assert_eq!(held["nickName"], "ace", "{ext}: nickName kept");
        let u = users.iter().find(|u| u.external_id == *ext).unwrap();
        assert_eq!(held["name"]["familyName"], json!(u.last_name()), "{ext}");
        assert_eq!(held["active"], json!(u.active), "{ext}");
    }
    let f1 = server.get(&format!("/Users/{}", ids["F1"]));
    assert!(f1.get("title").is_none(), "an attribute we own and the export dropped is removed: {f1}");
    assert_eq!(f1["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"], "Engineering");
    let seen: Vec<(String, String)> = proxy.seen().into_iter().map(|s| (s.method, s.path)).collect();
    assert_eq!(count(&proxy, "PUT", &format!("/Users/{}", ids["F1"])), 1, "{seen:?}");
    assert_eq!(count(&proxy, "PUT", &format!("/Users/{}", ids["F2"])), 1);
    let patches = count(&proxy, "PATCH", &format!("/Users/{}", ids["F1"])) + count(&proxy, "PATCH", &format!("/Users/{}", ids["F2"]));
    assert_eq!(patches, 1, "PATCH refused once, then not tried again this run");
}
