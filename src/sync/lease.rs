//! Step 1 of a run: the connector's lease, so two runs of one connector never overlap, and
//! its heartbeat while the run lasts.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::state::{StateError, StateStore};

/// A lease outlives a dead holder by at most `store.lease_ttl()` (`[state] lease_ttl`).
fn ttl<S: StateStore>(store: &S) -> Duration {
    store.lease_ttl()
}

/// Who holds a lease: "ORIGIN@HOST pid N run ID", read back by `holder_died_here`.
pub(super) fn holder(origin: &str, run_id: &str) -> String {
    format!("{origin}@{} pid {} run {run_id}", hostname(), std::process::id())
}

/// Takes the lease; a lease left by a process of this machine that no longer exists (killed,
/// crashed) is taken over at once rather than after its TTL.
pub(super) async fn acquire<S: StateStore>(store: &S, connector: &str, holder: &str) -> Result<(), StateError> {
    match store.acquire(connector, holder, ttl(store)).await {
        Err(StateError::Held { holder: old, .. }) if holder_died_here(&old) => {
            tracing::warn!("taking over the lease of {old}: that process no longer runs");
            store.release(connector, &old).await?;
            store.acquire(connector, holder, ttl(store)).await
        }
        other => other,
    }
}

/// How long before its lease would lapse a run that could not renew it stops: the room for
/// clocks and for a write already on its way to the platform.
pub(super) fn margin(ttl: Duration) -> Duration {
    ttl / 10
}

/// When to try again after a renewal the store refused: soon, since the lease has less than
/// a full beat left.
pub(super) fn retry_after(ttl: Duration) -> Duration {
    margin(ttl).max(Duration::from_millis(100))
}

/// What a renewal of no row means: the lease lapsed and another run took it.
pub(super) const TAKEN_OVER: &str = "the state store says it lapsed and another run holds it now";

/// Drives `work` to its end, renewing the lease every third of its TTL however long the
/// work takes (a million-user push). `renew` false (a dry run, which holds no lease) only
/// drives the work.
///
/// A holder may act only while it can show it holds the lease. Each renewal the store
/// accepts extends that until `ttl` after the renewal was sent (what the store recorded is
/// no later). When no renewal has been accepted by then (the store is locked by another
/// writer, or unreachable), or the store says the lease is another's, the work is dropped
/// where it is, before another run could take the connector, and this is `LeaseLost`.
/// Dropping it is what a crash does, which a run survives: the reconcile marker is set
/// before the first write, so the next run lists the platform and adopts what was sent.
pub(super) async fn with_heartbeat<S: StateStore, T>(
    store: &S,
    connector: &str,
    holder: &str,
    renew: bool,
    work: impl Future<Output = T>,
) -> Result<T, StateError> {
    let ttl = ttl(store);
    if !renew {
        return Ok(work.await);
    }
    // The lease was taken just before the work began: count from here, less the margin.
    let mut valid_until = Instant::now() + ttl;
    let mut next_beat = Instant::now() + ttl / 3;
    let mut last_error: Option<String> = None;
    let lapsed = |valid_until: Instant, why: String| StateError::LeaseLost {
        connector: connector.into(),
        detail: format!(
            "none of its renewals was accepted for {:.1} s of its {} s lease; {why}",
            (Instant::now() + ttl).saturating_duration_since(valid_until).as_secs_f64(),
            ttl.as_secs_f64()
        ),
    };
    tokio::pin!(work);
    loop {
        let stop_at = valid_until.checked_sub(margin(ttl)).unwrap_or(valid_until);
        tokio::select! {
            res = &mut work => return Ok(res),
            _ = tokio::time::sleep_until(stop_at) => {
                let why = last_error.take().map_or("no renewal was tried".into(), |e| format!("the state store answered: {e}"));
                return Err(lapsed(valid_until, why));
            }
            _ = tokio::time::sleep_until(next_beat) => {}
        }
        // The work goes on while the renewal waits (on a busy SQLite, a slow network).
        let sent = Instant::now();
        let renewal = store.renew(connector, holder, ttl);
        tokio::pin!(renewal);
        let answer = tokio::select! {
            res = &mut work => return Ok(res),
            _ = tokio::time::sleep_until(stop_at) => {
                let why = last_error.take().map_or(String::new(), |e| format!("; before that it answered: {e}"));
                return Err(lapsed(valid_until, format!("the state store did not answer the last renewal{why}")));
            }
            answer = &mut renewal => answer,
        };
        match answer {
            Ok(true) => {
                valid_until = sent + ttl;
                next_beat = Instant::now() + ttl / 3;
                last_error = None;
            }
            Ok(false) => {
                return Err(StateError::LeaseLost { connector: connector.into(), detail: TAKEN_OVER.into() });
            }
            Err(e) => {
                tracing::warn!("could not renew the lease: {e}");
                last_error = Some(e.to_string());
                next_beat = Instant::now() + retry_after(ttl);
            }
        }
    }
}

/// Whether a holder string ("cli@HOST pid N run ID") names a dead rostersync process here.
fn holder_died_here(holder: &str) -> bool {
    let Some((_, rest)) = holder.split_once('@') else { return false };
    let mut words = rest.split_whitespace();
    let (Some(host), Some("pid"), Some(pid)) = (words.next(), words.next(), words.next()) else { return false };
    if host != hostname() || pid.parse::<u32>().is_err() {
        return false;
    }
    // A reused pid belongs to some other program: still dead for us.
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => !String::from_utf8_lossy(&cmd).contains("rostersync"),
        Err(_) => true,
    }
}

/// This machine's name (gethostname(2)), as lease holders record it.
pub(crate) fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_of_this_machine_are_judged_by_their_process() {
        let me = holder("cli", "r1");
        // This test's own process is alive, but is it rostersync? Its cmdline names the test
        // binary ("rostersync-…"), so it reads as alive.
        assert!(!holder_died_here(&me), "{me}");
        assert!(holder_died_here(&format!("cli@{} pid 4294967295 run r2", hostname())));
        // Another machine's holder is never judged from here.
        assert!(!holder_died_here("daemon@some-other-host pid 1 run r3"));
        assert!(!holder_died_here("garbage"));
    }
}
