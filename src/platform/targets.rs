//! What every run that sends to one platform target shares, for the life of the process
//! (the daemon's, or one command's): the requests in flight to it, a `Retry-After` pause,
//! a budget of retries, and what discovery found. One `Limiter` per target
//! (`config::Target::key`), made the first time a run asks for it and kept: a 429 from one
//! tenant then slows every run that sends to that tenant, and no other.
//!
//! - **Requests in flight**: at most the target's `max_concurrency`, across all its runs
//!   (each run's push also keeps to it on its own).
//! - **Retry-After**: a 429 or 503 that says how long to wait pauses every request to the
//!   target until then, not only the one that got it.
//! - **Retries**: a bucket of `RETRIES_BASE + RETRIES_PER_REQUEST × max_concurrency`
//!   retries, refilled at that many per minute; a run whose retry finds it empty gives up
//!   as if its own budget were spent (the next run tries again). Each run keeps its own
//!   budget too (`crate::retry::Budget`).
//! - **Discovery** (ServiceProviderConfig, the User resource type, Bulk limits) is read by
//!   the first run and reused by the others until `refresh` (the daemon's SIGHUP).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::scim::Capabilities;
use crate::config::Target;

/// Retries a target allows per minute: this many, plus `RETRIES_PER_REQUEST` per request
/// it may have in flight.
pub const RETRIES_BASE: u64 = 20;
pub const RETRIES_PER_REQUEST: u64 = 10;

/// The limiters of every target the process has sent to.
#[derive(Default)]
pub struct Targets {
    by_key: Mutex<HashMap<String, Arc<Limiter>>>,
}

impl Targets {
    pub fn new() -> Arc<Targets> {
        Arc::new(Targets::default())
    }

    /// The target's limiter, made on first use and the same one afterwards (resized when a
    /// reload changed the target's `max_concurrency`).
    pub fn limiter(&self, t: &Target) -> Arc<Limiter> {
        let mut m = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        let l = m.entry(t.key.clone()).or_insert_with(|| Arc::new(Limiter::new(&t.name, t.platform.max_concurrency))).clone();
        l.resize(t.platform.max_concurrency.max(1));
        l
    }

    /// Forgets what discovery found (SIGHUP: the platform may have changed); the limits
    /// and pauses stand.
    pub fn refresh(&self) {
        let m = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        for l in m.values() {
            *l.discovered.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// One target's shared limits.
pub struct Limiter {
    /// The target's name, for logs.
    pub name: String,
    requests: Semaphore,
    /// The permits `requests` was given (`max_concurrency`).
    size: Mutex<usize>,
    paused_until: Mutex<Option<Instant>>,
    retries: Mutex<Bucket>,
    discovered: Mutex<Option<Capabilities>>,
}

/// A token bucket: `capacity` tokens, refilled at `capacity` per minute.
struct Bucket {
    capacity: u64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let per_sec = self.capacity as f64 / 60.0;
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * per_sec).min(self.capacity as f64);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Limiter {
    pub fn new(name: &str, max_concurrency: usize) -> Limiter {
        let capacity = RETRIES_BASE + RETRIES_PER_REQUEST * max_concurrency as u64;
        Limiter {
            name: name.to_string(),
            requests: Semaphore::new(max_concurrency.max(1)),
            size: Mutex::new(max_concurrency.max(1)),
            paused_until: Mutex::new(None),
            retries: Mutex::new(Bucket { capacity, tokens: capacity as f64, at: Instant::now() }),
            discovered: Mutex::new(None),
        }
    }

    /// A new `max_concurrency`: permits added at once, or taken back as far as they are
    /// free now (the rest at the next resize).
    fn resize(&self, want: usize) {
        let mut size = self.size.lock().unwrap_or_else(|e| e.into_inner());
        if *size < want {
            self.requests.add_permits(want - *size);
            *size = want;
        } else if *size > want {
            *size -= self.requests.forget_permits(*size - want);
        }
    }

    /// Waits for a pause to end and for a request slot; the permit is held while the
    /// request is in flight.
    pub async fn request(&self) -> SemaphorePermit<'_> {
        loop {
            let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(at) if at > Instant::now() => tokio::time::sleep_until(at).await,
                _ => break,
            }
        }
        // Never closed: the semaphore lives as long as the limiter.
        self.requests.acquire().await.unwrap_or_else(|_| unreachable!("the target's semaphore is never closed"))
    }

    /// The server asked every client to wait (`Retry-After`): no request to this target
    /// starts before then.
    pub fn pause(&self, wait: Duration) {
        let at = Instant::now() + wait;
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|old| old < at) {
            *p = Some(at);
        }
    }

    /// One retry from the target's bucket; false when it is empty.
    pub fn take_retry(&self) -> bool {
        self.retries.lock().unwrap_or_else(|e| e.into_inner()).take(Instant::now())
    }

    /// The bucket's size (retries per minute).
    pub fn retries_per_minute(&self) -> u64 {
        self.retries.lock().unwrap_or_else(|e| e.into_inner()).capacity
    }

    pub fn discovered(&self) -> Option<Capabilities> {
        self.discovered.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_discovered(&self, caps: Capabilities) {
        *self.discovered.lock().unwrap_or_else(|e| e.into_inner()) = Some(caps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_request_and_the_bucket_refills() {
        let l = Limiter::new("t", 2);
        l.pause(Duration::from_secs(3));
        let started = Instant::now();
        let (a, b) = tokio::join!(l.request(), l.request());
        assert!(started.elapsed() >= Duration::from_secs(3), "both waited for the pause");
        drop((a, b));
        let cap = l.retries_per_minute();
        assert_eq!(cap, RETRIES_BASE + 2 * RETRIES_PER_REQUEST);
        assert!((0..cap).all(|_| l.take_retry()));
        assert!(!l.take_retry(), "spent");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(l.take_retry(), "refilled after a minute");
    }

    fn target(token_env: &str, max_concurrency: usize) -> Target {
        let platform = crate::config::Platform {
            base_url: url::Url::parse("https://scim.example.com/v2").unwrap(),
            auth: crate::config::PlatformAuth::Bearer { token: crate::secret::SecretRef::env(token_env) },
            max_concurrency,
            timeout: Duration::from_secs(30),
            bulk: true,
            custom_schema: String::new(),
            notify_webhook: None,
        };
        Target::new(None, platform)
    }

    /// One limiter per target for the process's life: the same for every run of a target,
    /// another for another token on the same URL; a reload resizes it and forgets discovery.
    #[test]
    fn one_limiter_per_target_resized_and_refreshed_on_reload() {
        let ts = Targets::default();
        let a = ts.limiter(&target("A", 2));
        assert!(Arc::ptr_eq(&a, &ts.limiter(&target("A", 2))));
        assert!(!Arc::ptr_eq(&a, &ts.limiter(&target("B", 2))), "another token, another organisation");
        a.set_discovered(Capabilities::default());
        ts.refresh();
        assert_eq!(a.discovered(), None, "discovered again after a reload");
        assert!(Arc::ptr_eq(&a, &ts.limiter(&target("A", 5))));
        assert_eq!(a.requests.available_permits(), 5);
        ts.limiter(&target("A", 1));
        assert_eq!(a.requests.available_permits(), 1);
    }

    #[tokio::test]
    async fn requests_in_flight_are_bounded_across_runs() {
        let l = Arc::new(Limiter::new("t", 1));
        let held = l.request().await;
        let l2 = l.clone();
        let second = tokio::spawn(async move {
            let _p = l2.request().await;
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!second.is_finished(), "the second waits while the first is in flight");
        drop(held);
        second.await.unwrap();
    }
}
