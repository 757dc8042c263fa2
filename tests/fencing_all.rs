//! Every state write is fenced (issue 30), on a real SQLite file and a real PostgreSQL
//! server: besides the snapshot, last file, history, marker, audit and plans
//! (tests/state.rs), the groups a connector created, the absences of people missing from the
//! file, a plan's approval and the retention pruning. A run frozen past its lease (A) wakes
//! after another (B) took the connector over: each of those writes of A is refused, typed,
//! with nothing written; B's go through.

use crate::support;

use std::time::Duration;

use chrono::Utc;
use rostersync::config;
use rostersync::model::FileFingerprint;
use rostersync::report::Approval;
use rostersync::state::prelude::*;
use rostersync::state::{self, AuditEntry, CreatedGroup, Fence, StateError, Store, StoredPlan};
use support::postgres::{PASSWORD, Postgres};

/// A fresh store of one kind, and what keeps it alive.
struct Fixture {
    state: config::State,
    _dir: tempfile::TempDir,
    _pg: Option<Postgres>,
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/state.db", dir.path().display());
        Fixture { state: state_at(url, None), _dir: dir, _pg: None }
    }

    fn postgres() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let pg = Postgres::start();
        let url = pg.create_db("rostersync");
        let pw = dir.path().join("pgpass");
        std::fs::write(&pw, PASSWORD).unwrap();
        Fixture { state: state_at(url, Some(config::StatePassword::File(pw))), _dir: dir, _pg: Some(pg) }
    }

    async fn open(&self) -> Store {
        state::open(&self.state).await.unwrap()
    }
}

fn state_at(url: String, password: Option<config::StatePassword>) -> config::State {
    config::State { url, password, ca_file: None, lease_ttl: config::DEFAULT_LEASE_TTL, audit_retention: config::DEFAULT_AUDIT_RETENTION }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_stale_writer_changes_no_group_absence_approval_or_retention() {
    a_stale_writer_changes_no_group_absence_approval_or_retention(Fixture::sqlite()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_stale_writer_changes_no_group_absence_approval_or_retention() {
    a_stale_writer_changes_no_group_absence_approval_or_retention(Fixture::postgres()).await
}

fn group(name: &str, platform_id: &str) -> CreatedGroup {
    CreatedGroup { display_name: name.into(), value: name.into(), platform_id: platform_id.into(), created_at: Utc::now() }
}

fn plan(run_id: &str) -> StoredPlan {
    StoredPlan {
        run_id: run_id.into(),
        connector: "acme".into(),
        created_at: Utc::now(),
        file: FileFingerprint { path: "a.csv".into(), size: 1, mtime: None, sha256: "aa".into() },
        state_fingerprint: "s".into(),
        digest: "d".into(),
        rule: "max_deactivations".into(),
        message: "too many".into(),
        dry_run: false,
        operations: vec![],
        operations_left_out: 0,
        approved: None,
    }
}

/// An audit entry a year old: retention (180 days by default) prunes it.
fn old_entry() -> AuditEntry {
    AuditEntry {
        connector: "acme".into(),
        external_id: "u9".into(),
        run_id: "run-0".into(),
        at: Utc::now() - chrono::Duration::days(365),
        kind: "create".into(),
        fields: vec![],
        status: "ok".into(),
        http_status: None,
        approval: None,
    }
}

async fn a_stale_writer_changes_no_group_absence_approval_or_retention(f: Fixture) {
    let s = f.open().await;
    let ttl = Duration::from_millis(300);
    s.acquire("acme", "a", ttl).await.unwrap();
    let ta = s.lease_token("acme", "a").await.unwrap().expect("a holds it");
    let a = s.fenced(Fence { connector: "acme".into(), token: ta });
    // While A holds the lease, its writes go through.
    a.record_group("acme", &group("Sales", "g1")).await.unwrap();
    a.set_absences("acme", &[("u1".into(), Utc::now())], &[]).await.unwrap();
    a.save_plan(&plan("run-a")).await.unwrap();
    a.write_audit(&[old_entry()]).await.unwrap();

    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    s.acquire("acme", "b", Duration::from_secs(60)).await.unwrap();
    let tb = s.lease_token("acme", "b").await.unwrap().expect("b holds it");
    assert!(tb > ta, "{ta} then {tb}");
    let b = s.fenced(Fence { connector: "acme".into(), token: tb });

    let refused = |r: Result<(), StateError>, what: &str| match r {
        Err(StateError::Fenced { connector, token }) => assert_eq!((connector.as_str(), token), ("acme", ta), "{what}"),
        other => panic!("{what}: a stale writer's write went through or failed otherwise: {other:?}"),
    };
    refused(a.record_group("acme", &group("Sales", "g2")).await, "record a group");
    refused(a.record_group("acme", &group("Legal", "g3")).await, "record a new group");
    refused(a.forget_group("acme", "Sales").await, "forget a group");
    refused(a.set_absences("acme", &[("u2".into(), Utc::now())], &["u1".into()]).await, "absences");
    refused(a.mark_approved("run-a", &Approval::now("stale", Some("run-a".into())), "run-a2").await, "approval");
    refused(a.prune(Duration::from_secs(86_400)).await.map(drop), "pruning");

    // Nothing of it was written.
    let groups = s.created_groups("acme").await.unwrap();
    assert_eq!(groups.iter().map(|g| (g.display_name.as_str(), g.platform_id.as_str())).collect::<Vec<_>>(), [("Sales", "g1")]);
    let absent = s.absences("acme").await.unwrap();
    assert_eq!(absent.keys().collect::<Vec<_>>(), ["u1"], "{absent:?}");
    assert_eq!(s.stored_plan("run-a").await.unwrap().unwrap().approved, None);
    assert_eq!(s.person_history(Some("acme"), "u9", 10).await.unwrap().len(), 1, "the old entry is still there");

    // The holder's writes go through.
    b.record_group("acme", &group("Legal", "g3")).await.unwrap();
    b.forget_group("acme", "Sales").await.unwrap();
    b.set_absences("acme", &[("u2".into(), Utc::now())], &["u1".into()]).await.unwrap();
    b.mark_approved("run-a", &Approval::now("HR confirmed", Some("run-a".into())), "run-b").await.unwrap();
    assert_eq!(b.prune(Duration::from_secs(86_400)).await.unwrap(), 1, "the year-old entry goes");
    let groups = s.created_groups("acme").await.unwrap();
    assert_eq!(groups.iter().map(|g| g.display_name.as_str()).collect::<Vec<_>>(), ["Legal"]);
    assert_eq!(s.absences("acme").await.unwrap().keys().collect::<Vec<_>>(), ["u2"]);
    assert_eq!(s.stored_plan("run-a").await.unwrap().unwrap().approved.map(|(_, by)| by), Some("run-b".to_string()));
    assert!(s.person_history(Some("acme"), "u9", 10).await.unwrap().is_empty());

    // Released, then taken by another: B's writes are refused in turn.
    s.release("acme", "b").await.unwrap();
    s.acquire("acme", "c", ttl).await.unwrap();
    assert!(matches!(b.set_absences("acme", &[], &["u2".into()]).await, Err(StateError::Fenced { token, .. }) if token == tb));
    assert!(matches!(b.forget_group("acme", "Legal").await, Err(StateError::Fenced { token, .. }) if token == tb));
    // An empty change writes nothing, so it has nothing to refuse.
    b.set_absences("acme", &[], &[]).await.unwrap();
}
