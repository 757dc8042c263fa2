//! The embedded SQLite store (WAL), through sqlx alone. Schema migrations are sqlx's
//! (`migrations/*.sql`, embedded at build time) and applied on open.
//!
//! The bulk paths are set-based so that sqlx's per-row cost (SQLite runs on sqlx's worker
//! thread and every result row crosses a channel as owned values) is paid per batch, not per
//! user: a batch of writes is ONE statement whose single parameter is a JSON array
//! (`json_each`), and the snapshot comes back as a few rows, each one JSON array aggregated
//! in SQL for tens of thousands of users, parsed here. The same shape works on PostgreSQL
//! (`jsonb_array_elements`, `json_agg`).
//!
//! Times are RFC 3339 text (`sql::ts`), from this process's clock. The statements both
//! dialects read alike, and the audit trail, are `sql`'s.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::sql::{self, Backend, Dialect};
use super::{
    Fence, Fencing, HeldElsewhere, LastFile, LeaseRecord, Leases, ReconcileMark, RunRecord, Runs, SlotClaim, Slots, SnapshotWrite,
    Snapshots, StateError, worker_id,
};
use crate::model::{FileFingerprint, IdRule, User};
use crate::plan::{Snapshot, SnapshotEntry};
use crate::report::Report;

/// The schema, one numbered file per version; never edit a shipped one, add a file. (A new
/// file is picked up by the next build that recompiles this module: touch this file.)
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Users per row of the snapshot load: big enough that the per-row cost of sqlx vanishes,
/// small enough that a row (≈ 70 bytes a user) stays a few MiB and the parse of one chunk
/// overlaps SQLite building the next.
const LOAD_CHUNK: i64 = 50_000;

/// Users per upsert statement: a batch of 1000 (sync's) is four, so three of them are
/// encoded while the previous one is written.
const UPSERT_PIECE: usize = 250;

pub struct SqliteStore {
    /// Reads: several at once (WAL lets them run beside the writer).
    pool: SqlitePool,
    /// Every write, on one connection. SQLite has one writer anyway, but its busy handler is
    /// not a queue: a writer that commits and begins again at once (a million-user push)
    /// keeps winning, and a lease renewal polling for the lock starved for busy_timeout,
    /// every time. sqlx hands out this one connection first come, first served, so a
    /// renewal waits behind at most one batch of this process.
    writer: SqlitePool,
    url: String,
    /// The lease token every write checks (`Fencing::fenced`); None: unfenced.
    fence: Option<Fence>,
    /// Copies the WAL into the database beside the writer (`Checkpointer`).
    checkpointer: std::sync::Arc<Checkpointer>,
}

/// Snapshot rows written since the last checkpoint that start another.
const CHECKPOINT_ROWS: usize = 5_000;

/// Checkpoints on a reading connection, beside the writer. SQLite's own (the writer's
/// `wal_autocheckpoint`) runs on the committing connection: in a million-user push a
/// quarter of the writer's time went to copying the WAL into the database and its fsync,
/// with the push waiting on it. PASSIVE: it never blocks the writer or a reader, and copies
/// what it can; the writer's own checkpoint stays as the fallback past 64 MiB of WAL.
#[derive(Default)]
struct Checkpointer {
    /// Rows written since the last checkpoint started.
    rows: std::sync::atomic::AtomicUsize,
    running: std::sync::atomic::AtomicBool,
}

impl Checkpointer {
    /// After a commit of `rows` rows: starts a checkpoint on `pool` once enough have been
    /// written and none is running. A failed one (a full disk) is left to the next.
    fn written(self: &std::sync::Arc<Self>, rows: usize, pool: &SqlitePool) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.rows.fetch_add(rows, Relaxed) + rows < CHECKPOINT_ROWS || self.running.swap(true, Relaxed) {
            return;
        }
        self.rows.store(0, Relaxed);
        let (me, pool) = (self.clone(), pool.clone());
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                tracing::debug!("background checkpoint: {e}");
            }
            me.running.store(false, Relaxed);
        });
    }
}

