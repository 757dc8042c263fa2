//! Benchmark: plan of N users against an N-user snapshot, and the state commit of an N-user
//! first sync (batches of 1000, as `sync` writes them), on a real SQLite file.
//!
//! cargo run --release --example plan_state_bench -- 1000000 [plan|commit|load|all]
//!
//! The phase argument runs only that part, to profile it alone (`perf record`). `commit` and
//! `load` also time the day-2 paths: the stored content of 5% of the users (the PATCHes'
//! `contents`), and 1% deactivated (`MarkInactive`, batches of 1000).

use std::collections::HashSet;
use std::time::Instant;

use rostersync::config::SyncRule;
use rostersync::model::{SourcedUser, User, UserFields};
use rostersync::plan::{self, PlanInput, Snapshot, SnapshotEntry};
use rostersync::state::Snapshots;
use rostersync::state::{SnapshotWrite, SqliteStore};

fn user(i: usize, changed: bool) -> User {
    let mut u = User::from(UserFields {
        external_id: format!("E{:07}", i + 100000).into(),
        email: Some(format!("first.last.{i}@example.com").into()),
        employee_id: Some(format!("E{:07}", i + 100000).into()),
        first_name: "Émilie".into(),
        last_name: "Le Floc'h".into(),
        language: "fr".into(),
        active: true,
        manager: Some(format!("E{:07}", (i * 7) % 1000 + 100000).into()),
        attributes: Default::default(),
    });
    u.set_attribute("department", if changed { "Sales" } else { "Engineering" });
    u.set_attribute("title", "Senior Engineer");
    u.set_attribute("location", "Paris");
    u.set_attribute("cost_center", "CC-420");
    u
}

/// CPU seconds this process has used (all threads: sqlx runs SQLite on its own), from
/// /proc/self/stat at 100 ticks a second; 0 where that is not readable. On a shared machine
/// this moves less than the wall clock.
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<f64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let phase = std::env::args().nth(2).unwrap_or_else(|| "all".into());
    let want = |p: &str| phase == "all" || phase == p;
    let runs = 3;
    let users: Vec<User> = (0..n).map(|i| user(i, false)).collect();
    let changed: Vec<User> = (0..n).map(|i| user(i, i % 100 == 0)).collect();
    let snapshot: Snapshot = users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.external_id.to_string(), SnapshotEntry { platform_id: format!("pid-{i}"), hash: u.content_hash(), active: true }))
        .collect();
    let rule = SyncRule::default();
    let none = HashSet::new();

    let mut plan_times = Vec::new();
    for _ in 0..if want("plan") { runs } else { 0 } {
        let input: Vec<SourcedUser> =
            changed.iter().enumerate().map(|(i, u)| SourcedUser { user: Box::new(u.clone()), line: i as u64 + 2 }).collect();
        let t = Instant::now();
        let p = plan::plan(PlanInput {
            snapshot: &snapshot,
            users: input,
            invalid_ids: &none,
            unidentified: &[],
            rows: n as u64,
            invalid: 0,
            existing: &[],
            rule: &rule,
            allow_mass_change: false,
            id_rule: Default::default(),
        });
        plan_times.push(t.elapsed().as_secs_f64());
        assert_eq!(p.ops.len(), n.div_ceil(100));
    }
    if want("plan") {
        println!("plan {n} users vs {n}-user snapshot, 1% changed: median {:.3} s over {runs} runs", median(plan_times));
    }
    drop((changed, snapshot));

    let mut commit_times = Vec::new();
    let mut commit_cpu = Vec::new();
    let mut load_times = Vec::new();
    let mut load_cpu = Vec::new();
    let mut contents_times = Vec::new();
    let mut inactive_times = Vec::new();
    for _ in 0..if want("commit") || want("load") { runs } else { 0 } {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}/state.db", dir.path().display())).await.unwrap();
        // Built before timing: sync moves each pushed user into its write, it copies nothing.
        let batches: Vec<Vec<SnapshotWrite>> = users
            .chunks(1000)
            .map(|chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, u)| SnapshotWrite::Upsert { platform_id: format!("pid-{i}"), user: Box::new(u.clone()) })
                    .collect()
            })
            .collect();
        let (t, c) = (Instant::now(), cpu());
        for batch in &batches {
            store.write("bench", batch).await.unwrap();
        }
        commit_times.push(t.elapsed().as_secs_f64());
        commit_cpu.push(cpu() - c);
        drop(batches);
        let (t, c) = (Instant::now(), cpu());
        let snap = store.snapshot("bench").await.unwrap();
        load_times.push(t.elapsed().as_secs_f64());
        load_cpu.push(cpu() - c);
        assert_eq!(snap.len(), n);
        drop(snap);

        let ids: Vec<&str> = users.iter().step_by(20).map(|u| u.external_id.as_str()).collect();
        let t = Instant::now();
        let contents = store.contents("bench", &ids).await.unwrap();
        contents_times.push(t.elapsed().as_secs_f64());
        assert_eq!(contents.len(), ids.len());
        drop(contents);

        let gone: Vec<SnapshotWrite> =
            users.iter().step_by(100).map(|u| SnapshotWrite::MarkInactive { external_id: u.external_id.to_string() }).collect();
        let t = Instant::now();
        for batch in gone.chunks(1000) {
            store.write("bench", batch).await.unwrap();
        }
        inactive_times.push(t.elapsed().as_secs_f64());
    }
    if !commit_times.is_empty() {
        println!(
            "state commit of a {n}-user first sync (batches of 1000): median {:.2} s over {runs} runs (CPU {:.2} s)",
            median(commit_times),
            median(commit_cpu)
        );
        println!("snapshot load of {n} users: median {:.2} s over {runs} runs (CPU {:.2} s)", median(load_times), median(load_cpu));
        println!("contents of {} users (5%): median {:.3} s over {runs} runs", n.div_ceil(20), median(contents_times));
        println!(
            "deactivation of {} users (1%, batches of 1000): median {:.3} s over {runs} runs",
            n.div_ceil(100),
            median(inactive_times)
        );
    }
}
