//! The embedded SQLite store (WAL). Schema migrations are embedded and applied on open.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{LockedSqliteHandle, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::raw::Db;
use super::{LastFile, RunRecord, SnapshotWrite, StateError, StateStore};
use crate::model::{FileFingerprint, User};
use crate::plan::{Snapshot, SnapshotEntry};
use crate::report::Report;

/// Schema versions, applied in order; never edit a shipped one, append.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

pub struct SqliteStore {
    pool: SqlitePool,
    url: String,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

impl SqliteStore {
    /// Opens (creating the file and its folder if needed) and migrates.
    pub async fn open(url: &str) -> Result<SqliteStore, StateError> {
        let db = |detail: String| StateError::Db { url: url.to_string(), detail };
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| db(format!("cannot create folder {}: {e}", parent.display())))?;
        }
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| db(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a process crash; only an OS crash may lose
            // the last commits, which the next run repairs by adoption.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await.map_err(|e| db(format!("cannot open: {e}")))?;
        let store = SqliteStore { pool, url: url.to_string() };
        store.migrate().await?;
        Ok(store)
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> StateError + '_ {
        move |e| StateError::Db { url: self.url.clone(), detail: e.to_string() }
    }

    async fn migrate(&self) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(self.err())?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)").execute(&mut *tx).await.map_err(self.err())?;
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&mut *tx).await.map_err(self.err())?;
        let v = v.unwrap_or(0) as usize;
        if v > MIGRATIONS.len() {
            return Err(StateError::Schema {
                url: self.url.clone(),
                detail: format!("schema version {v}, this build knows up to {}; upgrade rostersync", MIGRATIONS.len()),
            });
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(v) {
            sqlx::raw_sql(*m).execute(&mut *tx).await.map_err(self.err())?;
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind((i + 1) as i64)
                .execute(&mut *tx)
                .await
                .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())
    }
}

impl StateStore for SqliteStore {
    async fn acquire(&self, connector: &str, holder: &str, ttl: Duration) -> Result<(), StateError> {
        let now = Utc::now();
        let expires = now + chrono::Duration::from_std(ttl).unwrap_or_default();
        // One statement, so two processes cannot both win: the update only happens when
        // the current lease has expired (or is ours).
        let r = sqlx::query(
            "INSERT INTO leases (connector, holder, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (connector) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at,
                 expires_at = excluded.expires_at
             WHERE leases.expires_at < ?3 OR leases.holder = ?2",
        )
        .bind(connector)
        .bind(holder)
        .bind(ts(now))
        .bind(ts(expires))
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        if r.rows_affected() == 1 {
            return Ok(());
        }
        let row = sqlx::query("SELECT holder, acquired_at, expires_at FROM leases WHERE connector = ?")
            .bind(connector)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
        let (holder, since, expires) = match row {
            Some(r) => (r.get::<String, _>(0), r.get::<String, _>(1), r.get::<String, _>(2)),
            None => ("another run".into(), "just now".into(), "soon".into()),
        };
        Err(StateError::Held { connector: connector.into(), holder, since, expires })
    }

