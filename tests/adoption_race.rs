//! One account, one person, across connectors that sync at the same instant: two first
//! syncs of different connectors on one platform (or a reconcile racing another
//! connector's first sync) both find the same unbound accounts. Exactly one connector
//! binds them; the other names them as another connector's people and never writes them.
//!
//! Real processes (two `rostersync sync` runs at once), the real scim2-server behind the
//! fault proxy, state on a real SQLite file or a real PostgreSQL. The meeting point is the
//! proxy: it holds both platform listings until the same instant (so both runs have listed
//! before either decides), and it slows every write, so without the platform-wide lease
//! both runs read the other's still-empty snapshot before either records a binding.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rostersync::state::prelude::*;
use rostersync::state::{PostgresStore, SqliteStore};
use serde_json::{Value, json};
use support::fault_proxy::{Fault, FaultProxy};
use support::postgres::{PASSWORD, Postgres};
use support::project::{HEADER, Project, row, rows};
use support::scim::ScimServer;

/// How long the proxy holds the first listing: both runs list within it.
const MEETING: Duration = Duration::from_secs(3);
/// How long every write is held: the first run's binding is recorded this much after both
/// runs decided, were they not kept apart.
const SLOW_WRITE: Duration = Duration::from_millis(1500);

/// Where the state lives.
enum Backend {
    Sqlite,
    Postgres(Postgres),
}

/// When the first listing of the race arrived (None until it does, and again to start
/// another meeting).
type Meeting = Arc<Mutex<Option<Instant>>>;

/// The proxy in front of scim2-server: every listing page (GET /Users?startIndex…) is answered at one
/// instant, `MEETING` after the first arrived; every write is slowed by `SLOW_WRITE`.
fn meeting_proxy(scim: &ScimServer) -> (FaultProxy, Meeting) {
    let first: Meeting = Arc::new(Mutex::new(None));
    let meeting = first.clone();
    let proxy = FaultProxy::start(scim.port, move |_, method, path| {
        if method == "GET" && path.starts_with("/Users?startIndex") {
            let mut first = first.lock().unwrap();
            let at = *first.get_or_insert_with(Instant::now);
            Fault::Slow((at + MEETING).saturating_duration_since(Instant::now()))
        } else if method != "GET" {
            Fault::Slow(SLOW_WRITE)
        } else {
            Fault::Pass
        }
    });
    (proxy, meeting)
}

/// An account made by hand before either connector synced: no externalId, the email of
/// employee `n` of the export.
fn unbound_account(scim: &ScimServer, n: u32) -> String {
    let u = scim.post(
        "/Users",
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("ann{n}@example.com"),
                "name": {"givenName": format!("Ann{n}"), "familyName": format!("Lee{n}")}, "active": true}),
    );
    u["id"].as_str().expect("the new account's id").to_string()
}

/// Two connectors, acme and globex, on one platform (through the proxy) and one store.
fn project(scim: &ScimServer, proxy: &FaultProxy, backend: &Backend) -> Project {
    let p = Project::at(&proxy.base_url, &scim.token, "max_deactivations = \"100%\"", "");
    p.add_connector("globex", "max_deactivations = \"100%\"");
    if let Backend::Postgres(pg) = backend {
        let url = pg.create_db("race");
        let cfg = p.path().join("connectors.toml");
        let text = std::fs::read_to_string(&cfg).unwrap().replacen(
            "url = \"sqlite://state/rostersync.db\"",
            &format!("url = \"{url}\"\npassword_env = \"ROSTERSYNC_PG_PASSWORD\""),
            1,
        );
        std::fs::write(&cfg, text).unwrap();
    }
    p
}

/// Starts `rostersync --json sync NAME ARGS…` without waiting for it.
fn spawn(p: &Project, name: &str, extra: &[&str]) -> std::process::Child {
    let mut args = vec!["--json", "sync", name];
    args.extend_from_slice(extra);
    p.command(&args)
        .env("ROSTERSYNC_PG_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rostersync")
}

fn report(name: &str, out: &Output) -> (i32, Value, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{name}: stdout is not one JSON report ({e}):\n{}\nstderr:\n{stderr}", String::from_utf8_lossy(&out.stdout))
    });
    (out.status.code().unwrap_or(-1), v, stderr)
}

