//! State faults that must not outlast themselves: a SQLite file on a disk that fills up, and
//! a write dropped half-way, leave a store whose next write works.
//!
//! The full disk is a real one: a small tmpfs mounted for the test (so this test needs root,
//! as mounting does; it fails saying so rather than skipping). A filler file takes the free
//! space, and removing it brings the space back, as an operator freeing a disk does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use rostersync::config;
use rostersync::model::{User, UserFields};
use rostersync::report::{Counts, Report, RunOutcome};
use rostersync::state::prelude::*;
use rostersync::state::{self, SnapshotWrite, Store};

/// A tmpfs of `size`, unmounted (lazily, in case a file is still open) when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "this test fills a real (tmpfs) disk and needs to mount one: run it as root (mount said: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system at `dir` to the last byte with one file, and returns it.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    // Blocks, then single bytes: tmpfs refuses the write that does not fit whole.
    while f.write_all(&block).is_ok() {}
    while f.write_all(&block[..1]).is_ok() {}
    let _ = f.sync_all();
    path
}

fn user(id: &str) -> User {
    User::from(UserFields {
        external_id: id.into(),
        email: Some(format!("{id}@example.com").into()),
        employee_id: Some(id.into()),
        first_name: "Zoë".into(),
        last_name: "O'Brien".into(),
        language: "fr".into(),
        active: true,
        manager: None,
        // Big enough that a batch of them needs far more than the space left.
        attributes: [("notes".to_string(), format!("{id} ").repeat(200))].into(),
    })
}

fn batch(from: usize, n: usize) -> Vec<SnapshotWrite> {
    (from..from + n).map(|i| SnapshotWrite::Upsert { platform_id: format!("p{i}"), user: Box::new(user(&format!("u{i:05}"))) }).collect()
}

async fn open(dir: &Path) -> Store {
    state::open(&config::State {
        url: format!("sqlite://{}/state.db", dir.display()),
        password: None,
        ca_file: None,
        lease_ttl: config::DEFAULT_LEASE_TTL,
        audit_retention: config::DEFAULT_AUDIT_RETENTION,
    })
    .await
    .unwrap()
}

/// The daemon: "database or disk is full" at a write, and then every later write
/// failed ("begin_with at non-zero transaction depth") until a restart. Here the same store
/// object, once the space is back, writes, renews, and records runs; the failed batch left
/// nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_disk_the_same_sqlite_store_writes_again_once_space_is_back() {
    let disk = Tmpfs::mount("32m");
    let s = open(disk.path()).await;
    let ttl = Duration::from_secs(60);
    s.acquire("acme", "me", ttl).await.unwrap();
    s.start_run("acme", "run-1").await.unwrap();
    s.write("acme", &batch(0, 10)).await.unwrap();

    let filler = fill(disk.path());
    let err = s.write("acme", &batch(10, 2000)).await.expect_err("a batch of MiBs on a full disk");
    assert!(err.to_string().contains("full"), "the error says the disk is full: {err}");
    assert_eq!(s.snapshot("acme").await.unwrap().len(), 10, "the failed batch is all or nothing: nothing of it is recorded");

    std::fs::remove_file(filler).unwrap();
    s.write("acme", &batch(10, 2000)).await.expect("with space back, the same store writes again");
    assert!(s.renew("acme", "me", ttl).await.unwrap(), "and renews its lease");
    let report =
        Report { outcome: RunOutcome::Ok, counts: Counts { rows: 2010, ..Default::default() }, ..Report::new("acme", "run-1", false) };
    s.finish_run(&report, Utc::now()).await.unwrap();
    s.start_run("acme", "run-2").await.unwrap();
    let history = s.history(Some("acme"), 10).await.unwrap();
    assert_eq!(history.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), ["run-2", "run-1"]);
    assert_eq!(history[1].report.as_ref(), Some(&report), "run-1's end is recorded");
    let snap = s.snapshot("acme").await.unwrap();
    assert_eq!(snap.len(), 2010, "the batch, written again, is there whole");
    assert_eq!(snap["u02009"].platform_id, "p2009");
    s.release("acme", "me").await.unwrap();
}
