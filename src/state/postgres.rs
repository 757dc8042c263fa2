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
//! parameter is a JSON array (`json_array_elements`), a list of ids one `text[]`. The
//! statements both dialects read alike, and the audit trail, are `sql`'s.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgSslMode, Postgres};

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
    /// The lease token every write checks (`Fencing::fenced`); None: unfenced.
    fence: Option<Fence>,
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
    /// Connects (`password` from `[state] password_env` / `password_file`; the server's
    /// certificate checked against `ca_file`, `[state] ca_file`, when given) and migrates.
    pub async fn open(url: &str, password: Option<&str>, ca_file: Option<&Path>) -> Result<PostgresStore, StateError> {
        let shown = shown_url(url);
        let mut opts = PgConnectOptions::from_str(url)
            .map_err(|e| StateError::Db { url: shown.clone(), detail: format!("unreadable URL: {}", redact(&e.to_string(), password)) })?
            .application_name(&format!("rostersync {}", worker_id()));
        if let Some(p) = password {
            opts = opts.password(p);
        }
        if let Some(path) = ca_file {
            opts = opts.ssl_root_cert_from_pem(read_ca(path)?);
            // A CA is given to be checked against: sqlx's default ("prefer") would check
            // nothing and even fall back to plain text. (`check` refuses a weaker sslmode.)
            if !url_sets_sslmode(url) {
                opts = opts.ssl_mode(PgSslMode::VerifyFull);
            }
        }
        let (host, port) = (opts.get_host().to_string(), opts.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            // Connections die with a restarted server or a failover: test before use.
            .test_before_acquire(true)
            // A connection sqlx still counts inside a transaction is replaced (`sql::reusable`).
            .after_release(|c, _| sql::reusable(c))
            .connect_with(opts)
            .await;
        let pool = pool.map_err(|e| classify(e, password, &shown, &host, port))?;
        let store = PostgresStore { pool, url: shown, host, port, fence: None };
        store.migrate().await?;
        Ok(store)
    }

    fn classify(&self, e: sqlx::Error, password: Option<&str>) -> StateError {
        classify(e, password, &self.url, &self.host, self.port)
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> StateError + '_ {
        move |e| self.classify(e, None)
    }

    async fn migrate(&self) -> Result<(), StateError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match sql::schema_refusal(&self.url, e, "database") {
            Ok(refused) => refused,
            Err(MigrateError::Execute(e)) => self.classify(e, None),
            Err(other) => StateError::Db { url: self.url.clone(), detail: format!("schema migration: {other}") },
        })
    }

    fn json_err(&self, e: serde_json::Error) -> StateError {
        sql::json_err(&self.url, e)
    }
}

/// The CA file's certificates, checked here so that a wrong file is named as such rather
/// than surfacing as a failed handshake.
fn read_ca(path: &Path) -> Result<Vec<u8>, StateError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let fail = |detail: String| StateError::CaFile { path: path.display().to_string(), detail };
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read it ({e})")))?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(pem),
        Ok(_) => Err(fail("it holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"); give the CA's certificate in PEM".into())),
        Err(e) => Err(fail(format!("it is not valid PEM ({e}); give the CA's certificate in PEM"))),
    }
}

/// Whether the URL chooses its own sslmode (`sslmode` / `ssl-mode`, as sqlx reads them).
fn url_sets_sslmode(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.query_pairs().any(|(k, _)| k == "sslmode" || k == "ssl-mode"))
}

/// What to do about a failed TLS handshake, by the type of what failed (rustls' error,
/// which sqlx passes up inside an I/O error or its own TLS error); None: not a TLS failure.
fn tls_hint(e: &sqlx::Error, host: &str) -> Option<String> {
    use rustls::{CertificateError, Error as Tls};
    let cause: &(dyn std::error::Error + 'static) = match e {
        sqlx::Error::Io(io) => io.get_ref()?,
        sqlx::Error::Tls(b) => b.as_ref(),
        _ => return None,
    };
    if cause.downcast_ref::<rustls::pki_types::InvalidDnsNameError>().is_some() {
        return Some(format!("\"{host}\" is not a host name TLS can check: put the server's DNS name (or IP address) in [state] url"));
    }
    let Some(tls) = cause.downcast_ref::<Tls>() else {
        return match e {
            // sqlx's own refusal: the server answered the TLS request with "no".
            sqlx::Error::Tls(_) => Some(
                "The server does not offer TLS: turn on ssl (ssl = on, ssl_cert_file, ssl_key_file) in its postgresql.conf; lower sslmode in [state] url only on a network you trust"
                    .into(),
            ),
            _ => None,
        };
    };
    Some(match tls {
        Tls::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            "The server's certificate is not signed by a CA this store trusts: give the certificate (PEM) of the CA that signed it as [state] ca_file".into()
        }
        Tls::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => format!(
            "The server's certificate does not name the host \"{host}\": put a name it lists in [state] url, or (to check the CA only) use sslmode=verify-ca"
        ),
        Tls::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => "The server's certificate is outside its validity period: renew it on the server (or check this machine's clock)".into(),
        _ => "Check the server's TLS settings (ssl_cert_file, ssl_key_file) and sslmode / ca_file in [state]".into(),
    })
}