/// Every connector's snapshot (external id → platform id) and the leases left, read
/// through rostersync's own store.
fn state(p: &Project, backend: &Backend) -> (HashMap<String, HashMap<String, String>>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        async fn read<S: StateStore>(s: &S) -> (HashMap<String, HashMap<String, String>>, usize) {
            let mut out = HashMap::new();
            for c in ["acme", "globex"] {
                let snap = s.snapshot(c).await.unwrap();
                out.insert(c.to_string(), snap.into_iter().map(|(id, e)| (id, e.platform_id)).collect());
            }
            let now = chrono::Utc::now();
            (out, s.leases().await.unwrap().iter().filter(|l| l.expires_at > now).count())
        }
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", p.path().join("state/rostersync.db").display());
                read(&SqliteStore::open(&url).await.unwrap()).await
            }
            Backend::Postgres(pg) => read(&PostgresStore::open(&pg.url("race"), Some(PASSWORD), None).await.unwrap()).await,
        }
    })
}

/// The platform's accounts: id → (externalId, userName).
fn accounts(scim: &ScimServer) -> HashMap<String, (String, String)> {
    scim.users()
        .into_iter()
        .map(|u| {
            let s = |k: &str| u[k].as_str().unwrap_or_default().to_string();
            (s("id"), (s("externalId"), s("userName")))
        })
        .collect()
}

