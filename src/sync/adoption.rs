//! One account, one person, across connectors that run at the same instant.
//!
//! Whether a platform account is free to adopt is decided from the other connectors'
//! snapshots (`plan::Others`), and the binding is recorded only when the push's outcome is
//! written. Two connectors deciding at once would both read the other's snapshot before
//! either records, and both bind the same account. So a run that may bind accounts (one
//! that reads the other connectors' bindings: a first sync, a reconcile, a run after a
//! crash, a run with creates, whose 409s may adopt and whose new accounts another run may
//! list) takes a **platform-wide lease** before that read and keeps it until its push is
//! recorded. The lease is a row of the store's own lease table, keyed by the normalised
//! platform URL: the same single-statement take-over as a connector's lease, on SQLite and
//! PostgreSQL alike. Others wait for it, saying for whom; a dry run writes nothing and takes
//! none; a run that only updates its own accounts binds nothing new and takes none.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Job, RunError, lease};
use crate::exit::Exit;
use crate::state::{StateError, StateStore};

/// How often a waiting run tries the lease again: short next to a push, long enough that
/// the waiting costs the store nothing noticeable.
const POLL: Duration = Duration::from_millis(500);
/// A long wait is logged again this often, so a log says the run is still waiting.
const STILL_WAITING: Duration = Duration::from_secs(60);

/// The key of a platform's lease in the lease table: the base URL without what does not
/// tell platforms apart (`url::Url` already lowercases the scheme and host and drops a
/// default port; a trailing slash, a query, a fragment and credentials are dropped here).
/// Connector names never start with this prefix followed by a URL.
pub(super) fn platform_key(base_url: &url::Url) -> String {
    format!("platform {}", shown(base_url))
}

/// The platform as keys, logs and notes name it: no credentials (a URL may carry some).
fn shown(base_url: &url::Url) -> String {
    let host = base_url.host_str().unwrap_or_default();
    let port = base_url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}{}", base_url.scheme(), base_url.path().trim_end_matches('/'))
}

/// The connector a platform lease's holder runs ("… connector NAME", `Binding::new`).
fn holder_connector(holder: &str) -> Option<&str> {
    holder.rsplit_once(" connector ").map(|(_, name)| name)
}

/// A wait for the platform lease that ended: for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Waited {
    /// Whose run held it (the first holder seen).
    pub holder: String,
    pub waited: Duration,
}

impl Waited {
    pub(super) fn note(&self, platform: &str) -> String {
        let whose = holder_connector(&self.holder).map(|c| format!("connector \"{c}\"'s run")).unwrap_or_else(|| "another run".into());
        format!(
            "waited {:.1}s for {whose} ({}) to record the accounts it binds on {platform}, so that an account is bound to one connector only; then decided which accounts are free to adopt",
            self.waited.as_secs_f64(),
            self.holder
        )
    }
}

/// This run's hold on the platform lease: taken at most once (`take`), renewed while the
/// run lasts (`renewing`), released when its push is recorded (`release`).
pub(super) struct Binding {
    /// The connector lease's holder and this connector: "cli@HOST pid N run ID connector NAME",
    /// so `lease::acquire` can tell a dead holder on this machine and waiters can name it.
    holder: String,
    /// The lease key once taken, and when it was last taken or renewed.
    key: Mutex<Option<(String, Instant)>>,
    held: AtomicBool,
}

impl Binding {
    pub(super) fn new(run_holder: &str, connector: &str) -> Binding {
        Binding { holder: format!("{run_holder} connector {connector}"), key: Mutex::new(None), held: AtomicBool::new(false) }
    }

    fn key(&self) -> Option<(String, Instant)> {
        self.key.lock().ok().and_then(|k| k.clone())
    }

    fn renewed(&self, key: &str, at: Instant) {
        if let Ok(mut k) = self.key.lock() {
            *k = Some((key.to_string(), at));
        }
    }

