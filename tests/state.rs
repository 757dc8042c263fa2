//! The state stores, on a real SQLite file and a real PostgreSQL server: every behaviour
//! test runs on both (`on_both!`), through `state::open` as the binary opens them; then the
//! migration and upgrade tests of each.

use crate::support;

use std::time::Duration;

use chrono::Utc;
use rostersync::config;
use rostersync::model::{FileFingerprint, User, UserFields};
use rostersync::report::{Counts, Report, RunOutcome};
use rostersync::state::prelude::*;
use rostersync::state::{self, SlotClaim, SnapshotWrite, SqliteStore, StateError, Store};
use support::postgres::{PASSWORD, Postgres};

fn user(id: &str, active: bool) -> User {
    User::from(UserFields {
        external_id: id.into(),
        email: Some(format!("{id}@example.com").into()),
        employee_id: Some(id.into()),
        first_name: "Zoë".into(),
        last_name: "O'Brien".into(),
        language: "fr".into(),
        active,
        manager: None,
        attributes: [("department".to_string(), "People & Culture".to_string())].into(),
    })
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty store of one kind: its `[state]` section and what keeps it alive.
struct Fixture {
    state: config::State,
    _dir: tempfile::TempDir,
    _pg: Option<Postgres>,
}

impl Fixture {
    fn new(b: Backend) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        match b {
            Backend::Sqlite => Fixture {
                state: config::State {
                    url: format!("sqlite://{}/nested/state.db", dir.path().display()),
                    password: None,
                    ca_file: None,
                    lease_ttl: config::DEFAULT_LEASE_TTL,
                    audit_retention: config::DEFAULT_AUDIT_RETENTION,
                },
                _dir: dir,
                _pg: None,
            },
            Backend::Postgres => {
                let pg = Postgres::start();
                let url = pg.create_db("rostersync");
                // The password as an operator mounts it: a file ending in a newline.
                let pw = dir.path().join("pgpass");
                std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
                Fixture {
                    state: config::State {
                        url,
                        password: Some(config::StatePassword::File(pw)),
                        ca_file: None,
                        lease_ttl: config::DEFAULT_LEASE_TTL,
                        audit_retention: config::DEFAULT_AUDIT_RETENTION,
                    },
                    _dir: dir,
                    _pg: Some(pg),
                }
            }
        }
    }

    async fn open(&self) -> Store {
        state::open(&self.state).await.unwrap()
    }
}

/// Runs each named `async fn NAME(f: Fixture)` once on SQLite and once on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Fixture::new(super::Backend::Sqlite)).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Fixture::new(super::Backend::Postgres)).await
            })*
        }
    };
}

on_both!(
    snapshot_round_trip_and_inactive_marks,
    reopening_keeps_data_and_migrations_run_once,
    a_lease_refuses_a_second_holder_until_released_or_expired,
    renewals_get_through_while_another_task_writes_back_to_back,
    last_file_history_and_interrupted_runs,
    large_batches_with_edge_strings_round_trip_exactly,
    a_mixed_batch_applies_in_order,
    two_stores_opening_a_new_store_at_once_both_succeed,
    a_slot_is_claimed_once_and_taken_over_only_after_its_claim_lapses,
    runs_name_their_worker_and_leases_their_holder,
    the_reconcile_marker_is_set_replaced_and_cleared,
    reports_of_finds_the_people_of_a_manager,
    held_elsewhere_finds_other_connectors_accounts_by_platform_id_and_folded_id,
    others_hold_any_sees_a_connector_before_between_or_after_the_excluded_ones,
    the_audit_trail_and_stored_plans_round_trip,
    audit_batches_larger_than_a_statement_round_trip,
    a_write_dropped_half_way_records_nothing_and_the_next_write_works,
    a_run_whose_lease_was_taken_over_cannot_write,
);

/// Fencing: a run frozen past its lease (A) wakes after another (B) took the connector over.
/// Every write of A is refused, typed, with nothing written; B's go through; each run is
/// recorded with its token, and the tokens grow with each take-over.
async fn a_run_whose_lease_was_taken_over_cannot_write(f: Fixture) {
    use rostersync::state::{AuditEntry, Fence};
    let s = f.open().await;
    let ttl = Duration::from_millis(300);
    let ta = s.acquire("acme", "a", ttl).await.unwrap();
    assert_eq!(s.lease_token("acme", "a").await.unwrap(), Some(ta), "acquire returns the lease's token");
    let a = s.fenced(Fence { connector: "acme".into(), token: ta });
    a.start_run("acme", "run-a").await.unwrap();
    a.write("acme", &[SnapshotWrite::Upsert { platform_id: "p1".into(), user: Box::new(user("u1", true)) }]).await.unwrap();

    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let tb = s.acquire("acme", "b", Duration::from_secs(60)).await.unwrap();
    assert_eq!(s.lease_token("acme", "b").await.unwrap(), Some(tb));
    assert!(tb > ta, "a take-over gives a higher token: {ta} then {tb}");
    assert_eq!(s.lease_token("acme", "a").await.unwrap(), None);
    let b = s.fenced(Fence { connector: "acme".into(), token: tb });
    b.start_run("acme", "run-b").await.unwrap();

    let refused = |r: Result<(), StateError>, what: &str| match r {
        Err(StateError::Fenced { connector, token }) => assert_eq!((connector.as_str(), token), ("acme", ta), "{what}"),
        other => panic!("{what}: a stale writer's write went through or failed otherwise: {other:?}"),
    };
    let batch = [
        SnapshotWrite::Upsert { platform_id: "p2".into(), user: Box::new(user("u2", true)) },
        SnapshotWrite::Remove { external_id: "u1".into() },
    ];
    refused(a.write("acme", &batch).await, "snapshot");
    refused(a.set_last_file("acme", &FileFingerprint { path: "a.csv".into(), size: 1, mtime: None, sha256: "aa".into() }).await, "file");
    refused(a.set_reconcile("acme", "run-a", "push started").await, "marker");
    let entry = AuditEntry {
        connector: "acme".into(),
        external_id: "u2".into(),
        run_id: "run-a".into(),
        at: Utc::now(),
        kind: "create".into(),
        fields: vec![],
        status: "ok".into(),
        http_status: None,
        approval: None,
    };
    refused(a.write_audit(std::slice::from_ref(&entry)).await, "audit");
    refused(a.finish_run(&rostersync::report::Report::new("acme", "run-a", false), Utc::now()).await.map(drop), "outcome");
    refused(a.start_run("acme", "run-a2").await.map(drop), "a run's start");
    // Nothing of it was written.
    let snap = s.snapshot("acme").await.unwrap();
    assert!(snap.contains_key("u1") && !snap.contains_key("u2"), "{snap:?}");
    assert_eq!(s.last_file("acme").await.unwrap(), None);
    assert_eq!(s.reconcile_mark("acme").await.unwrap(), None);
    assert!(s.person_history(Some("acme"), "u2", 10).await.unwrap().is_empty());
    // The holder writes; history records each run with its token (a's stays unfinished).
    b.write("acme", &batch).await.unwrap();
    b.write_audit(&[AuditEntry { run_id: "run-b".into(), ..entry }]).await.unwrap();
    b.finish_run(&rostersync::report::Report::new("acme", "run-b", false), Utc::now()).await.unwrap();
    // The holder's end of a run never recorded changes nothing, as unfenced: no refusal.
    b.finish_run(&rostersync::report::Report::new("acme", "run-never-started", false), Utc::now()).await.unwrap();
    assert!(s.snapshot("acme").await.unwrap().contains_key("u2"));
    let h = s.history(Some("acme"), 10).await.unwrap();
    let fences: Vec<(String, Option<i64>, bool)> = h.iter().map(|r| (r.run_id.clone(), r.fence, r.ended_at.is_some())).collect();
    assert_eq!(fences, [("run-b".to_string(), Some(tb), true), ("run-a".to_string(), Some(ta), false)]);
    // Released, then taken again: still higher.
    s.release("acme", "b").await.unwrap();
    s.acquire("acme", "c", ttl).await.unwrap();
    assert!(s.lease_token("acme", "c").await.unwrap().unwrap() > tb);
    assert!(matches!(b.write("acme", &batch).await, Err(StateError::Fenced { token, .. }) if token == tb), "b's lease is over too");
}

