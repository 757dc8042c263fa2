//! One account, one person, across connectors that run at the same instant.
//!
//! Whether a platform account is free to adopt is decided from the other connectors'
//! snapshots (`plan::Others`), and the binding is recorded only when the push's outcome is
//! written. Two connectors deciding at once would both read the other's snapshot before
//! either records, and both bind the same account. So a run that may bind accounts (one
//! that reads the other connectors' bindings: a first sync, a reconcile, a run after a
//! crash, a run with creates, whose 409s may adopt and whose new accounts another run may
//! list) takes a **platform-wide lease** before that read and keeps it until its push is
//! recorded. The lease is a row of the store's own lease table, keyed by the target (the
//! normalised platform URL and which credential: `config::Target::key`; connectors on
//! other targets never wait for each other): the same single-statement take-over as a connector's lease, on SQLite and
//! PostgreSQL alike. Others wait for it, saying for whom; a dry run writes nothing and takes
//! none; a run that only updates its own accounts binds nothing new and takes none; nor does
//! a connector with no other connector's bindings to read (alone in its config, or
//! `adopt_from` naming every other).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::time::Instant as TokioInstant;

use super::{Ctx, RunError, Tally, lease};
use crate::state::{StateError, StateStore};

/// How often a waiting run tries the lease again: short next to a push, long enough that
/// the waiting costs the store nothing noticeable.
const POLL: Duration = Duration::from_millis(500);
/// How long a daemon's run waits for the platform lease before it gives its run slot
/// (`max_concurrent_runs`) back and is retried: runs waiting behind one long push (a
/// million-user first sync) would otherwise hold every slot of the daemon and stop the
/// runs that bind nothing. A run by hand waits as long as it takes, saying so.
pub(super) const DAEMON_WAIT: Duration = Duration::from_secs(60);
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
    crate::config::platform::shown_url(base_url)
}

/// Which platform lease a run takes: its key in the lease table and how messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Place {
    key: String,
    shown: String,
}

impl Place {
    /// A platform known by its URL alone (one credential on it).
    #[cfg(test)]
    pub(super) fn of_url(base_url: &url::Url) -> Place {
        Place { key: platform_key(base_url), shown: shown(base_url) }
    }

    /// A connector's target: its URL and which credential, so that two organisations on
    /// one URL (two tokens) have two leases.
    pub(super) fn of_target(t: &crate::config::Target) -> Place {
        let key = format!("{} {}", platform_key(&t.platform.base_url), crate::config::platform::credential(&t.platform.auth));
        Place { key, shown: format!("{} ({})", t.name, shown(&t.platform.base_url)) }
    }
}

/// The connectors of the configuration on another target than `conn`'s: their accounts
/// live in another directory (another URL, or the same URL with another credential), so
/// they are neither adopted, nor in conflict, nor waited for. A connector whose target is
/// unknown (refused, or gone from the configuration) is not listed: its accounts stay
/// others' (a conflict, never a takeover).
pub(super) fn on_other_targets<'a>(cfg: &'a crate::config::Config, conn: &crate::config::Connector) -> std::collections::HashSet<&'a str> {
    let Some(mine) = &conn.target else { return Default::default() };
    cfg.connectors.values().filter(|c| c.target.as_ref().is_some_and(|t| t.key != mine.key)).map(|c| c.name.as_str()).collect()
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
        // Read back from the store's text, where the store hands it over.
        let whose = lease::Holder::parse(&self.holder)
            .and_then(|h| h.connector)
            .map(|c| format!("connector \"{c}\"'s run"))
            .unwrap_or_else(|| "another run".into());
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
    /// The connector lease's holder and this connector, as the store keeps it (`lease::Holder`),
    /// so `lease::acquire` can tell a dead holder on this machine and waiters can name it.
    holder: String,
    /// The lease key once taken, and when it was last taken or renewed.
    key: Mutex<Option<(String, TokioInstant)>>,
    held: AtomicBool,
}

impl Binding {
    pub(super) fn new(run_holder: &lease::Holder, connector: &str) -> Binding {
        let holder = run_holder.for_connector(connector).to_string();
        Binding { holder, key: Mutex::new(None), held: AtomicBool::new(false) }
    }

    fn key(&self) -> Option<(String, TokioInstant)> {
        self.key.lock().ok().and_then(|k| k.clone())
    }

    fn renewed(&self, key: &str, at: TokioInstant) {
        if let Ok(mut k) = self.key.lock() {
            *k = Some((key.to_string(), at));
        }
    }