/// A sqlx failure as what it means to the user: the server out of reach, a failed TLS
/// handshake, a refused login, or a database error (told apart by sqlx's error kind, the
/// TLS error's type and the SQLSTATE, never by text).
fn classify(e: sqlx::Error, password: Option<&str>, url: &str, host: &str, port: u16) -> StateError {
    let detail = redact(&e.to_string(), password);
    if let Some(hint) = tls_hint(&e, host) {
        return StateError::Tls { host: host.to_string(), port, detail, hint };
    }
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

/// What `sql` needs to run the statements both backends share: with it, `sql` gives this
/// store its `Audit` role.
impl Backend for PostgresStore {
    type Db = Postgres;
    const DIALECT: Dialect = Dialect::Postgres;
    fn reads(&self) -> &PgPool {
        &self.pool
    }
    fn writes(&self) -> &PgPool {
        &self.pool
    }
    fn db_err(&self, e: sqlx::Error) -> StateError {
        self.classify(e, None)
    }
    fn url(&self) -> &str {
        &self.url
    }
    fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }
    const BEGIN_WRITE: &'static str = "BEGIN";
}

impl PostgresStore {
    /// The transaction of one fenced write, the fence checked first (holding the lease row
    /// until the write commits: a take-over waits for it).
    async fn fenced_tx(&self) -> Result<sqlx::Transaction<'static, Postgres>, StateError> {
        sql::fenced_tx(self).await
    }
}

impl Fencing for PostgresStore {
    async fn lease_token(&self, connector: &str, holder: &str) -> Result<Option<i64>, StateError> {
        sqlx::query_scalar("SELECT token FROM leases WHERE connector = $1 AND holder = $2")
            .bind(connector)
            .bind(holder)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())
    }

    fn fenced(&self, fence: Fence) -> PostgresStore {
        PostgresStore { pool: self.pool.clone(), url: self.url.clone(), host: self.host.clone(), port: self.port, fence: Some(fence) }
    }
}

/// One attempt at a lease.
enum Attempt {
    /// Taken, with this fencing token.
    Taken(i64),
    Held(StateError),
    /// Refused, but released by the time we looked who held it.
    Gone,
}

impl PostgresStore {
    async fn try_acquire(&self, connector: &str, holder: &str, ttl: Duration) -> Result<Attempt, StateError> {
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO leases (connector, holder, acquired_at, expires_at, token)
             VALUES ($1, $2, now(), now() + make_interval(secs => $3), nextval('lease_tokens'))
             ON CONFLICT (connector) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at,
                 expires_at = excluded.expires_at, token = excluded.token
             WHERE leases.expires_at < now() OR leases.holder = $2
             RETURNING token",
        )
        .bind(connector)
        .bind(holder)
        .bind(secs(ttl))
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err())?;
        if let Some(token) = taken {
            return Ok(Attempt::Taken(token));
        }
        let row: Option<(String, DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as("SELECT holder, acquired_at, expires_at FROM leases WHERE connector = $1")
                .bind(connector)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err())?;
        Ok(match row {
            Some((holder, since, expires)) => {
                Attempt::Held(StateError::Held { connector: connector.into(), holder, since: sql::ts(since), expires: sql::ts(expires) })
            }
            None => Attempt::Gone,
        })
    }
}