async fn snapshot_round_trip_and_inactive_marks(f: Fixture) {
    let s = f.open().await;
    s.write(
        "acme",
        &[
            SnapshotWrite::Upsert { platform_id: "p1".into(), user: Box::new(user("a", true)) },
            SnapshotWrite::Upsert { platform_id: "p2".into(), user: Box::new(user("b", true)) },
        ],
    )
    .await
    .unwrap();
    s.write("other", &[SnapshotWrite::Upsert { platform_id: "x".into(), user: Box::new(user("a", true)) }]).await.unwrap();
    let snap = s.snapshot("acme").await.unwrap();
    assert_eq!(snap.len(), 2);
    assert_eq!(snap["a"].platform_id, "p1");
    assert_eq!(snap["a"].hash, user("a", true).content_hash());

    s.write("acme", &[SnapshotWrite::MarkInactive { external_id: "b".into() }, SnapshotWrite::Remove { external_id: "a".into() }])
        .await
        .unwrap();
    let snap = s.snapshot("acme").await.unwrap();
    assert_eq!(snap.len(), 1);
    assert!(!snap["b"].active);
    assert_eq!(snap["b"].hash, user("b", false).content_hash(), "an inactive mark rehashes so a comeback is an update");
    let contents = s.contents("acme", &["b", "zzz"]).await.unwrap();
    assert_eq!(contents.len(), 1);
    assert_eq!(contents["b"], user("b", false));
    assert_eq!(s.snapshot("other").await.unwrap().len(), 1, "connectors are separate");
    let ids = s.platform_ids("acme", &["b", "a", "zzz"]).await.unwrap();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec![("b".to_string(), "p2".to_string())], "the removed and the unknown have none");
    let other = s.platform_ids("other", &["a", "b"]).await.unwrap();
    assert_eq!(other.get("a").map(String::as_str), Some("x"), "another connector's rows are its own");
    assert!(s.platform_ids("acme", &[]).await.unwrap().is_empty());
}

async fn reopening_keeps_data_and_migrations_run_once(f: Fixture) {
    {
        let s = f.open().await;
        s.write("acme", &[SnapshotWrite::Upsert { platform_id: "p1".into(), user: Box::new(user("a", true)) }]).await.unwrap();
    }
    let s = f.open().await;
    assert_eq!(s.snapshot("acme").await.unwrap().len(), 1);
}

async fn a_lease_refuses_a_second_holder_until_released_or_expired(f: Fixture) {
    let s = f.open().await;
    s.acquire("acme", "cli@host pid 1", Duration::from_secs(60)).await.unwrap();
    match s.acquire("acme", "daemon@host pid 2", Duration::from_secs(60)).await {
        Err(StateError::Held { holder, .. }) => assert_eq!(holder, "cli@host pid 1"),
        other => panic!("expected Held, got {other:?}"),
    }
    let msg = s.acquire("acme", "daemon@host pid 2", Duration::from_secs(60)).await.unwrap_err().to_string();
    assert!(msg.contains("already running: held by cli@host pid 1 since"), "{msg}");
    s.acquire("globex", "daemon@host pid 2", Duration::from_secs(60)).await.unwrap();
    s.release("acme", "cli@host pid 1").await.unwrap();
    s.acquire("acme", "daemon@host pid 2", Duration::from_secs(60)).await.unwrap();

    // A holder that died: its lease expires and is taken over.
    s.acquire("dead", "crashed pid 3", Duration::from_millis(50)).await.unwrap();
    assert!(s.acquire("dead", "new pid 4", Duration::from_secs(60)).await.is_err());
    tokio::time::sleep(Duration::from_millis(80)).await;
    s.acquire("dead", "new pid 4", Duration::from_secs(60)).await.unwrap();
    // Renewing keeps it.
    assert!(s.renew("dead", "new pid 4", Duration::from_secs(60)).await.unwrap(), "the holder renews");
    assert!(s.acquire("dead", "third pid 5", Duration::from_secs(60)).await.is_err());
    // The dead holder, had it only been slow, learns that its lease is another's now: it must
    // stop, and its renewal must not take the lease back.
    assert!(!s.renew("dead", "crashed pid 3", Duration::from_secs(60)).await.unwrap(), "a taken-over lease is not renewed");
    assert!(!s.renew("nobody", "crashed pid 3", Duration::from_secs(60)).await.unwrap(), "nor a released one");
    assert_eq!(s.live_lease("dead").await.unwrap().map(|l| l.holder), Some("new pid 4".to_string()));
}

