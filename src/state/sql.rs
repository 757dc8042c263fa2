//! What SQLite and PostgreSQL share: the statements where the dialects agree, the row
//! mapping, the JSON the bulk statements take, and the `Audit` role written once.
//!
//! Why one module of plain statements, and not sqlx's `Any` driver or a query builder:
//! - the two dialects agree on more than it seems. sqlx's SQLite driver reads `$N` as the
//!   N-th argument, as PostgreSQL does, and both know `INSERT … ON CONFLICT … DO UPDATE`, so
//!   one text serves both wherever the types agree (the audit trail and the stored plans keep
//!   times as RFC 3339 text on both);
//! - where they do not agree, the difference is the point: PostgreSQL's leases and slots
//!   expire by the database's clock (`now()`, `timestamptz`) so a fleet's workers need not
//!   agree on the time, and the hot paths (the 1M snapshot load, the batch upserts) are
//!   shaped for each engine (`json_group_array` chunks parsed while SQLite builds the next,
//!   `jsonb_each` vs `json_array_elements`, `text[]` binds). Those statements stay beside
//!   their backend, as they were measured (BENCHMARKS.md);
//! - `Any` knows neither `text[]` nor chrono's times (its types are the few both engines
//!   have), and copies every value of every row through its own `AnyValue`: a cost on exactly
//!   the paths that must not slow. A query builder is one more dependency that would hide
//!   those hand-tuned shapes, and says `json_each` vs `json_array_elements` no better than
//!   two strings do.
//!
//! A backend says what it is (`Backend`: its pools, its dialect, how its errors read) and
//! gets `Audit` from here; its other roles call on the shared statements and mapping below.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use sqlx::migrate::MigrateError;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::{Audit, AuditEntry, Fence, LastFile, RunRecord, SnapshotWrite, StateError, StoredPlan};
use crate::model::{FileFingerprint, User};
use crate::report::Approval;

/// Where the dialects disagree in a statement this module holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

/// What a backend is, for the statements shared here.
pub(super) trait Backend: Sync {
    type Db: Database;
    const DIALECT: Dialect;
    /// Where reads go (SQLite: several connections beside the writer).
    fn reads(&self) -> &Pool<Self::Db>;
    /// Where writes go (SQLite: its one writer connection).
    fn writes(&self) -> &Pool<Self::Db>;
    /// A driver error as the user should read it.
    fn db_err(&self, e: sqlx::Error) -> StateError;
    /// The store as named in errors (no password).
    fn url(&self) -> &str;
    /// The fence its writes check (`Fencing::fenced`), if any.
    fn fence(&self) -> Option<&Fence>;
    /// How a write's transaction begins: on SQLite `BEGIN IMMEDIATE`, which takes the write
    /// lock at once, so nothing can take the lease over between the fence's check and the
    /// write (and a read-then-write never fails to upgrade its lock).
    const BEGIN_WRITE: &'static str;
}

// ---- fencing ----

/// Whether the connector's lease still carries the token: one row, or none. On PostgreSQL
/// the row is held (`FOR SHARE`) until the write's transaction ends, so a take-over (which
/// updates it) waits for the write rather than slipping in between the check and it.
const FENCE_SQLITE: &str = "SELECT token FROM leases WHERE connector = $1 AND token = $2";
const FENCE_POSTGRES: &str = "SELECT token FROM leases WHERE connector = $1 AND token = $2 FOR SHARE";

/// Checks `fence` inside the write's transaction `conn`: a run whose lease was taken over
/// (its token no longer the lease's) is refused before it writes anything.
pub(super) async fn check_fence<DB: Database>(
    dialect: Dialect,
    fence: Option<&Fence>,
    conn: &mut DB::Connection,
    db_err: impl Fn(sqlx::Error) -> StateError,
) -> Result<(), StateError>
where
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    let Some(f) = fence else { return Ok(()) };
    let sql = match dialect {
        Dialect::Sqlite => FENCE_SQLITE,
        Dialect::Postgres => FENCE_POSTGRES,
    };
    let held: Option<(i64,)> = sqlx::query_as(sql).bind(f.connector.clone()).bind(f.token).fetch_optional(conn).await.map_err(db_err)?;
    match held {
        Some(_) => Ok(()),
        None => Err(StateError::Fenced { connector: f.connector.clone(), token: f.token }),
    }
}

