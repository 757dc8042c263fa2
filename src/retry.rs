//! Every retry decision of rostersync, in one place: how long to wait, how many attempts
//! one step gets, and the budget one run has for all of its retries together (SFTP
//! connect, resume and list, SCIM requests). Callers say *whether* a failure is worth
//! another try (their error's `Classify::retriable`, an HTTP status); this module says
//! *whether and when* that try happens.
//!
//! Why one module: nested loops with their own constants multiplied (3 × 3 × 6 attempts
//! around one SFTP fetch, 92 s to fail against a hung server with `timeout = "10s"`). Here a
//! step has one `Attempts` counter and every retry of the run also takes from one `Budget`,
//! so the worst case is `max_attempts × timeout` plus the backoff, whatever the nesting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Capped exponential backoff with "equal jitter": the wait before attempt n + 1 is uniform in
/// [c/2, c] with c = min(cap, base·2ⁿ⁻¹), so tasks that failed together do not retry in
/// lockstep (AWS's "Exponential Backoff and Jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The wait before attempt `attempt + 1` (`attempt` counts from 1), with `unit` a random
    /// draw in [0, 1] (a parameter so tests are exact).
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        exp.min(self.cap).mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }
}

/// How one step (one request, one download, one scheduled run) is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts of the step, the first included.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// A server's hint (`Retry-After`) longer than this is not waited for: the step fails
    /// instead of stalling the run for hours.
    pub max_hint: Duration,
}

impl Policy {
    /// SFTP: connect, list and download together get three attempts; a resumed download
    /// goes on from the byte it reached. Against a server that hangs for good the fetch
    /// fails after about 3 × `timeout` plus a few seconds of backoff.
    pub const SFTP: Policy = Policy {
        max_attempts: 3,
        backoff: Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(4) },
        max_hint: Duration::ZERO,
    };

    /// SCIM: one HTTP request; short waits, a server's `Retry-After` honoured up to 5 min.
    pub const SCIM: Policy = Policy {
        max_attempts: 6,
        backoff: Backoff { base: Duration::from_millis(200), cap: Duration::from_secs(30) },
        max_hint: Duration::from_secs(300),
    };

    /// A whole scheduled run that failed for a reason that may pass (the server was down):
    /// tried again within its period, minutes apart.
    pub const SCHEDULED_RUN: Policy = Policy {
        max_attempts: 6,
        backoff: Backoff { base: Duration::from_secs(30), cap: Duration::from_secs(15 * 60) },
        max_hint: Duration::ZERO,
    };

    /// Whether attempt `attempt` (counting from 1) that just failed gets another, and after
    /// how long. `hint` is the server's own wait (`Retry-After`), which wins over the backoff.
    /// Takes one retry from `budget` when it says yes.
    pub fn next(&self, attempt: u32, hint: Option<Duration>, budget: &Budget) -> Decision {
        if attempt >= self.max_attempts {
            return Decision::GiveUp(GiveUp::Attempts(attempt));
        }
        let wait = match hint {
            Some(h) if h > self.max_hint => return Decision::GiveUp(GiveUp::HintTooLong(h)),
            Some(h) => h,
            None => self.backoff.delay(attempt),
        };
        if !budget.take() {
            return Decision::GiveUp(GiveUp::Budget(budget.total));
        }
        Decision::Retry(wait)
    }
}

/// What `Policy::next` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this wait.
    Retry(Duration),
    GiveUp(GiveUp),
}

/// Why no further attempt is made (shown to the engineer with the last error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The step had this many attempts.
    Attempts(u32),
    /// The server asked for a wait longer than we take.
    HintTooLong(Duration),
    /// The run used every retry it had (this many).
    Budget(u64),
    /// The platform target's shared retries (this many a minute, for every run sending to
    /// it: `platform::targets`) are spent for now.
    TargetBudget(u64),
}

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GiveUp::Attempts(n) => write!(f, "gave up after {n} attempts"),
            GiveUp::HintTooLong(d) => {
                write!(f, "the server asked to wait {}, longer than rostersync waits", humantime::format_duration(*d))
            }
            GiveUp::Budget(n) => write!(f, "the run used all of its {n} retries"),
            GiveUp::TargetBudget(n) => {
                write!(f, "the runs sending to this platform target used all of its {n} retries a minute; the next run tries again")
            }
        }
    }
}

