//! The SCIM client against the real scim2-server (and, for faults, through a proxy that
//! misbehaves on purpose). Every test checks what the server holds at the end.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Once;
use std::time::Duration;

use rostersync::config::{self, PlatformAuth, SyncRule};
use rostersync::exit::{Classify, Exit};
use rostersync::model::{User, UserFields};
use rostersync::plan::{self, Op, OpKind, PlanInput};
use rostersync::platform::scim::ScimClient;
use rostersync::platform::{ManagerLink, OpOutcome, Platform, PlatformError};
use rostersync::retry::{Backoff, Budget, Policy};
use serde_json::{Value, json};
use support::fault_proxy::{Fault, FaultProxy};
use support::scim::{ScimServer, TOKEN};

const CUSTOM: &str = "urn:ietf:params:scim:schemas:extension:rostersync:2.0:User";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const TOKEN_ENV: &str = "ROSTERSYNC_TEST_SCIM_TOKEN";
const BAD_TOKEN_ENV: &str = "ROSTERSYNC_TEST_SCIM_BAD_TOKEN";
const BAD_TOKEN: &str = "wrong-token-7f3a";
const OAUTH_SECRET_ENV: &str = "ROSTERSYNC_TEST_OAUTH_SECRET";
const OAUTH_SECRET: &str = "client-secret-91c2";

/// The variables every test reads, set once before any client exists.
fn env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, to the same values, before any test reads them; nothing in
        // these tests reads the environment concurrently except through this Once.
        unsafe {
            std::env::set_var(TOKEN_ENV, TOKEN);
            std::env::set_var(BAD_TOKEN_ENV, BAD_TOKEN);
            std::env::set_var(OAUTH_SECRET_ENV, OAUTH_SECRET);
        }
    });
}

fn platform(base: &str, bulk: bool) -> config::Platform {
    env();
    config::Platform {
        base_url: base.parse().unwrap(),
        auth: PlatformAuth::Bearer { token: TOKEN_ENV.into() },
        max_concurrency: 4,
        timeout: Duration::from_secs(5),
        bulk,
        custom_schema: CUSTOM.into(),
        notify_webhook: None,
    }
}

