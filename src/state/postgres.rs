//! The PostgreSQL store, through sqlx: what SQLite holds, for a fleet of workers sharing
//! one database. Migrations are sqlx's (`migrations-postgres/*.sql`, embedded at build
//! time), applied on open under sqlx's advisory lock.
//!
//! Coordination is PostgreSQL's own: a lease or a slot claim is one `INSERT … ON CONFLICT
//! DO UPDATE … WHERE <expired>` statement, which locks the conflicting row and re-checks the
//! condition on its latest version, so of two workers racing exactly one wins; expiry is by
//! the database's clock (`now()`), never a worker's. Nothing here keeps a lock or a
//! transaction open between statements: a worker that is SIGKILLed leaves rows that lapse.
//!
//! The bulk paths are set-based as on SQLite: a batch of writes is one statement whose
//! parameter is a JSON array (`json_array_elements`), a list of ids one `text[]`.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::{
    AuditEntry, LastFile, LeaseRecord, ReconcileMark, RunRecord, SlotClaim, SnapshotWrite, StateError, StateStore, StoredPlan, worker_id,
};
use crate::model::{FileFingerprint, User};
use crate::plan::{Snapshot, SnapshotEntry};
use crate::report::Report;
use sqlx::Row;

/// The schema, one numbered file per version; never edit a shipped one, add a file. (A new
/// file is picked up by the next build that recompiles this module: touch this file.)
static MIGRATOR: Migrator = sqlx::migrate!("./migrations-postgres");

/// Users per page of the snapshot load (keyset pages in one snapshot-consistent read).
const LOAD_PAGE: i64 = 50_000;

/// Users per upsert statement.
const UPSERT_PIECE: usize = 500;

/// Connections per worker: a few runs at once plus the heartbeats.
const POOL_SIZE: u32 = 8;

pub struct PostgresStore {
    pool: PgPool,
    /// The URL as shown in errors (without any password).
    url: String,
    host: String,
    port: u16,
}

/// `url` without its password, for messages.
fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "the [state] url".to_string(),
    }
}

fn secs(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

impl PostgresStore {
    /// Connects (`password` from `[state] password_env` / `password_file`) and migrates.
    pub async fn open(url: &str, password: Option<&str>) -> Result<PostgresStore, StateError> {
        let shown = shown_url(url);
        let mut opts = PgConnectOptions::from_str(url)
            .map_err(|e| StateError::Db { url: shown.clone(), detail: format!("unreadable URL: {}", redact(&e.to_string(), password)) })?
            .application_name(&format!("rostersync {}", worker_id()));
        if let Some(p) = password {
            opts = opts.password(p);
        }
        let (host, port) = (opts.get_host().to_string(), opts.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            // Connections die with a restarted server or a failover: test before use.
            .test_before_acquire(true)
            .connect_with(opts)
            .await;
        let pool = pool.map_err(|e| classify(e, password, &shown, &host, port))?;
        let store = PostgresStore { pool, url: shown, host, port };
        store.migrate().await?;
        Ok(store)
    }

    fn classify(&self, e: sqlx::Error, password: Option<&str>) -> StateError {
        classify(e, password, &self.url, &self.host, self.port)
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> StateError + '_ {
        move |e| self.classify(e, None)
    }

    fn schema(&self, detail: String) -> StateError {
        StateError::Schema { url: self.url.clone(), detail }
    }

    async fn migrate(&self) -> Result<(), StateError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            MigrateError::VersionMissing(v) => self.schema(format!(
                "it has schema migration {v}, which this build does not know (a newer rostersync applied it); upgrade rostersync"
            )),
            MigrateError::VersionMismatch(v) => self.schema(format!(
                "its schema migration {v} differs from this build's; it was written by another build of rostersync, use that one"
            )),
            MigrateError::Dirty(v) => {
                self.schema(format!("schema migration {v} is recorded as failed half-way; restore the database from a backup"))
            }
            MigrateError::Execute(e) => self.classify(e, None),
            other => StateError::Db { url: self.url.clone(), detail: format!("schema migration: {other}") },
        })
    }

    fn json_err(&self, e: serde_json::Error) -> StateError {
        StateError::Db { url: self.url.clone(), detail: format!("cannot encode a batch as JSON: {e}") }
    }
}