/// The transaction of one fenced write: begun as the backend writes (`Backend::BEGIN_WRITE`),
/// the fence checked first. Every write to the store goes through one, so a stale writer's
/// write is refused whatever it writes (`StateError::Fenced`).
pub(super) async fn fenced_tx<B: Backend>(b: &B) -> Result<sqlx::Transaction<'static, B::Db>, StateError>
where
    for<'e> &'e mut <B::Db as Database>::Connection: Executor<'e, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'t> String: Encode<'t, B::Db> + Type<B::Db>,
    for<'t> i64: Encode<'t, B::Db> + Type<B::Db>,
    (i64,): for<'r> FromRow<'r, <B::Db as Database>::Row>,
{
    let mut tx = b.writes().begin_with(B::BEGIN_WRITE).await.map_err(|e| b.db_err(e))?;
    check_fence::<B::Db>(B::DIALECT, b.fence(), &mut tx, |e| b.db_err(e)).await?;
    Ok(tx)
}

// ---- snapshots ----

/// `Snapshots::others_hold_any`, one text for both engines: a loose index scan of the
/// snapshot's primary key (connector, external_id), each step seeking the first connector
/// name after the last one seen and so skipping all of its rows.
pub(super) async fn others_hold_any<B: Backend>(b: &B, exclude: &[&str]) -> Result<bool, StateError>
where
    for<'e> &'e mut <B::Db as Database>::Connection: Executor<'e, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'t> String: Encode<'t, B::Db> + Type<B::Db>,
    (String,): for<'r> FromRow<'r, <B::Db as Database>::Row>,
{
    let mut after = String::new();
    loop {
        // `>= ''` the first time: every name (a connector's is never empty).
        let sql = if after.is_empty() {
            "SELECT connector FROM snapshot WHERE connector >= $1 ORDER BY connector LIMIT 1"
        } else {
            "SELECT connector FROM snapshot WHERE connector > $1 ORDER BY connector LIMIT 1"
        };
        let next: Option<(String,)> = sqlx::query_as(sql).bind(after).fetch_optional(b.reads()).await.map_err(|e| b.db_err(e))?;
        match next {
            None => return Ok(false),
            Some((c,)) if exclude.contains(&c.as_str()) => after = c,
            Some(_) => return Ok(true),
        }
    }
}

/// How many rows a statement changed (each driver has its own result type).
pub(super) trait Affected {
    fn rows(&self) -> u64;
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

// ---- connections ----

/// Whether a connection handed back to its pool may serve again: not while sqlx still
/// counts it inside a transaction. A dropped transaction only queues its rollback; the ping
/// runs it. That rollback fails when the database already ended the transaction itself
/// (SQLite does on a full disk or an I/O error, at a statement or at COMMIT), and sqlx then
/// keeps counting the connection as inside one: every later `begin` on it fails. Such a
/// connection is closed (`false`) and the pool opens a fresh one for the next caller.
/// Given to each pool as `after_release`.
pub(super) fn reusable<C: sqlx::Connection>(conn: &mut C) -> Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        conn.ping().await?;
        Ok(!conn.is_in_transaction())
    })
}

// ---- times ----

/// A time as stored in text columns: RFC 3339, UTC, milliseconds (so text order is time order).
pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A time read back from a text column; one that does not read is a corrupt row, named, and
/// never a silent 1970.
pub(super) fn time(url: &str, table: &'static str, column: &'static str, text: &str) -> Result<DateTime<Utc>, StateError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|_| StateError::Corrupt {
        url: url.to_string(),
        table,
        column,
        value: text.to_string(),
    })
}

// ---- schema ----