fn user(id: &str, first: &str, last: &str, manager: Option<&str>) -> User {
    let attributes = rostersync::model::Attributes::from([
        ("department".to_string(), "Engineering".to_string()),
        ("title".to_string(), "Engineer".to_string()),
        ("cost_center".to_string(), "CC-1".to_string()),
        ("hire_date".to_string(), "2020-01-02T00:00:00".to_string()),
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

async fn connect(base: &str, bulk: bool) -> ScimClient {
    ScimClient::connect(&platform(base, bulk)).await.unwrap_or_else(|e| panic!("connect to {base}: {e}"))
}

/// Applies ops with a run's usual budget, collecting the outcomes as they come.
async fn apply(client: &ScimClient, ops: Vec<Op>, known: HashMap<String, String>) -> (Result<(), PlatformError>, Vec<OpOutcome>) {
    let budget = Budget::for_run(ops.len());
    apply_with(client, ops, known, &budget).await
}

async fn apply_with(
    client: &ScimClient,
    ops: Vec<Op>,
    known: HashMap<String, String>,
    budget: &Budget,
) -> (Result<(), PlatformError>, Vec<OpOutcome>) {
    support::scim::apply_with(client, ops, known, budget).await
}

/// external id → platform id of the applied outcomes; panics on any failure.
fn applied(outcomes: &[OpOutcome]) -> HashMap<String, String> {
    outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(a) => (o.external_id().to_string(), a.platform_id.clone()),
            Err(f) => panic!("{} {:?} failed: {f:?}", o.external_id(), o.kind()),
        })
        .collect()
}

fn by_external_id(server: &ScimServer) -> HashMap<String, Value> {
    let users = server.users();
    let mut map = HashMap::new();
    for u in users {
        let ext = u["externalId"].as_str().unwrap_or("").to_string();
        assert!(map.insert(ext.clone(), u).is_none(), "duplicate externalId {ext:?} on the server");
    }
    map
}

/// The server holds exactly `expected` (by externalId), with their content and managers.
fn assert_state(server: &ScimServer, expected: &[User]) {
    let got = by_external_id(server);
    let want: HashSet<&str> = expected.iter().map(|u| u.external_id.as_str()).collect();
    let have: HashSet<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(have, want, "users on the server");
    for u in expected {
        let s = &got[u.external_id.as_str()];
        assert_eq!(s["userName"], json!(u.user_name()), "{}", u.external_id);
        assert_eq!(s["name"]["givenName"], json!(u.first_name()), "{}", u.external_id);
        assert_eq!(s["name"]["familyName"], json!(u.last_name()), "{}", u.external_id);
        assert_eq!(s["active"], json!(u.active), "{}", u.external_id);
        assert_eq!(s["emails"][0]["value"], json!(u.email()), "{}", u.external_id);
        assert_eq!(s[ENT]["department"].as_str(), u.attributes().get("department"), "{}", u.external_id);
        assert_eq!(s["title"].as_str(), u.attributes().get("title"), "{}", u.external_id);
        if let Some(m) = u.manager().filter(|m| got.contains_key(*m)) {
            assert_eq!(s[ENT]["manager"]["value"], got[m]["id"], "{}'s manager", u.external_id);
        }
    }
}

fn count(proxy: &FaultProxy, method: &str, path: &str) -> usize {
    proxy.seen().iter().filter(|s| s.method == method && s.path.split('?').next() == Some(path)).count()
}

async fn lifecycle(bulk: bool) {
    let server = ScimServer::start_with_custom_schema(&[]);
    let proxy = FaultProxy::start(server.port, |_, _, _| Fault::Pass);
    let client = connect(&proxy.base_url, bulk).await;
    assert_eq!(client.capabilities().bulk.is_some(), bulk);

    // Reports before managers in the list: the client must order the creates itself.
    let mut users = vec![
        user("E4", "Dana", "Dev", Some("E2")),
        user("E3", "Cleo", "Dev", Some("E2")),
        user("E2", "Bob", "Middle", Some("E1")),
        user("E1", "Alice", "Boss", None),
        user("E5", "Eve", "Outside", Some("E99")),
    ];
    let ops = users.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect();
    let (r, outcomes) = apply(&client, ops, HashMap::new()).await;
    r.unwrap();
    let mut ids = applied(&outcomes);
    assert_eq!(ids.len(), 5);
    assert!(outcomes.iter().all(|o| o.kind() == OpKind::Create));
    let link = |id: &str| outcomes.iter().find(|o| o.external_id() == id).unwrap().result.as_ref().unwrap().manager;
    assert_eq!(link("E5"), ManagerLink::LeftUnset, "unresolved manager reported");
    assert_eq!((link("E1"), link("E2"), link("E4")), (ManagerLink::Absent, ManagerLink::Linked, ManagerLink::Linked));
    assert_state(&server, &users);
    let held = by_external_id(&server);
    assert_eq!(held["E4"][ENT]["manager"]["value"], json!(ids["E2"]));
    assert_eq!(held["E2"][ENT]["manager"]["value"], json!(ids["E1"]));
    assert!(held["E5"][ENT].get("manager").is_none());
    assert_eq!(held["E1"][ENT]["costCenter"], "CC-1");
    assert_eq!(held["E1"][ENT]["employeeNumber"], "E1");
    assert_eq!(held["E1"][CUSTOM]["hire_date"], "2020-01-02T00:00:00");
    if bulk {
        // Waves of one user (here E2, alone at its depth) are sent as a plain POST.
        assert!(count(&proxy, "POST", "/Bulk") >= 2);
        assert_eq!(count(&proxy, "POST", "/Users"), 1);
    } else {
        assert_eq!(count(&proxy, "POST", "/Users"), 5);
        assert_eq!(count(&proxy, "POST", "/Bulk"), 0);
    }

    // Updates (one with the previous content, one replacing everything), a deactivation,
    // a deletion; E5 now reports to E3, created in the first push.
    let previous = users[0].clone();
    users[0].set_last_name("Developer");
    users[0].set_attribute("department", "Platform");
    users[1].remove_attribute("title");
    users[4].manager = Some("E3".into());
    users[2].active = false;
    let ops = vec![
        Op::Update { platform_id: ids["E4"].clone(), user: Box::new(users[0].clone()), adopt: false, previous: Some(Box::new(previous)) },
        Op::Update { platform_id: ids["E3"].clone(), user: Box::new(users[1].clone()), adopt: false, previous: None },
        Op::Update { platform_id: ids["E5"].clone(), user: Box::new(users[4].clone()), adopt: false, previous: None },
        Op::Deactivate { platform_id: ids["E2"].clone(), external_id: "E2".into() },
        Op::Delete { platform_id: ids["E1"].clone(), external_id: "E1".into() },
    ];
    let (r, outcomes) = apply(&client, ops, ids.clone()).await;
    r.unwrap();
    let kinds: HashMap<String, OpKind> = outcomes.iter().map(|o| (o.external_id().to_string(), o.kind())).collect();
    assert_eq!(applied(&outcomes).len(), 5);
    assert_eq!(kinds["E2"], OpKind::Deactivate);
    assert_eq!(kinds["E1"], OpKind::Delete);
    ids.remove("E1");
    users.retain(|u| u.external_id != "E1");
    assert_state(&server, &users);
    let held = by_external_id(&server);
    assert!(held["E3"].get("title").is_none(), "title removed: {}", held["E3"]);
    assert_eq!(held["E5"][ENT]["manager"]["value"], json!(ids["E3"]));
    assert_eq!(held["E4"][ENT]["department"], "Platform");
    assert_eq!(held["E4"][CUSTOM]["hire_date"], "2020-01-02T00:00:00", "untouched attributes kept");
}

#[tokio::test]
async fn lifecycle_one_request_per_user() {
    lifecycle(false).await;
}

#[tokio::test]
async fn lifecycle_with_bulk() {
    lifecycle(true).await;
}

/// Updates say what became of the manager, in a bulk as alone: linked when the manager is
/// on the platform, left unset (and not sent) when not. A bulk used to say nothing for an
/// update, so sync recorded a manager the platform did not hold and never linked it.
async fn updates_report_their_manager_link(bulk: bool) {
    let server = ScimServer::start_with_custom_schema(&[]);
    let proxy = FaultProxy::start(server.port, |_, _, _| Fault::Pass);
    let client = connect(&proxy.base_url, bulk).await;
    let users = [user("K1", "Kim", "Boss", None), user("K2", "Kai", "Two", None), user("K3", "Kit", "Three", None)];
    let (r, outcomes) = apply(&client, users.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect(), HashMap::new()).await;
    r.unwrap();
    let ids = applied(&outcomes);
    let update = |u: &User, manager: &str| {
        let mut new = u.clone();
        new.set_last_name(&format!("{}-moved", new.last_name()));
        new.manager = Some(manager.into());
        Op::Update {
            platform_id: ids[u.external_id.as_str()].clone(),
            user: Box::new(new),
            adopt: false,
            previous: Some(Box::new(u.clone())),
        }
    };
    let ops = vec![update(&users[1], "K1"), update(&users[2], "NOBODY")];
    let (r, outcomes) = apply(&client, ops, ids.clone()).await;
    r.unwrap();
    let link = |id: &str| outcomes.iter().find(|o| o.external_id() == id).unwrap().result.as_ref().unwrap().manager;
    assert_eq!((link("K2"), link("K3")), (ManagerLink::Linked, ManagerLink::LeftUnset));
    let held = by_external_id(&server);
    assert_eq!(held["K2"][ENT]["manager"]["value"], json!(ids["K1"]));
    assert!(held["K3"].get(ENT).and_then(|e| e.get("manager")).is_none(), "{}", held["K3"]);
    assert_eq!(held["K3"]["name"]["familyName"], "Three-moved", "the rest of the update went through");
    assert_eq!(count(&proxy, "POST", "/Bulk") > 0, bulk);
}

#[tokio::test]
async fn updates_report_their_manager_link_one_request_per_user() {
    updates_report_their_manager_link(false).await;
}

#[tokio::test]
async fn updates_report_their_manager_link_in_bulk() {
    updates_report_their_manager_link(true).await;
}

#[tokio::test]
async fn first_sync_adopts_existing_users_instead_of_duplicating() {
    let server = ScimServer::start_with_custom_schema(&[]);
    let a = server.post(
        "/Users",
        // Its login is an old one, but its emails[] has the person's (issue 25: an id alone
        // is a partial match, never adopted without approval).
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": "A1", "userName": "old-a@example.com",
                "emails": [{"value": "old-a@example.com"}, {"value": "A1@example.com", "type": "work"}]}),
    );
    // Matched by userName (case differs), no externalId yet.
    let b = server.post("/Users", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "B1@Example.com"}));
    let z =
        server.post("/Users", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "someone-else@example.com"}));
    let client = connect(&server.base_url, false).await;

    let existing = client.existing_users(&Budget::default()).await.unwrap();
    let listed: HashSet<&str> = existing.iter().map(|e| e.platform_id.as_str()).collect();
    assert_eq!(listed, HashSet::from([a["id"].as_str().unwrap(), b["id"].as_str().unwrap(), z["id"].as_str().unwrap()]));

    let users = vec![user("A1", "Ann", "A", None), user("B1", "Ben", "B", Some("A1")), user("C1", "Cid", "C", Some("B1"))];
    let p = plan::plan(PlanInput {
        snapshot: &Default::default(),
        users: users
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, user)| rostersync::model::SourcedUser { user: Box::new(user), line: i as u64 + 2 })
            .collect(),
        invalid_ids: &HashSet::new(),
        unidentified: &[],
        rows: 3,
        invalid: 0,
        existing: &existing,
        rule: &SyncRule::default(),
        allow_mass_change: false,
        id_rule: Default::default(),
    });
    assert!(p.stop.is_none());
    assert_eq!(p.count(OpKind::Create), 1);
    let (r, outcomes) = apply(&client, p.ops, HashMap::new()).await;
    r.unwrap();
    let ids = applied(&outcomes);
    assert_eq!(ids["A1"], a["id"].as_str().unwrap());
    assert_eq!(ids["B1"], b["id"].as_str().unwrap());

    let held = by_external_id(&server);
    assert_eq!(held.len(), 4, "three of ours plus the unrelated user, nobody duplicated");
    assert!(held.contains_key(""), "the unrelated user is left alone");
    for u in &users {
        let s = &held[u.external_id.as_str()];
        assert_eq!(s["userName"], json!(u.user_name()));
        assert_eq!(s["name"]["givenName"], json!(u.first_name()));
    }
    assert_eq!(held["C1"][ENT]["manager"]["value"], json!(ids["B1"]));
    assert_eq!(held["B1"][ENT]["manager"]["value"], json!(ids["A1"]));
}