/// A sqlx failure as what it means to the user: the server out of reach, a refused login,
/// or a database error (told apart by sqlx's error kind and the SQLSTATE, never by text).
fn classify(e: sqlx::Error, password: Option<&str>, url: &str, host: &str, port: u16) -> StateError {
    let detail = redact(&e.to_string(), password);
    let unreachable = |detail| StateError::Unreachable { host: host.to_string(), port, detail };
    match &e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => unreachable(detail),
        sqlx::Error::Database(d) => match d.code().as_deref() {
            // invalid_password, invalid_authorization_specification
            Some("28P01") | Some("28000") => StateError::Login { host: host.to_string(), port, detail },
            // invalid_catalog_name: the database does not exist.
            Some("3D000") => StateError::Db {
                url: url.to_string(),
                detail: format!("{detail}; create it first (createdb, or CREATE DATABASE) and give the user rights on it"),
            },
            // cannot_connect_now (starting up, shutting down), admin_shutdown, crash_shutdown
            Some("57P03") | Some("57P01") | Some("57P02") => unreachable(detail),
            _ => StateError::Db { url: url.to_string(), detail },
        },
        _ => StateError::Db { url: url.to_string(), detail },
    }
}

/// The password never reaches a message, whatever a driver puts in its text.
fn redact(text: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() => text.replace(p, "***"),
        _ => text.to_string(),
    }
}

/// The stored platform id and content of these users.
async fn stored_contents(conn: &mut PgConnection, connector: &str, ids: &[&str]) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT external_id, platform_id, content FROM snapshot WHERE connector = $1 AND external_id = ANY($2)")
        .bind(connector)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await
}

/// Appends one upsert row to the JSON array in `out`: `[external_id, platform_id, hex hash,
/// active, content]`, the content as the JSON object it is.
fn push_upsert_row(
    out: &mut String,
    external_id: &str,
    platform_id: &str,
    hash: &str,
    active: bool,
    content: &str,
) -> serde_json::Result<()> {
    out.push(if out.is_empty() { '[' } else { ',' });
    let head = serde_json::to_string(&(external_id, platform_id, hash, u8::from(active)))?;
    out.push_str(head.strip_suffix(']').unwrap_or(&head));
    out.push(',');
    out.push_str(content);
    out.push(']');
    Ok(())
}

/// One attempt at a lease.
enum Attempt {
    Taken,
    Held(StateError),
    /// Refused, but released by the time we looked who held it.
    Gone,
}

impl PostgresStore {
    async fn try_acquire(&self, connector: &str, holder: &str, ttl: Duration) -> Result<Attempt, StateError> {
        let r = sqlx::query(
            "INSERT INTO leases (connector, holder, acquired_at, expires_at) VALUES ($1, $2, now(), now() + make_interval(secs => $3))
             ON CONFLICT (connector) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at,
                 expires_at = excluded.expires_at
             WHERE leases.expires_at < now() OR leases.holder = $2",
        )
        .bind(connector)
        .bind(holder)
        .bind(secs(ttl))
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        if r.rows_affected() == 1 {
            return Ok(Attempt::Taken);
        }
        let row: Option<(String, DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as("SELECT holder, acquired_at, expires_at FROM leases WHERE connector = $1")
                .bind(connector)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err())?;
        let ms = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Ok(match row {
            Some((holder, since, expires)) => {
                Attempt::Held(StateError::Held { connector: connector.into(), holder, since: ms(since), expires: ms(expires) })
            }
            None => Attempt::Gone,
        })
    }
}

impl StateStore for PostgresStore {
    async fn acquire(&self, connector: &str, holder: &str, ttl: Duration) -> Result<(), StateError> {
        let mut attempt = self.try_acquire(connector, holder, ttl).await?;
        if matches!(attempt, Attempt::Gone) {
            // Released between our attempt and our look at who held it: once more.
            attempt = self.try_acquire(connector, holder, ttl).await?;
        }
        match attempt {
            Attempt::Taken => Ok(()),
            Attempt::Held(e) => Err(e),
            Attempt::Gone => Err(StateError::Held {
                connector: connector.into(),
                holder: "another run".into(),
                since: "just now".into(),
                expires: "soon".into(),
            }),
        }
    }

    async fn renew(&self, connector: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
        let done = sqlx::query("UPDATE leases SET expires_at = now() + make_interval(secs => $3) WHERE connector = $1 AND holder = $2")
            .bind(connector)
            .bind(holder)
            .bind(secs(ttl))
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(done.rows_affected() > 0)
    }