/// A long push writes its batches back to back; the lease's heartbeat must still get through
/// in a fraction of the TTL. On SQLite it did not: each renewal polled for the write lock
/// and lost to the next batch for all of busy_timeout (30 s), longer than the lease lasts.
async fn renewals_get_through_while_another_task_writes_back_to_back(f: Fixture) {
    let s = std::sync::Arc::new(f.open().await);
    s.acquire("acme", "cli@host pid 1 run r1", Duration::from_secs(20)).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            // Built once, so the writer begins its next transaction the moment it commits, as
            // a push does with its outcomes already queued.
            let batch: Vec<SnapshotWrite> = (0..1000)
                .map(|i| SnapshotWrite::Upsert { platform_id: format!("p{i}"), user: Box::new(user(&format!("u{i:04}"), i % 2 == 0)) })
                .collect();
            let (mut batches, mut longest) = (0u32, Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = std::time::Instant::now();
                s.write("globex", &batch).await.unwrap();
                longest = longest.max(t.elapsed());
                batches += 1;
            }
            (batches, longest)
        })
    };
    // Let the writer get going, then renew every 100 ms for 6 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    let mut renewals = 0;
    let until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < until {
        let t = std::time::Instant::now();
        let renewed = tokio::time::timeout(Duration::from_secs(40), s.renew("acme", "cli@host pid 1 run r1", Duration::from_secs(20)))
            .await
            .expect("a renewal answers within busy_timeout")
            .unwrap_or_else(|e| panic!("renewal {renewals} failed after {:?}: {e}", t.elapsed()));
        assert!(renewed, "the lease is still ours");
        slowest = slowest.max(t.elapsed());
        renewals += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (batches, longest) = writer.await.unwrap();
    eprintln!("slowest of {renewals} renewals: {slowest:?}, beside {batches} batch writes (the longest {longest:?})");
    assert!(batches >= 5, "the writer wrote back to back meanwhile ({batches} batches of 1000)");
    // A renewal waits behind at most the batch being written, whatever the machine's speed
    // (the bound is relative to the batches measured here); a starved one waits many.
    assert!(
        slowest <= longest * 2 + Duration::from_millis(250),
        "the slowest of {renewals} renewals took {slowest:?}, beside {batches} batch writes of at most {longest:?}"
    );
}

async fn last_file_history_and_interrupted_runs(f: Fixture) {
    let s = f.open().await;
    assert!(s.last_file("acme").await.unwrap().is_none());
    let fp =
        FileFingerprint { path: "/x/e.csv".into(), size: 10, mtime: Some("2026-11-20T01:00:00+00:00".into()), sha256: "ab".repeat(32) };
    s.set_last_file("acme", &fp).await.unwrap();
    assert_eq!(s.last_file("acme").await.unwrap().unwrap().fingerprint, fp);

    // A run's start is stamped by the store's clock (PostgreSQL's on a fleet) and returned:
    // it lies between two reads of that clock, and the history holds the same time.
    let before = s.clock().await.unwrap();
    let started = s.start_run("acme", "run-1").await.unwrap();
    let after = s.clock().await.unwrap();
    assert!(before <= started && started <= after, "{before} <= {started} <= {after}");
    assert!(!s.interrupted("acme", "run-1").await.unwrap(), "the current run is not 'previous'");
    // run-1 never finishes (the process died); run-2 sees it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.start_run("acme", "run-2").await.unwrap();
    assert!(s.interrupted("acme", "run-2").await.unwrap());
    let report = Report {
        outcome: RunOutcome::Ok,
        file: Some(fp),
        counts: Counts { rows: 3, valid: 3, created: 3, ..Default::default() },
        duration_ms: 12,
        ..Report::new("acme", "run-2", false)
    };
    // The end of run-2 also says that an earlier run has no recorded end (run-1): the only
    // case in which a run reads its history to close such runs.
    assert!(s.finish_run(&report, Utc::now()).await.unwrap(), "run-1's end is missing");
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.start_run("acme", "run-3").await.unwrap();
    assert!(!s.interrupted("acme", "run-3").await.unwrap());
    // Another connector's unfinished run is not this one's.
    s.start_run("globex", "run-g").await.unwrap();
    let h = s.history(Some("acme"), 10).await.unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[1].run_id, "run-2");
    // Stored as it was returned (SQLite keeps milliseconds, PostgreSQL microseconds).
    let stored = h[2].started_at;
    assert!((stored - started).num_milliseconds().abs() <= 1, "{stored} vs {started}");
    assert_eq!(h[1].report.as_ref().unwrap(), &report);
    assert!(h[2].report.is_none());
    // run-1 closed (as `close_unfinished` does; run-3 still runs), then run-3's end finds
    // nothing left to close.
    assert!(s.finish_run(&Report::new("acme", "run-1", false), Utc::now()).await.unwrap(), "run-3 has no end yet");
    assert!(!s.finish_run(&Report::new("acme", "run-3", false), Utc::now()).await.unwrap(), "no earlier run is unfinished");
}

/// Strings that must survive the JSON of the bulk paths byte for byte: quotes, backslashes,
/// JSON and SQL syntax, control characters, unicode beyond the BMP, an empty string.
const EDGE: &[&str] = &[
    "",
    "O'Brien \"the\" \\ back\\slash",
    "]},{\"x\":1}]",
    "'); DROP TABLE snapshot; --",
    "tab\tnew\nline\r\u{1}\u{1f}\u{7f}",
    "Zoë Ñandú 日本語 עברית 🧑‍💻 \u{feff}\u{2028}",
    "\\u0000 not a NUL",
];

fn edge_user(i: usize) -> User {
    let e = |k: usize| EDGE[(i + k) % EDGE.len()];
    User::from(UserFields {
        external_id: format!("{}{i}", e(0)).into(),
        email: if i.is_multiple_of(3) { None } else { Some(format!("{}{i}@example.com", e(1)).into()) },
        employee_id: Some(e(2).into()),
        first_name: e(3).into(),
        last_name: e(4).into(),
        language: e(5).into(),
        active: !i.is_multiple_of(4),
        manager: if i.is_multiple_of(2) { None } else { Some(e(2).into()) },
        attributes: [("department", e(6)), (e(1), e(2))].into(),
    })
}

async fn large_batches_with_edge_strings_round_trip_exactly(f: Fixture) {
    let s = f.open().await;
    // More users than one chunk of the snapshot load (50,000), in batches as large as sync's
    // biggest, with an empty external id (sorts first) among them.
    let n = 55_000;
    let users: Vec<User> =
        (0..n).map(edge_user).chain([User::from(UserFields { external_id: "".into(), ..edge_user(1).fields() })]).collect();
    for (b, chunk) in users.chunks(10_000).enumerate() {
        let batch: Vec<SnapshotWrite> = chunk
            .iter()
            .enumerate()
            .map(|(i, u)| SnapshotWrite::Upsert { platform_id: format!("{}-p{b}-{i}", EDGE[i % EDGE.len()]), user: Box::new(u.clone()) })
            .collect();
        s.write("acme", &batch).await.unwrap();
    }
    let snap = s.snapshot("acme").await.unwrap();
    assert_eq!(snap.len(), users.len());
    for (b, chunk) in users.chunks(10_000).enumerate() {
        for (i, u) in chunk.iter().enumerate() {
            let e = &snap[u.external_id.as_str()];
            assert_eq!(e.platform_id, format!("{}-p{b}-{i}", EDGE[i % EDGE.len()]));
            assert_eq!(e.hash, u.content_hash(), "{:?}", u.external_id);
            assert_eq!(e.active, u.active);
        }
    }
    let ids: Vec<&str> = users.iter().map(|u| u.external_id.as_str()).chain(["absent", "'", "\""]).collect();
    let contents = s.contents("acme", &ids).await.unwrap();
    assert_eq!(contents.len(), users.len());
    for u in &users {
        assert_eq!(&contents[u.external_id.as_str()], u);
    }
    assert!(s.snapshot("acme2").await.unwrap().is_empty());
}