async fn conflict_adopts(bulk: bool) {
    let server = ScimServer::start_with_custom_schema(&[]);
    let existing = server
        .post("/Users", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x1@example.com", "title": "Old"}));
    // Ours already (same externalId) but with stale content: adopted and corrected.
    let stale = server.post("/Users", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": "Z1", "userName": "z1@example.com", "name": {"givenName": "Old"}}));
    let client = connect(&server.base_url, bulk).await;
    let users = vec![user("X1", "Xena", "X", None), user("Y1", "Yan", "Y", Some("X1")), user("Z1", "Zoe", "Z", None)];
    let (r, outcomes) = apply(&client, users.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect(), HashMap::new()).await;
    r.unwrap();
    let ids = applied(&outcomes);
    assert_eq!(ids["X1"], existing["id"].as_str().unwrap(), "the 409'd user is adopted, not duplicated");
    assert_eq!(ids["Z1"], stale["id"].as_str().unwrap());
    let x = outcomes.iter().find(|o| o.external_id() == "X1").unwrap();
    assert!(x.result.as_ref().unwrap().adopted, "the 409'd user is reported adopted");
    let z = outcomes.iter().find(|o| o.external_id() == "Z1").unwrap();
    assert!(z.result.as_ref().unwrap().adopted);
    let y = outcomes.iter().find(|o| o.external_id() == "Y1").unwrap().result.as_ref().unwrap();
    assert!(!y.adopted && y.manager == ManagerLink::Linked, "{y:?}");
    assert_state(&server, &users);
}

#[tokio::test]
async fn conflict_on_create_adopts_the_existing_user() {
    conflict_adopts(false).await;
}

#[tokio::test]
async fn conflict_inside_bulk_adopts_the_existing_user() {
    conflict_adopts(true).await;
}

async fn bad_user_fails_alone(bulk: bool) {
    let server = ScimServer::start_with_custom_schema(&[]);
    let client = connect(&server.base_url, bulk).await;
    let mut bad = user("BAD", "Bad", "Date", None);
    bad.set_attribute("hire_date", "not a date");
    let good = vec![user("G1", "Gus", "One", None), user("G2", "Gia", "Two", None)];
    let mut ops: Vec<Op> = good.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect();
    ops.insert(1, Op::Create { user: Box::new(bad) });
    let (r, outcomes) = apply(&client, ops, HashMap::new()).await;
    r.unwrap();
    assert_eq!(outcomes.len(), 3);
    let failed = outcomes.iter().find(|o| o.external_id() == "BAD").unwrap();
    let f = failed.result.as_ref().unwrap_err();
    assert_eq!(f.status, Some(400));
    assert!(f.message.contains("invalidValue") && f.message.contains("hire_date") && f.message.contains("BAD"), "{}", f.message);
    assert!(outcomes.iter().filter(|o| o.external_id() != "BAD").all(|o| o.result.is_ok()));
    assert_state(&server, &good);
}

#[tokio::test]
async fn a_400_fails_that_user_only() {
    bad_user_fails_alone(false).await;
}

#[tokio::test]
async fn a_400_inside_bulk_fails_that_user_only() {
    bad_user_fails_alone(true).await;
}

#[tokio::test]
async fn refused_token_stops_with_exit_6_and_no_secret() {
    let server = ScimServer::start();
    let mut cfg = platform(&server.base_url, true);
    cfg.auth = PlatformAuth::Bearer { token: BAD_TOKEN_ENV.into() };
    let err = ScimClient::connect(&cfg).await.err().expect("a wrong token is refused at connect");
    assert!(matches!(err, PlatformError::Unauthorized { status: 401, .. }), "{err:?}");
    assert_eq!(err.exit(), Exit::Platform);
    let msg = err.to_string();
    assert!(msg.contains(BAD_TOKEN_ENV) && !msg.contains(BAD_TOKEN) && !format!("{err:?}").contains(BAD_TOKEN), "{msg}");
    assert!(server.users().is_empty());
}

#[tokio::test]
async fn a_401_mid_run_stops_the_run() {
    let server = ScimServer::start();
    // Writes are refused (a token revoked mid-run); reads pass.
    let proxy = FaultProxy::start(server.port, |_, m, _| if m == "GET" { Fault::Pass } else { Fault::Status(401) });
    let client = connect(&proxy.base_url, false).await;
    let ops = (0..20).map(|i| Op::Create { user: Box::new(user(&format!("U{i}"), "U", "U", None)) }).collect();
    let (r, outcomes) = apply(&client, ops, HashMap::new()).await;
    let err = r.expect_err("401 stops the run");
    assert!(matches!(err, PlatformError::Unauthorized { .. }), "{err:?}");
    assert_eq!(err.exit(), Exit::Platform);
    assert!(outcomes.iter().all(|o| o.result.is_err()) || outcomes.is_empty());
    assert!(count(&proxy, "POST", "/Users") < 20, "the run stopped instead of trying everyone");
}

#[tokio::test]
async fn missing_token_variable_is_named() {
    let mut cfg = platform("http://127.0.0.1:9", false);
    cfg.auth = PlatformAuth::Bearer { token: "ROSTERSYNC_TEST_UNSET_VARIABLE".into() };
    let err = ScimClient::connect(&cfg).await.err().expect("unset variable");
    let msg = err.to_string();
    assert!(msg.contains("ROSTERSYNC_TEST_UNSET_VARIABLE") && msg.contains("is not set"), "{msg}");
    assert_eq!(err.exit(), Exit::Config);
}

/// One create whose first POST gets a 429 with `retry_after()`; returns how long the
/// client waited before sending it again.
async fn wait_after_429(retry_after: impl Fn() -> String + Send + Sync + 'static) -> Duration {
    let server = ScimServer::start();
    let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = first.clone();
    let proxy = FaultProxy::start(server.port, move |_, m, p| {
        if m == "POST" && p == "/Users" && f.swap(false, std::sync::atomic::Ordering::AcqRel) {
            Fault::TooMany(retry_after())
        } else {
            Fault::Pass
        }
    });
    let client = connect(&proxy.base_url, false).await;
    let (r, outcomes) = apply(&client, vec![Op::Create { user: Box::new(user("R1", "R", "R", None)) }], HashMap::new()).await;
    r.unwrap();
    applied(&outcomes);
    let posts: Vec<_> = proxy.seen().into_iter().filter(|s| s.method == "POST").collect();
    assert_eq!(posts.len(), 2, "one 429, one success: {posts:?}");
    assert_eq!(server.users().len(), 1);
    posts[1].at - posts[0].at
}

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let waited = wait_after_429(|| "2".into()).await;
    assert!(waited >= Duration::from_millis(1950), "waited {waited:?} after Retry-After: 2");
}

#[tokio::test]
async fn retry_after_http_date_is_honoured() {
    // An HTTP date has whole seconds: "now + 3s" means a wait of 2 to 3 seconds.
    let waited =
        wait_after_429(|| (chrono::Utc::now() + chrono::Duration::seconds(3)).format("%a, %d %b %Y %H:%M:%S GMT").to_string()).await;
    assert!(waited >= Duration::from_millis(1950), "waited {waited:?} after a Retry-After date 3 s ahead");
}

#[tokio::test]
async fn retry_budget_stops_a_run_against_a_dead_platform() {
    let server = ScimServer::start();
    let proxy = FaultProxy::start(server.port, |_, m, _| if m == "GET" { Fault::Pass } else { Fault::Unavailable });
    let mut client = connect(&proxy.base_url, false).await;
    client.set_retry_policy(Policy { backoff: Backoff { base: Duration::from_millis(1), cap: Duration::from_millis(5) }, ..Policy::SCIM });
    let ops = (0..30).map(|i| Op::Create { user: Box::new(user(&format!("D{i}"), "D", "D", None)) }).collect();
    // The run's budget, as the sync hands it over: ten retries for everything.
    let budget = Budget::new(10);
    let (r, outcomes) = apply_with(&client, ops, HashMap::new(), &budget).await;
    let err = r.expect_err("the budget runs out");
    assert!(matches!(err, PlatformError::RetriesExhausted { done: 0, .. }), "{err:?}");
    assert_eq!(err.exit(), Exit::Platform);
    assert!(outcomes.iter().all(|o| o.result.is_err()));
    assert!(proxy.seen().len() < 60, "stopped early: {} requests", proxy.seen().len());
    assert_eq!(budget.used(), 10, "every retry came from the run's budget");
}

#[tokio::test]
async fn listing_takes_its_retries_from_the_runs_budget() {
    let server = ScimServer::start();
    server.post(
        "/Users",
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "externalId": "L1", "userName": "l1@example.com"}),
    );
    // The first two pages asked for fail with 503; connecting (count=1) is left alone.
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(2));
    let left = failures.clone();
    let proxy = FaultProxy::start(server.port, move |_, m, p| {
        let listing = m == "GET" && p.contains("startIndex");
        let fail = listing
            && left.fetch_update(std::sync::atomic::Ordering::AcqRel, std::sync::atomic::Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
        if fail { Fault::Unavailable } else { Fault::Pass }
    });
    let mut client = connect(&proxy.base_url, false).await;
    client.set_retry_policy(Policy { backoff: Backoff { base: Duration::from_millis(1), cap: Duration::from_millis(5) }, ..Policy::SCIM });
    let budget = Budget::new(5);
    let existing = client.existing_users(&budget).await.unwrap();
    assert_eq!(existing.iter().map(|e| e.external_id.as_deref()).collect::<Vec<_>>(), vec![Some("L1")]);
    assert_eq!(budget.used(), 2, "both retries came from the run's budget");
    // A run that has spent its budget stops listing instead of hammering the platform.
    failures.store(10, std::sync::atomic::Ordering::Release);
    let spent = Budget::new(0);
    let err = client.existing_users(&spent).await.expect_err("no retries left");
    assert!(matches!(err, PlatformError::RetriesExhausted { .. }), "{err:?}");
}