/// `first` (and, when `reconcile`, acme's `--reconcile` instead of its first sync) against
/// globex's first sync at the same instant, both finding unbound accounts for E1 and E2.
fn race(backend: Backend, reconcile: bool) {
    let scim = ScimServer::start();
    let (proxy, meeting) = meeting_proxy(&scim);
    let p = project(&scim, &proxy, &backend);
    let mut acme_args: Vec<String> = Vec::new();
    let mut acme_own: HashSet<String> = HashSet::new();
    if reconcile {
        // acme has synced before: its own person E9, on its own file.
        let own = p.path().join("acme-own.csv");
        std::fs::write(&own, format!("{HEADER}\n{}\n", row(9, "ann9@example.com", true, "Sales"))).unwrap();
        let out = spawn(&p, "acme", &["--file", own.to_str().unwrap()]).wait_with_output().unwrap();
        let (code, r, err) = report("acme", &out);
        assert_eq!(code, 0, "{r}\n{err}");
        assert_eq!(r["counts"]["created"], 1, "{r}");
        acme_own.insert("E0000009".to_string());
        let both = p.path().join("acme-both.csv");
        let mut body = String::from(HEADER);
        for r in rows(2).into_iter().chain([row(9, "ann9@example.com", true, "Sales")]) {
            body.push('\n');
            body.push_str(&r);
        }
        std::fs::write(&both, body + "\n").unwrap();
        acme_args = vec!["--reconcile".into(), "--file".into(), both.to_str().unwrap().into()];
    }
    let ids: Vec<String> = (1..=2).map(|n| unbound_account(&scim, n)).collect();
    p.export("employees_2026-01-01.csv", &rows(2));
    let before_race = proxy.seen().len();
    // The setup's own listing met nobody: the race's listings meet each other.
    *meeting.lock().unwrap() = None;

    let acme_args: Vec<&str> = acme_args.iter().map(String::as_str).collect();
    let a = spawn(&p, "acme", &acme_args);
    let g = spawn(&p, "globex", &[]);
    let (a, g) = (a.wait_with_output().unwrap(), g.wait_with_output().unwrap());
    let runs = [("acme", report("acme", &a)), ("globex", report("globex", &g))];

    // The meeting happened: both listings were in before the first write of the race.
    let seen = &proxy.seen()[before_race..];
    let shown: Vec<String> = seen.iter().map(|s| format!("{:?} {} {}", s.at, s.method, s.path)).collect();
    let listings: Vec<Instant> =
        seen.iter().filter(|s| s.method == "GET" && s.path.starts_with("/Users?startIndex")).map(|s| s.at).collect();
    let writes: Vec<_> = seen.iter().filter(|s| s.method != "GET").collect();
    assert_eq!(listings.len(), 2, "one listing per run: {shown:#?}");
    let first_write = writes.iter().map(|s| s.at).min().expect("a write");
    assert!(listings.iter().all(|l| *l < first_write), "both runs listed before either wrote");

    // Exactly one connector took both accounts; the other named them as its people.
    let (winner, loser) = match (&runs[0].1.1["counts"]["adopted"], &runs[1].1.1["counts"]["adopted"]) {
        (w, l) if *w == 2 && *l == 0 => (&runs[0], &runs[1]),
        (w, l) if *w == 0 && *l == 2 => (&runs[1], &runs[0]),
        _ => panic!("one connector adopts both accounts, the other none:\n{runs:#?}"),
    };
    let ((wname, (wcode, wr, werr)), (lname, (lcode, lr, lerr))) = (winner, loser);
    assert_eq!(*wcode, 0, "{wr}\n{werr}");
    assert_eq!(*lcode, 0, "a conflict needs a person, not a retry: {lr}\n{lerr}");
    for (k, want) in [("adopted", 0), ("created", 0), ("updated", 0), ("conflicts", 2), ("failed", 0)] {
        assert_eq!(lr["counts"][k], want, "{lname}'s {k}: {lr}");
    }
    for (k, want) in [("adopted", 2), ("created", 0), ("conflicts", 0), ("failed", 0)] {
        assert_eq!(wr["counts"][k], want, "{wname}'s {k}: {wr}");
    }
    let errors = lr["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{lr}");
    for (n, id) in ids.iter().enumerate() {
        let ext = format!("E000000{}", n + 1);
        let msg = errors
            .iter()
            .filter_map(|e| e["message"].as_str())
            .find(|m| m.starts_with(&format!("\"{ext}\"")))
            .unwrap_or_else(|| panic!("{ext} named: {lr}"));
        assert!(msg.contains(id.as_str()) && msg.contains(&format!("connector \"{wname}\"")), "{msg}");
        assert!(msg.contains(&format!("adopt_from = [\"{wname}\"]")), "what to do next: {msg}");
    }
    // The loser waited, and said for what.
    let notes: Vec<&str> = lr["notes"].as_array().expect("notes").iter().filter_map(Value::as_str).collect();
    let whose = format!("waited for connector \"{wname}\"'s run");
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("waited ") && n.contains(&format!("for connector \"{wname}\"'s run")) && n.contains("free to adopt")),
        "{whose}: {notes:#?}"
    );
    assert!(wr["notes"].as_array().is_none_or(|n| !n.iter().any(|n| n.as_str().is_some_and(|n| n.starts_with("waited ")))), "{wr}");
    assert!(lerr.contains("waiting for") && lerr.contains(*wname), "the wait is logged as it begins:\n{lerr}");

    // Only the winner wrote, once per account, and only those accounts.
    let mut written: Vec<&str> = writes.iter().map(|s| s.path.trim_start_matches("/Users/")).collect();
    written.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(written, want, "one write per contested account, none by {lname}: {shown:#?}");

    // The platform: the same two accounts (plus acme's own), each bound to its person.
    let now = accounts(&scim);
    assert_eq!(now.len(), 2 + acme_own.len(), "nothing created: {now:?}");
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(now[id], (format!("E000000{}", n + 1), format!("ann{}@example.com", n + 1)), "{id}");
    }

    // The state: the accounts bound to the winner only; no lease left behind.
    let (snapshots, leases) = state(&p, &backend);
    let bound: HashMap<String, String> = ids.iter().enumerate().map(|(n, id)| (format!("E000000{}", n + 1), id.clone())).collect();
    let mut winner_has = snapshots[wname.to_owned()].clone();
    let mut loser_has = snapshots[lname.to_owned()].clone();
    for own in &acme_own {
        let side = if *wname == "acme" { &mut winner_has } else { &mut loser_has };
        assert!(side.remove(own).is_some(), "acme keeps {own}");
    }
    assert_eq!(winner_has, bound, "{wname}'s state");
    assert!(loser_has.is_empty(), "{lname} binds nothing: {loser_has:?}");
    assert_eq!(leases, 0, "every lease released");
}

#[test]
fn two_first_syncs_at_once_on_sqlite_bind_each_account_once() {
    race(Backend::Sqlite, false);
}

#[test]
fn a_reconcile_racing_another_connectors_first_sync_on_sqlite_binds_each_account_once() {
    race(Backend::Sqlite, true);
}

#[test]
fn two_first_syncs_at_once_on_postgres_bind_each_account_once() {
    race(Backend::Postgres(Postgres::start()), false);
}