/// The migrator's refusals that mean the store is not this build's: named as such. Any other
/// failure is handed back for the backend to classify. `copy` is what to restore ("file",
/// "database").
pub(super) fn schema_refusal(url: &str, e: MigrateError, copy: &str) -> Result<StateError, MigrateError> {
    let detail = match e {
        MigrateError::VersionMissing(v) => {
            format!("it has schema migration {v}, which this build does not know (a newer rostersync applied it); upgrade rostersync")
        }
        MigrateError::VersionMismatch(v) => {
            format!("its schema migration {v} differs from this build's; it was written by another build of rostersync, use that one")
        }
        MigrateError::Dirty(v) => format!("schema migration {v} is recorded as failed half-way; restore the {copy} from a backup"),
        other => return Err(other),
    };
    Ok(StateError::Schema { url: url.to_string(), detail })
}

pub(super) fn json_err(url: &str, e: serde_json::Error) -> StateError {
    StateError::Db { url: url.to_string(), detail: format!("cannot encode a batch as JSON: {e}") }
}

// ---- the snapshot's batch writes ----

/// Appends one row of a batch upsert to the JSON array in `out` (opened here on the first
/// row; the caller closes it): `[external_id, platform_id, hex hash, active, content]`.
/// The content goes in as the JSON object it is (`-> 4` takes it out as text again) rather
/// than as a string, which would escape every quote here and unescape it in the database.
pub(super) fn push_upsert_row(
    out: &mut String,
    external_id: &str,
    platform_id: &str,
    hash: &str,
    active: bool,
    content: &str,
) -> serde_json::Result<()> {
    out.push(if out.is_empty() { '[' } else { ',' });
    let head = serde_json::to_string(&(external_id, platform_id, hash, u8::from(active)))?;
    // `head` is a JSON array: reopen it for the fifth element.
    out.push_str(head.strip_suffix(']').unwrap_or(&head));
    out.push(',');
    out.push_str(content);
    out.push(']');
    Ok(())
}

/// The JSON array of one batch upsert: each user (with its platform id) as
/// `push_upsert_row` writes it.
pub(super) fn upsert_array<'a>(users: impl Iterator<Item = (&'a str, &'a User)>) -> serde_json::Result<String> {
    let mut out = String::with_capacity(users.size_hint().1.unwrap_or(0) * 512);
    for (platform_id, user) in users {
        let content = serde_json::to_string(user)?;
        push_upsert_row(&mut out, &user.external_id, platform_id, &hex::encode(user.content_hash()), user.active, &content)?;
    }
    if out.is_empty() {
        out.push('[');
    }
    out.push(']');
    Ok(out)
}

/// Stored rows (external id, platform id, content) as the users they hold. Content an older
/// version wrote that no longer reads is skipped: the update then replaces every attribute
/// instead of patching the differences.
pub(super) fn stored_users(rows: Vec<(String, String, String)>) -> impl Iterator<Item = (String, (String, User))> {
    rows.into_iter().filter_map(|(id, platform_id, content)| Some((id, (platform_id, serde_json::from_str::<User>(&content).ok()?))))
}

/// The users (with their platform ids) of a run of `Upsert` writes, in order.
pub(super) fn upserts(run: &[SnapshotWrite]) -> impl DoubleEndedIterator<Item = (&str, &User)> {
    run.iter().filter_map(|w| match w {
        SnapshotWrite::Upsert { platform_id, user } => Some((platform_id.as_str(), &**user)),
        _ => None,
    })
}

/// The upsert rows that mark these stored users (external id, platform id, content) inactive,
/// as a closed JSON array; None when there are none. The stored hash is of the active
/// content; it is recomputed inactive so the person reappearing active in a later file reads
/// as a reactivation. Users whose content no longer reads are left as they are.
pub(super) fn inactive_rows(stored: &[(String, String, String)]) -> serde_json::Result<Option<String>> {
    let mut rows = String::new();
    for (id, platform_id, content) in stored {
        if let Ok(mut u) = serde_json::from_str::<User>(content) {
            u.active = false;
            let content = serde_json::to_string(&u)?;
            push_upsert_row(&mut rows, id, platform_id, &hex::encode(u.content_hash()), false, &content)?;
        }
    }
    if rows.is_empty() {
        return Ok(None);
    }
    rows.push(']');
    Ok(Some(rows))
}