/// A write given up mid-transaction (a run's deadline, a stop) drops its transaction: none
/// of the batch is recorded, and the connection serves the next write (or is replaced).
async fn a_write_dropped_half_way_records_nothing_and_the_next_write_works(f: Fixture) {
    let s = f.open().await;
    let batch: Vec<SnapshotWrite> =
        (0..20_000).map(|i| SnapshotWrite::Upsert { platform_id: format!("p{i}"), user: Box::new(edge_user(i)) }).collect();
    let clear: Vec<SnapshotWrite> =
        (0..20_000).map(|i| SnapshotWrite::Remove { external_id: edge_user(i).external_id.to_string() }).collect();
    // Cut at growing delays, until one lands before the commit; each cut is all or nothing.
    let mut cut = 0;
    for ms in [1, 5, 20, 50] {
        let given_up = tokio::time::timeout(Duration::from_millis(ms), s.write("acme", &batch)).await.is_err();
        let n = s.snapshot("acme").await.unwrap().len();
        assert!(n == 0 || n == batch.len(), "all of the batch or none, never {n}");
        cut += usize::from(given_up && n == 0);
        s.write("other", &[SnapshotWrite::Upsert { platform_id: "x".into(), user: Box::new(user("a", true)) }])
            .await
            .expect("the next write works");
        s.write("acme", &clear).await.unwrap();
    }
    assert!(cut > 0, "no write was cut before its commit: the test proves nothing");
    assert!(s.renew("acme", "nobody", Duration::from_secs(5)).await.is_ok());
}

async fn a_mixed_batch_applies_in_order(f: Fixture) {
    let s = f.open().await;
    let (a, b, c) = (edge_user(1), edge_user(2), edge_user(3));
    let up = |u: &User, p: &str| SnapshotWrite::Upsert { platform_id: p.into(), user: Box::new(u.clone()) };
    let inactive = |u: &User| SnapshotWrite::MarkInactive { external_id: u.external_id.to_string() };
    let remove = |u: &User| SnapshotWrite::Remove { external_id: u.external_id.to_string() };
    s.write(
        "acme",
        &[
            up(&a, "pa"),
            remove(&a),
            up(&b, "pb"),
            inactive(&b),
            up(&c, "pc1"),
            up(&c, "pc2"),
            SnapshotWrite::MarkInactive { external_id: "never stored".into() },
            SnapshotWrite::Remove { external_id: "never stored either".into() },
        ],
    )
    .await
    .unwrap();
    let snap = s.snapshot("acme").await.unwrap();
    assert_eq!(snap.len(), 2, "a was removed after its upsert");
    let b_off = User::from(UserFields { active: false, ..b.fields() });
    assert!(!snap[b.external_id.as_str()].active);
    assert_eq!(snap[b.external_id.as_str()].hash, b_off.content_hash());
    assert_eq!(snap[c.external_id.as_str()].platform_id, "pc2", "the later upsert wins");
    let contents = s.contents("acme", &[b.external_id.as_str(), c.external_id.as_str()]).await.unwrap();
    assert_eq!(contents[b.external_id.as_str()], b_off);
    assert_eq!(contents[c.external_id.as_str()], c);
    // Up again: a comeback of b is a new hash, active.
    s.write("acme", &[up(&b, "pb")]).await.unwrap();
    assert_eq!(s.snapshot("acme").await.unwrap()[b.external_id.as_str()].hash, b.content_hash());
}

/// The schema and version marker that rostersync's own migrations wrote before sqlx's
/// migrator (schema version 1), verbatim.
const LEGACY_V1: &str = r#"
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE snapshot (
    connector   TEXT NOT NULL,
    external_id TEXT NOT NULL,
    platform_id TEXT NOT NULL,
    hash        BLOB NOT NULL,
    active      INTEGER NOT NULL,
    content     TEXT NOT NULL,
    PRIMARY KEY (connector, external_id)
) WITHOUT ROWID;
CREATE TABLE last_file (
    connector TEXT PRIMARY KEY,
    path      TEXT NOT NULL,
    size      INTEGER NOT NULL,
    mtime     TEXT,
    sha256    TEXT NOT NULL,
    synced_at TEXT NOT NULL
);
CREATE TABLE runs (
    run_id     TEXT PRIMARY KEY,
    connector  TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at   TEXT,
    report     TEXT
);
CREATE INDEX runs_by_connector ON runs (connector, started_at);
CREATE TABLE leases (
    connector   TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
INSERT INTO schema_version (version) VALUES (1);
"#;

/// Runs raw SQL on a state file, as an old build (or a hand) would, outside `SqliteStore`.
async fn raw(path: &std::path::Path, sql: &str, binds: &[&[u8]]) {
    use sqlx::Connection;
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path).create_if_missing(true);
    let mut conn = sqlx::sqlite::SqliteConnection::connect_with(&opts).await.unwrap();
    if binds.is_empty() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
    } else {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
        for b in binds {
            q = q.bind(b.to_vec());
        }
        q.execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_state_db_from_the_hand_rolled_migrations_opens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let url = format!("sqlite://{}", path.display());
    raw(&path, LEGACY_V1, &[]).await;
    let a = user("a", true);
    let content = serde_json::to_string(&a).unwrap();
    raw(
        &path,
        "INSERT INTO snapshot (connector, external_id, platform_id, hash, active, content) VALUES ('acme', 'a', 'p1', ?1, 1, CAST(?2 AS TEXT))",
        &[&a.content_hash(), content.as_bytes()],
    )
    .await;
    raw(
        &path,
        "INSERT INTO last_file VALUES ('acme', '/x/e.csv', 10, NULL, 'abcd', '2026-11-20T01:00:00.000Z');
         INSERT INTO runs VALUES ('run-0', 'acme', '2026-11-20T01:00:00.000Z', NULL, NULL);",
        &[],
    )
    .await;

    let s = SqliteStore::open(&url).await.unwrap();
    let snap = s.snapshot("acme").await.unwrap();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap["a"].platform_id, "p1");
    assert_eq!(snap["a"].hash, a.content_hash());
    assert!(snap["a"].active);
    assert_eq!(s.contents("acme", &["a"]).await.unwrap()["a"], a);
    assert_eq!(s.last_file("acme").await.unwrap().unwrap().fingerprint.sha256, "abcd");
    assert!(s.interrupted("acme", "run-1").await.unwrap(), "the old run history is kept");
    s.write("acme", &[SnapshotWrite::MarkInactive { external_id: "a".into() }]).await.unwrap();
    drop(s);

    // Opened again: the adopted migration is not run a second time.
    let s = SqliteStore::open(&url).await.unwrap();
    assert_eq!(s.snapshot("acme").await.unwrap()["a"].hash, user("a", false).content_hash());
}