    async fn renew(&self, connector: &str, holder: &str, ttl: Duration) -> Result<(), StateError> {
        let expires = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
        sqlx::query("UPDATE leases SET expires_at = ? WHERE connector = ? AND holder = ?")
            .bind(ts(expires))
            .bind(connector)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn release(&self, connector: &str, holder: &str) -> Result<(), StateError> {
        sqlx::query("DELETE FROM leases WHERE connector = ? AND holder = ?")
            .bind(connector)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn snapshot(&self, connector: &str) -> Result<Snapshot, StateError> {
        let mut conn = self.pool.acquire().await.map_err(self.err())?;
        let mut handle = conn.lock_handle().await.map_err(self.err())?;
        blocking(|| load_snapshot(&mut handle, connector)).map_err(|detail| StateError::Db { url: self.url.clone(), detail })
    }

    async fn contents(&self, connector: &str, ids: &[&str]) -> Result<HashMap<String, User>, StateError> {
        let mut conn = self.pool.acquire().await.map_err(self.err())?;
        let mut handle = conn.lock_handle().await.map_err(self.err())?;
        blocking(|| load_contents(&mut handle, connector, ids)).map_err(|detail| StateError::Db { url: self.url.clone(), detail })
    }

    async fn write(&self, connector: &str, batch: &[SnapshotWrite]) -> Result<(), StateError> {
        let mut conn = self.pool.acquire().await.map_err(self.err())?;
        let mut handle = conn.lock_handle().await.map_err(self.err())?;
        blocking(|| write_batch(&mut handle, connector, batch)).map_err(|detail| StateError::Db { url: self.url.clone(), detail })
    }

    async fn last_file(&self, connector: &str) -> Result<Option<LastFile>, StateError> {
        let row = sqlx::query("SELECT path, size, mtime, sha256, synced_at FROM last_file WHERE connector = ?")
            .bind(connector)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(row.and_then(|r| {
            Some(LastFile {
                fingerprint: FileFingerprint { path: r.get(0), size: r.get::<i64, _>(1) as u64, mtime: r.get(2), sha256: r.get(3) },
                synced_at: parse_ts(&r.get::<String, _>(4))?,
            })
        }))
    }

    async fn set_last_file(&self, connector: &str, f: &FileFingerprint) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO last_file (connector, path, size, mtime, sha256, synced_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (connector) DO UPDATE SET path = excluded.path, size = excluded.size, mtime = excluded.mtime,
                 sha256 = excluded.sha256, synced_at = excluded.synced_at",
        )
        .bind(connector)
        .bind(&f.path)
        .bind(f.size as i64)
        .bind(&f.mtime)
        .bind(&f.sha256)
        .bind(ts(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    async fn start_run(&self, connector: &str, run_id: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        sqlx::query("INSERT INTO runs (run_id, connector, started_at) VALUES (?, ?, ?)")
            .bind(run_id)
            .bind(connector)
            .bind(ts(at))
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn finish_run(&self, report: &Report, at: DateTime<Utc>) -> Result<(), StateError> {
        sqlx::query("UPDATE runs SET ended_at = ?, report = ? WHERE run_id = ?")
            .bind(ts(at))
            .bind(serde_json::to_string(report).unwrap_or_default())
            .bind(&report.run_id)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn interrupted(&self, connector: &str, current_run: &str) -> Result<bool, StateError> {
        let row = sqlx::query("SELECT ended_at FROM runs WHERE connector = ? AND run_id != ? ORDER BY started_at DESC LIMIT 1")
            .bind(connector)
            .bind(current_run)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(matches!(row, Some(r) if r.get::<Option<String>, _>(0).is_none()))
    }

    async fn history(&self, connector: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StateError> {
        let rows =
            match connector {
                Some(c) => sqlx::query(
                    "SELECT run_id, connector, started_at, ended_at, report FROM runs WHERE connector = ? ORDER BY started_at DESC LIMIT ?",
                )
                .bind(c)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await,
                None => {
                    sqlx::query("SELECT run_id, connector, started_at, ended_at, report FROM runs ORDER BY started_at DESC LIMIT ?")
                        .bind(limit as i64)
                        .fetch_all(&self.pool)
                        .await
                }
            }
            .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|r| RunRecord {
                run_id: r.get(0),
                connector: r.get(1),
                started_at: parse_ts(&r.get::<String, _>(2)).unwrap_or_default(),
                ended_at: r.get::<Option<String>, _>(3).as_deref().and_then(parse_ts),
                report: r.get::<Option<String>, _>(4).and_then(|s| serde_json::from_str(&s).ok()),
            })
            .collect())
    }
}

/// Runs `f`, which makes blocking SQLite calls on this thread, telling a multi-threaded
/// tokio runtime first so its other tasks move to another worker meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The whole snapshot of a connector, stepped in place (see `raw` for why not through sqlx).
fn load_snapshot(handle: &mut LockedSqliteHandle<'_>, connector: &str) -> Result<Snapshot, String> {
    // SAFETY: the handle is locked away from sqlx's worker for as long as `db` lives.
    let db = unsafe { Db::new(handle.as_raw_handle()) };
    let mut count = db.prepare("SELECT count(*) FROM snapshot WHERE connector = ?1")?;
    count.bind_text(1, connector)?;
    // Sized once: growing a million-entry map rehashes it several times and briefly holds
    // two tables.
    let n = if count.step()? { count.int(0).max(0) as usize } else { 0 };
    let mut out = Snapshot::with_capacity_and_hasher(n, Default::default());
    let mut st = db.prepare("SELECT external_id, platform_id, hash, active FROM snapshot WHERE connector = ?1")?;
    st.bind_text(1, connector)?;
    while st.step()? {
        let mut hash = [0u8; 16];
        let bytes = st.blob(2);
        if bytes.len() == 16 {
            hash.copy_from_slice(bytes);
        }
        let entry = SnapshotEntry { platform_id: st.text(1).into_owned(), hash, active: st.int(3) != 0 };
        out.insert(st.text(0).into_owned(), entry);
    }
    Ok(out)
}

/// The stored content of some users, one primary-key lookup each with one prepared
/// statement: a daily run PATCHes tens of thousands of users, and `IN (…)` lists through
/// sqlx cost most of a second for 47k of them (BENCHMARKS.md, issue 8).
fn load_contents(handle: &mut LockedSqliteHandle<'_>, connector: &str, ids: &[&str]) -> Result<HashMap<String, User>, String> {
    // SAFETY: as in load_snapshot.
    let db = unsafe { Db::new(handle.as_raw_handle()) };
    let mut st = db.prepare("SELECT content FROM snapshot WHERE connector = ?1 AND external_id = ?2")?;
    st.bind_text(1, connector)?;
    let mut out = HashMap::with_capacity(ids.len());
    for id in ids {
        st.bind_text(2, id)?;
        if st.step()? {
            // Content from an older version that no longer reads is skipped: the update
            // then replaces every attribute instead of patching the differences.
            if let Ok(u) = serde_json::from_slice::<User>(st.blob(0)) {
                out.insert(id.to_string(), u);
            }
        }
        st.reset();
    }
    Ok(out)
}

/// One batch of outcomes in one transaction: all of it is recorded, or none.
fn write_batch(handle: &mut LockedSqliteHandle<'_>, connector: &str, batch: &[SnapshotWrite]) -> Result<(), String> {
    // SAFETY: as in load_snapshot.
    let db = unsafe { Db::new(handle.as_raw_handle()) };
    // IMMEDIATE: take the write lock now (waiting busy_timeout for another writer), not
    // midway through the batch.
    db.exec("BEGIN IMMEDIATE")?;
    match write_in_tx(&db, connector, batch) {
        Ok(()) => db.exec("COMMIT").inspect_err(|_| {
            let _ = db.exec("ROLLBACK");
        }),
        Err(e) => {
            let _ = db.exec("ROLLBACK");
            Err(e)
        }
    }
}

fn write_in_tx(db: &Db, connector: &str, batch: &[SnapshotWrite]) -> Result<(), String> {
    // Prepared once per batch and stepped per row, rather than a multi-row VALUES list
    // rebuilt with owned copies of every argument.
    let mut upsert = db.prepare(
        "INSERT INTO snapshot (connector, external_id, platform_id, hash, active, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (connector, external_id) DO UPDATE SET platform_id = excluded.platform_id, hash = excluded.hash,
             active = excluded.active, content = excluded.content",
    )?;
    upsert.bind_text(1, connector)?;
    let mut content = Vec::with_capacity(512);
    for w in batch {
        match w {
            SnapshotWrite::Upsert { platform_id, user } => {
                content.clear();
                serde_json::to_writer(&mut content, user).map_err(|e| e.to_string())?;
                upsert.bind_text(2, &user.external_id)?;
                upsert.bind_text(3, platform_id)?;
                upsert.bind_blob(4, &user.content_hash())?;
                upsert.bind_int(5, user.active as i64)?;
                // serde_json writes UTF-8 only.
                upsert.bind_text(6, std::str::from_utf8(&content).map_err(|e| e.to_string())?)?;
                upsert.step()?;
                upsert.reset();
            }
            SnapshotWrite::MarkInactive { external_id } => {
                // The stored hash is of the active content; recompute it inactive so the
                // person reappearing active in a later file reads as a reactivation.
                let mut get = db.prepare("SELECT content FROM snapshot WHERE connector = ?1 AND external_id = ?2")?;
                get.bind_text(1, connector)?;
                get.bind_text(2, external_id)?;
                let found = if get.step()? { serde_json::from_slice::<User>(get.blob(0)).ok() } else { None };
                drop(get);
                if let Some(mut u) = found {
                    u.active = false;
                    let mut set =
                        db.prepare("UPDATE snapshot SET active = 0, hash = ?1, content = ?2 WHERE connector = ?3 AND external_id = ?4")?;
                    set.bind_blob(1, &u.content_hash())?;
                    set.bind_text(2, &serde_json::to_string(&u).map_err(|e| e.to_string())?)?;
                    set.bind_text(3, connector)?;
                    set.bind_text(4, external_id)?;
                    set.step()?;
                }
            }
            SnapshotWrite::Remove { external_id } => {
                let mut del = db.prepare("DELETE FROM snapshot WHERE connector = ?1 AND external_id = ?2")?;
                del.bind_text(1, connector)?;
                del.bind_text(2, external_id)?;
                del.step()?;
            }
        }
    }
    Ok(())
}
