//! Step 1 of a run: the connector's lease, so two runs of one connector never overlap, and
//! its heartbeat while the run lasts.

use std::future::Future;
use std::time::Duration;

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

/// Drives `work` to its end, renewing the lease every third of its TTL however long the
/// work takes (a million-user push). `renew` false (a dry run, which holds no lease) only
/// drives the work.
pub(super) async fn with_heartbeat<S: StateStore, T>(
    store: &S,
    connector: &str,
    holder: &str,
    renew: bool,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut beat = tokio::time::interval(ttl(store) / 3);
    beat.tick().await;
    loop {
        tokio::select! {
            res = &mut work => return res,
            _ = beat.tick(), if renew => {
                if let Err(e) = store.renew(connector, holder, ttl(store)).await {
                    tracing::warn!("could not renew the lease: {e}");
                }
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