/// What a push writes to the state file stays in proportion to what it stores. The snapshot
/// was a WITHOUT ROWID table: every user's whole row in the key's B-tree, so upserts arriving
/// across the key range (outcomes of several requests at once, a second wave between the
/// first's keys) split full leaves and rewrote their neighbours batch after batch: a 1M first
/// sync wrote ≈ 7 GB for a 600 MB database. Here each batch spans the whole key range, the
/// worst case; the bytes this process hands to `write`/`pwrite` (its `wchar`, counted whatever
/// the file system) are held to a few times the rows' own bytes (≈ 3× now, ≈ 8× before).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_across_the_key_range_writes_the_state_a_few_times_not_ten() {
    fn wchar() -> u64 {
        let io = std::fs::read_to_string("/proc/self/io").unwrap();
        io.lines().find_map(|l| l.strip_prefix("wchar: ")).unwrap().trim().parse().unwrap()
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let url = format!("sqlite://{}", path.display());
    let s = SqliteStore::open(&url).await.unwrap();
    const N: usize = 20_000;
    const BATCHES: usize = 10;
    let before = wchar();
    let mut logical = 0;
    for b in 0..BATCHES {
        let batch: Vec<SnapshotWrite> = (0..N / BATCHES)
            .map(|k| {
                let i = k * BATCHES + b;
                let mut u = user(&format!("E{i:07}"), true);
                u.set_attributes(&[("title".to_string(), format!("{:0>250}", i))].into());
                logical += serde_json::to_string(&u).unwrap().len() + 2 * u.external_id.len() + 40;
                SnapshotWrite::Upsert { platform_id: format!("p-{i}"), user: Box::new(u) }
            })
            .collect();
        s.write("acme", &batch).await.unwrap();
    }
    let written = (wchar() - before) as usize;
    assert_eq!(s.snapshot("acme").await.unwrap().len(), N);
    eprintln!("written {written} bytes for {logical} of rows ({:.1}×)", written as f64 / logical as f64);
    assert!(written < 5 * logical, "{written} bytes written for {logical} bytes of rows");
}

/// A long push's WAL is copied into the database beside the writer: it stays small and
/// restarts, where SQLite's own checkpoint (64 MiB) would have let ~30 MB of it pile up.
/// Every row reads back afterwards, and from a fresh open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_push_keeps_its_wal_small_by_checkpoints_beside_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let url = format!("sqlite://{}", path.display());
    let s = SqliteStore::open(&url).await.unwrap();
    let wal = dir.path().join("state.db-wal");
    let mut largest = 0;
    for b in 0..30 {
        let batch: Vec<SnapshotWrite> = (0..2000)
            .map(|i| {
                let mut u = user(&format!("E{b:02}{i:05}"), true);
                u.set_attributes(&[("title".to_string(), format!("{:0>400}", i))].into());
                SnapshotWrite::Upsert { platform_id: format!("p{b}-{i}"), user: Box::new(u) }
            })
            .collect();
        s.write("acme", &batch).await.unwrap();
        // The push's pace: the next batch comes while the checkpoint copies.
        tokio::time::sleep(Duration::from_millis(30)).await;
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    assert!(largest > 0, "the store writes through a WAL");
    assert!(largest < 12 << 20, "the WAL reached {largest} bytes: not checkpointed beside the writer");
    assert_eq!(s.snapshot("acme").await.unwrap().len(), 60_000);
    drop(s);
    let s = SqliteStore::open(&url).await.unwrap();
    assert_eq!(s.snapshot("acme").await.unwrap().len(), 60_000);
}

#[tokio::test]
async fn a_state_db_from_a_newer_rostersync_is_refused() {
    // sqlx's record of a migration this build does not have.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let url = format!("sqlite://{}", path.display());
    drop(SqliteStore::open(&url).await.unwrap());
    raw(
        &path,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (90001, 'from the future', TRUE, x'00', 0)",
        &[],
    )
    .await;
    match SqliteStore::open(&url).await {
        Err(StateError::Schema { detail, .. }) => assert!(detail.contains("90001") && detail.contains("upgrade rostersync"), "{detail}"),
        Err(other) => panic!("expected Schema, got {other:?}"),
        Ok(_) => panic!("expected Schema, got a store"),
    }

    // The old marker above what the hand-rolled migrations knew.
    let path = dir.path().join("old.db");
    raw(&path, &LEGACY_V1.replace("VALUES (1)", "VALUES (1); INSERT INTO schema_version (version) VALUES (2)"), &[]).await;
    match SqliteStore::open(&format!("sqlite://{}", path.display())).await {
        Err(StateError::Schema { detail, .. }) => assert!(detail.contains("schema version 2"), "{detail}"),
        Err(other) => panic!("expected Schema, got {other:?}"),
        Ok(_) => panic!("expected Schema, got a store"),
    }
}

async fn two_stores_opening_a_new_store_at_once_both_succeed(f: Fixture) {
    // The daemon and a CLI run (or a fleet's daemons) starting together on a fresh install:
    // the migration runs once.
    let (a, b) = tokio::join!(state::open(&f.state), state::open(&f.state));
    let (a, b) = (a.unwrap(), b.unwrap());
    a.write("acme", &[SnapshotWrite::Upsert { platform_id: "p1".into(), user: Box::new(user("a", true)) }]).await.unwrap();
    assert_eq!(b.snapshot("acme").await.unwrap().len(), 1);
}

async fn a_slot_is_claimed_once_and_taken_over_only_after_its_claim_lapses(f: Fixture) {
    let s = f.open().await;
    let slot = "2026-12-01T10:00:00Z".parse().unwrap();
    let ttl = Duration::from_millis(600);
    assert_eq!(s.claim_slot("acme", slot, "w1", ttl).await.unwrap(), SlotClaim::Won);
    match s.claim_slot("acme", slot, "w2", ttl).await.unwrap() {
        SlotClaim::Held { worker, expires_at } => {
            assert_eq!(worker, "w1");
            assert!(expires_at > Utc::now(), "a fresh claim lapses in the future: {expires_at}");
        }
        other => panic!("expected Held by w1, got {other:?}"),
    }
    // Another connector's same slot, and the same connector's next slot, are separate.
    assert_eq!(s.claim_slot("globex", slot, "w2", ttl).await.unwrap(), SlotClaim::Won);
    let next = "2026-12-01T10:01:00Z".parse().unwrap();
    assert_eq!(s.claim_slot("acme", next, "w2", ttl).await.unwrap(), SlotClaim::Won);

    // w1's heartbeat keeps its claim past the first TTL.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.renew_slots("w1", ttl).await.unwrap(), 1, "w1 holds one unfinished slot");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(s.claim_slot("acme", slot, "w2", ttl).await.unwrap(), SlotClaim::Held { .. }), "renewed: still w1's");
    // Then w1 dies (no more heartbeats): its claim lapses and w2 takes the slot, once.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(s.claim_slot("acme", slot, "w2", ttl).await.unwrap(), SlotClaim::Won);
    assert!(matches!(s.claim_slot("acme", slot, "w3", ttl).await.unwrap(), SlotClaim::Held { worker, .. } if worker == "w2"));
    // w1's late finish no longer counts (the slot is w2's); w2's does, for good.
    s.finish_slot("acme", slot, "w1").await.unwrap();
    assert!(matches!(s.claim_slot("acme", slot, "w3", ttl).await.unwrap(), SlotClaim::Held { .. }));
    s.finish_slot("acme", slot, "w2").await.unwrap();
    assert_eq!(s.claim_slot("acme", slot, "w3", ttl).await.unwrap(), SlotClaim::Done);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(s.claim_slot("acme", slot, "w3", ttl).await.unwrap(), SlotClaim::Done, "a finished slot never lapses");
    assert_eq!(s.renew_slots("w2", ttl).await.unwrap(), 2, "w2 still holds globex's and acme's next slot");
}