impl Leases for PostgresStore {
    async fn acquire(&self, connector: &str, holder: &str, ttl: Duration) -> Result<i64, StateError> {
        let mut attempt = self.try_acquire(connector, holder, ttl).await?;
        if matches!(attempt, Attempt::Gone) {
            // Released between our attempt and our look at who held it: once more.
            attempt = self.try_acquire(connector, holder, ttl).await?;
        }
        match attempt {
            Attempt::Taken(token) => Ok(token),
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
        sqlx::query(sql::RELEASE).bind(connector).bind(holder).execute(&self.pool).await.map_err(self.err())?;
        Ok(())
    }

    async fn leases(&self) -> Result<Vec<LeaseRecord>, StateError> {
        let rows: Vec<(String, String, DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as(sql::LEASES).fetch_all(&self.pool).await.map_err(self.err())?;
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
}

impl Snapshots for PostgresStore {
    async fn absences(&self, connector: &str) -> Result<HashMap<String, DateTime<Utc>>, StateError> {
        super::absences::read_postgres(&self.pool, &self.url, connector).await.map_err(self.err())?
    }

    async fn set_absences(&self, connector: &str, absent: &[(String, DateTime<Utc>)], back: &[String]) -> Result<(), StateError> {
        if absent.is_empty() && back.is_empty() {
            return Ok(());
        }
        let mut tx = self.fenced_tx().await?;
        super::absences::set_postgres(&mut tx, connector, absent, back).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())
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
        Ok(sql::stored_users(rows).map(|(id, (_, user))| (id, user)).collect())
    }

    async fn platform_ids(&self, connector: &str, ids: &[&str]) -> Result<HashMap<String, String>, StateError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT external_id, platform_id FROM snapshot WHERE connector = $1 AND external_id = ANY($2)")
                .bind(connector)
                .bind(ids)
                .fetch_all(&self.pool)
                .await
                .map_err(self.err())?;
        Ok(rows.into_iter().collect())
    }

    async fn write(&self, connector: &str, batch: &[SnapshotWrite]) -> Result<(), StateError> {
        // All of the batch, or none (a dropped transaction rolls back).
        let mut tx = self.fenced_tx().await?;
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
                    let ids = sql::removed(run);
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
        // One scan of the other connectors' rows; the folded comparison is coarse here
        // (lower/upper follow the database's locale) and exact in `held_matching`.
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT connector, external_id, platform_id FROM snapshot
             WHERE NOT (connector = ANY($1))
               AND (platform_id = ANY($2)
                    OR external_id = ANY($3)
                    OR ($4 AND NOT $5 AND lower(btrim(external_id)) = ANY($3))
                    OR ($4 AND $5 AND upper(btrim(external_id)) = ANY($3))
                    OR ($4 AND external_id ~ '[^ -~]'))",
        )
        .bind(exclude)
        .bind(platform_ids)
        .bind(keys)
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

    async fn last_file(&self, connector: &str) -> Result<Option<LastFile>, StateError> {
        let row: Option<sql::LastFileRow<DateTime<Utc>>> =
            sqlx::query_as(sql::LAST_FILE).bind(connector).fetch_optional(&self.pool).await.map_err(self.err())?;
        row.map(|r| sql::last_file_of_row(r, Ok)).transpose()
    }

    async fn set_last_file(&self, connector: &str, f: &FileFingerprint) -> Result<(), StateError> {
        let mut tx = self.fenced_tx().await?;
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
        .execute(&mut *tx)
        .await
        .map_err(self.err())?;
        tx.commit().await.map_err(self.err())
    }
}

/// `START_RUN` under the fence in one statement: the lease row is locked (`FOR SHARE`, until
/// the statement commits) and the run inserted only while the lease carries the token
/// (`$4`), so a take-over waits for it or it writes nothing.
const FENCED_START_RUN: &str = "WITH fence AS (SELECT 1 FROM leases WHERE connector = $2 AND token = $4 FOR SHARE)
     INSERT INTO runs (run_id, connector, started_at, worker, fence) SELECT $1, $2, clock_timestamp(), $3, $4 FROM fence
     RETURNING started_at";
/// A run's start at the database's clock (`clock_timestamp()`, as `Slots::clock` reads it),
/// returned: the run's clock is measured by the statement that records it.
const START_RUN: &str = "INSERT INTO runs (run_id, connector, started_at, worker, fence) VALUES ($1, $2, clock_timestamp(), $3, $4)
     RETURNING started_at";
/// A run's end (`$1`, `$2`, run `$3` of connector `$4`): the rows it updated, and
/// `sql::others_unfinished!` (the newest `$5` runs) in the same statement. The look sees the
/// runs as they were before the update, which only changes this run's own row.
const FINISH_RUN: &str = concat!(
    "WITH done AS (UPDATE runs SET ended_at = $1, report = $2 WHERE run_id = $3 RETURNING 1)
     SELECT (SELECT count(*) FROM done), ",
    sql::others_unfinished!("$4", "$5", "$3")
);
/// `FINISH_RUN` under the fence (token `$6`) in one statement, as `FENCED_START_RUN`.
const FENCED_FINISH_RUN: &str = concat!(
    "WITH fence AS (SELECT 1 FROM leases WHERE connector = $4 AND token = $6 FOR SHARE),
     done AS (UPDATE runs SET ended_at = $1, report = $2 FROM fence WHERE run_id = $3 RETURNING 1)
     SELECT (SELECT count(*) FROM done), ",
    sql::others_unfinished!("$4", "$5", "$3")
);

impl Runs for PostgresStore {
    // Every run records its start and its end: each is one statement that checks the fence
    // itself (`FENCED_START_RUN`, `FENCED_FINISH_RUN`), not a transaction of four (BEGIN,
    // the fence, the write, COMMIT). A fleet's runs are mostly these two writes: 21
    // statements a run became 15 (BENCHMARKS.md, "Issue 29, fourth pass").
    async fn start_run(&self, connector: &str, run_id: &str) -> Result<DateTime<Utc>, StateError> {
        let started: Option<DateTime<Utc>> = sqlx::query_scalar(if self.fence.is_some() { FENCED_START_RUN } else { START_RUN })
            .bind(run_id)
            .bind(connector)
            .bind(worker_id())
            .bind(self.fence.as_ref().map(|f| f.token))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
        match (started, &self.fence) {
            (Some(at), _) => Ok(at),
            (None, Some(f)) => Err(StateError::Fenced { connector: f.connector.clone(), token: f.token }),
            (None, None) => Err(StateError::Db { url: self.url.clone(), detail: "recording the run's start returned no row".into() }),
        }
    }

