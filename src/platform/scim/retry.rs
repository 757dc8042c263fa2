//! Every retry decision of the SCIM client lives here (like Vector's `RetryLogic`): which
//! answers are worth another try, how long to wait, whether a failed write may still have
//! been applied, and the per-run budget that stops a push against a platform that is down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What one attempt came back with, as far as retrying cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A final answer (2xx, or a 4xx the caller must read): no retry.
    Final,
    /// Worth another try; the server may have said when (`Retry-After`).
    Retry { after: Option<Duration>, maybe_applied: bool },
}

/// Backoff and limits. One per client; the budget is per run.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts of one request, the first included.
    pub max_attempts: u32,
    pub base: Duration,
    /// Ceiling of the exponential backoff.
    pub cap: Duration,
    /// A `Retry-After` longer than this is not waited for: the request fails instead of
    /// stalling the run for hours.
    pub max_retry_after: Duration,
    /// Retries allowed in one run: `budget_min` plus `budget_per_100_ops` per hundred
    /// operations — a few bad minutes, not an outage.
    pub budget_min: u64,
    pub budget_per_100_ops: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            budget_min: 20,
            budget_per_100_ops: 10,
        }
    }
}

impl RetryPolicy {
    /// The verdict for an HTTP status. 429 and 503 mean the server did not process the
    /// request; 500, 502 and 504 may come after the write was applied (a gateway timing
    /// out on a slow backend), so a create must be looked up before it is sent again.
    pub fn for_status(&self, status: u16, retry_after: Option<&str>) -> Verdict {
        let after = retry_after.and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        match status {
            429 | 503 => Verdict::Retry { after, maybe_applied: false },
            500 | 502 | 504 => Verdict::Retry { after, maybe_applied: true },
            _ => Verdict::Final,
        }
    }

    /// The verdict for a transport error. A refused connection never reached the server;
    /// a timeout or a reset after the request went out may have been applied.
    pub fn for_error(&self, err: &reqwest::Error) -> Verdict {
        if err.is_connect() {
            return Verdict::Retry { after: None, maybe_applied: false };
        }
        if err.is_timeout() || err.is_request() || err.is_body() || err.is_decode() {
            return Verdict::Retry { after: None, maybe_applied: true };
        }
        // Builder/redirect errors are ours and will not change on a retry.
        Verdict::Final
    }

    /// How long to wait before attempt `attempt + 1` (`attempt` counts from 1). A server
    /// hint wins over our backoff; otherwise "equal jitter": uniform in [c/2, c] with
    /// c = min(cap, base·2ⁿ⁻¹), so tasks that failed together do not retry in lockstep.
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Option<Duration> {
        if let Some(h) = hint {
            return (h <= self.max_retry_after).then_some(h);
        }
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let ceiling = exp.min(self.cap).as_millis().max(1) as u64;
        Some(Duration::from_millis(rand::random_range(ceiling / 2..=ceiling)))
    }
}

/// Retries left for the whole run. Each retry anywhere takes one; when none are left the
/// run stops with what was applied recorded, instead of hammering a broken platform.
#[derive(Debug)]
pub struct Budget {
    left: AtomicU64,
    pub total: u64,
}

impl Budget {
    pub fn for_ops(policy: &RetryPolicy, ops: usize) -> Budget {
        let total = policy.budget_min + ops as u64 * policy.budget_per_100_ops / 100;
        Budget { left: AtomicU64::new(total), total }
    }

    pub fn take(&self) -> bool {
        self.left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }

    pub fn used(&self) -> u64 {
        self.total - self.left.load(Ordering::Acquire)
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
    fn retry_after_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses() {
        let p = RetryPolicy::default();
        assert_eq!(p.for_status(429, Some("3")), Verdict::Retry { after: Some(Duration::from_secs(3)), maybe_applied: false });
        assert_eq!(p.for_status(503, None), Verdict::Retry { after: None, maybe_applied: false });
        assert_eq!(p.for_status(504, None), Verdict::Retry { after: None, maybe_applied: true });
        for s in [200, 201, 204, 400, 401, 403, 404, 409, 413, 501] {
            assert_eq!(p.for_status(s, None), Verdict::Final, "status {s}");
        }
    }

    #[test]
    fn backoff_is_capped_jittered_and_long_hints_give_up() {
        let p = RetryPolicy::default();
        for attempt in 1..30 {
            let d = p.delay(attempt, None).unwrap();
            let ceiling = p.base.saturating_mul(1 << (attempt - 1).min(20)).min(p.cap);
            assert!(d <= ceiling && d >= ceiling / 2 - Duration::from_millis(1), "attempt {attempt}: {d:?}");
        }
        assert_eq!(p.delay(1, Some(Duration::from_secs(2))), Some(Duration::from_secs(2)));
        assert_eq!(p.delay(1, Some(Duration::from_secs(3600))), None);
    }

    #[test]
    fn budget_runs_out() {
        let b = Budget::for_ops(&RetryPolicy::default(), 0);
        for _ in 0..20 {
            assert!(b.take());
        }
        assert!(!b.take());
        assert_eq!(b.used(), 20);
    }
}
