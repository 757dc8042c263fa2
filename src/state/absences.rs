//! Since when each person has been absent from the file (`[sync] deactivate_after`, issue
//! 27): the statements both stores share (`since` is RFC 3339 text in both), and the
//! functions `Snapshots::absences` / `set_absences` call. Kept apart from the snapshot's own
//! hot path: only people absent now have a row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::StateError;

const READ: &str = "SELECT external_id, since FROM absences WHERE connector = $1";
/// An id already absent keeps its first time: the grace runs from when they left.
const MARK: &str =
    "INSERT INTO absences (connector, external_id, since) VALUES ($1, $2, $3) ON CONFLICT (connector, external_id) DO NOTHING";
const CLEAR: &str = "DELETE FROM absences WHERE connector = $1 AND external_id = $2";

fn parse(url: &str, rows: Vec<(String, String)>) -> Result<HashMap<String, DateTime<Utc>>, StateError> {
    rows.into_iter().map(|(id, t)| Ok((id, super::sql::time(url, "absences", "since", &t)?))).collect()
}

macro_rules! backend {
    ($read:ident, $set:ident, $pool:ty, $conn:ty) => {
        pub(super) async fn $read(
            pool: &$pool,
            url: &str,
            connector: &str,
        ) -> Result<Result<HashMap<String, DateTime<Utc>>, StateError>, sqlx::Error> {
            let rows: Vec<(String, String)> = sqlx::query_as(READ).bind(connector).fetch_all(pool).await?;
            Ok(parse(url, rows))
        }

        /// Inside the caller's transaction, which checked the run's fence first.
        pub(super) async fn $set(
            conn: &mut $conn,
            connector: &str,
            absent: &[(String, DateTime<Utc>)],
            back: &[String],
        ) -> Result<(), sqlx::Error> {
            for (id, since) in absent {
                sqlx::query(MARK).bind(connector).bind(id).bind(super::sql::ts(*since)).execute(&mut *conn).await?;
            }
            for id in back {
                sqlx::query(CLEAR).bind(connector).bind(id).execute(&mut *conn).await?;
            }
            Ok(())
        }
    };
}

backend!(read_sqlite, set_sqlite, sqlx::SqlitePool, sqlx::SqliteConnection);
backend!(read_postgres, set_postgres, sqlx::PgPool, sqlx::PgConnection);