/// The external ids of a run of `MarkInactive` writes.
pub(super) fn marked_inactive(run: &[SnapshotWrite]) -> Vec<&str> {
    run.iter()
        .filter_map(|w| match w {
            SnapshotWrite::MarkInactive { external_id } => Some(external_id.as_str()),
            _ => None,
        })
        .collect()
}

/// The external ids of a run of `Remove` writes.
pub(super) fn removed(run: &[SnapshotWrite]) -> Vec<&str> {
    run.iter()
        .filter_map(|w| match w {
            SnapshotWrite::Remove { external_id } => Some(external_id.as_str()),
            _ => None,
        })
        .collect()
}

// ---- leases, runs, the reconcile marker: the statements both dialects read alike ----

pub(super) const RELEASE: &str = "DELETE FROM leases WHERE connector = $1 AND holder = $2";
pub(super) const LEASES: &str = "SELECT connector, holder, acquired_at, expires_at FROM leases ORDER BY connector";
pub(super) const LAST_FILE: &str = "SELECT path, size, mtime, sha256, synced_at FROM last_file WHERE connector = $1";
pub(super) const START_RUN: &str = "INSERT INTO runs (run_id, connector, started_at, worker, fence) VALUES ($1, $2, $3, $4, $5)";
pub(super) const FINISH_RUN: &str = "UPDATE runs SET ended_at = $1, report = $2 WHERE run_id = $3";
/// Whether, among the connector's (placeholder `$connector`) newest `$depth` runs, one other
/// than `$run` has no recorded end: what a run's end also answers (`Runs::finish_run`). A
/// macro, so that PostgreSQL's one-statement end (`postgres.rs`) embeds the same text with
/// its own placeholders.
macro_rules! others_unfinished {
    ($connector:literal, $depth:literal, $run:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM (SELECT run_id, ended_at FROM runs WHERE connector = ",
            $connector,
            " ORDER BY started_at DESC LIMIT ",
            $depth,
            ") r WHERE r.ended_at IS NULL AND r.run_id <> ",
            $run,
            ")"
        )
    };
}
pub(super) use others_unfinished;
pub(super) const OTHERS_UNFINISHED: &str = concat!("SELECT ", others_unfinished!("$1", "$2", "$3"));
pub(super) const INTERRUPTED: &str = "SELECT ended_at FROM runs WHERE connector = $1 AND run_id <> $2 ORDER BY started_at DESC LIMIT 1";
pub(super) const HISTORY_OF: &str = "SELECT run_id, connector, started_at, ended_at, report, worker, fence FROM runs WHERE connector = $1 ORDER BY started_at DESC LIMIT $2";
pub(super) const HISTORY: &str =
    "SELECT run_id, connector, started_at, ended_at, report, worker, fence FROM runs ORDER BY started_at DESC LIMIT $1";
pub(super) const RECONCILE_MARK: &str = "SELECT run_id, reason, set_at FROM reconcile_marks WHERE connector = $1";
pub(super) const CLEAR_RECONCILE: &str = "DELETE FROM reconcile_marks WHERE connector = $1";

/// One row of `LAST_FILE`, its time as the backend stores it (`T`).
pub(super) type LastFileRow<T> = (String, i64, Option<String>, String, T);

pub(super) fn last_file_of_row<T>(
    (path, size, mtime, sha256, synced_at): LastFileRow<T>,
    time: impl Fn(T) -> Result<DateTime<Utc>, StateError>,
) -> Result<LastFile, StateError> {
    Ok(LastFile {
        fingerprint: FileFingerprint { path, size: u64::try_from(size).unwrap_or(0), mtime, sha256 },
        synced_at: time(synced_at)?,
    })
}

/// One row of `HISTORY`, its times as the backend stores them (`T`).
pub(super) type RunRow<T> = (String, String, T, Option<T>, Option<String>, Option<String>, Option<i64>);

