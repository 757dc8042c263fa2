//! The run's clock. `ROSTERSYNC_NOW` (an RFC 3339 time) sets it, for tests only: the
//! lifecycle's dated rules (grace, start and end dates) are tested end to end over several
//! days without waiting for them (docs/lifecycle.md, "Testing"). Unset, it is the system's.

use chrono::{DateTime, Utc};

/// The environment variable that moves the run's clock (tests).
pub const NOW_ENV: &str = "ROSTERSYNC_NOW";

/// Now, as the run plans with it.
pub fn now() -> DateTime<Utc> {
    std::env::var(NOW_ENV).ok().and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok()).map_or_else(Utc::now, |t| t.with_timezone(&Utc))
}

/// The state store's clock as a run reads it (`Slots::clock`: PostgreSQL's on a fleet, this
/// machine's on SQLite): the run's start and end in history, its audit entries and a stopped
/// plan's time are the store's, like slot times and retention, so a worker whose clock is
/// wrong records nothing at the wrong time (and prunes nothing early by it). Read once as the
/// run starts; later times are this machine's clock moved by the offset measured then.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreTime {
    offset: chrono::Duration,
}

impl StoreTime {
    /// Reads the store's clock: the offset to it (the round trip halved: the store read its
    /// clock somewhere between sending and receiving), and the store's time now.
    pub async fn read<S: crate::state::Slots>(store: &S) -> Result<(StoreTime, DateTime<Utc>), crate::state::StateError> {
        let sent = Utc::now();
        let theirs = store.clock().await?;
        Ok((StoreTime::measured(sent, theirs, Utc::now()), theirs))
    }

    /// The offset from a statement sent at `sent` and answered at `got` (this machine's
    /// clock) that read the store's time `theirs`.
    pub fn measured(sent: DateTime<Utc>, theirs: DateTime<Utc>, got: DateTime<Utc>) -> StoreTime {
        let mine = sent + (got - sent) / 2;
        StoreTime { offset: theirs - mine }
    }

    /// The store's time now.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}