impl SqliteStore {
    /// Opens (creating the file and its folder if needed) and migrates.
    pub async fn open(url: &str) -> Result<SqliteStore, StateError> {
        // Before the first connection: the library's allocator and statistics (`sqlite_lib`).
        super::sqlite_lib::configure();
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
        // The writer commits a million-user push in batches (BENCHMARKS.md, issue 29): with
        // SQLite's defaults its 2 MB page cache spilled and re-read pages mid-batch, each
        // upsert's statement journal went to a temporary file, and the WAL was copied into
        // the database every 4 MB (an fsync each). A 16 MiB cache (64 MiB measured no faster),
        // statement journals in memory and a checkpoint every 64 MiB of WAL cut its work.
        let writer_opts = opts.clone().pragma("cache_size", "-16384").pragma("temp_store", "memory").pragma("wal_autocheckpoint", "16384");
        let writer = connect_new_or_busy(writer_opts, 1).await.map_err(|e| db(format!("cannot open: {e}")))?;
        let pool = connect_new_or_busy(opts, 4).await.map_err(|e| db(format!("cannot open: {e}")))?;
        let store = SqliteStore { pool, writer, url: url.to_string(), fence: None, checkpointer: Default::default() };
        store.migrate().await?;
        Ok(store)
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> StateError + '_ {
        move |e| StateError::Db { url: self.url.clone(), detail: e.to_string() }
    }

    fn schema(&self, detail: String) -> StateError {
        StateError::Schema { url: self.url.clone(), detail }
    }

    fn migrate_err(&self, e: MigrateError) -> StateError {
        sql::schema_refusal(&self.url, e, "file")
            .unwrap_or_else(|other| StateError::Db { url: self.url.clone(), detail: format!("schema migration: {other}") })
    }

    /// A time read back from a text column (`table`.`column`): one that does not read is a
    /// corrupt row, said so.
    fn time(&self, table: &'static str, column: &'static str, text: &str) -> Result<DateTime<Utc>, StateError> {
        sql::time(&self.url, table, column, text)
    }

    fn json_err(&self, e: serde_json::Error) -> StateError {
        sql::json_err(&self.url, e)
    }

    fn lease_of_row(
        &self,
        (connector, holder, acquired_at, expires_at): (String, String, String, String),
    ) -> Result<LeaseRecord, StateError> {
        Ok(LeaseRecord {
            connector,
            holder,
            acquired_at: self.time("leases", "acquired_at", &acquired_at)?,
            expires_at: self.time("leases", "expires_at", &expires_at)?,
        })
    }

    /// Applies sqlx's migrations, inside one IMMEDIATE transaction: a second process opening
    /// the same new file waits for the write lock, then finds the schema in place (sqlx's
    /// own migration lock is a no-op on SQLite). Each migration nests as a savepoint.
    async fn migrate(&self) -> Result<(), StateError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(self.err())?;
        self.adopt_legacy(&mut tx).await?;
        MIGRATOR.run(&mut *tx).await.map_err(|e| self.migrate_err(e))?;
        tx.commit().await.map_err(self.err())
    }

    /// A DB from before sqlx's migrator recorded its version in `schema_version` (the
    /// highest row) and has no `_sqlx_migrations`. Its version 1 is exactly migration 0001,
    /// so that is marked applied without running; anything higher came from a build this
    /// one does not know.
    async fn adopt_legacy(&self, conn: &mut SqliteConnection) -> Result<(), StateError> {
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('schema_version', '_sqlx_migrations')")
                .fetch_all(&mut *conn)
                .await
                .map_err(self.err())?;
        if !tables.iter().any(|t| t == "schema_version") || tables.iter().any(|t| t == "_sqlx_migrations") {
            return Ok(());
        }
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&mut *conn).await.map_err(self.err())?;
        match v {
            Some(1) => MIGRATOR.skip(&mut *conn, Some(1)).await.map_err(|e| self.migrate_err(e)),
            Some(v) if v > 1 => Err(self.schema(format!("schema version {v}, this build knows up to 1; upgrade rostersync"))),
            // No version recorded: no table was created either; migration 0001 makes them.
            _ => Ok(()),
        }
    }
}