/// A run's row as a record; `time` reads the backend's time type (text on SQLite).
pub(super) fn run_of_row<T>(
    (run_id, connector, started_at, ended_at, report, worker, fence): RunRow<T>,
    time: impl Fn(&'static str, T) -> Result<DateTime<Utc>, StateError>,
) -> Result<RunRecord, StateError> {
    Ok(RunRecord {
        run_id,
        connector,
        started_at: time("started_at", started_at)?,
        ended_at: ended_at.map(|t| time("ended_at", t)).transpose()?,
        // A report an older build wrote that no longer reads: the run shows without one.
        report: report.and_then(|s| serde_json::from_str(&s).ok()),
        worker,
        fence,
    })
}

// ---- the audit trail and stored plans: one implementation for both ----

/// Audit entries per statement: nine parameters each, within SQLite's 32766 and
/// PostgreSQL's 65535.
const AUDIT_PIECE: usize = 1000;

/// `INSERT INTO audit … VALUES (…), …` for `n` entries, each value a parameter. SQLite's
/// parameters are anonymous (`?`): sqlx looks the name of each one up among numbered ones,
/// a linear search that makes binding a statement quadratic. A JSON array of the entries
/// (the first way) had SQLite parse every entry back out of text.
fn write_audit_sql(dialect: Dialect, n: usize) -> String {
    let mut sql =
        String::from("INSERT INTO audit (connector, external_id, run_id, at, kind, fields, status, http_status, approval) VALUES ");
    for r in 0..n {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..9 {
            if c > 0 {
                sql.push_str(", ");
            }
            match dialect {
                Dialect::Sqlite => sql.push('?'),
                Dialect::Postgres => {
                    use std::fmt::Write;
                    let _ = write!(sql, "${}", r * 9 + c + 1);
                }
            }
        }
        sql.push(')');
    }
    sql
}
/// Newest first; entries written in one batch keep their order by insertion (SQLite's
/// `rowid`, PostgreSQL's `id`).
const PERSON_HISTORY_SQLITE: &str = "SELECT connector, external_id, run_id, at, kind, fields, status, CAST(http_status AS BIGINT), approval
     FROM audit WHERE (CAST($1 AS TEXT) IS NULL OR connector = $1) AND external_id = $2 ORDER BY at DESC, rowid DESC LIMIT $3";
const PERSON_HISTORY_POSTGRES: &str =
    "SELECT connector, external_id, run_id, at, kind, fields, status, CAST(http_status AS BIGINT), approval
     FROM audit WHERE (CAST($1 AS TEXT) IS NULL OR connector = $1) AND external_id = $2 ORDER BY at DESC, id DESC LIMIT $3";
const PRUNE_AUDIT: &str = "DELETE FROM audit WHERE at < $1";
/// A connector's newest plan while it is not approved is what `pending_plan` offers for
/// approval: never pruned, however old (a person may be on leave).
const PRUNE_PLANS: &str = "DELETE FROM plans WHERE created_at < $1
     AND NOT (approval IS NULL AND created_at = (SELECT max(p.created_at) FROM plans AS p WHERE p.connector = plans.connector))";
const SAVE_PLAN: &str = "INSERT INTO plans (run_id, connector, created_at, file, state_fingerprint, digest, rule, message, dry_run,
         operations, approval, applied_by, operations_left_out)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (run_id) DO UPDATE SET connector = excluded.connector, created_at = excluded.created_at, file = excluded.file,
         state_fingerprint = excluded.state_fingerprint, digest = excluded.digest, rule = excluded.rule,
         message = excluded.message, dry_run = excluded.dry_run, operations = excluded.operations,
         approval = excluded.approval, applied_by = excluded.applied_by, operations_left_out = excluded.operations_left_out";
const STORED_PLAN: &str = "SELECT run_id, connector, created_at, file, state_fingerprint, digest, rule, message, dry_run, operations,
     approval, applied_by, operations_left_out FROM plans WHERE run_id = $1";
const NEWEST_PLAN: &str = "SELECT run_id, connector, created_at, file, state_fingerprint, digest, rule, message, dry_run, operations,
     approval, applied_by, operations_left_out FROM plans WHERE connector = $1 ORDER BY created_at DESC LIMIT 1";
const MARK_APPROVED: &str = "UPDATE plans SET approval = $1, applied_by = $2 WHERE run_id = $3";

/// One row of `person_history`, in its column order.
type AuditRow = (String, String, String, String, String, String, String, Option<i64>, Option<String>);

