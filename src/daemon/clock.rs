//! Wall-clock time for the scheduler. Production reads the system clock; tests run on
//! tokio's paused clock, where a day of schedules passes in milliseconds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// Where "now" comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// `Utc::now()`.
    System,
    /// A fixed UTC instant plus the tokio time elapsed since (follows `tokio::time::pause`).
    Virtual { start: DateTime<Utc>, at: tokio::time::Instant },
}

/// Longest single sleep: the wall clock is re-read at least this often, so a clock step
/// (NTP, a suspended VM) delays a start by at most this much.
const MAX_NAP: Duration = Duration::from_secs(60);

impl Clock {
    /// A virtual clock reading `start` now.
    pub fn virtual_at(start: DateTime<Utc>) -> Clock {
        Clock::Virtual { start, at: tokio::time::Instant::now() }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Virtual { start, at } => *start + chrono::Duration::from_std(at.elapsed()).unwrap_or_default(),
        }
    }

    /// Sleeps until `target` (wall clock); false when `stop` turned true first.
    pub async fn sleep_until(&self, target: DateTime<Utc>, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            if *stop.borrow() {
                return false;
            }
            let left = (target - self.now()).to_std().unwrap_or(Duration::ZERO);
            if left.is_zero() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(left.min(MAX_NAP)) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
    }
}
