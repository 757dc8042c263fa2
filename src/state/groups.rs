//! The `GroupRecords` role: the SCIM groups each connector created from attribute values
//! (`[groups]`, `crate::plan::groups`), by displayName. Only a group recorded here is ever
//! changed by rostersync: the record is what tells its groups from anyone else's. Written
//! once for both backends (the statements read alike; `sql::Backend`).

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::StateError;
use super::sql::{self, Affected, Backend};

/// A group a connector created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedGroup {
    pub display_name: String,
    /// The attribute value it was created for (its name without the prefix).
    pub value: String,
    pub platform_id: String,
    pub created_at: DateTime<Utc>,
}

/// The groups each connector created. Its writes are fenced as the snapshot's are
/// (`Fencing`): a run whose lease was taken over records and forgets nothing.
#[allow(async_fn_in_trait)]
pub trait GroupRecords {
    /// The connector's groups, by displayName.
    async fn created_groups(&self, connector: &str) -> Result<Vec<CreatedGroup>, StateError>;
    /// Records a group just created (replacing a record of the same name: one deleted on the
    /// platform and created again).
    async fn record_group(&self, connector: &str, group: &CreatedGroup) -> Result<(), StateError>;
    /// Forgets a group (deleted on the platform by hand): its name is free again.
    async fn forget_group(&self, connector: &str, display_name: &str) -> Result<(), StateError>;
}

const CREATED_GROUPS: &str =
    "SELECT display_name, value, platform_id, created_at FROM created_groups WHERE connector = $1 ORDER BY display_name";
const RECORD_GROUP: &str =
    "INSERT INTO created_groups (connector, display_name, value, platform_id, created_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (connector, display_name) DO UPDATE SET value = excluded.value, platform_id = excluded.platform_id,
         created_at = excluded.created_at";
const FORGET_GROUP: &str = "DELETE FROM created_groups WHERE connector = $1 AND display_name = $2";

impl<B> GroupRecords for B
where
    B: Backend,
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    <B::Db as Database>::QueryResult: Affected,
    for<'t> String: Encode<'t, B::Db> + Type<B::Db>,
    for<'t> i64: Encode<'t, B::Db> + Type<B::Db>,
    (i64,): for<'r> FromRow<'r, <B::Db as Database>::Row>,
    (String, String, String, String): for<'r> FromRow<'r, <B::Db as Database>::Row>,
{
    async fn created_groups(&self, connector: &str) -> Result<Vec<CreatedGroup>, StateError> {
        let rows: Vec<(String, String, String, String)> =
            sqlx::query_as(CREATED_GROUPS).bind(connector.to_string()).fetch_all(self.reads()).await.map_err(|e| self.db_err(e))?;
        rows.into_iter()
            .map(|(display_name, value, platform_id, at)| {
                Ok(CreatedGroup {
                    display_name,
                    value,
                    platform_id,
                    created_at: sql::time(self.url(), "created_groups", "created_at", &at)?,
                })
            })
            .collect()
    }

    async fn record_group(&self, connector: &str, group: &CreatedGroup) -> Result<(), StateError> {
        let mut tx = sql::fenced_tx(self).await?;
        sqlx::query(RECORD_GROUP)
            .bind(connector.to_string())
            .bind(group.display_name.clone())
            .bind(group.value.clone())
            .bind(group.platform_id.clone())
            .bind(sql::ts(group.created_at))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))
    }

    async fn forget_group(&self, connector: &str, display_name: &str) -> Result<(), StateError> {
        let mut tx = sql::fenced_tx(self).await?;
        sqlx::query(FORGET_GROUP)
            .bind(connector.to_string())
            .bind(display_name.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))
    }
}