/// One row of `plans`, in `STORED_PLAN`'s column order.
type PlanRow = (String, String, String, String, String, String, String, String, bool, String, Option<String>, Option<String>, i64);

fn audit_of_row(
    url: &str,
    (connector, external_id, run_id, at, kind, fields, status, http_status, approval): AuditRow,
) -> Result<AuditEntry, StateError> {
    Ok(AuditEntry {
        connector,
        external_id,
        run_id,
        at: time(url, "audit", "at", &at)?,
        kind,
        fields: serde_json::from_str(&fields).unwrap_or_default(),
        status,
        http_status: http_status.and_then(|s| u16::try_from(s).ok()),
        approval,
    })
}

fn plan_of_row(url: &str, row: PlanRow) -> Result<StoredPlan, StateError> {
    let (
        run_id,
        connector,
        created_at,
        file,
        state_fingerprint,
        digest,
        rule,
        message,
        dry_run,
        operations,
        approval,
        applied_by,
        left_out,
    ) = row;
    let bad = |what: &str, e: serde_json::Error| StateError::Schema {
        url: url.to_string(),
        detail: format!("the stored plan's {what} does not read: {e}"),
    };
    let approved = match (approval, applied_by) {
        (Some(a), Some(run)) => Some((serde_json::from_str(&a).map_err(|e| bad("approval", e))?, run)),
        _ => None,
    };
    Ok(StoredPlan {
        run_id,
        connector,
        created_at: time(url, "plans", "created_at", &created_at)?,
        file: serde_json::from_str(&file).map_err(|e| bad("file", e))?,
        state_fingerprint,
        digest,
        rule,
        message,
        dry_run,
        operations: serde_json::from_str(&operations).map_err(|e| bad("operations", e))?,
        operations_left_out: u64::try_from(left_out).unwrap_or(0),
        approved,
    })
}

/// The plan's columns in `SAVE_PLAN`'s order, encoded.
fn plan_params(plan: &StoredPlan) -> serde_json::Result<PlanRow> {
    Ok((
        plan.run_id.clone(),
        plan.connector.clone(),
        ts(plan.created_at),
        serde_json::to_string(&plan.file)?,
        plan.state_fingerprint.clone(),
        plan.digest.clone(),
        plan.rule.clone(),
        plan.message.clone(),
        plan.dry_run,
        serde_json::to_string(&plan.operations)?,
        plan.approved.as_ref().map(|(a, _)| serde_json::to_string(a)).transpose()?,
        plan.approved.as_ref().map(|(_, r)| r.clone()),
        i64::try_from(plan.operations_left_out).unwrap_or(i64::MAX),
    ))
}

