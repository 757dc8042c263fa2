//! The SQLite state store, on a real SQLite file.

use std::time::Duration;

use chrono::Utc;
use rostersync::model::{FileFingerprint, User};
use rostersync::report::{Counts, Report, RunOutcome};
use rostersync::state::{SnapshotWrite, SqliteStore, StateError, StateStore};

fn user(id: &str, active: bool) -> User {
    User {
        external_id: id.into(),
        email: Some(format!("{id}@example.com").into()),
        employee_id: Some(id.into()),
        first_name: "Zoë".into(),
        last_name: "O'Brien".into(),
        language: "fr".into(),
        active,
        manager: None,
        attributes: [("department".to_string(), "People & Culture".to_string())].into(),
    }
}

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/state.db", dir.path().display());
    let s = SqliteStore::open(&url).await.unwrap();
    (dir, s)
}

#[tokio::test]
async fn snapshot_round_trip_and_inactive_marks() {
    let (_d, s) = store().await;
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
}

#[tokio::test]
async fn reopening_keeps_data_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/state.db", dir.path().display());
    {
        let s = SqliteStore::open(&url).await.unwrap();
        s.write("acme", &[SnapshotWrite::Upsert { platform_id: "p1".into(), user: Box::new(user("a", true)) }]).await.unwrap();
    }
    let s = SqliteStore::open(&url).await.unwrap();
    assert_eq!(s.snapshot("acme").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_lease_refuses_a_second_holder_until_released_or_expired() {
    let (_d, s) = store().await;
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
    s.renew("dead", "new pid 4", Duration::from_secs(60)).await.unwrap();
    assert!(s.acquire("dead", "third pid 5", Duration::from_secs(60)).await.is_err());
}

#[tokio::test]
async fn last_file_history_and_interrupted_runs() {
    let (_d, s) = store().await;
    assert!(s.last_file("acme").await.unwrap().is_none());
    let fp =
        FileFingerprint { path: "/x/e.csv".into(), size: 10, mtime: Some("2026-11-20T01:00:00+00:00".into()), sha256: "ab".repeat(32) };
    s.set_last_file("acme", &fp).await.unwrap();
    assert_eq!(s.last_file("acme").await.unwrap().unwrap().fingerprint, fp);

    s.start_run("acme", "run-1", Utc::now()).await.unwrap();
    assert!(!s.interrupted("acme", "run-1").await.unwrap(), "the current run is not 'previous'");
    // run-1 never finishes (the process died); run-2 sees it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.start_run("acme", "run-2", Utc::now()).await.unwrap();
    assert!(s.interrupted("acme", "run-2").await.unwrap());
    let report = Report {
        connector: "acme".into(),
        run_id: "run-2".into(),
        outcome: RunOutcome::Ok,
        dry_run: false,
        file: Some(fp),
        counts: Counts { rows: 3, valid: 3, created: 3, ..Default::default() },
        errors: vec![],
        errors_left_out: 0,
        stopped_by: None,
        stale: false,
        notes: Vec::new(),
        message: None,
        duration_ms: 12,
    };
    s.finish_run(&report, Utc::now()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.start_run("acme", "run-3", Utc::now()).await.unwrap();
    assert!(!s.interrupted("acme", "run-3").await.unwrap());
    let h = s.history(Some("acme"), 10).await.unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[1].run_id, "run-2");
    assert_eq!(h[1].report.as_ref().unwrap(), &report);
    assert!(h[2].report.is_none());
}