/// A deterministic mix of every fault, by request number. Reads get only the harmless
/// ones, so connect and lookups see trouble too.
fn chaos(n: usize, method: &str, _path: &str) -> Fault {
    match n % 10 {
        _ if n < 3 => Fault::Pass,
        1 => Fault::Unavailable,
        3 if method != "GET" => Fault::DropAfterForward,
        5 if n % 20 == 5 => Fault::DropBeforeForward,
        7 if n % 20 == 7 => Fault::TooMany("1".into()),
        9 if n % 30 == 9 => Fault::Slow(Duration::from_millis(1500)),
        _ => Fault::Pass,
    }
}

async fn faults_leave_exactly_the_export(bulk: bool) {
    // Small bulks (maxOperations 5), so faults land on many of them.
    let spc = support::repo_root().join("tests/fixtures/scim/spc-small-bulk.json");
    let server = ScimServer::start_with_custom_schema(&["--service-provider-config", spc.to_str().unwrap()]);
    let proxy = FaultProxy::start(server.port, chaos);
    let mut cfg = platform(&proxy.base_url, bulk);
    cfg.timeout = Duration::from_secs(1);
    let mut client = ScimClient::connect(&cfg).await.expect("connect through faults");
    client.set_retry_policy(Policy {
        max_attempts: 10,
        backoff: Backoff { base: Duration::from_millis(20), cap: Duration::from_millis(200) },
        ..Policy::SCIM
    });
    // One budget for both pushes below, as one run has.
    let budget = Budget::new(500);

    let mut users: Vec<User> = (0..40)
        .map(|i| user(&format!("F{i:02}"), "First", &format!("Last{i}"), (i > 0).then(|| format!("F{:02}", i / 4)).as_deref()))
        .collect();
    let creates = users.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect();
    let (r, outcomes) = apply_with(&client, creates, HashMap::new(), &budget).await;
    r.unwrap();
    let ids = applied(&outcomes);
    assert_eq!(ids.len(), 40);
    assert_state(&server, &users);

    // Then change, deactivate and delete through the same faults.
    let mut ops = Vec::new();
    for (i, u) in users.iter_mut().enumerate() {
        match i % 4 {
            0 if i > 0 => {
                let prev = u.clone();
                u.set_last_name(&format!("{}-changed", u.last_name()));
                ops.push(Op::Update {
                    platform_id: ids[u.external_id.as_str()].clone(),
                    user: Box::new(u.clone()),
                    adopt: false,
                    previous: Some(Box::new(prev)),
                });
            }
            1 => {
                u.active = false;
                ops.push(Op::Deactivate { platform_id: ids[u.external_id.as_str()].clone(), external_id: u.external_id.to_string() });
            }
            3 => ops.push(Op::Delete { platform_id: ids[u.external_id.as_str()].clone(), external_id: u.external_id.to_string() }),
            _ => {}
        }
    }
    let n_ops = ops.len();
    let (r, outcomes) = apply_with(&client, ops, ids.clone(), &budget).await;
    r.unwrap();
    assert_eq!(applied(&outcomes).len(), n_ops);
    let deleted: HashSet<String> = (0..40).filter(|i| i % 4 == 3).map(|i| format!("F{i:02}")).collect();
    users.retain(|u| !deleted.contains(u.external_id.as_str()));
    assert_state(&server, &users);
    let faults = proxy.faults();
    assert!(faults >= 10, "the proxy injected {faults} faults");
    if bulk {
        let bulks: Vec<Value> =
            proxy.seen().iter().filter(|s| s.path == "/Bulk").map(|s| serde_json::from_slice(&s.body).unwrap()).collect();
        assert!(bulks.len() >= 10, "{} bulk requests", bulks.len());
        assert!(bulks.iter().all(|b| b["Operations"].as_array().unwrap().len() <= 5), "maxOperations respected");
    }
    let seen = proxy.seen();
    assert!(seen.iter().any(|s| s.fault == Fault::DropAfterForward && s.method == "POST"), "a create was applied and its answer lost");
    for kind in [Fault::Unavailable, Fault::DropBeforeForward, Fault::TooMany("1".into()), Fault::Slow(Duration::from_millis(1500))] {
        assert!(seen.iter().any(|s| s.fault == kind), "{kind:?} was injected");
    }
}