impl<B> Audit for B
where
    B: Backend + super::Slots,
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    <B::Db as Database>::QueryResult: Affected,
    for<'t> String: Encode<'t, B::Db> + Type<B::Db>,
    for<'t> Option<String>: Encode<'t, B::Db> + Type<B::Db>,
    for<'t> bool: Encode<'t, B::Db> + Type<B::Db>,
    for<'t> i64: Encode<'t, B::Db> + Type<B::Db>,
    for<'t> &'t str: Encode<'t, B::Db> + Type<B::Db>,
    for<'t> Option<&'t str>: Encode<'t, B::Db> + Type<B::Db>,
    for<'t> Option<i32>: Encode<'t, B::Db> + Type<B::Db>,
    AuditRow: for<'r> FromRow<'r, <B::Db as Database>::Row>,
    PlanRow: for<'r> FromRow<'r, <B::Db as Database>::Row>,
    (i64,): for<'r> FromRow<'r, <B::Db as Database>::Row>,
{
    async fn write_audit(&self, entries: &[AuditEntry]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        // Encoded first: nothing of the transaction waits on it.
        let rows: Vec<_> = entries
            .iter()
            .map(|e| Ok((ts(e.at), serde_json::to_string(&e.fields)?)))
            .collect::<serde_json::Result<_>>()
            .map_err(|e| json_err(self.url(), e))?;
        // All of the batch in one transaction: a commit per thousand entries was a tenth of
        // a first sync's state writes.
        let mut tx = fenced_tx(self).await?;
        for (piece, encoded) in entries.chunks(AUDIT_PIECE).zip(rows.chunks(AUDIT_PIECE)) {
            // Built of parameter placeholders only: nothing of the data is in the text.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(write_audit_sql(B::DIALECT, piece.len())));
            for (e, (at, fields)) in piece.iter().zip(encoded) {
                q = q
                    .bind(e.connector.as_str())
                    .bind(e.external_id.as_str())
                    .bind(e.run_id.as_str())
                    .bind(at.as_str())
                    .bind(e.kind.as_str())
                    .bind(fields.as_str())
                    .bind(e.status.as_str())
                    .bind(e.http_status.map(i32::from))
                    .bind(e.approval.as_deref());
            }
            q.execute(&mut *tx).await.map_err(|e| self.db_err(e))?;
        }
        tx.commit().await.map_err(|e| self.db_err(e))
    }

    async fn person_history(&self, connector: Option<&str>, external_id: &str, limit: u32) -> Result<Vec<AuditEntry>, StateError> {
        let sql = match B::DIALECT {
            Dialect::Sqlite => PERSON_HISTORY_SQLITE,
            Dialect::Postgres => PERSON_HISTORY_POSTGRES,
        };
        let rows: Vec<AuditRow> = sqlx::query_as(sql)
            .bind(connector.map(str::to_string))
            .bind(external_id.to_string())
            .bind(i64::from(limit))
            .fetch_all(self.reads())
            .await
            .map_err(|e| self.db_err(e))?;
        rows.into_iter().map(|r| audit_of_row(self.url(), r)).collect()
    }

    async fn prune(&self, keep: std::time::Duration) -> Result<u64, StateError> {
        // By the store's clock: a CLI run from a machine 200 days ahead removes nothing early.
        let now = super::Slots::clock(self).await?;
        let Some(before) = chrono::Duration::from_std(keep).ok().and_then(|k| now.checked_sub_signed(k)) else { return Ok(0) };
        let mut tx = fenced_tx(self).await?;
        let mut gone = 0;
        for sql in [PRUNE_AUDIT, PRUNE_PLANS] {
            gone += sqlx::query(sql).bind(ts(before)).execute(&mut *tx).await.map_err(|e| self.db_err(e))?.rows();
        }
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(gone)
    }

    async fn save_plan(&self, plan: &StoredPlan) -> Result<(), StateError> {
        let p = plan_params(plan).map_err(|e| json_err(self.url(), e))?;
        let mut tx = fenced_tx(self).await?;
        sqlx::query(SAVE_PLAN)
            .bind(p.0)
            .bind(p.1)
            .bind(p.2)
            .bind(p.3)
            .bind(p.4)
            .bind(p.5)
            .bind(p.6)
            .bind(p.7)
            .bind(p.8)
            .bind(p.9)
            .bind(p.10)
            .bind(p.11)
            .bind(p.12)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))
    }

    async fn stored_plan(&self, run_id: &str) -> Result<Option<StoredPlan>, StateError> {
        let row: Option<PlanRow> =
            sqlx::query_as(STORED_PLAN).bind(run_id.to_string()).fetch_optional(self.reads()).await.map_err(|e| self.db_err(e))?;
        row.map(|r| plan_of_row(self.url(), r)).transpose()
    }

    async fn pending_plan(&self, connector: &str) -> Result<Option<StoredPlan>, StateError> {
        let row: Option<PlanRow> =
            sqlx::query_as(NEWEST_PLAN).bind(connector.to_string()).fetch_optional(self.reads()).await.map_err(|e| self.db_err(e))?;
        Ok(row.map(|r| plan_of_row(self.url(), r)).transpose()?.filter(|p| p.approved.is_none()))
    }

    async fn mark_approved(&self, run_id: &str, approval: &Approval, applied_by: &str) -> Result<(), StateError> {
        let a = serde_json::to_string(approval).map_err(|e| json_err(self.url(), e))?;
        let mut tx = fenced_tx(self).await?;
        sqlx::query(MARK_APPROVED)
            .bind(a)
            .bind(applied_by.to_string())
            .bind(run_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))
    }
}
