//! Wall-clock time for the scheduler. Production reads the state store's clock (a fleet's
//! workers then agree on when a slot comes, whatever their own clocks say); tests run on
//! tokio's paused clock, where a day of schedules passes in milliseconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::health::{Concern, Health};
use crate::state::{Slots, StateError};

/// Where "now" comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// `Utc::now()`.
    System,
    /// This machine's clock corrected by the state store's (`StoreClock`).
    Store(Arc<StoreClock>),
    /// A fixed UTC instant plus the tokio time elapsed since (follows `tokio::time::pause`).
    Virtual { start: DateTime<Utc>, at: tokio::time::Instant },
}

/// Longest single sleep: the wall clock is re-read at least this often, so a clock step
/// (NTP, a suspended VM) delays a start by at most this much.
const MAX_NAP: Duration = Duration::from_secs(60);

/// How far this machine's clock may differ from the store's before the daemon says so (log
/// at start, /healthz). Within it nothing is wrong; beyond it the daemon still runs on the
/// store's clock, but the machine's clock wants fixing (NTP): its logs and its reports'
/// times are off by as much.
pub const SKEW_BOUND: Duration = Duration::from_secs(5);

/// How often the offset to the store's clock is measured again.
pub const REMEASURE: Duration = Duration::from_secs(60);

/// The state store's clock as seen from here: the offset measured last (store minus this
/// machine, in milliseconds; 0 until measured).
#[derive(Debug, Default)]
pub struct StoreClock {
    offset_ms: AtomicI64,
}

impl StoreClock {
    pub fn offset(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Reads the store's clock and keeps the offset (the round trip halved: the store read
    /// its clock somewhere between sending and receiving). Returns the offset.
    pub async fn measure<S: Slots>(&self, store: &S) -> Result<chrono::Duration, StateError> {
        let sent = Utc::now();
        let theirs = store.clock().await?;
        let got = Utc::now();
        let mine = sent + (got - sent) / 2;
        let offset = theirs - mine;
        self.offset_ms.store(offset.num_milliseconds(), Ordering::Relaxed);
        Ok(offset)
    }
}

/// What to say about an offset beyond `SKEW_BOUND`; None within it.
pub fn skew_problem(offset: chrono::Duration) -> Option<String> {
    let ms = offset.num_milliseconds();
    if ms.unsigned_abs() <= SKEW_BOUND.as_millis() as u64 {
        return None;
    }
    // The store's clock ahead of ours means ours is behind.
    let (how, by) = if ms > 0 { ("behind", ms) } else { ("ahead of", -ms) };
    Some(format!(
        "this machine's clock is {:.1} s {how} the state store's (bound {} s): slots, leases and retention follow the store's clock, but fix this machine's time (NTP)",
        by as f64 / 1000.0,
        SKEW_BOUND.as_secs()
    ))
}

/// Measures the store's clock every `every` until the process ends, telling `health` (and
/// the log, on each change) when this machine's clock is beyond `SKEW_BOUND` from it, and
/// when the store cannot be read (degraded, with its error) or can again.
pub async fn watch<S: Slots>(store: Arc<S>, clock: Arc<StoreClock>, health: Arc<Health>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        check(&*store, &clock, &health).await;
    }
}

/// One measurement, told to `health` and logged when what it says changed.
pub async fn check<S: Slots>(store: &S, clock: &StoreClock, health: &Health) {
    match clock.measure(store).await {
        Ok(offset) => {
            if health.note(Concern::Store, None) {
                tracing::info!("the state store answers again");
            }
            let problem = skew_problem(offset);
            match &problem {
                Some(p) if health.note(Concern::Clock, problem.clone()) => tracing::warn!("{p}"),
                None if health.note(Concern::Clock, None) => {
                    tracing::info!("this machine's clock is within {} s of the state store's again", SKEW_BOUND.as_secs())
                }
                _ => {}
            }
        }
        Err(e) => {
            if health.note(Concern::Store, Some(e.to_string())) {
                tracing::error!("the state store fails: {e}; no slot is claimed or run until it answers");
            }
        }
    }
}

impl Clock {
    /// A virtual clock reading `start` now.
    pub fn virtual_at(start: DateTime<Utc>) -> Clock {
        Clock::Virtual { start, at: tokio::time::Instant::now() }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Store(c) => Utc::now() + c.offset(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_beyond_the_bound_is_named_with_its_direction() {
        assert_eq!(skew_problem(chrono::Duration::milliseconds(4_900)), None);
        assert_eq!(skew_problem(chrono::Duration::milliseconds(-5_000)), None);
        let fast = skew_problem(chrono::Duration::seconds(-20)).unwrap();
        assert!(fast.starts_with("this machine's clock is 20.0 s ahead of the state store's"), "{fast}");
        let slow = skew_problem(chrono::Duration::milliseconds(7_300)).unwrap();
        assert!(slow.starts_with("this machine's clock is 7.3 s behind"), "{slow}");
    }
}
