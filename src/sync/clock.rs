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