/// Connects, waiting out SQLITE_BUSY on the way in. Two processes opening a brand-new file
/// at once (the daemon and a CLI run on a fresh install, a fleet starting) race to switch it
/// to WAL, and that switch answers "busy" at once instead of calling the busy handler; the
/// loser retries until the winner has made the file (bounded, like busy_timeout).
async fn connect_new_or_busy(opts: SqliteConnectOptions, connections: u32) -> Result<sqlx::SqlitePool, sqlx::Error> {
    const BUSY: &str = "5";
    const LOCKED: &str = "6";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // A connection left counted inside a transaction (a full disk ends SQLite's own, and
        // sqlx's rollback then fails) is replaced, never handed out again (`sql::reusable`).
        let pool = SqlitePoolOptions::new().max_connections(connections).after_release(|c, _| sql::reusable(c));
        match pool.connect_with(opts.clone()).await {
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some(BUSY | LOCKED)) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// What `sql` needs to run the statements both backends share: with it, `sql` gives this
/// store its `Audit` role.
impl Backend for SqliteStore {
    type Db = Sqlite;
    const DIALECT: Dialect = Dialect::Sqlite;
    fn reads(&self) -> &SqlitePool {
        &self.pool
    }
    fn writes(&self) -> &SqlitePool {
        &self.writer
    }
    fn db_err(&self, e: sqlx::Error) -> StateError {
        StateError::Db { url: self.url.clone(), detail: e.to_string() }
    }
    fn url(&self) -> &str {
        &self.url
    }
    fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
}

impl SqliteStore {
    /// The write transaction of one fenced write: the write lock taken now (IMMEDIATE), then
    /// the fence checked, so nothing can take the lease over between the check and the write.
    async fn fenced_tx(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StateError> {
        sql::fenced_tx(self).await
    }
}

impl Fencing for SqliteStore {
    async fn lease_token(&self, connector: &str, holder: &str) -> Result<Option<i64>, StateError> {
        sqlx::query_scalar("SELECT token FROM leases WHERE connector = $1 AND holder = $2")
            .bind(connector)
            .bind(holder)
            .fetch_optional(&self.writer)
            .await
            .map_err(self.err())
    }

    fn fenced(&self, fence: Fence) -> SqliteStore {
        SqliteStore {
            pool: self.pool.clone(),
            writer: self.writer.clone(),
            url: self.url.clone(),
            fence: Some(fence),
            checkpointer: self.checkpointer.clone(),
        }
    }
}

/// One row of the snapshot load: external id, platform id, hex of the hash, active.
type LoadRow<'a> = (String, String, &'a str, i64);

/// Puts one chunk (a JSON array of `LoadRow`s, as built by `snapshot`'s SQL) into the map.
fn parse_chunk(out: &mut Snapshot, json: &str) -> Result<(), String> {
    let rows: Vec<LoadRow<'_>> = serde_json::from_str(json).map_err(|e| format!("snapshot chunk unreadable: {e}"))?;
    for (external_id, platform_id, hex_hash, active) in rows {
        // A hash of another length (never written by this code) reads as zeros: the user
        // then differs from the snapshot and is updated, which rewrites it.
        let mut hash = [0u8; 16];
        if hex::decode_to_slice(hex_hash, &mut hash).is_err() {
            hash = [0u8; 16];
        }
        out.insert(external_id, SnapshotEntry { platform_id, hash, active: active != 0 });
    }
    Ok(())
}

/// One chunk of the snapshot load, in external-id order after `after`: how many users, the
/// last id, and the JSON array of their rows.
struct Chunk {
    rows: i64,
    last: String,
    json: String,
}

// The snapshot load's first and next chunk. Two texts rather than `?2 IS NULL OR …`, which
// would keep SQLite from seeking the key; and not `> ''`, which would drop an empty id. Both
// read only the covering index `snapshot_listing` (migration 0009).
const LOAD_FIRST: &str = "SELECT count(*), max(external_id), json_group_array(json_array(external_id, platform_id, hex(hash), active))
         FROM (SELECT external_id, platform_id, hash, active FROM snapshot WHERE connector = ?1
               ORDER BY external_id LIMIT ?3)";
const LOAD_NEXT: &str = "SELECT count(*), max(external_id), json_group_array(json_array(external_id, platform_id, hex(hash), active))
         FROM (SELECT external_id, platform_id, hash, active FROM snapshot WHERE connector = ?1 AND external_id > ?2
               ORDER BY external_id LIMIT ?3)";

async fn load_chunk(conn: &mut SqliteConnection, connector: &str, after: Option<&str>) -> Result<Option<Chunk>, sqlx::Error> {
    let row = sqlx::query(if after.is_some() { LOAD_NEXT } else { LOAD_FIRST })
        .bind(connector)
        .bind(after.unwrap_or_default())
        .bind(LOAD_CHUNK)
        .fetch_one(&mut *conn)
        .await?;
    let rows: i64 = row.try_get(0)?;
    if rows == 0 {
        return Ok(None);
    }
    Ok(Some(Chunk { rows, last: row.try_get(1)?, json: row.try_get(2)? }))
}

/// The stored platform id and content of these users (external id, platform id, content
/// JSON). `IN (SELECT … json_each)` rather than a join: SQLite then seeks the primary key
/// once per id, where a join would put the snapshot outside and scan the ids per user.
async fn stored_contents(
    conn: &mut SqliteConnection,
    connector: &str,
    ids_json: &str,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT external_id, platform_id, content FROM snapshot
         WHERE connector = ?1 AND external_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(connector)
    .bind(ids_json)
    .fetch_all(&mut *conn)
    .await
}

impl Leases for SqliteStore {
    async fn acquire(&self, connector: &str, holder: &str, ttl: Duration) -> Result<i64, StateError> {
        let now = Utc::now();
        let expires = now + chrono::Duration::from_std(ttl).unwrap_or_default();
        // One transaction: the next fencing token, and the lease with it. The upsert only
        // happens when the current lease has expired (or is ours), so two processes cannot
        // both win; a refused attempt rolls its token back.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(self.err())?;
        let token: i64 =
            sqlx::query_scalar("UPDATE lease_tokens SET last = last + 1 RETURNING last").fetch_one(&mut *tx).await.map_err(self.err())?;
        let r = sqlx::query(
            "INSERT INTO leases (connector, holder, acquired_at, expires_at, token) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (connector) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at,
                 expires_at = excluded.expires_at, token = excluded.token
             WHERE leases.expires_at < ?3 OR leases.holder = ?2",
        )
        .bind(connector)
        .bind(holder)
        .bind(sql::ts(now))
        .bind(sql::ts(expires))
        .bind(token)
        .execute(&mut *tx)
        .await
        .map_err(self.err())?;
        if r.rows_affected() == 1 {
            tx.commit().await.map_err(self.err())?;
            return Ok(token);
        }
        drop(tx);
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

    async fn renew(&self, connector: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
        let expires = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
        let done = sqlx::query("UPDATE leases SET expires_at = ? WHERE connector = ? AND holder = ?")
            .bind(sql::ts(expires))
            .bind(connector)
            .bind(holder)
            .execute(&self.writer)
            .await
            .map_err(self.err())?;
        Ok(done.rows_affected() > 0)
    }

    async fn release(&self, connector: &str, holder: &str) -> Result<(), StateError> {
        sqlx::query(sql::RELEASE).bind(connector).bind(holder).execute(&self.writer).await.map_err(self.err())?;
        Ok(())
    }

    async fn leases(&self) -> Result<Vec<LeaseRecord>, StateError> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(sql::LEASES).fetch_all(&self.pool).await.map_err(self.err())?;
        rows.into_iter().map(|r| self.lease_of_row(r)).collect()
    }

    async fn live_lease(&self, connector: &str) -> Result<Option<LeaseRecord>, StateError> {
        let row: Option<(String, String, String, String)> =
            sqlx::query_as("SELECT connector, holder, acquired_at, expires_at FROM leases WHERE connector = $1 AND expires_at > $2")
                .bind(connector)
                .bind(sql::ts(Utc::now()))
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err())?;
        row.map(|r| self.lease_of_row(r)).transpose()
    }
}