    async fn finish_run(&self, report: &Report, at: DateTime<Utc>) -> Result<bool, StateError> {
        // The fence's connector is the run's: a fenced store runs only its connector's runs.
        let connector = self.fence.as_ref().map_or(report.connector.as_str(), |f| f.connector.as_str());
        let mut q = sqlx::query_as(if self.fence.is_some() { FENCED_FINISH_RUN } else { FINISH_RUN })
            .bind(at)
            .bind(serde_json::to_string(report).unwrap_or_default())
            .bind(&report.run_id)
            .bind(connector)
            .bind(i64::from(super::UNFINISHED_LOOK_BACK));
        if let Some(f) = &self.fence {
            q = q.bind(f.token);
        }
        let (updated, others): (i64, bool) = q.fetch_one(&self.pool).await.map_err(self.err())?;
        if updated == 0 && self.fence.is_some() {
            // No row: the fence failed, or the run was never recorded (an update of nothing,
            // as unfenced). The fence alone tells which.
            let mut conn = self.pool.acquire().await.map_err(self.err())?;
            sql::check_fence::<Postgres>(sql::Dialect::Postgres, self.fence.as_ref(), &mut conn, |e| self.classify(e, None)).await?;
        }
        Ok(others)
    }

    async fn interrupted(&self, connector: &str, current_run: &str) -> Result<bool, StateError> {
        let row: Option<(Option<DateTime<Utc>>,)> =
            sqlx::query_as(sql::INTERRUPTED).bind(connector).bind(current_run).fetch_optional(&self.pool).await.map_err(self.err())?;
        Ok(matches!(row, Some((None,))))
    }