#[tokio::test]
async fn faults_leave_exactly_the_export_one_request_per_user() {
    faults_leave_exactly_the_export(false).await;
}

#[tokio::test]
async fn faults_leave_exactly_the_export_with_bulk() {
    faults_leave_exactly_the_export(true).await;
}

#[tokio::test]
async fn bulk_requests_stay_within_max_payload_size() {
    let spc = support::repo_root().join("tests/fixtures/scim/spc-small-payload.json");
    let server = ScimServer::start_with_custom_schema(&["--service-provider-config", spc.to_str().unwrap()]);
    let proxy = FaultProxy::start(server.port, |_, _, _| Fault::Pass);
    let client = connect(&proxy.base_url, true).await;
    assert_eq!(client.capabilities().bulk.map(|b| b.max_payload_size), Some(4096));
    let users: Vec<User> = (0..30).map(|i| user(&format!("S{i:02}"), "Size", &format!("Limited{i}"), None)).collect();
    let (r, outcomes) = apply(&client, users.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect(), HashMap::new()).await;
    r.unwrap();
    assert_eq!(applied(&outcomes).len(), 30);
    let bulks: Vec<usize> = proxy.seen().iter().filter(|s| s.path == "/Bulk").map(|s| s.body.len()).collect();
    assert!(bulks.len() >= 5, "split into several bulks: {bulks:?}");
    assert!(bulks.iter().all(|n| *n <= 4096), "every bulk within maxPayloadSize: {bulks:?}");
    assert_eq!(count(&proxy, "POST", "/Users"), 0, "nothing fell back to single requests");
    assert_state(&server, &users);
}

