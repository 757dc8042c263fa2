//! The state store chosen at runtime by `[state] url`: SQLite or PostgreSQL behind one type,
//! so plan, sync, the daemon and the CLI stay generic over `StateStore` and never look at
//! which one it is. (The trait's `async fn`s make `dyn StateStore` impossible; an enum is
//! the whole of the dispatch.)

use std::time::Duration;

use super::{Fencing, LeaseRecord, Leases, PostgresStore, SqliteStore, StateError, forward_roles};
use crate::config;

pub struct Store {
    inner: Inner,
    lease_ttl: Duration,
}

enum Inner {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Opens the store `[state]` names (migrating it), reading the PostgreSQL password from
/// where `password_env` / `password_file` say.
pub async fn open(state: &config::State) -> Result<Store, StateError> {
    // Refused by the config check: every command that needs the store stops, rather than
    // create and use the default SQLite file in its place.
    if state.url.is_empty() {
        return Err(StateError::Refused);
    }
    let inner = if state.url.starts_with("postgres://") || state.url.starts_with("postgresql://") {
        let password = match &state.password {
            None => None,
            Some(config::StatePassword::Env(name)) => Some(std::env::var(name).map_err(|_| {
                StateError::Password(format!("the environment variable {name} named by [state] password_env is not set (or not UTF-8)"))
            })?),
            Some(config::StatePassword::File(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| StateError::Password(format!("cannot read {} named by [state] password_file: {e}", path.display())))?;
                // The first line: a secret file written by `echo` ends in a newline.
                Some(text.lines().next().unwrap_or_default().to_string())
            }
        };
        if let Some(p) = &password {
            // A server or driver error may repeat it.
            crate::redact::register(p);
        }
        Inner::Postgres(PostgresStore::open(&state.url, password.as_deref(), state.ca_file.as_deref()).await?)
    } else {
        Inner::Sqlite(SqliteStore::open(&state.url).await?)
    };
    Ok(Store { inner, lease_ttl: state.lease_ttl })
}

impl Store {
    /// Whether several workers may share this store (PostgreSQL): `status` then names them.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner, Inner::Postgres(_))
    }
}

/// Forwards one call to whichever store this is.
macro_rules! both {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.inner {
            Inner::Sqlite($s) => $call,
            Inner::Postgres($s) => $call,
        }
    };
}

impl Leases for Store {
    async fn acquire(&self, connector: &str, holder: &str, ttl: Duration) -> Result<i64, StateError> {
        both!(self, s => s.acquire(connector, holder, ttl).await)
    }
    async fn renew(&self, connector: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
        both!(self, s => s.renew(connector, holder, ttl).await)
    }
    async fn release(&self, connector: &str, holder: &str) -> Result<(), StateError> {
        both!(self, s => s.release(connector, holder).await)
    }
    async fn leases(&self) -> Result<Vec<LeaseRecord>, StateError> {
        both!(self, s => s.leases().await)
    }
    async fn live_lease(&self, connector: &str) -> Result<Option<LeaseRecord>, StateError> {
        both!(self, s => s.live_lease(connector).await)
    }
    /// `[state] lease_ttl`, which the backends do not know.
    fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }
}

forward_roles!(Store, both; Snapshots, Runs, Audit, Slots, GroupRecords, FileProfiles);

impl Fencing for Store {
    async fn lease_token(&self, connector: &str, holder: &str) -> Result<Option<i64>, StateError> {
        both!(self, s => s.lease_token(connector, holder).await)
    }

    fn fenced(&self, fence: super::Fence) -> Store {
        let inner = match &self.inner {
            Inner::Sqlite(s) => Inner::Sqlite(s.fenced(fence)),
            Inner::Postgres(s) => Inner::Postgres(s.fenced(fence)),
        };
        Store { inner, lease_ttl: self.lease_ttl }
    }
}