#[test]
fn a_reconcile_racing_another_connectors_first_sync_on_postgres_binds_each_account_once() {
    race(Backend::Postgres(Postgres::start()), true);
}

/// Two first syncs of the same people on an empty platform: both plan creates, and the
/// second one's would meet the first one's accounts on a 409 and adopt them. One creates,
/// the other names them as the first one's people.
#[test]
fn two_first_syncs_on_an_empty_platform_create_each_person_once() {
    let scim = ScimServer::start();
    let (proxy, _meeting) = meeting_proxy(&scim);
    let backend = Backend::Sqlite;
    let p = project(&scim, &proxy, &backend);
    p.export("employees_2026-01-01.csv", &rows(2));
    let a = spawn(&p, "acme", &[]);
    let g = spawn(&p, "globex", &[]);
    let (a, g) = (a.wait_with_output().unwrap(), g.wait_with_output().unwrap());
    let runs = [("acme", report("acme", &a)), ("globex", report("globex", &g))];
    let seen = proxy.seen();
    let shown: Vec<String> = seen.iter().map(|s| format!("{:?} {} {}", s.at, s.method, s.path)).collect();
    let (winner, loser) = match (&runs[0].1.1["counts"]["created"], &runs[1].1.1["counts"]["created"]) {
        (w, l) if *w == 2 && *l == 0 => (&runs[0], &runs[1]),
        (w, l) if *w == 0 && *l == 2 => (&runs[1], &runs[0]),
        _ => panic!("one connector creates both accounts, the other none:\n{runs:#?}"),
    };
    let ((wname, (wcode, wr, werr)), (lname, (lcode, lr, lerr))) = (winner, loser);
    assert_eq!(*wcode, 0, "{wr}\n{werr}");
    assert_eq!(*lcode, 0, "a conflict needs a person, not a retry: {lr}\n{lerr}");
    for (k, want) in [("adopted", 0), ("created", 0), ("updated", 0), ("conflicts", 2), ("failed", 0)] {
        assert_eq!(lr["counts"][k], want, "{lname}'s {k}: {lr}");
    }
    let now = accounts(&scim);
    assert_eq!(now.len(), 2, "one account per person: {now:?}");
    let (snapshots, leases) = state(&p, &backend);
    let mut bound: Vec<(String, String)> = snapshots[wname.to_owned()].clone().into_iter().collect();
    bound.sort();
    let mut want: Vec<(String, String)> = now.iter().map(|(id, (ext, _))| (ext.clone(), id.clone())).collect();
    want.sort();
    assert_eq!(bound, want, "{wname} holds both accounts");
    assert_eq!(want.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(), ["E0000001", "E0000002"]);
    assert!(snapshots[lname.to_owned()].is_empty(), "{lname} binds nothing: {snapshots:?}");
    assert_eq!(leases, 0, "every lease released");
    let errors: Vec<&str> = lr["errors"].as_array().expect("errors").iter().filter_map(|e| e["message"].as_str()).collect();
    assert_eq!(errors.len(), 2, "{lr}");
    for (ext, pid) in &want {
        assert!(
            errors.iter().any(|m| m.contains(&format!("\"{ext}\""))
                && m.contains(pid.as_str())
                && m.contains(&format!("connector \"{wname}\"'s person"))
                && m.contains("adopt_from")),
            "{ext}: {errors:#?}"
        );
    }
    // The loser's creates were refused (409: the accounts exist); nothing else was written.
    let writes: Vec<&str> = seen.iter().filter(|s| s.method != "GET").map(|s| s.method.as_str()).collect();
    assert_eq!(writes, ["POST"; 4], "{shown:#?}");
    assert!(lr["notes"].to_string().contains("waited "), "{lr}");
}