#[tokio::test]
async fn without_patch_updates_use_put_and_listing_pages() {
    // This server has no PATCH and no Bulk, and pages listings by 2.
    let spc = support::repo_root().join("tests/fixtures/scim/spc-no-patch.json");
    let server = ScimServer::start_with_custom_schema(&["--service-provider-config", spc.to_str().unwrap()]);
    let proxy = FaultProxy::start(server.port, |_, _, _| Fault::Pass);
    let client = connect(&proxy.base_url, true).await;
    assert!(!client.capabilities().patch && client.capabilities().bulk.is_none());
    let mut users: Vec<User> = (0..5).map(|i| user(&format!("N{i}"), "N", &format!("No{i}"), (i > 0).then_some("N0"))).collect();
    let (r, outcomes) = apply(&client, users.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect(), HashMap::new()).await;
    r.unwrap();
    let ids = applied(&outcomes);
    assert_eq!(client.existing_users(&Budget::default()).await.unwrap().len(), 5, "all pages read");

    users[1].set_last_name("Changed");
    users[2].active = false;
    let ops = vec![
        Op::Update { platform_id: ids["N1"].clone(), user: Box::new(users[1].clone()), adopt: false, previous: None },
        Op::Deactivate { platform_id: ids["N2"].clone(), external_id: "N2".into() },
    ];
    let (r, outcomes) = apply(&client, ops, ids.clone()).await;
    r.unwrap();
    applied(&outcomes);
    assert_state(&server, &users);
    assert_eq!(count(&proxy, "PATCH", &format!("/Users/{}", ids["N1"])), 0);
    assert_eq!(count(&proxy, "PUT", &format!("/Users/{}", ids["N1"])), 1);
    assert_eq!(count(&proxy, "PUT", &format!("/Users/{}", ids["N2"])), 1);
}