    async fn history(&self, connector: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StateError> {
        let rows: Vec<sql::RunRow<DateTime<Utc>>> = match connector {
            Some(c) => sqlx::query_as(sql::HISTORY_OF).bind(c).bind(i64::from(limit)).fetch_all(&self.pool).await,
            None => sqlx::query_as(sql::HISTORY).bind(i64::from(limit)).fetch_all(&self.pool).await,
        }
        .map_err(self.err())?;
        rows.into_iter().map(|r| sql::run_of_row(r, |_, t| Ok(t))).collect()
    }

    async fn set_reconcile(&self, connector: &str, run_id: &str, reason: &str) -> Result<(), StateError> {
        let mut tx = self.fenced_tx().await?;
        sqlx::query(
            "INSERT INTO reconcile_marks (connector, run_id, reason, set_at) VALUES ($1, $2, $3, now())
             ON CONFLICT (connector) DO UPDATE SET run_id = excluded.run_id, reason = excluded.reason, set_at = excluded.set_at",
        )
        .bind(connector)
        .bind(run_id)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(self.err())?;
        tx.commit().await.map_err(self.err())
    }

    async fn reconcile_mark(&self, connector: &str) -> Result<Option<ReconcileMark>, StateError> {
        let row: Option<(String, String, DateTime<Utc>)> =
            sqlx::query_as(sql::RECONCILE_MARK).bind(connector).fetch_optional(&self.pool).await.map_err(self.err())?;
        Ok(row.map(|(run_id, reason, set_at)| ReconcileMark { run_id, reason, set_at }))
    }

    async fn clear_reconcile(&self, connector: &str) -> Result<(), StateError> {
        let mut tx = self.fenced_tx().await?;
        sqlx::query(sql::CLEAR_RECONCILE).bind(connector).execute(&mut *tx).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())
    }
}

impl Slots for PostgresStore {
    async fn claim_slot(&self, connector: &str, slot: DateTime<Utc>, worker: &str, ttl: Duration) -> Result<SlotClaim, StateError> {
        // One statement either way: the claim, or (when it is not ours) the claim in place.
        // The second part reads the snapshot from before the statement, so a claim committed
        // while we waited on its row lock is not seen: that reads as a claim about to be
        // decided, checked again a moment later.
        // A slot whose time has not come by the database's clock is not claimed (`$2 <= now()`),
        // whatever the claiming worker's clock says; the last column says what the time is.
        type Row = (bool, Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>, DateTime<Utc>);
        let row: Option<Row> = sqlx::query_as(
            "WITH claim AS (
                 INSERT INTO slots (connector, slot_at, worker, claimed_at, expires_at)
                 SELECT $1, $2, $3, now(), now() + make_interval(secs => $4) WHERE $2 <= now()
                 ON CONFLICT (connector, slot_at) DO UPDATE SET worker = excluded.worker, claimed_at = excluded.claimed_at,
                     expires_at = excluded.expires_at
                 WHERE slots.done_at IS NULL AND (slots.expires_at < now() OR slots.worker = $3)
                 RETURNING worker)
             SELECT true, NULL::text, NULL::timestamptz, NULL::timestamptz, now() FROM claim
             UNION ALL
             SELECT false, worker, expires_at, done_at, now() FROM slots
             WHERE connector = $1 AND slot_at = $2 AND NOT EXISTS (SELECT 1 FROM claim)
             UNION ALL
             SELECT false, NULL, NULL, NULL, now() WHERE $2 > now()
                 AND NOT EXISTS (SELECT 1 FROM slots WHERE connector = $1 AND slot_at = $2)",
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
            Some((false, _, _, Some(_), _)) => SlotClaim::Done,
            Some((false, _, _, None, now)) if slot > now => SlotClaim::Early { now },
            Some((false, Some(worker), Some(expires_at), None, _)) => SlotClaim::Held { worker, expires_at },
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

    async fn clock(&self) -> Result<DateTime<Utc>, StateError> {
        // `clock_timestamp()`, not `now()`: the time of this statement, not of a transaction.
        sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&self.pool).await.map_err(self.err())
    }
}

/// The batch writes of `Snapshots::write`.
impl PostgresStore {
    /// The JSON array of one upsert statement. PostgreSQL refuses to update one row twice in
    /// one `INSERT … ON CONFLICT`, so a user written twice in the piece keeps only its last
    /// write (which is what applying them in order would leave).
    fn upsert_json(&self, writes: &[SnapshotWrite]) -> Result<String, StateError> {
        let mut seen: HashSet<&str> = HashSet::with_capacity(writes.len());
        let last_writes = sql::upserts(writes).rev().filter(|(_, user)| seen.insert(user.external_id.as_str()));
        sql::upsert_array(last_writes).map_err(|e| self.json_err(e))
    }

    /// One `INSERT … SELECT` over a JSON array as `sql::push_upsert_row` writes them. `json`, not
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
        let ids = sql::marked_inactive(run);
        let stored: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT external_id, platform_id, content FROM snapshot WHERE connector = $1 AND external_id = ANY($2) FOR UPDATE",
        )
        .bind(connector)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(self.err())?;
        match sql::inactive_rows(&stored).map_err(|e| self.json_err(e))? {
            Some(rows) => self.upsert_rows(conn, connector, rows).await,
            None => Ok(()),
        }
    }
}