/// The same race inside one daemon: two connectors on one schedule, their first runs at the
/// same instant (`max_concurrent_runs = 2`), meeting at the proxy.
#[test]
fn two_connectors_of_one_daemon_bind_each_account_once() {
    let scim = ScimServer::start();
    let (proxy, _meeting) = meeting_proxy(&scim);
    let ids: Vec<String> = (1..=2).map(|n| unbound_account(&scim, n)).collect();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let exports = dir.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    std::fs::write(exports.join("employees_2026-01-01.csv"), format!("{HEADER}\n{}\n", rows(2).join("\n"))).unwrap();
    let mapping = support::repo_root().join("mappings/demo.toml");
    // One write per account (the proxy counts them), as in the CLI runs above: no Bulk.
    let mut cfg = support::daemon::header(&scim, dir.path(), port)
        .replacen(&scim.base_url, &proxy.base_url, 1)
        .replacen("[daemon]\n", "[daemon]\nmax_concurrent_runs = 2\n", 1)
        .replacen("token_env = \"PLATFORM_SCIM_TOKEN\"\n", "token_env = \"PLATFORM_SCIM_TOKEN\"\nbulk = \"off\"\n", 1);
    for name in ["acme", "globex"] {
        cfg += &format!(
            "\n[connectors.{name}]\nschedule = \"*/4 * * * * *\"\nmapping = \"{}\"\n[connectors.{name}.local]\ndir = \"{}\"\n[connectors.{name}.file]\npath = \"employees_*.csv\"\npick = \"last-name\"\n",
            mapping.display(),
            exports.display()
        );
    }
    let mut d = support::daemon::Daemon::start(&cfg, dir, port, &scim, &[]);
    let history = || -> Vec<Value> {
        let out = std::process::Command::new(support::rostersync_bin())
            .args(["--config", d.config_path().to_str().unwrap(), "--json", "history", "--limit", "1000"])
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
    };
    // Each connector's first run that pushed or found conflicts (later runs find no new file).
    let first_runs = |h: &[Value]| -> HashMap<String, Value> {
        h.iter()
            .filter(|r| !r["ended_at"].is_null() && r["report"]["file"].is_object() && r["report"]["outcome"] == "ok")
            .map(|r| (r["connector"].as_str().unwrap_or_default().to_string(), r["report"].clone()))
            .collect()
    };
    let start = Instant::now();
    let runs = loop {
        let runs = first_runs(&history());
        if runs.len() == 2 {
            break runs;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "both connectors' first runs within a minute; log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(d.stop(Duration::from_secs(30)), Some(0), "{}", d.log());
    let (winner, loser) = match (runs["acme"]["counts"]["adopted"].as_u64(), runs["globex"]["counts"]["adopted"].as_u64()) {
        (Some(2), Some(0)) => ("acme", "globex"),
        (Some(0), Some(2)) => ("globex", "acme"),
        _ => panic!("one connector adopts both accounts, the other none: {runs:#?}\n{}", d.log()),
    };
    assert_eq!(runs[loser]["counts"]["conflicts"], 2, "{runs:#?}");
    assert_eq!(runs[loser]["counts"]["created"], 0, "{runs:#?}");
    let log = d.log();
    assert!(log.contains("waiting for daemon@") && log.contains(&format!("connector {winner} to record")), "{log}");
    // The runs met: both listings were in before the first write.
    let seen = proxy.seen();
    let listings: Vec<Instant> =
        seen.iter().filter(|s| s.method == "GET" && s.path.starts_with("/Users?startIndex")).map(|s| s.at).take(2).collect();
    let first_write = seen.iter().filter(|s| s.method != "GET").map(|s| s.at).min().expect("a write");
    assert!(listings.len() == 2 && listings.iter().all(|l| *l < first_write), "both runs listed before either wrote");
    // Only the winner wrote, once per contested account; the accounts are the winner's people.
    let writes: Vec<String> = proxy.seen().iter().filter(|s| s.method != "GET").map(|s| format!("{} {}", s.method, s.path)).collect();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    let now = accounts(&scim);
    assert_eq!(now.len(), 2, "{now:?}");
    for (n, id) in ids.iter().enumerate() {
        assert!(writes.iter().any(|w| w.ends_with(&format!("/Users/{id}"))), "{writes:#?}");
        assert_eq!(now[id].0, format!("E000000{}", n + 1));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (w, l) = rt.block_on(async {
        let s = SqliteStore::open(&format!("sqlite://{}", d.dir.path().join("state.db").display())).await.unwrap();
        (s.snapshot(winner).await.unwrap(), s.snapshot(loser).await.unwrap())
    });
    let mut bound: Vec<&str> = w.values().map(|e| e.platform_id.as_str()).collect();
    bound.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(bound, want, "{winner} holds both accounts");
    assert!(l.is_empty(), "{loser} binds nothing");
}