    /// Takes the lease of the platform at `base_url`, waiting while another run holds it
    /// (a lease whose holder died lapses after the store's lease TTL, at once when it died
    /// on this machine). Returns the wait, if there was one. Taken already: nothing to do.
    pub(super) async fn take<S: StateStore>(&self, store: &S, base_url: &url::Url) -> Result<Option<Waited>, StateError> {
        if self.held.load(Ordering::Acquire) {
            return Ok(None);
        }
        let key = platform_key(base_url);
        let platform = shown(base_url);
        let started = Instant::now();
        let mut first: Option<String> = None;
        let mut logged = Instant::now();
        loop {
            match lease::acquire(store, &key, &self.holder).await {
                Ok(()) => break,
                Err(StateError::Held { holder, expires, .. }) => {
                    if first.is_none() {
                        tracing::warn!(
                            "waiting for {holder} to record the accounts it binds on platform {platform}: one run at a time decides which accounts there are free to adopt (its lease expires {expires} unless renewed)"
                        );
                        first = Some(holder);
                        logged = Instant::now();
                    } else if logged.elapsed() >= STILL_WAITING {
                        tracing::info!(
                            "still waiting for {holder} ({}s) to record the accounts it binds on platform {platform}",
                            started.elapsed().as_secs()
                        );
                        logged = Instant::now();
                    }
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.renewed(&key, Instant::now());
        self.held.store(true, Ordering::Release);
        Ok(first.map(|holder| Waited { holder, waited: started.elapsed() }))
    }

    /// Drives the run, renewing the platform lease (while held) every third of its TTL, as
    /// `lease::with_heartbeat` does the connector's. A lease that cannot be renewed before
    /// it lapses stops the run there: past that, another connector may decide that the
    /// accounts this one is binding are free. What it sent unrecorded, the reconcile marker
    /// (set before the push) makes the next run look up.
    pub(super) async fn renewing<S: StateStore>(
        &self,
        store: &S,
        work: impl std::future::Future<Output = Result<Exit, RunError>>,
    ) -> Result<Exit, RunError> {
        tokio::pin!(work);
        let ttl = store.lease_ttl();
        let mut beat = tokio::time::interval(ttl / 3);
        beat.tick().await;
        loop {
            tokio::select! {
                res = &mut work => return res,
                _ = beat.tick() => {
                    let Some((key, at)) = self.key().filter(|_| self.held.load(Ordering::Acquire)) else { continue };
                    match store.renew(&key, &self.holder, ttl).await {
                        Ok(()) => self.renewed(&key, Instant::now()),
                        // The next beat would come after the lease lapsed.
                        Err(e) if at.elapsed() + ttl / 3 >= ttl => return Err(lapsing(&key, ttl, &e)),
                        Err(e) => tracing::warn!("could not renew the platform lease {key}: {e}; trying again in {:?}", ttl / 3),
                    }
                }
            }
        }
    }

    /// Releases the lease if this run took it: its bindings are recorded (or its push
    /// ended; what it left unrecorded, the reconcile marker covers).
    pub(super) async fn release<S: StateStore>(&self, store: &S) {
        if !self.held.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Some((key, _)) = self.key()
            && let Err(e) = store.release(&key, &self.holder).await
        {
            tracing::warn!("could not release the platform lease {key} (it lapses on its own): {e}");
        }
    }
}

/// The run stopped because its platform lease could not be renewed: retriable (the store
/// may be back), and it says what to check.
fn lapsing(key: &str, ttl: Duration, e: &StateError) -> RunError {
    RunError {
        exit: Exit::Other,
        retriable: true,
        message: format!(
            "stopped: the platform lease ({key}) could not be renewed before it lapses (lease_ttl {}s): {e}. Another connector could otherwise bind the accounts this run is binding; the next run looks up what this one sent. Check the state store",
            ttl.as_secs()
        ),
    }
}

impl<S: StateStore> Job<'_, S> {
    /// Before this run reads other connectors' bindings to decide what it may bind: the
    /// platform lease (waiting for another connector's run that holds it, and saying so in
    /// the report). A dry run binds nothing and takes none.
    pub(super) async fn take_platform_lease(&mut self) -> Result<(), RunError> {
        if self.opts.dry_run {
            return Ok(());
        }
        let base_url = &self.cfg.platform().map_err(RunError::from_error)?.base_url;
        if let Some(w) = self.binding.take(self.store, base_url).await.map_err(RunError::from_error)? {
            tracing::info!("the platform lease is free after {:.1}s; deciding which accounts are free to adopt", w.waited.as_secs_f64());
            self.report.notes.push(w.note(&shown(base_url)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SqliteStore;

    #[test]
    fn one_platform_has_one_key_however_its_url_is_written() {
        let key = |s: &str| platform_key(&url::Url::parse(s).unwrap());
        let k = key("https://scim.example.com/scim/v2");
        for same in [
            "https://scim.example.com/scim/v2/",
            "HTTPS://SCIM.Example.com:443/scim/v2",
            "https://scim.example.com/scim/v2?x=1#f",
            "https://user:pw@scim.example.com/scim/v2",
        ] {
            assert_eq!(key(same), k, "{same}");
        }
        assert_eq!(k, "platform https://scim.example.com/scim/v2");
        for other in ["https://scim.example.com/scim/v3", "http://scim.example.com/scim/v2", "https://scim.example.com:8443/scim/v2"] {
            assert_ne!(key(other), k, "{other}");
        }
        assert!(!k.contains("pw"), "credentials never reach the key (leases show in status)");
    }

    #[test]
    fn waiters_name_the_connector_that_holds_the_platform() {
        let b = Binding::new("cli@host pid 1 run r1", "bamboo");
        assert_eq!(holder_connector(&b.holder), Some("bamboo"));
        let w = Waited { holder: b.holder.clone(), waited: Duration::from_millis(2500) };
        let note = w.note("https://scim.example.com/scim/v2");
        assert!(note.starts_with("waited 2.5s for connector \"bamboo\"'s run (cli@host pid 1 run r1 connector bamboo)"), "{note}");
        assert_eq!(holder_connector("garbage"), None);
    }

    /// Two runs on one real state file: the second waits until the first releases, then
    /// takes the lease; taking it twice is free; a run of another platform never waits.
    #[tokio::test]
    async fn the_second_run_waits_for_the_first_to_release() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("s.db").display())).await.unwrap();
        let url = url::Url::parse("https://scim.example.com/v2").unwrap();
        let (a, b) = (Binding::new("cli@h pid 1 run a", "acme"), Binding::new("cli@h pid 2 run b", "globex"));
        assert_eq!(a.take(&store, &url).await.unwrap(), None);
        assert_eq!(a.take(&store, &url).await.unwrap(), None, "taken already");
        let other = Binding::new("cli@h pid 3 run c", "initech");
        assert_eq!(other.take(&store, &url::Url::parse("https://other.example.com/v2").unwrap()).await.unwrap(), None);
        let released = async {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            a.release(&store).await;
            Instant::now()
        };
        let (waited, released_at) = tokio::join!(async { (b.take(&store, &url).await.unwrap(), Instant::now()) }, released);
        let (waited, taken_at) = waited;
        let waited = waited.expect("b waited");
        assert!(taken_at >= released_at, "b takes the lease only once a let it go");
        assert_eq!(waited.holder, a.holder);
        assert!(waited.waited >= Duration::from_millis(1200), "{waited:?}");
        let leases = store.leases().await.unwrap();
        let holders: Vec<&str> = leases.iter().map(|l| l.holder.as_str()).collect();
        assert!(holders.contains(&b.holder.as_str()) && !holders.contains(&a.holder.as_str()), "{holders:?}");
        b.release(&store).await;
        other.release(&store).await;
        assert!(store.leases().await.unwrap().is_empty());
    }
}