    async fn release(&self, connector: &str, holder: &str) -> Result<(), StateError> {
        sqlx::query("DELETE FROM leases WHERE connector = $1 AND holder = $2")
            .bind(connector)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn snapshot(&self, connector: &str) -> Result<Snapshot, StateError> {
        // One REPEATABLE READ transaction: every page sees the same state (a dry run takes no
        // lease, so a real run may be writing meanwhile).
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(self.err())?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshot WHERE connector = $1")
            .bind(connector)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err())?;
        let mut out = Snapshot::with_capacity_and_hasher(usize::try_from(n).unwrap_or(0), Default::default());
        let mut after: Option<String> = None;
        loop {
            let page: Vec<(String, String, Vec<u8>, bool)> =
                match &after {
                    None => sqlx::query_as(
                        "SELECT external_id, platform_id, hash, active FROM snapshot WHERE connector = $1 ORDER BY external_id LIMIT $2",
                    )
                    .bind(connector)
                    .bind(LOAD_PAGE)
                    .fetch_all(&mut *tx)
                    .await,
                    Some(a) => {
                        sqlx::query_as(
                            "SELECT external_id, platform_id, hash, active FROM snapshot WHERE connector = $1 AND external_id > $3
                     ORDER BY external_id LIMIT $2",
                        )
                        .bind(connector)
                        .bind(LOAD_PAGE)
                        .bind(a)
                        .fetch_all(&mut *tx)
                        .await
                    }
                }
                .map_err(self.err())?;
            let full = page.len() as i64 == LOAD_PAGE;
            after = page.last().map(|r| r.0.clone());
            for (external_id, platform_id, h, active) in page {
                // A hash of another length (never written by this code) reads as zeros: the
                // user then differs from the snapshot and is updated, which rewrites it.
                let hash: [u8; 16] = h.as_slice().try_into().unwrap_or([0u8; 16]);
                out.insert(external_id, SnapshotEntry { platform_id, hash, active });
            }
            if !full {
                break;
            }
        }
        tx.commit().await.map_err(self.err())?;
        Ok(out)
    }

    async fn contents(&self, connector: &str, ids: &[&str]) -> Result<HashMap<String, User>, StateError> {
        let mut conn = self.pool.acquire().await.map_err(self.err())?;
        let rows = stored_contents(&mut conn, connector, ids).await.map_err(self.err())?;
        Ok(rows
            .into_iter()
            // Content from an older version that no longer reads is skipped: the update then
            // replaces every attribute instead of patching the differences.
            .filter_map(|(id, _, content)| Some((id, serde_json::from_str::<User>(&content).ok()?)))
            .collect())
    }

    async fn write(&self, connector: &str, batch: &[SnapshotWrite]) -> Result<(), StateError> {
        // All of the batch, or none (a dropped transaction rolls back).
        let mut tx = self.pool.begin().await.map_err(self.err())?;
        // Consecutive writes of one kind are one statement; the runs keep the batch's order,
        // so a later write of a user still wins over an earlier one.
        for run in batch.chunk_by(|a, b| std::mem::discriminant(a) == std::mem::discriminant(b)) {
            match run.first() {
                Some(SnapshotWrite::Upsert { .. }) => {
                    for piece in run.chunks(UPSERT_PIECE) {
                        let json = self.upsert_json(piece)?;
                        self.upsert_rows(&mut tx, connector, json).await?;
                    }
                }
                Some(SnapshotWrite::MarkInactive { .. }) => self.mark_inactive(&mut tx, connector, run).await?,
                Some(SnapshotWrite::Remove { .. }) => {
                    let ids: Vec<&str> = run
                        .iter()
                        .filter_map(|w| match w {
                            SnapshotWrite::Remove { external_id } => Some(external_id.as_str()),
                            _ => None,
                        })
                        .collect();
                    sqlx::query("DELETE FROM snapshot WHERE connector = $1 AND external_id = ANY($2)")
                        .bind(connector)
                        .bind(&ids)
                        .execute(&mut *tx)
                        .await
                        .map_err(self.err())?;
                }
                None => {}
            }
        }
        tx.commit().await.map_err(self.err())
    }

