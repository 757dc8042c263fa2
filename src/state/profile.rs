//! The `FileProfiles` role: per connector, how full each mapped column of the last file
//! synced in full was (`mapping::fill::ColumnFill`), and when. The next file is compared with
//! it before anything is planned (`crate::plan::profile`). One row per connector, the
//! columns as JSON text (a few dozen names and counts); written once for both backends.

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::StateError;
use super::sql::{self, Affected, Backend};
use crate::mapping::fill::ColumnFill;

/// The last good file's column fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProfile {
    pub fill: ColumnFill,
    /// When that file was recorded as synced.
    pub synced_at: DateTime<Utc>,
}

/// The column fill of each connector's last good file.
#[allow(async_fn_in_trait)]
pub trait FileProfiles {
    /// The connector's last good file's profile; None before one was synced in full (or in
    /// a state older than the profiles).
    async fn file_profile(&self, connector: &str) -> Result<Option<FileProfile>, StateError>;
    /// Records the profile of the file just recorded as synced (`Snapshots::set_last_file`,
    /// which a run whose lease was taken over fails first), replacing the previous one.
    async fn set_file_profile(&self, connector: &str, profile: &FileProfile) -> Result<(), StateError>;
}

const READ: &str = "SELECT columns, synced_at, row_count FROM file_profiles WHERE connector = $1";
const WRITE: &str = "INSERT INTO file_profiles (connector, columns, synced_at, row_count) VALUES ($1, $2, $3, $4)
     ON CONFLICT (connector) DO UPDATE SET columns = excluded.columns, synced_at = excluded.synced_at, row_count = excluded.row_count";

impl<B> FileProfiles for B
where
    B: Backend,
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    <B::Db as Database>::QueryResult: Affected,
    for<'t> String: Encode<'t, B::Db> + Type<B::Db>,
    for<'t> i64: Encode<'t, B::Db> + Type<B::Db>,
    (String, String, i64): for<'r> FromRow<'r, <B::Db as Database>::Row>,
{
    async fn file_profile(&self, connector: &str) -> Result<Option<FileProfile>, StateError> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as(READ).bind(connector.to_string()).fetch_optional(self.reads()).await.map_err(|e| self.db_err(e))?;
        let Some((columns, at, rows)) = row else { return Ok(None) };
        let filled = serde_json::from_str(&columns).map_err(|e| StateError::Schema {
            url: self.url().to_string(),
            detail: format!("file_profiles.columns of connector \"{connector}\" is not a JSON object of counts ({e})"),
        })?;
        let fill = ColumnFill { rows: u64::try_from(rows).unwrap_or(0), filled };
        Ok(Some(FileProfile { fill, synced_at: sql::time(self.url(), "file_profiles", "synced_at", &at)? }))
    }

    async fn set_file_profile(&self, connector: &str, profile: &FileProfile) -> Result<(), StateError> {
        // A map of names to counts always serialises.
        let columns = serde_json::to_string(&profile.fill.filled).unwrap_or_else(|_| "{}".into());
        sqlx::query(WRITE)
            .bind(connector.to_string())
            .bind(columns)
            .bind(sql::ts(profile.synced_at))
            .bind(i64::try_from(profile.fill.rows).unwrap_or(i64::MAX))
            .execute(self.writes())
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }
}