    /// Takes the lease of the platform at `base_url`, waiting while another run holds it
    /// (a lease whose holder died lapses after the store's lease TTL, at once when it died
    /// on this machine). Returns the wait, if there was one. Taken already: nothing to do.
    /// With a `limit`, waiting longer is `PlatformBusy` (retriable).
    pub(super) async fn take<S: StateStore>(
        &self,
        store: &S,
        place: &Place,
        limit: Option<Duration>,
    ) -> Result<Option<Waited>, StateError> {
        if self.held.load(Ordering::Acquire) {
            return Ok(None);
        }
        let key = place.key.clone();
        let platform = place.shown.clone();
        let started = Instant::now();
        let mut first: Option<String> = None;
        let mut logged = Instant::now();
        // The store counts the lease from when it ran the statement: no earlier than this.
        let sent = loop {
            let sent = TokioInstant::now();
            match lease::acquire(store, &key, &self.holder).await {
                Ok(_) => break sent,
                Err(StateError::Held { holder, expires, .. }) => {
                    if let Some(limit) = limit
                        && started.elapsed() >= limit
                    {
                        return Err(StateError::PlatformBusy { platform, holder, waited_secs: started.elapsed().as_secs() });
                    }
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
        };
        self.renewed(&key, sent);
        self.held.store(true, Ordering::Release);
        Ok(first.map(|holder| Waited { holder, waited: started.elapsed() }))
    }

    /// Drives the run, renewing the platform lease (once taken) every third of its TTL, as
    /// `lease::with_heartbeat` does the connector's, and on the same terms: the run may act
    /// only while a renewal was accepted within the TTL (less a margin). Otherwise, or when
    /// the store says another run holds it now, the run stops where it is: past that,
    /// another connector may decide that the accounts this one is binding are free. What it
    /// sent unrecorded, the reconcile marker (set before the push) makes the next run look up.
    pub(super) async fn renewing<S: StateStore, T>(
        &self,
        store: &S,
        work: impl std::future::Future<Output = Result<T, RunError>>,
    ) -> Result<T, RunError> {
        tokio::pin!(work);
        let ttl = store.lease_ttl();
        let margin = lease::margin(ttl);
        let mut retry_at: Option<TokioInstant> = None;
        let mut last_error: Option<String> = None;
        loop {
            let Some((key, at)) = self.key().filter(|_| self.held.load(Ordering::Acquire)) else {
                // Not taken (yet): most runs never take it.
                tokio::select! {
                    res = &mut work => return res,
                    _ = tokio::time::sleep(margin) => continue,
                }
            };
            let stop_at = (at + ttl).checked_sub(margin).unwrap_or(at);
            let next = retry_at.unwrap_or(at + ttl / 3);
            tokio::select! {
                res = &mut work => return res,
                _ = tokio::time::sleep_until(stop_at) => return Err(lapsing(&key, ttl, last_error.take())),
                _ = tokio::time::sleep_until(next) => {}
            }
            // The work goes on while the renewal waits (a busy SQLite, a slow network).
            let sent = TokioInstant::now();
            let renewal = store.renew(&key, &self.holder, ttl);
            tokio::pin!(renewal);
            let answer = tokio::select! {
                res = &mut work => return res,
                _ = tokio::time::sleep_until(stop_at) => {
                    let why = last_error.take().unwrap_or_else(|| "the state store did not answer the last renewal".into());
                    return Err(lapsing(&key, ttl, Some(why)));
                }
                answer = &mut renewal => answer,
            };
            match answer {
                Ok(true) => {
                    self.renewed(&key, sent);
                    (retry_at, last_error) = (None, None);
                }
                Ok(false) => return Err(lapsing(&key, ttl, Some(lease::TAKEN_OVER.into()))),
                Err(e) => {
                    tracing::warn!("could not renew the platform lease {key}: {e}");
                    last_error = Some(e.to_string());
                    retry_at = Some(TokioInstant::now() + lease::retry_after(ttl));
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
fn lapsing(key: &str, ttl: Duration, why: Option<String>) -> RunError {
    let why = why.unwrap_or_else(|| "no renewal was accepted".into());
    RunError::PlatformLeaseLapsed { key: key.to_string(), ttl, why }
}

impl<S: StateStore> Ctx<'_, S> {
    /// Before this run reads other connectors' bindings to decide what it may bind: the
    /// platform lease (waiting for another connector's run that holds it, and saying so in
    /// the report). A dry run binds nothing and takes none.
    pub(super) async fn take_platform_lease(&self, t: &mut Tally) -> Result<(), RunError> {
        if self.opts.dry_run {
            return Ok(());
        }
        let place = Place::of_target(&*self.cfg.target(self.conn).map_err(RunError::from)?);
        let limit = (self.opts.origin == super::Origin::Daemon).then_some(DAEMON_WAIT);
        if let Some(w) = self.binding.take(self.store, &place, limit).await.map_err(RunError::from)? {
            tracing::info!("the platform lease is free after {:.1}s; deciding which accounts are free to adopt", w.waited.as_secs_f64());
            t.report.notes.push(w.note(&place.shown));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Exit;
    use crate::state::SqliteStore;
    use crate::state::prelude::*;

    /// A run's holder as the store would hand it back.
    fn h(stored: &str) -> lease::Holder {
        lease::Holder::parse(stored).unwrap()
    }

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
        let b = Binding::new(&h("cli@host pid 1 run r1"), "bamboo");
        assert_eq!(lease::Holder::parse(&b.holder).and_then(|h| h.connector).as_deref(), Some("bamboo"));
        let w = Waited { holder: b.holder.clone(), waited: Duration::from_millis(2500) };
        let note = w.note("https://scim.example.com/scim/v2");
        assert!(note.starts_with("waited 2.5s for connector \"bamboo\"'s run (cli@host pid 1 run r1 connector bamboo)"), "{note}");
        let w = Waited { holder: "garbage".into(), waited: Duration::from_millis(2500) };
        assert!(w.note("p").starts_with("waited 2.5s for another run (garbage)"));
    }

    /// A daemon's run waits a bounded time: then it gives up, retriable, naming the holder,
    /// and the lease stays the holder's.
    #[tokio::test]
    async fn a_limited_wait_gives_up_retriable_and_leaves_the_lease_to_its_holder() {
        use crate::exit::Classify;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("s.db").display())).await.unwrap();
        let url = url::Url::parse("https://scim.example.com/v2").unwrap();
        let (a, b) = (Binding::new(&h("daemon@h pid 1 run a"), "acme"), Binding::new(&h("daemon@h pid 1 run b"), "globex"));
        a.take(&store, &Place::of_url(&url), None).await.unwrap();
        let started = Instant::now();
        let e = b.take(&store, &Place::of_url(&url), Some(Duration::from_millis(1200))).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(1200), "waited its limit first: {:?}", started.elapsed());
        assert!(matches!(e, StateError::PlatformBusy { .. }), "{e:?}");
        assert!(e.retriable(), "tried again later");
        let msg = e.to_string();
        assert!(msg.contains("daemon@h pid 1 run a") && msg.contains("gives its run slot back"), "{msg}");
        let holders: Vec<String> = store.leases().await.unwrap().into_iter().map(|l| l.holder).collect();
        assert_eq!(holders, vec![a.holder.clone()], "the holder keeps it; the one that gave up holds nothing");
        a.release(&store).await;
    }

    /// Two runs on one real state file: the second waits until the first releases, then
    /// takes the lease; taking it twice is free; a run of another platform never waits.
    #[tokio::test]
    async fn the_second_run_waits_for_the_first_to_release() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("s.db").display())).await.unwrap();
        let url = url::Url::parse("https://scim.example.com/v2").unwrap();
        let (a, b) = (Binding::new(&h("cli@h pid 1 run a"), "acme"), Binding::new(&h("cli@h pid 2 run b"), "globex"));
        assert_eq!(a.take(&store, &Place::of_url(&url), None).await.unwrap(), None);
        assert_eq!(a.take(&store, &Place::of_url(&url), None).await.unwrap(), None, "taken already");
        let other = Binding::new(&h("cli@h pid 3 run c"), "initech");
        assert_eq!(
            other.take(&store, &Place::of_url(&url::Url::parse("https://other.example.com/v2").unwrap()), None).await.unwrap(),
            None
        );
        let released = async {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            a.release(&store).await;
            Instant::now()
        };
        let (waited, released_at) =
            tokio::join!(async { (b.take(&store, &Place::of_url(&url), None).await.unwrap(), Instant::now()) }, released);
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

    /// A real SQLite store whose renewals fail once `failing` is set (a disk or a database
    /// that stops answering writes): the fault the lapse check is for.
    mod flaky {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::Duration;

        use crate::state::prelude::*;
        use crate::state::{LeaseRecord, SqliteStore, StateError, forward_roles};

        pub struct FlakyRenew {
            pub inner: SqliteStore,
            pub failing: AtomicBool,
            pub ttl: Duration,
        }

        /// The one role this store fakes: renewals fail while `failing` is set.
        impl Leases for FlakyRenew {
            fn lease_ttl(&self) -> Duration {
                self.ttl
            }
            async fn acquire(&self, connector: &str, holder: &str, ttl: Duration) -> Result<i64, StateError> {
                self.inner.acquire(connector, holder, ttl).await
            }
            async fn renew(&self, connector: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
                if self.failing.load(Ordering::Acquire) {
                    return Err(StateError::Db { url: "sqlite://test".into(), detail: "disk I/O error".into() });
                }
                self.inner.renew(connector, holder, ttl).await
            }
            async fn release(&self, connector: &str, holder: &str) -> Result<(), StateError> {
                self.inner.release(connector, holder).await
            }
            async fn leases(&self) -> Result<Vec<LeaseRecord>, StateError> {
                self.inner.leases().await
            }
            async fn live_lease(&self, connector: &str) -> Result<Option<LeaseRecord>, StateError> {
                self.inner.live_lease(connector).await
            }
        }

        macro_rules! inner {
            ($self:ident, $s:ident => $call:expr) => {{
                let $s = &$self.inner;
                $call
            }};
        }
        forward_roles!(FlakyRenew, inner; Snapshots, Runs, Audit, Slots, GroupRecords, FileProfiles);
    }

    async fn flaky(dir: &tempfile::TempDir, ttl: Duration) -> flaky::FlakyRenew {
        let inner = SqliteStore::open(&format!("sqlite://{}", dir.path().join("s.db").display())).await.unwrap();
        flaky::FlakyRenew { inner, failing: AtomicBool::new(false), ttl }
    }

    /// Renewed while the run lasts: the lease outlives its first TTL several times over.
    #[tokio::test]
    async fn a_long_run_keeps_the_platform_lease() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(600);
        let store = flaky(&dir, ttl).await;
        let url = url::Url::parse("https://scim.example.com/v2").unwrap();
        let a = Binding::new(&h("cli@h pid 1 run a"), "acme");
        a.take(&store, &Place::of_url(&url), None).await.unwrap();
        let other = Binding::new(&h("cli@h pid 2 run b"), "globex");
        let run = a.renewing(&store, async {
            tokio::time::sleep(ttl * 3).await;
            // Another connector still cannot take it: it was renewed all along.
            let key = platform_key(&url);
            match store.acquire(&key, &other.holder, ttl).await {
                Err(StateError::Held { holder, .. }) => assert_eq!(holder, a.holder),
                e => panic!("the lease lapsed under a live run: {e:?}"),
            }
            Ok(Exit::Ok)
        });
        assert_eq!(run.await.unwrap(), Exit::Ok);
        a.release(&store).await;
    }

    /// Renewals that fail stop the run before the lease lapses, retriable, saying why.
    #[tokio::test]
    async fn a_run_whose_platform_lease_cannot_be_renewed_stops_before_it_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(2);
        let store = flaky(&dir, ttl).await;
        let url = url::Url::parse("https://scim.example.com/v2").unwrap();
        let a = Binding::new(&h("cli@h pid 1 run a"), "acme");
        a.take(&store, &Place::of_url(&url), None).await.unwrap();
        let taken = Instant::now();
        store.failing.store(true, std::sync::atomic::Ordering::Release);
        let e = a
            .renewing(&store, async {
                tokio::time::sleep(ttl * 10).await;
                Ok(Exit::Ok)
            })
            .await
            .expect_err("the run stops");
        assert!(taken.elapsed() < ttl, "stopped before the lease lapsed: {:?}", taken.elapsed());
        assert!(taken.elapsed() >= ttl / 3 * 2, "after the second failed renewal, not the first: {:?}", taken.elapsed());
        assert!(crate::exit::Classify::retriable(&e), "the store may be back");
        let message = e.to_string();
        assert!(message.contains("platform lease (platform https://scim.example.com/v2) could not be renewed"), "{message}");
        assert!(message.contains("disk I/O error") && message.contains("Check the state store"), "{message}");
    }

    /// A lease that lapsed and was taken by another run: the next renewal is refused and
    /// the run stops, naming why.
    #[tokio::test]
    async fn a_run_whose_platform_lease_was_taken_over_stops() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(900);
        let store = flaky(&dir, ttl).await;
        let url = url::Url::parse("https://scim.example.com/v2").unwrap();
        let a = Binding::new(&h("cli@h pid 1 run a"), "acme");
        a.take(&store, &Place::of_url(&url), None).await.unwrap();
        let key = platform_key(&url);
        store.inner.release(&key, &a.holder).await.unwrap();
        store.inner.acquire(&key, "cli@h pid 2 run b connector globex", ttl).await.unwrap();
        let e = a
            .renewing(&store, async {
                tokio::time::sleep(ttl * 10).await;
                Ok(Exit::Ok)
            })
            .await
            .expect_err("the run stops");
        assert!(e.to_string().contains("another run holds it now"), "{e}");
    }
}