    async fn reports_of(&self, connector: &str, managers: &[&str]) -> Result<HashMap<String, (String, User)>, StateError> {
        // The stored content keeps the manager as the attribute `manager_id` (`User`'s
        // serialisation). A scan of the connector's rows: only after a manager was deleted.
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT external_id, platform_id, content FROM snapshot
             WHERE connector = $1 AND (content::json -> 'attributes' ->> 'manager_id') = ANY($2)",
        )
        .bind(connector)
        .bind(managers)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, platform_id, content)| Some((id, (platform_id, serde_json::from_str::<User>(&content).ok()?))))
            .collect())
    }

    async fn write_audit(&self, entries: &[AuditEntry]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        // One statement per batch, as the snapshot's writes: a JSON array of rows.
        let rows: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!([
                    e.connector,
                    e.external_id,
                    e.run_id,
                    ts(e.at),
                    e.kind,
                    serde_json::to_string(&e.fields).unwrap_or_else(|_| "[]".into()),
                    e.status,
                    e.http_status,
                    e.approval
                ])
            })
            .collect();
        let json = serde_json::to_string(&rows).map_err(|e| self.json_err(e))?;
        sqlx::query(
            "INSERT INTO audit (connector, external_id, run_id, at, kind, fields, status, http_status, approval)
             SELECT r ->> 0, r ->> 1, r ->> 2, r ->> 3, r ->> 4, r ->> 5, r ->> 6,
                    (r ->> 7)::int, r ->> 8
             FROM json_array_elements($1::json) AS r",
        )
        .bind(json)
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    async fn person_history(&self, connector: Option<&str>, external_id: &str, limit: u32) -> Result<Vec<AuditEntry>, StateError> {
        let rows = sqlx::query(
            "SELECT connector, external_id, run_id, at, kind, fields, status, http_status, approval FROM audit
             WHERE ($1::text IS NULL OR connector = $1) AND external_id = $2 ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(connector)
        .bind(external_id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                connector: r.get(0),
                external_id: r.get(1),
                run_id: r.get(2),
                at: parse_ts(&r.get::<String, _>(3)).unwrap_or_default(),
                kind: r.get(4),
                fields: serde_json::from_str(&r.get::<String, _>(5)).unwrap_or_default(),
                status: r.get(6),
                http_status: r.get::<Option<i32>, _>(7).and_then(|s| u16::try_from(s).ok()),
                approval: r.get(8),
            })
            .collect())
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StateError> {
        let at = ts(before);
        let a = sqlx::query("DELETE FROM audit WHERE at < $1").bind(&at).execute(&self.pool).await.map_err(self.err())?;
        let p = sqlx::query("DELETE FROM plans WHERE created_at < $1").bind(&at).execute(&self.pool).await.map_err(self.err())?;
        Ok(a.rows_affected() + p.rows_affected())
    }

    async fn save_plan(&self, plan: &StoredPlan) -> Result<(), StateError> {
        let file = serde_json::to_string(&plan.file).map_err(|e| self.json_err(e))?;
        let ops = serde_json::to_string(&plan.operations).map_err(|e| self.json_err(e))?;
        let approval = match &plan.approved {
            Some((a, _)) => Some(serde_json::to_string(a).map_err(|e| self.json_err(e))?),
            None => None,
        };
        sqlx::query(
            "INSERT INTO plans (run_id, connector, created_at, file, state_fingerprint, digest, rule, message, dry_run,
                 operations, approval, applied_by, operations_left_out)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (run_id) DO UPDATE SET connector = excluded.connector, created_at = excluded.created_at, file = excluded.file,
                 state_fingerprint = excluded.state_fingerprint, digest = excluded.digest, rule = excluded.rule,
                 message = excluded.message, dry_run = excluded.dry_run, operations = excluded.operations,
                 approval = excluded.approval, applied_by = excluded.applied_by, operations_left_out = excluded.operations_left_out",
        )
        .bind(&plan.run_id)
        .bind(&plan.connector)
        .bind(ts(plan.created_at))
        .bind(file)
        .bind(&plan.state_fingerprint)
        .bind(&plan.digest)
        .bind(&plan.rule)
        .bind(&plan.message)
        .bind(plan.dry_run)
        .bind(ops)
        .bind(approval)
        .bind(plan.approved.as_ref().map(|(_, r)| r.as_str()))
        .bind(plan.operations_left_out as i64)
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    async fn stored_plan(&self, run_id: &str) -> Result<Option<StoredPlan>, StateError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{PLAN_COLUMNS} WHERE run_id = $1")))
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
        row.map(|r| self.plan_of_row(&r)).transpose()
    }

    async fn pending_plan(&self, connector: &str) -> Result<Option<StoredPlan>, StateError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{PLAN_COLUMNS} WHERE connector = $1 ORDER BY created_at DESC LIMIT 1")))
            .bind(connector)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(row.map(|r| self.plan_of_row(&r)).transpose()?.filter(|p| p.approved.is_none()))
    }

    async fn mark_approved(&self, run_id: &str, approval: &crate::report::Approval, applied_by: &str) -> Result<(), StateError> {
        let a = serde_json::to_string(approval).map_err(|e| self.json_err(e))?;
        sqlx::query("UPDATE plans SET approval = $1, applied_by = $2 WHERE run_id = $3")
            .bind(a)
            .bind(applied_by)
            .bind(run_id)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn set_reconcile(&self, connector: &str, run_id: &str, reason: &str) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO reconcile_marks (connector, run_id, reason, set_at) VALUES ($1, $2, $3, now())
             ON CONFLICT (connector) DO UPDATE SET run_id = excluded.run_id, reason = excluded.reason, set_at = excluded.set_at",
        )
        .bind(connector)
        .bind(run_id)
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    async fn reconcile_mark(&self, connector: &str) -> Result<Option<ReconcileMark>, StateError> {
        let row: Option<(String, String, DateTime<Utc>)> =
            sqlx::query_as("SELECT run_id, reason, set_at FROM reconcile_marks WHERE connector = $1")
                .bind(connector)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err())?;
        Ok(row.map(|(run_id, reason, set_at)| ReconcileMark { run_id, reason, set_at }))
    }

    async fn clear_reconcile(&self, connector: &str) -> Result<(), StateError> {
        sqlx::query("DELETE FROM reconcile_marks WHERE connector = $1").bind(connector).execute(&self.pool).await.map_err(self.err())?;
        Ok(())
    }

    async fn last_file(&self, connector: &str) -> Result<Option<LastFile>, StateError> {
        type Row = (String, i64, Option<String>, String, DateTime<Utc>);
        let row: Option<Row> = sqlx::query_as("SELECT path, size, mtime, sha256, synced_at FROM last_file WHERE connector = $1")
            .bind(connector)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(row.map(|(path, size, mtime, sha256, synced_at)| LastFile {
            fingerprint: FileFingerprint { path, size: u64::try_from(size).unwrap_or(0), mtime, sha256 },
            synced_at,
        }))
    }

    async fn set_last_file(&self, connector: &str, f: &FileFingerprint) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO last_file (connector, path, size, mtime, sha256, synced_at) VALUES ($1, $2, $3, $4, $5, now())
             ON CONFLICT (connector) DO UPDATE SET path = excluded.path, size = excluded.size, mtime = excluded.mtime,
                 sha256 = excluded.sha256, synced_at = excluded.synced_at",
        )
        .bind(connector)
        .bind(&f.path)
        .bind(i64::try_from(f.size).unwrap_or(i64::MAX))
        .bind(&f.mtime)
        .bind(&f.sha256)
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    async fn start_run(&self, connector: &str, run_id: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        sqlx::query("INSERT INTO runs (run_id, connector, started_at, worker) VALUES ($1, $2, $3, $4)")
            .bind(run_id)
            .bind(connector)
            .bind(at)
            .bind(worker_id())
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn finish_run(&self, report: &Report, at: DateTime<Utc>) -> Result<(), StateError> {
        sqlx::query("UPDATE runs SET ended_at = $1, report = $2 WHERE run_id = $3")
            .bind(at)
            .bind(serde_json::to_string(report).unwrap_or_default())
            .bind(&report.run_id)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn interrupted(&self, connector: &str, current_run: &str) -> Result<bool, StateError> {
        let row: Option<(Option<DateTime<Utc>>,)> =
            sqlx::query_as("SELECT ended_at FROM runs WHERE connector = $1 AND run_id <> $2 ORDER BY started_at DESC LIMIT 1")
                .bind(connector)
                .bind(current_run)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err())?;
        Ok(matches!(row, Some((None,))))
    }

    async fn history(&self, connector: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StateError> {
        type Row = (String, String, DateTime<Utc>, Option<DateTime<Utc>>, Option<String>, Option<String>);
        let rows: Vec<Row> = match connector {
            Some(c) => {
                sqlx::query_as(
                    "SELECT run_id, connector, started_at, ended_at, report, worker FROM runs WHERE connector = $1
                 ORDER BY started_at DESC LIMIT $2",
                )
                .bind(c)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query_as("SELECT run_id, connector, started_at, ended_at, report, worker FROM runs ORDER BY started_at DESC LIMIT $1")
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|(run_id, connector, started_at, ended_at, report, worker)| RunRecord {
                run_id,
                connector,
                started_at,
                ended_at,
                report: report.and_then(|s| serde_json::from_str(&s).ok()),
                worker,
            })
            .collect())
    }

    async fn leases(&self) -> Result<Vec<LeaseRecord>, StateError> {
        let rows: Vec<(String, String, DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as("SELECT connector, holder, acquired_at, expires_at FROM leases ORDER BY connector")
                .fetch_all(&self.pool)
                .await
                .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|(connector, holder, acquired_at, expires_at)| LeaseRecord { connector, holder, acquired_at, expires_at })
            .collect())
    }

    async fn live_lease(&self, connector: &str) -> Result<Option<LeaseRecord>, StateError> {
        let row: Option<(String, String, DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as("SELECT connector, holder, acquired_at, expires_at FROM leases WHERE connector = $1 AND expires_at > now()")
                .bind(connector)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err())?;
        Ok(row.map(|(connector, holder, acquired_at, expires_at)| LeaseRecord { connector, holder, acquired_at, expires_at }))
    }

    async fn claim_slot(&self, connector: &str, slot: DateTime<Utc>, worker: &str, ttl: Duration) -> Result<SlotClaim, StateError> {
        // One statement either way: the claim, or (when it is not ours) the claim in place.
        // The second part reads the snapshot from before the statement, so a claim committed
        // while we waited on its row lock is not seen: that reads as a claim about to be
        // decided, checked again a moment later.
        type Row = (bool, Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
        let row: Option<Row> = sqlx::query_as(
            "WITH claim AS (
                 INSERT INTO slots (connector, slot_at, worker, claimed_at, expires_at)
                 VALUES ($1, $2, $3, now(), now() + make_interval(secs => $4))
                 ON CONFLICT (connector, slot_at) DO UPDATE SET worker = excluded.worker, claimed_at = excluded.claimed_at,
                     expires_at = excluded.expires_at
                 WHERE slots.done_at IS NULL AND (slots.expires_at < now() OR slots.worker = $3)
                 RETURNING worker)
             SELECT true, NULL::text, NULL::timestamptz, NULL::timestamptz FROM claim
             UNION ALL
             SELECT false, worker, expires_at, done_at FROM slots
             WHERE connector = $1 AND slot_at = $2 AND NOT EXISTS (SELECT 1 FROM claim)",
        )
        .bind(connector)
        .bind(slot)
        .bind(worker)
        .bind(secs(ttl))
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(match row {
            Some((true, ..)) => SlotClaim::Won,
            Some((false, _, _, Some(_))) => SlotClaim::Done,
            Some((false, Some(worker), Some(expires_at), None)) => SlotClaim::Held { worker, expires_at },
            _ => SlotClaim::Held { worker: "another worker".into(), expires_at: Utc::now() + chrono::Duration::seconds(1) },
        })
    }

    async fn finish_slot(&self, connector: &str, slot: DateTime<Utc>, worker: &str) -> Result<(), StateError> {
        // Slots are kept a week (enough to see what ran when), pruned as the next finishes:
        // one statement, on the connector's part of the primary key.
        sqlx::query(
            "WITH pruned AS (DELETE FROM slots WHERE connector = $1 AND slot_at < now() - interval '7 days' AND done_at IS NOT NULL)
             UPDATE slots SET done_at = now() WHERE connector = $1 AND slot_at = $2 AND worker = $3",
        )
        .bind(connector)
        .bind(slot)
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    async fn renew_slots(&self, worker: &str, ttl: Duration) -> Result<u64, StateError> {
        let r = sqlx::query("UPDATE slots SET expires_at = now() + make_interval(secs => $2) WHERE worker = $1 AND done_at IS NULL")
            .bind(worker)
            .bind(secs(ttl))
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(r.rows_affected())
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

const PLAN_COLUMNS: &str = "SELECT run_id, connector, created_at, file, state_fingerprint, digest, rule, message, dry_run, operations,
    approval, applied_by, operations_left_out FROM plans";

impl PostgresStore {
    fn plan_of_row(&self, r: &sqlx::postgres::PgRow) -> Result<StoredPlan, StateError> {
        let bad = |what: &str, e: serde_json::Error| self.schema(format!("the stored plan's {what} does not read: {e}"));
        let approval: Option<String> = r.get(10);
        let approved = match (approval, r.get::<Option<String>, _>(11)) {
            (Some(a), Some(run)) => Some((serde_json::from_str(&a).map_err(|e| bad("approval", e))?, run)),
            _ => None,
        };
        Ok(StoredPlan {
            run_id: r.get(0),
            connector: r.get(1),
            created_at: parse_ts(&r.get::<String, _>(2)).unwrap_or_default(),
            file: serde_json::from_str(&r.get::<String, _>(3)).map_err(|e| bad("file", e))?,
            state_fingerprint: r.get(4),
            digest: r.get(5),
            rule: r.get(6),
            message: r.get(7),
            dry_run: r.get(8),
            operations: serde_json::from_str(&r.get::<String, _>(9)).map_err(|e| bad("operations", e))?,
            operations_left_out: r.get::<i64, _>(12) as u64,
            approved,
        })
    }

    /// The JSON array of one upsert statement. PostgreSQL refuses to update one row twice in
    /// one `INSERT … ON CONFLICT`, so a user written twice in the piece keeps only its last
    /// write (which is what applying them in order would leave).
    fn upsert_json(&self, writes: &[SnapshotWrite]) -> Result<String, StateError> {
        let mut out = String::with_capacity(writes.len() * 512);
        let mut seen: HashSet<&str> = HashSet::with_capacity(writes.len());
        for w in writes.iter().rev() {
            if let SnapshotWrite::Upsert { platform_id, user } = w {
                if !seen.insert(user.external_id.as_str()) {
                    continue;
                }
                let content = serde_json::to_string(user).map_err(|e| self.json_err(e))?;
                let hash = hex::encode(user.content_hash());
                push_upsert_row(&mut out, &user.external_id, platform_id, &hash, user.active, &content).map_err(|e| self.json_err(e))?;
            }
        }
        if out.is_empty() {
            out.push('[');
        }
        out.push(']');
        Ok(out)
    }

    /// One `INSERT … SELECT` over a JSON array as `push_upsert_row` writes them. `json`, not
    /// `jsonb`: parsed once, and `-> 4` gives the content back as the very text sent.
    async fn upsert_rows(&self, conn: &mut PgConnection, connector: &str, rows: String) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO snapshot (connector, external_id, platform_id, hash, active, content)
             SELECT $1, r ->> 0, r ->> 1, decode(r ->> 2, 'hex'), (r ->> 3) <> '0', (r -> 4)::text
             FROM json_array_elements($2::json) AS r
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

    /// As on SQLite: the stored content is read, made inactive and rehashed (so a comeback
    /// reads as a reactivation), and written back, inside the batch's transaction. The rows
    /// are locked (`FOR UPDATE`) so a concurrent writer cannot slip in between.
    async fn mark_inactive(&self, conn: &mut PgConnection, connector: &str, run: &[SnapshotWrite]) -> Result<(), StateError> {
        let ids: Vec<&str> = run
            .iter()
            .filter_map(|w| match w {
                SnapshotWrite::MarkInactive { external_id } => Some(external_id.as_str()),
                _ => None,
            })
            .collect();
        let stored: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT external_id, platform_id, content FROM snapshot WHERE connector = $1 AND external_id = ANY($2) FOR UPDATE",
        )
        .bind(connector)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(self.err())?;
        let mut rows = String::new();
        for (id, platform_id, content) in &stored {
            if let Ok(mut u) = serde_json::from_str::<User>(content) {
                u.active = false;
                let content = serde_json::to_string(&u).map_err(|e| self.json_err(e))?;
                push_upsert_row(&mut rows, id, platform_id, &hex::encode(u.content_hash()), false, &content)
                    .map_err(|e| self.json_err(e))?;
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        rows.push(']');
        self.upsert_rows(conn, connector, rows).await
    }
}