impl Snapshots for SqliteStore {
    async fn absences(&self, connector: &str) -> Result<HashMap<String, DateTime<Utc>>, StateError> {
        super::absences::read_sqlite(&self.pool, &self.url, connector).await.map_err(self.err())?
    }

    async fn set_absences(&self, connector: &str, absent: &[(String, DateTime<Utc>)], back: &[String]) -> Result<(), StateError> {
        if absent.is_empty() && back.is_empty() {
            return Ok(());
        }
        let mut tx = self.fenced_tx().await?;
        super::absences::set_sqlite(&mut tx, connector, absent, back).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())
    }

    async fn snapshot(&self, connector: &str) -> Result<Snapshot, StateError> {
        let mut conn = self.pool.acquire().await.map_err(self.err())?;
        // One read transaction: every chunk sees the same state (a dry run takes no lease,
        // so a real run may be writing meanwhile).
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(self.err())?;
        // Sized once: growing a million-entry map rehashes it several times and briefly
        // holds two tables.
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshot WHERE connector = ?1")
            .bind(connector)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err())?;
        let mut out = Snapshot::with_capacity_and_hasher(usize::try_from(n).unwrap_or(0), Default::default());
        let mut chunk = load_chunk(&mut tx, connector, None).await.map_err(self.err())?;
        while let Some(c) = chunk {
            // SQLite builds the next chunk on sqlx's worker thread while this one is parsed
            // here: `zip` polls the query first, which sends it, then runs the parse.
            let next = async { if c.rows < LOAD_CHUNK { Ok(None) } else { load_chunk(&mut tx, connector, Some(&c.last)).await } };
            let parse = async { blocking(|| parse_chunk(&mut out, &c.json)) };
            let (next, parsed) = tokio::join!(biased; next, parse);
            parsed.map_err(|detail| StateError::Db { url: self.url.clone(), detail })?;
            chunk = next.map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())?;
        Ok(out)
    }

    async fn contents(&self, connector: &str, ids: &[&str]) -> Result<HashMap<String, User>, StateError> {
        let ids_json = serde_json::to_string(ids).map_err(|e| self.json_err(e))?;
        let mut conn = self.pool.acquire().await.map_err(self.err())?;
        let rows = stored_contents(&mut conn, connector, &ids_json).await.map_err(self.err())?;
        Ok(sql::stored_users(rows).map(|(id, (_, user))| (id, user)).collect())
    }

    async fn platform_ids(&self, connector: &str, ids: &[&str]) -> Result<HashMap<String, String>, StateError> {
        let ids_json = serde_json::to_string(ids).map_err(|e| self.json_err(e))?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT external_id, platform_id FROM snapshot WHERE connector = ?1 AND external_id IN (SELECT value FROM json_each(?2))",
        )
        .bind(connector)
        .bind(ids_json)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(rows.into_iter().collect())
    }

    async fn reports_of(&self, connector: &str, managers: &[&str]) -> Result<HashMap<String, (String, User)>, StateError> {
        let ids = serde_json::to_string(managers).map_err(|e| self.json_err(e))?;
        // The stored content keeps the manager as the attribute `manager_id` (`User`'s
        // serialisation). A scan of the connector's rows: only after a manager was deleted.
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT external_id, platform_id, content FROM snapshot
             WHERE connector = ?1 AND content -> '$.attributes' ->> '$.manager_id' IN (SELECT value FROM json_each(?2))",
        )
        .bind(connector)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(sql::stored_users(rows).collect())
    }

    async fn held_elsewhere(
        &self,
        exclude: &[&str],
        platform_ids: &[&str],
        keys: &[&str],
        rule: IdRule,
    ) -> Result<Vec<HeldElsewhere>, StateError> {
        if platform_ids.is_empty() && keys.is_empty() {
            return Ok(Vec::new());
        }
        let json = |v: &[&str]| serde_json::to_string(v).map_err(|e| self.json_err(e));
        // One scan of the other connectors' rows (no index serves "any connector but these");
        // the folded comparison is coarse here and exact in `held_matching`.
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT connector, external_id, platform_id FROM snapshot
             WHERE connector NOT IN (SELECT value FROM json_each(?1))
               AND (platform_id IN (SELECT value FROM json_each(?2))
                    OR external_id IN (SELECT value FROM json_each(?3))
                    OR (?4 AND NOT ?5 AND lower(trim(external_id)) IN (SELECT value FROM json_each(?3)))
                    OR (?4 AND ?5 AND upper(trim(external_id)) IN (SELECT value FROM json_each(?3)))
                    OR (?4 AND external_id GLOB '*[^ -~]*'))",
        )
        .bind(json(exclude)?)
        .bind(json(platform_ids)?)
        .bind(json(keys)?)
        .bind(rule.fold_case)
        .bind(rule.upper)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(super::held_matching(rows, platform_ids, keys, rule))
    }

    async fn others_hold_any(&self, exclude: &[&str]) -> Result<bool, StateError> {
        sql::others_hold_any(self, exclude).await
    }

    async fn write(&self, connector: &str, batch: &[SnapshotWrite]) -> Result<(), StateError> {
        // IMMEDIATE: take the write lock now (waiting busy_timeout for another writer), not
        // midway through the batch. All of the batch is recorded, or none (a dropped
        // transaction rolls back, or SQLite has rolled it back itself; either way the
        // connection serves again, or is replaced: `sql::reusable`).
        let mut tx = self.fenced_tx().await?;
        // Consecutive writes of one kind are one statement; the runs keep the batch's order,
        // so a later write of a user still wins over an earlier one.
        for run in batch.chunk_by(|a, b| std::mem::discriminant(a) == std::mem::discriminant(b)) {
            match run.first() {
                Some(SnapshotWrite::Upsert { .. }) => self.upsert(&mut tx, connector, run).await?,
                Some(SnapshotWrite::MarkInactive { .. }) => self.mark_inactive(&mut tx, connector, run).await?,
                Some(SnapshotWrite::Remove { .. }) => self.remove(&mut tx, connector, run).await?,
                None => {}
            }
        }
        tx.commit().await.map_err(self.err())?;
        self.checkpointer.written(batch.len(), &self.pool);
        Ok(())
    }

    async fn last_file(&self, connector: &str) -> Result<Option<LastFile>, StateError> {
        let row: Option<sql::LastFileRow<String>> =
            sqlx::query_as(sql::LAST_FILE).bind(connector).fetch_optional(&self.pool).await.map_err(self.err())?;
        row.map(|r| sql::last_file_of_row(r, |t| self.time("last_file", "synced_at", &t))).transpose()
    }

    async fn set_last_file(&self, connector: &str, f: &FileFingerprint) -> Result<(), StateError> {
        let mut tx = self.fenced_tx().await?;
        sqlx::query(
            "INSERT INTO last_file (connector, path, size, mtime, sha256, synced_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (connector) DO UPDATE SET path = excluded.path, size = excluded.size, mtime = excluded.mtime,
                 sha256 = excluded.sha256, synced_at = excluded.synced_at",
        )
        .bind(connector)
        .bind(&f.path)
        .bind(i64::try_from(f.size).unwrap_or(i64::MAX))
        .bind(&f.mtime)
        .bind(&f.sha256)
        .bind(sql::ts(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(self.err())?;
        tx.commit().await.map_err(self.err())
    }
}

impl Runs for SqliteStore {
    async fn start_run(&self, connector: &str, run_id: &str) -> Result<DateTime<Utc>, StateError> {
        // SQLite's clock is this machine's (`Slots::clock`).
        let at = self.clock().await?;
        let mut tx = self.fenced_tx().await?;
        sqlx::query(sql::START_RUN)
            .bind(run_id)
            .bind(connector)
            .bind(sql::ts(at))
            .bind(worker_id())
            .bind(self.fence.as_ref().map(|f| f.token))
            .execute(&mut *tx)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(at)
    }

    async fn finish_run(&self, report: &Report, at: DateTime<Utc>) -> Result<bool, StateError> {
        let mut tx = self.fenced_tx().await?;
        sqlx::query(sql::FINISH_RUN)
            .bind(sql::ts(at))
            .bind(serde_json::to_string(&report.for_history()).unwrap_or_default())
            .bind(&report.run_id)
            .execute(&mut *tx)
            .await
            .map_err(self.err())?;
        let others: bool = sqlx::query_scalar(sql::OTHERS_UNFINISHED)
            .bind(&report.connector)
            .bind(i64::from(super::UNFINISHED_LOOK_BACK))
            .bind(&report.run_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(others)
    }

    async fn interrupted(&self, connector: &str, current_run: &str) -> Result<bool, StateError> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as(sql::INTERRUPTED).bind(connector).bind(current_run).fetch_optional(&self.pool).await.map_err(self.err())?;
        Ok(matches!(row, Some((None,))))
    }

    async fn history(&self, connector: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StateError> {
        let rows: Vec<sql::RunRow<String>> = match connector {
            Some(c) => sqlx::query_as(sql::HISTORY_OF).bind(c).bind(i64::from(limit)).fetch_all(&self.pool).await,
            None => sqlx::query_as(sql::HISTORY).bind(i64::from(limit)).fetch_all(&self.pool).await,
        }
        .map_err(self.err())?;
        rows.into_iter().map(|r| sql::run_of_row(r, |column, t| self.time("runs", column, &t))).collect()
    }

    async fn set_reconcile(&self, connector: &str, run_id: &str, reason: &str) -> Result<(), StateError> {
        let mut tx = self.fenced_tx().await?;
        sqlx::query(
            "INSERT INTO reconcile_marks (connector, run_id, reason, set_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (connector) DO UPDATE SET run_id = excluded.run_id, reason = excluded.reason, set_at = excluded.set_at",
        )
        .bind(connector)
        .bind(run_id)
        .bind(reason)
        .bind(sql::ts(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(self.err())?;
        tx.commit().await.map_err(self.err())
    }

    async fn reconcile_mark(&self, connector: &str) -> Result<Option<ReconcileMark>, StateError> {
        let row: Option<(String, String, String)> =
            sqlx::query_as(sql::RECONCILE_MARK).bind(connector).fetch_optional(&self.pool).await.map_err(self.err())?;
        row.map(|(run_id, reason, set_at)| Ok(ReconcileMark { run_id, reason, set_at: self.time("reconcile_marks", "set_at", &set_at)? }))
            .transpose()
    }

    async fn clear_reconcile(&self, connector: &str) -> Result<(), StateError> {
        let mut tx = self.fenced_tx().await?;
        sqlx::query(sql::CLEAR_RECONCILE).bind(connector).execute(&mut *tx).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())
    }
}

impl Slots for SqliteStore {
    async fn claim_slot(&self, connector: &str, slot: DateTime<Utc>, worker: &str, ttl: Duration) -> Result<SlotClaim, StateError> {
        let now = Utc::now();
        if slot > now {
            // By this machine's clock, which is the store's: see `Slots::clock`.
            return Ok(SlotClaim::Early { now });
        }
        let expires = now + chrono::Duration::from_std(ttl).unwrap_or_default();
        // As `acquire`: one statement decides, so two daemons on this file cannot both win.
        let won: Option<String> = sqlx::query_scalar(
            "INSERT INTO slots (connector, slot_at, worker, claimed_at, expires_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (connector, slot_at) DO UPDATE SET worker = excluded.worker, claimed_at = excluded.claimed_at,
                 expires_at = excluded.expires_at
             WHERE slots.done_at IS NULL AND (slots.expires_at < $4 OR slots.worker = $3)
             RETURNING worker",
        )
        .bind(connector)
        .bind(sql::ts(slot))
        .bind(worker)
        .bind(sql::ts(now))
        .bind(sql::ts(expires))
        .fetch_optional(&self.writer)
        .await
        .map_err(self.err())?;
        if won.is_some() {
            return Ok(SlotClaim::Won);
        }
        let row: Option<(String, String, Option<String>)> =
            sqlx::query_as("SELECT worker, expires_at, done_at FROM slots WHERE connector = $1 AND slot_at = $2")
                .bind(connector)
                .bind(sql::ts(slot))
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err())?;
        Ok(match row {
            Some((_, _, Some(_))) => SlotClaim::Done,
            Some((worker, e, None)) => SlotClaim::Held { worker, expires_at: self.time("slots", "expires_at", &e)? },
            // Deleted in between (never done by this code): claim again next time.
            None => SlotClaim::Held { worker: "nobody".into(), expires_at: now },
        })
    }

    async fn finish_slot(&self, connector: &str, slot: DateTime<Utc>, worker: &str) -> Result<(), StateError> {
        let now = Utc::now();
        sqlx::query("UPDATE slots SET done_at = $4 WHERE connector = $1 AND slot_at = $2 AND worker = $3")
            .bind(connector)
            .bind(sql::ts(slot))
            .bind(worker)
            .bind(sql::ts(now))
            .execute(&self.writer)
            .await
            .map_err(self.err())?;
        // Slots are kept a week (enough to see what ran when), then pruned with the next.
        sqlx::query("DELETE FROM slots WHERE connector = $1 AND slot_at < $2 AND done_at IS NOT NULL")
            .bind(connector)
            .bind(sql::ts(now - chrono::Duration::days(7)))
            .execute(&self.writer)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn renew_slots(&self, worker: &str, ttl: Duration) -> Result<u64, StateError> {
        let expires = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
        let r = sqlx::query("UPDATE slots SET expires_at = $2 WHERE worker = $1 AND done_at IS NULL")
            .bind(worker)
            .bind(sql::ts(expires))
            .execute(&self.writer)
            .await
            .map_err(self.err())?;
        Ok(r.rows_affected())
    }
}

/// The batch writes of `Snapshots::write`, one statement per run of writes of a kind.
impl SqliteStore {
    /// Upserts in pieces of `UPSERT_PIECE`: while SQLite (on sqlx's worker thread) writes
    /// one piece, this thread encodes the next, so the two cores share the batch.
    async fn upsert(&self, conn: &mut SqliteConnection, connector: &str, run: &[SnapshotWrite]) -> Result<(), StateError> {
        let mut pieces = run.chunks(UPSERT_PIECE);
        let Some(first) = pieces.next() else { return Ok(()) };
        let mut rows = self.bound_rows(first)?;
        for piece in pieces {
            // `biased` polls the statement first, which sends it to the worker, then encodes.
            let (written, next) = tokio::join!(biased; upsert_bound(conn, connector, &rows), async { self.bound_rows(piece) });
            written.map_err(self.err())?;
            rows = next?;
        }
        upsert_bound(conn, connector, &rows).await.map_err(self.err())
    }

    fn bound_rows<'w>(&self, writes: &'w [SnapshotWrite]) -> Result<Vec<BoundRow<'w>>, StateError> {
        sql::upserts(writes)
            .map(|(platform_id, user)| {
                let content = serde_json::to_string(user).map_err(|e| self.json_err(e))?;
                Ok(BoundRow { external_id: &user.external_id, platform_id, hash: user.content_hash(), active: user.active, content })
            })
            .collect()
    }

    /// Upserts as one `INSERT … SELECT` over `rows`, a JSON array as `sql::push_upsert_row`
    /// writes them.
    async fn upsert_rows(&self, conn: &mut SqliteConnection, connector: &str, rows: String) -> Result<(), StateError> {
        // `jsonb_each`: each element comes out as a JSONB blob, which `->>` reads in place
        // (`json_each` would print it as text for `->>` to parse again). `WHERE true`:
        // SQLite's grammar needs a WHERE before an upsert's ON CONFLICT in INSERT … SELECT.
        sqlx::query(
            "INSERT INTO snapshot (connector, external_id, platform_id, hash, active, content)
             SELECT ?1, r.value ->> 0, r.value ->> 1, unhex(r.value ->> 2), r.value ->> 3, r.value -> 4
             FROM jsonb_each(?2) AS r WHERE true
             ON CONFLICT (connector, external_id) DO UPDATE SET platform_id = excluded.platform_id, hash = excluded.hash,
                 active = excluded.active, content = excluded.content",
        )
        .bind(connector)
        .bind(rows)
        .execute(&mut *conn)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    /// Read, made inactive (`sql::inactive_rows`) and written back by the upsert, inside
    /// the batch's IMMEDIATE transaction, so nothing changes in between. Users not stored
    /// are left as they are.
    async fn mark_inactive(&self, conn: &mut SqliteConnection, connector: &str, run: &[SnapshotWrite]) -> Result<(), StateError> {
        let ids = serde_json::to_string(&sql::marked_inactive(run)).map_err(|e| self.json_err(e))?;
        let stored = stored_contents(conn, connector, &ids).await.map_err(self.err())?;
        match sql::inactive_rows(&stored).map_err(|e| self.json_err(e))? {
            Some(rows) => self.upsert_rows(conn, connector, rows).await,
            None => Ok(()),
        }
    }

    async fn remove(&self, conn: &mut SqliteConnection, connector: &str, run: &[SnapshotWrite]) -> Result<(), StateError> {
        let ids = serde_json::to_string(&sql::removed(run)).map_err(|e| self.json_err(e))?;
        sqlx::query("DELETE FROM snapshot WHERE connector = ?1 AND external_id IN (SELECT value FROM json_each(?2))")
            .bind(connector)
            .bind(ids)
            .execute(&mut *conn)
            .await
            .map_err(self.err())?;
        Ok(())
    }
}

/// One snapshot row of an upsert, bound as parameters.
struct BoundRow<'w> {
    external_id: &'w str,
    platform_id: &'w str,
    hash: [u8; 16],
    active: bool,
    content: String,
}

/// Upserts `rows` as one `INSERT … VALUES` with each value a parameter. A JSON array of
/// the rows (`upsert_rows`, which `mark_inactive` still uses) made SQLite parse every row
/// and print its content again: a fifth of the writer's work in a 1M first sync.
async fn upsert_bound(conn: &mut SqliteConnection, connector: &str, rows: &[BoundRow<'_>]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    // Built of parameter numbers only: nothing of the data is in the text.
    let sql = sqlx::AssertSqlSafe(upsert_values_sql(rows.len()));
    // A full piece's statement is kept prepared; the odd sizes of a batch's last piece are not.
    let mut q = sqlx::query(sql).persistent(rows.len() == UPSERT_PIECE);
    for r in rows {
        q = q.bind(connector).bind(r.external_id).bind(r.platform_id).bind(&r.hash[..]).bind(r.active).bind(r.content.as_str());
    }
    q.execute(&mut *conn).await.map(drop)
}

/// `INSERT … VALUES (?, ?, ?, ?, ?, ?), …` for `n` rows (within SQLite's 32766 parameters for
/// `UPSERT_PIECE` rows). Anonymous parameters, the connector bound on each row: sqlx asks
/// SQLite the name of every parameter it binds, a linear search among numbered ones
/// (`?2`…`?1251`), which made binding a piece quadratic.
fn upsert_values_sql(n: usize) -> String {
    let mut sql = String::from("INSERT INTO snapshot (connector, external_id, platform_id, hash, active, content) VALUES ");
    for r in 0..n {
        sql.push_str(if r == 0 { "(?, ?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?, ?)" });
    }
    sql.push_str(
        " ON CONFLICT (connector, external_id) DO UPDATE SET platform_id = excluded.platform_id, hash = excluded.hash,
             active = excluded.active, content = excluded.content",
    );
    sql
}

/// Runs `f`, CPU-bound work on this thread, telling a multi-threaded tokio runtime first so
/// its other tasks move to another worker meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The snapshot load reads the covering index alone, in key order (migration 0009): no
    /// look-up into the table per user, which made the load of a million a third slower.
    #[tokio::test]
    async fn the_snapshot_load_scans_the_covering_index_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}/s.db", dir.path().display())).await.unwrap();
        let mut conn = store.pool.acquire().await.unwrap();
        for sql in [LOAD_FIRST, LOAD_NEXT] {
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind("acme")
                .bind("a")
                .bind(10)
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            let steps: Vec<&str> = plan.iter().map(|p| p.3.as_str()).collect();
            assert!(steps.iter().any(|s| s.contains("USING COVERING INDEX snapshot_listing")), "{sql}: {steps:?}");
            assert!(!steps.iter().any(|s| s.contains("TEMP B-TREE")), "{sql} sorts: {steps:?}");
        }
    }
}