/// Retries left for one whole run, shared by every step of it (cloning shares it). When none
/// are left, the run stops with what was applied recorded, instead of hammering a broken
/// server. A push gives each class of operation a budget of its own (`class`), so one
/// request that keeps failing cannot spend the retries its neighbours need.
#[derive(Debug, Clone)]
pub struct Budget {
    left: Arc<AtomicU64>,
    pub total: u64,
    /// The run's budget a class budget counts its retries in (`class`).
    parent: Option<Arc<AtomicU64>>,
}

impl Budget {
    pub fn new(total: u64) -> Budget {
        Budget { left: Arc::new(AtomicU64::new(total)), total, parent: None }
    }

    /// A budget for one class of operations of a push (creates, updates, deactivations,
    /// the managers' second pass): as many retries as the run has left, of its own, so
    /// failing updates never starve the deactivations. Its retries are counted in the run's
    /// budget too (`used`, the metrics) without ever being refused by it.
    pub fn class(&self) -> Budget {
        let left = self.left.load(Ordering::Acquire);
        Budget { left: Arc::new(AtomicU64::new(left)), total: left, parent: Some(self.left.clone()) }
    }

    /// A run's budget: a few bad minutes' worth, growing with the work (`ops` operations).
    pub fn for_run(ops: usize) -> Budget {
        Budget::new(20 + ops as u64 / 10)
    }

    /// Takes one retry; false when none are left.
    pub fn take(&self) -> bool {
        let taken = self.left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
        if taken && let Some(run) = &self.parent {
            let _ = run.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
        }
        taken
    }

    /// Adds room for more work discovered later in the run (the push's operations).
    pub fn grow(&self, by: u64) {
        self.left.fetch_add(by, Ordering::AcqRel);
    }

    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.left.load(Ordering::Acquire))
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::for_run(0)
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the past
/// means "now".
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some((at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered_down_to_half() {
        let b = Policy::SCIM.backoff;
        for attempt in 1..30 {
            let ceiling = b.base.saturating_mul(1 << (attempt - 1).min(20)).min(b.cap);
            assert_eq!(b.delay_with(attempt, 1.0), ceiling, "attempt {attempt}");
            assert_eq!(b.delay_with(attempt, 0.0), ceiling / 2, "attempt {attempt}");
            let d = b.delay(attempt);
            assert!(d <= ceiling && d >= ceiling / 2, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn attempts_hints_and_budget_bound_every_retry() {
        let budget = Budget::new(100);
        let p = Policy::SFTP;
        assert!(matches!(p.next(1, None, &budget), Decision::Retry(_)));
        assert!(matches!(p.next(2, None, &budget), Decision::Retry(_)));
        assert_eq!(p.next(3, None, &budget), Decision::GiveUp(GiveUp::Attempts(3)));
        assert_eq!(budget.used(), 2);

        let p = Policy::SCIM;
        assert_eq!(p.next(1, Some(Duration::from_secs(2)), &budget), Decision::Retry(Duration::from_secs(2)));
        assert_eq!(p.next(1, Some(Duration::from_secs(3600)), &budget), Decision::GiveUp(GiveUp::HintTooLong(Duration::from_secs(3600))));

        let small = Budget::new(1);
        let shared = small.clone();
        assert!(matches!(p.next(1, None, &small), Decision::Retry(_)));
        // The clone is the same budget: the run's one retry is gone for every step.
        assert_eq!(p.next(1, None, &shared), Decision::GiveUp(GiveUp::Budget(1)));
        shared.grow(1);
        assert!(matches!(p.next(1, None, &small), Decision::Retry(_)));
    }

    #[test]
    fn class_budgets_are_their_own_and_counted_in_the_runs() {
        let run = Budget::new(3);
        let (updates, deactivations) = (run.class(), run.class());
        let p = Policy::SCIM;
        for _ in 0..3 {
            assert!(matches!(p.next(1, None, &updates), Decision::Retry(_)));
        }
        assert_eq!(p.next(1, None, &updates), Decision::GiveUp(GiveUp::Budget(3)), "the updates spent theirs");
        assert!(matches!(p.next(1, None, &deactivations), Decision::Retry(_)), "the deactivations still have theirs");
        assert_eq!(run.used(), 3, "counted in the run's budget, which never refuses a class");
    }

    #[test]
    fn worst_case_sftp_wait_is_a_few_seconds() {
        // With every attempt hanging for `timeout`, the fetch fails after 3 × timeout plus
        // at most this much backoff.
        let b = Policy::SFTP.backoff;
        let worst: Duration = (1..Policy::SFTP.max_attempts).map(|a| b.delay_with(a, 1.0)).sum();
        assert!(worst <= Duration::from_secs(2), "{worst:?}");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