/// A client-credentials token endpoint: checks the client's Basic credentials, then hands
/// out `tokens` in turn (the last one forever), each valid `expires_in` seconds.
struct TokenServer {
    url: String,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenServer {
    fn start(tokens: Vec<&'static str>, expires_in: u64) -> TokenServer {
        Self::start_failing(tokens, expires_in, 0)
    }

    /// The first `unavailable` requests get a 503.
    fn start_failing(tokens: Vec<&'static str>, expires_in: u64, unavailable: usize) -> TokenServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = issued.clone();
        // Basic base64("rostersync-test:client-secret-91c2").
        let expected = "Basic cm9zdGVyc3luYy10ZXN0OmNsaWVudC1zZWNyZXQtOTFjMg==";
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(mut s) = stream else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let (mut auth, mut len, mut line) = (String::new(), 0usize, String::new());
                while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    let l = line.to_ascii_lowercase();
                    if let Some(v) = l.strip_prefix("authorization:") {
                        auth = line[line.len() - v.len()..].trim().to_string();
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body);
                let (status, json) = if i < unavailable {
                    ("503 Service Unavailable", json!({"error": "temporarily_unavailable"}))
                } else if auth != expected {
                    ("401 Unauthorized", json!({"error": "invalid_client"}))
                } else if !body.contains("grant_type=client_credentials") {
                    ("400 Bad Request", json!({"error": "unsupported_grant_type"}))
                } else {
                    let n = count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    ("200 OK", json!({"access_token": tokens[n.min(tokens.len() - 1)], "token_type": "Bearer", "expires_in": expires_in}))
                };
                let body = json.to_string();
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { url: format!("http://127.0.0.1:{port}/oauth/token"), issued }
    }

    fn issued(&self) -> usize {
        self.issued.load(std::sync::atomic::Ordering::Acquire)
    }
}

fn oauth_platform(base: &str, token_url: &str) -> config::Platform {
    let mut cfg = platform(base, false);
    cfg.auth = PlatformAuth::OAuth2 {
        token_url: token_url.parse().unwrap(),
        client_id: "rostersync-test".into(),
        client_secret: OAUTH_SECRET_ENV.into(),
        scope: Some("scim".into()),
    };
    cfg
}

#[tokio::test]
async fn oauth2_token_is_cached_and_renewed_when_refused() {
    let server = ScimServer::start();
    // The first token is already revoked: the API's 401 makes the client fetch another.
    let tokens = TokenServer::start(vec!["revoked-token", TOKEN], 3600);
    let client = ScimClient::connect(&oauth_platform(&server.base_url, &tokens.url)).await.expect("connect with OAuth2");
    let users = vec![user("O1", "O", "One", None), user("O2", "O", "Two", None)];
    let (r, outcomes) = apply(&client, users.iter().map(|u| Op::Create { user: Box::new(u.clone()) }).collect(), HashMap::new()).await;
    r.unwrap();
    applied(&outcomes);
    assert_eq!(tokens.issued(), 2, "one refused token, then one cached for the whole run");
    assert_state(&server, &users);
}

#[tokio::test]
async fn oauth2_token_is_refreshed_before_expiry() {
    let server = ScimServer::start();
    // Tokens that expire at once: every request must go out with a fresh one.
    let tokens = TokenServer::start(vec![TOKEN], 0);
    let proxy = FaultProxy::start(server.port, |_, _, _| Fault::Pass);
    let client = ScimClient::connect(&oauth_platform(&proxy.base_url, &tokens.url)).await.expect("connect with OAuth2");
    let (r, outcomes) = apply(&client, vec![Op::Create { user: Box::new(user("P1", "P", "One", None)) }], HashMap::new()).await;
    r.unwrap();
    applied(&outcomes);
    assert_eq!(tokens.issued(), proxy.seen().len(), "one token per request");
    assert!(tokens.issued() >= 3);
}

#[tokio::test]
async fn oauth2_token_endpoint_hiccups_are_retried() {
    let server = ScimServer::start();
    let tokens = TokenServer::start_failing(vec![TOKEN], 3600, 2);
    let client = ScimClient::connect(&oauth_platform(&server.base_url, &tokens.url)).await.expect("connect after two 503s");
    let (r, outcomes) = apply(&client, vec![Op::Create { user: Box::new(user("H1", "H", "One", None)) }], HashMap::new()).await;
    r.unwrap();
    applied(&outcomes);
    assert_eq!(tokens.issued(), 1);
    assert_eq!(server.users().len(), 1);
}

#[tokio::test]
async fn oauth2_wrong_secret_stops_with_exit_6() {
    let server = ScimServer::start();
    let tokens = TokenServer::start(vec![TOKEN], 3600);
    let mut cfg = oauth_platform(&server.base_url, &tokens.url);
    cfg.auth = PlatformAuth::OAuth2 {
        token_url: tokens.url.parse().unwrap(),
        client_id: "someone-else".into(),
        client_secret: OAUTH_SECRET_ENV.into(),
        scope: None,
    };
    let err = ScimClient::connect(&cfg).await.err().expect("refused");
    assert!(matches!(err, PlatformError::Unauthorized { status: 401, .. }), "{err:?}");
    assert!(err.to_string().contains("invalid_client") && !err.to_string().contains(OAUTH_SECRET), "{err}");
    assert_eq!(tokens.issued(), 0);
}