async fn runs_name_their_worker_and_leases_their_holder(f: Fixture) {
    let s = f.open().await;
    s.start_run("acme", "run-1").await.unwrap();
    let h = s.history(None, 10).await.unwrap();
    assert_eq!(h[0].worker.as_deref(), Some(state::worker_id().as_str()));
    assert!(state::worker_id().ends_with(&format!(" pid {}", std::process::id())), "{}", state::worker_id());
    assert!(s.leases().await.unwrap().is_empty());
    s.acquire("acme", "daemon@h1 pid 7 run r1", Duration::from_secs(30)).await.unwrap();
    s.acquire("globex", "cli@h2 pid 8 run r2", Duration::from_secs(30)).await.unwrap();
    let l = s.leases().await.unwrap();
    assert_eq!(
        l.iter().map(|l| (l.connector.as_str(), l.holder.as_str())).collect::<Vec<_>>(),
        [("acme", "daemon@h1 pid 7 run r1"), ("globex", "cli@h2 pid 8 run r2")]
    );
    let d = l[0].expires_at - l[0].acquired_at;
    assert!((29_000..=31_000).contains(&d.num_milliseconds()), "{d}");
    assert_eq!(s.live_lease("acme").await.unwrap().map(|l| l.holder), Some("daemon@h1 pid 7 run r1".to_string()));
    assert!(s.live_lease("initech").await.unwrap().is_none());
    s.acquire("dead", "daemon@h3 pid 9 run r3", Duration::from_millis(50)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(s.live_lease("dead").await.unwrap().is_none(), "an expired lease is nobody's");
    assert_eq!(s.leases().await.unwrap().len(), 3, "but still listed until taken over");
}

// ---- PostgreSQL: connection errors, migrations, upgrades ----

fn pg_state(pg: &Postgres, db: &str, dir: &tempfile::TempDir) -> config::State {
    let pw = dir.path().join("pgpass");
    std::fs::write(&pw, PASSWORD).unwrap();
    config::State {
        url: pg.url(db),
        password: Some(config::StatePassword::File(pw)),
        ca_file: None,
        lease_ttl: config::DEFAULT_LEASE_TTL,
        audit_retention: config::DEFAULT_AUDIT_RETENTION,
    }
}

fn open_err(r: Result<Store, StateError>) -> StateError {
    match r {
        Err(e) => e,
        Ok(_) => panic!("expected an error, got a store"),
    }
}

#[tokio::test]
async fn postgres_unreachable_and_refused_logins_say_where_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // Nobody listens on this port.
    let port = support::free_port();
    let st = config::State {
        url: format!("postgres://postgres@127.0.0.1:{port}/rostersync"),
        password: None,
        ca_file: None,
        lease_ttl: config::DEFAULT_LEASE_TTL,
        audit_retention: config::DEFAULT_AUDIT_RETENTION,
    };
    let e = open_err(state::open(&st).await);
    assert!(matches!(e, StateError::Unreachable { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("Check that the server runs"), "{msg}");

    let pg = Postgres::start();
    pg.create_db("rostersync");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password-9c1d").unwrap();
    let st = config::State { password: Some(config::StatePassword::File(wrong)), ..pg_state(&pg, "rostersync", &dir) };
    let e = open_err(state::open(&st).await);
    assert!(matches!(e, StateError::Login { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("password_env / password_file") && !msg.contains("not-the-password-9c1d"), "{msg}");

    let st = config::State { password: Some(config::StatePassword::Env("ROSTERSYNC_TEST_UNSET_VARIABLE".into())), ..st };
    let e = open_err(state::open(&st).await);
    assert!(e.to_string().contains("ROSTERSYNC_TEST_UNSET_VARIABLE named by [state] password_env is not set"), "{e}");

    let e = open_err(state::open(&pg_state(&pg, "no_such_db", &dir)).await);
    assert!(e.to_string().contains("create it first"), "{e}");
}

#[tokio::test]
async fn postgres_migrates_from_empty_and_from_the_previous_schema_keeping_data() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    pg.create_db("old");
    // A database at the previous schema: every migration but the last, applied by sqlx
    // from a copy of the folder, as the previous build would have.
    let mut files: Vec<_> =
        std::fs::read_dir(support::repo_root().join("migrations-postgres")).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let prev = dir.path().join("prev");
    std::fs::create_dir(&prev).unwrap();
    for f in &files[..files.len() - 1] {
        std::fs::copy(f, prev.join(f.file_name().unwrap())).unwrap();
    }
    {
        let pool = sqlx::PgPool::connect(&pg.admin_url("old")).await.unwrap();
        sqlx::migrate::Migrator::new(prev.as_path()).await.unwrap().run(&pool).await.unwrap();
        pool.close().await;
    }
    let a = user("a", true);
    pg.psql(
        "old",
        &format!(
            "INSERT INTO snapshot VALUES ('acme', 'a', 'p1', '\\x{}', true, '{}');
             INSERT INTO runs (run_id, connector, started_at) VALUES ('run-0', 'acme', now());",
            hex::encode(a.content_hash()),
            serde_json::to_string(&a).unwrap().replace('\'', "''")
        ),
    );
    let before = pg.psql("old", "SELECT count(*) FROM _sqlx_migrations");

    let s = state::open(&pg_state(&pg, "old", &dir)).await.unwrap();
    assert_eq!(pg.psql("old", "SELECT count(*) FROM _sqlx_migrations"), files.len().to_string(), "was {before}");
    let snap = s.snapshot("acme").await.unwrap();
    assert_eq!(snap["a"].platform_id, "p1");
    assert_eq!(snap["a"].hash, a.content_hash());
    assert_eq!(s.contents("acme", &["a"]).await.unwrap()["a"], a);
    let h = s.history(Some("acme"), 5).await.unwrap();
    assert_eq!(h.len(), 1);
    assert!(h[0].worker.is_none(), "a run from before the worker column names none");
    assert!(s.interrupted("acme", "run-1").await.unwrap(), "the old run history is kept");
    drop(s);

    // From empty: three workers of a fleet starting at once on a new database (sqlx's
    // advisory lock): each opens, the schema is made once.
    pg.create_db("fresh");
    let st = pg_state(&pg, "fresh", &dir);
    let (x, y, z) = tokio::join!(state::open(&st), state::open(&st), state::open(&st));
    let (x, _y, _z) = (x.unwrap(), y.unwrap(), z.unwrap());
    assert_eq!(pg.psql("fresh", "SELECT count(*) FROM _sqlx_migrations WHERE success"), files.len().to_string());
    x.write("acme", &[SnapshotWrite::Upsert { platform_id: "p1".into(), user: Box::new(a.clone()) }]).await.unwrap();
    assert_eq!(x.snapshot("acme").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_postgres_store_from_a_newer_rostersync_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    pg.create_db("rostersync");
    let st = pg_state(&pg, "rostersync", &dir);
    drop(state::open(&st).await.unwrap());
    pg.psql(
        "rostersync",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (90001, 'from the future', true, '\\x00', 0)",
    );
    match state::open(&st).await {
        Err(StateError::Schema { detail, url }) => {
            assert!(detail.contains("90001") && detail.contains("upgrade rostersync"), "{detail}");
            assert!(!url.contains(PASSWORD), "{url}");
        }
        Err(other) => panic!("expected Schema, got {other:?}"),
        Ok(_) => panic!("expected Schema, got a store"),
    }
}

async fn the_reconcile_marker_is_set_replaced_and_cleared(f: Fixture) {
    let s = f.open().await;
    assert!(s.reconcile_mark("acme").await.unwrap().is_none());
    s.set_reconcile("acme", "run-1", "push started").await.unwrap();
    s.set_reconcile("acme", "run-2", "adoption pending").await.unwrap();
    let m = s.reconcile_mark("acme").await.unwrap().unwrap();
    assert_eq!((m.run_id.as_str(), m.reason.as_str()), ("run-2", "adoption pending"));
    assert!((Utc::now() - m.set_at).num_seconds().abs() < 60, "{}", m.set_at);
    assert!(s.reconcile_mark("globex").await.unwrap().is_none(), "connectors are separate");
    drop(s);
    // Durable: another store (process) sees it, and clears it.
    let s = f.open().await;
    assert!(s.reconcile_mark("acme").await.unwrap().is_some());
    s.clear_reconcile("acme").await.unwrap();
    assert!(s.reconcile_mark("acme").await.unwrap().is_none());
}

async fn reports_of_finds_the_people_of_a_manager(f: Fixture) {
    let s = f.open().await;
    let of = |id: &str, m: Option<&str>| User::from(UserFields { manager: m.map(Into::into), ..user(id, true).fields() });
    let up = |u: User, p: &str| SnapshotWrite::Upsert { platform_id: p.into(), user: Box::new(u) };
    s.write(
        "acme",
        &[up(of("m1", None), "pm1"), up(of("a", Some("m1")), "pa"), up(of("b", Some("m2")), "pb"), up(of("c", Some("m1")), "pc")],
    )
    .await
    .unwrap();
    s.write("other", &[up(of("z", Some("m1")), "pz")]).await.unwrap();
    let r = s.reports_of("acme", &["m1"]).await.unwrap();
    let mut got: Vec<(&str, &str)> = r.iter().map(|(k, (p, _))| (k.as_str(), p.as_str())).collect();
    got.sort();
    assert_eq!(got, [("a", "pa"), ("c", "pc")]);
    assert_eq!(r["a"].1, of("a", Some("m1")));
    assert_eq!(s.reports_of("acme", &["m1", "m2"]).await.unwrap().len(), 3);
    assert!(s.reports_of("acme", &["nobody"]).await.unwrap().is_empty());
}

async fn held_elsewhere_finds_other_connectors_accounts_by_platform_id_and_folded_id(f: Fixture) {
    use rostersync::model::IdRule;
    let s = f.open().await;
    let put = |id: &str, pid: &str| SnapshotWrite::Upsert { platform_id: pid.into(), user: Box::new(user(id, true)) };
    s.write("bamboo", &[put("A1", "p1"), put("Ann@Example.com", "p2"), put("ZOË@example.com", "p3"), put("E7", "p7")]).await.unwrap();
    s.write("acme", &[put("E7", "p8")]).await.unwrap();
    s.write("workday", &[put("E9", "p9")]).await.unwrap();
    let found = |mut v: Vec<state::HeldElsewhere>| {
        v.sort_by(|a, b| a.platform_id.cmp(&b.platform_id));
        v.into_iter().map(|h| format!("{} {} {}", h.connector, h.external_id, h.platform_id)).collect::<Vec<_>>()
    };
    let lower = IdRule { fold_case: true, upper: false };
    // acme asks; workday is what its adopt_from names: neither is "elsewhere".
    let got = s.held_elsewhere(&["acme", "workday"], &["p1", "p9"], &["ann@example.com", "zoë@example.com", "e7"], lower).await.unwrap();
    assert_eq!(
        found(got),
        vec!["bamboo A1 p1", "bamboo Ann@Example.com p2", "bamboo ZOË@example.com p3", "bamboo E7 p7"],
        "by platform id, and by id as the rule folds it (non-ASCII too); never the asker's own or an adopt_from's"
    );
    let exact = IdRule { fold_case: false, upper: false };
    assert_eq!(found(s.held_elsewhere(&["acme"], &[], &["E7", "e9"], exact).await.unwrap()), vec!["bamboo E7 p7"], "exact ids");
    let upper = IdRule { fold_case: true, upper: true };
    assert_eq!(found(s.held_elsewhere(&["acme"], &[], &["E9"], upper).await.unwrap()), vec!["workday E9 p9"]);
    assert!(s.held_elsewhere(&["acme"], &[], &[], lower).await.unwrap().is_empty(), "nothing asked, nothing found");
    assert!(s.held_elsewhere(&["acme"], &["nope"], &["nobody"], lower).await.unwrap().is_empty());
}

async fn others_hold_any_sees_a_connector_before_between_or_after_the_excluded_ones(f: Fixture) {
    let s = f.open().await;
    let put = |id: &str| SnapshotWrite::Upsert { platform_id: format!("p-{id}"), user: Box::new(user(id, true)) };
    assert!(!s.others_hold_any(&["acme"]).await.unwrap(), "an empty state");
    // Many rows of the excluded connectors, none of another's.
    let many: Vec<SnapshotWrite> = (0..500).map(|i| put(&format!("E{i}"))).collect();
    s.write("b-acme", &many).await.unwrap();
    s.write("d-workday", &many[..3]).await.unwrap();
    let exclude = ["b-acme", "d-workday"];
    assert!(!s.others_hold_any(&exclude).await.unwrap(), "only the excluded connectors hold people");
    assert!(s.others_hold_any(&["b-acme"]).await.unwrap(), "d-workday is another");
    assert!(s.others_hold_any(&[]).await.unwrap());
    // Another connector sorted before, between and after the excluded ones is seen.
    for other in ["a-first", "c-between", "e-last"] {
        s.write(other, &[put("X1")]).await.unwrap();
        assert!(s.others_hold_any(&exclude).await.unwrap(), "{other}");
        s.write(other, &[SnapshotWrite::Remove { external_id: "X1".into() }]).await.unwrap();
        assert!(!s.others_hold_any(&exclude).await.unwrap(), "{other} removed");
    }
}

async fn audit_batches_larger_than_a_statement_round_trip(f: Fixture) {
    use rostersync::state::AuditEntry;
    let s = f.open().await;
    // A batch larger than one statement holds (a first sync's commit): every entry lands,
    // each with its own values, across the statements' boundaries.
    let many: Vec<AuditEntry> = (0..2345)
        .map(|i| AuditEntry {
            external_id: format!("M{i}"),
            http_status: (i % 3 == 0).then_some(500 + (i % 7) as u16),
            approval: (i % 2 == 0).then(|| format!("approver {i}")),
            fields: vec![format!("f{i}")],
            connector: "many".into(),
            run_id: "r1".into(),
            // Stored to the millisecond.
            at: chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap(),
            kind: "update".into(),
            status: "ok".into(),
        })
        .collect();
    s.write_audit(&many).await.unwrap();
    for i in [0usize, 999, 1000, 1001, 1999, 2000, 2344] {
        assert_eq!(s.person_history(Some("many"), &format!("M{i}"), 10).await.unwrap(), vec![many[i].clone()], "entry {i}");
    }
}

async fn the_audit_trail_and_stored_plans_round_trip(f: Fixture) {
    use rostersync::report::Approval;
    use rostersync::state::{AuditEntry, StoredPlan};
    let s = f.open().await;
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00.123Z").unwrap().with_timezone(&Utc);
    let entry = |connector: &str, kind: &str, http_status: Option<u16>| AuditEntry {
        connector: connector.into(),
        external_id: "E1".into(),
        run_id: "r1".into(),
        at,
        kind: kind.into(),
        fields: vec!["title".into(), "department".into()],
        status: if http_status.is_some() { "failed".into() } else { "ok".into() },
        http_status,
        approval: Some("alice: HR confirmed".into()),
    };
    let written = [entry("acme", "create", None), entry("acme", "update", Some(409)), entry("globex", "adopt", None)];
    s.write_audit(&written).await.unwrap();
    s.write_audit(&[]).await.unwrap();
    let acme = s.person_history(Some("acme"), "E1", 10).await.unwrap();
    assert_eq!(acme, vec![written[1].clone(), written[0].clone()], "newest first; one instant keeps the order written, reversed");
    assert_eq!(s.person_history(None, "E1", 10).await.unwrap().len(), 3, "every connector");
    assert_eq!(s.person_history(None, "E1", 1).await.unwrap(), vec![written[2].clone()]);
    assert!(s.person_history(Some("acme"), "E2", 10).await.unwrap().is_empty());
    let mut plan = StoredPlan {
        run_id: "r1".into(),
        connector: "acme".into(),
        created_at: at,
        file: FileFingerprint { path: "/in/a.csv".into(), size: 12, mtime: None, sha256: "ab".into() },
        state_fingerprint: "sf".into(),
        digest: "d1".into(),
        rule: "max_deactivations".into(),
        message: "too many".into(),
        dry_run: false,
        operations: Vec::new(),
        operations_left_out: 3,
        approved: None,
    };
    s.save_plan(&plan).await.unwrap();
    plan.digest = "d2".into();
    s.save_plan(&plan).await.unwrap();
    assert_eq!(s.stored_plan("r1").await.unwrap(), Some(plan.clone()), "saved again under one run id: replaced");
    assert_eq!(s.pending_plan("acme").await.unwrap(), Some(plan.clone()));
    assert_eq!(s.stored_plan("r9").await.unwrap(), None);
    let approval =
        Approval { by: "alice".into(), at: "2026-03-01T11:00:00Z".into(), reason: "HR confirmed".into(), plan_of: Some("r1".into()) };
    s.mark_approved("r1", &approval, "r2").await.unwrap();
    assert_eq!(s.stored_plan("r1").await.unwrap().unwrap().approved, Some((approval, "r2".into())));
    assert_eq!(s.pending_plan("acme").await.unwrap(), None, "approved: nothing waits");

    // An older plan of acme, superseded by r1 (pruned with it), and globex's plan awaiting
    // approval, as old (kept: a person may be on leave).
    s.save_plan(&StoredPlan { run_id: "r0".into(), created_at: at - chrono::Duration::minutes(30), ..plan.clone() }).await.unwrap();
    let waiting = StoredPlan { run_id: "g1".into(), connector: "globex".into(), approved: None, ..plan.clone() };
    s.save_plan(&waiting).await.unwrap();

    // Retention counts back from the store's clock, not from a time the caller brings.
    let age = (s.clock().await.unwrap() - at).to_std().unwrap();
    let hour = Duration::from_secs(3600);
    assert_eq!(s.prune(age + hour).await.unwrap(), 0, "nothing older than an hour before the entries");
    assert_eq!(s.prune(age - hour).await.unwrap(), 5, "three entries, the approved plan and the superseded one");
    assert!(s.person_history(None, "E1", 10).await.unwrap().is_empty());
    assert_eq!(s.stored_plan("r1").await.unwrap(), None);
    assert_eq!(s.stored_plan("r0").await.unwrap(), None);
    assert_eq!(s.pending_plan("globex").await.unwrap(), Some(waiting), "a plan awaiting approval is never pruned");
}

/// A time in SQLite's text columns that does not read is a corrupt row, named by its table
/// and column: never a silent 1970 (nor a row that quietly disappears).
#[tokio::test]
async fn a_bad_time_in_sqlite_is_a_corrupt_row_naming_where() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let s = SqliteStore::open(&url).await.unwrap();
    s.set_reconcile("acme", "r1", "push started").await.unwrap();
    s.acquire("acme", "cli@h pid 1", Duration::from_secs(60)).await.unwrap();
    {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE reconcile_marks SET set_at = 'yesterday'").execute(&mut db).await.unwrap();
        sqlx::query("UPDATE leases SET acquired_at = ''").execute(&mut db).await.unwrap();
    }
    match s.reconcile_mark("acme").await {
        Err(StateError::Corrupt { table: "reconcile_marks", column: "set_at", value, .. }) => assert_eq!(value, "yesterday"),
        other => panic!("{other:?}"),
    }
    match s.leases().await {
        Err(e @ StateError::Corrupt { table: "leases", column: "acquired_at", .. }) => {
            assert!(e.to_string().contains("leases.acquired_at"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
